"""The exported soft labels: the best label distribution a run can give without crowd votes.

Ingredients, all from the run itself:

- the constructed distribution d (LDLVA: (1 − λ) l + λ d̃; a plain cross-entropy run: the
  one-hot given label) for training rows, the prediction p for the others;
- the epoch-averaged prediction p̄ (``pavg_<class>``), calibrated with one temperature T fitted
  on the *valid* split's given labels. The negative log-likelihood of one annotator's label is
  a proper score for the distribution of annotators' labels, so the temperature that best
  predicts held-out given labels makes p̄ an estimate of that distribution; no crowd column is
  ever read (a user's dataset has none).

soft = (1 − w) · d + w · temper(p̄, T), with w = ``mix`` (``TrainConfig.soft_label_mix``).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

#: temperatures searched (log-uniform bounds)
T_RANGE = (0.2, 10.0)


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


def build_soft_labels(constructed: np.ndarray, mean_probs: np.ndarray, labels: np.ndarray,
                      calibration_rows: np.ndarray, mix: float) -> tuple[np.ndarray, float]:
    """(soft labels (N, m), the fitted temperature).

    ``constructed``: (N, m) d (train rows) / p (other rows); ``mean_probs``: (N, m) p̄;
    ``labels``: (N,) given labels; ``calibration_rows``: the rows T is fitted on (the valid
    split; when empty, T = 1); ``mix``: the weight w of the calibrated p̄.
    """
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix must be in [0, 1], got {mix}")
    rows = np.asarray(calibration_rows, dtype=np.int64)
    temperature = fit_temperature(mean_probs[rows], labels[rows]) if rows.size else 1.0
    soft = (1.0 - mix) * np.asarray(constructed, np.float64) + mix * temper(mean_probs, temperature)
    return soft / soft.sum(axis=1, keepdims=True), temperature
