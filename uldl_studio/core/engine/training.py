"""Training: ``fit(table, config, run_dir)`` as a generator of ``Progress``.

``fit`` decodes the images (into the decoded-image cache by default), builds the model and its
state, resumes from the last checkpoint or starts fresh, and trains ``config.epochs`` epochs of
``config.method`` (``core.engine.config.TrainConfig``):

- ``ce``: cross-entropy on the given labels;
- ``ldlva``: ``warmup_epochs`` cross-entropy epochs, then a placement pass (V-A points, K
  neighbours, memory bank, class centres) and LDLVA epochs on d = (1 − λ) l + λ d̃
  (``core.labels.ldl``); λ takes one step of its own objective after each epoch's evaluation
  pass, then the optional budget.

After every epoch, an eval-mode pass over all rows gives p, the features, λ and d and the
per-sample evidence (``core.engine.dynamics``); the epoch's files and then the checkpoint are
written atomically (``core.engine.run``). Cancel is checked in every phase; a cancelled fit
leaves the last completed epoch on disk. Each epoch reseeds its random generators from (seed,
epoch), so a resumed run equals an uninterrupted one. Under torchrun (``comm``) every rank
trains its share of each batch and keeps the same state; rank 0 writes the run.

The method, the reasons behind λ's update and the measurements behind the defaults are in
docs/method.md ("The training loop") and bench/RESULTS_ferplus.md. Options measured and not
chosen live in ``core.engine.experimental``.
"""
from __future__ import annotations

import hashlib
import math
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from uldl_studio.core.cancel import Cancel, Cancelled, cancel_requested
from uldl_studio.core.data.image_cache import open_cached_images
from uldl_studio.core.data.images import load_readable_images
from uldl_studio.core.engine import experimental
from uldl_studio.core.engine.augment import augment_batch, parse_framing, to_float
from uldl_studio.core.engine.batches import ArrayImages, ImageSource, iterate_batches
from uldl_studio.core.engine.config import TrainConfig, resolve_device
from uldl_studio.core.engine.distributed import Comm, shard_bounds, shard_counts, tensor_digest
from uldl_studio.core.engine.dynamics import TrainingDynamics, knn_disagreement
from uldl_studio.core.engine.model import LDLNet, PretrainedError, build_model, load_pretrained
from uldl_studio.core.engine.neighbors import knn
from uldl_studio.core.engine.precision import Precision, choose_precision
from uldl_studio.core.engine.run import (
    CHECKPOINT, CHECKPOINT_FORMAT, CHECKPOINT_PREV, ensure_run, load_checkpoint, previous_lambda, remove_checkpoints,
    save_checkpoint, write_distributed_log, write_epoch_outputs,
)
from uldl_studio.core.engine.va import HEAD_COLUMNS, PRED_COLUMNS, resolve_provider, va_errors
from uldl_studio.core.labels import ldl
from uldl_studio.core.labels.soft_labels import build_soft_labels, mix_for, target_matrix
from uldl_studio.core.progress import Progress
from uldl_studio.core.table import DatasetError, classes_of, validate_table


Check = Callable[[], None] | None  # raises Cancelled when the fit was cancelled


def _checker(cancel: Cancel, where: str, epoch: int = 0, batches: int = 0) -> Check:
    """A check to call between the units of work of one phase (None when nothing can cancel)."""
    if cancel is None:
        return None

    def check() -> None:
        if cancel_requested(cancel):
            raise Cancelled(where, epoch, 0, batches)

    return check


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
                 device: torch.device, dynamics: TrainingDynamics, va_head: bool = False):
        torch.manual_seed(config.seed)
        self.model: LDLNet = build_model(config.model_config(num_classes, va_head)).to(device)
        self.net: torch.nn.Module = self.model           # what training forwards through (DDP under torchrun)
        self.net_warm: bool | None = None                # the phase ``net`` was wrapped for
        self.optimizer = torch.optim.SGD(_parameter_groups(self.model, config), lr=config.lr,
                                         momentum=config.momentum, weight_decay=config.weight_decay, nesterov=True)
        raw0 = np.where(unsure, _logit(config.lambda_unsure_init), _logit(config.lambda_init))
        self.lambda_raw0 = torch.as_tensor(raw0, dtype=torch.float32, device=device)
        self.lambda_raw = torch.nn.Parameter(self.lambda_raw0.clone())
        self.lambda_optimizer = torch.optim.SGD([self.lambda_raw], lr=config.lambda_lr)
        dim = self.model.feature_dim
        self.centres = torch.zeros(num_classes, dim, device=device)
        self.bank_probs = torch.full((n_train, num_classes), 1.0 / num_classes, device=device)
        self.bank_features = torch.zeros(n_train, dim, device=device)
        # running means of the experimental per-batch λ evidence (core.engine.experimental)
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
        self.dynamics = dynamics                       # per-row sums over epochs (core.dynamics)

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
            "lambda_prev": cpu(self.lambda_prev), "dynamics": self.dynamics.state_dict(), "rng": rng,
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
        problem = self.dynamics.load_state_dict(ckpt.get("dynamics"))
        if problem is not None:
            warnings.warn(f"{problem}: the dyn_* columns of samples.csv will average only the epochs "
                          "trained from now on")
        torch.set_rng_state(ckpt["rng"]["torch"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])


def _parameter_groups(model: LDLNet, config: TrainConfig) -> list:
    """The optimiser's parameters: one group (as always), or with ``backbone_lr_mult`` ≠ 1 the
    backbone's at that multiple of the learning rate and the rest (head, g) at the full rate.
    ``freeze_bn`` leaves the backbone's BatchNorm affine parameters out (they stay as loaded)."""
    if config.freeze_bn:
        for module in model.backbone.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                for parameter in module.parameters():
                    parameter.requires_grad_(False)
    if float(config.backbone_lr_mult) == 1.0:
        return [{"params": list(model.parameters()), "lr_mult": 1.0}]
    backbone = {id(p) for p in model.backbone.parameters()}
    return [{"params": list(model.backbone.parameters()), "lr_mult": float(config.backbone_lr_mult)},
            {"params": [p for p in model.parameters() if id(p) not in backbone], "lr_mult": 1.0}]


