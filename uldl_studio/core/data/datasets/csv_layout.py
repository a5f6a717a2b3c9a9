"""Generic CSV layout: ``path, label`` plus optional ``split, valence, arousal, sample_id,
ref_<class>...`` (what ``uldl-studio demo-data`` writes).

Reading rules (documented for users in the README):

* UTF-8, with or without BOM; the delimiter is sniffed from the header (``,`` ``;`` TAB ``|``);
  column names are case-insensitive.
* ``path``: relative paths are resolved against the CSV's folder; ``\\`` is accepted as a
  separator. Rows whose image does not exist are dropped with a warning.
* ``label``: a class name or synonym (``happy``, ``Anger``...) or an integer index.
  - Names: the classes are the names present plus those of the ``ref_<class>`` columns, in
    canonical order (``classes.CANONICAL``).
  - Integers (every label is one): they index, in this order of precedence, the names in a
    ``classes.txt`` beside the CSV (one per line), the order of the ``ref_<class>`` columns,
    the order of ``d_<class>`` columns (a soft-label export), else ``classes.CANONICAL``.
  - A ``classes.txt`` beside the CSV also fixes the class list and order for names.
  Unknown names and out-of-range indices drop their rows with a warning listing them.
* ``split``: train / valid / test or a synonym (training, val, validation, dev, testing...).
  Without a split column (or for empty cells) samples are assigned 80/10/10 by an MD5 hash of
  the sample id: deterministic, independent of the training seed and of row order.
* ``sample_id``: defaults to the path as written in the CSV. Duplicate ids keep the first
  row and drop the others with a warning.
* ``valence`` / ``arousal``: numbers in [-1, 1]; empty, NaN, text or out-of-range values
  become NaN with a warning (the row is kept: V-A is optional per sample).
* ``votes_<class>``: vote counts per class (people without names), kept as ``crowd_<class>``
  (``core.annotations``); empty, negative or non-numeric cells count 0;
* ``ref_<class>``: a reference distribution; class names through synonyms; rows with negative,
  missing or all-zero values are dropped with a warning; rows are normalised to sum 1.
  ``single_label="sample"`` draws each label from this distribution with a seeded generator.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from uldl_studio.core.classes import CANONICAL, canonical_name
from uldl_studio.core.data.datasets.common import (
    canonical_split, check_one_class, drop_missing_files, ensure_rows, find_csv, first_rows, hash_split,
    read_csv_columns, read_text_head, sample_from_counts, sniff_delimiter, warn, warn_dropped,
)
from uldl_studio.core.table import DatasetError, make_table, ref_columns

REQUIRED = ("path", "label")
OPTIONAL = ("split", "valence", "arousal", "sample_id")
PREFERRED_NAMES = ("labels.csv", "dataset.csv", "samples.csv", "data.csv", "annotations.csv", "train.csv")
_INT = re.compile(r"^[+-]?[0-9]+$")


def csv_header(path: Path) -> list[str]:
    """Lower-case column names of a CSV's first line (delimiter sniffed); [] when unreadable."""
    try:
        head = read_text_head(path, 8192)
    except DatasetError:
        return []
    line = next((ln for ln in head.splitlines() if ln.strip()), "")
    delim = sniff_delimiter(line, REQUIRED)
    return [f.strip().strip('"').strip().lower() for f in line.split(delim)]


def is_generic_csv(path: Path) -> bool:
    return set(REQUIRED) <= set(csv_header(path))


def generic_csv_in(folder: Path) -> Path | None:
    """The CSV with columns path and label in ``folder`` (see :func:`pick_csv`); None when none."""
    found = sorted(p for p in folder.glob("*.csv") if is_generic_csv(p))
    return pick_csv(folder, found, "columns path, label") if found else None


def pick_csv(folder: Path, found: list[Path], what: str) -> Path:
    """The CSV of ``found`` to read: a preferred name first, else the only one (else an error)."""
    for name in PREFERRED_NAMES:
        for p in found:
            if p.name.lower() == name:
                return p
    if len(found) > 1:
        raise DatasetError(f"{folder}: several CSVs with {what} ({', '.join(p.name for p in found)}); "
                           f"pass the file itself")
    return found[0]


def drop_duplicate_ids(out: pd.DataFrame, csv_path: Path, total: int) -> pd.DataFrame:
    """``out`` without repeated ``sample_id`` rows (the first kept), with one warning naming them
    by their CSV row (``_row``)."""
    dup = out["sample_id"].duplicated().to_numpy()
    if dup.any():
        warn_dropped(csv_path, "duplicate sample id (first occurrence kept)", out.loc[dup, "_row"].tolist(),
                     total=total, detail=f"first duplicate: {out.loc[dup, 'sample_id'].iloc[0]!r}")
        out = out.loc[~dup]
    return out


