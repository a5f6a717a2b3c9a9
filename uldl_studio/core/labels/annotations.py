"""Several annotators, one label distribution: votes, agreement, reliability and the next vote.

Annotators and their journals
-----------------------------
Each annotator works under a name and writes their own edit journal (``core.edits``: the
same append-only, fsync-ed, checksummed format with undo/redo)::

    RUN/edits.jsonl                the default annotator, DEFAULT_ANNOTATOR ("annotator")
    RUN/annotations/<name>.jsonl   every other annotator
    RUN/annotations/<name>~<tag>.jsonl
                                   more journals of the same annotator (a journal copied in
                                   from another copy of the run; <tag> is free text)

``RUN/edits.jsonl`` is the journal every run had before annotators had names; it stays the
journal of the default annotator, so existing runs keep working and ``retrain`` keeps
learning from it. Each journal has its own writer lock, so several processes can write
different annotators' journals in one run at once; one annotator's journal is still written
by one process at a time (``core.edits``: a second writer gets a clear error).

A name is 1–64 characters of letters, digits, ``.``, ``_`` and ``-``, starting with a letter
or digit (it is a file name on every platform); anything else raises :class:`AnnotatorError`
with a one-line message.

Votes
-----
An annotator's relabel of a sample (or a confirmation: relabelling it to the label it has)
is that annotator's *vote* for the sample; "unsure" stays a mark (``Votes.unsure``), not a
vote. :func:`read_votes` merges every journal of the run:

* one annotator with several journals (``<name>.jsonl``, ``<name>~<tag>.jsonl``): per sample,
  the journal that changed that sample's vote last (by its records' time stamps) decides;
  within one journal the latest state wins (undo included);
* a vote for a sample id the table lacks, or a label outside its classes, is left out and
  reported: one :class:`VotesWarning` with the counts per annotator (``Votes.unknown``);
* votes the dataset itself carries are votes too: the SampleTable's ``crowd_<class>``
  columns (vote counts per class: FER+'s ten annotators, a CSV's ``votes_<class>`` columns).
  Such crowd votes have no annotator identity: they are modelled as the votes of one
  anonymous source, ``"crowd"``, whose members share one confusion matrix and vote
  independently given the true class. Without ``crowd_`` columns, ``ref_<class>`` columns
  that are exact vote fractions (each row × some n ≤ ``MAX_REF_VOTES`` is a whole number) are
  read as the smallest such counts (a lower bound on the number of voters; ``crowd_`` is the
  exact form); continuous reference distributions (the demo's) are not votes;
* the dataset's own given label is one vote of the source ``"dataset"``, with its own
  estimated reliability, when the dataset carries no crowd votes (where it does, the given
  label was derived from them: counting it again would count those people twice).

``votes_<class>``, ``n_voters`` and ``vote_agreement`` count people: the named annotators and
the crowd, not the ``"dataset"`` source.

Agreement and reliability
-------------------------
* Agreement over the dataset and per class: Krippendorff's α (nominal; the ``krippendorff``
  package, from the per-sample vote counts, so anonymous crowd votes count as well). Per class,
  α of the two-valued vote "this class or not". Samples with fewer than two votes do not
  enter α. ``vote_agreement`` of a sample is the share of pairs of its votes that agree.
* Reliability: Dawid–Skene (:func:`dawid_skene`, EM over one confusion matrix per source,
  ``C_s[y, v]`` = P(source s votes v | true class y), and the class prior π). A source's
  accuracy is ``Σ_y π_y C_s[y, y]``, its per-class accuracy the diagonal of ``C_s``.
* Who agrees with whom: the pairwise agreement matrix, the share of the samples both voted on
  where their votes agree (with the crowd: the mean share of the crowd's votes equal to the
  other's vote; the crowd with itself: the share of pairs of its votes that agree).

The combined label
------------------
The posterior over the true class of sample i, given its votes, every source's confusion
matrix and the model's prediction p_i as a prior of weight w (CROWDLAB's idea)::

    log P(y | votes, p) = log π_y + w (log p_iy − log p̄_y) + Σ_votes log C_s[y, v] + const

``p̄`` is the model's mean prediction, so ``p / p̄`` is the model's evidence (a likelihood
ratio) and w = 0 gives the votes-only Dawid–Skene posterior. w (in [0, ``MAX_MODEL_WEIGHT``])
is fitted on the *valid* split, where p is a held-out prediction: the weight that best predicts
each vote of a valid sample from its other votes and the model (the leave-one-vote-out
likelihood); 1.0 when the valid split has no votes.

The combined *soft label* is the distribution of a further vote given all that:
``soft_i = posterior_i · C_pool``, where ``C_pool`` is the people's confusion matrices averaged
by the votes each cast. A label distribution is a distribution of people's votes (FER+'s
reference is one), so this is what the export writes as ``d_<class>`` for every sample with at
least two votes (``combined_<class>``); a sample with one vote or none keeps the run's soft label
with the annotator's review (``core.soft_labels.reviewed_soft_labels``).

The next vote
-------------
``next_vote_gain`` (score ``needs_another_vote``): the expected change of a sample's soft label
if one more person voted, ``Σ_v P(v) · TV(soft, soft after v)``, with P(v) = soft_v the
predictive distribution of that vote and TV the total variation distance. It is high for
samples with few votes, with split votes and where the model and the votes disagree, and
falls towards 0 as unanimous votes accumulate.

API
---
``annotator_journal(run_root, name)``, ``annotator_names(run_root)``,
``read_votes(run_root, table)`` → :class:`Votes`, ``analyse_votes(table, votes)`` →
:class:`Consensus`, ``with_votes(table, votes, consensus)`` (the table columns), and
``vote_table(table, run_root)`` (all three at once). The numpy level (``dawid_skene``,
``fit_model_weight``, ``combined_posterior``, ``predictive``, ``next_vote_gain``,
``krippendorff_alpha``) works on plain arrays.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from uldl_studio.core.labels.edits import JOURNAL_NAME, EditJournal
from uldl_studio.core.table import DatasetError, classes_of

__all__ = [
    "DEFAULT_ANNOTATOR", "ANNOTATIONS_DIR", "CROWD", "DATASET", "AnnotatorError", "VotesWarning",
    "validate_annotator_name", "annotator_journal", "annotator_journal_path", "annotator_names",
    "journal_files", "Votes", "read_votes", "crowd_votes", "DawidSkene", "dawid_skene",
    "combined_posterior", "fit_model_weight", "predictive", "next_vote_gain", "krippendorff_alpha",
    "Reliability", "Consensus", "analyse_votes", "with_votes", "vote_table", "vote_columns",
    "crowd_columns", "combined_columns",
]

#: the annotator whose journal is RUN/edits.jsonl (every run's journal before annotators had names)
DEFAULT_ANNOTATOR = "annotator"
#: the folder of the named annotators' journals, in the run folder
ANNOTATIONS_DIR = "annotations"
#: the anonymous source of the votes a dataset carries (crowd_<class> columns)
CROWD = "crowd"
#: the source of the dataset's own given label
DATASET = "dataset"
#: ref_<class> rows are read as votes when some n up to this makes every entry a whole number
MAX_REF_VOTES = 20
#: the model's prior weight is fitted in [0, MAX_MODEL_WEIGHT]
MAX_MODEL_WEIGHT = 4.0
#: the weight used when no valid sample has a vote to fit it on
DEFAULT_MODEL_WEIGHT = 1.0
#: samples with at least this many votes get the combined soft label in the export
MIN_VOTES_COMBINED = 2

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_RESERVED = {CROWD, DATASET}


class AnnotatorError(DatasetError):
    """A bad annotator name (the message is one line)."""


class VotesWarning(UserWarning):
    """Votes that do not fit the table (unknown sample ids, labels outside the classes)."""


def crowd_columns(classes: Sequence[str]) -> list[str]:
    return [f"crowd_{c}" for c in classes]


def vote_columns(classes: Sequence[str]) -> list[str]:
    """The per-sample vote columns ``with_votes`` adds: ``votes_<class>…, n_voters, vote_agreement``."""
    return [*(f"votes_{c}" for c in classes), "n_voters", "vote_agreement"]


def combined_columns(classes: Sequence[str]) -> list[str]:
    return [f"combined_{c}" for c in classes]


# ------------------------------------------------------------------------ names and journals
def validate_annotator_name(name: str) -> str:
    """``name`` when it is a valid annotator name, else :class:`AnnotatorError` (one line)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.lower() in _RESERVED \
            or name.endswith(".") or name.lower().endswith(".jsonl"):
        shown = name if isinstance(name, str) else type(name).__name__
        raise AnnotatorError(
            f"annotator name {shown!r} is not valid: use 1-64 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit (not {CROWD!r} or {DATASET!r})")
    return name


