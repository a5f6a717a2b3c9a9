"""The SampleTable: the one currency between modules (docs/architecture.md).

A SampleTable is a ``pandas.DataFrame`` with one row per sample and these columns:

=================  ========  ======================================================
column             dtype     meaning
=================  ========  ======================================================
``sample_id``      str       stable, unique id (e.g. ``FER2013Train/fer0000001.png``)
``path``           str       image file, absolute; for FER2013 CSV ``<csv>#<row>``
``split``          str       ``train`` | ``valid`` | ``test``
``label``          int       given hard label, index into ``classes``
``valence``        float     optional, in [-1, 1], NaN when unknown
``arousal``        float     optional, in [-1, 1], NaN when unknown
``ref_<class>``    float     optional reference distribution (e.g. FER+ votes / sum)
``crowd_<class>``  float     optional vote counts the dataset carries (FER+'s ten annotators,
                             a CSV's ``votes_<class>``), people without names (core.annotations)
``label_original`` int       optional: the label before noise was injected
``pixels``         str       optional: FER2013 CSV pixel string (decoded lazily)
``source``         category  the session's table only (``core.review.session``): ``dataset``
                             or ``prediction`` (a row predicted for another image collection)
=================  ========  ======================================================

After training a run adds ``lambda``, ``d_<class>``, ``p_<class>``, ``x2d``, ``y2d``.

Metadata lives in ``frame.attrs``: ``classes`` (list of canonical class names, the label
order), ``root`` (dataset folder or file, str) and ``format`` (adapter name). Keep attrs
small: pandas copies them on every operation.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

SPLITS = ("train", "valid", "test")
#: where a row of the session's table comes from (its ``source`` column)
SOURCES = ("dataset", "prediction")
REQUIRED_COLUMNS = ("sample_id", "path", "split", "label")
# ``pd.read_csv`` keywords that read repr-written floats back bit-exact (samples.csv, the demo's
# labels.csv): pandas < 3 needs the round-trip parser, pandas 3 uses it by default.
READ_CSV_EXACT_FLOATS: dict = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}


class DatasetError(ValueError):
    """A dataset (or run, or CSV) cannot be read; the message names the file and the problem."""


def ref_columns(classes: Sequence[str]) -> list[str]:
    return [f"ref_{c}" for c in classes]


def d_columns(classes: Sequence[str]) -> list[str]:
    return [f"d_{c}" for c in classes]


def p_columns(classes: Sequence[str]) -> list[str]:
    return [f"p_{c}" for c in classes]


def make_table(frame: pd.DataFrame, classes: Sequence[str], root: str | Path, fmt: str) -> pd.DataFrame:
    """Attach metadata, normalise dtypes and validate; returns the table (index reset)."""
    frame = frame.reset_index(drop=True)
    frame["sample_id"] = frame["sample_id"].astype(str)
    frame["path"] = frame["path"].astype(str)
    frame["split"] = frame["split"].astype(str)
    frame["label"] = frame["label"].astype(np.int64)
    for col in ("valence", "arousal"):
        if col in frame:
            frame[col] = frame[col].astype(np.float64)
    frame.attrs = {"classes": list(classes), "root": str(root), "format": fmt}
    validate_table(frame)
    return frame


def classes_of(table: pd.DataFrame) -> list[str]:
    """Class names of a SampleTable (label order)."""
    try:
        return list(table.attrs["classes"])
    except KeyError as exc:
        raise DatasetError("table has no 'classes' metadata (was it built with make_table?)") from exc


def has_reference(table: pd.DataFrame) -> bool:
    return all(c in table for c in ref_columns(classes_of(table)))


def reference_distribution(table: pd.DataFrame) -> np.ndarray | None:
    """(n, m) reference distributions, or None when the dataset has none."""
    if not has_reference(table):
        return None
    return table[ref_columns(classes_of(table))].to_numpy(np.float64)


def has_valence_arousal(table: pd.DataFrame) -> bool:
    """True when every row has finite valence and arousal."""
    if "valence" not in table or "arousal" not in table:
        return False
    return bool(np.isfinite(table[["valence", "arousal"]].to_numpy(np.float64)).all())


def limit_per_split(table: pd.DataFrame, limit: int | None) -> pd.DataFrame:
    """First ``limit`` samples of each split (``--limit N``)."""
    if not limit:
        return table
    part = table.groupby("split", sort=False, group_keys=False).head(limit).reset_index(drop=True)
    part.attrs = dict(table.attrs)
    return part


def validate_table(table: pd.DataFrame) -> None:
    """Raise DatasetError when the table breaks the SampleTable contract."""
    missing = [c for c in REQUIRED_COLUMNS if c not in table]
    if missing:
        raise DatasetError(f"SampleTable lacks columns {missing}")
    classes = classes_of(table)
    if len(table) == 0:
        raise DatasetError(f"{table.attrs.get('root', '?')}: the dataset has no usable samples")
    if table["sample_id"].duplicated().any():
        dup = table.loc[table["sample_id"].duplicated(), "sample_id"].iloc[0]
        raise DatasetError(f"{table.attrs.get('root', '?')}: duplicate sample id {dup!r}")
    labels = table["label"].to_numpy()
    if labels.min() < 0 or labels.max() >= len(classes):
        raise DatasetError(f"labels outside 0..{len(classes) - 1}")
    bad_split = set(table["split"].unique()) - set(SPLITS)
    if bad_split:
        raise DatasetError(f"unknown split names {sorted(bad_split)}; expected {SPLITS}")
