"""core.dynamics: training dynamics over epochs and neighbour disagreement, by hand and by brute force."""
import math

import numpy as np
import pytest
import torch

from uldl_studio.core.engine.dynamics import COLUMNS, TrainingDynamics, knn_disagreement

# Five rows in a 2-D feature space; rows 0-3 are train rows, row 4 is a valid row.
FEATURES = np.array([[2.0, 0.0],      # 0, label 0 (scaled: cosine ignores the length)
                     [0.9, 0.1],      # 1, label 0
                     [0.0, 1.0],      # 2, label 1
                     [0.1, 0.9],      # 3, label 0: sits among the 1s
                     [1.0, 0.05]])    # 4, label 1 (valid): sits among the 0s
LABELS = np.array([0, 0, 1, 0, 1])
PROBS = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.5, 0.5]])
TRAIN = np.array([0, 1, 2, 3])


def test_knn_disagreement_by_hand():
    # Nearest by cosine (self excluded): 0 → 1, 3;  1 → 0, 3;  2 → 3, 1;  3 → 2, 1;  4 → 0, 1.
    # term = 0.5·[label differs] + 0.5·(1 - neighbour's p[own label]):
    #   0: (0 + 0.1) and (0 + 0.3)        → 0.2
    #   1: (0 + 0.05) and (0 + 0.3)       → 0.175
    #   2: (0.5 + 0.2) and (0.5 + 0.4)    → 0.8
    #   3: (0.5 + 0.35) and (0 + 0.1)     → 0.475
    #   4: (0.5 + 0.45) and (0.5 + 0.4)   → 0.925
    out = knn_disagreement(FEATURES, LABELS, PROBS, TRAIN, k=2)
    assert out.dtype == np.float64
    assert out == pytest.approx([0.2, 0.175, 0.8, 0.475, 0.925], abs=1e-6)


def test_knn_disagreement_few_neighbours_and_chunks():
    # k above the number of train rows: train rows use the other 3, the valid row all 4
    out = knn_disagreement(FEATURES, LABELS, PROBS, TRAIN, k=10)
    assert out[0] == pytest.approx((0.1 + 0.3 + 0.85) / 3)
    assert out[4] == pytest.approx((0.95 + 0.9 + (0 + 0.15) + (0.5 + 0.2)) / 4)
    # one chunk per row gives the same answer
    assert np.array_equal(knn_disagreement(FEATURES, LABELS, PROBS, TRAIN, k=2, chunk_elements=1),
                          knn_disagreement(FEATURES, LABELS, PROBS, TRAIN, k=2))
    # a single train row has no neighbour itself; the other rows have it
    single = knn_disagreement(FEATURES, LABELS, PROBS, np.array([2]), k=3)
    assert math.isnan(single[2]) and np.isfinite(single[[0, 1, 3, 4]]).all()
    assert single[0] == pytest.approx(0.5 + 0.5 * (1 - 0.3))


def test_knn_disagreement_matches_brute_force():
    rng = np.random.default_rng(3)
    n, m, k = 300, 5, 7
    feats = rng.normal(size=(n, 16)).astype(np.float32)
    labels = rng.integers(0, m, n)
    probs = rng.dirichlet(np.ones(m), n)
    train = np.sort(rng.choice(n, 200, replace=False))
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    sim = unit @ unit[train].T
    sim[train, np.arange(len(train))] = -np.inf
    expected = np.empty(n)
    for i in range(n):
        nb = train[np.argsort(-sim[i], kind="stable")[:k]]
        expected[i] = np.mean(0.5 * (labels[nb] != labels[i]) + 0.5 * (1 - probs[nb, labels[i]]))
    out = knn_disagreement(torch.as_tensor(feats), labels, probs, train, k, chunk_elements=4096)
    assert out == pytest.approx(expected, abs=1e-6)
    assert ((out >= 0) & (out <= 1)).all()


def test_dynamics_two_epochs_by_hand():
    labels = np.array([0, 2, 2])
    epoch1 = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    epoch2 = np.array([[0.8, 0.1, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
    dyn = TrainingDynamics(3)
    assert np.isnan(dyn.columns()["dyn_p_given_mean"]).all()  # no epoch yet
    dyn.update(epoch1 * 2.0, labels)  # rows are renormalised, as in the p_ columns
    one = dyn.columns()
    assert one["dyn_p_given_mean"] == pytest.approx([0.6, 0.3, 0.8])
    assert one["dyn_p_given_std"] == pytest.approx([0, 0, 0], abs=1e-12)
    dyn.update(epoch2, labels)
    cols = dyn.columns()
    # p[given]: (0.6, 0.8), (0.3, 0.3), (0.8, 0.4)
    assert cols["dyn_p_given_mean"] == pytest.approx([0.7, 0.3, 0.6])
    assert cols["dyn_p_given_std"] == pytest.approx([0.1, 0.0, 0.2], abs=1e-7)
    # margin p[given] - max other: (0.3, 0.7), (-0.2, -0.3), (0.7, 0.1)
    assert cols["dyn_margin_mean"] == pytest.approx([0.5, -0.25, 0.4])
    assert set(cols) | {"knn_disagreement"} == set(COLUMNS)


def test_dynamics_state_round_trip_and_mismatch():
    dyn = TrainingDynamics(3, "rows-a")
    dyn.update(np.array([[0.6, 0.4], [0.3, 0.7], [0.5, 0.5]]), np.array([0, 0, 1]))
    saved = dyn.state_dict()
    assert all(isinstance(saved[k], torch.Tensor) for k in ("p_given_sum", "p_given_sumsq", "margin_sum"))
    again = TrainingDynamics(3, "rows-a")
    assert again.load_state_dict(saved) is None
    for name, values in dyn.columns().items():
        assert np.array_equal(values, again.columns()[name]), name
    other = TrainingDynamics(3, "rows-b")
    assert "other rows" in other.load_state_dict(saved) and other.epochs == 0
    assert "older version" in TrainingDynamics(3, "rows-a").load_state_dict(None)
