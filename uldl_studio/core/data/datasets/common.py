"""Helpers shared by the dataset adapters: warnings, CSV reading, checks, file existence.

Policy (every adapter follows it):

* whole-file problems (missing folder, wrong columns, empty or unreadable file) raise
  :class:`~uldl_studio.core.table.DatasetError` naming the file and the problem;
* row-level problems (unknown label, out-of-range code, missing image, duplicate id) drop the
  rows and emit one :class:`DatasetWarning` per problem with the file, a count and the first
  few row numbers (1-based line numbers of the data rows, header excluded);
* a dataset left with no usable rows raises ``DatasetError``.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from uldl_studio.core.table import SPLITS, DatasetError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")

# Split spellings found in the wild, mapped onto SampleTable splits.
SPLIT_SYNONYMS: dict[str, str] = {
    "train": "train", "training": "train", "trn": "train",
    "valid": "valid", "val": "valid", "validation": "valid", "dev": "valid", "publictest": "valid",
    "test": "test", "testing": "test", "tst": "test", "privatetest": "test",
}

FIRST_ROWS = 5  # how many offending rows a warning or error lists


class DatasetWarning(UserWarning):
    """Rows or images were dropped; the message names the file, the reason and the counts."""


def first_rows(rows: Iterable[int], n: int = FIRST_ROWS) -> str:
    rows = list(rows)
    shown = ", ".join(str(int(r)) for r in rows[:n])
    return shown + (", ..." if len(rows) > n else "")


def warn_dropped(file: str | Path, reason: str, rows: Sequence[int], *, total: int | None = None,
                 detail: str = "") -> None:
    """One DatasetWarning: ``<file>: dropped N of M rows: <reason> (rows 3, 7, ...)``."""
    if len(rows) == 0:
        return
    of = f" of {total}" if total is not None else ""
    extra = f"; {detail}" if detail else ""
    warnings.warn(
        DatasetWarning(f"{file}: dropped {len(rows)}{of} rows: {reason}{extra} (first rows: {first_rows(rows)})"),
        stacklevel=3,
    )


def warn(message: str) -> None:
    warnings.warn(DatasetWarning(message), stacklevel=3)


def require_dir(path: str | Path, what: str = "folder") -> Path:
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if not path.is_dir():
        raise DatasetError(f"{path}: expected a {what}, found a file")
    return path


def require_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if not path.is_file():
        raise DatasetError(f"{path}: expected a file, found a folder")
    return path


def read_text_head(path: Path, n_bytes: int = 65536) -> str:
    """The first bytes of a text file decoded (UTF-8, BOM stripped); DatasetError when binary."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(n_bytes)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if b"\x00" in raw:
        raise DatasetError(f"{path}: not a text file (binary content)")
    text = raw.decode("utf-8-sig", errors="replace")
    return text


def sniff_delimiter(header_line: str, wanted: Iterable[str] = ()) -> str:
    """Pick the delimiter of a CSV header line among ``, ; TAB |``.

    Prefers the delimiter whose fields contain the most of ``wanted`` column names, then the
    one giving the most fields; ``,`` on a tie.
    """
    wanted = {w.lower() for w in wanted}
    best, best_key = ",", (-1, -1)
    for delim in (",", ";", "\t", "|"):
        fields = [f.strip().strip('"').strip().lower() for f in header_line.split(delim)]
        key = (len(wanted & set(fields)), len(fields))
        if key > best_key:
            best, best_key = delim, key
    return best


