"""Datasets larger than memory: peak RSS of training and predict, the decoded-image cache, torchrun.

Builds once, in ``--work`` (default ``$ULDL_STUDIO_CACHE/bench-scale`` or the platform cache),
a synthetic collection of ``--n`` images (default 300 000) drawn by the demo generator in chunks
of 10 000 (64 px grey PNGs, the generic CSV layout), and points the decoded-image cache at
``--work/cache``. Every measurement runs in its own process (fair timing, its own peak RSS):

``memory``: the model input is ``--size`` px RGB (default 112: what AffectNet training at 112 px
takes, 37 632 bytes per image).

* cache build: decoding all ``--n`` images into the cache (worker processes), then opening it again;
* training on the first N rows for every N in ``--sizes``, from the cache and with the old path
  that decodes every image into one array in RAM (``--set image_cache=false``): setup plus
  ``--batches`` training batches of the first epoch (a full epoch at 300 000 images of 112 px
  takes hours on a laptop CPU), images/s of those batches, peak RSS;
* one full epoch (evaluation pass, neighbour scores and the run's files included) at the
  smallest N, both ways;
* predict (``predict_collection``, streamed) on N rows for ``--batches`` chunks, peak RSS;
* reading batches: images/s from the cache vs decoding the same files on the fly.

``distributed``: the demo (3000 images, 48 px grey) trained one epoch by one process and by two
gloo processes under torchrun on this machine: training images/s side by side.

    python bench/scale.py                        # both parts
    python bench/scale.py memory --n 300000 --sizes 30000 100000 300000
    python bench/scale.py distributed
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from worker_result import report, run_worker  # noqa: E402

CHUNK = 10_000


def default_work() -> Path:
    base = os.environ.get("ULDL_STUDIO_CACHE")
    if base:
        return Path(base) / "bench-scale"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("uldl-studio")) / "bench-scale"


# ----------------------------------------------------------------------------- the collection
def build_collection(folder: Path, n: int) -> Path:
    """``n`` demo faces in the generic CSV layout, written chunk by chunk (labels.csv last)."""
    from uldl_studio.core.data.datasets.demo import DEMO_CLASSES, generate_demo
    from PIL import Image

    csv = folder / "labels.csv"
    if csv.exists() and len(pd.read_csv(csv, usecols=["sample_id"])) == n:
        return csv
    names = np.asarray(DEMO_CLASSES)
    frames, started = [], time.perf_counter()
    for k in range(0, (n + CHUNK - 1) // CHUNK):
        count = min(CHUNK, n - k * CHUNK)
        images, frame = generate_demo(n=count, seed=1000 + k, size=64)
        sub = folder / "images" / f"{k:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        ids = [f"c{k:03d}_{i:05d}" for i in range(count)]
        paths = [f"images/{k:03d}/{sid}.png" for sid in ids]
        for img, rel in zip(images, paths):
            Image.fromarray(img).save(folder / rel, compress_level=1)
        part = pd.DataFrame({"sample_id": ids, "path": paths, "label": names[frame["label"].to_numpy()],
                             "split": frame["split"], "valence": frame["valence"], "arousal": frame["arousal"]})
        frames.append(part)
        print(f"  wrote {k * CHUNK + count} / {n} images ({time.perf_counter() - started:.0f} s)", flush=True)
    pd.concat(frames).to_csv(csv, index=False)
    return csv


def _table(folder: Path, rows: int) -> pd.DataFrame:
    from uldl_studio.core.data.datasets import load_dataset

    table = load_dataset(str(folder), fmt="csv")
    out = table.iloc[:rows].reset_index(drop=True)
    out.attrs = dict(table.attrs)
    return out


# ----------------------------------------------------------------------------- workers
class PeakRSS:
    """Peak resident set of this process and its children (decoding and loader workers), from
    ru_maxrss, in MB; ``Phases`` also samples it to say in which phase the peak came."""

    @staticmethod
    def mb() -> dict:
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        return {"peak_rss_mb": own, "peak_child_rss_mb": children}


class Phases:
    """Samples this process's resident set every 20 ms (Linux /proc): the peak of each phase."""

    def __init__(self):
        self.phase, self.peaks = "setup", {}
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        try:
            statm = open("/proc/self/statm")
        except OSError:
            return
        while True:
            statm.seek(0)
            mb = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), mb)
            time.sleep(0.02)


def worker(args) -> None:
    os.environ["ULDL_STUDIO_CACHE"] = str(args.work / "cache")
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    folder = args.work / f"demo-{args.n}"
    if args.case == "build":
        from uldl_studio.core.data.image_cache import open_cached_images

        table = _table(folder, args.rows)
        t = time.perf_counter()
        open_cached_images(table, args.size, 3)
        first = time.perf_counter() - t
        t = time.perf_counter()
        open_cached_images(table, args.size, 3)
        report({"seconds": first, "reopen_seconds": time.perf_counter() - t, "rows": len(table), **PeakRSS.mb()})
    elif args.case in ("train", "train-ram", "epoch", "epoch-ram"):
        train_worker(args, folder)
    elif args.case == "predict":
        predict_worker(args, folder)
    elif args.case == "read":
        read_worker(args, folder)


