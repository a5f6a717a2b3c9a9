"""Evaluation metrics: accuracy, the six label-distribution-learning (LDL) measures, AUROC.

Numpy, vectorised over rows; AUROC is scikit-learn's. The LDL measures follow Geng, "Label
Distribution Learning" (IEEE TKDE 28(7), 2016, Table 2): four distances (lower is better) — Kullback-Leibler,
Chebyshev, Clark, Canberra — and two similarities (higher is better) — cosine, intersection.

Every LDL function takes ``p`` (truth) and ``q`` (prediction), each an ``(n, m)`` array of
distributions (or one ``(m,)`` distribution, treated as a single row), and returns the mean
over rows as a float, or with ``per_row=True`` the ``(n,)`` array of row values.

Zeros are handled the way the measures are meant: a term whose numerator and denominator are
both 0 (``p_j = q_j = 0`` in Clark and Canberra, ``p_j = 0`` in KL) contributes 0.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from sklearn.metrics import roc_auc_score

# name -> True when a lower value is better (a distance), False for a similarity.
LOWER_IS_BETTER: dict[str, bool] = {
    "kl": True,
    "chebyshev": True,
    "clark": True,
    "canberra": True,
    "cosine": False,
    "intersection": False,
}


# ----------------------------------------------------------------------------- hard labels
def accuracy(y_true, y_pred) -> float:
    """Fraction of rows where ``y_pred == y_true`` (nan for empty input)."""
    y_true, y_pred = _labels_pair(y_true, y_pred)
    if y_true.size == 0:
        return float("nan")
    return float(np.mean(y_true == y_pred))


def per_class_accuracy(y_true, y_pred, n_classes: int) -> np.ndarray:
    """(n_classes,) recall of each class; nan for a class absent from ``y_true``."""
    y_true, y_pred = _labels_pair(y_true, y_pred)
    support = np.bincount(y_true, minlength=n_classes)[:n_classes].astype(np.float64)
    correct = np.bincount(y_true[y_true == y_pred], minlength=n_classes)[:n_classes].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, correct / np.maximum(support, 1), np.nan)


def mean_class_accuracy(y_true, y_pred, n_classes: int) -> float:
    """Mean of the per-class accuracies over the classes present in ``y_true``.

    Classes with no true sample are left out of the mean (their recall is undefined);
    nan when ``y_true`` is empty.
    """
    recalls = per_class_accuracy(y_true, y_pred, n_classes)
    if np.all(np.isnan(recalls)):
        return float("nan")
    return float(np.nanmean(recalls))


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts; rows are true classes, columns predicted classes."""
    y_true, y_pred = _labels_pair(y_true, y_pred)
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat[: n_classes * n_classes].reshape(n_classes, n_classes)


