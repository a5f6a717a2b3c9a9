"""Annotators' journals, merged votes, Dawid–Skene, the combined label, agreement, the next vote."""
from __future__ import annotations

import json
import time
import warnings

import numpy as np
import pandas as pd
import pytest

from uldl_studio.core.labels import annotations as A
from uldl_studio.core.labels import scores
from uldl_studio.core.runs.export import read_soft_labels, write_soft_labels

CLASSES = ["neutral", "happiness", "sadness"]


def table(n: int = 6, **extra) -> pd.DataFrame:
    frame = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "path": "x",
                          "split": ["train", "valid", "test"] * (n // 3) + ["train"] * (n % 3),
                          "label": np.arange(n) % len(CLASSES), **extra})
    frame.attrs = {"classes": list(CLASSES), "root": "", "format": "csv"}
    return frame


# -- names and journals ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["alice", "Bob_2", "j.doe", "x-y", "7"])
def test_good_names(name):
    assert A.validate_annotator_name(name) == name


@pytest.mark.parametrize("name", ["", "../x", "a/b", "a b", ".hidden", "-x", "crowd", "Dataset", "a" * 65,
                                  "name.", "x~y", "x.jsonl", "é"])
def test_bad_names_are_one_clear_line(name):
    with pytest.raises(A.AnnotatorError) as info:
        A.validate_annotator_name(name)
    assert "\n" not in str(info.value) and "annotator name" in str(info.value)


def test_journal_paths_and_the_default_annotator(tmp_path):
    assert A.annotator_journal_path(tmp_path, A.DEFAULT_ANNOTATOR) == tmp_path / "edits.jsonl"
    assert A.annotator_journal_path(tmp_path, "alice") == tmp_path / "annotations" / "alice.jsonl"
    # two annotators write at once from one process: each journal has its own writer lock
    with A.annotator_journal(tmp_path, "alice") as a, A.annotator_journal(tmp_path, "bob") as b:
        a.relabel(["s0"], [1])
        b.relabel(["s0"], [2])
    with A.annotator_journal(tmp_path, A.DEFAULT_ANNOTATOR) as d:
        d.relabel(["s1"], [0])
    assert A.annotator_names(tmp_path) == [A.DEFAULT_ANNOTATOR, "alice", "bob"]


def test_merge_latest_vote_unsure_undo_and_unknown_ids(tmp_path):
    with A.annotator_journal(tmp_path, "alice") as j:
        j.relabel(["s0", "s1"], [1, 1])
        j.relabel(["s2"], [2])
        j.undo()                       # the vote on s2 is taken back
        j.mark_unsure(["s3"])          # a mark, not a vote
        j.relabel(["ghost", "s4"], [0, 7])   # unknown id; label outside the classes
    time.sleep(0.01)
    # the same annotator's journal from another copy of the run: its later vote on s0 wins
    with A.EditJournal(tmp_path / "annotations" / "alice~laptop.jsonl") as j:
        j.relabel(["s0"], [2])
    with pytest.warns(A.VotesWarning, match=r"2 vote\(s\).*alice: 2"):
        votes = A.read_votes(tmp_path, table())
    assert votes.annotators == ["alice"]
    assert votes.labels[:, 0].tolist() == [2, 1, -1, -1, -1, -1]
    assert votes.unsure[:, 0].tolist() == [False, False, False, True, False, False]
    assert votes.unknown == {"alice": 2}
    assert votes.given_is_source and votes.n_voters().tolist() == [1, 1, 0, 0, 0, 0]


def test_crowd_votes_from_columns_and_exact_reference_fractions():
    t = table(3, crowd_neutral=[3, 0, 1], crowd_happiness=[1, 0, 1], crowd_sadness=[0, 0, 1])
    votes = A.read_votes(None, t)
    assert votes.crowd.tolist() == [[3, 1, 0], [0, 0, 0], [1, 1, 1]] and not votes.given_is_source
    assert np.allclose(votes.agreement(), [0.5, np.nan, 0.0], equal_nan=True)   # 3 of 6 pairs agree
    ref = table(3, ref_neutral=[0.75, 0.3141, 1 / 3], ref_happiness=[0.25, 0.6859, 1 / 3],
                ref_sadness=[0.0, 0.0, 1 / 3])
    assert A.crowd_votes(ref).tolist() == [[3, 1, 0], [0, 0, 0], [1, 1, 1]]   # continuous: no votes


