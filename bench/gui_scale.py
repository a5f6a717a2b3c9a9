"""GUI scale benchmark: 300,000 points in the map and the grid, ULDL Studio vs a naive baseline.

Each interaction is timed on a real (offscreen) QApplication from the call until
``processEvents()`` has delivered the repaint of the shown window, so drawing is included
(the script counts the paints of the point items to make sure each timed call drew).

    QT_QPA_PLATFORM=offscreen python bench/gui_scale.py [--n 300000] [--repeat 3]

Ours: ``MapView`` (one vectorised ``PaletteScatterItem`` that skips points painted over by
later ones, selection shown by fading the others, numpy predicates from ``core.selection``)
and ``GridView`` (index-array list model).  Medians of ``--repeat`` runs; the first ("cold")
load, which also allocates the point buffer and renders the symbol sprites, is printed too.  Naive: a stock
``pg.ScatterPlotItem`` fed a per-point brush list built with ``pg.mkBrush`` every time, a
Python loop for box/lasso tests, and a ``QStandardItemModel`` with one item per grid row.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyqtgraph as pg  # noqa: E402
from PySide6.QtCore import QPointF, Qt  # noqa: E402
from PySide6.QtGui import QPolygonF, QStandardItem, QStandardItemModel  # noqa: E402
from PySide6.QtWidgets import QApplication, QListView  # noqa: E402

from uldl_studio.core.classes import FERPLUS_CLASSES, centroid_matrix  # noqa: E402
from uldl_studio.qt import palette  # noqa: E402
from uldl_studio.qt.grid_view import GridView  # noqa: E402
from uldl_studio.qt.map_view import MapView  # noqa: E402
from uldl_studio.qt.scatter_renderer import PaletteScatterItem  # noqa: E402
from uldl_studio.qt.session_bridge import SessionBridge  # noqa: E402


def synthetic_table(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    classes = list(FERPLUS_CLASSES)
    m = len(classes)
    label = rng.integers(0, m, n)
    va = centroid_matrix(classes)[label] + rng.normal(scale=0.2, size=(n, 2))
    d = rng.dirichlet(np.full(m, 0.5), n)
    p = rng.dirichlet(np.full(m, 0.5), n)
    cols = {"sample_id": [f"s{i:06d}" for i in range(n)], "path": "", "split": "train",
            "label": label, "valence": va[:, 0], "arousal": va[:, 1],
            "lambda": rng.beta(2, 5, n)}
    for j, c in enumerate(classes):
        cols[f"d_{c}"] = d[:, j]
        cols[f"p_{c}"] = p[:, j]
    table = pd.DataFrame(cols)
    table.attrs["classes"] = classes
    return table


def lasso_polygon(k: int = 200) -> np.ndarray:
    theta = np.linspace(0, 2 * np.pi, k, endpoint=False)
    radius = 0.55 + 0.15 * np.sin(5 * theta)
    return np.c_[-0.3 + radius * np.cos(theta), 0.3 + radius * np.sin(theta)]


BOX = (-0.9, -0.1, 0.0, 0.9)  # x0, y0, x1, y1


PAINTS = {"big": 0}


def _counting(paint):
    def counting_paint(self, painter, option, widget):
        if len(self.data) >= 1000:
            PAINTS["big"] += 1
        return paint(self, painter, option, widget)
    return counting_paint


# PaletteScatterItem has its own paint() (calls the stock one only as a fallback)
pg.ScatterPlotItem.paint = _counting(pg.ScatterPlotItem.paint)
PaletteScatterItem.paint = _counting(PaletteScatterItem.paint)
UNPAINTED: list[str] = []


def timed(app, widget, fn, name: str = "", expect_paint: bool = True) -> float:
    app.processEvents()
    before = PAINTS["big"]
    start = time.perf_counter()
    fn()
    # the items' update() requests are posted; processEvents delivers them and the shown
    # window paints (once) before it returns, so the time includes drawing (PAINTS checks it)
    app.processEvents()
    elapsed = time.perf_counter() - start
    if expect_paint and PAINTS["big"] == before:
        UNPAINTED.append(name)
    return elapsed


def bench_ours(app, table, repeat):
    bridge = SessionBridge()
    model = bridge.session
    map_view = MapView(bridge)
    map_view.resize(1000, 700)
    map_view.show()
    grid = GridView(bridge)
    grid.resize(600, 700)
    grid.show()
    model.set_dataset(table, {})
    grid.set_sort_key("lambda")
    app.processEvents()
    results = {}

    def load():  # the map's whole reaction to a new table in the session
        map_view._on_table_reset()

    def recolour():
        map_view.set_color_mode("given")
        map_view.set_color_mode("lambda")

    def recolour_only():  # timed part: given -> lambda
        map_view.set_color_mode("lambda")

    times = {k: [] for k in ("load", "recolour", "box", "lasso", "grid")}
    for _ in range(repeat):
        map_view.points.clear()
        app.processEvents()
        times["load"].append(timed(app, map_view, load, "load"))
        map_view.set_color_mode("given")
        app.processEvents()
        times["recolour"].append(timed(app, map_view, recolour_only, "recolour"))
        model.select(None)
        # the grid is linked: its update is part of neither map timing, so block it here
        bridge.selectionChanged.disconnect(grid._update_rows)
        times["box"].append(timed(app, map_view, lambda: map_view.select_box(*BOX), "box"))
        times["lasso"].append(timed(app, map_view, lambda: map_view.select_polygon(lasso_polygon()), "lasso"))
        bridge.selectionChanged.connect(grid._update_rows)
        times["grid"].append(timed(app, grid, grid._update_rows, "grid", expect_paint=False))
    for key, values in times.items():
        results[key] = statistics.median(values)
    results["load_cold"] = times["load"][0]
    results["_selected"] = int(model.selection.size)
    results["_grid_rows"] = int(grid.model.rows.size)
    # every row listed (nothing selected), then a jump to the end of the listing
    bridge.selectionChanged.disconnect(grid._update_rows)
    model.select(None)
    bridge.selectionChanged.connect(grid._update_rows)
    results["grid_all"] = timed(app, grid, grid._update_rows, "grid", expect_paint=False)
    results["_grid_all_rows"] = int(grid.model.rows.size)
    results["grid_scroll_end"] = timed(app, grid, grid.tile_view.scrollToBottom, "grid", expect_paint=False)
    map_view.close()
    grid.close()
    return results


def bench_list_view(app, n: int) -> float:
    """The usual icon-mode QListView over a list model of ``n`` rows (uniform item sizes): seconds
    to list them all, the whole layout included (single pass; a batched layout spreads the same
    work over later event-loop turns)."""
    from PySide6.QtCore import QAbstractListModel, QModelIndex, QSize, Qt
    from PySide6.QtWidgets import QListView

    class Rows(QAbstractListModel):
        count = 0

        def rowCount(self, parent=QModelIndex()):  # noqa: N802
            return 0 if parent.isValid() else self.count

        def data(self, index, role=Qt.ItemDataRole.DisplayRole):
            return f"row {index.row()}" if role == Qt.ItemDataRole.DisplayRole else None

    rows = Rows()
    view = QListView()
    view.setViewMode(QListView.ViewMode.IconMode)
    view.setUniformItemSizes(True)
    view.setLayoutMode(QListView.LayoutMode.SinglePass)
    view.setGridSize(QSize(108, 140))
    view.setModel(rows)
    view.resize(600, 700)
    view.show()
    app.processEvents()
    start = time.perf_counter()
    rows.beginResetModel()
    rows.count = n
    rows.endResetModel()
    view.doItemsLayout()
    app.processEvents()
    elapsed = time.perf_counter() - start
    view.close()
    return elapsed


def bench_naive(app, table):
    x = table["valence"].to_numpy()
    y = table["arousal"].to_numpy()
    lam = table["lambda"].to_numpy()
    labels = table["label"].to_numpy()
    class_rgb = [palette.class_rgb(c, i) for i, c in enumerate(table.attrs["classes"])]
    lut = palette.colormap("lambda").getLookupTable(0.0, 1.0, nPts=256, alpha=False)

    widget = pg.PlotWidget(background="w")
    widget.resize(1000, 700)
    widget.show()
    scatter = pg.ScatterPlotItem(size=5, pen=None, symbol="o")
    highlight = pg.ScatterPlotItem(size=9, pen=pg.mkPen(255, 40, 40), brush=None, symbol="o")
    widget.addItem(scatter)
    widget.addItem(highlight)
    app.processEvents()
    results = {}

    def load():
        brushes = [pg.mkBrush(*class_rgb[int(c)]) for c in labels]
        scatter.setData(x, y, brush=brushes, pen=None)
        widget.autoRange()

    def recolour():
        brushes = [pg.mkBrush(*lut[int(v * 255)]) for v in lam]
        scatter.setBrush(brushes)

    results["load"] = timed(app, widget, load, "naive load")
    results["recolour"] = timed(app, widget, recolour, "naive recolour")

    selected = []

    def box():
        x0, y0, x1, y1 = BOX
        rows = [i for i in range(len(x)) if x0 <= x[i] <= x1 and y0 <= y[i] <= y1]
        selected[:] = rows
        highlight.setData([x[i] for i in rows], [y[i] for i in rows])

    def lasso():
        poly = QPolygonF([QPointF(px, py) for px, py in lasso_polygon()])
        rows = [i for i in range(len(x))
                if poly.containsPoint(QPointF(x[i], y[i]), Qt.FillRule.OddEvenFill)]
        selected[:] = rows
        highlight.setData([x[i] for i in rows], [y[i] for i in rows])

    results["box"] = timed(app, widget, box, "naive box")
    results["lasso"] = timed(app, widget, lasso, "naive lasso")

    view = QListView()
    view.setViewMode(QListView.ViewMode.IconMode)
    view.resize(600, 700)
    view.show()
    classes = table.attrs["classes"]
    ids = table["sample_id"].tolist()

    def grid():
        rows = sorted(selected, key=lambda r: -lam[r])
        model = QStandardItemModel()
        for r in rows:
            item = QStandardItem(f"{classes[labels[r]]}\nλ {lam[r]:.2f}")
            item.setToolTip(ids[r])
            model.appendRow(item)
        view.setModel(model)
        view._model = model

    results["grid"] = timed(app, view, grid, "naive grid", expect_paint=False)
    results["_selected"] = len(selected)
    widget.close()
    view.close()
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args(argv)
    app = QApplication.instance() or QApplication([])
    table = synthetic_table(args.n)
    print(f"{args.n:,} points, window 1000x700 offscreen, Qt {pg.Qt.QtVersion}, "
          f"pyqtgraph {pg.__version__}; times include the repaint; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    ours = bench_ours(app, table, args.repeat)
    naive = None if args.skip_naive else bench_naive(app, table)
    if not args.skip_naive:
        ours["list_view_all"] = bench_list_view(app, args.n)
    print(f"lasso: {len(lasso_polygon())}-vertex polygon; box and lasso select "
          f"{ours['_selected']:,} (lasso) points; the grid lists all {ours['_grid_rows']:,} of them, "
          f"then all {ours['_grid_all_rows']:,} rows")
    print()
    print(f"{'interaction':<34}{'ours (ms)':>12}{'naive (ms)':>14}{'naive/ours':>12}")
    labels = {"load": "load into map (setData)", "recolour": "recolour by λ",
              "box": "box select + highlight", "lasso": "lasso select + highlight",
              "grid": "grid update with selection"}
    for key, label in labels.items():
        o = ours[key] * 1e3
        if naive is None:
            print(f"{label:<34}{o:>12.1f}{'-':>14}{'-':>12}")
        else:
            nv = naive[key] * 1e3
            print(f"{label:<34}{o:>12.1f}{nv:>14.1f}{nv / o:>11.0f}x")
    naive_list = ours.get("list_view_all", float("nan"))
    print(f"{'grid, all rows listed':<34}{ours['grid_all'] * 1e3:>12.1f}{naive_list * 1e3:>14.1f}"
          f"{naive_list / ours['grid_all']:>11.0f}x   (naive: QListView icon mode)")
    print(f"{'grid, scroll to the last row':<34}{ours['grid_scroll_end'] * 1e3:>12.1f}")
    print(f"{'first (cold) load into map':<34}{ours['load_cold'] * 1e3:>12.1f}")
    print(f"(ours: median of {args.repeat}; naive: one run; "
          f"load average at the end {os.getloadavg()[0]:.1f})")
    if UNPAINTED:
        print(f"WARNING: no repaint of the points was seen in: {sorted(set(UNPAINTED))}")


if __name__ == "__main__":
    main()
