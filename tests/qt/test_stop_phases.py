"""Stop from the real main window in different phases: during the first epoch, during an
evaluation pass (the previous epoch stays on disk, whole), closing the window while training
or UMAP runs (the job is stopped and waited for), and UMAP's child killed at once."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch
from PySide6.QtCore import Qt

from uldl_studio.core.engine.run import Run, load_checkpoint
from uldl_studio.core.runs import jobs

from synthetic import open_demo  # noqa: E402  (tests/qt/synthetic.py)

pytestmark = pytest.mark.timeout(180)


def leftovers(run_dir: Path) -> list[str]:
    return [p.name for p in run_dir.iterdir() if p.name.startswith(".") or p.suffix in (".tmp", ".writing")]


def record_results(runner) -> list:
    """Wrap ``runner.stop_and_wait`` to keep what it returned."""
    results = []
    original = runner.stop_and_wait

    def stop_and_wait(*args, **kwargs):
        results.append(original(*args, **kwargs))
        return results[-1]

    runner.stop_and_wait = stop_and_wait
    return results


def start_and_wait_for(qtbot, win, run_dir, epochs, when, timeout=90_000):
    win.next_run_dir = run_dir
    win.training_panel.epochs.setValue(epochs)
    with qtbot.waitSignal(win.training.progress, timeout=timeout, check_params_cb=when):
        qtbot.mouseClick(win.training_panel.start_button, Qt.MouseButton.LeftButton)


def stop_with_the_button(qtbot, win):
    with qtbot.waitSignal(win.trainingFinished, timeout=30_000) as blocker:
        qtbot.mouseClick(win.training_panel.stop_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["cancelled"]
    return win.training.last_progress


def resume(qtbot, win, run_dir):
    """Continue the run from its last finished epoch (what ``uldl-studio train --resume`` does),
    re-reading its dataset on the worker."""
    from uldl_studio.qt.training_panel import make_train_config

    config = make_train_config(win.training_panel.values())
    run = Run.open(run_dir)
    epochs = []
    win.training.progress.connect(lambda p: epochs.append(p.epoch) if p.phase == "epoch_end" else None)
    with qtbot.waitSignal(win.training.finished, timeout=120_000) as blocker:
        win.training.start(jobs.resume(run, config.epochs))
    assert blocker.args == ["done"]
    return config, epochs


def test_stop_in_the_first_epoch_keeps_no_folder(qtbot, window, tmp_path):
    win = window
    open_demo(qtbot, win)
    run_dir = tmp_path / "run"
    # batches of two: epoch 1 lasts over a hundred batches, so the click lands in it even when
    # the cores are busy and the window's thread gets the progress late
    win.training_panel.extra_config["batch_size"] = 2
    start_and_wait_for(qtbot, win, run_dir, 2,
                       lambda p: p.phase in ("warmup", "train") and p.epoch == 1 and p.batch >= 2)
    last = stop_with_the_button(qtbot, win)
    assert last.phase == "cancelled" and last.epoch == 1
    assert "no epoch was finished" in last.message
    assert not run_dir.exists()                     # nothing was trained: no orphan run folder
    assert "no run was kept" in win.statusBar().currentMessage()
    # starting again trains a whole new run there
    win.training_panel.extra_config["batch_size"] = 32
    win.next_run_dir = run_dir
    with qtbot.waitSignal(win.trainingFinished, timeout=120_000) as blocker:
        qtbot.mouseClick(win.training_panel.start_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["done"] and load_checkpoint(run_dir)["epoch"] == 2 and leftovers(run_dir) == []


@pytest.mark.timeout(300)
def test_stop_during_an_evaluation_pass_keeps_the_previous_epoch(qtbot, window, tmp_path):
    """Stop right after epoch 2's last batch (the first after the warm-up): the worker is in the
    evaluation pass (one row per batch here, so it lasts a while); epoch 1's files and
    checkpoint stay as they were, byte for byte; resuming ends as an uninterrupted run."""
    from uldl_studio.core.engine.training import fit

    win = window
    open_demo(qtbot, win)
    run_dir = tmp_path / "run"
    win.training_panel.extra_config["eval_batch_size"] = 1
    saved = {}

    def keep_epoch_one(epoch):
        if epoch == 1:
            saved.update({p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()})

    win.epochLoaded.connect(keep_epoch_one)
    start_and_wait_for(qtbot, win, run_dir, 2,
                       lambda p: p.phase == "train" and p.epoch == 2 and p.batches and p.batch == p.batches)
    last = stop_with_the_button(qtbot, win)
    assert saved, "epoch 1 was never shown"
    assert last.phase == "cancelled" and last.epoch == 2
    assert ("epoch 2's evaluation pass" in last.message or "before writing epoch 2" in last.message), last.message
    assert "epoch 1 is saved" in last.message
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == saved  # untouched, byte for byte
    assert load_checkpoint(run_dir)["epoch"] == 1
    assert leftovers(run_dir) == []

    config, epochs = resume(qtbot, win, run_dir)
    assert epochs == [2]
    # ... and it ends where an uninterrupted run ends
    straight = tmp_path / "straight"
    for _ in fit(Run.open(run_dir).training_table(), config, straight):
        pass
    a, b = load_checkpoint(straight), load_checkpoint(run_dir)
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"]
    for name in ("lambda_raw", "centres", "bank_probs", "bank_features", "neighbor_index", "similarity"):
        assert torch.equal(a[name], b[name]), name
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_closing_the_window_during_evaluation_stops_and_waits(qtbot, window, tmp_path):
    win = window
    open_demo(qtbot, win)
    run_dir = tmp_path / "run"
    win.training_panel.extra_config["eval_batch_size"] = 1
    results = record_results(win.training.runner)
    start_and_wait_for(qtbot, win, run_dir, 40,
                       lambda p: p.phase in ("warmup", "train") and p.epoch == 1 and p.batches and p.batch == p.batches)
    thread = win.training.thread
    assert win.close()
    assert results == [True]                   # stopped and waited for
    assert not thread.isRunning()
    assert not run_dir.exists()   # epoch 1's evaluation was cut: no epoch, so no run folder is kept


def _umap_children(run_dir: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"uldl_studio.qt.umap_worker" in cmdline and str(run_dir).encode() in cmdline:
            pids.append(int(entry.name))
    return pids


def _wait_for_child(run_dir: Path, timeout: float = 30.0) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        pids = _umap_children(run_dir)
        if pids:
            return pids[0]
        time.sleep(0.01)
    raise AssertionError("the UMAP child never started")


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the child through /proc")
def test_umap_cancel_kills_the_child_at_once(run_dir, monkeypatch):
    """Cancel while the child works: the worker does not wait for the child to finish, it
    kills it (SIGKILL) and reaps it, and removes what a write cut by the kill left."""
    from uldl_studio.qt.umap_worker import compute_umap

    children = []

    class RecordedPopen(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            children.append(self)

    monkeypatch.setattr(subprocess, "Popen", RecordedPopen)
    cancel = threading.Event()
    out = {}
    worker = threading.Thread(target=lambda: out.update(coords=compute_umap(run_dir, cancel)))
    worker.start()
    pid = _wait_for_child(run_dir)
    time.sleep(0.3)  # importing umap-learn: well inside the child's work
    (run_dir / ".umap.npy.cut-short.tmp").write_bytes(b"half")  # what a write cut by the kill leaves
    [child] = children
    assert child.pid == pid and child.poll() is None   # still working when the cancel comes
    cancel.set()
    worker.join(30)
    assert not worker.is_alive()
    assert child.returncode == -signal.SIGKILL       # killed, not waited for until it finished
    assert out["coords"].shape == (0, 2)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)                        # killed and reaped
    assert not (run_dir / "umap.npy").exists()
    assert leftovers(run_dir) == []


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the child through /proc")
def test_closing_the_window_while_umap_runs_stops_it(qtbot, window, run_dir):
    win = window
    with qtbot.waitSignal(win.sessionLoaded, timeout=60_000):
        win.open_run(str(run_dir))
    results = record_results(win._umap_job)
    win.map_view.set_coordinates("umap")
    pid = _wait_for_child(run_dir)
    assert win.close()
    assert results == [True]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not (run_dir / "umap.npy").exists() and leftovers(run_dir) == []
