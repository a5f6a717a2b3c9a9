"""Help → Keyboard shortcuts: every key and mouse gesture of the main window on one sheet."""
from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout, QWidget


def shortcut_rows(n_classes: int) -> list[tuple[str, str, str]]:
    """(section, keys, what they do), in the order the sheet shows them."""
    m = max(1, min(int(n_classes), 9))
    return [
        ("Review", f"1 … {m}", "give the shown sample class 1 … " + str(m) + " (the inspector shows which)"),
        ("Review", "Enter", "accept the shown label (reviewed) and go to the next unreviewed sample of the queue"),
        ("Review", "→ / ←", "next / previous sample of the review queue (the grid's order)"),
        ("Review", "Space", "toggle “unsure” on the shown sample"),
        ("Review", "Ctrl+Z / Ctrl+Shift+Z", "undo / redo the last edit (the status bar says which)"),
        ("Selection", f"Ctrl+1 … Ctrl+{m}", "relabel the whole selection (one undoable edit)"),
        ("Selection", "Ctrl+R", "relabel the selection, choosing the class in a dialog"),
        ("Selection", "Shift+Space", "mark the selection unsure (or clear it)"),
        ("Map", "drag", "select a box (or draw a lasso in Lasso mode)"),
        ("Map", "Shift+drag", "add to the selection"),
        ("Map", "Ctrl+Shift+drag", "remove from the selection (or press Subtract, then drag)"),
        ("Map", "Alt+drag", "remove too, where the window manager does not take Alt+drag"),
        ("Map", "wheel / right-drag", "zoom / pan"),
        ("Window", "Ctrl+O / Ctrl+Shift+O", "open a dataset folder or CSV / a run"),
        ("Window", "Ctrl+E", "export soft labels"),
        ("Window", "F1", "this sheet"),
        ("Window", "Ctrl+Q", "quit (asks first while training runs)"),
    ]


def shortcuts_html(n_classes: int) -> str:
    rows, section = [], None
    for group, keys, text in shortcut_rows(n_classes):
        if group != section:
            section = group
            rows.append(f"<tr><td colspan=2 style='padding-top:8px'><b>{group}</b></td></tr>")
        rows.append(f"<tr><td style='padding-right:14px; white-space:nowrap'><code>{keys}</code></td>"
                    f"<td>{text}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def show_shortcuts(parent: QWidget | None, n_classes: int) -> QDialog:
    """Open the sheet (non-modal) and return it."""
    dialog = QDialog(parent)
    dialog.setObjectName("shortcutsDialog")
    dialog.setWindowTitle("Keyboard shortcuts")
    layout = QVBoxLayout(dialog)
    sheet = QLabel(shortcuts_html(n_classes))
    sheet.setWordWrap(True)
    layout.addWidget(sheet)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    buttons.rejected.connect(dialog.close)
    layout.addWidget(buttons)
    dialog.resize(560, dialog.sizeHint().height())
    dialog.show()
    return dialog
