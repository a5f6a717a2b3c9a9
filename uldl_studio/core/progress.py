"""The one progress record every long job yields (training, decoding, prediction): a job is a
generator of :class:`Progress` whose return value is its result, and a ``cancel`` makes it
stop with ``core.cancel.Cancelled`` (training ends with a ``cancelled`` record instead)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generator, TypeVar

T = TypeVar("T")


@dataclass
class Progress:
    """Where a job is. ``phase``: load | warmup | train | epoch_end | done | cancelled (training),
    predict (prediction), read | write (files); ``batch`` of ``batches`` units done in it."""

    phase: str
    epoch: int = 0
    epochs: int = 0
    batch: int = 0
    batches: int = 0
    loss: float = float("nan")
    loss_ce: float = float("nan")
    loss_d: float = float("nan")
    accuracy: float = float("nan")
    mean_lambda: float = float("nan")
    seconds: float = 0.0
    eta_seconds: float = float("nan")
    message: str = ""


def run_to_end(job: Generator[Progress, None, T], on_progress: Callable[[Progress], None] | None = None) -> T:
    """Consume the job ``job``, passing each record to ``on_progress``; return its result."""
    while True:
        try:
            record = next(job)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(record)
