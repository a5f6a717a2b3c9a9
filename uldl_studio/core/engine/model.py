"""Networks of LDLVA: backbone, classifier head, calibration MLP g (docs/method.md, step 3).

nanoGPT style: modules and a config dataclass only; training lives in ``training.py``.
No torchvision: the ResNet blocks are written here.

- ``arch="compact"`` (default, sized for a laptop CPU): a 3×3 stem conv of ``width`` channels,
  ``stages`` stages of ``blocks`` BasicBlocks each (stage s has ``width·2^s`` channels, stride 2
  from the second stage), global average pooling → feature dimension V = ``width·2^(stages-1)``.
  Works for 48–112 px, grey (``in_channels=1``) or RGB (3).
- ``arch="resnet18"``: the ResNet-18 layout (7×7/2 stem + max pool, 4 stages of 2 BasicBlocks,
  64→512 channels, V = 512) for GPUs; for inputs ≤ 64 px the stem is a 3×3/1 conv without the
  max pool (the usual small-image variant), so 48 px faces keep a 6×6 final map
  (``imagenet_stem`` forces either stem).
- ``arch="resnet50"``: the ResNet-50 layout (torchvision's v1.5 Bottleneck blocks, stride on the
  3×3 conv; 3, 4, 6, 3 blocks; V = 2048), same stems.

Pretrained weights (:func:`load_pretrained`): the ResNets hold the same tensors as torchvision's
``resnet18``/``resnet50`` under other names, so a torchvision state dict is loaded by mapping
its keys (``conv1``/``bn1`` → ``stem.0``/``stem.1``, ``layerS.B.*`` → ``layers.K.*``,
``downsample`` → ``shortcut``; ``fc`` is left out: the head has the run's classes). The
ImageNet weights need the 7×7 stem, i.e. inputs above 64 px or ``imagenet_stem=True``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ModelConfig:
    num_classes: int = 7
    in_channels: int = 1
    image_size: int = 48
    arch: str = "compact"          # compact | resnet18
    width: int = 16
    stages: int = 3
    blocks: int = 2                # BasicBlocks per stage (compact)
    calib_hidden: list[int] = field(default_factory=lambda: [512, 256])
    dropout: float = 0.0
    imagenet_stem: bool | None = None  # resnets: 7×7/2 stem + max pool (None: when image_size > 64)
    va_head: bool = False          # a valence-arousal regression head (2 outputs, tanh) on the features

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class Bottleneck(nn.Module):
    """torchvision's ResNet-50 block (v1.5: the stride on the 3×3 conv), expansion 4."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x), inplace=True)


RESNET_BLOCKS = {"resnet18": (BasicBlock, [2, 2, 2, 2]), "resnet50": (Bottleneck, [3, 4, 6, 3])}


