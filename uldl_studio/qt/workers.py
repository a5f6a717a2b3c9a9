"""Bridges from core generators and long calls to Qt (DESIGN.md §4).

A worker runs a plain-Python job on a ``QThread``.  It never touches a widget: it only emits
signals carrying copies, which Qt queues to ``@Slot`` methods on the GUI thread.  Cancelling
sets a ``threading.Event`` that the job checks between steps (between batches for training).
Owners must call :meth:`JobThread.stop_and_wait` before they are destroyed.
"""
from __future__ import annotations

import copy
import dataclasses
import threading
import time
import traceback
from typing import Any, Callable, Iterator

from PySide6.QtCore import QThread, Signal


class Cancelled(Exception):
    """Raised inside a job when its cancel event is set (ends it quietly)."""


class JobThread(QThread):
    """Runs ``job(cancel_event)`` on a thread.

    The job either returns a value (emitted by ``succeeded``) or is a generator: each item it
    yields is emitted by ``yielded``; the generator's return value is emitted by ``succeeded``.
    ``failed`` carries a one-line message (details in ``self.error_details``); ``cancelled``
    fires when the job ended because of :meth:`cancel`.  ``finished`` (QThread's) always fires
    last.
    """

    yielded = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, job: Callable[..., Any], parent=None, *, name: str = "job",
                 with_report: bool = False) -> None:
        """``with_report=True``: the job is called as ``job(cancel, report)`` where ``report(item)``
        emits ``yielded`` from the worker (for jobs that report through a callback)."""
        super().__init__(parent)
        self._with_report = with_report
        self.setObjectName(name)
        self._job = job
        self.cancel_event = threading.Event()
        self.error_details = ""
        self.outcome: str | None = None  # "succeeded" | "failed" | "cancelled"

    def cancel(self) -> None:
        self.cancel_event.set()

    def stop_and_wait(self, timeout_ms: int = 60_000) -> bool:
        """Cancel and block until the thread has ended (True) or the timeout passed (False)."""
        self.cancel()
        if not self.isRunning():
            return True
        return self.wait(timeout_ms)

    def run(self) -> None:  # noqa: D401 - QThread entry point
        try:
            if self._with_report:
                result = self._job(self.cancel_event, self.yielded.emit)
            else:
                result = self._job(self.cancel_event)
            if isinstance(result, Iterator):
                result = yield_from(result, self.yielded.emit, self.cancel_event)
            if self.cancel_event.is_set():
                self.outcome = "cancelled"
                self.cancelled.emit()
            else:
                self.outcome = "succeeded"
                self.succeeded.emit(result)
        except Cancelled:
            self.outcome = "cancelled"
            self.cancelled.emit()
        except Exception as exc:  # reported to the GUI, never raised into Qt
            self.outcome = "failed"
            self.error_details = traceback.format_exc()
            self.failed.emit(str(exc) or type(exc).__name__)


def yield_from(generator: Iterator, emit: Callable[[Any], None], cancel: threading.Event) -> Any:
    """Drive ``generator`` to its end, emitting each item; returns its return value.

    Jobs receive the cancel event and honour it themselves (core generators check it between
    batches and then yield a final "cancelled" progress), so the loop does not cut them off.
    """
    while True:
        try:
            item = next(generator)
        except StopIteration as stop:
            return stop.value
        emit(item)


def copy_progress(progress: Any) -> Any:
    """A copy of a Progress record that the GUI thread may keep."""
    if dataclasses.is_dataclass(progress):
        return dataclasses.replace(progress)
    return copy.copy(progress)


class ProgressThrottle:
    """Lets a training progress through every ``every`` batches or ``min_interval`` seconds.

    Phase changes (epoch end, done, cancelled) always pass.
    """

    def __init__(self, every: int = 5, min_interval: float = 0.2) -> None:
        self.every = max(1, int(every))
        self.min_interval = min_interval
        self._last = 0.0

    def __call__(self, progress: Any) -> bool:
        phase = getattr(progress, "phase", "")
        batch = int(getattr(progress, "batch", 0) or 0)
        batches = int(getattr(progress, "batches", 0) or 0)
        now = time.monotonic()
        if phase not in ("train", "warmup") or batch >= batches or batch % self.every == 0 \
                or now - self._last >= self.min_interval:
            self._last = now
            return True
        return False
