"""core.distributed: shard arithmetic, the single-process Comm, and the collectives in two real
gloo processes (torch.multiprocessing, a TCP store on localhost)."""
from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from hypothesis import given, strategies as st

from uldl_studio.core.engine.distributed import Comm, shard_bounds, shard_counts, tensor_digest


@given(st.integers(0, 500), st.integers(1, 9))
def test_shards_cover_every_item_once_in_order(n, world):
    bounds = [shard_bounds(n, r, world) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    counts = shard_counts(n, world)
    assert sum(counts) == n and max(counts) - min(counts) <= 1
    assert counts == [len(part) for part in np.array_split(np.arange(n), world)]


def test_single_process_comm_is_the_identity():
    comm = Comm()
    t = torch.arange(6.0).reshape(3, 2)
    assert comm.is_main and not comm.distributed
    assert comm.gather_rows(t, [3]) is t
    assert comm.sum([1.5, 2]) == [1.5, 2.0]
    assert comm.broadcast_object({"a": 1}) == {"a": 1}
    assert comm.gather_objects("x") == ["x"]
    comm.barrier()


def test_digest_sees_any_change_of_bits():
    a = [torch.zeros(3), np.ones(2, np.int64), None]
    same = [torch.zeros(3), np.ones(2, np.int64), None]
    assert tensor_digest(a) == tensor_digest(same)
    assert tensor_digest(a) != tensor_digest([torch.tensor([0.0, 0.0, -0.0]), a[1], None])  # -0.0 differs in bits
    assert tensor_digest(a) != tensor_digest([torch.zeros(3, dtype=torch.float64), a[1], None])
    assert tensor_digest(a) != tensor_digest([torch.zeros(3), a[1]])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, port: int, out) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    comm = Comm(rank=rank, world_size=2, backend="gloo")
    counts = [3, 1]  # uneven shards: rank 0 holds 3 rows, rank 1 one
    local = torch.full((counts[rank], 2), float(rank + 1))
    local[:, 1] = torch.arange(counts[rank], dtype=torch.float32)
    gathered = comm.gather_rows(local, counts)
    totals = comm.sum([rank + 1.0, 10.0])
    obj = comm.broadcast_object(np.arange(4) * (rank + 7))
    module = torch.nn.BatchNorm1d(2)
    module.running_mean.fill_(float(rank + 5))
    comm.broadcast_buffers(module)
    out.put((rank, gathered.tolist(), totals, obj.tolist(), module.running_mean.tolist(), comm.gather_objects(rank * 2)))
    dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_collectives_in_two_gloo_processes():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_rank_main, args=(r, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict((r, rest) for r, *rest in (queue.get(timeout=100) for _ in procs))
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    for rank in (0, 1):
        gathered, totals, obj, mean, objects = results[rank]
        assert gathered == [[1.0, 0.0], [1.0, 1.0], [1.0, 2.0], [2.0, 0.0]]
        assert totals == [3.0, 20.0]
        assert obj == [0, 7, 14, 21]           # rank 0's array on both ranks
        assert mean == [5.0, 5.0]              # rank 0's running statistics on both ranks
        assert objects == [0, 2]
