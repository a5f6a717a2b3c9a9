"""Generic CSV layout: ``path, label`` plus optional ``split, valence, arousal, sample_id,
ref_<class>...`` (what ``uldl-studio demo-data`` writes).

``load_csv`` reads it as a training table. Its steps are shared with the reader of CSVs of
images to predict on (``core.data.image_collection``): ``read_rows``/``rows_of`` (the rows as
text, empty paths dropped), ``image_paths``, ``sample_ids`` and ``read_labels`` (the label rule
below).

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
  - A label that names no class (an unknown name, an index out of range) is reported in one
    warning naming the file, the labels, their counts and first rows. A training table
    (``load_csv``) drops those rows, and rows with an empty label; a collection to predict on
    (``core.data.image_collection``, where the label column is optional) keeps them, with the
    label as written, and reads an empty label as no label.
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
from dataclasses import dataclass
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


# ----------------------------------------------------------------------------- rows
@dataclass
class CsvRows:
    """A CSV of image paths read as text, before its labels are interpreted (see ``read_rows``).

    ``columns`` maps the wanted column names to the file's; ``keep`` marks the rows still in:
    every step that drops rows clears them there, with one warning (``drop``)."""

    file: Path
    frame: pd.DataFrame
    columns: dict[str, str]
    keep: np.ndarray

    @property
    def total(self) -> int:
        return len(self.frame)

    @property
    def rows(self) -> np.ndarray:
        """1-based data-row numbers, as the warnings name them."""
        return np.arange(1, self.total + 1)

    def text(self, name: str) -> pd.Series:
        """The stripped cells of the wanted column ``name``."""
        return self.frame[self.columns[name]].astype(str).str.strip()

    def written(self) -> pd.Series:
        """The paths as written, ``\\`` read as ``/``."""
        return self.text("path").str.replace("\\", "/", regex=False)

    def drop(self, mask: np.ndarray, reason: str, detail: str = "") -> None:
        """Drop the kept rows of ``mask``, with one warning naming them."""
        mask = mask & self.keep
        if mask.any():
            warn_dropped(self.file, reason, self.rows[mask], total=self.total, detail=detail)
        self.keep &= ~mask


def read_rows(file: Path, required=REQUIRED, optional=OPTIONAL) -> CsvRows:
    """``file``'s rows (DatasetError for an unreadable file, missing columns or no rows), those
    with an empty path dropped."""
    frame, columns = read_csv_columns(file, required, optional)
    return rows_of(file, frame, columns)


def rows_of(file: Path, frame: pd.DataFrame, columns: dict[str, str]) -> CsvRows:
    """``CsvRows`` of a frame already read, the rows with an empty path dropped."""
    rows = CsvRows(Path(file), frame, columns, np.ones(len(frame), dtype=bool))
    rows.drop((rows.written() == "").to_numpy(), "empty path")
    return rows


def image_paths(rows: CsvRows) -> list[str]:
    """Absolute, normalised image paths (relative ones from the CSV's folder; "" where empty)."""
    base = rows.file.parent
    return [os.path.normpath(os.path.join(base, os.path.expanduser(p))) if p else "" for p in rows.written()]


def sample_ids(rows: CsvRows) -> pd.Series:
    """The ``sample_id`` column, else (and where it is empty) the path as written."""
    written = rows.written()
    ids = rows.text("sample_id") if "sample_id" in rows.columns else written
    return ids.where(ids != "", written)


# ----------------------------------------------------------------------------- labels
@dataclass
class Labels:
    """The ``label`` column read by the one rule of this module (docstring, ``label``)."""

    names: np.ndarray       # canonical class name per row; None where empty or unknown
    unknown: np.ndarray     # kept rows whose label names no class
    indices: bool           # every label is an integer index into ``order``
    order: list[str]        # the classes an index names
    text: pd.Series         # the labels as written


def class_list_beside(file: Path) -> list[str] | None:
    """The class list of a ``classes.txt`` beside ``file``, None when there is none."""
    path = file.parent / "classes.txt"
    return read_class_list(path) if path.is_file() else None


def read_labels(rows: CsvRows, class_list: list[str] | None, ref_cols: dict[str, str]) -> Labels:
    """Read the kept rows' labels: all integers → indices into ``classes.txt``, else the
    ``ref_`` column order, the ``d_`` column order, the canonical order; otherwise names and
    synonyms (only those of ``classes.txt`` when there is one)."""
    text = rows.text("label")
    given = rows.keep & (text != "").to_numpy()
    d_cols = prefixed_classes(rows.frame.columns, "d_", rows.file, strict=False)
    order = class_list or list(ref_cols) or list(d_cols) or list(CANONICAL)
    names = np.full(rows.total, None, dtype=object)
    indices = bool(given.any()) and bool(text[given].str.match(_INT).all())
    if indices:
        codes = pd.to_numeric(text.where(given, "-1"), errors="coerce").fillna(-1).to_numpy()
        valid = given & (codes >= 0) & (codes < len(order))
        names[valid] = np.asarray(order, dtype=object)[codes[valid].astype(np.int64)]
    else:
        mapping = {value: _class_name(value, class_list) for value in text[given].unique()}
        names[given] = text[given].map(mapping).to_numpy(dtype=object)
    unknown = given & pd.isna(names)
    return Labels(names, unknown, indices, order, text)


def _class_name(value: str, class_list: list[str] | None) -> str | None:
    try:
        name = canonical_name(value)
    except ValueError:
        return None
    return name if class_list is None or name in class_list else None


def describe_unknown(rows: CsvRows, labels: Labels, class_list: list[str] | None) -> str:
    """``rows with unknown label names: 'smirk' (2x, first row 2), ...; expected ...`` (or with
    label indices outside 0..k-1)."""
    unknown = labels.unknown
    counts = labels.text[unknown].value_counts()
    listing = ", ".join(f"{v!r} ({n}x, first row {rows.rows[unknown & (labels.text == v).to_numpy()][0]})"
                        for v, n in counts.head(8).items())
    more = f" and {len(counts) - 8} more" if len(counts) > 8 else ""
    if labels.indices:
        return (f"rows with label indices outside 0..{len(labels.order) - 1}: {listing}{more}; "
                f"classes: {', '.join(labels.order)}")
    accepted = ", ".join(class_list) if class_list else ", ".join(CANONICAL) + " or a synonym"
    return f"rows with unknown label names: {listing}{more}; expected {accepted}"


# ----------------------------------------------------------------------------- the generic layout
def load_csv(path: str | Path, *, single_label: str = "majority", seed: int = 0) -> pd.DataFrame:
    """The generic CSV layout as a training table (module docstring)."""
    if single_label not in ("majority", "sample"):
        raise DatasetError(f"single_label must be 'majority' or 'sample', got {single_label!r}")
    rows = read_rows(find_csv(path, generic_csv_in, "no CSV with columns path, label in this folder").resolve())
    ref_cols = prefixed_classes(rows.frame.columns, "ref_", rows.file)
    rows.drop((rows.text("label") == "").to_numpy(), "empty label")
    classes, labels = _training_labels(rows, ref_cols)
    out = pd.DataFrame({"_row": rows.rows, "label": labels, "path": image_paths(rows)})
    _add_reference(rows, out, classes, ref_cols, single_label, seed)
    out["sample_id"] = sample_ids(rows).to_numpy()
    out["split"] = _splits(rows, out["sample_id"])
    _add_valence_arousal(rows, out)
    return _training_table(rows, out, classes)


def _training_labels(rows: CsvRows, ref_cols: dict[str, str]) -> tuple[list[str], np.ndarray]:
    """(classes, label index per row, -1 where dropped): rows with an unknown label are dropped
    with one warning (a sample to train on needs a class)."""
    class_list = class_list_beside(rows.file)
    labels = read_labels(rows, class_list, ref_cols)
    if labels.unknown.any():
        warn(f"{rows.file}: dropped {int(labels.unknown.sum())} of {rows.total} "
             f"{describe_unknown(rows, labels, class_list)}")
    rows.keep &= ~labels.unknown
    if not rows.keep.any():
        raise DatasetError(f"{rows.file}: the dataset has no usable samples (every row was dropped; see warnings)")
    if labels.indices:
        classes = labels.order
    else:
        present = set(labels.names[rows.keep])
        classes = class_list or [c for c in CANONICAL if c in present or c in ref_cols]
    index = {c: i for i, c in enumerate(classes)}
    codes = np.full(rows.total, -1, dtype=np.int64)
    codes[rows.keep] = [index[name] for name in labels.names[rows.keep]]
    return classes, codes


def _add_reference(rows: CsvRows, out: pd.DataFrame, classes: list[str], ref_cols: dict[str, str],
                   single_label: str, seed: int) -> None:
    """The ``ref_<class>`` columns, normalised (rows with a bad one dropped); with
    ``single_label="sample"`` each label drawn from them."""
    if not ref_cols:
        if single_label == "sample":
            raise DatasetError(f"{rows.file}: single_label='sample' needs ref_<class> columns "
                               f"(a distribution to draw from); this CSV has none")
        return
    extra = [c for c in ref_cols if c not in classes]
    if extra:
        warn(f"{rows.file}: ignoring reference columns of classes outside the label set: "
             f"{', '.join(ref_cols[c] for c in extra)}")
    ref = np.zeros((rows.total, len(classes)), dtype=np.float64)
    for j, c in enumerate(classes):
        if c in ref_cols:
            ref[:, j] = pd.to_numeric(rows.frame[ref_cols[c]].str.strip(), errors="coerce").to_numpy(np.float64)
    sums = ref.sum(axis=1)
    rows.drop(~(np.isfinite(ref).all(axis=1) & (ref >= 0).all(axis=1) & (sums > 0)),
              "reference distribution (ref_ columns) missing, negative or all zero")
    renorm = rows.keep & (np.abs(sums - 1.0) > 1e-9)
    ref[renorm] /= sums[renorm, None]
    for j, c in enumerate(ref_columns(classes)):
        out[c] = ref[:, j]
    if single_label == "sample":
        drawn = sample_from_counts(np.where(rows.keep[:, None], ref, 1.0), seed)
        out["label"] = np.where(rows.keep, drawn, out["label"].to_numpy())


def _splits(rows: CsvRows, ids: pd.Series) -> np.ndarray:
    """The ``split`` column as train/valid/test (rows with an unknown split dropped); rows
    without one split 80/10/10 by a hash of their sample id."""
    if "split" not in rows.columns:
        return hash_split(ids.tolist())
    raw = rows.text("split")
    split = raw.map(lambda s: canonical_split(s) if s else "")
    unknown = rows.keep & split.isna().to_numpy()
    if unknown.any():
        rows.drop(unknown, "unknown split (expected train, valid or test)",
                  detail=f"first bad value: {raw[unknown].iloc[0]!r}")
    split = np.array(split.fillna("").tolist(), dtype=object)
    blank = split == ""
    if blank.any():
        split[blank] = hash_split(ids[blank].tolist())
    return split


def _add_valence_arousal(rows: CsvRows, out: pd.DataFrame) -> None:
    """``valence``/``arousal`` per row; a value that is no number in [-1, 1] becomes NaN (the row
    is kept), with one warning per column."""
    for col in ("valence", "arousal"):
        if col not in rows.columns:
            continue
        raw = rows.text(col)
        values = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64, copy=True)
        wrong = rows.keep & ~(np.abs(values) <= 1)
        if wrong.any():
            warn(f"{rows.file}: {int(wrong.sum())} rows have a {col} that is empty, NaN, not a number or "
                 f"outside [-1, 1]; set to NaN (first rows: {first_rows(rows.rows[wrong])}; "
                 f"first value: {raw[wrong].iloc[0]!r})")
        values[wrong] = np.nan
        out[col] = values


