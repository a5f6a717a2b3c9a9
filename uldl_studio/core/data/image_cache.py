"""The decoded-image cache: every image decoded once per (dataset, size, channels), kept on disk.

``open_cached_images(table, size, channels)`` has the contract of
``core.images.load_readable_images`` (the readable rows, one DatasetWarning naming the bad
files) but returns a :class:`CachedImages` that reads rows from disk on demand instead of one
array in memory, so training, evaluation and predict need memory for a few batches whatever the
dataset's size (``docs/architecture.md``, "The decoded-image cache").

Layout: ``cache_root()/<key>/`` per (dataset folder, size, channels), where the dataset folder is
the common parent of the table's files:

* ``data-<generation>.u8``: raw C-order uint8 of shape (slots, channels, size, size), the layout
  ``numpy.memmap`` would map;
* ``manifest.json``: size, channels, the data file's name, the slot count and, per source (its
  path, or a hash of a FER2013 pixel string), its slot with the file's size and mtime, or the
  reason it could not be read (so a broken file is not decoded again until it changes);
* ``used``: touched on every open (``uldl-studio cache`` shows it as "last used").

A changed file (size or mtime) or a new one is decoded into a *new* slot at the end of the data
file and the manifest is written last, atomically: a build killed at any moment leaves the
previous manifest, whose slots were never overwritten, and the next open decodes what it lacks.
Slots of changed files stay in the file until ``uldl-studio cache clear``. Decoding runs in
worker processes (spawned: a forked copy of a process running torch threads can deadlock), each
writing its chunk straight into the data file. A lock file serialises builders of one entry
(several torchrun ranks, or the GUI and the CLI); the others wait and reuse the result.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
from platformdirs import user_cache_dir

from uldl_studio.core.atomic import atomic_write_text, fsync_dir, fsync_path
from uldl_studio.core.cancel import Cancelled, cancel_requested
from uldl_studio.core.data.datasets.common import DatasetWarning
from uldl_studio.core.data.images import ImageProblem, ImageReadError, decode_image, describe_problems, to_model_input

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
USED = "used"
LOCK = "lock"
CHUNK = 256                 # images per decoding job
IN_PROCESS_BELOW = 512      # fewer images than this are decoded without worker processes


def cache_root() -> Path:
    """``$ULDL_STUDIO_CACHE/images``, else the platform's user cache folder for uldl-studio
    (``platformdirs``: ~/.cache/uldl-studio on Linux, ~/Library/Caches/uldl-studio on macOS,
    %LOCALAPPDATA%\\uldl-studio\\uldl-studio\\Cache on Windows) ``/images``."""
    base = os.environ.get("ULDL_STUDIO_CACHE")
    if not base:
        base = user_cache_dir("uldl-studio")
    return Path(base) / "images"


# ----------------------------------------------------------------------------- reading
class CachedImages:
    """Rows of the cache's data file, in table order: ``read(rows)`` → uint8 (R, C, H, W).

    Reads with ``os.pread`` (adjacent slots coalesced into one read) rather than a memory map:
    the pages of a mapping count in the process's resident set, which then grows with the
    dataset. Picklable (a DataLoader's workers get a copy that opens its own descriptor).
    """

    def __init__(self, data_path: str | Path, item_shape: tuple[int, int, int], slots: np.ndarray):
        self.data_path = str(data_path)
        self.item_shape = tuple(int(v) for v in item_shape)
        self.slots = np.asarray(slots, dtype=np.int64)
        self._item = int(np.prod(self.item_shape))
        self._fd: int | None = None
        self._pid: int | None = None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.slots), *self.item_shape)

    def __len__(self) -> int:
        return len(self.slots)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fd"] = state["_pid"] = None
        return state

    def __del__(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            try:
                os.close(self._fd)
            except OSError:
                pass

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.data_path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            self._pid = os.getpid()
        return self._fd

    def _pread(self, count: int, offset: int) -> bytes:
        fd = self._descriptor()
        if hasattr(os, "pread"):
            return os.pread(fd, count, offset)
        os.lseek(fd, offset, os.SEEK_SET)  # Windows: no pread
        return os.read(fd, count)

    def read(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """The images of ``rows`` (positions in this object's table), in the order given."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.empty((len(rows), *self.item_shape), dtype=np.uint8)
        if len(rows) == 0:
            return out
        slots = self.slots[rows]
        order = np.argsort(slots, kind="stable")
        sorted_slots = slots[order]
        starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_slots) != 1) + 1, [len(rows)]])
        flat = out.reshape(len(rows), self._item)
        for a, b in zip(starts[:-1], starts[1:]):
            count = (b - a) * self._item
            data = self._pread(count, int(sorted_slots[a]) * self._item)
            if len(data) != count:
                raise OSError(f"{self.data_path}: the decoded-image cache file is shorter than its manifest says")
            flat[order[a:b]] = np.frombuffer(data, dtype=np.uint8).reshape(b - a, self._item)
        return out

    def to_array(self) -> np.ndarray:
        return self.read(np.arange(len(self)))


