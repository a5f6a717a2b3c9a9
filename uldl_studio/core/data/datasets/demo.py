"""The built-in demo dataset: procedurally drawn grey faces with known ground truth.

Every sample has a *true* emotion distribution (a dominant emotion mixed with its neighbours
on the valence-arousal circumplex, with an ambiguity that varies per sample), a true
valence-arousal point, and one *given* hard label drawn from that distribution — so ambiguous
samples often carry a label that is not their majority emotion, like a single annotator's vote.
That makes the demo a dataset on which constructed label distributions and λ can be scored.

The face of a sample is drawn from shape parameters (mouth curvature / openness / width, eye
openness, brow height and inner-end angle, one-sided upper-lip raise, nose wrinkle) that are
the true distribution's blend of per-emotion prototypes, plus identity noise (face size, eye
spacing, skin/hair/background tones), pose noise (shift, rotation, scale) and pixel noise.

API (docs/contracts.md): ``generate_demo`` (arrays in memory), ``write_demo`` (generic CSV
layout on disk), ``load_demo`` (SampleTable from a cached copy on disk).
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from platformdirs import user_cache_dir

from uldl_studio.core.atomic import atomic_open
from uldl_studio.core.classes import centroid_matrix
from uldl_studio.core.table import READ_CSV_EXACT_FLOATS, DatasetError, make_table, ref_columns

DEMO_CLASSES: tuple[str, ...] = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear")
DEMO_VERSION = "v1"  # bump when the generator's output changes (it names the cache folder)
CACHE_ENV = "ULDL_STUDIO_CACHE"

# Share of each dominant emotion (mildly imbalanced, like real datasets).
CLASS_PRIOR = np.array([0.20, 0.19, 0.13, 0.13, 0.12, 0.10, 0.13])
N_NEIGHBOURS = 3  # circumplex neighbours a dominant emotion mixes with
SPLIT_FRACTIONS = (0.70, 0.15, 0.15)

# Shape parameters of each emotion's prototype face (rows follow DEMO_CLASSES).
PARAMS = ("mouth_curve", "mouth_open", "mouth_width", "eye_open", "brow_raise", "brow_inner", "lip_raise", "wrinkle")
PROTOTYPES = np.array([
    # curve  open  width  eye   brow  inner  lip   wrinkle
    [0.00, 0.00, 1.00, 0.75, 0.00, 0.00, 0.00, 0.00],   # neutral: flat
    [1.00, 0.35, 1.35, 0.60, 0.15, 0.00, 0.00, 0.00],   # happiness: wide upturned mouth
    [0.05, 1.00, 0.60, 1.25, 1.10, 0.20, 0.00, 0.00],   # surprise: round open mouth, high brows
    [-0.90, 0.00, 0.90, 0.55, 0.00, 1.00, 0.00, 0.00],  # sadness: down mouth, inner brows up
    [-0.35, 0.00, 0.70, 0.35, -0.70, -1.10, 0.00, 0.00],  # anger: brows down-in, narrow eyes
    [-0.45, 0.10, 0.90, 0.30, -0.35, -0.40, 1.00, 1.00],  # disgust: raised lip, wrinkle, squint
    [-0.25, 0.45, 1.35, 1.25, 0.85, 0.90, 0.00, 0.00],  # fear: wide eyes, raised brows, stretched mouth
])


# ----------------------------------------------------------------------------- ground truth
def circumplex_neighbours(classes=DEMO_CLASSES, k: int = N_NEIGHBOURS) -> np.ndarray:
    """(m, k) indices of each class's k nearest other classes by V-A centroid distance."""
    centroids = centroid_matrix(classes)
    dist = np.linalg.norm(centroids[:, None, :] - centroids[None, :, :], axis=-1)
    np.fill_diagonal(dist, np.inf)
    return np.argsort(dist, axis=1, kind="stable")[:, :k]


