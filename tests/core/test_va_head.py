"""The valence-arousal head: trained beside the classifier when the training rows have V-A, its
error on the valid split, its predictions in samples.csv and in prediction files, and
``--va-from RUN``: another dataset placed with that run's head.

Real tiny trainings on a demo written to disk (images decoded through the real cache).
"""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from test_training import TINY, tiny_demo
from uldl_studio.cli import main
from uldl_studio.core.data.datasets.demo import write_demo
from uldl_studio.core.engine.config import ConfigError, TrainConfig
from uldl_studio.core.engine.recipe import DatasetRecipe
from uldl_studio.core.engine.run import Run
from uldl_studio.core.engine.training import fit
from uldl_studio.core.engine.va import HEAD_COLUMNS, PRED_COLUMNS, circumplex_points, placement_of, va_errors
from uldl_studio.core.progress import run_to_end
from uldl_studio.core.runs import jobs
from uldl_studio.core.runs.evaluate import evaluate
from uldl_studio.core.runs.predict import (
    PredictOptions, Predictor, head_placement, predict, predict_collection, read_predictions, write_predictions,
)
from uldl_studio.core.table import DatasetError, make_table

pytestmark = pytest.mark.timeout(300)
torch.set_num_threads(1)
HEAD = TrainConfig(**TINY, epochs=2, method="ce", va_head_weight=1.0)


def brightness_data(n=240, size=32, seed=0):
    """(table, images): valence is the image's brightness and arousal its contrast, two things a
    tiny network sees in a few epochs; the label is the brighter or darker half."""
    rng = np.random.default_rng(seed)
    bright, contrast = rng.uniform(0.2, 0.8, n), rng.uniform(0.05, 0.35, n)
    noise = rng.standard_normal((n, 1, size, size))
    images = np.clip(255 * (bright[:, None, None, None] + contrast[:, None, None, None] * noise), 0, 255)
    split = np.array(["train", "train", "train", "valid", "test"])[np.arange(n) % 5]
    frame = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "path": [f"/nowhere/s{i}.png" for i in range(n)],
                          "split": split, "label": (bright > 0.5).astype(np.int64),
                          "valence": 2 * bright - 1, "arousal": 4 * contrast - 0.8})
    return make_table(frame, ["sad", "happy"], "/nowhere", "demo"), images.astype(np.uint8)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    write_demo(folder, n=200, seed=2)
    return folder


@pytest.fixture(scope="module")
def source(demo_dir, tmp_path_factory):
    """A run with a V-A head, trained on the demo (which has valence and arousal)."""
    out = tmp_path_factory.mktemp("runs") / "source"
    run_to_end(jobs.train_job(jobs.new_run(DatasetRecipe.of(demo_dir, format="demo"), HEAD, out)))
    return Run.open(out)


@pytest.fixture(scope="module")
def no_va(tmp_path_factory):
    """A run on a table without valence and arousal: no head."""
    table, images = tiny_demo(n=120)
    table = table.drop(columns=["valence", "arousal"])
    out = tmp_path_factory.mktemp("runs") / "no_va"
    list(fit(table, TrainConfig(**TINY, epochs=1, method="ce"), out, images=images))
    return Run.open(out)


