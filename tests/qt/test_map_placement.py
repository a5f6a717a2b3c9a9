"""The map's valence axis names where the V-A points come from, as the run records it."""
import pytest
from PySide6.QtWidgets import QApplication

from uldl_studio.core.engine.run import Run
from uldl_studio.qt.map_view import MapView
from uldl_studio.qt.session_bridge import SessionBridge

pytestmark = pytest.mark.timeout(120)


def bottom_label(view: MapView) -> str:
    return view.plot_item.getAxis("bottom").labelText


def test_the_map_names_the_placement_of_a_run_and_of_a_dataset(qtbot, run_dir, demo_table):
    bridge = SessionBridge()
    view = MapView(bridge)
    qtbot.addWidget(view)
    bridge.session.set_run(Run.open(run_dir))
    QApplication.processEvents()
    assert view.coordinate_mode == "va"
    assert view.va_placement == "dataset columns"  # the demo's own V-A, recorded by the run
    assert bottom_label(view) == "valence (dataset columns)"

    history = run_dir / "history.csv"
    text = history.read_text().replace(",columns,", ",circumplex,")
    history.write_text(text)
    bridge.session.set_run(Run.open(run_dir))
    QApplication.processEvents()
    assert bottom_label(view) == "valence (circumplex projection)"

    bridge.session.journal.close()
    bridge.session.set_dataset(demo_table.drop(columns=["valence", "arousal"]), {})
    QApplication.processEvents()
    assert view.va_placement is None  # a dataset without V-A: nothing placed yet, nothing named
    bridge.session.set_dataset(demo_table, {})
    QApplication.processEvents()
    assert bottom_label(view) == "valence (dataset columns)"
