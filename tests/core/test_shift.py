"""Label-shift estimation and correction (core.shift): hand-computed cases and properties."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from uldl_studio.core.runs import shift as S


def test_reweight_by_hand():
    p = np.array([[0.5, 0.5], [0.8, 0.2]])
    out = S.reweight(p, [0.5, 0.5], [0.8, 0.2])
    # row 1: (0.5·1.6, 0.5·0.4) = (0.8, 0.2); row 2: (0.8·1.6, 0.2·0.4) = (1.28, 0.08) → /1.36
    np.testing.assert_allclose(out, [[0.8, 0.2], [1.28 / 1.36, 0.08 / 1.36]])


def test_em_one_step_and_fixed_point_by_hand():
    # three rows (0.9, 0.1) and one (0.1, 0.9) under uniform source priors
    p = np.array([[0.9, 0.1]] * 3 + [[0.1, 0.9]])
    one = S.em_priors(p, [0.5, 0.5], max_iter=1)
    np.testing.assert_allclose(one.priors, [0.7, 0.3])   # mean of the rows: (2.7 + 0.1) / 4
    assert not one.converged
    # maximum likelihood: d/dq [3 log(0.1 + 0.8q) + log(0.9 − 0.8q)] = 0 → q = 2.6 / 3.2
    full = S.em_priors(p, [0.5, 0.5], tol=1e-12)
    assert full.converged
    np.testing.assert_allclose(full.priors, [0.8125, 0.1875], atol=1e-6)


def test_plain_em_collapses_and_the_prior_and_floor_do_not():
    # an over-confident model that never predicts class 2: plain EM drives its prior to 0
    rng = np.random.default_rng(0)
    p = rng.dirichlet([20, 20, 0.05], size=300)
    p[:, 2] = 1e-9
    p /= p.sum(1, keepdims=True)
    source = [0.3, 0.3, 0.4]
    plain = S.em_priors(p, source, max_iter=5000)
    assert plain.priors[2] < 1e-6
    regular = S.em_priors(p, source, pseudo_count=10, floor=0.01)
    assert regular.priors[2] >= 0.01 - 1e-12
    # the MAP M-step by hand for one step from π: (Σ w + c π) / (n + c)
    step = S.em_priors(p, source, pseudo_count=10, max_iter=1)
    np.testing.assert_allclose(step.priors, (p.sum(0) + 10 * np.array(source)) / 310)


def test_em_recovers_known_priors_from_bayes_posteriors():
    # class-conditional Gaussians in 1-D; posteriors computed exactly under the source priors
    rng = np.random.default_rng(1)
    means = np.array([-2.0, 0.0, 2.0])
    source = np.array([0.6, 0.3, 0.1])
    target = np.array([0.1, 0.3, 0.6])
    y = rng.choice(3, size=20000, p=target)
    x = rng.normal(means[y], 1.0)
    lik = np.exp(-0.5 * (x[:, None] - means[None]) ** 2)
    post = lik * source
    post /= post.sum(1, keepdims=True)
    est = S.em_priors(post, source, tol=1e-10).priors
    assert np.abs(est - target).sum() < 0.03


def test_bbse_by_hand():
    # a perfect classifier on valid: C is diagonal, so q = the target's predicted frequencies
    valid_labels = np.array([0, 0, 1, 1, 2, 2])
    target_pred = np.array([0, 1, 1, 1])
    np.testing.assert_allclose(S.bbse_priors(target_pred, valid_labels, valid_labels, 3), [0.25, 0.75, 0.0])
    # a classifier that calls half of class 1 "0": C = [[1/2, 1/4], [0, 1/4]] (rows ŷ, cols y)
    valid_pred = np.array([0, 0, 0, 1])
    valid_y = np.array([0, 0, 1, 1])
    # target: all class 1 → μ = (1/2, 1/2) → w = (0, 2), q = w ⊙ (1/2, 1/2) = (0, 1)
    np.testing.assert_allclose(S.bbse_priors(np.array([0, 1]), valid_pred, valid_y, 2), [0.0, 1.0], atol=1e-12)


def test_logit_adjustment_by_hand():
    np.testing.assert_allclose(S.logit_adjustment([0.25, 0.75], 1.0), np.log([0.25, 0.75]))
    np.testing.assert_allclose(S.logit_adjustment([0.5, 0.5], 0.5), 0.5 * np.log([0.5, 0.5]))


def test_fit_calibration_matches_the_label_frequencies_and_undoes_a_bias():
    rng = np.random.default_rng(2)
    n, m = 4000, 3
    y = rng.choice(m, size=n, p=[0.6, 0.3, 0.1])
    logits = rng.normal(size=(n, m)) + 3.0 * np.eye(m)[y]
    biased = logits - np.log([0.6, 0.3, 0.1])      # as a balanced (logit-adjusted) model would give
    p = np.exp(biased) / np.exp(biased).sum(1, keepdims=True)
    cal = S.fit_calibration(p, y)
    q = cal(p)
    # the bias terms' optimality condition: the mean calibrated posterior = label frequencies
    np.testing.assert_allclose(q.mean(0), np.bincount(y, minlength=m) / n, atol=2e-3)
    nll = lambda probs: -np.log(probs[np.arange(n), y]).mean()  # noqa: E731
    assert nll(q) < nll(p)
    t_only = S.fit_calibration(p, y, bias=False)
    np.testing.assert_allclose(t_only.bias, 0.0)


def _gaussian_problem(source, target, n_valid=3000, n_target=1500, seed=0):
    rng = np.random.default_rng(seed)
    means = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]])

    def draw(priors, n):
        y = rng.choice(3, size=n, p=priors)
        x = means[y] + rng.normal(size=(n, 2))
        lik = np.exp(-0.5 * ((x[:, None, :] - means[None]) ** 2).sum(-1))
        post = lik * np.asarray(source)
        # an over-confident model: posteriors sharpened (temperature 0.5)
        post = post ** 2
        return post / post.sum(1, keepdims=True), y

    return draw(source, n_valid), draw(target, n_target)


def test_adapt_priors_corrects_a_shift_and_leaves_no_shift_alone():
    source = [0.6, 0.3, 0.1]
    (vp, vy), (tp, ty) = _gaussian_problem(source, [0.1, 0.3, 0.6])
    model = S.SourceModel.fit(vp, vy, 3)
    adapted, est = S.adapt_priors(tp, model)
    assert est.applied and est.rows == len(tp)
    assert np.abs(np.asarray(est.target_priors) - [0.1, 0.3, 0.6]).sum() < 0.1
    assert (adapted.argmax(1) == ty).mean() > (tp.argmax(1) == ty).mean() + 0.02
    # the same priors as the source: the likelihood-ratio test keeps p unchanged
    (vp, vy), (tp, ty) = _gaussian_problem(source, source, seed=3)
    same, est = S.adapt_priors(tp, S.SourceModel.fit(vp, vy, 3))
    assert not est.applied and "no significant shift" in est.reason
    assert same is tp or np.array_equal(same, tp)
    # BBSE estimates the shift too
    (vp, vy), (tp, ty) = _gaussian_problem(source, [0.1, 0.3, 0.6], seed=4)
    _, est = S.adapt_priors(tp, S.SourceModel.fit(vp, vy, 3), method="bbse")
    assert est.applied and np.abs(np.asarray(est.target_priors) - [0.1, 0.3, 0.6]).sum() < 0.15


def test_adapt_priors_falls_back_on_few_rows_and_unstable_estimates():
    source = [0.6, 0.3, 0.1]
    (vp, vy), (tp, _) = _gaussian_problem(source, [0.1, 0.3, 0.6])
    model = S.SourceModel.fit(vp, vy, 3)
    out, est = S.adapt_priors(tp[:10], model)
    assert not est.applied and "fewer than" in est.reason and np.array_equal(out, tp[:10])
    out, est = S.adapt_priors(tp, model, max_half_l1=0.0)
    assert not est.applied and est.reason.startswith("unstable") and np.array_equal(out, tp)
    with pytest.raises(ValueError):
        S.adapt_priors(tp, model, method="nope")
    lines = est.lines(["a", "b", "c"])
    assert "not applied" in lines[0] and len(lines) == 4


_probs = arrays(np.float64, st.tuples(st.integers(1, 30), st.just(4)),
                elements=st.floats(1e-3, 1.0)).map(lambda a: a / a.sum(1, keepdims=True))
_prior = arrays(np.float64, 4, elements=st.floats(0.01, 1.0)).map(lambda a: a / a.sum())


@settings(max_examples=60, deadline=None)
@given(_probs, _prior, _prior)
def test_reweight_properties(p, a, b):
    out = S.reweight(p, a, b)
    np.testing.assert_allclose(out.sum(1), 1.0)
    np.testing.assert_allclose(S.reweight(p, a, a), p, atol=1e-12)
    np.testing.assert_allclose(S.reweight(out, b, a), p, atol=1e-9)   # undoing a shift


@settings(max_examples=60, deadline=None)
@given(_probs, _prior, st.floats(0.0, 50.0), st.floats(0.0, 0.2))
def test_em_gives_a_distribution_above_its_floor(p, source, pseudo, floor):
    q = S.em_priors(p, source, pseudo_count=pseudo, floor=floor, max_iter=200).priors
    np.testing.assert_allclose(q.sum(), 1.0)
    assert (q >= min(floor, 0.25) - 1e-12).all()
    # the likelihood never falls below the source priors' (EM ascends it from there; without
    # a prior or floor the result is the maximum-likelihood estimate)
    ml = S.em_priors(p, source, max_iter=200).priors
    assert S.log_likelihood(p, source, ml) >= S.log_likelihood(p, source, source) - 1e-9
