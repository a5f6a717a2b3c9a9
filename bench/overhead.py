"""Seconds per epoch of `ce`, `ldlva --neighbors bank` and `ldlva --neighbors exact` on the same data.

Each method runs in its own subprocess (fair peak memory: ru_maxrss of that process; on CUDA
also torch.cuda.max_memory_allocated). Every run trains 1 warm-up epoch (plain CE, identical
for all three) plus --epochs measured epochs; the reported time is the mean training time of
the measured epochs (the per-epoch evaluation pass and file writing are excluded, being the
same for all methods). Prints ratios to ce, e.g. `bank 1.07x`, and each run's total seconds
(loading the model, every epoch's training, evaluation pass and files).

    python bench/overhead.py --data demo --limit 2000
    python bench/overhead.py --data demo --limit 600 --modes ce,bank,bank-batch   # λ's epoch vs batch update
    python bench/overhead.py --data ../shared/data/ferplus --limit 3000
    python bench/overhead.py --modes ce,bank,ce-balanced,ce-framing --baseline-code /tmp/old
        (/tmp/old: an earlier version's source, e.g. `git archive REV uldl_studio | tar -x -C /tmp/old`;
         each default mode is also run on that code as MODE@before, with its ratio)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from worker_result import report, run_worker

MODES = {"ce": {"method": "ce"}, "bank": {"method": "ldlva", "neighbors": "bank"},
         "exact": {"method": "ldlva", "neighbors": "exact"},
         # λ updated per batch on the training forward (the update before the epoch step)
         "bank-batch": {"method": "ldlva", "neighbors": "bank", "lambda_evidence": "batch",
                        "lambda_evidence_form": "ce", "lambda_knn_weight": 0.0, "lambda_prior": 0.05,
                        "lambda_lr": 1.0},
         # the options for imbalanced classes and other framings (core.training, core.augment)
         "ce-balanced": {"method": "ce", "class_balance": "logit_adjust"},
         "ce-framing": {"method": "ce", "framing": "all"}}


def worker(args) -> None:
    import resource

    import torch

    torch.set_num_threads(args.threads)
    from uldl_studio.core.data.datasets import load_dataset
    from uldl_studio.core.data.images import load_images
    from uldl_studio.core.engine.config import TrainConfig
    from uldl_studio.core.engine.training import fit

    table = load_dataset(args.data, fmt=args.format, limit=args.limit,
                         single_label="sample" if args.data != "demo" else "majority")
    table = table[table["split"] == "train"].reset_index(drop=True) if args.train_only else table
    config = TrainConfig(**MODES[args.worker.split("@")[0]], epochs=1 + args.epochs, warmup_epochs=1,
                         batch_size=args.batch_size, device=args.device, num_threads=args.threads,
                         va=args.va, progress_every=10_000)
    images, _ = load_images(table, config.image_size, config.channels)
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        for _ in fit(table, config, run_dir, images=images):
            pass
        total = time.perf_counter() - start
        import pandas as pd

        history = pd.read_csv(Path(run_dir) / "history.csv")
    measured = history[history["epoch"] > 1]["seconds"].tolist()
    out = {"mode": args.worker, "n_train": int((table["split"] == "train").sum()),
           "epoch_seconds": sum(measured) / len(measured), "total_seconds": total,
           "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available() and config.device != "cpu":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
        out["device"] = torch.cuda.get_device_name()
    report(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="demo", help="'demo' or a dataset path")
    parser.add_argument("--format", default="auto")
    parser.add_argument("--limit", type=int, default=2000, help="first N samples per split")
    parser.add_argument("--epochs", type=int, default=1, help="measured epochs after the warm-up epoch")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--va", default="auto")
    parser.add_argument("--modes", default="ce,bank,exact")
    parser.add_argument("--train-only", action="store_true", help="drop valid/test rows (faster)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="run the modes this many times, interleaved; report each mode's fastest")
    parser.add_argument("--baseline-code", metavar="DIR", default=None,
                        help="a folder holding an earlier uldl_studio package: the modes it knows run on it too")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    results: dict[str, dict] = {}
    modes = args.modes.split(",")
    if args.baseline_code:
        modes += [f"{m}@before" for m in modes if m in ("ce", "bank", "exact")]
    # Interleaved repeats, fastest kept: on a shared machine other load only ever slows a run down.
    for _ in range(args.repeats):
        for mode in modes:
            cmd = [sys.executable, __file__, "--worker", mode] + [a for a in sys.argv[1:]]
            env = {"PYTHONPATH": str(Path(args.baseline_code).resolve())} if mode.endswith("@before") else None
            new = run_worker(cmd, mode, env)
            old = results.get(mode)
            if old is None or new["epoch_seconds"] < old["epoch_seconds"]:
                new["max_rss_mb"] = max(new["max_rss_mb"], old["max_rss_mb"]) if old else new["max_rss_mb"]
                results[mode] = new
    for mode in modes:
        r = results[mode]
        print(f"{mode:12s} {r['epoch_seconds']:8.2f} s/epoch  ({r['n_train']} train samples, "
              f"{r['n_train'] / r['epoch_seconds']:.0f} img/s)  total {r['total_seconds']:.2f} s  "
              f"peak RSS {r['max_rss_mb']:.0f} MB"
              + (f"  CUDA peak {r['cuda_peak_mb']:.0f} MB on {r['device']}" if "cuda_peak_mb" in r else ""),
              flush=True)
    if "ce" in results:
        base = results["ce"]["epoch_seconds"]
        print("ratios to ce: " + "  ".join(f"{m} {r['epoch_seconds'] / base:.2f}x" for m, r in results.items()))
        total = results["ce"]["total_seconds"]
        print("total (evaluation pass, scores, files included), ratios to ce: "
              + "  ".join(f"{m} {r['total_seconds'] / total:.2f}x" for m, r in results.items()))
    before = [m for m in results if m.endswith("@before")]
    if before:
        print("ratios to the baseline code (per epoch): "
              + "  ".join(f"{m[:-7]} {results[m[:-7]]['epoch_seconds'] / results[m]['epoch_seconds']:.2f}x"
                          for m in before))


if __name__ == "__main__":
    main()
