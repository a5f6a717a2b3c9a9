"""Bridges from core generators and long calls to Qt (docs/architecture.md, "Threads").

A worker runs a plain-Python job on a ``QThread``.  It never touches a widget: it only emits
signals carrying copies, which Qt queues to the GUI thread.  Cancelling sets a
``threading.Event`` that the job checks between steps (for training: in every phase, see ``core.training.fit``).

Owners use :class:`JobRunner`: ``start(job, on_result=..., on_error=..., on_yield=...,
on_cancelled=..., on_done=...)``, ``cancel()``, ``stop_and_wait()`` (False when the job did not
stop in time), ``detach()``, ``is_running``.

We keep our own ``QThread`` helper rather than superqt's ``create_worker``/``thread_worker``
because, measured with superqt 0.9 (PySide6 6.11): its workers run on the global
``QThreadPool`` (2 threads on a 2-core machine, so a third job waited 0.5 s for a 0.5 s job to
end) and can only be waited for all together (``await_workers`` = ``waitForDone`` of the whole
pool), ``quit()`` of a ``GeneratorWorker`` abandons the generator at its next yield (the job's
own final "cancelled" progress and its ``finally`` never ran), a plain function gets no cancel
token, and ``start()`` inside a running event loop is deferred by a timer (``is_running`` was
False right after it); a generator's return value does arrive (``returned``) when not aborted.
"""
from __future__ import annotations

import atexit
import copy
import dataclasses
import threading
import time
import traceback
from typing import Any, Callable, Iterator

import shiboken6
from PySide6.QtCore import QObject, QThread, Signal, Slot

from uldl_studio.core.cancel import Cancelled


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

    def __init__(self, job: Callable[..., Any], parent=None, *, name: str = "job") -> None:
        super().__init__(parent)
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


# ------------------------------------------------------------------ owner-side API
# Running jobs: each thread with the object that delivers its signals.  Both are kept alive
# here rather than by a Qt parent, so an owner that is destroyed (or gave up waiting, see
# JobRunner.detach) never destroys a running QThread (Qt answers that with an abort), and a
# job's end never deletes an object from inside one of its own slots.  An entry leaves once
# its thread has ended and everything it emitted has been delivered.
_LIVE: dict["JobThread", "_JobLink"] = {}


class _Reaper(QObject):
    """Drops an ended thread from ``_LIVE`` (GUI thread, connected after its link)."""

    @Slot()
    def reap(self) -> None:
        sender = self.sender()
        ended = [sender] if sender in _LIVE else [t for t in _LIVE if t.isFinished()]
        for thread in ended:
            thread.wait()  # returns at once: the thread is leaving run()
            _LIVE.pop(thread, None)


_reaper: _Reaper | None = None


def _the_reaper() -> _Reaper:
    global _reaper
    if _reaper is None:
        _reaper = _Reaper()
    return _reaper


@atexit.register
def _wait_for_live_threads(timeout_ms: int = 30_000) -> None:
    """At interpreter exit, cancel detached jobs and give them time to end (a QThread object
    destroyed while its thread runs aborts the process)."""
    for thread in list(_LIVE):
        thread.cancel()
        thread.wait(timeout_ms)


def live_threads() -> int:
    """How many job threads are running or not yet reaped (tests, diagnostics)."""
    return len(_LIVE)


class _JobLink(QObject):
    """Delivers one job's signals to its callbacks while the job is its runner's current job
    and the runner still exists."""

    def __init__(self, runner: "JobRunner", thread: JobThread, callbacks: dict) -> None:
        super().__init__()
        self.runner = runner
        self.thread = thread
        self.callbacks = callbacks
        self.active = True

    def _live(self) -> bool:
        return self.active and shiboken6.isValid(self.runner)

    def _call(self, name: str, *args) -> None:
        callback = self.callbacks.get(name)
        if callback is not None and self._live():
            callback(*args)

    @Slot(object)
    def on_yielded(self, item) -> None:
        self._call("on_yield", item)

    @Slot(object)
    def on_succeeded(self, result) -> None:
        self._call("on_result", result)

    @Slot(str)
    def on_failed(self, message: str) -> None:
        if self._live():
            self.runner.error_details = self.thread.error_details
        self._call("on_error", message)

    @Slot()
    def on_cancelled(self) -> None:
        self._call("on_cancelled")

    @Slot()
    def on_finished(self) -> None:
        live = self._live()
        self.active = False
        callbacks, self.callbacks = self.callbacks, {}  # the owner is not kept alive by us
        if not live:
            return
        outcome = self.thread.outcome or "failed"
        self.runner._ended(self)
        callback = callbacks.get("on_done")
        if callback is not None:
            callback(outcome)


