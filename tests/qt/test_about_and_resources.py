"""Packaged resources (icon, .desktop entry), the application icon and the About dialog."""
from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[2]


def test_resources_through_importlib(qapp):
    from importlib import resources as ir

    from PySide6.QtGui import QImage

    from uldl_studio import resources

    root = ir.files("uldl_studio.resources")
    assert root.joinpath("uldl-studio.svg").is_file()
    assert b"<svg" in resources.icon_svg()
    for size in resources.ICON_SIZES:
        image = QImage.fromData(resources.icon_png(size), "PNG")
        assert (image.width(), image.height()) == (size, size)
        assert image.hasAlphaChannel()
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read_string(resources.desktop_entry())
    desktop = entry["Desktop Entry"]
    assert desktop["Exec"] == "uldl-studio" and desktop["Icon"] == "uldl-studio"
    assert desktop["Categories"] == "Science;Graphics;" and desktop["Type"] == "Application"


def test_application_icon_is_set_by_ensure_app(qapp):
    from uldl_studio.qt.app import ensure_app
    from uldl_studio.qt.icons import app_icon

    app = ensure_app()
    icon = app_icon()
    assert not icon.isNull()
    assert {s.width() for s in icon.availableSizes()} >= {16, 32, 48, 64, 128, 256}
    assert not app.windowIcon().isNull()
    assert app.windowIcon().cacheKey() == icon.cacheKey()
    assert app.desktopFileName() == "uldl-studio"


def test_resources_found_in_an_installed_copy(tmp_path):
    """Install the package (no dependencies) into a folder and look the resources up from
    there, with the checkout off the path: what package-data ships is what is found."""
    import shutil

    source, target = tmp_path / "src", tmp_path / "site"        # build outside the checkout
    shutil.copytree(REPO / "uldl_studio", source / "uldl_studio",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=170, cwd=tmp_path)
    assert build.returncode == 0, build.stderr[-2000:]
    code = ("import uldl_studio, uldl_studio.resources as r\n"
            "print(uldl_studio.__file__)\n"
            "print(len(r.icon_svg()), *[len(r.icon_png(s)) for s in r.ICON_SIZES])\n"
            "print('Icon=uldl-studio' in r.desktop_entry())\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)
    run = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    where, sizes, desktop = run.stdout.split("\n")[:3]
    assert Path(where).is_relative_to(target)
    assert all(int(n) > 100 for n in sizes.split()) and desktop == "True"


def test_about_shows_version_libraries_and_run(qtbot, run_dir):
    import PySide6
    from PySide6.QtCore import qVersion

    import uldl_studio
    from uldl_studio.core.run import Run
    from uldl_studio.qt.about import show_about

    dialog = show_about(None, run=Run.open(run_dir))
    qtbot.addWidget(dialog)
    qtbot.waitExposed(dialog)
    text = dialog.text()
    assert uldl_studio.__version__ in text and "ULDL Studio" in text
    assert qVersion() in text and PySide6.__version__ in text and "PyTorch" in text
    assert str(run_dir) in text and dialog.method_label.text() == "LDLVA"
    assert "MIT" in text
    assert dialog.findChild(type(dialog.run_label), "aboutRun") is dialog.run_label
    qtbot.wait(100)
    assert dialog.grab().save("/tmp/about.png")
    # A path works too, and no run says so.
    by_path = show_about(None, run=str(run_dir))
    qtbot.addWidget(by_path)
    assert str(run_dir) in by_path.text()
    none = show_about(None)
    qtbot.addWidget(none)
    assert "no run open" in none.text()
    for d in (dialog, by_path, none):
        d.close()
