"""core.label_issues: the confident joint, the noise model, the Bayes step and a run table's
estimate, checked against hand-computed values and a simulation with a known noise rate."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from uldl_studio.core.labels import label_issues as L, scores
from uldl_studio.core.review import health
from uldl_studio.core.labels.metrics import auroc
from uldl_studio.core.labels.soft_labels import temper

pytestmark = pytest.mark.timeout(60)


def test_confident_joint_by_hand():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.7, 0.3]])
    labels = np.array([0, 0, 1, 1, 1])
    # thresholds: t0 = mean p0 over label 0 = 0.75; t1 = mean p1 over label 1 = 0.6
    # row 0: p0 0.9 ≥ .75 → (0, 0); row 1: nothing above → not counted; row 2: p1 .7 → (1, 1)
    # row 3: (1, 1); row 4: p0 .7 < .75, p1 .3 < .6 → not counted
    joint = L.confident_joint(probs, labels, 2)
    # calibrated: row 0 → 2 rows on (0, 0); row 1 → 3 rows on (1, 1); normalised by 5
    assert np.allclose(joint, [[0.4, 0.0], [0.0, 0.6]])
    probs[4] = [0.8, 0.2]  # now t0 = .75 still, row 4: p0 .8 ≥ .75 → (1, 0)
    joint = L.confident_joint(probs, labels, 2)
    # label-1 row: counts (1, 0) 1, (1, 1) 2 → rescaled to 3 rows: 1 and 2
    assert np.allclose(joint, np.array([[2, 0], [1, 2]]) / 5)


def test_noise_matrix_and_posterior_by_hand():
    joint = np.array([[0.4, 0.1], [0.1, 0.4]])  # Q[given, true]
    noise = L.noise_matrix(joint, smoothing=0.0)
    assert np.allclose(noise, [[0.8, 0.2], [0.2, 0.8]])  # N[true, given]
    q = np.array([[0.9, 0.1], [0.5, 0.5]])
    post = L.posterior_true(q, np.array([1, 1]), noise)
    # row 0: ∝ (0.9·0.2, 0.1·0.8) = (0.18, 0.08); row 1: ∝ (0.1, 0.4)
    assert np.allclose(post, [[0.18 / 0.26, 0.08 / 0.26], [0.2, 0.8]])
    # sharpening s = 0.5 squares q before the noise step
    post = L.posterior_true(q, np.array([1, 1]), noise, sharpening=0.5)
    a = np.array([0.81, 0.01]) / 0.82
    assert np.allclose(post[0], a * [0.2, 0.8] / (a * [0.2, 0.8]).sum())


def test_sharpening_nll_by_hand():
    q = np.array([[0.9, 0.1], [0.5, 0.5]])
    noise = np.array([[0.8, 0.2], [0.2, 0.8]])
    # s = 1: P(given) = q @ N = [[0.74, 0.26], [0.5, 0.5]]; labels 1, 0
    assert np.isclose(L.sharpening_nll(q, np.array([1, 0]), noise, 1.0), -(np.log(0.26) + np.log(0.5)) / 2)
    # s = 0.5 squares q: row 0 → (0.81, 0.01) / 0.82, P(given 1) = (0.81·0.2 + 0.01·0.8) / 0.82
    expected = -(np.log((0.81 * 0.2 + 0.01 * 0.8) / 0.82) + np.log(0.5)) / 2
    assert np.isclose(L.sharpening_nll(q, np.array([1, 0]), noise, 0.5), expected)


def test_fit_sharpening_recovers_the_sharpness_of_the_true_label():
    # the model's q is a flattened view of P(true | x) = temper(q, 0.5); labels pass through N
    rng = np.random.default_rng(0)
    n, m = 20000, 4
    q = rng.dirichlet(np.ones(m), n)
    noise = np.full((m, m), 0.2 / (m - 1))
    np.fill_diagonal(noise, 0.8)
    true = (temper(q, 0.5).cumsum(1) < rng.random((n, 1))).sum(1).clip(0, m - 1)
    labels = (noise[true].cumsum(1) < rng.random((n, 1))).sum(1).clip(0, m - 1)
    assert abs(L.fit_sharpening(q, labels, noise) - 0.5) < 0.05
    # labels drawn from q itself need no noise model: without one, s = 1
    drawn = (q.cumsum(1) < rng.random((n, 1))).sum(1).clip(0, m - 1)
    assert abs(L.fit_sharpening(q, drawn, np.eye(m)) - 1.0) < 0.05
    # the rows' P(label is wrong) then add up to the labels' noise rate
    post = L.posterior_true(q, labels, noise, L.fit_sharpening(q, labels, noise))
    assert abs((1 - post[np.arange(n), labels]).mean() - (labels != true).mean()) < 0.02


def test_highlight_threshold_by_hand():
    p = np.array([0.95, 0.9, 0.7, 0.6, 0.55, 0.3, np.nan])
    # means from the top: .95, .925, .85, .7875 → the last at or above 0.8 is at 0.7
    assert L.highlight_threshold(p) == 0.7
    assert L.highlighted_mask(p).tolist() == [True, True, True, False, False, False, False]
    # a lower precision takes more rows, never one below the floor of 0.5
    assert L.highlight_threshold(p, precision=0.7) == 0.55
    assert L.highlight_threshold(p, precision=0.1) == 0.55
    # ties at the cut go in together or not at all: .9 and three .7 have mean .75
    assert L.highlight_threshold(np.array([0.9, 0.7, 0.7, 0.7])) == 0.9
    # nothing likely enough: no row is highlighted
    assert L.highlight_threshold(np.array([0.6, 0.55, 0.2])) == np.inf
    assert not L.highlighted_mask(np.array([0.6, 0.55, np.nan])).any()
    assert L.highlight_threshold(np.array([np.nan])) == np.inf


def simulated_table(n=12000, m=4, flip=0.2, seed=0):
    """Images whose true class is known; a model posterior for the *given* labels that is
    calibrated (the given label is the true one with probability 1 − flip, else uniform on the
    others); 20 % of the rows are the valid split."""
    rng = np.random.default_rng(seed)
    clean = rng.dirichlet(np.full(m, 0.05), n)         # P(true | x): most images are clear
    true = (clean.cumsum(1) < rng.random((n, 1))).sum(1).clip(0, m - 1)
    noise = np.full((m, m), flip / (m - 1))
    np.fill_diagonal(noise, 1 - flip)
    p_given = clean @ noise                            # P(given | x): a calibrated model
    given = (noise[true].cumsum(1) < rng.random((n, 1))).sum(1).clip(0, m - 1)
    classes = ["neutral", "happiness", "surprise", "sadness"][:m]
    table = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "label": given,
                          "split": np.where(rng.random(n) < 0.2, "valid", "train")})
    for j, c in enumerate(classes):
        table[f"p_{c}"] = p_given[:, j]
    table.attrs["classes"] = classes
    return table, true


def test_a_simulated_noise_rate_is_recovered():
    table, true = simulated_table()
    issues = L.label_issues(table)
    wrong = table["label"].to_numpy() != true
    train = (table["split"] == "train").to_numpy()
    assert abs(wrong[train].mean() - 0.2) < 0.02
    # measured here: 0.208 estimated for 0.205
    assert abs(np.nanmean(issues.p_wrong[train]) - wrong[train].mean()) < 0.05
    assert auroc(issues.p_wrong[train], wrong[train]) > 0.85
    high = issues.highlighted() & train
    # the highlighted rows: mostly wrong labels, holding most of them (measured 0.90 / 0.93)
    assert wrong[high].mean() > 0.75 and (wrong & high).sum() / wrong[train].sum() > 0.6
    assert {g.name for g in issues.groups} == {"train", "valid"}
    # one sharpening for the predictions, fitted on the valid rows
    valid = ~train
    q_valid = temper(table[[f"p_{c}" for c in table.attrs["classes"]]].to_numpy()[valid], issues.groups[0].temperature)
    s_valid = L.fit_sharpening(q_valid, table["label"].to_numpy()[valid],
                               L.noise_matrix(L.confident_joint(q_valid, table["label"].to_numpy()[valid], 4)))
    assert all(np.isclose(g.sharpening, s_valid) for g in issues.groups)
    # the highlight: the rows from the threshold on, promising at least PRECISION
    assert np.array_equal(issues.highlighted(), L.highlighted_mask(issues.p_wrong))
    assert issues.p_wrong[issues.highlighted()].mean() >= L.PRECISION
    # the registered score is the same numbers; health sums them per class
    assert np.allclose(scores.values(table, "label_wrong_prob"), issues.p_wrong, equal_nan=True)
    rates = health.issue_rates(table, train)
    assert np.isclose(rates["estimated"].sum(), issues.p_wrong[train].sum())
    assert rates["highlighted"].sum() == int(high.sum())
    matrix = health.issue_matrix(table, train)
    off = matrix.sum() - np.trace(matrix)
    assert np.isclose(off, issues.p_wrong[train].sum())
    assert health.issue_cell_counts(table, train).sum() == train.sum()


def test_clean_labels_give_few_issues_and_more_noise_more():
    low, true_low = simulated_table(flip=0.05, seed=1)
    high, true_high = simulated_table(flip=0.35, seed=2)
    est_low = np.nanmean(L.label_issues(low).p_wrong)
    est_high = np.nanmean(L.label_issues(high).p_wrong)
    assert est_low < 0.1 < 0.25 < est_high
    assert abs(est_high - (high["label"].to_numpy() != true_high).mean()) < 0.05


def test_rows_without_predictions_or_labels_are_nan_and_a_table_without_p_is_a_keyerror():
    table, _ = simulated_table(n=2000)
    table.loc[:4, "p_neutral"] = np.nan
    table.loc[5:9, "label"] = -1
    wrong = L.label_issues(table).p_wrong
    assert np.isnan(wrong[:10]).all() and np.isfinite(wrong[10:]).all()
    bare = table[["sample_id", "label", "split"]].copy()
    bare.attrs = dict(table.attrs)
    with pytest.raises(KeyError):
        L.label_issues(bare)
    assert np.isnan(scores.values(bare, "label_wrong_prob")).all()


def test_edits_change_the_estimate_of_the_edited_row():
    table, true = simulated_table(n=3000, seed=3)
    before = L.label_issues(table).p_wrong.copy()
    train = np.flatnonzero((table["split"] == "train").to_numpy())
    row = int(train[np.argmax(before[train])])  # the likeliest wrong label
    probs = table[[f"p_{c}" for c in table.attrs["classes"]]].to_numpy()
    edited = table.copy()
    edited.attrs = dict(table.attrs)
    edited.loc[row, "label"] = int(probs[row].argmax())
    after = L.label_issues(edited).p_wrong
    assert after[row] < 0.5 < before[row]
