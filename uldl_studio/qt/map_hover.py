"""The map's hover card: the sample under the mouse, its thumbnail and a line of text."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, QEvent, QPointF, Qt, QTimer
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout, QWidget

if TYPE_CHECKING:
    from uldl_studio.qt.map_view import MapView


class HoverCard(QFrame):
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
        """Show ``pixmap`` (when there is one) and ``text`` at ``global_pos``."""
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


class HoverTool(QObject):
    """Follows the mouse over ``view``'s plot: emits ``view.hovered(row)`` (at most once per
    50 ms, -1 when none) and shows the hover card of the row under the mouse."""

    def __init__(self, view: "MapView") -> None:
        super().__init__(view)
        self.view = view
        self.card = HoverCard(view)
        self.card.hide()
        self.row = -1
        self._scene_pos: QPointF | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(50)
        self._timer.timeout.connect(self._tick)
        view.plot.scene().sigMouseMoved.connect(self._on_mouse_moved)
        view.plot.viewport().installEventFilter(self)

    def _on_mouse_moved(self, scene_pos) -> None:
        self._scene_pos = QPointF(scene_pos)
        if not self._timer.isActive():  # throttle: at most one lookup per 50 ms
            self._timer.start()

    def _tick(self) -> None:
        view, scene_pos = self.view, self._scene_pos
        row = -1
        if scene_pos is not None and view.view_box.sceneBoundingRect().contains(scene_pos):
            pos = view.view_box.mapSceneToView(scene_pos)
            row = view.row_at(pos.x(), pos.y())
        if row != self.row:
            self.row = row
            view.hovered.emit(row)
        if row < 0:
            self.card.hide()
            return
        pixmap = None
        if view.thumbnail_provider is not None:
            try:
                pixmap = view.thumbnail_provider(row)
            except Exception:  # a broken image must not break hovering
                pixmap = None
        view_pos = view.plot.mapFromScene(scene_pos)
        global_pos = view.plot.viewport().mapToGlobal(view_pos) + QPointF(16, 16).toPoint()
        self.card.show_row(pixmap, self.text(row), global_pos)

    def text(self, row: int) -> str:
        """The card's text: the owner's ``hover_text_provider``, else id, label, λ, edited."""
        view = self.view
        if view.hover_text_provider is not None:
            return view.hover_text_provider(row)
        table = view.table
        rec = table.iloc[row]
        label = int(rec["label"])
        classes = view._classes
        name = classes[label] if label < len(classes) else str(label)
        text = f"{rec['sample_id']}\n{name}"
        if not view.session.is_dataset_row(row):
            text += " (predicted)"
        if "lambda" in table and np.isfinite(rec["lambda"]):
            text += f" · λ {rec['lambda']:.2f}"
        if bool(view.session.flag("edited")[row]):
            text += " · edited"
        return text

    def eventFilter(self, obj, event):  # noqa: N802
        if event.type() == QEvent.Type.Leave:
            self._scene_pos = None
            self._timer.stop()
            self.card.hide()
            if self.row != -1:
                self.row = -1
                self.view.hovered.emit(-1)
        return super().eventFilter(obj, event)
