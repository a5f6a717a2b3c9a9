"""The map: every sample as a point (valence-arousal, UMAP or feature map), coloured by λ,
label, prediction or entropy; box/lasso selection into the shared SelectionModel.

Speed (bench/gui_scale.py, 300k points): all points live in ONE ``PaletteScatterItem``, a
``pg.ScatterPlotItem`` whose per-point brush is an index into a small palette of prebuilt
QBrush objects.  The stock ``setData``/``setBrush`` resolve every point's style in a Python
loop (≈0.5–0.9 s for 300k points); this subclass fills the item's record array with numpy
and paints through pyqtgraph's symbol atlas (one ``drawPixmapFragments`` call), leaving out
the points that later opaque points paint over completely (pixel-identical, ~4 in 5 at 300k)
and caching the fragments between repaints.  A selection is shown by fading the other points
(a faded twin of every palette brush) and drawing the selected ones on top — only the codes
change, whatever the selection's size; small selections also get a ring per point.  The
current sample and edited marks are separate small items on top.  Points map back to table
rows through index arrays (``_shown_rows``), not per-point objects.
"""
from __future__ import annotations

import sys
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QBrush, QColor, QPainter, QPainterPath, QPen, QPixmap, QTransform
from PySide6.QtWidgets import (
    QButtonGroup, QComboBox, QFrame, QGraphicsPathItem, QGraphicsRectItem, QHBoxLayout, QLabel,
    QPushButton, QSizePolicy, QSpinBox, QToolButton, QVBoxLayout, QWidget,
)

from uldl_studio.core.selection import (
    AllSelection, BoxSelection, PolygonSelection, RangeSelection, Selection, ValueSelection,
)
from uldl_studio.qt import palette
from uldl_studio.qt.selection_model import SelectionModel

_LITTLE_ENDIAN = sys.byteorder == "little"
debug_warn_on_exception = pg.debug.warnOnException  # an exception in paint() must not crash

COLOR_MODES = ("lambda", "given", "predicted", "entropy", "lambda_change")
COLOR_MODE_LABELS = {
    "lambda": "λ (uncertainty)", "given": "given label", "predicted": "predicted label",
    "entropy": "entropy of d", "lambda_change": "λ change since last run",
}
COORDINATE_MODES = ("va", "umap", "features")
COORDINATE_LABELS = {"va": "valence-arousal", "umap": "UMAP of features", "features": "feature map"}
AXIS_LABELS = {"va": ("valence", "arousal"), "umap": ("UMAP 1", "UMAP 2"),
               "features": ("feature map x", "feature map y")}
INTERACTION_MODES = ("select", "lasso", "pan")


# ---------------------------------------------------------------------------------------
def _window(src: np.ndarray, length: int, axis: int, op, forward: bool) -> np.ndarray:
    """``op`` over a window of ``length`` along ``axis``: ``out[c] = op(src[c-length+1..c])``
    (``forward``: ``src[c..c+length-1]``), in log steps with two buffers (no overlap copies).
    Entries whose window leaves the array use the part inside it."""
    a = src
    b = np.empty_like(src)
    k = 1
    while k < length:
        sh = min(k, length - k)
        lo = (slice(None),) * axis + (slice(None, -sh),)
        hi = (slice(None),) * axis + (slice(sh, None),)
        if forward:
            op(a[lo], a[hi], out=b[lo])
            b[hi[:axis] + (slice(-sh, None),)] = a[hi[:axis] + (slice(-sh, None),)]
        else:
            op(a[hi], a[lo], out=b[hi])
            b[lo[:axis] + (slice(None, sh),)] = a[lo[:axis] + (slice(None, sh),)]
        if a is src:
            a, b = b, np.empty_like(src)
        else:
            a, b = b, a
        k += sh
    return a


