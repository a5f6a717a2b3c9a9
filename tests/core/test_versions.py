"""core.versions: a retrain writes a new version and never touches the ones before.

Real tiny trainings on the in-memory demo (a second each), a real subprocess killed with
SIGKILL in the middle of an epoch, the real journal.
"""
import hashlib
import json
import shutil
import signal
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from test_training import TINY, kill_in_epoch_two, tiny_demo
from uldl_studio.core.engine.config import TrainConfig
from uldl_studio.core.labels.edits import EditJournal, apply_run_edits, run_journal
from uldl_studio.core.runs.evaluate import evaluate
from uldl_studio.core.engine.run import Run, load_checkpoint
from uldl_studio.core.table import DatasetError
from uldl_studio.core.engine.training import fit
from uldl_studio.core.engine.versions import (REGISTRY, VERSIONS_DIR, complete_version, delete_version, discard_unstarted,
                                       list_versions, promote, start_version)

pytestmark = pytest.mark.timeout(240)
torch.set_num_threads(1)
CONFIG = TrainConfig(**TINY, epochs=1, va="columns")
V1_FILES = ("config.json", "checkpoint.pt", "samples.csv", "features.npy", "neighbors.npz", "history.csv",
            "metrics.json")


@pytest.fixture(scope="module")
def demo():
    return tiny_demo()


@pytest.fixture(scope="module")
def trained(demo, tmp_path_factory):
    """A first training (v1) with its metrics, as every run starts."""
    table, images = demo
    root = tmp_path_factory.mktemp("base") / "run"
    list(fit(table, CONFIG, root, images=images))
    evaluate(Run.open(root))
    return root


@pytest.fixture
def run_root(trained, tmp_path):
    root = tmp_path / "run"
    shutil.copytree(trained, root)
    return root


def digests(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in V1_FILES}


def relabel_first(root: Path, table, k: int = 0) -> str:
    sid = str(table["sample_id"].iloc[k])
    with run_journal(root) as journal:
        journal.relabel([sid], [(int(table["label"].iloc[k]) + 1) % 7])
    return sid


def stop_after_epoch(n: int):
    seen = {"epoch": 0}

    def cancel() -> bool:
        return seen["epoch"] >= n

    return seen, cancel


def test_a_first_training_stays_a_flat_run(trained):
    run = Run.open(trained)
    assert (run.path, run.root, run.version, run.parent, run.edits_seq) == (trained, trained, "v1", None, None)
    [only] = list_versions(trained)
    assert (only.name, only.current, only.complete, only.epochs_done, only.epochs_planned) == ("v1", True, True, 1, 1)
    assert only.valid_acc == pytest.approx(run.history()["valid_accuracy"].iloc[-1])
    assert not (trained / REGISTRY).exists() and not (trained / VERSIONS_DIR).exists()


def test_fit_refuses_to_train_afresh_over_a_trained_model(run_root, demo):
    table, images = demo
    before = digests(run_root)
    with pytest.raises(DatasetError, match=r"already holds a trained model.*retrain"):
        list(fit(table, CONFIG, run_root, images=images))
    assert digests(run_root) == before


