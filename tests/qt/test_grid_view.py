"""GridView: shows the selection sorted by λ, lazy thumbnails, linked with the map."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from uldl_studio.core.labels import scores
from uldl_studio.qt.grid_view import GridView
from uldl_studio.qt.map_view import MapView
from uldl_studio.qt.session_bridge import SessionBridge


pytestmark = pytest.mark.timeout(60)

from synthetic import colours_in, grid_table, thumb  # noqa: E402  (tests/qt/synthetic.py)


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
    widget = GridView(SessionBridge())
    widget.thumbnail_provider = Provider()
    widget.resize(520, 480)
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitExposed(widget)
    widget.session.set_dataset(table, {})
    widget.set_sort_key("lambda")
    return widget


def test_default_sort_is_the_combined_ambiguity(qtbot, table):
    grid = GridView(SessionBridge())
    qtbot.addWidget(grid)
    grid.session.set_dataset(table, {})
    assert grid.sort_key == "ambiguity"
    assert grid.rows().tolist() == scores.sort_order(table, "ambiguity").tolist()
    assert grid.sort_combo.currentData() == "ambiguity"


def test_shows_all_rows_sorted_by_lambda_when_nothing_selected(grid, table):
    assert grid.rows().tolist() == np.argsort(-table["lambda"].to_numpy(), kind="stable").tolist()


def test_shows_selection_sorted_by_lambda_descending(grid, table):
    rows = np.array([3, 150, 42, 399, 7])
    grid.session.select(rows)
    shown = grid.rows()
    assert sorted(shown.tolist()) == sorted(rows.tolist())
    lam = table["lambda"].to_numpy()[shown]
    assert np.all(np.diff(lam) <= 0)
    assert grid.info_label.text() == "0 / 5 reviewed in this selection"


def test_sort_keys(grid, table):
    grid.set_sort_key("sample_id")
    assert grid.rows()[:3].tolist() == [0, 1, 2]
    grid.set_sort_key("self_confidence")
    probs = table[[f"p_{c}" for c in table.attrs["classes"]]].to_numpy()
    score = 1 - probs[np.arange(len(table)), table["label"].to_numpy()]
    assert np.all(np.diff(score[grid.rows()]) <= 1e-12)
    grid.set_sort_key("entropy")
    assert grid.rows().tolist() == scores.sort_order(table, "entropy").tolist()
    # a score the table has no values for is not offered, and asking for it sorts by ambiguity
    offered = [grid.sort_combo.itemData(i) for i in range(grid.sort_combo.count())]
    assert "aum" not in offered and "entropy" in offered and "sample_id" in offered
    grid.set_sort_key("aum")
    assert grid.sort_key == "ambiguity" and grid.sort_combo.currentData() == "ambiguity"
    assert grid.rows().tolist() == scores.sort_order(table, "ambiguity").tolist()


def test_thumbnails_are_fetched_lazily_for_visible_items(qtbot, grid, table):
    provider = grid.thumbnail_provider
    qtbot.waitUntil(lambda: len(provider.calls) > 0, timeout=2000)
    QApplication.processEvents()
    assert 0 < len(set(provider.calls)) < len(table) / 2
    edited = table.copy()
    edited.attrs = dict(table.attrs)
    edited["edited"] = False
    edited.loc[grid.rows()[[1, 4]], "edited"] = True
    grid.session.update_results(edited)
    assert grid.model.data(grid.model.item(1)).startswith("✎ ")
    grid.set_thumbnail_size(64)
    qtbot.wait(200)  # let the lazy fetch fill the visible items
    painted = colours_in(grid, step=2)
    first = thumb(int(grid.rows()[0]), size=8, saturation=170, value=210).toImage().pixelColor(0, 0)
    assert (first.red(), first.green(), first.blue()) in painted  # the first tile shows its image


def test_click_sets_current_and_current_scrolls(qtbot, grid, table):
    grid.session.select(np.arange(0, 60))
    QApplication.processEvents()
    index = grid.model.item(2)
    rect = grid.tile_view.visualRect(index)
    with qtbot.waitSignal(grid.bridge.currentChanged) as blocker:
        qtbot.mouseClick(grid.tile_view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert blocker.args == [int(grid.rows()[2])]
    # a current row set elsewhere is selected here
    target = int(grid.rows()[40])
    grid.session.set_current(target)
    assert grid.model.position(grid.tile_view.currentIndex()) == 40


def test_every_row_is_listed_and_only_visible_tiles_are_drawn(qtbot):
    """A grid over 100 000 rows lists them all (no cap): tiles fill the width, thumbnails are
    fetched only for what is on screen, and the last row is reachable by scrolling."""
    big = pd.concat([grid_table()] * 250, ignore_index=True)
    big["sample_id"] = [f"s{i}" for i in range(len(big))]
    big.attrs = dict(grid_table().attrs)
    grid = GridView(SessionBridge())
    grid.thumbnail_provider = provider = Provider()
    grid.resize(700, 480)
    qtbot.addWidget(grid)
    grid.show()
    qtbot.waitExposed(grid)
    grid.session.set_dataset(big, {})
    assert grid.model.rows.size == len(big) == 100_000
    assert grid.model.columns == grid.tile_view.viewport().width() // grid._cell.width() > 1
    assert grid.info_label.text() == "0 / 100,000 reviewed in this queue"
    qtbot.waitUntil(lambda: len(provider.calls) > 0, timeout=2000)
    QApplication.processEvents()
    assert 0 < len(set(provider.calls)) < 200                        # a screenful, not 100 000
    grid.session.set_current(int(grid.rows()[-1]))                    # scrolls to the last tile
    QApplication.processEvents()
    index = grid.model.item(len(big) - 1)
    assert grid.tile_view.viewport().rect().intersects(grid.tile_view.visualRect(index))
    grid.resize(400, 480)                                             # narrower: fewer per row
    QApplication.processEvents()
    assert grid.model.columns == max(1, grid.tile_view.viewport().width() // grid._cell.width())
    assert grid.model.position(grid.tile_view.currentIndex()) == len(big) - 1


def test_linked_with_map(qtbot, table):
    bridge = SessionBridge()
    model = bridge.session
    map_view = MapView(bridge)
    grid = GridView(bridge)
    for w in (map_view, grid):
        qtbot.addWidget(w)
        w.show()
    model.set_dataset(table, {})
    rows = map_view.select_box(-0.52, -0.21, 0.31, 0.42)
    assert sorted(grid.rows().tolist()) == rows.tolist()
    grid.tile_view.setCurrentIndex(grid.model.item(0))
    assert model.current == int(grid.rows()[0])
    assert np.allclose(map_view.current_mark.data["x"], table["valence"].iloc[model.current])


def test_session_filter_hides_rows_and_combines_with_the_selection(grid, table):
    """The session's filter (classes, score ranges) reaches the grid without the window."""
    order = np.argsort(-table["lambda"].to_numpy(), kind="stable")
    keep = np.isin(table["label"].to_numpy(), [0, 3]) & (table["lambda"].to_numpy() >= 0.25)
    grid.session.set_filter({0, 3}, {"lambda": (0.25, 1.0)})
    assert grid.rows().tolist() == order[keep[order]].tolist()
    grid.session.select(np.arange(30))
    assert grid.rows().tolist() == [r for r in order.tolist() if r < 30 and keep[r]]
    grid.session.select(np.empty(0, dtype=np.int64))
    grid.session.clear_filter()
    assert grid.rows().tolist() == order.tolist()


