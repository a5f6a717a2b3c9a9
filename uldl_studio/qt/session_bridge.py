"""Qt's view of the core session: its psygnal events re-emitted as Qt signals.

Widgets connect to these Qt signals rather than to the psygnal events directly, so a
connection ends with the widget (Qt disconnects destroyed receivers; a psygnal callback into
a deleted widget would raise).  All state stays in ``bridge.session``
(``uldl_studio.core.review.session.Session``): widgets read it and change it there
(``bridge.session.select(rows, mode)``...).
"""
from __future__ import annotations

import psygnal
from PySide6.QtCore import QObject, Signal

from uldl_studio.core.review.session import Session, SessionEvents


def qt_name(event: str) -> str:
    """The Qt signal of a session event: ``table_reset`` → ``tableReset``."""
    first, *rest = event.split("_")
    return first + "".join(word.title() for word in rest)


def _session_signals() -> type:
    """A QObject class with one Qt signal per event of :class:`SessionEvents`, with the same
    arguments (Qt signals must exist when their class is made, so it is made from the events)."""
    events = {name: event for name, event in vars(SessionEvents).items() if isinstance(event, psygnal.Signal)}
    signals = {qt_name(name): Signal(*[p.annotation for p in event.signature.parameters.values()])
               for name, event in events.items()}
    return type(QObject)("SessionSignals", (QObject,), {"__module__": __name__, "EVENTS": tuple(events), **signals})


def _disconnect(relays: list) -> None:
    for event, relay in relays:
        event.disconnect(relay, missing_ok=True)
    relays.clear()


class SessionBridge(_session_signals()):
    """One Qt signal per session event (``SessionEvents``), named by :func:`qt_name`:
    ``tableReset()``, ``editsChanged(rows)``, ``currentChanged(int)``..."""

    def __init__(self, parent: QObject | None = None, session: Session | None = None) -> None:
        super().__init__(parent)
        self.session = session if session is not None else Session()
        relays = []
        for name in self.EVENTS:
            event = getattr(self.session.events, name)
            relay = (lambda sig: lambda *args: sig.emit(*args))(getattr(self, qt_name(name)))
            event.connect(relay)
            relays.append((event, relay))
        # not a method of self: Qt calls no slot of an object that is being destroyed
        self.destroyed.connect(lambda *_args: _disconnect(relays))
