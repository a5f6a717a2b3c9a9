"""Runs one training job (``core.runs.jobs.train_job``) at a time on a worker thread and tells
the window what happens, through Qt signals delivered on the GUI thread.

The worker never touches a widget: it emits copies of the progress records and, after every
epoch, the run's per-sample table that it read itself (docs/architecture.md, "Threads").
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot

from uldl_studio.core.progress import Progress
from uldl_studio.core.runs import jobs
from uldl_studio.core.runs.jobs import TrainPlan, TrainResult, train_job
from uldl_studio.qt.workers import JobRunner, JobThread, ProgressThrottle, copy_progress


class TrainingController(QObject):
    """Trains a :class:`~uldl_studio.core.runs.jobs.TrainPlan` on a :class:`JobRunner`.

    Signals:
        started(str what): the plan's description
        progress(object): a copy of a Progress record, throttled to every N batches
        epochResults(object, object): (Run, samples DataFrame) read by the worker after an epoch
        crossfitResults(object, object): the same, once the folds were cross-fitted
        finished(str): "done" | "cancelled" | "failed"; ``result`` holds the job's TrainResult
        failed(str): one-line error message
    """

    started = Signal(str)
    progress = Signal(object)
    epochResults = Signal(object, object)
    crossfitResults = Signal(object, object)
    finished = Signal(str)
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None, *, emit_every: int = 5) -> None:
        super().__init__(parent)
        self.emit_every = emit_every
        self.runner = JobRunner(self, name="training")
        self.plan: TrainPlan | None = None
        self.result: TrainResult | None = None
        self.last_progress = None

    @property
    def thread(self) -> JobThread | None:
        return self.runner.thread

    @property
    def is_running(self) -> bool:
        return self.runner.is_running

    @property
    def run_dir(self) -> Path | None:
        """The folder being trained (known once the job has made it)."""
        return None if self.plan is None else (self.plan.trained or self.plan.out)

    def start(self, plan: TrainPlan) -> None:
        """Train ``plan`` (reading its dataset, if it must, on the worker thread)."""
        if self.is_running:
            raise RuntimeError("training is already running")
        self.plan, self.result, self.last_progress = plan, None, None
        every = self.emit_every

        def job(cancel):
            throttle = ProgressThrottle(every)
            steps = train_job(plan, cancel=cancel)
            last_phase = None
            while True:
                try:
                    item = next(steps)
                except StopIteration as stop:
                    result = stop.value
                    break
                last_phase = item.phase
                if throttle(item):
                    yield ("progress", copy_progress(item))
                if item.phase == "epoch_end":
                    opened = jobs.open_run(plan.trained, dataset=False)  # read here, off the GUI thread
                    yield ("epoch", opened.run, opened.samples)
            if result.outcome == "cancelled" and last_phase != "cancelled":
                yield ("progress", Progress("cancelled", epochs=plan.config.epochs, message=result.message))
            if plan.folds and result.outcome == "done" and result.run is not None:
                opened = jobs.open_run(result.run, dataset=False)  # its samples carry the out-of-fold predictions
                yield ("crossfit", opened.run, opened.samples)
            yield ("result", result)
            return result.outcome

        self.runner.start(job, on_yield=self._on_yielded, on_error=self.failed.emit, on_done=self._on_done)
        self.started.emit(plan.describe)

    def stop(self) -> None:
        """Ask the worker to stop; honoured in every phase of the training (``core.engine.training.fit``)."""
        self.runner.cancel()

    def stop_and_wait(self, timeout_ms: int = 60_000) -> bool:
        """Stop and wait (see :meth:`JobRunner.stop_and_wait`): False while it still runs.
        After True, ``finished`` is not emitted for that training."""
        return self.runner.stop_and_wait(timeout_ms)

    @Slot(object)
    def _on_yielded(self, item) -> None:
        if item[0] == "progress":
            self.last_progress = item[1]
            self.progress.emit(item[1])
        elif item[0] == "epoch":
            self.epochResults.emit(item[1], item[2])
        elif item[0] == "crossfit":
            self.crossfitResults.emit(item[1], item[2])
        elif item[0] == "result":
            self.result = item[1]

    def _on_done(self, outcome: str) -> None:
        self.finished.emit("done" if outcome == "succeeded" else outcome)