def annotator_journal_path(run_root: str | Path, name: str) -> Path:
    """Where annotator ``name`` journals in the run folder ``run_root`` (``run.root``)."""
    name = validate_annotator_name(name)
    root = Path(run_root)
    if name == DEFAULT_ANNOTATOR:
        return root / JOURNAL_NAME
    return root / ANNOTATIONS_DIR / f"{name}.jsonl"


def annotator_journal(run_root: str | Path, name: str, *, recover: bool = False) -> EditJournal:
    """The edit journal of annotator ``name`` in the run folder ``run_root`` (an empty one when
    they have not voted yet; the folder is created on the first write). Its writer lock is its
    own: other annotators' processes can write their journals at the same time."""
    return EditJournal(annotator_journal_path(run_root, name), recover=recover)


def journal_files(run_root: str | Path) -> dict[str, list[Path]]:
    """annotator name → their journal files in the run (default annotator first, then by name).
    Files in ``annotations/`` whose name is not a valid annotator name are skipped with a warning."""
    root = Path(run_root)
    found: dict[str, list[Path]] = {}
    if (root / JOURNAL_NAME).is_file():
        found[DEFAULT_ANNOTATOR] = [root / JOURNAL_NAME]
    folder = root / ANNOTATIONS_DIR
    if folder.is_dir():
        for path in sorted(folder.glob("*.jsonl")):
            name = path.stem.split("~", 1)[0]
            try:
                validate_annotator_name(name)
            except AnnotatorError:
                warnings.warn(f"{path}: not an annotator journal (bad name {name!r}); skipped", VotesWarning,
                              stacklevel=2)
                continue
            found.setdefault(name, []).append(path)
    return {name: found[name] for name in sorted(found, key=lambda n: (n != DEFAULT_ANNOTATOR, n))}


