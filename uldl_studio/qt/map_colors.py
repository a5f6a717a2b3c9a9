"""How the map colours its points: colour modes, scales, colour codes and drawing order.

A colouring turns the session's table into one small integer code per row (an index into a
palette of prebuilt brushes, ``qt/palette.py``) and a drawing order of the shown points, the
bad end of a score last (on top).  Qt-free apart from the brushes it hands out.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtGui import QBrush

from uldl_studio.core.review.frontend import highlighted_mask, scores
from uldl_studio.qt import palette

CATEGORICAL_MODES = {"given": "given label", "predicted": "predicted label"}
#: how a score's values map to colours: its data's 1st–99th percentile, the score's whole
#: possible range, or each value's quantile (rank) among the rows
SCALES = {"data": "value (1–99 % of the data)", "full": "value (the score's full range)",
          "quantile": "quantile"}
#: the score drawn highlighted: the likeliest wrong labels strong (``label_issues.highlighted_mask``),
#: the rest muted
HIGHLIGHT_SCORE = "label_wrong_prob"


def color_modes() -> list[str]:
    """The label colourings, then every registered score."""
    return [*CATEGORICAL_MODES, *scores.names()]


def color_mode_label(mode: str) -> str:
    """The menu text of a colour mode."""
    return CATEGORICAL_MODES.get(mode) or scores.get(mode).label


@dataclass
class Coloring:
    """One colouring of the table: a palette code per row and what the legend needs."""

    codes: np.ndarray                 # int16 per table row; the last palette entry = missing
    brushes: list[QBrush]
    kind: str                         # "categorical" | "continuous"
    value_range: tuple[float, float] = (0.0, 1.0)
    strong: np.ndarray | None = None  # per table row, highlighted (the highlight score only)


class ColoringCache:
    """The last few score colourings, each kept while the session's values of its score are
    the same array (the session replaces it when results or edits change): switching back
    to a colouring skips the binning and the percentiles."""

    def __init__(self, size: int = 4) -> None:
        self._size = size
        self._entries: list[tuple[str, str, np.ndarray, Coloring]] = []

    def get(self, session, mode: str, scale: str, classes: list[str]) -> Coloring:
        if mode in CATEGORICAL_MODES:
            return color_codes(session, mode, scale, classes)
        values = session.score(mode)
        for key_mode, key_scale, key_values, coloring in self._entries:
            if key_mode == mode and key_scale == scale and key_values is values:
                return coloring
        coloring = color_codes(session, mode, scale, classes)
        self._entries = [(mode, scale, values, coloring), *self._entries[:self._size - 1]]
        return coloring


def color_codes(session, mode: str, scale: str, classes: list[str]) -> Coloring:
    """The colouring of the session's table by ``mode`` ("given", "predicted" or a score)."""
    table = session.table
    n = len(table)
    if mode in CATEGORICAL_MODES:
        m = max(len(classes), int(table["label"].max()) + 1 if n else 1)
        names = classes + [str(i) for i in range(len(classes), m)]
        brushes = palette.class_brushes(names) + [palette.missing_brush()]
        p_cols = [f"p_{c}" for c in classes]
        if mode == "given":
            codes = table["label"].to_numpy(np.intp)
        elif classes and all(c in table for c in p_cols):
            probs = table[p_cols].to_numpy(np.float64)
            codes = np.argmax(np.nan_to_num(probs, nan=-1.0), axis=1).astype(np.intp)
            codes[~np.isfinite(probs).any(axis=1)] = m
        else:
            codes = np.full(n, m, dtype=np.intp)
        return Coloring(codes.astype(np.int16), brushes, "categorical")
    score = scores.get(mode)
    values = session.score(mode)
    if scale == "quantile":
        lo, hi = 0.0, 1.0
        codes = palette.bin_values(quantiles(values), lo, hi)
    else:
        lo, hi = color_range(values, score) if scale == "data" else full_range(values, score)
        codes = palette.bin_values(values, lo, hi)
    if mode != HIGHLIGHT_SCORE:
        brushes = palette.colormap_brushes(score.cmap) + [palette.missing_brush()]
        return Coloring(codes.astype(np.int16), brushes, "continuous", (lo, hi))
    # strong for the highlighted labels (the same rows as the health panel's), muted elsewhere,
    # whatever the scale
    k = palette.N_BINS
    strong = highlighted_mask(values)
    codes = np.where(codes == k, 2 * k, codes + k * strong).astype(np.int16)
    brushes = palette.issue_brushes(k) + [palette.missing_brush()]
    return Coloring(codes, brushes, "continuous", (lo, hi), strong)


def draw_order(mode: str, shown_codes: np.ndarray, n_brushes: int) -> np.ndarray | None:
    """Drawing order of the shown points for a continuous colouring: the bad end last (on
    top), missing values first.  None for a categorical one (the caller shuffles)."""
    if mode in CATEGORICAL_MODES:
        return None
    missing = n_brushes - 1
    toward_bad = shown_codes if scores.get(mode).bad == "high" else missing - 1 - shown_codes
    key = np.where(shown_codes == missing, -1, toward_bad).astype(np.int16)
    return np.argsort(key, kind="stable")  # int16: numpy's O(n) radix sort


class PaletteCache:
    """(brushes, brushes + faded variants), the same QBrush objects for the same colours.

    pyqtgraph's symbol atlas keys its sprites by brush *object*: new but equal brushes on
    every recolour would render new sprites and grow the atlas each time."""

    def __init__(self) -> None:
        self._palettes: dict[tuple, tuple[list[QBrush], list[QBrush]]] = {}

    def get(self, brushes: list[QBrush]) -> tuple[list[QBrush], list[QBrush]]:
        key = tuple((b.style(), b.color().rgba()) for b in brushes)
        hit = self._palettes.get(key)
        if hit is None:
            if len(self._palettes) > 16:
                self._palettes.clear()
            hit = self._palettes[key] = (brushes, brushes + palette.dim_brushes(brushes))
        return hit


def color_range(values: np.ndarray, score: scores.Score, min_span: float = 0.05) -> tuple[float, float]:
    """Colour range of a score: the 1st–99th percentile of its finite values, inside the score's
    possible range (symmetric around 0 for diverging scores).

    λ often lives in a narrow band (e.g. 0.15–0.5); a fixed 0–1 scale would paint every point
    the same colour, so the scale follows the data and the colour bar shows the real values.
    """
    floor, ceiling = score.value_range or (-np.inf, np.inf)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (0.0, 1.0) if not np.isfinite(floor) else (float(floor), float(ceiling))
    if score.diverging:
        span = max(float(np.quantile(np.abs(finite), 0.99)), 0.02)
        return -span, span
    lo, hi = (float(q) for q in np.quantile(finite, (0.01, 0.99)))
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    return max(floor, lo), min(ceiling, hi)


def full_range(values: np.ndarray, score: scores.Score) -> tuple[float, float]:
    """The score's whole possible range (``value_range``); the data's range when it has none."""
    if score.value_range is not None:
        return float(score.value_range[0]), float(score.value_range[1])
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def quantiles(values: np.ndarray) -> np.ndarray:
    """Each finite value's quantile among the finite values (0 = lowest, 1 = highest; ties
    share their mean rank); NaN stays NaN."""
    values = np.asarray(values, dtype=np.float64)
    out = np.full(values.shape, np.nan)
    finite = np.isfinite(values)
    k = int(finite.sum())
    if k == 0:
        return out
    if k == 1:
        out[finite] = 0.5
        return out
    from scipy.stats import rankdata

    out[finite] = (rankdata(values[finite], method="average") - 1.0) / (k - 1)
    return out
