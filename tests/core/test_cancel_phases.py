"""Stop in every phase of ``fit``: decoding, warm-up batches, the post-warm-up placement, a
train batch, the evaluation pass, just before an epoch's files are written, between epochs.

Real tiny images on disk (``write_demo``), no mocks. A cancel callable records every call with
the last Progress the test consumed (and the calling thread); it starts returning True at a
chosen call. Then:

- the generator ends with ``cancelled`` and yields nothing else after the cancel;
- the cancel is not consulted again (the work stopped at the check that saw it: at most one
  image per decoding thread, no further batch); an uncancelled recording run shows that the
  checks come before every image and between every batch of each phase;
- the run directory holds exactly the last finished epoch: the checkpoint's epoch and tensors,
  samples.csv and history.csv equal those the uninterrupted run wrote after that epoch, and no
  temporary file is left;
- ``fit(..., resume=True)`` then ends bit for bit where the uninterrupted run ended.
"""
from __future__ import annotations

import math
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from uldl_studio.core.engine.config import TrainConfig
from uldl_studio.core.engine.run import load_checkpoint
from uldl_studio.core.engine.training import Progress, fit

pytestmark = pytest.mark.timeout(240)
torch.set_num_threads(1)

N = 320           # > 256: two decoding chunks, so the thread pool is used
EVAL_BATCH = 32
CONFIG = TrainConfig(image_size=16, width=8, stages=2, blocks=1, calib_hidden=[16], batch_size=32,
                     progress_every=1, device="cpu", k=4, eval_batch_size=EVAL_BATCH, num_threads=1,
                     va="circumplex", epochs=3,  # epoch 1 warm-up, placement, epochs 2-3 LDLVA
                     # decode into memory every time, so every run has a decoding phase to stop
                     # (the decoded-image cache's own cancel is tested in test_image_cache.py)
                     image_cache=False)


@dataclass
class Call:
    index: int
    progress: Progress | None   # the last Progress the consumer had received
    thread: str


class PhaseCancel:
    """A cancel callable that returns True from the first call ``trigger(call, calls)`` accepts."""

    def __init__(self, trigger=lambda call, calls: False):
        self.trigger = trigger
        self.lock = threading.Lock()
        self.last: Progress | None = None
        self.calls: list[Call] = []
        self.fired: Call | None = None
        self.after = 0               # calls after the one that fired
        self.progress: list[Progress] = []
        self.progress_at_fire = 0    # items consumed when it fired

    def __call__(self) -> bool:
        with self.lock:
            call = Call(len(self.calls), self.last, threading.current_thread().name)
            self.calls.append(call)
            if self.fired is not None:
                self.after += 1
                return True
            if self.trigger(call, self.calls):
                self.fired = call
                self.progress_at_fire = len(self.progress)
                return True
            return False

    def drive(self, generator) -> list[Progress]:
        for item in generator:
            with self.lock:
                self.last = item
                self.progress.append(item)
        return self.progress


def key(p: Progress | None):
    return None if p is None else (p.phase, p.epoch, p.batch, p.message[:12])


def nth_call_after(progress_match, n: int, thread_prefix: str | None = None):
    """Trigger: the n-th call (1-based) made while the last Progress matches ``progress_match``."""
    def trigger(call, calls):
        if call.progress is None or not progress_match(call.progress):
            return False
        if thread_prefix is not None and not call.thread.startswith(thread_prefix):
            return False
        same = [c for c in calls if c.progress is not None and key(c.progress) == key(call.progress)
                and (thread_prefix is None or c.thread.startswith(thread_prefix))]
        return len(same) == n
    return trigger


def is_decoding(p):
    return p.phase == "load" and p.message.startswith("loading")


def is_placing(p):
    return p.phase == "warmup" and p.batch == 0 and "placing" in p.message


def last_batch_of(epoch):
    return lambda p: p.phase in ("train", "warmup") and p.epoch == epoch and p.batches and p.batch == p.batches


def batch_of(epoch, b):
    return lambda p: p.phase in ("train", "warmup") and p.epoch == epoch and p.batch == b


def epoch_end(epoch):
    return lambda p: p.phase == "epoch_end" and p.epoch == epoch


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from uldl_studio.core.data.datasets.demo import read_demo, write_demo

    csv = write_demo(tmp_path_factory.mktemp("data") / "demo", n=N, size=32)
    return read_demo(csv)


