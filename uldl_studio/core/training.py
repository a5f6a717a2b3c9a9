"""Training: ``fit(table, config, run_dir)`` as a generator of ``Progress`` (DESIGN.md §1, §4).

Methods
-------
- ``ce``: plain cross-entropy on the given labels (the baseline; same backbone, schedule, seed).
- ``ldlva``: the first ``warmup_epochs`` epochs are plain cross-entropy (phase ``warmup``; they
  count towards ``epochs`` so ``ce`` and ``ldlva`` get the same number of epochs). Then one
  no-grad pass over all rows gives class probabilities and features: the V-A provider
  (``core.va``) places every sample, K nearest neighbours are built once (``core.neighbors``),
  s_ik is fixed, and the memory bank is initialised. Each following batch builds
  d_i = (1-λ_i) l_i + λ_i d̃_i and minimises CE(d_i, f(x_i)) + γ L_D (``core.ldl``).

Where the neighbours come from
------------------------------
- ``neighbor_space="va"`` (default, DESIGN.md §1.1): K nearest neighbours of the V-A points,
  s_ik from the V-A distance.
- ``neighbor_space="features"``: K nearest neighbours by cosine similarity of the eval-mode
  backbone features (L2-normalised; s_ik from the Euclidean distance of the unit vectors, δ auto
  as in V-A). The V-A points are still computed and shown on the map. Motivation: the circumplex
  projection of 8 warm-up probabilities onto 2-D collapses (DESIGN.md §6, bench/RESULTS_ferplus.md).
- ``neighbor_refresh=True`` (default): after every LDLVA epoch, the samples are re-placed from
  that epoch's evaluation pass and the neighbours and s_ik rebuilt for the next epoch (only when
  they can change: circumplex V-A or feature space). The files of an epoch keep the neighbours
  it used; the checkpoint carries the rebuilt ones, so a resumed run still equals an
  uninterrupted one.

Neighbour predictions f(x_k), v_k
---------------------------------
- ``bank`` (default): each train sample's latest softmax and feature, written back from the
  forward pass of every batch it appears in (augmented, train mode), initialised by the
  post-warm-up pass. Costs one gather per batch.
- ``exact``: the K neighbour images of every sample are forwarded at each step, as published
  (without gradient, un-augmented, in train mode), ≈ K extra forward passes per sample.
In both modes f(x_k) and v_k carry no gradient; ζ = sigmoid(g([v_i, v_k])) is trained through the
target d (the only way g receives a gradient), with v_i detached so g calibrates rather than
reshapes the backbone.

λ anchoring (why λ does not simply climb; DESIGN.md §6)
------------------------------------------------------
With d̃ built from the model's own predictions, ∂CE(d_i, f_i)/∂λ_i = CE(d̃_i, f_i) - CE(l_i, f_i)
is positive-biased early in training for *every* sample (the model has not fitted the labels
yet, d̃ agrees with f), so an unanchored λ self-confirms; with a batch-mean loss each λ_i's
gradient is 1/B of that and λ does not move at all. ``fit`` therefore updates λ with its own
SGD optimiser on a separate objective with four knobs (``TrainConfig``):

1. per-sample scale: the λ objective is a *sum* over the batch, so every λ_i receives its own
   O(1) evidence g_i = CE(d̃_i, f_i) - CE(l_i, f_i) (with d̃ and f detached), at ``lambda_lr``;
2. a baseline (``lambda_baseline``): g_i minus a running mean of g, so the drift shared by all
   samples (self-confirmation) cancels. ``"global"`` (default) subtracts one running mean over
   all samples and keeps class-level differences: on FER+ some given classes are mostly wrong
   (81 % of single-annotator "contempt" labels differ from the crowd, 9 % of "happiness").
   ``"class"`` subtracts a running mean per given label, so λ rises only for samples whose label
   fits worse than their class usually does; on FER+ that erased the class-level signal and λ
   ranked the disagreeing labels with AUROC 0.68 against 0.77 for ``"global"`` (12 000 images,
   6 epochs, bench/RESULTS_ferplus.md). ``"none"`` is the naive, published-style update;
3. a prior (``lambda_prior`` β): ½ β (raw_i - raw0_i)² pulls each raw λ back towards its
   initial value (``lambda_init``, or ``lambda_unsure_init`` for rows marked ``unsure``), so λ
   measures accumulated evidence rather than integrating noise;
4. a budget (``lambda_budget``, optional): after each epoch, if mean λ exceeds it, all raw λ
   are shifted down by one constant (ranking unchanged) until the mean equals the budget.
λ enters L_D only as a detached weight: otherwise ½(1-λ)||v-μ||² rewards a larger λ for every
sample regardless of its label.

Precision (``core.precision``): bf16 autocast where the hardware has native bf16 (CUDA, and CPUs
with AMX-BF16 / AVX512-BF16), fp16 with a GradScaler on older GPUs, fp32 elsewhere; channels-last
convolutions. On this project's 2-core Xeon (AMX) a training epoch is 2.4× faster than fp32 NCHW
(``bench/cpu_speed.py``).

Reproducibility: every epoch reseeds the global torch RNG and a CPU ``torch.Generator`` (data
order, augmentation) from (seed, epoch); the checkpoint carries everything else, so on CPU a
resumed run equals an uninterrupted one bit for bit.

Run directory files are written after every epoch (samples.csv, neighbors.npz, features.npy,
history.csv, then checkpoint.pt last, each atomically); see ``core/run.py``.
"""
from __future__ import annotations

