"""Soft-label files: the writer and the validating reader (README, "Soft-label CSV").

CSV columns, in this order::

    sample_id, path, split, label, label_name, original_label, original_label_name, edited,
    unsure, reviewed, valence, arousal, <exported scores>…, d_<class>…, p_<class>…

The exported scores are the registered scores with ``exported=True`` (``core.scores``), in
registration order: ``lambda, ambiguity, self_confidence, margin, aum, confidence_mean,
variability, knn_disagreement, entropy`` (``lambda`` keeps its place after ``arousal``).  A score is the table's own column when it has one
(a file read back), else computed from the table; NaN where it does not apply.

* ``label`` is the label after the annotator's edits (``core.edits.apply_edits``),
  ``original_label`` the dataset's own (``label_given``); ``edited`` says whether they differ;
  ``label_name`` / ``original_label_name`` are ``classes[label]`` / ``classes[original_label]``.
* ``d_<class>`` is the soft label: the run's (the table's ``soft_<class>`` columns when it has
  them, a run's ``samples.csv``: the constructed distribution mixed with the calibrated
  prediction, ``core.soft_labels``; else its ``d_<class>`` columns, the constructed
  distribution) with the annotator's review applied (``core.soft_labels.reviewed_soft_labels``):
  a relabelled row puts all its mass on the annotator's label, an unsure row keeps at most
  ``UNSURE_LABEL_MASS`` (0.5) on its label. ``p_<class>`` is the model's prediction,
  unchanged by edits. A table without ``d_`` columns (no training results) gets the one-hot of
  ``label``; rows whose ``d`` is all NaN (samples no distribution was constructed for) get
  it too. A table without ``p_`` columns, or rows with all-NaN ``p``, get ``d``.
* Several people's votes (``core.annotations``): a table with ``combined_<class>`` columns
  (``with_votes``) exports them as ``d_<class>`` on every row where they are finite (a sample
  with at least two votes), instead of the rule above; the table's ``votes_<class>…,
  n_voters, vote_agreement`` columns are written after the ``p_`` columns (NaN: empty), and
  read back as floats.
* ``unsure`` (marked unsure) and ``reviewed`` (the annotator labelled or confirmed it) come
  from the journal. Missing ``edited``/``unsure``/``reviewed`` → False (the reader accepts files
  without ``original_label``/``original_label_name`` (then = ``label``) and without
  ``unsure``/``reviewed``); missing ``valence``/``arousal`` → NaN.
* Floats are written with ``repr`` (the shortest string that reads back as the same
  float64), so ``read_soft_labels(write_soft_labels(t))`` gives bit-identical values. NaN is
  an empty field. ``edited``, ``unsure`` and ``reviewed`` are ``True``/``False``.
* Each distribution sums to 1: a row off by more than 1e-9 but at most 1e-3 (float32 drift)
  is renormalised; a row further off, or with negative / non-finite entries, is an error.
  Rows within 1e-9 are written untouched (lossless).

The file is written atomically (``core.atomic``): a crash or error half-way leaves the
previous file as it was. A ``.json`` path writes the JSON flavour instead:
``{"format": "uldl-soft-labels", "version": 1, "classes": [...], "columns": [...],
"rows": [[...], ...]}`` with NaN as ``null``; ``read_soft_labels`` reads both.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from uldl_studio.core.labels import scores
from uldl_studio.core.atomic import atomic_open
from uldl_studio.core.data.datasets.common import sniff_delimiter
from uldl_studio.core.labels.annotations import vote_table
from uldl_studio.core.labels.soft_labels import reviewed_soft_labels
from uldl_studio.core.table import SPLITS, DatasetError, classes_of, d_columns, p_columns

__all__ = ["write_soft_labels", "read_soft_labels", "soft_label_columns", "vote_columns", "FIXED_COLUMNS"]

#: the annotator's review state per sample; ``unsure`` and ``reviewed`` are optional when reading
FLAG_COLUMNS = ("edited", "unsure", "reviewed")
_OPTIONAL_FLAGS = ("unsure", "reviewed")
#: the dataset's own label beside the edited one; optional when reading (older files)
ORIGINAL_COLUMNS = ("original_label", "original_label_name")
FIXED_COLUMNS = ("sample_id", "path", "split", "label", "label_name", *ORIGINAL_COLUMNS, *FLAG_COLUMNS,
                 "valence", "arousal")
_FLOAT_FIXED = ("valence", "arousal")
_RANGE_SLACK = 1e-9
_RENORMALISE_ABOVE = 1e-9  # rows closer to 1 than this are written untouched
_WRITE_TOLERANCE = 1e-3    # further off than this: an error, not drift
_READ_TOLERANCE = 1e-6
_JSON_FORMAT = "uldl-soft-labels"


def score_columns() -> list[str]:
    """The exported scores' columns, in registry order."""
    return [s.name for s in scores.exported()]


