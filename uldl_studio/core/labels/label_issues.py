"""Estimated label issues: a calibrated probability that each row's given label is wrong.

No crowd votes are read (a user's dataset has none). The evidence is what a run has:

1. **Calibrated predictions.** The prediction p of every row, sharpened or flattened by one
   temperature T fitted on the *valid* split's given labels (``core.soft_labels``): temper(p, T)
   estimates P(given label | x). Training rows use their out-of-fold prediction instead when the
   run was cross-fitted (``train --folds K``), with a temperature fitted on those held-out
   predictions themselves.
2. **A class-pair noise model** per group of rows (training, valid, test; each split is judged
   by its own labels): the confident joint of Northcutt et al. (2021). Per class k the
   threshold t_k is the mean calibrated probability of k over the rows labelled k; a row counts
   towards (given j, true k) when k is its most probable class among those at or above their
   threshold; each given-label row of counts is rescaled to that label's number of rows. The
   result Q[j, k] estimates P(given = j, true = k), hence the noise rates
   N[k, j] = P(given = j | true = k) and the number of label issues 1 − trace(Q).
3. **Bayes per row.** P(true = k | x, given = j) ∝ π_k(x) · N[k, j], with π = temper(q, s) the
   calibrated prediction sharpened by one factor s: the true label (the majority class of many
   annotators) is more certain than one annotator's vote. s is fitted by maximum likelihood: the
   s under which P(given = j | x) = Σ_k π_k(x) N[k, j] explains the given labels best, on the
   held-out valid rows (like the temperature; cross-fitted training rows on their own
   out-of-fold predictions). ``label_wrong_prob`` = 1 − P(true = given | x, given).

   The confident joint alone counts every confident disagreement as a wrong label, the
   model's own mistakes included, so it overestimates when the model is weak: the sum of the
   probabilities is not forced to its count, it follows from the fitted s and is the estimate.

Its sum over rows is the estimated number of label issues (per given class and overall). The
highlighted rows (drawn strongly on the map, ``highlighted_mask``) are the likeliest wrong
labels, as many as keep the mean of their probabilities (the share of them expected to be
wrong) at ``PRECISION`` or above, each one at ``HIGHLIGHT`` or above (more likely wrong than
right).

Rows are judged by their current label (the annotator's edits apply). Measured against crowd
votes on FER+ and the demo: ``bench/label_issues.py``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from uldl_studio.core.labels.soft_labels import fit_temperature, temper
from uldl_studio.core.table import classes_of, p_columns

__all__ = ["HIGHLIGHT", "PRECISION", "LabelIssues", "highlight_threshold", "highlighted_mask",
           "confident_joint", "noise_matrix", "posterior_true", "sharpening_nll", "fit_sharpening", "estimate_group", "label_issues", "expected_matrix"]

#: the highlighted labels (drawn strongly on the map) are the likeliest wrong ones, as many as
#: keep their expected share of wrong labels (the mean label_wrong_prob) at ``PRECISION`` or
#: above, and never one below ``HIGHLIGHT`` (more likely right than wrong). 0.85 rather than
#: the 0.75 aimed at: with a weak model (full FER+, valid accuracy 0.66 against one vote) the
#: highlighted rows measured 0.07–0.10 less wrong than promised (docs/benchmarks.md)
PRECISION = 0.85
HIGHLIGHT = 0.5
#: groups with fewer rows borrow the noise model and sharpening of the largest group
MIN_GROUP_ROWS = 100
#: the sharpening s is searched in this range (log-uniform) on at most this many rows
SHARPEN_RANGE = (0.02, 5.0)
FIT_ROWS = 50_000
#: share of each noise-matrix row spread evenly (no class pair is impossible)
SMOOTHING = 1e-3


@dataclass
class GroupEstimate:
    """The estimate of one group of rows (a split, or the cross-fitted training rows)."""

    name: str
    rows: np.ndarray               # positional rows of the table
    temperature: float             # of the calibrated prediction q
    joint: np.ndarray              # (m, m) Q[given, true], sums to 1
    noise: np.ndarray              # (m, m) N[true, given], rows sum to 1
    sharpening: float              # s of π = temper(q, s)
    source: str                    # "prediction" | "out-of-fold"

    @property
    def confident_joint_rate(self) -> float:
        return float(1.0 - np.trace(self.joint))


@dataclass
class LabelIssues:
    """Per row: ``p_wrong`` (NaN where the row has no prediction or label) and ``posterior``
    (N, m) P(true = k | x, given); the groups it was estimated in."""

    p_wrong: np.ndarray
    posterior: np.ndarray
    groups: list[GroupEstimate] = field(default_factory=list)

    @property
    def likely_true(self) -> np.ndarray:
        """The most probable true class per row (-1 where unknown)."""
        ok = np.isfinite(self.posterior).all(axis=1)
        out = np.full(len(self.p_wrong), -1, dtype=np.int64)
        out[ok] = self.posterior[ok].argmax(axis=1)
        return out

    @cached_property
    def threshold(self) -> float:
        """The label_wrong_prob from which rows are highlighted (``highlight_threshold``)."""
        return highlight_threshold(self.p_wrong)

    def highlighted(self) -> np.ndarray:
        """Bool per row: among the likeliest wrong labels (p_wrong ≥ ``threshold``; the same rows
        as ``highlighted_mask(p_wrong)``)."""
        with np.errstate(invalid="ignore"):
            return np.nan_to_num(self.p_wrong, nan=-np.inf) >= self.threshold


# ------------------------------------------------------------------------------ the highlight
def highlight_threshold(p_wrong: np.ndarray, precision: float = PRECISION, floor: float = HIGHLIGHT) -> float:
    """The lowest cut-off t ≥ ``floor`` such that the rows with p_wrong ≥ t have a mean p_wrong
    (their expected share of wrong labels) of at least ``precision``; ``inf`` when no row
    qualifies. NaN values are ignored. Ranking by p_wrong, lowering t only adds rows less likely
    wrong than those already in, so the mean falls as t falls: t is where it reaches
    ``precision`` (ties at t all go in)."""
    values = np.asarray(p_wrong, dtype=np.float64)
    values = np.sort(values[np.isfinite(values) & (values >= floor)])[::-1]
    if values.size == 0:
        return float("inf")
    means = np.cumsum(values) / np.arange(1, values.size + 1)
    last_of_tie = np.r_[values[1:] != values[:-1], True]  # a cut includes every tied value
    ok = np.flatnonzero((means >= precision) & last_of_tie)
    return float(values[ok[-1]]) if ok.size else float("inf")


def highlighted_mask(p_wrong: np.ndarray, precision: float = PRECISION, floor: float = HIGHLIGHT) -> np.ndarray:
    """Bool per row: p_wrong ≥ ``highlight_threshold(p_wrong)`` (False where NaN)."""
    values = np.asarray(p_wrong, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(values, nan=-np.inf) >= highlight_threshold(values, precision, floor)


# ------------------------------------------------------------------------------ the pieces
def confident_joint(probs: np.ndarray, labels: np.ndarray, m: int) -> np.ndarray:
    """(m, m) Q[given j, true k], calibrated: row j sums to the share of rows labelled j.

    ``probs`` (n, m) calibrated probabilities, ``labels`` (n,) given labels in 0..m-1. A class
    nobody is labelled with has threshold 1; a label whose rows are never confident about any
    class keeps its rows on the diagonal."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if n == 0:
        return np.eye(m) / m
    counts = np.bincount(labels, minlength=m).astype(np.float64)
    # t_k: mean p_k over the rows labelled k
    thresholds = np.ones(m)
    for k in range(m):
        if counts[k]:
            thresholds[k] = probs[labels == k, k].mean()
    above = probs >= thresholds[None, :] - 1e-12
    guess = np.where(above, probs, -1.0).argmax(axis=1)
    confident = above.any(axis=1)
    raw = np.zeros((m, m))
    np.add.at(raw, (labels[confident], guess[confident]), 1.0)
    totals = raw.sum(axis=1, keepdims=True)
    calibrated = np.where(totals > 0, raw / np.maximum(totals, 1.0) * counts[:, None], np.diag(counts))
    return calibrated / calibrated.sum()


