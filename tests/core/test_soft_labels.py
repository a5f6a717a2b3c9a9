"""Exported soft labels: temperature calibrated on given labels, the mix, and what a run writes."""
from __future__ import annotations

import numpy as np
import pytest

from uldl_studio.core.labels.soft_labels import build_soft_labels, fit_temperature, nll, temper


def test_temper_by_hand():
    p = np.array([[0.8, 0.2]])
    # T = 2: sqrt(0.8), sqrt(0.2) renormalised
    expected = np.sqrt([0.8, 0.2]) / np.sqrt([0.8, 0.2]).sum()
    assert np.allclose(temper(p, 2.0), expected)
    assert np.allclose(temper(p, 1.0), p)
    assert np.allclose(temper(p, 0.5), np.array([[0.64, 0.04]]) / 0.68)


def test_temperature_recovers_an_overconfident_model():
    """Labels drawn from q; the model reports q sharpened by T = 3: the fit finds T ≈ 3."""
    rng = np.random.default_rng(0)
    n, m = 20_000, 4
    logits = rng.normal(size=(n, m))
    q = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(m, p=row) for row in q])
    sharp = temper(q, 1 / 3)
    t = fit_temperature(sharp, labels)
    assert t == pytest.approx(3.0, rel=0.1)
    assert nll(temper(sharp, t), labels) < nll(sharp, labels)


def test_mix_and_calibration_rows():
    constructed = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    mean_probs = np.array([[0.6, 0.4], [0.3, 0.7], [0.5, 0.5]])  # the prediction
    labels = np.array([0, 1, 0])
    soft, t = build_soft_labels(constructed, mean_probs, labels, np.array([], dtype=np.int64), mix=0.5)
    assert t == 1.0                                            # nothing to calibrate on: T = 1
    assert np.allclose(soft, 0.5 * constructed + 0.5 * mean_probs)
    soft0, _ = build_soft_labels(constructed, mean_probs, labels, np.arange(3), mix=0.0)
    assert np.allclose(soft0, constructed)
    with pytest.raises(ValueError):
        build_soft_labels(constructed, mean_probs, labels, np.arange(3), mix=1.5)


def test_a_run_writes_soft_labels_and_exports_them(tmp_path):
    from uldl_studio.core.engine.config import TrainConfig
    from uldl_studio.core.data.datasets.demo import load_demo
    from uldl_studio.core.runs.export import read_soft_labels
    from uldl_studio.core.engine.run import Run
    from uldl_studio.core.review.session import Session
    from uldl_studio.core.engine.training import fit

    table = load_demo(n=240)
    config = TrainConfig(image_size=16, width=8, stages=2, blocks=1, calib_hidden=[16], batch_size=32,
                         augment=False, device="cpu", k=4, epochs=2, progress_every=100)
    for _ in fit(table, config, tmp_path / "run"):
        pass
    run = Run.open(tmp_path / "run")
    samples = run.samples()
    classes = run.classes
    soft = samples[[f"soft_{c}" for c in classes]].to_numpy()
    pavg = samples[[f"pavg_{c}" for c in classes]].to_numpy()
    assert np.allclose(soft.sum(1), 1) and np.allclose(pavg.sum(1), 1)
    t = float(run.history()["soft_temperature"].iloc[-1])
    assert 0.2 <= t <= 10
    d = samples[[f"d_{c}" for c in classes]].to_numpy()
    p = samples[[f"p_{c}" for c in classes]].to_numpy()
    assert np.allclose(soft, 0.9 * d + 0.1 * temper(p, t), atol=1e-9)      # ldlva: w = 0.1
    assert not np.allclose(pavg, p)                                         # averaged over two epochs
    session = Session.open_run(tmp_path / "run")
    session.export(tmp_path / "soft.csv")
    session.journal.close()
    back = read_soft_labels(tmp_path / "soft.csv")
    assert np.allclose(back[[f"d_{c}" for c in classes]].to_numpy(), soft)   # the export's d is the soft label