def vote_columns(classes: Sequence[str]) -> list[str]:
    """The people's votes, written after ``p_`` when the table has them (``core.annotations``)."""
    return [*(f"votes_{c}" for c in classes), "n_voters", "vote_agreement"]


def soft_label_columns(classes: Sequence[str], score_names: Sequence[str] | None = None,
                       flags: Sequence[str] = FLAG_COLUMNS, original: bool = True,
                       votes: bool = False) -> list[str]:
    """The exact column order of a soft-label file for ``classes`` (scores: all exported;
    ``votes``: with the vote columns at the end)."""
    score_names = score_columns() if score_names is None else list(score_names)
    fixed = [c for c in FIXED_COLUMNS if c not in FLAG_COLUMNS or c in flags]
    if not original:
        fixed = [c for c in fixed if c not in ORIGINAL_COLUMNS]
    return [*fixed, *score_names, *d_columns(classes), *p_columns(classes),
            *(vote_columns(classes) if votes else ())]


def _range_text(score: scores.Score) -> str:
    lo, hi = score.value_range or (-math.inf, math.inf)
    return f"[{lo:g}, {hi:g}]"


def _out_of_range(values: np.ndarray, score: scores.Score) -> np.ndarray:
    """Rows whose finite value lies outside the score's declared range (or is infinite)."""
    bad = np.isinf(values)
    if score.value_range is not None:
        lo, hi = score.value_range
        with np.errstate(invalid="ignore"):
            bad |= (values < lo - _RANGE_SLACK) | (values > hi + _RANGE_SLACK)
    return bad


# -- writing ------------------------------------------------------------------------------
def _float_text(value: float) -> str:
    return "" if math.isnan(value) else repr(value)


def _distribution(table: pd.DataFrame, columns: list[str], fallback: np.ndarray, what: str) -> np.ndarray:
    """(n, m) float64 distribution from ``columns``; all-NaN rows take ``fallback``'s row."""
    values = table[columns].to_numpy(np.float64, copy=True)
    empty = np.isnan(values).all(axis=1)
    values[empty] = fallback[empty]
    ids = table["sample_id"].to_numpy()
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"row {row + 1} ({ids[row]!r}): {what} has NaN or infinite entries")
    bad = (values < 0).any(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"row {row + 1} ({ids[row]!r}): {what} has negative entries")
    sums = values.sum(axis=1)
    off = np.abs(sums - 1.0)
    bad = off > _WRITE_TOLERANCE
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"row {row + 1} ({ids[row]!r}): {what} sums to {float(sums[row])!r}, not 1")
    drift = off > _RENORMALISE_ABOVE
    values[drift] /= sums[drift, None]
    return values


