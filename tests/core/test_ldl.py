"""core.ldl: every LDLVA equation against hand-computed values, plus property tests."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from uldl_studio.core.labels import ldl

pytestmark = pytest.mark.timeout(120)
FLOATS = dict(allow_nan=False, allow_infinity=False)


# ----------------------------------------------------------------------------- hand-computed
def test_similarity_l2_hand_values():
    a_i = torch.tensor([[0.0, 0.0]])
    a_k = torch.tensor([[[0.0, 0.0], [0.3, 0.4], [1.0, 0.0]]])  # distances 0, 0.5, 1
    s = ldl.local_similarity(a_i, a_k, delta=0.5, kind="l2")
    # exp(-0/0.25) = 1, exp(-0.25/0.25) = e^-1, exp(-1/0.25) = e^-4
    assert torch.allclose(s, torch.tensor([[1.0, math.exp(-1), math.exp(-4)]]))


def test_similarity_l1_published_scale():
    a_i = torch.tensor([[0.1, -0.2]])
    a_k = torch.tensor([[[0.4, 0.2]]])  # |0.3| + |0.4| = 0.7
    s = ldl.local_similarity(a_i, a_k, kind="l1")
    assert torch.allclose(s, torch.tensor([[math.exp(-0.7 / 0.5)]]))
    # delta does not matter for l1
    assert torch.allclose(s, ldl.local_similarity(a_i, a_k, delta=9.0, kind="l1"))


def test_similarity_rejects_bad_kind_and_delta():
    with pytest.raises(ValueError):
        ldl.local_similarity(torch.zeros(1, 2), torch.zeros(1, 1, 2), kind="cos")
    with pytest.raises(ValueError):
        ldl.local_similarity(torch.zeros(1, 2), torch.zeros(1, 1, 2), delta=0.0)


def test_contribution_and_aggregation_hand_values():
    zeta = torch.tensor([[0.5, 1.0]])
    s = torch.tensor([[0.4, 0.2]])
    c = ldl.contribution_degrees(zeta, s)
    assert torch.allclose(c, torch.tensor([[0.2, 0.2]]))
    f = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]])
    d_tilde = ldl.aggregate_distribution(torch.tensor([[0.3, 0.1]]), f)
    # (0.3*[1,0,0] + 0.1*[0,.5,.5]) / 0.4 = [0.75, 0.125, 0.125]
    assert torch.allclose(d_tilde, torch.tensor([[0.75, 0.125, 0.125]]))


def test_zero_contribution_falls_back_to_uniform_mean():
    f = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]])
    d_tilde = ldl.aggregate_distribution(torch.zeros(1, 3), f)
    assert torch.allclose(d_tilde, torch.tensor([[0.5, 0.5]]))
    assert torch.isfinite(d_tilde).all()


def test_target_hand_values():
    onehot = torch.tensor([[0.0, 1.0, 0.0]])
    d_tilde = torch.tensor([[0.2, 0.2, 0.6]])
    d = ldl.target_distribution(onehot, torch.tensor([0.25]), d_tilde)
    # 0.75*[0,1,0] + 0.25*[.2,.2,.6] = [0.05, 0.8, 0.15]
    assert torch.allclose(d, torch.tensor([[0.05, 0.8, 0.15]]))


def test_soft_cross_entropy_hand_value_and_equals_ce_for_onehot():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # softmax = [0.25, 0.75]
    target = torch.tensor([[0.5, 0.5]])
    expected = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert ldl.soft_cross_entropy(target, logits).item() == pytest.approx(expected)
    logits = torch.randn(5, 4)
    labels = torch.tensor([0, 3, 1, 2, 2])
    onehot = torch.nn.functional.one_hot(labels, 4).float()
    assert torch.allclose(ldl.soft_cross_entropy(onehot, logits), torch.nn.functional.cross_entropy(logits, labels))
    assert ldl.soft_cross_entropy(onehot, logits, reduction="none").shape == (5,)


def test_discriminative_loss_hand_value():
    features = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 1])
    centres = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    lam = torch.tensor([0.5, 0.0])
    # pull: ½(0.5·1 + 1·4) = 2.25; push: 2 ordered pairs, distance 0 → 2·exp(0) = 2
    loss = ldl.discriminative_loss(features, labels, lam, centres)
    assert loss.item() == pytest.approx(4.25)
    # mean option divides the pull term only: 2.25/2 + 2
    assert ldl.discriminative_loss(features, labels, lam, centres, reduction="mean").item() == pytest.approx(3.125)
    # push with separated centres: ||μ0-μ1||² = 4, √V = √2
    centres = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    push = 2 * math.exp(-4 / math.sqrt(2))
    pull = 0.5 * (0.5 * 1.0 + 1.0 * (4 + 4))
    assert ldl.discriminative_loss(features, labels, lam, centres).item() == pytest.approx(pull + push, rel=1e-6)


def test_update_centres_center_loss_rule():
    centres = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    features = torch.tensor([[2.0, 0.0], [4.0, 0.0]])
    labels = torch.tensor([0, 0])
    new = ldl.update_centres(centres, features, labels, alpha=0.5)
    # Δμ0 = Σ(μ0 - v)/(1+2) = (-6, 0)/3 = (-2, 0); μ0 ← μ0 - 0.5Δ = (1, 0); class 1 unseen: unchanged
    assert torch.allclose(new, torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    weighted = ldl.update_centres(centres, features, labels, weights=torch.tensor([1.0, 0.0]), alpha=1.0)
    # Δμ0 = (0-2)/(1+1) = -1 → μ0 = (1, 0)
    assert torch.allclose(weighted[0], torch.tensor([1.0, 0.0]))
    # the separation step moves coincident-ish centres apart
    close = torch.tensor([[0.0, 0.0], [0.1, 0.0]])
    apart = ldl.update_centres(close, torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), alpha=0.5,
                               separation_lr=0.1)
    assert (apart[1, 0] - apart[0, 0]) > 0.1


def test_accepts_numpy():
    s = ldl.local_similarity(np.zeros((2, 2)), np.ones((2, 3, 2)), delta=1.0)
    assert s.shape == (2, 3)


# ----------------------------------------------------------------------------- properties
def _dists(b, k, m):
    return arrays(np.float64, (b, k, m), elements=st.floats(0.0, 1.0, **FLOATS)).map(
        lambda x: (x + 1e-6) / (x + 1e-6).sum(-1, keepdims=True))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_aggregate_is_a_distribution(data):
    b, k, m = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 8)), data.draw(st.integers(2, 8))
    f = data.draw(_dists(b, k, m))
    c = data.draw(arrays(np.float64, (b, k), elements=st.one_of(st.just(0.0), st.floats(0.0, 1.0, **FLOATS))))
    d = ldl.aggregate_distribution(torch.as_tensor(c), torch.as_tensor(f))
    assert torch.isfinite(d).all()
    assert (d >= 0).all()
    assert torch.allclose(d.sum(-1), torch.ones(b, dtype=d.dtype), atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_target_is_a_distribution_for_lambda_in_unit_interval(data):
    b, m = data.draw(st.integers(1, 5)), data.draw(st.integers(2, 8))
    labels = data.draw(arrays(np.int64, (b,), elements=st.integers(0, m - 1)))
    onehot = np.eye(m)[labels]
    d_tilde = data.draw(_dists(b, 1, m))[:, 0]
    lam = data.draw(arrays(np.float64, (b,), elements=st.floats(0.0, 1.0, **FLOATS)))
    d = ldl.target_distribution(torch.as_tensor(onehot), torch.as_tensor(lam), torch.as_tensor(d_tilde))
    assert (d >= -1e-12).all() and (d <= 1 + 1e-12).all()
    assert torch.allclose(d.sum(-1), torch.ones(b, dtype=d.dtype), atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_similarity_in_unit_interval_and_one_at_zero_distance(data):
    b, k = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 6))
    a_i = data.draw(arrays(np.float64, (b, 2), elements=st.floats(-1, 1, **FLOATS)))
    a_k = data.draw(arrays(np.float64, (b, k, 2), elements=st.floats(-1, 1, **FLOATS)))
    delta = data.draw(st.floats(0.05, 2.0))
    kind = data.draw(st.sampled_from(["l2", "l1"]))
    s = ldl.local_similarity(torch.as_tensor(a_i), torch.as_tensor(a_k), delta, kind)
    # (0, 1] mathematically; far points may underflow to 0.0 numerically, never below
    assert (s >= 0).all() and (s <= 1).all()
    close = ldl.local_similarity(torch.as_tensor(a_i), torch.as_tensor(a_i)[:, None, :] + 0.01 * delta, delta, kind)
    assert (close > 0).all()
    same = ldl.local_similarity(torch.as_tensor(a_i), torch.as_tensor(a_i)[:, None, :].repeat(1, k, 1), delta, kind)
    assert torch.equal(same, torch.ones_like(same))


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_losses_finite_and_non_negative(data):
    b, m, v = data.draw(st.integers(1, 5)), data.draw(st.integers(2, 6)), data.draw(st.integers(1, 8))
    logits = data.draw(arrays(np.float64, (b, m), elements=st.floats(-30, 30, **FLOATS)))
    target = data.draw(_dists(b, 1, m))[:, 0]
    ce = ldl.soft_cross_entropy(torch.as_tensor(target), torch.as_tensor(logits), reduction="none")
    assert torch.isfinite(ce).all() and (ce >= -1e-9).all()
    feats = data.draw(arrays(np.float64, (b, v), elements=st.floats(-10, 10, **FLOATS)))
    labels = data.draw(arrays(np.int64, (b,), elements=st.integers(0, m - 1)))
    lam = data.draw(arrays(np.float64, (b,), elements=st.floats(0, 1, **FLOATS)))
    centres = data.draw(arrays(np.float64, (m, v), elements=st.floats(-10, 10, **FLOATS)))
    loss = ldl.discriminative_loss(torch.as_tensor(feats), torch.as_tensor(labels), torch.as_tensor(lam),
                                   torch.as_tensor(centres))
    assert torch.isfinite(loss) and loss >= 0


def test_contribution_weights_by_hand():
    from uldl_studio.core.labels.ldl import contribution_weights

    w = contribution_weights(torch.tensor([[1e-9, 3e-9], [0.0, 0.0]], dtype=torch.float64))
    assert torch.allclose(w, torch.tensor([[0.25, 0.75], [0.5, 0.5]], dtype=torch.float64))


def test_lambda_evidence_hand_values():
    """g = CE(d̃, f) − CE(l, f): negative when f agrees with the neighbours rather than the label."""
    log_f = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]]))
    onehot = torch.tensor([[1.0, 0, 0], [1.0, 0, 0]])
    d_tilde = torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    g = ldl.lambda_evidence(d_tilde, onehot, log_f)
    expected = [-(0.5 * math.log(0.7) + 0.5 * math.log(0.2)) + math.log(0.7),
                -math.log(0.8) + math.log(0.1)]
    assert torch.allclose(g, torch.tensor(expected), atol=1e-6)
    assert g[0] > 0 > g[1]  # row 0 fits its label better, row 1 its neighbours
    # equals the difference of the two soft cross-entropies
    logits = torch.randn(4, 5)
    target, neigh = torch.softmax(torch.randn(4, 5), -1), torch.softmax(torch.randn(4, 5), -1)
    diff = ldl.soft_cross_entropy(neigh, logits, "none") - ldl.soft_cross_entropy(target, logits, "none")
    assert torch.allclose(ldl.lambda_evidence(neigh, target, torch.log_softmax(logits, -1)), diff, atol=1e-5)


def test_lambda_evidence_prob_form_hand_values():
    """prob: Σ_j (l_j − d̃_j) f_j, bounded in [−1, 1] where the ce form grows without bound as f[label] → 0."""
    f = torch.tensor([[0.7, 0.2, 0.1], [0.001, 0.989, 0.01]])
    onehot = torch.tensor([[1.0, 0, 0], [1.0, 0, 0]])
    d_tilde = torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    g = ldl.lambda_evidence(d_tilde, onehot, torch.log(f), "prob")
    expected = [0.7 - (0.5 * 0.7 + 0.5 * 0.2), 0.001 - 0.989]
    assert torch.allclose(g, torch.tensor(expected), atol=1e-6)
    ce = ldl.lambda_evidence(d_tilde, onehot, torch.log(f), "ce")
    assert float(ce[1]) == pytest.approx(math.log(0.001) - math.log(0.989), abs=1e-5)  # about -6.9
    assert g[0] > 0 > g[1] and ce[0] > 0 > ce[1]  # the same direction
    with pytest.raises(ValueError, match="unknown evidence form"):
        ldl.lambda_evidence(d_tilde, onehot, torch.log(f), "other")
