"""The open project: one dataset table, optionally a run and its edit journal.

A plain model object for the views (DESIGN.md §4, napari style): widgets read from it and
listen to its signals; they never own a copy of the state.  ``table`` always has edits
applied (``label`` is the annotator's label, plus ``edited``/``unsure``/``label_given``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PySide6.QtCore import QObject, Signal

from uldl_studio.core.table import classes_of


class Project(QObject):
    """State shared by all views of the main window.

    Signals:
        tableReset(): a new table (other rows, or rows in another order) - reload everything.
        resultsChanged(): same rows, new training results (λ, d, p, maps) - recolour.
        editsChanged(object): numpy array of row indices whose label/unsure/edited changed.
        runChanged(): a run was opened or created.
    """

    tableReset = Signal()
    resultsChanged = Signal()
    editsChanged = Signal(object)
    runChanged = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.base_table: pd.DataFrame | None = None  # without edits
        self.table: pd.DataFrame | None = None       # with edits applied
        self.run = None                              # core.run.Run | None
        self.journal = None                          # core.edits.EditJournal | None
        self.source: dict = {}                       # kind ("dataset"|"run"|"demo"), path, format
        self._row_of_id: dict[str, int] = {}

    # -- queries ------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self.table is not None

    @property
    def classes(self) -> list[str]:
        return classes_of(self.table) if self.table is not None else []

    @property
    def has_results(self) -> bool:
        return self.table is not None and "lambda" in self.table

    def __len__(self) -> int:
        return 0 if self.table is None else len(self.table)

    def row_of(self, sample_id: str) -> int | None:
        return self._row_of_id.get(sample_id)

    def rows_of(self, sample_ids) -> np.ndarray:
        rows = [self._row_of_id.get(s) for s in sample_ids]
        return np.asarray([r for r in rows if r is not None], dtype=np.int64)

    def sample_ids(self, rows) -> list[str]:
        if self.table is None:
            return []
        return self.table["sample_id"].to_numpy()[np.asarray(rows, dtype=np.int64)].tolist()

    def column(self, name: str, default: float = np.nan) -> np.ndarray:
        if self.table is None:
            return np.empty(0)
        if name in self.table:
            return self.table[name].to_numpy()
        return np.full(len(self.table), default)

    def flag(self, name: str) -> np.ndarray:
        """Boolean column (``edited`` / ``unsure``), all False when absent."""
        if self.table is None or name not in self.table:
            return np.zeros(len(self), dtype=bool)
        return self.table[name].fillna(False).to_numpy(dtype=bool)

    def reviewed_ids(self) -> set[str]:
        """Samples the annotator has labelled (changed or confirmed) in the journal."""
        if self.journal is None:
            return set()
        return set(self.journal.labels())

    def lambda_change(self) -> np.ndarray:
        """λ - λ of the previous run (NaN where unknown)."""
        lam = self.column("lambda").astype(np.float64)
        prev = self.column("lambda_prev").astype(np.float64)
        return lam - prev

    # -- loading ------------------------------------------------------------------------
    def set_dataset(self, table: pd.DataFrame, source: dict) -> None:
        """Show a dataset that has no run yet."""
        self.run = None
        self.journal = None
        self.source = dict(source)
        self._set_base(table, reset=True)
        self.runChanged.emit()

    def set_run(self, run, samples: pd.DataFrame | None = None, source: dict | None = None) -> None:
        """Show a run's results (``samples`` = ``run.samples()`` when already loaded)."""
        from uldl_studio.core.edits import EditJournal

        same_run = self.run is not None and Path(self.run.path) == Path(run.path)
        self.run = run
        if not same_run or self.journal is None:
            self.journal = EditJournal(Path(run.path) / "edits.jsonl")
        if source is not None:
            self.source = dict(source)
        if samples is None:
            samples = run.samples()
        same_rows = (self.base_table is not None and len(samples) == len(self.base_table)
                     and np.array_equal(samples["sample_id"].to_numpy(),
                                        self.base_table["sample_id"].to_numpy()))
        self._set_base(samples, reset=not same_rows)
        if not same_run:
            self.runChanged.emit()

    def _set_base(self, table: pd.DataFrame, reset: bool) -> None:
        self.base_table = table
        self.table = self._with_edits(table)
        self._row_of_id = {sid: i for i, sid in enumerate(self.table["sample_id"].tolist())}
        if reset:
            self.tableReset.emit()
        else:
            self.resultsChanged.emit()

    def _with_edits(self, table: pd.DataFrame) -> pd.DataFrame:
        if self.journal is None:
            out = table.copy()
            out.attrs = dict(table.attrs)
            for col in ("edited", "unsure"):
                if col not in out:
                    out[col] = False
            return out
        from uldl_studio.core.edits import apply_edits

        out = apply_edits(table, self.journal)
        out.attrs = dict(table.attrs)
        return out

    # -- edits (each on disk before the views hear of it) -------------------------------
    @property
    def can_edit(self) -> bool:
        return self.journal is not None

    def relabel(self, rows, labels) -> None:
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        labels = np.broadcast_to(np.asarray(labels, dtype=np.int64), rows.shape)
        self._require_journal()
        self.journal.relabel(self.sample_ids(rows), [int(x) for x in labels])
        self._refresh_edits()

    def mark_unsure(self, rows, unsure: bool) -> None:
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        self._require_journal()
        self.journal.mark_unsure(self.sample_ids(rows), bool(unsure))
        self._refresh_edits()

    def undo(self) -> bool:
        if self.journal is None or not self.journal.can_undo:
            return False
        done = self.journal.undo()
        self._refresh_edits()
        return bool(done)

    def redo(self) -> bool:
        if self.journal is None or not self.journal.can_redo:
            return False
        done = self.journal.redo()
        self._refresh_edits()
        return bool(done)

    def _require_journal(self) -> None:
        if self.journal is None:
            raise RuntimeError("edits are saved in a run directory: train (or open a run) first")

    def _refresh_edits(self) -> None:
        old = self.table
        new = self._with_edits(self.base_table)
        changed = np.zeros(len(new), dtype=bool)
        for col in ("label", "edited", "unsure"):
            if col in new:
                a = old[col].to_numpy() if col in old else np.zeros(len(new))
                changed |= a != new[col].to_numpy()
        self.table = new
        self.editsChanged.emit(np.flatnonzero(changed))