def test_the_head_trains_and_beats_predicting_the_mean(tmp_path):
    table, images = brightness_data()
    config = TrainConfig(**TINY, epochs=6, method="ce", va_head_weight=1.0, augment=False)
    list(fit(table, config, tmp_path / "r", images=images))
    source = Run.open(tmp_path / "r")
    last = source.history().iloc[-1]
    for axis in ("valence", "arousal"):
        assert last[f"valid_va_rmse_{axis}"] < last[f"valid_va_rmse_mean_{axis}"], axis
        assert np.isfinite(last[f"valid_va_mae_{axis}"]) and np.isfinite(last[f"valid_va_ccc_{axis}"])
    assert last["va_placement"] == "columns" and last["loss_va"] > 0
    samples = source.samples()
    pred = samples[list(PRED_COLUMNS)].to_numpy(np.float64)
    assert np.isfinite(pred).all() and (np.abs(pred) < 1).all() and pred.std(0).min() > 0.01
    # the history's valid error is the error of the written predictions
    valid = (samples["split"] == "valid").to_numpy()
    errors = va_errors(pred[valid], samples.loc[valid, ["valence", "arousal"]].to_numpy(np.float64))
    assert errors["rmse_valence"] == pytest.approx(last["valid_va_rmse_valence"], abs=1e-6)
    metrics = evaluate(source, write=False)
    assert metrics["va"]["placement"] == "dataset columns"
    head = metrics["va"]["head"]["valid"]
    assert head["rmse_arousal"] == pytest.approx(last["valid_va_rmse_arousal"], abs=1e-6)
    assert head["rmse_valence"] < head["rmse_mean_valence"]
    assert "va_head.weight" in source.checkpoint()["model"] and Predictor(source).has_va_head


def test_va_from_places_the_samples_with_the_other_runs_head(source, demo_dir, tmp_path):
    config = TrainConfig(**TINY, epochs=2, va="head", va_from=str(source.path), va_head_weight=0.0)
    out = tmp_path / "placed"
    run_to_end(jobs.train_job(jobs.new_run(DatasetRecipe.of(demo_dir, format="demo"), config, out)))
    run = Run.open(out)
    samples = run.samples()
    # the points are the source run's head on the same images: its own samples.csv, and predict()
    theirs = source.samples().set_index("sample_id").loc[samples["sample_id"], list(PRED_COLUMNS)]
    np.testing.assert_allclose(samples[["valence", "arousal"]].to_numpy(), theirs.to_numpy(), atol=1e-5)
    predicted = predict(source, run.load_dataset()).set_index("sample_id").loc[samples["sample_id"]]
    np.testing.assert_allclose(samples[["valence", "arousal"]].to_numpy(),
                               predicted[list(PRED_COLUMNS)].to_numpy(), atol=1e-5)
    assert "valence_given" in samples  # the dataset's own V-A are kept beside them
    assert not any(c in samples for c in HEAD_COLUMNS) and not any(c in samples for c in PRED_COLUMNS)
    assert (run.history()["va_placement"] == "head").all()
    assert run.config.va == "head" and "va_head.weight" not in run.checkpoint()["model"]
    assert placement_of(run) == f"V-A head of {source.path.name}"
    assert evaluate(run, write=False)["va"]["placement"] == f"V-A head of {source.path.name}"


def test_a_run_without_va_columns_has_no_head_and_works(no_va, demo_dir, tmp_path):
    history, samples = no_va.history(), no_va.samples()
    assert not any(c.startswith("valid_va_") for c in history) and (history["va_placement"] == "circumplex").all()
    assert not any(c in samples for c in PRED_COLUMNS)
    assert np.isfinite(samples[["valence", "arousal"]].to_numpy()).all()
    assert not any(k.startswith("va_head") for k in no_va.checkpoint()["model"])
    metrics = evaluate(no_va, write=False)
    assert metrics["va"] == {"placement": "circumplex projection"} and metrics["valid"]["accuracy"] >= 0
    # its predictions: the circumplex V-A, empty head columns
    result = predict_collection(no_va, demo_dir / "images", PredictOptions(device="cpu"))
    table = result.table
    assert table[list(PRED_COLUMNS)].isna().all().all()
    p = table[[f"p_{c}" for c in no_va.classes]].to_numpy(np.float64)
    np.testing.assert_allclose(table[["valence", "arousal"]].to_numpy(),
                               np.clip(circumplex_points(p, no_va.classes, None, 1.0), -1, 1), atol=1e-12)
    with pytest.raises(DatasetError, match="has no V-A head"):
        head_placement(no_va, pd.DataFrame())