# ----------------------------------------------------------------------------- the entry
def _source_key(path: str, pixels) -> str:
    if isinstance(pixels, str) and pixels.strip():
        return "pixels:" + hashlib.sha1(pixels.encode()).hexdigest()
    return os.path.abspath(path)


def _stamp(key: str, path: str) -> list[int]:
    """[file size, mtime_ns] (pixel strings: [0, 0]; a missing file: [-1, -1])."""
    if key.startswith("pixels:"):
        return [0, 0]
    target = path.rpartition("#")[0] if "#" in path and not os.path.exists(path) else path
    try:
        st = os.stat(target)
    except OSError:
        return [-1, -1]
    return [int(st.st_size), int(st.st_mtime_ns)]


def _dataset_folder(paths: list[str]) -> str:
    """The common parent folder of ``paths`` (``<csv>#<row>`` paths: of the CSV file)."""
    files = [os.path.abspath(p.rpartition("#")[0] if "#" in p and not os.path.exists(p) else p) for p in paths]
    if not files:
        return ""
    try:
        return os.path.commonpath([os.path.dirname(f) for f in files])
    except ValueError:  # paths on different drives
        return "(several drives)"


def _entry_folder(root: Path, dataset: str, size: int, channels: int) -> Path:
    digest = hashlib.sha1(f"{dataset}|{size}|{channels}".encode("utf-8", "surrogatepass")).hexdigest()[:20]
    return root / digest


def _empty_manifest(dataset: str, size: int, channels: int) -> dict:
    return {"format_version": FORMAT_VERSION, "dataset": dataset, "size": size, "channels": channels,
            "data": "data-0.u8", "slots": 0, "files": {}, "problems": {}}