def _tiny_table():
    import pandas as pd

    t = pd.DataFrame({"sample_id": ["a", "b", "c"], "path": ["x/a.png", "x/b.png", "x/c.png"],
                      "split": ["train", "train", "test"], "label": [0, 1, 1]})
    t.attrs["classes"] = ["neutral", "happiness"]
    return t


def test_join_soft_labels_by_id_path_and_class_names(tmp_path):
    import pandas as pd

    from uldl_studio.core.labels.soft_labels import join_soft_labels, target_matrix
    from uldl_studio.core.table import DatasetError

    ours = tmp_path / "ours.csv"
    pd.DataFrame({"sample_id": ["b", "a"], "d_neutral": [0.25, 0.9], "d_happiness": [0.75, 0.1]}).to_csv(ours)
    out = join_soft_labels(_tiny_table(), ours)
    assert np.allclose(target_matrix(out, ["neutral", "happiness"])[:2], [[0.9, 0.1], [0.25, 0.75]])
    assert np.isnan(target_matrix(out, ["neutral", "happiness"])[2]).all()      # not in the file
    other = tmp_path / "other.csv"   # another tool: paths and bare class names (synonyms), unnormalised
    pd.DataFrame({"path": ["x/c.png", "x/a.png"], "happy": [3, 1], "Neutral": [1, 1]}).to_csv(other, index=False)
    with pytest.warns(UserWarning, match="1 training samples have no soft label"):
        out = join_soft_labels(_tiny_table(), other)
    assert np.allclose(target_matrix(out, ["neutral", "happiness"])[[0, 2]], [[0.5, 0.5], [0.25, 0.75]])
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"sample_id": ["a"], "anger": [1.0]}).to_csv(bad, index=False)
    with pytest.raises(DatasetError, match="no columns for the classes"):
        join_soft_labels(_tiny_table(), bad)
    with pytest.raises(DatasetError, match="no such soft-label file"):
        join_soft_labels(_tiny_table(), tmp_path / "missing.csv")


TINY = ["--set", "image_size=16", "--set", "width=8", "--set", "stages=2", "--set", "blocks=1",
        "--set", "calib_hidden=[16]", "--set", "augment=false", "--set", "k=4", "--set", "progress_every=100"]


