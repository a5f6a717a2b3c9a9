"""Label health of a run, per class: how many samples of each given label the model's results
contradict, and the given label × constructed label confusion matrix.

No crowd labels are needed.  Each row's *constructed label* is the argmax of its constructed
distribution ``d_<class>``; a row whose ``d`` is missing or not finite on every class (valid and
test rows carry ``d = p``; foreign tables may carry NaN) uses its prediction ``p_<class>``
instead, and a row with neither has no constructed label (-1).  A tie that includes the given
label resolves to the given label, so a row is *likely mislabelled* exactly when its
constructed label exists and differs from its given label (``label``, i.e. the current label
after the annotator's edits).  The off-diagonal sum of a confusion row is therefore that
class's ``likely_mislabelled`` count.

The estimated label issues (``core.label_issues``) lead: per given class, the sum of the
calibrated probability that the label is wrong (``issue_rates``), how many of the likeliest
wrong labels the map highlights, and the expected given × true label matrix (``issue_matrix``).

Rows are positional indices into the table; every function takes ``rows`` (indices or a
boolean mask; None = all) to restrict the count, e.g. to the training split.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from uldl_studio.core.labels.label_issues import expected_matrix, label_issues
from uldl_studio.core.table import classes_of, d_columns, p_columns

__all__ = ["has_distributions", "constructed_labels", "given_labels", "training_rows",
           "confusion", "cell_rows", "flagged_rows", "mislabel_rates", "class_means",
           "has_issue_estimate", "issue_rates", "issue_matrix", "issue_cell_counts", "issue_cell_rows",
           "highlighted_rows",
           "largest_confusion"]


def _distribution(table: pd.DataFrame, columns: list[str]) -> np.ndarray | None:
    if not columns or any(c not in table for c in columns):
        return None
    return table[columns].to_numpy(np.float64)


def has_distributions(table: pd.DataFrame | None) -> bool:
    """Whether ``table`` has results to judge labels by (all ``d_`` or all ``p_`` columns)."""
    if table is None or "classes" not in table.attrs:
        return False
    classes = classes_of(table)
    return bool(classes) and (all(c in table for c in d_columns(classes))
                              or all(c in table for c in p_columns(classes)))


def given_labels(table: pd.DataFrame) -> np.ndarray:
    """The current label per row (int64); -1 where it is not a class index."""
    m = len(classes_of(table))
    labels = pd.to_numeric(table["label"], errors="coerce").to_numpy(np.float64)
    ok = np.isfinite(labels) & (labels >= 0) & (labels < m)
    return np.where(ok, labels, -1).astype(np.int64)


def constructed_labels(table: pd.DataFrame) -> np.ndarray:
    """Argmax per row of the run's soft label (``soft_<class>``, what it exports as d; see
    ``core.soft_labels``), else of the constructed ``d``, else of ``p``; -1 where none is
    finite. Ties that include the given label resolve to it."""
    classes = classes_of(table)
    n, m = len(table), len(classes)
    dist = np.full((n, m), np.nan)
    soft = _distribution(table, [f"soft_{c}" for c in classes])
    for source in (_distribution(table, p_columns(classes)), _distribution(table, d_columns(classes)), soft):
        if source is not None:  # later sources win wherever they are finite on every class
            whole = np.isfinite(source).all(axis=1)
            dist[whole] = source[whole]
    have = np.isfinite(dist).all(axis=1) if m else np.zeros(n, dtype=bool)
    out = np.full(n, -1, dtype=np.int64)
    if not have.any():
        return out
    sub = dist[have]
    best = np.argmax(sub, axis=1)
    given = given_labels(table)[have]
    idx = np.arange(len(sub))
    valid_given = given >= 0
    ties = valid_given & (sub[idx, np.clip(given, 0, m - 1)] >= sub[idx, best])
    out[have] = np.where(ties, given, best)
    return out


def training_rows(table: pd.DataFrame) -> np.ndarray:
    """Rows of the training split (where ``d`` was constructed rather than copied from ``p``)."""
    if "split" not in table:
        return np.arange(len(table), dtype=np.int64)
    return np.flatnonzero(table["split"].astype(str).to_numpy() == "train").astype(np.int64)


def _mask(table: pd.DataFrame, rows) -> np.ndarray:
    n = len(table)
    if rows is None:
        return np.ones(n, dtype=bool)
    arr = np.asarray(rows)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"boolean rows of shape {arr.shape} for a table of {n} rows")
        return arr.copy()
    mask = np.zeros(n, dtype=bool)
    arr = arr.astype(np.int64, copy=False).ravel()
    mask[arr[(arr >= 0) & (arr < n)]] = True
    return mask


def _pairs(table: pd.DataFrame, rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(given, constructed, counted mask): rows in ``rows`` with both labels defined."""
    given = given_labels(table)
    built = constructed_labels(table)
    counted = _mask(table, rows) & (given >= 0) & (built >= 0)
    return given, built, counted