def test_retrain_writes_a_version_and_keeps_the_first_byte_for_byte(run_root, demo):
    table, images = demo
    before = digests(run_root)
    edited = relabel_first(run_root, table)
    trained_on = apply_run_edits(table, run_root)
    config = TrainConfig(**{**CONFIG.to_dict(), "epochs": 2})
    run = start_version(run_root, config, trained_on)
    assert (run.path, run.version, run.parent, run.root) == (run_root / "versions" / "v2", "v2", "v1", run_root)
    assert (run.edits, run.edits_seq) == (1, 1)
    assert Run.open(run_root).version == "v1"  # registered, not current

    seen, cancel = stop_after_epoch(1)
    for p in fit(trained_on, config, run.path, images=images, cancel=cancel):
        if p.phase == "epoch_end":
            seen["epoch"] = p.epoch
    assert not complete_version(run)  # 1 of 2 epochs: the parent stays current
    assert Run.open(run_root).version == "v1"
    infos = {i.name: i for i in list_versions(run_root)}
    assert (infos["v2"].epochs_done, infos["v2"].complete, infos["v2"].current) == (1, False, False)

    list(fit(trained_on, config, run.path, images=images, resume=True))
    assert complete_version(run)
    current = Run.open(run_root)
    assert (current.version, current.path) == ("v2", run.path)
    assert Run.open(run_root, version="v1").path == run_root
    assert Run.open(run_root / "versions" / "v2").version == "v2"
    assert digests(run_root) == before  # v1's model, results and metrics are untouched

    samples = current.samples()
    row = samples.set_index("sample_id").loc[edited]
    assert int(row["label"]) != int(row["label_given"])  # it trained on the edited label
    train = samples["split"] == "train"
    v1 = Run.open(run_root, version="v1").samples()
    np.testing.assert_array_equal(samples.loc[train, "lambda_prev"].to_numpy(), v1.loc[train, "lambda"].to_numpy())
    registry = json.loads((run_root / REGISTRY).read_text())
    assert registry["current"] == "v2"
    assert [(e["name"], e["dir"], e["parent"], e["edits_seq"], e["edits"]) for e in registry["versions"]] == \
        [("v1", ".", None, None, None), ("v2", "versions/v2", "v1", 1, 1)]


def test_replaying_the_journal_to_edits_seq_gives_the_labels_a_version_trained_with(run_root, demo):
    table, images = demo
    relabel_first(run_root, table, 0)
    run = start_version(run_root, CONFIG, apply_run_edits(table, run_root))
    later = relabel_first(run_root, table, 5)  # an edit made after the version was started
    with run_journal(run_root) as journal:
        journal.mark_unsure([str(table["sample_id"].iloc[6])])
    replayed = apply_run_edits(table, run.root, upto_seq=run.edits_seq)
    list(fit(replayed, CONFIG, run.path, images=images))
    complete_version(run)
    samples = Run.open(run_root).samples().set_index("sample_id")
    np.testing.assert_array_equal(samples.loc[replayed["sample_id"], "label"].to_numpy(), replayed["label"].to_numpy())
    assert int(samples.loc[later, "label"]) == int(table.set_index("sample_id").loc[later, "label"])
    assert not samples["unsure"].any()
    now = apply_run_edits(table, run_root)
    assert int(now.set_index("sample_id").loc[later, "label"]) != int(samples.loc[later, "label"])
    with pytest.raises(DatasetError, match="read-only"):
        EditJournal(run_root / "edits.jsonl", upto_seq=run.edits_seq).relabel([later], [0])


def test_stop_before_the_first_epoch_leaves_no_folder(run_root, demo, tmp_path):
    table, images = demo
    run = start_version(run_root, CONFIG, apply_run_edits(table, run_root))
    progress = list(fit(table, CONFIG, run.path, images=images, cancel=lambda: True))
    assert progress[-1].phase == "cancelled"
    assert discard_unstarted(run)
    assert not (run_root / "versions").exists()
    assert [i.name for i in list_versions(run_root)] == ["v1"] and Run.open(run_root).version == "v1"
    assert not discard_unstarted(Run.open(run_root))  # a trained version is never discarded

    new = tmp_path / "new run"  # a new run (not a retrain) stopped before its first epoch
    Run.create(new, CONFIG, table)
    assert list(fit(table, CONFIG, new, images=images, cancel=lambda: True))[-1].phase == "cancelled"
    assert discard_unstarted(new) and not new.exists()

    kept = tmp_path / "with notes"
    Run.create(kept, CONFIG, table)
    (kept / "notes.txt").write_text("mine")
    with pytest.warns(UserWarning, match=r"with notes: .*left in place.*notes.txt"):
        assert discard_unstarted(kept)
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"]


def test_the_journal_is_shared_by_the_versions(run_root, demo):
    from uldl_studio.core.review.session import Session

    table, images = demo
    run = start_version(run_root, CONFIG, apply_run_edits(table, run_root))
    list(fit(table, CONFIG, run.path, images=images))
    complete_version(run)
    session = Session.open_run(run_root)
    assert session.run.version == "v2"
    sid = str(table["sample_id"].iloc[3])
    session.journal.relabel([sid], [(int(table["label"].iloc[3]) + 2) % 7])
    session.journal.close()
    assert not (run.path / "edits.jsonl").exists()
    v1 = Run.open(run_root, version="v1")
    assert apply_run_edits(v1.samples(), v1.root).set_index("sample_id").loc[sid, "edited"]
    assert evaluate(v1, write=False)["review"]["relabelled"] == 1