import hashlib
import math
import os
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from . import ldl
from .augment import augment_batch, to_float
from .model import LDLNet, ModelConfig, build_model
from .neighbors import knn
from .precision import Precision, choose_precision
from .table import DatasetError, classes_of, d_columns, p_columns, validate_table
from .va import CircumplexVA, circumplex_points, resolve_provider

CHECKPOINT_FORMAT = 1

METHODS = ("ldlva", "ce")
NEIGHBOR_MODES = ("bank", "exact")
VA_MODES = ("auto", "columns", "circumplex")
SIMILARITIES = ("l2", "l1")
NEIGHBOR_SPACES = ("va", "features")
LAMBDA_BASELINES = ("class", "global", "none")
DEVICES = ("auto", "cpu", "cuda")
# Options whose default changed after runs were written without them: such a run keeps the
# behaviour it was trained with when it is resumed or retrained.
LEGACY_DEFAULTS = {"neighbor_refresh": False}


class ConfigError(TypeError, ValueError):
    """A bad TrainConfig value (a TypeError too, so ``--set`` errors are reported as such)."""


@dataclass
class TrainConfig:
    # what to train
    method: str = "ldlva"                 # ldlva | ce
    epochs: int = 8
    batch_size: int = 64
    lr: float = 0.05                      # SGD, momentum, cosine decay over all steps
    momentum: float = 0.9
    weight_decay: float = 5e-4
    device: str = "auto"                  # auto | cpu | cuda
    amp: bool = True                      # mixed precision where native: CUDA, CPUs with AMX/AVX512-BF16
    channels_last: bool = True            # NHWC convolutions (faster on oneDNN and cuDNN)
    seed: int = 0
    num_threads: int | None = None        # torch CPU threads (None: leave as is)
    progress_every: int = 10              # batches between Progress reports
    eval_batch_size: int = 64   # measured: 3000 CPU forwards take 3.6 s at 64, 6.7 s at 256
    # input and network (core.model.ModelConfig)
    image_size: int = 48
    channels: int = 1
    arch: str = "compact"                 # compact | resnet18
    width: int = 16
    stages: int = 3
    blocks: int = 2
    calib_hidden: list = field(default_factory=lambda: [512, 256])
    augment: bool = True
    erase_p: float = 0.25
    # LDLVA
    neighbors: str = "bank"               # bank | exact
    va: str = "auto"                      # auto | columns | circumplex
    va_temperature: float = 1.0           # circumplex: sharpen warm-up probabilities (T < 1)
    va_centroids: dict | None = None      # override core.classes.VA_CENTROIDS entries
    k: int = 8
    neighbor_space: str = "va"            # va (DESIGN §1.1) | features (cosine, backbone features)
    neighbor_refresh: bool = True         # re-place samples and rebuild neighbours after every epoch
    similarity: str = "l2"                # l2 | l1 (published)
    delta: float | None = None            # l2 scale δ; None: median V-A distance to the K neighbours
    l1_scale: float = ldl.PUBLISHED_L1_SCALE
    gamma: float = 0.01                   # weight of L_D
    centre_alpha: float = 0.5             # center-loss update rate
    centre_separation_lr: float = 0.01    # gradient step of the centre separation term
    warmup_epochs: int = 1                # CE epochs before LDLVA (capped at epochs - 1)
    # λ (see module docstring, "λ anchoring")
    lambda_init: float = 0.2
    lambda_unsure_init: float = 0.8       # rows with unsure == True
    lambda_lr: float = 1.0
    lambda_baseline: str = "global"       # global | class | none (FER+ sweep: bench/RESULTS_ferplus.md)
    lambda_prior: float = 0.05            # β of ½β(raw - raw0)²
    lambda_budget: float | None = None    # cap on mean λ after each epoch

    def __post_init__(self) -> None:
        choices = {"method": METHODS, "neighbors": NEIGHBOR_MODES, "va": VA_MODES,
                   "similarity": SIMILARITIES, "device": DEVICES, "neighbor_space": NEIGHBOR_SPACES,
                   "arch": ("compact", "resnet18"), "lambda_baseline": LAMBDA_BASELINES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r}: expected one of {', '.join(allowed)}")
        for name in ("epochs", "batch_size", "image_size", "width", "stages", "blocks", "progress_every",
                     "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {self.channels}")
        if self.k < 1:
            raise ConfigError(f"k must be >= 1, got {self.k}")
        for name in ("lambda_init", "lambda_unsure_init"):
            if not 0.0 < float(getattr(self, name)) < 1.0:
                raise ConfigError(f"{name} must be strictly between 0 and 1, got {getattr(self, name)}")
        if self.lambda_budget is not None and not 0.0 < self.lambda_budget < 1.0:
            raise ConfigError(f"lambda_budget must be in (0, 1) or null, got {self.lambda_budget}")
        if self.delta is not None and self.delta <= 0:
            raise ConfigError(f"delta must be > 0 or null (auto), got {self.delta}")
        if self.warmup_epochs < 0:
            raise ConfigError("warmup_epochs must be >= 0")
        self.calib_hidden = [int(h) for h in self.calib_hidden]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        data = {**LEGACY_DEFAULTS, **data}
        unknown = sorted(set(data) - known)
        if unknown:
            warnings.warn(f"ignoring unknown training options {unknown} (written by another version?)")
        return cls(**{k: v for k, v in data.items() if k in known})

    def model_config(self, num_classes: int) -> ModelConfig:
        return ModelConfig(num_classes=num_classes, in_channels=self.channels, image_size=self.image_size,
                           arch=self.arch, width=self.width, stages=self.stages, blocks=self.blocks,
                           calib_hidden=list(self.calib_hidden))


