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
A label distribution is the distribution of people's votes on a sample (FER+'s reference is
one), so the combined soft label of sample i estimates θ_i, the share of people who would vote
each class. Its prior is the model: θ_i ~ Dirichlet(α · p̂_i), where p̂_i is the model's
prediction calibrated by one temperature T (``fit_temperature``: the T under which p̂ best
predicts the votes of the valid split). The votes are draws from θ_i, each weighted by its
source's reliability w_s, so the posterior is Dirichlet(β_i) with::

    β_i = α · p̂_i + Σ_votes w_s · onehot(v),   posterior mean = β_i / (α + Σ_votes w_s)

α is how many votes the model is worth. α → 0 leaves the votes alone, α → ∞ the model alone.
It is fitted on the *valid* split, where p is a held-out prediction (``fit_prior_strength``):
the α that best predicts each vote of a valid sample from the sample's other votes and the
model (the leave-one-vote-out likelihood, which is the Dirichlet-multinomial likelihood of the
votes), under a weak log-normal prior around one vote (σ = 1 in log α: thousands of votes
outweigh it, a handful of shared samples cannot drive α to an extreme). One vote per sample says nothing about how far people spread around p, so where no
valid sample has two votes α is fitted on every sample, and with no sample of two votes at all
it is ``DEFAULT_PRIOR_STRENGTH`` (the model counts as one vote). A row without a prediction
takes the class prior π instead.

The combined label is the posterior's estimate that is best for how label distributions are
scored, the intersection Σ_j min(q_j, θ_j) (``intersection_estimate``). Its expected value
grows with q_j at the rate P(θ_j > q_j), so under Σ q = 1 the best q makes that probability
equal across classes: q_j is the (1 − λ) quantile of θ_j's marginal Beta(β_j, B − β_j), λ per
sample such that the q_j sum to 1. It is sharper than the posterior mean: a class that only
the model's prior gives a little mass keeps less of it.

The weights come from Dawid–Skene: a source's chance-corrected accuracy
κ_s = (acc_s − 1/m) / (1 − 1/m), relative to the people's mean κ (weighted by the votes each
cast), clipped to [0, ``MAX_VOTE_WEIGHT``]. An average person's vote weighs 1, a random voter's
0; the crowd of a dataset (anonymous people sharing one confusion matrix) weighs 1.

The export writes the combined label as ``d_<class>`` for every sample with at least
``MIN_VOTES_COMBINED`` people's votes (``combined_<class>``); a sample with one vote or none
keeps the run's soft label with the annotator's review (``core.soft_labels.reviewed_soft_labels``).

