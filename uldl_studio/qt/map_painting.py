"""How ``PaletteScatterItem`` paints: pyqtgraph's atlas path (one
``QPainter.drawPixmapFragments`` call) with the fragment array built in numpy from cached
screen positions, the drawing order and the colour codes, less the sprites later opaque ones
paint over (``map_occlusion``)."""
from __future__ import annotations

import sys

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QImage, QPainter, QTransform

from uldl_studio.qt.map_occlusion import occlusion_cull

_LITTLE_ENDIAN = sys.byteorder == "little"
debug_warn_on_exception = pg.debug.warnOnException  # an exception in paint() must not crash


class FragmentPainter:
    """Mixin of ``PaletteScatterItem`` (before ``pg.ScatterPlotItem`` in its bases): paint()
    and the caches behind it."""

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
            self._paint_stock(p, option, widget)
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

    def _paint_stock(self, p, option, widget) -> None:
        """pyqtgraph's own painting (exports, projective views), in the drawing order."""
        self._ensure_fields()
        if not self._vectorised() or (self._order is None and self._on_top is None):
            super().paint(p, option, widget)
            return
        data = self.data
        try:
            self.data = data[self.draw_sequence()]
            super().paint(p, option, widget)
        finally:
            self.data = data

    def _screen_positions(self, tr, width: int, height: int, dpr: float):
        """(px, py, in_view or None when every point is in view) for this transform."""
        # the largest sprite decides what may touch the viewport (NaN is never in view)
        half_w = (self._rects[:, 2].max() if len(self._rects) else 0) / (2 * dpr)
        half_h = (self._rects[:, 3].max() if len(self._rects) else 0) / (2 * dpr)
        key = (self._pos_version, tr.m11(), tr.m12(), tr.m21(), tr.m22(), tr.dx(), tr.dy(),
               width, height, half_w, half_h)
        if self._screen is not None and self._screen[0] == key:
            return self._screen[1:]
        px = self._x * tr.m11()
        if tr.m21():
            px += self._y * tr.m21()
        px += tr.dx()
        py = self._y * tr.m22()
        if tr.m12():
            py += self._x * tr.m12()
        py += tr.dy()
        with np.errstate(invalid="ignore"):
            in_view = (px > -half_w) & (px < width + half_w)
            in_view &= (py > -half_h) & (py < height + half_h)
        if in_view.all():
            in_view = None
        self._screen = (key, px, py, in_view)
        return px, py, in_view

    def _ordered_positions(self, tr, width: int, height: int, dpr: float):
        """``_screen_positions`` of the points of ``order``, in that order (cached until the
        order or the view changes: a new colouring or selection then reads them in sequence)."""
        px, py, in_view = self._screen_positions(tr, width, height, dpr)
        key = (self._screen[0], self._order_version)
        if self._drawn is not None and self._drawn[0] == key:
            return self._drawn[1:]
        order = self._order
        if order is not None:
            px, py = np.take(px, order), np.take(py, order)
            if in_view is not None:
                in_view = in_view[order]
                in_view = None if in_view.all() else in_view
        self._drawn = (key, px, py, in_view)
        return px, py, in_view

    def _grid_positions(self, w: int, h: int, gw: int) -> np.ndarray:
        """Flat index of each ordered point's sprite's top-left pixel in the culling grid
        (points out of view: 0, never used), for the last ``_ordered_positions``."""
        drawn_key, px, py, in_view = self._drawn
        key = (drawn_key, w, h, gw)
        if self._grid is not None and self._grid[0] == key:
            return self._grid[1]
        # where Qt's raster engine puts the sprite: the rect's corner, rounded; in a grid
        # with a sprite-sized margin (in view: > 0, so truncation = floor)
        with np.errstate(invalid="ignore"):
            gx = px + (w / 2 + 0.5)
            gy = py + (h / 2 + 0.5)
            if in_view is not None:
                gx[~in_view] = 0
                gy[~in_view] = 0
        lin = gy.astype(np.int32)
        lin *= gw
        lin += gx.astype(np.int32)
        self._grid = (key, lin)
        return lin

    def _build_fragments(self, tr, width: int, height: int, dpr: float, cull: bool) -> None:
        # positions below index the ordered points (``order``, or all points as given)
        px, py, in_view = self._ordered_positions(tr, width, height, dpr)
        order = self._order
        codes = self._codes16 if order is None else np.take(self._codes16, order)
        pos = None if in_view is None else np.flatnonzero(in_view)
        if self._on_top is not None:  # the flagged points last, each group in its own order
            top = self._on_top if order is None else self._on_top[order]
            if in_view is None:
                pos = np.concatenate([np.flatnonzero(~top), np.flatnonzero(top)])
            else:
                pos = np.concatenate([np.flatnonzero(in_view & ~top), np.flatnonzero(in_view & top)])
        n_view = codes.size if pos is None else pos.size
        if cull and n_view >= self.OCCLUSION_MIN_POINTS:
            view_codes = codes if pos is None else np.take(codes, pos)
            used = np.bincount(view_codes, minlength=len(self._rects)) > 0
            sprites = self._sprites(used)
            if sprites is not None:
                w, h, rows, opaque = sprites
                gw, gh = width + 2 * w, height + 2 * h
                lin = self._grid_positions(w, h, gw)
                lin = lin if pos is None else np.take(lin, pos)
                occludes = None if opaque[used].all() else opaque[view_codes]
                keep = occlusion_cull(lin, occludes, rows, w, h, gw, gh)
                pos = np.flatnonzero(keep) if pos is None else pos[keep]
        if pos is None:
            pos = np.arange(codes.size)
        self._frags.resize(pos.size)
        frags = self._frags.ndarray()
        frags[:, 0] = np.take(px, pos)
        frags[:, 1] = np.take(py, pos)
        per_code = np.empty((len(self._rects), 8))  # sx, sy, sw, sh, scaleX, scaleY, rotation, opacity
        per_code[:, :4] = self._rects
        per_code[:, 4:] = (1 / dpr, 1 / dpr, 0.0, 1.0)
        frags[:, 2:10] = per_code[np.take(codes, pos)]
        self.paint_stats = {"points": len(self._records), "in_view": int(n_view),
                            "drawn": int(pos.size)}
