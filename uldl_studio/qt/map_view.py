"""The map: every sample as a point (valence-arousal, UMAP or feature map), coloured by the
given or predicted label or by any registered score (``core.scores``); box/lasso selection
into the session's selection.

The view holds no sample state: the table, the filter, the selection and the current sample
are the session's (``core.session.Session``, reached through the ``SessionBridge``); the
view keeps only what it derives for drawing.  Speed (bench/gui_scale.py, 300k points): all
points live in ONE ``PaletteScatterItem`` (``qt/scatter_renderer.py``).  A selection is shown by fading the other points
(a faded twin of every palette brush) and drawing the selected ones on top — only the codes
change, whatever the selection's size; small selections also get a ring per point.  The
current sample and edited marks are separate small items on top.  Points map back to table
rows through index arrays (``_shown_rows``), not per-point objects.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QBrush, QColor, QPainterPath, QPen, QPixmap
from PySide6.QtWidgets import (
    QButtonGroup, QCheckBox, QComboBox, QFrame, QGraphicsPathItem, QGraphicsRectItem, QHBoxLayout, QLabel,
    QPushButton, QSizePolicy, QSpinBox, QToolBar, QToolButton, QVBoxLayout, QWidget,
)

from uldl_studio.core.labels import scores
from uldl_studio.core.runs.evaluate import class_accuracy
from uldl_studio.core.labels.label_issues import HIGHLIGHT
from uldl_studio.core.review.selection import BoxSelection, PolygonSelection, Selection
from uldl_studio.qt import palette
from uldl_studio.qt.scatter_renderer import PaletteScatterItem
from uldl_studio.qt.session_bridge import SessionBridge

CATEGORICAL_MODES = {"given": "given label", "predicted": "predicted label"}


def color_modes() -> list[str]:
    """The label colourings, then every registered score."""
    return [*CATEGORICAL_MODES, *scores.names()]


def color_mode_label(mode: str) -> str:
    return CATEGORICAL_MODES.get(mode) or scores.get(mode).label

COORDINATE_MODES = ("va", "umap", "features")
COORDINATE_LABELS = {"va": "valence-arousal", "umap": "UMAP of features", "features": "feature map"}
AXIS_LABELS = {"va": ("valence", "arousal"), "umap": ("UMAP 1", "UMAP 2"),
               "features": ("feature map x", "feature map y")}
INTERACTION_MODES = ("select", "lasso", "pan")
#: how a score's values map to colours: its data's 1st–99th percentile, the score's whole
#: possible range, or each value's quantile (rank) among the rows
SCALES = {"data": "value (1–99 % of the data)", "full": "value (the score's full range)",
          "quantile": "quantile"}
#: the score drawn highlighted: points at or above ``HIGHLIGHT`` strong, the rest muted
HIGHLIGHT_SCORE = "label_wrong_prob"

class _MapViewBox(pg.ViewBox):
    """Left drag = box/lasso gesture (or pan in pan mode), right/middle drag = pan."""

    def __init__(self, owner: "MapView") -> None:
        super().__init__(defaultPadding=0.03, enableMenu=True)
        self._owner = owner
        self.interaction = "select"
        self.setMouseMode(pg.ViewBox.PanMode)

    def mouseDragEvent(self, ev, axis=None):  # noqa: N802
        if axis is None and ev.button() == Qt.MouseButton.LeftButton and self.interaction != "pan":
            ev.accept()
            self._owner._gesture_drag(ev)
            return
        if axis is None and ev.button() == Qt.MouseButton.RightButton:
            ev.accept()
            dif = (ev.pos() - ev.lastPos()) * -1
            tr = pg.functions.invertQTransform(self.childGroup.transform())
            delta = tr.map(dif) - tr.map(QPointF(0, 0))
            self._resetTarget()
            self.translateBy(x=delta.x(), y=delta.y())
            self.sigRangeChangedManually.emit(self.state["mouseEnabled"])
            return
        super().mouseDragEvent(ev, axis)

    def mouseClickEvent(self, ev):  # noqa: N802
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self._owner._gesture_click(ev)
            return
        super().mouseClickEvent(ev)


class _HoverCard(QFrame):
    """Tooltip-like window with the hovered sample's thumbnail and a line of text."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent, Qt.WindowType.ToolTip)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setFrameShape(QFrame.Shape.Box)
        self.setStyleSheet("QFrame { background: #ffffe8; } QLabel { color: #222; }")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(2)
        self.image = QLabel(self)
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text = QLabel(self)
        layout.addWidget(self.image)
        layout.addWidget(self.text)

    def show_row(self, pixmap: QPixmap | None, text: str, global_pos) -> None:
        if pixmap is not None and not pixmap.isNull():
            self.image.setPixmap(pixmap.scaled(96, 96, Qt.AspectRatioMode.KeepAspectRatio,
                                               Qt.TransformationMode.SmoothTransformation))
            self.image.show()
        else:
            self.image.clear()
            self.image.hide()
        self.text.setText(text)
        self.adjustSize()
        self.move(global_pos)
        self.show()
        self.raise_()


