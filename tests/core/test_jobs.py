"""core.runs.jobs and core.engine.recipe: the one way the GUI and the CLI train and predict.

Real tiny trainings on a demo written to disk (images decoded through the real cache), the
real journal, real version folders.
"""
import threading

import numpy as np
import pandas as pd
import pytest
import torch

from test_training import TINY
from uldl_studio.core.cancel import Cancelled
from uldl_studio.core.data.datasets import load_dataset
from uldl_studio.core.data.datasets.demo import write_demo
from uldl_studio.core.engine.config import TrainConfig
from uldl_studio.core.engine.noise import inject_label_noise
from uldl_studio.core.engine.recipe import DatasetRecipe
from uldl_studio.core.engine.run import Run
from uldl_studio.core.engine.versions import list_versions
from uldl_studio.core.labels.edits import EditJournal
from uldl_studio.core.progress import run_to_end
from uldl_studio.core.review.session import Session
from uldl_studio.core.runs import jobs
from uldl_studio.core.runs.predict import PredictOptions, read_predictions
from uldl_studio.core.table import DatasetError

pytestmark = pytest.mark.timeout(300)
torch.set_num_threads(1)
CONFIG = TrainConfig(**TINY, epochs=1, va="columns")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    write_demo(folder, n=160, seed=2)
    return folder


@pytest.fixture(scope="module")
def recipe(demo_dir):
    return DatasetRecipe.of(demo_dir, format="demo")