# -- Dawid–Skene ----------------------------------------------------------------------------
def test_one_em_step_by_hand():
    """Two sources, two classes, two samples, one iteration, no smoothing: every number by hand."""
    labels = np.array([[0, 0], [0, 1]])
    ds = A.dawid_skene(labels, 2, smoothing=0.0, max_iter=1)
    t0 = np.array([2.01, 0.01]) / 2.02          # start: vote shares (+0.01)
    t1 = np.array([0.5, 0.5])
    prior = (t0 + t1 + 1) / 4
    assert np.allclose(ds.prior, prior)
    c_first = np.array([[t0[0] + t1[0], 0], [t0[1] + t1[1], 0]])      # source 0 voted 0 twice
    c_second = np.array([[t0[0], t1[0]], [t0[1], t1[1]]])
    assert np.allclose(ds.confusion[0], c_first / c_first.sum(1, keepdims=True))
    assert np.allclose(ds.confusion[1], c_second / c_second.sum(1, keepdims=True))
    c1 = ds.confusion[1]
    joint = prior * np.array([1.0, 1.0]) * c1[:, 1]   # sample 1: source 0 says 0 (C = 1 for both), source 1 says 1
    assert np.allclose(ds.posterior[1], joint / joint.sum())


def test_combined_posterior_by_hand():
    ds = A.DawidSkene(confusion=np.array([[[0.8, 0.2], [0.3, 0.7]]]), prior=np.array([0.6, 0.4]),
                      posterior=np.zeros((0, 2)), has_crowd=False, iterations=0)
    post = A.combined_posterior(ds, np.array([[0], [1], [-1]]))
    assert np.allclose(post, [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])   # 0.48:0.12, 0.12:0.28, the prior
    probs = np.array([[0.5, 0.5], [0.9, 0.1], [0.1, 0.9]])           # mean p = (0.5, 0.5)
    post = A.combined_posterior(ds, np.array([[0], [0], [0]]), probs=probs, weight=1.0)
    assert np.allclose(post[0], [0.8, 0.2])
    odds = 0.48 / 0.12 * 0.9 / 0.1
    assert np.allclose(post[1], [odds / (1 + odds), 1 / (1 + odds)])


def simulated(seed: int, n: int = 3000, m: int = 7):
    rng = np.random.default_rng(seed)
    truth = rng.choice(m, n, p=np.array([0.2, 0.19, 0.13, 0.13, 0.12, 0.1, 0.13]))
    good = np.where(rng.random(n) < 0.9, truth, rng.integers(0, m, n))
    biased = np.where(rng.random(n) < 0.7, truth, 0)           # errors all go to class 0
    random = rng.integers(0, m, n)
    given = np.where(rng.random(n) < 0.65, truth, rng.integers(0, m, n))
    return truth, np.column_stack([good, biased, random, given])


@pytest.mark.parametrize("seed", [0, 1])
def test_dawid_skene_recovers_accuracies_and_beats_majority(seed):
    truth, labels = simulated(seed)
    ds = A.dawid_skene(labels, 7)
    real = (labels == truth[:, None]).mean(axis=0)
    assert np.abs(ds.accuracy() - real).max() < 0.05
    majority = sum(np.eye(7)[labels[:, s]] for s in range(4)).argmax(1)
    combined = A.combined_posterior(ds, labels).argmax(1)
    assert (combined == truth).mean() > (majority == truth).mean() + 0.03


