"""The map: every sample as a point (valence-arousal, UMAP or feature map), coloured by a
label or a registered score, with box/lasso selection into the session's selection.

The view keeps no sample state (the session does; docs/architecture.md), only what it
derives for drawing. Its parts: ``map_coordinates`` and ``map_data`` (session → shown
points, colours, redraws), ``map_controls`` (the tool bar), ``map_colors``, ``map_legend``,
``map_gestures`` (box, lasso, clicks), ``map_hover``, ``map_marks``, ``map_predicted``,
``map_density`` and ``scatter_renderer`` (all points in one item; speed: bench/gui_scale.py).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal, Slot
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from uldl_studio.core.review.selection import BoxSelection
from uldl_studio.qt import map_density, palette
from uldl_studio.qt.map_colors import (
    CATEGORICAL_MODES, HIGHLIGHT_SCORE, SCALES, ColoringCache, PaletteCache, color_modes,
)
from uldl_studio.qt.map_controls import MapControls
from uldl_studio.qt.map_data import MapData
from uldl_studio.qt.map_gestures import INTERACTION_MODES, GestureTool, MapViewBox, polygon_mask
from uldl_studio.qt.map_hover import HoverTool
from uldl_studio.qt.map_legend import MapLegend
from uldl_studio.qt.map_marks import MapMarks
from uldl_studio.qt.map_predicted import PredictedMarks
from uldl_studio.qt.scatter_renderer import PaletteScatterItem
from uldl_studio.qt.session_bridge import SessionBridge


class MapView(MapData, QWidget):
    """Scatter map of the session's samples.

    Args:
        bridge: the session's Qt bridge (a new session is created when None).
        parent: Qt parent.
        show_controls: show the controls bar.

    The owner may set ``thumbnail_provider`` (``row -> QPixmap | None``) and
    ``hover_text_provider`` (``row -> str``) for the hover card.

    Signals: colorModeChanged(str), coordinatesChanged(str), coordinatesRequested(str) (a map
    with no coordinates yet, e.g. "umap": compute it and call ``set_coordinates(mode, xy)``),
    hovered(int) (row under the mouse, -1 none).

    Rows predicted for another collection (``source`` = prediction) are drawn as triangles
    (``map_predicted``); otherwise they are points like any other.
    """

    #: selections up to this size also get a ring per point (larger ones: colour only)
    RING_LIMIT = 5000

    colorModeChanged = Signal(str)
    coordinatesChanged = Signal(str)
    coordinatesRequested = Signal(str)
    hovered = Signal(int)

    def __init__(self, bridge: SessionBridge | None = None, parent: QWidget | None = None,
                 *, show_controls: bool = True) -> None:
        super().__init__(parent)
        self.bridge = bridge if bridge is not None else SessionBridge(self)
        self.session = self.bridge.session
        self.thumbnail_provider: Callable[[int], QPixmap | None] | None = None
        self.hover_text_provider: Callable[[int], str] | None = None
        self._init_coordinates()
        self._color_mode = "given"
        self._scale = "data"
        self._highlight: tuple[int, int, float] | None = None  # (strong, shown, mean value of strong)
        self._strong_shown: np.ndarray | None = None
        self._value_range = (0.0, 1.0)
        self._point_size = 5.0
        self._codes = np.empty(0, dtype=np.intp)  # per table row, current colour mode
        self._shown_codes = np.empty(0, dtype=np.intp)
        self._order = np.empty(0, dtype=np.intp)  # shown points in drawing order
        self._shuffle: np.ndarray | None = None
        self._n_brushes = 1
        self._full_palette: list = []  # the colour mode's brushes, then their faded variants
        self._own_shown: np.ndarray | None = None  # per shown point: a dataset row (None: all are)
        self._dimmed = False
        self._palettes = PaletteCache()
        self._colorings = ColoringCache()
        self._density_choice: bool | None = None  # the user's, once they toggled it
        self._axis_labels: tuple[str, str] | None = None
        self._build_ui(show_controls)
        bridge = self.bridge
        bridge.selectionChanged.connect(self._update_selection_marks)
        bridge.currentChanged.connect(self._update_current_mark)
        bridge.tableReset.connect(self._on_table_reset)
        bridge.resultsChanged.connect(self._on_values_changed)
        bridge.editsChanged.connect(self._on_edits)
        bridge.filterChanged.connect(self._on_filter_changed)
        bridge.predictionsChanged.connect(self._on_values_changed)

    def _build_ui(self, show_controls: bool) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.controls = MapControls(self)
        layout.addWidget(self.controls)
        self.controls.setVisible(show_controls)
        c = self.controls
        self.subtract_button, self.coord_combo, self.color_combo = c.subtract_button, c.coord_combo, c.color_combo
        self.scale_combo, self.size_spin, self.info_label = c.scale_combo, c.size_spin, c.info_label
        self.predicted_toggle, self._predicted_toggle_action = c.predicted_toggle, c.predicted_action
        self.density_toggle = c.density_toggle
        self.size_spin.blockSignals(True)
        self.size_spin.setValue(int(self._point_size))
        self.size_spin.blockSignals(False)
        c.fill_color_combo(self._color_mode)

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

        self.view_box = MapViewBox()
        self.plot = pg.PlotWidget(self, viewBox=self.view_box, background=palette.BACKGROUND)
        self.plot_item = self.plot.getPlotItem()
        # no grid lines: with 300k points every repaint counts, and they cost ~5 ms a paint
        for name in ("left", "bottom"):
            axis = self.plot_item.getAxis(name)
            axis.setPen(pg.mkPen(palette.FOREGROUND))
            axis.setTextPen(pg.mkPen(palette.FOREGROUND))
        self.plot_item.hideButtons()
        layout.addWidget(self.plot, 1)

        self.density = map_density.DensityLayer(self.plot_item)
        self.predicted = PredictedMarks(self.plot_item, self.predicted_toggle,
                                        self._predicted_toggle_action, self._point_size)
        self.predicted_marks = self.predicted.marks
        self.predicted_toggle.toggled.connect(lambda _on: self.table is not None and self._rebuild(reset_view=False))
        self.points = PaletteScatterItem(size=self._point_size, pen=None)
        self.points.setZValue(0)
        self.plot_item.addItem(self.points)
        self.marks = MapMarks(self.plot_item, self._point_size)
        m = self.marks
        self.edited_marks, self.selection_marks = m.edited, m.selection
        self.current_mark, self.current_mark_inner = m.current, m.current_inner
        self.gestures = GestureTool(self)
        self.key = MapLegend(self.plot_item, self._valid_accuracy)
        self.colorbar, self.legend = self.key.colorbar, self.key.legend
        self.hover = HoverTool(self)
        self._hover_card = self.hover.card
        self._update_info()

    # -- public API ----------------------------------------------------------------------
    @property
    def color_mode(self) -> str:
        return self._color_mode

    @property
    def scale(self) -> str:
        return self._scale

    @property
    def density_enabled(self) -> bool:
        return self.density.enabled

    def default_color_mode(self) -> str:
        """The calibrated P(label is wrong) when the table has it (its likely issues strong, the
        rest muted), else the combined ambiguity score, else the given label."""
        for mode in (HIGHLIGHT_SCORE, "ambiguity"):
            if self._mode_available(mode):
                return mode
        return "given"

    def set_scale(self, scale: str) -> None:
        """Map a score's values to colours by "data" (1–99 % range), "full" (the score's possible
        range) or "quantile"."""
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; expected one of {tuple(SCALES)}")
        if scale == self._scale:
            return
        self._scale = scale
        self.controls.sync()
        if self.table is not None and self._color_mode not in CATEGORICAL_MODES:
            self._recolor(same_points=True)

    def highlight_counts(self) -> tuple[int, int, float] | None:
        """(highlighted shown points, shown points, mean score of the highlighted) while the
        colouring highlights (the likeliest wrong labels strong, ``core.labels.label_issues.highlighted_mask``); None otherwise."""
        return self._highlight

    def set_color_mode(self, mode: str) -> None:
        """Colour by "given", "predicted" or a registered score's name (grey points while the
        mode's columns are missing)."""
        if mode not in color_modes():
            raise ValueError(f"unknown colour mode {mode!r}; expected one of {color_modes()}")
        if mode == self._color_mode:
            return
        self._color_mode = mode
        self.controls.sync()
        self._recolor(same_points=True)
        self.colorModeChanged.emit(mode)

    def available_color_modes(self) -> list[str]:
        """The colour modes with data in the current table."""
        return [m for m in color_modes() if self._mode_available(m)]

    def set_point_size(self, px: float) -> None:
        """Point size in screen pixels (the marks follow)."""
        px = float(px)
        if px == self._point_size:
            return
        self._point_size = px
        self.points.setSize(px)
        self.marks.set_point_size(px)
        if self.size_spin.value() != int(round(px)):
            self.size_spin.blockSignals(True)
            self.size_spin.setValue(int(round(px)))
            self.size_spin.blockSignals(False)

    def set_density(self, on: bool) -> None:
        """Shade by point density instead of drawing every point (highlighted and selected
        points stay on top); the choice holds for later tables."""
        self._density_choice = bool(on)
        self._apply_density(bool(on))

    def _apply_density(self, on: bool) -> None:
        if on != self.density.enabled:
            self.density.set_enabled(on)
            if self.table is not None and self._shown_rows.size:
                self._draw_points()
        self.density_toggle.setChecked(on)

    def banner_text(self) -> str:
        return self.banner_label.text() if self.banner.isVisibleTo(self) else ""

    def set_interaction_mode(self, mode: str) -> None:
        """"select" (box), "lasso" or "pan" for the left mouse button."""
        if mode not in INTERACTION_MODES:
            raise ValueError(f"unknown interaction mode {mode!r}; expected one of {INTERACTION_MODES}")
        self.view_box.interaction = mode
        self.controls.sync()

    @Slot()
    def reset_view(self) -> None:
        self.view_box.autoRange(padding=0.03)

    def select_box(self, x0: float, y0: float, x1: float, y1: float, mode: str = "replace") -> np.ndarray:
        """Select the shown points inside a box (data coordinates); returns the rows."""
        mask = BoxSelection(x0, x1, y0, y1).mask(self._shown_xy)
        return self._select_shown(mask, mode)

    def select_polygon(self, vertices, mode: str = "replace") -> np.ndarray:
        """Select the shown points inside a polygon (data coordinates); returns the rows."""
        xy = self._shown_xy
        return self._select_shown(polygon_mask(xy[:, 0], xy[:, 1], vertices), mode)

    def _select_shown(self, mask: np.ndarray, mode: str) -> np.ndarray:
        if self.table is None:
            return np.empty(0, dtype=np.int64)
        rows = np.flatnonzero(mask) if mask.size == len(self.table) else self._shown_rows[mask]
        self.session.select(rows, mode)
        return rows

    def legend_texts(self) -> list[str]:
        """The legend's lines (empty when it has none; a map too small for them hides them)."""
        return self.key.texts()

    def hover_card_visible(self) -> bool:
        return self._hover_card.isVisible()

    def hideEvent(self, event):  # noqa: N802
        self._hover_card.hide()
        super().hideEvent(event)
