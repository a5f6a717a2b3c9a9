"""Help → About: the application, its version, the libraries it runs on and the open run.

``show_about(parent, run=None)`` opens the dialog (window-modal, returns at once) and returns
it; ``run`` is a :class:`~uldl_studio.core.engine.run.Run` or a run directory.
"""
from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import PySide6
from PySide6.QtCore import Qt, qVersion
from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout, QLabel, QVBoxLayout, QWidget,
)

from uldl_studio import __version__
from uldl_studio.core.review.frontend import Run
from uldl_studio.qt.icons import icon_pixmap

APP_NAME = "ULDL Studio"
DESCRIPTION = ("Uncertainty-aware label distributions for facial-expression datasets: train LDLVA, "
               "explore λ in valence-arousal space, relabel, export soft labels.")
LICENCE = "MIT licence: free to use, copy, modify and distribute, with no warranty."
METHOD_NAMES = {"ldlva": "LDLVA", "ce": "CE (baseline)"}


def package_version(name: str) -> str:
    """An installed distribution's version without importing it (torch takes seconds)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def library_versions() -> dict[str, str]:
    return {"Qt": qVersion(), "PySide6": PySide6.__version__, "PyTorch": package_version("torch"),
            "Python": platform.python_version()}


def run_summary(run: Any) -> tuple[str, str] | None:
    """(path, method) of a Run or a run directory; None when there is no run.  A directory that
    cannot be read still shows its path."""
    if run is None:
        return None
    if isinstance(run, (str, Path)):
        try:
            run = Run.open(run)
        except Exception as exc:  # noqa: BLE001 - the dialog shows what it can
            return str(Path(run)), f"unreadable ({exc})"
    method = getattr(getattr(run, "config", None), "method", "") or ""
    return str(run.path), METHOD_NAMES.get(method, method or "unknown")


class AboutDialog(QDialog):
    def __init__(self, parent: QWidget | None = None, run: Any = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"About {APP_NAME}")
        icon = QLabel()
        icon.setPixmap(icon_pixmap(256).scaled(96, 96, Qt.AspectRatioMode.KeepAspectRatio,
                                               Qt.TransformationMode.SmoothTransformation))
        icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        title = QLabel(f"<span style='font-size:18pt; font-weight:600'>{APP_NAME}</span>"
                       f"<br>version {__version__}")
        title.setObjectName("aboutTitle")
        description = QLabel(DESCRIPTION)
        description.setWordWrap(True)

        versions = QFormLayout()
        versions.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        for name, version in library_versions().items():
            versions.addRow(f"{name}:", QLabel(version))
        self.run_label = QLabel()
        self.run_label.setObjectName("aboutRun")
        self.run_label.setWordWrap(True)
        self.run_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.method_label = QLabel()
        self.method_label.setObjectName("aboutMethod")
        summary = run_summary(run)
        self.run_label.setText("no run open" if summary is None else summary[0])
        versions.addRow("Run:", self.run_label)
        if summary is not None:
            self.method_label.setText(summary[1])
            versions.addRow("Method:", self.method_label)
        licence = QLabel(LICENCE)
        licence.setWordWrap(True)
        licence.setStyleSheet("color: #555;")

        text = QVBoxLayout()
        text.addWidget(title)
        text.addWidget(description)
        text.addSpacing(6)
        text.addLayout(versions)
        text.addSpacing(6)
        text.addWidget(licence)
        text.addStretch(1)
        top = QHBoxLayout()
        top.addWidget(icon)
        top.addSpacing(12)
        top.addLayout(text, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(buttons)
        self.setMinimumWidth(560)

    def text(self) -> str:
        """Everything the dialog says, as plain text (tests, copying)."""
        return "\n".join(label.text() for label in self.findChildren(QLabel) if label.text())


def show_about(parent: QWidget | None = None, run: Any = None) -> AboutDialog:
    """Open the About dialog over ``parent`` (window-modal, non-blocking); returns it."""
    dialog = AboutDialog(parent, run)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.open()
    return dialog
