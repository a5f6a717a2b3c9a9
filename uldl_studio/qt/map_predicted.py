"""Another collection's predicted samples on the map (``session.predictions``): triangles in
their predicted class's colour, the one the inspector shows ringed."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QBrush, QColor
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox

from uldl_studio.qt import palette

#: the prediction columns that place a predicted sample in each map (UMAP has none)
PREDICTED_COLUMNS = {"va": ("valence", "arousal"), "features": ("x2d", "y2d")}


class PredictedMarks:
    """The predicted samples' items in ``plot_item`` and the "predicted" toggle's state.

    ``rows`` holds the ``session.predictions`` row of each drawn triangle.
    """

    def __init__(self, plot_item: pg.PlotItem, toggle: QCheckBox, toggle_action, point_size: float) -> None:
        self.toggle = toggle
        self.toggle_action = toggle_action
        self.marks = pg.ScatterPlotItem(
            size=point_size + 4, symbol="t", pen=pg.mkPen(palette.FOREGROUND, width=1),
            brush=QBrush(QColor(*palette.PREDICTED_RGB)), pxMode=True)
        self.marks.setZValue(2.5)
        self.current = pg.ScatterPlotItem(
            size=point_size + 16, symbol="t", pen=pg.mkPen(palette.CURRENT_RGB, width=2.5),
            brush=QBrush(Qt.BrushStyle.NoBrush), pxMode=True)
        self.current.setZValue(4.5)
        plot_item.addItem(self.current)
        plot_item.addItem(self.marks)
        self.rows = np.empty(0, dtype=np.int64)

    def update(self, session, coord_mode: str) -> None:
        """Draw ``session.predictions`` in map ``coord_mode``. The UMAP map has no place for
        samples it was not fitted on: the toggle says so."""
        predictions = session.predictions
        self.toggle_action.setVisible(predictions is not None)
        cols = PREDICTED_COLUMNS.get(coord_mode)
        on_umap = coord_mode == "umap"
        self.toggle.setEnabled(not on_umap)
        self.toggle.setText("predicted (not on the UMAP map)" if on_umap else "predicted")
        self.toggle.setToolTip(
            "UMAP places only the samples it was fitted on; switch the map to valence-arousal or "
            "the feature map to see the predicted samples" if on_umap else
            "show the samples predicted for another collection (triangles in their predicted class's colour)")
        self.current.setData([], [])
        if (predictions is None or cols is None or not self.toggle.isChecked()
                or any(c not in predictions for c in cols)):
            self.marks.setData([], [])
            self.rows = np.empty(0, dtype=np.int64)
            return
        xy = predictions[list(cols)].to_numpy(np.float64)
        placed = np.isfinite(xy).all(axis=1)
        self.rows = np.flatnonzero(placed)
        classes = session.classes
        p_cols = [f"p_{c}" for c in classes]
        if classes and all(c in predictions for c in p_cols):
            predicted = np.nan_to_num(predictions[p_cols].to_numpy(np.float64)).argmax(axis=1)
            brushes = palette.class_brushes(classes)
            self.marks.setData(xy[placed, 0], xy[placed, 1],
                               brush=[brushes[k] for k in predicted[placed]])
        else:
            self.marks.setData(xy[placed, 0], xy[placed, 1])
        shown = session.shown_prediction
        if 0 <= shown < len(xy) and placed[shown]:
            self.current.setData([xy[shown, 0]], [xy[shown, 1]])

    def at(self, x: float, y: float, pixel_size: tuple[float, float], radius_px: float = 8.0) -> int:
        """The drawn predicted sample nearest to the data point (x, y) within ``radius_px``,
        or -1 (a row of ``session.predictions``)."""
        data = self.marks.data
        if not len(data):
            return -1
        pw, ph = pixel_size
        d = np.hypot((data["x"] - x) / (pw or 1e-9), (data["y"] - y) / (ph or 1e-9))
        best = int(np.argmin(d))
        return int(self.rows[best]) if d[best] <= radius_px else -1
