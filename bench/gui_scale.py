"""GUI scale benchmark: 300,000 points (or ``--n``) in the map and the grid, ULDL Studio vs a
naive baseline.

Each interaction is timed on a real (offscreen) QApplication from the call until
``processEvents()`` has delivered the repaint of the shown window, so drawing is included
(the script counts the paints of the point items to make sure each timed call drew).

    QT_QPA_PLATFORM=offscreen python bench/gui_scale.py [--n 300000] [--repeat 5] [--skip-naive]

Ours: ``MapView`` (one vectorised ``PaletteScatterItem`` that skips points painted over by
later ones, selection shown by fading the others, box and lasso tests in numpy) and
``GridView`` (index-array list model), with the map's density layer off and on.  Medians of
``--repeat`` runs; the first ("cold") load, which also allocates the point buffer and
renders the symbol sprites, and the first recolouring by λ (before its colours are cached)
are printed too.  Naive: a stock ``pg.ScatterPlotItem`` fed a per-point brush list built with
``pg.mkBrush`` every time, a Python loop for box/lasso tests, and a ``QStandardItemModel``
with one item per grid row.
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
from uldl_studio.qt.map_colors import ColoringCache  # noqa: E402
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
        n = self.point_count() if isinstance(self, PaletteScatterItem) else len(self.data)
        if n >= 1000:
            PAINTS["big"] += 1
        return paint(self, painter, option, widget)
    return counting_paint


# PaletteScatterItem has its own paint() (calls the stock one only as a fallback)
pg.ScatterPlotItem.paint = _counting(pg.ScatterPlotItem.paint)
PaletteScatterItem.paint = _counting(PaletteScatterItem.paint)
UNPAINTED: list[str] = []


#: wall time, or with ``--clock cpu`` the GUI thread's CPU time (steadier on a busy machine:
#: Qt paints offscreen in that thread)
CLOCK = {"now": time.perf_counter}


def timed(app, widget, fn, name: str = "", expect_paint: bool = True) -> float:
    app.processEvents()
    before = PAINTS["big"]
    start = CLOCK["now"]()
    fn()
    # the items' update() requests are posted; processEvents delivers them and the shown
    # window paints (once) before it returns, so the time includes drawing (PAINTS checks it)
    app.processEvents()
    elapsed = CLOCK["now"]() - start
    if expect_paint and PAINTS["big"] == before:
        UNPAINTED.append(name)
    return elapsed


MAP_KEYS = ("load", "recolour", "recolour_first", "box", "lasso")


def bench_map(app, map_view, grid, repeat):
    """The map's interactions, ``repeat`` times each (the grid's reaction left out)."""
    bridge, model = map_view.bridge, map_view.session

    def load():  # the map's whole reaction to a new table in the session
        map_view._on_table_reset()

    times = {k: [] for k in MAP_KEYS}
    # the grid is linked: its update is part of no map timing, so block it here
    bridge.queueChanged.disconnect(grid._on_queue_changed)
    for _ in range(repeat):
        model.select(None)
        map_view.points.clear()
        app.processEvents()
        times["load"].append(timed(app, map_view, load, "load"))
        for key in ("recolour_first", "recolour"):  # given -> λ, the first time and again
            map_view.set_color_mode("given")
            if key == "recolour_first":
                map_view._colorings = ColoringCache()
            app.processEvents()
            times[key].append(timed(app, map_view, lambda: map_view.set_color_mode("lambda"), key))
        model.select(None)
        app.processEvents()
        times["box"].append(timed(app, map_view, lambda: map_view.select_box(*BOX), "box"))
        times["lasso"].append(timed(app, map_view, lambda: map_view.select_polygon(lasso_polygon()), "lasso"))
    bridge.queueChanged.connect(grid._on_queue_changed)
    results = {key: statistics.median(values) for key, values in times.items()}
    results["load_cold"] = times["load"][0]
    return results


def bench_ours(app, table, repeat):
    bridge = SessionBridge()
    model = bridge.session
    map_view = MapView(bridge)
    map_view.resize(1000, 700)
    map_view.show()
    grid = GridView(bridge)
    grid.resize(600, 700)
    grid.show()
    map_view.set_density(False)
    model.set_dataset(table, {})
    grid.set_sort_key("lambda")
    app.processEvents()
    results = bench_map(app, map_view, grid, repeat)
    results["_selected"] = int(model.selection.size)
    results["grid"] = statistics.median(
        timed(app, grid, grid._update_rows, "grid", expect_paint=False) for _ in range(repeat))
    results["_grid_rows"] = int(grid.model.rows.size)
    map_view.set_density(True)
    density = bench_map(app, map_view, grid, repeat)
    results.update({f"density_{key}": value for key, value in density.items()})
    # every row listed (nothing selected), then a jump to the end of the listing
    bridge.queueChanged.disconnect(grid._on_queue_changed)
    model.select(None)
    bridge.queueChanged.connect(grid._on_queue_changed)
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
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall time (default) or the GUI thread's CPU time")
    args = parser.parse_args(argv)
    if args.clock == "cpu":
        CLOCK["now"] = time.thread_time
    app = QApplication.instance() or QApplication([])
    table = synthetic_table(args.n)
    clock = "CPU time of the GUI thread" if args.clock == "cpu" else "wall time"
    print(f"{args.n:,} points, window 1000x700 offscreen, Qt {pg.Qt.QtVersion}, "
          f"pyqtgraph {pg.__version__}; {clock}, repaint included; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    ours = bench_ours(app, table, args.repeat)
    naive = None if args.skip_naive else bench_naive(app, table)
    if not args.skip_naive:
        ours["list_view_all"] = bench_list_view(app, args.n)
    print(f"lasso: {len(lasso_polygon())}-vertex polygon; box and lasso select "
          f"{ours['_selected']:,} (lasso) points; the grid lists all {ours['_grid_rows']:,} of them, "
          f"then all {ours['_grid_all_rows']:,} rows")
    print()
    print(f"{'interaction':<34}{'ours (ms)':>11}{'density on':>12}{'naive (ms)':>12}{'naive/ours':>12}")
    labels = {"load": "load into map (setData)", "recolour": "recolour by λ",
              "recolour_first": "recolour by λ, first time", "box": "box select + highlight",
              "lasso": "lasso select + highlight", "grid": "grid update with selection"}
    for key, label in labels.items():
        o = ours[key] * 1e3
        d = f"{ours['density_' + key] * 1e3:>12.1f}" if "density_" + key in ours else f"{'-':>12}"
        if naive is None or key not in naive:
            print(f"{label:<34}{o:>11.1f}{d}{'-':>12}{'-':>12}")
        else:
            nv = naive[key] * 1e3
            print(f"{label:<34}{o:>11.1f}{d}{nv:>12.1f}{nv / o:>11.0f}x")
    naive_list = ours.get("list_view_all", float("nan"))
    print(f"{'grid, all rows listed':<34}{ours['grid_all'] * 1e3:>11.1f}{'-':>12}{naive_list * 1e3:>12.1f}"
          f"{naive_list / ours['grid_all']:>11.0f}x   (naive: QListView icon mode)")
    print(f"{'grid, scroll to the last row':<34}{ours['grid_scroll_end'] * 1e3:>11.1f}")
    print(f"{'first (cold) load into map':<34}{ours['load_cold'] * 1e3:>11.1f}"
          f"{ours['density_load_cold'] * 1e3:>12.1f}")
    print(f"(ours: median of {args.repeat}; naive: one run; "
          f"load average at the end {os.getloadavg()[0]:.1f})")
    if UNPAINTED:
        print(f"WARNING: no repaint of the points was seen in: {sorted(set(UNPAINTED))}")


if __name__ == "__main__":
    main()
