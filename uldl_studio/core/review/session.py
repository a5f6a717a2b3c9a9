"""The open dataset or run as one evented, Qt-free model: the table with the annotator's edits, the
run, the journal, the filter, the selection and the current sample.

Every view (map, grid, inspector, relabelling, export) and the CLI read and change this
object; views subscribe to its ``events`` (psygnal signals, as napari's models do) and keep
no sample state of their own.  Rows are positional indices into ``table``.

``table`` is one table: the dataset's own rows (``source`` = ``dataset``, journal applied) and,
after them, the rows predicted for another image collection (``source`` = ``prediction``), so
views filter, sort, colour and inspect both alike. What must see the dataset's own samples only
(training, export, label health, the journal and relabelling, the review queue, scores that
need a given label) goes through ``dataset_table`` / ``dataset_mask()``: a predicted row has no
given label and is never edited. Dataset rows keep their indices whatever is predicted.

The review queue is the order the annotator works through (the grid shows it; ←/→ and Enter
walk it): the rows of one split (training rows by default) that pass the filter and lie in
the selection (all when nothing is selected), worst first by a score. It is a snapshot, taken
when the sort key, the split, the selection, the filter or the results change, or on
``resort_queue()``; edits never move a row in it, so the annotator's place holds still.

Events (``session.events.<name>.connect(callback)``):

- ``table_reset()``: other rows, or rows in another order: reload everything;
- ``results_changed()``: same rows, new training results (λ, d, p, scores): recolour;
- ``edits_changed(rows)``: int64 rows whose label / unsure / edited changed;
- ``run_changed()``: a run was opened or created;
- ``annotator_changed(name)``: edits now go to another annotator's journal (None: the run's own);
- ``filter_changed()``: the class or score-range filter changed;
- ``selection_changed()`` and ``current_changed(row)`` (-1 = none);
- ``predictions_changed()``: the predicted rows were replaced or dropped (rows from
  ``dataset_size`` on); the dataset's rows keep their indices;
- ``queue_changed()``: the review queue was rebuilt (see below).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from psygnal import Signal, SignalGroup

from uldl_studio.core.labels import scores
from uldl_studio.core.labels.annotations import DEFAULT_ANNOTATOR, annotator_journal, validate_annotator_name
from uldl_studio.core.labels.edits import apply_edits, without_edits
from uldl_studio.core.review.selection import AllSelection, RangeSelection, Selection, ValueSelection
from uldl_studio.core.table import SOURCES, classes_of, d_columns

SELECTION_MODES = ("replace", "add", "remove", "toggle")


class SessionEvents(SignalGroup):
    table_reset = Signal()
    results_changed = Signal()
    edits_changed = Signal(object)
    run_changed = Signal()
    filter_changed = Signal()
    selection_changed = Signal()
    current_changed = Signal(int)
    predictions_changed = Signal()
    queue_changed = Signal()
    annotator_changed = Signal(object)


#: the rows a review queue walks: one split, or every row
QUEUE_SPLITS = ("train", "valid", "test", "all")
#: the sort keys tried, in order, when the chosen one has no values yet
QUEUE_FALLBACK_KEYS = ("ambiguity", "sample_id")


@dataclass(frozen=True)
class Filter:
    """Which rows the views show: label classes (None = all) and closed ranges of scores."""

    classes: frozenset[int] | None = None
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.classes is not None or bool(self.ranges)

    def selection(self) -> Selection:
        """The filter as a selection over the columns ``label`` and each filtered score."""
        out: Selection = AllSelection()
        if self.classes is not None:
            out = out & ValueSelection("label", sorted(self.classes))
        for name, (lo, hi) in self.ranges.items():
            out = out & RangeSelection(name, lo, hi)
        return out


def as_rows(rows) -> np.ndarray:
    """Sorted unique int64 rows from indices or a boolean mask (None: none)."""
    if rows is None:
        return np.empty(0, dtype=np.int64)
    arr = np.asarray(rows)
    if arr.dtype == bool:
        return np.flatnonzero(arr).astype(np.int64)
    arr = arr.astype(np.int64, copy=False).ravel()
    if arr.size < 2 or bool(np.all(arr[1:] > arr[:-1])):
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
    raise ValueError(f"unknown selection mode {mode!r}; expected one of {SELECTION_MODES}")


class Session:
    """One open dataset or run (see the module docstring)."""

    def __init__(self) -> None:
        self.events = SessionEvents()
        self.base_table: pd.DataFrame | None = None   # as read (dataset or run.samples())
        # the dataset as read, without results or edits: what a new run or version trains on
        # (None when only a run's results were opened: a new version reads it again)
        self.dataset: pd.DataFrame | None = None
        self.table: pd.DataFrame | None = None        # the dataset's rows, then the predicted rows
        self._dataset_table: pd.DataFrame | None = None  # the dataset's rows, journal applied
        self._predicted: pd.DataFrame | None = None   # another collection's predictions (core.predict)
        self._id_index: pd.Index | None = None        # base_table's sample ids (apply_edits' lookups)
        self.run = None                               # core.run.Run | None
        self.journal = None                           # core.edits.EditJournal | None
        # whose journal edits go to: a name (RUN/annotations/<name>.jsonl) or None (RUN/edits.jsonl)
        self.annotator: str | None = None
        self._journal_root: Path | None = None        # the run folder the open journal belongs to
        self.source: dict = {}                        # kind ("dataset" | "run" | "demo"), path, format
        self._row_of_id: dict[str, int] = {}
        self._scores: dict[str, np.ndarray] = {}
        self._filter = Filter()
        self._selected = np.empty(0, dtype=np.int64)
        self._selected.flags.writeable = False
        self._current = -1
        self._queue = np.empty(0, dtype=np.int64)
        self._queue_choice = "ambiguity"  # the score the user sorts by
        self._queue_key = "ambiguity"     # the one in use (the choice, once it has values)
        self._queue_split = "train"
        self._orders: dict[str, np.ndarray] = {}
        self._value_masks: dict[tuple[str, str], np.ndarray] = {}  # (column, value) -> bool per row
        self.last_reliability: Path | None = None     # the reliabilities the last export wrote

    @classmethod
    def open_run(cls, path: str | Path) -> "Session":
        """A session on a run directory's results (the CLI's way in)."""
        from uldl_studio.core.engine.run import Run  # imports torch (seconds): not at the app's start

        session = cls()
        session.set_run(Run.open(path), source={"kind": "run", "path": str(path)})
        return session

    # -- table queries --------------------------------------------------------------------
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

    # -- the dataset's own rows -------------------------------------------------------------
    @property
    def dataset_table(self) -> pd.DataFrame | None:
        """The dataset's own rows of ``table`` (journal applied; rows 0 .. ``dataset_size`` - 1):
        what training, export, label health and the journal see."""
        return self._dataset_table

    @property
    def dataset_size(self) -> int:
        return 0 if self._dataset_table is None else len(self._dataset_table)

    @property
    def has_predictions(self) -> bool:
        """Whether ``table`` holds rows predicted for another collection."""
        return self._predicted is not None

    def dataset_mask(self) -> np.ndarray:
        """Bool per row of ``table``: a sample of the dataset itself (``source`` = dataset)."""
        if self.table is None:
            return np.zeros(0, dtype=bool)
        return self._value_mask("source", "dataset")

    def dataset_rows(self, rows) -> np.ndarray:
        """The rows among ``rows`` that are the dataset's own (predicted rows dropped)."""
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        mask = self.dataset_mask()
        rows = rows[(rows >= 0) & (rows < mask.size)]
        return rows[mask[rows]]

    def is_dataset_row(self, row: int) -> bool:
        return self.dataset_rows([row]).size == 1

    def row_of(self, sample_id: str) -> int | None:
        """The dataset row of ``sample_id`` (a predicted row's id may repeat a dataset id)."""
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
        return set() if self.journal is None else set(self.journal.labels())

    # -- scores ---------------------------------------------------------------------------
    def score(self, name: str) -> np.ndarray:
        """The registered score ``name`` per row (cached until results or edits change)."""
        if self.table is None:
            return np.empty(0)
        cached = self._scores.get(name)
        if cached is None:
            cached = self._score_values(scores.get(name))
            cached.flags.writeable = False
            self._scores[name] = cached
        return cached

    def _score_values(self, score: scores.Score) -> np.ndarray:
        """The dataset's values as computed on its own rows (ranks such as ambiguity's stay
        among them), then the predicted rows' computed without a label column: they have no
        given label, so the scores that need one are NaN there."""
        values = score.values(self._dataset_table)
        if self._predicted is None:
            return values
        unlabelled = self._predicted.drop(columns="label")
        unlabelled.attrs = dict(self._predicted.attrs)
        return np.concatenate([values, score.values(unlabelled)])

    def available_scores(self) -> list[scores.Score]:
        """The registered scores with a value on at least one row."""
        return [s for s in scores.registered() if self.table is not None and np.isfinite(self.score(s.name)).any()]

    def sort_order(self, name: str) -> np.ndarray:
        """Rows worst first by score ``name`` (NaN last); ``sample_id`` sorts by id (cached
        until results or edits change)."""
        if self.table is None:
            return np.empty(0, dtype=np.int64)
        order = self._orders.get(name)
        if order is None:
            order = scores.sort_order(self.table, name, self.score)
            order.flags.writeable = False
            self._orders[name] = order
        return order

    def has_values(self, name: str) -> bool:
        """Whether score ``name`` (or ``sample_id``) has a value on some row."""
        return name == "sample_id" or (self.table is not None and bool(np.isfinite(self.score(name)).any()))

    # -- the review queue -----------------------------------------------------------------
    @property
    def queue(self) -> np.ndarray:
        """The review queue: rows in the order the annotator walks them (read-only)."""
        return self._queue

    @property
    def queue_key(self) -> str:
        """The score the queue is sorted by (the chosen one once it has values)."""
        return self._queue_key

    @property
    def queue_choice(self) -> str:
        return self._queue_choice

    @property
    def queue_split(self) -> str:
        return self._queue_split

    def set_queue_order(self, key: str | None = None, split: str | None = None) -> None:
        """Sort the queue by ``key`` (a registered score or ``sample_id``) and/or walk ``split``
        (one of ``QUEUE_SPLITS``); the queue is rebuilt."""
        if key is not None:
            if key != "sample_id":
                scores.get(key)
            self._queue_choice = key
        if split is not None:
            if split not in QUEUE_SPLITS:
                raise ValueError(f"unknown split {split!r}; expected one of {QUEUE_SPLITS}")
            self._queue_split = split
        self.resort_queue()

    def resort_queue(self) -> None:
        """Take a new snapshot of the queue (rows edited since then move to their new place)."""
        for key in (self._queue_choice, *QUEUE_FALLBACK_KEYS):
            if self.has_values(key):
                break
        self._queue_key = key
        if self.table is None:
            queue = np.empty(0, dtype=np.int64)
        else:
            order = self.sort_order(key)
            mask = self.visible_mask() & self.dataset_mask()
            if self._selected.size:
                mask &= self.selection_mask()
            if self._queue_split != "all":
                mask &= self._split_mask(self._queue_split)
            queue = order[mask[order]]
        queue.flags.writeable = False
        self._queue = queue
        self.events.queue_changed.emit()

    def _split_mask(self, split: str) -> np.ndarray:
        return self._value_mask("split", split)

    def _value_mask(self, column: str, value: str) -> np.ndarray:
        """Bool per row: ``column`` equals ``value`` (cached with the scores: comparing a
        million strings on every selection change cost about 20 ms)."""
        key = (column, value)
        if key not in self._value_masks:
            mask = np.asarray(self.table[column].to_numpy() == value, dtype=bool)
            mask.flags.writeable = False
            self._value_masks[key] = mask
        return self._value_masks[key]

    def queue_reviewed(self) -> np.ndarray:
        """Per queue position: the annotator has labelled, confirmed or marked the row unsure."""
        done = self.flag("reviewed") | self.flag("unsure") | self.flag("edited")
        return done[self._queue]

    def queue_neighbour(self, row: int | None, step: int) -> int | None:
        """The row ``step`` places after ``row`` in the queue (clamped to its ends); the first
        (``step`` > 0) or last row when ``row`` is not in it; None for an empty queue."""
        queue = self._queue
        if not queue.size:
            return None
        where = np.flatnonzero(queue == row) if row is not None and row >= 0 else np.empty(0)
        if not where.size:
            return int(queue[0] if step > 0 else queue[-1])
        return int(queue[int(np.clip(where[0] + step, 0, queue.size - 1))])

    def next_unreviewed(self, row: int | None) -> int | None:
        """The first row after ``row`` in the queue that is not reviewed, wrapping to the start;
        None when every row in the queue is."""
        queue = self._queue
        todo = ~self.queue_reviewed()
        if row is not None and row >= 0:
            todo &= queue != row
            where = np.flatnonzero(queue == row)
            if where.size:
                after = np.flatnonzero(todo[where[0] + 1:])
                if after.size:
                    return int(queue[where[0] + 1 + after[0]])
        first = np.flatnonzero(todo)
        return int(queue[first[0]]) if first.size else None

    def most_ambiguous(self, name: str = "ambiguity", candidates: np.ndarray | None = None) -> int | None:
        """The candidate row (bool mask; default the dataset's rows) worst by ``name``; None when
        none scores."""
        if self.table is None or not len(self.table):
            return None
        values = scores.oriented(name, self.score(name))
        candidates = self.dataset_mask() if candidates is None else np.asarray(candidates, bool)
        ok = candidates & np.isfinite(values)
        if not ok.any():
            return None
        rows = np.flatnonzero(ok)
        return int(rows[np.argmax(values[rows])])

    # -- loading --------------------------------------------------------------------------
    def set_dataset(self, table: pd.DataFrame, source: dict) -> None:
        """Show a dataset that has no run yet."""
        self.run = None
        self.close_journal()
        self.source = dict(source)
        self.dataset = table
        self._set_base(table, reset=True)
        self.events.run_changed.emit()

    def set_run(self, run, samples: pd.DataFrame | None = None, source: dict | None = None) -> None:
        """Show a run's results (``samples`` = ``run.samples()`` when already loaded). Another
        version of the open run keeps the selection and the current sample (by sample id)."""
        same_run = self.run is not None and Path(self.run.path) == Path(run.path)
        same_family = self.journal is not None and self._journal_root == Path(run.root)
        same_dataset = same_family or (self.run is None and self.dataset is not None)
        if not same_dataset:
            self.dataset = None
        self.run = run
        if not same_family:  # the versions of one run share its journals: keep this one open
            self._open_journal()
        if source is not None:
            self.source = dict(source)
        self.update_results(run.samples() if samples is None else samples, keep=same_dataset)
        if not same_run:
            self.events.run_changed.emit()

    def update_results(self, samples: pd.DataFrame, keep: bool = True) -> None:
        """New results for the same rows (a finished epoch): recolour, keep selection and filter.
        Rows that differ (other ids or order) reset the session instead; ``keep``: the selection
        and the current sample then follow their sample ids into the new rows."""
        same_rows = (self.base_table is not None and len(samples) == len(self.base_table)
                     and np.array_equal(samples["sample_id"].to_numpy(), self.base_table["sample_id"].to_numpy()))
        self._set_base(samples, reset=not same_rows, keep=keep)

    def _set_base(self, table: pd.DataFrame, reset: bool, keep: bool = False) -> None:
        kept_ids = kept_current = None
        if reset and keep and self.table is not None:
            kept_ids = self.sample_ids(self._selected)
            kept_current = self.sample_ids([self._current])[0] if self._current >= 0 else None
        self.base_table = table
        self._id_index = pd.Index(table["sample_id"].astype(str))  # kept: each edit looks ids up in it
        dropped = reset and self._predicted is not None
        if dropped:
            self._predicted = None  # predictions belong to the rows they were shown with
        self._set_tables(self._with_edits())
        self._row_of_id = {sid: i for i, sid in enumerate(self._dataset_table["sample_id"].tolist())}
        if reset:
            self._queue = np.empty(0, dtype=np.int64)  # no view lists old rows of the new table
            if dropped:
                self.events.predictions_changed.emit()
            self._filter = Filter()
            selected = np.empty(0, dtype=np.int64) if kept_ids is None else self.rows_of(kept_ids)
            self._set_selected(np.sort(selected), emit=False)
            current = self._row_of_id.get(kept_current, -1) if kept_current is not None else -1
            self._current = current
            self.events.table_reset.emit()
            self.events.filter_changed.emit()
            self.events.selection_changed.emit()
            self.events.current_changed.emit(current)
        else:
            self.events.results_changed.emit()
        self.resort_queue()

    def training_plan(self, config, new_run_dir: str | Path, folds: int = 0):
        """What Start trains (a ``core.runs.jobs.TrainPlan``): a new version of the open run,
        learning from every annotator's votes, or a new run of the open dataset in ``new_run_dir``."""
        from uldl_studio.core.runs import jobs  # imports torch (seconds): not at the app's start

        if self.run is not None:
            return jobs.new_version(self.run, config, dataset=self.dataset, journal=self.journal, folds=folds)
        return jobs.new_run(None, config, new_run_dir, table=self.dataset, folds=folds)

    def _with_edits(self) -> pd.DataFrame:
        """``base_table`` with the journal applied and ``source`` = dataset."""
        table = self.base_table
        out = without_edits(table) if self.journal is None else apply_edits(table, self.journal, self._id_index)
        out["source"] = pd.Categorical.from_codes(np.zeros(len(out), dtype=np.int8), categories=SOURCES)
        out.attrs = dict(table.attrs)
        return out

    def _set_tables(self, dataset: pd.DataFrame, same_rows: bool = False) -> None:
        """``table`` from the dataset's rows and, after them, the predicted rows; the caches
        of the old table go (``same_rows``: the split and source masks stay)."""
        self._dataset_table = dataset
        self.table = dataset if self._predicted is None else append_rows(dataset, self._predicted)
        self._scores.clear()
        self._orders.clear()
        if not same_rows:
            self._value_masks.clear()

    def set_annotator(self, name: str | None) -> None:
        """Edits go to annotator ``name``'s journal in the open run and in every run opened later
        (``core.labels.annotations.annotator_journal``; None: the run's own journal). The table
        then shows that journal's labels; the rows, selection and current sample stay."""
        if name is not None:
            name = validate_annotator_name(name)
        if name == self.annotator:
            return
        self.annotator = name
        if self.run is not None:
            self._open_journal()
            if self.base_table is not None:
                self.update_results(self.base_table)
        self.events.annotator_changed.emit(name)

    def _open_journal(self) -> None:
        """Open the annotator's journal in the open run (closing the one before)."""
        self.close_journal()
        root = Path(self.run.root)
        self.journal = annotator_journal(root, self.annotator or DEFAULT_ANNOTATOR)  # the default: RUN/edits.jsonl
        self._journal_root = root

    def close_journal(self) -> None:
        """Release the journal (its file and writer lock); edits need a run again."""
        if self.journal is not None:
            self.journal.close()
        self.journal = None
        self._journal_root = None

    def close(self) -> None:
        """The session ends (the window closes): the journal is released."""
        self.close_journal()

    # -- edits (each on disk before anyone hears of it) -------------------------------------
    @property
    def can_edit(self) -> bool:
        return self.journal is not None

    def relabel(self, rows, labels) -> None:
        """Journal ``labels`` for ``rows``; predicted rows among them are left out (nothing is
        journalled when none is left)."""
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        labels = np.broadcast_to(np.asarray(labels, dtype=np.int64), rows.shape)
        keep = np.isin(rows, self.dataset_rows(rows))
        journal = self._require_journal()
        if keep.any():
            journal.relabel(self.sample_ids(rows[keep]), [int(x) for x in labels[keep]])
            self._refresh_edits()

    def mark_unsure(self, rows, unsure: bool) -> None:
        """Mark ``rows`` unsure (or clear it); predicted rows among them are left out."""
        rows = self.dataset_rows(rows)
        journal = self._require_journal()
        if rows.size:
            journal.mark_unsure(self.sample_ids(rows), bool(unsure))
            self._refresh_edits()

    def undo(self) -> str | None:
        """Undo the last edit; what was undone, in words (None when there was nothing)."""
        if self.journal is None or not self.journal.can_undo:
            return None
        text = self.describe_edit(self.journal.peek_undo())
        self.journal.undo()
        self._refresh_edits()
        return text

    def redo(self) -> str | None:
        """Redo the last undone edit; what was redone, in words (None when there was nothing)."""
        if self.journal is None or not self.journal.can_redo:
            return None
        text = self.describe_edit(self.journal.peek_redo())
        self.journal.redo()
        self._refresh_edits()
        return text

    def describe_edit(self, command: dict) -> str:
        """A journal command in words: ``demo_00058 anger → fear``, ``12 samples → fear``,
        ``demo_00058 marked unsure``."""
        ids = list(command.get("ids", []))
        who = ids[0] if len(ids) == 1 else f"{len(ids)} samples"
        if command.get("op") == "unsure":
            return f"{who} {'marked unsure' if command.get('value') else 'unsure cleared'}"
        names = self.classes

        def name(label) -> str:
            return names[label] if label is not None and 0 <= int(label) < len(names) else str(label)

        labels = command.get("labels", [])
        if len(ids) == 1:
            before = command["prev"][0]
            if before is None:  # no journal label before: the dataset's own label
                row = self.row_of(ids[0])
                if row is not None and "label_given" in self._dataset_table:
                    before = int(self._dataset_table["label_given"].iat[row])
            if before == labels[0]:
                return f"{who} {name(labels[0])} confirmed"
            return f"{who} {name(before)} → {name(labels[0])}"
        targets = sorted(set(labels))
        return f"{who} → {name(targets[0])}" if len(targets) == 1 else f"{who} relabelled"

    def _require_journal(self):
        if self.journal is None:
            raise RuntimeError("edits are saved in a run directory: train (or open a run) first")
        return self.journal

    def _refresh_edits(self) -> None:
        old = self._dataset_table
        new = self._with_edits()
        changed = np.zeros(len(new), dtype=bool)
        for col in ("label", "edited", "unsure"):
            if col in new:
                before = old[col].to_numpy() if col in old else np.zeros(len(new))
                changed |= before != new[col].to_numpy()
        # scores of the current label (self-confidence, margin) follow edits; the queue itself
        # holds still until it is re-sorted
        self._set_tables(new, same_rows=True)
        self.events.edits_changed.emit(np.flatnonzero(changed))

    # -- filter ---------------------------------------------------------------------------
    @property
    def filter(self) -> Filter:
        return self._filter

    def set_filter(self, classes=..., ranges: dict[str, tuple[float, float]] | None = ...) -> None:
        """Replace the class filter and/or the score ranges (``...`` keeps that part)."""
        new_classes = self._filter.classes if classes is ... else (
            None if classes is None else frozenset(int(c) for c in classes))
        if new_classes is not None and self.table is not None and new_classes >= set(range(len(self.classes))):
            new_classes = None  # every class ticked is no class filter
        new_ranges = dict(self._filter.ranges) if ranges is ... else dict(ranges or {})
        for name in new_ranges:
            scores.get(name)  # unknown names are an error here, not a silent no-op
        new = Filter(new_classes, {k: (float(lo), float(hi)) for k, (lo, hi) in new_ranges.items()})
        if new != self._filter:
            self._filter = new
            self.events.filter_changed.emit()
            self.resort_queue()

    def set_range(self, name: str, low: float | None, high: float | None = None) -> None:
        """Show only rows whose score ``name`` is in [low, high]; ``low=None`` drops the range."""
        ranges = dict(self._filter.ranges)
        if low is None:
            ranges.pop(name, None)
        else:
            ranges[name] = (float(low), float(high))
        self.set_filter(ranges=ranges)

    def clear_filter(self) -> None:
        self.set_filter(None, {})

    def visible_mask(self) -> np.ndarray:
        """Rows that pass the filter."""
        if self.table is None:
            return np.ones(0, dtype=bool)
        f = self._filter
        columns = {"label": self.table["label"].to_numpy(np.int64), **{name: self.score(name) for name in f.ranges}}
        return f.selection().mask(columns)

    def filter_text(self) -> str:
        """One line describing the filter ("" when none), e.g. ``anger, fear · λ 0.5–1.0``."""
        f = self._filter
        parts = []
        if f.classes is not None:
            names = [self.classes[c] if 0 <= c < len(self.classes) else str(c) for c in sorted(f.classes)]
            parts.append(", ".join(names) if names else "no classes")
        for name, (lo, hi) in f.ranges.items():
            short = "λ" if name == "lambda" else scores.get(name).label
            exact = round(lo, 1) == lo and round(hi, 1) == hi
            parts.append(f"{short} {lo:.1f}–{hi:.1f}" if exact else f"{short} {lo:.2f}–{hi:.2f}")
        return " · ".join(parts)

    # -- selection and current sample -------------------------------------------------------
    @property
    def selection(self) -> np.ndarray:
        """Selected rows, sorted unique (read-only)."""
        return self._selected

    @property
    def current(self) -> int:
        return self._current

    def selection_mask(self) -> np.ndarray:
        out = np.zeros(len(self), dtype=bool)
        out[self._selected[self._selected < len(out)]] = True
        return out

    def select(self, rows, mode: str = "replace") -> bool:
        """Apply ``rows`` (indices or a boolean mask) with ``mode``; True when it changed."""
        rows = as_rows(rows)
        rows = rows[(rows >= 0) & (rows < len(self))] if self.table is not None else rows[rows >= 0]
        new = combine(self._selected, rows, mode)
        if np.array_equal(new, self._selected):
            return False
        self._set_selected(new)
        return True

    def _set_selected(self, rows: np.ndarray, emit: bool = True) -> None:
        rows = np.array(rows, dtype=np.int64)
        rows.flags.writeable = False
        self._selected = rows
        if emit:
            self.events.selection_changed.emit()
            self.resort_queue()

    def set_current(self, row: int) -> None:
        row = int(row)
        if row < 0 or (self.table is not None and row >= len(self.table)):
            row = -1
        if row != self._current:
            self._current = row
            self.events.current_changed.emit(row)

    # -- predictions for other collections --------------------------------------------------
    def set_predictions(self, table: pd.DataFrame | None) -> None:
        """Append the predictions of another image collection (``core.runs.predict``) to
        ``table`` as rows of source ``prediction``, replacing earlier ones (None drops them).
        They carry valence/arousal and x2d/y2d in the run's own map. The old predicted rows
        leave the selection and the current sample."""
        if self._dataset_table is None:
            return
        self._predicted = None if table is None else prediction_rows(table, self.classes)
        self._set_tables(self._dataset_table)
        n = self.dataset_size
        kept = self._selected[self._selected < n]
        self.events.predictions_changed.emit()
        if kept.size != self._selected.size:
            self._set_selected(kept)
        if self._current >= n:
            self.set_current(-1)

    # -- export ---------------------------------------------------------------------------
    def export(self, path: str | Path, rows=None) -> int:
        """Write the soft-label file of ``rows`` (default all) with edits applied, and with the
        people's combined label where several voted (``core.runs.export.export_reviewed``; the
        reliabilities go to ``last_reliability``'s file); rows written."""
        if not self.has_results:
            raise ValueError("nothing to export yet: train a model first (soft labels come from a run)")
        from uldl_studio.core.runs.export import export_reviewed  # scipy.optimize: 0.6 s, not at start

        if rows is not None and len(rows):
            rows = self.dataset_rows(rows)
            if not rows.size:
                raise ValueError("the selection holds no sample of the dataset: nothing to export")
        run_root = None if self.run is None else self.run.root
        written, self.last_reliability = export_reviewed(self._dataset_table, run_root, path, rows)
        return written


def prediction_rows(predictions: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Predicted samples as rows for the session's table: ``source`` = prediction, ``label`` the
    predicted class. Their ``d_`` columns (a copy of ``p_`` in the file format) are left out:
    no neighbours constructed a distribution for them."""
    out = predictions.drop(columns=[c for c in d_columns(classes) if c in predictions]).reset_index(drop=True)
    out["label"] = out["label"].to_numpy(np.int64)
    out["source"] = pd.Categorical.from_codes(np.ones(len(out), dtype=np.int8), categories=SOURCES)
    out.attrs = {**predictions.attrs, "classes": list(classes)}
    return out


def append_rows(dataset: pd.DataFrame, predicted: pd.DataFrame) -> pd.DataFrame:
    """``dataset`` then ``predicted``; the dataset's flag columns stay bool (False where the
    predicted rows lack them)."""
    out = pd.concat([dataset, predicted], ignore_index=True, sort=False)
    for name in dataset.columns:
        if dataset[name].dtype == bool and out[name].dtype != bool:
            out[name] = out[name].fillna(False).astype(bool)
    out.attrs = dict(dataset.attrs)
    return out
