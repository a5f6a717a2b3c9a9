"""The GUI entry point: ``--screenshot`` leaves the user's settings alone and renders without a
display; Ctrl+C closes the windows as their close buttons do."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]


def _settings_snapshot(settings_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(settings_dir)): p.read_bytes() for p in settings_dir.rglob("*") if p.is_file()}


def test_screenshot_leaves_settings_and_recent_projects_unchanged(qtbot, settings_dir, run_dir, tmp_path):
    from uldl_studio.qt.app import run_gui
    from uldl_studio.qt.settings import StudioSettings

    user = StudioSettings()
    user.add_recent(str(tmp_path), "dataset", "csv")
    user.set_training_values({"epochs": 12, "method": "ldlva"})
    user.sync()
    before = _settings_snapshot(settings_dir)
    assert before                                  # the user's settings file exists

    assert run_gui(str(run_dir), screenshot=str(tmp_path / "shot.png")) == 0
    assert (tmp_path / "shot.png").stat().st_size > 10_000
    assert _settings_snapshot(settings_dir) == before
    again = StudioSettings()
    assert [item["path"] for item in again.recent_projects()] == [str(tmp_path.resolve())]
    assert again.training_values() == {"epochs": 12, "method": "ldlva"}


def test_scratch_settings_read_the_users_and_write_nowhere(qapp, settings_dir, tmp_path):
    from uldl_studio.qt.app import ScratchSettings
    from uldl_studio.qt.settings import StudioSettings

    StudioSettings().set_training_values({"epochs": 5})
    StudioSettings().sync()
    scratch = ScratchSettings()
    assert scratch.training_values() == {"epochs": 5}
    scratch.set_training_values({"epochs": 2})
    scratch.add_recent(str(tmp_path), "run")
    scratch.sync()
    assert scratch.training_values() == {"epochs": 2}
    assert StudioSettings().training_values() == {"epochs": 5}
    assert StudioSettings().recent_projects() == []


@pytest.fixture
def restore_sigint():
    old = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, old)


def test_ctrl_c_closes_the_windows_and_a_training_window_asks_first(qtbot, qapp, settings_dir, restore_sigint,
                                                                    monkeypatch):
    from uldl_studio.qt.app import quit_on_interrupt
    from uldl_studio.qt.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    quit_on_interrupt(qapp)

    asked = []
    monkeypatch.setattr(type(win.training), "is_running", property(lambda self: True))
    win.confirm_close = lambda: asked.append(1) or False     # "No": keep training
    os.kill(os.getpid(), signal.SIGINT)
    qtbot.waitUntil(lambda: asked == [1], timeout=5_000)
    assert win.isVisible()                                  # the answer was no: still open

    monkeypatch.undo()                                      # not training: Ctrl+C closes it
    os.kill(os.getpid(), signal.SIGINT)
    qtbot.waitUntil(lambda: not win.isVisible(), timeout=5_000)
    assert asked == [1]


def _headless_env(settings: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM", "XDG_SESSION_TYPE")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["ULDL_STUDIO_SETTINGS_DIR"] = str(settings)
    return env


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the display check is for Linux")
def test_screenshot_without_a_display_renders_offscreen(run_dir, tmp_path):
    settings = tmp_path / "settings"
    settings.mkdir()
    shot = tmp_path / "shot.png"
    result = subprocess.run([sys.executable, "-m", "uldl_studio", "gui", str(run_dir), "--screenshot", str(shot)],
                            env=_headless_env(settings), cwd=tmp_path, capture_output=True, text=True,
                            timeout=100)
    assert result.returncode == 0, result.stderr
    assert shot.stat().st_size > 10_000
    assert "propagateSizeHints" not in result.stderr and "Could not load" not in result.stderr
    assert not list(settings.rglob("*.ini"))                # nothing written to the user's settings
