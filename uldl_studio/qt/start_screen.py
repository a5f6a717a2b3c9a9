"""Start screen: open a dataset (format auto-detected, with a preview), a run, or the demo;
recent projects.  The dataset preview is read on a worker thread; errors are shown as text."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QComboBox, QFileDialog, QGroupBox, QHBoxLayout, QLabel, QListWidget,
    QListWidgetItem, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
    QHeaderView, QAbstractItemView,
)

from uldl_studio.core.review.frontend import ThumbnailCache
from uldl_studio.core.runs import jobs
from uldl_studio.core.table import classes_of
from uldl_studio.qt.inspector import array_to_pixmap
from uldl_studio.qt.settings import StudioSettings
from uldl_studio.qt.workers import JobRunner

FORMAT_CHOICES = ("auto", "ferplus", "rafdb", "affectnet", "fer2013", "csv", "folders", "demo")
PREVIEW_THUMBNAILS = 8


def load_preview(path: str, fmt: str = "auto", cancel=None) -> dict:
    """Detect and load a dataset; returns table, format, counts and a few thumbnails.

    Runs on a worker thread (plain Python, no widgets). Raises the core's DatasetError.
    """
    opened = jobs.open_dataset(path, fmt)
    table = opened.table
    classes = classes_of(table)
    counts = pd.crosstab(table["split"], table["label"]).reindex(columns=range(len(classes)), fill_value=0)
    counts.columns = classes
    cache = ThumbnailCache()
    rng = np.random.default_rng(0)
    rows = rng.choice(len(table), size=min(PREVIEW_THUMBNAILS, len(table)), replace=False)
    thumbs = []
    for r in sorted(rows):
        pixels = table["pixels"].iat[r] if "pixels" in table else None
        try:
            image = cache.get(str(table["path"].iat[r]), pixels if isinstance(pixels, str) else None, size=64)
        except Exception:  # noqa: BLE001 - a bad thumbnail is not a bad dataset
            continue
        thumbs.append((classes[int(table["label"].iat[r])], image.copy()))
    return {"path": path, "format": opened.format, "table": table, "counts": counts,
            "thumbnails": thumbs, "warnings": opened.warnings}


class StartScreen(QWidget):
    """Signals: ``datasetChosen(object table, dict source)``, ``runChosen(str path)``,
    ``demoChosen()``.  ``preview_path(path, fmt)`` starts a preview (also used by tests)."""

    datasetChosen = Signal(object, dict)
    runChosen = Signal(str)
    demoChosen = Signal()
    previewReady = Signal()
    previewFailed = Signal(str)

    def __init__(self, settings: StudioSettings | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings or StudioSettings()
        self.setWindowTitle("ULDL Studio")
        self._preview: dict | None = None
        self._preview_job = JobRunner(self, name="preview")

        title = QLabel("ULDL Studio")
        font = QFont(title.font())
        font.setPointSizeF(font.pointSizeF() * 2.0)
        font.setBold(True)
        title.setFont(font)
        subtitle = QLabel("Find ambiguous and mislabelled faces: train LDLVA, explore λ in "
                          "valence-arousal space, relabel, export soft labels.")
        subtitle.setWordWrap(True)

        self.format_combo = QComboBox()
        for f in FORMAT_CHOICES:
            self.format_combo.addItem(f, f)
        self.open_folder_button = QPushButton("Open dataset folder…")
        self.open_csv_button = QPushButton("Open CSV file…")
        self.open_run_button = QPushButton("Open run directory…")
        self.demo_button = QPushButton("Try the demo")
        self.demo_button.setStyleSheet("font-weight: bold; padding: 6px;")
        self.open_folder_button.clicked.connect(self._choose_folder)
        self.open_csv_button.clicked.connect(self._choose_csv)
        self.open_run_button.clicked.connect(self._choose_run)
        self.demo_button.clicked.connect(self.demoChosen)

        actions = QVBoxLayout()
        actions.addWidget(self.demo_button)
        actions.addSpacing(8)
        actions.addWidget(self.open_folder_button)
        actions.addWidget(self.open_csv_button)
        fmt_row = QHBoxLayout()
        fmt_row.addWidget(QLabel("Format"))
        fmt_row.addWidget(self.format_combo, 1)
        actions.addLayout(fmt_row)
        actions.addSpacing(8)
        actions.addWidget(self.open_run_button)
        actions.addStretch(1)

        self.recent_list = QListWidget()
        self.recent_list.itemActivated.connect(self._open_recent)
        recent_box = QGroupBox("Recent projects (double-click to open)")
        QVBoxLayout(recent_box).addWidget(self.recent_list)

        # Preview of a chosen dataset.
        self.preview_box = QGroupBox("Dataset preview")
        self.preview_summary = QLabel("Choose a dataset to see what was found.")
        self.preview_summary.setWordWrap(True)
        self.preview_error = QLabel("")
        self.preview_error.setWordWrap(True)
        self.preview_error.setStyleSheet("color: #b00020;")
        self.preview_error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.counts_table = QTableWidget()
        self.counts_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.counts_table.setMaximumHeight(150)
        self.thumbnail_row = QHBoxLayout()
        self.thumbnail_row.setSpacing(4)
        self.open_preview_button = QPushButton("Open this dataset")
        self.open_preview_button.setEnabled(False)
        self.open_preview_button.clicked.connect(self._open_previewed)
        preview_layout = QVBoxLayout(self.preview_box)
        preview_layout.addWidget(self.preview_summary)
        preview_layout.addWidget(self.preview_error)
        preview_layout.addWidget(self.counts_table)
        preview_layout.addLayout(self.thumbnail_row)
        preview_layout.addWidget(self.open_preview_button, 0, Qt.AlignmentFlag.AlignRight)
        self.counts_table.hide()

        left = QVBoxLayout()
        left.addWidget(title)
        left.addWidget(subtitle)
        left.addSpacing(12)
        left.addLayout(actions)
        right = QVBoxLayout()
        right.addWidget(self.preview_box, 3)
        right.addWidget(recent_box, 2)
        layout = QHBoxLayout(self)
        left_frame = QWidget()
        left_frame.setLayout(left)
        left_frame.setMaximumWidth(340)
        layout.addWidget(left_frame)
        layout.addLayout(right, 1)
        self.resize(980, 640)
        self.refresh_recent()

    # -- recent --------------------------------------------------------------------------
    def refresh_recent(self) -> None:
        self.recent_list.clear()
        for item in self.settings.recent_projects():
            kind = item["kind"]
            text = "demo dataset" if kind == "demo" else f"{item['path']}"
            entry = QListWidgetItem(f"[{kind}] {text}")
            entry.setData(Qt.ItemDataRole.UserRole, item)
            if kind != "demo" and not Path(item["path"]).exists():
                entry.setForeground(Qt.GlobalColor.gray)
                entry.setToolTip("not found")
            self.recent_list.addItem(entry)

    @Slot(QListWidgetItem)
    def _open_recent(self, entry: QListWidgetItem) -> None:
        item = entry.data(Qt.ItemDataRole.UserRole)
        if item["kind"] == "demo":
            self.demoChosen.emit()
        elif item["kind"] == "run":
            self.runChosen.emit(item["path"])
        else:
            self.preview_path(item["path"], item.get("format", "auto"))

    # -- choosing ------------------------------------------------------------------------
    def _start_dir(self) -> str:
        return self.settings.value("last_folder", str(Path.home()))

    @Slot()
    def _choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open dataset folder", self._start_dir())
        if path:
            self.settings.set_value("last_folder", str(Path(path).parent))
            self.preview_path(path, self.format_combo.currentData())

    @Slot()
    def _choose_csv(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open dataset CSV", self._start_dir(),
                                              "CSV files (*.csv);;All files (*)")
        if path:
            self.settings.set_value("last_folder", str(Path(path).parent))
            self.preview_path(path, self.format_combo.currentData())

    @Slot()
    def _choose_run(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open run directory", self._start_dir())
        if path:
            self.runChosen.emit(path)

    # -- preview -------------------------------------------------------------------------
    def preview_path(self, path: str, fmt: str = "auto") -> None:
        # A dataset load does not look at its cancel event: let a previous preview finish in
        # the background (its result is dropped) instead of blocking the screen on it.
        self._preview_job.detach()
        self._preview = None
        self.open_preview_button.setEnabled(False)
        self.preview_error.setText("")
        self.preview_summary.setText(f"Reading {path} …")
        self.counts_table.hide()
        self._clear_thumbnails()
        self._preview_job.start(lambda cancel: load_preview(path, fmt, cancel),
                                on_result=self._on_preview, on_error=self._on_preview_failed)

    def _clear_thumbnails(self) -> None:
        while self.thumbnail_row.count():
            item = self.thumbnail_row.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()

    @Slot(object)
    def _on_preview(self, preview: dict) -> None:
        self._preview = preview
        table, counts = preview["table"], preview["counts"]
        splits = ", ".join(f"{s}: {int(n)}" for s, n in counts.sum(axis=1).items())
        summary = (f"<b>{Path(preview['path']).name}</b> — format <b>{preview['format']}</b>, "
                   f"{len(table)} samples ({splits}), {counts.shape[1]} classes"
                   + (", valence-arousal given" if {"valence", "arousal"} <= set(table.columns)
                      and table[["valence", "arousal"]].notna().all().all() else "")
                   + (", reference distributions" if any(c.startswith("ref_") for c in table.columns) else ""))
        self.preview_summary.setText(summary)
        self.preview_error.setText("\n".join(preview["warnings"][:3]))
        self.preview_error.setStyleSheet("color: #a15c00;")
        self.counts_table.setRowCount(len(counts.index))
        self.counts_table.setColumnCount(len(counts.columns))
        self.counts_table.setHorizontalHeaderLabels(list(counts.columns))
        self.counts_table.setVerticalHeaderLabels([str(s) for s in counts.index])
        for i, split in enumerate(counts.index):
            for j, cls in enumerate(counts.columns):
                self.counts_table.setItem(i, j, QTableWidgetItem(str(int(counts.loc[split, cls]))))
        self.counts_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.counts_table.show()
        self._clear_thumbnails()
        for name, image in preview["thumbnails"]:
            tile = QLabel()
            tile.setPixmap(array_to_pixmap(image, 64))
            tile.setToolTip(name)
            self.thumbnail_row.addWidget(tile)
        self.thumbnail_row.addStretch(1)
        self.open_preview_button.setEnabled(True)
        self.previewReady.emit()

    @Slot(str)
    def _on_preview_failed(self, message: str) -> None:
        self.preview_summary.setText("Could not open this dataset.")
        self.preview_error.setStyleSheet("color: #b00020;")
        self.preview_error.setText(message)
        self.previewFailed.emit(message)

    @Slot()
    def _open_previewed(self) -> None:
        if self._preview is None:
            return
        source = {"kind": "dataset", "path": self._preview["path"], "format": self._preview["format"]}
        self.datasetChosen.emit(self._preview["table"], source)

    def closeEvent(self, event) -> None:  # noqa: N802
        if not self._preview_job.stop_and_wait(timeout_ms=2_000):
            self._preview_job.detach()  # a long load: it ends on its own, nothing is shown
        super().closeEvent(event)
