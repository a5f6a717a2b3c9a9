"""Time loading a dataset into a SampleTable (no pixels decoded), and optionally decoding images.

    python bench/load.py                       # the real FER+ in ../shared/data/ferplus
    python bench/load.py PATH --format csv --repeat 5 --images 2000
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from uldl_studio.core.data.datasets import DatasetWarning, detect_format, load_dataset  # noqa: E402
from uldl_studio.core.table import limit_per_split  # noqa: E402

DEFAULT = REPO.parent / "shared" / "data" / "ferplus"


def timed(fn, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", default=str(DEFAULT), help="dataset path (default: real FER+)")
    parser.add_argument("--format", dest="fmt", default="auto")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median reported)")
    parser.add_argument("--images", type=int, default=0, metavar="N",
                        help="also decode the first N rows per split to 48x48 grey with load_images")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if not Path(args.path).exists():
        print(f"{args.path}: no such file or folder (the real FER+ lives in ../shared/data/ferplus)", file=sys.stderr)
        return 2
    warnings.simplefilter("ignore", DatasetWarning)

    fmt, t_detect = timed(lambda: detect_format(args.path) if args.fmt == "auto" else args.fmt, args.repeat)
    rows = [("detect_format", fmt, "-", t_detect)]
    table, t_major = timed(lambda: load_dataset(args.path, fmt), args.repeat)
    rows.append(("load majority", "all", len(table), t_major))
    if fmt in ("ferplus", "csv"):
        try:
            sample, t_sample = timed(lambda: load_dataset(args.path, fmt, single_label="sample"), args.repeat)
            rows.append(("load sample", "all", len(sample), t_sample))
        except Exception as exc:  # noqa: BLE001 - a CSV without ref_ columns has no sample mode
            print(f"(sample mode skipped: {exc})")
    counts = table.groupby("split", sort=False).size()
    if args.images:
        from uldl_studio.core.data.images import load_images

        subset = limit_per_split(table, args.images)
        (_, problems), t_img = timed(lambda: load_images(subset, 48, 1, workers=args.workers), 1)
        rows.append((f"load_images x{args.workers}", "subset", len(subset), t_img))
        if problems:
            print(f"{len(problems)} images could not be read")

    print(f"dataset: {args.path} ({fmt}); rows per split: "
          + ", ".join(f"{split} {n}" for split, n in counts.items()))
    print(f"{'step':<18} {'what':<8} {'rows':>7} {'seconds':>9} {'rows/s':>10}")
    for step, what, n, secs in rows:
        rate = f"{n / secs:,.0f}" if isinstance(n, int) and secs > 0 else "-"
        print(f"{step:<18} {what:<8} {n!s:>7} {secs:>9.3f} {rate:>10}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
