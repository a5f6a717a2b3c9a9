"""Crash-safe file writes: write a temporary file beside the target, fsync, ``os.replace``."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None,
                *, durable: bool = True) -> Iterator[IO]:
    """Open a temporary file for writing; on success it replaces ``path`` atomically.

    A crash or exception part-way leaves the previous ``path`` untouched. ``durable=False``
    skips the fsyncs (caches: the replace stays atomic, a power cut may lose the new file).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    binary = "b" in mode
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if binary else {"encoding": encoding, "newline": newline})) as handle:
            yield handle
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb", encoding=None) as handle:
        handle.write(data)


def fsync_dir(directory: str | Path) -> None:
    """Make a rename in ``directory`` durable (no-op where directories cannot be opened)."""
    fsync_path(directory)


def fsync_path(path: str | Path) -> None:
    """Flush a file's (or a folder's) contents to disk, as far as the platform allows."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
