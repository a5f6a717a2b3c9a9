"""Keyboard relabelling and the undo bridge to ``core.edits.EditJournal``.

How the keys behave (each acts on what the inspector shows, and nothing else):

- Number keys 1..m relabel the *current* sample (the inspector's) and stay on it.
- Ctrl+1..m relabel the whole *selection*, and "Relabel selection…" (Ctrl+R) asks for the
  class; either is one journal entry, so one Ctrl+Z undoes it.
- Enter accepts the current label: it is journalled as a relabel to the same label, which
  marks the sample *reviewed* (it survives restarts), and moves to the next unreviewed sample
  of the review queue (``Session.queue``: the grid's order, within the selection and filter,
  training rows by default). A sample already reviewed with that label is not journalled twice.
- ←/→ move to the previous/next sample of the review queue.
- Space toggles "unsure" on the current sample; Shift+Space marks the selection unsure (or
  clears it when all of it already is).
- Ctrl+Z / Ctrl+Shift+Z (or Ctrl+Y) undo/redo through the journal; the status bar says what.

A predicted sample of another collection (a row of source ``prediction``) has no dataset
label: the keys that edit do nothing while one is current, and the status bar says why; the
selection's edits leave predicted rows out (``Session.dataset_rows``).

Each edit is appended and fsynced by the journal before the session emits ``editsChanged``,
i.e. before any view shows it; its confirmation names the sample and the change. The
controller holds no state of its own except its actions.
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

    The current sample, the selection, the filter and the review queue are the session's.
    """

    statusMessage = Signal(str)

    def __init__(self, bridge, window: QWidget) -> None:
        super().__init__(window)
        self.bridge = bridge
        self.session = session = bridge.session
        self.window = window
        self._current = lambda: None if session.current < 0 else session.current
        self._set_current = session.set_current
        self._selection = lambda: session.dataset_rows(session.selection)
        self.ask_class: Callable[[list[str]], int | None] = self._ask_class_dialog
        # whether row's given label is hidden from the annotator (blind mode): Enter then has
        # nothing shown to confirm
        self.label_hidden: Callable[[int], bool] = lambda row: False

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
        self.accept_action = action("&Accept label, next in queue", ["Return", "Enter"], self.accept_and_next,
                                    "confirm the label (reviewed) and go to the next unreviewed sample of the queue")
        self.next_action = action("&Next sample", "Right", self.next_sample, "the next sample of the review queue")
        self.previous_action = action("&Previous sample", "Left", self.previous_sample,
                                      "the previous sample of the review queue")
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
        classes = self.session.classes
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
        journal = self.session.journal
        self.undo_action.setEnabled(journal is not None and journal.can_undo)
        self.redo_action.setEnabled(journal is not None and journal.can_redo)

    def _editable(self) -> bool:
        if not self.session.is_open:
            return False
        if self._shows_predicted():
            sid = self.session.table["sample_id"].iat[self.session.current]
            self.statusMessage.emit(f"{sid} is a predicted sample of another collection: it has no label in "
                                    "this dataset, so nothing was changed. Click a dataset sample to edit.")
            return False
        if not self.session.can_edit:
            self.statusMessage.emit("Edits are saved in the run directory: train (or open a run) first.")
            return False
        return True

    def _shows_predicted(self) -> bool:
        """Whether the current sample is a predicted row (not the dataset's own)."""
        row = self._current()
        return row is not None and not self.session.is_dataset_row(row)

    def _no_selection(self) -> None:
        only_predicted = self.session.selection.size > 0
        self.statusMessage.emit("The selection holds only predicted samples of another collection: nothing "
                                "was changed." if only_predicted else "Select samples first (box or lasso in the map).")

    # -- relabel -------------------------------------------------------------------------
    def relabel_current(self, class_index: int) -> None:
        if not self._editable():
            return
        row = self._current()
        if row is None:
            self.statusMessage.emit("No sample is shown: click a point or a tile first.")
            return
        if class_index >= len(self.session.classes):
            return
        classes = self.session.classes
        before = int(self.session.table["label"].iat[row])
        self.session.relabel([row], [class_index])
        sid = self.session.table["sample_id"].iat[row]
        change = (f"{classes[before]} → {classes[class_index]}" if before != class_index
                  else f"{classes[class_index]} kept")
        self.statusMessage.emit(f"{sid}: {change} (saved; Ctrl+Z undoes)")

    def relabel_selection(self, class_index: int) -> None:
        rows = np.asarray(self._selection(), dtype=np.int64)
        if len(rows) == 0:
            self._no_selection()
            return
        if not self._editable() or class_index >= len(self.session.classes):
            return
        self.session.relabel(rows, np.full(len(rows), class_index))
        self.statusMessage.emit(f"{len(rows)} samples → {self.session.classes[class_index]} "
                                "(one edit; Ctrl+Z undoes)")

    @Slot()
    def relabel_selection_dialog(self) -> None:
        if len(self._selection()) == 0:
            self._no_selection()
            return
        if not self._editable():
            return
        k = self.ask_class(self.session.classes)
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
        if not self._editable():
            return
        row = self._current()
        if row is None:
            self.statusMessage.emit("No sample is shown: click a point or a tile first.")
            return
        now = not bool(self.session.flag("unsure")[row])
        self.session.mark_unsure([row], now)
        self.statusMessage.emit(f"{self.session.table['sample_id'].iat[row]}: "
                                f"{'marked unsure' if now else 'unsure cleared'}")

    @Slot()
    def toggle_unsure_selection(self) -> None:
        rows = np.asarray(self._selection(), dtype=np.int64)
        if len(rows) == 0 or not self._editable():
            return
        now = not bool(self.session.flag("unsure")[rows].all())
        self.session.mark_unsure(rows, now)
        self.statusMessage.emit(f"{len(rows)} samples {'marked unsure' if now else 'no longer unsure'}")

    # -- accept and navigate ---------------------------------------------------------------
    @Slot()
    def accept_and_next(self) -> None:
        if self._shows_predicted():
            self._editable()  # says why nothing happens
            return
        row = self._current()
        if row is not None and self.label_hidden(row):
            self.statusMessage.emit("Blind mode: the given label is hidden, so Enter confirms nothing; "
                                    "vote with a number key")
            return
        if row is not None and self._editable():
            sid = self.session.table["sample_id"].iat[row]
            label = int(self.session.table["label"].iat[row])
            if self.session.journal.labels().get(sid) != label:
                self.session.relabel([row], [label])
                self.statusMessage.emit(f"{sid}: {self.session.classes[label]} confirmed (saved; Ctrl+Z undoes)")
        target = self.session.next_unreviewed(row)
        if target is None:
            self.statusMessage.emit("Every sample of this queue has been reviewed.")
            return
        self._set_current(int(target))

    def _step(self, delta: int) -> None:
        target = self.session.queue_neighbour(self._current(), delta)
        if target is not None:
            self._set_current(target)

    @Slot()
    def next_sample(self) -> None:
        self._step(+1)

    @Slot()
    def previous_sample(self) -> None:
        self._step(-1)

    # -- undo / redo ---------------------------------------------------------------------
    @Slot()
    def undo(self) -> None:
        done = self.session.undo()
        self.statusMessage.emit(f"Undone: {done}" if done else "Nothing to undo.")
        self.update_enabled()

    @Slot()
    def redo(self) -> None:
        done = self.session.redo()
        self.statusMessage.emit(f"Redone: {done}" if done else "Nothing to redo.")
        self.update_enabled()