def read_class_list(path: Path) -> list[str]:
    names = [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    try:
        classes = [canonical_name(n) for n in names]
    except ValueError as exc:
        raise DatasetError(f"{path}: {exc}") from exc
    if not classes or len(set(classes)) != len(classes):
        raise DatasetError(f"{path}: expected distinct emotion names, one per line; found {names}")
    return classes


def prefixed_classes(columns, prefix: str, file: Path, strict: bool = True) -> dict[str, str]:
    """{canonical class: column} for columns named ``<prefix><class>``; DatasetError on unknown
    names when ``strict`` (else they are ignored)."""
    out: dict[str, str] = {}
    for col in columns:
        if str(col).lower().startswith(prefix):
            raw = str(col)[len(prefix):]
            try:
                name = canonical_name(raw)
            except ValueError as exc:
                if not strict:
                    continue
                raise DatasetError(f"{file}: column {col!r}: {exc}") from exc
            if name in out:
                raise DatasetError(f"{file}: columns {out[name]!r} and {col!r} name the same class {name}")
            out[name] = col
    return out


def load_csv(path: str | Path, *, single_label: str = "majority", seed: int = 0) -> pd.DataFrame:
    if single_label not in ("majority", "sample"):
        raise DatasetError(f"single_label must be 'majority' or 'sample', got {single_label!r}")
    csv_path = find_csv(path, generic_csv_in, "no CSV with columns path, label in this folder").resolve()
    base = csv_path.parent
    frame, cols = read_csv_columns(csv_path, REQUIRED, OPTIONAL)
    total = len(frame)
    ref_cols = prefixed_classes(frame.columns, "ref_", csv_path)
    d_cols = prefixed_classes(frame.columns, "d_", csv_path, strict=False)
    rows = np.arange(1, total + 1)

    written = frame[cols["path"]].astype(str).str.strip().str.replace("\\", "/", regex=False)
    labels_raw = frame[cols["label"]].astype(str).str.strip()
    keep = np.ones(total, dtype=bool)
    empty = (written == "").to_numpy()
    if empty.any():
        warn_dropped(csv_path, "empty path", rows[empty], total=total)
    keep &= ~empty
    empty = (labels_raw == "").to_numpy() & keep
    if empty.any():
        warn_dropped(csv_path, "empty label", rows[empty], total=total)
    keep &= ~empty

    # --- labels and classes
    class_file = base / "classes.txt"
    class_list = read_class_list(class_file) if class_file.is_file() else None
    integer_mode = bool(keep.any()) and bool(labels_raw[keep].str.match(_INT).all())
    labels = np.full(total, -1, dtype=np.int64)
    if integer_mode:
        classes = class_list or list(ref_cols) or list(d_cols) or list(CANONICAL)
        codes = pd.to_numeric(labels_raw.where(keep, "-1"), errors="coerce").fillna(-1).to_numpy()
        bad = keep & ((codes < 0) | (codes >= len(classes)))
        if bad.any():
            warn_dropped(csv_path, f"label index outside 0..{len(classes) - 1}", rows[bad], total=total,
                         detail=f"first bad value: {labels_raw[bad].iloc[0]!r}; classes: {', '.join(classes)}")
        keep &= ~bad
        labels[keep] = codes[keep].astype(np.int64)
    else:
        mapping: dict[str, str | None] = {}
        for value in labels_raw[keep].unique():
            try:
                name = canonical_name(value)
            except ValueError:
                name = None
            if class_list is not None and name not in class_list:
                name = None
            mapping[value] = name
        names = labels_raw.map(lambda v: mapping.get(v))
        unknown = keep & names.isna().to_numpy()
        if unknown.any():
            counts = labels_raw[unknown].value_counts()
            listing = ", ".join(
                f"{v!r} ({n}x, first row {rows[unknown & (labels_raw == v).to_numpy()][0]})"
                for v, n in counts.head(8).items())
            more = f" and {len(counts) - 8} more" if len(counts) > 8 else ""
            accepted = ", ".join(class_list) if class_list else ", ".join(CANONICAL) + " or a synonym"
            warn(f"{csv_path}: dropped {int(unknown.sum())} of {total} rows with unknown label names: "
                 f"{listing}{more}; expected {accepted}")
        keep &= ~unknown
        present = set(names[keep])
        classes = class_list or [c for c in CANONICAL if c in present or c in ref_cols]
        index = {c: i for i, c in enumerate(classes)}
        labels[keep] = names[keep].map(index).to_numpy(np.int64)
    if not keep.any():
        raise DatasetError(f"{csv_path}: the dataset has no usable samples (every row was dropped; see warnings)")

    out = pd.DataFrame({"_row": rows, "written": written, "label": labels})
    out["path"] = [os.path.normpath(os.path.join(base, os.path.expanduser(p))) if p else "" for p in written]

    # --- reference distribution
    if ref_cols:
        extra = [c for c in ref_cols if c not in classes]
        if extra:
            warn(f"{csv_path}: ignoring reference columns of classes outside the label set: "
                 f"{', '.join(ref_cols[c] for c in extra)}")
        ref = np.zeros((total, len(classes)), dtype=np.float64)
        for j, c in enumerate(classes):
            if c in ref_cols:
                ref[:, j] = pd.to_numeric(frame[ref_cols[c]].str.strip(), errors="coerce").to_numpy(np.float64)
        sums = ref.sum(axis=1)
        bad = keep & ~(np.isfinite(ref).all(axis=1) & (ref >= 0).all(axis=1) & (sums > 0))
        if bad.any():
            warn_dropped(csv_path, "reference distribution (ref_ columns) missing, negative or all zero",
                         rows[bad], total=total)
        keep &= ~bad
        renorm = keep & (np.abs(sums - 1.0) > 1e-9)
        ref[renorm] /= sums[renorm, None]
        for j, c in enumerate(ref_columns(classes)):
            out[c] = ref[:, j]
        if single_label == "sample":
            drawn = sample_from_counts(np.where(keep[:, None], ref, 1.0), seed)
            labels = np.where(keep, drawn, labels)
            out["label"] = labels
    elif single_label == "sample":
        raise DatasetError(f"{csv_path}: single_label='sample' needs ref_<class> columns "
                           f"(a distribution to draw from); this CSV has none")

    # --- split
    ids = frame[cols["sample_id"]].astype(str).str.strip() if "sample_id" in cols else written
    ids = ids.where(ids != "", written)
    out["sample_id"] = ids.to_numpy()
    if "split" in cols:
        raw_split = frame[cols["split"]].astype(str).str.strip()
        split = raw_split.map(lambda s: canonical_split(s) if s else "")
        unknown = keep & split.isna().to_numpy()
        if unknown.any():
            warn_dropped(csv_path, "unknown split (expected train, valid or test)", rows[unknown], total=total,
                         detail=f"first bad value: {raw_split[unknown].iloc[0]!r}")
        keep &= ~unknown
        split = np.array(split.fillna("").tolist(), dtype=object)
        blank = split == ""
        if blank.any():
            split[blank] = hash_split(out["sample_id"][blank].tolist())
        out["split"] = split
    else:
        out["split"] = hash_split(out["sample_id"].tolist())

    # --- valence / arousal (kept per row; bad values become NaN)
    for col in ("valence", "arousal"):
        if col in cols:
            raw = frame[cols[col]].astype(str).str.strip()
            values = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64, copy=True)
            wrong = keep & ~(np.abs(values) <= 1)
            if wrong.any():
                warn(f"{csv_path}: {int(wrong.sum())} rows have a {col} that is empty, NaN, not a number or "
                     f"outside [-1, 1]; set to NaN (first rows: {first_rows(rows[wrong])}; "
                     f"first value: {raw[wrong].iloc[0]!r})")
            values[wrong] = np.nan
            out[col] = values

    out = out.loc[keep]
    out = drop_duplicate_ids(out, csv_path, total)
    out = drop_missing_files(out, csv_path)
    ensure_rows(out, csv_path, "see the warnings for the dropped rows")
    check_one_class(out["label"].to_numpy(), classes, csv_path)
    columns = ["sample_id", "path", "split", "label"]
    columns += [c for c in ("valence", "arousal") if c in out] + [c for c in ref_columns(classes) if c in out]
    vote_cols = prefixed_classes(frame.columns, "votes_", csv_path, strict=False)
    if vote_cols:  # the crowd's vote counts per class (core.annotations); bad cells count 0
        for c in classes:
            raw = frame[vote_cols[c]].str.strip() if c in vote_cols else pd.Series("0", index=frame.index)
            counts = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
            counts = np.where(np.isfinite(counts) & (counts >= 0), np.round(counts), 0.0)
            out[f"crowd_{c}"] = counts[out["_row"].to_numpy() - 1]
            columns.append(f"crowd_{c}")
    return make_table(out[columns], classes, csv_path, "csv")
