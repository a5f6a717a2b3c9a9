"""Export dialogs: soft-label CSV of the open run (all samples or the selection, edits applied)
and "predict soft labels for other images" (any folder, CSV of paths, image or dataset; faces
and TTA options) with a cancellable progress dialog."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QButtonGroup, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout,
    QLabel, QLineEdit, QProgressDialog, QPushButton, QRadioButton, QVBoxLayout,
    QWidget,
)

from uldl_studio.core.runs.jobs import predict_job
from uldl_studio.core.review.frontend import IMAGE_EXTENSIONS, PredictOptions, soft_label_columns
from uldl_studio.qt.settings import StudioSettings
from uldl_studio.qt.workers import JobRunner

FORMAT_CHOICES = ("auto", "images", "ferplus", "rafdb", "affectnet", "fer2013", "csv", "folders")


def _path_row(edit: QLineEdit, button_text: str, browse) -> QHBoxLayout:
    row = QHBoxLayout()
    row.addWidget(edit, 1)
    button = QPushButton(button_text)
    button.clicked.connect(browse)
    row.addWidget(button)
    return row


class ExportDialog(QDialog):
    """Choose all samples / the selection and a CSV file; ``accept()`` writes it."""

    def __init__(self, session, selected_rows, default_dir: str | Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export soft labels")
        self.session = session
        self.selected_rows = session.dataset_rows(selected_rows)  # predicted rows are not exported
        self.written: int | None = None
        self.all_button = QRadioButton(f"All samples ({session.dataset_size})")
        self.selection_button = QRadioButton(f"Selection ({len(self.selected_rows)})")
        self.selection_button.setEnabled(len(self.selected_rows) > 0)
        (self.selection_button if len(self.selected_rows) else self.all_button).setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.all_button)
        group.addButton(self.selection_button)
        name = "soft_labels_selection.csv" if len(self.selected_rows) else "soft_labels.csv"
        self.path_edit = QLineEdit(str(Path(default_dir) / name))
        classes = session.classes
        distributions = {f"{prefix}_{c}" for prefix in ("d", "p") for c in classes}
        columns = [c for c in soft_label_columns(classes) if c not in distributions] if classes else []
        columns += ["d_<class>…", "p_<class>…"]
        note = QLabel("Columns: " + ", ".join(columns) + ". The soft label d of a relabelled sample is its new "
                      "label; an unsure one keeps at most half on its label; original_label is the dataset's. "
                      "Where people voted, the file adds votes_<class>…, n_voters and vote_agreement, d is "
                      "the combined label of every sample with two or more votes, and the annotators' "
                      "reliabilities go to FILE.reliability.json beside it.")
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
            self.written = self.session.export(path, rows)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.error.setText(str(exc))
            return
        super().accept()


def prediction_job(run, data_path: str, fmt: str, out_path: str, *, faces: str = "off", tta: bool = False,
                   adapt: tuple = (), chunk_size: int = 256):
    """Worker job ``job(cancel)``: ``core.runs.jobs.predict_job`` with the dialog's choices; its
    Progress records are yielded, and it returns the info dict that ``PredictDialog.finishedWith``
    carries."""

    def job(cancel):
        options = PredictOptions(faces=faces, tta=tta, adapt=tuple(adapt), chunk_size=chunk_size)
        result = yield from predict_job(run, data_path, out_path, options, fmt=fmt, cancel=cancel)
        summary = result.summary
        return {"rows": len(result.table), "path": out_path, "table": result.table,
                "summary": summary.to_dict(), "text": "\n".join(summary.lines())}

    return job


FACE_CHOICES = (("off", "whole images"), ("auto", "auto: find faces in large images"),
                ("detect", "detect: one row per face"))
PREDICT_OUT_NAME = "predicted_soft_labels.csv"


def unused_path(folder: str | Path, name: str) -> Path:
    """``folder/name``, or ``folder/stem-2.suffix``, ``-3``… : the first that does not exist yet."""
    folder, name = Path(folder), Path(name)
    path, n = folder / name, 2
    while path.exists():
        path, n = folder / f"{name.stem}-{n}{name.suffix}", n + 1
    return path


def _settings_for(parent, settings):
    """The settings the dialog remembers its inputs in: given ones, else the parent window's
    (``parent.settings``), else the application's."""
    if settings is not None:
        return settings
    found = getattr(parent, "settings", None)
    return found if isinstance(found, StudioSettings) else StudioSettings()


