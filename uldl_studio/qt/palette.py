"""Colours shared by the views: one colour per emotion class, colour maps for the scores.

Brushes are built once and reused (pyqtgraph draws 300k points fast only when they share a
few QBrush objects; bench/gui_scale.py).  Continuous values are binned into ``N_BINS`` colours.

Note: build colours with ``QColor(r, g, b, a)``, not ``pg.mkBrush``/``QColor.setAlpha`` in
per-point loops: with PySide6 6.12 on Python 3.11 every call of a method returning None
drops a reference to None (see the map view's report), and they are slow anyway.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor

N_BINS = 64

# Colour-blind-friendly (Okabe-Ito based) colour per canonical class; stable across datasets.
CLASS_RGB: dict[str, tuple[int, int, int]] = {
    "neutral": (136, 136, 136),
    "happiness": (230, 159, 0),
    "surprise": (86, 180, 233),
    "sadness": (0, 114, 178),
    "anger": (213, 94, 0),
    "disgust": (0, 158, 115),
    "fear": (204, 121, 167),
    "contempt": (150, 110, 60),
}
_EXTRA_RGB = [(240, 228, 66), (0, 0, 0), (120, 60, 200), (60, 200, 200)]
MISSING_RGB = (190, 190, 190)

HIGHLIGHT_RGB = (255, 40, 40)      # selection ring
DIM_KEEP = 0.25                    # share of its colour an unselected point keeps...
DIM_TOWARDS = (236, 236, 236)      # ...mixed (opaque) with this light grey
CURRENT_RGB = (20, 20, 20)         # current-sample marker
EDITED_RGB = (20, 20, 20)          # edited-sample marker
PREDICTED_RGB = (255, 255, 255)    # samples predicted for another collection (outlined triangles)
BACKGROUND = "w"
FOREGROUND = (60, 60, 60)

COLORMAPS = {"lambda": "viridis", "entropy": "inferno", "lambda_change": "CET-D1"}

# Highlighting (``issue_brushes``): the points worth a look in strong warm colours, the rest in
# muted greys, both ramps following the value so that order within each stays visible.
MUTED_RAMP = ((222, 226, 232), (150, 158, 172))
STRONG_RAMP = ((255, 176, 0), (214, 60, 0), (150, 0, 40))
ISSUES_COLORMAP = "issues"


def class_rgb(name: str, index: int = 0) -> tuple[int, int, int]:
    return CLASS_RGB.get(name, _EXTRA_RGB[index % len(_EXTRA_RGB)])


def class_colors(classes: Sequence[str], alpha: int = 255) -> list[QColor]:
    return [QColor(*class_rgb(c, i), alpha) for i, c in enumerate(classes)]


def class_brushes(classes: Sequence[str], alpha: int = 255) -> list[QBrush]:
    return [QBrush(c) for c in class_colors(classes, alpha)]


def _ramp(stops, n: int) -> np.ndarray:
    """(n, 3) colours evenly interpolated through ``stops``."""
    stops = np.asarray(stops, dtype=np.float64)
    x = np.linspace(0.0, 1.0, len(stops))
    t = np.linspace(0.0, 1.0, n)
    return np.stack([np.interp(t, x, stops[:, c]) for c in range(3)], axis=1)


def colormap(kind: str) -> pg.ColorMap:
    """The pyqtgraph colour map used for a continuous colour mode (``"issues"``: muted greys
    below the middle, strong warm colours above it)."""
    if COLORMAPS.get(kind, kind) == ISSUES_COLORMAP:
        muted, strong = _ramp(MUTED_RAMP, 2), _ramp(STRONG_RAMP, 3)
        pos = [0.0, 0.4999, 0.5, 0.75, 1.0]
        colors = [tuple(int(v) for v in c) for c in (*muted, *strong)]
        return pg.ColorMap(pos, colors)
    return pg.colormap.get(COLORMAPS.get(kind, kind))


def issue_brushes(n: int = N_BINS, alpha: int = 255) -> list[QBrush]:
    """``n`` muted brushes (codes 0..n-1), then ``n`` strong ones (n..2n-1), light to dark."""
    out = []
    for ramp in (MUTED_RAMP, STRONG_RAMP):
        out += [QBrush(QColor(int(r), int(g), int(b), alpha)) for r, g, b in _ramp(ramp, n)]
    return out


def colormap_brushes(kind: str, n: int = N_BINS, alpha: int = 255) -> list[QBrush]:
    lut = colormap(kind).getLookupTable(0.0, 1.0, nPts=n, alpha=False)
    return [QBrush(QColor(int(r), int(g), int(b), alpha)) for r, g, b in lut]


def missing_brush(alpha: int = 255) -> QBrush:
    return QBrush(QColor(*MISSING_RGB, alpha))


def bin_values(values: np.ndarray, lo: float, hi: float, n: int = N_BINS) -> np.ndarray:
    """Codes 0..n-1 for values in [lo, hi] (clipped); code ``n`` for NaN (missing colour)."""
    values = np.asarray(values, dtype=np.float64)
    span = (hi - lo) or 1.0
    with np.errstate(invalid="ignore"):
        scaled = np.clip((values - lo) / span, 0.0, 1.0) * (n - 1) + 0.5
    codes = np.full(values.shape, n, dtype=np.intp)
    finite = np.isfinite(scaled)
    codes[finite] = scaled[finite].astype(np.intp)
    return codes


def dim_brush(brush: QBrush, keep: float = DIM_KEEP,
              towards: tuple[int, int, int] = DIM_TOWARDS) -> QBrush:
    """The faded, still opaque, variant of a brush: how unselected points are drawn while a
    selection exists (selected points keep their colour and are drawn on top)."""
    if brush.style() == Qt.BrushStyle.NoBrush:
        return QBrush(brush)
    c = brush.color()
    mix = [int(round(v * keep + t * (1.0 - keep))) for v, t in zip((c.red(), c.green(), c.blue()), towards)]
    return QBrush(QColor(mix[0], mix[1], mix[2], c.alpha()))


def dim_brushes(brushes: Sequence[QBrush], keep: float = DIM_KEEP) -> list[QBrush]:
    return [dim_brush(b, keep) for b in brushes]
