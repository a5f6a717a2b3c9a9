"""Mouse gestures on the map: box and lasso selection, click picking, and the modifier keys
(Shift adds, Ctrl+Shift or Alt removes, as does the Subtract button).

Also the fast point-in-polygon test the lasso uses on many points (``polygon_mask``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsRectItem

from uldl_studio.core.review.selection import points_in_polygon
from uldl_studio.qt import palette

if TYPE_CHECKING:
    from uldl_studio.qt.map_view import MapView

INTERACTION_MODES = ("select", "lasso", "pan")


class MapViewBox(pg.ViewBox):
    """Left drag = box/lasso gesture (or pan in pan mode), right/middle drag = pan."""

    def __init__(self) -> None:
        super().__init__(defaultPadding=0.03, enableMenu=True)
        self.gestures: GestureTool | None = None
        self.interaction = "select"
        self.setMouseMode(pg.ViewBox.PanMode)

    def mouseDragEvent(self, ev, axis=None):  # noqa: N802
        if (axis is None and ev.button() == Qt.MouseButton.LeftButton and self.interaction != "pan"
                and self.gestures is not None):
            ev.accept()
            self.gestures.drag(ev)
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
        if ev.button() == Qt.MouseButton.LeftButton and self.gestures is not None:
            ev.accept()
            self.gestures.click(ev)
            return
        super().mouseClickEvent(ev)


class GestureTool:
    """Turns drags and clicks in ``view``'s view box into selections and picks."""

    def __init__(self, view: "MapView") -> None:
        self.view = view
        self.view_box: MapViewBox = view.view_box
        self.view_box.gestures = self
        self._points: list[QPointF] = []
        pen = QPen(QColor(*palette.HIGHLIGHT_RGB), 1.5, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self.box_item = QGraphicsRectItem()
        self.lasso_item = QGraphicsPathItem()
        for item in (self.box_item, self.lasso_item):
            item.setPen(pen)
            item.setBrush(QBrush(QColor(255, 40, 40, 30)))
            item.setZValue(10)
            item.hide()
            self.view_box.addItem(item, ignoreBounds=True)

    def mode_from_modifiers(self, modifiers) -> str:
        """Shift adds; Ctrl+Shift (or Alt, where the window manager leaves it to the app)
        removes; so does any gesture while the Subtract button is down."""
        shift = bool(modifiers & Qt.KeyboardModifier.ShiftModifier)
        ctrl = bool(modifiers & Qt.KeyboardModifier.ControlModifier)
        if (self.view.subtract_button.isChecked() or (shift and ctrl)
                or modifiers & Qt.KeyboardModifier.AltModifier):
            return "remove"
        if shift:
            return "add"
        return "replace"

    def drag(self, ev) -> None:
        vb = self.view_box
        pos = vb.mapToView(ev.pos())
        lasso = vb.interaction == "lasso"
        if ev.isStart():
            self._points = [vb.mapToView(ev.buttonDownPos())]
            (self.lasso_item if lasso else self.box_item).show()
        if not self._points:  # a drag that started before a mode switch
            return
        self._points.append(pos)
        if lasso:
            path = QPainterPath(self._points[0])
            for p in self._points[1:]:
                path.lineTo(p)
            path.closeSubpath()
            self.lasso_item.setPath(path)
        else:
            self.box_item.setRect(QRectF(self._points[0], pos).normalized())
        if ev.isFinish():
            self.box_item.hide()
            self.lasso_item.hide()
            mode = self.mode_from_modifiers(ev.modifiers())
            points, self._points = self._points, []
            if lasso:
                self.view.select_polygon([(p.x(), p.y()) for p in points], mode)
            else:
                a, b = points[0], points[-1]
                self.view.select_box(a.x(), a.y(), b.x(), b.y(), mode)

    def click(self, ev) -> None:
        """The nearest point becomes current (Shift/Ctrl+Shift also add it to or remove it
        from the selection)."""
        view = self.view
        pos = self.view_box.mapToView(ev.pos())
        row = view.row_at(pos.x(), pos.y())
        if row < 0:
            return
        mode = self.mode_from_modifiers(ev.modifiers())
        if mode != "replace":
            view.session.select([row], mode)
        view.session.set_current(row)


def polygon_mask(x: np.ndarray, y: np.ndarray, vertices, cells: int = 256) -> np.ndarray:
    """``core.selection.points_in_polygon`` for many points, faster: the same result.

    The polygon's bounding box is cut into ``cells``² cells; a cell that no edge comes
    within half a cell of is wholly inside or outside, which its centre's test says.  Only
    the points in the cells along the edges (and in a thin strip past the box's right and
    top sides, where rounding could move a point) go through the exact test, so each point
    gets the exact predicate's answer, points on an edge included.
    """
    verts = np.asarray(vertices, dtype=np.float64).reshape(-1, 2)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(verts) < 3 or x.size < 50_000 or not np.isfinite(verts).all():
        return points_in_polygon(x, y, verts)
    (x0, y0), (x1, y1) = verts.min(axis=0), verts.max(axis=0)
    if not (x1 > x0 and y1 > y0):
        return points_in_polygon(x, y, verts)
    sx, sy = cells / (x1 - x0), cells / (y1 - y0)
    # a state per cell (0 outside, 1 inside, 2 exact test) with a border: the cells at
    # 2..cells+1, a strip one cell wide around them (exact: rounding may put points of the
    # box's sides there), then everything farther away (outside)
    size = cells + 4
    state = np.zeros((size, size), dtype=np.int8)
    state[1:-1, 1:-1] = 2
    centre = np.arange(cells) + 0.5
    cx, cy = np.meshgrid(x0 + centre / sx, y0 + centre / sy)
    state[2:-2, 2:-2] = points_in_polygon(cx.ravel(), cy.ravel(), verts).reshape(cells, cells)
    # edge cells: every edge in pieces no longer than half a cell, each piece's cells and
    # their neighbours (rounding never puts a point on the wrong side)
    a, b = verts, np.roll(verts, -1, axis=0)
    steps = np.maximum(1, np.ceil(2 * np.maximum(np.abs(b[:, 0] - a[:, 0]) * sx,
                                                 np.abs(b[:, 1] - a[:, 1]) * sy)).astype(np.int64))
    edge = np.repeat(np.arange(len(a)), steps + 1)
    t = (np.arange(edge.size) - np.repeat(np.cumsum(steps + 1) - (steps + 1), steps + 1)) / steps[edge]
    ex = np.floor((a[edge, 0] + t * (b[edge, 0] - a[edge, 0]) - x0) * sx).astype(np.int64) + 2
    ey = np.floor((a[edge, 1] + t * (b[edge, 1] - a[edge, 1]) - y0) * sy).astype(np.int64) + 2
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            state[np.clip(ey + dy, 1, size - 2), np.clip(ex + dx, 1, size - 2)] = 2
    with np.errstate(invalid="ignore"):  # NaN: any index, then clipped to the border
        i = (x * sx + (2.0 - x0 * sx)).astype(np.int32)
        j = (y * sy + (2.0 - y0 * sy)).astype(np.int32)
    np.clip(i, 0, size - 1, out=i)
    np.clip(j, 0, size - 1, out=j)
    j *= size
    j += i
    s = np.take(state.ravel(), j)
    out = s == 1
    exact = np.flatnonzero(s == 2)
    out[exact] = points_in_polygon(x[exact], y[exact], verts)
    return out