def _training_table(rows: CsvRows, out: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """The kept rows without duplicate ids or missing files, and the crowd's ``votes_`` columns,
    as a SampleTable (DatasetError when no row or one class is left)."""
    out = out.loc[rows.keep]
    out = drop_duplicate_ids(out, rows.file, rows.total)
    out = drop_missing_files(out, rows.file)
    ensure_rows(out, rows.file, "see the warnings for the dropped rows")
    check_one_class(out["label"].to_numpy(), classes, rows.file)
    columns = ["sample_id", "path", "split", "label"]
    columns += [c for c in ("valence", "arousal") if c in out] + [c for c in ref_columns(classes) if c in out]
    vote_cols = prefixed_classes(rows.frame.columns, "votes_", rows.file, strict=False)
    if vote_cols:  # the crowd's vote counts per class (core.annotations); bad cells count 0
        for c in classes:
            raw = rows.frame[vote_cols[c]].str.strip() if c in vote_cols else pd.Series("0", index=rows.frame.index)
            counts = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
            counts = np.where(np.isfinite(counts) & (counts >= 0), np.round(counts), 0.0)
            out[f"crowd_{c}"] = counts[out["_row"].to_numpy() - 1]
            columns.append(f"crowd_{c}")
    return make_table(out[columns], classes, rows.file, "csv")
