"""How often a torchrun rank aborts at exit after a complete DistributedDataParallel job.

DistributedDataParallel keeps the gloo process group (and its worker threads) alive after
``destroy_process_group``; destroying it while the interpreter shuts down aborts the process now
and then with "terminate called without an active exception" (SIGABRT), and torchrun then
reports the whole job as failed. ``uldl-studio train`` therefore ends each rank with
``cli._end_rank`` (``os._exit`` once the group is closed and the output flushed).

This script launches the same bare two-rank DDP job (a few steps, one object broadcast, a
barrier, ``destroy_process_group``) over and over, the two endings interleaved so that both
see the same machine load, and prints how many launches failed with each:

    python bench/rank_exit.py --runs 80
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

WORKER = textwrap.dedent('''
    import sys
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 2))
    for _ in range(3):
        model(torch.ones(4, 3)).sum().backward()
    box = [1]
    dist.broadcast_object_list(box, src=0)
    del model
    dist.barrier()
    dist.destroy_process_group()
    if sys.argv[1] == "end_rank":
        from uldl_studio.cli import _end_rank
        _end_rank(0)
''')

ENDINGS = ("interpreter exit", "end_rank")


def _launch(script: Path, ending: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), "end_rank" if ending == "end_rank" else "interpreter"]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=80, help="launches per ending")
    args = parser.parse_args()
    failed = {ending: 0 for ending in ENDINGS}
    aborted = {ending: 0 for ending in ENDINGS}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "ddp_job.py"
        script.write_text(WORKER)
        for i in range(args.runs):
            for ending in ENDINGS:
                done = _launch(script, ending)
                failed[ending] += done.returncode != 0
                aborted[ending] += "terminate called without an active exception" in done.stderr
            print(f"\r{i + 1}/{args.runs} launches each", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    print("| ending | launches | failed | aborted at exit |")
    print("|---|---|---|---|")
    for ending in ENDINGS:
        print(f"| {ending} | {args.runs} | {failed[ending]} | {aborted[ending]} |")


if __name__ == "__main__":
    main()