class PredictDialog(QDialog):
    """Choose images (a folder, a CSV of paths, one image or any dataset), the face and TTA options
    and an output file; runs the prediction on a worker with a cancellable QProgressDialog and
    shows its summary. ``finishedWith(str outcome, object info)``: outcome ``done`` (info: ``rows``,
    ``path``, ``table`` = the predicted rows as a DataFrame, ``summary`` dict, ``text``),
    ``failed`` (the message) or ``cancelled`` (None).

    The inputs of the last prediction started (images, format, faces, TTA, the output's folder
    and name) are kept in the settings and filled in the next time the dialog opens; a path
    that no longer exists is left out, and the output gets a name not used yet in its folder,
    so the last result is not overwritten."""

    finishedWith = Signal(str, object)

    def __init__(self, run, default_dir: str | Path, parent: QWidget | None = None, *,
                 settings=None) -> None:
        super().__init__(parent)
        self.settings = _settings_for(parent, settings)
        self.setWindowTitle("Predict soft labels for other images")
        self.run = run
        self.runner = JobRunner(self, name="predict")
        self.progress: QProgressDialog | None = None
        self.outcome: str | None = None
        self.info: dict | None = None
        self.chunk_size = 256  # images decoded and predicted between two cancel checks of a chunk's end
        self.data_edit = QLineEdit()
        self.data_edit.setPlaceholderText("a folder of images, a CSV with a path column, an image, or a dataset")
        self.format_combo = QComboBox()
        for f in FORMAT_CHOICES:
            self.format_combo.addItem(f, f)
        self.faces_combo = QComboBox()
        for value, text in FACE_CHOICES:
            self.faces_combo.addItem(text, value)
        self.tta_check = QCheckBox("Average over each image and its mirror image (TTA)")
        self.priors_check = QCheckBox("Adapt to the collection's class priors")
        self.priors_check.setToolTip("estimate how often each class occurs in these images (calibrated on the "
                                     "run's valid split) and re-weight the predictions to it; left as it is "
                                     "when the estimate is unstable. For a collection whose class mix differs "
                                     "from the training data: on a similar one it can cost accuracy")
        self.bn_check = QCheckBox("Adapt the BatchNorm statistics to the collection (AdaBN)")
        self.bn_check.setToolTip("re-estimate the network's normalisation on these images, in memory only; "
                                 "the run on disk is never changed")
        self.out_edit = QLineEdit()
        self.error = QLabel("")
        self.error.setStyleSheet("color: #b00020;")
        self.error.setWordWrap(True)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        data_row = _path_row(self.data_edit, "Folder…", self._browse_data)
        self.file_button = QPushButton("File…")
        self.file_button.clicked.connect(self._browse_file)
        data_row.addWidget(self.file_button)
        form = QFormLayout()
        form.addRow("Images", data_row)
        form.addRow("Format", self.format_combo)
        form.addRow("Faces", self.faces_combo)
        form.addRow("", self.tta_check)
        form.addRow("", self.priors_check)
        form.addRow("", self.bn_check)
        form.addRow("Output CSV", _path_row(self.out_edit, "Browse…", self._browse_out))
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.predict_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.predict_button.setText("Predict")
        self.close_button = self.buttons.button(QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.start)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Model: {run.path}"))
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(self.summary)
        layout.addWidget(self.buttons)
        self.resize(680, 280)
        self._restore_inputs(default_dir)

    def _restore_inputs(self, default_dir: str | Path) -> None:
        saved = self.settings.predict_values()
        data = saved.get("data")
        if isinstance(data, str) and data and Path(data).exists():
            self.data_edit.setText(data)
        for combo, key in ((self.format_combo, "format"), (self.faces_combo, "faces")):
            index = combo.findData(saved.get(key))
            if isinstance(saved.get(key), str) and index >= 0:
                combo.setCurrentIndex(index)
        self.tta_check.setChecked(saved.get("tta") is True)
        self.priors_check.setChecked(saved.get("adapt_priors") is True)
        self.bn_check.setChecked(saved.get("adapt_bn") is True)
        out_dir = saved.get("out_dir")
        folder = out_dir if isinstance(out_dir, str) and out_dir and Path(out_dir).is_dir() else default_dir
        name = saved.get("out_name")
        name = name if isinstance(name, str) and name and Path(name).name == name else PREDICT_OUT_NAME
        self.out_edit.setText(str(unused_path(folder, name)))

    def _save_inputs(self, data: str, out: str) -> None:
        out_path = Path(out).expanduser()
        self.settings.set_predict_values({
            "data": str(Path(data).expanduser().absolute()),
            "format": self.format_combo.currentData(),
            "faces": self.faces_combo.currentData(),
            "tta": self.tta_check.isChecked(),
            "adapt_priors": self.priors_check.isChecked(),
            "adapt_bn": self.bn_check.isChecked(),
            "out_dir": str(out_path.absolute().parent),
            "out_name": out_path.name,
        })

    @Slot()
    def _browse_data(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder of images", self.data_edit.text())
        if path:
            self.data_edit.setText(path)

    @Slot()
    def _browse_file(self) -> None:
        images = " ".join(f"*{e}" for e in IMAGE_EXTENSIONS)
        path, _ = QFileDialog.getOpenFileName(self, "An image or a CSV of image paths", self.data_edit.text(),
                                              f"Images or CSV ({images} *.csv);;All files (*)")
        if path:
            self.data_edit.setText(path)

    @Slot()
    def _browse_out(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Output CSV", self.out_edit.text(), "CSV files (*.csv)")
        if path:
            self.out_edit.setText(path)

    @Slot()
    def start(self) -> None:
        if self.runner.is_running:
            return
        data, out = self.data_edit.text().strip(), self.out_edit.text().strip()
        if not data or not out:
            self.error.setText("Choose the images and an output file.")
            return
        self.error.setText("")
        self.summary.setText("")
        self._save_inputs(data, out)
        self.progress = QProgressDialog("Predicting soft labels…", "Cancel", 0, 0, self)
        self.progress.setWindowTitle("Predict")
        self.progress.setWindowModality(Qt.WindowModality.WindowModal)
        self.progress.setMinimumDuration(0)
        self.progress.setAutoClose(False)
        self.progress.setAutoReset(False)
        self.progress.canceled.connect(self.cancel)
        job = prediction_job(self.run, data, self.format_combo.currentData(), out,
                             faces=self.faces_combo.currentData(), tta=self.tta_check.isChecked(),
                             adapt=self.adapt(), chunk_size=self.chunk_size)
        self.runner.start(job, on_yield=self._on_progress, on_result=self._on_done,
                          on_error=self._on_failed, on_cancelled=self._on_cancelled)
        self.progress.show()

    def adapt(self) -> tuple[str, ...]:
        """The corrections ticked, in the order ``core.predict`` applies them."""
        return tuple(m for m, box in (("bn", self.bn_check), ("priors", self.priors_check)) if box.isChecked())

    @Slot()
    def cancel(self) -> None:
        if self.runner.is_running:
            self.runner.cancel()
            if self.progress is not None:
                self.progress.setLabelText("Cancelling…")

    @Slot(object)
    def _on_progress(self, item) -> None:
        done, total, text = item.batch, item.batches, item.message
        progress = self.progress  # setValue of a modal progress dialog processes events
        if progress is None or self.runner.cancel_requested:
            return
        progress.setLabelText(f"{text}… {done} of {total} images" if total else f"{text}…")
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
        self.info = info
        self.summary.setText(f"{info['text']}\nWrote {info['rows']} rows to {info['path']}")
        self.close_button.setText("Close")
        self._end("done", info)

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
