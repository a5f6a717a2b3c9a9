"""FER2013 challenge CSV (``emotion, pixels, Usage``).

Emotion codes 0..6 = anger, disgust, fear, happiness, sadness, surprise, neutral
(``FER2013_CLASSES``). ``Usage`` Training / PublicTest / PrivateTest → train / valid / test;
a file without ``Usage`` (Kaggle's ``train.csv``) is split 80/10/10 by a hash of the sample id.
``path`` is ``<csv path>#<row>`` (0-based data row, the number FER+ uses in ``ferNNNNNNN.png``)
and ``sample_id`` is ``ferNNNNNNN``. The ``pixels`` strings are kept and decoded lazily by
``core.images`` (48×48 from 2304 space-separated integers; a wrong length is reported there
as a bad image, not here, so loading stays fast).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from uldl_studio.core.classes import FER2013_CLASSES
from uldl_studio.core.data.datasets.common import (
    canonical_split, check_one_class, ensure_rows, find_csv, hash_split, read_csv_columns, warn_dropped,
)
from uldl_studio.core.table import make_table

REQUIRED = ("emotion", "pixels")
OPTIONAL = ("Usage",)
USAGE = {"training": "train", "publictest": "valid", "privatetest": "test"}
# Where a folder keeps its FER2013 CSV, in order of preference (also the signature for --format auto).
CSV_NAMES = ("fer2013.csv", "fer2013/fer2013.csv", "icml_face_data.csv", "train.csv")


def fer2013_csv_in(folder: Path) -> Path | None:
    """The first of ``CSV_NAMES`` that ``folder`` holds; None when none."""
    return next((folder / name for name in CSV_NAMES if (folder / name).is_file()), None)


def load_fer2013(path: str | Path) -> pd.DataFrame:
    csv_path = find_csv(path, fer2013_csv_in,
                        "not a FER2013 folder: expected fer2013.csv with columns emotion, pixels, Usage").resolve()
    frame, cols = read_csv_columns(csv_path, REQUIRED, OPTIONAL)
    total = len(frame)
    rows = np.arange(total)
    out = pd.DataFrame({
        "_row": rows + 1,
        "sample_id": [f"fer{r:07d}" for r in rows],
        "path": [f"{csv_path}#{r}" for r in rows],
        "pixels": frame[cols["pixels"]].astype(str).str.strip(),
    })
    code = pd.to_numeric(frame[cols["emotion"]], errors="coerce")
    bad = ~code.isin(range(len(FER2013_CLASSES))).to_numpy()
    if bad.any():
        warn_dropped(csv_path, f"emotion code outside 0..{len(FER2013_CLASSES) - 1}", out.loc[bad, "_row"].tolist(),
                     total=total, detail=f"first bad value: {frame[cols['emotion']][bad].iloc[0]!r}")
    out["label"] = code.where(~bad, 0).astype(np.int64).to_numpy()
    if "Usage" in cols:
        usage = frame[cols["Usage"]].astype(str).str.strip().str.lower()
        split = usage.map(USAGE)
        split = split.where(split.notna(), usage.map(canonical_split))
        unknown = split.isna().to_numpy() & ~bad
        if unknown.any():
            warn_dropped(csv_path, "Usage is not Training, PublicTest or PrivateTest", out.loc[unknown, "_row"].tolist(),
                         total=total, detail=f"first bad value: {frame[cols['Usage']][unknown].iloc[0]!r}")
        out["split"] = split.to_numpy()
        bad |= unknown
    else:
        out["split"] = hash_split(out["sample_id"])
    out = out.loc[~bad]
    ensure_rows(out, csv_path)
    check_one_class(out["label"].to_numpy(), FER2013_CLASSES, csv_path)
    return make_table(out[["sample_id", "path", "split", "label", "pixels"]], FER2013_CLASSES, csv_path, "fer2013")
