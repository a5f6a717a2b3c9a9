"""AffectNet-style CSV files (the "Manually Annotated" release layout).

Columns used: ``subDirectory_filePath, expression, valence, arousal`` (others such as
``face_x`` are ignored). Expression codes 0..7 = neutral, happiness, sadness, surprise, fear,
disgust, anger, contempt (``AFFECTNET_CLASSES``); codes 8..10 (none, uncertain, no-face) are
dropped with a warning and a count; other codes are dropped as out of range. Valence and
arousal: ``-2`` means "not annotated" and becomes NaN silently; any other value outside
[-1, 1] becomes NaN with a warning.

Where the files are looked for, ``ROOT`` being the path given:

* CSVs: ``ROOT`` itself when it is a CSV file (split from its name), else ``training.csv``
  and ``validation.csv`` in ``ROOT`` or ``ROOT/Manually_Annotated_file_lists/``;
  ``training.csv`` → ``train``, ``validation.csv`` → ``valid``. AffectNet has no public test
  split (its test set was never released), so the table has no ``test`` rows unless a CSV
  named ``test*.csv`` sits beside them.
* Image root (``subDirectory_filePath`` is relative to it), the first of these in which the
  first rows' files exist: ``ROOT/Manually_Annotated_Images``,
  ``ROOT/Manually_Annotated/Manually_Annotated_Images``, ``ROOT``, the CSV's folder, and
  ``Manually_Annotated_Images`` beside the CSV's folder.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from uldl_studio.core.classes import AFFECTNET_CLASSES
from uldl_studio.core.data.datasets.common import (
    check_one_class, describe_folder, drop_missing_files, ensure_rows, existing_mask, read_csv_columns,
    warn, warn_dropped,
)
from uldl_studio.core.table import DatasetError, make_table

REQUIRED = ("subDirectory_filePath", "expression")
OPTIONAL = ("valence", "arousal")
CSV_NAMES = {"training.csv": "train", "validation.csv": "valid", "test.csv": "test"}
LIST_FOLDER = "Manually_Annotated_file_lists"
IMAGE_FOLDER = "Manually_Annotated_Images"
NON_EMOTION = {8: "none", 9: "uncertain", 10: "no-face"}


def split_of_csv(path: Path) -> str:
    name = path.name.lower()
    if name.startswith("valid") or name.startswith("val"):
        return "valid"
    if name.startswith("test"):
        return "test"
    return "train"


def find_csvs(path: str | Path) -> tuple[Path, list[Path]]:
    """(root, CSV files) for a folder or a single CSV."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if path.is_file():
        return path.parent, [path]
    for folder in (path, path / LIST_FOLDER):
        names = {p.name.lower(): p for p in folder.glob("*.csv")} if folder.is_dir() else {}
        found = [names[n] for n in CSV_NAMES if n in names]
        if found:
            return path, found
    raise DatasetError(f"{path}: not an AffectNet folder: expected training.csv and/or validation.csv "
                       f"(in it or in {LIST_FOLDER}/) with columns {', '.join(REQUIRED + OPTIONAL)}; "
                       f"found {describe_folder(path)}")


def image_root_candidates(root: Path, csv_path: Path) -> list[Path]:
    out = [root / IMAGE_FOLDER, root / "Manually_Annotated" / IMAGE_FOLDER, root, csv_path.parent,
           csv_path.parent.parent / IMAGE_FOLDER]
    seen, unique = set(), []
    for p in out:
        if p not in seen and p.is_dir():
            seen.add(p)
            unique.append(p)
    return unique


def choose_image_root(root: Path, csv_path: Path, rel_paths: pd.Series) -> Path:
    probe = rel_paths.head(50).tolist()
    candidates = image_root_candidates(root, csv_path)
    best, best_hits = None, 0
    for candidate in candidates:
        hits = int(existing_mask([os.path.join(candidate, p) for p in probe]).sum())
        if hits > best_hits:
            best, best_hits = candidate, hits
    if best is None:
        looked = ", ".join(str(c) for c in candidates) or str(root)
        example = probe[0] if probe else "?"
        raise DatasetError(f"{csv_path}: images not found: no file such as {example!r} under any of {looked}")
    return best