def annotator_names(run_root: str | Path) -> list[str]:
    """The annotators with a journal in the run (default annotator first, then by name)."""
    return list(journal_files(run_root))


def _journal_votes(path: Path) -> tuple[dict[str, int], set[str], dict[str, float]]:
    """(sample → vote, unsure samples, sample → time its vote last changed) of one journal."""
    journal = EditJournal(path)
    try:
        labels, unsure, history = journal.labels(), journal.unsure(), journal.history
    finally:
        journal.close()
    by_seq = {r["seq"]: r for r in history}
    touched: dict[str, float] = {}
    for record in history:
        command = by_seq.get(record.get("target")) if record["op"] in ("undo", "redo") else record
        if command is not None and command["op"] == "relabel":
            for sid in command["ids"]:
                touched[sid] = float(record.get("ts", 0.0))
    return labels, unsure, touched


# ------------------------------------------------------------------------------------ votes
@dataclass
class Votes:
    """Every vote on a table's samples (rows in table order). See the module docstring."""

    classes: list[str]
    sample_ids: np.ndarray            # (n,) str
    annotators: list[str]             # named annotators, columns of ``labels`` / ``unsure``
    labels: np.ndarray                # (n, A) int64 vote per annotator, -1 = none
    unsure: np.ndarray                # (n, A) bool: the annotator marked the sample unsure
    crowd: np.ndarray                 # (n, m) float vote counts the dataset carries (anonymous)
    given: np.ndarray                 # (n,) int64 the dataset's own label
    given_is_source: bool             # the given label is a vote of the source "dataset"
    unknown: dict[str, int] = field(default_factory=dict)  # annotator → votes left out

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def counts(self) -> np.ndarray:
        """(n, m) people's votes per class: the crowd's plus the named annotators'."""
        out = self.crowd.astype(np.float64, copy=True)
        for a in range(self.labels.shape[1]):
            voted = self.labels[:, a] >= 0
            np.add.at(out, (np.flatnonzero(voted), self.labels[voted, a]), 1.0)
        return out

    def n_voters(self) -> np.ndarray:
        """(n,) people who voted on each sample."""
        return self.counts().sum(axis=1)

    def agreement(self) -> np.ndarray:
        """(n,) share of pairs of a sample's votes that agree; NaN with fewer than two votes."""
        return _pair_agreement(self.counts())

    def votes_cast(self) -> dict[str, int]:
        """Votes per source: each annotator, the crowd, the dataset (when it is a source)."""
        out = {name: int((self.labels[:, a] >= 0).sum()) for a, name in enumerate(self.annotators)}
        if self.crowd.sum() > 0:
            out[CROWD] = int(round(float(self.crowd.sum())))
        if self.given_is_source:
            out[DATASET] = len(self.given)
        return out

    def sources(self) -> tuple[list[str], np.ndarray, np.ndarray | None]:
        """(source names, (n, S) label matrix of the identified sources, crowd counts or None):
        the named annotators, then ``"dataset"`` when the given label is a source, then
        ``"crowd"`` when the dataset carries votes (the order of ``DawidSkene.confusion``)."""
        names = list(self.annotators)
        labels = self.labels
        if self.given_is_source:
            names.append(DATASET)
            labels = np.column_stack([labels, self.given]) if labels.size else self.given[:, None].copy()
        labels = labels.reshape(len(self.given), -1).astype(np.int64)
        crowd = self.crowd if self.crowd.sum() > 0 else None
        if crowd is not None:
            names.append(CROWD)
        return names, labels, crowd