class Backbone(nn.Module):
    """Images (B, C, H, W) float → features (B, V)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.arch == "compact":
            widths = [config.width * 2 ** s for s in range(config.stages)]
            blocks = [config.blocks] * config.stages
            self.stem = nn.Sequential(
                nn.Conv2d(config.in_channels, widths[0], 3, 1, 1, bias=False),
                nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
            block = BasicBlock
        elif config.arch in RESNET_BLOCKS:
            block, blocks = RESNET_BLOCKS[config.arch]
            widths = [64, 128, 256, 512]
            imagenet_stem = config.image_size > 64 if config.imagenet_stem is None else bool(config.imagenet_stem)
            if not imagenet_stem:
                self.stem = nn.Sequential(
                    nn.Conv2d(config.in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
            else:
                self.stem = nn.Sequential(
                    nn.Conv2d(config.in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                    nn.MaxPool2d(3, 2, 1))
        else:
            raise ValueError(f"unknown arch {config.arch!r}; expected 'compact', 'resnet18' or 'resnet50'")
        layers, cin = [], 64 if config.arch in RESNET_BLOCKS else widths[0]
        self.stage_starts = []
        for s, (cout, n) in enumerate(zip(widths, blocks)):
            self.stage_starts.append(len(layers))
            for b in range(n):
                stride = 2 if (s > 0 and b == 0) else 1
                if block is Bottleneck:
                    layers.append(Bottleneck(cin, cout, stride))
                    cin = cout * Bottleneck.expansion
                else:
                    layers.append(BasicBlock(cin, cout, stride))
                    cin = cout
        self.layers = nn.Sequential(*layers)
        self.feature_dim = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class CalibrationMLP(nn.Module):
    """g([v_i, v_k]) → logit of ζ_ik. Published: 2V → 512 → 256 → 1, BatchNorm + ReLU."""

    def __init__(self, feature_dim: int, hidden: list[int] | tuple[int, ...] = (512, 256)):
        super().__init__()
        layers, cin = [], 2 * feature_dim
        for h in hidden:
            layers += [nn.Linear(cin, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True)]
            cin = h
        layers.append(nn.Linear(cin, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, v_i: torch.Tensor, v_k: torch.Tensor) -> torch.Tensor:
        """v_i (B, V), v_k (B, K, V) → ζ logits (B, K)."""
        b, k, v = v_k.shape
        pairs = torch.cat([v_i.unsqueeze(1).expand(b, k, v), v_k], dim=-1).reshape(b * k, 2 * v)
        return self.net(pairs).reshape(b, k)


class LDLNet(nn.Module):
    """Backbone + linear classifier + calibration MLP (+ the optional V-A head).
    ``forward`` → (logits, features[, ζ][, V-A])."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.backbone = Backbone(config)
        self.feature_dim = self.backbone.feature_dim
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.head = nn.Linear(self.feature_dim, config.num_classes)
        self.calibration = CalibrationMLP(self.feature_dim, config.calib_hidden)
        self.va_head = nn.Linear(self.feature_dim, 2) if config.va_head else None

    def forward(self, x: torch.Tensor, neighbor_features: torch.Tensor | None = None, with_va: bool = False):
        """(logits, features); with ``neighbor_features`` v_k (B, K, V) also ζ (B, K) of each
        sample's own (detached) features and its neighbours', so that one forward reaches every
        parameter used (DistributedDataParallel reduces the gradients of what its forward used);
        with ``with_va`` (a model with a V-A head) the head's (B, 2) points last."""
        features = self.backbone(x)
        logits = self.head(self.dropout(features))
        out = (logits, features)
        if neighbor_features is not None:
            out += (self.zeta(features.detach(), neighbor_features),)
        if with_va:
            out += (self.va(features),)
        return out

    def va(self, features: torch.Tensor) -> torch.Tensor:
        """The V-A head's points tanh(W v + b) in (-1, 1)², (B, 2), computed in float32 from the
        features (so the training pass, the evaluation pass and a prediction agree)."""
        if self.va_head is None:
            raise ValueError("this model has no valence-arousal head")
        with torch.autocast(features.device.type, enabled=False):
            return torch.tanh(F.linear(features.float(), self.va_head.weight.float(), self.va_head.bias.float()))

    def zeta(self, v_i: torch.Tensor, v_k: torch.Tensor) -> torch.Tensor:
        """Calibration ζ_ik = sigmoid(g([v_i, v_k])) in (0, 1), (B, K)."""
        return torch.sigmoid(self.calibration(v_i, v_k))


def build_model(config: ModelConfig) -> LDLNet:
    return LDLNet(config)


# ----------------------------------------------------------------------------- pretrained weights
#: torchvision's ImageNet weights (IMAGENET1K_V1), fetched by ``pretrained="imagenet"`` into
#: torch.hub's cache ($TORCH_HOME/hub/checkpoints, where torchvision keeps them too)
IMAGENET_URLS = {"resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
                 "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth"}


class PretrainedError(ValueError):
    """Weights that cannot be read, fetched or loaded into the backbone."""


def _torchvision_key(key: str, stage_starts: list[int]) -> str | None:
    """A torchvision ResNet key → this Backbone's key (None: not part of the backbone)."""
    parts = key.split(".")
    if parts[0] in ("conv1", "bn1"):
        return ".".join(["stem", "0" if parts[0] == "conv1" else "1", *parts[1:]])
    if parts[0].startswith("layer") and len(parts) > 2 and parts[0][5:].isdigit():
        stage = int(parts[0][5:]) - 1
        if stage >= len(stage_starts):
            return None
        rest = ["shortcut" if p == "downsample" else p for p in parts[2:]]
        return ".".join(["layers", str(stage_starts[stage] + int(parts[1])), *rest])
    return None