def test_delete_version_refuses_the_current_one_and_v1(run_root, demo):
    table, images = demo
    runs = []
    for _ in range(2):
        run = start_version(run_root, CONFIG, apply_run_edits(table, run_root))
        list(fit(table, CONFIG, run.path, images=images))
        complete_version(run)
        runs.append(run)
    assert [(i.name, i.parent, i.current) for i in list_versions(run_root)] == \
        [("v1", None, False), ("v2", "v1", False), ("v3", "v2", True)]
    with pytest.raises(DatasetError, match=r"v3 is the current version"):
        delete_version(run_root, "v3")
    with pytest.raises(DatasetError, match=r"v1 is the run folder itself"):
        delete_version(run_root, "v1")
    (runs[0].path / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match=r"versions/v2: not deleted: .*notes.txt"):
        delete_version(run_root, "v2")
    (runs[0].path / "notes.txt").unlink()
    delete_version(run_root, "v2")
    assert not runs[0].path.exists()
    assert [i.name for i in list_versions(run_root)] == ["v1", "v3"]
    assert Run.open(run_root).version == "v3"
    promote(run_root, "v1")
    assert Run.open(run_root).path == run_root
    with pytest.raises(DatasetError, match=r"versions.json: the run has no version 'v2' \(versions: v1, v3\)"):
        Run.open(run_root, version="v2")


def test_a_damaged_version_list_is_one_line_naming_it(run_root, demo):
    table, _ = demo
    start_version(run_root, CONFIG, apply_run_edits(table, run_root))
    (run_root / REGISTRY).write_text('{"format_version": 1, "current": "v7", "versions": []}')
    with pytest.raises(DatasetError, match=r"versions.json: not a valid version list \(no versions listed\)"):
        Run.open(run_root)


KILL_SCRIPT = textwrap.dedent("""
    import sys, time, torch
    sys.path.insert(0, {tests!r})
    torch.set_num_threads(1)
    from test_training import tiny_demo
    from test_versions import CONFIG
    from uldl_studio.core.engine.config import TrainConfig
    from uldl_studio.core.labels.edits import apply_run_edits
    from uldl_studio.core.engine.training import fit
    from uldl_studio.core.engine.versions import start_version
    table, images = tiny_demo()
    config = TrainConfig(**{{**CONFIG.to_dict(), "epochs": 3}})
    run = start_version(sys.argv[1], config, apply_run_edits(table, sys.argv[1]))
    for p in fit(apply_run_edits(table, sys.argv[1]), config, run.path, images=images):
        if p.phase == "train" and p.epoch == 2 and p.batch >= 2:
            print("IN-EPOCH-2", flush=True)
            time.sleep(60)  # killed here, in the middle of epoch 2
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_a_retrain_killed_mid_epoch_leaves_the_parent_current_and_resumes(run_root, demo):
    table, images = demo
    before = digests(run_root)
    relabel_first(run_root, table)
    kill_in_epoch_two(KILL_SCRIPT.format(tests=str(Path(__file__).parent)), run_root)
    current = Run.open(run_root)
    assert current.version == "v1" and len(current.samples()) == len(table)
    assert digests(run_root) == before
    infos = {i.name: i for i in list_versions(run_root)}
    assert (infos["v2"].epochs_done, infos["v2"].epochs_planned, infos["v2"].complete) == (1, 3, False)

    partial = Run.open(run_root, version="v2")
    assert load_checkpoint(partial.path)["epoch"] == 1
    replayed = apply_run_edits(table, partial.root, upto_seq=partial.edits_seq)
    list(fit(replayed, partial.config, partial.path, images=images, resume=True))
    assert complete_version(partial)
    assert Run.open(run_root).version == "v2" and len(Run.open(run_root).history()) == 3
