"""MapView with real (offscreen) mouse events: colours, box/lasso selection, filter, hover."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from uldl_studio.qt import palette
from uldl_studio.qt.map_colors import color_modes
from uldl_studio.qt.map_view import MapView
from uldl_studio.qt.scatter_renderer import PaletteScatterItem
from uldl_studio.qt.session_bridge import SessionBridge

pytestmark = pytest.mark.timeout(60)

from synthetic import CLASSES, colours_in, grid_table, thumb  # noqa: E402  (tests/qt/synthetic.py)


@pytest.fixture
def table():
    return grid_table()


@pytest.fixture
def view(qtbot, table):
    bridge = SessionBridge()
    widget = MapView(bridge)
    widget.thumbnail_provider = thumb
    widget.resize(800, 620)
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitExposed(widget)
    bridge.session.set_dataset(table, {})
    widget.view_box.setRange(xRange=(-1.05, 1.05), yRange=(-1.05, 1.05), padding=0)
    QApplication.processEvents()
    return widget


def to_viewport(view: MapView, x: float, y: float) -> QPoint:
    scene = view.view_box.mapViewToScene(QPointF(x, y))
    return view.plot.mapFromScene(scene)


def send_mouse(view, kind, pos: QPoint, button, buttons, modifiers=Qt.KeyboardModifier.NoModifier):
    viewport = view.plot.viewport()
    event = QMouseEvent(kind, QPointF(pos), QPointF(viewport.mapToGlobal(pos)), button, buttons, modifiers)
    QApplication.sendEvent(viewport, event)


def drag(qtbot, view, path_data, modifiers=Qt.KeyboardModifier.NoModifier):
    """Real press / move… / release events along data-coordinate points.

    pyqtgraph drops moves closer than 10 ms apart (mouseRateLimit), hence the waits.
    """
    left = Qt.MouseButton.LeftButton
    points = [to_viewport(view, x, y) for x, y in path_data]
    send_mouse(view, QEvent.Type.MouseButtonPress, points[0], left, left, modifiers)
    for p in points[1:]:
        qtbot.wait(15)
        send_mouse(view, QEvent.Type.MouseMove, p, Qt.MouseButton.NoButton, left, modifiers)
    qtbot.wait(15)
    send_mouse(view, QEvent.Type.MouseButtonRelease, points[-1], left, Qt.MouseButton.NoButton, modifiers)
    QApplication.processEvents()


def inside_box(table, x0, x1, y0, y1):
    v, a = table["valence"].to_numpy(), table["arousal"].to_numpy()
    return np.flatnonzero((v > x0) & (v < x1) & (a > y0) & (a < y1))


def test_loads_points_and_switches_colour_modes(view, table):
    assert len(view.points.data) == len(table)
    assert view.shown_rows.tolist() == list(range(len(table)))
    for mode in color_modes():
        view.set_color_mode(mode)
        QApplication.processEvents()
        assert view.color_mode == mode
        assert len(view.points.data) == len(table)
    view.set_color_mode("lambda")
    assert view.colorbar.isVisible() and not view.legend.isVisible()
    view.set_color_mode("given")
    assert view.legend.isVisible() and not view.colorbar.isVisible()
    view.set_point_size(9)
    view.set_coordinates("features")
    assert np.allclose(view.points.data["x"].min(), table["x2d"].min())
    view.set_coordinates("va")
    view.set_color_mode("given")
    QApplication.processEvents()
    painted = colours_in(view, step=2)
    present = {CLASSES[k] for k in np.unique(table["label"])}
    for name in present:  # every class on the map is drawn in its colour
        assert palette.class_rgb(name, CLASSES.index(name)) in painted, name


def test_categorical_colours_match_labels(view, table):
    view.set_color_mode("given")
    item = view.points
    # each drawn point's brush is the palette entry of its row's label
    rows = view.shown_rows
    xy_to_row = {(x, y): r for r, (x, y) in zip(rows, view.coordinates()[rows])}
    brushes = item._palette
    drawn = item.brushes()
    for k in range(0, len(item.data), 37):
        row = xy_to_row[(item.data["x"][k], item.data["y"][k])]
        assert drawn[k] is brushes[table["label"].iloc[row]]


def test_box_drag_selects_exactly_the_points_inside(qtbot, view, table):
    box = (-0.52, 0.31, -0.21, 0.42)  # x0, x1, y0, y1 — between grid lines
    drag(qtbot, view, [(box[0], box[2]), (0.0, 0.0), (box[1], box[3])])
    expected = inside_box(table, *box)
    assert expected.size > 10
    assert view.session.selection.tolist() == expected.tolist()
    assert len(view.selection_marks.data) == expected.size

    # Shift adds a second box
    box2 = (0.52, 0.81, 0.52, 0.81)
    drag(qtbot, view, [(box2[0], box2[2]), (box2[1], box2[3])], Qt.KeyboardModifier.ShiftModifier)
    both = np.union1d(expected, inside_box(table, *box2))
    assert view.session.selection.tolist() == both.tolist()

    # Alt removes a box from it
    box3 = (-0.12, 0.31, -0.21, 0.42)
    drag(qtbot, view, [(box3[0], box3[2]), (box3[1], box3[3])], Qt.KeyboardModifier.AltModifier)
    remaining = np.setdiff1d(both, inside_box(table, *box3))
    assert view.session.selection.tolist() == remaining.tolist()

    # Ctrl+Shift removes too, as does any gesture while Subtract is down
    drag(qtbot, view, [(box2[0], box2[2]), (box2[1], box2[3])],
         Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    remaining = np.setdiff1d(remaining, inside_box(table, *box2))
    assert view.session.selection.tolist() == remaining.tolist()
    view.subtract_button.setChecked(True)
    drag(qtbot, view, [(box[0], box[2]), (box[1], box[3])])
    assert view.session.selection.size == 0


def test_lasso_selects_points_in_the_polygon(qtbot, view, table):
    view.set_interaction_mode("lasso")
    # an L shape, all edges between grid lines: = box A ∪ box B
    lasso = [(-0.62, -0.62), (0.41, -0.62), (0.41, -0.11), (-0.11, -0.11), (-0.11, 0.52), (-0.62, 0.52)]
    drag(qtbot, view, lasso)
    expected = np.union1d(inside_box(table, -0.62, 0.41, -0.62, -0.11),
                          inside_box(table, -0.62, -0.11, -0.11, 0.52))
    assert view.session.selection.tolist() == expected.tolist()
    # selected points keep their colour; the others are drawn faded
    view.set_color_mode("given")
    QApplication.processEvents()
    painted = colours_in(view, step=2)
    faded = palette.dim_brush(palette.class_brushes(CLASSES)[int(table["label"].iloc[0])]).color()
    assert (faded.red(), faded.green(), faded.blue()) in painted


def test_pan_mode_does_not_select(qtbot, view):
    view.set_interaction_mode("pan")
    before = view.view_box.viewRange()
    drag(qtbot, view, [(0.0, 0.0), (0.3, 0.3)])
    assert view.session.selection.size == 0
    assert view.view_box.viewRange() != before


def test_click_picks_nearest_point(qtbot, view, table):
    row = 123
    x, y = table.loc[row, ["valence", "arousal"]]
    pos = to_viewport(view, x + 0.01, y - 0.01)
    qtbot.mouseClick(view.plot.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert view.session.current == row
    assert len(view.current_mark.data) == 1
    assert view.row_at(5.0, 5.0) == -1


def test_hover_shows_thumbnail_card(qtbot, view, table):
    row = 77
    x, y = table.loc[row, ["valence", "arousal"]]
    with qtbot.waitSignal(view.hovered, timeout=2000) as blocker:
        send_mouse(view, QEvent.Type.MouseMove, to_viewport(view, x, y),
                   Qt.MouseButton.NoButton, Qt.MouseButton.NoButton)
    assert blocker.args == [row]
    assert view.hover_card_visible()
    assert not view._hover_card.image.pixmap().isNull()
    assert "img0077" in view._hover_card.text.text()


def test_filter_banner(qtbot, view, table):
    anger, fear = CLASSES.index("anger"), CLASSES.index("fear")
    with qtbot.waitSignal(view.bridge.filterChanged):
        view.session.set_filter({fear, anger}, {"lambda": (0.6, 1.0)})
    keep = table["label"].isin([anger, fear]) & (table["lambda"] >= 0.6)
    shown = int(keep.sum())
    assert view.banner.isVisible()
    assert view.banner_text() == f"Filtered: anger, fear · λ 0.6–1.0 · {shown:,} of {len(table):,} shown"
    assert view.shown_rows.tolist() == np.flatnonzero(keep).tolist()
    assert len(view.points.data) == shown
    # gestures only pick shown points
    view.select_box(-2, -2, 2, 2)
    assert view.session.selection.tolist() == np.flatnonzero(keep).tolist()
    view.session.select(None)
    view.set_color_mode("given")
    QApplication.processEvents()
    view.legend.hide()  # the legend lists every class; the points are what is filtered
    painted = colours_in(view, step=1)
    assert palette.class_rgb("anger") in painted and palette.class_rgb("fear") in painted
    assert palette.class_rgb("happiness") not in painted  # filtered out, not drawn
    with qtbot.waitSignal(view.bridge.filterChanged):
        qtbot.mouseClick(view.banner_clear, Qt.MouseButton.LeftButton)
    assert not view.session.filter.active
    assert not view.banner.isVisible()
    assert len(view.points.data) == len(table)


def test_edited_marks_and_refresh_keep_view(view, table):
    marked = table.copy()
    marked.attrs = dict(table.attrs)
    marked["edited"] = False
    marked.loc[[1, 2, 3], "edited"] = True
    view.session.set_dataset(marked, {})
    assert len(view.edited_marks.data) == 3
    view.view_box.setRange(xRange=(0, 0.5), yRange=(0, 0.5), padding=0)
    before = view.view_box.viewRange()
    new = marked.copy()
    new.attrs = dict(table.attrs)
    new["lambda"] = 1 - new["lambda"]
    new["edited"] = False
    new.loc[[5, 6], "edited"] = True
    view.set_color_mode("lambda")
    # same rows, new results: the session re-reads them (as after a training epoch)
    view.session.update_results(new)
    assert np.allclose(view.view_box.viewRange(), before)
    assert len(view.edited_marks.data) == 2


def test_umap_request_and_provided_coordinates(qtbot, view, table):
    with qtbot.waitSignal(view.coordinatesRequested) as blocker:
        view.set_coordinates("umap")
    assert blocker.args == ["umap"] and view.coordinate_mode == "va"
    xy = np.c_[np.arange(len(table)), np.zeros(len(table))]
    view.set_coordinates("umap", xy)
    assert view.coordinate_mode == "umap"
    assert view.points.data["x"].max() == len(table) - 1


def test_palette_item_draws_like_stock_scatter(qtbot):
    """The vectorised item renders the same pixels as pyqtgraph's per-point brush path."""
    import pyqtgraph as pg

    brushes = [pg.mkBrush(255, 0, 0), pg.mkBrush(0, 160, 0), pg.mkBrush(0, 0, 255)]
    rng = np.random.default_rng(3)
    x, y = rng.uniform(0, 1, 300), rng.uniform(0, 1, 300)
    codes = rng.integers(0, 3, 300)
    images = []
    for fast in (True, False):
        widget = pg.PlotWidget(background="w")
        qtbot.addWidget(widget)
        widget.resize(300, 300)
        if fast:
            item = PaletteScatterItem(brushes, size=7)
            item.set_points(x, y, codes)
        else:
            item = pg.ScatterPlotItem(size=7, pen=None, symbol="o")
            item.setData(x, y, brush=[brushes[c] for c in codes])
        widget.addItem(item)
        widget.setRange(xRange=(0, 1), yRange=(0, 1))
        widget.show()
        qtbot.waitExposed(widget)
        images.append(widget.grab().toImage())
    assert images[0] == images[1]