# ---------------------------------------------------------------------------------------
class MapView(QWidget):
    """Scatter map of the session's samples.

    Args:
        bridge: the session's Qt bridge (a new session is created when None).
        parent: Qt parent.
        show_controls: show the built-in bar (interaction mode, coordinates, colour, size).

    Attributes the owner sets:
        thumbnail_provider: ``callable(row) -> QPixmap | None`` for the hover card.
        hover_text_provider: ``callable(row) -> str`` (default: id, label, λ).

    Signals:
        colorModeChanged(str), coordinatesChanged(str)
        coordinatesRequested(str): the user asked for a map with no coordinates yet (e.g.
            "umap"): compute it off the GUI thread and call ``set_coordinates(mode, xy)``.
        hovered(int): row under the mouse (-1 when none), throttled to 50 ms.
        predictedClicked(int): a predicted sample (a row of ``session.predictions``) was clicked.
        gestureSelected(object): the ``core.selection.Selection`` a box/lasso gesture made
            (in table columns), after it was applied to the selection model.
    """

    #: selections up to this size also get a ring per point (larger ones: colour only)
    RING_LIMIT = 5000

    colorModeChanged = Signal(str)
    coordinatesChanged = Signal(str)
    coordinatesRequested = Signal(str)
    hovered = Signal(int)
    predictedClicked = Signal(int)
    gestureSelected = Signal(object)

    def __init__(self, bridge: SessionBridge | None = None, parent: QWidget | None = None,
                 *, show_controls: bool = True) -> None:
        super().__init__(parent)
        self.bridge = bridge if bridge is not None else SessionBridge(self)
        self.session = self.bridge.session
        self.thumbnail_provider: Callable[[int], QPixmap | None] | None = None
        self.hover_text_provider: Callable[[int], str] | None = None

        self._classes: list[str] = []
        self._coord_mode = "va"
        self._provided_xy: dict[str, np.ndarray] = {}
        self._xy = np.empty((0, 2))
        self._color_mode = "given"
        self._scale = "data"
        self._highlight: tuple[int, int, float] | None = None  # (strong, shown, mean value of strong)
        self._point_size = 5.0
        self._shown_rows = np.empty(0, dtype=np.int64)
        self._shown_xy = np.empty((0, 2))
        self._codes = np.empty(0, dtype=np.intp)  # per table row, current colour mode
        self._tree = None
        self._by_y: np.ndarray | None = None  # shown points sorted by y (lasso tests)
        self._shuffle: np.ndarray | None = None
        self._draw_order = np.empty(0, dtype=np.intp)
        self._draw_codes = np.empty(0, dtype=np.intp)
        self._n_brushes = 1
        self._dimmed = False
        self._palettes: dict[tuple, tuple[list[QBrush], list[QBrush]]] = {}
        self._legend_key: tuple | None = None
        self._missing_coordinates = 0
        self._gesture_points: list[QPointF] = []
        self._hover_scene_pos: QPointF | None = None
        self._hover_row = -1
        self.last_selection: Selection | None = None

        self._build_ui(show_controls)
        bridge = self.bridge
        bridge.selectionChanged.connect(self._update_selection_marks)
        bridge.currentChanged.connect(self._update_current_mark)
        bridge.tableReset.connect(self._on_table_reset)
        bridge.resultsChanged.connect(self._on_values_changed)
        bridge.editsChanged.connect(self._on_edits)
        bridge.filterChanged.connect(self._on_filter_changed)
        bridge.predictionsChanged.connect(self._update_predicted_marks)
        bridge.predictionShown.connect(self._update_predicted_marks)

    # -- construction ------------------------------------------------------------------
    def _build_ui(self, show_controls: bool) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)

        # A tool bar, not a row layout: in a narrow window what does not fit goes behind its »
        # button instead of forcing the window (and crushing the docks) wider.
        self.controls = bar = QToolBar(self)
        bar.setIconSize(QSize(16, 16))
        bar.setContentsMargins(2, 0, 2, 0)
        self._mode_buttons = QButtonGroup(self)
        for mode, text, tip in (("select", "Box", "Drag to select a box (Shift adds, Ctrl+Shift removes)"),
                                ("lasso", "Lasso", "Drag to draw a lasso (Shift adds, Ctrl+Shift removes)"),
                                ("pan", "Pan", "Drag to pan (right/middle drag always pans)")):
            button = QToolButton(self.controls)
            button.setText(text)
            button.setToolTip(tip)
            button.setCheckable(True)
            button.setProperty("mode", mode)
            self._mode_buttons.addButton(button)
            bar.addWidget(button)
            if mode == "select":
                button.setChecked(True)
        self._mode_buttons.buttonClicked.connect(
            lambda b: self.set_interaction_mode(b.property("mode")))
        self.subtract_button = QToolButton(self.controls)
        self.subtract_button.setText("Subtract")
        self.subtract_button.setCheckable(True)
        self.subtract_button.setToolTip("While down, a box or lasso removes from the selection "
                                        "(the same as Ctrl+Shift+drag)")
        bar.addWidget(self.subtract_button)
        fit = QToolButton(self.controls)
        fit.setText("Fit")
        fit.setToolTip("Show all points")
        fit.clicked.connect(self.reset_view)
        bar.addWidget(fit)
        bar.addSeparator()
        self.coord_combo = QComboBox(self.controls)
        for mode in COORDINATE_MODES:
            self.coord_combo.addItem(COORDINATE_LABELS[mode], mode)
        self.coord_combo.activated.connect(
            lambda i: self.set_coordinates(self.coord_combo.itemData(i)))
        bar.addWidget(QLabel("Map:", self.controls))
        bar.addWidget(self.coord_combo)
        self.color_combo = QComboBox(self.controls)
        # a fixed width: long score names must not widen the bar (and the window) later
        self.color_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.color_combo.setMinimumContentsLength(18)
        self._fill_color_combo()
        self.color_combo.activated.connect(
            lambda i: self.set_color_mode(self.color_combo.itemData(i)))
        bar.addWidget(QLabel("Colour:", self.controls))
        bar.addWidget(self.color_combo)
        self.scale_combo = QComboBox(self.controls)
        for key, text in SCALES.items():
            self.scale_combo.addItem(text, key)
        self.scale_combo.setToolTip("How a score's values map to colours: by value (over the data's "
                                    "1–99 % range or the score's full range) or by quantile")
        self.scale_combo.activated.connect(lambda i: self.set_scale(self.scale_combo.itemData(i)))
        self._scale_action = bar.addWidget(self.scale_combo)
        self.size_spin = QSpinBox(self.controls)
        self.size_spin.setRange(1, 30)
        self.size_spin.setValue(int(self._point_size))
        self.size_spin.setSuffix(" px")
        self.size_spin.setToolTip("Point size")
        self.size_spin.valueChanged.connect(lambda v: self.set_point_size(v))
        bar.addWidget(self.size_spin)
        self.predicted_toggle = QCheckBox("predicted", self.controls)
        self.predicted_toggle.setChecked(True)
        self.predicted_toggle.setToolTip("show the samples predicted for another collection (triangles)")
        self.predicted_toggle.toggled.connect(self._update_predicted_marks)
        self._predicted_toggle_action = bar.addWidget(self.predicted_toggle)
        self._predicted_toggle_action.setVisible(False)  # a widget in a tool bar shows through its action
        self.info_label = QLabel(self.controls)
        # the counts take the room that is left: a longer text must never widen the window
        self.info_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.info_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.info_label.setMinimumWidth(0)
        bar.addWidget(self.info_label)
        layout.addWidget(self.controls)
        self.controls.setVisible(show_controls)

        # filter banner: visible whenever a filter hides points
        self.banner = QFrame(self)
        self.banner.setObjectName("filterBanner")
        self.banner.setStyleSheet("#filterBanner { background: #fff3bf; border: 1px solid #e0b000; }"
                                  " QLabel { color: #5c4400; font-weight: bold; }")
        banner_layout = QHBoxLayout(self.banner)
        banner_layout.setContentsMargins(6, 2, 6, 2)
        self.banner_label = QLabel(self.banner)
        self.banner_label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.banner_clear = QPushButton("Clear filter", self.banner)
        self.banner_clear.clicked.connect(self.session.clear_filter)
        banner_layout.addWidget(self.banner_label)
        banner_layout.addWidget(self.banner_clear)
        self.banner.hide()
        layout.addWidget(self.banner)

        self.view_box = _MapViewBox(self)
        self.plot = pg.PlotWidget(self, viewBox=self.view_box, background=palette.BACKGROUND)
        self.plot_item = self.plot.getPlotItem()
        # no grid lines: with 300k points every repaint counts, and they cost ~5 ms a paint
        for name in ("left", "bottom"):
            axis = self.plot_item.getAxis(name)
            axis.setPen(pg.mkPen(palette.FOREGROUND))
            axis.setTextPen(pg.mkPen(palette.FOREGROUND))
        self.plot_item.hideButtons()
        layout.addWidget(self.plot, 1)

        self.points = PaletteScatterItem(size=self._point_size, pen=None)
        self.points.setZValue(0)
        self.edited_marks = PaletteScatterItem(
            [QBrush(Qt.BrushStyle.NoBrush)], size=self._point_size + 5, symbol="d",
            pen=pg.mkPen(palette.EDITED_RGB, width=1.3))
        self.edited_marks.setZValue(1)
        self.selection_marks = PaletteScatterItem(
            [QBrush(Qt.BrushStyle.NoBrush)], size=self._point_size + 4,
            pen=pg.mkPen(palette.HIGHLIGHT_RGB, width=1.6))
        self.selection_marks.setZValue(2)
        self.current_mark = pg.ScatterPlotItem(
            size=self._point_size + 14, pen=pg.mkPen(palette.CURRENT_RGB, width=2.5),
            brush=QBrush(Qt.BrushStyle.NoBrush), symbol="o", pxMode=True)
        self.current_mark_inner = pg.ScatterPlotItem(
            size=self._point_size + 9, pen=pg.mkPen("w", width=1.5),
            brush=QBrush(Qt.BrushStyle.NoBrush), symbol="o", pxMode=True)
        for z, item in enumerate((self.current_mark_inner, self.current_mark), start=3):
            item.setZValue(z)
        # another collection's predicted samples (session.predictions): their own marker
        self.predicted_marks = pg.ScatterPlotItem(
            size=self._point_size + 4, symbol="t", pen=pg.mkPen(palette.FOREGROUND, width=1),
            brush=QBrush(QColor(*palette.PREDICTED_RGB)), pxMode=True)
        self.predicted_marks.setZValue(2.5)
        self.predicted_current = pg.ScatterPlotItem(
            size=self._point_size + 16, symbol="t", pen=pg.mkPen(palette.CURRENT_RGB, width=2.5),
            brush=QBrush(Qt.BrushStyle.NoBrush), pxMode=True)
        self.predicted_current.setZValue(4.5)
        self.plot_item.addItem(self.predicted_current)
        self._predicted_rows = np.empty(0, dtype=np.int64)  # predictions row of each drawn triangle
        self.plot_item.addItem(self.predicted_marks)
        for item in (self.points, self.edited_marks, self.selection_marks,
                     self.current_mark_inner, self.current_mark):
            self.plot_item.addItem(item)

        overlay_pen = QPen(QColor(*palette.HIGHLIGHT_RGB), 1.5, Qt.PenStyle.DashLine)
        overlay_pen.setCosmetic(True)
        self._box_item = QGraphicsRectItem()
        self._box_item.setPen(overlay_pen)
        self._box_item.setBrush(QBrush(QColor(255, 40, 40, 30)))
        self._lasso_item = QGraphicsPathItem()
        self._lasso_item.setPen(overlay_pen)
        self._lasso_item.setBrush(QBrush(QColor(255, 40, 40, 30)))
        for item in (self._box_item, self._lasso_item):
            item.setZValue(10)
            item.hide()
            self.view_box.addItem(item, ignoreBounds=True)

        self.colorbar = pg.ColorBarItem(values=(0, 1), colorMap=palette.colormap("lambda"),
                                        interactive=False, width=14,
                                        pen=palette.FOREGROUND, colorMapMenu=False)
        for name in ("left", "right"):
            axis = self.colorbar.getAxis(name)
            axis.setPen(pg.mkPen(palette.FOREGROUND))
            axis.setTextPen(pg.mkPen(palette.FOREGROUND))
            axis.enableAutoSIPrefix(False)  # show λ as 0.18…0.30, not 180…300 (×0.001)
        self._colorbar_in_layout = False
        self.legend = pg.LegendItem(offset=(-8, 8), brush=QBrush(QColor(255, 255, 255, 215)),
                                    pen=pg.mkPen(200, 200, 200), labelTextColor=palette.FOREGROUND)
        self.legend.setParentItem(self.view_box)
        self._legend_samples: list = []

        self._hover_timer = QTimer(self)
        self._hover_timer.setSingleShot(True)
        self._hover_timer.setInterval(50)
        self._hover_timer.timeout.connect(self._hover_tick)
        self.plot.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.plot.viewport().installEventFilter(self)
        self._hover_card = _HoverCard(self)
        self._hover_card.hide()
        self._update_info()

    # -- public API ----------------------------------------------------------------------
    @property
    def table(self) -> pd.DataFrame | None:
        return self.session.table

    _table = table

    @property
    def color_mode(self) -> str:
        return self._color_mode

    @property
    def coordinate_mode(self) -> str:
        return self._coord_mode

    @property
    def interaction_mode(self) -> str:
        return self.view_box.interaction

    @property
    def shown_rows(self) -> np.ndarray:
        """Table rows currently drawn (finite coordinates and inside the filter)."""
        return self._shown_rows

    @Slot()
    def _on_table_reset(self) -> None:
        """A new table (other rows): forget coordinates given earlier, reset the view."""
        table = self._table
        self._classes = list(table.attrs.get("classes", [])) if table is not None else []
        self._provided_xy.clear()
        if table is not None and self._coord_mode != "va" and not self._has_coordinates(self._coord_mode):
            self._coord_mode = "va"
        if table is not None and self._coord_mode == "va" and not self._has_coordinates("va"):
            if self._has_coordinates("features"):
                self._coord_mode = "features"
        if table is not None and not self._mode_available(self._color_mode):
            self._color_mode = self.default_color_mode()
        self._fill_color_combo()
        self._sync_controls()
        self._rebuild(reset_view=True)

    @Slot()
    def _on_values_changed(self) -> None:
        """Same rows, new values (λ, d, p, scores, x2d/y2d): recolour, keep the view."""
        table = self._table
        if table is None:
            return
        self._classes = list(table.attrs.get("classes", self._classes))
        if not self._mode_available(self._color_mode):
            self._color_mode = self.default_color_mode()
        self._fill_color_combo()
        self._sync_controls()
        self._rebuild(reset_view=False)

    @Slot(object)
    def _on_edits(self, _rows) -> None:
        """Labels or marks changed: label colours, label-based scores and edit marks follow."""
        self._rebuild(reset_view=False)

    @Slot()
    def _on_filter_changed(self) -> None:
        if self._table is not None:
            self._rebuild(reset_view=False)
        else:
            self._update_banner()

    def default_color_mode(self) -> str:
        """The calibrated P(label is wrong) when the table has it (its likely issues strong, the
        rest muted), else the combined ambiguity score, else the given label."""
        for mode in (HIGHLIGHT_SCORE, "ambiguity"):
            if self._mode_available(mode):
                return mode
        return "given"

    @property
    def scale(self) -> str:
        return self._scale

    def set_scale(self, scale: str) -> None:
        """Map a score's values to colours by "data" (1–99 % range), "full" (the score's possible
        range) or "quantile"."""
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; expected one of {tuple(SCALES)}")
        if scale == self._scale:
            return
        self._scale = scale
        self._sync_controls()
        if self._table is not None and self._color_mode not in CATEGORICAL_MODES:
            self._recolor(same_points=True)

    def highlight_counts(self) -> tuple[int, int, float] | None:
        """(highlighted shown points, shown points, mean score of the highlighted) while the
        colouring highlights (P(label is wrong) ≥ 0.5 strong); None otherwise."""
        return self._highlight

    def _fill_color_combo(self) -> None:
        """One entry per label colouring and registered score, with the score's meaning."""
        combo = self.color_combo
        combo.blockSignals(True)
        combo.clear()
        for mode in color_modes():
            combo.addItem(color_mode_label(mode), mode)
            if mode in scores.names():
                combo.setItemData(combo.count() - 1, scores.get(mode).tooltip, Qt.ItemDataRole.ToolTipRole)
        combo.setCurrentIndex(max(0, combo.findData(self._color_mode)))
        combo.blockSignals(False)

    def set_coordinates(self, mode: str, xy: np.ndarray | None = None) -> None:
        """Switch the map: "va" (valence/arousal), "umap" or "features" (x2d/y2d columns).

        ``xy`` (n, 2) gives coordinates for ``mode`` (e.g. a UMAP computed by a worker); they
        are kept until the next ``set_table``.  Without ``xy`` and without coordinates for
        ``mode``, ``coordinatesRequested(mode)`` is emitted and the map stays as it is.
        """
        if mode not in COORDINATE_MODES:
            raise ValueError(f"unknown coordinate mode {mode!r}; expected one of {COORDINATE_MODES}")
        if xy is not None:
            xy = np.asarray(xy, dtype=np.float64)
            n = 0 if self._table is None else len(self._table)
            if xy.shape != (n, 2):
                raise ValueError(f"coordinates for {mode!r} must have shape ({n}, 2), got {xy.shape}")
            self._provided_xy[mode] = xy
        if self._table is not None and not self._has_coordinates(mode):
            self._sync_controls()
            self.coordinatesRequested.emit(mode)
            return
        changed = mode != self._coord_mode or xy is not None
        self._coord_mode = mode
        self._sync_controls()
        if changed:
            self._rebuild(reset_view=True)
            self.coordinatesChanged.emit(mode)

    def set_color_mode(self, mode: str) -> None:
        """Colour by "given", "predicted" or a registered score's name.

        A mode whose columns are missing (no training results yet) draws grey points.
        """
        if mode not in color_modes():
            raise ValueError(f"unknown colour mode {mode!r}; expected one of {color_modes()}")
        if mode == self._color_mode:
            return
        self._color_mode = mode
        self._sync_controls()
        self._recolor(same_points=True)
        self.colorModeChanged.emit(mode)

    def available_color_modes(self) -> list[str]:
        return [m for m in color_modes() if self._mode_available(m)]

    def available_coordinate_modes(self) -> list[str]:
        return [m for m in COORDINATE_MODES if self._has_coordinates(m)]

    def set_point_size(self, px: float) -> None:
        px = float(px)
        if px == self._point_size:
            return
        self._point_size = px
        self.points.setSize(px)
        self.edited_marks.setSize(px + 5)
        self.selection_marks.setSize(px + 4)
        self.current_mark.setSize(px + 14)
        self.current_mark_inner.setSize(px + 9)
        if self.size_spin.value() != int(round(px)):
            self.size_spin.blockSignals(True)
            self.size_spin.setValue(int(round(px)))
            self.size_spin.blockSignals(False)

    def banner_text(self) -> str:
        return self.banner_label.text() if self.banner.isVisibleTo(self) else ""

    def set_interaction_mode(self, mode: str) -> None:
        """"select" (box), "lasso" or "pan" for the left mouse button."""
        if mode not in INTERACTION_MODES:
            raise ValueError(f"unknown interaction mode {mode!r}; expected one of {INTERACTION_MODES}")
        self.view_box.interaction = mode
        for button in self._mode_buttons.buttons():
            button.setChecked(button.property("mode") == mode)

    @Slot()
    def reset_view(self) -> None:
        self.view_box.autoRange(padding=0.03)

    def select_box(self, x0: float, y0: float, x1: float, y1: float, mode: str = "replace") -> np.ndarray:
        """Select the shown points inside a box (data coordinates); returns the rows."""
        return self._apply_gesture(BoxSelection(x0, x1, y0, y1), mode, "Box select")

    def select_polygon(self, vertices, mode: str = "replace") -> np.ndarray:
        """Select the shown points inside a polygon (data coordinates); returns the rows."""
        return self._apply_gesture(PolygonSelection((0, 1), vertices), mode, "Lasso select")

    def row_at(self, x: float, y: float, radius_px: float | None = None) -> int:
        """Nearest shown row to the data point (x, y) within ``radius_px`` screen pixels, or -1."""
        if self._shown_rows.size == 0:
            return -1
        radius_px = max(6.0, self._point_size) if radius_px is None else radius_px
        pw, ph = self.view_box.viewPixelSize()
        pw, ph = (pw or 1e-9), (ph or 1e-9)
        if self._tree is None:
            from scipy.spatial import cKDTree

            self._tree = cKDTree(self._shown_xy, balanced_tree=False, compact_nodes=False)
        k = min(16, self._shown_rows.size)
        dist, idx = self._tree.query([x, y], k=k, distance_upper_bound=radius_px * max(pw, ph))
        idx = np.atleast_1d(idx)
        idx = idx[idx < self._shown_rows.size]
        if idx.size == 0:
            return -1
        d = np.hypot((self._shown_xy[idx, 0] - x) / pw, (self._shown_xy[idx, 1] - y) / ph)
        best = int(np.argmin(d))
        return int(self._shown_rows[idx[best]]) if d[best] <= radius_px else -1

    def coordinates(self) -> np.ndarray:
        """(n, 2) coordinates of every table row in the current map (NaN when unknown)."""
        return self._xy

    # -- data ----------------------------------------------------------------------------
    def _has_coordinates(self, mode: str) -> bool:
        table = self._table
        if table is None:
            return False
        if mode in self._provided_xy:
            return True
        cols = {"va": ("valence", "arousal"), "features": ("x2d", "y2d"),
                "umap": ("umap_x", "umap_y")}[mode]
        return all(c in table for c in cols) and bool(
            np.isfinite(table[list(cols)].to_numpy(np.float64)).any())

    def _coordinates_for(self, mode: str) -> np.ndarray:
        table = self._table
        n = len(table)
        if mode in self._provided_xy:
            return self._provided_xy[mode]
        cols = {"va": ("valence", "arousal"), "features": ("x2d", "y2d"),
                "umap": ("umap_x", "umap_y")}[mode]
        if all(c in table for c in cols):
            return table[list(cols)].to_numpy(np.float64)
        return np.full((n, 2), np.nan)

    def _mode_available(self, mode: str) -> bool:
        table = self._table
        if mode == "given":
            return True
        if table is None:
            return False
        if mode == "predicted":
            return bool(self._classes) and all(f"p_{c}" in table for c in self._classes)
        return mode in scores.names() and bool(np.isfinite(self.session.score(mode)).any())

    def _color_codes(self) -> tuple[np.ndarray, list[QBrush], str]:
        """Colour code per table row, the palette, and "continuous"/"categorical"."""
        table, mode = self._table, self._color_mode
        n = len(table)
        if mode in CATEGORICAL_MODES:
            m = max(len(self._classes), int(table["label"].max()) + 1 if n else 1)
            names = self._classes + [str(i) for i in range(len(self._classes), m)]
            brushes = palette.class_brushes(names) + [palette.missing_brush()]
            if mode == "given":
                codes = table["label"].to_numpy(np.intp)
            elif self._mode_available("predicted"):
                probs = table[[f"p_{c}" for c in self._classes]].to_numpy(np.float64)
                codes = np.argmax(np.nan_to_num(probs, nan=-1.0), axis=1).astype(np.intp)
                codes[~np.isfinite(probs).any(axis=1)] = m
            else:
                codes = np.full(n, m, dtype=np.intp)
            return codes, brushes, "categorical"
        score = scores.get(mode)
        values = self.session.score(mode)
        if self._scale == "quantile":
            lo, hi = 0.0, 1.0
            codes = palette.bin_values(quantiles(values), lo, hi)
        else:
            lo, hi = color_range(values, score) if self._scale == "data" else full_range(values, score)
            codes = palette.bin_values(values, lo, hi)
        self._value_range = (lo, hi)
        if mode != HIGHLIGHT_SCORE:
            self._highlight = None
            return codes, palette.colormap_brushes(score.cmap) + [palette.missing_brush()], "continuous"
        # strong where the label is more likely wrong than right, muted elsewhere, whatever the scale
        n = palette.N_BINS
        with np.errstate(invalid="ignore"):
            strong = np.nan_to_num(values, nan=-1.0) >= HIGHLIGHT
        codes = np.where(codes == n, 2 * n, codes + n * strong).astype(np.intp)
        shown_strong = strong[self._shown_rows]
        mean = float(values[self._shown_rows][shown_strong].mean()) if shown_strong.any() else float("nan")
        self._highlight = (int(shown_strong.sum()), int(self._shown_rows.size), mean)
        return codes, palette.issue_brushes(n) + [palette.missing_brush()], "continuous"

    def _compute_shown(self) -> None:
        finite = np.isfinite(self._xy).all(axis=1)
        keep = finite & self.session.visible_mask()
        self._shown_rows = np.flatnonzero(keep).astype(np.int64)
        self._shown_xy = np.ascontiguousarray(self._xy[self._shown_rows])
        self._missing_coordinates = int((~finite).sum())
        self._tree = None
        self._by_y = None

    def _rebuild(self, reset_view: bool) -> None:
        """Recompute coordinates, shown rows and colours; redraw every item."""
        if self._table is None:
            self._xy = np.empty((0, 2))
            self._shown_rows = np.empty(0, dtype=np.int64)
            self._shown_xy = np.empty((0, 2))
            self._tree = None
            self._draw_order = np.empty(0, dtype=np.intp)
            self._draw_codes = np.empty(0, dtype=np.intp)
            self.points.set_points(np.empty(0), np.empty(0))
            self._update_selection_marks(redraw_points=False)
            self._update_current_mark()
            self._update_edited_marks()
            self._update_banner()
            self._update_info()
            return
        self._xy = self._coordinates_for(self._coord_mode)
        self._compute_shown()
        xlabel, ylabel = AXIS_LABELS[self._coord_mode]
        self.plot_item.setLabel("bottom", xlabel)
        self.plot_item.setLabel("left", ylabel)
        self._recolor()
        self._update_edited_marks()
        self._update_selection_marks(redraw_points=False)
        self._update_current_mark()
        self._update_banner()
        self._update_predicted_marks()
        if reset_view:
            self.reset_view()

    def _recolor(self, same_points: bool = False) -> None:
        """New colour codes and drawing order; ``same_points``: the shown points did not
        change (only the colour mode), so the view's bounds need no update."""
        if self._table is None:
            return
        codes, brushes, kind = self._color_codes()
        brushes, full = self._cached_palette(brushes)
        self._codes = codes
        shown_codes = codes[self._shown_rows]
        missing = len(brushes) - 1
        if kind == "continuous":
            # the bad end on top: draw towards it (missing first)
            toward_bad = shown_codes if scores.get(self._color_mode).bad == "high" else missing - 1 - shown_codes
            key = np.where(shown_codes == missing, -1, toward_bad).astype(np.int16)
            order = np.argsort(key, kind="stable")  # int16: numpy's O(n) radix sort
        else:
            # categorical: a fixed shuffle so that no class hides another by row order
            if self._shuffle is None or self._shuffle.size != self._shown_rows.size:
                self._shuffle = np.random.default_rng(0).permutation(self._shown_rows.size)
            order = self._shuffle
        self._draw_order = order
        self._draw_codes = shown_codes[order]
        # codes >= len(brushes): the faded variant, for unselected points during a selection
        self.points.set_palette(full, update=False)
        self._n_brushes = len(brushes)
        self._draw_points(reorder=True, same_bounds=same_points)
        self._update_legend(kind, brushes)
        self._update_info()

    def _cached_palette(self, brushes: list[QBrush]) -> tuple[list[QBrush], list[QBrush]]:
        """(brushes, brushes + faded variants), the same QBrush objects for the same colours.

        pyqtgraph's symbol atlas keys its sprites by brush *object*: new but equal brushes
        on every recolour would render new sprites and grow the atlas each time."""
        key = tuple((b.style(), b.color().rgba()) for b in brushes)
        hit = self._palettes.get(key)
        if hit is None:
            if len(self._palettes) > 16:
                self._palettes.clear()
            hit = self._palettes[key] = (brushes, brushes + palette.dim_brushes(brushes))
        return hit

    def _selected_shown(self) -> np.ndarray | None:
        """Bool mask over the shown points of the selected ones (None: nothing selected)."""
        if not self.session.selection.size or self._table is None or self._shown_rows.size == 0:
            return None
        mask = self.session.selection_mask()[self._shown_rows]
        return mask if mask.any() else None

    def _draw_points(self, reorder: bool = False, same_bounds: bool = True) -> None:
        """Give the point item its colour codes (and, with ``reorder``, the shown points in
        drawing order).

        While some shown points are selected, the others use the faded palette entries and
        the selected ones are drawn on top (``on_top``), so the selection keeps its colours
        and stays visible.  A selection change only rewrites the codes, whatever its size,
        instead of feeding a second item a ring per selected point (140k rings at 300k
        points cost more to draw than the points).
        """
        order, codes = self._draw_order, self._draw_codes
        selected = self._selected_shown()
        self._dimmed = selected is not None
        on_top = None
        if selected is not None:
            on_top = selected[order]
            codes = np.where(on_top, codes, codes + self._n_brushes)
        if reorder:
            self.points.set_points(self._shown_xy[:, 0][order], self._shown_xy[:, 1][order],
                                   codes, on_top=on_top, same_bounds=same_bounds)
        else:
            self.points.set_codes(codes, on_top=on_top)

    # -- decorations ---------------------------------------------------------------------
    def _update_legend(self, kind: str, brushes: list[QBrush]) -> None:
        if kind == "categorical":
            self._show_colorbar(False)
            labels = (self._codes[self._shown_rows] if self._shown_rows.size else np.empty(0, np.intp))
            counts = np.bincount(labels, minlength=len(brushes))
            entries = [(name, brushes[i], f"{name} ({counts[i]:,})")
                       for i, name in enumerate(self._classes)]
            if counts[len(brushes) - 1]:
                entries.append(("", brushes[-1], f"no prediction ({counts[-1]:,})"))
            key = tuple((name, id(brush)) for name, brush, _ in entries)
            if key == self._legend_key and len(self.legend.items) == len(entries):
                for (_, label), (_, _, text) in zip(self.legend.items, entries):
                    if label.text != text:
                        label.setText(text)
            else:  # (re)building costs ~10 ms: only when the entries change
                self.legend.clear()
                self._legend_samples = []
                for _, brush, text in entries:
                    sample = pg.ScatterPlotItem(symbol="o", size=10, pen=None, brush=brush)
                    self._legend_samples.append(sample)
                    self.legend.addItem(sample, text)
                self._legend_key = key
            self.legend.show()
        else:
            mode = self._color_mode
            score = scores.get(mode)
            if self._highlight is not None:
                self._highlight_legend(brushes)
            else:
                self.legend.hide()
                self._legend_key = None
            quantile = self._scale == "quantile"
            cmap = palette.colormap(score.cmap)
            if self._highlight is not None and (quantile or self._value_range != (0.0, 1.0)):
                # the strong/muted split is by value: a plain ramp when the colours are not at 0.5
                cmap = pg.ColorMap([0.0, 1.0], [palette.MUTED_RAMP[0], palette.STRONG_RAMP[-1]])
            self.colorbar.setColorMap(cmap)
            lo, hi = getattr(self, "_value_range", (0.0, 1.0))
            self.colorbar.setLevels((lo, hi))
            what = f"quantile of {score.label}" if quantile else score.label
            self.colorbar.axis.setLabel(f"{what} (bad: {score.bad})")
            self._show_colorbar(True)

    def legend_texts(self) -> list[str]:
        """The legend's lines as shown (empty when it is hidden)."""
        if not self.legend.isVisible():
            return []
        return [label.text for _, label in self.legend.items]

    def _valid_accuracy(self) -> float | None:
        """The model's accuracy on the valid split's given labels (None without one)."""
        table = self._table
        classes = self.session.classes
        cols = [f"p_{c}" for c in classes]
        if table is None or not classes or any(c not in table for c in cols) or not (table["split"] == "valid").any():
            return None
        return float(class_accuracy(table, "valid").attrs["accuracy"])

    def _highlight_legend(self, brushes: list[QBrush]) -> None:
        """Two lines: how many points are drawn strongly and why, and the muted rest."""
        strong, shown, _ = self._highlight
        n = palette.N_BINS
        rest = shown - strong
        # Short lines: the legend sits inside the map and must fit a small one. No "expected
        # precision": on full FER+ the highlighted set measured 58 % wrong where the
        # probabilities promised 99 % (docs/benchmarks.md).
        entries = [(brushes[2 * n - 1], f"{strong:,} highlighted: label likely wrong (P ≥ {HIGHLIGHT:g})"),
                   (brushes[n // 2], f"{rest:,} muted: label likely right")]
        if shown and strong > shown / 2:
            # more than half "wrong" says more about the model than the labels: say so
            accuracy = self._valid_accuracy()
            known = "" if accuracy is None else f" (valid accuracy {accuracy:.2f})"
            entries.append((brushes[n // 2], f"⚠ over half flagged: the model{known} may be too weak; "
                                             "train longer"))
        key = ("highlight", id(brushes[2 * n - 1]), id(brushes[n // 2]), len(entries))
        if key == self._legend_key and len(self.legend.items) == len(entries):
            for (_, label), (_, text) in zip(self.legend.items, entries):
                if label.text != text:
                    label.setText(text)
        else:
            self.legend.clear()
            self._legend_samples = []
            for brush, text in entries:
                sample = pg.ScatterPlotItem(symbol="o", size=10, pen=None, brush=brush)
                self._legend_samples.append(sample)
                self.legend.addItem(sample, text)
            self._legend_key = key
        self.legend.show()

    def _show_colorbar(self, show: bool) -> None:
        layout = self.plot_item.layout
        if show and not self._colorbar_in_layout:
            layout.addItem(self.colorbar, 2, 5)
            layout.setColumnFixedWidth(4, 5)
            self.colorbar.show()
            self._colorbar_in_layout = True
        elif not show and self._colorbar_in_layout:
            layout.removeItem(self.colorbar)
            self.colorbar.hide()
            layout.setColumnFixedWidth(4, 0)
            self._colorbar_in_layout = False

    def _shown_subset(self, rows: np.ndarray) -> np.ndarray:
        """The rows among ``rows`` that are drawn, as (k, 2) coordinates."""
        if rows.size == 0 or self._shown_rows.size == 0:
            return np.empty((0, 2))
        pos = np.searchsorted(self._shown_rows, rows)
        pos = np.minimum(pos, self._shown_rows.size - 1)
        hit = self._shown_rows[pos] == rows
        return self._shown_xy[pos[hit]]

    @Slot()
    def _update_selection_marks(self, redraw_points: bool = True) -> None:
        """Selected points: full colour on top of faded others (``_draw_points``), plus a
        ring each while there are at most ``RING_LIMIT`` of them (a few stand out more)."""
        rows = self.session.selection
        if redraw_points and self._table is not None and (self._dimmed or len(rows)):
            self._draw_points()
        if rows.size > self.RING_LIMIT:
            xy = np.empty((0, 2))
        else:
            xy = self._shown_subset(rows)
        if xy.shape[0] or len(self.selection_marks.data):
            self.selection_marks.set_points(xy[:, 0], xy[:, 1])
        self._update_info()

    @Slot()
    def _update_predicted_marks(self, *_args) -> None:
        """The predicted samples in the current map (V-A or the feature map), filled with the
        colour of their predicted class; the one the inspector shows is ringed. The UMAP map has
        no place for samples it was not fitted on: the toggle says so."""
        predictions = self.session.predictions
        self._predicted_toggle_action.setVisible(predictions is not None)
        cols = {"va": ("valence", "arousal"), "features": ("x2d", "y2d")}.get(self._coord_mode)
        on_umap = self._coord_mode == "umap"
        self.predicted_toggle.setEnabled(not on_umap)
        self.predicted_toggle.setText("predicted (not on the UMAP map)" if on_umap else "predicted")
        self.predicted_toggle.setToolTip(
            "UMAP places only the samples it was fitted on; switch the map to valence-arousal or "
            "the feature map to see the predicted samples" if on_umap else
            "show the samples predicted for another collection (triangles in their predicted class's colour)")
        self.predicted_current.setData([], [])
        if (predictions is None or cols is None or not self.predicted_toggle.isChecked()
                or any(c not in predictions for c in cols)):
            self.predicted_marks.setData([], [])
            self._predicted_rows = np.empty(0, dtype=np.int64)
            return
        xy = predictions[list(cols)].to_numpy(np.float64)
        placed = np.isfinite(xy).all(axis=1)
        self._predicted_rows = np.flatnonzero(placed)
        classes = self.session.classes
        p_cols = [f"p_{c}" for c in classes]
        if classes and all(c in predictions for c in p_cols):
            predicted = np.nan_to_num(predictions[p_cols].to_numpy(np.float64)).argmax(axis=1)
            brushes = palette.class_brushes(classes)
            self.predicted_marks.setData(xy[placed, 0], xy[placed, 1],
                                         brush=[brushes[k] for k in predicted[placed]])
        else:
            self.predicted_marks.setData(xy[placed, 0], xy[placed, 1])
        shown = self.session.shown_prediction
        if 0 <= shown < len(xy) and placed[shown]:
            self.predicted_current.setData([xy[shown, 0]], [xy[shown, 1]])

    def _update_edited_marks(self) -> None:
        rows = np.flatnonzero(self.session.flag("edited"))
        xy = self._shown_subset(rows.astype(np.int64))
        self.edited_marks.set_points(xy[:, 0], xy[:, 1])

    @Slot(int)
    def _update_current_mark(self, *_args) -> None:
        row = self.session.current
        xy = self._shown_subset(np.array([row], dtype=np.int64)) if row >= 0 else np.empty((0, 2))
        self.current_mark.setData(xy[:, 0], xy[:, 1])
        self.current_mark_inner.setData(xy[:, 0], xy[:, 1])

    def _update_banner(self) -> None:
        if self._table is None or not self.session.filter.active:
            self.banner.hide()
            return
        shown = f"{self._shown_rows.size:,} of {len(self._table):,} shown"
        self.banner_label.setText(f"Filtered: {self.session.filter_text()} · {shown}")
        self.banner.show()

    def _update_info(self) -> None:
        if self._table is None:
            self.info_label.setText("no data")
            return
        n = len(self._table)
        text = f"{self._shown_rows.size:,} of {n:,} points" if self._shown_rows.size != n else f"{n:,} points"
        missing = self._missing_coordinates
        if missing:
            text += f" ({missing:,} without coordinates)"
        k = int(self.session.selection.size)
        if k:
            text += f" · {k:,} selected"
        self.info_label.setText(text)

    def _sync_controls(self) -> None:
        self.scale_combo.blockSignals(True)
        self.scale_combo.setCurrentIndex(max(0, self.scale_combo.findData(self._scale)))
        self.scale_combo.setEnabled(self._color_mode not in CATEGORICAL_MODES)
        self.scale_combo.blockSignals(False)
        for combo, value, available in (
                (self.coord_combo, self._coord_mode, self._has_coordinates),
                (self.color_combo, self._color_mode, self._mode_available)):
            combo.blockSignals(True)
            model = combo.model()
            for i in range(combo.count()):
                mode = combo.itemData(i)
                item = model.item(i)
                # "umap" stays enabled: choosing it asks the owner to compute it
                item.setEnabled(bool(available(mode)) or mode == "umap" or self._table is None)
            combo.setCurrentIndex(max(0, combo.findData(value)))
            combo.blockSignals(False)

    # -- gestures ------------------------------------------------------------------------
    def _mode_from_modifiers(self, modifiers) -> str:
        """Shift adds; Ctrl+Shift (or Alt, where the window manager leaves it to the app)
        removes; so does any gesture while the Subtract button is down."""
        shift = bool(modifiers & Qt.KeyboardModifier.ShiftModifier)
        ctrl = bool(modifiers & Qt.KeyboardModifier.ControlModifier)
        if self.subtract_button.isChecked() or (shift and ctrl) or modifiers & Qt.KeyboardModifier.AltModifier:
            return "remove"
        if shift:
            return "add"
        return "replace"

    def _apply_gesture(self, selection: Selection, mode: str, text: str) -> np.ndarray:
        if self._table is None:
            return np.empty(0, dtype=np.int64)
        if isinstance(selection, PolygonSelection) and self._shown_rows.size > 10_000:
            # the polygon test sorts its candidates by y; handing it points already sorted
            # by y (cached per shown set) makes that sort ~free: same predicate, same result
            if self._by_y is None:
                # nearly sorted is enough (the test sorts again, fast on sorted runs):
                # y quantised to 16 bits, numpy's O(n) radix sort, ~10x cheaper than a sort
                y = self._shown_xy[:, 1]
                lo, hi = float(y.min()), float(y.max())
                key = ((y - lo) * (65535.0 / ((hi - lo) or 1.0))).astype(np.uint16)
                by_y = np.argsort(key, kind="stable")
                xy_sorted = np.column_stack([np.take(self._shown_xy[:, 0], by_y),
                                             np.take(y, by_y)])  # 4x faster than xy[by_y]
                self._by_y = (by_y, xy_sorted)
            by_y, xy_sorted = self._by_y
            mask = np.zeros(self._shown_rows.size, dtype=bool)
            mask[by_y] = selection.mask(xy_sorted)
        else:
            mask = selection.mask(self._shown_xy)
        rows = self._shown_rows[mask]
        verb = {"replace": text, "add": text + " (add)", "remove": text + " (remove)"}.get(mode, text)
        self.bridge.select(rows, mode, text=f"{verb}: {rows.size:,} samples")
        self.last_selection = self._in_table_columns(selection)
        self.gestureSelected.emit(self.last_selection)
        return rows

    def _in_table_columns(self, selection: Selection) -> Selection:
        cols = {"va": ("valence", "arousal"), "features": ("x2d", "y2d"),
                "umap": ("umap_x", "umap_y")}[self._coord_mode]
        if isinstance(selection, BoxSelection):
            return BoxSelection(selection.x0, selection.x1, selection.y0, selection.y1, xcols=cols)
        if isinstance(selection, PolygonSelection):
            return PolygonSelection(cols, selection.vertices)
        return selection

    def _gesture_drag(self, ev) -> None:
        vb = self.view_box
        pos = vb.mapToView(ev.pos())
        lasso = vb.interaction == "lasso"
        if ev.isStart():
            self._gesture_points = [vb.mapToView(ev.buttonDownPos())]
            (self._lasso_item if lasso else self._box_item).show()
        if not self._gesture_points:  # a drag that started before a mode switch
            return
        self._gesture_points.append(pos)
        if lasso:
            path = QPainterPath(self._gesture_points[0])
            for p in self._gesture_points[1:]:
                path.lineTo(p)
            path.closeSubpath()
            self._lasso_item.setPath(path)
        else:
            self._box_item.setRect(QRectF(self._gesture_points[0], pos).normalized())
        if ev.isFinish():
            self._box_item.hide()
            self._lasso_item.hide()
            mode = self._mode_from_modifiers(ev.modifiers())
            points = self._gesture_points
            self._gesture_points = []
            if lasso:
                self.select_polygon([(p.x(), p.y()) for p in points], mode)
            else:
                a, b = points[0], points[-1]
                self.select_box(a.x(), a.y(), b.x(), b.y(), mode)

    def predicted_at(self, x: float, y: float, radius_px: float = 8.0) -> int:
        """The drawn predicted sample nearest to the data point (x, y) within ``radius_px``, or -1
        (a row of ``session.predictions``)."""
        data = self.predicted_marks.data
        if not len(data):
            return -1
        pw, ph = self.view_box.viewPixelSize()
        d = np.hypot((data["x"] - x) / (pw or 1e-9), (data["y"] - y) / (ph or 1e-9))
        best = int(np.argmin(d))
        return int(self._predicted_rows[best]) if d[best] <= radius_px else -1

    def _gesture_click(self, ev) -> None:
        pos = self.view_box.mapToView(ev.pos())
        predicted = self.predicted_at(pos.x(), pos.y())
        if predicted >= 0:
            self.predictedClicked.emit(predicted)
            return
        row = self.row_at(pos.x(), pos.y())
        if row < 0:
            return
        mode = self._mode_from_modifiers(ev.modifiers())
        if mode != "replace":
            self.bridge.select([row], mode, text=f"Click select ({mode})")
        self.session.set_current(row)

    # -- hover -----------------------------------------------------------------------------
    @Slot(object)
    def _on_mouse_moved(self, scene_pos) -> None:
        self._hover_scene_pos = QPointF(scene_pos)
        if not self._hover_timer.isActive():  # throttle: at most one lookup per 50 ms
            self._hover_timer.start()

    def _hover_tick(self) -> None:
        scene_pos = self._hover_scene_pos
        row = -1
        if scene_pos is not None and self.view_box.sceneBoundingRect().contains(scene_pos):
            pos = self.view_box.mapSceneToView(scene_pos)
            row = self.row_at(pos.x(), pos.y())
        if row != self._hover_row:
            self._hover_row = row
            self.hovered.emit(row)
        if row < 0:
            self._hover_card.hide()
            return
        pixmap = None
        if self.thumbnail_provider is not None:
            try:
                pixmap = self.thumbnail_provider(row)
            except Exception:  # a broken image must not break hovering
                pixmap = None
        view_pos = self.plot.mapFromScene(scene_pos)
        global_pos = self.plot.viewport().mapToGlobal(view_pos) + QPointF(16, 16).toPoint()
        self._hover_card.show_row(pixmap, self._hover_text(row), global_pos)

    def _hover_text(self, row: int) -> str:
        if self.hover_text_provider is not None:
            return self.hover_text_provider(row)
        table = self._table
        rec = table.iloc[row]
        label = int(rec["label"])
        name = self._classes[label] if label < len(self._classes) else str(label)
        text = f"{rec['sample_id']}\n{name}"
        if "lambda" in table and np.isfinite(rec["lambda"]):
            text += f" · λ {rec['lambda']:.2f}"
        if bool(self.session.flag("edited")[row]):
            text += " · edited"
        return text

    def hover_card_visible(self) -> bool:
        return self._hover_card.isVisible()

    def eventFilter(self, obj, event):  # noqa: N802
        if event.type() == QEvent.Type.Leave:
            self._hover_scene_pos = None
            self._hover_timer.stop()
            self._hover_card.hide()
            if self._hover_row != -1:
                self._hover_row = -1
                self.hovered.emit(-1)
        return super().eventFilter(obj, event)

    def hideEvent(self, event):  # noqa: N802
        self._hover_card.hide()
        super().hideEvent(event)


def color_range(values: np.ndarray, score: scores.Score, min_span: float = 0.05) -> tuple[float, float]:
    """Colour range of a score: the 1st–99th percentile of its finite values, inside the score's
    possible range (symmetric around 0 for diverging scores).

    λ often lives in a narrow band (e.g. 0.15–0.5); a fixed 0–1 scale would paint every point
    the same colour, so the scale follows the data and the colour bar shows the real values.
    """
    floor, ceiling = score.value_range or (-np.inf, np.inf)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (0.0, 1.0) if not np.isfinite(floor) else (float(floor), float(ceiling))
    if score.diverging:
        span = max(float(np.quantile(np.abs(finite), 0.99)), 0.02)
        return -span, span
    lo, hi = (float(q) for q in np.quantile(finite, (0.01, 0.99)))
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    return max(floor, lo), min(ceiling, hi)


def full_range(values: np.ndarray, score: scores.Score) -> tuple[float, float]:
    """The score's whole possible range (``value_range``); the data's range when it has none."""
    if score.value_range is not None:
        return float(score.value_range[0]), float(score.value_range[1])
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def quantiles(values: np.ndarray) -> np.ndarray:
    """Each finite value's quantile among the finite values (0 = lowest, 1 = highest; ties
    share their mean rank); NaN stays NaN."""
    values = np.asarray(values, dtype=np.float64)
    out = np.full(values.shape, np.nan)
    finite = np.isfinite(values)
    k = int(finite.sum())
    if k == 0:
        return out
    if k == 1:
        out[finite] = 0.5
        return out
    from scipy.stats import rankdata

    out[finite] = (rankdata(values[finite], method="average") - 1.0) / (k - 1)
    return out