def confusion(table: pd.DataFrame, rows=None) -> np.ndarray:
    """(m, m) int64 counts: row = given label, column = constructed label."""
    m = len(classes_of(table))
    given, built, counted = _pairs(table, rows)
    flat = given[counted] * m + built[counted]
    return np.bincount(flat, minlength=m * m).reshape(m, m).astype(np.int64)


def cell_rows(table: pd.DataFrame, given: int, constructed: int, rows=None) -> np.ndarray:
    """Sorted rows counted in the confusion cell (``given``, ``constructed``)."""
    g, b, counted = _pairs(table, rows)
    return np.flatnonzero(counted & (g == int(given)) & (b == int(constructed))).astype(np.int64)


def flagged_rows(table: pd.DataFrame, given: int | None = None, rows=None) -> np.ndarray:
    """Sorted likely mislabelled rows (of given label ``given``; None = any class)."""
    g, b, counted = _pairs(table, rows)
    hit = counted & (g != b)
    if given is not None:
        hit &= g == int(given)
    return np.flatnonzero(hit).astype(np.int64)


def mislabel_rates(table: pd.DataFrame, rows=None) -> pd.DataFrame:
    """One row per class, in class order: ``class`` (name), ``n`` (counted rows with that given
    label), ``likely_mislabelled`` and ``rate`` (their share; NaN when ``n`` is 0)."""
    classes = classes_of(table)
    counts = confusion(table, rows)
    n = counts.sum(axis=1)
    flagged = n - np.diag(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n > 0, flagged / np.maximum(n, 1), np.nan)
    return pd.DataFrame({"class": list(classes), "n": n.astype(np.int64),
                         "likely_mislabelled": flagged.astype(np.int64), "rate": rate.astype(np.float64)})


def class_means(table: pd.DataFrame, values, rows=None) -> np.ndarray:
    """(m,) mean of ``values`` (one float per row) over the rows of each given label, ignoring
    NaN; NaN for a class without a finite value.  Counts the same rows as ``mislabel_rates``."""
    m = len(classes_of(table))
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(table),):
        raise ValueError(f"values of shape {values.shape} for a table of {len(table)} rows")
    given, _, counted = _pairs(table, rows)
    ok = counted & np.isfinite(values)
    sums = np.bincount(given[ok], weights=values[ok], minlength=m)
    counts = np.bincount(given[ok], minlength=m)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


# ------------------------------------------------------------------ estimated label issues
def _issues(table: pd.DataFrame):
    return label_issues(table)


def has_issue_estimate(table: pd.DataFrame | None) -> bool:
    """Whether ``table`` has predictions to estimate label issues from (all ``p_`` columns)."""
    if table is None or "classes" not in table.attrs:
        return False
    classes = classes_of(table)
    return bool(classes) and all(c in table for c in p_columns(classes))


