"""Qt's view of the core session: its psygnal events re-emitted as Qt signals.

Widgets connect to these Qt signals rather than to the psygnal events directly, so a
connection ends with the widget (Qt disconnects destroyed receivers; a psygnal callback into
a deleted widget would raise).  All state stays in ``bridge.session``
(``uldl_studio.core.review.session.Session``); the bridge adds only the undo stack that makes
selection gestures undoable.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from uldl_studio.core.review.session import Session, as_rows, combine


class _SelectCommand(QUndoCommand):
    def __init__(self, session: Session, before: np.ndarray, after: np.ndarray, text: str):
        super().__init__(text)
        self._session, self._before, self._after = session, before, after

    def redo(self) -> None:
        self._session.select(self._after)

    def undo(self) -> None:
        self._session.select(self._before)


class SessionBridge(QObject):
    """Signals: ``tableReset()``, ``resultsChanged()``, ``editsChanged(rows)``, ``runChanged()``,
    ``filterChanged()``, ``selectionChanged()``, ``currentChanged(int)`` — one per session event."""

    tableReset = Signal()
    resultsChanged = Signal()
    editsChanged = Signal(object)
    runChanged = Signal()
    filterChanged = Signal()
    selectionChanged = Signal()
    currentChanged = Signal(int)
    predictionsChanged = Signal()
    predictionShown = Signal(int)
    queueChanged = Signal()

    def __init__(self, parent: QObject | None = None, session: Session | None = None,
                 undo_stack: QUndoStack | None = None) -> None:
        super().__init__(parent)
        self.session = session if session is not None else Session()
        self.undo_stack = undo_stack
        events = self.session.events
        pairs = ((events.table_reset, self.tableReset), (events.results_changed, self.resultsChanged),
                 (events.edits_changed, self.editsChanged), (events.run_changed, self.runChanged),
                 (events.filter_changed, self.filterChanged),
                 (events.selection_changed, self.selectionChanged),
                 (events.current_changed, self.currentChanged),
                 (events.predictions_changed, self.predictionsChanged),
                 (events.prediction_shown, self.predictionShown),
                 (events.queue_changed, self.queueChanged))
        self._relays = []
        for event, signal in pairs:
            relay = (lambda sig: lambda *args: sig.emit(*args))(signal)
            event.connect(relay)
            self._relays.append((event, relay))
        self.destroyed.connect(self._disconnect_events)

    def _disconnect_events(self, *_args) -> None:
        for event, relay in self._relays:
            event.disconnect(relay, missing_ok=True)
        self._relays = []

    # -- selection with undo --------------------------------------------------------------
    @property
    def selected(self) -> np.ndarray:
        return self.session.selection

    @property
    def current(self) -> int:
        return self.session.current

    def select(self, rows, mode: str = "replace", *, undoable: bool = True, text: str | None = None) -> bool:
        """``session.select`` through the undo stack when there is one; True when it changed."""
        session = self.session
        new = combine(session.selection, as_rows(rows), mode)
        if self.undo_stack is None or not undoable:
            return session.select(new)
        if np.array_equal(new, session.selection):
            return False
        self.undo_stack.push(_SelectCommand(session, session.selection, new, text or f"Select {new.size:,} samples"))
        return True

    def clear_selection(self, *, undoable: bool = True) -> bool:
        return self.select(None, "replace", undoable=undoable, text="Clear selection")
