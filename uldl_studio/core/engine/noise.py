"""Seeded label-noise injection for benchmarks (``--label-noise RATE --noise-seed S``).

Only ``train`` rows are touched: valid and test keep their labels so that scores still measure
against clean labels. Exactly ``round(rate * n_train)`` train rows are chosen (uniformly, without
replacement) and each gets a label *different* from its current one, so the realised noise
rate equals ``rate`` up to rounding. ``label_original`` keeps the label before noise (when the
column already exists, from an earlier injection, it is kept as is).

Modes:

* ``symmetric``: the new label is uniform over the other m-1 classes.
* ``class_conditional``: the new label is drawn from row ``label`` of a transition matrix whose
  diagonal is ignored. Default matrix: confusions between neighbours on the circumplex — each
  class flips to its two nearest other classes in valence-arousal space
  (``classes.centroid_matrix``), with weights proportional to 1 / distance. With the default
  centroids: anger → fear/disgust, fear → anger/disgust, surprise → fear/happiness,
  happiness → surprise/neutral, sadness → contempt/disgust, neutral → contempt/sadness. ``transition``
  (m×m, non-negative) replaces it; its rows are renormalised after zeroing the diagonal.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from uldl_studio.core.classes import centroid_matrix
from uldl_studio.core.table import classes_of

MODES = ("symmetric", "class_conditional")


def circumplex_transition(classes, neighbours: int = 2) -> np.ndarray:
    """m×m flip matrix (zero diagonal, rows sum to 1): nearest V-A neighbours, weight ∝ 1/distance."""
    centres = centroid_matrix(classes)
    m = len(classes)
    dist = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=2)
    matrix = np.zeros((m, m), dtype=np.float64)
    k = min(neighbours, m - 1)
    for j in range(m):
        order = [i for i in np.argsort(dist[j], kind="stable") if i != j][:k]
        weights = 1.0 / np.maximum(dist[j, order], 1e-6)
        matrix[j, order] = weights / weights.sum()
    return matrix


def _flip_matrix(transition, m: int) -> np.ndarray:
    matrix = np.array(transition, dtype=np.float64)
    if matrix.shape != (m, m):
        raise ValueError(f"transition must be {m}x{m} (one row per class), got shape {matrix.shape}")
    if not np.isfinite(matrix).all() or (matrix < 0).any():
        raise ValueError("transition must hold finite non-negative numbers")
    np.fill_diagonal(matrix, 0.0)
    sums = matrix.sum(axis=1)
    if (sums <= 0).any():
        bad = int(np.flatnonzero(sums <= 0)[0])
        raise ValueError(f"transition row {bad} has no off-diagonal weight: class {bad} cannot be flipped")
    return matrix / sums[:, None]


def inject_label_noise(table: pd.DataFrame, rate: float, seed: int = 0, mode: str = "symmetric",
                       transition=None) -> pd.DataFrame:
    """A copy of ``table`` with ``rate`` of the train labels flipped; ``label_original`` added."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    rate = float(rate)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"noise rate must be in [0, 1], got {rate}")
    classes = classes_of(table)
    m = len(classes)
    out = table.copy()
    out.attrs = dict(table.attrs)
    labels = out["label"].to_numpy(np.int64).copy()
    if "label_original" not in out:
        out["label_original"] = labels.copy()
    if m < 2 or rate == 0.0:
        return out
    if mode == "symmetric":
        matrix = (np.ones((m, m)) - np.eye(m)) / (m - 1)
    else:
        matrix = _flip_matrix(circumplex_transition(classes) if transition is None else transition, m)

    rng = np.random.default_rng(seed)
    train_rows = np.flatnonzero((out["split"] == "train").to_numpy())
    n_flip = int(round(rate * len(train_rows)))
    chosen = np.sort(rng.choice(train_rows, size=n_flip, replace=False))
    cum = np.cumsum(matrix[labels[chosen]], axis=1)
    u = rng.random(n_flip)[:, None] * cum[:, -1:]
    new = np.minimum((u >= cum).sum(axis=1), m - 1)
    # Rounding could only land on a zero-weight class at the very end: fall back to the argmax.
    same = new == labels[chosen]
    new[same] = matrix[labels[chosen][same]].argmax(axis=1)
    labels[chosen] = new
    out["label"] = labels
    return out
