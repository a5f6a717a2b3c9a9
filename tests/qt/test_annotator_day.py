"""An annotator's hour on the demo, in the real main window (offscreen, real event loop, real
training, real files): train, walk the review queue with → and Enter, relabel, mark unsure,
undo and redo, look at a predicted sample and press a digit (nothing changes), export and
read the CSV back, train again (the first version stays and opens), and the layout."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from synthetic import open_demo, predict_in_window  # noqa: E402  (tests/qt/synthetic.py)

pytestmark = pytest.mark.timeout(240)


def press(qtbot, win, key, modifiers=Qt.KeyboardModifier.NoModifier):
    """A key as the annotator types it: into the active main window (its shortcuts)."""
    from PySide6.QtWidgets import QApplication

    win.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=5_000)
    qtbot.keyClick(win, key, modifiers)


def train(qtbot, win, button):
    with qtbot.waitSignal(win.trainingFinished, timeout=150_000) as blocker:
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    return blocker.args[0]


def test_an_annotators_hour(qtbot, window, tmp_path):
    from uldl_studio.core.data.datasets.demo import write_demo
    from uldl_studio.core.runs.export import read_soft_labels
    from uldl_studio.core.engine.run import Run

    win = window
    messages: list[str] = []
    win.statusBar().messageChanged.connect(lambda text: messages.append(text) if text else None)
    open_demo(qtbot, win)
    run_dir = tmp_path / "run"
    win.next_run_dir = run_dir
    win.training_panel.epochs.setValue(2)
    assert train(qtbot, win, win.training_panel.start_button) == "done"
    session = win.session
    classes = session.classes
    split = session.table["split"].to_numpy()

    # -- the queue: training rows, worst first by ambiguity; the grid shows it from the top
    win.grid_view.set_sort_key("ambiguity")
    queue = session.queue.copy()
    assert queue.size == int((split == "train").sum())
    ambiguity = session.score("ambiguity")
    assert np.all(np.diff(ambiguity[queue]) <= 1e-12)
    assert np.array_equal(win.grid_view.rows(), queue)
    assert win.grid_view.tile_view.verticalScrollBar().value() == 0
    win.set_current_row(int(queue[0]))
    press(qtbot, win, Qt.Key.Key_Right)
    assert session.current == queue[1]

    # -- relabel the shown sample: the status bar names it and the change; the tile stays put
    row = int(queue[1])
    sid = session.table["sample_id"].iat[row]
    given = int(session.table["label"].iat[row])
    new = (given + 1) % len(classes)
    press(qtbot, win, Qt.Key(Qt.Key.Key_1 + new))
    assert int(session.table["label"].iat[row]) == new
    assert messages[-1].startswith(f"{sid}: {classes[given]} → {classes[new]}")
    assert np.array_equal(session.queue, queue) and np.array_equal(win.grid_view.rows(), queue)
    assert win.grid_view.model.data(win.grid_view.model.item(1)).startswith("✎")

    # -- Enter accepts and walks to the next unreviewed sample of the queue, in order
    press(qtbot, win, Qt.Key.Key_Return)          # row 1 is reviewed already: accepts, moves on
    assert session.current == queue[2]
    press(qtbot, win, Qt.Key.Key_Return)
    assert session.table["reviewed"].iat[int(queue[2])] and session.current == queue[3]
    press(qtbot, win, Qt.Key.Key_Space)          # unsure
    unsure_row = int(queue[3])
    assert session.table["unsure"].iat[unsure_row]
    assert win.grid_view.info_label.text() == f"3 / {queue.size:,} reviewed in this queue"
    queue = session.queue.copy()
    press(qtbot, win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not session.table["unsure"].iat[unsure_row]
    assert messages[-1] == f"Undone: {session.table['sample_id'].iat[unsure_row]} marked unsure"
    press(qtbot, win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert session.table["unsure"].iat[unsure_row]
    # Enter with a selection walks only the selection
    session.select(queue[10:14])                  # a new selection is a new queue, sorted afresh
    picked = session.queue.copy()
    assert sorted(picked.tolist()) == sorted(queue[10:14].tolist())
    assert np.all(np.diff(session.score("ambiguity")[picked]) <= 1e-12)
    assert win.grid_view.tile_view.verticalScrollBar().value() == 0
    win.set_current_row(int(picked[0]))
    press(qtbot, win, Qt.Key.Key_Return)
    assert session.current == picked[1]
    press(qtbot, win, Qt.Key.Key_Right)
    press(qtbot, win, Qt.Key.Key_Right)
    press(qtbot, win, Qt.Key.Key_Right)
    assert session.current == picked[-1]          # the end of the selection's queue: it stays
    session.select([])

    # -- a predicted sample of another collection: a digit changes nothing anywhere
    folder = write_demo(tmp_path / "other", n=24, seed=5)
    dialog = predict_in_window(qtbot, win, folder, tmp_path / "pred.csv")
    dialog.close()                                # the annotator closes the finished dialog
    shown_before = session.current
    session.set_current(session.dataset_size)     # a click on the first predicted sample
    assert win.inspector.title.text().endswith("(predicted)") and not session.is_dataset_row(session.current)
    labels_before = session.table[["label", "unsure", "reviewed"]].copy()
    operations = len(session.journal)
    press(qtbot, win, Qt.Key.Key_3)
    assert session.table[["label", "unsure", "reviewed"]].equals(labels_before)
    assert len(session.journal) == operations
    assert "predicted sample" in messages[-1] and "nothing was changed" in messages[-1]
    assert shown_before >= 0 and int(session.table["label"].iat[shown_before]) == int(labels_before["label"].iat[shown_before])
    win.set_current_row(int(queue[0]))

    # -- export: the correction carries the soft label; the original label is a column
    out = tmp_path / "soft.csv"
    assert win.export_csv(out) == session.dataset_size       # the predicted rows are not exported
    back = read_soft_labels(out).set_index("sample_id")
    assert back.loc[sid, "label"] == new and back.loc[sid, "original_label"] == given and back.loc[sid, "edited"]
    assert back.loc[sid, f"d_{classes[new]}"] == 1.0
    doubtful = session.table["sample_id"].iat[unsure_row]
    assert back.loc[doubtful, "unsure"]
    assert back.loc[doubtful, f"d_{classes[int(back.loc[doubtful, 'label'])]}"] <= 0.5 + 1e-12

    # -- train again: a new version; the first one is kept and opens
    first_checkpoint = (run_dir / "checkpoint.pt").read_bytes()
    win.training_panel.epochs.setValue(1)
    assert win.training_panel.start_button.text() == "Train new version"
    assert train(qtbot, win, win.training_panel.start_button) == "done"
    assert session.run.version == "v2" and Run.open(run_dir).version == "v2"
    assert (run_dir / "checkpoint.pt").read_bytes() == first_checkpoint
    assert int(session.table["label"].iat[session.row_of(sid)]) == new           # the edit still shows
    dialog = win.show_versions()
    qtbot.addWidget(dialog)
    assert [dialog.table.item(r, 0).text() for r in range(dialog.table.rowCount())] == ["v1", "v2"]
    assert dialog.table.item(1, 6).text() == "current"
    dialog.table.selectRow(0)
    with qtbot.waitSignal(win.sessionLoaded, timeout=60_000):
        dialog.open_selected()
    assert session.run.version == "v1" and session.run.path == run_dir
    assert int(session.table["label"].iat[session.row_of(sid)]) == new           # one journal per run


def test_stop_before_the_first_epoch_leaves_no_folder(qtbot, window, tmp_path):
    """Stop right after Start: the new run's folder is removed; on an open run, the new version is."""
    from uldl_studio.qt.main_window import MainWindow  # noqa: F401  (the fixture's class)

    win = window
    open_demo(qtbot, win)
    run_dir = tmp_path / "fresh"
    win.next_run_dir = run_dir
    with qtbot.waitSignal(win.trainingFinished, timeout=60_000) as blocker:
        qtbot.mouseClick(win.training_panel.start_button, Qt.MouseButton.LeftButton)
        win.stop_training()
    assert blocker.args == ["cancelled"]
    assert not run_dir.exists()
    assert "no run was kept" in win.statusBar().currentMessage()


