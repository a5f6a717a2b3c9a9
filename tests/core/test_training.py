"""core.training: fit() end to end on tiny data, reproducibility, resume, cancel, kill, corruption."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from uldl_studio.core.engine.config import TrainConfig
from uldl_studio.core.engine.run import Run, load_checkpoint
from uldl_studio.core.table import DatasetError, d_columns, make_table, p_columns
from uldl_studio.core.engine.training import Progress, fit

pytestmark = pytest.mark.timeout(240)
torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]

# Tiny everything: 32 px, width 8, small calibration MLP — each fit takes a few seconds.
TINY = dict(image_size=32, width=8, calib_hidden=[32, 16], batch_size=32, progress_every=2, num_threads=1)


def tiny_demo(n=300, seed=0, size=32):
    """(table, images uint8 (n, 1, size, size)) from the in-memory demo generator."""
    from uldl_studio.core.data.datasets.demo import DEMO_CLASSES, generate_demo

    images, frame = generate_demo(n=n, seed=seed, size=64)
    frame["path"] = [f"/nowhere/{s}.png" for s in frame["sample_id"]]
    table = make_table(frame, DEMO_CLASSES, "/nowhere", "demo")
    x = torch.as_tensor(images[:, None]).float()
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="area")
    return table, x.round().clamp(0, 255).to(torch.uint8).numpy()


@pytest.fixture(scope="module")
def demo():
    return tiny_demo()


def run_fit(table, images, run_dir, **overrides):
    config = TrainConfig(**{**TINY, "epochs": 2, **overrides})
    return list(fit(table, config, run_dir, images=images)), config


EVIDENCE = ["dyn_p_given_mean", "dyn_p_given_std", "dyn_margin_mean", "knn_disagreement"]


def assert_evidence_columns(samples, classes):
    """The per-sample evidence columns: on every row (all splits), finite, in range."""
    values = samples[EVIDENCE].to_numpy()
    assert np.isfinite(values).all()
    mean, std, margin, knn = values.T
    assert ((mean >= 0) & (mean <= 1)).all() and ((std >= 0) & (std <= 0.5)).all()
    assert ((margin >= -1) & (margin <= 1)).all() and ((knn >= 0) & (knn <= 1)).all()
    assert (margin <= mean + 1e-12).all()  # p[given] - max other <= p[given]
    p_given = samples[p_columns(classes)].to_numpy()[np.arange(len(samples)), samples["label"]]
    return p_given


def test_ldlva_end_to_end(demo, tmp_path):
    table, images = demo
    progress, config = run_fit(table, images, tmp_path / "run", va="circumplex")
    phases = [p.phase for p in progress]
    assert phases[0] == "load" and phases[-1] == "done"
    assert "warmup" in phases and "train" in phases and phases.count("epoch_end") == 2
    assert all(isinstance(p, Progress) for p in progress)
    assert any(p.phase == "load" and "on cpu" in p.message for p in progress)  # says where and how it trains
    for name in ("config.json", "samples.csv", "history.csv", "checkpoint.pt", "neighbors.npz", "features.npy"):
        assert (tmp_path / "run" / name).exists(), name
    run = Run.open(tmp_path / "run")
    assert run.has_results and run.config == config and run.classes == table.attrs["classes"]
    samples = run.samples()
    assert len(samples) == len(table) and list(samples["sample_id"]) == list(table["sample_id"])
    train = samples[samples["split"] == "train"]
    d = train[d_columns(run.classes)].to_numpy()
    p = samples[p_columns(run.classes)].to_numpy()
    assert np.allclose(d.sum(1), 1) and (d >= 0).all()
    assert np.allclose(p.sum(1), 1)
    lam = train["lambda"].to_numpy()
    assert np.abs(lam - config.lambda_init).max() > 1e-3   # λ was learned: every sample starts at lambda_init
    assert samples.loc[samples["split"] != "train", "lambda"].isna().all()
    assert np.isfinite(samples[["valence", "arousal", "x2d", "y2d"]].to_numpy()).all()
    assert "valence_given" in samples  # circumplex differs from the demo's own V-A columns
    nb = run.neighbors()
    assert nb["indices"].shape == (len(train), 8)
    assert np.allclose(nb["contribution"], nb["zeta"] * nb["similarity"], atol=1e-6)
    history = run.history()
    assert list(history["epoch"]) == [1, 2] and list(history["phase"]) == ["warmup", "train"]
    assert run.features().shape == (len(table), 32)
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["lambda_raw"].shape == (len(train),)
    np.testing.assert_allclose(lam, torch.sigmoid(ckpt["lambda_raw"].float()).numpy(), atol=1e-6)  # the learned λ, per sample
    assert_evidence_columns(samples, run.classes)
    assert ckpt["dynamics"]["epochs"] == 2 and (samples["dyn_p_given_std"] > 0).mean() > 0.9


def test_ce_is_lambda_zero(demo, tmp_path):
    table, images = demo
    run_fit(table, images, tmp_path / "ce", method="ce", epochs=1)
    samples = Run.open(tmp_path / "ce").samples()
    train = samples[samples["split"] == "train"]
    assert (train["lambda"] == 0).all()
    onehot = np.eye(7)[train["label"]]
    assert np.allclose(train[d_columns(samples.attrs["classes"])].to_numpy(), onehot)
    assert not (tmp_path / "ce" / "neighbors.npz").exists()
    # one epoch: the dynamics are that epoch's p[given], with no spread
    p_given = assert_evidence_columns(samples, samples.attrs["classes"])
    assert np.array_equal(samples["dyn_p_given_mean"].to_numpy(), p_given)
    assert (samples["dyn_p_given_std"] == 0).all()


def test_same_seed_same_lambda_bit_for_bit(demo, tmp_path):
    table, images = demo
    run_fit(table, images, tmp_path / "a", va="columns")
    run_fit(table, images, tmp_path / "b", va="columns")
    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    assert torch.equal(a["lambda_raw"], b["lambda_raw"])
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    c, _ = run_fit(table, images, tmp_path / "c", va="columns", seed=1)
    assert not torch.equal(a["lambda_raw"], load_checkpoint(tmp_path / "c")["lambda_raw"])


def _assert_same_state(a, b):
    for key in ("lambda_raw", "centres", "bank_probs", "bank_features", "baseline"):
        assert torch.equal(a[key], b[key]), key
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["epoch"] == b["epoch"] and a["step"] == b["step"]
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[i]["momentum_buffer"], sb[i]["momentum_buffer"]) for i in sa)


@pytest.mark.parametrize("options", [{}, {"lambda_evidence": "batch", "lambda_baseline": "class"},
                                     {"lambda_evidence": "both", "lambda_budget": 0.3}],
                         ids=["defaults", "batch-evidence", "both-evidence-budget"])
def test_resume_equals_uninterrupted(demo, tmp_path, options):
    table, images = demo
    config = TrainConfig(**TINY, epochs=3, va="columns", **options)
    list(fit(table, config, tmp_path / "straight", images=images))

    # stop right after epoch 2 (cancel is checked before the first batch of epoch 3)
    stop = threading.Event()
    phases = []
    for p in fit(table, config, tmp_path / "resumed", images=images, cancel=stop):
        phases.append(p.phase)
        if p.phase == "epoch_end" and p.epoch == 2:
            stop.set()
    assert phases[-1] == "cancelled"
    assert load_checkpoint(tmp_path / "resumed")["epoch"] == 2
    progress = list(fit(table, config, tmp_path / "resumed", images=images, resume=True))
    assert [p.epoch for p in progress if p.phase == "epoch_end"] == [3]
    _assert_same_state(load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "resumed"))
    assert len(Run.open(tmp_path / "resumed").history()) == 3
    straight, resumed = Run.open(tmp_path / "straight").samples(), Run.open(tmp_path / "resumed").samples()
    classes = straight.attrs["classes"]
    soft = [f"{prefix}{c}" for prefix in ("pavg_", "soft_") for c in classes]
    for column in EVIDENCE + soft + p_columns(classes) + ["lambda"]:
        assert np.array_equal(straight[column].to_numpy(), resumed[column].to_numpy(), equal_nan=True), column


def test_resume_from_a_checkpoint_without_dynamics(demo, tmp_path):
    """An older checkpoint (no dynamics sums) still resumes; the sums restart, with a warning."""
    table, images = demo
    config = TrainConfig(**TINY, epochs=2, method="ce")
    run_dir = tmp_path / "old"
    stop = threading.Event()
    for p in fit(table, config, run_dir, images=images, cancel=stop):
        if p.phase == "epoch_end":
            stop.set()
    ckpt = load_checkpoint(run_dir)
    del ckpt["dynamics"]
    torch.save(ckpt, run_dir / "checkpoint.pt")
    with pytest.warns(UserWarning, match="no training-dynamics sums"):
        list(fit(table, config, run_dir, images=images, resume=True))
    samples = Run.open(run_dir).samples()
    p_given = assert_evidence_columns(samples, samples.attrs["classes"])
    assert np.array_equal(samples["dyn_p_given_mean"].to_numpy(), p_given)  # epoch 2 only
    assert load_checkpoint(run_dir)["dynamics"]["epochs"] == 1


def test_feature_space_neighbours_follow_the_backbone(demo, tmp_path):
    table, images = demo
    run_fit(table, images, tmp_path / "va", va="columns")
    run_fit(table, images, tmp_path / "feat", va="columns", neighbor_space="features")
    va_nb, feat_nb = Run.open(tmp_path / "va").neighbors(), Run.open(tmp_path / "feat").neighbors()
    assert feat_nb["indices"].shape == va_nb["indices"].shape
    assert (feat_nb["indices"] != va_nb["indices"]).mean() > 0.5  # a different geometry
    # each train row's neighbours are its K most cosine-similar training features (warm-up model)
    ckpt = load_checkpoint(tmp_path / "feat")
    n_train = ckpt["lambda_raw"].shape[0]
    assert ckpt["neighbor_index"].shape == (n_train, 8) and (ckpt["neighbor_index"] != torch.arange(n_train)[:, None]).all()
    s = ckpt["similarity"]
    assert ((s > 0) & (s <= 1)).all() and (s[:, :-1] >= s[:, 1:] - 1e-6).all()  # nearest first
    samples = Run.open(tmp_path / "feat").samples()  # the map keeps the V-A points
    assert np.allclose(samples["valence"], table["valence"])


def test_neighbour_refresh_rebuilds_each_epoch_and_resumes(demo, tmp_path):
    table, images = demo
    config = TrainConfig(**TINY, epochs=3, va="circumplex", neighbor_refresh=True)
    fixed = TrainConfig(**TINY, epochs=3, va="circumplex", neighbor_refresh=False)
    list(fit(table, fixed, tmp_path / "fixed", images=images))
    stop = threading.Event()
    for p in fit(table, config, tmp_path / "refresh", images=images, cancel=stop):
        if p.phase == "epoch_end" and p.epoch == 2:
            after_two = load_checkpoint(tmp_path / "refresh")
            stop.set()
    list(fit(table, config, tmp_path / "refresh", images=images, resume=True))
    list(fit(table, config, tmp_path / "straight", images=images))
    # epoch 2 was the first LDLVA epoch: its neighbours were rebuilt from epoch 2's model
    assert not torch.equal(after_two["neighbor_index"], load_checkpoint(tmp_path / "fixed")["neighbor_index"])
    _assert_same_state(load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "refresh"))
    assert torch.equal(load_checkpoint(tmp_path / "straight")["neighbor_index"],
                       load_checkpoint(tmp_path / "refresh")["neighbor_index"])


def test_lambda_evidence_baselines():
    """class: minus a running mean per given label; global: minus one running mean; none: as is."""
    from uldl_studio.core.engine.dynamics import TrainingDynamics
    from uldl_studio.core.engine.experimental import centred
    from uldl_studio.core.engine.training import _State

    y = torch.tensor([0, 0, 1, 2])
    evidence = torch.tensor([1.0, 3.0, -2.0, 6.0])
    fresh = lambda: _State(TrainConfig(**TINY), 3, 4, np.zeros(4, bool), torch.device("cpu"),  # noqa: E731
                           TrainingDynamics(4))
    assert torch.equal(centred(fresh(), "none", y, evidence), evidence)
    state = fresh()
    # first batch: the baseline is the batch mean (per class / overall)
    assert torch.allclose(centred(state, "class", y, evidence), torch.tensor([-1.0, 1.0, 0.0, 0.0]))
    state_global = fresh()
    assert torch.allclose(centred(state_global, "global", y, evidence), evidence - 2.0)
    assert state_global.baseline_seen.tolist() == [True, False, False]
    # second batch: running mean with momentum 0.9 (class 2 absent keeps its value)
    second = torch.tensor([5.0, 5.0, 0.0, 0.0])
    out = centred(state, "class", torch.tensor([0, 0, 1, 1]), second)
    assert torch.allclose(state.baseline, torch.tensor([0.9 * 2 + 0.1 * 5, 0.9 * -2 + 0.1 * 0, 6.0]))
    assert torch.allclose(out, second - state.baseline[torch.tensor([0, 0, 1, 1])])
    centred(state_global, "global", y, second)
    assert float(state_global.baseline[0]) == pytest.approx(0.9 * 2 + 0.1 * 2.5)


@pytest.mark.parametrize("form, knn_weight", [("ce", 0.0), ("prob", 1.5)])
def test_epoch_evidence_step_by_hand(demo, tmp_path, form, knn_weight):
    """lambda_evidence=epoch: λ moves once per LDLVA epoch, by one SGD step on the evaluation
    pass's evidence g_i = Σ_j (l_ij − d̃_ij) log p_ij (``ce``) or Σ_j (l_ij − d̃_ij) p_ij (``prob``),
    minus κ · knn_disagreement_i, minus its mean over the train rows; here (one LDLVA epoch, no
    prior) recomputed from the files the run wrote."""
    from uldl_studio.core.engine.training import _logit

    table, images = demo
    lr, init = 2.0, 0.2
    run_fit(table, images, tmp_path / "run", va="columns", lambda_evidence="epoch", lambda_prior=0.0,
            lambda_lr=lr, lambda_init=init, lambda_knn_weight=knn_weight, lambda_evidence_form=form)
    run = Run.open(tmp_path / "run")
    samples, nb = run.samples(), run.neighbors()
    train = samples[samples["split"] == "train"]
    p = train[p_columns(run.classes)].to_numpy(np.float64)
    c = nb["contribution"].astype(np.float64)
    d_tilde = (c[:, :, None] * p[nb["indices"]]).sum(1) / c.sum(1, keepdims=True)
    onehot = np.eye(p.shape[1])[train["label"].to_numpy()]
    g = ((onehot - d_tilde) * (np.log(p) if form == "ce" else p)).sum(1) - knn_weight * train["knn_disagreement"].to_numpy()
    sig = init * (1 - init)
    expected = 1 / (1 + np.exp(-(_logit(init) - lr * sig * (g - g.mean()))))
    assert np.allclose(train["lambda"].to_numpy(), expected, atol=1e-4)
    assert float(np.std(expected)) > 1e-3  # the check is not vacuous: λ moved, unevenly
    # and d is built with the updated λ
    lam = train["lambda"].to_numpy()[:, None]
    assert np.allclose(train[d_columns(run.classes)].to_numpy(), (1 - lam) * onehot + lam * d_tilde, atol=1e-4)


def test_lambda_baseline_global_trains(demo, tmp_path):
    table, images = demo
    run_fit(table, images, tmp_path / "g", va="columns", lambda_baseline="global", lambda_evidence="batch")
    ckpt = load_checkpoint(tmp_path / "g")
    assert bool(ckpt["baseline_seen"][0]) and not ckpt["baseline_seen"][1:].any()  # one shared slot
    lam = torch.sigmoid(ckpt["lambda_raw"])
    assert ((lam > 0) & (lam < 1)).all() and float(lam.std()) > 0


def test_cancel_callable_mid_epoch(demo, tmp_path):
    table, images = demo
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 3

    progress = list(fit(table, TrainConfig(**TINY, epochs=2), tmp_path / "run", images=images, cancel=cancel))
    assert progress[-1].phase == "cancelled" and progress[-1].epoch == 1
    assert not (tmp_path / "run" / "checkpoint.pt").exists()  # no epoch completed
    # resume with nothing saved starts from scratch and finishes
    progress = list(fit(table, TrainConfig(**TINY, epochs=2), tmp_path / "run", images=images, resume=True))
    assert progress[-1].phase == "done" and load_checkpoint(tmp_path / "run")["epoch"] == 2


def test_exact_neighbours_and_l1(demo, tmp_path):
    table, images = demo
    run_fit(table, images, tmp_path / "exact", neighbors="exact", similarity="l1", va="columns")
    samples = Run.open(tmp_path / "exact").samples()
    d = samples.loc[samples["split"] == "train", d_columns(samples.attrs["classes"])].to_numpy()
    assert np.allclose(d.sum(1), 1)


def test_unsure_rows_start_high_and_budget_caps_mean_lambda(demo, tmp_path):
    table, images = demo
    table = table.copy()
    table["unsure"] = False
    unsure_ids = table.index[table["split"] == "train"][:10]
    table.loc[unsure_ids, "unsure"] = True
    run_fit(table, images, tmp_path / "run", epochs=1)  # warm-up capped: one LDLVA epoch
    samples = Run.open(tmp_path / "run").samples()
    lam = samples.set_index("sample_id")["lambda"]
    unsure = lam[table.loc[unsure_ids, "sample_id"]]
    others = lam[table.loc[(table["split"] == "train") & ~table["unsure"], "sample_id"]]
    assert unsure.min() > others.max()
    run_fit(table, images, tmp_path / "budget", epochs=2, lambda_budget=0.1)
    ckpt = load_checkpoint(tmp_path / "budget")
    assert torch.sigmoid(ckpt["lambda_raw"]).mean() <= 0.1 + 1e-4


def test_retrain_keeps_lambda_prev(demo, tmp_path):
    from uldl_studio.core.engine.versions import complete_version, start_version

    table, images = demo
    run_fit(table, images, tmp_path / "run", epochs=1)
    first = Run.open(tmp_path / "run").samples()
    assert first["lambda_prev"].isna().all()
    config = TrainConfig(**{**TINY, "epochs": 1, "lambda_lr": 5.0})
    version = start_version(tmp_path / "run", config, table)  # training again writes a new version
    list(fit(table, config, version.path, images=images))
    assert complete_version(version)
    second = Run.open(tmp_path / "run").samples()
    train = second["split"] == "train"
    assert np.array_equal(second.loc[train, "lambda_prev"].to_numpy(), first.loc[train, "lambda"].to_numpy())


def test_corrupt_checkpoint_is_reported_and_previous_kept(demo, tmp_path):
    table, images = demo
    run_fit(table, images, tmp_path / "run", epochs=2)
    run_dir = tmp_path / "run"
    prev = (run_dir / "checkpoint.prev.pt").read_bytes()
    data = (run_dir / "checkpoint.pt").read_bytes()
    (run_dir / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="corrupt or truncated.*checkpoint.prev.pt"):
        load_checkpoint(run_dir)
    with pytest.raises(DatasetError, match="checkpoint.pt"):
        list(fit(table, TrainConfig(**TINY, epochs=2), run_dir, images=images, resume=True))
    assert (run_dir / "checkpoint.prev.pt").read_bytes() == prev  # untouched
    assert torch.load(run_dir / "checkpoint.prev.pt", weights_only=True)["epoch"] == 1


def test_config_round_trip_and_validation():
    config = TrainConfig(epochs=3, delta=0.4, va_centroids={"fear": [-0.5, 0.7]}, lambda_budget=0.3)
    import json

    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(TypeError, match="method"):
        TrainConfig(method="nope")
    with pytest.raises(ValueError, match="lambda_init"):
        TrainConfig(lambda_init=1.0)
    with pytest.warns(UserWarning, match="unknown"):
        TrainConfig.from_dict({"epochs": 2, "from_the_future": 1})


KILL_SCRIPT = textwrap.dedent("""
    import sys, time, torch
    sys.path.insert(0, {tests!r})
    torch.set_num_threads(1)
    from test_training import tiny_demo, TINY
    from uldl_studio.core.engine.config import TrainConfig
    from uldl_studio.core.engine.training import fit
    table, images = tiny_demo()
    config = TrainConfig(**TINY, epochs=3, va="columns")
    for p in fit(table, config, sys.argv[1], images=images):
        if p.phase == "train" and p.epoch == 2 and p.batch >= 4:
            print("IN-EPOCH-2", flush=True)
            time.sleep(60)  # killed here, in the middle of epoch 2