def _cli(*args):
    """Run ``uldl-studio ARGS`` in a real subprocess; it must succeed."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "uldl_studio", *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


def test_two_stage_train_export_retrain_on_d(tmp_path):
    """`train`, `export`, then `train --soft-labels` on the export: the second run learns the
    exported distributions (its d is the soft target) and records the file for --resume."""
    import json

    import pandas as pd

    _cli("train", "demo", "--out", str(tmp_path / "first"), "--limit", "80", "--epochs", "2", "--method", "ce",
         "--device", "cpu", *TINY)
    _cli("export", str(tmp_path / "first"), "--out", str(tmp_path / "d.csv"))
    _cli("train", "demo", "--out", str(tmp_path / "second"), "--limit", "80", "--epochs", "1", "--method", "ce",
         "--device", "cpu", "--soft-labels", str(tmp_path / "d.csv"), *TINY)
    exported = pd.read_csv(tmp_path / "d.csv").set_index("sample_id")
    second = pd.read_csv(tmp_path / "second" / "samples.csv", dtype={"sample_id": str}).set_index("sample_id")
    classes = json.loads((tmp_path / "second" / "config.json").read_text())["classes"]
    train = second.index[second["split"] == "train"]
    d_cols = [f"d_{c}" for c in classes]
    # ce learns l_i = the soft target, so its constructed d is exactly the exported soft label
    assert np.allclose(second.loc[train, d_cols].to_numpy(), exported.loc[train, d_cols].to_numpy(), atol=1e-6)
    assert not np.allclose(second.loc[train, d_cols].to_numpy().max(1), 1.0)    # not one-hot
    info = json.loads((tmp_path / "second" / "config.json").read_text())["dataset"]
    assert info["soft_labels"] == str((tmp_path / "d.csv").resolve())


def test_evaluate_reports_review_counts_and_score_aurocs(tmp_path):
    from uldl_studio.core.engine.config import TrainConfig
    from uldl_studio.core.data.datasets.demo import load_demo
    from uldl_studio.core.runs.evaluate import evaluate
    from uldl_studio.core.engine.run import Run
    from uldl_studio.core.review.session import Session
    from uldl_studio.core.engine.training import fit

    config = TrainConfig(image_size=16, width=8, stages=2, blocks=1, calib_hidden=[16], batch_size=32,
                         augment=False, device="cpu", k=4, epochs=2, progress_every=100)
    for _ in fit(load_demo(n=200), config, tmp_path / "run"):
        pass
    session = Session.open_run(tmp_path / "run")
    session.relabel([0], [(int(session.table["label"].iat[0]) + 1) % len(session.classes)])
    session.relabel([1], [int(session.table["label"].iat[1])])          # confirmed
    session.mark_unsure([2, 3], True)
    session.journal.close()
    metrics = evaluate(Run.open(tmp_path / "run"), write=False)
    assert metrics["review"] == {"reviewed": 2, "relabelled": 1, "unsure": 2}
    aurocs = metrics["constructed"]["score_auroc_reference"]          # the demo knows the true labels
    assert {"ambiguity", "self_confidence", "aum", "lambda"} <= set(aurocs)
    assert all(0.0 <= v <= 1.0 for v in aurocs.values())
    assert "soft_vs_reference" in metrics["constructed"]


def test_cross_fitted_out_of_fold_confidence(tmp_path):
    """--folds K: every training row gets p from a model that did not train on it; the
    oof_confidence score reads it through Run.samples() and follows an edit of the label."""
    import subprocess
    import sys

    from uldl_studio.core.labels import scores
    from uldl_studio.core.engine.crossfit import fold_of
    from uldl_studio.core.engine.run import Run
    from uldl_studio.core.review.session import Session

    tiny = ["--set", "image_size=16", "--set", "width=8", "--set", "stages=2", "--set", "blocks=1",
            "--set", "calib_hidden=[16]", "--set", "augment=false", "--set", "k=4", "--set", "progress_every=100"]
    done = subprocess.run([sys.executable, "-m", "uldl_studio", "train", "demo", "--out", str(tmp_path / "run"),
                           "--limit", "60", "--epochs", "1", "--device", "cpu", "--folds", "2", *tiny],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    samples = Run.open(tmp_path / "run").samples()
    train = samples["split"].to_numpy() == "train"
    oof = scores.values(samples, "oof_confidence")
    assert np.isfinite(oof[train]).all() and np.isnan(oof[~train]).all()
    folds = fold_of(samples["sample_id"][train], 2)
    assert set(folds) == {0, 1}
    fold_models = [Run.open(tmp_path / "run" / "crossfit" / f"fold{k}").samples() for k in (0, 1)]
    for k, model in enumerate(fold_models):     # a row is predicted by the model that held it out
        assert set(model.loc[model["split"] == "valid", "sample_id"]) == \
            set(samples["sample_id"][train][folds == k])
    session = Session.open_run(tmp_path / "run")
    row = int(np.flatnonzero(train)[0])
    before = session.score("oof_confidence")[row]
    new = (int(session.table["label"].iat[row]) + 1) % len(session.classes)
    session.relabel([row], [new])
    assert session.score("oof_confidence")[row] == pytest.approx(1 - session.table[f"oof_{session.classes[new]}"].iat[row])
    assert session.score("oof_confidence")[row] != pytest.approx(before)
    session.journal.close()


def test_review_rule_by_hand():
    from uldl_studio.core.labels.soft_labels import UNSURE_LABEL_MASS, reviewed_soft_labels

    soft = np.array([[0.78, 0.04, 0.18],     # relabelled 0 → 1: all mass on the correction
                     [0.90, 0.06, 0.04],     # unsure, label 0: capped at 0.5, the rest 0.6 : 0.4
                     [0.30, 0.50, 0.20],     # unsure, label 0 already below the cap: unchanged
                     [0.70, 0.10, 0.20],     # relabelled 0 → 2 and unsure: 0.5 on 2, rest 0.875 : 0.125
                     [1.00, 0.00, 0.00],     # unsure, nothing off the label: the prediction spreads it
                     [0.20, 0.30, 0.50]])    # untouched
    p = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0], [0.5, 0.25, 0.25], [1, 0, 0]], dtype=float)
    labels = np.array([1, 0, 0, 2, 0, 0])
    edited = np.array([True, False, False, True, False, False])
    unsure = np.array([False, True, True, True, True, False])
    out = reviewed_soft_labels(soft, labels, edited, unsure, fallback=p)
    assert UNSURE_LABEL_MASS == 0.5
    assert np.allclose(out, [[0, 1, 0], [0.5, 0.3, 0.2], [0.3, 0.5, 0.2], [0.4375, 0.0625, 0.5],
                             [0.5, 0.25, 0.25], [0.2, 0.3, 0.5]])
    assert np.allclose(out.sum(1), 1)
    # idempotent: a file read back and exported again keeps its soft labels
    assert np.allclose(reviewed_soft_labels(out, labels, edited, unsure, fallback=p), out)
    # no prediction either: the rest is spread evenly
    alone = reviewed_soft_labels(np.array([[1.0, 0, 0]]), np.array([0]), np.array([False]), np.array([True]))
    assert np.allclose(alone, [[0.5, 0.25, 0.25]])


def test_corrections_reach_the_export_and_train_on_it(tmp_path):
    """Relabel and mark unsure in the run's journal, export from the command line: the relabelled
    row's soft label is the correction, the unsure row's keeps at most half on its label, the
    original label is a column; `train --soft-labels` on that file learns exactly those rows."""
    import json

    import pandas as pd

    from uldl_studio.core.labels.edits import run_journal
    from uldl_studio.core.runs.export import read_soft_labels

    first = tmp_path / "first"
    _cli("train", "demo", "--out", str(first), "--limit", "80", "--epochs", "1", "--device", "cpu", *TINY)
    samples = pd.read_csv(first / "samples.csv", dtype={"sample_id": str})
    classes = json.loads((first / "config.json").read_text())["classes"]
    d_cols = [f"soft_{c}" for c in classes]
    train = samples[samples["split"] == "train"]
    # the training row whose soft label is surest of its given label: relabel it to another class
    sure = train.iloc[np.argsort(-train[d_cols].to_numpy().max(1))]
    relabelled, doubtful = sure.iloc[0], sure.iloc[1]
    old, new = int(relabelled["label"]), (int(relabelled["label"]) + 3) % len(classes)
    with run_journal(first) as journal:
        journal.relabel([relabelled["sample_id"]], [new])
        journal.mark_unsure([doubtful["sample_id"]])
    _cli("export", str(first), "--out", str(tmp_path / "soft.csv"))
    back = read_soft_labels(tmp_path / "soft.csv").set_index("sample_id")
    d = back[[f"d_{c}" for c in classes]]
    row = back.loc[relabelled["sample_id"]]
    assert (row["label"], row["original_label"], row["edited"]) == (new, old, True)
    assert row["original_label_name"] == classes[old] and row["label_name"] == classes[new]
    assert d.loc[relabelled["sample_id"]].to_numpy()[new] == 1.0
    unsure = back.loc[doubtful["sample_id"]]
    assert unsure["unsure"] and not unsure["edited"]
    assert d.loc[doubtful["sample_id"]].to_numpy()[int(unsure["label"])] == pytest.approx(0.5)
    untouched = back.index[~back["edited"] & ~back["unsure"]]
    assert (back.loc[untouched, "original_label"] == back.loc[untouched, "label"]).all()
    # train on the export: a ce run learns the soft label as its target
    second = tmp_path / "second"
    _cli("train", "demo", "--out", str(second), "--limit", "80", "--epochs", "1", "--method", "ce",
        "--device", "cpu", "--soft-labels", str(tmp_path / "soft.csv"), *TINY)
    learned = pd.read_csv(second / "samples.csv", dtype={"sample_id": str}).set_index("sample_id")
    for sid in (relabelled["sample_id"], doubtful["sample_id"]):
        assert np.allclose(learned.loc[sid, [f"d_{c}" for c in classes]].to_numpy(float), d.loc[sid].to_numpy(),
                           atol=1e-6)