def _render(qtbot, item, size=(400, 300), xr=(0, 1), yr=(0, 1)):
    import pyqtgraph as pg

    widget = pg.PlotWidget(background="w")
    qtbot.addWidget(widget)
    widget.resize(*size)
    widget.addItem(item)
    widget.setRange(xRange=xr, yRange=yr, padding=0)
    widget.show()
    qtbot.waitExposed(widget)
    QApplication.processEvents()
    return widget


@pytest.mark.parametrize("size", [5, 6, 9])
def test_occlusion_culling_is_pixel_identical(qtbot, monkeypatch, size):
    """Leaving out points hidden under later opaque ones changes no pixel."""
    import pyqtgraph as pg

    brushes = [pg.mkBrush(230, 159, 0), pg.mkBrush(0, 114, 178), pg.mkBrush(0, 158, 115, 120)]
    rng = np.random.default_rng(5)
    n = 40_000
    x = np.clip(rng.normal(0.5, 0.15, n), -0.1, 1.1)  # some points outside the view
    y = np.clip(rng.normal(0.5, 0.15, n), -0.1, 1.1)
    codes = rng.integers(0, 3, n)  # code 2 is translucent: never an occluder
    on_top = rng.random(n) < 0.3
    item = PaletteScatterItem(brushes, size=size)
    item.set_points(x, y, codes, on_top=on_top)
    widget = _render(qtbot, item)
    culled = widget.grab().toImage()
    stats = dict(item.paint_stats)
    assert stats["points"] == n and stats["drawn"] < stats["in_view"] <= n
    monkeypatch.setattr(PaletteScatterItem, "OCCLUSION_MIN_POINTS", 10**9)
    item._frag_key = None
    full = widget.grab().toImage()
    assert item.paint_stats["drawn"] == stats["in_view"]
    assert culled == full