def noise_matrix(joint: np.ndarray, smoothing: float = SMOOTHING) -> np.ndarray:
    """N[true k, given j] = P(given = j | true = k) from a joint Q[given, true]; a true class
    without mass keeps its label."""
    joint = np.asarray(joint, dtype=np.float64)
    m = joint.shape[0]
    mass = joint.sum(axis=0)  # P(true = k)
    noise = np.where(mass[:, None] > 0, joint.T / np.maximum(mass[:, None], 1e-300), np.eye(m))
    noise = (1.0 - smoothing) * noise + smoothing / m
    return noise / noise.sum(axis=1, keepdims=True)


def posterior_true(q: np.ndarray, labels: np.ndarray, noise: np.ndarray,
                   sharpening: float = 1.0) -> np.ndarray:
    """(n, m) P(true = k | x, given = label) ∝ temper(q, s)_k · N[k, label]."""
    prior = temper(q, sharpening) if sharpening != 1.0 else np.asarray(q, dtype=np.float64)
    post = prior * np.asarray(noise)[:, np.asarray(labels, dtype=np.int64)].T
    total = post.sum(axis=1, keepdims=True)
    return post / np.where(total > 0, total, 1.0)


def _p_wrong(q, labels, noise, sharpening) -> np.ndarray:
    post = posterior_true(q, labels, noise, sharpening)
    return 1.0 - post[np.arange(len(labels)), labels]


