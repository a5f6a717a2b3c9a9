"""Predicted samples of another collection as rows of the session's one table: the map, the
grid and the inspector filter, sort, colour and show them like the dataset's own rows."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtWidgets import QApplication

from uldl_studio.qt import palette
from uldl_studio.qt.grid_view import GridView
from uldl_studio.qt.inspector import Inspector
from uldl_studio.qt.map_view import MapView
from uldl_studio.qt.session_bridge import SessionBridge

pytestmark = pytest.mark.timeout(60)

from synthetic import CLASSES, grid_table, thumb  # noqa: E402  (tests/qt/synthetic.py)


def predictions(side: int = 3):
    """Rows as ``core.runs.predict`` writes them (ids that repeat the dataset's included)."""
    table = grid_table(side)
    p = table[[f"p_{c}" for c in CLASSES]].to_numpy()
    table["label"] = p.argmax(axis=1)
    table["lambda"] = np.nan
    table["split"] = "test"
    return table


@pytest.fixture
def rig(qtbot):
    bridge = SessionBridge()
    view, grid, inspector = MapView(bridge), GridView(bridge), Inspector(bridge)
    grid.thumbnail_provider = thumb
    for widget in (view, grid, inspector):
        qtbot.addWidget(widget)
    view.resize(800, 620)
    view.show()
    qtbot.waitExposed(view)
    bridge.session.set_dataset(grid_table(), {})
    bridge.session.set_predictions(predictions())
    QApplication.processEvents()
    return bridge.session, view, grid, inspector


def triangle_colours(view) -> list[int]:
    return [brush.color().rgb() for brush in view.predicted_marks.data["brush"]]


def test_the_map_colours_and_filters_predicted_rows_by_their_columns(rig):
    session, view, _grid, _inspector = rig
    n = session.dataset_size
    predicted_class = session.table["label"].to_numpy()[n:]
    assert len(view.predicted_marks.data) == 9 and view.shown_rows.size == n + 9
    view.set_color_mode("predicted")
    brushes = palette.class_brushes(CLASSES)
    assert triangle_colours(view) == [brushes[k].color().rgb() for k in predicted_class]
    # a class filter hides the predicted rows of the other classes too
    keep = int(predicted_class[0])
    session.set_filter(classes=[keep])
    assert len(view.predicted_marks.data) == int((predicted_class == keep).sum())
    assert set(session.table["label"].to_numpy()[view.shown_rows]) == {keep}
    session.clear_filter()
    # a score they have no value of (λ) colours them as missing
    view.set_color_mode("lambda")
    missing = palette.missing_brush().color().rgb()
    assert set(triangle_colours(view)) == {missing}
    # a click on a triangle makes it current, like any point
    x, y = view.predicted_marks.data["x"][4], view.predicted_marks.data["y"][4]
    assert view.row_at(x, y) == n + 4


def test_the_grid_lists_predicted_rows_sorted_and_filtered(rig):
    session, _view, grid, _inspector = rig
    n = session.dataset_size
    assert grid._predicted_box_action.isVisible() and not grid.listing_predictions()
    assert (grid.rows() < n).all()
    session.set_queue_order(key="sample_id", split="all")
    grid.predicted_box.setChecked(True)
    ids = session.table["sample_id"].to_numpy()
    assert grid.rows().tolist() == sorted(range(n, n + 9), key=lambda r: ids[r])
    keep = int(session.table["label"].iat[n])
    session.set_filter(classes=[keep])
    assert grid.rows().size and all(session.table["label"].iat[r] == keep for r in grid.rows())
    grid.tile_view.setCurrentIndex(grid.model.item(0))
    assert session.current == int(grid.rows()[0])


def test_the_inspector_shows_a_predicted_row_through_the_one_fill_path(rig):
    session, _view, _grid, inspector = rig
    n = session.dataset_size
    session.set_current(n + 2)
    inspector.set_row(session.current)
    assert inspector.title.text() == f"{session.table['sample_id'].iat[n + 2]} (predicted)"
    k = int(session.table["label"].iat[n + 2])
    assert inspector.fields["pred"].text().startswith(CLASSES[k])
    assert inspector.fields["label"].text() == "–" and inspector.fields["lambda"].text() == "–"
    assert inspector.fields["split"].text() == "other collection"
    assert set(inspector.chart.bars) == {"p"}                    # no d: no neighbours built one
    inspector.set_row(3)                                          # a dataset row with the same path
    assert inspector.title.text() == "img0003" and set(inspector.chart.bars) == {"d", "p"}


def test_clearing_the_predictions_drops_their_rows_everywhere(rig):
    session, view, grid, _inspector = rig
    n = session.dataset_size
    grid.predicted_box.setChecked(True)
    session.set_current(n + 1)
    session.select([0, n + 1])
    session.set_predictions(None)
    assert len(session) == n and session.current == -1 and session.selection.tolist() == [0]
    assert len(view.predicted_marks.data) == 0 and not view._predicted_toggle_action.isVisible()
    assert not grid._predicted_box_action.isVisible() and not grid.listing_predictions()
    assert grid.model.table is session.table and np.array_equal(grid.rows(), session.queue)
