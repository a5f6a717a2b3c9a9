"""Start screen: previews on a worker, and the real start screen driven through run_gui()."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(120)


def test_a_second_preview_replaces_the_first(qtbot, settings_dir, tmp_path):
    """Choosing another dataset while one is being read shows only the last one."""
    from uldl_studio.core.data.datasets.demo import write_demo
    from uldl_studio.qt.start_screen import StartScreen

    first = write_demo(tmp_path / "first", n=40)
    second = write_demo(tmp_path / "second", n=30)
    screen = StartScreen()
    qtbot.addWidget(screen)
    ready = []
    screen.previewReady.connect(lambda: ready.append(screen.preview_summary.text()))
    screen.preview_path(str(first))
    screen._preview_job.thread.wait(30_000)   # the first has been read; its result is queued
    with qtbot.waitSignal(screen.previewReady, timeout=60_000):
        screen.preview_path(str(second))
    qtbot.wait(300)
    assert len(ready) == 1 and "30 samples" in ready[0]
    assert "30 samples" in screen.preview_summary.text()
    screen.close()


def test_run_gui_start_screen_end_to_end(qtbot, qapp, settings_dir, tmp_path):
    """``uldl-studio`` with no path: the real start screen in its own ``exec()`` loop, driven
    from timers: preview a dataset folder, open it, the main window shows its rows; closing
    the window ends the loop with status 0."""
    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from uldl_studio.core.data.datasets.demo import write_demo
    from uldl_studio.qt.app import run_gui
    from uldl_studio.qt.main_window import MainWindow
    from uldl_studio.qt.start_screen import StartScreen

    folder = write_demo(tmp_path / "demo-data", n=50)
    seen: dict = {"errors": []}

    def top(kind):
        return [w for w in QApplication.topLevelWidgets() if isinstance(w, kind)]

    def step(fn):
        def run():
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - reported by the test, loop ends
                seen["errors"].append(repr(exc))
                QApplication.exit(3)
        return run

    @step
    def choose_dataset():
        screens = [s for s in top(StartScreen) if s.isVisible()]
        assert len(screens) == 1, "the start screen is not shown"
        screen = seen["screen"] = screens[0]
        screen.previewReady.connect(step(open_it))
        screen.previewFailed.connect(lambda m: (seen["errors"].append(m), QApplication.exit(4)))
        screen.preview_path(str(folder))

    def open_it():
        screen = seen["screen"]
        assert screen.open_preview_button.isEnabled()
        QTest.mouseClick(screen.open_preview_button, Qt.MouseButton.LeftButton)
        QTimer.singleShot(200, step(check_and_close))

    def check_and_close():
        windows = [w for w in top(MainWindow) if w.isVisible()]
        assert len(windows) == 1, "the main window did not appear"
        window = seen["window"] = windows[0]
        seen["rows"] = len(window.session)
        seen["grid"] = len(window.grid_order())
        seen["train"] = int((window.session.table["split"] == "train").sum())
        seen["start_hidden"] = not seen["screen"].isVisible()
        window.close()                       # the last window: exec() returns

    QTimer.singleShot(100, choose_dataset)
    guard = QTimer(singleShot=True, interval=90_000)          # never hang the suite
    guard.timeout.connect(lambda: QApplication.exit(5))
    guard.start()
    assert qapp.quitOnLastWindowClosed()
    try:
        code = run_gui()
    finally:
        guard.stop()
    assert seen["errors"] == []
    assert code == 0
    # the grid lists the review queue: the training rows
    assert seen["rows"] == 50 and 0 < seen["grid"] == seen["train"] and seen["start_hidden"]
    assert not seen["window"].isVisible()
    from uldl_studio.qt.settings import StudioSettings

    recent = StudioSettings().recent_projects()
    assert recent and recent[0]["kind"] == "dataset" and recent[0]["path"] == str(folder.resolve())
    assert StudioSettings().window_geometry("start") is not None   # saved after the loop
