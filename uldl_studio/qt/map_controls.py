"""The map's controls bar: interaction buttons, map, colour, scale, point size, density and
predicted toggles, and the point counts."""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import (
    QButtonGroup, QCheckBox, QComboBox, QLabel, QSizePolicy, QSpinBox, QToolBar, QToolButton,
)

from uldl_studio.core.review.frontend import scores
from uldl_studio.qt.map_colors import CATEGORICAL_MODES, SCALES, color_mode_label, color_modes

if TYPE_CHECKING:
    from uldl_studio.qt.map_view import MapView

COORDINATE_MODES = ("va", "umap", "features")
COORDINATE_LABELS = {"va": "valence-arousal", "umap": "UMAP of features", "features": "feature map"}


class MapControls(QToolBar):
    """A tool bar, not a row layout: in a narrow window what does not fit goes behind its »
    button instead of forcing the window (and crushing the docks) wider.  Its widgets call
    ``view``'s public setters."""

    def __init__(self, view: "MapView") -> None:
        super().__init__(view)
        self.view = view
        self.setIconSize(QSize(16, 16))
        self.setContentsMargins(2, 0, 2, 0)
        self.mode_buttons = QButtonGroup(self)
        for mode, text, tip in (("select", "Box", "Drag to select a box (Shift adds, Ctrl+Shift removes)"),
                                ("lasso", "Lasso", "Drag to draw a lasso (Shift adds, Ctrl+Shift removes)"),
                                ("pan", "Pan", "Drag to pan (right/middle drag always pans)")):
            button = self._button(text, tip, checkable=True)
            button.setProperty("mode", mode)
            self.mode_buttons.addButton(button)
            button.setChecked(mode == "select")
        self.mode_buttons.buttonClicked.connect(lambda b: view.set_interaction_mode(b.property("mode")))
        self.subtract_button = self._button(
            "Subtract", "While down, a box or lasso removes from the selection "
                        "(the same as Ctrl+Shift+drag)", checkable=True)
        self._button("Fit", "Show all points").clicked.connect(view.reset_view)
        self.addSeparator()
        self.coord_combo = QComboBox(self)
        for mode in COORDINATE_MODES:
            self.coord_combo.addItem(COORDINATE_LABELS[mode], mode)
        self.coord_combo.activated.connect(lambda i: view.set_coordinates(self.coord_combo.itemData(i)))
        self.addWidget(QLabel("Map:", self))
        self.addWidget(self.coord_combo)
        self.color_combo = QComboBox(self)
        # a fixed width: long score names must not widen the bar (and the window) later
        self.color_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.color_combo.setMinimumContentsLength(18)
        self.color_combo.activated.connect(lambda i: view.set_color_mode(self.color_combo.itemData(i)))
        self.addWidget(QLabel("Colour:", self))
        self.addWidget(self.color_combo)
        self.scale_combo = QComboBox(self)
        for key, text in SCALES.items():
            self.scale_combo.addItem(text, key)
        self.scale_combo.setToolTip("How a score's values map to colours: by value (over the data's "
                                    "1–99 % range or the score's full range) or by quantile")
        self.scale_combo.activated.connect(lambda i: view.set_scale(self.scale_combo.itemData(i)))
        self.addWidget(self.scale_combo)
        self.size_spin = QSpinBox(self)
        self.size_spin.setRange(1, 30)
        self.size_spin.setSuffix(" px")
        self.size_spin.setToolTip("Point size")
        self.size_spin.valueChanged.connect(view.set_point_size)
        self.addWidget(self.size_spin)
        self.density_toggle = QCheckBox("Density", self)
        self.density_toggle.setToolTip(
            "Shade the map by how many points fall in each cell instead of drawing every point; "
            "highlighted and selected points stay drawn on top (on by itself above "
            "50,000 points)")
        self.density_toggle.clicked.connect(view.set_density)
        self.addWidget(self.density_toggle)
        self.predicted_toggle = QCheckBox("predicted", self)
        self.predicted_toggle.setChecked(True)
        self.predicted_toggle.setToolTip("show the samples predicted for another collection (triangles)")
        self.predicted_action = self.addWidget(self.predicted_toggle)
        self.predicted_action.setVisible(False)  # a widget in a tool bar shows through its action
        self.info_label = QLabel(self)
        # the counts take the room that is left: a longer text must never widen the window
        self.info_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.info_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.info_label.setMinimumWidth(0)
        self.addWidget(self.info_label)

    def _button(self, text: str, tip: str, checkable: bool = False) -> QToolButton:
        button = QToolButton(self)
        button.setText(text)
        button.setToolTip(tip)
        button.setCheckable(checkable)
        self.addWidget(button)
        return button

    def fill_color_combo(self, current: str) -> None:
        """One entry per label colouring and registered score, with the score's meaning."""
        combo = self.color_combo
        combo.blockSignals(True)
        combo.clear()
        for mode in color_modes():
            combo.addItem(color_mode_label(mode), mode)
            if mode in scores.names():
                combo.setItemData(combo.count() - 1, scores.get(mode).tooltip, Qt.ItemDataRole.ToolTipRole)
        combo.setCurrentIndex(max(0, combo.findData(current)))
        combo.blockSignals(False)

    def sync(self) -> None:
        """Show the view's state: its scale, map and colour mode (modes without data disabled,
        except "umap", which asks the owner to compute it), interaction mode and density."""
        view = self.view
        self.scale_combo.blockSignals(True)
        self.scale_combo.setCurrentIndex(max(0, self.scale_combo.findData(view.scale)))
        self.scale_combo.setEnabled(view.color_mode not in CATEGORICAL_MODES)
        self.scale_combo.blockSignals(False)
        no_table = view.table is None
        for combo, value, available in (
                (self.coord_combo, view.coordinate_mode, view.available_coordinate_modes()),
                (self.color_combo, view.color_mode, view.available_color_modes())):
            combo.blockSignals(True)
            model = combo.model()
            for i in range(combo.count()):
                mode = combo.itemData(i)
                model.item(i).setEnabled(mode in available or mode == "umap" or no_table)
            combo.setCurrentIndex(max(0, combo.findData(value)))
            combo.blockSignals(False)
        for button in self.mode_buttons.buttons():
            button.setChecked(button.property("mode") == view.view_box.interaction)
        self.density_toggle.setChecked(view.density_enabled)