def test_on_top_points_are_drawn_last(qtbot):
    import pyqtgraph as pg

    red, blue = pg.mkBrush(255, 0, 0), pg.mkBrush(0, 0, 255)
    item = PaletteScatterItem([red, blue], size=12)
    item.set_points(np.array([0.5, 0.5]), np.array([0.5, 0.5]), np.array([0, 1]))
    widget = _render(qtbot, item, size=(200, 200))

    def centre():
        QApplication.processEvents()
        img = widget.grab().toImage()
        pos = widget.plotItem.vb.mapViewToScene(QPointF(0.5, 0.5))
        p = widget.mapFromScene(pos)
        return img.pixelColor(p.x(), p.y()).name()

    assert centre() == "#0000ff"  # the later point
    item.set_codes(np.array([0, 1]), on_top=np.array([True, False]))
    assert centre() == "#ff0000"
    with pytest.raises(ValueError):
        item.set_codes(np.array([0, 1]), on_top=np.array([True]))


def test_selection_fades_the_rest_and_draws_selected_on_top(view, table):
    item = view.points
    n_brushes = view._n_brushes
    assert item.on_top() is None and (item.codes() < n_brushes).all()
    rows = view.select_box(-0.52, 0.31, -0.21, 0.42)
    QApplication.processEvents()
    xy_to_row = {(x, y): r for r, (x, y) in enumerate(view.coordinates())}
    drawn_rows = np.array([xy_to_row[(x, y)] for x, y in zip(item.data["x"], item.data["y"])])
    selected = np.isin(drawn_rows, rows)
    assert item.on_top().tolist() == selected.tolist()
    assert (item.codes()[selected] < n_brushes).all()
    assert (item.codes()[~selected] >= n_brushes).all()  # the faded palette half
    faded = item._palette[item.codes()[~selected][0]].color()
    full = item._palette[item.codes()[~selected][0] - n_brushes].color()
    assert faded.alpha() == 255 and faded != full  # opaque, lighter variant
    view.session.select(None)
    QApplication.processEvents()
    assert item.on_top() is None and (item.codes() < n_brushes).all()
    assert len(view.selection_marks.data) == 0


