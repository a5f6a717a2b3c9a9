"""Keyboard relabelling and the undo bridge to ``core.edits.EditJournal``.

How the keys behave:

- Number keys 1..m relabel the *current* sample (the inspector's) and stay on it.
- Ctrl+1..m relabel the whole *selection*, and "Relabel selection…" (Ctrl+R) asks for the
  class; either is one journal entry, so one Ctrl+Z undoes it.
- Enter accepts the current label: it is journalled as a relabel to the same label, which
  marks the sample *reviewed* (it then counts as done for "next most ambiguous" and survives
  restarts), and moves to the most ambiguous (highest λ) unreviewed sample among the visible
  ones. A sample already reviewed with that label is not journalled twice.
- ←/→ move to the previous/next sample in the grid's order.
- Space toggles "unsure" on the current sample; Shift+Space marks the selection unsure (or
  clears it when all of it already is).
- Ctrl+Z / Ctrl+Shift+Z (or Ctrl+Y) undo/redo through the journal.

Each edit is appended and fsynced by the journal before the project emits ``editsChanged``,
i.e. before any view shows it.  The controller holds no state of its own except its actions.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QInputDialog, QWidget

MAX_NUMBER_KEYS = 9


class RelabelController(QObject):
    """Owns the relabel/undo QActions of the main window.

    The current sample, the selection and the filter are the session's; the grid's order and
    its sort key (the score "next most ambiguous" follows) come through callables so the
    controller does not depend on a widget: ``order()`` -> rows in grid order,
    ``sort_key()`` -> a registered score name or "sample_id".
    """

    statusMessage = Signal(str)

    def __init__(self, bridge, window: QWidget, *, order: Callable[[], np.ndarray],
                 sort_key: Callable[[], str] = lambda: "ambiguity") -> None:
        super().__init__(window)
        self.bridge = bridge
        self.project = session = bridge.session
        self.window = window
        self._current = lambda: None if session.current < 0 else session.current
        self._set_current = session.set_current
        self._selection = lambda: session.selection
        self._order = order
        self._sort_key = sort_key
        self._visible = session.visible_mask
        self.ask_class: Callable[[list[str]], int | None] = self._ask_class_dialog

        def action(text: str, shortcuts, slot, tip: str = "") -> QAction:
            act = QAction(text, window)
            if not isinstance(shortcuts, (list, tuple)):
                shortcuts = [shortcuts]
            act.setShortcuts([QKeySequence(s) for s in shortcuts])
            act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            act.setStatusTip(tip)
            act.triggered.connect(slot)
            window.addAction(act)
            return act

        self.undo_action = action("&Undo edit", ["Ctrl+Z"], self.undo,
                                  "undo the last relabel or unsure mark")
        self.redo_action = action("&Redo edit", ["Ctrl+Shift+Z", "Ctrl+Y"], self.redo)
        self.accept_action = action("&Accept label, next ambiguous", ["Return", "Enter"], self.accept_and_next,
                                    "confirm the given label (reviewed) and go to the most ambiguous unreviewed sample")
        self.next_action = action("&Next sample", "Right", self.next_sample)
        self.previous_action = action("&Previous sample", "Left", self.previous_sample)
        self.unsure_action = action("Toggle &unsure", "Space", self.toggle_unsure)
        self.unsure_selection_action = action("Mark selection unsure", "Shift+Space", self.toggle_unsure_selection)
        self.relabel_selection_action = action("Relabel &selection…", "Ctrl+R", self.relabel_selection_dialog)
        self.label_actions: list[QAction] = []
        self.selection_label_actions: list[QAction] = []
        for i in range(MAX_NUMBER_KEYS):
            self.label_actions.append(action(f"Label {i + 1}", str(i + 1),
                                             lambda checked=False, k=i: self.relabel_current(k)))
            self.selection_label_actions.append(action(f"Selection {i + 1}", f"Ctrl+{i + 1}",
                                                       lambda checked=False, k=i: self.relabel_selection(k)))
        bridge.tableReset.connect(self._update_class_actions)
        bridge.runChanged.connect(self.update_enabled)
        bridge.editsChanged.connect(self.update_enabled)
        self._update_class_actions()

    # -- action state --------------------------------------------------------------------
    @Slot()
    def _update_class_actions(self) -> None:
        classes = self.project.classes
        for i, (single, multi) in enumerate(zip(self.label_actions, self.selection_label_actions)):
            known = i < len(classes)
            single.setEnabled(known)
            multi.setEnabled(known)
            if known:
                single.setText(f"Label current as {classes[i]}")
                multi.setText(f"Relabel selection as {classes[i]}")
        self.update_enabled()

    @Slot()
    def update_enabled(self, *args) -> None:
        journal = self.project.journal
        self.undo_action.setEnabled(journal is not None and journal.can_undo)
        self.redo_action.setEnabled(journal is not None and journal.can_redo)

    def _editable(self) -> bool:
        if not self.project.is_open:
            return False
        if not self.project.can_edit:
            self.statusMessage.emit("Edits are saved in the run directory: train (or open a run) first.")
            return False
        return True

    # -- relabel -------------------------------------------------------------------------
    def relabel_current(self, class_index: int) -> None:
        row = self._current()
        if row is None or not self._editable() or class_index >= len(self.project.classes):
            return
        self.project.relabel([row], [class_index])
        self.statusMessage.emit(f"{self.project.table['sample_id'].iat[row]} → "
                                f"{self.project.classes[class_index]} (saved; Ctrl+Z undoes)")

    def relabel_selection(self, class_index: int) -> None:
        rows = np.asarray(self._selection(), dtype=np.int64)
        if len(rows) == 0:
            self.statusMessage.emit("Select samples first (box or lasso in the map).")
            return
        if not self._editable() or class_index >= len(self.project.classes):
            return
        self.project.relabel(rows, np.full(len(rows), class_index))
        self.statusMessage.emit(f"{len(rows)} samples → {self.project.classes[class_index]} "
                                "(one edit; Ctrl+Z undoes)")

    @Slot()
    def relabel_selection_dialog(self) -> None:
        if len(self._selection()) == 0:
            self.statusMessage.emit("Select samples first (box or lasso in the map).")
            return
        if not self._editable():
            return
        k = self.ask_class(self.project.classes)
        if k is not None:
            self.relabel_selection(k)

    def _ask_class_dialog(self, classes: list[str]) -> int | None:
        n = len(self._selection())
        name, ok = QInputDialog.getItem(self.window, "Relabel selection",
                                        f"New label for the {n} selected samples:", classes, 0, False)
        return classes.index(name) if ok and name in classes else None

    # -- unsure --------------------------------------------------------------------------
    @Slot()
    def toggle_unsure(self) -> None:
        row = self._current()
        if row is None or not self._editable():
            return
        now = not bool(self.project.flag("unsure")[row])
        self.project.mark_unsure([row], now)
        self.statusMessage.emit(f"{self.project.table['sample_id'].iat[row]}: "
                                f"{'marked unsure' if now else 'unsure cleared'}")

    @Slot()
    def toggle_unsure_selection(self) -> None:
        rows = np.asarray(self._selection(), dtype=np.int64)
        if len(rows) == 0 or not self._editable():
            return
        now = not bool(self.project.flag("unsure")[rows].all())
        self.project.mark_unsure(rows, now)
        self.statusMessage.emit(f"{len(rows)} samples {'marked unsure' if now else 'no longer unsure'}")

    # -- accept and navigate ---------------------------------------------------------------
    @Slot()
    def accept_and_next(self) -> None:
        row = self._current()
        if row is not None and self._editable():
            sid = self.project.table["sample_id"].iat[row]
            label = int(self.project.table["label"].iat[row])
            if self.project.journal.labels().get(sid) != label:
                self.project.relabel([row], [label])
        target = self.next_ambiguous(exclude=row)
        if target is None:
            self.statusMessage.emit("Every visible sample has been reviewed.")
            return
        self._set_current(int(target))

    def next_ambiguous(self, exclude: int | None = None) -> int | None:
        """The visible, unreviewed row worst by the grid's sort score (the combined ambiguity
        when the grid sorts by id; grid order when no score has values)."""
        if not self.project.is_open:
            return None
        n = len(self.project)
        candidates = np.asarray(self._visible(), dtype=bool).copy() if n else np.zeros(0, bool)
        if len(candidates) != n:
            candidates = np.ones(n, dtype=bool)
        reviewed = self.project.reviewed_ids()
        if reviewed:
            candidates &= ~self.project.table["sample_id"].isin(reviewed).to_numpy()
        if exclude is not None and 0 <= exclude < n:
            candidates[exclude] = False
        key = self._sort_key()
        row = self.project.most_ambiguous("ambiguity" if key == "sample_id" else key, candidates)
        if row is not None:
            return row
        for r in self._order():
            if candidates[int(r)]:
                return int(r)
        return None

    def _step(self, delta: int) -> None:
        order = np.asarray(self._order(), dtype=np.int64)
        if len(order) == 0:
            return
        row = self._current()
        where = np.flatnonzero(order == row) if row is not None else np.empty(0)
        if len(where) == 0:
            target = order[0] if delta > 0 else order[-1]
        else:
            target = order[int(np.clip(where[0] + delta, 0, len(order) - 1))]
        self._set_current(int(target))

    @Slot()
    def next_sample(self) -> None:
        self._step(+1)

    @Slot()
    def previous_sample(self) -> None:
        self._step(-1)

    # -- undo / redo ---------------------------------------------------------------------
    @Slot()
    def undo(self) -> None:
        if self.project.undo():
            self.statusMessage.emit("Undone.")
        else:
            self.statusMessage.emit("Nothing to undo.")
        self.update_enabled()

    @Slot()
    def redo(self) -> None:
        if self.project.redo():
            self.statusMessage.emit("Redone.")
        else:
            self.statusMessage.emit("Nothing to redo.")
        self.update_enabled()