def test_model_weight_follows_how_good_the_model_is():
    truth, labels = simulated(3, n=2000)
    ds = A.dawid_skene(labels[:, :2], 7)
    rng = np.random.default_rng(0)
    good_model = 0.7 * np.eye(7)[truth] + 0.3 * rng.dirichlet(np.ones(7), len(truth))
    noise_model = rng.dirichlet(np.ones(7), len(truth))
    w_good = A.fit_model_weight(ds, labels[:, :2], None, good_model)
    w_noise = A.fit_model_weight(ds, labels[:, :2], None, noise_model)
    assert w_good > 0.5 and w_noise < 0.2
    assert A.fit_model_weight(ds, labels[:, :2], None, good_model, rows=np.array([], int)) == A.DEFAULT_MODEL_WEIGHT


# -- agreement and the next vote -----------------------------------------------------------
def test_krippendorff_alpha_extremes():
    unanimous = np.array([[3, 0, 0], [0, 3, 0], [0, 0, 3], [3, 0, 0]])
    alpha, per_class = A.krippendorff_alpha(unanimous)
    assert alpha == pytest.approx(1.0) and np.allclose(per_class, 1.0)
    rng = np.random.default_rng(0)
    chance = np.stack([np.bincount(rng.integers(0, 3, 4), minlength=3) for _ in range(2000)])
    assert abs(A.krippendorff_alpha(chance)[0]) < 0.03
    assert np.isnan(A.krippendorff_alpha(np.array([[1, 0, 0], [0, 1, 0]]))[0])   # no sample with two votes


def test_next_vote_gain_ranks_few_split_and_contested_samples_first():
    m = 3
    crowd = np.array([[1, 0, 0], [2, 0, 0], [5, 0, 0], [10, 0, 0], [1, 1, 0], [5, 5, 0], [3, 2, 0]], float)
    flat = np.full((len(crowd), m), 1 / m)
    mean = A.posterior_mean(flat, crowd, 1.0)
    gain = A.next_vote_gain(mean, 1.0 + crowd.sum(1))
    assert gain[0] > gain[1] > gain[2] > gain[3] > 0          # unanimous: falls with every vote
    assert gain[4] > gain[1] and gain[5] > gain[2]            # split beats unanimous at equal n
    model = np.array([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05]] + [[1 / 3] * 3] * 5)
    contested = A.next_vote_gain(A.posterior_mean(model, crowd, 1.0), 1.0 + crowd.sum(1))
    assert contested[1] > contested[0]                        # the model against the votes


def test_next_vote_gain_is_the_expected_change_of_the_mean():
    """The closed form against the definition: Σ_v m_v · TV(m, mean after one more vote v)."""
    rng = np.random.default_rng(0)
    prior = rng.dirichlet(np.ones(4), 20)
    counts = rng.integers(0, 4, (20, 4)).astype(float)
    alpha = 1.7
    mean = A.posterior_mean(prior, counts, alpha)
    expected = np.zeros(20)
    for v in range(4):
        after = A.posterior_mean(prior, counts + np.eye(4)[v], alpha)
        expected += mean[:, v] * 0.5 * np.abs(after - mean).sum(1)
    assert np.allclose(A.next_vote_gain(mean, alpha + counts.sum(1)), expected)


# -- the combined label ----------------------------------------------------------------------
def test_posterior_mean_by_hand_and_its_limits():
    prior = np.array([[0.5, 0.3, 0.2]])
    counts = np.array([[2.0, 0.0, 1.0]])
    assert np.allclose(A.posterior_mean(prior, counts, 2.0), [[(1 + 2) / 5, 0.6 / 5, (0.4 + 1) / 5]])
    assert np.allclose(A.posterior_mean(prior, counts, 1e-9), [[2 / 3, 0, 1 / 3]])      # votes alone
    assert np.allclose(A.posterior_mean(prior, counts, 1e9), prior)                     # model alone