@dataclass
class Progress:
    phase: str                      # load | warmup | train | epoch_end | done | cancelled
    epoch: int = 0
    epochs: int = 0
    batch: int = 0
    batches: int = 0
    loss: float = float("nan")
    loss_ce: float = float("nan")
    loss_d: float = float("nan")
    accuracy: float = float("nan")
    mean_lambda: float = float("nan")
    seconds: float = 0.0
    eta_seconds: float = float("nan")
    message: str = ""


Cancel = Callable[[], bool] | threading.Event | None


def _is_cancelled(cancel: Cancel) -> bool:
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DatasetError("--device cuda: no CUDA GPU is available to PyTorch on this machine")
    return torch.device(name)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 7919 + 17) % (2 ** 63 - 1)


def _ids_digest(ids) -> str:
    digest = hashlib.sha1()
    for sample_id in ids:
        digest.update(str(sample_id).encode("utf-8") + b"\0")
    return digest.hexdigest()


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


# ----------------------------------------------------------------------------- state

class _State:
    """Everything a checkpoint carries (tensors on ``device``)."""

    def __init__(self, config: TrainConfig, num_classes: int, n_train: int, unsure: np.ndarray,
                 device: torch.device):
        torch.manual_seed(config.seed)
        self.model: LDLNet = build_model(config.model_config(num_classes)).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=config.lr, momentum=config.momentum,
                                         weight_decay=config.weight_decay, nesterov=True)
        raw0 = np.where(unsure, _logit(config.lambda_unsure_init), _logit(config.lambda_init))
        self.lambda_raw0 = torch.as_tensor(raw0, dtype=torch.float32, device=device)
        self.lambda_raw = torch.nn.Parameter(self.lambda_raw0.clone())
        self.lambda_optimizer = torch.optim.SGD([self.lambda_raw], lr=config.lambda_lr)
        dim = self.model.feature_dim
        self.centres = torch.zeros(num_classes, dim, device=device)
        self.bank_probs = torch.full((n_train, num_classes), 1.0 / num_classes, device=device)
        self.bank_features = torch.zeros(n_train, dim, device=device)
        self.baseline = torch.zeros(num_classes, device=device)
        self.baseline_seen = torch.zeros(num_classes, dtype=torch.bool, device=device)
        self.va: torch.Tensor | None = None            # (N, 2) all rows, after preparation
        self.neighbor_index: torch.Tensor | None = None  # (n_train, K) into train rows
        self.similarity: torch.Tensor | None = None    # (n_train, K)
        self.delta: float | None = None
        self.va_provider: str | None = None
        self.epoch = 0
        self.step = 0
        self.history: list[dict] = []
        self.lambda_prev: torch.Tensor | None = None   # (N,) λ of the run before, NaN where none

    def checkpoint(self, config: TrainConfig, classes: list[str], ids_digest: str, scaler) -> dict:
        cpu = lambda t: None if t is None else t.detach().cpu()  # noqa: E731
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format_version": CHECKPOINT_FORMAT,
            "epoch": self.epoch, "step": self.step,
            "config": config.to_dict(), "classes": list(classes), "train_ids": ids_digest,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": _tree_to_cpu(self.optimizer.state_dict()),
            "lambda_raw": cpu(self.lambda_raw.data), "lambda_raw0": cpu(self.lambda_raw0),
            "lambda_optimizer": _tree_to_cpu(self.lambda_optimizer.state_dict()),
            "centres": cpu(self.centres), "bank_probs": cpu(self.bank_probs),
            "bank_features": cpu(self.bank_features), "baseline": cpu(self.baseline),
            "baseline_seen": cpu(self.baseline_seen), "va": cpu(self.va),
            "neighbor_index": cpu(self.neighbor_index), "similarity": cpu(self.similarity),
            "delta": self.delta, "va_provider": self.va_provider, "history": list(self.history),
            "lambda_prev": cpu(self.lambda_prev), "rng": rng,
            "scaler": None if scaler is None else scaler.state_dict(),
        }

    def restore(self, ckpt: dict, device: torch.device, scaler) -> None:
        dev = lambda t: None if t is None else t.to(device)  # noqa: E731
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.lambda_raw.data.copy_(ckpt["lambda_raw"].to(device))
        self.lambda_raw0 = dev(ckpt["lambda_raw0"])
        self.lambda_optimizer.load_state_dict(ckpt["lambda_optimizer"])
        for name in ("centres", "bank_probs", "bank_features", "baseline", "baseline_seen", "va",
                     "neighbor_index", "similarity", "lambda_prev"):
            setattr(self, name, dev(ckpt[name]))
        self.delta, self.va_provider = ckpt["delta"], ckpt["va_provider"]
        self.epoch, self.step, self.history = int(ckpt["epoch"]), int(ckpt["step"]), list(ckpt["history"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])


