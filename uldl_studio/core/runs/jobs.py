"""Training and prediction as jobs: the one way the GUI and the CLI train a run and predict.

A job is a generator of ``core.progress.Progress`` records whose return value is its result;
a front end loops over it (a progress bar, a worker thread) and honours nothing else. A
``cancel`` (a ``threading.Event`` or a callable) stops it between units of work.

- :func:`train_job` trains what a :class:`TrainPlan` says — a new run, a new version of a
  run, or more epochs of a version — and is where a run's config.json is written before
  training (``fit`` then finds it as it expects and leaves it), removes what a training stopped before its first epoch left, makes a
  finished version current and cross-fits (``folds``).
- :func:`predict_job` reads a collection, predicts it with a run and writes the soft-label
  file.
- :func:`open_dataset` and :func:`open_run` are how a front end opens what it shows: a dataset
  in any supported layout, a run (or one of its versions) with its results.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Generator

import pandas as pd

from uldl_studio.core.cancel import Cancel, Cancelled, cancel_requested
from uldl_studio.core.data.datasets import detect_format, load_dataset
from uldl_studio.core.data.image_collection import read_collection
from uldl_studio.core.engine.crossfit import crossfit
from uldl_studio.core.engine.distributed import Comm
from uldl_studio.core.engine.recipe import DatasetRecipe
from uldl_studio.core.engine.run import Run, ensure_run
from uldl_studio.core.engine.training import fit
from uldl_studio.core.engine.versions import (
    VersionInfo, complete_version, discard_unstarted, has_completed_epoch, list_versions, start_version,
)
from uldl_studio.core.progress import Progress
from uldl_studio.core.runs.predict import (
    Prediction, PredictOptions, Predictor, head_placement, predict_steps, write_predictions,
)
from uldl_studio.core.table import DatasetError

NEW, VERSION, RESUME = "new", "version", "resume"


@dataclass
class TrainPlan:
    """What :func:`train_job` trains; made by :func:`new_run`, :func:`new_version` or
    :func:`resume`."""

    kind: str                                   # new | version | resume
    config: object                              # core.engine.config.TrainConfig
    out: Path                                   # the folder trained (a new run's, or the version's)
    describe: str                               # "version v3 of RUN (from v2)", for messages
    table: pd.DataFrame | Callable[[], pd.DataFrame] = field(repr=False, default=None)  # a callable is
    # called on the job's thread (it reads the dataset)
    recipe: DatasetRecipe | None = None         # new runs: written to config.json
    parent: Run | None = None                   # versions: the version trained from
    journal: object = field(repr=False, default=None)  # versions: the open journal, if any
    folds: int = 0                              # cross-fit K plain models afterwards (0: off)
    existed: bool = False                       # the new run's folder existed before
    trained: Path | None = None                 # set by the job: the folder it trains into


@dataclass
class TrainResult:
    """How a training ended: ``outcome`` done | cancelled; ``run`` the folder trained (None when
    nothing was kept); ``current``: it is now its run's current version; ``message`` says so."""

    outcome: str
    run: Path | None
    current: bool
    message: str


def new_run(recipe: DatasetRecipe | None, config, out: str | Path, *, table: pd.DataFrame | None = None,
            folds: int = 0) -> TrainPlan:
    """A new run of ``recipe`` in ``out`` (which must not hold a run); ``table``: the dataset
    already read by that recipe (else it is read on the job's thread). Without a recipe the
    table's own ``root`` and ``format`` are recorded."""
    if recipe is None and table is None:
        raise ValueError("a new run needs a dataset recipe or a table")
    out = Path(out)
    if has_completed_epoch(out):
        raise DatasetError(f"{out}: already holds a trained run; train a new version of it, continue it, "
                           "or choose another folder")
    return TrainPlan(NEW, config, out, str(out), recipe.load if table is None else table, recipe=recipe, folds=folds, existed=out.exists())


