"""Start-up checks run before the QApplication exists: is there a display, and can Qt's xcb
platform plugin (Linux/X11) load?

Without a display (an SSH session, a server, a container) or without one of the X11 libraries
the xcb plugin links to, Qt only prints "Could not load the Qt platform plugin xcb" and
aborts.  :func:`exit_if_platform_unusable` says in one line what is wrong and what helps
instead, and exits with status 2.  Nothing here imports Qt: the checks are pure (the
environment and a library lookup are passed in) and tests run them without a display.
"""
from __future__ import annotations

import ctypes
import os
import sys
from typing import Callable, Mapping, NamedTuple, TextIO

EXIT_STATUS = 2


class SystemLibrary(NamedTuple):
    soname: str
    debian: str   # Debian/Ubuntu package
    fedora: str   # Fedora package


# What PySide6's libQt6XcbQpa.so.6 (loaded by plugins/platforms/libqxcb.so) needs beyond the
# Qt libraries in the wheel: its ELF NEEDED entries for X11 (Qt 6.11; tests compare this list
# with ``ldd`` of the installed plugin).  Qt 6 no longer links libxcb-xinerama.
XCB_LIBRARIES: tuple[SystemLibrary, ...] = (
    SystemLibrary("libxcb-cursor.so.0", "libxcb-cursor0", "xcb-util-cursor"),
    SystemLibrary("libxcb-icccm.so.4", "libxcb-icccm4", "xcb-util-wm"),
    SystemLibrary("libxcb-image.so.0", "libxcb-image0", "xcb-util-image"),
    SystemLibrary("libxcb-keysyms.so.1", "libxcb-keysyms1", "xcb-util-keysyms"),
    SystemLibrary("libxcb-render-util.so.0", "libxcb-render-util0", "xcb-util-renderutil"),
    SystemLibrary("libxcb-util.so.1", "libxcb-util1", "xcb-util"),
    SystemLibrary("libxkbcommon-x11.so.0", "libxkbcommon-x11-0", "libxkbcommon-x11"),
    SystemLibrary("libxkbcommon.so.0", "libxkbcommon0", "libxkbcommon"),
    SystemLibrary("libxcb-randr.so.0", "libxcb-randr0", "libxcb"),
    SystemLibrary("libxcb-shape.so.0", "libxcb-shape0", "libxcb"),
    SystemLibrary("libxcb-xkb.so.1", "libxcb-xkb1", "libxcb"),
    SystemLibrary("libxcb-shm.so.0", "libxcb-shm0", "libxcb"),
    SystemLibrary("libxcb-sync.so.1", "libxcb-sync1", "libxcb"),
    SystemLibrary("libxcb-xfixes.so.0", "libxcb-xfixes0", "libxcb"),
    SystemLibrary("libxcb-render.so.0", "libxcb-render0", "libxcb"),
    SystemLibrary("libxcb.so.1", "libxcb1", "libxcb"),
    SystemLibrary("libX11-xcb.so.1", "libx11-xcb1", "libX11-xcb"),
)


def library_loads(soname: str) -> bool:
    """Whether the dynamic loader finds ``soname`` (and what it needs) on this system."""
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def uses_xcb(env: Mapping[str, str], platform: str = sys.platform) -> bool:
    """Whether Qt will start with the xcb plugin: Linux with an X display and no other
    platform chosen (``QT_QPA_PLATFORM``) or preferred (a Wayland session, where xcb is only
    Qt's fallback)."""
    if not platform.startswith("linux"):
        return False
    chosen = env.get("QT_QPA_PLATFORM", "").strip()
    if chosen:
        return chosen.split(";")[0].split(":")[0].strip() == "xcb"
    if env.get("XDG_SESSION_TYPE") == "wayland" and env.get("WAYLAND_DISPLAY"):
        return False
    return bool(env.get("DISPLAY"))


# Qt platforms that draw without any display server.
HEADLESS_PLATFORMS = ("offscreen", "minimal", "vnc", "linuxfb", "eglfs", "minimalegl", "vkkhrdisplay")


def chosen_platform(env: Mapping[str, str]) -> str:
    """The platform ``QT_QPA_PLATFORM`` asks for first (``""`` when unset)."""
    return env.get("QT_QPA_PLATFORM", "").strip().split(";")[0].split(":")[0].strip()


def has_display(env: Mapping[str, str], platform: str = sys.platform) -> bool:
    """Whether Qt will find something to draw on: always off Linux; on Linux an X display
    (``DISPLAY``), a Wayland one (``WAYLAND_DISPLAY``), or a platform that needs none
    (``QT_QPA_PLATFORM=offscreen``)."""
    if not platform.startswith("linux"):
        return True
    chosen = chosen_platform(env)
    if chosen in HEADLESS_PLATFORMS:
        return True
    if chosen == "xcb":
        return bool(env.get("DISPLAY"))
    if chosen.startswith("wayland"):
        return bool(env.get("WAYLAND_DISPLAY"))
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


NO_DISPLAY_MESSAGE = (
    "uldl-studio: no display found (DISPLAY and WAYLAND_DISPLAY are unset): run it in a desktop "
    "session or over `ssh -X`; `uldl-studio gui RUN --screenshot FILE.png` renders without one "
    "(or set QT_QPA_PLATFORM=offscreen)")


def missing_libraries(load: Callable[[str], bool] | None = None,
                      libraries: tuple[SystemLibrary, ...] = XCB_LIBRARIES) -> list[SystemLibrary]:
    """The libraries ``load`` (default :func:`library_loads`) does not find."""
    load = load or library_loads
    return [lib for lib in libraries if not load(lib.soname)]


def missing_message(missing: list[SystemLibrary]) -> str:
    """One line: what is missing and the command that installs it."""
    names = ", ".join(lib.soname for lib in missing)
    debian = " ".join(dict.fromkeys(lib.debian for lib in missing))
    fedora = " ".join(dict.fromkeys(lib.fedora for lib in missing))
    verb = "is" if len(missing) == 1 else "are"
    return (f"uldl-studio: Qt cannot load its X11 platform plugin (xcb): {names} {verb} missing. "
            f"Install with: sudo apt-get install {debian} (Debian/Ubuntu) or "
            f"sudo dnf install {fedora} (Fedora)")


def exit_if_platform_unusable(env: Mapping[str, str] | None = None,
                              load: Callable[[str], bool] | None = None,
                              platform: str = sys.platform,
                              stream: TextIO | None = None) -> None:
    """Print one line and exit with status 2 when Qt would abort: no display, or a missing xcb
    library."""
    env = os.environ if env is None else env
    if not has_display(env, platform):
        print(NO_DISPLAY_MESSAGE, file=stream or sys.stderr)
        raise SystemExit(EXIT_STATUS)
    if not uses_xcb(env, platform):
        return
    missing = missing_libraries(load)
    if missing:
        print(missing_message(missing), file=stream or sys.stderr)
        raise SystemExit(EXIT_STATUS)
