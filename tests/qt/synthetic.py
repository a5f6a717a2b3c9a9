"""Synthetic result tables for the view tests (no training needed)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from PySide6.QtCore import QPoint, QRect
from PySide6.QtGui import QColor, QImage, QPixmap

from uldl_studio.core.classes import FERPLUS_CLASSES

CLASSES = list(FERPLUS_CLASSES)


def grid_table(side: int = 20) -> pd.DataFrame:
    """side×side points on a 0.1 grid in [-0.95, 0.95]²; λ and labels deterministic."""
    coords = np.linspace(-0.95, 0.95, side)
    vv, aa = np.meshgrid(coords, coords)
    n = side * side
    rng = np.random.default_rng(1)
    m = len(CLASSES)
    table = pd.DataFrame({
        "sample_id": [f"img{i:04d}" for i in range(n)],
        "path": [f"/nowhere/img{i:04d}.png" for i in range(n)],
        "split": "train",
        "label": np.arange(n) % m,
        "valence": vv.ravel(),
        "arousal": aa.ravel(),
        "lambda": np.linspace(0, 1, n),
        "x2d": rng.normal(size=n),
        "y2d": rng.normal(size=n),
    })
    d = rng.dirichlet(np.ones(m), n)
    p = rng.dirichlet(np.ones(m), n)
    for j, c in enumerate(CLASSES):
        table[f"d_{c}"] = d[:, j]
        table[f"p_{c}"] = p[:, j]
    table.attrs["classes"] = CLASSES
    return table


def thumb(row: int, size: int = 48, saturation: int = 180, value: int = 220) -> QPixmap:
    """A stand-in thumbnail: a solid tile whose hue encodes the row."""
    pm = QPixmap(size, size)
    pm.fill(QColor.fromHsv((row * 47) % 360, saturation, value))
    return pm


def colours_in(widget, step: int = 1) -> set[tuple[int, int, int]]:
    """The RGB colours painted in ``widget`` (what a user sees), from a real grab."""
    return image_colours(widget.grab().toImage(), step=step)


def image_colours(image: QImage, rect: QRect | None = None, step: int = 1) -> set[tuple[int, int, int]]:
    """The RGB colours of ``image`` (a grab, or a picture read back from its file), in ``rect``
    (the whole image when None) every ``step`` pixels."""
    rect = image.rect() if rect is None else rect.intersected(image.rect())
    found = set()
    for y in range(rect.top(), rect.bottom() + 1, step):
        for x in range(rect.left(), rect.right() + 1, step):
            c = image.pixelColor(x, y)
            found.add((c.red(), c.green(), c.blue()))
    return found


def rect_in(widget, window) -> QRect:
    """Where ``widget`` lies in a picture of ``window`` (one of its ancestors)."""
    return QRect(widget.mapTo(window, QPoint(0, 0)), widget.size())


def open_demo(qtbot, win, n: int = 300) -> None:
    """Open the ``n``-sample demo in a main window and wait until it is shown."""
    with qtbot.waitSignal(win.sessionLoaded, timeout=60_000):
        win.open_demo(n=n)
    assert len(win.session) == n


def predict_in_window(qtbot, win, folder, out) -> object:
    """Predict ``folder`` with the window's run through the Predict dialog, as the annotator
    does, and wait for it; returns the dialog (its ``finishedWith`` said "done")."""
    dialog = win.show_predict_dialog()
    qtbot.addWidget(dialog)
    dialog.data_edit.setText(str(folder))
    dialog.out_edit.setText(str(out))
    with qtbot.waitSignal(dialog.finishedWith, timeout=60_000) as blocker:
        dialog.start()
        assert dialog.progress is not None and dialog.progress.isVisible()
    assert blocker.args[0] == "done", blocker.args
    return dialog
