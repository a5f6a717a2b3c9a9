"""core.run, core.predict, core.evaluate: the run directory and what reads it."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from test_training import TINY, tiny_demo
from uldl_studio.core.engine.config import TrainConfig
from uldl_studio.core.engine.recipe import DatasetRecipe
from uldl_studio.core.engine.run import Run
from uldl_studio.core.table import DatasetError, d_columns, make_table, p_columns
from uldl_studio.core.engine.training import fit

pytestmark = pytest.mark.timeout(240)
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def demo_on_disk(tmp_path_factory):
    """A small demo written in the generic CSV layout, and a trained run beside it."""
    from uldl_studio.core.data.datasets import load_dataset
    from uldl_studio.core.data.datasets.demo import write_demo

    root = tmp_path_factory.mktemp("project")
    csv_path = write_demo(root / "data", n=240, seed=2, size=48)
    table = load_dataset(csv_path.parent, fmt="csv")
    config = TrainConfig(**{**TINY, "image_size": 32, "epochs": 2})
    run_dir = root / "runs" / "r1"
    Run.create(run_dir, config, table, DatasetRecipe.of(csv_path.parent, format="csv"))
    list(fit(table, config, run_dir))  # images decoded by core.images from the PNGs
    return root, table, run_dir


def test_create_open_round_trip(demo_on_disk):
    root, table, run_dir = demo_on_disk
    run = Run.open(run_dir)
    doc = json.loads((run_dir / "config.json").read_text())
    assert doc["format_version"] == 1 and doc["dataset"]["path_rel"] == "../../data"
    assert run.classes == table.attrs["classes"] and run.has_results
    samples = run.samples()
    assert samples.attrs["classes"] == run.classes
    assert list(samples["sample_id"]) == list(table["sample_id"])
    # floats round-trip exactly through samples.csv
    again = run.samples()
    assert np.array_equal(samples[p_columns(run.classes)].to_numpy(), again[p_columns(run.classes)].to_numpy())
    assert run.history()["epoch"].tolist() == [1, 2]
    assert "Run(" in repr(run)


def test_open_errors(tmp_path):
    with pytest.raises(DatasetError, match="no such run directory"):
        Run.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="config.json is missing"):
        Run.open(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(DatasetError, match="unreadable"):
        Run.open(bad)
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "config.json").write_text(json.dumps({"format_version": 7, "train": {}, "classes": []}))
    with pytest.raises(DatasetError, match=r"written by a newer ULDL Studio \(format 7\)"):
        Run.open(newer)


def test_no_results_yet(tmp_path):
    table, _ = tiny_demo(n=40)
    run = Run.create(tmp_path / "run", TrainConfig(), table)
    assert not run.has_results and run.neighbors() is None and run.history().empty
    with pytest.raises(DatasetError, match="no completed epoch"):
        run.samples()


def test_dataset_moved_relative_path_first_then_error(demo_on_disk, tmp_path):
    root, table, run_dir = demo_on_disk
    # move project (run + data) together: the relative path still finds the data
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    run = Run.open(moved / "runs" / "r1")
    assert Path(run.dataset_path()) == (moved / "data").resolve()
    assert len(run.load_dataset()) == len(table)
    # data gone from both places: the error names both paths
    shutil.rmtree(moved / "data")
    run.recipe = run.recipe.at(str(tmp_path / "gone"))
    with pytest.raises(DatasetError) as err:
        run.load_dataset()
    assert "gone" in str(err.value) and str((moved / "data").resolve()) in str(err.value)


def test_training_table_applies_edits(demo_on_disk, tmp_path):
    edits = pytest.importorskip("uldl_studio.core.labels.edits")
    root, table, run_dir = demo_on_disk
    copy = tmp_path / "proj"
    shutil.copytree(root, copy)
    run = Run.open(copy / "runs" / "r1")
    sid = table["sample_id"].iloc[0]
    new_label = (int(table["label"].iloc[0]) + 1) % len(run.classes)
    journal = edits.EditJournal(run.path / "edits.jsonl")
    journal.relabel([sid], [new_label])
    journal.mark_unsure([table["sample_id"].iloc[1]])
    journal.close()
    edited = run.training_table()
    assert int(edited.loc[edited["sample_id"] == sid, "label"].iloc[0]) == new_label
    assert bool(edited.loc[edited["sample_id"] == table["sample_id"].iloc[1], "unsure"].iloc[0])


def test_predict_on_another_dataset(demo_on_disk, tmp_path):
    from uldl_studio.core.runs.predict import predict

    _, _, run_dir = demo_on_disk
    run = Run.open(run_dir)
    other, _ = tiny_demo(n=30, seed=9)
    from uldl_studio.core.data.datasets.demo import write_demo
    from uldl_studio.core.data.datasets import load_dataset

    other = load_dataset(write_demo(tmp_path / "other", n=30, seed=9, size=40).parent, fmt="csv")
    # a different class order: labels are mapped by name
    order = list(reversed(other.attrs["classes"]))
    remap = np.array([order.index(c) for c in other.attrs["classes"]])
    shuffled = other.copy()
    shuffled["label"] = remap[other["label"].to_numpy()]
    shuffled = make_table(shuffled, order, other.attrs["root"], "csv")
    seen = []
    result = predict(run, shuffled, batch_size=8, progress=lambda d, t: seen.append((d, t)))
    assert result.attrs["classes"] == run.classes
    assert np.array_equal(result["label"].to_numpy(), other["label"].to_numpy())
    p = result[p_columns(run.classes)].to_numpy()
    assert np.allclose(p.sum(1), 1) and np.array_equal(p, result[d_columns(run.classes)].to_numpy())
    assert result["lambda"].isna().all() and seen[-1] == (30, 30)
    # same images → same predictions as the run's own p for identical data
    with pytest.raises(DatasetError, match="contempt"):
        foreign = make_table(other.copy(), list(other.attrs["classes"][:-1]) + ["contempt"], "/x", "csv")
        predict(run, foreign)


def test_evaluate_writes_metrics(demo_on_disk):
    from uldl_studio.core.runs.evaluate import evaluate

    _, _, run_dir = demo_on_disk
    metrics = evaluate(Run.open(run_dir))
    assert (run_dir / "metrics.json").exists()
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics
    assert 0 <= metrics["test"]["accuracy"] <= 1
    assert "intersection" in metrics["test"]["reference"]
    c = metrics["constructed"]
    assert set(c["d_vs_reference"]) == set(c["onehot_vs_reference"]) >= {"kl", "intersection"}
    assert 0 <= c["lambda_auroc_reference"] <= 1


@pytest.mark.parametrize("module", ["uldl_studio.core.engine.config", "uldl_studio.core.engine.run", "uldl_studio.core.runs.predict"])
def test_readers_do_not_import_the_trainer(module):
    """Reading a run (and predicting with it) needs the model and the run files, not the loop."""
    import subprocess
    import sys

    code = f"import {module}, sys; print('uldl_studio.core.engine.training' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