def test_continue_resumes_the_current_version(qtbot, window, run_dir):
    from uldl_studio.core.engine.run import Run

    win = window
    with qtbot.waitSignal(win.sessionLoaded, timeout=60_000):
        win.open_run(str(run_dir))
    assert win.training_panel.continue_button.isEnabled()
    done = len(Run.open(run_dir).history())
    win.training_panel.epochs.setValue(done)
    win.continue_training()
    assert f"already has {done} epoch" in win.statusBar().currentMessage()
    win.training_panel.epochs.setValue(done + 1)
    with qtbot.waitSignal(win.trainingFinished, timeout=150_000) as blocker:
        qtbot.mouseClick(win.training_panel.continue_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["done"]
    run = Run.open(run_dir)
    assert run.version == "v1" and len(run.history()) == done + 1 and not (run_dir / "versions").exists()


def test_the_layout_fits_and_resets(qtbot, window):
    """Docks keep usable minimums, the inspector never scrolls sideways, the grid shows three
    rows, and View → Reset layout brings a crushed layout back."""
    from PySide6.QtWidgets import QScrollArea

    from uldl_studio.qt.main_window import DEFAULT_GRID_ROWS, INSPECTOR_DOCK_MIN_WIDTH, TRAINING_DOCK_MIN_WIDTH

    win = window
    open_demo(qtbot, win)
    win.reset_layout()
    qtbot.wait(50)
    holder = win.inspector_dock.findChild(QScrollArea)      # above the key help, which never scrolls
    assert holder is not None
    assert holder.horizontalScrollBarPolicy() == Qt.ScrollBarPolicy.ScrollBarAlwaysOff
    assert win.inspector.width() <= holder.viewport().width()          # every class's bars in view
    assert win.grid_view.tile_view.viewport().height() >= DEFAULT_GRID_ROWS * win.grid_view._cell.height() - 2
    # a small window: the docks keep their minimums, the tool bars fold instead
    win.resize(700, 500)
    qtbot.wait(50)
    assert win.training_dock.width() >= TRAINING_DOCK_MIN_WIDTH
    assert win.inspector_dock.width() >= INSPECTOR_DOCK_MIN_WIDTH
    assert not win.layout_is_crushed()
    # a layout with the inspector hidden and the grid gone is restored by Reset layout
    win.inspector_dock.hide()
    win.grid_dock.setFloating(True)
    win.resize(1500, 950)
    win.reset_layout()
    qtbot.wait(50)
    assert win.inspector_dock.isVisible() and not win.grid_dock.isFloating()


def test_label_health_says_what_it_counts_and_empty_cells_say_so(qtbot, window, run_dir):
    win = window
    with qtbot.waitSignal(win.sessionLoaded, timeout=60_000):
        win.open_run(str(run_dir))
    panel = win.health_panel
    win.health_dock.raise_()
    panel.refresh()
    text = panel.summary.text()
    assert "label issues" in text and "calibrated probability that each label is wrong" in text
    # the model's per-class and mean class accuracy on the valid split, as evaluate computes them
    from uldl_studio.core.runs.evaluate import class_accuracy
    from uldl_studio.qt.health_panel import ACCURACY_COLUMN

    accuracy = class_accuracy(win.session.table, "valid")
    assert f"mean class accuracy {accuracy.attrs['mean_class_accuracy']:.2f}" in text
    shown = {panel.rates_table.item(r, 0).text(): panel.rates_table.item(r, ACCURACY_COLUMN).text()
             for r in range(panel.rates_table.rowCount())}
    for name, value in accuracy["accuracy"].items():
        if name in shown:
            assert shown[name] == ("–" if np.isnan(value) else f"{value:.2f}")
    assert shown
    matrix = panel.rates  # per class counts exist
    assert matrix is not None
    from uldl_studio.core.review import health

    cells = health.issue_cell_counts(win.session.table, panel.counted_rows())
    empty = np.argwhere(cells == 0)
    assert empty.size, "the tiny run should leave some given × likely true cells empty"
    given, constructed = (int(v) for v in empty[0])
    before = win.session.selection.copy()
    rows = panel.select_cell(given, constructed)
    assert rows.size == 0 and np.array_equal(win.session.selection, before)
    assert win.statusBar().currentMessage().startswith("No samples:")


def test_new_runs_go_to_the_chosen_runs_folder(qtbot, window, tmp_path):
    """Run → Runs folder… keeps the choice in the settings; a new run is created there and the
    training panel says where."""
    win = window
    open_demo(qtbot, win)
    chosen = tmp_path / "my runs"
    win.settings.set_value("runs_dir", str(chosen))
    win._on_run_changed()
    assert str(chosen) in win.training_panel.run_label.text()
    assert win._new_run_dir().parent == chosen
    win.training_panel.epochs.setValue(1)
    assert train(qtbot, win, win.training_panel.start_button) == "done"
    assert win.session.run.path.parent == chosen and (win.session.run.path / "checkpoint.pt").exists()


def test_the_legend_warns_when_most_labels_look_wrong(qtbot, window, run_dir):
    """The default colouring highlights labels more likely wrong than right; when that is over
    half of the points, the legend blames the model first (with its valid accuracy)."""
    win = window
    with qtbot.waitSignal(win.sessionLoaded, timeout=60_000):
        win.open_run(str(run_dir))
    view = win.map_view
    strong, shown, _ = view._highlight
    texts = view.legend_texts()
    assert texts and texts[0].startswith(f"{strong:,} highlighted")
    warned = any(t.startswith("⚠ over half flagged") for t in texts)
    assert warned == (strong > shown / 2)
    if warned:
        assert f"valid accuracy {view._valid_accuracy():.2f}" in texts[-1]


def test_docks_grow_back_after_the_window_was_small(qtbot, window):
    """A window made small crushes the docks to their minimums; made large again, they get their
    default sizes back (the grid its three rows)."""
    from uldl_studio.qt.main_window import DEFAULT_DOCK_WIDTHS, DEFAULT_GRID_ROWS

    win = window
    open_demo(qtbot, win)
    win.resize(880, 600)
    qtbot.wait(300)
    assert win.training_dock.width() < DEFAULT_DOCK_WIDTHS[0] - 8
    win.resize(1500, 950)
    qtbot.waitUntil(lambda: win.training_dock.width() >= DEFAULT_DOCK_WIDTHS[0] - 8
                    and win.inspector_dock.width() >= DEFAULT_DOCK_WIDTHS[1] - 8, timeout=5_000)
    qtbot.waitUntil(lambda: win.grid_view.tile_view.viewport().height()
                    >= DEFAULT_GRID_ROWS * win.grid_view._cell.height() - 2, timeout=5_000)