def test_intersection_estimate_beats_the_mean_on_its_own_posterior():
    """Monte Carlo over θ ~ Dirichlet(β): the estimate's expected intersection with θ is the
    highest among the mean, the estimate nudged either way, and the votes' shares."""
    rng = np.random.default_rng(0)
    beta = np.array([[2.0, 0.3, 0.2, 1.1], [0.4, 0.4, 3.2, 0.1], [5.0, 5.0, 0.2, 0.2]])
    q = A.intersection_estimate(beta)
    assert np.allclose(q.sum(1), 1) and (q >= 0).all()
    mean = beta / beta.sum(1, keepdims=True)
    for i, b in enumerate(beta):
        theta = rng.dirichlet(b, 200_000)
        score = lambda x: np.minimum(theta, x).sum(1).mean()  # noqa: E731
        best = score(q[i])
        assert best > score(mean[i]) + 1e-3
        for j in range(4):
            for k in range(4):
                if j != k and q[i, j] > 0.02:
                    nudged = q[i].copy()
                    nudged[j] -= 0.02
                    nudged[k] += 0.02
                    assert best >= score(nudged) - 5e-4
    big = A.intersection_estimate(np.array([[4000.0, 3000.0, 2000.0, 1000.0]]))
    assert np.allclose(big, [[0.4, 0.3, 0.2, 0.1]], atol=0.01)   # a sure posterior: its mean


def test_prior_strength_is_recovered_and_zero_or_one_vote_says_nothing():
    rng = np.random.default_rng(1)
    n, m, alpha = 4000, 5, 3.0
    prior = rng.dirichlet(np.ones(m) * 0.7, n)
    theta = np.stack([rng.dirichlet(alpha * p) for p in prior])
    crowd = np.stack([rng.multinomial(4, t) for t in theta]).astype(float)
    empty = np.zeros((n, 0), np.int64)
    fitted = A.fit_prior_strength(prior, empty, crowd)
    assert 2.3 < fitted < 3.9
    one = np.stack([rng.multinomial(1, t) for t in theta]).astype(float)
    assert A.fit_prior_strength(prior, empty, one) == A.DEFAULT_PRIOR_STRENGTH
    # the same votes as labels of four identified sources: the same fit
    labels = np.stack([np.repeat(np.arange(m), c.astype(int)) for c in crowd])
    assert A.fit_prior_strength(prior, labels) == pytest.approx(fitted, rel=1e-3)


def test_temperature_undoes_an_overconfident_model():
    rng = np.random.default_rng(2)
    n, m = 3000, 4
    logits = rng.normal(0, 1.5, (n, m))
    truth = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    votes = np.stack([rng.multinomial(3, t) for t in truth]).astype(float)
    sharp = np.exp(2 * logits) / np.exp(2 * logits).sum(1, keepdims=True)   # T = 0.5 too sharp
    assert A.fit_temperature(sharp, votes) == pytest.approx(2.0, rel=0.15)
    assert A.fit_temperature(truth, votes) == pytest.approx(1.0, rel=0.15)
    assert A.fit_temperature(sharp, votes, rows=np.array([], int)) == 1.0


def test_vote_weights_from_reliability():
    # a good annotator, an average one, a random one (chance 1/4), and the dataset's label
    w = A.vote_weights(np.array([0.9, 0.7, 0.25, 0.8]), np.array([100, 100, 100, 400]),
                       np.array([True, True, True, False]), 4)
    kappa = (np.array([0.9, 0.7, 0.25, 0.8]) - 0.25) / 0.75
    assert np.allclose(w, kappa / kappa[:3].mean())
    assert w[2] == 0 and w[0] > w[1] > 0
    assert np.allclose(A.vote_weights(np.array([0.2, 0.1]), np.array([3, 3]), np.array([True, True]), 4), 1.0)


def test_combine_votes_without_a_model_and_with_one():
    crowd = np.array([[3, 0, 0], [1, 1, 0], [0, 0, 2], [0, 0, 0]], float)
    empty = np.zeros((4, 0), np.int64)
    plain = A.combine_votes(empty, 3, crowd)
    assert np.allclose(plain.soft.sum(1), 1) and plain.soft[0].argmax() == 0 and plain.soft[2].argmax() == 2
    assert plain.temperature == 1.0 and np.allclose(plain.strength, plain.prior_strength + crowd.sum(1))
    model = np.array([[0.1, 0.8, 0.1]] * 4)
    with_model = A.combine_votes(empty, 3, crowd, model, fit_rows=np.array([0, 1, 2]))
    assert with_model.soft[3].argmax() == 1                   # no votes: the model's prior
    assert with_model.gain[3] > with_model.gain[0]