def test_huge_selection_skips_the_rings(view, table, monkeypatch):
    monkeypatch.setattr(MapView, "RING_LIMIT", 50)
    rows = view.select_box(-2, -2, 2, 2)
    assert rows.size == len(table)
    assert len(view.selection_marks.data) == 0  # colour only
    view.select_box(-0.52, -0.21, 0.31, 0.42)
    assert 0 < len(view.selection_marks.data) <= 50


def test_lasso_on_many_points_matches_the_core_predicate(qtbot):
    from uldl_studio.core.review.selection import points_in_polygon

    rng = np.random.default_rng(2)
    n = 30_000
    table = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "path": "", "split": "train",
                          "label": rng.integers(0, 8, n), "valence": rng.uniform(-1, 1, n),
                          "arousal": rng.uniform(-1, 1, n), "lambda": rng.random(n)})
    table.attrs["classes"] = CLASSES
    widget = MapView()
    qtbot.addWidget(widget)
    widget.session.set_dataset(table, {})
    theta = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    poly = np.c_[0.6 * np.cos(theta) * (1 + 0.3 * np.sin(4 * theta)), 0.6 * np.sin(theta)]
    rows = widget.select_polygon(poly)
    expected = np.flatnonzero(points_in_polygon(table["valence"].to_numpy(),
                                                table["arousal"].to_numpy(), poly))
    assert rows.tolist() == expected.tolist()


