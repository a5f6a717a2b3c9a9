"""Small marks over the map's points: the current sample, the edited samples and, for small
selections, a ring per selected point."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush

from uldl_studio.qt import palette
from uldl_studio.qt.scatter_renderer import PaletteScatterItem


class MapMarks:
    """The mark items, added to ``plot_item`` above the points (z 1–4)."""

    def __init__(self, plot_item: pg.PlotItem, point_size: float) -> None:
        no_brush = QBrush(Qt.BrushStyle.NoBrush)
        self.edited = PaletteScatterItem([no_brush], size=point_size + 5, symbol="d",
                                         pen=pg.mkPen(palette.EDITED_RGB, width=1.3))
        self.edited.setZValue(1)
        self.selection = PaletteScatterItem([no_brush], size=point_size + 4,
                                            pen=pg.mkPen(palette.HIGHLIGHT_RGB, width=1.6))
        self.selection.setZValue(2)
        self.current = pg.ScatterPlotItem(
            size=point_size + 14, pen=pg.mkPen(palette.CURRENT_RGB, width=2.5),
            brush=no_brush, symbol="o", pxMode=True)
        self.current_inner = pg.ScatterPlotItem(
            size=point_size + 9, pen=pg.mkPen("w", width=1.5), brush=no_brush, symbol="o", pxMode=True)
        self.current_inner.setZValue(3)
        self.current.setZValue(4)
        for item in (self.edited, self.selection, self.current_inner, self.current):
            plot_item.addItem(item)

    def set_point_size(self, px: float) -> None:
        self.edited.setSize(px + 5)
        self.selection.setSize(px + 4)
        self.current.setSize(px + 14)
        self.current_inner.setSize(px + 9)

    def show_edited(self, xy: np.ndarray) -> None:
        self.edited.set_points(xy[:, 0], xy[:, 1])

    def show_selection(self, xy: np.ndarray) -> None:
        if xy.shape[0] or len(self.selection.data):
            self.selection.set_points(xy[:, 0], xy[:, 1])

    def show_current(self, xy: np.ndarray) -> None:
        self.current.setData(xy[:, 0], xy[:, 1])
        self.current_inner.setData(xy[:, 0], xy[:, 1])


def shown_subset(shown_rows: np.ndarray, shown_xy: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The rows among ``rows`` that are drawn (in sorted ``shown_rows``), as (k, 2) coordinates."""
    if rows.size == 0 or shown_rows.size == 0:
        return np.empty((0, 2))
    pos = np.searchsorted(shown_rows, rows)
    pos = np.minimum(pos, shown_rows.size - 1)
    hit = shown_rows[pos] == rows
    return shown_xy[pos[hit]]