""")


def kill_in_epoch_two(script: str, argument) -> None:
    """Run ``script`` in a real child process and SIGKILL it once it prints IN-EPOCH-2."""
    proc = subprocess.Popen([sys.executable, "-c", script, str(argument)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        line = proc.stdout.readline()
        assert "IN-EPOCH-2" in line, proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_during_epoch_then_resume(demo, tmp_path):
    table, images = demo
    config = TrainConfig(**TINY, epochs=3, va="columns")
    list(fit(table, config, tmp_path / "straight", images=images))

    run_dir = tmp_path / "killed"
    kill_in_epoch_two(KILL_SCRIPT.format(tests=str(Path(__file__).parent)), run_dir)
    assert load_checkpoint(run_dir)["epoch"] == 1  # the last completed epoch survived
    assert not list(run_dir.glob(".*.tmp"))
    list(fit(table, config, run_dir, images=images, resume=True))
    _assert_same_state(load_checkpoint(tmp_path / "straight"), load_checkpoint(run_dir))


def test_demo_constructed_distributions_beat_one_hot(tmp_path):
    """After a tiny train, d is closer to the demo's true distributions than the given labels."""
    from uldl_studio.core.labels.metrics import intersection, kl_divergence

    table, images = tiny_demo(n=700, seed=1)
    list(fit(table, TrainConfig(**TINY, epochs=3, va="columns"), tmp_path / "run", images=images))
    samples = Run.open(tmp_path / "run").samples()
    classes = samples.attrs["classes"]
    train = samples[samples["split"] == "train"]
    ref = train[[f"ref_{c}" for c in classes]].to_numpy()
    d = train[d_columns(classes)].to_numpy()
    onehot = np.eye(len(classes))[train["label"]]
    inter_d, inter_l = intersection(ref, d), intersection(ref, onehot)
    kl_d, kl_l = kl_divergence(ref, d), kl_divergence(ref, onehot)
    print(f"demo: intersection d {inter_d:.3f} vs one-hot {inter_l:.3f}; KL d {kl_d:.3f} vs one-hot {kl_l:.3f}")
    assert inter_d > inter_l + 0.02
    assert kl_d < kl_l
