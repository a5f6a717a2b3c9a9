"""SessionBridge: one Qt signal per session event, made from the session's own list of events."""
from __future__ import annotations

import numpy as np
import psygnal
import pytest
import shiboken6

from uldl_studio.core.review.session import SessionEvents
from uldl_studio.qt.session_bridge import SessionBridge, qt_name

pytestmark = pytest.mark.timeout(60)


def test_every_session_event_arrives_as_its_qt_signal(qtbot):
    names = [n for n, e in vars(SessionEvents).items() if isinstance(e, psygnal.Signal)]
    assert "table_reset" in names and "current_changed" in names and len(names) >= 10
    bridge = SessionBridge()
    received = []
    for name in names:
        getattr(bridge, qt_name(name)).connect(lambda *args, n=name: received.append((n, *args)))
    sent = []
    for k, name in enumerate(names):
        event = getattr(bridge.session.events, name)
        args = [np.array([k])] if name == "edits_changed" else [k] * len(event.signature.parameters)
        event.emit(*args)
        sent.append((name, *args))
    assert [r[0] for r in received] == names
    assert all(r[1:] == s[1:] or np.array_equal(r[1], s[1]) for r, s in zip(received, sent))
    assert qt_name("prediction_shown") == "predictionShown"


def test_a_deleted_bridge_no_longer_listens(qtbot):
    bridge = SessionBridge()
    session = bridge.session
    received = []
    bridge.currentChanged.connect(received.append)
    session.events.current_changed.emit(2)
    assert received == [2]
    bridge.deleteLater()
    qtbot.waitUntil(lambda: not shiboken6.isValid(bridge), timeout=5_000)
    session.events.current_changed.emit(3)                 # no relay into a deleted object
    assert received == [2]