@pytest.fixture(scope="module")
def straight(dataset, tmp_path_factory):
    """The uninterrupted run, with a copy of its directory after every epoch and a record of
    every cancel check it made (its cancel never fires)."""
    base = tmp_path_factory.mktemp("straight")
    run_dir = base / "run"
    recorder = PhaseCancel()
    snapshots = {}
    for item in fit(dataset, CONFIG, run_dir, cancel=recorder):
        with recorder.lock:
            recorder.last = item
            recorder.progress.append(item)
        if item.phase == "epoch_end":
            snapshots[item.epoch] = base / f"epoch{item.epoch}"
            shutil.copytree(run_dir, snapshots[item.epoch])
    assert recorder.progress[-1].phase == "done"
    return {"run": run_dir, "snapshots": snapshots, "recorder": recorder}


def copy_of(snapshot: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(snapshot, target)
    return target


# ----------------------------------------------------------------------------- checks

def tensors_equal(a, b, where="checkpoint") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), where
    elif isinstance(a, dict):
        for k in a:
            if k == "history":
                continue  # holds wall-clock seconds
            tensors_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)) and a and isinstance(a[0], (torch.Tensor, dict, list, tuple, np.ndarray)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            tensors_equal(x, y, f"{where}[{i}]")


def same_history(a: Path, b: Path) -> None:
    ha, hb = pd.read_csv(a), pd.read_csv(b)
    cols = [c for c in ha.columns if c != "seconds"]
    pd.testing.assert_frame_equal(ha[cols], hb[cols], check_exact=True)


def assert_holds_epoch(run_dir: Path, epoch: int, straight) -> None:
    """The run directory holds exactly the uninterrupted run's files after ``epoch``."""
    leftovers = [p.name for p in run_dir.iterdir() if p.name.startswith(".") or p.suffix in (".tmp", ".writing")] \
        if run_dir.exists() else []
    assert leftovers == []
    if epoch == 0:
        assert not (run_dir / "checkpoint.pt").exists() and not (run_dir / "samples.csv").exists()
        return
    snapshot = straight["snapshots"][epoch]
    ckpt = load_checkpoint(run_dir)
    assert ckpt["epoch"] == epoch
    tensors_equal(load_checkpoint(snapshot), ckpt)
    assert (run_dir / "samples.csv").read_bytes() == (snapshot / "samples.csv").read_bytes()
    same_history(run_dir / "history.csv", snapshot / "history.csv")
    assert len(pd.read_csv(run_dir / "history.csv")) == epoch


def assert_resume_ends_as_straight(dataset, run_dir: Path, straight) -> None:
    progress = list(fit(dataset, CONFIG, run_dir, resume=True))
    assert progress[-1].phase == "done" and progress[-1].epoch == CONFIG.epochs
    tensors_equal(load_checkpoint(straight["run"]), load_checkpoint(run_dir))
    assert (run_dir / "samples.csv").read_bytes() == (straight["run"] / "samples.csv").read_bytes()
    same_history(run_dir / "history.csv", straight["run"] / "history.csv")


def cancel_run(dataset, run_dir: Path, trigger, *, resume: bool) -> PhaseCancel:
    cancel = PhaseCancel(trigger)
    progress = cancel.drive(fit(dataset, CONFIG, run_dir, cancel=cancel, resume=resume))
    assert cancel.fired is not None, "the phase was never reached"
    assert progress[-1].phase == "cancelled"
    # nothing but the final "cancelled" after the cancel was seen
    assert [p.phase for p in progress[cancel.progress_at_fire:]] == ["cancelled"]
    return cancel


# ----------------------------------------------------------------------------- the checks are dense

def test_every_phase_checks_cancel_between_its_units_of_work(straight):
    calls = straight["recorder"].calls
    eval_batches = math.ceil(N / EVAL_BATCH)
    n_train = int(load_checkpoint(straight["run"])["lambda_raw"].shape[0])
    batches = math.ceil(n_train / CONFIG.batch_size)

    def count(match, thread_prefix=None):
        return sum(1 for c in calls if c.progress is not None and match(c.progress)
                   and (thread_prefix is None or c.thread.startswith(thread_prefix)))

    assert count(is_decoding, "uldl-images") == N                  # before every image
    assert count(is_placing) >= eval_batches + 1                    # placement batches, then batch 1
    zeta_batches = math.ceil(n_train / EVAL_BATCH)
    for epoch in (1, 2, 3):  # evaluation batches (+ the ζ batches after the warm-up), then "before writing"
        assert count(last_batch_of(epoch)) >= eval_batches + (zeta_batches if epoch > 1 else 0) + 1
        for b in range(1, batches):
            assert count(batch_of(epoch, b)) == 1                   # before the next batch
    assert count(epoch_end(1)) >= 1 and count(epoch_end(2)) >= 1   # between epochs


# ----------------------------------------------------------------------------- stop in each phase

def test_stop_while_decoding_a_fresh_run(dataset, tmp_path, straight):
    run_dir = tmp_path / "run"
    cancel = cancel_run(dataset, run_dir, nth_call_after(is_decoding, 40, "uldl-images"), resume=False)
    assert cancel.fired.thread.startswith("uldl-images")
    assert cancel.after <= 2                       # at most one more check per decoding thread
    decoded = sum(1 for c in cancel.calls if c.thread.startswith("uldl-images"))
    assert decoded < N // 2
    assert "decoding" in cancel.progress[-1].message
    assert not run_dir.exists()                    # nothing was written before the images were in
    assert_holds_epoch(run_dir, 0, straight)
    assert_resume_ends_as_straight(dataset, run_dir, straight)


def test_stop_while_decoding_on_resume_leaves_the_run_untouched(dataset, tmp_path, straight):
    run_dir = copy_of(straight["snapshots"][1], tmp_path)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    cancel = cancel_run(dataset, run_dir, nth_call_after(is_decoding, 100, "uldl-images"), resume=True)
    assert cancel.after <= 2
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    assert "not changed" in cancel.progress[-1].message
    assert_resume_ends_as_straight(dataset, run_dir, straight)


def test_stop_during_warmup_batches(dataset, tmp_path, straight):
    run_dir = tmp_path / "run"
    cancel = cancel_run(dataset, run_dir, nth_call_after(batch_of(1, 3), 1), resume=False)
    assert cancel.after == 0
    last = cancel.progress[-1]
    assert (last.epoch, last.batch) == (1, 3)      # stopped before batch 4
    assert_holds_epoch(run_dir, 0, straight)
    assert_resume_ends_as_straight(dataset, run_dir, straight)


def test_stop_during_the_placement_after_warmup(dataset, tmp_path, straight):
    run_dir = copy_of(straight["snapshots"][1], tmp_path)
    cancel = cancel_run(dataset, run_dir, nth_call_after(is_placing, 3), resume=True)
    assert cancel.after == 0                        # no further placement batch
    assert "placing" in cancel.progress[-1].message
    assert_holds_epoch(run_dir, 1, straight)
    assert_resume_ends_as_straight(dataset, run_dir, straight)


def test_stop_during_a_train_batch(dataset, tmp_path, straight):
    run_dir = copy_of(straight["snapshots"][1], tmp_path)
    cancel = cancel_run(dataset, run_dir, nth_call_after(batch_of(2, 4), 1), resume=True)
    assert cancel.after == 0
    assert (cancel.progress[-1].epoch, cancel.progress[-1].batch) == (2, 4)
    assert_holds_epoch(run_dir, 1, straight)
    assert_resume_ends_as_straight(dataset, run_dir, straight)


def test_stop_during_the_evaluation_pass(dataset, tmp_path, straight):
    run_dir = copy_of(straight["snapshots"][1], tmp_path)
    cancel = cancel_run(dataset, run_dir, nth_call_after(last_batch_of(2), 4), resume=True)
    assert cancel.after == 0                        # no further evaluation batch
    assert "evaluation" in cancel.progress[-1].message and "epoch 1 is saved" in cancel.progress[-1].message
    assert_holds_epoch(run_dir, 1, straight)        # epoch 2 trained, but none of it on disk
    assert_resume_ends_as_straight(dataset, run_dir, straight)


def test_stop_just_before_an_epochs_files_are_written(dataset, tmp_path, straight):
    """The last check of an epoch (everything computed, nothing written): still the old epoch."""
    calls = straight["recorder"].calls
    last = sum(1 for c in calls if c.progress is not None and last_batch_of(2)(c.progress))
    run_dir = copy_of(straight["snapshots"][1], tmp_path)
    cancel = cancel_run(dataset, run_dir, nth_call_after(last_batch_of(2), last), resume=True)
    assert cancel.after == 0
    assert "before writing" in cancel.progress[-1].message
    assert_holds_epoch(run_dir, 1, straight)
    assert_resume_ends_as_straight(dataset, run_dir, straight)


def test_stop_between_epochs(dataset, tmp_path, straight):
    run_dir = copy_of(straight["snapshots"][1], tmp_path)
    cancel = cancel_run(dataset, run_dir, nth_call_after(epoch_end(2), 1), resume=True)
    assert cancel.after == 0
    assert cancel.progress[-2].phase == "epoch_end" and cancel.progress[-2].epoch == 2
    assert_holds_epoch(run_dir, 2, straight)
    assert_resume_ends_as_straight(dataset, run_dir, straight)
