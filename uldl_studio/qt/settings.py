"""Persistent GUI settings (QSettings, INI format): recent projects, window layout, panel values.

Everything goes through :class:`StudioSettings` so that tests can redirect the storage with
:func:`use_settings_dir` (or the ``ULDL_STUDIO_SETTINGS_DIR`` environment variable).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

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

    def clear_recent(self) -> None:
        self.qsettings.remove("recent/projects")

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

    def sync(self) -> None:
        self.qsettings.sync()
