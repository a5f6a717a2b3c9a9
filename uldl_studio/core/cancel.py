"""How long jobs (training, decoding, prediction) are asked to stop: a ``threading.Event`` or a
callable returning True, checked by the job itself between units of work."""
from __future__ import annotations

import threading
from typing import Callable

Cancel = Callable[[], bool] | threading.Event | None


def cancel_requested(cancel: Cancel) -> bool:
    """Whether ``cancel`` (None: never) asks the job to stop now."""
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    if callable(cancel):
        return bool(cancel())
    raise TypeError("cancel must be a threading.Event or a callable returning bool")
