"""The annotator's edits: an append-only, crash-safe journal with undo/redo.

``RUN/edits.jsonl`` holds one JSON object per line, one line per *operation*:

==========  ==================================================================================
``op``      fields besides ``v`` (format version), ``seq`` (strictly increasing), ``ts``
            (Unix time) and ``crc``
==========  ==================================================================================
relabel     ``ids`` (sample ids), ``labels`` (new labels), ``prev`` (label each sample had in
            the journal before: an int, or ``null`` = no journal label, i.e. the dataset's)
unsure      ``ids``, ``value`` (true = mark unsure, false = clear), ``prev`` (bools)
undo        ``target``: the ``seq`` of the command it undoes (must be the top of the undo stack)
redo        ``target``: the ``seq`` of the command it redoes (must be the top of the redo stack)
==========  ==================================================================================

A bulk relabel (or bulk unsure mark) of a selection is *one* command: one line, undone at once.
Undo and redo are journaled too, so replaying the file rebuilds exactly the same undo and redo
stacks; a new command after an undo clears the redo stack (as in every editor).

Durability: each line is written with a single ``os.write`` of the whole line to an
``O_APPEND`` descriptor and ``os.fsync``-ed *before* the method returns, so an edit the UI
shows as done survives a crash, a ``SIGKILL`` or a power cut. The in-memory state changes
only after the line is on disk.

Integrity: ``crc`` is the CRC-32 (hex) of the line's UTF-8 bytes with the ``,"crc":"…"``
member removed, so any change to a line is detected. On opening:

* a torn **last** line (no final newline, or a bad checksum / unparsable JSON at the very end:
  a crash in the middle of a write) is ignored with a :class:`JournalWarning`; it never was
  acknowledged. The next append truncates it away before writing.
* a bad line **in the middle** (the file was damaged or edited by hand) raises
  :class:`JournalError` naming the file, the line number, the reason and how many valid lines
  follow it: the journal is *not* opened silently with later edits lost or misapplied.
  ``EditJournal(path, recover=True)`` is the explicit way out: it skips every bad line with a
  warning, keeps replaying the valid later lines (an undo/redo whose command was lost is
  skipped too), keeps a copy of the damaged file as ``edits.jsonl.corrupt-N`` and rewrites the
  journal atomically with the surviving lines.

One writer at a time: the first write takes an exclusive ``flock`` on the file (where the
platform has one), so two windows editing the same run get a clear error instead of
interleaved stacks. Readers (``uldl-studio export``) never lock and never write.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import warnings
import zlib
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from uldl_studio.core.atomic import atomic_write_bytes, fsync_dir
from uldl_studio.core.table import DatasetError, classes_of

try:  # POSIX only; elsewhere the single-writer check is skipped
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["EditJournal", "JournalError", "JournalWarning", "EditsWarning", "apply_edits", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_OPS = ("relabel", "unsure", "undo", "redo")
_CRC_SUFFIX_LEN = len(',"crc":"00000000"}')
_log = logging.getLogger(__name__)


class JournalError(DatasetError):
    """The journal cannot be opened or written; the message names the file (and line)."""


class JournalWarning(UserWarning):
    """A torn last line was ignored, or (``recover=True``) damaged lines were skipped."""


class EditsWarning(UserWarning):
    """``apply_edits`` met journal entries that do not fit the table (unknown ids, labels)."""


def _encode(record: dict) -> bytes:
    """One journal line (with newline) for ``record`` (which has no ``crc`` yet)."""
    payload = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    crc = zlib.crc32(payload.encode("utf-8")) & 0xFFFFFFFF
    return (payload[:-1] + f',"crc":"{crc:08x}"}}\n').encode("utf-8")


def _decode(line: bytes) -> dict:
    """Parse and verify one line (without newline); ``ValueError`` says what is wrong."""
    if len(line) <= _CRC_SUFFIX_LEN or not line.endswith(b'"}') or line[-_CRC_SUFFIX_LEN:-10] != b',"crc":"':
        raise ValueError("no checksum at the end of the line")
    try:
        stored = int(line[-10:-2], 16)
    except ValueError:
        raise ValueError("malformed checksum") from None
    payload = line[:-_CRC_SUFFIX_LEN] + b"}"
    if zlib.crc32(payload) & 0xFFFFFFFF != stored:
        raise ValueError("checksum mismatch (the line was changed or only partly written)")
    try:
        record = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    return record


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_record(record: dict) -> None:
    """Structural checks of a verified record; ``ValueError`` / ``JournalError`` (newer format)."""
    version = record.get("v")
    if not _is_int(version):
        raise ValueError("no format version")
    if version > FORMAT_VERSION:
        raise JournalError(
            f"written by a newer ULDL Studio (journal format {version}, this version reads "
            f"{FORMAT_VERSION}); update ULDL Studio to open it"
        )
    if not _is_int(record.get("seq")):
        raise ValueError("no sequence number")
    op = record.get("op")
    if op not in _OPS:
        raise ValueError(f"unknown operation {op!r}")
    if op in ("undo", "redo"):
        if not _is_int(record.get("target")):
            raise ValueError(f"{op} without a target")
        return
    ids, prev = record.get("ids"), record.get("prev")
    if not isinstance(ids, list) or not all(isinstance(s, str) for s in ids):
        raise ValueError("ids must be a list of strings")
    if not isinstance(prev, list) or len(prev) != len(ids):
        raise ValueError("prev must be a list as long as ids")
    if op == "relabel":
        labels = record.get("labels")
        if not isinstance(labels, list) or len(labels) != len(ids) or not all(_is_int(x) and x >= 0 for x in labels):
            raise ValueError("labels must be non-negative ints, one per id")
        if not all(p is None or (_is_int(p) and p >= 0) for p in prev):
            raise ValueError("prev labels must be non-negative ints or null")
    else:
        if not isinstance(record.get("value"), bool) or not all(isinstance(p, bool) for p in prev):
            raise ValueError("unsure value and prev must be booleans")


class EditJournal:
    """Relabels and "unsure" marks of one run, journaled to ``path``, with undo/redo.

    Every mutating method returns only after its line is fsync-ed. Subscribers
    (``subscribe``) are called after each change with the list of affected sample ids.
    """

    def __init__(self, path: str | Path, *, recover: bool = False, upto_seq: int | None = None) -> None:
        """``upto_seq``: replay only the operations with ``seq <= upto_seq`` (the state the
        journal had then, e.g. the edits a run version was trained with); such a journal is
        read-only (writing raises JournalError)."""
        self.path = Path(path)
        self._upto_seq = upto_seq
        self._lock = threading.RLock()
        self._labels: dict[str, int] = {}
        self._unsure: set[str] = set()
        self._undo: list[dict] = []
        self._redo: list[dict] = []
        self._history: list[dict] = []
        self._by_seq: dict[int, dict] = {}
        self._subscribers: list[Callable[[list[str]], None]] = []
        self._fd: int | None = None
        self._closed = False
        self._failed: BaseException | None = None
        self._last_seq = 0
        self._valid_end = 0   # byte offset after the last valid line
        self._file_size = 0   # size when read (or after our last append)
        self._load(recover)

    # -- replay -------------------------------------------------------------------------
    def _load(self, recover: bool) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot read the edit journal ({exc.strerror or exc})") from exc
        self._file_size = len(data)
        lines: list[tuple[int, int, bytes]] = []  # (line number, end offset incl. newline, bytes)
        start, number = 0, 0
        while start < len(data):
            number += 1
            nl = data.find(b"\n", start)
            if nl < 0:
                lines.append((number, len(data), data[start:]))
                break
            lines.append((number, nl + 1, data[start:nl]))
            start = nl + 1
        bad: list[tuple[int, str]] = []
        kept: list[bytes] = []
        last_index = max((i for i, (_, _, raw) in enumerate(lines) if raw.strip()), default=-1)
        for index, (number, end, raw) in enumerate(lines):
            if not raw.strip():
                if index > last_index:
                    break
                continue
            is_last = index == last_index
            complete = end <= len(data) and data[end - 1:end] == b"\n"
            try:
                if not complete:
                    raise ValueError("no newline at the end (the write was cut off)")
                record = _decode(raw)
            except ValueError as exc:
                if is_last:
                    # A crash mid-write: this operation was never acknowledged.
                    warnings.warn(
                        f"{self.path}: line {number}: ignoring an incomplete last edit ({exc}); "
                        f"it was never saved (a crash while writing it)", JournalWarning, stacklevel=3)
                    break
                self._bad_line(number, str(exc), lines, index, recover, bad)
                continue
            if self._upto_seq is not None and _is_int(record.get("seq")) and record["seq"] > self._upto_seq:
                break
            try:
                _check_record(record)
                self._replay(record)
            except JournalError as exc:
                raise JournalError(f"{self.path}: line {number}: {exc}") from None
            except ValueError as exc:
                self._bad_line(number, str(exc), lines, index, recover, bad)
                continue
            kept.append(raw + b"\n")
            self._valid_end = end
        # Anything after _valid_end (a torn line) is truncated away by the next append.
        if bad and recover and self._upto_seq is None:  # a partial replay never rewrites
            self._rewrite(kept, bad)

    def _bad_line(self, number: int, reason: str, lines, index: int, recover: bool, bad: list) -> None:
        later = sum(1 for _, _, raw in lines[index + 1:] if raw.strip())
        if not recover:
            raise JournalError(
                f"{self.path}: line {number}: damaged edit journal ({reason}); {later} later "
                f"line(s) follow it. Nothing was changed on disk. Open it with "
                f"EditJournal(path, recover=True) to keep every valid line and skip the bad ones "
                f"(a copy of the damaged file is kept)."
            )
        bad.append((number, reason))
        warnings.warn(f"{self.path}: line {number}: skipping a damaged edit ({reason})", JournalWarning, stacklevel=4)

    def _rewrite(self, kept: list[bytes], bad: list) -> None:
        n = 1
        while (backup := self.path.with_name(f"{self.path.name}.corrupt-{n}")).exists():
            n += 1
        backup.write_bytes(self.path.read_bytes())
        data = b"".join(kept)
        atomic_write_bytes(self.path, data)
        self._valid_end = self._file_size = len(data)
        warnings.warn(
            f"{self.path}: recovered: skipped {len(bad)} damaged line(s) "
            f"({', '.join(str(b[0]) for b in bad)}); the damaged file was kept as {backup.name}",
            JournalWarning, stacklevel=3)

    def _replay(self, record: dict) -> None:
        seq = record["seq"]
        if seq <= self._last_seq:
            raise ValueError(f"sequence number {seq} does not follow {self._last_seq}")
        op = record["op"]
        if op in ("undo", "redo"):
            stack = self._undo if op == "undo" else self._redo
            if not stack or stack[-1]["seq"] != record["target"]:
                top = stack[-1]["seq"] if stack else None
                raise ValueError(f"{op} of command {record['target']} but the top of the {op} stack is {top}")
        self._apply(record)
        self._last_seq = seq

    def _apply(self, record: dict) -> list[str]:
        """Change the in-memory state for a (written or replayed) record; affected ids."""
        op = record["op"]
        if op == "undo":
            command = self._undo.pop()
            self._set(command, command["prev"])
            self._redo.append(command)
        elif op == "redo":
            command = self._redo.pop()
            self._set(command, command["labels"] if command["op"] == "relabel" else [command["value"]] * len(command["ids"]))
            self._undo.append(command)
        else:
            command = record
            self._set(command, command["labels"] if op == "relabel" else [command["value"]] * len(command["ids"]))
            self._undo.append(command)
            self._redo.clear()
        self._history.append(record)
        return list(command["ids"])

    def _set(self, command: dict, values: Sequence) -> None:
        if command["op"] == "relabel":
            for sid, value in zip(command["ids"], values):
                if value is None:
                    self._labels.pop(sid, None)
                else:
                    self._labels[sid] = value
        else:
            for sid, value in zip(command["ids"], values):
                if value:
                    self._unsure.add(sid)
                else:
                    self._unsure.discard(sid)

    # -- writing ------------------------------------------------------------------------
    def _open_for_append(self) -> int:
        if self._upto_seq is not None:
            raise JournalError(f"{self.path}: opened as of edit {self._upto_seq} (read-only); open it whole to edit")
        if self._closed:
            raise JournalError(f"{self.path}: the edit journal is closed")
        if self._failed is not None:
            raise JournalError(f"{self.path}: an earlier write failed ({self._failed}); reopen the journal") from self._failed
        if self._fd is not None:
            return self._fd
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existed = self.path.exists()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise JournalError(f"{self.path}: cannot write the edit journal ({exc.strerror or exc})") from exc
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    raise JournalError(
                        f"{self.path}: the edits of this run are open for editing in another "
                        f"window or process; close it first") from None
            size = os.fstat(fd).st_size
            if size != self._file_size:
                raise JournalError(f"{self.path}: the edit journal changed on disk since it was opened; reopen it")
            if size > self._valid_end:  # drop a torn last line before appending
                os.ftruncate(fd, self._valid_end)
                os.fsync(fd)
                self._file_size = self._valid_end
            if not existed:
                fsync_dir(self.path.parent)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return fd

    def _append(self, record: dict) -> None:
        """Write ``record`` durably, then apply it and notify subscribers."""
        fd = self._open_for_append()
        record = {"v": FORMAT_VERSION, "seq": self._last_seq + 1, "ts": time.time(), **record}
        line = _encode(record)
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(28, f"short write ({written} of {len(line)} bytes; disk full?)")
            os.fsync(fd)
        except OSError as exc:
            try:  # do not leave a partial line behind: the file stays a valid journal
                os.ftruncate(fd, self._valid_end)
                os.fsync(fd)
            except OSError:
                self._failed = exc  # state on disk unknown: refuse further writes
            raise JournalError(f"{self.path}: could not save the edit ({exc.strerror or exc}); it was not applied") from exc
        self._valid_end += len(line)
        self._file_size = self._valid_end
        self._last_seq = record["seq"]
        self._notify(self._apply(record))

    def _notify(self, ids: list[str]) -> None:
        for callback in list(self._subscribers):
            try:
                callback(ids)
            except Exception:  # the edit is saved; a broken view must not undo that
                _log.exception("edit journal subscriber %r failed", callback)

    # -- public API ---------------------------------------------------------------------
    def relabel(self, sample_ids: Iterable[str], labels: Iterable[int] | int) -> None:
        """Set the label of one or many samples as ONE undoable command.

        ``labels`` is one int per id, or a single int for all. Relabelling a sample to the
        label it already has is recorded too (the annotator confirmed it: it appears in
        ``labels()``); a command that changes nothing at all is not journaled.
        """
        ids = [sample_ids] if isinstance(sample_ids, str) else [str(s) for s in sample_ids]
        if isinstance(labels, Iterable) and not isinstance(labels, (str, bytes)):
            values = list(labels)
        else:
            values = [labels] * len(ids)
        if len(values) != len(ids):
            raise ValueError(f"relabel: {len(ids)} sample ids but {len(values)} labels")
        new: dict[str, int] = {}
        for sid, value in zip(ids, values):
            try:
                label = int(value)
            except (TypeError, ValueError):
                raise ValueError(f"relabel: label {value!r} of {sid!r} is not an int") from None
            if label != value or label < 0:
                raise ValueError(f"relabel: label {value!r} of {sid!r} is not a non-negative int")
            new[sid] = label  # a repeated id: the last label wins
        with self._lock:
            changed = {sid: lab for sid, lab in new.items() if self._labels.get(sid) != lab}
            if not changed:
                return
            self._append({"op": "relabel", "ids": list(changed), "labels": list(changed.values()),
                          "prev": [self._labels.get(sid) for sid in changed]})

    def mark_unsure(self, sample_ids: Iterable[str], unsure: bool = True) -> None:
        """Mark (or with ``unsure=False`` clear) samples as unsure: ONE undoable command."""
        value = bool(unsure)
        if isinstance(sample_ids, str):
            sample_ids = [sample_ids]
        with self._lock:
            ids = list(dict.fromkeys(str(s) for s in sample_ids if (str(s) in self._unsure) != value))
            if not ids:
                return
            self._append({"op": "unsure", "ids": ids, "value": value, "prev": [not value] * len(ids)})

    def undo(self) -> bool:
        """Undo the last command; False when there is none."""
        with self._lock:
            if not self._undo:
                return False
            self._append({"op": "undo", "target": self._undo[-1]["seq"]})
            return True

    def redo(self) -> bool:
        """Redo the last undone command; False when there is none."""
        with self._lock:
            if not self._redo:
                return False
            self._append({"op": "redo", "target": self._redo[-1]["seq"]})
            return True

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def peek_undo(self) -> dict | None:
        """The command the next ``undo`` undoes (a copy of its journal record), or None."""
        with self._lock:
            return dict(self._undo[-1]) if self._undo else None

    def peek_redo(self) -> dict | None:
        """The command the next ``redo`` redoes (a copy of its journal record), or None."""
        with self._lock:
            return dict(self._redo[-1]) if self._redo else None

    @property
    def undo_depth(self) -> int:
        return len(self._undo)

    @property
    def redo_depth(self) -> int:
        return len(self._redo)

    def labels(self) -> dict[str, int]:
        """sample_id → label the annotator set (changed or confirmed); a copy."""
        with self._lock:
            return dict(self._labels)

    def unsure(self) -> set[str]:
        """Sample ids currently marked unsure; a copy."""
        with self._lock:
            return set(self._unsure)

    @property
    def history(self) -> list[dict]:
        """Every journaled operation, oldest first (dicts as on disk, without ``crc``)."""
        with self._lock:
            return [dict(r) for r in self._history]

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def __len__(self) -> int:
        return len(self._history)

    def subscribe(self, callback: Callable[[list[str]], None]) -> Callable[[], None]:
        """Call ``callback(sample_ids)`` after every change; returns an unsubscribe function."""
        self._subscribers.append(callback)
        return lambda: self.unsubscribe(callback)

    def unsubscribe(self, callback: Callable[[list[str]], None]) -> None:
        try:
            self._subscribers.remove(callback)
        except ValueError:
            pass

    def close(self) -> None:
        """Release the file (and the writer lock). Reading methods keep working."""
        with self._lock:
            self._closed = True
            if self._fd is not None:
                fd, self._fd = self._fd, None
                os.close(fd)

    def __enter__(self) -> "EditJournal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        fd = getattr(self, "_fd", None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def __repr__(self) -> str:
        return f"EditJournal({str(self.path)!r}, {len(self._history)} operations)"


def apply_edits(table: pd.DataFrame, journal: EditJournal, index: pd.Index | None = None) -> pd.DataFrame:
    """A copy of ``table`` with the journal's edits applied.

    * ``label``: the annotator's label where the journal has one, else the given label;
    * ``label_given``: the dataset's label. When ``table`` already has ``label_given`` (e.g. a
      run trained on edited labels) that column is the base, so an undone edit falls back to
      the dataset's label, not to the label the run was trained with;
    * ``edited``: ``label != label_given``. A sample the annotator only confirmed (relabelled
      to its given label, or changed and changed back) is not ``edited``; it is still in
      ``journal.labels()`` (reviewed);
    * ``unsure``: marked unsure in the journal;
    * ``reviewed``: the annotator labelled it (changed, or confirmed with Enter): in ``journal.labels()``.

    ``attrs`` are kept. Journal entries for sample ids the table lacks, or labels outside the
    table's classes, are ignored with one :class:`EditsWarning` giving counts (the dataset may
    have changed since the edits were made).

    ``index``: ``table``'s sample ids as a ``pd.Index`` of str. A caller that applies edits to the
    same table after every keypress passes one it keeps: its hash table is then built once
    (``bench/edit_latency.py``: at 300 000 rows 61 ms without, 15 ms with).
    """
    out = table.copy()
    out.attrs = dict(table.attrs)
    given = (out["label_given"] if "label_given" in out else out["label"]).to_numpy(dtype=np.int64, copy=True)
    label = given.copy()
    unsure = np.zeros(len(out), dtype=bool)
    edits = journal.labels()
    marks = journal.unsure()
    reviewed = np.zeros(len(out), dtype=bool)
    unknown_ids: set[str] = set()
    bad_labels = 0
    if edits or marks:
        index = pd.Index(out["sample_id"].astype(str)) if index is None else index
        if not index.is_unique:
            raise DatasetError("apply_edits: the table has duplicate sample ids")
        if edits:
            ids = list(edits)
            rows = index.get_indexer(ids)
            values = np.fromiter(edits.values(), dtype=np.int64, count=len(ids))
            unknown_ids.update(sid for sid, r in zip(ids, rows) if r < 0)
            known = rows >= 0
            reviewed[rows[known]] = True
            try:
                n_classes = len(classes_of(out))
            except DatasetError:
                n_classes = None
            if n_classes is not None:
                in_range = values < n_classes
                bad_labels = int((known & ~in_range).sum())
                known &= in_range
            label[rows[known]] = values[known]
        if marks:
            ids = list(marks)
            rows = index.get_indexer(ids)
            unknown_ids.update(sid for sid, r in zip(ids, rows) if r < 0)
            unsure[rows[rows >= 0]] = True
    if unknown_ids or bad_labels:
        parts = []
        if unknown_ids:
            example = sorted(unknown_ids)[0]
            parts.append(f"{len(unknown_ids)} edited sample id(s) are not in the table (e.g. {example!r})")
        if bad_labels:
            parts.append(f"{bad_labels} edit(s) have a label outside the table's classes")
        warnings.warn(f"{journal.path}: {'; '.join(parts)}; those edits are ignored "
                      f"(the dataset changed since they were made?)", EditsWarning, stacklevel=2)
    out["label"] = label
    out["label_given"] = given
    out["edited"] = label != given
    out["unsure"] = unsure
    out["reviewed"] = reviewed
    return out


JOURNAL_NAME = "edits.jsonl"


def run_journal(run_dir: str | Path) -> EditJournal:
    """The edit journal in ``run_dir`` (an empty one when nothing was edited yet). A run's
    versions share one journal, in the family folder: pass ``run.root`` (``core.run``)."""
    return EditJournal(Path(run_dir) / JOURNAL_NAME)


def without_edits(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` shaped as ``apply_edits`` output for a journal with no edits."""
    out = table.copy()
    out.attrs = dict(table.attrs)
    for col in ("edited", "unsure", "reviewed"):
        if col not in out:
            out[col] = False
    return out


def apply_run_edits(table: pd.DataFrame, run_dir: str | Path, upto_seq: int | None = None) -> pd.DataFrame:
    """``table`` with the journal in ``run_dir`` applied (when there is one; ``run.root`` for a
    run's shared journal). ``upto_seq``: only the operations up to that sequence number."""
    path = Path(run_dir) / JOURNAL_NAME
    if not path.exists():
        return without_edits(table)
    journal = EditJournal(path, upto_seq=upto_seq)
    try:
        return apply_edits(table, journal)
    finally:
        journal.close()