def test_recolouring_reuses_brushes(view):
    """The symbol atlas is keyed by brush object: recolouring back and forth adds no sprites."""
    for mode in ("lambda", "given", "lambda", "given"):
        view.set_color_mode(mode)
        QApplication.processEvents()
        if mode == "given" and not hasattr(view, "_atlas_size"):
            view._atlas_size = len(view.points.fragmentAtlas)
    assert len(view.points.fragmentAtlas) == view._atlas_size


def test_lambda_colour_scale_follows_the_data(qtbot):
    """A narrow band of λ gets a colour range fitted to it, not the fixed 0–1."""
    import numpy as np
    import pandas as pd

    from uldl_studio.qt.map_view import MapView

    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame({
        "sample_id": [f"s{i}" for i in range(n)], "path": ["x"] * n, "split": ["train"] * n,
        "label": rng.integers(0, 3, n), "valence": rng.uniform(-1, 1, n), "arousal": rng.uniform(-1, 1, n),
        "lambda": rng.uniform(0.15, 0.35, n),
    })
    frame.attrs = {"classes": ["neutral", "happiness", "sadness"], "root": "x", "format": "csv"}
    view = MapView()
    qtbot.addWidget(view)
    view.session.set_dataset(frame, {})
    view.set_color_mode("lambda")
    lo, hi = view._value_range
    assert 0.14 < lo < 0.17 and 0.33 < hi < 0.36


def issue_table():
    """grid_table with predictions that agree with the labels on ~3/4 of the rows."""
    table = grid_table()
    probs = table[[f"p_{c}" for c in CLASSES]].to_numpy()
    labels = table["label"].to_numpy()
    agree = np.arange(len(table)) % 4 != 0
    probs[agree] = 0.2 * probs[agree] + 0.8 * np.eye(len(CLASSES))[labels[agree]]
    for j, c in enumerate(CLASSES):
        table[f"p_{c}"] = probs[:, j]
    table.loc[:79, "split"] = "valid"
    return table