def test_va_head_weight_zero_trains_no_head(tmp_path):
    table, images = tiny_demo(n=120)
    list(fit(table, TrainConfig(**TINY, epochs=1, method="ce", va_head_weight=0.0), tmp_path / "r", images=images))
    run = Run.open(tmp_path / "r")
    assert "va_pred_valence" not in run.samples() and "valid_va_rmse_valence" not in run.history()


def test_predict_writes_the_heads_valence_and_arousal(source, demo_dir, tmp_path):
    result = predict_collection(source, demo_dir / "images", PredictOptions(device="cpu"))
    table = result.table
    head = table[list(PRED_COLUMNS)].to_numpy(np.float64)
    assert np.isfinite(head).all()
    np.testing.assert_array_equal(table[["valence", "arousal"]].to_numpy(), head)
    # the same images in the run's own samples.csv: the same head points
    theirs = source.samples().set_index("path").loc[table["path"], list(PRED_COLUMNS)].to_numpy()
    np.testing.assert_allclose(head, theirs, atol=1e-5)
    out = tmp_path / "pred.csv"
    write_predictions(table, out)
    back = read_predictions(out)
    assert list(back.columns)[-2:] == list(PRED_COLUMNS)
    np.testing.assert_array_equal(back["va_pred_arousal"].to_numpy(), table["va_pred_arousal"].to_numpy())


def test_config_round_trip_and_old_configs_have_no_head():
    config = TrainConfig(va="head", va_from="/runs/r1", va_head_weight=0.3)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert TrainConfig().va_head_weight > 0
    old = TrainConfig().to_dict()
    del old["va_head_weight"], old["va_from"]
    assert TrainConfig.from_dict(old).va_head_weight == 0.0
    format_1 = {k: v for k, v in old.items() if k != "format_version"}
    assert TrainConfig.from_dict(format_1).va_head_weight == 0.0
    with pytest.raises(ConfigError, match="va_from"):
        TrainConfig(va="head")
    with pytest.raises(ConfigError, match="va_from"):
        TrainConfig(va="columns", va_from="/runs/r1")
    with pytest.raises(ConfigError, match="va_head_weight"):
        TrainConfig(va_head_weight=-1)


def test_cli_va_from_errors(demo_dir, tmp_path, capsys):
    assert main(["train", str(demo_dir), "--out", str(tmp_path / "a"), "--va", "head"]) == 2
    assert "--va-from RUN" in capsys.readouterr().err
    assert main(["train", str(demo_dir), "--out", str(tmp_path / "b"), "--va-from", str(demo_dir)]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert main(["train", str(demo_dir), "--out", str(tmp_path / "c"), "--va-from", str(demo_dir),
                 "--va", "columns"]) == 2
    assert "cannot be combined" in capsys.readouterr().err


def test_cli_train_va_from_and_predict(source, demo_dir, tmp_path, capsys):
    out = tmp_path / "cli_run"
    tiny = ["--set", "image_size=32", "--set", "width=8", "--set", "batch_size=32", "--set", "num_threads=1"]
    assert main(["train", str(demo_dir), "--out", str(out), "--epochs", "1", "--method", "ce",
                 "--va-from", str(source.path), *tiny]) == 0
    run = Run.open(out)
    assert run.config.va == "head" and run.config.va_from == str(source.path.resolve())
    samples = run.samples()
    theirs = source.samples().set_index("sample_id").loc[samples["sample_id"], list(PRED_COLUMNS)]
    np.testing.assert_allclose(samples[["valence", "arousal"]].to_numpy(), theirs.to_numpy(), atol=1e-5)
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    assert f"V-A head of {source.path.name}" in capsys.readouterr().out
    written = tmp_path / "pred.csv"
    assert main(["predict", str(out), str(demo_dir / "images"), "--out", str(written), "--limit", "10"]) == 0
    predicted = read_predictions(written)
    assert "va_pred_valence" in predicted and predicted["va_pred_valence"].notna().all()  # the demo has V-A: a head
