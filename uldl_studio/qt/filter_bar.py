"""The filter controls of the main tool bar: a class menu and a range slider over any registered
score. A view of the session's filter (``Session.filter``): it writes changes to the session
and shows whatever the session's filter is, whoever changed it (the map banner's Clear, a new
table)."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QMenu, QToolButton, QWidget
from superqt import QLabeledDoubleRangeSlider

from uldl_studio.core.review.frontend import scores
from uldl_studio.qt.session_bridge import SessionBridge


class FilterBar(QWidget):
    """Classes ▾ · score · low ━━●━━●━━ high, bound to the session behind ``bridge``."""

    def __init__(self, bridge: SessionBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = bridge.session
        self.class_button = QToolButton()
        self.class_button.setText("Classes ▾")
        self.class_button.setToolTip("show only samples whose (edited) label is one of these")
        self.class_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.class_menu = QMenu(self)
        self.class_button.setMenu(self.class_menu)
        self.class_actions: list[QAction] = []

        self.score_combo = QComboBox()
        for score in scores.registered():
            self.score_combo.addItem(score.label, score.name)
            self.score_combo.setItemData(self.score_combo.count() - 1, score.tooltip, Qt.ItemDataRole.ToolTipRole)
        self.score_combo.setToolTip("the score whose range the slider filters")
        self.score_combo.setCurrentIndex(self.score_combo.findData("lambda"))
        self.slider = QLabeledDoubleRangeSlider(Qt.Orientation.Horizontal)
        self.slider.setSingleStep(0.01)
        self.slider.setDecimals(2)
        # Edit boxes with the current low/high at the ends; no labels over the handles (they
        # do not fit in a toolbar's height).
        self.slider.setHandleLabelPosition(QLabeledDoubleRangeSlider.LabelPosition.NoLabel)
        self.slider.setEdgeLabelMode(QLabeledDoubleRangeSlider.EdgeLabelMode.LabelIsValue)
        self.slider.setFixedWidth(260)
        self.slider.setToolTip("show only samples whose score is in this range")

        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel(" Filter: "))
        layout.addWidget(self.class_button)
        layout.addWidget(self.score_combo)
        layout.addWidget(self.slider)

        self.show_range()
        self.slider.valueChanged.connect(self._on_slider)
        self.score_combo.currentIndexChanged.connect(lambda _i: self.show_range())
        bridge.tableReset.connect(self._on_table_reset)
        bridge.resultsChanged.connect(self.show_range)
        bridge.filterChanged.connect(self.show_filter)

    # -- session -> widgets -----------------------------------------------------------------
    @Slot()
    def _on_table_reset(self) -> None:
        self.class_menu.clear()
        self.class_actions = []
        for i, name in enumerate(self.session.classes):
            act = QAction(f"{i + 1}  {name}", self, checkable=True, checked=True)
            act.toggled.connect(self._on_class_actions)
            self.class_menu.addAction(act)
            self.class_actions.append(act)
        self.class_menu.addSeparator()
        self.class_menu.addAction("Show all classes", self.session.clear_filter)
        self.show_filter()

    @Slot()
    def show_filter(self) -> None:
        """Tick the classes and place the slider as the session's filter says."""
        classes = self.session.filter.classes
        for i, act in enumerate(self.class_actions):
            act.blockSignals(True)
            act.setChecked(classes is None or i in classes)
            act.blockSignals(False)
        self.show_range()

    @Slot()
    def show_range(self) -> None:
        """The slider's bounds for the chosen score, and its filtered range if one is set."""
        name = self.score_combo.currentData()
        lo, hi = self.bounds(name)
        current = self.session.filter.ranges.get(name, (lo, hi))
        self.slider.blockSignals(True)
        self.slider.setRange(lo, hi)
        self.slider.setValue(current)
        self.slider.blockSignals(False)

    def set_enabled(self, is_open: bool, has_results: bool) -> None:
        self.class_button.setEnabled(is_open)
        self.score_combo.setEnabled(has_results)
        self.slider.setEnabled(has_results)

    def bounds(self, name: str) -> tuple[float, float]:
        """The slider's ends for score ``name``: its possible range, else its values' range."""
        score = scores.get(name)
        if score.value_range is not None:
            return score.value_range
        values = self.session.score(name) if self.session.is_open else np.empty(0)
        finite = values[np.isfinite(values)]
        return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)

    # -- widgets -> session -----------------------------------------------------------------
    def choose_score(self, name: str) -> None:
        self.score_combo.setCurrentIndex(self.score_combo.findData(name))

    @Slot()
    def _on_class_actions(self, *args) -> None:
        checked = [i for i, a in enumerate(self.class_actions) if a.isChecked()]
        self.session.set_filter(classes=None if len(checked) == len(self.class_actions) else checked)

    @Slot(object)
    def _on_slider(self, value) -> None:
        name = self.score_combo.currentData()
        low, high = (float(v) for v in value)
        lo, hi = self.bounds(name)
        full = low <= lo + 1e-9 and high >= hi - 1e-9  # the whole range: no filter on this score
        self.session.set_range(name, None if full or not self.session.has_results else low, high)
