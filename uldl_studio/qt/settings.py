"""Persistent GUI settings (QSettings, INI format): recent projects, window layout, panel values.

Everything goes through :class:`StudioSettings` so that tests can redirect the storage with
:func:`use_settings_dir` (or the ``ULDL_STUDIO_SETTINGS_DIR`` environment variable).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QRect, QSettings
from PySide6.QtGui import QGuiApplication

MIN_WINDOW_SIZE = (860, 600)  # a main window smaller than this squeezes the map to nothing
#: a first window takes at most this share of the screen's available width and height, so
#: the window manager's title bar and the window's status bar are on screen too
FIRST_WINDOW_SHARE = (0.94, 0.9)
ORGANISATION = "ULDL Studio"
APPLICATION = "ULDL Studio"
MAX_RECENT = 10


def use_settings_dir(directory: str | os.PathLike) -> None:
    """Store all settings as INI files under ``directory`` (tests, screenshots, portable use)."""
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(directory))


if os.environ.get("ULDL_STUDIO_SETTINGS_DIR"):
    use_settings_dir(os.environ["ULDL_STUDIO_SETTINGS_DIR"])


class StudioSettings:
    """Typed access to the application's QSettings."""

    def __init__(self) -> None:
        self.qsettings = QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope,
                                   ORGANISATION, APPLICATION)

    # -- recent projects -----------------------------------------------------------------
    def recent_projects(self) -> list[dict[str, str]]:
        """Most recent first: dicts with ``path``, ``kind`` ("dataset" | "run" | "demo"), ``format``."""
        raw = self.qsettings.value("recent/projects", "[]")
        try:
            items = json.loads(raw if isinstance(raw, str) else "[]")
        except json.JSONDecodeError:
            return []
        return [i for i in items if isinstance(i, dict) and "path" in i and "kind" in i]

    def add_recent(self, path: str, kind: str, fmt: str = "auto") -> None:
        if kind != "demo":
            path = str(Path(path).resolve())
        items = [i for i in self.recent_projects() if not (i["path"] == path and i["kind"] == kind)]
        items.insert(0, {"path": path, "kind": kind, "format": fmt})
        self.qsettings.setValue("recent/projects", json.dumps(items[:MAX_RECENT]))
        self.qsettings.sync()

    # -- window layout -------------------------------------------------------------------
    def save_window(self, name: str, geometry: QByteArray, state: QByteArray | None = None) -> None:
        self.qsettings.setValue(f"{name}/geometry", geometry)
        if state is not None:
            self.qsettings.setValue(f"{name}/state", state)

    def window_geometry(self, name: str) -> QByteArray | None:
        value = self.qsettings.value(f"{name}/geometry")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def window_state(self, name: str) -> QByteArray | None:
        value = self.qsettings.value(f"{name}/state")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    # -- plain values (panel settings, last folders) -------------------------------------
    def value(self, key: str, default: Any = None) -> Any:
        raw = self.qsettings.value(f"values/{key}")
        if raw is None:
            return default
        try:
            return json.loads(raw)
        except (TypeError, json.JSONDecodeError):
            return default

    def set_value(self, key: str, value: Any) -> None:
        self.qsettings.setValue(f"values/{key}", json.dumps(value))

    # -- training panel ------------------------------------------------------------------
    def training_values(self) -> dict[str, Any]:
        """The training panel's fields as last saved (``{}`` when none were)."""
        values = self.value("training", {})
        return dict(values) if isinstance(values, dict) else {}

    def set_training_values(self, values: dict[str, Any]) -> None:
        """Save the training panel's fields (all of them: the panel decides which)."""
        self.set_value("training", dict(values))

    # -- predict dialog ------------------------------------------------------------------
    def predict_values(self) -> dict[str, Any]:
        """The predict dialog's inputs of its last run (``{}`` when none were saved): ``data``,
        ``format``, ``faces``, ``tta``, ``out_dir``, ``out_name``."""
        values = self.value("predict", {})
        return dict(values) if isinstance(values, dict) else {}

    def set_predict_values(self, values: dict[str, Any]) -> None:
        """Save the predict dialog's inputs (all of them: the dialog decides which)."""
        self.set_value("predict", dict(values))
        self.qsettings.sync()

    # -- annotator -----------------------------------------------------------------------
    def annotator_settings(self) -> dict[str, Any]:
        """The name the user annotates under (``name``, None until given), ``blind`` (blind
        mode on) and ``asked`` (the name was asked for once)."""
        values = self.value("annotator", {})
        values = dict(values) if isinstance(values, dict) else {}
        name = values.get("name")
        return {"name": name if isinstance(name, str) and name else None,
                "blind": bool(values.get("blind", False)), "asked": bool(values.get("asked", False))}

    def set_annotator_settings(self, **changes: Any) -> None:
        """Change some of ``annotator_settings`` (saved at once)."""
        values = self.annotator_settings()
        values.update({k: v for k, v in changes.items() if k in values})
        self.set_value("annotator", values)
        self.qsettings.sync()

    def sync(self) -> None:
        self.qsettings.sync()