def test_the_queue_holds_still_under_edits_until_resorted(qtbot, grid, table, tmp_path):
    """Edits mark tiles in place; the order changes only on Re-sort; a new selection shows
    its first tile."""
    from uldl_studio.core.labels.edits import EditJournal

    session = grid.session
    session.journal = EditJournal(tmp_path / "edits.jsonl")
    grid.set_sort_key("self_confidence")  # depends on the label: an edit changes its value
    before = grid.rows().copy()
    row = int(before[1])
    better = int(np.argmax(table[[f"p_{c}" for c in table.attrs["classes"]]].to_numpy()[row]))
    session.relabel([row], [better])
    session.mark_unsure([int(before[2])], True)
    assert np.array_equal(grid.rows(), before)                      # nothing moved
    assert grid.model.data(grid.model.item(1)).startswith("✎ ")     # marked in place
    assert grid.model.data(grid.model.item(2)).startswith("? ")
    assert grid.info_label.text() == f"2 / {len(table)} reviewed in this queue"
    grid.resort_button.click()
    assert not np.array_equal(grid.rows(), before)
    assert grid.rows().tolist() == session.sort_order("self_confidence").tolist()
    # scrolled to the end, then a new selection: the grid shows its first tile
    grid.tile_view.scrollToBottom()
    assert grid.tile_view.verticalScrollBar().value() > 0
    session.select(grid.rows()[len(table) // 2:])
    assert grid.tile_view.verticalScrollBar().value() == 0
    session.journal.close()
