"""Guard against a Qt binding that corrupts interpreter singletons.

PySide6 6.12.0 on Python 3.11 dropped one reference to None for every void call
(``setText``, ``setAlpha``…), so a long session aborted with ``none_dealloc``.
pyproject.toml pins below it.  Two checks, so that neither can pass vacuously:

- the installed PySide6 satisfies the pin read from pyproject.toml, and the pin excludes 6.12.0;
- on Python < 3.12 the reference count of None is measured around thousands of void calls
  (with a control showing that the measurement sees a change).  From 3.12 on None is immortal
  (PEP 683): its count is a constant, the leak cannot happen and cannot be measured, so that
  test is skipped and says why.
"""
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from PySide6 import QtGui, QtWidgets

pytestmark = pytest.mark.timeout(30)

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
KNOWN_BAD = Version("6.12.0")


def pyside_requirement() -> Requirement:
    """The PySide6 requirement in pyproject.toml's [project] dependencies."""
    text = PYPROJECT.read_text(encoding="utf-8")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: read the dependency strings directly
        deps = re.findall(r'^\s*"([^"]+)",?\s*$', text.split("dependencies = [", 1)[1].split("]", 1)[0],
                          flags=re.MULTILINE)
    else:
        deps = tomllib.loads(text)["project"]["dependencies"]
    found = [Requirement(d) for d in deps if Requirement(d).name.lower().startswith("pyside6")]
    assert len(found) == 1, f"expected one PySide6 requirement in {PYPROJECT}, found {found}"
    return found[0]


def installed_pyside() -> Version:
    import PySide6

    return Version(PySide6.__version__)


def test_installed_pyside_is_within_the_pin_that_excludes_the_broken_build():
    requirement = pyside_requirement()
    assert not requirement.specifier.contains(KNOWN_BAD), \
        f"pyproject.toml allows PySide6 {KNOWN_BAD} ({requirement}), which corrupts None on Python 3.11"
    version = installed_pyside()
    assert requirement.specifier.contains(version, prereleases=True), \
        f"installed PySide6 {version} is outside the pin {requirement.specifier}"
    assert Version(metadata.version(requirement.name)) == version   # the wheel the pin is about
    if sys.version_info[:2] == (3, 11):
        assert version != KNOWN_BAD


@pytest.mark.skipif(sys.version_info >= (3, 12),
                    reason="None is immortal from Python 3.12 (PEP 683): its reference count is "
                           "constant, so a binding cannot free it and the count cannot show a leak")
def test_void_calls_keep_none_alive(qapp):
    # Control: the measurement sees references being taken and given back.
    before = sys.getrefcount(None)
    held = [None] * 1000
    assert sys.getrefcount(None) - before >= 1000
    del held
    label = QtWidgets.QLabel()
    colour = QtGui.QColor(10, 20, 30)
    before = sys.getrefcount(None)
    for _ in range(2000):
        label.setText("x")
        colour.setAlpha(7)
        label.setVisible(False)
    assert sys.getrefcount(None) - before > -100, "the Qt binding leaks references to None"