def _read_manifest(folder: Path, dataset: str, size: int, channels: int) -> dict:
    """The entry's manifest, or an empty one when it is missing, unreadable, of another format,
    or promises more slots than its data file holds."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        ok = (manifest["format_version"] == FORMAT_VERSION and manifest["size"] == size
              and manifest["channels"] == channels and isinstance(manifest["files"], dict)
              and isinstance(manifest["problems"], dict))
        item = size * size * channels
        if ok and os.path.getsize(folder / manifest["data"]) < int(manifest["slots"]) * item:
            ok = False
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        fresh = _empty_manifest(dataset, size, channels)
        fresh["data"] = f"data-{time.time_ns()}.u8"  # a new file: a reader of the old one keeps it
        return fresh
    return manifest


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on the entry (POSIX ``flock``; no lock where there is none)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: builders of one entry are not serialised
        yield
        return
    with open(folder / LOCK, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _decode_chunk(data_path: str, first_slot: int, jobs: list[tuple[str, object]], size: int,
                  channels: int) -> list[tuple[int, str]]:
    """Decode ``jobs`` (path, pixels) into consecutive slots from ``first_slot``, written with one
    write; returns (index in ``jobs``, reason) of those that could not be read (zeros there)."""
    item = size * size * channels
    block = np.zeros((len(jobs), channels, size, size), dtype=np.uint8)
    problems = []
    for i, (path, pixels) in enumerate(jobs):
        try:
            block[i] = to_model_input(decode_image(path, pixels), size, channels)
        except ImageReadError as exc:
            problems.append((i, exc.reason))
        except Exception as exc:  # noqa: BLE001 - never stop half-way through a dataset
            problems.append((i, f"{type(exc).__name__}: {exc}"))
    fd = os.open(data_path, os.O_WRONLY | getattr(os, "O_BINARY", 0))
    try:
        data, offset = block.tobytes(), first_slot * item
        if hasattr(os, "pwrite"):
            os.pwrite(fd, data, offset)
        else:
            os.lseek(fd, offset, os.SEEK_SET)
            os.write(fd, data)
    finally:
        os.close(fd)
    return problems


def _default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def _decode_missing(data_path: Path, first_slot: int, jobs: list[tuple[str, object]], size: int, channels: int,
                    workers: int | None, progress, cancel, done_before: int, total: int) -> dict[int, str]:
    """Decode ``jobs`` into slots ``first_slot…``; {job index: reason} of the unreadable ones."""
    chunks = [(start, jobs[start:start + CHUNK]) for start in range(0, len(jobs), CHUNK)]
    problems: dict[int, str] = {}
    workers = _default_workers() if workers is None else int(workers)

    def collect(start: int, found: list[tuple[int, str]]) -> None:
        for i, reason in found:
            problems[start + i] = reason

    done = done_before
    if workers <= 1 or len(jobs) < IN_PROCESS_BELOW:
        for start, chunk in chunks:
            for sub in range(0, len(chunk), 16):  # a cancel is seen within 16 images
                if cancel is not None and cancel_requested(cancel):
                    raise Cancelled(f"while decoding the images (after {done} of {total} images)")
                collect(start + sub, _decode_chunk(str(data_path), first_slot + start + sub, chunk[sub:sub + 16],
                                                   size, channels))
            done += len(chunk)
            if progress is not None:
                progress(done, total)
        return problems
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
    try:
        pending = {pool.submit(_decode_chunk, str(data_path), first_slot + start, chunk, size, channels): (start, len(chunk))
                   for start, chunk in chunks}
        while pending:
            finished, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            if cancel is not None and cancel_requested(cancel):
                raise Cancelled(f"while decoding the images (after {done} of {total} images)")
            for future in finished:
                start, count = pending.pop(future)
                collect(start, future.result())
                done += count
                if progress is not None:
                    progress(done, total)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return problems


def open_cached_images(table: pd.DataFrame, size: int, channels: int, *, root: Path | None = None,
                       workers: int | None = None, progress: Callable[[int, int], None] | None = None,
                       cancel=None) -> tuple[pd.DataFrame, CachedImages]:
    """The readable rows of ``table`` and their images in the cache (decoding what it lacks).

    As ``core.images.load_readable_images``: rows whose image cannot be read are dropped with one
    DatasetWarning; ``progress(done, total)`` after every decoded chunk; ``cancel`` (a callable or
    a ``threading.Event``) raises ``Cancelled`` and leaves the cache as it was. ``workers``:
    decoding processes (default: the CPU count, at most 8).
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # a spawned decoding worker re-running a script without a main guard: it would wait
        # forever for the lock its parent holds
        raise RuntimeError("open_cached_images ran while a worker process started: put the script's "
                           "code under `if __name__ == '__main__':`")
    size, channels = int(size), int(channels)
    paths = table["path"].astype(str).tolist()
    pixels = table["pixels"].tolist() if "pixels" in table else [None] * len(paths)
    keys = [_source_key(p, x) for p, x in zip(paths, pixels)]
    dataset = _dataset_folder(paths)
    folder = _entry_folder(Path(root) if root is not None else cache_root(), dataset, size, channels)
    with _locked(folder):
        manifest = _read_manifest(folder, dataset, size, channels)
        files, bad = manifest["files"], manifest["problems"]
        stamps: dict[str, list[int]] = {}
        todo: dict[str, int] = {}  # key → row it is decoded from (the first row with that key)
        for row, key in enumerate(keys):
            if key in stamps:
                continue
            stamp = stamps[key] = _stamp(key, paths[row])
            known = files.get(key)
            if known is not None and known[1:] == stamp:
                continue
            problem = bad.get(key)
            if problem is not None and problem[1:] == stamp:
                continue
            todo[key] = row
        data_path = folder / manifest["data"]
        unrecorded: dict[str, str] = {}
        if todo:
            unrecorded = _build(folder, manifest, data_path, todo, stamps, paths, pixels, size, channels, workers, progress,
                   cancel, len(keys))
        (folder / USED).touch()
    slots = np.full(len(keys), -1, dtype=np.int64)
    problems = []
    for row, key in enumerate(keys):
        entry = files.get(key)
        if entry is not None:
            slots[row] = entry[0]
        else:
            reason = unrecorded.get(key) or bad.get(key, ["missing file"])[0]
            problems.append(ImageProblem(paths[row], reason, row))
    item_shape = (channels, size, size)
    if not problems:
        return table, CachedImages(data_path, item_shape, slots)
    keep = slots >= 0
    warnings.warn(DatasetWarning(describe_problems(problems)), stacklevel=2)
    kept = table.loc[keep].reset_index(drop=True)
    kept.attrs = dict(table.attrs)
    return kept, CachedImages(data_path, item_shape, slots[keep])