def test_default_colouring_highlights_the_likely_wrong_labels(qtbot):
    from uldl_studio.core.labels.label_issues import PRECISION, label_issues
    from uldl_studio.qt.map_colors import quantiles

    table = issue_table()
    bridge = SessionBridge()
    view = MapView(bridge)
    qtbot.addWidget(view)
    view.resize(800, 620)
    view.show()
    qtbot.waitExposed(view)
    bridge.session.set_dataset(table, {})
    assert view.default_color_mode() == "label_wrong_prob"
    view.set_color_mode("label_wrong_prob")
    QApplication.processEvents()
    issues = label_issues(table)
    p_wrong = issues.p_wrong
    strong = issues.highlighted()
    assert 0 < strong.sum() < len(table)
    # the likeliest wrong labels, each more likely wrong than right, expected ≥ PRECISION wrong
    assert p_wrong[strong].min() >= 0.5 and p_wrong[strong].mean() >= PRECISION
    assert p_wrong[~strong & np.isfinite(p_wrong)].max() < p_wrong[strong].min()
    high, shown, mean = view.highlight_counts()
    assert (high, shown) == (int(strong.sum()), len(table)) and np.isclose(mean, p_wrong[strong].mean())
    texts = view.legend_texts()
    assert texts[0] == f"{high:,} highlighted: likeliest wrong labels (≈ {mean:.0%} expected wrong)"
    assert texts[1].startswith(f"{len(table) - high:,} muted")
    # strong codes for exactly the highlighted rows, drawn on top (last)
    n = palette.N_BINS
    codes = view._codes
    assert np.array_equal(codes >= n, strong)
    drawn = view.points.codes()[view.points.draw_sequence()]
    assert (drawn[-high:] >= n).all()
    painted = colours_in(view, step=2)
    assert any(r > 140 and g < 120 and b < 80 for r, g, b in painted), "strong warm colours are drawn"
    # by quantile in one step: the codes follow the rank, the highlighted set stays
    view.set_scale("quantile")
    assert view.scale_combo.currentData() == "quantile"
    assert np.array_equal(view._codes >= n, strong)
    expected = palette.bin_values(quantiles(p_wrong), 0.0, 1.0) + n * strong
    assert np.array_equal(view._codes, expected)
    assert view.colorbar.axis.labelText.startswith("quantile of")
    # any other score by quantile too, with no highlight
    view.set_color_mode("lambda")
    assert view.highlight_counts() is None and not view.legend.isVisible()
    lam = table["lambda"].to_numpy()
    assert np.array_equal(view._codes, palette.bin_values(quantiles(lam), 0.0, 1.0))
    view.scale_combo.activated.emit(view.scale_combo.findData("full"))
    assert view.scale == "full"
    assert np.array_equal(view._codes, palette.bin_values(lam, 0.0, 1.0))


def test_quantiles_by_hand():
    from uldl_studio.qt.map_colors import quantiles

    out = quantiles(np.array([3.0, np.nan, 1.0, 2.0, 2.0]))
    assert np.isnan(out[1])
    assert np.allclose(out[[0, 2, 3, 4]], [1.0, 0.0, 0.5, 0.5])


@pytest.mark.parametrize("kind", ["permutation", "subset"])
def test_drawing_order_and_subsets_draw_like_stock_scatter(qtbot, kind):
    """``order`` (all points or some, with on-top points last) paints what pyqtgraph paints
    for the same points in that sequence, culled or not."""
    import pyqtgraph as pg

    brushes = [pg.mkBrush(230, 159, 0), pg.mkBrush(0, 114, 178), pg.mkBrush(0, 158, 115)]
    rng = np.random.default_rng(7)
    n = 45_000
    x = np.clip(rng.normal(0.5, 0.2, n), -0.1, 1.1)
    y = np.clip(rng.normal(0.5, 0.2, n), -0.1, 1.1)
    codes = rng.integers(0, 3, n)
    order = rng.permutation(n)
    if kind == "subset":
        order = order[: n * 2 // 3]
    on_top = rng.random(n) < 0.2
    item = PaletteScatterItem(brushes, size=6)
    item.set_points(x, y, codes, order=order, on_top=on_top)
    seq = item.draw_sequence()
    assert set(seq.tolist()) == set(order.tolist())
    assert on_top[seq[-int(on_top[order].sum()):]].all()  # the flagged ones come last
    ours = _render(qtbot, item).grab().toImage()
    assert item.paint_stats["drawn"] < item.paint_stats["in_view"] <= order.size
    stock = pg.ScatterPlotItem(size=6, pen=None, symbol="o")
    stock.setData(x[seq], y[seq], brush=[brushes[c] for c in codes[seq]])
    assert _render(qtbot, stock).grab().toImage() == ours


def test_lasso_fast_path_matches_the_core_predicate_on_edges():
    """The cell-classified lasso test gives the exact predicate's answer, for points on a
    grid that the polygon's edges and vertices run through."""
    from uldl_studio.core.review.selection import points_in_polygon
    from uldl_studio.qt.map_gestures import polygon_mask

    rng = np.random.default_rng(3)
    g = np.round(rng.uniform(-1, 1, (80_000, 2)), 1)
    for vertices in ([(-0.6, -0.6), (0.4, -0.6), (0.4, -0.1), (-0.1, -0.1), (-0.1, 0.5), (-0.6, 0.5)],
                     np.round(rng.uniform(-1, 1, (25, 2)), 1)):
        fast = polygon_mask(g[:, 0], g[:, 1], vertices)
        exact = points_in_polygon(g[:, 0], g[:, 1], np.asarray(vertices, dtype=np.float64))
        assert 0 < fast.sum() < len(g) and np.array_equal(fast, exact)


def dense_table(n: int = 2000) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    table = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "path": "", "split": "train",
                          "label": rng.integers(0, len(CLASSES), n),
                          "valence": rng.normal(0, 0.3, n), "arousal": rng.normal(0, 0.3, n),
                          "lambda": rng.random(n)})
    table.attrs["classes"] = CLASSES
    return table