def train_worker(args, folder: Path) -> None:
    import tempfile

    from uldl_studio.core.engine.config import TrainConfig
    from uldl_studio.core.engine.training import fit

    table = _table(folder, args.rows)
    full_epoch = args.case.startswith("epoch")
    config = TrainConfig(method="ce", epochs=1, image_size=args.size, channels=3, progress_every=1,
                         image_cache=not args.case.endswith("-ram"))
    stop = threading.Event()
    marks: dict[int, float] = {}
    phases = Phases()
    with tempfile.TemporaryDirectory(dir=args.work) as run_dir:
        t0 = time.perf_counter()
        for progress in fit(table, config, run_dir, cancel=stop):
            # the batches, then (after the last batch's report) the evaluation pass and the files
            phases.phase = "batches" if progress.phase == "train" and progress.batch < progress.batches \
                else "evaluation and files" if progress.phase == "train" else progress.phase
            if progress.phase == "train" and progress.batch:
                marks.setdefault(progress.batch, time.perf_counter())
                if not full_epoch and progress.batch >= args.batches:
                    stop.set()
        total = time.perf_counter() - t0
    first, last = min(marks), max(marks)
    rate = (last - first) * config.batch_size / (marks[last] - marks[first]) if last > first else float("nan")
    report({"rows": len(table), "batches": last, "images_per_s": rate, "seconds": total,
            "setup_seconds": marks[first] - t0, "phase_peaks_mb": phases.peaks, **PeakRSS.mb()})


def predict_worker(args, folder: Path) -> None:
    from uldl_studio.core.data.image_collection import read_collection
    from uldl_studio.core.runs.predict import PredictOptions, predict_collection
    from uldl_studio.core.engine.run import Run

    from uldl_studio.core.cancel import Cancelled

    run = Run.open(args.run)
    collection = read_collection(str(folder / "images"), fmt="images", limit=args.rows)
    stop = threading.Event()
    chunks = [0]

    def progress(done, total, text):
        chunks[0] += 1
        if chunks[0] >= args.batches:
            stop.set()

    t0 = time.perf_counter()
    try:
        predict_collection(run, collection, PredictOptions(), progress=progress, cancel=stop)
    except Cancelled:
        pass
    report({"rows": len(collection), "chunks": chunks[0], "seconds": time.perf_counter() - t0, **PeakRSS.mb()})


