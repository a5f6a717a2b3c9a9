"""Training across processes with PyTorch's own engine (``torch.distributed``, launched by torchrun).

``Comm`` is what ``fit`` needs to know about the process group: this process's rank, the world
size, and the few collectives that keep the replicated training state identical on every rank
(``docs/architecture.md``, "Distributed training"). ``Comm()`` is the single-process case, where
every collective is the identity; ``Comm.from_env()`` joins the group torchrun describes in the
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): NCCL
when the ranks train on CUDA, gloo on CPU.

No state is global: the ``Comm`` is passed to ``fit`` (and to ``crossfit``) explicitly.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    """Whether the environment describes a process group of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@dataclass(frozen=True)
class Comm:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None   # None: a single process, no group

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run directory and reports progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, device: str = "auto", timeout_minutes: float = 30.0) -> "Comm":
        """Join torchrun's process group (or return the single-process ``Comm`` outside torchrun).

        ``device`` is the training's ``--device``: ``cuda`` (or ``auto`` with a GPU) uses NCCL and
        binds this process to GPU ``LOCAL_RANK``; otherwise gloo on CPU.
        """
        if not launched_by_torchrun():
            return cls()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        backend = "nccl" if use_cuda else "gloo"
        if use_cuda:
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes))
        return cls(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, backend=backend)

    def device(self, resolved: torch.device) -> torch.device:
        """The device of this rank: its own GPU (``cuda:LOCAL_RANK``) when training on CUDA."""
        if resolved.type == "cuda" and self.distributed:
            return torch.device("cuda", self.local_rank)
        return resolved

    def close(self) -> None:
        """Leave the group once every rank is done with it: a rank that tears down the group (or
        the rendezvous store it hosts) while another still uses it aborts that other one."""
        if self.distributed and dist.is_initialized():
            try:
                dist.barrier()
            finally:
                dist.destroy_process_group()

    # ------------------------------------------------------------------ collectives
    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def gather_rows(self, local: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
        """Concatenate every rank's ``local`` along dim 0, rank order; rank r holds ``counts[r]``
        rows (all ranks know the counts, so uneven shards need no extra exchange)."""
        if not self.distributed:
            return local
        width = max(int(c) for c in counts)
        padded = local.new_zeros((width, *local.shape[1:]))
        padded[:len(local)] = local
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([part[:int(c)] for part, c in zip(parts, counts)])

    def sum(self, values: Sequence[float], device: torch.device | None = None) -> list[float]:
        """Element-wise sum of ``values`` over all ranks (float64)."""
        if not self.distributed:
            return [float(v) for v in values]
        t = torch.tensor(list(values), dtype=torch.float64, device=device or torch.device("cpu"))
        dist.all_reduce(t)
        return t.cpu().tolist()

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (picklable objects, e.g. numpy arrays)."""
        if not self.distributed:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics): each rank updated its
        own with its shard since DistributedDataParallel last synchronised them."""
        if not self.distributed:
            return
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of rank ``rank``'s contiguous share of ``n`` items (the first ``n % world``
    ranks get one more), as ``numpy.array_split`` splits."""
    base, extra = divmod(int(n), int(world_size))
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def shard_counts(n: int, world_size: int) -> list[int]:
    """The number of items of every rank's share of ``n`` (``shard_bounds``)."""
    return [b - a for a, b in (shard_bounds(n, r, world_size) for r in range(world_size))]


def tensor_digest(tensors: Sequence[torch.Tensor | np.ndarray | None]) -> str:
    """SHA-1 of the bytes of ``tensors`` in order (None counts as a marker): equal on two ranks
    exactly when their replicated state is bit-identical."""
    digest = hashlib.sha1()
    for t in tensors:
        if t is None:
            digest.update(b"<none>")
            continue
        array = t.detach().cpu().contiguous().numpy() if isinstance(t, torch.Tensor) else np.ascontiguousarray(t)
        digest.update(str(array.dtype).encode() + str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
