"""Packaged resources (icon, .desktop entry, AppStream metainfo), the wheel that carries them,
the application icon and the About dialog."""
from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from synthetic import image_colours, rect_in  # noqa: E402  (tests/qt/synthetic.py)

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


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.mark.slow
def test_wheel_carries_the_top_level_resources(tmp_path):
    """Build a wheel from a copy of the sources, check what it holds, and look the resources
    up through importlib.resources from the unpacked wheel, with the checkout off the path."""
    import zipfile

    source, dist, site = tmp_path / "src", tmp_path / "dist", tmp_path / "site"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("uldl_studio", "resources"):             # build outside the checkout
        shutil.copytree(REPO / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--wheel-dir", str(dist), str(source)],
        capture_output=True, text=True, timeout=170, cwd=tmp_path)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = dist.glob("uldl_studio-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(site)
    resource_files = sorted(p.name for p in (REPO / "resources").iterdir()
                            if p.is_file() and p.suffix != ".pyc")
    assert "uldl-studio.metainfo.xml" in resource_files
    # Every resource once, inside the package; no stray top-level folder.
    assert sorted(n.split("/")[-1] for n in names
                  if n.startswith("uldl_studio/resources/")) == resource_files
    assert not [n for n in names if n.startswith("resources/")]
    # Every package of the source tree made it into the wheel (pyproject lists them).
    packages = {p.parent.relative_to(REPO).as_posix()
                for p in (REPO / "uldl_studio").rglob("__init__.py")}
    assert {p for p in packages if f"{p}/__init__.py" not in names} == set()

    code = ("from importlib import resources\n"
            "import uldl_studio.resources as r\n"
            "root = resources.files('uldl_studio.resources')\n"
            "print(r.__file__)\n"
            "for size in r.ICON_SIZES:\n"
            "    print(root.joinpath(f'uldl-studio-{size}.png').read_bytes().hex())\n"
            "print(root.joinpath('uldl-studio.svg').read_bytes()[:200].hex())\n"
            "print(root.joinpath('uldl-studio.desktop').read_text('utf-8').encode().hex())\n"
            "print(r.metainfo().encode().hex())\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    # -S: no site-packages, so the editable install of the checkout cannot answer the import
    run = subprocess.run([sys.executable, "-S", "-c", code], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    where, *pngs, svg, desktop, metainfo = run.stdout.split()
    assert Path(where).is_relative_to(site)
    assert [_png_size(bytes.fromhex(p)) for p in pngs] == [(s, s) for s in (16, 32, 48, 64, 128, 256)]
    assert b"<svg" in bytes.fromhex(svg)
    assert "Icon=uldl-studio" in bytes.fromhex(desktop).decode()
    assert "<launchable type=\"desktop-id\">uldl-studio.desktop</launchable>" in bytes.fromhex(metainfo).decode()


def test_metainfo_matches_the_package():
    """The AppStream metainfo names the .desktop entry, the licence of pyproject.toml and the
    required fields."""
    import tomllib
    import xml.etree.ElementTree as ET

    from uldl_studio import resources

    root = ET.fromstring(resources.metainfo())
    assert root.tag == "component" and root.get("type") == "desktop-application"
    assert root.findtext("id") == resources.ICON_NAME
    assert root.findtext("name") == "ULDL Studio" and root.findtext("summary")
    assert root.find("description/p") is not None
    launchable = root.find("launchable")
    assert launchable.get("type") == "desktop-id" and launchable.text == resources.DESKTOP_FILE
    assert resources.files().joinpath(launchable.text).is_file()
    assert root.findtext("metadata_license") == "CC0-1.0"
    project = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]
    assert root.findtext("project_license") == project["license"]["text"]
    assert root.find("content_rating").get("type").startswith("oars-")
    assert root.findtext("provides/binary") in project["scripts"]


@pytest.mark.skipif(shutil.which("appstreamcli") is None, reason="appstreamcli not installed")
def test_metainfo_passes_appstreamcli():
    # The id is the name of the .desktop entry and the icon, not a reverse-DNS name: that one
    # advice is downgraded, every other issue fails the check.
    check = subprocess.run(
        ["appstreamcli", "validate", "--no-net", "--override=cid-desktopapp-is-not-rdns=info",
         str(REPO / "resources" / "uldl-studio.metainfo.xml")],
        capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_about_shows_version_libraries_and_run(qtbot, run_dir):
    import PySide6
    from PySide6.QtCore import qVersion

    import uldl_studio
    from uldl_studio.core.engine.run import Run
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
    image = dialog.grab().toImage()
    assert len(image_colours(image, step=2)) >= 8                           # drawn, not one flat colour
    assert len(image_colours(image, rect_in(dialog.run_label, dialog))) >= 4  # the run's line is painted
    # A path works too, and no run says so.
    by_path = show_about(None, run=str(run_dir))
    qtbot.addWidget(by_path)
    assert str(run_dir) in by_path.text()
    none = show_about(None)
    qtbot.addWidget(none)
    assert "no run open" in none.text()
    for d in (dialog, by_path, none):
        d.close()