def _labels_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).astype(np.int64).ravel()
    y_pred = np.asarray(y_pred).astype(np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    if y_true.size and (y_true.min() < 0 or y_pred.min() < 0):
        raise ValueError("labels must be non-negative class indices")
    return y_true, y_pred


# ----------------------------------------------------------------------------- LDL measures
def _pair(p, q) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.ndim == 1:
        p = p[None, :]
    if q.ndim == 1:
        q = q[None, :]
    if p.ndim != 2 or p.shape != q.shape:
        raise ValueError(f"p and q must be (n, m) arrays of the same shape, got {p.shape} and {q.shape}")
    return p, q


def _reduce(rows: np.ndarray, per_row: bool):
    if per_row:
        return rows
    return float(rows.mean()) if rows.size else float("nan")


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den == 0 (the 0/0 terms of Clark and Canberra)."""
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den > 0)
    return out


def kl_divergence(p, q, eps: float = 1e-12, *, per_row: bool = False):
    """KL(p || q) = Σ_j p_j log(p_j / q_j); terms with p_j = 0 are 0, q is floored at ``eps``.

    Rows are clipped at 0 from below (flooring q can leave a -1e-12 rounding residue).
    """
    p, q = _pair(p, q)
    q_safe = np.maximum(q, eps)
    log_ratio = np.zeros_like(p)
    positive = p > 0
    log_ratio[positive] = np.log(p[positive]) - np.log(q_safe[positive])
    rows = np.maximum((p * log_ratio).sum(axis=1), 0.0)
    return _reduce(rows, per_row)


def chebyshev(p, q, *, per_row: bool = False):
    """max_j |p_j - q_j|."""
    p, q = _pair(p, q)
    return _reduce(np.abs(p - q).max(axis=1), per_row)


def clark(p, q, *, per_row: bool = False):
    """sqrt(Σ_j (p_j - q_j)² / (p_j + q_j)²); at most sqrt(m) for non-negative inputs."""
    p, q = _pair(p, q)
    terms = _safe_ratio((p - q) ** 2, (p + q) ** 2)
    return _reduce(np.sqrt(terms.sum(axis=1)), per_row)


def canberra(p, q, *, per_row: bool = False):
    """Σ_j |p_j - q_j| / (p_j + q_j); at most m for non-negative inputs."""
    p, q = _pair(p, q)
    terms = _safe_ratio(np.abs(p - q), p + q)
    return _reduce(terms.sum(axis=1), per_row)


def cosine(p, q, *, per_row: bool = False):
    """Cosine similarity p·q / (|p| |q|); 0 for a row where either vector is all zeros."""
    p, q = _pair(p, q)
    norms = np.linalg.norm(p, axis=1) * np.linalg.norm(q, axis=1)
    rows = _safe_ratio(np.einsum("ij,ij->i", p, q), norms)
    return _reduce(np.clip(rows, -1.0, 1.0), per_row)


def intersection(p, q, *, per_row: bool = False):
    """Σ_j min(p_j, q_j); 1 - intersection is half the L1 distance for distributions."""
    p, q = _pair(p, q)
    return _reduce(np.minimum(p, q).sum(axis=1), per_row)


LDL_METRICS: dict[str, Callable] = {
    "kl": kl_divergence,
    "chebyshev": chebyshev,
    "clark": clark,
    "canberra": canberra,
    "cosine": cosine,
    "intersection": intersection,
}


def ldl_metrics(p, q) -> dict[str, float]:
    """All six LDL measures (means over rows), keyed as in ``LDL_METRICS``."""
    p, q = _pair(p, q)
    return {name: fn(p, q) for name, fn in LDL_METRICS.items()}


# ----------------------------------------------------------------------------- AUROC
def auroc(scores, is_positive) -> float:
    """Area under the ROC curve of ``scores`` for separating positives from negatives.

    ``sklearn.metrics.roc_auc_score(is_positive, scores)`` (ties count as half); nan when
    either class is empty, ValueError for nan or infinite scores.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positive = np.asarray(is_positive).astype(bool).ravel()
    if scores.shape != positive.shape:
        raise ValueError(f"{scores.size} scores but {positive.size} positive flags")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain nan or inf")
    if positive.all() or not positive.any():  # roc_auc_score raises: AUROC is undefined
        return float("nan")
    return float(roc_auc_score(positive, scores))


def lambda_auroc(lambdas, given_labels, reference_labels) -> float:
    """AUROC of λ for flagging samples whose given label differs from the reference label.

    ``reference_labels`` is an (n,) array of class indices (e.g. the pre-noise label, the crowd
    majority) or an (n, m) reference distribution, whose argmax is then used.
    nan when every given label agrees with the reference (or none does).
    """
    reference = np.asarray(reference_labels)
    if reference.ndim == 2:
        reference = reference.argmax(axis=1)
    given = np.asarray(given_labels).astype(np.int64).ravel()
    reference = reference.astype(np.int64).ravel()
    if given.shape != reference.shape:
        raise ValueError(f"{given.size} given labels but {reference.size} reference labels")
    return auroc(lambdas, given != reference)


# ----------------------------------------------------------------------------- summary
def summarize(
    probs,
    given_labels=None,
    *,
    reference=None,
    true_labels=None,
    lambdas=None,
    n_classes: int | None = None,
) -> dict[str, float]:
    """A flat dict of the metrics that the inputs allow.

    probs: (n, m) predicted distributions. true_labels: (n,) labels to score accuracy against;
    when omitted, the argmax of ``reference`` (if given) else ``given_labels``.
    reference: (n, m) reference distributions → ``kl``, ``chebyshev``… against ``probs``.
    lambdas + given_labels + a reference (``true_labels`` or ``reference``) → ``lambda_auroc``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (n, m), got shape {probs.shape}")
    m = probs.shape[1] if n_classes is None else n_classes
    reference_dist = None if reference is None else np.asarray(reference, dtype=np.float64)
    if true_labels is None:
        if reference_dist is not None:
            true_labels = reference_dist.argmax(axis=1)
        elif given_labels is not None:
            true_labels = given_labels
    out: dict[str, float] = {"n": float(probs.shape[0])}
    if true_labels is not None:
        predicted = probs.argmax(axis=1)
        out["accuracy"] = accuracy(true_labels, predicted)
        out["mean_class_accuracy"] = mean_class_accuracy(true_labels, predicted, m)
    if reference_dist is not None:
        out.update(ldl_metrics(reference_dist, probs))
    if lambdas is not None and given_labels is not None and true_labels is not None:
        out["lambda_auroc"] = lambda_auroc(lambdas, given_labels, true_labels)
    return out