# -- table columns, scores and the export ---------------------------------------------------
def test_columns_scores_and_the_export(tmp_path):
    t = table(6)
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), 6)
    for j, c in enumerate(CLASSES):
        t[f"p_{c}"] = p[:, j]
        t[f"d_{c}"] = p[:, j]
    with A.annotator_journal(tmp_path, "alice") as j:
        j.relabel(["s0", "s1", "s2"], [1, 1, 2])
    with A.annotator_journal(tmp_path, "bob") as j:
        j.relabel(["s0", "s1"], [1, 0])
    out, votes, consensus = A.vote_table(t, tmp_path)
    assert out["n_voters"].tolist() == [2, 2, 1, 0, 0, 0]
    assert np.allclose(out["vote_agreement"], [1.0, 0.0, np.nan, np.nan, np.nan, np.nan], equal_nan=True)
    assert out[["votes_neutral", "votes_happiness", "votes_sadness"]].to_numpy().tolist()[:3] == \
        [[0, 2, 0], [1, 1, 0], [0, 0, 1]]
    combined = out[A.combined_columns(CLASSES)].to_numpy()
    assert np.isfinite(combined[:2]).all() and np.isnan(combined[2:]).all()
    assert np.allclose(combined[:2].sum(1), 1) and combined[0].argmax() == 1
    assert consensus.reliability.sources == ["alice", "bob", A.DATASET]
    assert consensus.reliability.votes_cast.tolist() == [3, 2, 6]
    assert json.dumps(consensus.reliability.to_dict())          # JSON-safe
    ent = scores.values(out, "vote_entropy")
    assert np.allclose(ent, [0, 1 / np.log2(3) * 1.0 * np.log2(2) , 0, np.nan, np.nan, np.nan], equal_nan=True)
    mv = scores.values(out, "model_vs_votes")
    assert mv[2] == pytest.approx(1 - p[2, 2]) and np.isnan(mv[3])
    assert np.allclose(scores.values(out, "needs_another_vote"), consensus.next_vote)
    assert np.isnan(scores.values(t, "vote_entropy")).all()    # no vote columns: not applicable
    write_soft_labels(out, tmp_path / "soft.csv")
    back = read_soft_labels(tmp_path / "soft.csv")
    d = back[[f"d_{c}" for c in CLASSES]].to_numpy()
    assert np.allclose(d[:2], combined[:2]) and np.allclose(d[2:], p[2:])   # one vote: the run's soft label
    assert back["n_voters"].tolist() == [2, 2, 1, 0, 0, 0] and back["vote_agreement"].dtype == np.float64


