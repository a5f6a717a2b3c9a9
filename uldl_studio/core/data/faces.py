"""Faces in raw photos: detection, crops with a margin, and when to detect at all.

The detector is OpenCV's frontal-face Haar cascade (Viola-Jones), whose model file ships
inside the ``opencv-python-headless`` wheel (``cv2.data.haarcascades``), so nothing is
downloaded at run time. The 4.x wheels ship the cascades; the 5.0 wheel ships none, hence the
``<5`` pin in ``pyproject.toml``. OpenCV's stronger YuNet detector (``cv2.FaceDetectorYN``) is in
the wheel, but its ONNX model is not, so it is not used.

* :class:`FaceDetector` ``.detect(image) -> list[Box]``: boxes in the source image's pixels,
  largest face first. Large images are shrunk to ``max_side`` pixels for the search (the
  cascade's cost grows with the pixel count) and the boxes scaled back. One cascade per
  thread: ``detect`` may be called from several threads at once.
* A face must stand out from the clutter. The cascade's raw windows are grouped as OpenCV
  does (``minNeighbors``); on a face nearly all raw windows fall into the face's group, while
  blotchy noise or texture fires windows all over the image and only by chance gathers a few
  into a group. A group is kept only when the raw windows outside every kept group number
  at most ``max_clutter`` times its own. Measured on 288 noise images (blurred or blocky
  random noise, where the plain cascade fired on 58): 4 still gave a face; on 200 FER+ faces
  pasted into canvases 150 found before, 149 after; on 40 demo canvases 38 before and after.
* :func:`crop_face`: the square around a box grown by ``margin`` (a fraction of the box side
  on each side), padded by repeating the border where it leaves the image.
* :func:`needs_detection`: ``--faces auto`` detects only in images whose short side is more
  than ``factor`` times the model's input size; smaller images are taken as face crops already.

Measured on the project's own test canvases (``bench/predict.py faces``): the cascade found
197 of 200 drawn demo faces and 74 % of FER+'s 48 px faces upscaled into canvases; docs/benchmarks.md,
"Prediction speed, faces", has the numbers.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np

from uldl_studio.core.table import DatasetError

CASCADE = "haarcascade_frontalface_default.xml"
GROUP_EPS = 0.2          # OpenCV's grouping of raw windows in detectMultiScale
MAX_CLUTTER = 1.0        # stray raw windows allowed per raw window of a face's group
FACE_MODES = ("off", "auto", "detect")
DEFAULT_MARGIN = 0.1
AUTO_FACTOR = 3.0
INSTALL_HINT = "pip install 'opencv-python-headless>=4.8,<5'"


@dataclass(frozen=True)
class Box:
    """A face in source pixels: top-left corner and size."""

    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h


def _cv2():
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise DatasetError(f"face detection needs OpenCV ({INSTALL_HINT})") from exc
    return cv2


def cascade_path(name: str = CASCADE) -> str:
    """The cascade file inside the installed OpenCV wheel; DatasetError when it is not there."""
    cv2 = _cv2()
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = os.path.join(folder, name) if folder else ""
    if not path or not os.path.isfile(path):
        raise DatasetError(f"face detection: OpenCV {cv2.__version__} has no {name} (the 5.x wheels ship no "
                           f"Haar cascades; {INSTALL_HINT})")
    return path


def to_grey(image: np.ndarray) -> np.ndarray:
    """uint8 HxW: colour images through ITU-R 601 luma (what ``core.images`` uses too)."""
    image = np.asarray(image)
    if image.ndim == 3:
        if image.shape[2] == 1:
            return np.ascontiguousarray(image[:, :, 0])
        rgb = image[:, :, :3].astype(np.float32)
        grey = rgb[:, :, 0] * 0.299 + rgb[:, :, 1] * 0.587 + rgb[:, :, 2] * 0.114
        return np.clip(np.round(grey), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image, dtype=np.uint8)


class FaceDetector:
    """Frontal faces with OpenCV's Haar cascade (see the module docstring)."""

    def __init__(self, cascade: str = CASCADE, *, scale_factor: float = 1.1, min_neighbors: int = 5,
                 min_size: int = 24, max_side: int = 1024, equalize: bool = False,
                 max_clutter: float | None = MAX_CLUTTER) -> None:
        self.path = cascade_path(cascade)
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.max_clutter = None if max_clutter is None else float(max_clutter)
        self.min_size = int(min_size)
        self.max_side = int(max_side)
        self.equalize = bool(equalize)
        self._local = threading.local()
        self._classifier()  # fail now, not in a worker, when the file cannot be loaded

    def _classifier(self):
        classifier = getattr(self._local, "classifier", None)
        if classifier is None:
            cv2 = _cv2()
            classifier = cv2.CascadeClassifier(self.path)
            if classifier.empty():
                raise DatasetError(f"{self.path}: OpenCV could not load the face cascade")
            self._local.classifier = classifier
        return classifier

    def detect(self, image: np.ndarray) -> list[Box]:
        """Faces in ``image`` (uint8 HxW or HxWx3), largest first, in ``image``'s pixels."""
        cv2 = _cv2()
        grey = to_grey(image)
        h, w = grey.shape
        scale = min(1.0, self.max_side / max(h, w)) if self.max_side > 0 else 1.0
        small = grey if scale == 1.0 else cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                     interpolation=cv2.INTER_AREA)
        if self.equalize:
            small = cv2.equalizeHist(small)
        found = self._search(small)
        boxes = []
        for bx, by, bw, bh in (np.asarray(found).reshape(-1, 4) if len(found) else []):
            x0, y0 = int(round(bx / scale)), int(round(by / scale))
            x1, y1 = min(w, int(round((bx + bw) / scale))), min(h, int(round((by + bh) / scale)))
            if x1 > x0 and y1 > y0:
                boxes.append(Box(x0, y0, x1 - x0, y1 - y0))
        return sorted(boxes, key=lambda b: (-b.area, b.y, b.x))

    def _search(self, grey: np.ndarray) -> np.ndarray:
        """Boxes (N x 4) in ``grey``'s pixels: the cascade's raw windows grouped as
        ``detectMultiScale`` groups them, minus the groups that do not stand out from the
        stray windows (``max_clutter``, see the module docstring)."""
        cv2 = _cv2()
        classifier = self._classifier()
        size = (self.min_size, self.min_size)
        if self.max_clutter is None:
            found = classifier.detectMultiScale(grey, scaleFactor=self.scale_factor,
                                                minNeighbors=self.min_neighbors, minSize=size)
            return np.asarray(found, dtype=np.int64).reshape(-1, 4)
        raw = classifier.detectMultiScale(grey, scaleFactor=self.scale_factor, minNeighbors=0, minSize=size)
        raw = np.asarray(raw, dtype=np.int64).reshape(-1, 4)
        if not len(raw):
            return raw
        groups, counts = cv2.groupRectangles(raw.tolist(), self.min_neighbors, GROUP_EPS)
        groups = np.asarray(groups, dtype=np.int64).reshape(-1, 4)
        counts = np.asarray(counts, dtype=np.int64).reshape(-1)
        stray = len(raw) - int(counts.sum())
        return groups[stray <= self.max_clutter * counts]


