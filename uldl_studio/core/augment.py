"""Batch augmentations in plain torch (no torchvision): flip, pad-crop, random erasing.

Every random draw comes from the ``torch.Generator`` passed in (a CPU generator; draws are
moved to the batch's device), so a seeded run is reproducible on CPU.
"""
from __future__ import annotations

import torch


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


def augment_batch(images: torch.Tensor, generator: torch.Generator, *, flip: bool = True, pad: int = 4,
                  erase_p: float = 0.25) -> torch.Tensor:
    """uint8 or float (B, C, H, W) → augmented, normalised float batch (see ``to_float``)."""
    x = to_float(images)
    if flip:
        x = random_flip(x, generator)
    x = random_pad_crop(x, generator, pad)
    return random_erasing(x, generator, erase_p)