class JobRunner(QObject):
    """Runs one job at a time for an owner (a window, a panel, a session).

    ``start(job, ...)`` runs ``job(cancel_event)`` on a :class:`JobThread`.  Callbacks run on the GUI thread:

    - ``on_yield(item)`` for each item a generator job yields;
    - ``on_result(value)`` with the return value (a generator's too) when it ended normally;
    - ``on_error(message)`` with a one-line message (traceback in ``error_details``);
    - ``on_cancelled()`` when it ended because of :meth:`cancel`;
    - ``on_done(outcome)`` last, always: "succeeded" | "failed" | "cancelled".

    Callbacks are delivered only for the current job: a successful :meth:`stop_and_wait`, a
    :meth:`detach` or the next :meth:`start` detaches the previous job and drops whatever of it
    has not been delivered yet, so a stale result never reaches the owner.
    """

    def __init__(self, owner: QObject | None = None, *, name: str = "job") -> None:
        super().__init__(owner)
        self.name = name
        self.error_details = ""
        self._link: _JobLink | None = None
        self._thread: JobThread | None = None
        _the_reaper()

    # -- state ---------------------------------------------------------------------------
    @property
    def thread(self) -> JobThread | None:
        """The current job's thread (None when there is none)."""
        return self._thread

    @property
    def is_running(self) -> bool:
        """A job was started and its thread has not ended yet."""
        return self._thread is not None and self._thread.isRunning()

    @property
    def cancel_requested(self) -> bool:
        return self._thread is not None and self._thread.cancel_event.is_set()

    # -- control -------------------------------------------------------------------------
    def start(self, job: Callable[..., Any], *, on_result: Callable[[Any], None] | None = None,
              on_error: Callable[[str], None] | None = None,
              on_yield: Callable[[Any], None] | None = None,
              on_cancelled: Callable[[], None] | None = None,
              on_done: Callable[[str], None] | None = None) -> JobThread:
        """Start ``job``; raises RuntimeError while the previous job is still running."""
        if self.is_running:
            raise RuntimeError(f"{self.name}: a job is already running (stop_and_wait() first)")
        self.detach()
        thread = JobThread(job, None, name=self.name)  # see _LIVE
        link = _JobLink(self, thread, {"on_result": on_result, "on_error": on_error,
                                       "on_yield": on_yield, "on_cancelled": on_cancelled,
                                       "on_done": on_done})
        thread.yielded.connect(link.on_yielded)
        thread.succeeded.connect(link.on_succeeded)
        thread.failed.connect(link.on_failed)
        thread.cancelled.connect(link.on_cancelled)
        thread.finished.connect(link.on_finished)
        thread.finished.connect(_the_reaper().reap)
        self.error_details = ""
        self._thread, self._link = thread, link
        _LIVE[thread] = link
        thread.start()
        return thread

    def cancel(self) -> None:
        """Ask the current job to stop (it checks its cancel event); returns at once."""
        if self._thread is not None:
            self._thread.cancel()

    def stop_and_wait(self, timeout_ms: int = 60_000) -> bool:
        """Cancel the current job and block until its thread has ended.

        True: it ended (or there was none); the job is detached, none of its callbacks run
        any more and the owner does its own clean-up.  False: it is still running after
        ``timeout_ms`` and stays attached; the caller decides (wait again, tell the user, or
        :meth:`detach` and go on: the thread then ends on its own, results dropped)."""
        thread = self._thread
        if thread is None:
            return True
        thread.cancel()
        if thread.isRunning() and not thread.wait(timeout_ms):
            return False
        self.detach()
        return True

    def detach(self) -> None:
        """Forget the current job without waiting: its callbacks are dropped; a running
        thread is cancelled and ends on its own (it is kept alive until then)."""
        link, thread = self._link, self._thread
        self._link = self._thread = None
        if thread is not None:
            thread.cancel()
        if link is not None:
            link.active = False
            link.callbacks = {}

    def _ended(self, link: _JobLink) -> None:
        if link is self._link:
            self._link = self._thread = None


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
