"""The run directory: one trained (or training) model and everything it says about a dataset.

```
RUN/config.json      {"format_version": 1, "train": TrainConfig, "dataset": {...}, "classes": [...]}
RUN/checkpoint.pt    last completed epoch (torch.load(weights_only=True)); checkpoint.prev.pt before it
RUN/samples.csv      every row of the dataset (all splits): SampleTable columns +
                     lambda, d_<class>, p_<class>, valence, arousal (the V-A used), x2d, y2d, lambda_prev,
                     dyn_p_given_mean, dyn_p_given_std, dyn_margin_mean, knn_disagreement
RUN/neighbors.npz    LDLVA only: indices (N_train, K) into the *train rows of samples.csv in order*,
                     similarity s, zeta ζ, contribution c (each (N_train, K))
RUN/features.npy     (N, V) float16 features of all rows (UMAP input)
RUN/history.csv      one row per epoch
RUN/metrics.json     core.evaluate.evaluate() output
RUN/edits.jsonl      the annotator's journal (core.edits), shared by all versions of the run
RUN/versions.json    the run's versions, once it was retrained (core.versions)
RUN/versions/vN/     version N ≥ 2 of the run: a run directory of its own (no journal)
```

Versions: a trained model is never overwritten. The folder itself is version 1; training
again writes version N into ``RUN/versions/vN/`` (``core.versions``), and ``RUN/versions.json``
says which version is current. ``Run.open(RUN)`` opens the current version, ``Run.open(RUN,
version="v1")`` or ``Run.open(RUN/versions/v2)`` a given one; ``run.path`` is the version's
folder (its files), ``run.root`` the run folder (the journal), ``run.version`` its name. A
run without versions.json is a family of one: v1, the folder, current. ``fit`` refuses to
start a fresh training in a folder that holds a trained model.

This module reads and writes all of it: ``Run`` (open, read the results), ``ensure_run`` and
``Run.create`` (config.json), ``save_checkpoint``/``load_checkpoint`` (checkpoint.pt) and
``write_epoch_outputs`` (samples.csv, features.npy, neighbors.npz, history.csv, written by
``core.training.fit`` after every epoch, before the checkpoint). ``docs/architecture.md``
describes the run directory in context.

Per-row meaning of the result columns in samples.csv:

- train rows: ``lambda`` = λ_i, ``d_*`` = the constructed distribution (1-λ) l + λ d̃ computed in
  eval mode after the epoch. Method ``ce`` is LDLVA with λ ≡ 0: λ = 0, d = one-hot label. During
  LDLVA warm-up epochs λ is its initial value and d the one-hot label (no neighbours yet).
- valid/test rows: ``d_*`` = ``p_*`` (the model's prediction is their soft label, as for
  foreign data in ``core.predict``) and ``lambda`` = NaN.
- ``valence``/``arousal``: the points the run used (given columns, or circumplex of the
  warm-up predictions); when they differ from the dataset's own columns, those are kept as
  ``valence_given``/``arousal_given``.
- ``x2d``/``y2d``: the PCA of the epoch's features (``feature_map_2d``).
- ``lambda_prev``: λ of the parent version (the one this version was retrained from), NaN if none.
- Evidence about the given label, for every row (all splits, each with its own given ``label``;
  ``core.dynamics``), from the eval-mode pass after each epoch, warm-up included:

  - ``dyn_p_given_mean``: mean over the completed epochs of p[label] (data-map confidence);
  - ``dyn_p_given_std``: their standard deviation over epochs (population, 0 after one epoch;
    data-map variability);
  - ``dyn_margin_mean``: mean over epochs of p[label] - max_{j≠label} p[j] (area under the
    margin), in [-1, 1];
  - ``knn_disagreement``: over the K = ``TrainConfig.k`` train rows nearest in the last epoch's
    feature space (cosine, the row itself excluded), the mean of
    0.5·1(neighbour's label ≠ label) + 0.5·(1 - neighbour's p[label]), in [0, 1].

  The last epoch's p[label] itself is the ``p_<class>`` column of the row's label.
- FER2013's ``pixels`` column is not copied (the ``path`` ``<csv>#<row>`` locates the image).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from uldl_studio import __version__
from uldl_studio.core.atomic import atomic_open, atomic_write_text, fsync_dir
from uldl_studio.core.engine.config import TrainConfig
from uldl_studio.core.engine.recipe import DatasetRecipe
from uldl_studio.core.engine.va import CircumplexVA, circumplex_points, resolve_provider
from uldl_studio.core.engine.versions import locate, parent_folder
from uldl_studio.core.labels.annotations import training_labels
from uldl_studio.core.labels.edits import apply_run_edits
from uldl_studio.core.table import READ_CSV_EXACT_FLOATS, DatasetError, classes_of, d_columns, p_columns, validate_table

FORMAT_VERSION = 1
CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
CHECKPOINT_PREV = "checkpoint.prev.pt"
CHECKPOINT_FORMAT = 1
_REQUIRED_KEYS = ("format_version", "epoch", "model", "optimizer", "lambda_raw", "centres", "bank_probs", "config")


def _recipe_of_table(table: pd.DataFrame) -> DatasetRecipe:
    return DatasetRecipe(path=str(table.attrs.get("root", "")), format=table.attrs.get("format", "auto"))


def _write_config(path: Path, train: dict, recipe: DatasetRecipe, classes: list[str], extra: dict | None = None) -> None:
    info = recipe.to_dict()
    raw = str(info.get("path", ""))
    if raw and raw != "demo":
        absolute = Path(raw).expanduser().resolve()
        info["path"] = str(absolute)
        try:
            info["path_rel"] = os.path.relpath(absolute, path.resolve())
        except ValueError:  # another drive on Windows
            info["path_rel"] = None
    document = {"format_version": FORMAT_VERSION,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "train": train, "dataset": info, "classes": list(classes), **(extra or {})}
    document["uldl_studio_version"] = __version__
    atomic_write_text(path / CONFIG, json.dumps(document, indent=2, sort_keys=False) + "\n")


def ensure_run(run_dir: str | Path, config, table: pd.DataFrame) -> None:
    """Create config.json if missing, else record the config being trained (in this very folder,
    whatever version of its run is current; a version's record of its parent is kept). The
    jobs call it before training; ``fit`` calls it too, which only writes for a library caller
    that hands it a folder without a config (the jobs' config is already there, unchanged)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CONFIG
    if not path.exists():
        _write_config(run_dir, config.to_dict(), _recipe_of_table(table), classes_of(table))
        return
    run = Run._read(run_dir)
    if run.config.to_dict() != config.to_dict() or run.classes != classes_of(table):
        extra = {"version": run._document["version"]} if "version" in run._document else None
        _write_config(run_dir, config.to_dict(), run.recipe, classes_of(table), extra)


class Run:
    """A run directory (see module docstring). ``Run.create`` / ``Run.open``; never pickles.

    ``path``: the folder of this version's files; ``root``: the run folder (the family of
    versions, where the journal lives); ``version``: this version's name ("v1" is the run
    folder itself)."""

    def __init__(self, path: Path, document: dict, root: Path | None = None, version: str = "v1"):
        self.path = Path(path)
        self.root = self.path if root is None else Path(root)
        self.version = version
        self._document = document
        try:
            self.config = TrainConfig.from_dict(document["train"])
            self.classes: list[str] = list(document["classes"])
            self._dataset_record: dict = dict(document.get("dataset", {}))
            self.recipe = DatasetRecipe.from_dict(self._dataset_record)
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{self.path / CONFIG}: not a valid run configuration ({exc})") from exc

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, config, table: pd.DataFrame, recipe: DatasetRecipe | None = None) -> "Run":
        """Write RUN/config.json for training ``config`` on ``table``, read by ``recipe``
        (folder created)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        validate_table(table)
        _write_config(path, config.to_dict(), _recipe_of_table(table) if recipe is None else recipe,
                      classes_of(table))
        return cls.open(path)

    @classmethod
    def open(cls, path: str | Path, version: str | None = None) -> "Run":
        """The current version of the run folder ``path``, or the version ``version`` of it
        ("v1", "v2", ...); a version folder (``RUN/versions/vN``) opens that version."""
        path = Path(path)
        if not path.is_dir():
            raise DatasetError(f"{path}: no such run directory")
        folder, root, name = locate(path, version)
        run = cls._read(folder)
        run.root, run.version = root, name
        return run

    @classmethod
    def _read(cls, path: Path) -> "Run":
        """The run directory ``path`` itself (no version lookup)."""
        path = Path(path)
        if not path.is_dir():
            raise DatasetError(f"{path}: no such run directory")
        config_path = path / CONFIG
        if not config_path.exists():
            raise DatasetError(f"{path}: not a run directory ({CONFIG} is missing)")
        try:
            document = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{config_path}: unreadable run configuration ({exc})") from exc
        if not isinstance(document, dict) or "format_version" not in document:
            raise DatasetError(f"{config_path}: not a ULDL Studio run configuration (no format_version)")
        version = document["format_version"]
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise DatasetError(f"{config_path}: written by a newer ULDL Studio (format {version}); "
                               f"this version reads format {FORMAT_VERSION} — update ULDL Studio")
        return cls(path, document)

    def __repr__(self) -> str:
        return (f"Run({str(self.path)!r}, version={self.version!r}, method={self.config.method!r}, "
                f"classes={len(self.classes)})")

    # -- the version ----------------------------------------------------------------------
    @property
    def parent(self) -> str | None:
        """The version this one was retrained from (None for version 1)."""
        return (self._document.get("version") or {}).get("parent")

    @property
    def edits(self) -> int | None:
        """How many samples had a label from the annotator when this version was started
        (None when not recorded: version 1)."""
        value = (self._document.get("version") or {}).get("edits")
        return None if value is None else int(value)

    @property
    def edits_seq(self) -> int | None:
        """The journal's last sequence number when this version was started (None when not
        recorded: version 1). Replaying the journal up to it gives the labels it trained on."""
        value = (self._document.get("version") or {}).get("edits_seq")
        return None if value is None else int(value)

    # -- results --------------------------------------------------------------------------
    @property
    def has_results(self) -> bool:
        return (self.path / "samples.csv").exists()

    def samples(self) -> pd.DataFrame:
        """The per-sample table with results (SampleTable attrs set)."""
        path = self.path / "samples.csv"
        if not path.exists():
            raise DatasetError(f"{self.path}: the run has no completed epoch yet (samples.csv missing)")
        try:
            frame = pd.read_csv(path, dtype={"sample_id": str, "path": str, "split": str},
                                keep_default_na=True, na_values=[""], **READ_CSV_EXACT_FLOATS)
        except Exception as exc:  # noqa: BLE001
            raise DatasetError(f"{path}: unreadable per-sample table ({exc})") from exc
        for col in ("edited", "unsure"):
            if col in frame and frame[col].dtype == object:
                frame[col] = frame[col].map({"True": True, "False": False, True: True, False: False})
        frame.attrs = {"classes": list(self.classes), "root": self.recipe.path, "format": self.recipe.format}
        frame = join_out_of_fold(self.path, frame)
        try:
            validate_table(frame)
        except DatasetError as exc:
            raise DatasetError(f"{path}: {exc}") from exc
        return frame

    def neighbors(self) -> dict[str, np.ndarray] | None:
        path = self.path / "neighbors.npz"
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except Exception as exc:  # noqa: BLE001
            raise DatasetError(f"{path}: unreadable neighbour file ({exc})") from exc

    def history(self) -> pd.DataFrame:
        path = self.path / "history.csv"
        if not path.exists():
            return pd.DataFrame()
        return pd.read_csv(path)

    def features(self) -> np.ndarray | None:
        path = self.path / "features.npy"
        return np.load(path, allow_pickle=False) if path.exists() else None

    def checkpoint(self) -> dict | None:
        return load_checkpoint(self.path)

    # -- the dataset ----------------------------------------------------------------------
    def dataset_path(self) -> str:
        """Where the dataset is now: ``path_rel`` (relative to the run folder) first, then the
        absolute path; DatasetError naming both when neither exists."""
        raw = self.recipe.path
        if self.recipe.is_demo:
            return raw
        candidates = []
        if self._dataset_record.get("path_rel"):
            candidates.append((self.path / self._dataset_record["path_rel"]).resolve())
        if raw:
            candidates.append(Path(raw))
        for candidate in candidates:
            if candidate.exists():
                return str(candidate)
        tried = " nor at ".join(str(c) for c in candidates) or "(no path recorded)"
        raise DatasetError(f"{self.path}: the run's dataset was not found at {tried}; "
                           "was it moved or deleted?")

    def load_dataset(self) -> pd.DataFrame:
        """Re-read the run's dataset by its recipe (same format, limit, single-label mode,
        injected noise and soft labels), wherever the dataset is now (``dataset_path``)."""
        return self.recipe.at(self.dataset_path()).load()

    def training_table(self, dataset: pd.DataFrame | None = None) -> pd.DataFrame:
        """The table a new version of this run trains on: the dataset (``dataset`` when it is at
        hand, else read again) with every annotator's votes applied as they are now
        (``core.labels.annotations.training_labels``): a relabel is the sample's new label,
        several people's votes give it their combined soft label as target, and unsure rows
        start with a high λ."""
        table = self.load_dataset() if dataset is None else dataset
        return training_labels(table, self.root, results=self._results_if_any)

    @property
    def journal_seqs(self) -> dict[str, int] | None:
        """Every journal's last sequence number when this version was started (None when not
        recorded: version 1, or a version from before several annotators)."""
        value = (self._document.get("version") or {}).get("journals")
        return None if value is None else {str(k): int(v) for k, v in value.items()}

    def version_training_table(self) -> pd.DataFrame:
        """The table this version trains on (to resume it): the dataset with the votes it was
        started with (votes cast since are left for the next version); the whole journal when
        that was not recorded (version 1)."""
        seqs = self.journal_seqs
        if seqs is None:
            return apply_run_edits(self.load_dataset(), self.root, upto_seq=self.edits_seq)

        def parent_results() -> pd.DataFrame | None:
            try:
                return None if self.parent is None else Run.open(self.root, version=self.parent)._results_if_any()
            except DatasetError:
                return None

        return training_labels(self.load_dataset(), self.root, results=parent_results, upto=seqs)

    def _results_if_any(self) -> pd.DataFrame | None:
        """``samples()``, or None before the first finished epoch."""
        return self.samples() if self.has_results else None


# ----------------------------------------------------------------------------- checkpoints

def save_checkpoint(run_dir: str | Path, payload: dict) -> None:
    """Write checkpoint.pt atomically; the one it replaces becomes checkpoint.prev.pt."""
    run_dir = Path(run_dir)
    target = run_dir / CHECKPOINT
    tmp = run_dir / f".{CHECKPOINT}.writing"
    with atomic_open(tmp, "wb", encoding=None) as handle:
        torch.save(payload, handle)
    if target.exists():
        os.replace(target, run_dir / CHECKPOINT_PREV)
    os.replace(tmp, target)
    fsync_dir(run_dir)


def load_checkpoint(run_dir: str | Path) -> dict | None:
    """The last completed epoch's checkpoint, or None when the run has none yet.

    ``torch.load(weights_only=True)``: no pickle from a run directory is executed. A corrupt
    or truncated file raises DatasetError naming it; nothing is deleted or overwritten, and
    the previous good checkpoint (checkpoint.prev.pt) stays where it is. If only
    checkpoint.prev.pt exists (a crash between the two renames of ``save_checkpoint``), it is used.
    """
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    prev = run_dir / CHECKPOINT_PREV
    if not path.exists():
        if prev.exists():
            return _read_checkpoint(prev, None)
        return None
    return _read_checkpoint(path, prev if prev.exists() else None)


def _read_checkpoint(path: Path, prev: Path | None) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or any(k not in ckpt for k in _REQUIRED_KEYS):
            raise ValueError("not a ULDL Studio checkpoint (keys missing)")
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        hint = (f"; the previous good checkpoint is kept as {prev} — rename it to {CHECKPOINT} "
                "to resume from the epoch before") if prev is not None else ""
        raise DatasetError(f"{path}: checkpoint is corrupt or truncated ({type(exc).__name__}: "
                           f"{str(exc)[:200]}){hint}") from exc
    if int(ckpt["format_version"]) > CHECKPOINT_FORMAT:
        raise DatasetError(f"{path}: written by a newer ULDL Studio (checkpoint format "
                           f"{ckpt['format_version']}); this version reads format {CHECKPOINT_FORMAT}")
    return ckpt


def remove_checkpoints(run_dir: str | Path) -> None:
    """Delete checkpoint.pt and checkpoint.prev.pt (a fresh training in an existing folder)."""
    for name in (CHECKPOINT, CHECKPOINT_PREV):
        (Path(run_dir) / name).unlink(missing_ok=True)


# ----------------------------------------------------------------------------- per-epoch outputs

def previous_lambda(run_dir: str | Path, table: pd.DataFrame) -> np.ndarray | None:
    """λ per row of ``table`` from the training before: the parent version's samples.csv when
    ``run_dir`` is a version of a run (``core.versions``), else an earlier training in the same
    folder. float32, NaN where unknown; None when there is none (or the parent was deleted)."""
    run_dir = Path(run_dir)
    parent = parent_folder(run_dir)
    path = (parent if parent is not None else run_dir) / "samples.csv"
    if not path.exists():
        return None
    try:
        old = pd.read_csv(path, usecols=["sample_id", "lambda"], dtype={"sample_id": str})
    except Exception:  # noqa: BLE001 - an unreadable old table only loses lambda_prev
        warnings.warn(f"{path}: could not read the previous run's λ; lambda_prev left empty")
        return None
    mapping = dict(zip(old["sample_id"], old["lambda"]))
    return np.array([mapping.get(s, np.nan) for s in table["sample_id"]], dtype=np.float32)


def feature_map_2d(features: np.ndarray) -> np.ndarray:
    """PCA of the features to 2-D (signs fixed so the map does not flip between epochs)."""
    x = np.asarray(features, np.float64)
    x = x - x.mean(0)
    if len(x) < 2 or not np.isfinite(x).all():
        return np.zeros((len(x), 2))
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:2]
    if comps.shape[0] < 2:
        comps = np.vstack([comps, np.zeros((2 - comps.shape[0], x.shape[1]))])
    signs = np.sign(comps[np.arange(2), np.abs(comps).argmax(1)])
    signs[signs == 0] = 1
    return x @ (comps * signs[:, None]).T


def write_epoch_outputs(run_dir: str | Path, table: pd.DataFrame, config: TrainConfig, train_rows: np.ndarray,
                        results: dict, *, va: np.ndarray | None, lambda_prev: np.ndarray | None,
                        history: list[dict], scores: dict[str, np.ndarray] | None = None) -> None:
    """samples.csv, features.npy, neighbors.npz (when ``results`` has neighbours), history.csv.

    ``results``: one epoch's evaluation pass (``probs`` (N, m) and ``features`` (N, V) of all
    rows; ``lambda`` and ``d`` of the train rows; optional ``neighbors`` arrays). ``va``: the
    (N, 2) points the run used, or None before they were placed (then computed here the same
    way). ``lambda_prev``: (N,) or None. ``scores``: more (N,) columns for samples.csv, in order
    (``core.dynamics.COLUMNS``). Each file is written atomically.
    """
    run_dir = Path(run_dir)
    classes = classes_of(table)
    n = len(table)
    probs = results["probs"].astype(np.float64)
    out = table.copy()
    out.attrs = dict(table.attrs)
    lam = np.full(n, np.nan)
    lam[train_rows] = results["lambda"]
    d = probs.copy()                       # non-train rows: d = p (module docstring)
    d[train_rows] = results["d"]
    d /= d.sum(1, keepdims=True)
    probs /= probs.sum(1, keepdims=True)
    out["lambda"] = lam
    for j, col in enumerate(d_columns(classes)):
        out[col] = d[:, j]
    for j, col in enumerate(p_columns(classes)):
        out[col] = probs[:, j]
    if va is None:
        provider = resolve_provider(config.va, table, centroids=config.va_centroids,
                                    temperature=config.va_temperature)
        va = circumplex_points(probs, classes, config.va_centroids, config.va_temperature) \
            if isinstance(provider, CircumplexVA) else provider.points(table)
    va = np.asarray(va, np.float64)
    if "valence" in table and not np.allclose(table["valence"].to_numpy(np.float64), va[:, 0], equal_nan=False):
        out["valence_given"] = table["valence"].to_numpy(np.float64)
        out["arousal_given"] = table["arousal"].to_numpy(np.float64)
    out["valence"], out["arousal"] = va[:, 0], va[:, 1]
    xy = feature_map_2d(results["features"])
    out["x2d"], out["y2d"] = xy[:, 0], xy[:, 1]
    out["lambda_prev"] = np.full(n, np.nan) if lambda_prev is None else np.asarray(lambda_prev, np.float64)
    for name, values in (scores or {}).items():
        out[name] = np.asarray(values, np.float64)
    if "pixels" in out:  # FER2013 CSV: the path "<csv>#<row>" locates the image; keep samples.csv small
        out = out.drop(columns=["pixels"])
    with atomic_open(run_dir / "samples.csv", "w", newline="") as handle:
        out.to_csv(handle, index=False)
    with atomic_open(run_dir / "features.npy", "wb", encoding=None) as handle:
        np.save(handle, results["features"].astype(np.float16))
    if "neighbors" in results:
        with atomic_open(run_dir / "neighbors.npz", "wb", encoding=None) as handle:
            np.savez(handle, **results["neighbors"])
    with atomic_open(run_dir / "history.csv", "w", newline="") as handle:
        pd.DataFrame(history).to_csv(handle, index=False)


#: the ranks of a torchrun training and their state digests after every epoch
DISTRIBUTED_LOG = "distributed.json"


def write_distributed_log(run_dir: str | Path, epoch: int, world_size: int, backend: str | None,
                          digests: list[str]) -> None:
    """Record in RUN/distributed.json that ``world_size`` ranks finished ``epoch`` with these
    digests of their replicated state (``core.training.state_digest``), one per rank. Epochs
    after ``epoch`` (from a run this one restarted) are dropped; written atomically."""
    path = Path(run_dir) / DISTRIBUTED_LOG
    try:
        log = json.loads(path.read_text(encoding="utf-8"))
        epochs = [e for e in log.get("epochs", []) if int(e["epoch"]) < epoch]
    except (OSError, ValueError, KeyError, TypeError):
        epochs = []
    epochs.append({"epoch": int(epoch), "world_size": int(world_size), "backend": backend,
                   "digests": list(digests)})
    atomic_write_text(path, json.dumps({"epochs": epochs}, indent=1) + "\n")


#: out-of-fold predictions of ``core.crossfit`` (``uldl-studio train … --folds K``)
CROSSFIT_FILE = "crossfit.npz"
OOF_PREFIX = "oof_"


def join_out_of_fold(run_dir: str | Path, samples: pd.DataFrame) -> pd.DataFrame:
    """``samples`` with ``oof_<class>`` columns from RUN/crossfit.npz (NaN for rows without an
    out-of-fold prediction); unchanged when the run has no such file."""
    path = Path(run_dir) / CROSSFIT_FILE
    if not path.exists():
        return samples
    try:
        with np.load(path, allow_pickle=False) as data:
            ids, probs, classes = data["sample_id"], data["probs"], [str(c) for c in data["classes"]]
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line
        raise DatasetError(f"{path}: unreadable cross-fit file ({exc})") from exc
    if classes != classes_of(samples):
        raise DatasetError(f"{path}: the cross-fit classes {classes} differ from the run's {classes_of(samples)}")
    position = pd.Series(np.arange(len(ids)), index=pd.Index(ids.astype(str)))
    pos = position.reindex(samples["sample_id"].astype(str)).to_numpy()
    hit = np.isfinite(pos)
    values = np.full((len(samples), len(classes)), np.nan)
    values[hit] = probs[pos[hit].astype(np.int64)]
    out = samples.copy()
    out.attrs = dict(samples.attrs)
    for j, c in enumerate(classes):
        out[f"{OOF_PREFIX}{c}"] = values[:, j]
    return out
