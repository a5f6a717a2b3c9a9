"""FER+ (Microsoft FERPlus crowd labels over the FER2013 images), native layout.

Layout::

    ROOT/FER2013Train/label.csv  + fer0000000.png ...
    ROOT/FER2013Valid/label.csv  + ...
    ROOT/FER2013Test/label.csv   + ...

``label.csv`` has no header: image name, bounding box, then ten vote counts for neutral,
happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF (not a face).
``ROOT`` may also be one split folder (or its ``label.csv``); its split comes from the folder
name (``...Train`` / ``...Valid`` / ``...Test``, else ``train``).

Protocol (the usual one for FER+):

* the eight emotions are kept (``FERPLUS_CLASSES`` order); ``ref_<class>`` = the eight counts
  divided by their sum; ``crowd_<class>`` = the eight counts themselves (the crowd's votes,
  ``core.annotations``);
* rows whose majority over all ten columns is unknown or NF are dropped silently (that is the
  protocol, not a fault); on a tie between an emotion and unknown/NF the emotion wins, because
  ``argmax`` returns the lowest index and the emotions come first;
* rows with no emotion vote at all, or with votes that are not non-negative integers, are
  dropped with a :class:`DatasetWarning`;
* ``single_label="majority"``: label = argmax of the eight counts, ties broken towards the
  lowest class index (neutral < happiness < ... < contempt);
* ``single_label="sample"``: label = one annotator's vote among the eight emotion votes, drawn
  with ``numpy.random.default_rng(seed)`` over the rows of all splits in train, valid, test
  order (before missing images are dropped, so the draw does not depend on which files exist).

Microsoft's training code also removes single-vote "outlier" emotions; this adapter does not.
Listing uses one ``os.scandir`` per split folder, no image is opened.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from uldl_studio.core.classes import FERPLUS_CLASSES
from uldl_studio.core.data.datasets.common import (
    describe_folder, ensure_rows, list_names, read_csv_text, sample_from_counts, warn, warn_dropped,
)
from uldl_studio.core.table import DatasetError, make_table, ref_columns

SPLIT_FOLDERS: dict[str, str] = {"FER2013Train": "train", "FER2013Valid": "valid", "FER2013Test": "test"}
VOTE_COLUMNS: tuple[str, ...] = (*FERPLUS_CLASSES, "unknown", "NF")
N_COLUMNS = 2 + len(VOTE_COLUMNS)


def split_from_name(name: str) -> str:
    low = name.lower()
    if "valid" in low or low.endswith("val") or "publictest" in low:
        return "valid"
    if "test" in low:
        return "test"
    return "train"


def split_folders(root: str | Path) -> tuple[Path, list[tuple[Path, str]]]:
    """(root, [(split folder, split)]) of a FER+ root, split folder or label.csv path."""
    root = Path(root)
    if root.is_file() and root.name.lower() == "label.csv":
        root = root.parent
    if not root.exists():
        raise DatasetError(f"{root}: no such file or folder")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a FER+ folder (expected a folder, or its label.csv)")
    if (root / "label.csv").is_file():
        return root, [(root, split_from_name(root.name))]
    names = {n.lower(): n for n in list_names(root)}
    found = []
    for folder, split in SPLIT_FOLDERS.items():
        actual = names.get(folder.lower())
        if actual is not None and (root / actual / "label.csv").is_file():
            found.append((root / actual, split))
    if not found:
        raise DatasetError(
            f"{root}: not a FER+ folder: expected FER2013Train/, FER2013Valid/ or FER2013Test/ each "
            f"holding label.csv (or a split folder holding label.csv); found {describe_folder(root)}"
        )
    return root, found


def read_label_csv(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """(frame with image and _row, votes (n, 10) int64) of one label.csv; bad rows dropped."""
    frame = read_csv_text(path, header=False)
    if frame.shape[1] != N_COLUMNS:
        raise DatasetError(
            f"{path}: wrong columns: expected {N_COLUMNS} (image name, bounding box, vote counts for "
            f"{', '.join(VOTE_COLUMNS)}), found {frame.shape[1]}"
        )
    frame.columns = ["image", "bbox", *VOTE_COLUMNS]
    frame["_row"] = np.arange(1, len(frame) + 1)
    raw = frame[list(VOTE_COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    ok = np.isfinite(raw).all(axis=1) & (raw >= 0).all(axis=1)
    ok &= (np.where(np.isfinite(raw), raw, 0) % 1 == 0).all(axis=1)
    image = frame["image"].astype(str).str.strip()
    frame["image"] = image
    no_name = (image == "").to_numpy()
    if no_name.any():
        warn_dropped(path, "empty image name", frame.loc[no_name, "_row"].tolist(), total=len(frame))
    if (~ok & ~no_name).any():
        warn_dropped(path, "vote counts are not non-negative integers",
                     frame.loc[~ok & ~no_name, "_row"].tolist(), total=len(frame))
    ok &= ~no_name
    frame, votes = frame.loc[ok], raw[ok].astype(np.int64)
    dup = frame["image"].duplicated().to_numpy()
    if dup.any():
        warn_dropped(path, "duplicate image name (first occurrence kept)", frame.loc[dup, "_row"].tolist(),
                     total=len(frame))
        frame, votes = frame.loc[~dup], votes[~dup]
    return frame, votes


def load_ferplus(root: str | Path, *, single_label: str = "majority", seed: int = 0) -> pd.DataFrame:
    """Load a FER+ tree as a SampleTable (see the module docstring for the protocol)."""
    if single_label not in ("majority", "sample"):
        raise DatasetError(f"single_label must be 'majority' or 'sample', got {single_label!r}")
    root, folders = split_folders(root)
    root = root.resolve()
    m = len(FERPLUS_CLASSES)
    parts, vote_parts = [], []
    for folder, split in folders:
        folder = folder.resolve()
        label_csv = folder / "label.csv"
        frame, votes = read_label_csv(label_csv)
        emotion = votes[:, :m]
        keep = votes.argmax(axis=1) < m  # majority over all ten columns is an emotion
        no_votes = keep & (emotion.sum(axis=1) == 0)
        if no_votes.any():
            warn_dropped(label_csv, "no emotion votes", frame.loc[no_votes, "_row"].tolist(), total=len(frame))
        keep &= ~no_votes
        frame = frame.loc[keep, ["image", "_row"]].copy()
        frame["split"] = split
        frame["_folder"] = str(folder)
        frame["_folder_name"] = folder.name
        frame["_file"] = str(label_csv)
        parts.append(frame)
        vote_parts.append(emotion[keep])
    frame = pd.concat(parts, ignore_index=True)
    counts = np.concatenate(vote_parts).astype(np.float64)
    if single_label == "majority":
        labels = counts.argmax(axis=1)  # ties: lowest class index
    else:
        labels = sample_from_counts(counts, seed)
    ref = counts / counts.sum(axis=1, keepdims=True)

    frame["sample_id"] = frame["_folder_name"] + "/" + frame["image"]
    frame["path"] = frame["_folder"] + os.sep + frame["image"]
    frame["label"] = labels
    ref_frame = pd.DataFrame(ref, columns=ref_columns(FERPLUS_CLASSES))
    crowd_frame = pd.DataFrame(counts, columns=[f"crowd_{c}" for c in FERPLUS_CLASSES])
    frame = pd.concat([frame, ref_frame, crowd_frame], axis=1)

    # Existence: one scandir per split folder instead of a stat per image.
    present = np.zeros(len(frame), dtype=bool)
    for folder, idx in frame.groupby("_folder", sort=False).groups.items():
        names = list_names(Path(folder))
        present[np.asarray(idx)] = frame.loc[idx, "image"].isin(names).to_numpy()
    for label_csv, idx in frame.loc[~present].groupby("_file", sort=False).groups.items():
        rows = frame.loc[idx]
        total = int((frame["_file"] == label_csv).sum())
        warn_dropped(label_csv, "image file not found", rows["_row"].tolist(), total=total,
                     detail=f"first missing: {rows['path'].iloc[0]}")
    frame = frame.loc[present]
    ensure_rows(frame, root, "every image listed in label.csv is missing or was dropped")
    if frame["label"].nunique() == 1:
        warn(f"{root}: every sample has the same label ({FERPLUS_CLASSES[int(frame['label'].iloc[0])]})")
    columns = ["sample_id", "path", "split", "label", *ref_columns(FERPLUS_CLASSES),
               *(f"crowd_{c}" for c in FERPLUS_CLASSES)]
    return make_table(frame[columns], FERPLUS_CLASSES, root, "ferplus")
