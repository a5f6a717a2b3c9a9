"""GridView: shows the selection sorted by λ, lazy thumbnails, linked with the map."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from uldl_studio.qt.grid_view import GridView, sort_order
from uldl_studio.qt.map_view import MapView
from uldl_studio.qt.selection_model import SelectionModel


pytestmark = pytest.mark.timeout(60)

from synthetic import CLASSES, grid_table, thumb  # noqa: E402  (tests/qt/synthetic.py)


class Provider:
    def __init__(self):
        self.calls = []

    def __call__(self, row):
        self.calls.append(row)
        return thumb(row, size=64, saturation=170, value=210)


@pytest.fixture
def table():
    return grid_table()


@pytest.fixture
def grid(qtbot, table):
    model = SelectionModel()
    model.reset(len(table))
    widget = GridView(model)
    widget.thumbnail_provider = Provider()
    widget.resize(520, 480)
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitExposed(widget)
    widget.set_table(table)
    return widget


def test_shows_all_rows_sorted_by_lambda_when_nothing_selected(grid, table):
    assert grid.rows().tolist() == np.argsort(-table["lambda"].to_numpy(), kind="stable").tolist()


def test_shows_selection_sorted_by_lambda_descending(grid, table):
    rows = np.array([3, 150, 42, 399, 7])
    grid.selection_model.set_selection(rows)
    shown = grid.rows()
    assert sorted(shown.tolist()) == sorted(rows.tolist())
    lam = table["lambda"].to_numpy()[shown]
    assert np.all(np.diff(lam) <= 0)
    assert "5 samples (selected)" in grid.info_label.text()


def test_sort_keys(grid, table):
    grid.set_sort_key("sample_id")
    assert grid.rows()[:3].tolist() == [0, 1, 2]
    grid.set_sort_key("disagreement")
    probs = table[[f"p_{c}" for c in table.attrs["classes"]]].to_numpy()
    score = 1 - probs[np.arange(len(table)), table["label"].to_numpy()]
    assert np.all(np.diff(score[grid.rows()]) <= 1e-12)
    grid.set_sort_key("entropy")
    assert grid.rows().tolist() == sort_order(table, "entropy").tolist()


def test_thumbnails_are_fetched_lazily_for_visible_items(qtbot, grid, table):
    provider = grid.thumbnail_provider
    qtbot.waitUntil(lambda: len(provider.calls) > 0, timeout=2000)
    QApplication.processEvents()
    assert 0 < len(set(provider.calls)) < len(table) / 2
    edited = table.copy()
    edited.attrs = dict(table.attrs)
    edited["edited"] = False
    edited.loc[grid.rows()[[1, 4]], "edited"] = True
    grid.refresh_values(edited)
    assert grid.model.data(grid.model.index(1)).startswith("✎ ")
    grid.set_thumbnail_size(64)
    qtbot.wait(200)  # let the lazy fetch fill the visible items
    grid.grab().save("/tmp/grid_view.png")


def test_click_sets_current_and_current_scrolls(qtbot, grid, table):
    grid.selection_model.set_selection(np.arange(0, 60))
    QApplication.processEvents()
    index = grid.model.index(2)
    rect = grid.list_view.visualRect(index)
    with qtbot.waitSignal(grid.selection_model.currentChanged) as blocker:
        qtbot.mouseClick(grid.list_view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert blocker.args == [int(grid.rows()[2])]
    # a current row set elsewhere is selected here
    target = int(grid.rows()[40])
    grid.selection_model.set_current(target)
    assert grid.list_view.currentIndex().row() == 40


def test_max_items_caps_the_listing(grid, table):
    grid.set_max_items(50)
    assert grid.model.rowCount() == 50 and grid.show_all_button.isVisibleTo(grid)
    grid.set_max_items(None)
    assert grid.model.rowCount() == len(table)


def test_linked_with_map(qtbot, table):
    model = SelectionModel()
    model.reset(len(table))
    map_view = MapView(model)
    grid = GridView(model)
    for w in (map_view, grid):
        qtbot.addWidget(w)
        w.show()
    map_view.set_table(table)
    grid.set_table(table)
    rows = map_view.select_box(-0.52, -0.21, 0.31, 0.42)
    assert sorted(grid.rows().tolist()) == rows.tolist()
    grid.list_view.setCurrentIndex(grid.model.index(0))
    assert model.current == int(grid.rows()[0])
    assert np.allclose(map_view.current_mark.data["x"], table["valence"].iloc[model.current])


def test_filter_mask_hides_rows_and_combines_with_the_selection(grid, table):
    """The window's filters (e.g. "edited only") reach the grid through set_filter_mask."""
    order = np.argsort(-table["lambda"].to_numpy(), kind="stable")
    keep = np.arange(len(table)) % 3 == 0
    grid.set_filter_mask(keep)
    assert grid.rows().tolist() == order[keep[order]].tolist()
    grid.selection_model.set_selection(np.arange(30))
    assert grid.rows().tolist() == [r for r in order.tolist() if r < 30 and r % 3 == 0]
    grid.selection_model.set_selection(np.empty(0, dtype=np.int64))
    grid.set_filter_mask(None)
    assert grid.rows().tolist() == order.tolist()