def _pair_agreement(counts: np.ndarray) -> np.ndarray:
    n = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (counts * (counts - 1)).sum(axis=1) / (n * (n - 1))
    out[n < 2] = np.nan
    return out


def crowd_votes(table: pd.DataFrame) -> np.ndarray:
    """(n, m) vote counts the dataset carries: ``crowd_<class>`` columns, else ``ref_<class>``
    rows that are exact vote fractions (module docstring); zeros elsewhere."""
    classes = classes_of(table)
    n, m = len(table), len(classes)
    cols = crowd_columns(classes)
    if all(c in table for c in cols):
        values = table[cols].to_numpy(np.float64)
        values = np.where(np.isfinite(values) & (values >= 0), values, 0.0)
        return np.round(values)
    refs = [f"ref_{c}" for c in classes]
    out = np.zeros((n, m))
    if not all(c in table for c in refs):
        return out
    ref = table[refs].to_numpy(np.float64)
    todo = np.isfinite(ref).all(axis=1) & (ref.sum(axis=1) > 0)
    for k in range(1, MAX_REF_VOTES + 1):
        if not todo.any():
            break
        scaled = ref[todo] * k
        whole = (np.abs(scaled - np.round(scaled)) < 1e-6).all(axis=1) & (np.abs(scaled.sum(axis=1) - k) < 1e-6)
        rows = np.flatnonzero(todo)[whole]
        out[rows] = np.round(scaled[whole])
        todo[rows] = False
    return out


def read_votes(run_root: str | Path | None, table: pd.DataFrame) -> Votes:
    """Every vote on ``table``'s samples: the journals in the run folder ``run_root`` (None: the
    dataset's own votes only), the crowd votes the dataset carries, and the given label (module
    docstring). Votes that do not fit the table are reported in one :class:`VotesWarning`."""
    classes = classes_of(table)
    m = len(classes)
    ids = table["sample_id"].astype(str).to_numpy()
    index = pd.Index(ids)
    if not index.is_unique:
        raise DatasetError("read_votes: the table has duplicate sample ids")
    given_col = "label_given" if "label_given" in table else "label"
    given = table[given_col].to_numpy(np.int64)
    crowd = crowd_votes(table)
    files = journal_files(run_root) if run_root is not None else {}
    names = list(files)
    labels = np.full((len(ids), len(names)), -1, dtype=np.int64)
    unsure = np.zeros((len(ids), len(names)), dtype=bool)
    unknown: dict[str, int] = {}
    for a, name in enumerate(names):
        best: dict[str, tuple[float, int | None]] = {}
        marks: set[str] = set()
        for path in files[name]:
            votes, marked, touched = _journal_votes(path)
            marks |= marked
            for sid, when in touched.items():
                if sid not in best or when >= best[sid][0]:
                    best[sid] = (when, votes.get(sid))
            for sid, vote in votes.items():  # a vote without a time stamp (never expected)
                best.setdefault(sid, (0.0, vote))
        chosen = {sid: vote for sid, (_, vote) in best.items() if vote is not None}
        if chosen:
            sids = list(chosen)
            rows = index.get_indexer(sids)
            values = np.fromiter(chosen.values(), dtype=np.int64, count=len(sids))
            ok = (rows >= 0) & (values < m)
            if (~ok).any():
                unknown[name] = int((~ok).sum())
            labels[rows[ok], a] = values[ok]
        if marks:
            rows = index.get_indexer(list(marks))
            unsure[rows[rows >= 0], a] = True
    if unknown:
        listing = ", ".join(f"{name}: {k}" for name, k in unknown.items())
        warnings.warn(f"{run_root}: {sum(unknown.values())} vote(s) are for samples not in the table or "
                      f"classes outside it ({listing}); they are left out (the dataset changed since?)",
                      VotesWarning, stacklevel=2)
    return Votes(classes=list(classes), sample_ids=ids, annotators=names, labels=labels, unsure=unsure,
                 crowd=crowd, given=given, given_is_source=bool(crowd.sum() == 0), unknown=unknown)


