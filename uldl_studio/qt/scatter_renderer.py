"""The map's point renderer: every sample in ONE ``pg.ScatterPlotItem`` whose per-point brush
is a code into a small palette of prebuilt QBrush objects.

The stock ``setData``/``setBrush`` resolve every point's style in a Python loop (≈0.5–0.9 s
for 300k points); ``PaletteScatterItem`` keeps the points in one fixed order, takes colour
codes and a drawing order as numpy arrays, and paints through pyqtgraph's symbol atlas (one
``drawPixmapFragments`` call).  Screen positions are cached per view transform, so a new
colouring or selection only reorders and culls; points that later opaque points paint over
completely are left out (pixel-identical; ``bench/gui_scale.py``).

It relies on pyqtgraph internals (the record array's fields, ``fragmentAtlas``,
``_maskAt``, ``_style``, ``_updateMaxSpotSizes``, ``Qt.internals.PrimitiveArray``):
pyproject.toml pins pyqtgraph to the versions this was checked against and
``PYQTGRAPH_TESTED`` names them; ``tests/qt/test_map_view.py`` compares the output with
pyqtgraph's own drawing.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QBrush, QColor, QPainter

from uldl_studio.qt.map_painting import FragmentPainter

#: the pyqtgraph releases whose internals PaletteScatterItem was checked against (>=, <)
PYQTGRAPH_TESTED = ("0.13.7", "0.15")


class PaletteScatterItem(FragmentPainter, pg.ScatterPlotItem):
    """A ScatterPlotItem whose per-point brush is a code into a palette, set with numpy.

    ``set_points(x, y, codes, order=...)`` / ``set_codes(codes, order=...)`` replace
    ``setData``/``setBrush`` for large point counts.  The points keep the order they were
    given (``data``, ``codes()`` and ``on_top()`` follow it); ``order`` says which of them
    are drawn, in which order.  The symbol, size and pen are shared (``opts``); the symbol atlas is
    pyqtgraph's own.

    Painting is pyqtgraph's atlas path (one ``QPainter.drawPixmapFragments`` call) with three
    savings: screen positions are cached per view transform; the fragment array is cached
    until the points, colours or view change (repaints for hover, the current-sample marker
    or a gesture outline reuse it); and, with many points, points whose sprite is completely
    painted over by later opaque sprites are left out (``occlusion_cull``; at 300k points in
    a 1000×700 map about 4 in 5 are).  The result is pixel-identical to drawing every point
    (``tests/qt/test_map_view.py`` compares them).
    """

    #: below this many points in view, skipping hidden points costs more than it saves
    OCCLUSION_MIN_POINTS = 20_000
    # class defaults: pyqtgraph's __init__ calls clear()/updateSpots() before ours runs
    _version = 0
    _pos_version = 0
    _order_version = 0
    _codes16: np.ndarray | None = None
    _drawn = None
    _codes: np.ndarray | None = None
    _order: np.ndarray | None = None
    _rects_stale = False
    _brushes_stale = False
    _buffer: np.ndarray | None = None
    _spot_items = False
    _on_top: np.ndarray | None = None
    _x = _y = np.empty(0)
    _screen = None
    _records: np.ndarray | None = None
    _xy_stale = False

    def __init__(self, brushes: Sequence[QBrush] = (), *, size: float = 5, pen=None,
                 symbol: str = "o") -> None:
        super().__init__(pxMode=True, useCache=True, size=size, pen=pen, symbol=symbol,
                         hoverable=False)
        self._palette = np.empty(0, dtype=object)
        self._rects = np.zeros((0, 4), dtype=np.int64)  # atlas rect (x, y, w, h) per code
        self._frag_key = None
        self._frags = pg.Qt.internals.PrimitiveArray(QPainter.PixmapFragment, 10)
        self._sprite_key = None
        self._sprite_info = None
        self._screen = None  # (key, px, py, in_view or None when all are) for one transform
        self._drawn = None   # (key, px, py, in_view) of the ordered points, for one transform
        self._grid = None    # (key, flat top-left pixel per ordered point) for the culling grid
        #: what the last paint drew: {"points", "in_view", "drawn"} (for tests and benches)
        self.paint_stats: dict[str, int] = {}
        self.set_palette(brushes or [QBrush(QColor(100, 100, 150))])

    # -- data ------------------------------------------------------------------------------
    def set_palette(self, brushes: Sequence[QBrush], update: bool = True) -> None:
        """The brushes the codes index."""
        pal = np.empty(len(brushes), dtype=object)
        pal[:] = list(brushes)
        self._palette = pal
        if update and self._codes is not None and len(self._records):
            self._brushes_stale = True
            self.updateSpots(keep_bounds=True)

    def set_points(self, x: np.ndarray, y: np.ndarray, codes: np.ndarray | None = None,
                   brushes: Sequence[QBrush] | None = None, *, order: np.ndarray | None = None,
                   on_top: np.ndarray | None = None, same_bounds: bool = False) -> None:
        """Replace all points; ``codes`` index the palette (``brushes`` replaces it first).

        The points in ``order`` are drawn in that order (None: all, as given), except that
        those with ``on_top`` set (bool per point) are drawn after all others.
        ``same_bounds=True``: the points cover the same area as before, so the view's
        auto-range need not be told.
        """
        if brushes is not None:
            self.set_palette(brushes, update=False)
        n = len(x)
        codes = np.zeros(n, dtype=np.int16) if codes is None else np.asarray(codes)
        same_bounds = same_bounds and len(self._records) == n
        data = self._record_array(n)
        self._x = np.ascontiguousarray(x, dtype=np.float64)
        self._y = np.ascontiguousarray(y, dtype=np.float64)
        self._records = data
        self._xy_stale = True  # the record array's x and y: written when read (``data``)
        self._pos_version += 1
        self._set_style(codes, on_top, order)
        if not same_bounds:
            self.prepareGeometryChange()
            self.informViewBoundsChanged()
            self.bounds = [None, None]
        self.updateSpots(keep_bounds=same_bounds)
        if not same_bounds:
            self.sigPlotChanged.emit(self)

    def set_codes(self, codes: np.ndarray, on_top: np.ndarray | None = None,
                  order: np.ndarray | None = None) -> None:
        """New palette codes, on-top flags and drawing order (as in ``set_points``) for the
        same points."""
        codes = np.asarray(codes)
        if len(codes) != len(self._records):
            raise ValueError(f"{len(codes)} colour codes for {len(self._records)} points")
        self._set_style(codes, on_top, order)
        self.updateSpots(keep_bounds=True)

    def _set_style(self, codes: np.ndarray, on_top, order) -> None:
        n = len(codes)
        self._codes = codes
        self._on_top = self._check_on_top(on_top, n)
        if order is not None:
            order = np.asarray(order)
            if order.ndim != 1 or order.size > n:
                raise ValueError(f"the drawing order must list points of the {n}, got shape {order.shape}")
        if order is not self._order:
            self._order_version += 1
        self._order = order
        self._codes16 = codes.astype(np.int16, copy=False) if len(self._palette) < 2 ** 15 else codes
        self._brushes_stale = True  # per-point brushes only for pyqtgraph's own code paths

    @property
    def data(self) -> np.ndarray:
        """pyqtgraph's per-point record array (x and y written on first read after a change:
        strided writes into it cost more than the rest of a load)."""
        if self._xy_stale:
            self._xy_stale = False
            self._records["x"] = self._x
            self._records["y"] = self._y
        return self._records

    @data.setter
    def data(self, value: np.ndarray) -> None:
        self._records = value
        self._xy_stale = False

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
            buf = np.zeros(n, dtype=self._records.dtype)
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

    def point_count(self) -> int:
        """How many points the item holds (drawn or not)."""
        return len(self._records)

    def on_top(self) -> np.ndarray | None:
        """The points drawn after all others (None: none)."""
        return self._on_top

    def codes(self) -> np.ndarray | None:
        """The palette code of each point."""
        return self._codes

    def brushes(self) -> np.ndarray:
        """The brush of each point (pyqtgraph's ``data["brush"]``, filled on demand)."""
        self._ensure_fields()
        return self.data["brush"]

    def draw_sequence(self) -> np.ndarray:
        """The points in the order they are drawn (``order``, then the on-top ones last)."""
        n = len(self._records)
        seq = np.arange(n) if self._order is None else self._order
        if self._on_top is not None:
            top = self._on_top[seq]
            seq = np.concatenate([seq[~top], seq[top]])
        return seq

    def clear(self) -> None:
        self._codes = None
        self._on_top = None
        self._order = None
        self._xy_stale = False
        self._x = self._y = np.empty(0)
        self._version += 1
        self._pos_version += 1
        super().clear()

    # -- pyqtgraph's own code paths read per-point fields: filled on demand -----------------
    def _ensure_fields(self) -> None:
        if not self._vectorised() or not len(self._records):
            return
        if self._brushes_stale:
            self._records["brush"] = self._palette[self._codes]
            self._brushes_stale = False
        if self._rects_stale:
            rects = self._rects[self._codes]
            src = self._records["sourceRect"]
            for i, k in enumerate(("x", "y", "w", "h")):
                src[k] = rects[:, i]
            self._rects_stale = False

    def points(self):
        """pyqtgraph's SpotItems (made on demand; the record buffer then resets them)."""
        self._spot_items = True
        self._ensure_fields()
        return super().points()

    def _style(self, opts, data=None, idx=None, scale=None):
        if data is None or data is self._records:
            self._ensure_fields()
        return super()._style(opts, data=data, idx=idx, scale=scale)

    def _maskAt(self, obj):  # noqa: N802 (pyqtgraph name; pointsAt etc.)
        self._ensure_fields()
        return super()._maskAt(obj)

    def dataBounds(self, ax, frac=1.0, orthoRange=None):  # noqa: N802
        """pyqtgraph's, over the contiguous coordinates (the record array's are strided)."""
        if (frac < 1.0 or orthoRange is not None or self.bounds[ax] is not None
                or not self._vectorised() or not len(self._x)):
            return super().dataBounds(ax, frac, orthoRange)
        d = self._x if ax == 0 else self._y
        pad = self._maxSpotWidth * 0.7072
        self.bounds[ax] = (float(np.nanmin(d)) - pad, float(np.nanmax(d)) + pad)
        return self.bounds[ax]

    def _palette_rects(self) -> np.ndarray:
        styles = [(self.opts["symbol"], self.opts["size"], self.opts["pen"], brush)
                  for brush in self._palette]
        coords = self.fragmentAtlas[styles]
        return np.array([tuple(c) for c in coords], dtype=self._records.dtype["sourceRect"])

    def _vectorised(self) -> bool:
        return (self._codes is not None and len(self._codes) == len(self._records) == len(self._x)
                and self.opts["pxMode"] and self.opts["useCache"])

    def updateSpots(self, dataSet=None, keep_bounds: bool = False) -> None:  # noqa: N802
        """pyqtgraph's name; vectorised: one atlas rect per palette code, no per-point work.

        ``keep_bounds``: same coordinates as before, so the cached data bounds stay valid
        (recomputing them is a nanmin/nanmax over every point per axis)."""
        self._version += 1
        if not (self._vectorised() and (dataSet is None or dataSet is self._records)):
            super().updateSpots(dataSet)
            return
        rects = self._palette_rects()
        self._rects = np.stack([rects[k] for k in ("x", "y", "w", "h")], axis=1).astype(np.int64)
        self._rects_stale = True
        bounds, spot_width = list(self.bounds), self._maxSpotWidth
        self._updateMaxSpotSizes()
        if keep_bounds and self._maxSpotWidth == spot_width:
            self.bounds = bounds
        self.invalidate()

    # -- painting ----------------------------------------------------------------------------
