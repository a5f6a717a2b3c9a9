"""Networks of LDLVA: backbone, classifier head, calibration MLP g (docs/method.md, step 3).

nanoGPT style: modules and a config dataclass only; training lives in ``training.py``.
No torchvision: the ResNet blocks are written here.

- ``arch="compact"`` (default, sized for a laptop CPU): a 3×3 stem conv of ``width`` channels,
  ``stages`` stages of ``blocks`` BasicBlocks each (stage s has ``width·2^s`` channels, stride 2
  from the second stage), global average pooling → feature dimension V = ``width·2^(stages-1)``.
  Works for 48–112 px, grey (``in_channels=1``) or RGB (3).
- ``arch="resnet18"``: the ResNet-18 layout (7×7/2 stem + max pool, 4 stages of 2 BasicBlocks,
  64→512 channels, V = 512) for GPUs; for inputs ≤ 64 px the stem is a 3×3/1 conv without the
  max pool (the usual small-image variant), so 48 px faces keep a 6×6 final map.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

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
        elif config.arch == "resnet18":
            widths, blocks = [64, 128, 256, 512], [2, 2, 2, 2]
            if config.image_size <= 64:
                self.stem = nn.Sequential(
                    nn.Conv2d(config.in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
            else:
                self.stem = nn.Sequential(
                    nn.Conv2d(config.in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                    nn.MaxPool2d(3, 2, 1))
        else:
            raise ValueError(f"unknown arch {config.arch!r}; expected 'compact' or 'resnet18'")
        layers, cin = [], widths[0]
        for s, (cout, n) in enumerate(zip(widths, blocks)):
            for b in range(n):
                layers.append(BasicBlock(cin, cout, stride=2 if (s > 0 and b == 0) else 1))
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
    """Backbone + linear classifier + calibration MLP. ``forward`` → (logits, features[, ζ])."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.backbone = Backbone(config)
        self.feature_dim = self.backbone.feature_dim
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.head = nn.Linear(self.feature_dim, config.num_classes)
        self.calibration = CalibrationMLP(self.feature_dim, config.calib_hidden)

    def forward(self, x: torch.Tensor, neighbor_features: torch.Tensor | None = None):
        """(logits, features); with ``neighbor_features`` v_k (B, K, V) also ζ (B, K) of each
        sample's own (detached) features and its neighbours', so that one forward reaches every
        parameter used (DistributedDataParallel reduces the gradients of what its forward used)."""
        features = self.backbone(x)
        logits = self.head(self.dropout(features))
        if neighbor_features is None:
            return logits, features
        return logits, features, self.zeta(features.detach(), neighbor_features)

    def zeta(self, v_i: torch.Tensor, v_k: torch.Tensor) -> torch.Tensor:
        """Calibration ζ_ik = sigmoid(g([v_i, v_k])) in (0, 1), (B, K)."""
        return torch.sigmoid(self.calibration(v_i, v_k))


def build_model(config: ModelConfig) -> LDLNet:
    return LDLNet(config)
