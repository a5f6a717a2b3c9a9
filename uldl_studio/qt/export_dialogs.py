"""Export dialogs: soft-label CSV of the project (all samples or the selection, edits applied)
and "predict soft labels for another dataset" with a cancellable progress dialog."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QButtonGroup, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout,
    QLabel, QLineEdit, QProgressDialog, QPushButton, QRadioButton, QVBoxLayout,
    QWidget,
)

from uldl_studio.qt.workers import Cancelled, JobRunner

FORMAT_CHOICES = ("auto", "ferplus", "rafdb", "affectnet", "fer2013", "csv", "folders")


def _path_row(edit: QLineEdit, button_text: str, browse) -> QHBoxLayout:
    row = QHBoxLayout()
    row.addWidget(edit, 1)
    button = QPushButton(button_text)
    button.clicked.connect(browse)
    row.addWidget(button)
    return row


class ExportDialog(QDialog):
    """Choose all samples / the selection and a CSV file; ``accept()`` writes it."""

    def __init__(self, project, selected_rows, default_dir: str | Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export soft labels")
        self.project = project
        self.selected_rows = np.asarray(selected_rows, dtype=np.int64)
        self.written: int | None = None
        self.all_button = QRadioButton(f"All samples ({len(project)})")
        self.selection_button = QRadioButton(f"Selection ({len(self.selected_rows)})")
        self.selection_button.setEnabled(len(self.selected_rows) > 0)
        (self.selection_button if len(self.selected_rows) else self.all_button).setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.all_button)
        group.addButton(self.selection_button)
        name = "soft_labels_selection.csv" if len(self.selected_rows) else "soft_labels.csv"
        self.path_edit = QLineEdit(str(Path(default_dir) / name))
        note = QLabel("Columns: sample_id, path, split, label (edits applied), label_name, edited, "
                      "valence, arousal, lambda, d_<class>…, p_<class>…")
        note.setWordWrap(True)
        note.setStyleSheet("color: #555;")
        self.error = QLabel("")
        self.error.setStyleSheet("color: #b00020;")
        self.error.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.all_button)
        layout.addWidget(self.selection_button)
        layout.addLayout(_path_row(self.path_edit, "Browse…", self._browse))
        layout.addWidget(note)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.resize(560, 220)

    @Slot()
    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export soft labels", self.path_edit.text(),
                                              "CSV files (*.csv)")
        if path:
            self.path_edit.setText(path)

    def accept(self) -> None:
        path = self.path_edit.text().strip()
        if not path:
            self.error.setText("Choose a file.")
            return
        rows = self.selected_rows if self.selection_button.isChecked() else None
        try:
            self.written = self.project.export(path, rows)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.error.setText(str(exc))
            return
        super().accept()


def predict_job(run, data_path: str, fmt: str, out_path: str):
    """Worker job ``job(cancel, report)``: read the dataset, predict with ``run``, write the CSV.

    Reports ``(done, total, text)`` tuples; a cancel is honoured in predict's progress callback.
    """

    def job(cancel, report):
        from uldl_studio.core.datasets import load_dataset
        from uldl_studio.core.export import write_soft_labels
        from uldl_studio.core.predict import predict

        report((0, 0, "reading the dataset"))
        table = load_dataset(data_path, fmt=fmt)
        if cancel.is_set():
            raise Cancelled()

        def progress(*args, **kwargs):
            # Called by predict between batches: the place to honour a cancel.
            if cancel.is_set():
                raise Cancelled()
            values = [a for a in args if isinstance(a, (int, float))][:2]
            if len(values) == 2:
                report((values[0], values[1], "predicting"))

        report((0, 0, "predicting"))
        out = predict(run, table, progress=progress)
        if cancel.is_set():
            raise Cancelled()
        report((1, 1, "writing the CSV"))
        write_soft_labels(out, out_path)
        return {"rows": len(out), "path": out_path}

    return job


class PredictDialog(QDialog):
    """Choose a dataset and an output CSV; runs the prediction on a worker with a
    cancellable QProgressDialog.  ``finishedWith(str outcome, object info)``."""

    finishedWith = Signal(str, object)

    def __init__(self, run, default_dir: str | Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Predict soft labels for another dataset")
        self.run = run
        self.runner = JobRunner(self, name="predict")
        self.progress: QProgressDialog | None = None
        self.outcome: str | None = None
        self.data_edit = QLineEdit()
        self.format_combo = QComboBox()
        for f in FORMAT_CHOICES:
            self.format_combo.addItem(f, f)
        self.out_edit = QLineEdit(str(Path(default_dir) / "predicted_soft_labels.csv"))
        self.error = QLabel("")
        self.error.setStyleSheet("color: #b00020;")
        self.error.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Dataset", _path_row(self.data_edit, "Folder…", self._browse_data))
        form.addRow("Format", self.format_combo)
        form.addRow("Output CSV", _path_row(self.out_edit, "Browse…", self._browse_out))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Predict")
        buttons.accepted.connect(self.start)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Model: {run.path}"))
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.resize(620, 200)

    @Slot()
    def _browse_data(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Dataset folder", self.data_edit.text())
        if path:
            self.data_edit.setText(path)

    @Slot()
    def _browse_out(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Output CSV", self.out_edit.text(), "CSV files (*.csv)")
        if path:
            self.out_edit.setText(path)

    @Slot()
    def start(self) -> None:
        data, out = self.data_edit.text().strip(), self.out_edit.text().strip()
        if not data or not out:
            self.error.setText("Choose a dataset and an output file.")
            return
        self.error.setText("")
        self.progress = QProgressDialog("Predicting soft labels…", "Cancel", 0, 0, self)
        self.progress.setWindowTitle("Predict")
        self.progress.setWindowModality(Qt.WindowModality.WindowModal)
        self.progress.setMinimumDuration(0)
        self.progress.setAutoClose(False)
        self.progress.setAutoReset(False)
        self.progress.canceled.connect(self.cancel)
        self.runner.start(predict_job(self.run, data, self.format_combo.currentData(), out), with_report=True,
                          on_yield=self._on_progress, on_result=self._on_done, on_error=self._on_failed,
                          on_cancelled=self._on_cancelled)
        self.progress.show()

    @Slot()
    def cancel(self) -> None:
        if self.runner.is_running:
            self.runner.cancel()
            if self.progress is not None:
                self.progress.setLabelText("Cancelling…")

    @Slot(object)
    def _on_progress(self, item) -> None:
        done, total, text = item
        progress = self.progress  # setValue of a modal progress dialog processes events
        if progress is None:
            return
        progress.setLabelText(f"{text}…")
        if total:
            progress.setRange(0, int(total))
            progress.setValue(int(done))

    def _end(self, outcome: str, info) -> None:
        self.outcome = outcome
        if self.progress is not None:
            self.progress.canceled.disconnect(self.cancel)
            self.progress.close()
            self.progress = None
        self.finishedWith.emit(outcome, info)

    @Slot(object)
    def _on_done(self, info) -> None:
        self._end("done", info)
        self.accept()

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._end("failed", message)
        self.error.setText(message)

    @Slot()
    def _on_cancelled(self) -> None:
        self._end("cancelled", None)
        self.error.setText("Cancelled; nothing was written.")

    def reject(self) -> None:
        if not self.runner.stop_and_wait():
            self.runner.detach()  # it ends on its own; nothing more is shown
        super().reject()

    def closeEvent(self, event) -> None:  # noqa: N802
        if not self.runner.stop_and_wait():
            self.runner.detach()  # it ends on its own; nothing more is shown
        super().closeEvent(event)
