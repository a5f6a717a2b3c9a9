"""What a training run is asked to do: ``TrainConfig``, its choices and validation, and the device.

``TrainConfig`` is JSON-safe (``to_dict``/``from_dict``) and is stored in RUN/config.json and
in every checkpoint (``core.engine.run``). A bad value raises ``ConfigError``. What the options
do is in ``docs/method.md``.

Stored options carry ``format_version`` (``FORMAT_VERSION``). ``from_dict`` migrates what an
older version wrote, one format at a time (``_MIGRATIONS``), so that a run resumes and retrains
with the behaviour it was trained with:

* format 1 (no ``format_version``): written before options had a format. Options added after a
  run was written are missing from its config and meant the behaviour from before they existed
  (``FORMAT_1_MISSING``): fixed neighbours, λ's per-batch evidence in the loss-derivative form
  without neighbour disagreement.
* format 2: every option is written. An option missing from a format-2 config takes its default,
  except ``va_head_weight``: a config written before the V-A head existed trained none, and
  loads with 0 (``FORMAT_2_MISSING``).

Options that were removed (``REMOVED``) are dropped on load; a value other than the one the
code now behaves as is reported in one warning.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field, fields

import torch

from uldl_studio.core.labels.ldl import PUBLISHED_L1_SCALE
from uldl_studio.core.engine.augment import parse_framing
from uldl_studio.core.engine.model import ModelConfig
from uldl_studio.core.table import DatasetError

METHODS = ("ldlva", "ce")
NEIGHBOR_MODES = ("bank", "exact")
VA_MODES = ("auto", "columns", "circumplex", "head")
SIMILARITIES = ("l2", "l1")
NEIGHBOR_SPACES = ("va", "features")
LAMBDA_BASELINES = ("class", "global", "none")
LAMBDA_EVIDENCE = ("batch", "epoch", "both")
LAMBDA_EVIDENCE_FORMS = ("ce", "prob")
DEVICES = ("auto", "cpu", "cuda")
ARCHS = ("compact", "resnet18", "resnet50")
CLASS_BALANCE = ("none", "logit_adjust")
FORMAT_VERSION = 2
# Format 1: the options a config could lack, and the behaviour it then had.
FORMAT_1_MISSING = {"neighbor_refresh": False, "lambda_evidence": "batch", "lambda_knn_weight": 0.0,
                    "lambda_evidence_form": "ce"}
# Format 2: options whose default is not what a config written before them did.
FORMAT_2_MISSING = {"va_head_weight": 0.0}
# Removed options: {name: (the value the code behaves as now, why it went)}.
REMOVED = {
    "bank_momentum": (0.0, "the memory bank holds each sample's latest prediction; an averaged bank "
                           "measured no better (bench/RESULTS_ferplus.md, λ's evidence)"),
}


class ConfigError(TypeError, ValueError):
    """A bad TrainConfig value (a TypeError too, so ``--set`` errors are reported as such)."""


@dataclass
class TrainConfig:
    format_version: int = FORMAT_VERSION  # of the stored options (module docstring)
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
    image_cache: bool = True              # read images from the decoded-image cache on disk (False: decode into RAM)
    loader_workers: int | None = None     # DataLoader worker processes (None: 0 on CPU, up to 4 on CUDA)
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
    # framing augmentations (core.augment.FRAMING; with augment on): "" (off), "all", or a comma list of
    # scale, shift, rotate, gamma, contrast, blur, noise
    framing: str = ""
    # pretrained backbone (core.model.load_pretrained): a state-dict file (torchvision ResNet
    # keys or this model's own), or "imagenet" for torchvision's ImageNet weights (downloaded)
    pretrained: str | None = None
    imagenet_stem: bool | None = None     # 7×7/2 stem + max pool; None: when image_size > 64
    backbone_lr_mult: float = 1.0         # the backbone's learning rate relative to lr (fine-tuning)
    freeze_bn: bool = False               # keep the backbone's BatchNorm statistics and affine fixed
    # imbalanced classes (Menon et al. 2021): logit_adjust trains on logits + τ·log π (π: the
    # training label frequencies); the model's p is then balanced by τ (τ = 1: balanced softmax)
    class_balance: str = "none"           # none | logit_adjust
    class_balance_tau: float = 1.0
    # LDLVA
    neighbors: str = "bank"               # bank | exact
    va: str = "auto"                      # auto | columns | circumplex | head (another run's V-A head: va_from)
    va_from: str | None = None            # va=head: the run whose V-A head places the samples
    va_temperature: float = 1.0           # circumplex: sharpen warm-up probabilities (T < 1)
    va_centroids: dict | None = None      # override core.classes.VA_CENTROIDS entries
    k: int = 8                            # neighbours: LDLVA's, and knn_disagreement's
    neighbor_space: str = "va"            # va (valence-arousal points) | features (cosine, backbone features)
    neighbor_refresh: bool = True         # re-place samples and rebuild neighbours after every epoch
    similarity: str = "l2"                # l2 | l1 (published)
    delta: float | None = None            # l2 scale δ; None: median V-A distance to the K neighbours
    l1_scale: float = PUBLISHED_L1_SCALE
    gamma: float = 0.01                   # weight of L_D
    centre_alpha: float = 0.5             # center-loss update rate
    centre_separation_lr: float = 0.01    # gradient step of the centre separation term
    warmup_epochs: int = 1                # CE epochs before LDLVA (capped at epochs - 1)
    # V-A regression head (2 outputs, tanh, on the backbone features), trained when the training
    # rows have finite valence and arousal: weight of its MSE in the loss; 0: no head
    va_head_weight: float = 0.1
    # λ (docs/method.md, "Why λ has its own objective"; defaults chosen on FER+,
    # bench/RESULTS_ferplus.md "Defaults of the training loop")
    lambda_init: float = 0.2
    lambda_unsure_init: float = 0.8       # rows with unsure == True
    lambda_lr: float = 3.0
    lambda_prior: float = 0.3             # β of ½β(raw - raw0)²: λ's memory of earlier epochs' evidence
    lambda_budget: float | None = None    # cap on mean λ after each epoch
    lambda_evidence_form: str = "prob"    # prob: Σ (l − d̃) f | ce: CE(d̃, f) − CE(l, f) (core.ldl.lambda_evidence)
    lambda_knn_weight: float = 2.0        # minus this × neighbour disagreement (centred)
    # experimental (core.engine.experimental): measured and not chosen, kept for the runs trained with them
    lambda_evidence: str = "epoch"        # epoch (evaluation pass) | batch (augmented training forward) | both
    lambda_baseline: str = "global"       # global | class | none: the running mean of the per-batch evidence
    # exported soft labels (core.soft_labels): weight of the calibrated prediction; None: per method
    soft_label_mix: float | None = None

    def __post_init__(self) -> None:
        if self.format_version != FORMAT_VERSION:
            raise ConfigError(f"format_version={self.format_version!r}: options are written in format "
                              f"{FORMAT_VERSION}; TrainConfig.from_dict reads older ones")
        choices = {"method": METHODS, "neighbors": NEIGHBOR_MODES, "va": VA_MODES,
                   "similarity": SIMILARITIES, "device": DEVICES, "neighbor_space": NEIGHBOR_SPACES,
                   "arch": ARCHS, "lambda_baseline": LAMBDA_BASELINES, "lambda_evidence": LAMBDA_EVIDENCE,
                   "lambda_evidence_form": LAMBDA_EVIDENCE_FORMS, "class_balance": CLASS_BALANCE}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r}: expected one of {', '.join(allowed)}")
        for name in ("epochs", "batch_size", "image_size", "width", "stages", "blocks", "progress_every",
                     "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {self.channels}")
        if self.loader_workers is not None and int(self.loader_workers) < 0:
            raise ConfigError(f"loader_workers must be >= 0 or null (auto), got {self.loader_workers}")
        if self.k < 1:
            raise ConfigError(f"k must be >= 1, got {self.k}")
        for name in ("lambda_init", "lambda_unsure_init"):
            if not 0.0 < float(getattr(self, name)) < 1.0:
                raise ConfigError(f"{name} must be strictly between 0 and 1, got {getattr(self, name)}")
        if self.lambda_budget is not None and not 0.0 < self.lambda_budget < 1.0:
            raise ConfigError(f"lambda_budget must be in (0, 1) or null, got {self.lambda_budget}")
        if self.soft_label_mix is not None and not 0.0 <= float(self.soft_label_mix) <= 1.0:
            raise ConfigError(f"soft_label_mix must be in [0, 1], got {self.soft_label_mix}")
        if float(self.lambda_knn_weight) < 0:
            raise ConfigError(f"lambda_knn_weight must be >= 0, got {self.lambda_knn_weight}")
        if not 0.0 <= float(self.va_head_weight) <= 100.0:
            raise ConfigError(f"va_head_weight must be in [0, 100], got {self.va_head_weight}")
        if self.va == "head" and not self.va_from:
            raise ConfigError("va=head needs va_from: the run whose V-A head places the samples (--va-from RUN)")
        if self.va_from and self.va != "head":
            raise ConfigError(f"va_from={self.va_from!r} is used by va=head only, not va={self.va!r}")
        if self.delta is not None and self.delta <= 0:
            raise ConfigError(f"delta must be > 0 or null (auto), got {self.delta}")
        if self.warmup_epochs < 0:
            raise ConfigError("warmup_epochs must be >= 0")
        if not 0.0 <= float(self.class_balance_tau) <= 3.0:
            raise ConfigError(f"class_balance_tau must be in [0, 3], got {self.class_balance_tau}")
        if not 0.0 <= float(self.backbone_lr_mult) <= 10.0:
            raise ConfigError(f"backbone_lr_mult must be in [0, 10], got {self.backbone_lr_mult}")
        try:
            parse_framing(self.framing)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.calib_hidden = [int(h) for h in self.calib_hidden]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """The options ``data`` (a stored ``to_dict``) meant, migrated to this format."""
        data = migrate(data)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            warnings.warn(f"ignoring unknown training options {unknown} (written by another version?)")
        return cls(**{k: v for k, v in data.items() if k in known})

    def model_config(self, num_classes: int, va_head: bool = False) -> ModelConfig:
        """The network; ``va_head``: with the V-A head (``fit`` adds it when the training rows
        have V-A and ``va_head_weight`` > 0; a checkpoint's model says so by its ``va_head.*``)."""
        return ModelConfig(num_classes=num_classes, in_channels=self.channels, image_size=self.image_size,
                           arch=self.arch, width=self.width, stages=self.stages, blocks=self.blocks,
                           calib_hidden=list(self.calib_hidden), imagenet_stem=self.imagenet_stem,
                           va_head=bool(va_head))


def migrate(data: dict) -> dict:
    """``data`` (stored options of any format) in this format: each older format's migration
    in turn, then the removed options dropped (with one warning for those that asked for
    something else than what the code does now). ConfigError for a newer format."""
    data = dict(data)
    version = int(data.get("format_version", 1))
    if version > FORMAT_VERSION:
        raise ConfigError(f"training options of format {version}, written by a newer version of ULDL Studio; "
                          f"this version reads formats 1 to {FORMAT_VERSION}")
    for step in range(version, FORMAT_VERSION):
        data = _MIGRATIONS[step](data)
    data = {**FORMAT_2_MISSING, **data}
    changed = []
    for name, (kept, why) in REMOVED.items():
        if name in data and data.pop(name) != kept:
            changed.append(f"{name} (now {kept!r}: {why})")
    if changed:
        warnings.warn(f"removed training options ignored: {'; '.join(changed)}")
    return data


def _format_1_to_2(data: dict) -> dict:
    """Format 1 → 2: the options the config lacks, as they behaved before they existed."""
    return {**FORMAT_1_MISSING, **data, "format_version": 2}


_MIGRATIONS = {1: _format_1_to_2}


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when PyTorch sees a GPU, else CPU; ``cuda`` without a GPU → DatasetError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DatasetError("--device cuda: no CUDA GPU is available to PyTorch on this machine")
    return torch.device(name)
