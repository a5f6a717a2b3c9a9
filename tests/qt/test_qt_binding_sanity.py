"""Guard against a Qt binding that corrupts interpreter singletons.

PySide6 6.12.0 on Python 3.11 dropped one reference to None for every void call
(``setText``, ``setAlpha``…), so a long session aborted with ``none_dealloc``.
pyproject.toml pins below it; this test fails if a broken build sneaks back in.
"""
import sys

import pytest
from PySide6 import QtGui, QtWidgets

pytestmark = pytest.mark.timeout(30)


def test_void_calls_keep_none_alive(qapp):
    label = QtWidgets.QLabel()
    colour = QtGui.QColor(10, 20, 30)
    before = sys.getrefcount(None)
    for _ in range(2000):
        label.setText("x")
        colour.setAlpha(7)
        label.setVisible(False)
    assert sys.getrefcount(None) - before > -100, "the Qt binding leaks references to None"
