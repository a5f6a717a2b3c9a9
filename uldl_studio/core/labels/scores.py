"""Per-sample scores: one registry that the map colours, grid sorting, filters, the inspector,
the soft-label export and its reader all read.

A score is a function of a run's per-sample table (``samples.csv`` with the annotator's edits
applied: ``label`` is the current label) returning one float per row, NaN where it does not
apply.  Each carries a name (its column in exports), a short label for menus, a one-line
meaning for tooltips, which end is bad, a colour-map hint and whether it is exported.

Adding a score is one decorated function::

    @score("my_score", label="my score", meaning="what it says; high = suspicious", bad="high")
    def _my_score(table):
        return ...

Scores that need the given label (``self_confidence``, ``margin``) follow the annotator's
edits; scores written by training (``lambda``, the training dynamics, ``knn_disagreement``)
describe the labels the model was trained on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from uldl_studio.core.labels.label_issues import label_issues
from uldl_studio.core.table import classes_of

__all__ = ["Score", "score", "get", "registered", "exported", "names",
           "unregister", "values", "badness", "oriented", "worst_first", "sort_order"]


@dataclass(frozen=True)
class Score:
    """One registered per-sample score (see the module docstring)."""

    name: str
    label: str
    meaning: str
    compute: Callable[[pd.DataFrame], np.ndarray]
    bad: str = "high"                      # "high" | "low": which end an annotator reviews first
    cmap: str = "viridis"                  # colour-map hint (a pyqtgraph / colorcet name)
    exported: bool = True                  # a column of the soft-label export
    value_range: tuple[float, float] | None = None   # the values' possible range (colour clip, reader)
    diverging: bool = False                # centred on 0 (colour scale symmetric)
    short: str = ""                        # a few characters for narrow places (inspector rows)

    @property
    def short_label(self) -> str:
        return self.short or self.name.replace("_", " ")

    @property
    def tooltip(self) -> str:
        end = "high" if self.bad == "high" else "low"
        return f"{self.meaning} (bad end: {end})"

    def values(self, table: pd.DataFrame) -> np.ndarray:
        """float64 per row; all NaN when the table lacks what the score needs."""
        try:
            out = np.asarray(self.compute(table), dtype=np.float64)
        except KeyError:
            return np.full(len(table), np.nan)
        if out.shape != (len(table),):
            raise ValueError(f"score {self.name!r} returned shape {out.shape} for {len(table)} rows")
        return out


_REGISTRY: dict[str, Score] = {}


def score(name: str, *, label: str, meaning: str, bad: str = "high", cmap: str = "viridis",
          exported: bool = True, value_range: tuple[float, float] | None = None,
          diverging: bool = False, short: str = ""):
    """Decorator: register ``fn(table) -> np.ndarray`` as the score ``name``."""
    if bad not in ("high", "low"):
        raise ValueError(f"score {name!r}: bad must be 'high' or 'low', not {bad!r}")

    def register(fn: Callable[[pd.DataFrame], np.ndarray]):
        _REGISTRY[name] = Score(name, label, meaning, fn, bad, cmap, exported, value_range, diverging, short)
        return fn

    return register


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def get(name: str) -> Score:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown score {name!r}; registered: {', '.join(_REGISTRY)}") from None


def registered() -> list[Score]:
    """All scores, in registration order."""
    return list(_REGISTRY.values())


def names() -> list[str]:
    return list(_REGISTRY)


def exported() -> list[Score]:
    return [s for s in _REGISTRY.values() if s.exported]


def values(table: pd.DataFrame, name: str) -> np.ndarray:
    return get(name).values(table)


def oriented(name: str, values: np.ndarray) -> np.ndarray:
    """``values`` of score ``name`` oriented so that higher is worse (NaN kept)."""
    return values if get(name).bad == "high" else -values


def badness(table: pd.DataFrame, name: str) -> np.ndarray:
    """The score oriented so that higher is worse (NaN kept)."""
    return oriented(name, get(name).values(table))


def worst_first(bad: np.ndarray) -> np.ndarray:
    """Row order by an oriented score, the worst first (stable; NaN last)."""
    return np.argsort(np.where(np.isfinite(bad), -bad, np.inf), kind="stable")


def sort_order(table: pd.DataFrame, name: str,
               values_of: Callable[[str], np.ndarray] | None = None) -> np.ndarray:
    """Row order of ``table`` by sort key ``name``: a score's worst first (stable; NaN last),
    or ``"sample_id"`` by id. ``values_of(name)`` gives the score's values when the caller
    keeps them (a session's cache); else they are computed from ``table``."""
    if name == "sample_id":
        return np.argsort(table["sample_id"].to_numpy().astype(str), kind="stable")
    return worst_first(oriented(name, get(name).values(table) if values_of is None else values_of(name)))


# ------------------------------------------------------------------------------- helpers
def _distribution(table: pd.DataFrame, prefix: str) -> np.ndarray:
    classes = classes_of(table)
    cols = [f"{prefix}{c}" for c in classes]
    if not classes or any(c not in table for c in cols):
        raise KeyError(prefix)
    return table[cols].to_numpy(np.float64)


def _given_index(table: pd.DataFrame, m: int) -> np.ndarray:
    return np.clip(table["label"].to_numpy(np.int64), 0, m - 1)


def p_given_and_best_other(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """p[label] and the highest probability of another class, per row of ``probs`` (N, m)."""
    probs = np.asarray(probs, dtype=np.float64)
    n, m = probs.shape
    rows = np.arange(n)
    p_given = probs[rows, labels]
    others = probs.copy()
    others[rows, labels] = -np.inf
    best_other = others.max(axis=1) if m > 1 else np.zeros(n)
    return p_given, best_other


def _p_given_and_best_other(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    probs = _distribution(table, "p_")
    return p_given_and_best_other(probs, _given_index(table, probs.shape[1]))


def normalised_entropy(dist: np.ndarray) -> np.ndarray:
    """Shannon entropy of each row divided by log(m): 0 = one class, 1 = uniform; NaN rows stay NaN."""
    dist = np.asarray(dist, dtype=np.float64)
    m = dist.shape[1] if dist.ndim == 2 else 0
    if m < 2:
        return np.zeros(len(dist))
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(dist > 0, dist * np.log(np.where(dist > 0, dist, 1.0)), 0.0)
    out = np.maximum(-terms.sum(axis=1) / np.log(m), 0.0)  # a one-hot row is 0, never -0
    out[~np.isfinite(dist).all(axis=1)] = np.nan
    return out


def _column(table: pd.DataFrame, name: str) -> np.ndarray:
    return table[name].to_numpy(np.float64)


# ------------------------------------------------------------------------------- the scores
@score("lambda", label="λ (uncertainty)",
       meaning="learned label uncertainty: how far the training target leans on the neighbours "
               "instead of the given label", value_range=(0.0, 1.0))
def _lambda(table: pd.DataFrame) -> np.ndarray:
    return _column(table, "lambda")


@score("ambiguity", label="ambiguity (combined)",
       meaning="the evidence combined: mean percentile rank of self-confidence, neighbour "
               "disagreement and (with --folds) the out-of-fold self-confidence; high = review first",
       value_range=(0.0, 1.0), cmap="plasma")
def _ambiguity(table: pd.DataFrame) -> np.ndarray:
    parts = [badness(table, name) for name in AMBIGUITY_PARTS if name in _REGISTRY]
    return rank_average(parts)


@score("label_wrong_prob", short="P(label wrong)", label="P(label is wrong)",
       meaning="calibrated probability that the current label is wrong (held-out temperature, a "
               "class-pair noise model, Bayes; core.label_issues): its sum is the estimated number "
               "of label issues; the map highlights the likeliest, as many as are expected 85 % wrong", value_range=(0.0, 1.0),
       cmap="issues", exported=False)
def _label_wrong_prob(table: pd.DataFrame) -> np.ndarray:
    return label_issues(table).p_wrong


@score("self_confidence", short="1 − p[given]", label="self-confidence 1 − p[given]",
       meaning="1 − the model's probability for the current label", value_range=(0.0, 1.0),
       cmap="magma")
def _self_confidence(table: pd.DataFrame) -> np.ndarray:
    p_given, _ = _p_given_and_best_other(table)
    return 1.0 - p_given


@score("margin", label="margin (best other − p[given])",
       meaning="the best other class's probability minus the current label's; above 0 = the "
               "model prefers another class", value_range=(-1.0, 1.0), cmap="CET-D1", diverging=True)
def _margin(table: pd.DataFrame) -> np.ndarray:
    p_given, best_other = _p_given_and_best_other(table)
    return best_other - p_given


@score("aum", short="AUM", label="area under the margin",
       meaning="p[given] − best other class, averaged over the training epochs; below 0 = the "
               "label was never learned", bad="low", value_range=(-1.0, 1.0), cmap="CET-D1",
       diverging=True)
def _aum(table: pd.DataFrame) -> np.ndarray:
    return _column(table, "dyn_margin_mean")


@score("confidence_mean", short="confidence", label="mean confidence over epochs",
       meaning="p[given] averaged over the training epochs (data-map confidence)", bad="low",
       value_range=(0.0, 1.0), cmap="magma")
def _confidence_mean(table: pd.DataFrame) -> np.ndarray:
    return _column(table, "dyn_p_given_mean")


@score("variability", label="variability over epochs",
       meaning="standard deviation of p[given] over the training epochs (data-map variability)",
       value_range=(0.0, 0.5), cmap="cividis")
def _variability(table: pd.DataFrame) -> np.ndarray:
    return _column(table, "dyn_p_given_std")


@score("knn_disagreement", short="kNN disagreement", label="neighbour disagreement",
       meaning="how much the nearest training samples in feature space disagree with the given "
               "label (their labels and predictions)", value_range=(0.0, 1.0), cmap="cividis")
def _knn_disagreement(table: pd.DataFrame) -> np.ndarray:
    return _column(table, "knn_disagreement")


@score("oof_confidence", short="1 − OOF p[given]", label="out-of-fold 1 − p[given]",
       meaning="1 − p[current label] from cross-fitted models that never saw the sample "
               "(train --folds K)", value_range=(0.0, 1.0), cmap="magma")
def _oof_confidence(table: pd.DataFrame) -> np.ndarray:
    probs = _distribution(table, "oof_")
    return 1.0 - probs[np.arange(len(probs)), _given_index(table, probs.shape[1])]


@score("entropy", short="entropy of d", label="entropy of d",
       meaning="normalised entropy of the constructed distribution d (0 = one class, 1 = uniform)",
       value_range=(0.0, 1.0), cmap="inferno")
def _entropy(table: pd.DataFrame) -> np.ndarray:
    return normalised_entropy(_distribution(table, "d_"))


@score("lambda_change", short="λ change", label="λ change since last run",
       meaning="λ minus λ of the previous training in this run folder (after edits)",
       exported=False, cmap="CET-D1", diverging=True, value_range=(-1.0, 1.0))
def _lambda_change(table: pd.DataFrame) -> np.ndarray:
    return _column(table, "lambda") - _column(table, "lambda_prev")


# Votes of several people (core.annotations.with_votes adds the columns). Not exported as
# scores: the export writes the vote columns themselves (core.export.vote_columns).
def _vote_shares(table: pd.DataFrame) -> np.ndarray:
    """(N, m) each sample's votes as shares; NaN rows where nobody voted."""
    counts = _distribution(table, "votes_")
    total = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, counts / total, np.nan)


@score("vote_entropy", short="vote entropy", label="entropy of the votes",
       meaning="normalised entropy of the people's votes (0 = unanimous, 1 = evenly split); "
               "empty where nobody voted", value_range=(0.0, 1.0), cmap="inferno", exported=False)
def _vote_entropy(table: pd.DataFrame) -> np.ndarray:
    return normalised_entropy(_vote_shares(table))


@score("model_vs_votes", short="model vs votes", label="model against the votes",
       meaning="1 − the intersection of the model's prediction p with the votes' shares (total "
               "variation; one vote v: 1 − p[v]); empty where nobody voted", value_range=(0.0, 1.0),
       cmap="magma", exported=False)
def _model_vs_votes(table: pd.DataFrame) -> np.ndarray:
    return 1.0 - np.minimum(_distribution(table, "p_"), _vote_shares(table)).sum(axis=1)


@score("needs_another_vote", short="next vote", label="needs another vote",
       meaning="how much one more person's vote is expected to change the combined soft label "
               "(few votes, split votes, model against votes; core.annotations)",
       value_range=(0.0, 1.0), cmap="plasma", exported=False)
def _needs_another_vote(table: pd.DataFrame) -> np.ndarray:
    return _column(table, "next_vote_gain")


#: the scores ``ambiguity`` combines (each oriented bad = high, then rank-averaged)
# Three views of the label: the model's own (self-confidence), its neighbourhood's (neighbour
# disagreement) and, with --folds, held-out models' (out-of-fold self-confidence). Measured on
# FER+ (one annotator per image, three draws, bench/ferplus_scores.py): this pair ranks the wrong
# labels as well as any other combination (AUROC 0.821 on LDLVA runs, 0.829 on CE) with the best
# precision in the top 5 % (0.785 / 0.801); adding λ, the area under the margin or the epoch-mean
# confidence (both averaged over underfit early epochs) lowered the top-5 % precision to 0.75.
AMBIGUITY_PARTS = ("self_confidence", "knn_disagreement", "oof_confidence")


def rank_average(parts: list[np.ndarray]) -> np.ndarray:
    """Mean percentile rank (0..1, ties averaged) of each row over the parts it has a finite
    value in; NaN where it has none.  Rank-averaging puts scores of any scale on one footing."""
    if not parts:
        return np.empty(0)
    n = len(parts[0])
    total = np.zeros(n)
    count = np.zeros(n)
    for part in parts:
        finite = np.isfinite(part)
        k = int(finite.sum())
        if k < 2 or np.ptp(part[finite]) == 0:
            continue  # a constant part (e.g. λ = 0 of a plain CE run) carries no ranking
        total[finite] += (pd.Series(part[finite]).rank(method="average").to_numpy() - 1) / (k - 1)
        count[finite] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)
