"""The selection shared by all linked views (map, grid, inspector).

One ``SelectionModel`` per window: views never keep their own copy of the selection, they
call ``set_selection``/``set_current`` and redraw on ``selectionChanged``/``currentChanged``
(napari/glue style, DESIGN.md §4).  Rows are positional indices into the project's table.

A selection change that comes from a gesture goes through a ``QUndoCommand`` when an
``undo_stack`` is given, so Ctrl+Z restores the previous selection.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

MODES = ("replace", "add", "remove", "toggle")


def _as_rows(rows) -> np.ndarray:
    if rows is None:
        return np.empty(0, dtype=np.int64)
    arr = np.asarray(rows)
    if arr.dtype == bool:
        return np.flatnonzero(arr).astype(np.int64)
    arr = arr.astype(np.int64, copy=False).ravel()
    if arr.size < 2 or bool(np.all(arr[1:] > arr[:-1])):  # already sorted unique (from a mask)
        return arr.copy()
    return np.unique(arr)


def combine(old: np.ndarray, rows: np.ndarray, mode: str) -> np.ndarray:
    """The selection after applying ``rows`` to ``old`` with ``mode`` (both sorted unique)."""
    if mode == "replace":
        return rows
    if mode == "add":
        return np.union1d(old, rows)
    if mode == "remove":
        return np.setdiff1d(old, rows, assume_unique=True)
    if mode == "toggle":
        return np.setxor1d(old, rows, assume_unique=True)
    raise ValueError(f"unknown selection mode {mode!r}; expected one of {MODES}")


class _SelectCommand(QUndoCommand):
    def __init__(self, model: "SelectionModel", before: np.ndarray, after: np.ndarray, text: str):
        super().__init__(text)
        self._model = model
        self._before = before
        self._after = after

    def redo(self) -> None:
        self._model._apply(self._after)

    def undo(self) -> None:
        self._model._apply(self._before)


class SelectionModel(QObject):
    """Selected rows (sorted unique int64) and the current row (-1 = none).

    Signals:
        selectionChanged(): ``selected`` changed.
        currentChanged(int): ``current`` changed; the new row or -1.
    """

    selectionChanged = Signal()
    currentChanged = Signal(int)

    def __init__(self, parent: QObject | None = None, undo_stack: QUndoStack | None = None) -> None:
        super().__init__(parent)
        self.undo_stack = undo_stack
        self._selected = np.empty(0, dtype=np.int64)
        self._current = -1
        self.row_count: int | None = None  # when set, rows outside 0..row_count-1 are dropped

    # -- state ---------------------------------------------------------------------------
    @property
    def selected(self) -> np.ndarray:
        """Sorted unique row indices (read-only view; copy before mutating)."""
        return self._selected

    @property
    def current(self) -> int:
        return self._current

    def __len__(self) -> int:
        return int(self._selected.size)

    def has_selection(self) -> bool:
        return self._selected.size > 0

    def mask(self, n: int) -> np.ndarray:
        """Boolean mask of length ``n`` of the selected rows."""
        out = np.zeros(n, dtype=bool)
        rows = self._selected[self._selected < n]
        out[rows] = True
        return out

    # -- changes -------------------------------------------------------------------------
    def set_selection(self, rows, mode: str = "replace", *, undoable: bool = True,
                      text: str | None = None) -> bool:
        """Apply ``rows`` (indices or a boolean mask) with ``mode``; True when it changed.

        With an undo stack and ``undoable`` the change is pushed as a command (Ctrl+Z).
        """
        new = combine(self._selected, self._clip(_as_rows(rows)), mode)
        if np.array_equal(new, self._selected):
            return False
        if self.undo_stack is not None and undoable:
            label = text or f"Select {new.size:,} samples"
            self.undo_stack.push(_SelectCommand(self, self._selected, new, label))
        else:
            self._apply(new)
        return True

    def clear(self, *, undoable: bool = True) -> bool:
        return self.set_selection(None, "replace", undoable=undoable, text="Clear selection")

    def set_current(self, row: int) -> None:
        row = int(row)
        if row < 0 or (self.row_count is not None and row >= self.row_count):
            row = -1
        if row != self._current:
            self._current = row
            self.currentChanged.emit(row)

    def reset(self, row_count: int | None = None) -> None:
        """Forget everything (new table): not undoable, signals emitted when state changed."""
        self.row_count = row_count
        self._apply(np.empty(0, dtype=np.int64))
        self.set_current(-1)

    # -- internals -------------------------------------------------------------------
    def _clip(self, rows: np.ndarray) -> np.ndarray:
        rows = rows[rows >= 0]
        if self.row_count is not None:
            rows = rows[rows < self.row_count]
        return rows

    def _apply(self, rows: np.ndarray) -> None:
        if np.array_equal(rows, self._selected):
            return
        self._selected = rows
        self._selected.flags.writeable = False
        self.selectionChanged.emit()
