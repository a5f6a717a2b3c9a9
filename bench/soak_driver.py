"""The kill soak's app (``bench/kill_soak.py``): the GUI on a run, with a key driver.

    python bench/soak_driver.py RUN ACK_LOG [--seed N] [--interval-ms MS]

starts the main window on RUN as ``uldl-studio gui RUN`` does (same window, settings and
loading) with a :class:`SoakDriver` attached. Once the window has loaded its project, a timer
sends real key events to the window, as an annotator would: number keys relabel the current
sample, Space toggles "unsure", Ctrl+Z undoes, Ctrl+Shift+Z redoes, ←/→ move. After each key
that changed the journal, the driver reads what the window now shows for the affected samples
(``window.session.table``) and appends one line to ACK_LOG, written with one ``os.write`` and
fsync-ed:

    {"ack": SEQ, "op": ..., "key": ..., "ids": [...], "shown": {id: [label, unsure]}, "pid": PID}

SEQ is the journal's sequence number of that edit. When the project is loaded, a first line
``{"ready": PID, "seq": ..., "ops": ..., "digest": ...}`` says what the window reopened with
(``digest``: SHA-1 of every row's ``sample_id:label:unsure`` in table order, see
:func:`state_digest`); a project that fails to load writes ``{"failed": PID, "message": ...}``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QApplication

K = Qt.Key
CTRL = Qt.KeyboardModifier.ControlModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier
NONE = Qt.KeyboardModifier.NoModifier


def state_digest(sample_ids, labels, unsure) -> str:
    """SHA-1 of ``sample_id:label:unsure`` per row, in order (the soak computes it from the journal)."""
    digest = hashlib.sha1()
    for sid, label, flag in zip(sample_ids, labels, unsure):
        digest.update(f"{sid}:{int(label)}:{int(bool(flag))}\n".encode("utf-8"))
    return digest.hexdigest()


class SoakDriver(QObject):
    """Types keys into ``window`` and acknowledges every edit the window shows (see module doc)."""

    def __init__(self, window, log_path: str, *, seed: int = 0, interval_ms: int = 15) -> None:
        super().__init__(window)
        self.window = window
        self.log_path = str(log_path)
        self.rng = random.Random(seed)
        self.pid = os.getpid()
        self._fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.timer = QTimer(self)
        self.timer.setInterval(max(1, int(interval_ms)))
        self.timer.timeout.connect(self._tick)
        window.sessionLoaded.connect(self._on_loaded)
        window.loadFailed.connect(self._on_failed)

    # -- the log -------------------------------------------------------------------------
    def _write(self, record: dict) -> None:
        line = (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")
        os.write(self._fd, line)  # one write per line: a kill never leaves half a line
        os.fsync(self._fd)

    # -- start ---------------------------------------------------------------------------
    def _on_loaded(self) -> None:
        project = self.window.session
        journal = project.journal
        if journal is None or project.table is None:
            self._write({"failed": self.pid, "message": "the project has no edit journal (not a run?)"})
            return
        table = project.table
        self._write({"ready": self.pid, "seq": journal.last_seq, "ops": len(journal),
                     "rows": len(table), "digest": state_digest(table["sample_id"], table["label"],
                                                                 table["unsure"])})
        self.timer.start()

    def _on_failed(self, message: str) -> None:
        self._write({"failed": self.pid, "message": str(message)})

    # -- typing --------------------------------------------------------------------------
    def _choose(self):
        m = len(self.window.session.classes)
        r = self.rng.random()
        if r < 0.40:
            k = self.rng.randrange(min(m, 9))
            return f"{k + 1}", Qt.Key(K.Key_1 + k), NONE
        if r < 0.55:
            return "Space", K.Key_Space, NONE
        if r < 0.70:
            return "Ctrl+Z", K.Key_Z, CTRL
        if r < 0.80:
            return "Ctrl+Shift+Z", K.Key_Z, CTRL | SHIFT
        if r < 0.90:
            return "Right", K.Key_Right, NONE
        return "Left", K.Key_Left, NONE

    def _tick(self) -> None:
        from PySide6.QtTest import QTest

        project = self.window.session
        journal = project.journal
        if journal is None:
            return
        name, key, modifiers = self._choose()
        before = journal.last_seq
        current = project.current
        self.window.activateWindow()
        QTest.keyClick(self.window, key, modifiers)  # through Qt's shortcut map, like a real key
        if journal.last_seq == before:
            return  # navigation, or a key that changed nothing (undo with nothing to undo...)
        QApplication.processEvents()  # let the views take the change before reading it back
        record = journal.history[-1]
        if record["op"] in ("undo", "redo"):
            target = next(r for r in reversed(journal.history) if r["seq"] == record["target"])
            ids = list(target["ids"])
        else:
            ids = list(record["ids"])
        table = project.table
        shown = {}
        for sid in ids:
            row = project.row_of(sid)
            if row is not None:
                shown[sid] = [int(table["label"].iat[row]), bool(table["unsure"].iat[row])]
        self._write({"ack": journal.last_seq, "op": record["op"], "key": name, "row": int(current),
                     "ids": ids, "shown": shown, "pid": self.pid})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="the run folder to open")
    parser.add_argument("ack_log", help="the acknowledgement log (appended to)")
    parser.add_argument("--seed", type=int, default=0, help="the key sequence")
    parser.add_argument("--interval-ms", type=int, default=15, help="between two keys")
    args = parser.parse_args(argv)

    from uldl_studio.qt.app import ensure_app, open_path, quit_on_interrupt
    from uldl_studio.qt.main_window import MainWindow
    from uldl_studio.qt.settings import StudioSettings

    app = ensure_app()
    quit_on_interrupt(app)
    window = MainWindow(StudioSettings())
    SoakDriver(window, args.ack_log, seed=args.seed, interval_ms=args.interval_ms)  # a child of the window
    window.show()
    open_path(window, args.run)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
