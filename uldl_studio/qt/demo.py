"""The built-in demo as the GUI opens it (Qt-free: also used by the tests' fixtures).

``load_demo_table`` is what :meth:`MainWindow.open_demo` loads: the size comes from
``ULDL_STUDIO_DEMO_N`` unless given, and a demo of another size than the default records its
cached folder as the generic CSV layout, because ``load_dataset(..., fmt="demo")`` regenerates
the default-size demo: a run trained on it would otherwise re-read other samples when it is
retrained (``Run.training_table``).
"""
from __future__ import annotations

import inspect
import os

from uldl_studio.core.review.frontend import load_demo

DEMO_N_ENV = "ULDL_STUDIO_DEMO_N"


def default_demo_size() -> int:
    return int(inspect.signature(load_demo).parameters["n"].default)


def demo_source() -> dict[str, str]:
    """The source recorded for the demo (recent projects, window title)."""
    return {"kind": "demo", "path": "demo", "format": "demo"}


def load_demo_table(n: int | None = None, seed: int = 0):
    """The demo SampleTable (written into the cache the first time), ready to train on."""
    default = default_demo_size()
    n = int(n or os.environ.get(DEMO_N_ENV) or default)
    table = load_demo(n=n, seed=seed)
    if n != default:
        table.attrs = {**table.attrs, "format": "csv"}
    return table
