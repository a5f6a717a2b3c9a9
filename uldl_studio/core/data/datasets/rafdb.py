"""RAF-DB basic emotions, native layout.

Layout (``ROOT`` may also be the folder above ``basic/``)::

    ROOT/EmoLabel/list_patition_label.txt     "train_00001.jpg 5" per line
    ROOT/Image/aligned/train_00001_aligned.jpg

Labels 1..7 = surprise, fear, disgust, happiness, sadness, anger, neutral (``RAFDB_CLASSES``).
The split comes from the name prefix (``train_`` / ``test_``); RAF-DB has no validation
split, so the table has ``train`` and ``test`` only. When ``Image/aligned/`` is absent the
original images ``Image/original/<name>`` are used instead.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from uldl_studio.core.classes import RAFDB_CLASSES
from uldl_studio.core.data.datasets.common import (
    check_one_class, describe_folder, ensure_rows, list_names, read_csv_text, warn_dropped,
)
from uldl_studio.core.table import DatasetError, make_table

LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"


def find_root(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if path.is_file() and path.name == LABEL_FILE.name:
        return path.parent.parent
    for candidate in (path, path / "basic"):
        if (candidate / LABEL_FILE).is_file():
            return candidate
    raise DatasetError(f"{path}: not a RAF-DB folder: expected {LABEL_FILE.as_posix()} "
                       f"(and Image/aligned/); found {describe_folder(path)}")


def load_rafdb(root: str | Path) -> pd.DataFrame:
    root = find_root(root).resolve()
    label_file = root / LABEL_FILE
    frame = read_csv_text(label_file, header=False)
    # The file is space separated: re-split when the sniffer kept whole lines.
    if frame.shape[1] == 1:
        frame = frame.iloc[:, 0].str.strip().str.split(r"\s+", expand=True, regex=True)
    if frame.shape[1] != 2:
        raise DatasetError(f"{label_file}: wrong columns: expected 2 per line (image name, label 1-7), "
                           f"found {frame.shape[1]}")
    frame.columns = ["name", "code"]
    frame["_row"] = np.arange(1, len(frame) + 1)
    frame["name"] = frame["name"].astype(str).str.strip()
    total = len(frame)
    code = pd.to_numeric(frame["code"], errors="coerce")
    bad = ~code.isin(range(1, len(RAFDB_CLASSES) + 1))
    if bad.any():
        warn_dropped(label_file, f"label outside 1..{len(RAFDB_CLASSES)}", frame.loc[bad, "_row"].tolist(),
                     total=total, detail=f"first bad value: {frame.loc[bad, 'code'].iloc[0]!r}")
    frame = frame.loc[~bad].copy()
    frame["label"] = code[~bad].astype(np.int64) - 1
    prefix = frame["name"].str.split("_", n=1).str[0].str.lower()
    frame["split"] = prefix.map({"train": "train", "test": "test"})
    bad = frame["split"].isna()
    if bad.any():
        warn_dropped(label_file, "name does not start with train_ or test_", frame.loc[bad, "_row"].tolist(),
                     total=total)
    frame = frame.loc[~bad]
    dup = frame["name"].duplicated()
    if dup.any():
        warn_dropped(label_file, "duplicate image name (first occurrence kept)", frame.loc[dup, "_row"].tolist(),
                     total=total)
        frame = frame.loc[~dup]

    aligned = root / "Image" / "aligned"
    if aligned.is_dir():
        folder = aligned
        stem = frame["name"].str.rsplit(".", n=1).str[0]
        ext = frame["name"].str.rsplit(".", n=1).str[-1]
        files = stem + "_aligned." + ext
    elif (root / "Image" / "original").is_dir():
        folder, files = root / "Image" / "original", frame["name"]
    else:
        raise DatasetError(f"{root}: RAF-DB images not found: expected Image/aligned/ (or Image/original/)")
    names = list_names(folder)
    present = files.isin(names)
    if not present.all():
        warn_dropped(label_file, "image file not found", frame.loc[~present, "_row"].tolist(), total=total,
                     detail=f"first missing: {folder / files[~present].iloc[0]}")
    frame = frame.assign(path=str(folder) + os.sep + files, sample_id=frame["name"]).loc[present]
    ensure_rows(frame, label_file)
    check_one_class(frame["label"].to_numpy(), RAFDB_CLASSES, label_file)
    return make_table(frame[["sample_id", "path", "split", "label"]], RAFDB_CLASSES, root, "rafdb")
