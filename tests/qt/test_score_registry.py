"""A score added through the registry alone reaches the map's colours, the grid's sort menu,
the inspector and the soft-label export."""
from __future__ import annotations

import numpy as np
import pytest

from uldl_studio.core.labels import scores
from uldl_studio.core.runs.export import read_soft_labels

pytestmark = pytest.mark.timeout(60)

from synthetic import grid_table  # noqa: E402  (tests/qt/synthetic.py)


@pytest.fixture
def toy_score():
    @scores.score("toy_even", label="toy: even rows", meaning="1 on even rows, 0 on odd ones",
                  bad="high", value_range=(0.0, 1.0))
    def _toy(table):
        return (np.arange(len(table)) % 2 == 0).astype(float)

    yield "toy_even"
    scores.unregister("toy_even")


def test_a_registered_score_is_everywhere(qtbot, toy_score, tmp_path):
    from uldl_studio.qt.grid_view import GridView
    from uldl_studio.qt.inspector import Inspector
    from uldl_studio.qt.map_view import MapView
    from uldl_studio.qt.session_bridge import SessionBridge

    bridge = SessionBridge()
    map_view, grid, inspector = MapView(bridge), GridView(bridge), Inspector(bridge)
    for w in (map_view, grid, inspector):
        qtbot.addWidget(w)
    table = grid_table()
    bridge.session.set_dataset(table, {})

    colour_modes = [map_view.color_combo.itemData(i) for i in range(map_view.color_combo.count())]
    assert toy_score in colour_modes and toy_score in map_view.available_color_modes()
    map_view.set_color_mode(toy_score)
    assert map_view.colorbar.isVisible() and "toy: even rows" in map_view.colorbar.axis.labelText

    sort_keys = [grid.sort_combo.itemData(i) for i in range(grid.sort_combo.count())]
    assert toy_score in sort_keys
    grid.set_sort_key(toy_score)
    assert (grid.rows()[: len(table) // 2] % 2 == 0).all()             # bad end (1) first

    inspector.set_row(4)
    caption, value = inspector.score_fields[toy_score]
    assert value.text() == "1.000" and "bad end: high" in value.toolTip()

    bridge.session.set_range(toy_score, 0.5, 1.0)                       # a filter by it
    assert bridge.session.visible_mask().tolist() == [i % 2 == 0 for i in range(len(table))]

    out = tmp_path / "soft.csv"
    bridge.session.export(out)
    back = read_soft_labels(out)
    assert toy_score in back.columns
    assert back[toy_score].tolist() == [float(i % 2 == 0) for i in range(len(table))]