def _true_distributions(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dominant class, ambiguity and true (n, m) distributions."""
    m = len(DEMO_CLASSES)
    centroids = centroid_matrix(DEMO_CLASSES)
    neighbours = circumplex_neighbours()
    dominant = rng.choice(m, size=n, p=CLASS_PRIOR / CLASS_PRIOR.sum())
    # Ambiguity in [0, 1]: Beta(0.9, 1.8) puts many samples near clear and a tail near very
    # ambiguous; it is the share of mass moved from the dominant emotion to its neighbours.
    ambiguity = rng.beta(0.9, 1.8, size=n)
    moved = 0.75 * ambiguity
    # Neighbours closer on the circumplex get a larger Dirichlet concentration.
    nb = neighbours[dominant]  # (n, k)
    nb_dist = np.linalg.norm(centroids[nb] - centroids[dominant][:, None, :], axis=-1)
    concentration = 0.4 + 2.0 * np.exp(-(nb_dist / 0.6) ** 2)
    shares = rng.gamma(concentration)
    shares /= shares.sum(axis=1, keepdims=True)
    dist = np.zeros((n, m))
    rows = np.arange(n)
    dist[rows, dominant] = 1.0 - moved
    np.add.at(dist, (np.repeat(rows, nb.shape[1]), nb.ravel()), (moved[:, None] * shares).ravel())
    # A little mass on every class, as crowd votes have; renormalise.
    floor = rng.dirichlet(np.ones(m), size=n) * (0.02 + 0.04 * ambiguity[:, None])
    dist = dist + floor
    dist /= dist.sum(axis=1, keepdims=True)
    return dominant, ambiguity, dist


def _draw_from(rng: np.random.Generator, dist: np.ndarray) -> np.ndarray:
    """One class index per row, drawn from the row's distribution (vectorised)."""
    cumulative = np.cumsum(dist, axis=1)
    u = rng.random(len(dist))[:, None] * cumulative[:, -1:]
    return np.minimum((u >= cumulative).sum(axis=1), dist.shape[1] - 1)


def _splits(rng: np.random.Generator, n: int) -> np.ndarray:
    n_train = int(round(SPLIT_FRACTIONS[0] * n))
    n_valid = int(round(SPLIT_FRACTIONS[1] * n))
    names = np.array(["train"] * n_train + ["valid"] * n_valid + ["test"] * (n - n_train - n_valid))
    return names[rng.permutation(n)]


# ----------------------------------------------------------------------------- drawing
def _face_parameters(rng: np.random.Generator, dist: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample drawing parameters (unit coordinates: the canvas is [0, 1]²)."""
    n = len(dist)
    expression = dist @ PROTOTYPES + rng.normal(0.0, 0.07, size=(n, len(PARAMS)))
    p = {name: expression[:, j] for j, name in enumerate(PARAMS)}
    p["eye_open"] = np.clip(p["eye_open"], 0.2, 1.4)
    p["mouth_open"] = np.clip(p["mouth_open"], 0.0, 1.2)
    p["mouth_width"] = np.clip(p["mouth_width"], 0.45, 1.5)
    p["lip_raise"] = np.clip(p["lip_raise"], 0.0, 1.2)
    p["wrinkle"] = np.clip(p["wrinkle"], 0.0, 1.2)
    # identity
    p["face_w"] = rng.uniform(0.27, 0.33, n)
    p["face_h"] = p["face_w"] * rng.uniform(1.18, 1.36, n)
    p["face_cy"] = rng.uniform(0.52, 0.55, n)
    p["eye_dx"] = rng.uniform(0.115, 0.14, n)
    p["eye_y"] = p["face_cy"] - p["face_h"] * rng.uniform(0.12, 0.2, n)
    p["eye_w"] = rng.uniform(0.05, 0.062, n)
    p["mouth_y"] = p["face_cy"] + p["face_h"] * rng.uniform(0.45, 0.55, n)
    p["brow_w"] = rng.uniform(0.018, 0.026, n)
    p["skin"] = rng.uniform(125, 200, n)
    p["hair"] = np.where(rng.random(n) < 0.75, rng.uniform(20, 80, n), rng.uniform(150, 235, n))
    p["hair_h"] = rng.uniform(0.2, 0.55, n)  # how far the hair comes down the face sides
    background = rng.uniform(40, 230, n)
    # keep the background apart from the skin so the face outline stays visible
    too_close = np.abs(background - p["skin"]) < 45
    background[too_close] = np.where(p["skin"][too_close] > 140, p["skin"][too_close] - 80, p["skin"][too_close] + 60)
    p["background"] = background
    # pose
    p["angle"] = np.clip(rng.normal(0.0, 4.0, n), -10, 10)  # degrees
    p["scale"] = rng.uniform(0.94, 1.06, n)
    p["shift_x"] = rng.normal(0.0, 0.015, n)
    p["shift_y"] = rng.normal(0.0, 0.015, n)
    # pixel noise
    p["noise"] = rng.uniform(2.0, 9.0, n)
    return p


def _mouth_polygon(cx, cy, half_w, curve, open_, lip_raise, steps=17):
    """Upper and lower lip lines (unit coordinates) of a mouth."""
    t = np.linspace(-1.0, 1.0, steps)
    x = cx + half_w * t
    mid = cy - curve * 0.045 * t**2 + curve * 0.012  # corners up when curve > 0
    gap = open_ * 0.085 * np.sqrt(np.clip(1 - t**2, 0, 1))
    upper = mid - gap * 0.45
    lower = mid + gap * 0.55
    # disgust: upper lip raised on the right side of the face (image left)
    upper = upper - lip_raise * 0.035 * np.exp(-(((t + 0.4) / 0.4) ** 2))
    return x, upper, lower


def _render_face(p: dict[str, np.ndarray], i: int, canvas: int, size: int) -> np.ndarray:
    S = canvas

    def xy(x, y):
        return (float(x) * S, float(y) * S)

    def box(cx, cy, rx, ry):
        return [cx * S - rx * S, cy * S - ry * S, cx * S + rx * S, cy * S + ry * S]

    skin = int(p["skin"][i])
    bg = int(p["background"][i])
    dark = max(skin - 110, 10)
    img = Image.new("L", (S, S), bg)
    draw = ImageDraw.Draw(img)
    cx, cy = 0.5, float(p["face_cy"][i])
    fw, fh = float(p["face_w"][i]), float(p["face_h"][i])

    # neck and shoulders, hair behind the head, then the face
    draw.rectangle(box(cx, cy + fh + 0.08, fw * 0.45, 0.12), fill=max(skin - 25, 0))
    draw.ellipse(box(cx, cy + fh + 0.30, fw * 1.7, 0.2), fill=int(p["hair"][i]) // 2 + bg // 3)
    hair = int(p["hair"][i])
    draw.ellipse(box(cx, cy - fh * 0.12, fw * 1.1, fh * 0.98), fill=hair)
    hair_low = cy - fh * 0.12 + fh * 0.98 * float(p["hair_h"][i])
    draw.rectangle([(cx - fw * 1.1) * S, (cy - fh * 0.12) * S, (cx + fw * 1.1) * S, hair_low * S], fill=hair)
    draw.ellipse(box(cx, cy, fw, fh), fill=skin)
    # fringe: the hair covers the top of the forehead
    draw.chord(box(cx, cy - fh * 0.62, fw * 0.98, fh * 0.45), 180, 360, fill=hair)

    # eyes
    eye_y = float(p["eye_y"][i])
    ew = float(p["eye_w"][i])
    eh = 0.036 * float(p["eye_open"][i])
    sclera = min(skin + 70, 250)
    for side in (-1, 1):
        ex = cx + side * float(p["eye_dx"][i])
        draw.ellipse(box(ex, eye_y, ew, eh), fill=sclera, outline=dark, width=max(1, S // 96))
        pr = min(0.024, eh * 1.05)
        draw.ellipse(box(ex, eye_y + 0.002, 0.022, pr), fill=25)
        # upper lid line: thicker when the eye is narrowed
        draw.arc(box(ex, eye_y, ew * 1.05, eh * 1.1), 190, 350, fill=dark, width=max(1, S // 64))

    # brows: outer end at brow height, inner end raised (sad/fear) or lowered (anger)
    brow_y = eye_y - 0.07 - 0.035 * float(p["brow_raise"][i])
    inner = 0.03 * float(p["brow_inner"][i])
    bw = max(2, int(round(float(p["brow_w"][i]) * S)))
    for side in (-1, 1):
        ex = cx + side * float(p["eye_dx"][i])
        outer_x = ex + side * ew * 1.2
        inner_x = cx + side * 0.035
        mid_x = (outer_x + inner_x) / 2
        draw.line([xy(outer_x, brow_y + 0.012), xy(mid_x, brow_y - 0.004 - inner * 0.4), xy(inner_x, brow_y - inner)],
                  fill=dark, width=bw, joint="curve")

    # nose, with wrinkle lines across its bridge for disgust
    nose_bottom = (eye_y + float(p["mouth_y"][i])) / 2 + 0.02
    shade = max(skin - 45, 0)
    draw.line([xy(cx + 0.005, eye_y + 0.03), xy(cx + 0.018, nose_bottom - 0.01), xy(cx - 0.005, nose_bottom)],
              fill=shade, width=max(1, S // 64))
    for side in (-1, 1):
        draw.ellipse(box(cx + side * 0.025, nose_bottom, 0.01, 0.006), fill=max(skin - 80, 0))
    wrinkle = float(p["wrinkle"][i])
    if wrinkle > 0.15:
        tone = int(skin - 70 * min(wrinkle, 1.0))
        for k in range(3):
            wy = eye_y + 0.015 + 0.017 * k
            draw.arc(box(cx, wy + 0.02, 0.035, 0.02), 220, 320, fill=tone, width=max(1, S // 80))
        # cheek raise lines beside the nose
        for side in (-1, 1):
            draw.line([xy(cx + side * 0.04, nose_bottom - 0.03), xy(cx + side * 0.07, nose_bottom + 0.01)],
                      fill=tone, width=max(1, S // 96))

    # mouth
    half_w = 0.085 * float(p["mouth_width"][i])
    x, upper, lower = _mouth_polygon(cx, float(p["mouth_y"][i]), half_w, float(p["mouth_curve"][i]),
                                     float(p["mouth_open"][i]), float(p["lip_raise"][i]))
    lip = max(skin - 90, 5)
    upper_pts = [xy(a, b) for a, b in zip(x, upper)]
    lower_pts = [xy(a, b) for a, b in zip(x[::-1], lower[::-1])]
    if float(np.max(lower - upper)) * S > 2.0:
        draw.polygon(upper_pts + lower_pts, fill=30, outline=lip)
    draw.line(upper_pts, fill=lip, width=max(2, S // 48), joint="curve")
    if float(p["mouth_curve"][i]) > 0.45:  # smile lines at the mouth corners
        for side in (-1, 1):
            corner = (x[0] if side < 0 else x[-1], upper[0] if side < 0 else upper[-1])
            draw.arc(box(corner[0] + side * 0.005, corner[1] - 0.005, 0.02, 0.03),
                     90 if side > 0 else 180, 270 if side < 0 else 360, fill=shade, width=max(1, S // 96))

    # pose: rotate about the face centre, scale and shift (inverse affine for PIL)
    theta = math.radians(float(p["angle"][i]))
    scale = float(p["scale"][i])
    c, s = math.cos(theta) / scale, math.sin(theta) / scale
    ox, oy = S / 2, cy * S
    tx, ty = float(p["shift_x"][i]) * S, float(p["shift_y"][i]) * S
    a, b = c, s
    d, e = -s, c
    coeffs = (a, b, ox - a * (ox + tx) - b * (oy + ty), d, e, oy - d * (ox + tx) - e * (oy + ty))
    img = img.transform((S, S), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR, fillcolor=bg)
    img = img.resize((size, size), Image.Resampling.BOX)
    return np.asarray(img, dtype=np.uint8)


# ----------------------------------------------------------------------------- public API
def generate_demo(n: int = 3000, seed: int = 0, size: int = 64) -> tuple[np.ndarray, pd.DataFrame]:
    """Draw the demo dataset in memory.

    Returns ``images`` (n, size, size) uint8 and a frame with ``sample_id``, ``split``,
    ``label`` (given, int), ``true_label`` (argmax of the true distribution, int),
    ``valence``, ``arousal`` (true point, in [-1, 1]) and ``ref_<class>`` (true distribution).
    Deterministic for a given (n, seed, size).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    rng = np.random.default_rng(seed)
    _dominant, _ambiguity, dist = _true_distributions(rng, n)
    true_label = dist.argmax(axis=1)
    label = _draw_from(rng, dist)
    va = dist @ centroid_matrix(DEMO_CLASSES) + rng.normal(0.0, 0.06, size=(n, 2))
    va = np.clip(va, -1.0, 1.0)
    split = _splits(rng, n)
    params = _face_parameters(rng, dist)

    canvas = size * 2  # draw at 2x and box-filter down: cheap antialiasing
    images = np.empty((n, size, size), dtype=np.uint8)
    for i in range(n):
        images[i] = _render_face(params, i, canvas, size)
    noisy = images.astype(np.float32) + rng.normal(0.0, 1.0, size=images.shape).astype(np.float32) * params["noise"][:, None, None].astype(np.float32)
    images = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)

    width = max(5, len(str(n - 1)))
    frame = pd.DataFrame({
        "sample_id": [f"demo_{i:0{width}d}" for i in range(n)],
        "split": split,
        "label": label.astype(np.int64),
        "true_label": true_label.astype(np.int64),
        "valence": va[:, 0],
        "arousal": va[:, 1],
    })
    for j, col in enumerate(ref_columns(DEMO_CLASSES)):
        frame[col] = dist[:, j]
    return images, frame


def write_demo(out_dir: str | Path, n: int = 3000, seed: int = 0, size: int = 64) -> Path:
    """Write the demo in the generic CSV layout; returns the path of ``labels.csv``.

    ``out_dir/images/<sample_id>.png`` and ``out_dir/labels.csv`` with columns sample_id, path
    (relative to out_dir), label (class name), split, valence, arousal, true_label (name),
    ref_<class>… Floats are written with repr precision (reading them back gives the same
    values). labels.csv is written last, so its presence marks a complete folder.
    """
    out_dir = Path(out_dir)
    images, frame = generate_demo(n=n, seed=seed, size=size)
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    rel_paths = [f"images/{sid}.png" for sid in frame["sample_id"]]
    for img, rel in zip(images, rel_paths):
        Image.fromarray(img).save(out_dir / rel, compress_level=1)
    names = np.asarray(DEMO_CLASSES)
    csv = pd.DataFrame({
        "sample_id": frame["sample_id"],
        "path": rel_paths,
        "label": names[frame["label"].to_numpy()],
        "split": frame["split"],
        "valence": frame["valence"],
        "arousal": frame["arousal"],
        "true_label": names[frame["true_label"].to_numpy()],
    })
    for col in ref_columns(DEMO_CLASSES):
        csv[col] = frame[col]
    csv_path = out_dir / "labels.csv"
    # float_format=None: pandas writes repr(float), the shortest exact round-trip form
    with atomic_open(csv_path, "w", newline="") as handle:
        csv.to_csv(handle, index=False, float_format=None)
    return csv_path


def demo_cache_dir(n: int = 3000, seed: int = 0, cache_dir: str | Path | None = None) -> Path:
    """Folder of the cached demo: ``<cache root>/demo-<n>-<seed>-v1``.

    The root is ``cache_dir``, else ``$ULDL_STUDIO_CACHE``, else the platform's user cache
    folder for ``uldl-studio``.
    """
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_ENV)
    if not cache_dir:
        cache_dir = user_cache_dir("uldl-studio")
    return Path(cache_dir) / f"demo-{n}-{seed}-{DEMO_VERSION}"