# ------------------------------------------------------------------------------ Dawid–Skene
@dataclass
class DawidSkene:
    """A fitted Dawid–Skene model: ``confusion[s, y, v]`` = P(source s votes v | true class y)
    for the identified sources (the columns of the label matrix), then the crowd (when
    fitted with crowd counts); ``prior[y]``; ``posterior`` (n, m) of the rows it was fitted on."""

    confusion: np.ndarray
    prior: np.ndarray
    posterior: np.ndarray
    has_crowd: bool
    iterations: int

    def accuracy(self) -> np.ndarray:
        """(S,) Σ_y π_y C_s[y, y] per source."""
        return np.einsum("y,syy->s", self.prior, self.confusion)

    def log_likelihood(self, labels: np.ndarray, crowd: np.ndarray | None = None) -> np.ndarray:
        """(n, m) Σ over the votes of log C_s[y, v] (the votes' evidence for each class)."""
        return _log_likelihood(self.confusion, labels, crowd if self.has_crowd else None)


def _one_hot(labels: np.ndarray, m: int) -> np.ndarray:
    out = np.zeros((len(labels), m))
    voted = labels >= 0
    out[np.flatnonzero(voted), labels[voted]] = 1.0
    return out


def _log_likelihood(confusion: np.ndarray, labels: np.ndarray, crowd: np.ndarray | None) -> np.ndarray:
    labels = np.asarray(labels, np.int64).reshape(len(labels), -1)
    m = confusion.shape[1]
    log_c = np.log(np.clip(confusion, 1e-300, None))  # an impossible vote: very unlikely, never NaN
    out = np.zeros((len(labels), m))
    for s in range(labels.shape[1]):
        out += _one_hot(labels[:, s], m) @ log_c[s].T
    if crowd is not None:
        out += np.asarray(crowd, np.float64) @ log_c[-1].T
    return out


def _normalise_log(log_p: np.ndarray) -> np.ndarray:
    log_p = log_p - log_p.max(axis=1, keepdims=True)
    p = np.exp(log_p)
    return p / p.sum(axis=1, keepdims=True)


def dawid_skene(labels: np.ndarray, n_classes: int, crowd: np.ndarray | None = None, *,
                smoothing: float = 1.0, max_iter: int = 200, tol: float = 1e-7) -> DawidSkene:
    """Fit Dawid–Skene by EM.

    ``labels``: (n, S) the vote of each identified source per sample, -1 = none; ``crowd``:
    (n, m) vote counts of one anonymous source whose votes are independent given the class (or
    None). Starts from the vote shares (majority vote), then alternates the M-step (π and each
    ``C_s`` from the posteriors, with ``smoothing`` pseudo-votes per row of ``C_s``, half on the
    diagonal and half spread over the other classes) and the E-step, until the mean
    log-likelihood changes by less than ``tol``. Rows without a vote keep the prior.
    """
    m = int(n_classes)
    labels = np.asarray(labels, np.int64).reshape(len(labels), -1) if len(labels) else \
        np.zeros((0 if crowd is None else len(crowd), 0), np.int64)
    n, n_src = labels.shape
    crowd = None if crowd is None else np.asarray(crowd, np.float64)
    if crowd is not None and crowd.shape != (n, m):
        raise ValueError(f"crowd counts have shape {crowd.shape}, expected {(n, m)}")
    hot = [_one_hot(labels[:, s], m) for s in range(n_src)]
    counts = sum(hot, np.zeros((n, m))) + (crowd if crowd is not None else 0.0)
    voted = counts.sum(axis=1) > 0
    post = np.full((n, m), 1.0 / m)
    post[voted] = (counts[voted] + 1e-2) / (counts[voted] + 1e-2).sum(axis=1, keepdims=True)
    pseudo = np.full((m, m), 0.5 * smoothing / max(m - 1, 1))
    np.fill_diagonal(pseudo, 0.5 * smoothing)
    sources = hot + ([crowd] if crowd is not None else [])
    previous = -np.inf
    iterations = 0
    for iterations in range(1, max_iter + 1):
        weight = post[voted]
        prior = (weight.sum(axis=0) + 1.0) / (weight.sum() + m)
        confusion = np.stack([pseudo + weight.T @ votes[voted] for votes in sources]) if sources else \
            np.zeros((0, m, m))
        confusion /= confusion.sum(axis=2, keepdims=True)
        log_joint = np.log(prior) + _log_likelihood(confusion, labels, crowd)
        top = log_joint.max(axis=1, keepdims=True)
        log_evidence = top[:, 0] + np.log(np.exp(log_joint - top).sum(axis=1))
        post = np.where(voted[:, None], np.exp(log_joint - log_evidence[:, None]), prior)
        current = float(log_evidence[voted].mean()) if voted.any() else 0.0
        if abs(current - previous) < tol:
            break
        previous = current
    return DawidSkene(confusion=confusion, prior=prior, posterior=post, has_crowd=crowd is not None,
                      iterations=iterations)


