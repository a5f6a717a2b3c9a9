"""Dataset adapters: every on-disk layout becomes the same SampleTable (``core.table``).

``load_dataset(path, fmt="auto", *, single_label="majority", seed=0, limit=None)``

* ``path``: a dataset folder or file, or ``"demo"`` for the built-in demo dataset.
* ``fmt``: ``"auto"`` (``detect_format``) or one of ``FORMATS``.
* ``single_label``: ``"majority"`` (the given / majority label) or ``"sample"`` (one label
  drawn per sample from its votes or reference distribution with ``seed``: FER+ votes,
  generic CSV ``ref_<class>`` columns). Other layouts have no votes; ``"sample"`` is an error
  there.
* ``limit``: first N samples of each split (``--limit``), applied after loading so labels and
  classes do not depend on it.

Problems follow one policy (see ``datasets.common``): whole-file problems raise
``DatasetError`` naming the file; bad rows are dropped with a ``DatasetWarning``.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from uldl_studio.core.data.datasets.affectnet import load_affectnet
from uldl_studio.core.data.datasets.common import DatasetWarning
from uldl_studio.core.data.datasets.csv_layout import load_csv
from uldl_studio.core.data.datasets.demo import load_demo, read_demo
from uldl_studio.core.data.datasets.detect import detect_format as _detect
from uldl_studio.core.data.datasets.fer2013 import load_fer2013
from uldl_studio.core.data.datasets.ferplus import load_ferplus
from uldl_studio.core.data.datasets.folders import load_folders
from uldl_studio.core.data.datasets.rafdb import load_rafdb
from uldl_studio.core.table import DatasetError, limit_per_split

FORMATS = ("ferplus", "rafdb", "affectnet", "fer2013", "csv", "folders", "demo")
SINGLE_LABEL_MODES = ("majority", "sample")
# Formats that carry several annotations per sample, so that single_label="sample" means something.
SAMPLE_FORMATS = ("ferplus", "csv", "demo")


def detect_format(path: str | Path) -> str:
    """Name of the layout at ``path``; DatasetError listing what it looked for per format."""
    return _detect(path)


def load_dataset(path: str | Path, fmt: str = "auto", *, single_label: str = "majority", seed: int = 0,
                 limit: int | None = None) -> pd.DataFrame:
    """Read a dataset into a SampleTable (see the module docstring)."""
    if fmt not in ("auto", *FORMATS):
        raise DatasetError(f"unknown dataset format {fmt!r}; expected auto or one of {', '.join(FORMATS)}")
    if single_label not in SINGLE_LABEL_MODES:
        raise DatasetError(f"single_label must be one of {', '.join(SINGLE_LABEL_MODES)}, got {single_label!r}")
    if limit is not None and int(limit) < 1:
        raise DatasetError(f"limit must be a positive number of samples per split, got {limit}")
    if str(path) == "demo" or fmt == "demo":
        # "demo" is the built-in default; a path with fmt="demo" is a demo written to disk
        # (any size), read back as it was written.
        table = load_demo(seed=seed) if str(path) == "demo" else read_demo(path)
        return limit_per_split(table, limit)
    if fmt == "auto":
        fmt = detect_format(path)
    if single_label == "sample" and fmt not in SAMPLE_FORMATS:
        raise DatasetError(f"{path}: single_label='sample' needs several annotations per sample "
                           f"({', '.join(SAMPLE_FORMATS)} layouts); the {fmt} layout has one label per sample")
    if fmt == "ferplus":
        table = load_ferplus(path, single_label=single_label, seed=seed)
    elif fmt == "rafdb":
        table = load_rafdb(path)
    elif fmt == "affectnet":
        table = load_affectnet(path)
    elif fmt == "fer2013":
        table = load_fer2013(path)
    elif fmt == "csv":
        table = load_csv(path, single_label=single_label, seed=seed)
    else:
        table = load_folders(path)
    return limit_per_split(table, limit)


__all__ = ["FORMATS", "DatasetError", "DatasetWarning", "detect_format", "load_dataset"]