def new_version(run: Run, config, *, dataset: pd.DataFrame | None = None, journal=None,
                folds: int = 0) -> TrainPlan:
    """The next version of ``run``'s family, trained from ``run`` on its dataset with every
    annotator's votes applied as they are now (``Run.training_table``). ``dataset``: the dataset
    as read (unedited) when it is at hand, else it is read again; ``journal``: the open journal
    (its counts go to the version's record; else the run's own journal is read).
    The version folder is made when the job starts."""
    source = (lambda: run.training_table(dataset)) if dataset is not None else run.training_table
    root = Path(run.root)
    return TrainPlan(VERSION, config, root, f"a new version of {root.name} (from {run.version})", source,
                     parent=run, journal=journal, folds=folds)


def resume(run: Run, epochs: int | None = None, *, folds: int = 0) -> TrainPlan:
    """More epochs of the version ``run`` (up to ``epochs``, default its config's), on the
    labels it was started with."""
    config = run.config if epochs is None else dataclasses.replace(run.config, epochs=int(epochs))
    return TrainPlan(RESUME, config, Path(run.path), f"{run.version} of {Path(run.root).name}",
                     run.version_training_table, parent=run, folds=folds)


def train_job(plan: TrainPlan, *, cancel: Cancel = None,
              comm: Comm | None = None) -> Generator[Progress, None, TrainResult]:
    """Train ``plan``: yields ``fit``'s Progress (and the folds'), returns a :class:`TrainResult`.

    Under torchrun (``comm``) every rank runs the job; rank 0 alone writes the run directory.
    A training stopped or failed before its first epoch leaves no folder; a version becomes
    current only once all its epochs are trained."""
    comm = comm or Comm()
    config = plan.config
    table = plan.table
    if callable(table):
        yield Progress("load", epochs=config.epochs, message="reading the dataset")
        if cancel_requested(cancel):
            return TrainResult("cancelled", None, False, _nothing_kept(plan))
        table = table()
    if cancel_requested(cancel):
        return TrainResult("cancelled", None, False, _nothing_kept(plan))
    if config.va == "head":  # --va-from RUN: that run's V-A head places the samples
        yield Progress("load", epochs=config.epochs, message=f"placing the samples with the V-A head of {config.va_from}")
        table = head_placement(config.va_from, table, device=config.device)
    out = plan.trained = _prepare(plan, table, comm)
    if plan.kind == VERSION:
        yield Progress("start", epochs=config.epochs, message=plan.describe)
    last = None
    try:
        for last in fit(table, config, out, cancel=cancel, resume=plan.kind == RESUME, comm=comm):
            yield last
        if plan.folds and last is not None and last.phase == "done":
            for last in crossfit(table, config, out, plan.folds, cancel=cancel, comm=comm):
                yield last
    except BaseException:
        if comm.is_main and plan.kind != RESUME:
            discard_unstarted(out, keep_folder=plan.existed)
        raise
    outcome = "cancelled" if last is not None and last.phase == "cancelled" else "done"
    return _settle(plan, out, outcome, comm)


def _prepare(plan: TrainPlan, table: pd.DataFrame, comm: Comm) -> Path:
    """Write the config of what is trained (rank 0) and return its folder."""
    if plan.kind == NEW:
        comm.barrier()  # every rank has read the dataset before rank 0 creates the folder
        if comm.is_main:
            Run.create(plan.out, plan.config, table, plan.recipe)
        comm.barrier()
        return plan.out
    if plan.kind == VERSION:
        if comm.world_size > 1:
            raise DatasetError("a new version trains in one process; under torchrun, continue a started "
                               "version with `train --resume --out RUN/versions/vN`")
        version = start_version(plan.out, plan.config, table, journal=plan.journal, parent=plan.parent.version)
        edits = version.edits
        plan.describe = (f"version {version.version} of {plan.out} (parent {plan.parent.version}, {edits} edited "
                         f"sample{'' if edits == 1 else 's'}): training {plan.config.epochs} epochs into {version.path}")
        return Path(version.path)
    if comm.is_main:  # more epochs: the config records them before the first new one
        ensure_run(plan.out, plan.config, table)
    return plan.out


