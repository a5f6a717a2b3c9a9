"""GUI entry point: ``run_gui`` (called by ``uldl-studio``, ``uldl-studio demo``, ``uldl-studio gui``).

The main window and the start screen are imported only after the platform check: they import
torch (1.6 s on 2 CPU cores), and a machine without a usable display is told so at once.
"""
from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QEventLoop, QSettings, QTimer, qInstallMessageHandler
from PySide6.QtWidgets import QApplication

from uldl_studio import __version__
from uldl_studio.qt.icons import app_icon
from uldl_studio.qt.platform_check import exit_if_platform_unusable, has_display
from uldl_studio.qt.settings import APPLICATION, ORGANISATION, StudioSettings
from uldl_studio.resources import ICON_NAME


class ScratchSettings(StudioSettings):
    """The user's settings as they are, in a private copy that is thrown away: what the
    window reads is the user's (layout, panel values), what it writes (recent projects,
    panel values, window layout) changes nothing.  ``--screenshot`` renders with these."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="uldl-studio-screenshot-")
        user = QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANISATION, APPLICATION)
        self.qsettings = QSettings(str(Path(self._folder.name) / "settings.ini"), QSettings.Format.IniFormat)
        for key in user.allKeys():
            self.qsettings.setValue(key, user.value(key))


def quit_on_interrupt(app: QApplication) -> None:
    """Ctrl+C in the terminal closes every window as its close button would (a window that is
    training asks first), so the application ends the way closing it does.  Python runs a
    signal handler only between bytecodes: a timer gives it that chance while Qt's loop runs."""

    def close_windows() -> None:
        for widget in QApplication.topLevelWidgets():
            if widget.isWindow() and widget.isVisible():
                widget.close()

    signal.signal(signal.SIGINT, lambda signum, frame: QTimer.singleShot(0, close_windows))
    ticker = QTimer(app)
    ticker.timeout.connect(lambda: None)
    ticker.start(200)


def _quiet_offscreen_notes() -> None:
    """Drop the offscreen platform's "This plugin does not support propagateSizeHints()" notes
    (one per dock, nothing the user can act on); every other Qt message is printed as before."""
    def handler(mode, context, message: str) -> None:
        if "does not support propagateSizeHints" not in message:
            print(message, file=sys.stderr)

    qInstallMessageHandler(handler)


def ensure_app() -> QApplication:
    """The QApplication (created once).  Before creating it, no display or (on an X11 desktop)
    a missing system library of Qt's xcb plugin ends the program with one line and status 2
    (:mod:`uldl_studio.qt.platform_check`) instead of Qt's abort."""
    app = QApplication.instance()
    if app is None:
        exit_if_platform_unusable()
        app = QApplication(sys.argv[:1])
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationVersion(__version__)
    app.setDesktopFileName(ICON_NAME)  # Wayland/X11 shells match the window to uldl-studio.desktop
    app.setWindowIcon(app_icon())
    pg.setConfigOptions(antialias=True)
    return app


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / "config.json").is_file()


def wait_for(signals, timeout_s: float) -> bool:
    """Run the event loop until one of ``signals`` fires (True) or the timeout passes (False)."""
    loop = QEventLoop()
    fired = []

    def done(*args):
        fired.append(True)
        loop.quit()

    for signal in signals:
        signal.connect(done)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    for signal in signals:
        try:
            signal.disconnect(done)
        except (RuntimeError, TypeError):
            pass
    return bool(fired)


def settle(seconds: float = 0.5) -> None:
    """Process events for a while so that layouts, plots and thumbnails are painted."""
    app = QApplication.instance()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        time.sleep(0.01)


def open_path(window, path: str, fmt: str = "auto") -> None:
    if str(path) == "demo":
        window.open_demo()
    elif is_run_dir(path):
        window.open_run(path)
    else:
        window.open_dataset(path, fmt)


def save_screenshot(window, file: str | Path) -> None:
    settle(0.8)
    window.repaint()
    settle(0.2)
    Path(file).parent.mkdir(parents=True, exist_ok=True)
    if not window.grab().save(str(file)):
        raise OSError(f"{file}: could not write the screenshot")


def run_gui(path: str | None = None, *, demo: bool = False, screenshot: str | None = None,
            fmt: str = "auto") -> int:
    """Start the GUI.

    - no path, not demo: the start screen;
    - ``demo=True``: the main window on the built-in demo (training starts on a click);
    - ``path``: the main window on a dataset folder/CSV or a run directory (a run selects its
      most ambiguous sample);
    - ``screenshot=FILE``: build the window with ``path`` (or the demo) loaded, save a picture
      of it to FILE and return 0 without entering the event loop (1 on an error, printed).
      It renders offscreen when there is no display, and leaves the user's settings and
      recent projects as they were.
    """
    if screenshot and QApplication.instance() is None:
        if not has_display(os.environ):
            os.environ["QT_QPA_PLATFORM"] = "offscreen"
        _quiet_offscreen_notes()
    app = ensure_app()
    from uldl_studio.qt.main_window import MainWindow

    if screenshot:
        window = MainWindow(ScratchSettings(), restore_layout=False)
        window.offer_start_screen = False  # a picture, then exit: no second window, no worker left
        window.resize(1600, 1000)
        window.show()
        if path is None and not demo:
            settle(0.5)
        else:
            open_path(window, "demo" if demo and path is None else path, fmt)
            if not wait_for([window.sessionLoaded, window.loadFailed], timeout_s=600):
                print(f"uldl-studio: {path}: timed out while loading", file=sys.stderr)
                return 1
        # a picture of a whole window: the offscreen screen (800 x 800) does not clamp it
        window.resize(1600, 1000)
        settle(0.3)
        failed = window.map_message.isVisible() and window.map_message.text().startswith("Could not open")
        try:
            save_screenshot(window, screenshot)
        except OSError as exc:
            print(f"uldl-studio: {exc}", file=sys.stderr)
            return 1
        window.close()
        if failed:
            print(f"uldl-studio: {window.map_message.text()}", file=sys.stderr)
            return 1
        return 0

    settings = StudioSettings()
    quit_on_interrupt(app)
    if demo or path is not None:
        window = MainWindow(settings)
        window.show()
        open_path(window, "demo" if demo and path is None else path, fmt)
        return app.exec()

    from uldl_studio.qt.start_screen import StartScreen

    start = StartScreen(settings)
    state = {"window": None}

    def main_window() -> MainWindow:
        if state["window"] is None:
            state["window"] = MainWindow(settings)
        window = state["window"]
        window.show()
        start.hide()
        return window

    start.demoChosen.connect(lambda: main_window().open_demo())
    start.runChosen.connect(lambda p: main_window().open_run(p))
    start.datasetChosen.connect(lambda table, source: main_window().show_table(table, source))
    geometry = settings.window_geometry("start")
    if geometry is not None:
        start.restoreGeometry(geometry)
    start.show()
    code = app.exec()
    settings.save_window("start", start.saveGeometry())
    return code
