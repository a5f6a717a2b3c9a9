"""core.va providers and core.neighbors KNN."""
import numpy as np
import pandas as pd
import pytest

from uldl_studio.core.classes import centroid_matrix
from uldl_studio.core.engine.neighbors import knn
from uldl_studio.core.table import DatasetError, make_table
from uldl_studio.core.engine.va import CircumplexVA, ColumnsVA, circumplex_points, resolve_provider, sharpen

pytestmark = pytest.mark.timeout(60)
CLASSES = ["neutral", "happiness", "sadness"]


def _table(valence=None, arousal=None, n=3):
    frame = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "path": ["p"] * n, "split": ["train"] * n,
                          "label": [0, 1, 2][:n]})
    if valence is not None:
        frame["valence"], frame["arousal"] = valence, arousal
    return make_table(frame, CLASSES, "/root", "test")


def test_columns_provider_and_auto():
    table = _table([0.1, 0.2, -1.5], [0.0, 0.5, 0.3])
    assert resolve_provider("auto", table).name == "columns"
    points = ColumnsVA().points(table)
    assert np.allclose(points, [[0.1, 0.0], [0.2, 0.5], [-1.0, 0.3]])  # clipped to [-1, 1]


def test_auto_falls_back_to_circumplex_and_columns_errors_clearly():
    partial = _table([0.1, np.nan, 0.0], [0.0, 0.5, 0.3])
    assert resolve_provider("auto", partial).name == "circumplex"
    assert resolve_provider("auto", _table()).name == "circumplex"
    with pytest.raises(DatasetError, match="circumplex"):
        ColumnsVA().points(partial)


def test_circumplex_hand_values():
    probs = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.25, 0.75]])
    c = centroid_matrix(CLASSES)
    points = CircumplexVA().points(_table(), probs)
    assert np.allclose(points[0], c[0])
    assert np.allclose(points[1], 0.5 * c[0] + 0.5 * c[1])
    assert np.allclose(points[2], 0.25 * c[1] + 0.75 * c[2])
    override = circumplex_points(probs[:1], CLASSES, {"neutral": (0.3, -0.3)})
    assert np.allclose(override, [[0.3, -0.3]])


def test_sharpening_moves_towards_argmax():
    probs = np.array([[0.5, 0.3, 0.2]])
    sharp = sharpen(probs, 0.5)  # p² renormalised
    assert np.allclose(sharp, np.array([[0.25, 0.09, 0.04]]) / 0.38)
    assert np.allclose(sharpen(probs, 1.0), probs)
    with pytest.raises(ValueError):
        CircumplexVA(temperature=0)


def test_knn_excludes_self_and_orders_by_distance():
    points = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.0, 0.5]])
    idx, dist = knn(points, k=2)
    assert idx.shape == (4, 2)
    assert idx[0].tolist() == [3, 1] and np.allclose(dist[0], [0.5, 1.0])
    assert all(i not in row for i, row in enumerate(idx))
    assert (np.diff(dist, axis=1) >= 0).all()


def test_knn_duplicates_caps_and_errors():
    points = np.zeros((5, 2))  # all identical: self must still be excluded
    idx, dist = knn(points, k=8)
    assert idx.shape == (5, 4)  # capped at N-1
    assert all(i not in row for i, row in enumerate(idx))
    assert np.allclose(dist, 0)
    assert knn(np.zeros((1, 2)), k=3)[0].shape == (1, 0)
    with pytest.raises(ValueError, match="NaN"):
        knn(np.array([[0.0, np.nan], [1.0, 1.0]]))