def read_weights(source: str) -> dict:
    """The state dict of ``source``: a file (a state dict, or a dict holding one under
    ``state_dict`` or ``model``, e.g. a run's checkpoint.pt), or ``imagenet:<arch>`` for
    torchvision's ImageNet weights (downloaded once into torch.hub's cache)."""
    if source.startswith("imagenet:"):
        arch = source.split(":", 1)[1]
        if arch not in IMAGENET_URLS:
            raise PretrainedError(f"pretrained=imagenet: no ImageNet weights for arch {arch!r}; "
                                  f"they exist for {', '.join(IMAGENET_URLS)}")
        url = IMAGENET_URLS[arch]
        try:
            return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, check_hash=True)
        except Exception as exc:  # noqa: BLE001 - offline, proxy, disk: one message
            cache = Path(torch.hub.get_dir()) / "checkpoints"
            raise PretrainedError(
                f"pretrained=imagenet: cannot download {url} ({type(exc).__name__}: {exc}); on a machine without "
                f"internet, copy that file into {cache} or pass its path: --set pretrained=FILE.pth") from None
    path = Path(source).expanduser()
    if not path.is_file():
        raise PretrainedError(f"{path}: no such weights file (pretrained=FILE, or pretrained=imagenet)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line
        raise PretrainedError(f"{path}: not a PyTorch weights file ({type(exc).__name__}: {exc})") from None
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise PretrainedError(f"{path}: holds no state dict of tensors")
    return data


def load_pretrained(model: "LDLNet", source: str, *, name: str | None = None) -> dict:
    """Copy a backbone's weights from ``source`` (see :func:`read_weights`; ``"imagenet"`` means
    the arch's ImageNet weights) into ``model.backbone``. Keys may be torchvision's, this
    model's (``backbone.*``) or a bare Backbone's. RGB stem weights load into a grey model summed
    over the colour channels. Every backbone tensor must be found with its shape, else
    PretrainedError names the first few that are missing or differ. Returns
    ``{"loaded": n, "ignored": [keys not used]}``."""
    label = name or source
    if source == "imagenet":
        source = f"imagenet:{model.config.arch}"
    state = read_weights(source)
    backbone = model.backbone
    own = backbone.state_dict()
    mapped, ignored = {}, []
    torchvision = any(k.startswith(("conv1.", "layer1.")) for k in state)
    for key, value in state.items():
        if torchvision:
            target = _torchvision_key(key, getattr(backbone, "stage_starts", []))
        elif key.startswith("backbone."):
            target = key[len("backbone."):]
        else:
            target = key
        if target is None or target not in own:
            ignored.append(key)
            continue
        if target == "stem.0.weight" and value.ndim == 4 and value.shape[1] == 3 and own[target].shape[1] == 1:
            value = value.sum(1, keepdim=True)  # RGB filters on grey input: the sum sees grey as R = G = B
        mapped[target] = value
    missing = [k for k in own if k not in mapped and not k.endswith("num_batches_tracked")]
    wrong = [f"{k} {tuple(mapped[k].shape)} vs {tuple(own[k].shape)}" for k in mapped
             if mapped[k].shape != own[k].shape]
    if missing or wrong:
        arch = model.config.arch
        hint = ""
        if any(k.startswith("stem.0") for k in [w.split(" ")[0] for w in wrong]):
            hint = " (ImageNet weights need the 7×7 stem: --set image_size=112 or --set imagenet_stem=true)"
        detail = "; ".join(([f"{len(wrong)} differ in shape, e.g. {', '.join(wrong[:3])}"] if wrong else []) +
                           ([f"{len(missing)} missing, e.g. {', '.join(missing[:3])}"] if missing else []))
        raise PretrainedError(f"{label}: the weights do not match the {arch} backbone: {detail}{hint}")
    for key in own:
        if key.endswith("num_batches_tracked") and key not in mapped:
            mapped[key] = own[key]
    backbone.load_state_dict(mapped)
    return {"loaded": len(mapped), "ignored": ignored}