def load_demo(n: int = 3000, seed: int = 0, cache_dir: str | Path | None = None) -> pd.DataFrame:
    """The demo as a SampleTable (``fmt="demo"``, absolute image paths).

    Writes the demo into the cache folder once (into a temporary folder beside it, then
    moved in with ``os.replace``, so a crash never leaves a half-written demo) and reuses it.
    Extra columns: ``true_label`` (int) and ``ref_<class>`` (the true distribution).
    """
    folder = demo_cache_dir(n, seed, cache_dir)
    csv_path = folder / "labels.csv"
    if not csv_path.is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        if folder.exists():  # left by something other than this function: start over
            shutil.rmtree(folder, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
        try:
            write_demo(tmp, n=n, seed=seed)
            try:
                os.replace(tmp, folder)
            except OSError:
                if not csv_path.is_file():  # not a concurrent writer that won the race
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return _read_demo_csv(csv_path)


def read_demo(path: str | Path) -> pd.DataFrame:
    """Read a demo written by ``write_demo`` (its folder or its ``labels.csv``)."""
    path = Path(path)
    csv_path = path / "labels.csv" if path.is_dir() else path
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path}: no demo labels here (expected the labels.csv written by demo-data)")
    return _read_demo_csv(csv_path)


def _read_demo_csv(csv_path: Path) -> pd.DataFrame:
    root = csv_path.parent
    try:
        frame = pd.read_csv(csv_path, dtype={"sample_id": str, "path": str}, **READ_CSV_EXACT_FLOATS)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{csv_path}: cannot read the demo labels ({exc})") from exc
    index = {name: j for j, name in enumerate(DEMO_CLASSES)}
    for col in ("label", "true_label"):
        unknown = sorted(set(frame[col]) - set(index))
        if unknown:
            raise DatasetError(f"{csv_path}: unknown {col} names {unknown}")
        frame[col] = frame[col].map(index).astype(np.int64)
    frame["path"] = [str(root / rel) for rel in frame["path"]]
    return make_table(frame, DEMO_CLASSES, root=root, fmt="demo")
