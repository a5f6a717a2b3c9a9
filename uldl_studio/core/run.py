"""The run directory: one trained (or training) model and everything it says about a dataset.

```
RUN/config.json      {"format_version": 1, "train": TrainConfig, "dataset": {...}, "classes": [...]}
RUN/checkpoint.pt    last completed epoch (torch.load(weights_only=True)); checkpoint.prev.pt before it
RUN/samples.csv      every row of the dataset (all splits): SampleTable columns +
                     lambda, d_<class>, p_<class>, valence, arousal (the V-A used), x2d, y2d, lambda_prev
RUN/neighbors.npz    LDLVA only: indices (N_train, K) into the *train rows of samples.csv in order*,
                     similarity s, zeta ζ, contribution c (each (N_train, K))
RUN/features.npy     (N, V) float16 features of all rows (UMAP input)
RUN/history.csv      one row per epoch
RUN/metrics.json     core.evaluate.evaluate() output
RUN/edits.jsonl      the annotator's journal (core.edits)
```

Per-row meaning of the result columns in samples.csv:

- train rows: ``lambda`` = λ_i, ``d_*`` = the constructed distribution (1-λ) l + λ d̃ computed in
  eval mode after the epoch. Method ``ce`` is LDLVA with λ ≡ 0: λ = 0, d = one-hot label. During
  LDLVA warm-up epochs λ is its initial value and d the one-hot label (no neighbours yet).
- valid/test rows: ``d_*`` = ``p_*`` (the model's prediction is their soft label, as for
  foreign data in ``core.predict``) and ``lambda`` = NaN.
- ``valence``/``arousal``: the points the run used (given columns, or circumplex of the
  warm-up predictions); when they differ from the dataset's own columns, those are kept as
  ``valence_given``/``arousal_given``.
- ``lambda_prev``: λ of the previous training in this folder (retraining after edits), NaN if none.
- FER2013's ``pixels`` column is not copied (the ``path`` ``<csv>#<row>`` locates the image).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_write_text
from .table import READ_CSV_EXACT_FLOATS, DatasetError, classes_of, validate_table

FORMAT_VERSION = 1
CONFIG = "config.json"


def _dataset_info_from_table(table: pd.DataFrame) -> dict:
    return {"path": str(table.attrs.get("root", "")), "format": table.attrs.get("format", "auto"), "limit": None}


def _write_config(path: Path, train: dict, dataset_info: dict, classes: list[str]) -> None:
    info = dict(dataset_info)
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
                "train": train, "dataset": info, "classes": list(classes)}
    from uldl_studio import __version__

    document["uldl_studio_version"] = __version__
    atomic_write_text(path / CONFIG, json.dumps(document, indent=2, sort_keys=False) + "\n")


def ensure_run(run_dir: str | Path, config, table: pd.DataFrame) -> None:
    """Called by ``fit``: create config.json if missing, else record the config being trained."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CONFIG
    if not path.exists():
        _write_config(run_dir, config.to_dict(), _dataset_info_from_table(table), classes_of(table))
        return
    run = Run.open(run_dir)
    if run.config.to_dict() != config.to_dict() or run.classes != classes_of(table):
        _write_config(run_dir, config.to_dict(), run.dataset_info, classes_of(table))


class Run:
    """A run directory (see module docstring). ``Run.create`` / ``Run.open``; never pickles."""

    def __init__(self, path: Path, document: dict):
        from .training import TrainConfig

        self.path = Path(path)
        self._document = document
        try:
            self.config = TrainConfig.from_dict(document["train"])
            self.classes: list[str] = list(document["classes"])
            self.dataset_info: dict = dict(document.get("dataset", {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{self.path / CONFIG}: not a valid run configuration ({exc})") from exc

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, config, table: pd.DataFrame, dataset_info: dict | None = None) -> "Run":
        """Write RUN/config.json for training ``config`` on ``table`` (folder created)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        validate_table(table)
        info = _dataset_info_from_table(table) if dataset_info is None else dataset_info
        _write_config(path, config.to_dict(), info, classes_of(table))
        return cls.open(path)

    @classmethod
    def open(cls, path: str | Path) -> "Run":
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
        return f"Run({str(self.path)!r}, method={self.config.method!r}, classes={len(self.classes)})"

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
        frame.attrs = {"classes": list(self.classes), "root": str(self.dataset_info.get("path", "")),
                       "format": self.dataset_info.get("format", "auto")}
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
        from .training import load_checkpoint

        return load_checkpoint(self.path)

    # -- the dataset ----------------------------------------------------------------------
    def dataset_path(self) -> str:
        """Where the dataset is now: ``path_rel`` (relative to the run folder) first, then the
        absolute path; DatasetError naming both when neither exists."""
        info = self.dataset_info
        raw = info.get("path")
        if raw == "demo":
            return "demo"
        candidates = []
        if info.get("path_rel"):
            candidates.append((self.path / info["path_rel"]).resolve())
        if raw:
            candidates.append(Path(raw))
        for candidate in candidates:
            if candidate.exists():
                return str(candidate)
        tried = " nor at ".join(str(c) for c in candidates) or "(no path recorded)"
        raise DatasetError(f"{self.path}: the run's dataset was not found at {tried}; "
                           "was it moved or deleted?")

    def load_dataset(self) -> pd.DataFrame:
        """Re-read the run's dataset (same format, limit, single-label mode, injected noise)."""
        from .datasets import load_dataset

        info = self.dataset_info
        table = load_dataset(self.dataset_path(), fmt=info.get("format") or "auto",
                             single_label=info.get("single_label") or "majority",
                             seed=int(info.get("seed") or 0), limit=info.get("limit"))
        if info.get("label_noise"):
            from .noise import inject_label_noise

            table = inject_label_noise(table, float(info["label_noise"]), seed=int(info.get("noise_seed") or 0))
        return table

    def training_table(self) -> pd.DataFrame:
        """The table ``fit`` should train on: the dataset with the annotator's edits applied.

        Relabels and "unsure" marks in RUN/edits.jsonl are applied (``core.edits.apply_edits``),
        so retraining a run learns from the edited labels and unsure rows start with a high λ.
        """
        from .edits import EditJournal, apply_edits

        table = self.load_dataset()
        journal = self.path / "edits.jsonl"
        if journal.exists():
            table = apply_edits(table, EditJournal(journal))
        return table
