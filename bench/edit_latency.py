"""How long one relabel takes in the session at scale, and what the kept sample-id index buys.

A relabel appends to the journal and re-applies the journal to the table
(``core.labels.edits.apply_edits``). Side by side in one run, on a synthetic table
(``bench/gui_scale.py``'s) with ``--edits`` samples already edited:

  fresh index   apply_edits without an index: it builds the sample ids' hash table every call
  kept index    apply_edits given the session's kept ``pd.Index`` (what the session does)
  session       Session.relabel end to end (journal append with fsync, apply, events)

    python bench/edit_latency.py [--n 300000] [--edits 500] [--repeats 7]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from gui_scale import synthetic_table  # noqa: E402
from uldl_studio.core.engine.config import TrainConfig  # noqa: E402
from uldl_studio.core.engine.run import Run  # noqa: E402
from uldl_studio.core.labels.edits import apply_edits  # noqa: E402
from uldl_studio.core.review.session import Session  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300_000)
    parser.add_argument("--edits", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    table = synthetic_table(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        table.attrs.update(root=f"{tmp}/data", format="csv")
        run = Run.create(f"{tmp}/run", TrainConfig(), table)
        session = Session()
        session.set_run(run, table)
        rows = np.random.default_rng(0).choice(args.n, size=args.edits, replace=False)
        session.relabel(rows, 1)
        journal = session.journal
        index = pd.Index(table["sample_id"].astype(str))
        apply_edits(table, journal, index)  # builds the kept index's hash table once
        fresh = median_ms(lambda: apply_edits(table, journal), args.repeats)
        kept = median_ms(lambda: apply_edits(table, journal, index), args.repeats)
        assert apply_edits(table, journal).equals(apply_edits(table, journal, index))
        step = iter(range(10 ** 9))
        relabel = median_ms(lambda: session.relabel([int(rows[next(step) % args.edits])], 2), args.repeats)
        journal.close()
    print(f"{args.n:,} rows, {args.edits} edited; median of {args.repeats}")
    print(f"apply_edits, fresh index   {fresh:8.1f} ms")
    print(f"apply_edits, kept index    {kept:8.1f} ms   ({fresh / kept:.1f}x faster)")
    print(f"Session.relabel end to end {relabel:8.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