def occlusion_cull(gx: np.ndarray, gy: np.ndarray, order: np.ndarray, occludes: np.ndarray,
                   core_rows: Sequence[tuple[int, int, int]], w: int, h: int,
                   gw: int, gh: int) -> np.ndarray:
    """The points of ``order`` that stay visible when sprites are drawn in ``order``.

    Point ``order[k]`` has its ``w``×``h`` sprite's top-left pixel at ``(gx[k], gy[k])`` of
    a ``gw``×``gh`` grid (sprites must lie inside it) and is drawn after every point before
    it.  Its sprite is *hidden* when every pixel of its bounding box is covered by the
    fully opaque core (``core_rows``: ``(dy, dx0, length)`` runs of alpha-255 pixels) of a
    point drawn later with ``occludes`` set: source-over with alpha 255 replaces a pixel,
    so dropping hidden points changes no pixel of the picture.  Pure numpy: an image of
    "the last point whose core covers this pixel" built with max filters, then a min
    filter over the bounding box.  Returns the kept entries of ``order``, in order.
    """
    lin = gy.astype(np.int64) * gw + gx
    rank = np.arange(order.size, dtype=np.int32)
    last = np.full(gh * gw, -1, dtype=np.int32)
    occ = np.flatnonzero(occludes)
    np.maximum.at(last, lin[occ], rank[occ])  # the last occluder at each top-left pixel
    last = last.reshape(gh, gw)
    covered = np.full_like(last, -1)  # rank of the last point whose core covers the pixel
    runs: dict[int, np.ndarray] = {}
    for dy, dx0, length in core_rows:
        if length not in runs:
            runs[length] = _window(last, length, 1, np.maximum, forward=False)
        src = runs[length]
        np.maximum(covered[dy:, dx0:], src[:gh - dy, :gw - dx0], out=covered[dy:, dx0:])
    del runs, last
    # min over each sprite's bounding box, stored at its top-left pixel
    covered = _window(_window(covered, w, 1, np.minimum, forward=True), h, 0, np.minimum,
                      forward=True)
    hidden = covered.ravel()[lin] > rank
    return order[~hidden]