def crop_face(image: np.ndarray, box: Box, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """The square around ``box`` grown by ``margin`` · side on each side (border repeated outside)."""
    image = np.asarray(image)
    side = max(box.w, box.h)
    grown = max(1, int(round(side * (1.0 + 2.0 * margin))))
    cx, cy = box.x + box.w / 2.0, box.y + box.h / 2.0
    x0, y0 = int(round(cx - grown / 2.0)), int(round(cy - grown / 2.0))
    x1, y1 = x0 + grown, y0 + grown
    h, w = image.shape[:2]
    crop = image[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]
    pad = ((max(0, -y0), max(0, y1 - h)), (max(0, -x0), max(0, x1 - w)))
    if any(p for pair in pad for p in pair):
        crop = np.pad(crop, pad + ((0, 0),) * (image.ndim - 2), mode="edge")
    return np.ascontiguousarray(crop)


def needs_detection(shape: tuple[int, ...], input_size: int, factor: float = AUTO_FACTOR) -> bool:
    """``--faces auto``: True when the image's short side exceeds ``factor`` × the model's input."""
    return min(int(shape[0]), int(shape[1])) > factor * int(input_size)


# ----------------------------------------------------------------------------- a synthetic test set
@dataclass
class Canvas:
    """A made-up raw photo: ``image`` (uint8 HxW) and where the pasted face is (None: no face)."""

    image: np.ndarray
    box: Box | None
    face: int | None        # index of the pasted face in the faces given


def paste_faces(faces, n: int, *, empty: int = 0, size: tuple[int, int] = (480, 640),
                scale: tuple[float, float] = (0.2, 0.5), seed: int = 0) -> list[Canvas]:
    """``n`` canvases, each with one of ``faces`` (uint8 HxW crops, cycled) pasted at a random
    position and scale (``scale`` × the canvas's short side), then ``empty`` canvases with no
    face. Backgrounds are smooth random blobs plus pixel noise; the pasted face gets the same
    noise. Deterministic for a seed. For measuring detection (``bench/predict.py faces``) and its tests.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = size
    out = []
    for i in range(n + empty):
        coarse = rng.normal(0.0, 1.0, (6, 8))
        base = np.asarray(Image.fromarray(coarse.astype(np.float32), "F").resize((w, h), Image.Resampling.BICUBIC))
        canvas = 115.0 + 35.0 * base / max(1e-6, float(np.abs(base).max()))
        box = index = None
        if i < n:
            index = i % len(faces)
            face = np.asarray(faces[index])
            side = int(rng.uniform(*scale) * min(h, w))
            pasted = np.asarray(Image.fromarray(face).resize((side, side), Image.Resampling.BILINEAR), np.float64)
            x, y = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
            canvas[y:y + side, x:x + side] = pasted
            box = Box(x, y, side, side)
        canvas += rng.normal(0.0, 6.0, canvas.shape)
        out.append(Canvas(np.clip(np.round(canvas), 0, 255).astype(np.uint8), box, index))
    return out


def finds(truth: Box, found: list[Box]) -> bool:
    """A detection matches a true face box when its centre lies inside it and its side is
    between 0.4 and 1.5 times the true side."""
    for b in found:
        cx, cy = b.x + b.w / 2, b.y + b.h / 2
        if truth.x <= cx <= truth.x + truth.w and truth.y <= cy <= truth.y + truth.h \
                and 0.4 <= b.w / truth.w <= 1.5:
            return True
    return False