Beside it, ``Consensus.posterior`` is the posterior over the *true* class given the votes, every
source's confusion matrix and the model's evidence as a prior of weight w (CROWDLAB's idea)::

    log P(y | votes, p) = log π_y + w (log p_iy − log p̄_y) + Σ_votes log C_s[y, v] + const

``p̄`` is the model's mean prediction, w in [0, ``MAX_MODEL_WEIGHT``] is fitted on the valid
split by the leave-one-vote-out likelihood (``fit_model_weight``). It undoes a biased
annotator's confusion, so its argmax is the best guess of the true class; the soft label above
is the distribution of people's votes.

The next vote
-------------
``next_vote_gain`` (score ``needs_another_vote``): the expected change of a sample's posterior
mean ``m`` if one more average person (weight 1) voted, the vote v drawn from the posterior
predictive, which is ``m`` itself. The mean becomes ``m + (e_v − m) / (S + 1)`` with
S = α + Σ w_s the posterior's strength, so the expected total-variation change is exactly::

    Σ_v m_v · TV(m, m after v) = (1 − Σ_v m_v²) / (S + 1)

It is high for samples with few votes (small S), with split votes and where the model and the
votes disagree (both spread ``m``), and falls towards 0 as unanimous votes accumulate.

Training on the votes
---------------------
A new version of a run trains on ``training_labels(dataset, run_root, results=...)``: a sample
one person voted on takes their vote as its label (the single annotator's rule); a sample that
several people voted on in the journals takes the majority of their votes (a tie: the given
label when it is among the tied classes, else the first tied annotator's vote by name) and, with
the parent version's results, the combined soft label as its training target
(``target_<class>``, flagged ``combined``); a sample any annotator marked unsure starts with a
high λ. The version records ``journal_seqs`` so that resuming it replays the same votes.

API
---
``annotator_journal(run_root, name)``, ``annotator_names(run_root)``,
``read_votes(run_root, table)`` → :class:`Votes`, ``analyse_votes(table, votes)`` →
:class:`Consensus`, ``with_votes(table, votes, consensus)`` (the table columns), and
``vote_table(table, run_root)`` (all three at once). The numpy level (``dawid_skene``,
``vote_weights``, ``weighted_counts``, ``fit_temperature``, ``fit_prior_strength``,
``combine_votes``, ``combined_soft``, ``next_vote_gain``, ``fit_model_weight``,
``combined_posterior``, ``krippendorff_alpha``) works on plain arrays. For the GUI:
``sample_votes(votes, row)`` (who voted what on one sample), ``annotator_progress(votes,
name)`` and ``has_voted(votes, name, row)``.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import krippendorff
import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import betaincinv

from uldl_studio.core.labels.edits import JOURNAL_NAME, EditJournal
from uldl_studio.core.table import DatasetError, classes_of

__all__ = [
    "DEFAULT_ANNOTATOR", "ANNOTATIONS_DIR", "CROWD", "DATASET", "AnnotatorError", "VotesWarning",
    "validate_annotator_name", "annotator_journal", "annotator_journal_path", "annotator_names",
    "journal_annotator",
    "journal_files", "Votes", "read_votes", "crowd_votes", "DawidSkene", "dawid_skene",
    "combined_posterior", "fit_model_weight", "predictive", "next_vote_gain", "krippendorff_alpha",
    "vote_weights", "weighted_counts", "fit_temperature", "temper", "fit_prior_strength", "combined_soft",
    "posterior_mean", "intersection_estimate",
    "Combination", "combine_votes", "sample_votes", "annotator_progress", "has_voted", "SampleVotes",
    "with_annotator", "review_table",
    "Reliability", "Consensus", "analyse_votes", "with_votes", "vote_table", "vote_columns",
    "crowd_columns", "combined_columns", "journal_seqs", "training_labels",
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
#: the model's prior strength α (in votes) when no valid sample has two votes to fit it on
DEFAULT_PRIOR_STRENGTH = 1.0
#: α is fitted in [MIN_PRIOR_STRENGTH, MAX_PRIOR_STRENGTH], with a log-normal prior of this
#: standard deviation (in log α) around DEFAULT_PRIOR_STRENGTH
MIN_PRIOR_STRENGTH, MAX_PRIOR_STRENGTH = 1e-3, 1e3
PRIOR_STRENGTH_LOG_SD = 1.0
#: the model's temperature is fitted in this range
TEMPERATURE_RANGE = (0.2, 5.0)
#: a source's vote weighs at most this many average people's votes
MAX_VOTE_WEIGHT = 3.0
#: bisection steps of the intersection estimate's λ (precision 2^-n)
INTERSECTION_ITERATIONS = 24

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


def journal_annotator(run_root: str | Path, path: str | Path) -> str | None:
    """The annotator whose journal ``path`` is in the run folder ``run_root``: the default
    annotator for ``RUN/edits.jsonl``, ``name`` for ``RUN/annotations/<name>[~tag].jsonl``;
    None for any other file."""
    root, path = Path(run_root).resolve(), Path(path).resolve()
    if path == root / JOURNAL_NAME:
        return DEFAULT_ANNOTATOR
    if path.parent != root / ANNOTATIONS_DIR or path.suffix != ".jsonl":
        return None
    name = path.stem.split("~", 1)[0]
    try:
        return validate_annotator_name(name)
    except AnnotatorError:
        return None


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


def _journal_votes(path: Path, upto_seq: int | None = None) -> tuple[dict[str, int], set[str], dict[str, float]]:
    """(sample → vote, unsure samples, sample → time its vote last changed) of one journal
    (``upto_seq``: as it was after that operation)."""
    journal = EditJournal(path, upto_seq=upto_seq)
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


def journal_seqs(run_root: str | Path) -> dict[str, int]:
    """Every journal file of the run folder ``run_root`` (its path relative to the folder) → the
    sequence number of its last operation: the votes as they are now, recorded by a version so
    that resuming it replays the same votes (``read_votes(..., upto=...)``)."""
    root = Path(run_root)
    out: dict[str, int] = {}
    for paths in journal_files(root).values():
        for path in paths:
            journal = EditJournal(path)
            try:
                out[path.relative_to(root).as_posix()] = int(journal.last_seq)
            finally:
                journal.close()
    return out


def read_votes(run_root: str | Path | None, table: pd.DataFrame, *, upto: dict[str, int] | None = None) -> Votes:
    """Every vote on ``table``'s samples: the journals in the run folder ``run_root`` (None: the
    dataset's own votes only), the crowd votes the dataset carries, and the given label (module
    docstring). Votes that do not fit the table are reported in one :class:`VotesWarning`.
    ``upto`` (``journal_seqs``): each journal as it was then; journals it does not name are left out."""
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
            if upto is not None:
                key = path.relative_to(Path(run_root)).as_posix()
                if key not in upto:
                    continue
                votes, marked, touched = _journal_votes(path, upto[key])
            else:
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
    log-likelihood changes by less than ``tol``. Rows without a vote keep the prior. Only rows
    with two votes or more enter the confusion matrices: a lone vote would agree with the
    posterior it makes by itself and flatter its source.
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
    informative = counts.sum(axis=1) >= 2  # a lone vote says nothing about its source's reliability
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
        shared = post[informative]
        confusion = np.stack([pseudo + shared.T @ votes[informative] for votes in sources]) if sources else \
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


def next_vote_gain(mean: np.ndarray, strength: np.ndarray | float) -> np.ndarray:
    """(n,) expected total-variation change of the Dirichlet posterior mean ``mean`` (of
    strength ``strength`` = α + Σ w) when one more person votes, the vote drawn from ``mean``:
    ``(1 − Σ mean²) / (strength + 1)`` (module docstring)."""
    mean = np.asarray(mean, np.float64)
    strength = np.broadcast_to(np.asarray(strength, np.float64), (len(mean),))
    return (1.0 - (mean ** 2).sum(axis=1)) / (strength + 1.0)


# ------------------------------------------------------------------------- the combined label
def vote_weights(accuracy: np.ndarray, votes_cast: np.ndarray, people: np.ndarray, n_classes: int) -> np.ndarray:
    """(S,) each source's vote weight: its chance-corrected Dawid–Skene accuracy κ relative to
    the people's mean κ weighted by the votes each cast, clipped to [0, ``MAX_VOTE_WEIGHT``]
    (module docstring). All 1 when the people's mean κ is not positive."""
    accuracy = np.asarray(accuracy, np.float64)
    cast = np.asarray(votes_cast, np.float64)
    people = np.asarray(people, bool)
    if not len(accuracy):
        return np.zeros(0)
    chance = 1.0 / max(int(n_classes), 2)
    kappa = np.clip((accuracy - chance) / (1.0 - chance), 0.0, None)
    share = np.where(people, cast, 0.0)
    if share.sum() == 0:
        share = cast
    mean = float((share * kappa).sum() / share.sum()) if share.sum() > 0 else 0.0
    if mean <= 0:
        return np.ones(len(accuracy))
    return np.clip(kappa / mean, 0.0, MAX_VOTE_WEIGHT)


def weighted_counts(labels: np.ndarray, n_classes: int, crowd: np.ndarray | None = None,
                    weights: np.ndarray | None = None) -> np.ndarray:
    """(n, m) the votes per class, each weighted by its source's weight (``weights``: one per
    column of ``labels``, then the crowd's; None: all 1)."""
    m = int(n_classes)
    labels = np.asarray(labels, np.int64).reshape(len(labels), -1) if len(labels) else \
        np.zeros((0 if crowd is None else len(crowd), 0), np.int64)
    n_src = labels.shape[1] + (crowd is not None)
    w = np.ones(n_src) if weights is None else np.asarray(weights, np.float64)
    out = np.zeros((len(labels), m))
    for s in range(labels.shape[1]):
        out += w[s] * _one_hot(labels[:, s], m)
    if crowd is not None:
        out += w[-1] * np.asarray(crowd, np.float64)
    return out


def _valid_probs(probs: np.ndarray | None, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, m) the predictions normalised and clipped away from 0, (n,) rows that have one."""
    if probs is None:
        return np.full((n, m), 1.0 / m), np.zeros(n, bool)
    probs = np.asarray(probs, np.float64)
    ok = np.isfinite(probs).all(axis=1) & (probs.sum(axis=1) > 0) & (probs >= 0).all(axis=1)
    out = np.full((n, m), 1.0 / m)
    out[ok] = np.clip(probs[ok] / probs[ok].sum(axis=1, keepdims=True), 1e-6, None)
    out[ok] /= out[ok].sum(axis=1, keepdims=True)
    return out, ok


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """The predictions at ``temperature``: softmax(log p / T), row-wise."""
    p, _ = _valid_probs(probs, len(probs), np.asarray(probs).shape[1])
    return _normalise_log(np.log(p) / float(temperature))


def _rows(rows, n: int) -> np.ndarray:
    rows = np.arange(n) if rows is None else np.asarray(rows)
    return np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)


def fit_temperature(probs: np.ndarray, counts: np.ndarray, rows=None) -> float:
    """The temperature T in ``TEMPERATURE_RANGE`` under which ``temper(probs, T)`` best
    predicts the (weighted) votes ``counts`` of ``rows`` (their negative log-likelihood); 1.0
    when those rows hold no vote or no prediction."""
    counts = np.asarray(counts, np.float64)
    p, ok = _valid_probs(probs, len(counts), counts.shape[1])
    rows = _rows(rows, len(counts))
    rows = rows[ok[rows] & (counts[rows].sum(axis=1) > 0)]
    if not rows.size:
        return 1.0
    log_p, c = np.log(p[rows]), counts[rows]

    def nll(log_t: float) -> float:
        z = log_p / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float(-(c * (z - np.log(np.exp(z).sum(axis=1, keepdims=True)))).sum())

    low, high = np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1])
    best = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(best.x))


def _vote_items(labels: np.ndarray, crowd: np.ndarray | None, weights: np.ndarray, rows: np.ndarray):
    """Every vote of ``rows`` as (row, class, its weight, how many such votes)."""
    r, v, w, k = [], [], [], []
    for s in range(labels.shape[1]):
        voted = rows[labels[rows, s] >= 0]
        r.append(voted)
        v.append(labels[voted, s])
        w.append(np.full(len(voted), weights[s]))
        k.append(np.ones(len(voted)))
    if crowd is not None:
        sub = crowd[rows]
        at, cls = np.nonzero(sub > 0)
        r.append(rows[at])
        v.append(cls)
        w.append(np.full(len(at), weights[-1]))
        k.append(sub[at, cls])
    cat = (lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype))
    return cat(r, np.int64), cat(v, np.int64), cat(w, np.float64), cat(k, np.float64)


def fit_prior_strength(prior: np.ndarray, labels: np.ndarray, crowd: np.ndarray | None = None,
                       weights: np.ndarray | None = None, rows=None) -> float:
    """The model's prior strength α (in votes) that best predicts each vote of ``rows`` from
    the row's other votes and the prior ``prior`` (the calibrated prediction): the mean of
    ``log (α p_v + W_v − w) / (α + N − w)`` over the votes, W the row's weighted counts, N their
    sum, w the vote's own weight (module docstring), with a weak log-normal prior on α around
    ``DEFAULT_PRIOR_STRENGTH`` (``PRIOR_STRENGTH_LOG_SD`` in log α), so that a handful of
    shared samples cannot drive it to an extreme. Only rows with another vote of positive weight
    say anything about α; without any, ``DEFAULT_PRIOR_STRENGTH``."""
    prior = np.asarray(prior, np.float64)
    n, m = prior.shape
    labels = np.asarray(labels, np.int64).reshape(n, -1) if n else np.zeros((0, 0), np.int64)
    crowd = None if crowd is None else np.asarray(crowd, np.float64)
    n_src = labels.shape[1] + (crowd is not None)
    weights = np.ones(n_src) if weights is None else np.asarray(weights, np.float64)
    counts = weighted_counts(labels, m, crowd, weights)
    r, v, w, k = _vote_items(labels, crowd, weights, _rows(rows, n))
    rest_total = counts[r].sum(axis=1) - w
    rest_same = counts[r, v] - w
    use = (rest_total > 1e-9) & (w > 0)
    if not use.any():
        return DEFAULT_PRIOR_STRENGTH
    p_v, rest_total, rest_same, k = prior[r[use], v[use]], rest_total[use], np.clip(rest_same[use], 0, None), k[use]
    mult = k * w[use]

    centre = np.log(DEFAULT_PRIOR_STRENGTH)

    def nll(log_a: float) -> float:  # the votes' negative log-likelihood and α's log-normal prior
        a = np.exp(log_a)
        fit = -(mult * (np.log(a * p_v + rest_same + 1e-12) - np.log(a + rest_total))).sum()
        return float(fit + 0.5 * ((log_a - centre) / PRIOR_STRENGTH_LOG_SD) ** 2)

    best = minimize_scalar(nll, bounds=(np.log(MIN_PRIOR_STRENGTH), np.log(MAX_PRIOR_STRENGTH)), method="bounded",
                           options={"xatol": 1e-4})
    return float(np.exp(best.x))


def posterior_mean(prior: np.ndarray, counts: np.ndarray, strength: float) -> np.ndarray:
    """(n, m) the Dirichlet posterior mean ``(α · prior + counts) / (α + Σ counts)``."""
    prior = np.asarray(prior, np.float64)
    counts = np.asarray(counts, np.float64)
    return (strength * prior + counts) / (strength + counts.sum(axis=1, keepdims=True))


def intersection_estimate(concentration: np.ndarray, *, iterations: int = INTERSECTION_ITERATIONS) -> np.ndarray:
    """(n, m) the Bayes estimate of θ ~ Dirichlet(``concentration``) for the intersection
    Σ_j min(q_j, θ_j): q_j is the (1 − λ) quantile of θ_j's marginal Beta(β_j, B − β_j), with
    one λ per row such that Σ_j q_j = 1 (found by bisection; module docstring). A row the
    quantiles cannot serve (a single class, non-finite numbers) gets the posterior mean."""
    beta = np.clip(np.asarray(concentration, np.float64), 1e-12, None)
    mean = beta / beta.sum(axis=1, keepdims=True)
    rest = beta.sum(axis=1, keepdims=True) - beta
    ok = (rest > 1e-12).all(axis=1) & np.isfinite(beta).all(axis=1)
    if not ok.any():
        return mean
    b, r = beta[ok], rest[ok]
    low, high = np.zeros((len(b), 1)), np.ones((len(b), 1))
    with np.errstate(all="ignore"):
        for _ in range(iterations):  # Σ_j quantile(1 − λ) falls as λ grows
            lam = 0.5 * (low + high)
            over = betaincinv(b, r, 1.0 - lam).sum(axis=1, keepdims=True) > 1.0
            low, high = np.where(over, lam, low), np.where(over, high, lam)
        q = betaincinv(b, r, 1.0 - 0.5 * (low + high))
    total = q.sum(axis=1, keepdims=True)
    good = np.isfinite(q).all(axis=1) & (total[:, 0] > 0)
    out = mean.copy()
    rows = np.flatnonzero(ok)[good]
    out[rows] = q[good] / total[good]
    return out


def combined_soft(prior: np.ndarray, counts: np.ndarray, strength: float) -> np.ndarray:
    """(n, m) the combined label: the intersection estimate of the posterior
    Dirichlet(α · prior + counts) (module docstring)."""
    prior = np.asarray(prior, np.float64)
    counts = np.asarray(counts, np.float64)
    return intersection_estimate(strength * prior + counts)


@dataclass
class Combination:
    """The combined label of every row (``combine_votes``)."""

    soft: np.ndarray                  # (n, m) the combined soft label
    mean: np.ndarray                  # (n, m) the posterior mean
    strength: np.ndarray              # (n,) α + Σ w: the posterior's strength, in votes
    gain: np.ndarray                  # (n,) next_vote_gain
    prior: np.ndarray                 # (n, m) the calibrated prediction (the class prior where none)
    prior_strength: float             # α
    temperature: float                # T
    weights: np.ndarray               # (S,) each source's vote weight


def combine_votes(labels: np.ndarray, n_classes: int, crowd: np.ndarray | None = None,
                  probs: np.ndarray | None = None, weights: np.ndarray | None = None, fit_rows=None,
                  class_prior: np.ndarray | None = None, *, estimate: bool = True) -> Combination:
    """The combined label: the temperature and α fitted on ``fit_rows`` (the valid split), then
    the Dirichlet posterior, its intersection estimate and the next-vote gain of every row
    (module docstring). ``class_prior`` is the prior of rows without a prediction (default: the
    weighted vote shares). ``estimate=False`` skips the estimate (``soft`` is then the mean):
    the fast path for the queue alone."""
    m = int(n_classes)
    crowd = None if crowd is None else np.asarray(crowd, np.float64)
    n = len(labels) if len(labels) else (0 if crowd is None else len(crowd))
    labels = np.asarray(labels, np.int64).reshape(n, -1) if n else np.zeros((0, 0), np.int64)
    n_src = labels.shape[1] + (crowd is not None)
    weights = np.ones(n_src) if weights is None else np.asarray(weights, np.float64)
    counts = weighted_counts(labels, m, crowd, weights)
    if class_prior is None:
        total = counts.sum(axis=0) + 1.0
        class_prior = total / total.sum()
    p, has_p = _valid_probs(probs, n, m)
    if has_p.any():
        temperature = fit_temperature(p, counts, fit_rows if fit_rows is not None else None)
        p = temper(p, temperature)
    else:
        temperature = 1.0
    prior = np.where(has_p[:, None], p, np.asarray(class_prior, np.float64)[None, :])
    alpha = fit_prior_strength(prior, labels, crowd, weights, fit_rows)
    mean = posterior_mean(prior, counts, alpha)
    strength = alpha + counts.sum(axis=1)
    soft = combined_soft(prior, counts, alpha) if estimate else mean
    return Combination(soft=soft, mean=mean, strength=strength,
                       gain=next_vote_gain(mean, strength), prior=prior,
                       prior_strength=alpha, temperature=temperature, weights=weights)


def krippendorff_alpha(counts: np.ndarray) -> tuple[float, np.ndarray]:
    """(α over all classes, (m,) α per class) of per-sample vote counts (n, m): nominal
    Krippendorff's α from the ``krippendorff`` package; per class the two-valued vote "this
    class or not". NaN where it is undefined (fewer than two samples with two votes, or a
    class nobody or everybody voted)."""
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
    model_weight: float               # w, the model evidence's weight in the true-class posterior
    vote_weight: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (S,) w_s in the combined label
    prior_strength: float = DEFAULT_PRIOR_STRENGTH   # α: the model's prediction is worth α votes
    temperature: float = 1.0                          # T of the calibrated prediction

    def to_dict(self) -> dict:
        def num(x):
            x = float(x)
            return None if not np.isfinite(x) else round(x, 6)

        return {
            "classes": list(self.classes),
            "agreement": {"krippendorff_alpha": num(self.alpha),
                          "per_class": {c: num(a) for c, a in zip(self.classes, self.alpha_per_class)}},
            "model_weight": num(self.model_weight),
            "prior_strength": num(self.prior_strength),
            "temperature": num(self.temperature),
            "class_prior": {c: num(p) for c, p in zip(self.classes, self.class_prior)},
            "sources": [
                {"name": name, "votes_cast": int(self.votes_cast[s]), "accuracy": num(self.accuracy[s]),
                 "vote_weight": num(self.vote_weight[s]) if s < len(self.vote_weight) else None,
                 "class_accuracy": {c: num(a) for c, a in zip(self.classes, self.class_accuracy[s])},
                 "confusion": [[num(x) for x in row] for row in self.confusion[s]],
                 "agreement_with": {other: num(self.pairwise_agreement[s, t])
                                    for t, other in enumerate(self.sources) if t != s}}
                for s, name in enumerate(self.sources)],
        }


@dataclass
class Consensus:
    """The votes combined (``analyse_votes``): per sample ``soft`` (n, m) the combined soft
    label (the Dirichlet posterior mean), ``strength`` (n,) its strength α + Σ w in votes,
    ``next_vote`` (n,) the expected change one more vote would make, ``posterior`` (n, m) over
    the true class (Dawid–Skene with the model's evidence); ``reliability`` per source;
    ``model`` the fitted Dawid–Skene; ``prior`` (n, m) the calibrated prediction."""

    posterior: np.ndarray
    soft: np.ndarray
    next_vote: np.ndarray
    reliability: Reliability
    model: DawidSkene
    pool: np.ndarray                  # (m, m) the people's confusion averaged by votes cast
    strength: np.ndarray = field(default_factory=lambda: np.zeros(0))
    prior: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))


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


def _fit_rows(rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``rows`` when some of them hold two votes (α can be fitted there), else every row."""
    voted = counts.sum(axis=1) > 0
    pairs = counts.sum(axis=1) >= 2
    if pairs[rows].any() or (voted[rows].any() and not pairs.any()):
        return rows
    return np.arange(len(counts))


def analyse_votes(table: pd.DataFrame, votes: Votes, *, fit_split: str = "valid", estimate: bool = True) -> Consensus:
    """Dawid–Skene over every source, the vote weights, the combined label with the model's
    temperature and prior strength fitted on ``fit_split`` (the table's ``p_<class>`` columns;
    where that split has no sample with two votes, on every sample; without predictions the
    class prior stands in for the model), the next-vote gain, the true-class posterior,
    agreement and reliability (module docstring). ``estimate=False``: ``soft`` is the posterior
    mean (fast, for the reliabilities alone)."""
    classes = votes.classes
    m = len(classes)
    names, labels, crowd = votes.sources()
    ds = dawid_skene(labels, m, crowd)
    pcols = [f"p_{c}" for c in classes]
    probs = table[pcols].to_numpy(np.float64) if all(c in table for c in pcols) else None
    cast = np.array([int((labels[:, s] >= 0).sum()) for s in range(labels.shape[1])]
                    + ([int(round(float(crowd.sum())))] if crowd is not None else []), dtype=np.int64)
    people = np.array([name != DATASET for name in names], dtype=bool)
    weights = vote_weights(ds.accuracy(), cast, people, m)
    split_rows = np.flatnonzero(table["split"].astype(str).to_numpy() == fit_split)
    fit_rows = _fit_rows(split_rows, weighted_counts(labels, m, crowd))
    combo = combine_votes(labels, m, crowd, probs, weights, fit_rows, class_prior=ds.prior, estimate=estimate)
    weight = 0.0 if probs is None else fit_model_weight(ds, labels, crowd, probs, fit_rows)
    posterior = combined_posterior(ds, labels, crowd, probs, weight)
    pool_weights = np.where(people, cast, 0).astype(np.float64)
    if pool_weights.sum() == 0:  # only the dataset's label
        pool_weights = cast.astype(np.float64)
    pool = np.einsum("s,syv->yv", pool_weights / max(pool_weights.sum(), 1.0), ds.confusion) if len(cast) \
        else np.eye(m)
    alpha, alpha_class = krippendorff_alpha(votes.counts())
    agree, count = _pairwise(names, labels, crowd)
    reliability = Reliability(
        classes=list(classes), sources=names, votes_cast=cast, accuracy=ds.accuracy(),
        class_accuracy=np.stack([np.diag(c) for c in ds.confusion]) if len(cast) else np.zeros((0, m)),
        confusion=ds.confusion, pairwise_agreement=agree, pairwise_count=count, alpha=alpha,
        alpha_per_class=alpha_class, class_prior=ds.prior, model_weight=weight, vote_weight=weights,
        prior_strength=combo.prior_strength, temperature=combo.temperature)
    return Consensus(posterior=posterior, soft=combo.soft, next_vote=combo.gain, reliability=reliability,
                     model=ds, pool=pool, strength=combo.strength, prior=combo.prior)


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


def _majority_votes(labels: np.ndarray, given: np.ndarray, m: int) -> np.ndarray:
    """(n,) the majority of each row's votes (-1: none); a tie goes to ``given`` when it is
    among the tied classes, else to the first tied annotator's vote."""
    n = len(labels)
    counts = np.zeros((n, m))
    voted = labels >= 0
    rows, cols = np.nonzero(voted)
    np.add.at(counts, (rows, labels[rows, cols]), 1.0)
    top = counts.max(axis=1, keepdims=True)
    tied = (counts == top) & (top > 0)
    out = np.full(n, -1, dtype=np.int64)
    for a in range(labels.shape[1] - 1, -1, -1):  # the first annotator's tied vote wins
        v = labels[:, a]
        ok = (v >= 0) & tied[np.arange(n), np.clip(v, 0, m - 1)]
        out[ok] = v[ok]
    given_wins = (given >= 0) & (given < m) & tied[np.arange(n), np.clip(given, 0, m - 1)]  # tied implies a vote
    out[given_wins] = given[given_wins]
    return out


def training_labels(table: pd.DataFrame, run_root: str | Path, *,
                    results: Callable[[], pd.DataFrame | None] | None = None,
                    upto: dict[str, int] | None = None) -> pd.DataFrame:
    """``table`` (the dataset as read) with every annotator's votes in the run folder applied:
    what a new version trains on (module docstring, "Training on the votes"). ``results``:
    reads the parent version's samples (``p_<class>`` columns) for the combined target of
    samples that several people voted on, only when some are (samples.csv of a large dataset
    takes seconds to read); ``upto``: the journals as a version recorded them. The columns
    ``label_given``, ``edited``, ``unsure`` and ``reviewed`` are those of ``core.edits.apply_edits``."""
    out = table.copy()
    out.attrs = dict(table.attrs)
    given = (out["label_given"] if "label_given" in out else out["label"]).to_numpy(np.int64, copy=True)
    base = out.drop(columns=[c for c in ("label_given",) if c in out])
    base["label"] = given
    votes = read_votes(run_root, base, upto=upto)
    m = votes.n_classes
    people = (votes.labels >= 0).sum(axis=1)
    label = _majority_votes(votes.labels, given, m)
    label = np.where(label >= 0, label, given)
    out["label_given"] = given
    out["label"] = label
    out["edited"] = label != given
    out["unsure"] = votes.unsure.any(axis=1)
    out["reviewed"] = people > 0
    several = people >= MIN_VOTES_COMBINED
    parent = results() if results is not None and several.any() else None
    if parent is not None:
        joined = parent.set_index(parent["sample_id"].astype(str)).reindex(votes.sample_ids)
        if all(f"p_{c}" in joined for c in votes.classes) and joined["split"].notna().all():
            joined = joined.reset_index(drop=True)
            joined["label"] = given
            consensus = analyse_votes(joined, votes)
            for j, c in enumerate(votes.classes):
                column = f"target_{c}"  # a soft-label run keeps its targets on the other rows
                values = out[column].to_numpy(np.float64, copy=True) if column in out else np.full(len(out), np.nan)
                values[several] = consensus.soft[several, j]
                out[column] = values
            out["combined"] = several
    return out


# ------------------------------------------------------------------------------ for the app
@dataclass
class SampleVotes:
    """Who voted what on one sample (``sample_votes``)."""

    classes: list[str]
    counts: np.ndarray                # (m,) people's votes per class: the annotators' and the crowd's
    by_annotator: dict[str, int]      # named annotator → their vote (class index)
    unsure: list[str]                 # annotators who marked the sample unsure
    crowd: np.ndarray                 # (m,) the votes the dataset carries (anonymous)

    @property
    def n_voters(self) -> int:
        return int(round(float(self.counts.sum())))

    @property
    def agreement(self) -> float:
        """Share of pairs of the votes that agree; NaN below two votes."""
        return float(_pair_agreement(self.counts[None, :])[0])

    def shares(self) -> np.ndarray | None:
        """(m,) the votes as shares; None without votes."""
        total = self.counts.sum()
        return None if total <= 0 else self.counts / total

    def without(self, name: str) -> "SampleVotes":
        """The votes with annotator ``name``'s own left out (what they see before voting)."""
        counts = self.counts.copy()
        if name in self.by_annotator:
            counts[self.by_annotator[name]] -= 1
        return SampleVotes(self.classes, counts, {k: v for k, v in self.by_annotator.items() if k != name},
                           [u for u in self.unsure if u != name], self.crowd)


def sample_votes(votes: Votes, row: int) -> SampleVotes:
    """The votes on table row ``row``."""
    by = {name: int(votes.labels[row, a]) for a, name in enumerate(votes.annotators) if votes.labels[row, a] >= 0}
    counts = votes.crowd[row].astype(np.float64, copy=True)
    for v in by.values():
        counts[v] += 1.0
    unsure = [name for a, name in enumerate(votes.annotators) if votes.unsure[row, a]]
    return SampleVotes(list(votes.classes), counts, by, unsure, votes.crowd[row].astype(np.float64, copy=True))


def has_voted(votes: Votes, name: str, row: int) -> bool:
    """Annotator ``name`` has voted on row ``row`` (relabelled or confirmed it)."""
    return name in votes.annotators and bool(votes.labels[row, votes.annotators.index(name)] >= 0)


def with_annotator(votes: Votes, name: str, labels: dict[str, int], unsure: set[str] | None = None) -> Votes:
    """``votes`` with annotator ``name``'s votes replaced by ``labels`` (sample id → class) and
    their unsure marks by ``unsure`` (a journal's ``labels()`` / ``unsure()``, as they are now);
    the annotator is added when they had not voted. Ids outside the table are left out."""
    name = validate_annotator_name(name)
    index = pd.Index(votes.sample_ids)
    annotators = list(votes.annotators)
    labels_out, unsure_out = votes.labels.copy(), votes.unsure.copy()
    if name not in annotators:
        annotators.append(name)
        labels_out = np.column_stack([labels_out, np.full(len(index), -1, np.int64)]) if labels_out.size \
            else np.full((len(index), 1), -1, np.int64)
        unsure_out = np.column_stack([unsure_out, np.zeros(len(index), bool)]) if unsure_out.size \
            else np.zeros((len(index), 1), bool)
    a = annotators.index(name)
    labels_out[:, a] = -1
    unsure_out[:, a] = False
    if labels:
        rows = index.get_indexer(list(labels))
        values = np.fromiter(labels.values(), dtype=np.int64, count=len(labels))
        ok = (rows >= 0) & (values >= 0) & (values < votes.n_classes)
        labels_out[rows[ok], a] = values[ok]
    if unsure:
        rows = index.get_indexer(list(unsure))
        unsure_out[rows[rows >= 0], a] = True
    return Votes(classes=list(votes.classes), sample_ids=votes.sample_ids, annotators=annotators,
                 labels=labels_out, unsure=unsure_out, crowd=votes.crowd, given=votes.given,
                 given_is_source=votes.given_is_source, unknown=dict(votes.unknown))


def annotator_progress(votes: Votes, name: str) -> dict:
    """What one annotator and everybody did: ``mine`` (their votes), ``people`` (votes by
    people: named annotators and the crowd), ``voted`` (samples with a vote), ``shared``
    (samples with two votes or more), ``alpha`` (Krippendorff's α, NaN when undefined)."""
    counts = votes.counts()
    n = counts.sum(axis=1)
    mine = int((votes.labels[:, votes.annotators.index(name)] >= 0).sum()) if name in votes.annotators else 0
    alpha = krippendorff_alpha(counts)[0] if (n >= 2).sum() >= 2 else float("nan")
    return {"mine": mine, "people": int(round(float(counts.sum()))), "voted": int((n > 0).sum()),
            "shared": int((n >= 2).sum()), "alpha": float(alpha)}


def review_table(table: pd.DataFrame, votes: Votes, *, fit_split: str = "valid") -> tuple[pd.DataFrame, float]:
    """The app's fast view of the votes: ``table`` with ``votes_<class>``, ``n_voters``,
    ``vote_agreement`` and ``next_vote_gain`` (the queue "needs another vote"), and the fitted
    prior strength α, without the combined label's estimate (``analyse_votes`` has it). The
    table unchanged but for the zero vote columns, and NaN, when nobody voted."""
    out = with_votes(table, votes)
    if votes.counts().sum() == 0 and not votes.given_is_source:
        out["next_vote_gain"] = np.nan
        return out, float("nan")
    m = votes.n_classes
    names, labels, crowd = votes.sources()
    if len(names) > 1:  # the weights need Dawid-Skene; one source's votes all weigh 1
        ds = dawid_skene(labels, m, crowd)
        cast = np.array([int((labels[:, s] >= 0).sum()) for s in range(labels.shape[1])]
                        + ([int(round(float(crowd.sum())))] if crowd is not None else []), dtype=np.int64)
        weights = vote_weights(ds.accuracy(), cast, np.array([n != DATASET for n in names], bool), m)
    else:
        weights = np.ones(len(names))
    pcols = [f"p_{c}" for c in votes.classes]
    probs = table[pcols].to_numpy(np.float64) if all(c in table for c in pcols) else None
    split_rows = np.flatnonzero(table["split"].astype(str).to_numpy() == fit_split)
    combo = combine_votes(labels, m, crowd, probs, weights, _fit_rows(split_rows, weighted_counts(labels, m, crowd)),
                          estimate=False)
    out["next_vote_gain"] = combo.gain
    return out, combo.prior_strength