def _settle(plan: TrainPlan, out: Path, outcome: str, comm: Comm) -> TrainResult:
    """After the training: remove an unstarted run, make a finished version current."""
    if not comm.is_main:
        return TrainResult(outcome, out, False, "")
    if not has_completed_epoch(out):
        discard_unstarted(out, keep_folder=plan.existed)
        return TrainResult(outcome, None, False, _nothing_kept(plan))
    run = Run.open(out)
    if plan.kind == NEW or run.version == "v1":
        return TrainResult(outcome, out, True, f"run written to {out}")
    if complete_version(run):
        return TrainResult(outcome, out, True,
                           f"version {run.version} written to {out}; it is now the current version of {run.root}")
    parent = plan.parent.version if plan.kind == VERSION else "the previous version"
    return TrainResult(outcome, out, False,
                       f"version {run.version} written to {out} (incomplete: {len(run.history())} of "
                       f"{run.config.epochs} epochs; {parent} stays current)")


def _nothing_kept(plan: TrainPlan) -> str:
    if plan.kind == NEW:
        return "stopped before the first epoch: no run was kept"
    if plan.kind == VERSION:
        return f"stopped before the first epoch: nothing was kept; {plan.parent.version} stays current"
    return "stopped before the next epoch: the run was not changed"


def predict_job(run: Run | Predictor, data: str | Path, out: str | Path, options: PredictOptions | None = None, *,
                fmt: str = "auto", limit: int | None = None, single_label: str = "majority", seed: int = 0,
                cancel: Cancel = None) -> Generator[Progress, None, Prediction]:
    """Read the collection ``data``, predict it with ``run`` and write the soft-label file
    ``out``; yields Progress, returns the :class:`Prediction` (nothing is written when it is
    cancelled)."""
    yield Progress("read", message="reading the images")
    collection = read_collection(data, fmt=fmt, limit=limit, single_label=single_label, seed=seed)
    if cancel_requested(cancel):
        raise Cancelled("before prediction")
    result = yield from predict_steps(run, collection, options, cancel=cancel)
    if cancel_requested(cancel):
        raise Cancelled("before the file was written")
    yield Progress("write", batch=len(result.table), batches=len(result.table), message="writing the file")
    write_predictions(result.table, out)
    return result


# ----------------------------------------------------------------------------- opening
@dataclass
class OpenedDataset:
    path: str
    table: pd.DataFrame
    format: str                       # the layout detected (or the one asked for)
    warnings: list[str] = field(default_factory=list)   # what the reader noticed and skipped

    @property
    def source(self) -> dict:
        """What a session records as the table's source."""
        return {"kind": "dataset", "path": self.path, "format": self.format}


def open_dataset(path: str | Path, fmt: str = "auto") -> OpenedDataset:
    """Detect the layout of ``path`` (``fmt`` "auto") and read it; DatasetError with one line
    naming the file and the problem when it cannot be read."""
    detected = detect_format(path) if fmt == "auto" else fmt
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = load_dataset(path, fmt=detected)
    return OpenedDataset(str(path), table, detected, [str(w.message) for w in caught])


@dataclass
class OpenedRun:
    run: Run
    samples: pd.DataFrame | None      # its results; None before its first finished epoch
    dataset: pd.DataFrame | None      # without results: the dataset it trains on


def open_run(path: str | Path, version: str | None = None, *, dataset: bool = True) -> OpenedRun:
    """The run folder ``path`` (its current version, or ``version``) or a version's folder,
    with its results; without results and with ``dataset``, the dataset it trains on."""
    run = Run.open(path, version=version or None)
    samples = run.samples() if run.has_results else None
    table = run.load_dataset() if samples is None and dataset else None
    return OpenedRun(run, samples, table)


def version_info(run: Run) -> VersionInfo | None:
    """The registry entry of ``run``'s version (None when the registry cannot be read)."""
    try:
        return next((i for i in list_versions(run.root) if i.name == run.version), None)
    except Exception:  # noqa: BLE001 - an unreadable registry is "unknown", never a crash here
        return None