def _estimated(table: pd.DataFrame, rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(given, p_wrong, counted mask): rows in ``rows`` with a label and an estimate."""
    issues = _issues(table)
    given = given_labels(table)
    counted = _mask(table, rows) & (given >= 0) & np.isfinite(issues.p_wrong)
    return given, issues.p_wrong, counted


def issue_rates(table: pd.DataFrame, rows=None) -> pd.DataFrame:
    """One row per class, in class order: ``class``, ``n`` (counted rows with that given label),
    ``estimated`` (the sum of their label_wrong_prob: the expected number of wrong labels),
    ``rate`` (estimated / n; NaN when n is 0), ``highlighted`` (the rows the map highlights:
    the likeliest wrong labels, ``label_issues.highlighted_mask`` over the whole table) and
    ``highlighted_wrong`` (the sum of their label_wrong_prob: how many of them are expected to be
    wrong)."""
    classes = classes_of(table)
    m = len(classes)
    given, p_wrong, counted = _estimated(table, rows)
    n = np.bincount(given[counted], minlength=m)
    estimated = np.bincount(given[counted], weights=p_wrong[counted], minlength=m)
    high = counted & _issues(table).highlighted()
    highlighted = np.bincount(given[high], minlength=m)
    highlighted_wrong = np.bincount(given[high], weights=p_wrong[high], minlength=m)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n > 0, estimated / np.maximum(n, 1), np.nan)
    return pd.DataFrame({"class": list(classes), "n": n.astype(np.int64), "estimated": estimated.astype(np.float64),
                         "rate": rate.astype(np.float64), "highlighted": highlighted.astype(np.int64),
                         "highlighted_wrong": highlighted_wrong.astype(np.float64)})


def issue_matrix(table: pd.DataFrame, rows=None) -> np.ndarray:
    """(m, m) float: row = given label, column = true label, the expected number of counted rows
    (sums of P(true | x, given)); the off-diagonal of row j adds up to class j's ``estimated``."""
    given, _, counted = _estimated(table, rows)
    return expected_matrix(_issues(table), given, counted)


def issue_cell_counts(table: pd.DataFrame, rows=None) -> np.ndarray:
    """(m, m) int64: counted rows per (given label, most probable true label); what a click on
    an ``issue_matrix`` cell selects."""
    m = len(classes_of(table))
    g, _, counted = _estimated(table, rows)
    likely = _issues(table).likely_true
    ok = counted & (likely >= 0)
    return np.bincount(g[ok] * m + likely[ok], minlength=m * m).reshape(m, m).astype(np.int64)


def issue_cell_rows(table: pd.DataFrame, given: int, true: int, rows=None) -> np.ndarray:
    """Sorted counted rows with given label ``given`` whose most probable true label is ``true``."""
    g, _, counted = _estimated(table, rows)
    likely = _issues(table).likely_true
    return np.flatnonzero(counted & (g == int(given)) & (likely == int(true))).astype(np.int64)


def highlighted_rows(table: pd.DataFrame, given: int | None = None, rows=None) -> np.ndarray:
    """Sorted counted rows that the map highlights (``issue_rates``' ``highlighted``) of given
    label ``given`` (None = any)."""
    g, _, counted = _estimated(table, rows)
    hit = counted & _issues(table).highlighted()
    if given is not None:
        hit &= g == int(given)
    return np.flatnonzero(hit).astype(np.int64)


def largest_confusion(matrix: np.ndarray) -> tuple[int, int, float] | None:
    """(given, true, expected count) of the largest off-diagonal cell; None when all are 0."""
    off = np.array(matrix, dtype=np.float64)
    if off.size == 0:
        return None
    np.fill_diagonal(off, 0.0)
    j, k = np.unravel_index(int(np.argmax(off)), off.shape)
    return (int(j), int(k), float(off[j, k])) if off[j, k] > 0 else None