def read_csv_text(path: Path, *, wanted: Iterable[str] = (), header: bool = True,
                  names: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a CSV as strings (no NA conversion): BOM accepted, delimiter sniffed.

    Column names are stripped; DatasetError for empty, binary or malformed files.
    """
    path = require_file(path)
    head = read_text_head(path)
    first_line = next((line for line in head.splitlines() if line.strip()), "")
    if not first_line:
        raise DatasetError(f"{path}: empty CSV file (no header and no rows)")
    delim = sniff_delimiter(first_line, wanted)
    try:
        frame = pd.read_csv(
            path, sep=delim, dtype=str, keep_default_na=False, encoding="utf-8-sig",
            header=0 if header else None, names=names, skipinitialspace=True,
            skip_blank_lines=True, engine="c",
        )
    except pd.errors.EmptyDataError as exc:
        raise DatasetError(f"{path}: empty CSV file (no header and no rows)") from exc
    except pd.errors.ParserError as exc:
        raise DatasetError(f"{path}: malformed CSV ({str(exc).strip()})") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read CSV ({exc})") from exc
    if header:
        frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def require_columns(frame: pd.DataFrame, required: Sequence[str], file: str | Path,
                    optional: Sequence[str] = ()) -> dict[str, str]:
    """Map wanted column names (case-insensitive) to the file's; DatasetError listing both."""
    lower = {}
    for col in frame.columns:
        lower.setdefault(str(col).strip().lower(), col)
    missing = [c for c in required if c.lower() not in lower]
    if missing:
        expected = ", ".join(required) + (f" (optional: {', '.join(optional)})" if optional else "")
        found = ", ".join(str(c) for c in frame.columns) or "none"
        raise DatasetError(f"{file}: wrong columns: missing {', '.join(missing)}; expected {expected}; found {found}")
    return {c: lower[c.lower()] for c in (*required, *optional) if c.lower() in lower}


def read_csv_columns(path: Path, required: Sequence[str], optional: Sequence[str] = ()
                     ) -> tuple[pd.DataFrame, dict[str, str]]:
    """``read_csv_text`` + ``require_columns``: (frame of strings, {wanted name: file's column}).

    DatasetError for a missing/unreadable file, wrong columns, or a header without rows.
    """
    frame = read_csv_text(path, wanted=(*required, *optional))
    columns = require_columns(frame, required, path, optional)
    if len(frame) == 0:
        raise DatasetError(f"{path}: empty CSV file (a header but no rows)")
    return frame, columns


def list_names(folder: Path) -> set[str]:
    """Names in ``folder`` (one ``os.scandir``, no per-file stat); empty set when missing."""
    try:
        with os.scandir(folder) as entries:
            return {entry.name for entry in entries}
    except (FileNotFoundError, NotADirectoryError):
        return set()
    except OSError as exc:
        raise DatasetError(f"{folder}: cannot list folder ({exc.strerror or exc})") from exc


def existing_mask(paths: Sequence[str]) -> np.ndarray:
    """Boolean mask of paths that exist, one ``os.scandir`` per distinct folder."""
    paths = list(paths)
    listing: dict[str, set[str]] = {}
    out = np.zeros(len(paths), dtype=bool)
    for i, p in enumerate(paths):
        folder, name = os.path.split(p)
        names = listing.get(folder)
        if names is None:
            names = listing[folder] = list_names(Path(folder or "."))
        out[i] = name in names
    return out


def drop_missing_files(frame: pd.DataFrame, file: str | Path, *, path_column: str = "path",
                       row_column: str = "_row") -> pd.DataFrame:
    """Drop rows whose image file does not exist, with one DatasetWarning naming them."""
    if len(frame) == 0:
        return frame
    mask = existing_mask(frame[path_column].tolist())
    if mask.all():
        return frame
    missing = frame.loc[~mask]
    example = missing[path_column].iloc[0]
    warn_dropped(file, "image file not found", missing[row_column].tolist(), total=len(frame),
                 detail=f"first missing: {example}")
    return frame.loc[mask]


def hash_split(sample_ids: Sequence[str], fractions: tuple[float, float] = (0.8, 0.1)) -> np.ndarray:
    """Deterministic train/valid/test assignment (80/10/10) from an MD5 hash of each sample id.

    Independent of any seed and of row order, so adding samples never moves existing ones and
    two runs with different training seeds share the same test split.
    """
    u = np.fromiter(
        (int.from_bytes(hashlib.md5(str(s).encode("utf-8")).digest()[:8], "big") / 2.0**64 for s in sample_ids),
        dtype=np.float64, count=len(sample_ids),
    )
    out = np.full(len(u), "test", dtype=object)
    out[u < fractions[0] + fractions[1]] = "valid"
    out[u < fractions[0]] = "train"
    return out


def canonical_split(name: str) -> str | None:
    return SPLIT_SYNONYMS.get(str(name).strip().lower().replace(" ", "").replace("_", ""))


def check_one_class(labels: np.ndarray, classes: Sequence[str], file: str | Path) -> None:
    present = np.unique(labels)
    if len(present) == 1:
        warn(f"{file}: every sample has the same label ({classes[int(present[0])]}); "
             f"a classifier cannot learn from one class")


def ensure_rows(frame: pd.DataFrame, file: str | Path, reason: str = "") -> None:
    if len(frame) == 0:
        raise DatasetError(f"{file}: the dataset has no usable samples{('; ' + reason) if reason else ''}")


def sample_from_counts(counts: np.ndarray, seed: int) -> np.ndarray:
    """One draw per row from the categorical distribution ``counts / counts.sum(1)``.

    With integer vote counts this is "one annotator's vote": the r-th vote (r uniform in
    0..total-1) in class order. Seeded numpy Generator, so reproducible for a seed.
    """
    counts = np.asarray(counts, dtype=np.float64)
    rng = np.random.default_rng(seed)
    totals = counts.sum(axis=1)
    r = rng.random(len(counts)) * totals
    cum = np.cumsum(counts, axis=1)
    labels = (r[:, None] >= cum).sum(axis=1)
    # r < total always, but guard float rounding and zero-count classes at the end.
    return np.minimum(labels, counts.shape[1] - 1).astype(np.int64)


def find_csv(path: str | Path, in_folder: Callable[[Path], Path | None], expected: str) -> Path:
    """The CSV that ``path`` names: the file itself, else the one ``in_folder(folder)`` picks
    in that folder; ``expected`` says what was looked for when it picks none."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if path.is_file():
        return path
    found = in_folder(path)
    if found is None:
        raise DatasetError(f"{path}: {expected}")
    return found


def describe_folder(path: Path, n: int = 8) -> str:
    names = sorted(list_names(path)) if path.is_dir() else []
    if not names:
        return "nothing"
    shown = ", ".join(names[:n])
    return shown + (f", ... ({len(names)} entries)" if len(names) > n else "")


__all__ = [
    "DatasetWarning", "DatasetError", "SPLITS", "IMAGE_EXTENSIONS", "warn_dropped", "warn",
    "read_csv_text", "require_columns", "read_csv_columns", "find_csv", "list_names", "existing_mask", "drop_missing_files",
    "hash_split", "canonical_split", "check_one_class", "ensure_rows", "sample_from_counts",
]