@pytest.fixture(scope="module")
def trained(recipe, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    result = run_to_end(jobs.train_job(jobs.new_run(recipe, CONFIG, out)))
    return out, result


# ----------------------------------------------------------------------------- the recipe
def test_recipe_round_trips_and_reads_old_records(demo_dir):
    recipe = DatasetRecipe.of(demo_dir, format="demo", limit=20, label_noise=0.25, noise_seed=3)
    assert recipe.path == str(demo_dir.resolve())
    assert DatasetRecipe.from_dict(recipe.to_dict()) == recipe
    assert DatasetRecipe.from_dict({**recipe.to_dict(), "path_rel": "../x"}) == recipe  # unknown keys ignored
    old = DatasetRecipe.from_dict({"path": "/data/fer", "format": "ferplus", "limit": None})
    assert old == DatasetRecipe("/data/fer", "ferplus")  # a record written before the other fields
    assert old.single_label == "majority" and old.label_noise == 0.0 and old.soft_labels is None


def test_recipe_load_is_the_dataset_with_its_noise(demo_dir):
    recipe = DatasetRecipe.of(demo_dir, format="demo", limit=20, label_noise=0.25, noise_seed=3)
    expected = inject_label_noise(load_dataset(demo_dir, fmt="demo", limit=20), 0.25, seed=3)
    got = recipe.load()
    pd.testing.assert_frame_equal(got, expected)
    assert (got["label"] != load_dataset(demo_dir, fmt="demo", limit=20)["label"]).any()


# ----------------------------------------------------------------------------- training
def test_a_new_run_records_its_recipe(trained, recipe):
    out, result = trained
    assert result.outcome == "done" and result.current and result.run == out
    run = Run.open(out)
    assert run.recipe == recipe
    assert len(run.history()) == 1 and run.has_results


def test_a_new_run_refuses_a_trained_folder(trained, recipe):
    out, _ = trained
    with pytest.raises(DatasetError, match="already holds a trained run"):
        jobs.new_run(recipe, CONFIG, out)


def test_a_stop_before_the_first_epoch_keeps_no_folder(recipe, tmp_path):
    cancel = threading.Event()
    out = tmp_path / "stopped"
    seen = []

    def on_progress(progress):
        seen.append(progress.phase)
        if progress.phase in ("warmup", "train"):
            cancel.set()

    result = run_to_end(jobs.train_job(jobs.new_run(recipe, CONFIG, out), cancel=cancel), on_progress)
    assert "warmup" in seen and seen[-1] == "cancelled"
    assert result.outcome == "cancelled" and result.run is None
    assert result.message == "stopped before the first epoch: no run was kept"
    assert not out.exists()


def test_a_failure_before_the_first_epoch_keeps_no_folder(tmp_path):
    table = load_dataset("demo", limit=10)
    table["path"] = "/nowhere/missing.png"  # nothing can be decoded
    out = tmp_path / "failed"
    with pytest.raises(Exception):
        run_to_end(jobs.train_job(jobs.new_run(None, CONFIG, out, table=table)))
    assert not out.exists()


def test_a_new_version_learns_the_edits_and_becomes_current(trained, tmp_path):
    import shutil

    out, _ = trained
    root = tmp_path / "run"
    shutil.copytree(out, root)
    parent = Run.open(root)
    samples = parent.samples()
    train_ids = samples.loc[samples["split"] == "train", "sample_id"].tolist()
    given = int(samples.set_index("sample_id").loc[train_ids[0], "label"])
    new = (given + 1) % len(parent.classes)
    with EditJournal(root / "edits.jsonl") as journal:
        journal.relabel([train_ids[0]], [new])
    v1_samples = (root / "samples.csv").read_bytes()

    plan = jobs.new_version(parent, CONFIG, folds=2)
    records = []
    result = run_to_end(jobs.train_job(plan), records.append)
    assert records[0].phase == "load" and "start" in [r.phase for r in records]
    assert result.outcome == "done" and result.current
    assert result.run == root / "versions" / "v2"
    assert "version v2 of" in plan.describe and "(parent v1, 1 edited sample)" in plan.describe
    current = Run.open(root)
    assert current.version == "v2" and current.parent == "v1"
    trained_on = current.samples().set_index("sample_id")
    assert int(trained_on.loc[train_ids[0], "label"]) == new          # it learned the correction
    assert (result.run / "crossfit.npz").is_file()                    # the folds were cross-fitted
    assert trained_on.filter(like="oof_").notna().any().any()
    assert (root / "samples.csv").read_bytes() == v1_samples          # version 1 untouched
    assert [v.name for v in list_versions(root)] == ["v1", "v2"]


def test_resume_trains_the_next_epochs_into_the_same_folder(recipe, tmp_path):
    out = tmp_path / "run"
    run_to_end(jobs.train_job(jobs.new_run(recipe, CONFIG, out)))
    result = run_to_end(jobs.train_job(jobs.resume(Run.open(out), 2)))
    assert result.outcome == "done" and result.run == out
    run = Run.open(out)
    assert len(run.history()) == 2 and run.config.epochs == 2


# ----------------------------------------------------------------------------- prediction
def test_predict_job_writes_the_file_and_a_cancel_writes_nothing(trained, demo_dir, tmp_path):
    out, _ = trained
    run = Run.open(out)
    target = tmp_path / "pred.csv"
    records = []
    result = run_to_end(jobs.predict_job(run, demo_dir, target, PredictOptions(chunk_size=16), fmt="demo",
                                         limit=8), records.append)
    phases = [r.phase for r in records]
    assert phases[0] == "read" and phases[-1] == "write" and "predict" in phases
    written = read_predictions(target)
    assert len(written) == len(result.table) == 8  # the first 8 images of the collection
    assert np.allclose(written.filter(like="p_").sum(axis=1), 1.0)

    cancel = threading.Event()
    stopped = tmp_path / "stopped.csv"

    def on_progress(progress):
        if progress.phase == "predict" and progress.batch > 0:
            cancel.set()

    with pytest.raises(Cancelled):
        run_to_end(jobs.predict_job(run, demo_dir, stopped, PredictOptions(chunk_size=4), fmt="demo",
                                    cancel=cancel), on_progress)
    assert not stopped.exists()


# ----------------------------------------------------------------------------- the session
def test_the_session_plans_what_start_trains(trained, recipe, tmp_path):
    out, _ = trained
    session = Session()
    dataset = recipe.load()
    session.set_dataset(dataset, {"kind": "dataset", "path": recipe.path})
    plan = session.training_plan(CONFIG, tmp_path / "new")
    assert plan.kind == jobs.NEW and plan.table is dataset and plan.out == tmp_path / "new"
    session.set_run(Run.open(out))
    assert session.dataset is dataset  # the run trained on it: kept for the next version
    plan = session.training_plan(CONFIG, tmp_path / "unused")
    assert plan.kind == jobs.VERSION and plan.parent.path == out
    session.close()
    assert session.journal is None


def test_the_session_keeps_selection_and_current_across_a_reset(trained, recipe):
    out, _ = trained
    session = Session()
    dataset = recipe.load()
    session.set_dataset(dataset, {"kind": "dataset", "path": recipe.path})
    ids = ["demo_00005", "demo_00017", "demo_00040"]
    session.select(session.rows_of(ids))
    session.set_current(session.row_of("demo_00017"))
    events = []
    session.events.table_reset.connect(lambda: events.append("reset"))
    samples = Run.open(out).samples()
    shuffled = samples.sample(frac=1.0, random_state=0).reset_index(drop=True)
    shuffled.attrs = samples.attrs
    session.set_run(Run.open(out), shuffled)  # other row order: a reset
    assert events == ["reset"]
    assert sorted(session.sample_ids(session.selection)) == sorted(ids)
    assert session.sample_ids([session.current]) == ["demo_00017"]
    # another dataset starts with nothing selected
    session.set_dataset(dataset, {"kind": "dataset", "path": recipe.path})
    assert len(session.selection) == 0 and session.current == -1
    session.close()


# ------------------------------------------------------------------ several annotators' votes
def test_a_new_version_learns_every_annotators_votes_and_resumes_with_the_same(trained, tmp_path):
    """Two named annotators and the default one vote on a run; the next version trains on all
    their votes (one vote: the label; two: the combined soft label as target), records every
    journal's sequence number, and resuming it replays those votes, not the ones cast since."""
    import shutil

    from uldl_studio.core.labels import annotations as A

    root = tmp_path / "run"
    shutil.copytree(trained[0], root)
    run = Run.open(root)
    samples = run.samples()
    classes = run.classes
    train_ids = samples.loc[samples["split"] == "train", "sample_id"].tolist()
    both, single = train_ids[:4], train_ids[4]
    given = samples.set_index("sample_id")["label"]
    other = [(int(given[s]) + 1) % len(classes) for s in both]
    with A.annotator_journal(root, "alice") as j:
        j.relabel(both, other)
    with A.annotator_journal(root, "bob") as j:
        j.relabel(both[:2], other[:2])
        j.relabel(both[2:], [int(given[s]) for s in both[2:]])
        j.mark_unsure([single])
    with A.annotator_journal(root, A.DEFAULT_ANNOTATOR) as j:
        j.relabel([single], [(int(given[single]) + 2) % len(classes)])

    table = run.training_table().set_index("sample_id")
    assert table.loc[both[:2], "label"].tolist() == other[:2]            # both agree
    assert table.loc[both[2:], "label"].tolist() == [int(given[s]) for s in both[2:]]  # a tie: the given label
    assert table.loc[single, "label"] == (int(given[single]) + 2) % len(classes) and table.loc[single, "unsure"]
    targets = table[[f"target_{c}" for c in classes]].to_numpy()
    several = table.index.isin(both)
    assert table["combined"].to_numpy().tolist() == several.tolist()
    assert np.allclose(targets[several].sum(1), 1) and np.isnan(targets[~several]).all()
    assert (targets[several][:2].argmax(1) == other[:2]).all()

    import dataclasses

    result = run_to_end(jobs.train_job(jobs.new_version(run, dataclasses.replace(CONFIG, method="ce"))))
    version = Run.open(root, version="v2")
    learned = version.samples().set_index("sample_id")            # ce: d is the label it learned
    assert np.allclose(learned.loc[both, [f"d_{c}" for c in classes]].to_numpy(float), targets[several], atol=1e-6)
    assert result.outcome == "done" and Run.open(root).version == "v2"
    assert version.journal_seqs == A.journal_seqs(root) and set(version.journal_seqs) == \
        {"edits.jsonl", "annotations/alice.jsonl", "annotations/bob.jsonl"}
    with A.annotator_journal(root, "alice") as j:                         # a vote cast after v2 started
        j.relabel([single], [int(given[single])])
    again = version.version_training_table().set_index("sample_id")
    assert again.loc[single, "label"] == table.loc[single, "label"]
    assert np.allclose(again[[f"target_{c}" for c in classes]].to_numpy(), targets, equal_nan=True)
    assert run.training_table().set_index("sample_id").loc[single, "reviewed"]


# ----------------------------------------------------------------------------- opening
def test_open_dataset_detects_the_layout_or_names_what_it_cannot_read(demo_dir, tmp_path):
    opened = jobs.open_dataset(demo_dir)   # the demo folder is a CSV layout
    assert opened.source == {"kind": "dataset", "path": str(demo_dir), "format": "csv"}
    assert len(opened.table) == 160 and opened.warnings == []

    folder = tmp_path / "folders"
    for split, name in (("train", "happy"), ("train", "sad"), ("test", "happy")):
        (folder / split / name).mkdir(parents=True)
    src = sorted(demo_dir.rglob("*.png"))[:3]
    for image, target in zip(src, ("train/happy/a.png", "train/sad/b.png", "test/happy/c.png")):
        (folder / target).write_bytes(image.read_bytes())
    opened = jobs.open_dataset(folder, "auto")
    assert opened.format == "folders" and len(opened.table) == 3

    with pytest.raises(DatasetError, match=str(tmp_path / "missing")):
        jobs.open_dataset(tmp_path / "missing")


def test_open_run_gives_results_or_the_dataset_before_the_first_epoch(trained, recipe, tmp_path):
    out, _ = trained
    opened = jobs.open_run(out)
    assert opened.samples is not None and opened.dataset is None
    assert len(opened.samples) == 160 and opened.run.version == "v1"
    info = jobs.version_info(opened.run)
    assert info is not None and info.current and info.complete

    plan = jobs.new_run(recipe, CONFIG, tmp_path / "unstarted")
    jobs.Run.create(plan.out, CONFIG, recipe.load(), recipe)
    fresh = jobs.open_run(plan.out)
    assert fresh.samples is None and len(fresh.dataset) == 160
    assert jobs.open_run(plan.out, dataset=False).dataset is None
