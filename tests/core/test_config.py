"""core.engine.config: stored training options, their format and its migration."""
import json
import threading
import warnings

import pytest
import torch

from uldl_studio.core.engine.config import FORMAT_VERSION, ConfigError, TrainConfig
from uldl_studio.core.engine.run import Run, load_checkpoint
from uldl_studio.core.engine.training import fit
from test_training import TINY, tiny_demo

# What a config.json's "train" held on 2026-12-02: λ's per-batch options named, no
# format_version, and none of lambda_evidence, lambda_evidence_form, lambda_knn_weight.
WRITTEN_2026_12_02 = {
    "method": "ldlva", "epochs": 8, "batch_size": 64, "lr": 0.05, "seed": 0, "neighbors": "bank",
    "va": "auto", "k": 8, "neighbor_space": "va", "neighbor_refresh": True, "lambda_init": 0.2,
    "lambda_lr": 1.0, "lambda_baseline": "global", "lambda_prior": 0.05, "lambda_budget": None,
}


def test_options_are_written_with_their_format():
    stored = TrainConfig(epochs=3).to_dict()
    assert stored["format_version"] == FORMAT_VERSION == 2
    assert TrainConfig.from_dict(json.loads(json.dumps(stored))) == TrainConfig(epochs=3)
    with pytest.raises(ConfigError, match="format_version=1"):
        TrainConfig(format_version=1)


def test_an_old_format_config_is_migrated_to_what_it_meant():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = TrainConfig.from_dict(WRITTEN_2026_12_02)
    # the options it lacked: the behaviour from before they existed
    assert config.lambda_evidence == "batch" and config.lambda_evidence_form == "ce"
    assert config.lambda_knn_weight == 0.0
    # the options it named: as written
    assert config.neighbor_refresh and config.lambda_lr == 1.0 and config.lambda_prior == 0.05
    assert config.format_version == FORMAT_VERSION
    # older still: before neighbour refresh existed, the neighbours stayed fixed
    older = {k: v for k, v in WRITTEN_2026_12_02.items() if k != "neighbor_refresh"}
    assert not TrainConfig.from_dict(older).neighbor_refresh


def test_a_current_format_config_missing_an_option_takes_its_default():
    stored = TrainConfig(epochs=3).to_dict()
    del stored["lambda_knn_weight"], stored["neighbor_refresh"]
    config = TrainConfig.from_dict(stored)
    assert config.lambda_knn_weight == TrainConfig().lambda_knn_weight == 2.0
    assert config.neighbor_refresh


def test_a_removed_option_is_ignored_with_a_note_when_it_asked_for_something_else():
    stored = {**TrainConfig(epochs=3).to_dict(), "bank_momentum": 0.0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the value the code behaves as: nothing to say
        assert TrainConfig.from_dict(stored) == TrainConfig(epochs=3)
    with pytest.warns(UserWarning, match=r"removed training options ignored: bank_momentum \(now 0.0"):
        config = TrainConfig.from_dict({**stored, "bank_momentum": 0.7})
    assert config == TrainConfig(epochs=3)
    with pytest.raises(TypeError):
        TrainConfig(bank_momentum=0.5)


def test_a_newer_format_is_refused():
    with pytest.raises(ConfigError, match="format 3, written by a newer version"):
        TrainConfig.from_dict({**TrainConfig().to_dict(), "format_version": 3})


def test_an_old_run_resumes_with_the_behaviour_it_was_trained_with(tmp_path):
    """A run whose config.json and checkpoint hold format-1 options (per-batch λ, as every run
    trained before 2026-12-03) resumes on per-batch λ evidence, and equals the same run
    trained without a break."""
    table, images = tiny_demo(n=200)
    old_options = {**TINY, "epochs": 3, "va": "columns", "lambda_baseline": "class"}
    straight = TrainConfig.from_dict(old_options)
    assert straight.lambda_evidence == "batch"
    list(fit(table, straight, tmp_path / "straight", images=images))

    run_dir = tmp_path / "old"
    stop = threading.Event()
    for p in fit(table, straight, run_dir, images=images, cancel=stop):
        if p.phase == "epoch_end" and p.epoch == 2:
            stop.set()
    # write it back as the older version did: no format_version, no per-epoch λ options
    document = json.loads((run_dir / "config.json").read_text())
    document["train"] = {k: v for k, v in document["train"].items()
                         if k not in ("format_version", "lambda_evidence", "lambda_evidence_form", "lambda_knn_weight")}
    (run_dir / "config.json").write_text(json.dumps(document))
    ckpt = load_checkpoint(run_dir)
    ckpt["config"] = dict(document["train"])
    torch.save(ckpt, run_dir / "checkpoint.pt")

    run = Run.open(run_dir)
    assert run.config.lambda_evidence == "batch" and run.config.lambda_baseline == "class"
    list(fit(table, run.config, run_dir, images=images, resume=True))
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(run_dir)
    assert torch.equal(a["lambda_raw"], b["lambda_raw"]) and torch.equal(a["baseline"], b["baseline"])
    assert bool(b["baseline_seen"][1:].any())  # the per-class running means of the batch evidence
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_a_run_that_names_a_removed_option_opens_predicts_and_resumes(tmp_path):
    """A run written on 2026-12-03 (no format_version, bank_momentum named) with an averaged bank."""
    from uldl_studio.core.runs.predict import Predictor

    table, images = tiny_demo(n=160)
    config = TrainConfig(**TINY, epochs=2, va="columns")
    run_dir = tmp_path / "run"
    stop = threading.Event()
    for p in fit(table, config, run_dir, images=images, cancel=stop):
        if p.phase == "epoch_end":
            stop.set()
    document = json.loads((run_dir / "config.json").read_text())
    del document["train"]["format_version"]
    document["train"]["bank_momentum"] = 0.5
    (run_dir / "config.json").write_text(json.dumps(document))
    ckpt = load_checkpoint(run_dir)
    ckpt["config"] = dict(document["train"])
    torch.save(ckpt, run_dir / "checkpoint.pt")

    with pytest.warns(UserWarning, match="bank_momentum"):
        run = Run.open(run_dir)
    assert run.config == config
    with pytest.warns(UserWarning, match="bank_momentum"):
        assert Predictor(run, projection=False).config == config
    with pytest.warns(UserWarning, match="bank_momentum"):
        progress = list(fit(table, run.config, run_dir, images=images, resume=True))
    assert [p.epoch for p in progress if p.phase == "epoch_end"] == [2]