def _export_frame(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The table as the export columns (validated, filled, renormalised)."""
    classes = classes_of(table)
    if not classes:
        raise ValueError("the table has no classes")
    missing = [c for c in ("sample_id", "path", "split", "label") if c not in table]
    if missing:
        raise ValueError(f"the table lacks columns {missing}")
    n, m = len(table), len(classes)
    out = pd.DataFrame(index=pd.RangeIndex(n))
    for col in ("sample_id", "path", "split"):
        out[col] = table[col].astype(str).to_numpy()
    ids = out["sample_id"].to_numpy()
    if (out["sample_id"] == "").any():
        raise ValueError(f"row {int(np.flatnonzero(out['sample_id'] == '')[0]) + 1}: empty sample_id")
    if out["sample_id"].duplicated().any():
        row = int(np.flatnonzero(out["sample_id"].duplicated().to_numpy())[0])
        raise ValueError(f"row {row + 1}: duplicate sample_id {ids[row]!r}")
    bad_split = ~out["split"].isin(SPLITS).to_numpy()
    if bad_split.any():
        row = int(np.flatnonzero(bad_split)[0])
        raise ValueError(f"row {row + 1} ({ids[row]!r}): split {out['split'][row]!r} is not one of {SPLITS}")
    label = table["label"].to_numpy()
    if label.dtype.kind not in "iu":
        raise ValueError(f"label column must hold ints, not {label.dtype}")
    label = label.astype(np.int64)
    bad = (label < 0) | (label >= m)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"row {row + 1} ({ids[row]!r}): label {label[row]} is outside 0..{m - 1}")
    out["label"] = label
    out["label_name"] = np.asarray(classes, dtype=object)[label]
    given = _original_labels(table, label, m, ids)
    out["original_label"] = given
    out["original_label_name"] = np.asarray(classes, dtype=object)[given]
    for flag in FLAG_COLUMNS:
        out[flag] = (table[flag].fillna(False).to_numpy(dtype=bool) if flag in table else np.zeros(n, dtype=bool))
    for col in _FLOAT_FIXED:
        values = table[col].to_numpy(np.float64) if col in table else np.full(n, np.nan)
        bad = ~np.isnan(values) & ~((values >= -1.0) & (values <= 1.0))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"row {row + 1} ({ids[row]!r}): {col} {float(values[row])!r} is outside [-1, 1]")
        out[col] = values
    one_hot = np.eye(m, dtype=np.float64)[label]
    dcols, pcols = d_columns(classes), p_columns(classes)
    for cols, kind in ((dcols, "d"), (pcols, "p")):
        present = [c for c in cols if c in table]
        if present and len(present) != m:
            raise ValueError(f"the table has only some {kind}_ columns; missing {[c for c in cols if c not in table]}")
    # a run's soft labels (soft_<class>, core.soft_labels) are what it exports as d
    soft_cols = [f"soft_{c}" for c in classes]
    source = soft_cols if all(c in table for c in soft_cols) else dcols
    d = _distribution(table, source, one_hot, "d") if source[0] in table else one_hot
    p = _distribution(table, pcols, d, "p") if pcols[0] in table else d.copy()
    d = reviewed_soft_labels(d, label, out["edited"].to_numpy(), out["unsure"].to_numpy(), fallback=p)
    combined_cols = [f"combined_{c}" for c in classes]  # several people's votes combined
    if all(c in table for c in combined_cols):
        combined = table[combined_cols].to_numpy(np.float64)
        use = np.isfinite(combined).all(axis=1) & (combined >= 0).all(axis=1) & (combined.sum(axis=1) > 0)
        d[use] = combined[use] / combined[use].sum(axis=1, keepdims=True)
    out[dcols] = d
    out[pcols] = p
    if all(c in table for c in vote_columns(classes)):
        for col in vote_columns(classes):
            out[col] = table[col].to_numpy(np.float64)
    for score in scores.exported():
        values = (table[score.name].to_numpy(np.float64) if score.name in table else score.values(table))
        bad = _out_of_range(values, score)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"row {row + 1} ({ids[row]!r}): {score.name} {float(values[row])!r} is outside "
                             f"{_range_text(score)}")
        out[score.name] = values
    return out, classes


def _original_labels(table: pd.DataFrame, label: np.ndarray, m: int, ids: np.ndarray) -> np.ndarray:
    """The dataset's own label per row: ``label_given`` (``apply_edits``), ``original_label``
    (a file read back), else ``label``."""
    for col in ("label_given", "original_label"):
        if col in table:
            values = table[col].to_numpy()
            if values.dtype.kind not in "iu":
                raise ValueError(f"{col} column must hold ints, not {values.dtype}")
            values = values.astype(np.int64)
            bad = (values < 0) | (values >= m)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise ValueError(f"row {row + 1} ({ids[row]!r}): {col} {values[row]} is outside 0..{m - 1}")
            return values
    return label.copy()


def csv_field(text: str) -> str:
    """RFC 4180 quoting; unlike ``csv.writer`` with a ``\n`` terminator it also quotes a lone ``\r``."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _rows(frame: pd.DataFrame, classes: Sequence[str]) -> Iterator[list[str]]:
    votes = [c for c in vote_columns(classes) if c in frame]
    floats = frame[[*_FLOAT_FIXED, *score_columns(), *d_columns(classes), *p_columns(classes), *votes]].to_numpy(
        np.float64)
    strings = frame[["sample_id", "path", "split", "label_name", "original_label_name"]].to_numpy(dtype=object)
    labels = frame["label"].to_numpy()
    originals = frame["original_label"].to_numpy()
    flags = frame[list(FLAG_COLUMNS)].to_numpy(dtype=bool)
    for i in range(len(frame)):
        sid, path, split, name, original_name = strings[i]
        values = [_float_text(v) for v in floats[i].tolist()]
        marks = ["True" if f else "False" for f in flags[i].tolist()]
        yield [sid, path, split, str(int(labels[i])), name, str(int(originals[i])), original_name, *marks, *values]


def write_soft_labels(table: pd.DataFrame, path: str | Path, extra: Sequence[tuple[str, Sequence]] = ()) -> None:
    """Write ``table``'s soft labels to ``path`` (CSV, or JSON for ``*.json``), atomically.

    ``extra``: further columns, ``(name, one value per row)``, written after the soft-label
    columns: in a CSV each value as text ("" for None), in JSON as it is.

    Raises ``DatasetError`` naming the file, the row and the reason when the table cannot be
    written as a valid soft-label file; the previous file (if any) is then left untouched.
    """
    path = Path(path)
    try:
        frame, classes = _export_frame(table)
    except ValueError as exc:  # DatasetError included (a table without classes)
        raise DatasetError(f"{path}: cannot export: {exc}") from exc
    columns = soft_label_columns(classes, votes=vote_columns(classes)[0] in frame) + [name for name, _ in extra]
    extra_values = [list(values) for _, values in extra]
    if path.suffix.lower() == ".json":
        with atomic_open(path, "w", encoding="utf-8") as handle:
            handle.write(f'{{"format": "{_JSON_FORMAT}", "version": 1, "classes": ')
            handle.write(json.dumps(list(classes), ensure_ascii=False))
            handle.write(', "columns": ' + json.dumps(columns, ensure_ascii=False) + ', "rows": [')
            for i, row in enumerate(_rows(frame, classes)):
                k = 7 + len(FLAG_COLUMNS)
                cells = [*row[:3], int(row[3]), row[4], int(row[5]), row[6], *(v == "True" for v in row[7:k]),
                         *(None if v == "" else float(v) for v in row[k:]), *(values[i] for values in extra_values)]
                handle.write(("," if i else "") + "\n" + json.dumps(cells, ensure_ascii=False, allow_nan=False))
            handle.write("\n]}\n")
        return
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(",".join(csv_field(c) for c in columns) + "\n")
        for i, row in enumerate(_rows(frame, classes)):
            cells = ["" if values[i] is None else str(values[i]) for values in extra_values]
            handle.write(",".join(csv_field(c) for c in [*row, *cells]) + "\n")


def reliability_path(path: str | Path) -> Path:
    """FILE.csv → FILE.reliability.json, beside it: the annotators' reliabilities of an export."""
    path = Path(path)
    return path.with_name(f"{path.stem}.reliability.json")


def export_reviewed(table: pd.DataFrame, run_root: str | Path | None, path: str | Path,
                    rows=None) -> tuple[int, Path | None]:
    """Write the soft labels of a run's reviewed table (``rows``, default all) to ``path``.

    When people voted (the journals in ``run_root``, the votes the dataset carries), the file
    gets the vote columns and, for every sample with at least two votes, the combined soft label
    as ``d`` (``core.labels.annotations``); the sources' reliabilities then go to
    ``reliability_path(path)``. The votes are combined over the whole table, whatever ``rows``
    says. Returns (rows written, the reliability file or None)."""
    consensus = None
    if run_root is not None:
        voted, _, consensus = vote_table(table, run_root)
        if consensus is not None:
            table = voted
    if consensus is None:  # nobody voted: no vote columns, in the app's export as in the CLI's
        drop = [c for c in (*vote_columns(classes_of(table)), "next_vote_gain") if c in table]
        if drop:
            attrs = dict(table.attrs)
            table = table.drop(columns=drop)
            table.attrs = attrs
    if rows is not None and len(rows):
        subset = table.iloc[np.sort(np.asarray(rows, dtype=np.int64))].reset_index(drop=True)
        subset.attrs = dict(table.attrs)
        table = subset
    write_soft_labels(table, path)
    if consensus is None:
        return len(table), None
    side = reliability_path(path)
    text = json.dumps(consensus.reliability.to_dict(), indent=2) + "\n"
    with atomic_open(side, "w", encoding="utf-8") as handle:
        handle.write(text)
    return len(table), side


# -- reading ------------------------------------------------------------------------------
class _Bad(Exception):
    def __init__(self, row: int, reason: str) -> None:
        super().__init__(reason)
        self.row, self.reason = row, reason


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else None


def _parse_floats(cells: list[str], column: str, allow_nan: bool) -> np.ndarray:
    values = np.empty(len(cells), dtype=np.float64)
    for i, text in enumerate(cells):
        text = text.strip()
        if text == "" or text.lower() == "nan":
            if not allow_nan:
                raise _Bad(i, f"{column} is empty (a probability is required)")
            values[i] = math.nan
            continue
        try:
            values[i] = float(text)  # correctly rounded: repr() text reads back exactly
        except ValueError:
            raise _Bad(i, f"{column} {text!r} is not a number") from None
    return values


def _read_csv_cells(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    delimiter = sniff_delimiter(text.split("\n", 1)[0], FIXED_COLUMNS)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows, lines = [], []
    try:
        header = next(reader, None)
        if header is None:
            raise DatasetError(f"{path}: empty file (no header)")
        line = reader.line_num + 1
        for row in reader:
            if row:  # a blank line is not a sample
                rows.append(row)
                lines.append(line)
            line = reader.line_num + 1
    except csv.Error as exc:
        raise DatasetError(f"{path}: row {len(rows) + 1} (line {line}): malformed CSV ({exc})") from None
    return [h.strip() for h in header], rows, lines


def _read_json_cells(path: Path) -> tuple[list[str], list[list], list[int]]:
    try:
        doc = json.loads(path.read_text("utf-8-sig"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not a soft-label JSON file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != _JSON_FORMAT:
        raise DatasetError(f"{path}: not a soft-label JSON file (no \"format\": \"{_JSON_FORMAT}\")")
    if doc.get("version") != 1:
        raise DatasetError(f"{path}: soft-label JSON version {doc.get('version')!r} is not supported (1)")
    columns, rows = doc.get("columns"), doc.get("rows")
    if not isinstance(columns, list) or not isinstance(rows, list):
        raise DatasetError(f"{path}: soft-label JSON lacks \"columns\" or \"rows\"")
    cells = []
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise DatasetError(f"{path}: row {i + 1}: not a list")
        cells.append(["" if v is None else (("True" if v else "False") if isinstance(v, bool) else
                                            (repr(v) if isinstance(v, float) else str(v))) for v in row])
    return [str(c) for c in columns], cells, [i + 1 for i in range(len(rows))]


def read_soft_labels(path: str | Path) -> pd.DataFrame:
    """Read and validate a soft-label CSV (or JSON) file.

    Checks the header (names the missing columns; score columns are optional), types, ranges
    (valence/arousal in [-1, 1] or empty, each registered score inside its declared range or
    empty, probabilities in [0, 1], each distribution summing to 1 within 1e-6), ``label``
    within the classes and ``label_name == classes[label]``.
    Raises ``DatasetError`` naming the file, the first bad row (1-based data row and its line
    in the file) and the reason. The frame has the columns in the order above (extra columns
after them, kept as strings), ``attrs["classes"]``
    from the ``d_`` columns, ``attrs["root"]`` = the file and ``attrs["format"]`` =
    ``"soft-labels"``. A UTF-8 BOM and ``;`` (or TAB, ``|``) as the
    delimiter are accepted (``datasets.common.sniff_delimiter``).
    """
    path = Path(path)
    is_json = path.suffix.lower() == ".json"
    header, rows, lines = (_read_json_cells if is_json else _read_csv_cells)(path)
    where = "entry" if is_json else "line"

    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise DatasetError(f"{path}: header: duplicate columns {duplicated}")
    classes = [h[2:] for h in header if h.startswith("d_")]
    if not classes:
        raise DatasetError(f"{path}: header: no d_<class> columns (is this a soft-label file?)")
    present_scores = [name for name in score_columns() if name in header]
    present_flags = [f for f in FLAG_COLUMNS if f not in _OPTIONAL_FLAGS or f in header]
    has_original = any(c in header for c in ORIGINAL_COLUMNS)
    has_votes = all(c in header for c in vote_columns(classes))
    missing = [c for c in soft_label_columns(classes, present_scores, present_flags, original=has_original)
               if c not in header]
    if missing:
        raise DatasetError(f"{path}: header: missing columns {missing}")
    p_classes = [h[2:] for h in header if h.startswith("p_") and h not in scores.names()]  # not p_label_wrong
    if p_classes != classes:
        raise DatasetError(f"{path}: header: p_ columns {p_classes} do not match d_ columns {classes}")

    position = {name: i for i, name in enumerate(header)}
    width = len(header)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise DatasetError(f"{path}: row {i + 1} ({where} {lines[i]}): {len(row)} fields, expected {width}")
    columns = list(zip(*rows)) if rows else [() for _ in header]

    def cells(name: str) -> list[str]:
        return list(columns[position[name]])

    def fail(row: int, reason: str) -> DatasetError:
        return DatasetError(f"{path}: row {row + 1} ({where} {lines[row]}): {reason}")

    n, m = len(rows), len(classes)
    out: dict[str, object] = {}
    try:
        for name in ("sample_id", "path", "split", "label_name"):
            out[name] = np.asarray(cells(name), dtype=object)
        sample_ids = out["sample_id"]
        if (row := _first(sample_ids == "")) is not None:
            raise _Bad(row, "empty sample_id")
        if (row := _first(pd.Series(sample_ids, dtype=object).duplicated().to_numpy())) is not None:
            raise _Bad(row, f"duplicate sample_id {sample_ids[row]!r}")
        if (row := _first(~np.isin(out["split"], SPLITS))) is not None:
            raise _Bad(row, f"split {out['split'][row]!r} is not one of {', '.join(SPLITS)}")
        labels = np.empty(n, dtype=np.int64)
        for i, text in enumerate(cells("label")):
            try:
                labels[i] = int(text.strip())
            except ValueError:
                raise _Bad(i, f"label {text!r} is not an integer") from None
        if (row := _first((labels < 0) | (labels >= m))) is not None:
            raise _Bad(row, f"label {labels[row]} is outside 0..{m - 1} ({m} classes)")
        names = np.asarray(classes, dtype=object)[labels] if n else np.empty(0, dtype=object)
        if (row := _first(names != out["label_name"])) is not None:
            raise _Bad(row, f"label_name {out['label_name'][row]!r} does not match label {labels[row]} "
                            f"({classes[labels[row]]!r})")
        out["label"] = labels
        originals = labels.copy()
        if has_original:
            for i, text in enumerate(cells("original_label")):
                try:
                    originals[i] = int(text.strip())
                except ValueError:
                    raise _Bad(i, f"original_label {text!r} is not an integer") from None
            if (row := _first((originals < 0) | (originals >= m))) is not None:
                raise _Bad(row, f"original_label {originals[row]} is outside 0..{m - 1} ({m} classes)")
            given_names = np.asarray(cells("original_label_name"), dtype=object)
            expected_names = np.asarray(classes, dtype=object)[originals] if n else np.empty(0, dtype=object)
            if (row := _first(expected_names != given_names)) is not None:
                raise _Bad(row, f"original_label_name {given_names[row]!r} does not match original_label "
                                f"{originals[row]} ({classes[originals[row]]!r})")
        out["original_label"] = originals
        out["original_label_name"] = np.asarray(classes, dtype=object)[originals] if n else np.empty(0, dtype=object)
        for flag in FLAG_COLUMNS:
            values = np.zeros(n, dtype=bool)
            for i, text in enumerate(cells(flag) if flag in position else ()):
                key = text.strip().lower()
                if key in ("true", "1"):
                    values[i] = True
                elif key not in ("false", "0", ""):
                    raise _Bad(i, f"{flag} {text!r} is not True or False")
            out[flag] = values
        for name in _FLOAT_FIXED:
            values = _parse_floats(cells(name), name, allow_nan=True)
            if (row := _first(~np.isnan(values) & ~((values >= -1.0) & (values <= 1.0)))) is not None:
                raise _Bad(row, f"{name} {float(values[row])!r} is outside [-1, 1]")
            out[name] = values
        for name in present_scores:
            score = scores.get(name)
            values = _parse_floats(cells(name), name, allow_nan=True)
            if (row := _first(_out_of_range(values, score))) is not None:
                raise _Bad(row, f"{name} {float(values[row])!r} is outside {_range_text(score)}")
            out[name] = values
        for prefix in ("d", "p"):
            block = np.column_stack([_parse_floats(cells(f"{prefix}_{c}"), f"{prefix}_{c}", allow_nan=False)
                                     for c in classes]) if n else np.empty((0, m))
            bad = ~((block >= 0.0) & (block <= 1.0))
            if (row := _first(bad.any(axis=1))) is not None:
                col = int(np.flatnonzero(bad[row])[0])
                raise _Bad(row, f"{prefix}_{classes[col]} {float(block[row, col])!r} is not a probability in [0, 1]")
            sums = block.sum(axis=1)
            if (row := _first(np.abs(sums - 1.0) > _READ_TOLERANCE)) is not None:
                raise _Bad(row, f"the {prefix}_ columns sum to {float(sums[row])!r}, not 1")
            for j, c in enumerate(classes):
                out[f"{prefix}_{c}"] = block[:, j]
        if has_votes:
            for name in vote_columns(classes):
                out[name] = _parse_floats(cells(name), name, allow_nan=True)
    except _Bad as bad:
        raise fail(bad.row, bad.reason) from None

    order = [*soft_label_columns(classes, present_scores, votes=has_votes), *(h for h in header if h not in out)]  # flags: always
    frame = pd.DataFrame({name: (out[name] if name in out else np.asarray(cells(name), dtype=object))
                          for name in order})
    for name in ("sample_id", "path", "split", "label_name", "original_label_name"):
        frame[name] = frame[name].astype(object)
    frame.attrs = {"classes": classes, "root": str(path), "format": "soft-labels"}
    return frame
