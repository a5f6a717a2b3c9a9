"""Valence-arousal providers: where each sample's point a_i in V-A space comes from (docs/method.md, step 1).

One interface (``VAProvider``): ``points(table, probs=None) -> (N, 2)`` float64 in [-1, 1].

- ``columns``: the dataset's own ``valence``/``arousal`` columns (e.g. AffectNet, the demo).
- ``circumplex``: a_i = Σ_j p_ij · centroid_j, with p the class probabilities of a short
  cross-entropy warm-up and the centroid table of ``core.classes.VA_CENTROIDS`` (overridable
  with ``TrainConfig.va_centroids``). ``temperature`` < 1 sharpens p first (p^(1/T),
  renormalised): a warm-up model after one epoch is under-confident, and averaging its flat
  probabilities pulls every point towards the centre, where fear, surprise and anger overlap
  (bench/RESULTS_ferplus.md). T = 1 is the plain published projection.
- ``auto``: ``columns`` when every row has finite valence and arousal, else ``circumplex``.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

from uldl_studio.core.classes import centroid_matrix
from uldl_studio.core.table import DatasetError, classes_of, has_valence_arousal

PROVIDERS = ("auto", "columns", "circumplex")


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


def resolve_provider(name: str, table: pd.DataFrame, *, centroids=None, temperature: float = 1.0) -> VAProvider:
    """The provider for ``--va name`` on ``table`` (``auto`` decided here)."""
    if name == "auto":
        name = "columns" if has_valence_arousal(table) else "circumplex"
    if name == "columns":
        return ColumnsVA()
    if name == "circumplex":
        return CircumplexVA(centroids, temperature)
    raise ValueError(f"unknown V-A provider {name!r}; expected one of {PROVIDERS}")
