"""Start-up checks (a display, the xcb platform plugin): pure parts, the list against the real
plugin, and the exit paths of ``uldl-studio`` in a child process."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]


def _lookup_without(*absent):
    return lambda soname: soname not in absent


def test_uses_xcb_only_on_an_x11_linux_desktop():
    from uldl_studio.qt.platform_check import uses_xcb

    assert uses_xcb({"DISPLAY": ":0"}, "linux")
    assert not uses_xcb({}, "linux")                                       # no display at all
    assert not uses_xcb({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, "linux")
    assert uses_xcb({"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb"}, "linux")
    assert uses_xcb({"QT_QPA_PLATFORM": "xcb:nograb;wayland"}, "linux")
    assert not uses_xcb({"DISPLAY": ":0", "QT_QPA_PLATFORM": "wayland;xcb"}, "linux")
    assert not uses_xcb({"DISPLAY": ":0", "XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"},
                        "linux")                                           # xcb is only the fallback
    assert not uses_xcb({"DISPLAY": ":0"}, "darwin") and not uses_xcb({"DISPLAY": ":0"}, "win32")


def test_message_is_one_line_naming_library_and_commands():
    from uldl_studio.qt.platform_check import missing_libraries, missing_message

    missing = missing_libraries(_lookup_without("libxcb-cursor.so.0"))
    assert [m.soname for m in missing] == ["libxcb-cursor.so.0"]
    text = missing_message(missing)
    assert "\n" not in text
    assert "libxcb-cursor.so.0 is missing" in text
    assert "sudo apt-get install libxcb-cursor0 " in text and "sudo dnf install xcb-util-cursor " in text
    several = missing_message(missing_libraries(_lookup_without("libxcb-randr.so.0", "libxcb-shape.so.0",
                                                                "libxcb-icccm.so.4")))
    assert "libxcb-icccm.so.4, libxcb-randr.so.0, libxcb-shape.so.0 are missing" in several
    assert "apt-get install libxcb-icccm4 libxcb-randr0 libxcb-shape0 " in several
    assert "dnf install xcb-util-wm libxcb " in several                       # each package once


def test_exit_path_and_no_exit_when_fine():
    from uldl_studio.qt.platform_check import EXIT_STATUS, exit_if_platform_unusable

    out = io.StringIO()
    with pytest.raises(SystemExit) as stop:
        exit_if_platform_unusable({"DISPLAY": ":1"}, _lookup_without("libxcb-cursor.so.0"), "linux", out)
    assert stop.value.code == EXIT_STATUS == 2
    assert out.getvalue().count("\n") == 1 and "libxcb-cursor.so.0" in out.getvalue()
    for env, platform in (({"DISPLAY": ":1"}, "linux"), ({"QT_QPA_PLATFORM": "offscreen"}, "linux")):
        exit_if_platform_unusable(env, _lookup_without() if "DISPLAY" in env else _lookup_without("libxcb.so.1"),
                                  platform, out)                         # returns: nothing missing / not xcb
    assert out.getvalue().count("\n") == 1


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("ldd") is None,
                    reason="needs Linux and ldd")
def test_library_list_matches_the_installed_plugin():
    """Every X11 library the installed xcb plugin links to is in the list, and vice versa."""
    import PySide6

    from uldl_studio.qt.platform_check import XCB_LIBRARIES

    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    if not plugin.exists():
        pytest.skip(f"{plugin} is not installed")
    out = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True, check=True).stdout
    needed = {line.split()[0] for line in out.splitlines() if line.strip()}
    x11 = {n for n in needed if n.startswith(("libxcb", "libxkbcommon", "libX11-xcb"))}
    assert x11 == {lib.soname for lib in XCB_LIBRARIES}


def _child_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY",
                                                          "XDG_SESSION_TYPE")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def test_uldl_studio_exits_2_with_one_line_when_a_library_is_missing(tmp_path):
    """The real entry point (cli.main -> run_gui -> ensure_app) on DISPLAY=:1, in a child whose
    library lookup reports libxcb-cursor.so.0 missing: status 2, one line, Qt never started."""
    code = ("import sys, uldl_studio.qt.platform_check as pc\n"
            "pc.library_loads = lambda name: name != 'libxcb-cursor.so.0'\n"
            "from uldl_studio.cli import main\n"
            "sys.exit(main([]))\n")
    run = subprocess.run([sys.executable, "-c", code], env=_child_env(DISPLAY=":1"), cwd=tmp_path,
                         capture_output=True, text=True, timeout=50)
    if not sys.platform.startswith("linux"):
        pytest.skip("the check only runs on Linux")
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2, run.stderr
    assert len(lines) == 1 and "libxcb-cursor.so.0 is missing" in lines[0], run.stderr
    assert "sudo apt-get install libxcb-cursor0" in lines[0] and "sudo dnf install xcb-util-cursor" in lines[0]
    assert "Could not load the Qt platform plugin" not in run.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the check only runs on Linux")
def test_installed_console_script_on_this_machine(tmp_path):
    """``uldl-studio`` itself, with no lookup replaced, where this machine really lacks one of
    the libraries (otherwise there is nothing real to see: skipped)."""
    from uldl_studio.qt.platform_check import missing_libraries

    missing = missing_libraries()
    script = Path(sys.executable).parent / "uldl-studio"
    if not missing:
        pytest.skip("every xcb library loads here: Qt would start (and need a real display)")
    if not script.exists():
        pytest.skip(f"{script}: console script not installed")
    run = subprocess.run([str(script)], env=_child_env(DISPLAY=":1"), cwd=tmp_path,
                         capture_output=True, text=True, timeout=50)
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and missing[0].soname in lines[0] and missing[0].debian in lines[0]


def test_has_display_needs_a_display_server_or_a_headless_platform():
    from uldl_studio.qt.platform_check import has_display

    assert not has_display({}, "linux")
    assert not has_display({"SSH_CONNECTION": "1.2.3.4 5 6.7.8.9 22"}, "linux")
    assert has_display({"DISPLAY": ":0"}, "linux")
    assert has_display({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert has_display({"QT_QPA_PLATFORM": "offscreen"}, "linux")
    assert not has_display({"QT_QPA_PLATFORM": "xcb"}, "linux")             # xcb asked for, no X display
    assert not has_display({"QT_QPA_PLATFORM": "wayland", "DISPLAY": ":0"}, "linux")
    assert has_display({}, "darwin") and has_display({}, "win32")


def test_no_display_is_one_line_before_the_library_check():
    from uldl_studio.qt.platform_check import EXIT_STATUS, exit_if_platform_unusable

    out = io.StringIO()
    looked = []
    with pytest.raises(SystemExit) as stop:
        exit_if_platform_unusable({}, lambda name: looked.append(name) or True, "linux", out)
    assert stop.value.code == EXIT_STATUS
    assert out.getvalue().count("\n") == 1 and "no display found" in out.getvalue()
    assert "QT_QPA_PLATFORM=offscreen" in out.getvalue() and "--screenshot" in out.getvalue()
    assert looked == []     # no X11 packages suggested: they would not help


def _headless_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM", "XDG_SESSION_TYPE")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the display check is for Linux")
@pytest.mark.parametrize("args", [[], ["demo"], ["gui", "demo"]])
def test_gui_commands_without_a_display_exit_2_with_one_line(tmp_path, args):
    run = subprocess.run([sys.executable, "-m", "uldl_studio", *args], env=_headless_env(), cwd=tmp_path,
                         capture_output=True, text=True, timeout=50)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2, run.stderr
    assert len(lines) == 1 and lines[0].startswith("uldl-studio: no display found"), run.stderr
    assert "Could not load the Qt platform plugin" not in run.stderr
