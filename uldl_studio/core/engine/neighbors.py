"""K nearest neighbours of each training sample in valence-arousal space (docs/method.md, step 1), or
in the backbone's feature space (``TrainConfig.neighbor_space="features"``).

Computed with scikit-learn between epochs (after the warm-up and, with
``TrainConfig.neighbor_refresh``, after every epoch), never inside the batch loop.
"""
from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors


def knn(points: np.ndarray, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Indices (N, K) int64 and Euclidean distances (N, K) float64 of each point's K nearest
    *other* points, nearest first. A sample is never its own neighbour, even when duplicates
    of its point exist. K is capped at N - 1; N < 2 → arrays with K = 0 columns.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2:
        raise ValueError(f"points must be (N, D), got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("points contain NaN or infinite values")
    n = len(points)
    k = int(min(k, max(n - 1, 0)))
    if k == 0:
        return np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float64)
    # trees win in V-A's 2-D; for feature vectors brute force (BLAS) is faster than a tree
    algorithm = "auto" if points.shape[1] <= 3 else "brute"
    search = NearestNeighbors(n_neighbors=k + 1, algorithm=algorithm).fit(points)
    distances, indices = search.kneighbors(points)
    # Remove self by index (with duplicates the self hit need not come first).
    is_self = indices == np.arange(n)[:, None]
    # Rows where self was not found among k+1 (many exact duplicates): drop the last column.
    no_self = ~is_self.any(axis=1)
    is_self[no_self, -1] = True
    keep = ~is_self
    out_idx = indices[keep].reshape(n, k).astype(np.int64)
    out_dist = distances[keep].reshape(n, k)
    return out_idx, out_dist