def sharpening_nll(q: np.ndarray, labels: np.ndarray, noise: np.ndarray, sharpening: float) -> float:
    """Mean negative log-likelihood of the given ``labels`` under the noise model:
    P(given = j | x) = Σ_k temper(q, s)_k · N[k, j]."""
    labels = np.asarray(labels, dtype=np.int64)
    prior = temper(q, sharpening) if sharpening != 1.0 else np.asarray(q, dtype=np.float64)
    given = np.einsum("nk,nk->n", prior, np.asarray(noise)[:, labels].T)
    return float(-np.log(np.clip(given, 1e-12, None)).mean())


def fit_sharpening(q: np.ndarray, labels: np.ndarray, noise: np.ndarray, max_rows: int = FIT_ROWS) -> float:
    """The s in ``SHARPEN_RANGE`` under which the noise model explains the given labels best
    (``sharpening_nll`` minimal; on at most ``max_rows`` rows, an evenly spaced subset); 1.0
    without rows.

    The calibrated q already spreads its mass as the labels do; once the noise model accounts
    for part of that spread, the true-label prior temper(q, s) must be sharper (s < 1) to give
    the same labels, and as much sharper as the noise model leaves to explain."""
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if n == 0:
        return 1.0
    if n > max_rows:
        pick = np.linspace(0, n - 1, max_rows).astype(np.int64)
        q, labels = q[pick], labels[pick]
    lo, hi = np.log(SHARPEN_RANGE[0]), np.log(SHARPEN_RANGE[1])
    best = minimize_scalar(lambda log_s: sharpening_nll(q, labels, noise, np.exp(log_s)),
                           bounds=(lo, hi), method="bounded", options={"xatol": 1e-3})
    return float(np.exp(best.x))