def _tree_to_cpu(tree):
    if isinstance(tree, torch.Tensor):
        return tree.detach().cpu()
    if isinstance(tree, dict):
        return {k: _tree_to_cpu(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_tree_to_cpu(v) for v in tree)
    return tree


# ----------------------------------------------------------------------------- checkpoints

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_PREV = "checkpoint.prev.pt"
_REQUIRED_KEYS = ("format_version", "epoch", "model", "optimizer", "lambda_raw", "centres", "bank_probs", "config")


def save_checkpoint(run_dir: str | Path, payload: dict) -> None:
    """Write checkpoint.pt atomically; the one it replaces becomes checkpoint.prev.pt."""
    run_dir = Path(run_dir)
    target = run_dir / CHECKPOINT
    from .atomic import atomic_open, fsync_dir

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


# ----------------------------------------------------------------------------- fit

def fit(table: pd.DataFrame, config: TrainConfig, run_dir: str | Path, *, cancel: Cancel = None,
        resume: bool = False, images: np.ndarray | torch.Tensor | None = None) -> Iterator[Progress]:
    """Train ``config.method`` on ``table`` (already edited, see ``Run.training_table``) into
    ``run_dir``; yields Progress every ``progress_every`` batches and at each epoch end.

    ``cancel`` (callable returning True, or a ``threading.Event``) is checked between batches;
    a cancelled fit yields phase ``cancelled`` and leaves the last completed epoch on disk.
    ``resume=True`` continues from the last completed epoch's checkpoint (a fresh start if
    there is none). ``images``: optional preloaded uint8 (N, C, H, W) in table order.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    validate_table(table)
    table = table.reset_index(drop=True)
    classes = classes_of(table)
    num_classes = len(classes)
    if config.num_threads:
        torch.set_num_threads(int(config.num_threads))
    device = resolve_device(config.device)
    from .run import ensure_run

    yield Progress("load", epochs=config.epochs, message=f"loading {len(table)} images",
                   seconds=time.perf_counter() - started)
    if images is None:
        from .images import load_readable_images

        n_rows = len(table)
        # train on the readable rows; a DatasetWarning names the bad files
        table, images = load_readable_images(table, config.image_size, config.channels)
        if len(table) != n_rows:
            validate_table(table)
    images = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    n = len(table)
    if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != n:
        raise ValueError(f"images must be uint8 (N={n}, C, H, W), got {tuple(images.shape)} {images.dtype}")
    split = table["split"].to_numpy()
    train_rows = np.flatnonzero(split == "train")
    if len(train_rows) == 0:
        raise DatasetError(f"{table.attrs.get('root', 'dataset')}: no training samples (split 'train' is empty)")
    n_train = len(train_rows)
    labels_all = torch.as_tensor(table["label"].to_numpy(np.int64).copy(), device=device)
    train_rows_t = torch.as_tensor(train_rows, device=device)
    train_labels = labels_all[train_rows_t]
    ids_digest = _ids_digest(table["sample_id"].iloc[train_rows])
    ensure_run(run_dir, config, table)
    if device.type == "cuda" and images.numel() <= 4 * 2 ** 30:  # ≤ 4 GiB: keep the dataset on the GPU
        images = images.to(device)

    unsure = np.zeros(n_train, dtype=bool)
    if "unsure" in table:
        unsure = table["unsure"].iloc[train_rows].fillna(False).astype(bool).to_numpy()

    precision = choose_precision(device, config.amp, config.channels_last)
    scaler = torch.amp.GradScaler("cuda") if precision.needs_scaler else None

    state = _State(config, num_classes, n_train, unsure, device)
    precision.prepare_model(state.model)
    yield Progress("load", epochs=config.epochs, seconds=time.perf_counter() - started,
                   message=f"training {n_train} images on {device.type}: {precision.describe()}")
    if resume:
        ckpt = load_checkpoint(run_dir)
        if ckpt is not None:
            if ckpt["train_ids"] != ids_digest or list(ckpt["classes"]) != classes:
                raise DatasetError(f"{run_dir}: cannot resume: the dataset's training samples or classes differ "
                                   "from the checkpoint's (was the dataset changed?)")
            if ckpt["config"].get("method") != config.method:
                raise DatasetError(f"{run_dir}: cannot resume: the checkpoint was trained with "
                                   f"--method {ckpt['config'].get('method')}, not {config.method}")
            state.restore(ckpt, device, scaler)
            del ckpt
    else:
        state.lambda_prev = _previous_lambda(run_dir, table, device)
        for name in (CHECKPOINT, CHECKPOINT_PREV):
            (run_dir / name).unlink(missing_ok=True)

    batches = math.ceil(n_train / config.batch_size)
    total_steps = config.epochs * batches
    n_warm = min(config.warmup_epochs, config.epochs - 1) if config.method == "ldlva" else 0
    onehot_train = F.one_hot(train_labels, num_classes).float()
    step_seconds: list[float] = []

    for epoch in range(state.epoch + 1, config.epochs + 1):
        warm = config.method == "ce" or epoch <= n_warm
        phase = "warmup" if (config.method == "ldlva" and warm) else "train"
        if config.method == "ldlva" and not warm and state.neighbor_index is None:
            yield Progress("warmup", epoch, config.epochs, message="placing samples in valence-arousal space",
                           seconds=time.perf_counter() - started)
            _prepare_ldlva(state, table, images, config, train_rows_t, device, precision)
        seed = _epoch_seed(config.seed, epoch)
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(n_train, generator=generator).to(device)
        state.model.train()
        sums = {"loss": 0.0, "loss_ce": 0.0, "loss_d": 0.0, "correct": 0, "seen": 0}
        epoch_start = time.perf_counter()
        for b in range(batches):
            if _is_cancelled(cancel):
                yield Progress("cancelled", epoch, config.epochs, b, batches,
                               seconds=time.perf_counter() - started,
                               message=f"cancelled in epoch {epoch}; epoch {state.epoch} is saved")
                return
            t_batch = time.perf_counter()
            idx = order[b * config.batch_size:(b + 1) * config.batch_size]
            lr = config.lr * 0.5 * (1.0 + math.cos(math.pi * state.step / max(total_steps, 1)))
            for group in state.optimizer.param_groups:
                group["lr"] = lr
            out = _train_step(state, config, idx, images, train_rows_t, train_labels, onehot_train,
                              generator, warm, device, precision, scaler)
            state.step += 1
            for key in ("loss", "loss_ce", "loss_d"):
                sums[key] += out[key] * len(idx)
            sums["correct"] += out["correct"]
            sums["seen"] += len(idx)
            step_seconds.append(time.perf_counter() - t_batch)
            if (b + 1) % config.progress_every == 0 or b + 1 == batches:
                per_batch = float(np.mean(step_seconds[-50:]))
                remaining = (config.epochs - epoch) * batches + (batches - b - 1)
                yield Progress(phase, epoch, config.epochs, b + 1, batches,
                               loss=sums["loss"] / sums["seen"], loss_ce=sums["loss_ce"] / sums["seen"],
                               loss_d=sums["loss_d"] / sums["seen"], accuracy=sums["correct"] / sums["seen"],
                               mean_lambda=_mean_lambda(state, config),
                               seconds=time.perf_counter() - started, eta_seconds=per_batch * remaining)
        train_seconds = time.perf_counter() - epoch_start
        if config.method == "ldlva" and not warm and config.lambda_budget is not None:
            _apply_budget(state, config.lambda_budget)
        state.epoch = epoch
        results = _evaluate_epoch(state, table, images, config, train_rows_t, train_labels, device, precision, warm)
        row = {"epoch": epoch, "phase": phase, "loss": sums["loss"] / sums["seen"],
               "loss_ce": sums["loss_ce"] / sums["seen"], "loss_d": sums["loss_d"] / sums["seen"],
               "train_accuracy": sums["correct"] / sums["seen"], "mean_lambda": _mean_lambda(state, config),
               "lr": lr, "delta": state.delta if state.delta is not None else float("nan"),
               "seconds": train_seconds}
        for part in ("valid", "test"):
            mask = split == part
            row[f"{part}_accuracy"] = float((results["pred"][mask] == table["label"].to_numpy()[mask]).mean()) \
                if mask.any() else float("nan")
        state.history.append(row)
        _write_outputs(run_dir, table, state, results, config, train_rows)
        if epoch < config.epochs and _needs_refresh(state, config):
            # the next epoch's neighbours come from this epoch's model; written files keep the ones used
            _place_and_link(state, table, config, torch.as_tensor(results["probs"], device=device),
                            torch.as_tensor(results["features"], device=device), train_rows_t)
        save_checkpoint(run_dir, state.checkpoint(config, classes, ids_digest, scaler))
        yield Progress("epoch_end", epoch, config.epochs, batches, batches, loss=row["loss"],
                       loss_ce=row["loss_ce"], loss_d=row["loss_d"], accuracy=row["train_accuracy"],
                       mean_lambda=row["mean_lambda"], seconds=time.perf_counter() - started, eta_seconds=
                       float(np.mean(step_seconds[-50:] or [0.0])) * (config.epochs - epoch) * batches,
                       message=f"epoch {epoch}/{config.epochs}: loss {row['loss']:.4f}, train acc "
                               f"{row['train_accuracy']:.3f}, valid acc {row['valid_accuracy']:.3f}, "
                               f"mean λ {row['mean_lambda']:.3f}")
    yield Progress("done", state.epoch, config.epochs, seconds=time.perf_counter() - started,
                   message=f"finished {state.epoch} epoch(s) in {time.perf_counter() - started:.1f} s")


def _mean_lambda(state: _State, config: TrainConfig) -> float:
    if config.method == "ce":
        return 0.0
    return float(torch.sigmoid(state.lambda_raw.detach()).mean())


def _previous_lambda(run_dir: Path, table: pd.DataFrame, device) -> torch.Tensor | None:
    """λ per row from an earlier run in the same folder (samples.csv), NaN where unknown."""
    path = run_dir / "samples.csv"
    if not path.exists():
        return None
    try:
        old = pd.read_csv(path, usecols=["sample_id", "lambda"], dtype={"sample_id": str})
    except Exception:  # noqa: BLE001 - an unreadable old table only loses lambda_prev
        warnings.warn(f"{path}: could not read the previous run's λ; lambda_prev left empty")
        return None
    mapping = dict(zip(old["sample_id"], old["lambda"]))
    values = np.array([mapping.get(s, np.nan) for s in table["sample_id"]], dtype=np.float32)
    return torch.as_tensor(values, device=device)


def _forward_rows(model: LDLNet, images: torch.Tensor, rows: torch.Tensor, device, precision: Precision,
                  batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """No-grad forward of ``rows`` (un-augmented) → float32 probs (R, m), features (R, V)."""
    probs, feats = [], []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            x = precision.prepare_input(to_float(images[chunk.to(images.device)].to(device, non_blocking=True)))
            with precision.autocast():
                logits, v = model(x)
            probs.append(torch.softmax(logits.float(), -1))
            feats.append(v.float())
    return torch.cat(probs), torch.cat(feats)


def _prepare_ldlva(state: _State, table, images, config: TrainConfig, train_rows_t, device, precision) -> None:
    """After warm-up: V-A points, K neighbours, similarities, bank initialisation."""
    state.model.eval()
    all_rows = torch.arange(len(table), device=device)
    probs, feats = _forward_rows(state.model, images, all_rows, device, precision, config.eval_batch_size)
    _place_and_link(state, table, config, probs, feats, train_rows_t)
    state.bank_probs = probs[train_rows_t].clone()
    state.bank_features = feats[train_rows_t].clone()
    # Centres start at the class means of the warm-up features.
    labels = torch.as_tensor(table["label"].to_numpy(np.int64).copy(), device=device)[train_rows_t]
    counts = torch.zeros(state.centres.shape[0], device=device).index_add_(0, labels, torch.ones(len(labels), device=device))
    sums = torch.zeros_like(state.centres).index_add_(0, labels, state.bank_features)
    state.centres = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], state.centres)
    state.model.train()


def _place_and_link(state: _State, table, config: TrainConfig, probs: torch.Tensor, feats: torch.Tensor,
                    train_rows_t: torch.Tensor) -> None:
    """V-A points of all rows, then K neighbours and s_ik of the train rows in the neighbour space."""
    device = probs.device
    provider = resolve_provider(config.va, table, centroids=config.va_centroids, temperature=config.va_temperature)
    va = provider.points(table, probs.cpu().numpy().astype(np.float64))
    train_rows = train_rows_t.cpu().numpy()
    if config.neighbor_space == "features":
        # cosine geometry: on unit vectors the Euclidean distance is a monotone function of it
        unit = F.normalize(feats.float(), dim=1).cpu().numpy().astype(np.float64)
        points = unit[train_rows]
    else:
        points = va[train_rows]
    index, dist = knn(points, config.k)
    if index.shape[1] == 0:
        raise DatasetError("LDLVA needs at least 2 training samples")
    if config.delta is not None:
        delta = float(config.delta)
    else:
        delta = float(np.median(dist)) if np.median(dist) > 1e-6 else float(max(dist.mean(), 1e-3))
    index_t = torch.as_tensor(index, device=device)
    points_t = torch.as_tensor(points, dtype=torch.float32, device=device)
    s = ldl.local_similarity(points_t, points_t[index_t], delta, config.similarity, config.l1_scale)
    state.va = torch.as_tensor(va, dtype=torch.float32, device=device)
    state.neighbor_index, state.similarity, state.delta = index_t, s.float(), delta
    state.va_provider = provider.name


def _needs_refresh(state: _State, config: TrainConfig) -> bool:
    """Whether re-placing the samples can change the neighbours (they follow the model)."""
    if not config.neighbor_refresh or state.neighbor_index is None:
        return False
    return config.neighbor_space == "features" or state.va_provider == "circumplex"


def _train_step(state: _State, config: TrainConfig, idx, images, train_rows_t, train_labels, onehot_train,
                generator, warm: bool, device, precision, scaler) -> dict:
    rows = train_rows_t[idx]
    y = train_labels[idx]
    batch = images[rows.to(images.device)]
    x = augment_batch(batch.to(device), generator, erase_p=config.erase_p) if config.augment else to_float(batch.to(device))
    x = precision.prepare_input(x)
    model = state.model
    with precision.autocast():
        logits, feats = model(x)
    logits, feats = logits.float(), feats.float()
    probs = torch.softmax(logits.detach(), -1)
    loss_d = torch.zeros((), device=device)
    loss_lambda = None
    if warm:
        loss_ce = F.cross_entropy(logits, y)
        loss = loss_ce
    else:
        lam = torch.sigmoid(state.lambda_raw[idx])
        nb = state.neighbor_index[idx]
        if config.neighbors == "bank":
            f_k, v_k = state.bank_probs[nb], state.bank_features[nb]
        else:
            b, k = nb.shape
            f_k, v_k = _forward_rows(model, images, train_rows_t[nb.reshape(-1)], device, precision, b * k)
            f_k, v_k = f_k.reshape(b, k, -1), v_k.reshape(b, k, -1)
        with precision.autocast():
            zeta = model.zeta(feats.detach(), v_k)
        c = ldl.contribution_degrees(zeta.float(), state.similarity[idx])
        d_tilde = ldl.aggregate_distribution(c, f_k)
        onehot = onehot_train[idx]
        target = ldl.target_distribution(onehot, lam.detach(), d_tilde)
        loss_ce = ldl.soft_cross_entropy(target, logits)
        loss_d = ldl.discriminative_loss(feats, y, lam.detach(), state.centres, reduction="mean")
        loss = loss_ce + config.gamma * loss_d
        # λ's own objective: per-sample evidence, class baseline, prior (module docstring).
        with torch.no_grad():
            log_f = F.log_softmax(logits.detach(), -1)
            evidence = -(d_tilde.detach() * log_f).sum(-1) + log_f.gather(1, y[:, None]).squeeze(1)
            evidence = _centre_evidence(state, config.lambda_baseline, y, evidence)
        raw = state.lambda_raw[idx]
        loss_lambda = (lam * evidence).sum() + 0.5 * config.lambda_prior * (raw - state.lambda_raw0[idx]).pow(2).sum()
    state.optimizer.zero_grad(set_to_none=True)
    state.lambda_optimizer.zero_grad(set_to_none=True)
    total = loss if loss_lambda is None else loss + loss_lambda
    if scaler is not None:
        scaler.scale(total).backward()
        scaler.step(state.optimizer)
        if loss_lambda is not None:
            scaler.step(state.lambda_optimizer)
        scaler.update()
    else:
        total.backward()
        state.optimizer.step()
        if loss_lambda is not None:
            state.lambda_optimizer.step()
    if config.method == "ldlva":
        with torch.no_grad():
            state.bank_probs[idx] = probs
            state.bank_features[idx] = feats.detach()
            if not warm:
                weights = 1.0 - torch.sigmoid(state.lambda_raw[idx])
                state.centres = ldl.update_centres(state.centres, feats.detach(), y, weights, config.centre_alpha,
                                                   config.centre_separation_lr)
    return {"loss": float(loss.detach()), "loss_ce": float(loss_ce.detach()), "loss_d": float(loss_d.detach()),
            "correct": int((probs.argmax(-1) == y).sum())}


def _centre_evidence(state: _State, baseline: str, y: torch.Tensor, evidence: torch.Tensor) -> torch.Tensor:
    """λ's evidence minus its running baseline (``TrainConfig.lambda_baseline``), baseline updated."""
    if baseline == "class":
        _update_baseline(state, y, evidence)
        return evidence - state.baseline[y]
    if baseline == "global":  # one running mean over all samples, kept in slot 0
        _update_baseline(state, torch.zeros_like(y), evidence)
        return evidence - state.baseline[0]
    return evidence


def _update_baseline(state: _State, y: torch.Tensor, evidence: torch.Tensor, momentum: float = 0.9) -> None:
    m = state.baseline.shape[0]
    count = torch.zeros(m, device=y.device).index_add_(0, y, torch.ones_like(evidence))
    total = torch.zeros(m, device=y.device).index_add_(0, y, evidence)
    present = count > 0
    mean = total / count.clamp_min(1)
    blended = torch.where(state.baseline_seen, momentum * state.baseline + (1 - momentum) * mean, mean)
    state.baseline = torch.where(present, blended, state.baseline)
    state.baseline_seen = state.baseline_seen | present


@torch.no_grad()
def _apply_budget(state: _State, budget: float) -> None:
    raw = state.lambda_raw.data
    if float(torch.sigmoid(raw).mean()) <= budget:
        return
    lo, hi = -50.0, 0.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if float(torch.sigmoid(raw + mid).mean()) > budget:
            hi = mid
        else:
            lo = mid
    raw.add_(lo)


@torch.no_grad()
def _evaluate_epoch(state: _State, table, images, config: TrainConfig, train_rows_t, train_labels, device,
                    precision, warm: bool) -> dict:
    """Eval-mode pass over all rows → p, features; d, λ, neighbour weights for train rows."""
    model = state.model
    model.eval()
    n = len(table)
    probs, feats = _forward_rows(model, images, torch.arange(n, device=device), device, precision,
                                 config.eval_batch_size)
    num_classes = probs.shape[1]
    onehot = F.one_hot(train_labels, num_classes).float()
    out: dict[str, Any] = {"probs": probs.cpu().numpy(), "features": feats.cpu().numpy(),
                           "pred": probs.argmax(-1).cpu().numpy()}
    if config.method == "ce":
        out["lambda"] = np.zeros(len(train_labels), np.float64)
        out["d"] = onehot.cpu().numpy()
    elif state.neighbor_index is None:  # still warming up: λ at its initial value, d = (1-λ) l + λ p
        lam = torch.sigmoid(state.lambda_raw.detach())
        out["lambda"] = lam.cpu().numpy()
        out["d"] = onehot.cpu().numpy()
    else:
        lam = torch.sigmoid(state.lambda_raw.detach())
        train_probs, train_feats = probs[train_rows_t], feats[train_rows_t]
        zetas = []
        for start in range(0, len(train_rows_t), config.eval_batch_size):
            sl = slice(start, start + config.eval_batch_size)
            nb = state.neighbor_index[sl]
            with precision.autocast():
                zetas.append(model.zeta(train_feats[sl], train_feats[nb]).float())
        zeta = torch.cat(zetas)
        c = ldl.contribution_degrees(zeta, state.similarity)
        d_tilde = ldl.aggregate_distribution(c, train_probs[state.neighbor_index])
        out["lambda"] = lam.cpu().numpy()
        out["d"] = ldl.target_distribution(onehot, lam, d_tilde).cpu().numpy()
        out["neighbors"] = {"indices": state.neighbor_index.cpu().numpy(),
                            "similarity": state.similarity.cpu().numpy(),
                            "zeta": zeta.cpu().numpy(), "contribution": c.cpu().numpy()}
    model.train()
    return out


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


def _write_outputs(run_dir: Path, table: pd.DataFrame, state: _State, results: dict, config: TrainConfig,
                   train_rows: np.ndarray) -> None:
    from .atomic import atomic_open

    classes = classes_of(table)
    n = len(table)
    probs = results["probs"].astype(np.float64)
    out = table.copy()
    out.attrs = dict(table.attrs)
    lam = np.full(n, np.nan)
    lam[train_rows] = results["lambda"]
    d = probs.copy()                       # non-train rows: d = p (documented in run.py)
    d[train_rows] = results["d"]
    d /= d.sum(1, keepdims=True)
    probs /= probs.sum(1, keepdims=True)
    out["lambda"] = lam
    for j, col in enumerate(d_columns(classes)):
        out[col] = d[:, j]
    for j, col in enumerate(p_columns(classes)):
        out[col] = probs[:, j]
    if state.va is not None:
        va = state.va.cpu().numpy().astype(np.float64)
    else:
        provider = resolve_provider(config.va, table, centroids=config.va_centroids,
                                    temperature=config.va_temperature)
        va = circumplex_points(probs, classes, config.va_centroids, config.va_temperature) \
            if isinstance(provider, CircumplexVA) else provider.points(table)
    if "valence" in table and not np.allclose(table["valence"].to_numpy(np.float64), va[:, 0], equal_nan=False):
        out["valence_given"] = table["valence"].to_numpy(np.float64)
        out["arousal_given"] = table["arousal"].to_numpy(np.float64)
    out["valence"], out["arousal"] = va[:, 0], va[:, 1]
    xy = feature_map_2d(results["features"])
    out["x2d"], out["y2d"] = xy[:, 0], xy[:, 1]
    out["lambda_prev"] = state.lambda_prev.cpu().numpy().astype(np.float64) if state.lambda_prev is not None \
        else np.full(n, np.nan)
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
        pd.DataFrame(state.history).to_csv(handle, index=False)
