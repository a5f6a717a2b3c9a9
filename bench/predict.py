"""Prediction on image collections: speed, memory, and faces found in made-up raw photos.

Builds everything it needs once in a cache folder (``--cache``, default
``$ULDL_STUDIO_CACHE/bench-predict`` or the platform cache): the demo written to disk, a small
run trained on it (48 px grey, compact ResNet width 16, ``--epochs``), and raw "photos": demo
faces of the test split pasted at random positions and scales into 480x640 noisy canvases
(``core.faces.paste_faces``), plus canvases with no face.

``speed`` (each case in its own process: fair timing and peak RSS):

* crops  x ``--rows`` (64 px face crops, the same 3000 files listed over and over in a CSV with
  distinct ids), streamed (``predict_collection``), and the same rows through the SampleTable
  ``predict()``, which decodes every image into one array first;
* photos x ``--rows`` (480x640 JPEG canvases listed over and over), streamed: what holding them
  decoded would take is printed beside the peak RSS;
* photos x ``--face-rows`` with ``--faces off`` and ``--faces detect``: images/s side by side.

``faces``: detection recall and false faces on the demo canvases (and on FER+'s 48 px faces
upscaled into canvases when ``../shared/data/ferplus`` is there), then the accuracy of the
predictions on the detected crops against the predictions on the original crops, for several
face margins.

    python bench/predict.py                 # both parts
    python bench/predict.py faces --canvases 100
    python bench/predict.py speed --rows 10000 --face-rows 600
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from worker_result import report, run_worker  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FERPLUS = REPO.parent / "shared" / "data" / "ferplus"


def default_cache() -> Path:
    base = os.environ.get("ULDL_STUDIO_CACHE")
    if base:
        return Path(base) / "bench-predict"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("uldl-studio")) / "bench-predict"


# ----------------------------------------------------------------------------- building the inputs
def build_demo(cache: Path) -> Path:
    from uldl_studio.core.data.datasets.demo import write_demo

    csv = cache / "demo" / "labels.csv"
    if not csv.exists():
        print("writing the demo (3000 images) ...", flush=True)
        write_demo(cache / "demo", n=3000, seed=0, size=64)
    return csv


def build_run(cache: Path, csv: Path, epochs: int) -> Path:
    from uldl_studio.core.engine.config import TrainConfig
    from uldl_studio.core.data.datasets import load_dataset
    from uldl_studio.core.engine.run import Run
    from uldl_studio.core.engine.training import fit

    run_dir = cache / f"run-e{epochs}"
    if (run_dir / "checkpoint.pt").exists() and len(Run.open(run_dir).history()) >= epochs:
        return run_dir
    print(f"training the benchmark run ({epochs} epochs on the demo) ...", flush=True)
    table = load_dataset(csv, fmt="csv")
    config = TrainConfig(epochs=epochs, image_size=48, progress_every=10_000, seed=0)  # the defaults
    Run.create(run_dir, config, table)
    for _ in fit(table, config, run_dir):
        pass
    return run_dir


def build_photos(cache: Path, csv: Path, n: int, empty: int, seed: int = 0, subset: str = "test") -> pd.DataFrame:
    """Canvases of demo faces (JPEG) with their true boxes; cached by (n, empty, seed)."""
    from PIL import Image

    from uldl_studio.core.data.faces import paste_faces

    folder = cache / f"photos-{n}-{empty}-{seed}"
    index = folder / "index.csv"
    if index.exists():
        return pd.read_csv(index)
    frame = pd.read_csv(csv)
    frame = frame[frame["split"] == subset].head(n).reset_index(drop=True)
    faces = [np.asarray(Image.open(csv.parent / p)) for p in frame["path"]]
    canvases = paste_faces(faces, len(faces), empty=empty, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, c in enumerate(canvases):
        name = f"photo_{i:04d}.jpg"
        Image.fromarray(c.image).save(folder / name, quality=92)
        face = frame.iloc[c.face] if c.face is not None else None
        rows.append({"path": name, "face": "" if face is None else face["path"],
                     "label": "" if face is None else face["label"],
                     "true_label": "" if face is None else face["true_label"],
                     "box_x": -1 if c.box is None else c.box.x, "box_y": -1 if c.box is None else c.box.y,
                     "box_w": -1 if c.box is None else c.box.w, "box_h": -1 if c.box is None else c.box.h})
    out = pd.DataFrame(rows)
    out.to_csv(index, index=False)
    return out


def repeated_csv(path: Path, files: list[str], rows: int) -> Path:
    """A path list of ``rows`` rows cycling over ``files`` (distinct sample ids)."""
    if not path.exists() or sum(1 for _ in open(path)) != rows + 1:
        reps = [files[i % len(files)] for i in range(rows)]
        pd.DataFrame({"sample_id": [f"r{i:06d}" for i in range(rows)], "path": reps}).to_csv(path, index=False)
    return path


# ----------------------------------------------------------------------------- speed (workers)
def worker(args) -> None:
    import resource

    import torch

    torch.set_num_threads(args.threads)
    from uldl_studio.core.data.image_collection import read_collection
    from uldl_studio.core.runs.predict import PredictOptions, Predictor, predict, predict_collection
    from uldl_studio.core.engine.run import Run

    import threading

    def rss_now() -> float:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    run = Run.open(args.run)
    predictor = Predictor(run, "cpu")
    collection = read_collection(args.data)
    warm = np.zeros((8, predictor.channels, predictor.image_size, predictor.image_size), np.uint8)
    predictor.forward(warm)
    before = rss_now()
    peak = [before]
    done = threading.Event()

    def sample() -> None:  # the peak resident set while predicting, every 20 ms
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss_now())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    if args.worker == "table":  # the SampleTable path: every image decoded into one array first
        table = collection.table.assign(split="test", label=0)
        table.attrs = {"classes": list(predictor.classes), "root": collection.root, "format": "csv"}
        out = predict(run, table, batch_size=predictor.batch_size, device="cpu")
        rows = len(out)
    else:
        options = PredictOptions(faces=args.faces, chunk_size=args.chunk, device="cpu", workers=args.workers)
        rows = len(predict_collection(predictor, collection, options).table)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    peak[0] = max(peak[0], rss_now())
    report({"images": len(collection), "rows": rows, "seconds": seconds, "rss_before_mb": before,
            "rss_peak_mb": peak[0], "maxrss_process_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def speed(args, cache: Path, csv: Path, run_dir: Path) -> None:
    from PIL import Image

    demo = pd.read_csv(csv)
    crops_csv = repeated_csv(cache / f"crops-{args.rows}.csv", [str(csv.parent / p) for p in demo["path"]], args.rows)
    photos = build_photos(cache, csv, n=200, empty=0, seed=1)
    folder = cache / "photos-200-0-1"
    photo_files = [str(folder / p) for p in photos["path"]]
    photos_csv = repeated_csv(cache / f"photos-{args.rows}.csv", photo_files, args.rows)
    faces_csv = repeated_csv(cache / f"photos-{args.face_rows}.csv", photo_files, args.face_rows)
    with Image.open(photo_files[0]) as im:
        photo_bytes = im.width * im.height * len(im.getbands())
    with Image.open(csv.parent / demo["path"].iloc[0]) as im:
        crop_bytes = im.width * im.height * len(im.getbands())

    def case(label, data, mode, faces="off"):
        cmd = [sys.executable, __file__, "--worker", mode, "--run", str(run_dir), "--data", str(data),
               "--faces", faces, "--chunk", str(args.chunk), "--threads", str(args.threads),
               "--workers", str(args.workers)]
        result = run_worker(cmd, label)
        result["label"] = label
        return result

    print(f"\nspeed: {run_dir.name} (48 px grey input), chunks of {args.chunk} images, {args.workers} decode threads, "
          f"{args.threads} torch threads; each case in its own process", flush=True)
    cases = [
        (case("crops, streamed", crops_csv, "stream"), crop_bytes),
        (case("crops, SampleTable predict()", crops_csv, "table"), crop_bytes),
        (case("photos, streamed", photos_csv, "stream"), photo_bytes),
        (case("photos, --faces off", faces_csv, "stream"), photo_bytes),
        (case("photos, --faces detect", faces_csv, "stream", faces="detect"), photo_bytes),
    ]
    print("RSS: resident memory when the prediction starts (model loaded, collection listed) and its peak "
          "while predicting (sampled every 20 ms); 'decoded' is what the images take decoded at their own size, "
          "'inputs' at the model's 48x48")
    print(f"{'case':32s} {'images':>7s} {'rows':>7s} {'seconds':>8s} {'img/s':>7s} {'RSS start':>10s} "
          f"{'peak':>7s} {'decoded':>9s} {'inputs':>8s}")
    model_bytes = 48 * 48
    for r, per_image in cases:
        print(f"{r['label']:32s} {r['images']:7d} {r['rows']:7d} {r['seconds']:8.1f} "
              f"{r['images'] / r['seconds']:7.0f} {r['rss_before_mb']:8.0f}MB {r['rss_peak_mb']:5.0f}MB "
              f"{r['images'] * per_image / 2**20:7.0f}MB {r['images'] * model_bytes / 2**20:6.0f}MB", flush=True)


# ----------------------------------------------------------------------------- faces
def faces(args, cache: Path, csv: Path, run_dir: Path) -> None:
    from PIL import Image

    from uldl_studio.core.data.faces import Box, FaceDetector, finds, paste_faces
    from uldl_studio.core.data.image_collection import read_collection
    from uldl_studio.core.runs.predict import PredictOptions, Predictor, predict_collection
    from uldl_studio.core.engine.run import Run

    detector = FaceDetector()
    photos = build_photos(cache, csv, n=args.canvases, empty=args.empty, seed=0)
    folder = cache / f"photos-{args.canvases}-{args.empty}-0"
    has_face = photos["box_w"].to_numpy() > 0
    start = time.perf_counter()
    found = [detector.detect(np.asarray(Image.open(folder / p))) for p in photos["path"]]
    detect_s = (time.perf_counter() - start) / len(photos)
    truth = [Box(int(r.box_x), int(r.box_y), int(r.box_w), int(r.box_h)) for r in photos.itertuples()]
    hit = np.array([finds(t, f) if ok else False for t, f, ok in zip(truth, found, has_face)])
    false_faces = sum(len(f) for f, ok in zip(found, has_face) if not ok) + \
        sum(sum(not finds(t, [b]) for b in f) for t, f, ok in zip(truth, found, has_face) if ok)
    print(f"\nfaces: Haar cascade (OpenCV, haarcascade_frontalface_default), {detect_s * 1000:.0f} ms per 480x640 "
          f"canvas")
    print(f"demo faces in canvases: recall {hit.sum()}/{has_face.sum()} = {hit.sum() / has_face.sum():.3f}; "
          f"false faces {false_faces} (on {(~has_face).sum()} empty canvases and beside the true faces)")
    if (FERPLUS / "FER2013Test").is_dir():
        files = sorted((FERPLUS / "FER2013Test").glob("*.png"))[:args.canvases]
        fer = [np.asarray(Image.open(f).convert("L")) for f in files]
        canvases = paste_faces(fer, len(fer), seed=4, scale=(0.3, 0.6))
        fer_hit = np.mean([finds(c.box, detector.detect(c.image)) for c in canvases])
        print(f"FER+ test faces (48 px) upscaled into canvases: recall {fer_hit:.3f} on {len(fer)}")
    else:
        print(f"FER+ not found at {FERPLUS}: its recall is not measured")

    predictor = Predictor(Run.open(run_dir), "cpu")
    classes = predictor.classes
    originals = read_collection(csv)  # the demo crops themselves, predicted whole
    orig = predict_collection(predictor, originals).table.set_index("path")
    labelled = photos[has_face].reset_index(drop=True)
    given = np.array([classes.index(c) if c in classes else -1 for c in labelled["label"]])
    true = np.array([classes.index(c) if c in classes else -1 for c in labelled["true_label"]])
    orig_pred = orig.loc[[str(csv.parent / p) for p in labelled["face"]], "label"].to_numpy()
    print(f"\npredictions of {run_dir.name} on the {len(labelled)} pasted faces (accuracy against the given label / "
          f"the true majority label):")
    print(f"  original 64 px crops, whole image           : {np.mean(orig_pred == given):.3f} / "
          f"{np.mean(orig_pred == true):.3f}  (all {len(labelled)})")
    listing = cache / f"photos-{args.canvases}-{args.empty}-0.csv"
    pd.DataFrame({"sample_id": photos["path"], "path": [str(folder / p) for p in photos["path"]]}).to_csv(
        listing, index=False)
    whole = predict_collection(predictor, read_collection(listing)).table.set_index("sample_id")
    whole_pred = whole.loc[labelled["path"], "label"].to_numpy()
    print(f"  whole canvases, no face search            : {np.mean(whole_pred == given):.3f} / "
          f"{np.mean(whole_pred == true):.3f}  (all {len(labelled)})")
    for margin in args.margins:
        result = predict_collection(predictor, read_collection(listing),
                                    PredictOptions(faces="detect", face_margin=margin))
        table = result.table
        first = table[table["face_index"] == 0].set_index(table["sample_id"][table["face_index"] == 0]
                                                          .str.rsplit("#", n=1).str[0])
        rows = [i for i, p in enumerate(labelled["path"]) if p in first.index and
                finds(truth[int(np.flatnonzero(photos["path"] == p)[0])],
                      [Box(int(first.loc[p, "box_x"]), int(first.loc[p, "box_y"]), int(first.loc[p, "box_w"]),
                           int(first.loc[p, "box_h"]))])]
        pred = first.loc[labelled["path"].iloc[rows], "label"].to_numpy()
        print(f"  detected crops, margin {margin:.2f}              : {np.mean(pred == given[rows]):.3f} / "
              f"{np.mean(pred == true[rows]):.3f}  ({len(rows)} detected; the original crops of those: "
              f"{np.mean(orig_pred[rows] == given[rows]):.3f} / {np.mean(orig_pred[rows] == true[rows]):.3f})",
              flush=True)


def main() -> None:
    import warnings

    from uldl_studio.core.data.datasets.common import DatasetWarning

    warnings.simplefilter("ignore", DatasetWarning)  # the empty canvases' "no face" is expected here
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", default="all", choices=("all", "speed", "faces"))
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=8, help="epochs of the benchmark run (default 8)")
    parser.add_argument("--rows", type=int, default=30_000, help="rows of the large collections (default 30000)")
    parser.add_argument("--face-rows", type=int, default=1500, help="photos for the face-search speed (default 1500)")
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--workers", type=int, default=2, help="decoding / detection threads")
    parser.add_argument("--canvases", type=int, default=200)
    parser.add_argument("--empty", type=int, default=20)
    parser.add_argument("--margins", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3])
    # worker protocol
    parser.add_argument("--worker", default=None, choices=("stream", "table"))
    parser.add_argument("--run")
    parser.add_argument("--data")
    parser.add_argument("--faces", default="off")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    cache = args.cache or default_cache()
    cache.mkdir(parents=True, exist_ok=True)
    csv = build_demo(cache)
    run_dir = build_run(cache, csv, args.epochs)
    print(f"cache: {cache}")
    if args.part in ("all", "faces"):
        faces(args, cache, csv, run_dir)
    if args.part in ("all", "speed"):
        speed(args, cache, csv, run_dir)


if __name__ == "__main__":
    main()
