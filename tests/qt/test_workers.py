"""JobRunner: one owner-side API for the worker threads (start, callbacks, cancel, wait)."""
from __future__ import annotations

import threading
import time

import pytest
import shiboken6
from PySide6.QtCore import QObject

pytestmark = pytest.mark.timeout(60)


def _recorder():
    calls = []

    def make(name):
        return lambda *args: calls.append((name, *args, threading.get_ident()))

    callbacks = {k: make(k) for k in ("on_result", "on_error", "on_yield", "on_cancelled", "on_done")}
    return calls, callbacks


def _names(calls):
    return [c[:-1] for c in calls]


def test_generator_items_and_return_value_reach_the_gui_thread(qtbot):
    from uldl_studio.qt.workers import JobRunner

    runner = JobRunner(name="gen")
    calls, callbacks = _recorder()

    ran_on = []

    def job(cancel):
        ran_on.append(threading.get_ident())
        for i in range(3):
            yield i
        return "the end"

    thread = runner.start(job, **callbacks)
    assert runner.thread is thread
    qtbot.waitUntil(lambda: any(c[0] == "on_done" for c in calls), timeout=10_000)
    assert _names(calls) == [("on_yield", 0), ("on_yield", 1), ("on_yield", 2),
                             ("on_result", "the end"), ("on_done", "succeeded")]
    assert ran_on and ran_on[0] != threading.get_ident()       # the job ran on the worker...
    assert {c[-1] for c in calls} == {threading.get_ident()}   # ... its callbacks on this thread
    assert thread.isFinished() and thread.outcome == "succeeded"
    assert not runner.is_running and runner.thread is None


def test_failure_is_a_message_and_details(qtbot):
    from uldl_studio.qt.workers import JobRunner

    runner = JobRunner()
    calls, callbacks = _recorder()

    def job(cancel):
        raise ValueError("bad folder")

    runner.start(job, **callbacks)
    qtbot.waitUntil(lambda: any(c[0] == "on_done" for c in calls), timeout=10_000)
    assert _names(calls) == [("on_error", "bad folder"), ("on_done", "failed")]
    assert "ValueError" in runner.error_details and "Traceback" in runner.error_details


def test_cancel_ends_a_job_that_checks_its_event(qtbot):
    from uldl_studio.qt.workers import JobRunner

    runner = JobRunner()
    calls, callbacks = _recorder()
    started = threading.Event()

    def job(cancel):
        started.set()
        while not cancel.is_set():
            time.sleep(0.01)
            yield "tick"
        yield "stopping"

    runner.start(job, **callbacks)
    assert started.wait(5)
    runner.cancel()
    assert runner.cancel_requested
    qtbot.waitUntil(lambda: any(c[0] == "on_done" for c in calls), timeout=10_000)
    names = [c[0] for c in calls]
    assert names[-2:] == ["on_cancelled", "on_done"] and calls[-1][1] == "cancelled"
    assert "on_result" not in names
    assert ("on_yield", "stopping") in _names(calls)      # the job's own last word arrives


def test_stop_and_wait_reports_a_job_that_ignores_cancel(qtbot):
    from uldl_studio.qt.workers import JobRunner

    runner = JobRunner()
    calls, callbacks = _recorder()
    started, release, returned = threading.Event(), threading.Event(), threading.Event()

    def stubborn(cancel):
        started.set()
        release.wait(30)                # does not look at cancel until released
        returned.set()
        return "late"

    runner.start(stubborn, **callbacks)
    assert started.wait(5)
    assert runner.stop_and_wait(timeout_ms=100) is False
    assert not returned.is_set()                                  # it gave up before the job ended
    assert runner.cancel_requested
    assert runner.is_running and runner.thread is not None        # still attached
    with pytest.raises(RuntimeError, match="already running"):
        runner.start(stubborn)
    release.set()
    assert runner.stop_and_wait(timeout_ms=10_000) is True
    assert returned.is_set()
    assert not runner.is_running and runner.thread is None
    qtbot.wait(200)                     # whatever was queued is dropped: the job was detached
    assert calls == []


def test_a_new_start_drops_the_previous_jobs_undelivered_result(qtbot):
    from uldl_studio.qt.workers import JobRunner

    runner = JobRunner()
    old_calls, old = _recorder()
    new_calls, new = _recorder()
    first = runner.start(lambda cancel: "old", **old)
    first.wait(5000)                    # ended, but its signals are still queued
    runner.start(lambda cancel: "new", **new)
    qtbot.waitUntil(lambda: any(c[0] == "on_done" for c in new_calls), timeout=10_000)
    qtbot.wait(50)
    assert old_calls == []
    assert _names(new_calls) == [("on_result", "new"), ("on_done", "succeeded")]


def test_owner_destroyed_while_a_detached_job_runs(qtbot):
    """Giving up on a job and destroying its owner neither aborts Qt nor calls into the owner."""
    from uldl_studio.qt.workers import JobRunner, live_threads

    base = live_threads()
    owner = QObject()
    runner = JobRunner(owner)
    calls, callbacks = _recorder()
    release = threading.Event()
    thread = runner.start(lambda cancel: release.wait(10) and "done", **callbacks)
    assert runner.stop_and_wait(timeout_ms=50) is False
    runner.detach()
    owner.deleteLater()
    qtbot.waitUntil(lambda: not shiboken6.isValid(runner), timeout=5_000)   # owner and runner gone
    assert thread.isRunning() and live_threads() == base + 1
    release.set()
    qtbot.waitUntil(lambda: live_threads() == base, timeout=10_000)
    assert calls == []


