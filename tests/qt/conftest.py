"""Qt tests run offscreen, with settings, caches and runs in temporary folders."""
from __future__ import annotations

import os
import shutil

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

DEMO_N = 300
# A network and input small enough that one epoch takes a second or two on a CPU.
TINY_CONFIG = {"image_size": 16, "width": 8, "stages": 2, "blocks": 1, "calib_hidden": [16],
               "batch_size": 32, "progress_every": 1, "augment": False, "device": "cpu", "k": 4}


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory):
    """Demo cache, runs folder and GUI settings of the whole session live in temp folders."""
    base = tmp_path_factory.mktemp("uldl-env")
    old = {k: os.environ.get(k) for k in ("ULDL_STUDIO_CACHE", "ULDL_STUDIO_RUNS")}
    os.environ["ULDL_STUDIO_CACHE"] = str(base / "cache")
    os.environ["ULDL_STUDIO_RUNS"] = str(base / "runs")
    from uldl_studio.qt.settings import use_settings_dir

    use_settings_dir(base / "settings")
    yield base
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def tiny_config():
    return dict(TINY_CONFIG)


@pytest.fixture
def settings_dir(tmp_path):
    """A fresh settings folder for one test."""
    from uldl_studio.qt.settings import use_settings_dir

    use_settings_dir(tmp_path / "settings")
    return tmp_path / "settings"


@pytest.fixture(scope="session")
def demo_table(_isolated_environment):
    from uldl_studio.core.data.datasets.demo import load_demo

    return load_demo(n=DEMO_N)


@pytest.fixture(scope="session")
def trained_run_dir(tmp_path_factory, demo_table):
    """A finished one-epoch LDLVA run on the small demo (trained once per session, no Qt)."""
    from uldl_studio.core.engine.config import TrainConfig
    from uldl_studio.core.engine.training import fit
    from uldl_studio.qt.demo import load_demo_table

    run_dir = tmp_path_factory.mktemp("trained") / "run"
    # The table MainWindow.open_demo trains on (reads the demo cached by ``demo_table``).
    table = load_demo_table(n=DEMO_N)
    for _ in fit(table, TrainConfig(**TINY_CONFIG, epochs=1), run_dir):
        pass
    return run_dir


@pytest.fixture
def run_dir(tmp_path, trained_run_dir):
    """A private copy of the trained run (tests write edits into it)."""
    target = tmp_path / "run"
    shutil.copytree(trained_run_dir, target)
    return target


@pytest.fixture
def run_bridge(qtbot, run_dir):
    """A SessionBridge on a private copy of the trained run (its journal closed afterwards)."""
    from uldl_studio.core.engine.run import Run
    from uldl_studio.qt.session_bridge import SessionBridge

    bridge = SessionBridge()
    bridge.session.set_run(Run.open(run_dir))
    yield bridge
    bridge.session.journal.close()


@pytest.fixture
def window(qtbot, settings_dir, tiny_config):
    """The real main window, shown offscreen, training the tiny config; closed afterwards."""
    from uldl_studio.qt.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.confirm_close = lambda: True
    win.training_panel.extra_config = dict(tiny_config)
    win.resize(1500, 950)
    win.show()
    qtbot.waitExposed(win)
    yield win
    if win.training.is_running:
        win.training.stop_and_wait()
    win.close()
