"""Image collections to predict on: anything that holds images, labelled or not.

``read_collection(path, fmt="auto", *, limit=None, single_label="majority", seed=0)`` returns a
:class:`Collection` whose ``table`` has one row per image and the columns

* ``sample_id`` (unique), ``path`` (absolute; FER2013's ``<csv>#<row>``), ``pixels`` (FER2013 only);
* ``source_label``: the collection's own label as text (a canonical class name when it is an
  emotion name or synonym, else the text as written), None where there is none;
* ``ref_<class>`` for the classes in ``ref_classes``: a reference distribution (FER+ votes,
  ``ref_`` columns of a CSV) where the collection has one.

What is read, for ``fmt="auto"``:

* an image file (``core.datasets.common.IMAGE_EXTENSIONS``): that one image;
* a CSV with a ``path`` column: its rows, read as the generic CSV layout reads them
  (``core.data.datasets.csv_layout``: relative paths from the CSV's folder, ``sample_id``,
  ``ref_<class>``, duplicate ids dropped). The ``label`` column is optional and read by the
  layout's rule (a class name or synonym, or an index); a label that names no class is reported
  in one warning and kept as written, an empty one is no label. Rows whose file is missing are
  dropped with one warning; when none exists it is an error;
* any other dataset layout ``detect_format`` recognises (FER+, RAF-DB, AffectNet, FER2013, a
  folder with a generic CSV): read by its reader, its labels kept as ``source_label``;
* a class-per-folder tree (some sub-folder named after an emotion, optionally inside
  train/valid/test): every image under it, labelled with its class folder's name, known or not;
* a folder holding a CSV with a ``path`` column: that CSV;
* any other folder: every image under it, recursively, unlabelled. Hidden entries are
  ignored; other files are skipped and counted (``skipped``, ``skipped_example``).

``fmt="images"`` reads a folder, a CSV or an image without labels; ``fmt="csv"`` and
``fmt="folders"`` force those readers; any other format name goes to ``load_dataset``.
``limit`` keeps the first N images, whatever the layout.
Whole-input problems (nothing there, no image in a folder, no usable row) raise
``DatasetError`` with one line naming the path and the problem.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from uldl_studio.core.classes import canonical_name
from uldl_studio.core.data.datasets.common import (
    IMAGE_EXTENSIONS, canonical_split, existing_mask, read_csv_text, require_columns, warn, warn_dropped,
)
from uldl_studio.core.data.datasets.csv_layout import (
    CsvRows, class_list_beside, csv_header, describe_unknown, drop_duplicate_ids, image_paths, pick_csv,
    prefixed_classes, read_labels, rows_of, sample_ids,
)
from uldl_studio.core.data.datasets import detect_format, load_dataset
from uldl_studio.core.table import DatasetError

COLLECTION_FORMATS = ("auto", "images", "ferplus", "rafdb", "affectnet", "fer2013", "csv", "folders", "demo")


@dataclass
class Collection:
    """What :func:`read_collection` found (see the module docstring)."""

    table: pd.DataFrame
    kind: str                      # "image", "folder", "csv", "folders" or a dataset format name
    root: str
    skipped: int = 0               # non-image files skipped in a folder tree
    skipped_example: str | None = None
    ref_classes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def labelled(self) -> int:
        """Rows that carry a source label."""
        return int(self.table["source_label"].notna().sum())

    def describe(self) -> str:
        what = {"image": "one image", "folder": "a folder of images", "csv": "a CSV of image paths",
                "folders": "class folders"}.get(self.kind, f"a {self.kind} dataset")
        count = f"{len(self)} image" + ("" if len(self) == 1 else "s")
        text = f"{count} from {self.root} ({what}"
        if self.skipped:
            files = f"{self.skipped} non-image file" + ("" if self.skipped == 1 else "s")
            text += f"; {files} skipped, e.g. {self.skipped_example}"
        return text + ")"


def is_image_file(name: str) -> bool:
    return str(name).lower().endswith(IMAGE_EXTENSIONS)


def _label_text(value) -> str | None:
    text = str(value).strip() if value is not None else ""
    if not text:
        return None
    try:
        return canonical_name(text)
    except ValueError:
        return text


def _frame(ids, paths, labels=None) -> pd.DataFrame:
    n = len(paths)
    return pd.DataFrame({"sample_id": pd.Series(list(ids), dtype=object),
                         "path": pd.Series([str(p) for p in paths], dtype=object),
                         "source_label": pd.Series(list(labels) if labels is not None else [None] * n,
                                                   dtype=object)})


# ----------------------------------------------------------------------------- single image
def _read_image_file(path: Path) -> Collection:
    path = path.resolve()
    return Collection(_frame([path.name], [path]), "image", str(path))


# ----------------------------------------------------------------------------- folder trees
def _walk(root: Path) -> tuple[list[str], int, str | None]:
    """(image paths sorted, number of other files, an example of those) under ``root``."""
    images, other, example = [], 0, None
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if is_image_file(name):
                images.append(os.path.join(dirpath, name))
            else:
                other += 1
                if example is None:
                    example = os.path.relpath(os.path.join(dirpath, name), root)
    return images, other, example


def _read_tree(root: Path, labelled: bool) -> Collection:
    root = root.resolve()
    images, other, example = _walk(root)
    if not images:
        if other == 0:
            raise DatasetError(f"{root}: the folder is empty: no files in it or its sub-folders")
        raise DatasetError(f"{root}: no images in the folder: {other} files, none with an image extension "
                           f"({', '.join(IMAGE_EXTENSIONS)}), e.g. {example}")
    ids = [Path(p).relative_to(root).as_posix() for p in images]
    labels = None
    if labelled:
        labels = []
        for sid in ids:
            parts = sid.split("/")[:-1]
            if parts and canonical_split(parts[0]):
                parts = parts[1:]
            labels.append(_label_text(parts[0]) if parts else None)
    return Collection(_frame(ids, images, labels), "folders" if labelled else "folder", str(root),
                      skipped=other, skipped_example=example)


# ----------------------------------------------------------------------------- CSV of paths
PATH_CSV_COLUMNS = ("path", "label", "sample_id")


def csv_has_path_column(path: Path) -> bool:
    return "path" in csv_header(path)


def _read_path_csv(csv_path: Path, use_labels: bool = True) -> Collection:
    """A CSV with a ``path`` column, read by the generic CSV layout's steps
    (``core.data.datasets.csv_layout``); its labels by the same rule, except that a row whose
    label names no class is kept, its label as written (see ``_source_labels``)."""
    csv_path = csv_path.resolve()
    frame = read_csv_text(csv_path, wanted=PATH_CSV_COLUMNS)
    columns = require_columns(frame, (), csv_path, optional=PATH_CSV_COLUMNS)
    if "path" not in columns:
        found = ", ".join(str(c) for c in frame.columns) or "none"
        raise DatasetError(f"{csv_path}: no path column (found columns: {found}); a CSV of images needs a "
                           f"'path' column, optionally label, sample_id and ref_<class>")
    if len(frame) == 0:
        raise DatasetError(f"{csv_path}: a header but no rows")
    if not use_labels:
        columns.pop("label", None)
    rows = rows_of(csv_path, frame, columns)
    ref_cols = prefixed_classes(frame.columns, "ref_", csv_path, strict=False)
    labels = _source_labels(rows, ref_cols) if "label" in columns else None
    out = _frame(sample_ids(rows), image_paths(rows), labels)
    for name, col in ref_cols.items():
        out[f"ref_{name}"] = pd.to_numeric(frame[col].astype(str).str.strip(), errors="coerce").to_numpy(np.float64)
    out["_row"] = rows.rows
    out = drop_duplicate_ids(out.loc[rows.keep], csv_path, rows.total)
    if len(out) == 0:
        raise DatasetError(f"{csv_path}: no usable rows (every path is empty)")
    exists = existing_mask(out["path"].tolist())
    if not exists.any():
        first = rows.written().iloc[out["_row"].iloc[0] - 1]
        raise DatasetError(f"{csv_path}: none of the {len(out)} image paths exist (relative paths are read "
                           f"from the CSV's folder {csv_path.parent}); first: {first}")
    if not exists.all():
        missing = out.loc[~exists]
        warn_dropped(csv_path, "image file not found", missing["_row"].tolist(), total=rows.total,
                     detail=f"first missing: {missing['path'].iloc[0]}")
        out = out.loc[exists]
    out = out.drop(columns="_row").reset_index(drop=True)
    return Collection(out, "csv", str(csv_path), ref_classes=list(ref_cols))


def _source_labels(rows: CsvRows, ref_cols: dict[str, str]) -> list[str | None]:
    """The rows' labels as ``source_label``: the class a label names (``csv_layout.read_labels``);
    a label that names none is reported in one warning and kept as written (prediction scores
    only the labels of the run's classes); an empty label is no label."""
    class_list = class_list_beside(rows.file)
    labels = read_labels(rows, class_list, ref_cols)
    if labels.unknown.any():
        warn(f"{rows.file}: {int(labels.unknown.sum())} of {rows.total} "
             f"{describe_unknown(rows, labels, class_list)}; kept with the label as written "
             f"(only labels of the run's classes are scored)")
    written = [_label_text(text) for text in labels.text]
    return [written[i] if labels.unknown[i] else labels.names[i] for i in range(rows.total)]


def _find_path_csv(folder: Path) -> Path | None:
    found = sorted(p for p in folder.glob("*.csv") if csv_has_path_column(p))
    if not found:
        return None
    return pick_csv(folder, found, "a path column")


# ----------------------------------------------------------------------------- dataset layouts
def _from_dataset(path, fmt: str, single_label: str, seed: int, limit: int | None) -> Collection:
    table = load_dataset(path, fmt=fmt, single_label=single_label, seed=seed, limit=limit)
    classes = list(table.attrs["classes"])
    out = _frame(table["sample_id"].astype(str), table["path"].astype(str),
                 np.asarray(classes, dtype=object)[table["label"].to_numpy(np.int64)])
    if "pixels" in table:
        out["pixels"] = table["pixels"].to_numpy()
    ref_classes = [c for c in classes if f"ref_{c}" in table]
    for c in ref_classes:
        out[f"ref_{c}"] = table[f"ref_{c}"].to_numpy(np.float64)
    kind = table.attrs.get("format", fmt)
    return Collection(out, kind, str(table.attrs.get("root", path)), ref_classes=ref_classes)


# ----------------------------------------------------------------------------- entry point
def read_collection(path: str | Path, fmt: str = "auto", *, limit: int | None = None,
                    single_label: str = "majority", seed: int = 0) -> Collection:
    """Read what ``path`` holds as a :class:`Collection` (see the module docstring)."""
    if fmt not in COLLECTION_FORMATS:
        raise DatasetError(f"unknown format {fmt!r}; expected one of {', '.join(COLLECTION_FORMATS)}")
    if limit is not None and int(limit) < 1:
        raise DatasetError(f"limit must be a positive number of images, got {limit}")
    if str(path) == "demo" or fmt == "demo":
        collection = _from_dataset(path, "demo", single_label, seed, limit)
    else:
        p = Path(path).expanduser()
        if not p.exists():
            raise DatasetError(f"{p}: no such file or folder")
        collection = _read(p, fmt, single_label, seed, limit)
    if limit:  # the first N images in all: a dataset's per-split limit would give up to 3 N
        collection.table = collection.table.head(int(limit)).reset_index(drop=True)
    collection.table.attrs = {"root": collection.root, "format": collection.kind}
    return collection


def _read(p: Path, fmt: str, single_label: str, seed: int, limit: int | None) -> Collection:
    if fmt == "images":
        if p.is_dir():
            return _read_tree(p, labelled=False)
        if is_image_file(p.name):
            return _read_image_file(p)
        return _read_path_csv(p, use_labels=False)
    if fmt == "folders":
        if not p.is_dir():
            raise DatasetError(f"{p}: --format folders expects a folder, found a file")
        return _read_tree(p, labelled=True)
    if fmt == "csv":
        if p.is_dir():
            found = _find_path_csv(p)
            if found is None:
                raise DatasetError(f"{p}: no CSV with a path column in this folder")
            p = found
        return _read_path_csv(p)
    if fmt != "auto":
        return _from_dataset(p, fmt, single_label, seed, limit)
    # auto
    if p.is_file():
        if is_image_file(p.name):
            return _read_image_file(p)
        if p.suffix.lower() in (".csv", ".tsv", ".txt") and csv_has_path_column(p):
            return _read_path_csv(p)
        try:
            detected = detect_format(p)
        except DatasetError:
            if p.suffix.lower() in (".csv", ".tsv"):
                return _read_path_csv(p)  # names the columns it found
            raise DatasetError(f"{p}: not an image (by its extension: {', '.join(IMAGE_EXTENSIONS)}), a CSV "
                               f"with a path column, or a dataset file") from None
        return _from_dataset(p, detected, single_label, seed, limit)
    try:
        detected = detect_format(p)
    except DatasetError:
        detected = None
    if detected == "folders":
        return _read_tree(p, labelled=True)
    if detected == "csv":
        found = _find_path_csv(p)
        if found is not None:
            return _read_path_csv(found)
    if detected is not None:
        return _from_dataset(p, detected, single_label, seed, limit)
    found = _find_path_csv(p)
    if found is not None:
        return _read_path_csv(found)
    return _read_tree(p, labelled=False)
