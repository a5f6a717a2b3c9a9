"""Cross-fitted predictions: for every training sample, p[given label] from a model that never
saw it (the recipe behind cleanlab's out-of-fold scores).

``crossfit(table, config, run_dir, folds=K)`` trains K plain cross-entropy models, each on the
training rows outside one fold, and predicts the fold's rows. The out-of-fold probabilities go
to ``RUN/crossfit.npz`` (sample ids, probabilities, the fold of each row); ``Run.samples()``
joins them as ``oof_<class>`` columns, from which the ``oof_confidence`` score reads p[label]
(so it follows the annotator's edits and survives retraining the run). It costs K extra trainings on (K − 1)/K of the data, so it is off unless asked for
(``uldl-studio train … --folds K``).
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from uldl_studio.core.atomic import atomic_open
from uldl_studio.core.engine.distributed import Comm
from uldl_studio.core.engine.run import CROSSFIT_FILE
from uldl_studio.core.engine.training import fit
from uldl_studio.core.table import DatasetError, classes_of, p_columns

FOLDS_DIR = "crossfit"


def fold_of(sample_ids, folds: int) -> np.ndarray:
    """A deterministic fold 0..folds-1 per sample id (a hash: stable across runs and edits)."""
    return np.array([int(hashlib.sha1(str(s).encode()).hexdigest()[:8], 16) % folds for s in sample_ids],
                    dtype=np.int64)


def crossfit(table: pd.DataFrame, config, run_dir: str | Path, folds: int, *, cancel=None,
             images: np.ndarray | None = None, comm=None) -> Iterator:
    """Train the K fold models (``config`` with method ``ce``) under RUN/crossfit/, yielding their
    Progress; then write RUN/crossfit.npz. A cancelled fold leaves the previous file as it was.
    ``comm``: the torchrun process group (each fold trains on all ranks; rank 0 writes)."""
    comm = comm or Comm()
    if folds < 2:
        raise DatasetError(f"--folds {folds}: cross-fitting needs at least 2 folds")
    run_dir = Path(run_dir)
    table = table.reset_index(drop=True)
    train_rows = np.flatnonzero(table["split"].to_numpy() == "train")
    if len(train_rows) < 2 * folds:
        raise DatasetError(f"--folds {folds}: only {len(train_rows)} training samples")
    ids = table["sample_id"].to_numpy()[train_rows]
    fold = fold_of(ids, folds)
    classes = classes_of(table)
    oof = np.full((len(train_rows), len(classes)), np.nan)
    fold_config = dataclasses.replace(config, method="ce")
    for k in range(folds):
        part = table.iloc[train_rows].reset_index(drop=True)
        part.attrs = dict(table.attrs)
        held = fold == k
        part["split"] = np.where(held, "valid", "train")
        part_images = None if images is None else images[train_rows]
        for progress in fit(part, fold_config, run_dir / FOLDS_DIR / f"fold{k}", cancel=cancel, images=part_images,
                            comm=comm, replace=True):
            progress.message = f"fold {k + 1}/{folds}: {progress.message}" if progress.message else progress.message
            yield progress
            if progress.phase == "cancelled":
                return
        comm.barrier()  # rank 0 has written the fold's samples.csv
        if not comm.is_main:
            continue
        samples = pd.read_csv(run_dir / FOLDS_DIR / f"fold{k}" / "samples.csv", dtype={"sample_id": str})
        probs = samples.set_index("sample_id").loc[ids[held], p_columns(classes)].to_numpy(np.float64)
        oof[held] = probs
    if not comm.is_main:
        return
    with atomic_open(run_dir / CROSSFIT_FILE, "wb", encoding=None) as handle:
        np.savez(handle, sample_id=ids.astype(str), probs=oof, fold=fold, classes=np.array(classes))
