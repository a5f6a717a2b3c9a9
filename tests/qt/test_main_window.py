"""The real main window, offscreen: open the demo, train a tiny epoch on the worker, select
with a box, relabel with a key, undo, export and read the CSV back; Stop; closing while
training; retraining from edits; UMAP plumbing; start screen; ``run_gui --screenshot``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PySide6.QtCore import Qt

from synthetic import image_colours, open_demo, predict_in_window, rect_in  # noqa: E402  (tests/qt/synthetic.py)

pytestmark = pytest.mark.timeout(120)

def train(qtbot, win, run_dir, epochs=1, expect="done"):
    win.next_run_dir = run_dir
    win.training_panel.epochs.setValue(epochs)
    with qtbot.waitSignal(win.trainingFinished, timeout=100_000) as blocker:
        qtbot.mouseClick(win.training_panel.start_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [expect]


def press(qtbot, win, key, modifiers=Qt.KeyboardModifier.NoModifier):
    win.activateWindow()
    qtbot.keyClick(win, key, modifiers)


def test_demo_train_select_relabel_undo_export(qtbot, window, tmp_path):
    from uldl_studio.core.runs.export import read_soft_labels

    win = window
    open_demo(qtbot, win)
    assert not win.session.has_results
    assert not win.export_action.isEnabled()

    train(qtbot, win, tmp_path / "run")
    assert win.session.has_results and win.session.run is not None
    assert win.map_view.color_mode == "label_wrong_prob"      # the likely label issues stand out
    assert win.grid_view.sort_key == "ambiguity"
    assert win.export_action.isEnabled()
    assert win.training_panel.loss_plot.points > 0
    assert win.current_row() is not None                      # the most ambiguous sample
    assert win.inspector.title.text() == win.session.table["sample_id"].iat[win.current_row()]

    # Box selection through the map's API: everything with positive valence.
    xy = win.map_view.coordinates()
    rows = win.map_view.select_box(0.0, -2.0, 2.0, 2.0)
    assert rows.size > 0
    expected = np.flatnonzero((xy[:, 0] >= 0) & np.isfinite(xy).all(axis=1))
    assert set(rows.tolist()) == set(expected.tolist())
    assert set(win.selected_rows().tolist()) == set(rows.tolist())
    in_train = win.session.table["split"].to_numpy() == "train"
    assert set(win.grid_view.rows().tolist()) == set(rows[in_train[rows]].tolist())   # the grid: the queue

    # Relabel the current sample with a number key, then undo with Ctrl+Z.
    row = int(rows[0])
    win.set_current_row(row)
    given = int(win.session.table["label"].iat[row])
    new = (given + 1) % len(win.session.classes)
    press(qtbot, win, Qt.Key(Qt.Key.Key_1 + new))
    assert int(win.session.table["label"].iat[row]) == new
    assert win.session.flag("edited")[row] and len(win.map_view.edited_marks.data) == 1  # marked
    assert "✎" in win.grid_view.model.data(win.grid_view.model.item(win.grid_view.model.position_of(row)))
    assert "edited" in win.inspector.fields["state"].text()
    press(qtbot, win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert int(win.session.table["label"].iat[row]) == given
    assert not win.session.flag("edited").any() and len(win.map_view.edited_marks.data) == 0
    press(qtbot, win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert int(win.session.table["label"].iat[row]) == new

    # Bulk relabel of the selection (one undoable edit), then export all and the selection.
    press(qtbot, win, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert (win.session.table["label"].to_numpy()[rows] == 0).all()
    out = tmp_path / "soft_labels.csv"
    assert win.export_csv(out) == 300
    back = read_soft_labels(out)
    assert len(back) == 300
    back = back.set_index("sample_id").loc[win.session.table["sample_id"]]
    assert (back["label"].to_numpy() == win.session.table["label"].to_numpy()).all()
    assert back["edited"].to_numpy().astype(bool).sum() == int(win.session.flag("edited").sum()) > 0
    classes = win.session.classes
    d = back[[f"d_{c}" for c in classes]].to_numpy()
    assert np.allclose(d.sum(axis=1), 1.0)
    assert np.array_equal(back["lambda"].to_numpy(), win.session.table["lambda"].to_numpy(), equal_nan=True)
    # the label-based scores follow the edits
    assert np.allclose(back["self_confidence"].to_numpy(), win.session.score("self_confidence"), equal_nan=True)
    part = tmp_path / "selection.csv"
    assert win.export_csv(part, selection_only=True) == rows.size
    assert set(read_soft_labels(part)["sample_id"]) == set(win.session.sample_ids(rows))

    # The export dialog writes the same file when accepted.
    from uldl_studio.qt.export_dialogs import ExportDialog

    dialog = ExportDialog(win.session, win.selected_rows(), tmp_path, win)
    qtbot.addWidget(dialog)
    assert dialog.selection_button.isChecked()
    dialog.path_edit.setText(str(tmp_path / "dialog.csv"))
    dialog.accept()
    assert dialog.written == rows.size and (tmp_path / "dialog.csv").exists()

    # Filters: λ range and classes hide points, shown in the map's banner.
    lam = win.session.column("lambda").astype(float)
    cut = float(np.nanmedian(lam))
    win.set_lambda_filter(cut, 1.0)
    assert win.map_view.banner.isVisibleTo(win.map_view)
    placed = np.isfinite(xy).all(axis=1)
    assert win.map_view.shown_rows.tolist() == np.flatnonzero(placed & (lam >= cut) & (lam <= 1.0)).tolist()
    assert win.range_slider.value() == pytest.approx((cut, 1.0), abs=0.01)   # the toolbar shows it
    assert set(win.grid_view.rows().tolist()) <= set(np.flatnonzero(lam >= cut).tolist())
    win.set_class_filter([0])
    assert (win.session.table["label"].to_numpy()[win.map_view.shown_rows] == 0).all()
    win.clear_filters()
    assert not win.map_view.banner.isVisibleTo(win.map_view)

    # The picture ``--screenshot`` saves shows the trained demo: points on the map, tiles in
    # the grid, the current sample in the inspector.
    from PySide6.QtGui import QImage

    from uldl_studio.qt.app import save_screenshot

    win.session.select(None)
    win.set_current_row(win.most_ambiguous_row())
    shot = tmp_path / "main_window.png"
    save_screenshot(win, shot)
    image = QImage(str(shot))
    assert (image.width(), image.height()) == (win.width(), win.height())
    # (an empty window has about 160 colours in the map, 100 in the grid, 3 in the sample's image)
    drawn = {name: len(image_colours(image, rect_in(part, win), step=2)) for name, part in
             (("map", win.map_view), ("grid", win.grid_view), ("sample", win.inspector.image))}
    assert drawn["map"] >= 400 and drawn["grid"] >= 200 and drawn["sample"] >= 30, drawn


def test_stop_is_honoured(qtbot, window, tmp_path):
    win = window
    open_demo(qtbot, win)
    win.next_run_dir = tmp_path / "run"
    win.training_panel.extra_config["batch_size"] = 8
    win.training_panel.epochs.setValue(40)
    with qtbot.waitSignal(win.training.progress, timeout=60_000,
                          check_params_cb=lambda p: p.phase in ("train", "warmup") and p.batch >= 2):
        qtbot.mouseClick(win.training_panel.start_button, Qt.MouseButton.LeftButton)
    assert win.training_panel.stop_button.isEnabled()
    with qtbot.waitSignal(win.trainingFinished, timeout=30_000) as blocker:
        qtbot.mouseClick(win.training_panel.stop_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["cancelled"]
    assert win.training_panel.start_button.isEnabled()
    assert "stopped" in win.training_panel.progress_bar.format()


def test_close_while_training_asks_then_stops(qtbot, settings_dir, tiny_config, tmp_path):
    from uldl_studio.qt.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.training_panel.extra_config = {**tiny_config, "batch_size": 8}
    win.show()
    open_demo(qtbot, win)
    win.next_run_dir = tmp_path / "run"
    win.training_panel.epochs.setValue(40)
    with qtbot.waitSignal(win.training.progress, timeout=60_000,
                          check_params_cb=lambda p: p.phase in ("train", "warmup")):
        win.start_training()
    asked = []
    win.confirm_close = lambda: asked.append(1) or False      # "No": keep training
    assert not win.close()
    assert win.isVisible() and win.training.is_running and asked == [1]
    thread = win.training.thread
    win.confirm_close = lambda: asked.append(2) or True       # "Yes": stop and close
    assert win.close()
    assert asked == [1, 2]
    assert not thread.isRunning()
    assert not win.training.is_running or win.training.thread is None or not win.training.thread.isRunning()


def test_open_run_selects_most_ambiguous_and_retrains_with_edits(qtbot, window, run_dir):
    win = window
    with qtbot.waitSignal(win.sessionLoaded, timeout=60_000):
        win.open_run(str(run_dir))
    ambiguity = win.session.score("ambiguity")
    train = win.session.table["split"].to_numpy() == "train"
    assert win.current_row() == int(np.nanargmax(np.where(train, ambiguity, np.nan)))  # first of the queue
    row = win.current_row()
    # Edit, mark unsure, then retrain the same run: it learns from the edited labels.
    press(qtbot, win, Qt.Key.Key_Space)
    assert win.session.flag("unsure")[row]
    target = (int(win.session.table["label"].iat[row]) + 1) % len(win.session.classes)
    win.relabel.relabel_current(target)
    sid = win.session.table["sample_id"].iat[row]
    assert "retrains it with everybody's votes" in win.training_panel.run_label.text()
    assert win.training_panel.start_button.text() == "Train new version"
    first_model = (run_dir / "checkpoint.pt").read_bytes()
    with qtbot.waitSignal(win.trainingFinished, timeout=100_000) as blocker:
        win.start_training()
    assert blocker.args == ["done"]
    # a new version: the first model is untouched, the new one is current and shown
    assert (run_dir / "checkpoint.pt").read_bytes() == first_model
    assert win.session.run.version == "v2" and win.session.run.path == run_dir / "versions" / "v2"
    from uldl_studio.core.engine.run import Run

    assert Run.open(run_dir).version == "v2"
    samples = pd.read_csv(run_dir / "versions" / "v2" / "samples.csv")
    assert len(samples) == 300                                         # the same dataset, re-read
    assert np.isfinite(samples["lambda_prev"]).any()                   # λ moved since the last run
    trained = samples.set_index("sample_id").loc[sid]
    assert int(trained["label"]) == target                            # trained on the edit
    # The edit is still shown (journal applied on top of the new results).
    assert int(win.session.table["label"].iat[win.session.row_of(sid)]) == target
    assert "lambda_change" in win.map_view.available_color_modes()
    win.map_view.set_color_mode("lambda_change")
    assert win.map_view.color_mode == "lambda_change"


def test_the_relabel_keys_stay_in_view_under_the_scrolling_inspector(qtbot, window, run_dir):
    """The key help sits at the foot of the inspector's dock, outside its scroll area: seen cut
    mid-line and scrolled away at the bottom of the panel in a 1000-pixel window."""
    from PySide6.QtWidgets import QScrollArea

    win = window
    with qtbot.waitSignal(win.sessionLoaded, timeout=60_000):
        win.open_run(str(run_dir))
    win.resize(1500, 700)                       # shorter than the panel: it scrolls
    qtbot.wait(200)
    scroll = win.inspector_dock.findChild(QScrollArea)
    assert scroll.verticalScrollBar().maximum() > 0
    hint = win.inspector.hint
    assert hint.isVisible() and hint.text().startswith("Keys: 1–")
    assert not scroll.isAncestorOf(hint)
    bottom = hint.mapTo(win.inspector_dock, hint.rect().bottomLeft()).y()
    assert bottom <= win.inspector_dock.height()
    assert hint.height() >= hint.heightForWidth(hint.width())


def test_dataset_without_va_shows_message(qtbot, window, tmp_path):
    from uldl_studio.core.data.datasets.demo import write_demo

    folder = write_demo(tmp_path / "demo-data", n=60)
    csv = next(Path(folder).glob("*.csv")) if Path(folder).is_dir() else Path(folder)
    frame = pd.read_csv(csv)
    frame = frame.drop(columns=[c for c in ("valence", "arousal") if c in frame])
    frame.to_csv(csv, index=False)
    win = window
    with qtbot.waitSignal(win.sessionLoaded, timeout=60_000):
        win.open_dataset(str(csv.parent))
    assert len(win.session) == 60
    assert win.map_message.isVisibleTo(win)
    assert "valence-arousal" in win.map_message.text()


def test_open_errors_are_messages(qtbot, window, tmp_path):
    win = window
    with qtbot.waitSignal(win.loadFailed, timeout=30_000) as blocker:
        win.open_dataset(str(tmp_path / "missing"))
    assert "missing" in blocker.args[0]
    assert "Could not open" in win.map_message.text()
    with qtbot.waitSignal(win.loadFailed, timeout=30_000):
        win.open_run(str(tmp_path))


def test_settings_persist_recent_and_geometry(qtbot, settings_dir, run_dir):
    from uldl_studio.qt.main_window import MainWindow
    from uldl_studio.qt.settings import StudioSettings

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.sessionLoaded, timeout=60_000):
        win.open_run(str(run_dir))
    from PySide6.QtGui import QGuiApplication

    screen = QGuiApplication.primaryScreen().availableGeometry()
    height = min(screen.height(), 700)  # above the usable minimum, inside the screen
    win.resize(900, height)
    win.grid_dock.hide()
    qtbot.wait(50)
    win.close()
    settings = StudioSettings()
    recent = settings.recent_projects()
    assert recent[0]["kind"] == "run" and recent[0]["path"] == str(run_dir.resolve())
    assert settings.window_geometry("main") is not None
    assert list(Path(settings_dir).rglob("*.ini"))                   # stored in the temp folder
    again = MainWindow()
    qtbot.addWidget(again)
    assert again.height() == height
    from uldl_studio.qt.main_window import MAP_MIN_SIZE

    again.resize(1000, 640)   # the smallest window the geometry clamp allows
    again.show()
    qtbot.waitExposed(again)
    assert again.map_view.width() >= MAP_MIN_SIZE[0] and again.map_view.height() >= MAP_MIN_SIZE[1]
    assert again.grid_dock.isHidden() and not again.inspector_dock.isHidden()   # dock layout restored


def test_start_screen_preview_and_open(qtbot, settings_dir, tmp_path):
    from uldl_studio.core.data.datasets.demo import write_demo
    from uldl_studio.qt.start_screen import StartScreen

    folder = write_demo(tmp_path / "demo-data", n=60)
    screen = StartScreen()
    qtbot.addWidget(screen)
    screen.show()
    with qtbot.waitSignal(screen.previewReady, timeout=60_000):
        screen.preview_path(str(folder))
    assert "format <b>csv</b>" in screen.preview_summary.text()
    assert "60 samples" in screen.preview_summary.text()
    assert screen.counts_table.rowCount() >= 1 and screen.counts_table.columnCount() == 7
    assert screen.thumbnail_row.count() > 1
    with qtbot.waitSignal(screen.datasetChosen) as blocker:
        qtbot.mouseClick(screen.open_preview_button, Qt.MouseButton.LeftButton)
    table, source = blocker.args
    assert len(table) == 60 and source["format"] == "csv"
    # An unreadable folder gives a message, not a crash.
    with qtbot.waitSignal(screen.previewFailed, timeout=30_000):
        screen.preview_path(str(tmp_path))
    assert screen.preview_error.text()
    assert not screen.open_preview_button.isEnabled()
    with qtbot.waitSignal(screen.demoChosen):
        qtbot.mouseClick(screen.demo_button, Qt.MouseButton.LeftButton)


def test_run_gui_screenshot(qtbot, settings_dir, run_dir, tmp_path):
    from uldl_studio.qt.app import run_gui

    shot = tmp_path / "run.png"
    assert run_gui(str(run_dir), screenshot=str(shot)) == 0
    assert shot.stat().st_size > 10_000
    from PySide6.QtGui import QImage

    image = QImage(str(shot))
    from uldl_studio.qt.settings import MIN_WINDOW_SIZE

    assert image.width() >= MIN_WINDOW_SIZE[0] and image.height() >= MIN_WINDOW_SIZE[1]
    assert run_gui(str(tmp_path / "nope"), screenshot=str(tmp_path / "bad.png")) == 1


def test_real_umap_on_worker_keeps_gui_responsive(qtbot, window, run_dir):
    """umap-learn itself, imported inside the worker (its first import compiles for a while)."""
    import time

    win = window
    with qtbot.waitSignal(win.sessionLoaded, timeout=60_000):
        win.open_run(str(run_dir))
    ticks = []
    from PySide6.QtCore import QTimer

    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(50)
    with qtbot.waitSignal(win.umapReady, timeout=110_000):
        win.map_view.set_coordinates("umap")
        assert win.map_message.isVisibleTo(win) and "UMAP" in win.map_message.text()
    timer.stop()
    assert win.map_view.coordinate_mode == "umap"
    assert (run_dir / "umap.npy").exists()
    assert np.isfinite(win.map_view.coordinates()).all()
    assert len(ticks) > 5                               # the event loop kept running

    # Reopening the run reuses the cached map instead of computing it again.
    written = (run_dir / "umap.npy").stat().st_mtime_ns
    win.map_view.set_coordinates("va")
    with qtbot.waitSignal(win.sessionLoaded, timeout=60_000):
        win.open_run(str(run_dir))
    with qtbot.waitSignal(win.umapReady, timeout=30_000):
        win.request_umap()
    assert (run_dir / "umap.npy").stat().st_mtime_ns == written
    np.testing.assert_allclose(win.map_view.coordinates(), np.load(run_dir / "umap.npy"), rtol=1e-6)


def test_predict_dialog_runs_on_worker_and_cancels(qtbot, window, run_dir, tmp_path):
    from uldl_studio.core.data.datasets.demo import write_demo
    from uldl_studio.core.runs.export import read_soft_labels

    folder = write_demo(tmp_path / "other", n=60, seed=3)
    win = window
    with qtbot.waitSignal(win.sessionLoaded, timeout=60_000):
        win.open_run(str(run_dir))
    assert win.predict_action.isEnabled()
    predict_in_window(qtbot, win, folder, tmp_path / "pred.csv")
    back = read_soft_labels(tmp_path / "pred.csv")
    assert len(back) == 60
    # the predicted samples join the table after the dataset's rows; the map draws them as their
    # own marker, and the toggle hides them
    session, n = win.session, win.session.dataset_size
    assert session.has_predictions and len(session) == n + 60
    assert (session.table["source"].iloc[n:] == "prediction").all()
    assert len(win.map_view.predicted_marks.data) == 60
    assert win.map_view._predicted_toggle_action.isVisible()
    win.map_view.predicted_toggle.setChecked(False)
    assert len(win.map_view.predicted_marks.data) == 0 and (win.map_view.shown_rows < n).all()
    win.map_view.predicted_toggle.setChecked(True)
    # a click on a triangle makes that predicted sample current: the inspector shows it
    x, y = win.map_view.predicted_marks.data["x"][0], win.map_view.predicted_marks.data["y"][0]
    row = win.map_view.row_at(x, y)
    assert row >= n
    session.set_current(row)
    expected = session.table.iloc[row]
    assert win.inspector.title.text() == f"{expected['sample_id']} (predicted)"
    assert expected["label_name"] in win.inspector.fields["pred"].text()
    assert not win.inspector.image.pixmap().isNull()
    # the grid lists them too, and picking one shows it in the inspector
    assert win.grid_view._predicted_box_action.isVisible()
    win.grid_view.predicted_box.setChecked(True)
    assert win.grid_view.model.rows.size == 60 and (win.grid_view.model.rows >= n).all()
    assert win.grid_view.model.table is session.table
    first = int(win.grid_view.rows()[0])
    win.grid_view.tile_view.setCurrentIndex(win.grid_view.model.item(0))
    assert session.current == first
    assert win.inspector.title.text() == f"{session.table['sample_id'].iat[first]} (predicted)"
    win.grid_view.predicted_box.setChecked(False)
    assert win.grid_view.model.table is session.table and np.array_equal(win.grid_view.model.rows, session.queue)
    # Cancelled right away: nothing is written.
    dialog = win.show_predict_dialog()
    qtbot.addWidget(dialog)
    dialog.data_edit.setText(str(folder))
    dialog.out_edit.setText(str(tmp_path / "cancelled.csv"))
    with qtbot.waitSignal(dialog.finishedWith, timeout=60_000) as blocker:
        dialog.start()
        from PySide6.QtWidgets import QPushButton

        qtbot.mouseClick(dialog.progress.findChild(QPushButton), Qt.MouseButton.LeftButton)
    assert blocker.args[0] == "cancelled"
    assert not (tmp_path / "cancelled.csv").exists()


def test_the_panel_cross_fits_and_a_new_version_learns_from_the_edits(qtbot, window, tmp_path):
    """Start with "Cross-fit folds" set trains the run and then its fold models, as
    ``train --folds`` does; Start on the open run trains a new version from the edits."""
    win = window
    open_demo(qtbot, win)
    win.training_panel.folds.setValue(2)
    assert win.training_panel.values()["folds"] == 2
    train(qtbot, win, tmp_path / "run")
    assert (tmp_path / "run" / "crossfit.npz").is_file()
    in_train = win.session.table["split"].to_numpy() == "train"
    assert np.isfinite(win.session.score("oof_confidence")[in_train]).all()  # out-of-fold, every train row

    win.training_panel.folds.setValue(1)  # the minimum shows "off"
    assert win.training_panel.folds.text() == "off" and win.training_panel.values()["folds"] == 0
    row = int(win.session.queue[0])
    sid = win.session.table["sample_id"].iat[row]
    new = (int(win.session.table["label"].iat[row]) + 1) % len(win.session.classes)
    win.session.relabel([row], [new])
    with qtbot.waitSignal(win.trainingFinished, timeout=100_000) as blocker:
        qtbot.mouseClick(win.training_panel.start_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["done"]
    assert win.session.run.version == "v2" and Path(win.session.run.path) == tmp_path / "run" / "versions" / "v2"
    assert "it is now the current version" in win.statusBar().currentMessage()
    trained_on = pd.read_csv(tmp_path / "run" / "versions" / "v2" / "samples.csv", dtype={"sample_id": str})
    assert int(trained_on.set_index("sample_id").loc[sid, "label"]) == new
    assert not (tmp_path / "run" / "versions" / "v2" / "crossfit.npz").exists()