def _model_term(probs: np.ndarray | None, n: int, m: int) -> np.ndarray:
    """(n, m) log p − log p̄ (the model's evidence), 0 where a row has no prediction."""
    if probs is None:
        return np.zeros((n, m))
    probs = np.asarray(probs, np.float64)
    ok = np.isfinite(probs).all(axis=1) & (probs.sum(axis=1) > 0)
    out = np.zeros((n, m))
    if ok.any():
        p = np.clip(probs[ok] / probs[ok].sum(axis=1, keepdims=True), 1e-6, None)
        out[ok] = np.log(p) - np.log(p.mean(axis=0))
    return out


def combined_posterior(ds: DawidSkene, labels: np.ndarray, crowd: np.ndarray | None = None,
                       probs: np.ndarray | None = None, weight: float = 0.0) -> np.ndarray:
    """(n, m) P(true class | votes, the model's p as a prior of weight ``weight``) (module docstring)."""
    labels = np.asarray(labels, np.int64).reshape(len(labels), -1)
    n, m = len(labels), len(ds.prior)
    log_p = np.log(ds.prior) + weight * _model_term(probs, n, m) + ds.log_likelihood(labels, crowd)
    return _normalise_log(log_p)


def _held_out_nll(ds: DawidSkene, labels: np.ndarray, crowd: np.ndarray | None, model: np.ndarray,
                  weight: float) -> float:
    """Mean −log P(vote | the sample's other votes, the model) over every vote of the rows."""
    m = len(ds.prior)
    log_c = np.log(np.clip(ds.confusion, 1e-300, None))
    base = np.log(ds.prior) + weight * model + ds.log_likelihood(labels, crowd)
    total, count = 0.0, 0.0
    for s in range(labels.shape[1]):
        rows = np.flatnonzero(labels[:, s] >= 0)
        if rows.size:
            v = labels[rows, s]
            rest = _normalise_log(base[rows] - log_c[s][:, v].T)
            total -= np.log(np.clip((rest * ds.confusion[s][:, v].T).sum(axis=1), 1e-300, None)).sum()
            count += rows.size
    if crowd is not None and ds.has_crowd:
        for v in range(m):
            rows = np.flatnonzero(crowd[:, v] > 0)
            if rows.size:
                rest = _normalise_log(base[rows] - log_c[-1][:, v])
                p_v = np.clip(rest @ ds.confusion[-1][:, v], 1e-300, None)
                total -= float((crowd[rows, v] * np.log(p_v)).sum())
                count += float(crowd[rows, v].sum())
    return total / count if count else 0.0


def fit_model_weight(ds: DawidSkene, labels: np.ndarray, crowd: np.ndarray | None, probs: np.ndarray,
                     rows: np.ndarray | None = None) -> float:
    """The model's prior weight w in [0, ``MAX_MODEL_WEIGHT``] that best predicts each vote of
    ``rows`` (the valid split's voted samples) from the row's other votes and the model: the
    leave-one-vote-out likelihood. ``DEFAULT_MODEL_WEIGHT`` when ``rows`` hold no vote."""
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, np.int64).reshape(len(labels), -1)
    rows = np.arange(len(labels)) if rows is None else np.asarray(rows)
    if rows.dtype == bool:
        rows = np.flatnonzero(rows)
    sub_labels = labels[rows]
    sub_crowd = None if crowd is None else np.asarray(crowd, np.float64)[rows]
    has_votes = (sub_labels >= 0).any() or (sub_crowd is not None and sub_crowd.sum() > 0)
    if not rows.size or not has_votes:
        return DEFAULT_MODEL_WEIGHT
    model = _model_term(np.asarray(probs, np.float64)[rows], rows.size, len(ds.prior))
    best = minimize_scalar(lambda w: _held_out_nll(ds, sub_labels, sub_crowd, model, w),
                           bounds=(0.0, MAX_MODEL_WEIGHT), method="bounded", options={"xatol": 1e-3})
    return float(best.x)