def test_cli_votes_export_and_train_on_the_combined_label(tmp_path):
    """Two named annotators and the default one vote on a tiny run: `votes` prints agreement,
    reliabilities and the queue; `export` writes the combined label for samples with two votes,
    the one-annotator rule elsewhere, the vote columns and the reliabilities; `train
    --soft-labels` learns the exported labels."""
    import subprocess
    import sys

    def cli(*args):
        done = subprocess.run([sys.executable, "-m", "uldl_studio", *args], capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    tiny = ["--set", "image_size=16", "--set", "width=8", "--set", "stages=2", "--set", "blocks=1",
            "--set", "calib_hidden=[16]", "--set", "augment=false", "--set", "k=4", "--set", "progress_every=100"]
    first = tmp_path / "first"
    cli("train", "demo", "--out", str(first), "--limit", "60", "--epochs", "1", "--method", "ce", "--device", "cpu",
        *tiny)
    samples = pd.read_csv(first / "samples.csv", dtype={"sample_id": str})
    classes = json.loads((first / "config.json").read_text())["classes"]
    train_ids = samples.loc[samples["split"] == "train", "sample_id"].tolist()
    both, single = train_ids[:6], train_ids[6]
    with A.annotator_journal(first, "alice") as j:
        j.relabel(both, [1] * 6)
    with A.annotator_journal(first, "bob") as j:
        j.relabel(both, [1, 1, 1, 2, 2, 2])
    corrected = (int(samples.set_index("sample_id").loc[single, "label"]) + 1) % len(classes)
    with A.annotator_journal(first, A.DEFAULT_ANNOTATOR) as j:
        j.relabel([single], [corrected])
    text = cli("votes", str(first), "--top", "3")
    assert "Krippendorff's alpha" in text and "needs another vote (top 3)" in text
    assert all(name in text for name in ("alice", "bob", "annotator", "dataset"))
    cli("export", str(first), "--out", str(tmp_path / "soft.csv"))
    back = read_soft_labels(tmp_path / "soft.csv").set_index("sample_id")
    rel = json.loads((tmp_path / "soft.reliability.json").read_text())
    assert [s["name"] for s in rel["sources"]] == ["annotator", "alice", "bob", "dataset"]
    d = back[[f"d_{c}" for c in classes]].to_numpy()
    two = back.index.isin(both)
    assert (back.loc[both, "n_voters"] == 2).all() and back.loc[single, "n_voters"] == 1
    assert not np.allclose(d[two].max(1), 1.0)                    # combined, not a one-hot
    assert (d[two].argmax(1)[:3] == 1).all()                      # where both said happiness
    assert back.loc[single, f"d_{classes[corrected]}"] == 1.0     # one vote: the correction's one-hot
    second = tmp_path / "second"
    cli("train", "demo", "--out", str(second), "--limit", "60", "--epochs", "1", "--method", "ce", "--device", "cpu",
        "--soft-labels", str(tmp_path / "soft.csv"), *tiny)
    learned = pd.read_csv(second / "samples.csv", dtype={"sample_id": str}).set_index("sample_id")
    assert np.allclose(learned.loc[both, [f"d_{c}" for c in classes]].to_numpy(float), d[two], atol=1e-6)


def test_review_table_is_the_fast_queue_of_the_full_analysis(tmp_path):
    """The app's table: the same vote columns and next-vote gain as ``vote_table`` (crowd votes
    and a model), without the combined label; the votes of one sample and one annotator's
    progress, with a journal's votes patched in."""
    rng = np.random.default_rng(0)
    n = 30
    crowd = rng.multinomial(4, [0.6, 0.3, 0.1], n)
    t = table(n, **{f"crowd_{c}": crowd[:, j] for j, c in enumerate(CLASSES)})
    p = rng.dirichlet(np.ones(3), n)
    for j, c in enumerate(CLASSES):
        t[f"p_{c}"] = p[:, j]
    full, votes, consensus = A.vote_table(t, tmp_path)
    fast, alpha = A.review_table(t, votes)
    assert alpha == pytest.approx(consensus.reliability.prior_strength)
    assert np.allclose(fast["next_vote_gain"], full["next_vote_gain"])
    assert np.allclose(fast["n_voters"], 4) and not any(c.startswith("combined_") for c in fast)
    one = A.sample_votes(votes, 3)
    assert np.array_equal(one.counts, crowd[3]) and one.n_voters == 4 and one.by_annotator == {}
    assert one.shares() == pytest.approx(crowd[3] / 4)
    mine = A.with_annotator(votes, "alice", {"s3": 2, "s4": 0, "nope": 1}, {"s5"})
    assert mine.annotators == ["alice"] and A.has_voted(mine, "alice", 3) and not A.has_voted(mine, "alice", 5)
    assert A.sample_votes(mine, 3).by_annotator == {"alice": 2} and A.sample_votes(mine, 5).unsure == ["alice"]
    progress = A.annotator_progress(mine, "alice")
    assert progress["mine"] == 2 and progress["people"] == 4 * n + 2 and progress["voted"] == n
    assert A.journal_annotator(tmp_path, tmp_path / "edits.jsonl") == A.DEFAULT_ANNOTATOR
    assert A.journal_annotator(tmp_path, tmp_path / "annotations" / "bob~laptop.jsonl") == "bob"
    assert A.journal_annotator(tmp_path, tmp_path / "other.jsonl") is None