class PaletteScatterItem(pg.ScatterPlotItem):
    """A ScatterPlotItem whose per-point brush is a code into a palette, set with numpy.

    ``set_points(x, y, codes)`` / ``set_codes(codes)`` replace ``setData``/``setBrush`` for
    large point counts.  The symbol, size and pen are shared (``opts``); bounds and the
    symbol atlas are pyqtgraph's own.

    Painting is pyqtgraph's atlas path (one ``QPainter.drawPixmapFragments`` call) with two
    savings: the fragment array is built with numpy from the codes and cached until the
    points, colours or view change (repaints for hover, the current-sample marker or a
    gesture outline reuse it), and, with many points, points whose sprite is completely
    painted over by later opaque sprites are left out (``occlusion_cull``; at 300k points in
    a 1000×700 map about 4 in 5 are).  The result is pixel-identical to drawing every point
    (``tests/qt/test_map_view.py`` compares them).
    """

    #: below this many points in view, skipping hidden points costs more than it saves
    OCCLUSION_MIN_POINTS = 20_000
    # class defaults: pyqtgraph's __init__ calls clear()/updateSpots() before ours runs
    _version = 0
    _codes: np.ndarray | None = None
    _rects_stale = False
    _buffer: np.ndarray | None = None
    _spot_items = False
    _on_top: np.ndarray | None = None
    _x = _y = np.empty(0)

    def __init__(self, brushes: Sequence[QBrush] = (), *, size: float = 5, pen=None,
                 symbol: str = "o") -> None:
        super().__init__(pxMode=True, useCache=True, size=size, pen=pen, symbol=symbol,
                         hoverable=False)
        self._palette = np.empty(0, dtype=object)
        self._codes: np.ndarray | None = None
        self._rects = np.zeros((0, 4), dtype=np.int64)  # atlas rect (x, y, w, h) per code
        self._rects_stale = False  # data["sourceRect"] not yet filled from the codes
        self._version = 0
        self._frag_key = None
        self._frags = pg.Qt.internals.PrimitiveArray(QPainter.PixmapFragment, 10)
        self._sprite_key = None
        self._sprite_info = None
        #: what the last paint drew: {"points", "in_view", "drawn"} (for tests and benches)
        self.paint_stats: dict[str, int] = {}
        self.set_palette(brushes or [QBrush(QColor(100, 100, 150))])

    def set_palette(self, brushes: Sequence[QBrush], update: bool = True) -> None:
        pal = np.empty(len(brushes), dtype=object)
        pal[:] = list(brushes)
        self._palette = pal
        if update and self._codes is not None and len(self.data):
            self.data["brush"] = self._palette[self._codes]
            self.updateSpots()

    def set_points(self, x: np.ndarray, y: np.ndarray, codes: np.ndarray | None = None,
                   brushes: Sequence[QBrush] | None = None, *, on_top: np.ndarray | None = None,
                   same_bounds: bool = False) -> None:
        """Replace all points; ``codes`` index the palette (``brushes`` replaces it first).

        Points are drawn in order, except that those with ``on_top`` set (bool per point)
        are drawn after all others.  ``same_bounds=True``: the points are the previous ones
        in another order, so the view's auto-range need not be told.
        """
        if brushes is not None:
            self.set_palette(brushes, update=False)
        n = len(x)
        codes = np.zeros(n, dtype=np.intp) if codes is None else np.asarray(codes, dtype=np.intp)
        same_bounds = same_bounds and len(self.data) == n
        data = self._record_array(n)
        self._x = np.ascontiguousarray(x, dtype=np.float64)
        self._y = np.ascontiguousarray(y, dtype=np.float64)
        data["x"] = self._x
        data["y"] = self._y
        data["brush"] = self._palette[codes]
        self.data = data
        self._codes = codes
        self._on_top = self._check_on_top(on_top, n)
        if not same_bounds:
            self.prepareGeometryChange()
            self.informViewBoundsChanged()
            self.bounds = [None, None]
        self.updateSpots(keep_bounds=same_bounds)
        if not same_bounds:
            self.sigPlotChanged.emit(self)

    @staticmethod
    def _check_on_top(on_top, n: int) -> np.ndarray | None:
        if on_top is None:
            return None
        on_top = np.asarray(on_top, dtype=bool)
        if on_top.shape != (n,):
            raise ValueError(f"on_top must have one flag per point ({n}), got {on_top.shape}")
        return on_top if on_top.any() and not on_top.all() else None

    def _record_array(self, n: int) -> np.ndarray:
        """pyqtgraph's per-point record array: a view of a buffer kept for reuse.

        Creating one costs ~10 ms for 300k points (``np.empty`` of this dtype sets the
        object fields to None one by one, ~0.2 s; zeros + a None fill per field is what we
        do), so a buffer at least ``n`` long is reused: filters and reloads then only
        overwrite fields.  The object fields mean "use opts" (None) and are reset.
        """
        buf = self._buffer
        if buf is None or len(buf) < n:
            buf = np.zeros(n, dtype=self.data.dtype)
            for name in ("symbol", "pen", "brush", "data", "item"):
                buf[name] = None
            buf["size"] = -1
            buf["visible"] = True
            self._buffer = buf
            return buf[:n]
        data = buf[:n]
        if self._spot_items:
            self._buffer["item"][...] = None  # drop SpotItems that point at old values
            self._spot_items = False
        return data

    def points(self):
        """pyqtgraph's SpotItems (made on demand; the record buffer then resets them)."""
        self._spot_items = True
        self._ensure_source_rects()
        return super().points()

    def set_codes(self, codes: np.ndarray, on_top: np.ndarray | None = None) -> None:
        """New palette codes (and on-top flags) for the same points in the same order."""
        codes = np.asarray(codes, dtype=np.intp)
        if len(codes) != len(self.data):
            raise ValueError(f"{len(codes)} colour codes for {len(self.data)} points")
        self._codes = codes
        self._on_top = self._check_on_top(on_top, len(codes))
        self.data["brush"] = self._palette[codes]
        self.updateSpots(keep_bounds=True)

    def on_top(self) -> np.ndarray | None:
        return self._on_top

    def codes(self) -> np.ndarray | None:
        return self._codes

    def clear(self) -> None:
        self._codes = None
        self._on_top = None
        self._x = self._y = np.empty(0)
        self._version += 1
        super().clear()

    def _palette_rects(self) -> np.ndarray:
        styles = [(self.opts["symbol"], self.opts["size"], self.opts["pen"], brush)
                  for brush in self._palette]
        coords = self.fragmentAtlas[styles]
        return np.array([tuple(c) for c in coords], dtype=self.data.dtype["sourceRect"])

    def _vectorised(self) -> bool:
        return (self._codes is not None and len(self._codes) == len(self.data) == len(self._x)
                and self.opts["pxMode"] and self.opts["useCache"])

    def updateSpots(self, dataSet=None, keep_bounds: bool = False) -> None:  # noqa: N802
        """pyqtgraph's name; vectorised: one atlas rect per palette code, no per-point work.

        ``keep_bounds``: same coordinates as before, so the cached data bounds stay valid
        (recomputing them is a nanmin/nanmax over every point per axis)."""
        self._version += 1
        if not (self._vectorised() and (dataSet is None or dataSet is self.data)):
            super().updateSpots(dataSet)
            return
        rects = self._palette_rects()
        self._rects = np.stack([rects[k] for k in ("x", "y", "w", "h")], axis=1).astype(np.int64)
        self._rects_stale = True  # per-point rects only for pyqtgraph's own code paths
        bounds, spot_width = list(self.bounds), self._maxSpotWidth
        self._updateMaxSpotSizes()
        if keep_bounds and self._maxSpotWidth == spot_width:
            self.bounds = bounds
        self.invalidate()

    def _ensure_source_rects(self) -> None:
        if self._rects_stale and self._vectorised():
            if len(self.data):
                rects = self._rects[self._codes]
                src = self.data["sourceRect"]
                for i, k in enumerate(("x", "y", "w", "h")):
                    src[k] = rects[:, i]
            self._rects_stale = False

    def _maskAt(self, obj):  # noqa: N802 (pyqtgraph name; pointsAt etc.)
        self._ensure_source_rects()
        return super()._maskAt(obj)

    def _sprites(self, used: np.ndarray):
        """(w, h, core_rows, opaque-per-code) of the atlas sprites, or None (no culling).

        ``core_rows`` are the alpha-255 runs shared by every opaque code's sprite.
        """
        atlas = self.fragmentAtlas.pixmap
        key = (atlas.cacheKey(), self._rects.tobytes(), used.tobytes())
        if key == self._sprite_key:
            return self._sprite_info
        info = None
        rects = self._rects[used]
        if rects.size and (rects[:, 2] == rects[0, 2]).all() and (rects[:, 3] == rects[0, 3]).all():
            from PySide6.QtGui import QImage

            img = atlas.toImage().convertToFormat(QImage.Format.Format_ARGB32_Premultiplied)
            alpha = np.frombuffer(img.constBits(), np.uint8).reshape(
                img.height(), img.bytesPerLine() // 4, 4)[..., 3 if _LITTLE_ENDIAN else 0]
            w, h = int(rects[0, 2]), int(rects[0, 3])
            opaque = np.zeros(len(self._rects), dtype=bool)
            core = np.ones((h, w), dtype=bool)
            for code in np.flatnonzero(used):
                x0, y0 = self._rects[code, :2]
                full = alpha[y0:y0 + h, x0:x0 + w] == 255
                if full.any():
                    opaque[code] = True
                    core &= full
            rows = []
            for dy in range(h):
                cols = np.flatnonzero(core[dy])
                if cols.size:  # longest contiguous run of the row
                    breaks = np.flatnonzero(np.diff(cols) > 1)
                    starts = np.r_[0, breaks + 1]
                    stops = np.r_[breaks, cols.size - 1]
                    j = int(np.argmax(stops - starts))
                    rows.append((dy, int(cols[starts[j]]), int(stops[j] - starts[j] + 1)))
            if rows and opaque.any():
                info = (w, h, rows, opaque)
        self._sprite_key, self._sprite_info = key, info
        return info

    @debug_warn_on_exception
    def paint(self, p, option, widget):
        if (not self._vectorised() or self._exportOpts is not False or widget is None
                or p.transform().type() == QTransform.TransformationType.TxProject):
            self._ensure_source_rects()
            super().paint(p, option, widget)
            return
        cmode = self.opts.get("compositionMode", None)
        if cmode is not None:
            p.setCompositionMode(cmode)
        dpr = widget.devicePixelRatioF()
        if dpr != self.fragmentAtlas.devicePixelRatio():
            self.fragmentAtlas.setDevicePixelRatio(dpr)
            self.fragmentAtlas.clear()
            self.updateSpots()
        tr = p.transform()
        width, height = widget.width(), widget.height()
        cull = (cmode is None and dpr == 1.0
                and not p.testRenderHint(QPainter.RenderHint.Antialiasing)
                and not p.testRenderHint(QPainter.RenderHint.SmoothPixmapTransform))
        key = (self._version, tr.m11(), tr.m12(), tr.m21(), tr.m22(), tr.dx(), tr.dy(),
               width, height, dpr, cull)
        if key != self._frag_key:
            self._build_fragments(tr, width, height, dpr, cull)
            self._frag_key = key
        if self._frags.ndarray().shape[0]:
            p.resetTransform()
            p.drawPixmapFragments(*self._frags.drawargs(), self.fragmentAtlas.pixmap)

    def _build_fragments(self, tr, width: int, height: int, dpr: float, cull: bool) -> None:
        codes = self._codes
        px = self._x * tr.m11()
        if tr.m21():
            px += self._y * tr.m21()
        px += tr.dx()
        py = self._y * tr.m22()
        if tr.m12():
            py += self._x * tr.m12()
        py += tr.dy()
        # the largest sprite decides what may touch the viewport (NaN is never in view)
        half_w = (self._rects[:, 2].max() if len(self._rects) else 0) / (2 * dpr)
        half_h = (self._rects[:, 3].max() if len(self._rects) else 0) / (2 * dpr)
        with np.errstate(invalid="ignore"):
            in_view = (px > -half_w) & (px < width + half_w)
            in_view &= (py > -half_h) & (py < height + half_h)
        if self._on_top is None:
            order = np.flatnonzero(in_view)
        else:  # the flagged points last, each group in its own order
            order = np.concatenate([np.flatnonzero(in_view & ~self._on_top),
                                    np.flatnonzero(in_view & self._on_top)])
        n_view = order.size
        if cull and order.size >= self.OCCLUSION_MIN_POINTS:
            view_codes = codes[order]
            used = np.bincount(view_codes, minlength=len(self._rects)) > 0
            sprites = self._sprites(used)
            if sprites is not None:
                w, h, rows, opaque = sprites
                # where Qt's raster engine puts the sprite: the rect's corner, rounded; in a
                # grid with a sprite-sized margin (in view: > 0, so truncation = floor)
                gx = (px[order] + (w / 2 + 0.5)).astype(np.int32)
                gy = (py[order] + (h / 2 + 0.5)).astype(np.int32)
                order = occlusion_cull(gx, gy, order, opaque[view_codes], rows,
                                       w, h, width + 2 * w, height + 2 * h)
        self._frags.resize(order.size)
        frags = self._frags.ndarray()
        frags[:, 0] = px[order]
        frags[:, 1] = py[order]
        per_code = np.empty((len(self._rects), 8))  # sx, sy, sw, sh, scaleX, scaleY, rotation, opacity
        per_code[:, :4] = self._rects
        per_code[:, 4:] = (1 / dpr, 1 / dpr, 0.0, 1.0)
        frags[:, 2:10] = per_code[codes[order]]
        self.paint_stats = {"points": len(self.data), "in_view": int(n_view),
                            "drawn": int(order.size)}


# ---------------------------------------------------------------------------------------
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
def _entropy(dist: np.ndarray) -> np.ndarray:
    """Entropy of each row of a distribution matrix, normalised to [0, 1] by log(m)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(dist > 0, dist * np.log(np.where(dist > 0, dist, 1.0)), 0.0)
    m = dist.shape[1]
    return -terms.sum(axis=1) / (np.log(m) if m > 1 else 1.0)


class MapView(QWidget):
    """Scatter map of all samples, linked to a ``SelectionModel``.

    Args:
        selection_model: shared selection (one is created when None).
        parent: Qt parent.
        show_controls: show the built-in bar (interaction mode, coordinates, colour, size).

    Attributes the owner sets:
        thumbnail_provider: ``callable(row) -> QPixmap | None`` for the hover card.
        hover_text_provider: ``callable(row) -> str`` (default: id, label, λ).

    Signals:
        filterChanged(object, object): (classes set | None, (lo, hi) | None), also when the
            banner's clear button is pressed.
        colorModeChanged(str), coordinatesChanged(str)
        coordinatesRequested(str): the user asked for a map with no coordinates yet (e.g.
            "umap"): compute it off the GUI thread and call ``set_coordinates(mode, xy)``.
        hovered(int): row under the mouse (-1 when none), throttled to 50 ms.
        gestureSelected(object): the ``core.selection.Selection`` a box/lasso gesture made
            (in table columns), after it was applied to the selection model.
    """

    #: selections up to this size also get a ring per point (larger ones: colour only)
    RING_LIMIT = 5000

    filterChanged = Signal(object, object)
    colorModeChanged = Signal(str)
    coordinatesChanged = Signal(str)
    coordinatesRequested = Signal(str)
    hovered = Signal(int)
    gestureSelected = Signal(object)

    def __init__(self, selection_model: SelectionModel | None = None, parent: QWidget | None = None,
                 *, show_controls: bool = True) -> None:
        super().__init__(parent)
        self.selection_model = selection_model if selection_model is not None else SelectionModel(self)
        self.thumbnail_provider: Callable[[int], QPixmap | None] | None = None
        self.hover_text_provider: Callable[[int], str] | None = None

        self._table: pd.DataFrame | None = None
        self._classes: list[str] = []
        self._coord_mode = "va"
        self._provided_xy: dict[str, np.ndarray] = {}
        self._xy = np.empty((0, 2))
        self._color_mode = "given"
        self._point_size = 5.0
        self._filter_classes: frozenset[int] | None = None
        self._filter_lambda: tuple[float, float] | None = None
        self._edited = np.zeros(0, dtype=bool)
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
        self.selection_model.selectionChanged.connect(self._update_selection_marks)
        self.selection_model.currentChanged.connect(self._update_current_mark)

    # -- construction ------------------------------------------------------------------
    def _build_ui(self, show_controls: bool) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)

        self.controls = QWidget(self)
        bar = QHBoxLayout(self.controls)
        bar.setContentsMargins(4, 2, 4, 2)
        self._mode_buttons = QButtonGroup(self)
        for mode, text, tip in (("select", "Box", "Drag to select a box (Shift adds, Alt removes)"),
                                ("lasso", "Lasso", "Drag to draw a lasso (Shift adds, Alt removes)"),
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
        fit = QToolButton(self.controls)
        fit.setText("Fit")
        fit.setToolTip("Show all points")
        fit.clicked.connect(self.reset_view)
        bar.addWidget(fit)
        bar.addSpacing(8)
        self.coord_combo = QComboBox(self.controls)
        for mode in COORDINATE_MODES:
            self.coord_combo.addItem(COORDINATE_LABELS[mode], mode)
        self.coord_combo.activated.connect(
            lambda i: self.set_coordinates(self.coord_combo.itemData(i)))
        bar.addWidget(QLabel("Map:", self.controls))
        bar.addWidget(self.coord_combo)
        self.color_combo = QComboBox(self.controls)
        for mode in COLOR_MODES:
            self.color_combo.addItem(COLOR_MODE_LABELS[mode], mode)
        self.color_combo.activated.connect(
            lambda i: self.set_color_mode(self.color_combo.itemData(i)))
        bar.addWidget(QLabel("Colour:", self.controls))
        bar.addWidget(self.color_combo)
        self.size_spin = QSpinBox(self.controls)
        self.size_spin.setRange(1, 30)
        self.size_spin.setValue(int(self._point_size))
        self.size_spin.setSuffix(" px")
        self.size_spin.setToolTip("Point size")
        self.size_spin.valueChanged.connect(lambda v: self.set_point_size(v))
        bar.addWidget(self.size_spin)
        bar.addStretch(1)
        self.info_label = QLabel(self.controls)
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
        self.banner_clear.clicked.connect(self.clear_filter)
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
        return self._table

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

    def set_table(self, table: pd.DataFrame | None) -> None:
        """Show a new table (other rows): resets coordinates given earlier and the view.

        The owner resets the shared selection model (``selection_model.reset(len(table))``).
        """
        self._table = table
        self._classes = list(table.attrs.get("classes", [])) if table is not None else []
        self._provided_xy.clear()
        n = 0 if table is None else len(table)
        self._edited = self._edited_column(table, n)
        if self._filter_classes is not None or self._filter_lambda is not None:
            self._filter_classes, self._filter_lambda = None, None
            self.filterChanged.emit(None, None)
        if table is not None and self._coord_mode != "va" and not self._has_coordinates(self._coord_mode):
            self._coord_mode = "va"
        if table is not None and self._coord_mode == "va" and not self._has_coordinates("va"):
            if self._has_coordinates("features"):
                self._coord_mode = "features"
        if table is not None and not self._mode_available(self._color_mode):
            self._color_mode = "given"
        self._sync_controls()
        self._rebuild(reset_view=True)

    def refresh_values(self, table: pd.DataFrame) -> None:
        """Same rows, new values (λ, d, p, x2d/y2d, edits): recolour, keep the view."""
        if self._table is None or len(table) != len(self._table):
            self.set_table(table)
            return
        self._table = table
        self._classes = list(table.attrs.get("classes", self._classes))
        if "edited" in table:
            self._edited = self._edited_column(table, len(table))
        if not self._mode_available(self._color_mode):
            self._color_mode = "given"
        self._sync_controls()
        self._rebuild(reset_view=False)

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
        """Colour by "lambda", "given", "predicted", "entropy" (of d) or "lambda_change".

        A mode whose columns are missing (no training results yet) draws grey points.
        """
        if mode not in COLOR_MODES:
            raise ValueError(f"unknown colour mode {mode!r}; expected one of {COLOR_MODES}")
        if mode == self._color_mode:
            return
        self._color_mode = mode
        self._sync_controls()
        self._recolor(same_points=True)
        self.colorModeChanged.emit(mode)

    def available_color_modes(self) -> list[str]:
        return [m for m in COLOR_MODES if self._mode_available(m)]

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

    def set_filter(self, classes: set[int] | None = None,
                   lambda_range: tuple[float, float] | None = None) -> None:
        """Hide points outside ``classes`` (given labels) / outside ``lambda_range``.

        While a filter is active a banner says what it hides, with a button to clear it.
        """
        fc = None if classes is None else frozenset(int(c) for c in classes)
        fl = None if lambda_range is None else (float(min(lambda_range)), float(max(lambda_range)))
        if fc == self._filter_classes and fl == self._filter_lambda:
            return
        self._filter_classes, self._filter_lambda = fc, fl
        self._rebuild(reset_view=False)
        self.filterChanged.emit(None if fc is None else set(fc), fl)

    @Slot()
    def clear_filter(self) -> None:
        self.set_filter(None, None)

    def filter_selection(self) -> Selection:
        """The active filter as a core predicate over the table."""
        sel: Selection = AllSelection()
        if self._filter_classes is not None:
            sel = sel & ValueSelection("label", sorted(self._filter_classes))
        if self._filter_lambda is not None and self._table is not None and "lambda" in self._table:
            sel = sel & RangeSelection("lambda", *self._filter_lambda)
        return sel

    def banner_text(self) -> str:
        return self.banner_label.text() if self.banner.isVisibleTo(self) else ""

    def set_edited(self, mask: np.ndarray | None) -> None:
        """Rows the annotator relabelled (bool mask over the table, or row indices)."""
        n = 0 if self._table is None else len(self._table)
        if mask is None:
            self._edited = np.zeros(n, dtype=bool)
        else:
            arr = np.asarray(mask)
            if arr.dtype != bool:
                out = np.zeros(n, dtype=bool)
                out[arr.astype(np.int64)] = True
                arr = out
            self._edited = arr[:n] if len(arr) >= n else np.r_[arr, np.zeros(n - len(arr), bool)]
        self._update_edited_marks()

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
    @staticmethod
    def _edited_column(table, n: int) -> np.ndarray:
        if table is None or "edited" not in table:
            return np.zeros(n, dtype=bool)
        return table["edited"].fillna(False).to_numpy(dtype=bool)

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
        if table is None:
            return mode == "given"
        if mode == "given":
            return True
        if mode == "lambda":
            return "lambda" in table
        if mode == "lambda_change":
            return "lambda" in table and "lambda_prev" in table
        prefix = "d_" if mode == "entropy" else "p_"
        return bool(self._classes) and all(f"{prefix}{c}" in table for c in self._classes)

    def _color_codes(self) -> tuple[np.ndarray, list[QBrush], str]:
        """Colour code per table row, the palette, and "continuous"/"categorical"."""
        table, mode = self._table, self._color_mode
        n = len(table)
        if mode in ("given", "predicted"):
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
        brushes = palette.colormap_brushes(COLOR_CMAP[mode]) + [palette.missing_brush()]
        if not self._mode_available(mode):
            values, lo, hi = np.full(n, np.nan), 0.0, 1.0
        elif mode == "lambda":
            values = table["lambda"].to_numpy(np.float64)
            lo, hi = _spread_range(values, floor=0.0, ceiling=1.0)
        elif mode == "lambda_change":
            values = table["lambda"].to_numpy(np.float64) - table["lambda_prev"].to_numpy(np.float64)
            finite = np.abs(values[np.isfinite(values)])
            span = float(np.quantile(finite, 0.99)) if finite.size else 0.1
            span = max(span, 0.02)
            lo, hi = -span, span
        else:
            dist = table[[f"d_{c}" for c in self._classes]].to_numpy(np.float64)
            values, lo, hi = _entropy(dist), 0.0, 1.0
        self._value_range = (lo, hi)
        return palette.bin_values(values, lo, hi), brushes, "continuous"

    def _compute_shown(self) -> None:
        table = self._table
        finite = np.isfinite(self._xy).all(axis=1)
        keep = finite & self.filter_selection().mask(table)
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
            # most uncertain on top: draw in increasing colour value (missing first)
            key = np.where(shown_codes == missing, -1, shown_codes).astype(np.int16)
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
        if not len(self.selection_model) or self._table is None or self._shown_rows.size == 0:
            return None
        mask = self.selection_model.mask(len(self._table))[self._shown_rows]
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
            self.legend.hide()
            mode = self._color_mode
            self.colorbar.setColorMap(palette.colormap(COLOR_CMAP[mode]))
            lo, hi = getattr(self, "_value_range", (0.0, 1.0))
            self.colorbar.setLevels((lo, hi))
            label = {"lambda": "λ (high = uncertain label)", "entropy": "entropy of d (normalised)",
                     "lambda_change": "λ − λ of previous run"}[mode]
            self.colorbar.axis.setLabel(label)
            self._show_colorbar(True)

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
        rows = self.selection_model.selected
        if redraw_points and self._table is not None and (self._dimmed or len(rows)):
            self._draw_points()
        if rows.size > self.RING_LIMIT:
            xy = np.empty((0, 2))
        else:
            xy = self._shown_subset(rows)
        if xy.shape[0] or len(self.selection_marks.data):
            self.selection_marks.set_points(xy[:, 0], xy[:, 1])
        self._update_info()

    def _update_edited_marks(self) -> None:
        rows = np.flatnonzero(self._edited) if self._edited.size else np.empty(0, np.int64)
        xy = self._shown_subset(rows.astype(np.int64))
        self.edited_marks.set_points(xy[:, 0], xy[:, 1])

    @Slot(int)
    def _update_current_mark(self, *_args) -> None:
        row = self.selection_model.current
        xy = self._shown_subset(np.array([row], dtype=np.int64)) if row >= 0 else np.empty((0, 2))
        self.current_mark.setData(xy[:, 0], xy[:, 1])
        self.current_mark_inner.setData(xy[:, 0], xy[:, 1])

    def _update_banner(self) -> None:
        if self._table is None or (self._filter_classes is None and self._filter_lambda is None):
            self.banner.hide()
            return
        parts = []
        if self._filter_classes is not None:
            names = [self._classes[c] if 0 <= c < len(self._classes) else str(c)
                     for c in sorted(self._filter_classes)]
            parts.append(", ".join(names) if names else "no classes")
        if self._filter_lambda is not None:
            lo, hi = self._filter_lambda
            parts.append(f"λ {lo:.1f}–{hi:.1f}" if round(lo, 1) == lo and round(hi, 1) == hi
                         else f"λ {lo:.2f}–{hi:.2f}")
        parts.append(f"{self._shown_rows.size:,} of {len(self._table):,} shown")
        self.banner_label.setText("Filtered: " + " · ".join(parts))
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
        k = len(self.selection_model)
        if k:
            text += f" · {k:,} selected"
        self.info_label.setText(text)

    def _sync_controls(self) -> None:
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
    @staticmethod
    def _mode_from_modifiers(modifiers) -> str:
        if modifiers & Qt.KeyboardModifier.AltModifier:
            return "remove"
        if modifiers & Qt.KeyboardModifier.ShiftModifier:
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
        self.selection_model.set_selection(rows, mode, text=f"{verb}: {rows.size:,} samples")
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

    def _gesture_click(self, ev) -> None:
        pos = self.view_box.mapToView(ev.pos())
        row = self.row_at(pos.x(), pos.y())
        if row < 0:
            return
        mode = self._mode_from_modifiers(ev.modifiers())
        if mode != "replace":
            self.selection_model.set_selection([row], mode, text=f"Click select ({mode})")
        self.selection_model.set_current(row)

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
        if self._edited.size > row and self._edited[row]:
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


def _spread_range(values: np.ndarray, floor: float, ceiling: float, min_span: float = 0.05) -> tuple[float, float]:
    """Colour range covering the 1st–99th percentile of the finite values.

    λ often lives in a narrow band (e.g. 0.15–0.5); a fixed 0–1 scale would paint every point
    the same colour, so the scale follows the data and the colour bar shows the real values.
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return floor, ceiling
    lo, hi = (float(q) for q in np.quantile(finite, (0.01, 0.99)))
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    return max(floor, lo), min(ceiling, hi)


COLOR_CMAP = {"lambda": "lambda", "entropy": "entropy", "lambda_change": "lambda_change"}
