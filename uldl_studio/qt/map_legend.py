"""The map's key: a legend of classes (or of highlighted and muted points) inside the plot,
and a colour bar beside it for a score."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QBrush, QColor

from uldl_studio.core.review.frontend import scores
from uldl_studio.qt import palette


class MapLegend:
    """The legend and colour bar of one plot.

    ``valid_accuracy`` (a callable returning the model's valid accuracy or None) is quoted
    when more than half of the points are highlighted.
    """

    def __init__(self, plot_item: pg.PlotItem, valid_accuracy: Callable[[], float | None]) -> None:
        self._plot_item = plot_item
        self._valid_accuracy = valid_accuracy
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
        self.legend.setParentItem(plot_item.getViewBox())
        self._samples: list = []
        self._key: tuple | None = None
        self._wanted = False  # the legend has lines to show (it may still lack the room)
        plot_item.getViewBox().sigResized.connect(self._fit)

    def texts(self) -> list[str]:
        """The legend's lines (empty when it has none; a map too small for them hides them)."""
        if not self._wanted:
            return []
        return [label.text for _, label in self.legend.items]

    def _fit(self, *_) -> None:
        """Show the legend only where it leaves most of the map visible: in a small window it
        would cover the points it describes (the colour bar still says what the colours mean)."""
        if not self._wanted:
            self.legend.hide()
            return
        room = self._plot_item.getViewBox().boundingRect()
        size = self.legend.boundingRect()
        self.legend.setVisible(size.width() <= 0.9 * room.width() and size.height() <= 0.5 * room.height())

    def _hide(self) -> None:
        self._wanted = False
        self.legend.hide()

    def show_classes(self, classes: list[str], brushes: list[QBrush], shown_codes: np.ndarray) -> None:
        """One line per class with its count among the shown points (and the unpredicted)."""
        self._show_colorbar(False)
        counts = np.bincount(shown_codes, minlength=len(brushes))
        entries = [(brushes[i], f"{name} ({counts[i]:,})") for i, name in enumerate(classes)]
        if counts[len(brushes) - 1]:
            entries.append((brushes[-1], f"no prediction ({counts[-1]:,})"))
        self._set_entries(tuple(id(b) for b, _ in entries) + tuple(classes), entries)

    def show_score(self, mode: str, value_range: tuple[float, float], quantile: bool,
                   highlight: tuple[int, int, float] | None, brushes: list[QBrush]) -> None:
        """The colour bar of score ``mode``; while it highlights, two legend lines too."""
        score = scores.get(mode)
        if highlight is not None:
            self._show_highlight(highlight, brushes)
        else:
            self._hide()
            self._key = None
        cmap = palette.colormap(score.cmap)
        if highlight is not None and (quantile or value_range != (0.0, 1.0)):
            # the strong/muted split is by value: a plain ramp when the colours are not at 0.5
            cmap = pg.ColorMap([0.0, 1.0], [palette.MUTED_RAMP[0], palette.STRONG_RAMP[-1]])
        self.colorbar.setColorMap(cmap)
        self.colorbar.setLevels(value_range)
        what = f"quantile of {score.label}" if quantile else score.label
        self.colorbar.axis.setLabel(f"{what} (bad: {score.bad})")
        self._show_colorbar(True)

    def _show_highlight(self, highlight: tuple[int, int, float], brushes: list[QBrush]) -> None:
        """Two lines: how many points are drawn strongly and what share of them is expected to
        be wrong (their mean P(label is wrong), ``label_issues.highlighted_mask``), and the
        muted rest."""
        strong, shown, mean = highlight
        n = palette.N_BINS
        # Short lines: the legend sits inside the map and must fit a small one.
        expected = f" (≈ {mean:.0%} expected wrong)" if strong and np.isfinite(mean) else ""
        entries = [(brushes[2 * n - 1], f"{strong:,} highlighted: likeliest wrong labels{expected}"),
                   (brushes[n // 2], f"{shown - strong:,} muted: the rest")]
        if shown and strong > shown / 2:
            # more than half "wrong" says more about the model than the labels: say so
            accuracy = self._valid_accuracy()
            known = "" if accuracy is None else f" (valid accuracy {accuracy:.2f})"
            entries.append((brushes[n // 2], f"⚠ over half flagged: the model{known} may be too weak; "
                                             "train longer"))
        self._set_entries(("highlight", id(brushes[2 * n - 1]), id(brushes[n // 2]), len(entries)),
                          entries)

    def _set_entries(self, key: tuple, entries: list[tuple[QBrush, str]]) -> None:
        if key == self._key and len(self.legend.items) == len(entries):
            for (_, label), (_, text) in zip(self.legend.items, entries):
                if label.text != text:
                    label.setText(text)
        else:  # (re)building costs ~10 ms: only when the entries change
            self.legend.clear()
            self._samples = []
            for brush, text in entries:
                sample = pg.ScatterPlotItem(symbol="o", size=10, pen=None, brush=brush)
                self._samples.append(sample)
                self.legend.addItem(sample, text)
            self._key = key
        self._wanted = True
        self.legend.updateSize()
        self._fit()

    def _show_colorbar(self, show: bool) -> None:
        layout = self._plot_item.layout
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
