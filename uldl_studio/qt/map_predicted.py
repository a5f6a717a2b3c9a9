"""The predicted rows of the session's table (``source`` = prediction) on the map: triangles in
the colour mode's colours instead of dots, and the "predicted" toggle that hides them."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QCheckBox

from uldl_studio.qt import palette


class PredictedMarks:
    """The triangles' item in ``plot_item`` and the "predicted" toggle's state."""

    def __init__(self, plot_item: pg.PlotItem, toggle: QCheckBox, toggle_action, point_size: float) -> None:
        self.toggle = toggle
        self.toggle_action = toggle_action
        self.marks = pg.ScatterPlotItem(
            size=point_size + 4, symbol="t", pen=pg.mkPen(palette.FOREGROUND, width=1),
            brush=QBrush(QColor(*palette.PREDICTED_RGB)), pxMode=True)
        self.marks.setZValue(2.5)
        plot_item.addItem(self.marks)

    @property
    def shown(self) -> bool:
        """Whether the user wants the predicted rows on the map."""
        return self.toggle.isChecked()

    def sync_toggle(self, has_predictions: bool, coord_mode: str) -> None:
        """The toggle shows while the table has predicted rows. The UMAP map has no place for
        samples it was not fitted on: the toggle says so."""
        self.toggle_action.setVisible(has_predictions)
        on_umap = coord_mode == "umap"
        self.toggle.setEnabled(not on_umap)
        self.toggle.setText("predicted (not on the UMAP map)" if on_umap else "predicted")
        self.toggle.setToolTip(
            "UMAP places only the samples it was fitted on; switch the map to valence-arousal or "
            "the feature map to see the predicted samples" if on_umap else
            "show the samples predicted for another collection (triangles in the colour mode's colours)")

    def draw(self, xy: np.ndarray, brushes: list[QBrush]) -> None:
        """Triangles at ``xy`` (k, 2), one brush each."""
        if len(xy):
            self.marks.setData(xy[:, 0], xy[:, 1], brush=brushes)
        else:
            self.marks.setData([], [])
