"""End to end through the real CLI: demo-data, train, evaluate, export, predict, resume.

Tiny configurations (32 px, width 8) keep each training to seconds; everything else is real:
images on disk, the training generator, the run directory, the CSV reader.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from uldl_studio.core.runs.export import read_soft_labels
from uldl_studio.core.engine.run import Run

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

TINY = ["--set", "image_size=32", "--set", "width=8", "--set", "stages=2", "--set", "blocks=1",
        "--set", "calib_hidden=[32,16]", "--set", "batch_size=32", "--set", "num_threads=1"]


def cli(*args, env_extra=None, check=True):
    env = {**os.environ, **(env_extra or {})}
    result = subprocess.run([sys.executable, "-m", "uldl_studio", *map(str, args)],
                            capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"uldl-studio {' '.join(map(str, args))} failed:\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo data"  # a space in the path on purpose
    cli("demo-data", out, "--n", "240", "--seed", "1")
    return out


@pytest.fixture(scope="module")
def trained_run(demo_folder, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "ldlva"
    cli("train", demo_folder / "labels.csv", "--out", run, "--epochs", "2", *TINY)
    return run


def test_demo_data_writes_the_generic_csv_layout(demo_folder):
    frame = pd.read_csv(demo_folder / "labels.csv")
    assert len(frame) == 240
    assert {"path", "label", "split", "valence", "arousal"} <= set(frame.columns)
    assert all((demo_folder / p).is_file() for p in frame["path"].head(20))


def test_train_writes_a_complete_run(trained_run):
    for name in ("config.json", "checkpoint.pt", "samples.csv", "history.csv", "neighbors.npz"):
        assert (trained_run / name).is_file(), name
    run = Run.open(trained_run)
    samples = run.samples()
    train = samples[samples["split"] == "train"]
    lam = train["lambda"].to_numpy()
    assert np.all((lam >= 0) & (lam <= 1))
    d = train[[f"d_{c}" for c in run.classes]].to_numpy()
    np.testing.assert_allclose(d.sum(1), 1.0, atol=1e-6)
    assert len(run.history()) == 2


def test_evaluate_prints_json_metrics(trained_run):
    metrics = json.loads(cli("evaluate", trained_run, "--json").stdout)
    flat = json.dumps(metrics)
    assert "accuracy" in flat and "intersection" in flat
    assert (trained_run / "metrics.json").is_file()


def test_export_round_trips_with_edits_applied(trained_run, tmp_path):
    from uldl_studio.core.labels.edits import EditJournal

    samples = Run.open(trained_run).samples()
    target_id = samples["sample_id"].iloc[0]
    new_label = (int(samples["label"].iloc[0]) + 1) % len(samples.attrs["classes"])
    run_copy = tmp_path / "run"
    shutil.copytree(trained_run, run_copy)
    with EditJournal(run_copy / "edits.jsonl") as journal:
        journal.relabel([target_id], [new_label])

    out = tmp_path / "soft labels.csv"
    cli("export", run_copy, "--out", out)
    exported = read_soft_labels(out)
    assert len(exported) == len(samples)
    row = exported.set_index("sample_id").loc[target_id]
    assert int(row["label"]) == new_label and bool(row["edited"])
    assert exported["edited"].sum() == 1
    p = exported[[c for c in exported.columns if c.startswith("p_")]].to_numpy(float)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)


def test_predict_on_another_layout(trained_run, demo_folder, tmp_path):
    # A class-per-folder tree built from a few demo images: another layout, other file names.
    frame = pd.read_csv(demo_folder / "labels.csv").head(30)
    root = tmp_path / "folders"
    for i, (path, label) in enumerate(zip(frame["path"], frame["label"])):
        (root / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(demo_folder / path, root / label / f"img_{i}.png")
    out = tmp_path / "pred.csv"
    cli("predict", trained_run, root, "--out", out)
    predicted = read_soft_labels(out)
    assert len(predicted) == 30
    p = predicted[[c for c in predicted.columns if c.startswith("p_")]].to_numpy(float)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)


def test_resume_continues_from_the_last_epoch(trained_run, demo_folder, tmp_path):
    run_copy = tmp_path / "run"
    shutil.copytree(trained_run, run_copy)
    other = cli("train", tmp_path, "--out", run_copy, "--resume", "--epochs", "3", check=False)
    assert other.returncode == 2 and "the dataset it was trained on" in other.stderr
    assert str(demo_folder / "labels.csv") in other.stderr
    assert len(Run.open(run_copy).history()) == 2  # nothing trained
    result = cli("train", demo_folder, "--out", run_copy, "--resume", "--epochs", "3")
    assert "epoch 3/3" in result.stderr
    assert "epoch 1/3" not in result.stderr  # epochs 1 and 2 were not trained again
    history = Run.open(run_copy).history()
    assert len(history) == 3


def test_train_on_a_tiny_ferplus_subset(ferplus_root, tmp_path):
    run = tmp_path / "fer"
    cli("train", ferplus_root, "--out", run, "--epochs", "1", "--limit", "40",
        "--single-label", "sample", "--method", "ce", *TINY)
    samples = Run.open(run).samples()
    assert set(samples["split"]) == {"train", "valid", "test"}
    assert (samples["split"] == "train").sum() == 40
    metrics = json.loads(cli("evaluate", run, "--json").stdout)
    assert "intersection" in json.dumps(metrics)


def test_refuses_to_overwrite_an_existing_run(trained_run):
    result = cli("train", "demo", "--out", trained_run, check=False)
    assert result.returncode == 2
    assert "already holds a run" in result.stderr
