"""core.metrics: hand-computed values, identities, properties, AUROC vs scikit-learn."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from uldl_studio.core.labels import metrics as M

# p = [0.5, 0.5, 0], q = [0.25, 0.5, 0.25], worked by hand:
#   KL        = 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.5) + 0           = 0.5 ln 2
#   Chebyshev = max(0.25, 0, 0.25)                                = 0.25
#   Clark     = sqrt(0.25²/0.75² + 0 + 0.25²/0.25²) = sqrt(1/9+1)  = sqrt(10/9)
#   Canberra  = 0.25/0.75 + 0 + 0.25/0.25                         = 4/3
#   cosine    = 0.375 / (sqrt(0.5) sqrt(0.375)) = sqrt(0.75)
#   intersect = 0.25 + 0.5 + 0                                    = 0.75
P1 = np.array([0.5, 0.5, 0.0])
Q1 = np.array([0.25, 0.5, 0.25])
EXPECTED1 = {
    "kl": 0.5 * math.log(2.0),
    "chebyshev": 0.25,
    "clark": math.sqrt(10.0 / 9.0),
    "canberra": 4.0 / 3.0,
    "cosine": math.sqrt(0.75),
    "intersection": 0.75,
}
# p = [1, 0], q = [0, 1] (disjoint): KL = ln(1/eps), Chebyshev 1, Clark sqrt(2), Canberra 2,
# cosine 0, intersection 0.
P2 = np.array([1.0, 0.0])
Q2 = np.array([0.0, 1.0])
EXPECTED2 = {
    "kl": math.log(1e12),
    "chebyshev": 1.0,
    "clark": math.sqrt(2.0),
    "canberra": 2.0,
    "cosine": 0.0,
    "intersection": 0.0,
}


@pytest.mark.parametrize("name", list(M.LDL_METRICS))
def test_hand_computed_values(name):
    fn = M.LDL_METRICS[name]
    assert fn(P1, Q1) == pytest.approx(EXPECTED1[name], rel=1e-12)
    assert fn(P2, Q2) == pytest.approx(EXPECTED2[name], rel=1e-9)


def test_mean_over_rows_and_per_row():
    p = np.stack([P1, P1[::-1]])
    q = np.stack([Q1, P1[::-1]])  # second row identical
    rows = M.clark(p, q, per_row=True)
    assert rows.shape == (2,)
    assert rows == pytest.approx([math.sqrt(10.0 / 9.0), 0.0])
    assert M.clark(p, q) == pytest.approx(math.sqrt(10.0 / 9.0) / 2)
    assert isinstance(M.clark(p, q), float)
    assert M.kl_divergence(p, q, per_row=True) == pytest.approx([0.5 * math.log(2.0), 0.0])
    assert M.intersection(p, q, per_row=True) == pytest.approx([0.75, 1.0])


def test_ldl_metrics_dict():
    out = M.ldl_metrics(P1, Q1)
    assert set(out) == set(M.LDL_METRICS) == set(M.LOWER_IS_BETTER)
    for name, value in out.items():
        assert value == pytest.approx(EXPECTED1[name])


def test_zero_over_zero_terms_are_zero():
    p = np.array([[0.0, 0.0, 1.0]])
    assert M.clark(p, p) == 0.0
    assert M.canberra(p, p) == 0.0
    assert M.kl_divergence(p, p) == 0.0
    assert not np.isnan(M.clark(p, np.array([[0.0, 0.5, 0.5]])))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        M.chebyshev(np.ones((2, 3)) / 3, np.ones((2, 4)) / 4)


def test_accuracy_and_mean_class_accuracy_by_hand():
    y_true = [0, 0, 1, 1, 2]
    y_pred = [0, 1, 1, 1, 0]
    assert M.accuracy(y_true, y_pred) == pytest.approx(3 / 5)
    # recalls: class 0 1/2, class 1 2/2, class 2 0/1 → mean 0.5; absent class 3 not counted
    assert M.mean_class_accuracy(y_true, y_pred, 3) == pytest.approx(0.5)
    assert M.mean_class_accuracy(y_true, y_pred, 4) == pytest.approx(0.5)
    recalls = M.per_class_accuracy(y_true, y_pred, 4)
    assert recalls[:3] == pytest.approx([0.5, 1.0, 0.0])
    assert np.isnan(recalls[3])
    assert M.confusion_matrix(y_true, y_pred, 3).tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert math.isnan(M.accuracy([], []))


def test_auroc_by_hand():
    assert M.auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    # one tied pair (0.5) + one won pair (1) over 2 pairs
    assert M.auroc([1.0, 1.0, 2.0], [False, True, True]) == pytest.approx(0.75)
    assert M.auroc([3.0, 2.0, 1.0], [1, 0, 0]) == 1.0
    assert M.auroc([3.0, 2.0, 1.0], [0, 1, 1]) == 0.0
    assert math.isnan(M.auroc([0.1, 0.2], [1, 1]))
    assert math.isnan(M.auroc([0.1, 0.2], [0, 0]))


def test_lambda_auroc():
    lambdas = np.array([0.9, 0.8, 0.1, 0.2, 0.3])
    given = np.array([1, 2, 0, 0, 1])
    reference = np.array([0, 0, 0, 0, 1])  # first two are wrong, and have the highest λ
    assert M.lambda_auroc(lambdas, given, reference) == 1.0
    ref_dist = np.eye(3)[reference] * 0.8 + 0.2 / 3
    assert M.lambda_auroc(lambdas, given, ref_dist) == 1.0
    assert math.isnan(M.lambda_auroc(lambdas, reference, reference))


def _pairwise_auroc(scores, positive):
    """The definition: P(score of a positive > score of a negative), ties counted as half."""
    diff = scores[positive][:, None] - scores[~positive][None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def test_auroc_matches_sklearn_and_the_pair_count_with_ties():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for trial in range(30):
        n = int(rng.integers(2, 400))
        scores = rng.integers(0, 10, n).astype(float) / 10  # many ties
        if trial % 3 == 0:
            scores = rng.normal(size=n)
        positive = rng.random(n) < rng.uniform(0.05, 0.95)
        if positive.all() or not positive.any():
            continue
        value = M.auroc(scores, positive)
        assert value == pytest.approx(sklearn_metrics.roc_auc_score(positive, scores), abs=1e-12)
        assert value == pytest.approx(_pairwise_auroc(scores, positive), abs=1e-12)


def test_auroc_rejects_non_finite_scores():
    with pytest.raises(ValueError, match="nan or inf"):
        M.auroc([0.1, float("nan")], [0, 1])
    with pytest.raises(ValueError, match="2 scores but 3"):
        M.auroc([0.1, 0.2], [0, 1, 1])


def test_summarize():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    reference = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]])
    given = np.array([0, 1, 2])
    out = M.summarize(probs, given, reference=reference, lambdas=[0.1, 0.2, 0.9])
    assert out["accuracy"] == pytest.approx(2 / 3)
    assert out["lambda_auroc"] == 1.0
    assert out["intersection"] == pytest.approx(M.intersection(reference, probs))
    assert M.summarize(probs, given)["accuracy"] == 1.0  # scored against the given labels


# ----------------------------------------------------------------------------- properties
@st.composite
def distribution_pairs(draw):
    n = draw(st.integers(1, 6))
    m = draw(st.integers(2, 9))
    elements = st.one_of(st.just(0.0), st.floats(0.0, 1.0, allow_nan=False, allow_subnormal=False))
    raw = draw(arrays(np.float64, (2, n, m), elements=elements))
    raw[..., 0] += 1e-3  # never an all-zero row
    raw /= raw.sum(axis=-1, keepdims=True)
    return raw[0], raw[1]


@settings(max_examples=200, deadline=None)
@given(distribution_pairs())
def test_ldl_bounds(pair):
    p, q = pair
    m = p.shape[1]
    assert np.all(M.kl_divergence(p, q, per_row=True) >= 0)
    inter = M.intersection(p, q, per_row=True)
    assert np.all((inter >= -1e-12) & (inter <= 1 + 1e-12))
    assert np.all(M.chebyshev(p, q, per_row=True) <= 1 + 1e-12)
    assert np.all(M.clark(p, q, per_row=True) <= math.sqrt(m) + 1e-9)
    assert np.all(M.canberra(p, q, per_row=True) <= m + 1e-9)
    cos = M.cosine(p, q, per_row=True)
    assert np.all((cos >= 0) & (cos <= 1))
    # 1 - intersection is half the L1 distance for distributions
    assert inter == pytest.approx(1 - 0.5 * np.abs(p - q).sum(axis=1), abs=1e-9)
    for value in M.ldl_metrics(p, q).values():
        assert np.isfinite(value)


@settings(max_examples=100, deadline=None)
@given(distribution_pairs())
def test_identities_and_symmetry(pair):
    p, q = pair
    for fn in (M.kl_divergence, M.chebyshev, M.clark, M.canberra):
        assert fn(p, p) == pytest.approx(0.0, abs=1e-12)
    assert M.cosine(p, p) == pytest.approx(1.0)
    assert M.intersection(p, p) == pytest.approx(1.0)
    for fn in (M.chebyshev, M.clark, M.canberra, M.cosine, M.intersection):
        assert fn(p, q) == pytest.approx(fn(q, p), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=2, max_size=60))
def test_auroc_complement_and_range(rows):
    scores = np.array([r[0] for r in rows], dtype=float)
    positive = np.array([r[1] for r in rows])
    value = M.auroc(scores, positive)
    if positive.all() or not positive.any():
        assert math.isnan(value)
        return
    assert 0.0 <= value <= 1.0
    # flipping the scores flips the ranking
    assert M.auroc(-scores, positive) == pytest.approx(1.0 - value)
