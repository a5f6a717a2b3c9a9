"""Run → Versions: every version of the open run (epochs, valid accuracy, date, edits), to
open one or delete one. The versions themselves are ``core.versions``."""
from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView, QDialog, QHBoxLayout, QHeaderView, QLabel, QMessageBox, QPushButton, QTableWidget,
    QTableWidgetItem, QVBoxLayout, QWidget,
)

from uldl_studio.core.review.frontend import versions

COLUMNS = ("version", "epochs", "valid acc", "created (UTC)", "edits when trained", "from", "state")


def version_cells(info: versions.VersionInfo) -> list[str]:
    """One table row of ``info``, in ``COLUMNS`` order."""
    state = ", ".join(w for w, on in (("current", info.current), ("incomplete", not info.complete)) if on)
    edits = "–" if info.edits is None else f"{info.edits}" + (f" ({info.unsure} unsure)" if info.unsure else "")
    return [info.name, f"{info.epochs_done}/{info.epochs_planned}",
            "–" if info.valid_acc is None else f"{info.valid_acc:.3f}",
            (info.created or "")[:16].replace("T", " ") or "–", edits, info.parent or "–", state or "–"]


class VersionsDialog(QDialog):
    """``openRequested(str run, str version)``: the user asked to open a version of the run."""

    openRequested = Signal(str, str)

    def __init__(self, run, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("versionsDialog")
        self.root = run.root
        self.shown_version = run.version
        self.setWindowTitle(f"Versions of {self.root.name}")
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.cellDoubleClicked.connect(lambda row, _col: self.open_selected())
        self.open_button = QPushButton("Open")
        self.open_button.clicked.connect(self.open_selected)
        self.delete_button = QPushButton("Delete…")
        self.delete_button.clicked.connect(self.delete_selected)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.delete_button)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.note)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        #: tests answer the deletion question here
        self.confirm_delete = self._ask_delete
        self.refresh()
        self.resize(720, 300)

    def refresh(self) -> None:
        self.infos = versions.list_versions(self.root)
        self.table.setRowCount(len(self.infos))
        for r, info in enumerate(self.infos):
            for c, text in enumerate(version_cells(info)):
                item = QTableWidgetItem(text)
                if info.name == self.shown_version:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(r, c, item)
        current = next((i.name for i in self.infos if i.current), "v1")
        self.note.setText(f"{self.root} · {len(self.infos)} version(s); {current} opens by default, "
                          f"{self.shown_version} (bold) is shown. Training again writes a new version; "
                          "an unfinished one stays listed and can be opened and continued.")
        shown = next((r for r, i in enumerate(self.infos) if i.name == self.shown_version), 0)
        self.table.selectRow(shown)

    def selected(self) -> versions.VersionInfo | None:
        rows = self.table.selectionModel().selectedRows()
        return self.infos[rows[0].row()] if rows else None

    @Slot()
    def open_selected(self) -> None:
        info = self.selected()
        if info is not None:
            self.openRequested.emit(str(self.root), info.name)
            self.close()

    def _ask_delete(self, info: versions.VersionInfo) -> bool:
        answer = QMessageBox.question(
            self, "Delete version", f"Delete {info.name} ({info.epochs_done} epochs) and its files? "
            "The annotator's edits are kept; they belong to the run.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    @Slot()
    def delete_selected(self) -> None:
        info = self.selected()
        if info is None:
            return
        if info.name == self.shown_version:
            QMessageBox.information(self, "Delete version", f"{info.name} is open in the window; open another "
                                    "version first.")
            return
        if not self.confirm_delete(info):
            return
        try:
            versions.delete_version(self.root, info.name)
        except Exception as exc:  # noqa: BLE001 - one line to the user, nothing deleted
            QMessageBox.warning(self, "Delete version", str(exc))
            return
        self.refresh()


__all__ = ["VersionsDialog", "version_cells", "COLUMNS"]
