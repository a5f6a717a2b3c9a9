"""How long jobs (training, decoding, prediction) are asked to stop: a ``threading.Event`` or a
callable returning True, checked by the job itself between units of work; a job that stops
raises (or, for a generator, ends after) the one :class:`Cancelled`."""
from __future__ import annotations

import threading
from typing import Callable

Cancel = Callable[[], bool] | threading.Event | None


class Cancelled(Exception):
    """A job stopped because its ``cancel`` asked it to; nothing half-done was kept.

    ``where`` says when ("in epoch 2 before batch 5"); training also records the epoch and the
    batch reached, so its last progress record can say where it stopped."""

    def __init__(self, where: str = "", epoch: int = 0, batch: int = 0, batches: int = 0):
        super().__init__(where)
        self.where, self.epoch, self.batch, self.batches = where, epoch, batch, batches


def cancel_requested(cancel: Cancel) -> bool:
    """Whether ``cancel`` (None: never) asks the job to stop now."""
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    if callable(cancel):
        return bool(cancel())
    raise TypeError("cancel must be a threading.Event or a callable returning bool")
