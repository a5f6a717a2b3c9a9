"""Valence-arousal providers: where each sample's point a_i in V-A space comes from (docs/method.md, step 1).

One interface (``VAProvider``): ``points(table, probs=None) -> (N, 2)`` float64 in [-1, 1].

- ``columns``: the dataset's own ``valence``/``arousal`` columns (e.g. AffectNet, the demo).
- ``circumplex``: a_i = Σ_j p_ij · centroid_j, with p the class probabilities of a short
  cross-entropy warm-up and the centroid table of ``core.classes.VA_CENTROIDS`` (overridable
  with ``TrainConfig.va_centroids``). ``temperature`` < 1 sharpens p first (p^(1/T),
  renormalised): a warm-up model after one epoch is under-confident, and averaging its flat
  probabilities pulls every point towards the centre, where fear, surprise and anger overlap
  (bench/RESULTS_ferplus.md). T = 1 is the plain published projection.
  The points lie inside the polygon of the centroids of the classes (a convex combination of
  them): with confident predictions they pile up on its corners and edges (docs/method.md,
  "Where the V-A points come from").
- ``head``: another run's V-A regression head (``TrainConfig.va_from``) applied to this
  dataset's images. The points are computed before training by the prediction path
  (``core.runs.predict.head_placement``), which adds them to the table as the
  :data:`HEAD_COLUMNS`; ``fit`` takes them from there.
- ``auto``: ``columns`` when every row has finite valence and arousal, else ``circumplex``.

:data:`PLACEMENT_LABELS` and :func:`placement_label` name the placement a run shows (the map's
axes say it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from uldl_studio.core.classes import centroid_matrix
from uldl_studio.core.table import DatasetError, classes_of, has_valence_arousal

PROVIDERS = ("auto", "columns", "circumplex", "head")
#: the table columns that carry another run's V-A head points for ``--va head`` (dropped by ``fit``)
HEAD_COLUMNS = ("va_from_valence", "va_from_arousal")
#: a run's own V-A head predictions in samples.csv and in a prediction file
PRED_COLUMNS = ("va_pred_valence", "va_pred_arousal")
PLACEMENT_LABELS = {"columns": "dataset columns", "circumplex": "circumplex projection", "head": "V-A head"}


class VAProvider(Protocol):
    name: str
    needs_warmup: bool

    def points(self, table: pd.DataFrame, probs: np.ndarray | None = None) -> np.ndarray: ...


class ColumnsVA:
    name = "columns"
    needs_warmup = False

    def points(self, table: pd.DataFrame, probs: np.ndarray | None = None) -> np.ndarray:
        if not has_valence_arousal(table):
            root = table.attrs.get("root", "the dataset")
            raise DatasetError(f"{root}: --va columns needs finite valence and arousal on every row; "
                               "use --va circumplex (or auto)")
        return np.clip(table[["valence", "arousal"]].to_numpy(np.float64), -1.0, 1.0)


class CircumplexVA:
    name = "circumplex"
    needs_warmup = True

    def __init__(self, centroids: dict[str, tuple[float, float]] | None = None, temperature: float = 1.0):
        if temperature <= 0:
            raise ValueError(f"va temperature must be > 0, got {temperature}")
        self.centroids = centroids
        self.temperature = float(temperature)

    def points(self, table: pd.DataFrame, probs: np.ndarray | None = None) -> np.ndarray:
        if probs is None:
            raise ValueError("the circumplex provider needs class probabilities (run the warm-up first)")
        return circumplex_points(probs, classes_of(table), self.centroids, self.temperature)


class HeadVA:
    """Points given by another run's V-A head (``points``, (N, 2) in the table's row order)."""

    name = "head"
    needs_warmup = False

    def __init__(self, points: np.ndarray | None, source: str | None = None):
        self.source = source
        self._points = None if points is None else np.asarray(points, np.float64)

    def points(self, table: pd.DataFrame, probs: np.ndarray | None = None) -> np.ndarray:
        if self._points is None:
            raise DatasetError(f"--va-from {self.source}: the V-A head's points were not computed for this table")
        if len(self._points) != len(table):
            raise ValueError(f"V-A head points for {len(self._points)} rows, the table has {len(table)}")
        if not np.isfinite(self._points).all():
            bad = int((~np.isfinite(self._points).all(1)).sum())
            raise DatasetError(f"--va-from {self.source}: the V-A head placed no point for {bad} rows")
        return np.clip(self._points, -1.0, 1.0)


def placement_label(provider: str | None, va_from: str | None = None) -> str | None:
    """How a run placed its samples in V-A space, in words: "dataset columns", "V-A head of
    R1", "circumplex projection" (None when unknown)."""
    if provider not in PLACEMENT_LABELS:
        return None
    if provider == "head" and va_from:
        return f"V-A head of {Path(str(va_from)).name or va_from}"
    return PLACEMENT_LABELS[provider]


