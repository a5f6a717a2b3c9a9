"""The exported soft labels: the best label distribution a run can give without crowd votes.

Ingredients, all from the run itself:

- the constructed distribution d (LDLVA: (1 − λ) l + λ d̃; a plain cross-entropy run: the
  one-hot given label) for training rows, the prediction p for the others;
- the last epoch's prediction p, calibrated with one temperature T fitted on the *valid*
  split's given labels. The negative log-likelihood of one annotator's label is a proper score
  for the distribution of annotators' labels, so the temperature that best predicts held-out
  given labels makes p an estimate of that distribution; no crowd column is ever read (a
  user's dataset has none).

soft = (1 − w) · d + w · temper(p, T), with w = ``TrainConfig.soft_label_mix``; by default
(``None``) ``DEFAULT_MIX[method]``: 0.4 for ``ce`` (its d is the one-hot label) and 0.1 for
``ldlva`` (its d already leans on the neighbours by λ). Measured on FER+ with one annotator's
vote per image (bench/ferplus_scores.py, docs/method.md): the epoch-averaged prediction
(``pavg_<class>``) is a worse ingredient than the last epoch's, its early epochs are underfit.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from uldl_studio.core.classes import canonical_name
from uldl_studio.core.table import DatasetError, classes_of

#: the most mass an exported soft label keeps on the label of a row the annotator marked unsure
UNSURE_LABEL_MASS = 0.5

#: columns of the training targets ``fit`` learns from instead of the one-hot label
TARGET_PREFIX = "target_"

#: temperatures searched (log-uniform bounds)
T_RANGE = (0.2, 10.0)
#: the weight of the calibrated prediction per method when ``soft_label_mix`` is None
DEFAULT_MIX = {"ce": 0.4, "ldlva": 0.1}


def mix_for(method: str, mix: float | None) -> float:
    return DEFAULT_MIX.get(method, 0.1) if mix is None else float(mix)


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Rows of ``probs`` raised to 1/T and renormalised (softmax of log p / T)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None)
    logits = np.log(p) / float(temperature)
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of ``labels`` under ``probs``."""
    p = np.clip(np.asarray(probs, dtype=np.float64)[np.arange(len(labels)), labels], 1e-12, None)
    return float(-np.log(p).mean())


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The T in ``T_RANGE`` minimising the NLL of ``labels`` under ``temper(probs, T)``;
    1.0 when there are no rows to fit on."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    ok = np.isfinite(probs).all(axis=1)
    probs, labels = probs[ok], labels[ok]
    if len(labels) == 0:
        return 1.0
    lo, hi = np.log(T_RANGE[0]), np.log(T_RANGE[1])
    best = minimize_scalar(lambda log_t: nll(temper(probs, np.exp(log_t)), labels), bounds=(lo, hi),
                           method="bounded", options={"xatol": 1e-3})
    return float(np.exp(best.x))


def build_soft_labels(constructed: np.ndarray, probs: np.ndarray, labels: np.ndarray,
                      calibration_rows: np.ndarray, mix: float) -> tuple[np.ndarray, float]:
    """(soft labels (N, m), the fitted temperature).

    ``constructed``: (N, m) d (train rows) / p (other rows); ``probs``: (N, m) the prediction;
    ``labels``: (N,) given labels; ``calibration_rows``: the rows T is fitted on (the valid
    split; when empty, T = 1); ``mix``: the weight w of the calibrated prediction.
    """
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix must be in [0, 1], got {mix}")
    rows = np.asarray(calibration_rows, dtype=np.int64)
    temperature = fit_temperature(probs[rows], labels[rows]) if rows.size else 1.0
    soft = (1.0 - mix) * np.asarray(constructed, np.float64) + mix * temper(probs, temperature)
    return soft / soft.sum(axis=1, keepdims=True), temperature