def read_affectnet_csv(csv_path: Path, root: Path, split: str) -> pd.DataFrame:
    frame, cols = read_csv_columns(csv_path, REQUIRED, OPTIONAL)
    total = len(frame)
    out = pd.DataFrame({
        "_row": np.arange(1, total + 1),
        "rel": frame[cols["subDirectory_filePath"]].astype(str).str.strip().str.replace("\\", "/", regex=False),
    })
    code = pd.to_numeric(frame[cols["expression"]], errors="coerce")
    non_emotion = code.isin(list(NON_EMOTION)).to_numpy()
    if non_emotion.any():
        counts = code[non_emotion].astype(int).value_counts().sort_index()
        detail = ", ".join(f"{NON_EMOTION[int(c)]} ({int(c)}): {int(n)}" for c, n in counts.items())
        warn_dropped(csv_path, "expression codes 8-10 are not emotions", out.loc[non_emotion, "_row"].tolist(),
                     total=total, detail=detail)
    bad = ~code.isin(range(len(AFFECTNET_CLASSES))).to_numpy() & ~non_emotion
    if bad.any():
        first = frame[cols["expression"]][bad].iloc[0]
        warn_dropped(csv_path, "expression code outside 0..10", out.loc[bad, "_row"].tolist(), total=total,
                     detail=f"first bad value: {first!r}")
    empty = (out["rel"] == "").to_numpy()
    if (empty & ~bad & ~non_emotion).any():
        warn_dropped(csv_path, "empty subDirectory_filePath", out.loc[empty & ~bad & ~non_emotion, "_row"].tolist(),
                     total=total)
    keep = ~(non_emotion | bad | empty)
    out["label"] = code.where(keep, 0).astype(np.int64).to_numpy()
    for col in OPTIONAL:
        if col in cols:
            values = pd.to_numeric(frame[cols[col]].str.strip(), errors="coerce").to_numpy(np.float64, copy=True)
            missing = values == -2  # AffectNet's "not annotated"
            wrong = keep & ~missing & ~(np.abs(values) <= 1)  # NaN, text and out of range
            if wrong.any():
                rows = out.loc[wrong, "_row"].tolist()
                warn(f"{csv_path}: {len(rows)} {col} values are not numbers in [-1, 1] (or -2 = not "
                     f"annotated); set to NaN (first rows: {', '.join(map(str, rows[:5]))})")
            values[missing | wrong] = np.nan
            out[col] = values
    out = out.loc[keep].copy()
    out["split"] = split
    return out


def load_affectnet(path: str | Path) -> pd.DataFrame:
    root, csvs = find_csvs(path)
    root = root.resolve()
    parts = []
    for csv_path in csvs:
        csv_path = csv_path.resolve()
        part = read_affectnet_csv(csv_path, root, split_of_csv(csv_path))
        if len(part) == 0:
            continue
        image_root = choose_image_root(root, csv_path, part["rel"])
        part["path"] = str(image_root) + os.sep + part["rel"].str.replace("/", os.sep, regex=False)
        part = drop_missing_files(part, csv_path)
        dup = part["rel"].duplicated()
        if dup.any():
            warn_dropped(csv_path, "duplicate subDirectory_filePath (first occurrence kept)",
                         part.loc[dup, "_row"].tolist(), total=len(part))
            part = part.loc[~dup]
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    ensure_rows(frame, ", ".join(str(c) for c in csvs))
    # The same relative path in two CSVs would collide: prefix ids with the split then.
    frame["sample_id"] = frame["rel"]
    if frame["sample_id"].duplicated().any():
        frame["sample_id"] = frame["split"] + "/" + frame["rel"]
    check_one_class(frame["label"].to_numpy(), AFFECTNET_CLASSES, root)
    columns = ["sample_id", "path", "split", "label"] + [c for c in OPTIONAL if c in frame]
    return make_table(frame[columns], AFFECTNET_CLASSES, root, "affectnet")
