"""Batches of decoded images for training and evaluation, read through a torch ``DataLoader``.

A training run reads its images from an *image source*: ``ArrayImages`` (a uint8 tensor held in
memory, on the CPU or on the GPU) or ``core.image_cache.CachedImages`` (the decoded-image cache
on disk). Both answer ``read(rows) → uint8 (len(rows), C, H, W)``.

``iterate_batches(source, batches)`` yields the images of each array of row positions in
``batches``, in order. From the disk cache it reads through a ``DataLoader`` whose dataset is
indexed by batch number (automatic batching off, so one worker reads one whole batch with
coalesced reads), with worker processes and pinned memory on CUDA: peak memory is a few batches,
whatever the dataset's size. An in-memory source is indexed directly (a loader would only copy).
"""
from __future__ import annotations

import os
from typing import Iterator, Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


class ImageSource(Protocol):
    shape: tuple[int, ...]

    def __len__(self) -> int: ...

    def read(self, rows) -> np.ndarray | torch.Tensor: ...


class ArrayImages:
    """A uint8 (N, C, H, W) tensor in memory as an image source (rows stay on its device)."""

    def __init__(self, images: np.ndarray | torch.Tensor):
        tensor = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
        if tensor.dtype != torch.uint8 or tensor.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {tuple(tensor.shape)} {tensor.dtype}")
        self.images = tensor

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __len__(self) -> int:
        return len(self.images)

    def read(self, rows) -> torch.Tensor:
        index = torch.as_tensor(np.asarray(rows, dtype=np.int64)).to(self.images.device)
        return self.images[index]

    def to(self, device: torch.device) -> "ArrayImages":
        return ArrayImages(self.images.to(device))


def read_tensor(source: ImageSource, rows) -> torch.Tensor:
    """``source.read(rows)`` as a uint8 tensor."""
    out = source.read(rows)
    return out if isinstance(out, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(out))


class _BatchDataset(Dataset):
    """Item b is the images of ``batches[b]`` (the loader's automatic batching is off)."""

    def __init__(self, source: ImageSource, batches: Sequence[np.ndarray]):
        self.source, self.batches = source, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int) -> torch.Tensor:
        return read_tensor(self.source, self.batches[b])


def default_workers(device: torch.device) -> int:
    """Loader workers when the config leaves it open: none on CPU (reading a batch from the
    cache costs far less than a training step, and a worker would take a core from it), up to 4
    on CUDA so reads overlap the GPU's work."""
    if device.type != "cuda":
        return 0
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def iterate_batches(source: ImageSource, batches: Sequence[np.ndarray], *, device: torch.device,
                    workers: int | None = None) -> Iterator[torch.Tensor]:
    """The uint8 images of every row array in ``batches``, in order, on their way to ``device``
    (pinned when it is a GPU; the caller moves them with ``non_blocking=True``)."""
    if isinstance(source, ArrayImages):
        for rows in batches:
            yield source.read(rows)
        return
    workers = default_workers(device) if workers is None else int(workers)
    if workers <= 0 and device.type != "cuda":
        for rows in batches:
            yield read_tensor(source, rows)
        return
    loader = DataLoader(_BatchDataset(source, batches), batch_size=None, shuffle=False, num_workers=max(workers, 0),
                        pin_memory=device.type == "cuda", prefetch_factor=4 if workers > 0 else None)
    yield from loader