def estimate_group(probs: np.ndarray, labels: np.ndarray, temperature: float, name: str = "",
                   rows: np.ndarray | None = None, source: str = "prediction",
                   borrow: GroupEstimate | None = None,
                   sharpening: float | None = None) -> tuple[GroupEstimate, np.ndarray, np.ndarray]:
    """Estimate one group: (its GroupEstimate, p_wrong (n,), posterior (n, m)).

    ``borrow``: use that group's noise model and sharpening (a group too small for its own).
    ``sharpening``: the s to use (fitted on held-out rows); None = fit it on this group."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    m = probs.shape[1]
    q = temper(probs, temperature)
    if borrow is not None:
        joint, noise, sharpening = borrow.joint, borrow.noise, borrow.sharpening
    else:
        joint = confident_joint(q, labels, m)
        noise = noise_matrix(joint)
        if sharpening is None:
            sharpening = fit_sharpening(q, labels, noise)
    post = posterior_true(q, labels, noise, sharpening)
    p_wrong = 1.0 - post[np.arange(len(labels)), labels]
    rows = np.arange(len(labels)) if rows is None else np.asarray(rows, dtype=np.int64)
    return GroupEstimate(name, rows, float(temperature), joint, noise, sharpening, source), p_wrong, post


# ------------------------------------------------------------------------------ a run's table
def _groups(table: pd.DataFrame, usable: np.ndarray, has_oof: np.ndarray) -> list[tuple[str, np.ndarray, str]]:
    split = table["split"].astype(str).to_numpy() if "split" in table else np.full(len(table), "train")
    out = []
    train = split == "train"
    if (usable & train & has_oof).any():
        out.append(("train", np.flatnonzero(usable & train & has_oof), "out-of-fold"))
        rest = usable & train & ~has_oof
        if rest.any():
            out.append(("train (in-sample)", np.flatnonzero(rest), "prediction"))
    elif (usable & train).any():
        out.append(("train", np.flatnonzero(usable & train), "prediction"))
    for name in pd.unique(split[usable & ~train]):
        out.append((str(name), np.flatnonzero(usable & ~train & (split == name)), "prediction"))
    return out


def _key(table: pd.DataFrame, classes: list[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    cols = ["label", *p_columns(classes), *(f"oof_{c}" for c in classes if f"oof_{c}" in table)]
    for col in cols:
        h.update(col.encode())
        h.update(np.ascontiguousarray(pd.to_numeric(table[col], errors="coerce").to_numpy(np.float64)).tobytes())
    if "split" in table:
        h.update("\0".join(table["split"].astype(str)).encode())
    return h.hexdigest()


_CACHE: dict[str, LabelIssues] = {}


def label_issues(table: pd.DataFrame) -> LabelIssues:
    """The estimate for every row of a run's table (``p_<class>`` columns, ``label``, ``split``;
    ``oof_<class>`` when cross-fitted). KeyError when the table has no predictions. The last
    result is cached by the table's labels, predictions and splits."""
    classes = classes_of(table)
    if not classes or any(c not in table for c in p_columns(classes)):
        raise KeyError("p_")
    key = _key(table, classes)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    m = len(classes)
    n = len(table)
    probs = table[p_columns(classes)].to_numpy(np.float64)
    labels = pd.to_numeric(table["label"], errors="coerce").to_numpy(np.float64)
    ok_label = np.isfinite(labels) & (labels >= 0) & (labels < m)
    labels = np.where(ok_label, labels, 0).astype(np.int64)
    usable = ok_label & np.isfinite(probs).all(axis=1)
    oof_cols = [f"oof_{c}" for c in classes]
    oof = table[oof_cols].to_numpy(np.float64) if all(c in table for c in oof_cols) else np.full((n, m), np.nan)
    has_oof = np.isfinite(oof).all(axis=1)

    split = table["split"].astype(str).to_numpy() if "split" in table else np.full(n, "train")
    valid = np.flatnonzero(usable & (split == "valid"))
    t_prediction = fit_temperature(probs[valid], labels[valid]) if valid.size else 1.0
    # the sharpening of the predictions: fitted on the held-out valid rows, like the temperature
    # (a group's own rows would judge in-sample predictions by the labels they were fitted to)
    s_prediction = None
    if valid.size >= MIN_GROUP_ROWS:
        q_valid = temper(probs[valid], t_prediction)
        noise_valid = noise_matrix(confident_joint(q_valid, labels[valid], m))
        s_prediction = fit_sharpening(q_valid, labels[valid], noise_valid)

    p_wrong = np.full(n, np.nan)
    posterior = np.full((n, m), np.nan)
    groups: list[GroupEstimate] = []
    planned = _groups(table, usable, has_oof)
    planned.sort(key=lambda g: -len(g[1]))  # the largest first: small groups borrow from it
    for name, rows, source in planned:
        source_probs = oof[rows] if source == "out-of-fold" else probs[rows]
        temperature = fit_temperature(source_probs, labels[rows]) if source == "out-of-fold" else t_prediction
        borrow = groups[0] if groups and len(rows) < MIN_GROUP_ROWS else None
        sharpening = s_prediction if source == "prediction" else None  # out-of-fold: held out itself
        group, wrong, post = estimate_group(source_probs, labels[rows], temperature, name, rows, source,
                                            borrow, sharpening)
        groups.append(group)
        p_wrong[rows] = wrong
        posterior[rows] = post
    result = LabelIssues(p_wrong, posterior, groups)
    _CACHE.clear()
    _CACHE[key] = result
    return result


def expected_matrix(issues: LabelIssues, labels: np.ndarray, rows=None) -> np.ndarray:
    """(m, m) the expected number of rows with given label j and true label k (sums of the
    posteriors), over ``rows`` (indices or a bool mask; None = all) with an estimate."""
    post = issues.posterior
    n, m = post.shape
    mask = np.ones(n, dtype=bool) if rows is None else np.zeros(n, dtype=bool)
    if rows is not None:
        arr = np.asarray(rows)
        if arr.dtype == bool:
            mask = arr.copy()
        else:
            mask[arr.astype(np.int64)] = True
    mask &= np.isfinite(post).all(axis=1)
    labels = np.asarray(labels, dtype=np.int64)
    out = np.zeros((m, m))
    for j in range(m):
        sel = mask & (labels == j)
        if sel.any():
            out[j] = post[sel].sum(axis=0)
    return out