def run_placement(config, history: pd.DataFrame | None) -> str | None:
    """The placement a run shows, in words (``placement_label``): ``fit`` records the provider
    it resolved in history.csv (``va_placement``); a run written before that says it only when
    its config named one (``auto`` is unknown: None)."""
    name = None
    if history is not None and "va_placement" in history and len(history):
        value = history["va_placement"].iloc[-1]
        name = value if isinstance(value, str) else None
    if name is None and config.va != "auto":
        name = config.va
    return placement_label(name, getattr(config, "va_from", None))


def dataset_placement(table: pd.DataFrame | None) -> str | None:
    """The placement of a dataset shown without a run: its own columns, when it has them."""
    return "dataset columns" if table is not None and has_valence_arousal(table) else None


def placement_of(run, table: pd.DataFrame | None = None) -> str | None:
    """The placement the V-A map of an open run (``core.engine.run.Run``) or, without one, of
    the dataset ``table`` shows, in words (None when unknown)."""
    if run is None:
        return dataset_placement(table)
    try:
        history = run.history()
    except (OSError, ValueError):
        history = None
    return run_placement(run.config, history)


def va_errors(pred: np.ndarray, target: np.ndarray, baseline: np.ndarray | None = None) -> dict[str, float]:
    """Errors of V-A points ``pred`` against ``target`` ((N, 2); rows with a non-finite target
    are left out): per axis RMSE, MAE and the concordance correlation coefficient (CCC, Lin
    1989); with ``baseline`` (2,), e.g. the training rows' mean, also the RMSE of predicting
    it for every row (``rmse_mean_*``). Empty when no row has a finite target."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    keep = np.isfinite(target).all(1) & np.isfinite(pred).all(1)
    if not keep.any():
        return {}
    pred, target = pred[keep], target[keep]
    out: dict[str, float] = {"n": float(keep.sum())}
    for j, axis in enumerate(("valence", "arousal")):
        p, t = pred[:, j], target[:, j]
        out[f"rmse_{axis}"] = float(np.sqrt(np.mean((p - t) ** 2)))
        out[f"mae_{axis}"] = float(np.mean(np.abs(p - t)))
        denominator = p.var() + t.var() + (p.mean() - t.mean()) ** 2
        out[f"ccc_{axis}"] = float(2 * np.mean((p - p.mean()) * (t - t.mean())) / denominator) \
            if denominator > 0 else float("nan")
        if baseline is not None:
            out[f"rmse_mean_{axis}"] = float(np.sqrt(np.mean((float(baseline[j]) - t) ** 2)))
    return out


def sharpen(probs: np.ndarray, temperature: float) -> np.ndarray:
    """p^(1/T) / Σ p^(1/T), computed in log space (stable for tiny p)."""
    probs = np.asarray(probs, dtype=np.float64)
    if temperature == 1.0:
        return probs / probs.sum(1, keepdims=True)
    logits = np.log(np.clip(probs, 1e-30, None)) / temperature
    logits -= logits.max(1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(1, keepdims=True)


def circumplex_points(probs: np.ndarray, classes, centroids=None, temperature: float = 1.0) -> np.ndarray:
    """(N, m) probabilities → (N, 2) expected V-A point under the centroid table."""
    return sharpen(probs, temperature) @ centroid_matrix(classes, centroids)


def resolve_provider(name: str, table: pd.DataFrame, *, centroids=None, temperature: float = 1.0,
                     head_points: np.ndarray | None = None, va_from: str | None = None) -> VAProvider:
    """The provider for ``--va name`` on ``table`` (``auto`` decided here); ``head``: the points
    another run's V-A head gave ``table``'s rows (``head_points``, from the run ``va_from``)."""
    if name == "head":
        return HeadVA(head_points, va_from)
    if name == "auto":
        name = "columns" if has_valence_arousal(table) else "circumplex"
    if name == "columns":
        return ColumnsVA()
    if name == "circumplex":
        return CircumplexVA(centroids, temperature)
    raise ValueError(f"unknown V-A provider {name!r}; expected one of {PROVIDERS}")