def reviewed_soft_labels(soft: np.ndarray, labels: np.ndarray, edited: np.ndarray, unsure: np.ndarray,
                         fallback: np.ndarray | None = None) -> np.ndarray:
    """The soft labels with the annotator's review applied (what an export writes as ``d``).

    ``soft``: (N, m) the run's soft labels; ``labels``: (N,) the labels after the edits;
    ``edited``: the annotator changed the label; ``unsure``: the annotator marked the row unsure.

    - an edited row that is not unsure: the one-hot of the annotator's label;
    - an unsure row: at most ``UNSURE_LABEL_MASS`` on its label (the annotator's when edited);
      the rest goes to the other classes in proportion to ``soft`` there (else ``fallback``'s,
      the prediction, else evenly);
    - every other row: ``soft`` unchanged.

    Applying it twice gives the same result, so a file read back and exported again is unchanged.
    """
    soft = np.asarray(soft, dtype=np.float64)
    n, m = soft.shape
    labels = np.asarray(labels, dtype=np.int64)
    edited = np.asarray(edited, dtype=bool)
    unsure = np.asarray(unsure, dtype=bool)
    out = soft.copy()
    out[edited] = np.eye(m)[labels[edited]]
    rows = np.flatnonzero(unsure & (out[np.arange(n), labels] > UNSURE_LABEL_MASS))
    if rows.size and m > 1:
        others = np.ones((rows.size, m), dtype=bool)
        others[np.arange(rows.size), labels[rows]] = False
        candidates = [soft[rows]] + ([np.asarray(fallback, np.float64)[rows]] if fallback is not None else [])
        spread = np.where(others, 1.0, 0.0)
        for source in reversed(candidates):  # the first source with mass off the label wins
            weight = np.where(others, np.nan_to_num(source), 0.0)
            has_mass = weight.sum(axis=1) > 1e-12
            spread[has_mass] = weight[has_mass]
        spread /= spread.sum(axis=1, keepdims=True)
        capped = (1.0 - UNSURE_LABEL_MASS) * spread
        capped[np.arange(rows.size), labels[rows]] = UNSURE_LABEL_MASS
        out[rows] = capped
    return out


def target_matrix(table: pd.DataFrame, classes: list[str]) -> np.ndarray | None:
    """(N, m) the table's ``target_<class>`` columns, or None when it has none."""
    cols = [f"{TARGET_PREFIX}{c}" for c in classes]
    if not any(c in table for c in cols):
        return None
    missing = [c for c in cols if c not in table]
    if missing:
        raise DatasetError(f"soft-label targets lack columns {missing}")
    return table[cols].to_numpy(np.float64)


def _distribution_columns(frame: pd.DataFrame, classes: list[str]) -> list[str] | None:
    """The columns of ``frame`` holding a distribution over ``classes``: ``d_<class>`` (a ULDL
    Studio export), ``soft_<class>``, ``p_<class>`` or the bare class names."""
    for prefix in ("d_", "soft_", "p_", ""):
        found = {}
        for col in frame.columns:
            name = str(col)
            if prefix and not name.startswith(prefix):
                continue
            try:
                found[canonical_name(name[len(prefix):])] = col
            except Exception:  # noqa: BLE001 - not a class column
                continue
        if all(c in found for c in classes):
            return [found[c] for c in classes]
    return None


def join_soft_labels(table: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """``table`` with ``target_<class>`` columns from a soft-label CSV, joined on ``sample_id``
    (or, when the file has none or no id matches, on ``path``). Rows the file lacks keep the
    one-hot label (NaN targets) and are counted in a warning; each row is renormalised."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype={"sample_id": str, "path": str}, keep_default_na=True)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such soft-label file") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line
        raise DatasetError(f"{path}: unreadable soft-label file ({exc})") from exc
    classes = [canonical_name(c) for c in classes_of(table)]
    cols = _distribution_columns(frame, classes)
    if cols is None:
        raise DatasetError(f"{path}: no columns for the classes {', '.join(classes)} "
                           "(expected d_<class>, soft_<class>, p_<class> or the class names)")
    values = frame[cols].to_numpy(np.float64)
    bad = ~np.isfinite(values).all(1) | (values < 0).any(1) | (values.sum(1) <= 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"{path}: row {row + 1}: the soft label is not a distribution ({values[row].tolist()})")
    values = values / values.sum(1, keepdims=True)
    matched = None
    for key in ("sample_id", "path"):
        if key in frame and key in table:
            lookup = pd.Series(np.arange(len(frame)), index=frame[key].astype(str))
            lookup = lookup[~lookup.index.duplicated()]
            pos = lookup.reindex(table[key].astype(str)).to_numpy()
            if np.isfinite(pos).any():
                matched = pos
                break
    if matched is None:
        raise DatasetError(f"{path}: no row matches the dataset by sample_id or path")
    out = table.copy()
    out.attrs = dict(table.attrs)
    hit = np.isfinite(matched)
    targets = np.full((len(table), len(classes)), np.nan)
    targets[hit] = values[matched[hit].astype(np.int64)]
    for j, c in enumerate(classes_of(table)):
        out[f"{TARGET_PREFIX}{c}"] = targets[:, j]
    train_missing = int((~hit & (table["split"].to_numpy() == "train")).sum())
    if train_missing:
        warnings.warn(f"{path}: {train_missing} training samples have no soft label there; "
                      "they learn their one-hot label")
    return out
