"""The map's renderer relies on pyqtgraph internals: the installed pyqtgraph must lie in the
range it was checked against, and pyproject.toml must pin exactly that range."""
from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

from uldl_studio.qt.scatter_renderer import PYQTGRAPH_TESTED

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _pyqtgraph_requirement() -> Requirement:
    # a regex, not tomllib: the project supports Python 3.10, which has no tomllib
    match = re.search(r'^\s*"(pyqtgraph[^"]*)"', PYPROJECT.read_text("utf-8"), re.MULTILINE)
    assert match, "pyproject.toml does not list pyqtgraph"
    return Requirement(match.group(1))


def test_pin_matches_the_checked_range():
    spec = _pyqtgraph_requirement().specifier
    low, high = PYQTGRAPH_TESTED
    assert {(s.operator, s.version) for s in spec} == {(">=", low), ("<", high)}


def test_installed_pyqtgraph_is_inside_the_pin():
    installed = Version(version("pyqtgraph"))
    assert installed in _pyqtgraph_requirement().specifier, installed


def test_the_internals_the_renderer_uses_exist():
    import pyqtgraph as pg

    item = pg.ScatterPlotItem()
    for name in ("fragmentAtlas", "_maskAt", "_updateMaxSpotSizes", "updateSpots", "bounds"):
        assert hasattr(item, name), name
    assert {"x", "y", "brush", "sourceRect", "visible"} <= set(item.data.dtype.names)
    assert hasattr(pg.Qt.internals, "PrimitiveArray")
