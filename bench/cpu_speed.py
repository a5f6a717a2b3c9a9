"""CPU speed of the forward/backward pass by precision and memory layout, side by side.

Settings (TrainConfig fields ``amp`` and ``channels_last``):
  fp32-nchw   amp=false channels_last=false   (before: plain fp32, NCHW)
  fp32-nhwc   amp=false channels_last=true
  auto        amp=true  channels_last=true    (the default: bf16 autocast where the CPU has
                                               AMX-BF16 / AVX512-BF16, else fp32)

Part 1 runs ``fit`` (method ce) on the demo in one subprocess per setting, interleaved and
repeated (fastest kept), and prints training seconds per epoch, evaluation seconds per epoch
(the no-grad pass over every row) and ratios to fp32-nchw.
Part 2 (``--cli``) times the whole command ``uldl-studio train demo --epochs 3`` (imports,
demo, LDLVA warm-up and neighbours, evaluation, run files) for fp32-nchw and auto.

    python bench/cpu_speed.py [--repeats 2] [--cli]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from worker_result import report, run_worker

SETTINGS = {"fp32-nchw": {"amp": False, "channels_last": False},
            "fp32-nhwc": {"amp": False, "channels_last": True},
            "auto": {"amp": True, "channels_last": True}}


def worker(name: str, epochs: int) -> None:
    import pandas as pd
    import torch

    from uldl_studio.core.data.datasets.demo import load_demo
    from uldl_studio.core.data.images import load_images
    from uldl_studio.core.engine.precision import choose_precision
    from uldl_studio.core.engine.config import TrainConfig
    from uldl_studio.core.engine.training import fit

    table = load_demo()
    config = TrainConfig(method="ce", epochs=epochs, device="cpu", progress_every=10_000, **SETTINGS[name])
    images, _ = load_images(table, config.image_size, config.channels)
    ends = []
    with tempfile.TemporaryDirectory() as run_dir:
        for progress in fit(table, config, run_dir, images=images):
            if progress.phase in ("train", "epoch_end") and progress.batch == progress.batches:
                ends.append((progress.phase, time.perf_counter()))
        history = pd.read_csv(Path(run_dir) / "history.csv")
    # epoch_end follows the last batch's report by the evaluation pass and the run files
    train_end = [t for phase, t in ends if phase == "train"]
    epoch_end = [t for phase, t in ends if phase == "epoch_end"]
    evals = [e - t for t, e in zip(train_end, epoch_end)][1:]
    out = {"setting": name, "precision": choose_precision(torch.device("cpu"), **SETTINGS[name]).name,
           "n_train": int((table["split"] == "train").sum()), "n_rows": len(table),
           "train_seconds": float(history["seconds"].iloc[1:].mean()),
           "eval_seconds": sum(evals) / len(evals)}
    report(out)


def time_cli(name: str) -> float:
    sets = [f"--set={key}={json.dumps(value)}" for key, value in SETTINGS[name].items()]
    with tempfile.TemporaryDirectory() as out:
        cli = Path(sys.executable).with_name("uldl-studio")
        cmd = [str(cli), "train", "demo", "--out", out, "--epochs", "3", *sets]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats; the fastest is kept")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per fit (the first is not measured)")
    parser.add_argument("--cli", action="store_true", help="also time `uldl-studio train demo --epochs 3`")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.epochs)
        return
    from uldl_studio.core.engine.precision import cpu_has_native_bf16

    print(f"CPU native bf16 (AMX-BF16 or AVX512-BF16): {cpu_has_native_bf16()}; {os.cpu_count()} cores")
    best: dict[str, dict] = {}
    # Interleaved repeats, fastest kept: on a shared machine other load only ever slows a run down.
    for _ in range(args.repeats):
        for name in SETTINGS:
            new = run_worker([sys.executable, __file__, "--worker", name, "--epochs", str(args.epochs)], name)
            old = best.get(name)
            best[name] = new if old is None else {**new, **{k: min(new[k], old[k])
                                                            for k in ("train_seconds", "eval_seconds")}}
    base = best["fp32-nchw"]
    for name, r in best.items():
        print(f"{name:10s} ({r['precision']})  train {r['train_seconds']:6.2f} s/epoch "
              f"({r['n_train'] / r['train_seconds']:5.0f} img/s, {base['train_seconds'] / r['train_seconds']:.2f}x)"
              f"  eval {r['eval_seconds']:5.2f} s/epoch ({r['n_rows']} rows, "
              f"{base['eval_seconds'] / r['eval_seconds']:.2f}x)", flush=True)
    if args.cli:
        walls: dict[str, float] = {}
        for _ in range(args.repeats):
            for name in ("fp32-nchw", "auto"):
                walls[name] = min(walls.get(name, float("inf")), time_cli(name))
        print("uldl-studio train demo --epochs 3, wall: " + "  ".join(f"{n} {s:.1f} s" for n, s in walls.items())
              + f"  ({walls['fp32-nchw'] / walls['auto']:.2f}x)")


if __name__ == "__main__":
    main()
