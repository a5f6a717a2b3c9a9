"""Batch augmentations in plain torch (no torchvision): flip, pad-crop, random erasing, and the
framing augmentations (``TrainConfig.framing``, off by default) that show a model trained on one
collection's crops the framings and photometry of others: scale, shift, rotate (one affine
resampling), gamma, contrast, blur and noise, each applied to an image with probability ½ at a
random strength within ``FRAMING_RANGES``.

Every random draw comes from the ``torch.Generator`` passed in (a CPU generator; draws are
moved to the batch's device), so a seeded run is reproducible on CPU.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: the framing augmentations, in the order they are applied
FRAMING = ("scale", "shift", "rotate", "gamma", "contrast", "blur", "noise")
#: their ranges: zoom factor (log-uniform), shift as a fraction of the side, degrees, gamma
#: (log-uniform), contrast factor, weight of a σ = 1 px Gaussian blur, noise standard deviation
FRAMING_RANGES = {"scale": (0.8, 1.25), "shift": (-0.1, 0.1), "rotate": (-15.0, 15.0), "gamma": (0.6, 1.6),
                  "contrast": (0.6, 1.4), "blur": (0.0, 1.0), "noise": (0.0, 0.06)}
FRAMING_P = 0.5


def parse_framing(text: str | None) -> tuple[str, ...]:
    """``""`` → (), ``"all"`` → FRAMING, ``"scale,gamma"`` → ("scale", "gamma"); ValueError on
    an unknown name."""
    if not text:
        return ()
    names = [t.strip() for t in str(text).split(",") if t.strip()]
    if names == ["all"]:
        return FRAMING
    unknown = [t for t in names if t not in FRAMING]
    if unknown:
        raise ValueError(f"framing={text!r}: unknown {', '.join(unknown)}; expected 'all' or a comma list of "
                         f"{', '.join(FRAMING)}")
    return tuple(t for t in FRAMING if t in names)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) in 0..255 → float in [0, 1], normalised to roughly zero mean."""
    if images.dtype == torch.uint8:
        images = images.float().div_(255.0)
    return (images - 0.5) / 0.25


def random_flip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    flip = (torch.rand(x.shape[0], generator=generator) < p).to(x.device)
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def random_pad_crop(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Zero-pad by ``pad`` pixels and crop back to the original size at a random offset."""
    if pad <= 0:
        return x
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))          # (B, H)
    cols = (ox[:, None] + torch.arange(w, device=x.device))          # (B, W)
    bi = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    ci = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[bi, ci, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]


def random_erasing(x: torch.Tensor, generator: torch.Generator, p: float = 0.25,
                   area: tuple[float, float] = (0.02, 0.2), aspect: tuple[float, float] = (0.3, 3.3),
                   value: float = 0.0) -> torch.Tensor:
    """Zhong et al. (2020): with probability ``p`` blank one random rectangle per image."""
    if p <= 0:
        return x
    b, _, h, w = x.shape
    apply = torch.rand(b, generator=generator) < p
    frac = area[0] + (area[1] - area[0]) * torch.rand(b, generator=generator)
    log_r = torch.log(torch.tensor(aspect[0])) + torch.rand(b, generator=generator) * \
        (torch.log(torch.tensor(aspect[1])) - torch.log(torch.tensor(aspect[0])))
    ratio = torch.exp(log_r)
    eh = (torch.sqrt(frac * h * w * ratio)).round().clamp(1, h).long()
    ew = (torch.sqrt(frac * h * w / ratio)).round().clamp(1, w).long()
    y0 = (torch.rand(b, generator=generator) * (h - eh + 1).float()).long()
    x0 = (torch.rand(b, generator=generator) * (w - ew + 1).float()).long()
    ys = torch.arange(h).view(1, h, 1)
    xs = torch.arange(w).view(1, 1, w)
    mask = (ys >= y0.view(b, 1, 1)) & (ys < (y0 + eh).view(b, 1, 1)) & \
           (xs >= x0.view(b, 1, 1)) & (xs < (x0 + ew).view(b, 1, 1)) & apply.view(b, 1, 1)
    mask = mask.unsqueeze(1).to(x.device)
    return x.masked_fill(mask, value)


def _uniform(generator: torch.Generator, b: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(b, generator=generator)


def random_framing(x: torch.Tensor, generator: torch.Generator, names: tuple[str, ...],
                   p: float = FRAMING_P) -> torch.Tensor:
    """Float (B, C, H, W) in [0, 1] → the framing augmentations ``names`` (see ``FRAMING``),
    each applied to an image with probability ``p``; the result is clipped to [0, 1]."""
    b = x.shape[0]
    device = x.device

    def draw(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = FRAMING_RANGES[name]
        on = torch.rand(b, generator=generator) < p
        if name in ("scale", "gamma"):
            value = torch.exp(_uniform(generator, b, math.log(low), math.log(high)))
        else:
            value = _uniform(generator, b, low, high)
        return on, value

    geometric = [n for n in names if n in ("scale", "shift", "rotate")]
    if geometric:
        scale = torch.ones(b)
        tx, ty, angle = torch.zeros(b), torch.zeros(b), torch.zeros(b)
        for name in geometric:
            on, value = draw(name)
            if name == "scale":
                scale = torch.where(on, value, scale)
            elif name == "shift":
                _, other = draw(name)
                tx, ty = torch.where(on, 2 * value, tx), torch.where(on, 2 * other, ty)
            else:
                angle = torch.where(on, value * math.pi / 180.0, angle)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale   # output → input coordinates
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta.to(device, x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    for name in names:
        if name in geometric:
            continue
        on, value = draw(name)
        on = on.to(device).view(b, 1, 1, 1)
        value = value.to(device, x.dtype).view(b, 1, 1, 1)
        if name == "gamma":
            changed = x.clamp_min(1e-6) ** value
        elif name == "contrast":
            mean = x.mean((1, 2, 3), keepdim=True)
            changed = (x - mean) * value + mean
        elif name == "blur":
            kernel = torch.tensor([0.27407, 0.45186, 0.27407], device=device, dtype=x.dtype)  # σ = 1 px
            c = x.shape[1]
            k2 = (kernel[:, None] * kernel[None, :]).expand(c, 1, 3, 3)
            blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k2, groups=c)
            changed = (1 - value) * x + value * blurred
        else:  # noise
            noise = torch.randn(x.shape, generator=generator).to(device, x.dtype)
            changed = x + value * noise
        x = torch.where(on, changed, x)
    return x.clamp(0.0, 1.0)


def augment_batch(images: torch.Tensor, generator: torch.Generator, *, flip: bool = True, pad: int = 4,
                  erase_p: float = 0.25, framing: tuple[str, ...] = ()) -> torch.Tensor:
    """uint8 or float (B, C, H, W) → augmented, normalised float batch (see ``to_float``);
    ``framing``: the framing augmentations, applied first (none by default)."""
    if framing:
        x01 = images.float().div(255.0) if images.dtype == torch.uint8 else images
        x = to_float(random_framing(x01, generator, framing))
    else:
        x = to_float(images)
    if flip:
        x = random_flip(x, generator)
    x = random_pad_crop(x, generator, pad)
    return random_erasing(x, generator, erase_p)