def _train_mode(model: LDLNet, config: TrainConfig) -> None:
    """Training mode; with ``freeze_bn`` the backbone's BatchNorm layers stay in eval mode (their
    running statistics, e.g. a pretrained backbone's, are kept)."""
    model.train()
    if config.freeze_bn:
        for module in model.backbone.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def _tree_to_cpu(tree):
    if isinstance(tree, torch.Tensor):
        return tree.detach().cpu()
    if isinstance(tree, dict):
        return {k: _tree_to_cpu(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_tree_to_cpu(v) for v in tree)
    return tree


@dataclass
class _FitContext:
    """What stays fixed for a whole ``fit``."""

    config: TrainConfig
    run_dir: Path
    table: pd.DataFrame             # the readable rows, index 0..N-1
    classes: list[str]
    source: ImageSource             # the rows' uint8 images: in memory (on the GPU when they fit) or the disk cache
    labels: torch.Tensor            # (N,) given labels of all rows
    train_rows: np.ndarray          # positions of the train rows in ``table``
    train_rows_t: torch.Tensor
    train_labels: torch.Tensor      # (n_train,) given labels
    onehot_train: torch.Tensor      # (n_train, m)
    ids_digest: str                 # of the train sample ids: a resume must see the same rows
    rows_digest: str                # of all sample ids in order (the training-dynamics sums' rows)
    device: torch.device
    precision: Precision
    scaler: torch.amp.GradScaler | None
    batches: int                    # per epoch
    warmup_epochs: int              # ldlva's CE epochs (0 for ce)
    comm: Comm                      # the process group (Comm(): one process)
    logit_offsets: torch.Tensor | None = None   # (m,) τ·log π added to the logits in the loss (class_balance)
    framing: tuple = ()             # framing augmentations (core.augment.FRAMING)
    va_targets: torch.Tensor | None = None      # (n_train, 2) given V-A of the train rows (NaN: none): the V-A head's
    va_baseline: np.ndarray | None = None       # (2,) their mean (the error of predicting it is the head's reference)
    va_provider: str = ""                       # the provider the samples are placed with (core.engine.va)
    head_points: np.ndarray | None = None       # va=head: (N, 2) another run's V-A head points of the rows

    @property
    def va_head(self) -> bool:
        """Whether the model has (and trains) a V-A head."""
        return self.va_targets is not None

    @property
    def n_train(self) -> int:
        return len(self.train_rows)

    def is_warm(self, epoch: int) -> bool:
        """Whether ``epoch`` trains plain cross-entropy (every ce epoch, ldlva's warm-up)."""
        return self.config.method == "ce" or epoch <= self.warmup_epochs

    def phase(self, epoch: int) -> str:
        return "warmup" if (self.config.method == "ldlva" and self.is_warm(epoch)) else "train"


@dataclass
class _EpochTotals:
    """Running sums over one epoch's batches."""

    loss: float = 0.0
    loss_ce: float = 0.0
    loss_d: float = 0.0
    correct: int = 0
    seen: int = 0
    lr: float = float("nan")        # of the last batch
    seconds: float = 0.0            # batches only (no evaluation pass, no file writing)
    loss_va: float = 0.0            # the V-A head's MSE (0 without a head)

    def add(self, step: dict, size: int) -> None:
        self.loss += step["loss"] * size
        self.loss_ce += step["loss_ce"] * size
        self.loss_d += step["loss_d"] * size
        self.loss_va += step.get("loss_va", 0.0) * size
        self.correct += step["correct"]
        self.seen += size

    def means(self) -> dict:
        return {"loss": self.loss / self.seen, "loss_ce": self.loss_ce / self.seen,
                "loss_d": self.loss_d / self.seen, "loss_va": self.loss_va / self.seen,
                "accuracy": self.correct / self.seen}


# ----------------------------------------------------------------------------- fit

def fit(table: pd.DataFrame, config: TrainConfig, run_dir: str | Path, *, cancel: Cancel = None,
        resume: bool = False, images: np.ndarray | torch.Tensor | ImageSource | None = None,
        comm: Comm | None = None, replace: bool = False) -> Iterator[Progress]:
    """Train ``config.method`` on ``table`` (already edited, see ``Run.training_table``) into
    ``run_dir``; yields Progress every ``progress_every`` batches and at each epoch end.

    A trained model is never overwritten: a fresh start (``resume=False``) in a folder that
    holds a checkpoint raises DatasetError before anything is written; train a new version of
    the run instead (``core.versions.start_version``) or resume it. ``replace=True`` allows it
    for folders whose models are intermediate (the cross-fit folds).

    ``cancel`` (callable returning True, or a ``threading.Event``) is checked in every phase:
    while decoding (per image in memory, from the decoding threads too; every 16 images or
    0.2 s into the cache), between the evaluation batches of
    the post-warm-up placement and of every epoch's evaluation pass, before every batch, and once
    more before an epoch's files are written (after that only the files are written, so a run
    directory never holds half an epoch). A cancelled fit yields phase ``cancelled`` and leaves
    the last completed epoch on disk untouched.
    ``resume=True`` continues from the last completed epoch's checkpoint (a fresh start if
    there is none). ``images``: optional preloaded uint8 (N, C, H, W) in table order, or an
    image source (``core.batches``); without it the images come from the decoded-image cache
    (``core.image_cache``; ``config.image_cache=False`` decodes them into memory instead).
    ``comm``: the process group under torchrun (``core.distributed``): every rank trains a shard
    of each batch and keeps the same state; rank 0 alone writes the run directory.
    """
    started = time.perf_counter()
    clock = lambda: time.perf_counter() - started  # noqa: E731
    if not resume and not replace:
        _refuse_overwrite(Path(run_dir))
    validate_table(table)
    table = table.reset_index(drop=True)
    if config.num_threads:
        torch.set_num_threads(int(config.num_threads))
    comm = comm or Comm()
    device = comm.device(resolve_device(config.device))
    yield Progress("load", epochs=config.epochs, message=f"loading {len(table)} images", seconds=clock())
    saved = None  # the last epoch whose files and checkpoint are on disk (None: not looked yet)
    try:
        if images is None:  # train on the readable rows; a DatasetWarning names the bad files
            n_rows = len(table)
            if config.image_cache:
                table, images = yield from _decode_into_cache(table, config, cancel, clock)
            else:
                table, images = load_readable_images(table, config.image_size, config.channels, cancel=cancel)
            if len(table) != n_rows:
                validate_table(table)
        ctx = _setup(table, config, Path(run_dir), images, device, comm)
        state = _State(config, len(ctx.classes), ctx.n_train, _unsure_train_rows(ctx), device,
                       TrainingDynamics(len(ctx.table), ctx.rows_digest), va_head=ctx.va_head)
        _init_va_head(state, ctx)
        ctx.precision.prepare_model(state.model)
        where = f"{device.type}" if not comm.distributed else f"{comm.world_size} processes ({comm.backend}, {device.type})"
        yield Progress("load", epochs=config.epochs, seconds=clock(),
                       message=f"training {ctx.n_train} images on {where}: {ctx.precision.describe()}")
        _resume_or_start(state, ctx, resume)
        saved = state.epoch
        step_seconds: list[float] = []
        for epoch in range(state.epoch + 1, config.epochs + 1):
            check = _checker(cancel, f"before epoch {epoch}", epoch, ctx.batches)
            if check is not None:
                check()
            warm = ctx.is_warm(epoch)
            _wrap_for_phase(state, ctx, warm)
            if not warm and state.neighbor_index is None:  # ldlva, first epoch after the warm-up
                yield Progress("warmup", epoch, config.epochs, message="placing samples in valence-arousal space",
                               seconds=clock())
                _prepare_ldlva(state, ctx, _checker(cancel, f"while placing the samples (epoch {epoch})", epoch,
                                                    ctx.batches))
            totals = yield from _train_epoch(state, ctx, epoch, warm, cancel, clock, step_seconds)
            row = _end_epoch(state, ctx, epoch, warm, totals, cancel)
            saved = epoch
            eta = float(np.mean(step_seconds[-50:] or [0.0])) * (config.epochs - epoch) * ctx.batches
            yield Progress("epoch_end", epoch, config.epochs, ctx.batches, ctx.batches, loss=row["loss"],
                           loss_ce=row["loss_ce"], loss_d=row["loss_d"], accuracy=row["train_accuracy"],
                           mean_lambda=row["mean_lambda"], seconds=clock(), eta_seconds=eta,
                           message=_epoch_line(epoch, config, row))
    except Cancelled as stop:
        where, epoch = stop.where, stop.epoch
        kept = ("the run directory was not changed" if saved is None else
                f"epoch {saved} is saved" if saved else "no epoch was finished yet")
        yield Progress("cancelled", epoch, config.epochs, getattr(stop, "batch", 0), getattr(stop, "batches", 0),
                       seconds=clock(), message=f"cancelled {where}; {kept}")
        return
    yield Progress("done", state.epoch, config.epochs, seconds=clock(),
                   message=f"finished {state.epoch} epoch(s) in {clock():.1f} s")


def _refuse_overwrite(run_dir: Path) -> None:
    if any((run_dir / name).exists() for name in (CHECKPOINT, CHECKPOINT_PREV)):
        raise DatasetError(f"{run_dir}: already holds a trained model; a fresh training would overwrite it. "
                           "Train a new version of the run (uldl-studio retrain) or resume this one")


def _setup(table: pd.DataFrame, config: TrainConfig, run_dir: Path, images, device: torch.device,
           comm: Comm) -> _FitContext:
    """The image source, train rows and labels, precision, RUN/config.json (``images``: the
    readable rows' images, in memory or an image source)."""
    source = images if hasattr(images, "read") else ArrayImages(images)
    table, head_points = _take_head_points(table, config)
    n = len(table)
    if len(source) != n or len(source.shape) != 4:
        raise ValueError(f"images must be uint8 (N={n}, C, H, W), got {tuple(source.shape)}")
    train_rows = np.flatnonzero(table["split"].to_numpy() == "train")
    if len(train_rows) == 0:
        raise DatasetError(f"{table.attrs.get('root', 'dataset')}: no training samples (split 'train' is empty)")
    classes = classes_of(table)
    present = np.unique(table["label"].to_numpy(np.int64)[train_rows])
    if len(present) < 2:
        names = ", ".join(classes[int(c)] for c in present) or "none"
        raise DatasetError(f"{table.attrs.get('root', 'dataset')}: the training samples carry {len(present)} "
                           f"class ({names}); training needs at least two classes")
    labels_all = torch.as_tensor(table["label"].to_numpy(np.int64).copy(), device=device)
    train_rows_t = torch.as_tensor(train_rows, device=device)
    train_labels = labels_all[train_rows_t]
    ids_digest = _ids_digest(table["sample_id"].iloc[train_rows])
    if comm.is_main:
        ensure_run(run_dir, config, table)
    if isinstance(source, ArrayImages) and device.type == "cuda" and source.images.numel() <= 4 * 2 ** 30:
        source = source.to(device)  # ≤ 4 GiB: keep the dataset on the GPU
    batches = math.ceil(len(train_rows) / config.batch_size)
    if comm.distributed and len(train_rows) % config.batch_size and \
            len(train_rows) % config.batch_size < comm.world_size:
        batches -= 1  # the short last batch joins the one before: every rank needs a sample
    if batches < 1:
        raise DatasetError(f"{table.attrs.get('root', 'dataset')}: {len(train_rows)} training samples cannot "
                           f"be shared by {comm.world_size} processes")
    precision = choose_precision(device, config.amp, config.channels_last)
    onehot_train = _label_targets(table, classes, train_rows, train_labels)
    va_targets = _va_targets(table, train_rows, config)
    provider = resolve_provider(config.va, table, centroids=config.va_centroids, temperature=config.va_temperature,
                                head_points=head_points, va_from=config.va_from)
    return _FitContext(
        va_targets=None if va_targets is None else torch.as_tensor(va_targets, dtype=torch.float32, device=device),
        va_baseline=None if va_targets is None else np.nanmean(va_targets, axis=0),
        va_provider=provider.name, head_points=head_points,
        config=config, run_dir=run_dir, table=table, classes=classes, source=source, labels=labels_all,
        train_rows=train_rows, train_rows_t=train_rows_t, train_labels=train_labels,
        onehot_train=onehot_train, ids_digest=ids_digest, logit_offsets=_logit_offsets(config, onehot_train),
        framing=parse_framing(config.framing),
        rows_digest=_ids_digest(table["sample_id"]), device=device,
        precision=precision, scaler=torch.amp.GradScaler("cuda") if precision.needs_scaler else None,
        batches=batches, comm=comm,
        warmup_epochs=min(config.warmup_epochs, config.epochs - 1) if config.method == "ldlva" else 0)


def _take_head_points(table: pd.DataFrame, config: TrainConfig) -> tuple[pd.DataFrame, np.ndarray | None]:
    """``va=head``: the other run's V-A head points (the table's :data:`HEAD_COLUMNS`, added by
    ``core.runs.predict.head_placement``) and the table without them; else (table, None)."""
    if not all(c in table for c in HEAD_COLUMNS):
        if config.va == "head":
            raise DatasetError(f"--va-from {config.va_from}: the dataset's rows were not placed with that run's "
                               "V-A head (train through core.runs.jobs, which places them)")
        return table, None
    points = table[list(HEAD_COLUMNS)].to_numpy(np.float64)
    return table.drop(columns=list(HEAD_COLUMNS)), points


def _va_targets(table: pd.DataFrame, train_rows: np.ndarray, config: TrainConfig) -> np.ndarray | None:
    """(n_train, 2) given valence and arousal of the train rows (NaN where missing) when the
    V-A head is trained: ``va_head_weight`` > 0 and at least two train rows with both finite."""
    if float(config.va_head_weight) <= 0 or "valence" not in table or "arousal" not in table:
        return None
    targets = table[["valence", "arousal"]].to_numpy(np.float64)[train_rows]
    targets = np.where(np.isfinite(targets).all(1, keepdims=True), np.clip(targets, -1.0, 1.0), np.nan)
    return targets if int(np.isfinite(targets).all(1).sum()) >= 2 else None


@torch.no_grad()
def _init_va_head(state: _State, ctx: _FitContext) -> None:
    """The V-A head starts as the training rows' mean V-A (zero weights, bias atanh(mean)): it
    begins as the reference it must beat, and gradient steps only move it from there. A
    resumed fit restores the checkpoint's head afterwards."""
    head = state.model.va_head
    if head is None:
        return
    head.weight.zero_()
    mean = np.clip(ctx.va_baseline, -0.95, 0.95)
    head.bias.copy_(torch.as_tensor(np.arctanh(mean), dtype=head.bias.dtype))


def _logit_offsets(config: TrainConfig, targets: torch.Tensor) -> torch.Tensor | None:
    """``class_balance="logit_adjust"``: τ·log π with π the mean training target (the label
    frequencies; a class no row carries counts as 1e-4), added to the logits in the loss
    (Menon et al. 2021) so that the model's own p is balanced. None otherwise."""
    if config.class_balance == "none":
        return None
    priors = targets.mean(0).clamp_min(1e-4)
    return float(config.class_balance_tau) * torch.log(priors / priors.sum())


def _decode_into_cache(table: pd.DataFrame, config: TrainConfig, cancel: Cancel, clock):
    """``open_cached_images`` in a thread while this generator reports its progress (phase
    ``load``, ``batch``/``batches`` = images decoded / to decode, every half second). Returns the
    readable rows and their ``CachedImages``; re-raises what the decoding raised."""
    seen, outcome = [0, 0], {}

    def progress(done: int, total: int) -> None:
        seen[:] = [done, total]

    def work() -> None:
        try:
            outcome["result"] = open_cached_images(table, config.image_size, config.channels, progress=progress,
                                                   cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 - handed to the generator's thread
            outcome["error"] = exc

    thread = threading.Thread(target=work, name="uldl-image-cache", daemon=True)
    thread.start()
    reported = None
    while thread.is_alive():
        thread.join(0.5)
        if seen[1] and seen != reported:
            reported = list(seen)
            yield Progress("load", epochs=config.epochs, batch=seen[0], batches=seen[1], seconds=clock(),
                           message=f"decoding images into the cache: {seen[0]} of {seen[1]}")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _wrap_for_phase(state: _State, ctx: _FitContext, warm: bool) -> None:
    """Under torchrun, what the training step forwards through is the model wrapped in
    DistributedDataParallel (gradients averaged over the ranks in backward, rank 0's buffers
    broadcast in forward), re-wrapped when the set of parameters in use changes: plain
    cross-entropy never reaches the calibration MLP g (so DDP must look for unused parameters),
    LDLVA's steps use every parameter (so it need not, which saves a graph traversal a step)."""
    if not ctx.comm.distributed or state.net_warm == warm:
        return
    state.net = state.model  # drop the previous wrapper (and its gradient hooks) first
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    state.net = DistributedDataParallel(state.model, device_ids=ids, find_unused_parameters=warm)
    state.net_warm = warm


def _label_targets(table: pd.DataFrame, classes: list[str], train_rows: np.ndarray,
                   train_labels: torch.Tensor) -> torch.Tensor:
    """(n_train, m) the label l_i each train row learns from: the one-hot given label, or the
    row's soft label when the table has ``target_<class>`` columns (``--soft-labels``); a row
    the annotator relabelled learns its new label, unless its target is the people's combined
    label (``combined``, ``core.labels.annotations.training_labels``)."""
    onehot = F.one_hot(train_labels, len(classes)).float()
    targets = target_matrix(table, classes)
    if targets is None:
        return onehot
    soft = torch.as_tensor(targets[train_rows], dtype=torch.float32, device=onehot.device)
    edited = table["edited"].fillna(False).to_numpy(bool)[train_rows] if "edited" in table \
        else np.zeros(len(train_rows), bool)
    combined = table["combined"].fillna(False).to_numpy(bool)[train_rows] if "combined" in table \
        else np.zeros(len(train_rows), bool)
    keep = torch.as_tensor((~edited | combined) & np.isfinite(targets[train_rows]).all(1), device=onehot.device)
    return torch.where(keep[:, None], soft, onehot)


def _unsure_train_rows(ctx: _FitContext) -> np.ndarray:
    """(n_train,) bool: train rows the annotator marked unsure (they start with a high λ)."""
    if "unsure" not in ctx.table:
        return np.zeros(ctx.n_train, dtype=bool)
    return ctx.table["unsure"].iloc[ctx.train_rows].fillna(False).astype(bool).to_numpy()


def _resume_or_start(state: _State, ctx: _FitContext, resume: bool) -> None:
    """``resume``: restore the last checkpoint if there is one (it must match the dataset and
    method). Otherwise a fresh start: keep the previous training's λ (the parent version's,
    ``core.run.previous_lambda``) as ``lambda_prev`` and remove any checkpoints (``replace``)."""
    run_dir = ctx.run_dir
    if not resume:
        _load_pretrained(state, ctx)
        if not ctx.comm.is_main:
            return  # rank 0 alone reads and clears the run directory
        lam = previous_lambda(run_dir, ctx.table)
        state.lambda_prev = None if lam is None else torch.as_tensor(lam, device=ctx.device)
        remove_checkpoints(run_dir)
        return
    ckpt = load_checkpoint(run_dir)
    if ckpt is None:
        _load_pretrained(state, ctx)
        return
    if ckpt["train_ids"] != ctx.ids_digest or list(ckpt["classes"]) != ctx.classes:
        raise DatasetError(f"{run_dir}: cannot resume: the dataset's training samples or classes differ "
                           "from the checkpoint's (was the dataset changed?)")
    if ckpt["config"].get("method") != ctx.config.method:
        raise DatasetError(f"{run_dir}: cannot resume: the checkpoint was trained with "
                           f"--method {ckpt['config'].get('method')}, not {ctx.config.method}")
    state.restore(ckpt, ctx.device, ctx.scaler)


def _load_pretrained(state: _State, ctx: _FitContext) -> None:
    """A fresh start from ``config.pretrained`` (every rank alike): the backbone's weights
    replace the seeded initialisation; a mismatch or a failed download is a DatasetError."""
    if not ctx.config.pretrained:
        return
    try:
        load_pretrained(state.model, str(ctx.config.pretrained))
    except PretrainedError as exc:
        raise DatasetError(str(exc)) from None
    state.model.to(ctx.device)
    ctx.precision.prepare_model(state.model)


def _train_epoch(state: _State, ctx: _FitContext, epoch: int, warm: bool, cancel: Cancel,
                 clock: Callable[[], float], step_seconds: list[float]):
    """One epoch's batches (generator of Progress). Returns the epoch's totals; cancel is checked
    before every batch (``Cancelled`` carries the batch reached)."""
    config = ctx.config
    phase = ctx.phase(epoch)
    seed = _epoch_seed(config.seed, epoch)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(ctx.n_train, generator=generator)
    # Rank r augments its shard with its own draws; rank 0 (and a single process) with the
    # generator that drew the order, as always.
    augment_generator = generator if ctx.comm.rank == 0 else \
        torch.Generator().manual_seed(_epoch_seed(config.seed + 7919 * ctx.comm.rank, epoch))
    batches = _global_batches(order, config.batch_size, ctx.batches)
    local = [_local_shard(ctx.comm, idx) for idx in batches]
    images = iterate_batches(ctx.source, [ctx.train_rows[idx.numpy()] for idx in local], device=ctx.device,
                             workers=config.loader_workers)
    _train_mode(state.model, config)
    totals = _EpochTotals()
    epoch_start = time.perf_counter()
    total_steps = config.epochs * ctx.batches
    for b, (idx, batch) in enumerate(zip(batches, images)):
        if cancel_requested(cancel):
            raise Cancelled(f"in epoch {epoch} before batch {b + 1}", epoch, b, ctx.batches)
        t_batch = time.perf_counter()
        totals.lr = config.lr * 0.5 * (1.0 + math.cos(math.pi * state.step / max(total_steps, 1)))
        for group in state.optimizer.param_groups:
            group["lr"] = totals.lr * group.get("lr_mult", 1.0)
        totals.add(_train_step(state, ctx, idx.to(ctx.device), local[b].to(ctx.device), batch, augment_generator,
                               warm), len(local[b]))
        state.step += 1
        step_seconds.append(time.perf_counter() - t_batch)
        if (b + 1) % config.progress_every == 0 or b + 1 == ctx.batches:
            remaining = (config.epochs - epoch) * ctx.batches + (ctx.batches - b - 1)
            means = totals.means()
            yield Progress(phase, epoch, config.epochs, b + 1, ctx.batches, loss=means["loss"],
                           loss_ce=means["loss_ce"], loss_d=means["loss_d"], accuracy=means["accuracy"],
                           mean_lambda=_mean_lambda(state, config), seconds=clock(),
                           eta_seconds=float(np.mean(step_seconds[-50:])) * remaining)
    totals.seconds = time.perf_counter() - epoch_start
    return totals


def _global_batches(order: torch.Tensor, batch_size: int, batches: int) -> list[torch.Tensor]:
    """``order`` cut into ``batches`` batches of ``batch_size`` (the last takes what is left)."""
    cuts = [order[b * batch_size:(b + 1) * batch_size] for b in range(batches - 1)]
    return cuts + [order[(batches - 1) * batch_size:]]


def _local_shard(comm: Comm, idx: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous share of a global batch (``distributed.shard_bounds``)."""
    start, stop = shard_bounds(len(idx), comm.rank, comm.world_size)
    return idx[start:stop]


def _end_epoch(state: _State, ctx: _FitContext, epoch: int, warm: bool, totals: _EpochTotals,
               cancel: Cancel = None) -> dict:
    """After an epoch's batches: λ budget, evaluation pass, history row, training dynamics, the
    next epoch's neighbours, then the run's files and the checkpoint last. Returns the history row.

    Cancel is checked between the evaluation batches and once more when everything is computed;
    after that check only files are written (the epoch's, then the checkpoint), so a cancel
    leaves either the previous epoch or this one on disk, never a mix."""
    config = ctx.config
    state.epoch = epoch
    results = _evaluate_epoch(state, ctx, _checker(cancel, f"in epoch {epoch}'s evaluation pass", epoch,
                                                   ctx.batches))
    _update_lambda_after_epoch(state, ctx, results)
    means = _global_totals(ctx.comm, totals, ctx.device).means()
    row = {"epoch": epoch, "phase": ctx.phase(epoch), "loss": means["loss"], "loss_ce": means["loss_ce"],
           "loss_d": means["loss_d"], "train_accuracy": means["accuracy"],
           "mean_lambda": _mean_lambda(state, config), "lr": totals.lr,
           "delta": state.delta if state.delta is not None else float("nan"), "seconds": totals.seconds}
    split, labels = ctx.table["split"].to_numpy(), ctx.table["label"].to_numpy()
    for part in ("valid", "test"):
        mask = split == part
        row[f"{part}_accuracy"] = float((results["pred"][mask] == labels[mask]).mean()) if mask.any() \
            else float("nan")
    row["va_placement"] = ctx.va_provider
    if "va_pred" in results:
        row["loss_va"] = means["loss_va"]
        row.update(_va_history(ctx, results["va_pred"]))
    if ctx.comm.distributed:
        row["processes"] = ctx.comm.world_size
    state.history.append(row)
    scores = _epoch_scores(state, ctx, results, row) if ctx.comm.is_main else {}
    va, lambda_prev = _numpy(state.va), _numpy(state.lambda_prev)  # this epoch's (the refresh replaces state.va)
    if va is None and ctx.head_points is not None:  # before (or without) LDLVA's placement: the head's points
        va = np.clip(ctx.head_points, -1.0, 1.0)
    if epoch < config.epochs and _needs_refresh(state, config):
        # the next epoch's neighbours come from this epoch's model; written files keep the ones used
        _place_and_link(state, ctx, torch.as_tensor(results["probs"], device=ctx.device),
                        torch.as_tensor(results["features"], device=ctx.device))
    check = _checker(cancel, f"before writing epoch {epoch}'s files", epoch, ctx.batches)
    if check is not None:
        check()
    digests = ctx.comm.gather_objects(state_digest(state)) if ctx.comm.distributed else None
    if digests is not None and len(set(digests)) > 1:
        raise RuntimeError(f"epoch {epoch}: the ranks' training states differ (digests {digests}); "
                           "the run directory keeps the previous epoch")
    if not ctx.comm.is_main:
        return row
    # From here on: files only, the checkpoint last (core.run writes each one atomically).
    write_epoch_outputs(ctx.run_dir, ctx.table, config, ctx.train_rows, results, va=va,
                        lambda_prev=lambda_prev, history=state.history, scores=scores)
    if digests is not None:
        write_distributed_log(ctx.run_dir, epoch, ctx.comm.world_size, ctx.comm.backend, digests)
    save_checkpoint(ctx.run_dir, state.checkpoint(config, ctx.classes, ctx.ids_digest, ctx.scaler))
    return row


def _epoch_scores(state: _State, ctx: _FitContext, results: dict, row: dict) -> dict[str, np.ndarray]:
    """The per-sample evidence written with an epoch: training dynamics (updated here), neighbour
    disagreement, epoch-averaged p and the exported soft labels (their temperature goes to ``row``)."""
    state.dynamics.update(results["probs"], ctx.table["label"].to_numpy())
    soft, row["soft_temperature"] = _soft_labels(state, ctx, results)
    head = {} if "va_pred" not in results else \
        {PRED_COLUMNS[0]: results["va_pred"][:, 0], PRED_COLUMNS[1]: results["va_pred"][:, 1]}
    return {**state.dynamics.columns(), "knn_disagreement": results["knn_disagreement"],
            **_class_columns("pavg_", ctx.classes, state.dynamics.mean_probs()),
            **_class_columns("soft_", ctx.classes, soft), **head}


def _va_history(ctx: _FitContext, va_pred: np.ndarray) -> dict[str, float]:
    """The V-A head's errors on the valid split (``core.engine.va.va_errors``; the reference
    ``rmse_mean_*`` predicts the training rows' mean V-A), as ``valid_va_*`` history columns."""
    mask = ctx.table["split"].to_numpy() == "valid"
    if not mask.any() or "valence" not in ctx.table:
        return {}
    target = ctx.table[["valence", "arousal"]].to_numpy(np.float64)[mask]
    errors = va_errors(va_pred[mask], target, ctx.va_baseline)
    return {f"valid_va_{k}": v for k, v in errors.items() if k != "n"}


def _global_totals(comm: Comm, totals: _EpochTotals, device: torch.device) -> _EpochTotals:
    """The epoch's sums over every rank's shards (one process: ``totals`` itself)."""
    if not comm.distributed:
        return totals
    loss, loss_ce, loss_d, correct, seen, loss_va = comm.sum(
        [totals.loss, totals.loss_ce, totals.loss_d, totals.correct, totals.seen, totals.loss_va],
        device if device.type == "cuda" else None)
    return _EpochTotals(loss, loss_ce, loss_d, int(round(correct)), int(round(seen)), totals.lr, totals.seconds,
                        loss_va)


def state_digest(state: _State) -> str:
    """SHA-1 of the state every rank keeps a copy of: the model's parameters and buffers, λ, the
    memory bank, the class centres, λ's baseline and the neighbours. Equal on two ranks exactly
    when they are bit-identical; equal to ``checkpoint_digest`` of the checkpoint it is saved to."""
    return _digest(state.model.state_dict(), state.lambda_raw.data, state.bank_probs, state.bank_features,
                   state.centres, state.baseline, state.neighbor_index, state.similarity)


def checkpoint_digest(ckpt: dict) -> str:
    """``state_digest`` of the state a checkpoint holds."""
    return _digest(ckpt["model"], ckpt["lambda_raw"], ckpt["bank_probs"], ckpt["bank_features"], ckpt["centres"],
                   ckpt["baseline"], ckpt["neighbor_index"], ckpt["similarity"])


def _digest(model_state: dict, *tensors) -> str:
    return tensor_digest([t for _, t in sorted(model_state.items())] + list(tensors))


def _soft_labels(state: _State, ctx: _FitContext, results: dict) -> tuple[np.ndarray, float]:
    """The exported soft labels of every row (``core.soft_labels``) and the fitted temperature."""
    probs = results["probs"].astype(np.float64)
    constructed = probs / probs.sum(1, keepdims=True)
    constructed[ctx.train_rows] = results["d"]
    valid_rows = np.flatnonzero(ctx.table["split"].to_numpy() == "valid")
    prediction = probs / probs.sum(1, keepdims=True)
    return build_soft_labels(constructed, prediction, ctx.table["label"].to_numpy(np.int64), valid_rows,
                             mix_for(ctx.config.method, ctx.config.soft_label_mix))


def _class_columns(prefix: str, classes: list[str], values: np.ndarray) -> dict[str, np.ndarray]:
    return {f"{prefix}{c}": values[:, j] for j, c in enumerate(classes)}


def _numpy(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.cpu().numpy()


def _epoch_line(epoch: int, config: TrainConfig, row: dict) -> str:
    """The line an epoch ends with: no λ for plain cross-entropy (it has none), and no valid
    accuracy for a dataset without a valid split (instead of "nan")."""
    parts = [f"epoch {epoch}/{config.epochs}: loss {row['loss']:.4f}",
             f"train acc {row['train_accuracy']:.3f}"]
    valid = float(row["valid_accuracy"])
    parts.append("no valid split" if np.isnan(valid) else f"valid acc {valid:.3f}")
    if config.method != "ce":
        parts.append(f"mean λ {row['mean_lambda']:.3f}")
    if "valid_va_rmse_valence" in row:
        parts.append(f"valid V-A RMSE {row['valid_va_rmse_valence']:.3f}/{row['valid_va_rmse_arousal']:.3f}")
    return ", ".join(parts)


def _mean_lambda(state: _State, config: TrainConfig) -> float:
    if config.method == "ce":
        return 0.0
    return float(torch.sigmoid(state.lambda_raw.detach()).mean())


def _forward_rows(model: LDLNet, source: ImageSource, rows: np.ndarray, device, precision: Precision,
                  batch_size: int, check: Check = None, workers: int | None = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """No-grad forward of the table rows ``rows`` (un-augmented) → float32 probs (R, m), features
    (R, V). ``check()`` runs before every batch (it raises to stop)."""
    rows = np.asarray(rows, dtype=np.int64)
    chunks = [rows[start:start + batch_size] for start in range(0, len(rows), batch_size)]
    probs, feats = [], []
    with torch.no_grad():
        for batch in iterate_batches(source, chunks, device=device, workers=workers):
            if check is not None:
                check()
            x = precision.prepare_input(to_float(batch.to(device, non_blocking=True)))
            with precision.autocast():
                logits, v = model(x)
            probs.append(torch.softmax(logits.float(), -1))
            feats.append(v.float())
    if not probs:
        return torch.zeros(0, 0, device=device), torch.zeros(0, 0, device=device)
    return torch.cat(probs), torch.cat(feats)


def _forward_all(state: _State, ctx: _FitContext, check: Check = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode probs and features of every row of the table, on every rank: each rank forwards
    its contiguous share of the rows with rank 0's BatchNorm statistics, then the shares are
    gathered. The model is left in eval mode."""
    comm = ctx.comm
    comm.broadcast_buffers(state.model)
    state.model.eval()
    n = len(ctx.table)
    start, stop = shard_bounds(n, comm.rank, comm.world_size)
    probs, feats = _forward_rows(state.model, ctx.source, np.arange(start, stop), ctx.device, ctx.precision,
                                 ctx.config.eval_batch_size, check, ctx.config.loader_workers)
    if comm.distributed:
        counts = shard_counts(n, comm.world_size)
        if stop == start:  # an empty share still takes part in the gather with the right widths
            m, v = len(ctx.classes), state.model.feature_dim
            probs, feats = torch.zeros(0, m, device=ctx.device), torch.zeros(0, v, device=ctx.device)
        probs, feats = comm.gather_rows(probs, counts), comm.gather_rows(feats, counts)
    return probs, feats


# ----------------------------------------------------------------------------- LDLVA

def _prepare_ldlva(state: _State, ctx: _FitContext, check: Check = None) -> None:
    """After warm-up: V-A points, K neighbours, similarities, bank initialisation. ``check()``
    runs between the forward batches and before the neighbour search; a stop there leaves
    ``state`` without neighbours (the fit ends, nothing is written)."""
    probs, feats = _forward_all(state, ctx, check)
    if check is not None:
        check()
    _place_and_link(state, ctx, probs, feats)
    state.bank_probs = probs[ctx.train_rows_t].clone()
    state.bank_features = feats[ctx.train_rows_t].clone()
    # Centres start at the class means of the warm-up features.
    labels, device = ctx.train_labels, ctx.device
    counts = torch.zeros(state.centres.shape[0], device=device).index_add_(0, labels, torch.ones(len(labels), device=device))
    sums = torch.zeros_like(state.centres).index_add_(0, labels, state.bank_features)
    state.centres = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], state.centres)
    _train_mode(state.model, ctx.config)


def _place_and_link(state: _State, ctx: _FitContext, probs: torch.Tensor, feats: torch.Tensor) -> None:
    """V-A points of all rows, then K neighbours and s_ik of the train rows in the neighbour space:
    computed once, by rank 0, and broadcast to the other ranks."""
    placed = _placement(ctx, probs, feats) if ctx.comm.is_main else None
    va, index, s, delta, provider = ctx.comm.broadcast_object(placed)
    device = ctx.device
    state.va = torch.as_tensor(va, dtype=torch.float32, device=device)
    state.neighbor_index = torch.as_tensor(index, device=device)
    state.similarity = torch.as_tensor(s, dtype=torch.float32, device=device)
    state.delta, state.va_provider = delta, provider


def _placement(ctx: _FitContext, probs: torch.Tensor, feats: torch.Tensor) -> tuple:
    """(V-A points (N, 2), neighbour index (n_train, K), s_ik (n_train, K), δ, provider name)."""
    config, table = ctx.config, ctx.table
    device = probs.device
    provider = resolve_provider(config.va, table, centroids=config.va_centroids, temperature=config.va_temperature,
                                head_points=ctx.head_points, va_from=config.va_from)
    va = provider.points(table, probs.cpu().numpy().astype(np.float64))
    if config.neighbor_space == "features":
        # cosine geometry: on unit vectors the Euclidean distance is a monotone function of it
        unit = F.normalize(feats.float(), dim=1).cpu().numpy().astype(np.float64)
        points = unit[ctx.train_rows]
    else:
        points = va[ctx.train_rows]
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
    return va, index, s.float().cpu().numpy(), delta, provider.name


def _needs_refresh(state: _State, config: TrainConfig) -> bool:
    """Whether re-placing the samples can change the neighbours (they follow the model)."""
    if not config.neighbor_refresh or state.neighbor_index is None:
        return False
    return config.neighbor_space == "features" or state.va_provider == "circumplex"


def _train_step(state: _State, ctx: _FitContext, batch_idx: torch.Tensor, idx: torch.Tensor, images: torch.Tensor,
                generator: torch.Generator, warm: bool) -> dict:
    """One optimiser step on the global batch ``batch_idx`` (positions into the train rows), of
    which this rank forwards its shard ``idx`` (``_local_shard``; ``images``, uint8, in its order).

    The model's gradients are averaged over the ranks by DistributedDataParallel. λ, its
    baseline, the memory bank and the class centres are updated from the whole global batch on
    every rank alike: each rank's per-sample evidence, probabilities and features are gathered
    first, so the replicated state stays bit-identical across ranks (and equals one process's).
    """
    config, device, precision, comm = ctx.config, ctx.device, ctx.precision, ctx.comm
    y = ctx.train_labels[idx]
    batch = images.to(device, non_blocking=True)
    x = augment_batch(batch, generator, erase_p=config.erase_p, framing=ctx.framing) if config.augment \
        else to_float(batch)
    x = precision.prepare_input(x)
    loss_d = torch.zeros((), device=device)
    evidence = None
    with_va = ctx.va_head
    if warm:
        with precision.autocast():
            logits, feats, *va_out = state.net(x, with_va=with_va)
        logits, feats = logits.float(), feats.float()
        loss_ce = ldl.soft_cross_entropy(ctx.onehot_train[idx], _adjusted(logits, ctx))  # = CE(y) for one-hot labels
        loss = loss_ce
    else:
        lam = torch.sigmoid(state.lambda_raw[idx]).detach()
        nb = state.neighbor_index[idx]
        if config.neighbors == "bank":
            f_k, v_k = state.bank_probs[nb], state.bank_features[nb]
        else:
            b, k = nb.shape
            f_k, v_k = _forward_rows(state.model, ctx.source, ctx.train_rows[nb.reshape(-1).cpu().numpy()], device,
                                     precision, b * k)
            f_k, v_k = f_k.reshape(b, k, -1), v_k.reshape(b, k, -1)
        with precision.autocast():
            logits, feats, zeta, *va_out = state.net(x, v_k, with_va=with_va)
        logits, feats = logits.float(), feats.float()
        c = ldl.contribution_degrees(zeta.float(), state.similarity[idx])
        d_tilde = ldl.aggregate_distribution(c, f_k)
        target = ldl.target_distribution(ctx.onehot_train[idx], lam, d_tilde)
        loss_ce = ldl.soft_cross_entropy(target, _adjusted(logits, ctx))
        loss_d = ldl.discriminative_loss(feats, y, lam, state.centres, reduction="mean")
        loss = loss_ce + config.gamma * loss_d
        if experimental.per_batch(config):
            evidence = experimental.batch_evidence(config, d_tilde, ctx.onehot_train[idx], logits)
    loss_va = torch.zeros((), device=device)
    if with_va:
        loss_va = _va_loss(va_out[0], ctx.va_targets[idx])
        loss = loss + float(config.va_head_weight) * loss_va
    probs = torch.softmax(logits.detach(), -1)
    state.optimizer.zero_grad(set_to_none=True)
    scaler = ctx.scaler
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(state.optimizer)
        scaler.update()
    else:
        loss.backward()
        state.optimizer.step()
    if not warm:  # LDLVA after its warm-up (the placement pass then fills the bank)
        counts = shard_counts(len(batch_idx), comm.world_size)
        all_y = ctx.train_labels[batch_idx]
        all_feats = comm.gather_rows(feats.detach(), counts)
        if evidence is not None:
            evidence = comm.gather_rows(evidence, counts)
            _lambda_step(state, config, batch_idx, experimental.centred(state, config.lambda_baseline, all_y, evidence))
        with torch.no_grad():
            state.bank_probs[batch_idx] = comm.gather_rows(probs, counts)
            state.bank_features[batch_idx] = all_feats
            weights = 1.0 - torch.sigmoid(state.lambda_raw[batch_idx])
            state.centres = ldl.update_centres(state.centres, all_feats, all_y, weights, config.centre_alpha,
                                               config.centre_separation_lr)
    return {"loss": float(loss.detach()), "loss_ce": float(loss_ce.detach()), "loss_d": float(loss_d.detach()),
            "loss_va": float(loss_va.detach()), "correct": int((probs.argmax(-1) == y).sum())}


def _va_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the V-A head over the rows with a given V-A (both axes); 0, still
    connected to the head's graph, when the batch has none."""
    known = torch.isfinite(target).all(1, keepdim=True)
    diff = torch.where(known, pred.float() - torch.nan_to_num(target), torch.zeros_like(pred, dtype=torch.float32))
    return diff.pow(2).sum() / (2 * known.sum()).clamp_min(1)


def _adjusted(logits: torch.Tensor, ctx: _FitContext) -> torch.Tensor:
    """The logits the loss sees: with ``class_balance``, plus τ·log π (the model's p is not)."""
    return logits if ctx.logit_offsets is None else logits + ctx.logit_offsets


def _lambda_step(state: _State, config: TrainConfig, idx: torch.Tensor, evidence: torch.Tensor) -> None:
    """One SGD step of λ's own objective on the rows ``idx``: the centred evidence weighted by
    λ and summed, plus the prior ½β(raw − raw0)²."""
    raw = state.lambda_raw[idx]
    loss = (torch.sigmoid(raw) * evidence).sum() + \
        0.5 * config.lambda_prior * (raw - state.lambda_raw0[idx]).pow(2).sum()
    state.lambda_optimizer.zero_grad(set_to_none=True)
    loss.backward()
    state.lambda_optimizer.step()


def _update_lambda_after_epoch(state: _State, ctx: _FitContext, results: dict) -> None:
    """After an LDLVA epoch's evaluation pass (neighbours built, i.e. past the warm-up): λ's step
    on the pass's evidence (unless the experimental ``lambda_evidence="batch"``), then the
    budget; then, on rank 0, ``results``' λ and d = (1 − λ) l + λ d̃ from the updated λ.

    The evidence is ``ldl.lambda_evidence`` of the un-augmented, eval-mode pass (p of the sample
    and of its neighbours at one model state; by default Σ_j (l_ij − d̃_ij) p_ij), minus
    ``lambda_knn_weight`` × the row's neighbour disagreement (``core.dynamics.knn_disagreement``:
    the K nearest training samples in feature space, their labels and predictions), minus its
    mean over all train rows: the same objective as a batch step, on cleaner evidence and with an
    exact baseline. Rank 0 computes it and every rank applies the same step."""
    config = ctx.config
    if config.method != "ldlva" or state.neighbor_index is None:
        return
    if config.lambda_evidence != "batch":
        evidence = None
        if ctx.comm.is_main:
            log_probs = torch.log(results["train_probs"].clamp_min(1e-12))
            evidence = ldl.lambda_evidence(results["d_tilde"], ctx.onehot_train, log_probs,
                                           config.lambda_evidence_form).cpu().numpy()
            if config.lambda_knn_weight:
                disagreement = results["knn_disagreement"][ctx.train_rows]
                disagreement = np.nan_to_num(disagreement, nan=np.nanmean(disagreement))
                evidence = evidence - config.lambda_knn_weight * disagreement
        evidence = torch.as_tensor(ctx.comm.broadcast_object(evidence), device=ctx.device)
        all_rows = torch.arange(ctx.n_train, device=ctx.device)
        _lambda_step(state, config, all_rows, evidence - evidence.mean())
    if config.lambda_budget is not None:
        _apply_budget(state, config.lambda_budget)
    if ctx.comm.is_main:
        lam = torch.sigmoid(state.lambda_raw.detach())
        results["lambda"] = lam.cpu().numpy()
        results["d"] = ldl.target_distribution(ctx.onehot_train, lam, results["d_tilde"]).cpu().numpy()


@torch.no_grad()
def _apply_budget(state: _State, budget: float) -> None:
    """Shift every raw λ down by one constant until mean λ is ``budget`` (when it is above)."""
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


# ----------------------------------------------------------------------------- evaluation

@torch.no_grad()
def _evaluate_epoch(state: _State, ctx: _FitContext, check: Check = None) -> dict:
    """Eval-mode pass over all rows → p, features, knn_disagreement; for train rows: λ and d (ce,
    warm-up) or d̃, their p and the neighbour weights (LDLVA, whose λ and d
    ``_update_lambda_after_epoch`` writes after λ's step). ``check()`` runs between batches (it raises to stop; nothing is written here).
    Under torchrun every rank forwards its share; only rank 0 computes what is written alone
    (the other ranks get p, the features and the predictions)."""
    config, model = ctx.config, state.model
    probs, feats = _forward_all(state, ctx, check)
    if check is not None:
        check()
    onehot = ctx.onehot_train
    out: dict[str, Any] = {"probs": probs.cpu().numpy(), "features": feats.cpu().numpy(),
                           "pred": probs.argmax(-1).cpu().numpy()}
    if ctx.va_head:
        out["va_pred"] = model.va(feats).cpu().numpy().astype(np.float64)
    if not ctx.comm.is_main:
        _train_mode(model, config)
        return out
    out["knn_disagreement"] = knn_disagreement(feats, ctx.labels, probs, ctx.train_rows_t, config.k)
    if config.method == "ce":
        out["lambda"] = np.zeros(ctx.n_train, np.float64)
        out["d"] = onehot.cpu().numpy()
    elif state.neighbor_index is None:  # still warming up: λ at its initial value, d = the one-hot label
        out["lambda"] = torch.sigmoid(state.lambda_raw.detach()).cpu().numpy()
        out["d"] = onehot.cpu().numpy()
    else:
        train_probs, train_feats = probs[ctx.train_rows_t], feats[ctx.train_rows_t]
        zetas = []
        for start in range(0, ctx.n_train, config.eval_batch_size):
            if check is not None:
                check()
            sl = slice(start, start + config.eval_batch_size)
            nb = state.neighbor_index[sl]
            with ctx.precision.autocast():
                zetas.append(model.zeta(train_feats[sl], train_feats[nb]).float())
        zeta = torch.cat(zetas)
        c = ldl.contribution_degrees(zeta, state.similarity)
        d_tilde = ldl.aggregate_distribution(c, train_probs[state.neighbor_index])
        out["train_probs"], out["d_tilde"] = train_probs, d_tilde
        out["neighbors"] = {"indices": state.neighbor_index.cpu().numpy(),
                            "similarity": state.similarity.cpu().numpy(),
                            "zeta": zeta.cpu().numpy(), "contribution": c.cpu().numpy()}
    _train_mode(model, config)
    return out
