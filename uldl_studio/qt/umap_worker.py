"""UMAP of a run's learned features, computed off the GUI thread and cached in RUN/umap.npy.

umap-learn is imported inside the job: its first import compiles numba code for tens of
seconds, which must never happen on the GUI thread (or at start-up).
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from uldl_studio.core.atomic import atomic_open

UMAP_FILE = "umap.npy"
FEATURES_FILE = "features.npy"


def cached_umap(run_dir: str | Path, n_rows: int) -> np.ndarray | None:
    """RUN/umap.npy when it matches ``n_rows`` and is newer than RUN/features.npy."""
    run_dir = Path(run_dir)
    umap_path, features_path = run_dir / UMAP_FILE, run_dir / FEATURES_FILE
    if not umap_path.exists():
        return None
    if features_path.exists() and features_path.stat().st_mtime > umap_path.stat().st_mtime:
        return None  # retrained since: stale
    try:
        coords = np.load(umap_path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if coords.shape != (n_rows, 2) or not np.isfinite(coords).all():
        return None
    return coords


def compute_umap(run_dir: str | Path, cancel: threading.Event | None = None, *, seed: int = 0,
                 n_neighbors: int = 15, min_dist: float = 0.1) -> np.ndarray:
    """2-D UMAP of RUN/features.npy, written to RUN/umap.npy (atomically). Runs on a worker.

    umap-learn runs in a child process: its first use compiles numba code, and compiling in
    a thread of the GUI process while the GUI thread collects garbage aborted the whole
    interpreter (seen in the test suite). A child also leaves the GIL to the GUI and can be
    killed at once when the job is cancelled: a set ``cancel`` event wakes the wait, the child
    gets SIGKILL and is reaped, and any temporary file of a write it was making is removed, so
    RUN/umap.npy is either the previous one or a complete new one. Returns an empty (0, 2)
    array when cancelled.
    """
    run_dir = Path(run_dir)
    features_path = run_dir / FEATURES_FILE
    if not features_path.exists():
        raise FileNotFoundError(f"{features_path}: the run has no features (train at least one epoch)")
    command = [sys.executable, "-m", "uldl_studio.qt.umap_worker", str(run_dir),
               str(seed), str(n_neighbors), str(min_dist)]
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty child never blocks
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
        try:
            while child.poll() is None:
                if _cancel_within(cancel, POLL_S):
                    _kill(child, run_dir)
                    return np.empty((0, 2))
        except BaseException:  # the worker itself was interrupted: never leave the child running
            _kill(child, run_dir)
            raise
        if child.returncode != 0:
            _remove_partial(run_dir)
            errors.seek(0)
            error = errors.read().decode("utf-8", "replace")
            last = error.strip().splitlines()[-1] if error.strip() else f"exit status {child.returncode}"
            raise RuntimeError(f"UMAP of {features_path} failed: {last}")
    return np.load(run_dir / UMAP_FILE, allow_pickle=False)


POLL_S = 0.02  # how often the worker looks at the child; a cancel event wakes it at once


def _cancel_within(cancel, seconds: float) -> bool:
    """Wait up to ``seconds``; True as soon as ``cancel`` is set (an Event wakes the wait)."""
    if cancel is None:
        time.sleep(seconds)
        return False
    if hasattr(cancel, "wait"):
        return bool(cancel.wait(seconds))
    time.sleep(seconds)
    return bool(cancel.is_set() if hasattr(cancel, "is_set") else cancel())


def _kill(child: subprocess.Popen, run_dir: Path) -> None:
    """SIGKILL the child, reap it and remove what a write cut short (umap.npy itself is only
    ever replaced whole: ``atomic_open`` writes a temporary file and renames it)."""
    if child.poll() is None:
        child.kill()
    child.wait()
    _remove_partial(run_dir)


def _remove_partial(run_dir: Path) -> None:
    for leftover in run_dir.glob(f".{UMAP_FILE}.*.tmp"):
        try:
            leftover.unlink()
        except OSError:
            pass


def _umap_in_this_process(run_dir: Path, seed: int, n_neighbors: int, min_dist: float) -> None:
    features = np.load(run_dir / FEATURES_FILE, allow_pickle=False).astype(np.float32)
    n = len(features)
    if n < 4:
        coords = np.zeros((n, 2), dtype=np.float32)
    else:
        import umap  # numba compiles on first use: this is why it runs in its own process

        reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, n - 1), min_dist=min_dist,
                            random_state=seed, n_jobs=1)
        coords = reducer.fit_transform(features).astype(np.float32)
    with atomic_open(run_dir / UMAP_FILE, "wb", encoding=None) as handle:
        np.save(handle, coords)


if __name__ == "__main__":
    _umap_in_this_process(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