def predictive(posterior: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """(n, m) the distribution of one more vote: ``posterior @ pool`` (``pool[y, v]``)."""
    out = np.asarray(posterior, np.float64) @ np.asarray(pool, np.float64)
    return out / out.sum(axis=1, keepdims=True)


def next_vote_gain(posterior: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """(n,) expected total-variation change of the soft label ``posterior @ pool`` when one more
    vote v is drawn from its predictive distribution and added (module docstring)."""
    post = np.asarray(posterior, np.float64)
    pool = np.asarray(pool, np.float64)
    soft = predictive(post, pool)
    gain = np.zeros(len(post))
    for v in range(pool.shape[1]):
        after = post * pool[:, v]
        after /= np.clip(after.sum(axis=1, keepdims=True), 1e-300, None)
        gain += soft[:, v] * 0.5 * np.abs(predictive(after, pool) - soft).sum(axis=1)
    return gain


def krippendorff_alpha(counts: np.ndarray) -> tuple[float, np.ndarray]:
    """(α over all classes, (m,) α per class) of per-sample vote counts (n, m): nominal
    Krippendorff's α from the ``krippendorff`` package; per class the two-valued vote "this
    class or not". NaN where it is undefined (fewer than two samples with two votes, or a
    class nobody or everybody voted)."""
    import krippendorff

    counts = np.asarray(counts, np.float64)
    pairable = counts[counts.sum(axis=1) >= 2]
    m = counts.shape[1]

    def alpha(value_counts: np.ndarray) -> float:
        if len(value_counts) < 2 or (value_counts.sum(axis=0) > 0).sum() < 2:
            return float("nan")
        try:
            with np.errstate(invalid="ignore", divide="ignore"):
                return float(krippendorff.alpha(value_counts=value_counts, level_of_measurement="nominal"))
        except (ValueError, ZeroDivisionError):
            return float("nan")

    overall = alpha(pairable)
    total = pairable.sum(axis=1)
    per_class = np.array([alpha(np.column_stack([pairable[:, c], total - pairable[:, c]])) for c in range(m)])
    return overall, per_class


# ------------------------------------------------------------------------ the whole analysis
@dataclass
class Reliability:
    """Per source (named annotators, then ``"dataset"``, then ``"crowd"``): what
    ``uldl-studio votes`` prints and ``export`` writes beside the CSV (``to_dict``)."""

    classes: list[str]
    sources: list[str]
    votes_cast: np.ndarray            # (S,)
    accuracy: np.ndarray              # (S,) Dawid–Skene Σ_y π_y C[y, y]
    class_accuracy: np.ndarray        # (S, m) diagonal of C
    confusion: np.ndarray             # (S, m, m)
    pairwise_agreement: np.ndarray    # (S, S) share of agreeing votes on co-voted samples, NaN: none
    pairwise_count: np.ndarray        # (S, S) samples both voted on
    alpha: float                      # Krippendorff's α over all classes
    alpha_per_class: np.ndarray       # (m,)
    class_prior: np.ndarray           # (m,) π
    model_weight: float               # w, the model prior's weight

    def to_dict(self) -> dict:
        def num(x):
            x = float(x)
            return None if not np.isfinite(x) else round(x, 6)

        return {
            "classes": list(self.classes),
            "agreement": {"krippendorff_alpha": num(self.alpha),
                          "per_class": {c: num(a) for c, a in zip(self.classes, self.alpha_per_class)}},
            "model_weight": num(self.model_weight),
            "class_prior": {c: num(p) for c, p in zip(self.classes, self.class_prior)},
            "sources": [
                {"name": name, "votes_cast": int(self.votes_cast[s]), "accuracy": num(self.accuracy[s]),
                 "class_accuracy": {c: num(a) for c, a in zip(self.classes, self.class_accuracy[s])},
                 "confusion": [[num(x) for x in row] for row in self.confusion[s]],
                 "agreement_with": {other: num(self.pairwise_agreement[s, t])
                                    for t, other in enumerate(self.sources) if t != s}}
                for s, name in enumerate(self.sources)],
        }


@dataclass
class Consensus:
    """The votes combined (``analyse_votes``): per sample ``posterior`` (n, m) over the true
    class, ``soft`` (n, m) the combined soft label, ``next_vote`` (n,) the expected change one
    more vote would make; ``reliability`` per source; ``model`` the fitted Dawid–Skene."""

    posterior: np.ndarray
    soft: np.ndarray
    next_vote: np.ndarray
    reliability: Reliability
    model: DawidSkene
    pool: np.ndarray                  # (m, m) the people's confusion averaged by votes cast


def _pairwise(names: list[str], labels: np.ndarray, crowd: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    n_src = labels.shape[1] + (crowd is not None)
    agree = np.full((n_src, n_src), np.nan)
    count = np.zeros((n_src, n_src), dtype=np.int64)
    for a in range(labels.shape[1]):
        for b in range(labels.shape[1]):
            both = (labels[:, a] >= 0) & (labels[:, b] >= 0)
            count[a, b] = int(both.sum())
            if both.any():
                agree[a, b] = float((labels[both, a] == labels[both, b]).mean())
    if crowd is not None:
        c = n_src - 1
        size = crowd.sum(axis=1)
        for a in range(labels.shape[1]):
            both = (labels[:, a] >= 0) & (size > 0)
            count[a, c] = count[c, a] = int(both.sum())
            if both.any():
                share = crowd[both, labels[both, a]] / size[both]
                agree[a, c] = agree[c, a] = float(share.mean())
        pairs = _pair_agreement(crowd)
        count[c, c] = int(np.isfinite(pairs).sum())
        if np.isfinite(pairs).any():
            agree[c, c] = float(np.nanmean(pairs))
    return agree, count


def analyse_votes(table: pd.DataFrame, votes: Votes, *, fit_split: str = "valid") -> Consensus:
    """Dawid–Skene over every source, the model prior's weight fitted on ``fit_split`` (the
    table's ``p_<class>`` columns; without them the votes alone, w = 0), the combined posterior
    and soft label, the next-vote gain, agreement and reliability (module docstring)."""
    classes = votes.classes
    m = len(classes)
    names, labels, crowd = votes.sources()
    ds = dawid_skene(labels, m, crowd)
    pcols = [f"p_{c}" for c in classes]
    probs = table[pcols].to_numpy(np.float64) if all(c in table for c in pcols) else None
    if probs is None:
        weight = 0.0
    else:
        fit_rows = np.flatnonzero(table["split"].astype(str).to_numpy() == fit_split)
        weight = fit_model_weight(ds, labels, crowd, probs, fit_rows)
    posterior = combined_posterior(ds, labels, crowd, probs, weight)
    cast = np.array([int((labels[:, s] >= 0).sum()) for s in range(labels.shape[1])]
                    + ([int(round(float(crowd.sum())))] if crowd is not None else []), dtype=np.int64)
    people = np.array([name != DATASET for name in names], dtype=bool)
    weights = np.where(people, cast, 0).astype(np.float64)
    if weights.sum() == 0:  # only the dataset's label: the soft label follows its confusion
        weights = cast.astype(np.float64)
    pool = np.einsum("s,syv->yv", weights / max(weights.sum(), 1.0), ds.confusion) if len(cast) else np.eye(m)
    soft = predictive(posterior, pool)
    gain = next_vote_gain(posterior, pool)
    alpha, alpha_class = krippendorff_alpha(votes.counts())
    agree, count = _pairwise(names, labels, crowd)
    reliability = Reliability(
        classes=list(classes), sources=names, votes_cast=cast, accuracy=ds.accuracy(),
        class_accuracy=np.stack([np.diag(c) for c in ds.confusion]) if len(cast) else np.zeros((0, m)),
        confusion=ds.confusion, pairwise_agreement=agree, pairwise_count=count, alpha=alpha,
        alpha_per_class=alpha_class, class_prior=ds.prior, model_weight=weight)
    return Consensus(posterior=posterior, soft=soft, next_vote=gain, reliability=reliability, model=ds, pool=pool)


def with_votes(table: pd.DataFrame, votes: Votes, consensus: Consensus | None = None) -> pd.DataFrame:
    """A copy of ``table`` with ``votes_<class>`` (people's votes per class), ``n_voters``,
    ``vote_agreement`` (share of agreeing pairs, NaN below two votes) and, with ``consensus``,
    ``combined_<class>`` (the combined soft label where a sample has ≥ ``MIN_VOTES_COMBINED``
    votes, NaN elsewhere: the export's ``d`` for those rows) and ``next_vote_gain``."""
    out = table.copy()
    out.attrs = dict(table.attrs)
    counts = votes.counts()
    n_voters = counts.sum(axis=1)
    for j, c in enumerate(votes.classes):
        out[f"votes_{c}"] = counts[:, j]
    out["n_voters"] = n_voters
    out["vote_agreement"] = _pair_agreement(counts)
    if consensus is not None:
        combined = np.where((n_voters >= MIN_VOTES_COMBINED)[:, None], consensus.soft, np.nan)
        for j, col in enumerate(combined_columns(votes.classes)):
            out[col] = combined[:, j]
        out["next_vote_gain"] = consensus.next_vote
    return out


def vote_table(table: pd.DataFrame, run_root: str | Path | None) -> tuple[pd.DataFrame, Votes, Consensus | None]:
    """``read_votes`` + ``analyse_votes`` + ``with_votes``: (the table with the vote columns, the
    votes, the consensus). The consensus is None when no person voted on any sample (then the
    table gets ``votes_<class>`` = 0, ``n_voters`` = 0 and NaN agreement only)."""
    votes = read_votes(run_root, table)
    if votes.counts().sum() == 0:
        return with_votes(table, votes), votes, None
    consensus = analyse_votes(table, votes)
    return with_votes(table, votes, consensus), votes, consensus