def _build(folder: Path, manifest: dict, data_path: Path, todo: dict[str, int], stamps: dict, paths: list[str],
           pixels: list, size: int, channels: int, workers, progress, cancel, total: int) -> dict[str, str]:
    """Decode ``todo`` into new slots at the end of the data file, then write the manifest.
    Returns the problems not recorded in it ({key: reason}: permission denied)."""
    item = size * size * channels
    first = int(manifest["slots"])
    order = list(todo)
    with open(data_path, "ab") as handle:  # create it if needed, then size it for the new slots
        handle.truncate((first + len(order)) * item)
    jobs = [(paths[todo[key]], pixels[todo[key]]) for key in order]
    problems = _decode_missing(data_path, first, jobs, size, channels, workers, progress, cancel,
                               total - len(order), total)
    fsync_path(data_path)
    unrecorded = {}
    for i, key in enumerate(order):
        if i in problems:
            # a permission change leaves size and mtime alone: such a file is tried again next time
            if problems[i] != "permission denied":
                manifest["problems"][key] = [problems[i], *stamps[key]]
            else:
                unrecorded[key] = problems[i]
            manifest["files"].pop(key, None)
        else:
            manifest["files"][key] = [first + i, *stamps[key]]
            manifest["problems"].pop(key, None)
    manifest["slots"] = first + len(order)
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, separators=(",", ":")))
    fsync_dir(folder)
    for stale in folder.glob("data-*.u8"):  # left by a manifest that could not be trusted
        if stale.name != manifest["data"]:
            stale.unlink(missing_ok=True)
    return unrecorded


# ----------------------------------------------------------------------------- listing and clearing
@dataclass
class CacheEntry:
    folder: Path
    dataset: str
    size: int
    channels: int
    images: int
    problems: int
    bytes: int
    last_used: float          # seconds since the epoch

    def describe(self) -> str:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.last_used)) if self.last_used else "never"
        return (f"{self.dataset}  {self.size}x{self.size}x{self.channels}  {self.images} images"
                f"{f', {self.problems} unreadable' if self.problems else ''}  {self.bytes / 2 ** 20:.1f} MB  "
                f"last used {used}  [{self.folder.name}]")


def list_caches(root: Path | None = None) -> list[CacheEntry]:
    """Every entry under ``root`` (default ``cache_root()``), most recently used first."""
    root = Path(root) if root is not None else cache_root()
    entries = []
    if not root.is_dir():
        return entries
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            dataset, size, channels = manifest["dataset"], int(manifest["size"]), int(manifest["channels"])
            images, problems = len(manifest["files"]), len(manifest["problems"])
        except (OSError, ValueError, KeyError, TypeError):
            dataset, size, channels, images, problems = "(incomplete or unreadable)", 0, 0, 0, 0
        total = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        used = folder / USED
        entries.append(CacheEntry(folder, dataset, size, channels, images, problems, total,
                                  used.stat().st_mtime if used.exists() else 0.0))
    return sorted(entries, key=lambda e: -e.last_used)


def clear_caches(root: Path | None = None, *, match: str | None = None) -> list[CacheEntry]:
    """Remove every entry (or those whose folder name or dataset contains ``match``); returns them."""
    removed = []
    for entry in list_caches(root):
        if match is None or match in entry.folder.name or match in entry.dataset:
            shutil.rmtree(entry.folder, ignore_errors=True)
            removed.append(entry)
    return removed