def test_density_layer_counts_the_shown_points_and_follows_the_filter(qtbot):
    bridge = SessionBridge()
    view = MapView(bridge)
    qtbot.addWidget(view)
    view.resize(700, 500)
    view.show()
    qtbot.waitExposed(view)
    table = dense_table()
    bridge.session.set_dataset(table, {})
    assert not view.density_enabled and not view.density.image_item.isVisible()  # few points: off
    assert view.points.draw_sequence().size == len(table)
    qtbot.mouseClick(view.density_toggle, Qt.MouseButton.LeftButton)  # the user turns it on
    QApplication.processEvents()
    assert view.density_enabled and view.density.image_item.isVisible()
    assert view.density.counts.sum() == len(table)
    assert view.density.image_item.image is not None and view.density.image_item.image[..., 3].any()
    # instead of the points: none drawn until some are selected, then those
    assert view.points.draw_sequence().size == 0
    rows = view.select_box(-0.2, -0.2, 0.2, 0.2)
    QApplication.processEvents()
    assert rows.size and sorted(view.shown_rows[view.points.draw_sequence()].tolist()) == rows.tolist()
    # a filter: the density counts what is shown
    view.session.select(None)
    anger = CLASSES.index("anger")
    view.session.set_filter({anger}, {})
    assert view.density.counts.sum() == view.shown_rows.size == int((table["label"] == anger).sum())
    view.set_density(False)
    assert not view.density.image_item.isVisible() and not view.density_toggle.isChecked()
    assert view.points.draw_sequence().size == view.shown_rows.size


def test_density_is_on_by_itself_for_many_points_and_keeps_the_highlighted(qtbot, monkeypatch):
    from uldl_studio.qt import map_density

    monkeypatch.setattr(map_density, "AUTO_POINTS", 300)
    table = issue_table()
    view = MapView()
    qtbot.addWidget(view)
    view.session.set_dataset(table, {})
    assert view.density_enabled and view.density_toggle.isChecked()
    view.set_color_mode("label_wrong_prob")
    high, shown, _ = view.highlight_counts()
    drawn = view.points.draw_sequence()
    assert drawn.size == high and (view.points.codes()[drawn] >= palette.N_BINS).all()
    # the user's choice holds for the next table
    view.set_density(False)
    view.session.set_dataset(issue_table(), {})
    assert not view.density_enabled


def test_the_legend_steps_aside_in_a_small_map(qtbot, view):
    """A legend that would cover most of a small map is hidden (its lines are still known, and
    the colour bar stays); it comes back when the map grows."""
    view.set_color_mode("given")
    view.resize(900, 700)
    qtbot.waitUntil(lambda: view.legend.isVisible(), timeout=5_000)
    lines = view.legend_texts()
    view.resize(220, 170)
    qtbot.waitUntil(lambda: not view.legend.isVisible(), timeout=5_000)
    assert view.legend_texts() == lines
    view.resize(900, 700)
    qtbot.waitUntil(lambda: view.legend.isVisible(), timeout=5_000)