# ---------------------------------------------------------------------- window geometry
def _xywh(rect) -> tuple[int, int, int, int]:
    if isinstance(rect, QRect):
        return rect.x(), rect.y(), rect.width(), rect.height()
    x, y, w, h = rect
    return int(x), int(y), int(w), int(h)


def _overlap(a, b) -> int:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0, w) * max(0, h)


def _distance2(point, rect) -> int:
    dx = max(rect[0] - point[0], 0, point[0] - (rect[0] + rect[2]))
    dy = max(rect[1] - point[1], 0, point[1] - (rect[1] + rect[3]))
    return dx * dx + dy * dy


def clamp_geometry(rect, available, min_size: tuple[int, int] = MIN_WINDOW_SIZE,
                   frame: tuple[int, int, int, int] = (0, 0, 0, 0)) -> QRect:
    """A restored window rectangle kept on a screen and at a usable size.

    ``rect``: the window's geometry (x, y, w, h or a QRect; the client area when ``frame``
    gives the window frame's left, top, right, bottom extents).  ``available``: the available
    geometry of one screen or a sequence of them (the first is the primary).  The window goes
    to the screen it overlaps most (else the nearest one), is made at least ``min_size`` (or
    the screen, whichever is smaller) and at most the screen, and is moved so that it, frame
    included, lies inside that screen.  Pure: plain rectangles in, a QRect out.
    """
    screens = [available] if isinstance(available, QRect) or (
        len(available) == 4 and all(isinstance(v, (int, float)) for v in available)) else list(available)
    screens = [_xywh(s) for s in screens]
    if not screens:
        raise ValueError("no screen geometry given")
    left, top, right, bottom = (int(v) for v in frame)
    x, y, w, h = _xywh(rect)
    outer = (x - left, y - top, w + left + right, h + top + bottom)
    centre = (outer[0] + outer[2] // 2, outer[1] + outer[3] // 2)
    screen = max(screens, key=lambda s: (_overlap(outer, s), -_distance2(centre, s)))
    if _overlap(outer, screen) == 0:
        screen = min(screens, key=lambda s: _distance2(centre, s))
    sx, sy, sw, sh = screen
    room_w, room_h = max(1, sw - left - right), max(1, sh - top - bottom)
    w = max(min(w, room_w), min(int(min_size[0]), room_w))
    h = max(min(h, room_h), min(int(min_size[1]), room_h))
    x = min(max(x, sx + left), sx + sw - right - w)
    y = min(max(y, sy + top), sy + sh - bottom - h)
    return QRect(x, y, w, h)


def fit_on_screen(widget, min_size: tuple[int, int] = MIN_WINDOW_SIZE) -> QRect:
    """Keep a shown window, its frame (title bar) included, inside the screen it is on; a
    maximised or full-screen window is left to the window manager."""
    if widget.isMaximized() or widget.isFullScreen():
        return widget.geometry()
    screens = [s.availableGeometry() for s in QGuiApplication.screens()]
    if not screens:
        return widget.geometry()
    inner, outer = widget.geometry(), widget.frameGeometry()
    frame = (inner.left() - outer.left(), inner.top() - outer.top(),
             outer.right() - inner.right(), outer.bottom() - inner.bottom())
    target = clamp_geometry(inner, screens, min_size, frame)
    if target != inner:
        widget.setGeometry(target)
    return target


def restore_geometry(widget, geometry: QByteArray | None, default_size: tuple[int, int] = (1600, 1000),
                     min_size: tuple[int, int] = MIN_WINDOW_SIZE) -> QRect:
    """``widget.restoreGeometry(geometry)`` (or ``default_size`` without one), then
    :func:`clamp_geometry` against the screens' available geometry; a maximised or full-screen
    window is left to the window manager.  Returns the geometry it ends with."""
    screens = [s.availableGeometry() for s in QGuiApplication.screens()]
    if geometry is None or not widget.restoreGeometry(geometry):
        if screens:  # centred on the primary screen, with room for the title bar
            room = screens[0]
            w = min(default_size[0], int(room.width() * FIRST_WINDOW_SHARE[0]))
            h = min(default_size[1], int(room.height() * FIRST_WINDOW_SHARE[1]))
            widget.setGeometry(QRect(room.x() + (room.width() - w) // 2, room.y() + (room.height() - h) // 2, w, h))
        else:
            widget.resize(*default_size)
    return fit_on_screen(widget, min_size)