def read_worker(args, folder: Path) -> None:
    from uldl_studio.core.data.image_cache import open_cached_images
    from uldl_studio.core.data.images import decode_image, to_model_input

    table = _table(folder, args.rows)
    table, cached = open_cached_images(table, args.size, 3)
    rng = np.random.default_rng(0)
    batches = [np.sort(rng.choice(len(table), 64, replace=False)) for _ in range(args.batches)]
    t = time.perf_counter()
    for rows in batches:
        cached.read(rows)
    cache_rate = 64 * len(batches) / (time.perf_counter() - t)
    paths = table["path"].astype(str).to_numpy()
    t = time.perf_counter()
    for rows in batches[:max(1, len(batches) // 10)]:
        for i in rows:
            to_model_input(decode_image(paths[i]), args.size, 3)
    decode_rate = 64 * max(1, len(batches) // 10) / (time.perf_counter() - t)
    report({"cache_images_per_s": cache_rate, "decode_images_per_s": decode_rate, **PeakRSS.mb()})


# ----------------------------------------------------------------------------- parent
def _case(args, case: str, rows: int, **extra) -> dict:
    cmd = [sys.executable, __file__, "worker", "--case", case, "--rows", str(rows), "--n", str(args.n),
           "--size", str(args.size), "--batches", str(args.batches), "--work", str(args.work)]
    for key, value in extra.items():
        cmd += [f"--{key}", str(value)]
    return run_worker(cmd, f"{case} on {rows} rows")


def memory(args) -> dict:
    folder = args.work / f"demo-{args.n}"
    t = time.perf_counter()
    build_collection(folder, args.n)
    print(f"collection: {args.n} images in {folder} ({time.perf_counter() - t:.0f} s to make or find)", flush=True)
    results: dict = {"n": args.n, "size": args.size, "bytes_per_image": args.size * args.size * 3}
    if args.fresh_cache:
        shutil.rmtree(args.work / "cache" / "images", ignore_errors=True)
    results["build"] = build = _case(args, "build", args.n)
    print(f"cache build: {build['seconds']:.0f} s for {args.n} images ({args.n / build['seconds']:.0f} img/s), "
          f"reopen {build['reopen_seconds']:.1f} s, peak RSS {build['peak_rss_mb']:.0f} MB "
          f"(decoding workers {build['peak_child_rss_mb']:.0f} MB)", flush=True)
    results["read"] = read = _case(args, "read", args.n)
    print(f"reading batches of 64: cache {read['cache_images_per_s']:.0f} img/s, decoding on the fly "
          f"{read['decode_images_per_s']:.0f} img/s ({read['cache_images_per_s'] / read['decode_images_per_s']:.1f}x)",
          flush=True)
    rows = []
    for n in args.sizes:
        cache = _case(args, "train", n)
        ram = _case(args, "train-ram", n)
        rows.append({"rows": n, "cache": cache, "ram": ram})
        print(f"train {n:>7}: peak RSS cache {cache['peak_rss_mb']:6.0f} MB vs in RAM {ram['peak_rss_mb']:6.0f} MB "
              f"({ram['peak_rss_mb'] / cache['peak_rss_mb']:.1f}x); {cache['images_per_s']:.0f} vs "
              f"{ram['images_per_s']:.0f} img/s; setup {cache['setup_seconds']:.0f} vs {ram['setup_seconds']:.0f} s",
              flush=True)
    results["train"] = rows
    small = min(args.sizes)
    results["epoch"] = {"rows": small, "cache": _case(args, "epoch", small), "ram": _case(args, "epoch-ram", small)}
    e = results["epoch"]
    print(f"full epoch {small}: peak RSS cache {e['cache']['peak_rss_mb']:.0f} MB vs in RAM "
          f"{e['ram']['peak_rss_mb']:.0f} MB; {e['cache']['seconds']:.0f} vs {e['ram']['seconds']:.0f} s", flush=True)
    if args.run is None:
        args.run = _predict_run(args, folder)
    if args.run:
        results["predict"] = []
        for n in args.sizes:
            p = _case(args, "predict", n, run=args.run)
            results["predict"].append(p)
            print(f"predict {n:>7}: peak RSS {p['peak_rss_mb']:.0f} MB", flush=True)
    return results


def _predict_run(args, folder: Path) -> Path:
    """A small run at the benchmark's input size to predict with (trained once, kept)."""
    run_dir = args.work / f"run-{args.size}px"
    if not (run_dir / "checkpoint.pt").exists():
        shutil.rmtree(run_dir, ignore_errors=True)
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "ULDL_STUDIO_CACHE": str(args.work / "cache")}
        proc = subprocess.run([sys.executable, "-m", "uldl_studio", "train", str(folder / "labels.csv"),
                               "--format", "csv", "--limit", "1000", "--epochs", "1", "--method", "ce",
                               "--set", f"image_size={args.size}", "--set", "channels=3", "--out", str(run_dir)],
                              env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"training the run to predict with failed:\n{proc.stderr[-3000:]}")
    return run_dir


def distributed(args) -> dict:
    """One process vs two gloo processes on the demo: training images/s of one epoch each."""
    out = {}
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "ULDL_STUDIO_CACHE": str(args.work / "cache")}
    common = ["train", "demo", "--epochs", "2", "--method", "ce", "--set", "warmup_epochs=0"]
    for label, launcher in (("1 process", [sys.executable, "-m", "uldl_studio"]),
                            ("2 gloo processes", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                  "--nproc_per_node", "2", "-m", "uldl_studio"])):
        run_dir = args.work / f"dist-{label.split()[0]}"
        shutil.rmtree(run_dir, ignore_errors=True)
        t = time.perf_counter()
        proc = subprocess.run([*launcher, *common, "--out", str(run_dir)], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{label} failed:\n{proc.stderr[-3000:]}")
        history = pd.read_csv(run_dir / "history.csv")
        train = int((pd.read_csv(run_dir / "samples.csv", usecols=["split"])["split"] == "train").sum())
        out[label] = {"wall_seconds": time.perf_counter() - t, "epoch_batches_seconds": history["seconds"].tolist(),
                      "train_images_per_s": train / float(history["seconds"].iloc[-1]),
                      "test_accuracy": float(history["test_accuracy"].iloc[-1])}
        print(f"{label}: {out[label]['train_images_per_s']:.0f} train img/s (epoch 2), wall "
              f"{out[label]['wall_seconds']:.0f} s, test accuracy {out[label]['test_accuracy']:.3f}", flush=True)
    one, two = out["1 process"], out["2 gloo processes"]
    print(f"two processes / one: {two['train_images_per_s'] / one['train_images_per_s']:.2f}x training images/s "
          f"on {os.cpu_count()} cores", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", default="all", choices=("all", "memory", "distributed", "worker"))
    parser.add_argument("--n", type=int, default=300_000, help="images in the synthetic collection")
    parser.add_argument("--sizes", type=int, nargs="+", default=[30_000, 100_000, 300_000])
    parser.add_argument("--size", type=int, default=112, help="model input side (RGB)")
    parser.add_argument("--batches", type=int, default=40, help="training batches / predict chunks per case")
    parser.add_argument("--run", default=None, help="a run directory trained at --size px RGB, for predict")
    parser.add_argument("--fresh-cache", action="store_true", help="clear the decoded-image cache first")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--case", default=None)
    parser.add_argument("--rows", type=int, default=None)
    args = parser.parse_args()
    args.work = (args.work or default_work()).resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.part == "worker":
        worker(args)
        return
    results = {"cpus": os.cpu_count()}
    if args.part in ("all", "memory"):
        results["memory"] = memory(args)
    if args.part in ("all", "distributed"):
        results["distributed"] = distributed(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
