"""Selections as pure predicates over a SampleTable (in the manner of glue).

A selection says *which* rows, never *how* they were picked: a range of a column, a polygon
or box in two columns, a set of ids, a set of values.  Selections combine with ``&``, ``|``,
``^`` and ``~`` and evaluate with ``.mask(data) -> np.ndarray[bool]`` against

- a DataFrame (or any mapping of column name -> 1-D array): columns by name, or
- an ``(n, k)`` array: columns by integer position; the geometric selections (box, polygon)
  read columns 0 and 1 whatever their ``xcols`` say, so ``mask(xy)`` works on raw points.

Qt-free and numpy only: the map view turns a mouse gesture into one of these and the
selection model keeps the resulting row indices.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Selection", "RangeSelection", "BoxSelection", "PolygonSelection", "IdSelection",
    "ValueSelection", "AllSelection", "NoneSelection", "AndSelection", "OrSelection",
    "XorSelection", "NotSelection", "points_in_polygon",
]


def _length(data) -> int:
    if isinstance(data, np.ndarray):
        return len(data)
    if hasattr(data, "__len__") and hasattr(data, "columns"):  # DataFrame
        return len(data)
    if isinstance(data, Mapping):
        first = next(iter(data.values()), None)
        return 0 if first is None else len(first)
    return len(data)


def _column(data, key) -> np.ndarray:
    """One column of ``data`` as a 1-D numpy array (see the module docstring)."""
    if isinstance(data, np.ndarray):
        if data.ndim == 1:
            if key in (0, None):
                return data
            raise KeyError(f"a 1-D array has only column 0, not {key!r}")
        if not isinstance(key, (int, np.integer)):
            raise KeyError(f"select array columns by position, not by name {key!r}")
        return data[:, int(key)]
    column = data[key]
    return column.to_numpy() if hasattr(column, "to_numpy") else np.asarray(column)


def _xy(data, xcols: Sequence) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(data, np.ndarray):
        arr = np.asarray(data)
        if arr.ndim != 2 or arr.shape[1] < 2:
            raise ValueError(f"expected an (n, 2) array of points, got shape {arr.shape}")
        return arr[:, 0].astype(np.float64, copy=False), arr[:, 1].astype(np.float64, copy=False)
    return (_column(data, xcols[0]).astype(np.float64, copy=False),
            _column(data, xcols[1]).astype(np.float64, copy=False))


class Selection:
    """Base class: a predicate over rows.  Subclasses implement ``mask``."""

    def mask(self, data) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def rows(self, data) -> np.ndarray:
        """Sorted int64 row indices where the predicate holds."""
        return np.flatnonzero(self.mask(data)).astype(np.int64)

    def __and__(self, other: "Selection") -> "Selection":
        return AndSelection(self, other)

    def __or__(self, other: "Selection") -> "Selection":
        return OrSelection(self, other)

    def __xor__(self, other: "Selection") -> "Selection":
        return XorSelection(self, other)

    def __invert__(self) -> "Selection":
        return NotSelection(self)

    def __sub__(self, other: "Selection") -> "Selection":
        return AndSelection(self, NotSelection(other))


@dataclass(frozen=True)
class AllSelection(Selection):
    def mask(self, data) -> np.ndarray:
        return np.ones(_length(data), dtype=bool)


@dataclass(frozen=True)
class NoneSelection(Selection):
    def mask(self, data) -> np.ndarray:
        return np.zeros(_length(data), dtype=bool)


@dataclass(frozen=True)
class AndSelection(Selection):
    left: Selection
    right: Selection

    def mask(self, data) -> np.ndarray:
        return self.left.mask(data) & self.right.mask(data)


@dataclass(frozen=True)
class OrSelection(Selection):
    left: Selection
    right: Selection

    def mask(self, data) -> np.ndarray:
        return self.left.mask(data) | self.right.mask(data)


@dataclass(frozen=True)
class XorSelection(Selection):
    left: Selection
    right: Selection

    def mask(self, data) -> np.ndarray:
        return self.left.mask(data) ^ self.right.mask(data)


@dataclass(frozen=True)
class NotSelection(Selection):
    inner: Selection

    def mask(self, data) -> np.ndarray:
        return ~self.inner.mask(data)


@dataclass(frozen=True)
class RangeSelection(Selection):
    """``lo <= data[column] <= hi`` (NaN is never inside)."""

    column: object
    lo: float
    hi: float

    def mask(self, data) -> np.ndarray:
        values = _column(data, self.column).astype(np.float64, copy=False)
        lo, hi = min(self.lo, self.hi), max(self.lo, self.hi)
        return (values >= lo) & (values <= hi)


@dataclass(frozen=True)
class ValueSelection(Selection):
    """``data[column] in values`` (e.g. the rows whose label is one of some classes)."""

    column: object
    values: tuple

    def __init__(self, column, values: Iterable) -> None:
        object.__setattr__(self, "column", column)
        object.__setattr__(self, "values", tuple(values))

    def mask(self, data) -> np.ndarray:
        return np.isin(_column(data, self.column), np.asarray(self.values))


@dataclass(frozen=True)
class IdSelection(Selection):
    """Rows whose ``column`` value is one of ``ids`` (default ``sample_id``).

    ``column=None`` means the ids are row positions; arrays are always read that way.
    """

    ids: tuple
    column: object = "sample_id"

    def __init__(self, ids: Iterable, column: object = "sample_id") -> None:
        object.__setattr__(self, "ids", tuple(np.asarray(list(ids)).tolist()))
        object.__setattr__(self, "column", column)

    def mask(self, data) -> np.ndarray:
        n = _length(data)
        if self.column is None or isinstance(data, np.ndarray):
            rows = np.asarray(self.ids, dtype=np.int64)
            rows = rows[(rows >= 0) & (rows < n)]
            out = np.zeros(n, dtype=bool)
            out[rows] = True
            return out
        return np.isin(_column(data, self.column), np.asarray(self.ids))


@dataclass(frozen=True)
class BoxSelection(Selection):
    """Axis-aligned box ``x0..x1 × y0..y1`` (inclusive, corners in any order)."""

    x0: float
    x1: float
    y0: float
    y1: float
    xcols: tuple = ("x", "y")

    def mask(self, data) -> np.ndarray:
        x, y = _xy(data, self.xcols)
        xlo, xhi = sorted((self.x0, self.x1))
        ylo, yhi = sorted((self.y0, self.y1))
        return (x >= xlo) & (x <= xhi) & (y >= ylo) & (y <= yhi)


@dataclass(frozen=True)
class PolygonSelection(Selection):
    """Inside a closed polygon (even-odd rule), e.g. a lasso.  ``vertices``: (m, 2)."""

    xcols: tuple
    vertices: tuple = field(default=())

    def __init__(self, xcols: Sequence, vertices) -> None:
        verts = np.asarray(vertices, dtype=np.float64).reshape(-1, 2)
        object.__setattr__(self, "xcols", tuple(xcols))
        object.__setattr__(self, "vertices", tuple(map(tuple, verts.tolist())))

    def mask(self, data) -> np.ndarray:
        x, y = _xy(data, self.xcols)
        return points_in_polygon(x, y, np.asarray(self.vertices, dtype=np.float64).reshape(-1, 2))


def points_in_polygon(x: np.ndarray, y: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd ray test of many points against one polygon, vectorised.

    A point is inside when a ray to +x crosses an odd number of edges.  Edge (a, b) crosses
    the ray of point p when ``min(ya, yb) <= py < max(ya, yb)`` and p lies left of the edge at
    height py.  Instead of testing every point against every edge (n·m work) the candidate
    points (inside the polygon's bounding box) are sorted by y once, so each edge touches only
    the points in its y-band: about n·(crossings per row) work, fine for long lasso paths.
    Points on the boundary may fall either way; NaN points are outside.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    verts = np.asarray(vertices, dtype=np.float64).reshape(-1, 2)
    inside = np.zeros(x.shape, dtype=bool)
    if len(verts) < 3 or x.size == 0:
        return inside
    xmin, ymin = verts.min(axis=0)
    xmax, ymax = verts.max(axis=0)
    candidates = np.flatnonzero((x >= xmin) & (x <= xmax) & (y >= ymin) & (y <= ymax))
    if candidates.size == 0:
        return inside
    order = np.argsort(y[candidates], kind="stable")
    cand = candidates[order]
    cx, cy = x[cand], y[cand]
    odd = np.zeros(cand.size, dtype=bool)
    xa, ya = verts[:, 0], verts[:, 1]
    xb, yb = np.roll(xa, -1), np.roll(ya, -1)
    lows = np.minimum(ya, yb)
    highs = np.maximum(ya, yb)
    starts = np.searchsorted(cy, lows, side="left")
    stops = np.searchsorted(cy, highs, side="left")
    for i in np.flatnonzero(stops > starts):
        lo, hi = starts[i], stops[i]
        py = cy[lo:hi]
        # x of the edge at height py; same expression as the classic test, so results agree
        x_cross = xa[i] + (py - ya[i]) * (xb[i] - xa[i]) / (yb[i] - ya[i])
        odd[lo:hi] ^= cx[lo:hi] < x_cross
    inside[cand] = odd
    return inside
