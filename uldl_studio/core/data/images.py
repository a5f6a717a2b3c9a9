"""Image decoding, model inputs, bulk loading with problem reports, and a thumbnail cache.

* ``decode_image`` turns any file Pillow reads (grey, RGB, RGBA, LA, palette, 1-bit, 16-bit,
  32-bit int or float, CMYK...) or a FER2013 pixel string into ``uint8`` HxW (grey) or HxWx3.
  16-bit values are scaled with ``round(v / 257)`` so 65535 → 255 and 0 → 0; alpha is dropped
  after compositing over black; EXIF orientation is applied. Failures raise
  :class:`ImageReadError` (a ``DatasetError``) with a short ``reason``.
* ``to_model_input`` squashes (no crop: face datasets are already cropped) to a square with
  PIL bilinear resampling and converts to 1 channel (ITU-R 601 luma) or 3 channels.
* ``load_images`` decodes a whole table with a thread pool (Pillow releases the GIL while
  decoding) into one preallocated array; it never raises half-way: each failure becomes an
  :class:`ImageProblem` and a zero image. Only a ``cancel`` stops it (``Cancelled``),
  checked before every image.
* ``ThumbnailCache``: in-memory LRU, plus an optional on-disk cache keyed by a hash of the
  file's path, mtime and size (so an edited file gets a new thumbnail).
"""
from __future__ import annotations

import functools
import hashlib
import os
import threading
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from platformdirs import user_cache_dir

from uldl_studio.core.atomic import atomic_open
from uldl_studio.core.cancel import Cancelled, cancel_requested
from uldl_studio.core.data.datasets.common import DatasetWarning, read_csv_text, require_columns
from uldl_studio.core.table import DatasetError

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is a problem to report, not grey pixels
Image.MAX_IMAGE_PIXELS = 200_000_000

FER2013_SIDE = 48


class ImageReadError(DatasetError):
    """An image cannot be decoded; ``reason`` is short ("missing file", "not an image"...)."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass
class ImageProblem:
    path: str
    reason: str
    row: int  # position of the row in the table given to load_images


# --------------------------------------------------------------------------- decoding
def decode_pixels(pixels: str, path: str = "<pixels>") -> np.ndarray:
    """FER2013 pixel string (space-separated 0..255, a square count, 48×48 = 2304) → uint8 HxW."""
    try:
        values = np.array(str(pixels).split(), dtype=np.int64)
    except (ValueError, OverflowError):
        raise ImageReadError(path, "pixel string holds something other than integers") from None
    side = int(round(np.sqrt(values.size)))
    if values.size == 0 or side * side != values.size:
        raise ImageReadError(path, f"pixel string has {values.size} values, expected {FER2013_SIDE * FER2013_SIDE} "
                                   f"(48x48)")
    if values.min() < 0 or values.max() > 255:
        raise ImageReadError(path, "pixel values outside 0..255")
    return values.astype(np.uint8).reshape(side, side)


@functools.lru_cache(maxsize=2)
def _csv_pixels(csv_path: str, mtime_ns: int) -> pd.Series:
    frame = read_csv_text(Path(csv_path), wanted=("pixels",))
    col = require_columns(frame, ("pixels",), csv_path)["pixels"]
    return frame[col]


def _pixels_from_csv(path: str) -> str:
    """Pixels of ``<csv>#<row>`` read from the CSV (cached per file) when the table has none."""
    csv_path, _, row = path.rpartition("#")
    try:
        series = _csv_pixels(csv_path, os.stat(csv_path).st_mtime_ns)
        return series.iloc[int(row)]
    except FileNotFoundError:
        raise ImageReadError(path, "missing file") from None
    except (ValueError, IndexError, DatasetError):
        raise ImageReadError(path, "no such row with a pixels column in the CSV") from None


def _to_uint8(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img).astype(np.int64)
        if mode == "I" and (arr.min() < 0 or arr.max() > 65535):
            arr = np.clip(arr, 0, None)
            top = max(int(arr.max()), 1)
            return np.round(arr * (255.0 / top)).astype(np.uint8)
        if mode == "I" and arr.max() <= 255:
            return arr.astype(np.uint8)  # 8-bit content stored as 32-bit int
        return ((arr + 128) // 257).astype(np.uint8)  # round(v / 257): 16-bit → 8-bit
    if mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        if arr.max() <= 1.0:
            arr = arr * 255.0
        return np.clip(np.round(arr), 0, 255).astype(np.uint8)
    if mode == "1":
        return np.asarray(img.convert("L"))
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(black, rgba).convert("RGB")
        if mode in ("LA", "La"):
            img = img.convert("L")
        mode = img.mode
    if mode == "L":
        return np.asarray(img)
    if mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)


def decode_image(path: str, pixels: str | None = None) -> np.ndarray:
    """uint8 HxW (grey) or HxWx3 (colour) of an image file or a FER2013 pixel string.

    ``pixels`` (a non-empty string) wins over ``path``; a ``<csv>#<row>`` path without pixels
    reads the row from the CSV. Raises :class:`ImageReadError` with a short reason.
    """
    path = str(path)
    if pixels is not None and not (isinstance(pixels, float) and np.isnan(pixels)) and str(pixels).strip():
        return decode_pixels(pixels, path)
    if "#" in path and not os.path.exists(path) and path.rpartition("#")[0].lower().endswith(".csv"):
        return decode_pixels(_pixels_from_csv(path), path)
    try:
        with Image.open(path) as img:
            img.load()
            try:
                img = ImageOps.exif_transpose(img) or img
            except Exception:  # noqa: BLE001 - a broken EXIF block does not spoil the pixels
                pass
            arr = _to_uint8(img)
    except FileNotFoundError:
        raise ImageReadError(path, "missing file") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a folder, not an image") from None
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image (unrecognised file format)") from None
    except Image.DecompressionBombError:
        raise ImageReadError(path, "image too large") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc).lower()
        if "truncated" in text or isinstance(exc, EOFError):
            raise ImageReadError(path, f"truncated image ({exc})") from None
        raise ImageReadError(path, f"corrupt image ({exc})") from None
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise ImageReadError(path, f"unexpected image shape {arr.shape}")
    return np.ascontiguousarray(arr)


def to_model_input(img: np.ndarray, size: int, channels: int) -> np.ndarray:
    """uint8 (channels, size, size): bilinear squash to a square, 1 (luma) or 3 channels."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3 and channels == 1:
        img = np.asarray(Image.fromarray(img[:, :, :3], "RGB").convert("L"))
    if img.shape[0] != size or img.shape[1] != size:
        pil = Image.fromarray(img)
        img = np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR))
    if img.ndim == 2:
        img = img[None] if channels == 1 else np.repeat(img[None], 3, axis=0)
    else:
        img = img.transpose(2, 0, 1)
    return np.ascontiguousarray(img, dtype=np.uint8)


# --------------------------------------------------------------------------- bulk loading
def load_images(table: pd.DataFrame, size: int, channels: int, workers: int = 2,
                progress: Callable[[int, int], None] | None = None,
                cancel: Callable[[], bool] | threading.Event | None = None) -> tuple[np.ndarray, list[ImageProblem]]:
    """Decode every row of ``table`` into uint8 (N, channels, size, size).

    Rows that fail are zero images and are listed as :class:`ImageProblem` (``row`` = position
    in ``table``). ``progress(done, total)`` is called from the calling thread after each chunk.

    ``cancel`` (a callable returning True, or a ``threading.Event``) is checked before every
    image, from the decoding threads too: once it is set, each thread stops before its next
    image, chunks not started are dropped, and ``Cancelled`` is raised when the threads
    have ended (at most one image per thread is decoded after the cancel).
    """
    paths = table["path"].astype(str).tolist()
    pixels = table["pixels"].tolist() if "pixels" in table else [None] * len(paths)
    n = len(paths)
    out = np.zeros((n, channels, size, size), dtype=np.uint8)
    chunk = 256

    def work(start: int) -> list[ImageProblem]:
        problems = []
        for i in range(start, min(start + chunk, n)):
            if cancel is not None and cancel_requested(cancel):
                raise Cancelled(f"while decoding the images (after {i - start} images of the chunk at {start})")
            try:
                out[i] = to_model_input(decode_image(paths[i], pixels[i]), size, channels)
            except ImageReadError as exc:
                problems.append(ImageProblem(paths[i], exc.reason, i))
            except Exception as exc:  # noqa: BLE001 - never stop half-way through a dataset
                problems.append(ImageProblem(paths[i], f"{type(exc).__name__}: {exc}", i))
        return problems

    problems: list[ImageProblem] = []
    starts = range(0, n, chunk)
    if workers <= 1 or n <= chunk:
        for start in starts:
            problems.extend(work(start))
            if progress is not None:
                progress(min(start + chunk, n), n)
    else:
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="uldl-images")
        try:
            futures = [pool.submit(work, start) for start in starts]
            for start, future in zip(starts, futures):
                problems.extend(future.result())  # re-raises a worker's Cancelled
                if progress is not None:
                    progress(min(start + chunk, n), n)
                if cancel is not None and cancel_requested(cancel):
                    raise Cancelled(f"while decoding the images (after {min(start + chunk, n)} of {n} images)")
        finally:
            # on a cancel (or an error): drop the chunks not started; running ones stop at
            # their next image, and are waited for so nothing writes into ``out`` afterwards
            pool.shutdown(wait=True, cancel_futures=True)
    problems.sort(key=lambda p: p.row)
    return out, problems


def describe_problems(problems: list[ImageProblem], n: int = 3) -> str:
    shown = "; ".join(f"{os.path.basename(p.path) or p.path} ({p.reason})" for p in problems[:n])
    return f"{len(problems)} images could not be read: first: {shown}" + (" ..." if len(problems) > n else "")


def drop_bad_images(table: pd.DataFrame, problems: list[ImageProblem]) -> pd.DataFrame:
    """``table`` without the rows of ``problems`` (positions), with one DatasetWarning."""
    if not problems:
        return table
    bad = np.zeros(len(table), dtype=bool)
    bad[[p.row for p in problems if 0 <= p.row < len(table)]] = True
    warnings.warn(DatasetWarning(describe_problems(problems)), stacklevel=2)
    kept = table.loc[~bad].reset_index(drop=True)
    kept.attrs = dict(table.attrs)
    return kept


def load_readable_images(table: pd.DataFrame, size: int, channels: int, workers: int = 2,
                         progress=None, cancel=None) -> tuple[pd.DataFrame, np.ndarray]:
    """Decode every row; rows whose image cannot be read are dropped (one DatasetWarning).

    Returns the table of readable rows and their uint8 (N, C, size, size) images, aligned.
    ``cancel``: as in :func:`load_images` (raises ``Cancelled``).
    """
    images, problems = load_images(table, size, channels, workers=workers, progress=progress, cancel=cancel)
    if not problems:
        return table, images
    keep = np.ones(len(table), dtype=bool)
    keep[[p.row for p in problems if 0 <= p.row < len(table)]] = False
    return drop_bad_images(table, problems), images[keep]


# --------------------------------------------------------------------------- thumbnails
def default_thumbnail_dir() -> Path:
    return Path(user_cache_dir("uldl-studio")) / "thumbs"


def _square_rgb(img: np.ndarray, size: int) -> np.ndarray:
    """HxWx3 uint8 thumbnail of ``size``×``size``: aspect kept, letterboxed with black."""
    pil = Image.fromarray(img).convert("RGB")
    if max(pil.size) != size:  # shrink large images, enlarge small ones (48x48 FER) to fill the box
        scale = size / max(pil.size)
        pil = pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))),
                         Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (size, size))
    canvas.paste(pil, ((size - pil.width) // 2, (size - pil.height) // 2))
    return np.asarray(canvas)


def placeholder(size: int) -> np.ndarray:
    """A dark red square with a cross: what a thumbnail of an unreadable image looks like."""
    img = np.zeros((size, size, 3), dtype=np.uint8)
    img[:, :, 0] = 90
    idx = np.arange(size)
    img[idx, idx] = img[idx, size - 1 - idx] = (230, 230, 230)
    return img


class ThumbnailCache:
    """Thumbnails (uint8 size×size×3) with an in-memory LRU and an optional disk cache.

    ``cache_dir=None`` keeps them in memory only; ``"default"`` uses
    ``platformdirs.user_cache_dir("uldl-studio")/thumbs``; any other path is used as is. Disk
    entries are PNGs named by a SHA-1 of (absolute path, mtime, file size, thumbnail size), or of
    the pixel string for FER2013 rows, written atomically. An unreadable image gives
    :func:`placeholder` and its reason is kept in ``failures[path]``. Thread-safe.
    """

    def __init__(self, max_items: int = 4096, cache_dir: str | Path | None = None):
        self.max_items = max_items
        if cache_dir == "default":
            cache_dir = default_thumbnail_dir()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.failures: dict[str, str] = {}
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def _disk_key(self, path: str, pixels: str | None, size: int) -> str | None:
        if pixels:
            digest = hashlib.sha1(f"pixels|{size}|".encode() + str(pixels).encode())
        else:
            try:
                st = os.stat(path)
            except OSError:
                return None
            digest = hashlib.sha1(f"{os.path.abspath(path)}|{st.st_mtime_ns}|{st.st_size}|{size}".encode("utf-8",
                                                                                                          "surrogatepass"))
        return digest.hexdigest()

    def _read_disk(self, key: str, size: int) -> np.ndarray | None:
        if self.cache_dir is None:
            return None
        file = self.cache_dir / key[:2] / f"{key}.png"
        try:
            with Image.open(file) as img:
                arr = np.asarray(img.convert("RGB"))
        except (OSError, SyntaxError, ValueError):
            return None
        return arr if arr.shape == (size, size, 3) else None

    def _write_disk(self, key: str, thumb: np.ndarray) -> None:
        if self.cache_dir is None:
            return
        folder = self.cache_dir / key[:2]
        try:  # atomic (no half-written PNG), not fsynced: a lost thumbnail is just decoded again
            with atomic_open(folder / f"{key}.png", "wb", encoding=None, durable=False) as handle:
                Image.fromarray(thumb).save(handle, format="PNG")
        except OSError:
            pass  # the disk cache is an optimisation; a full or read-only disk must not break browsing

    def get(self, path: str, pixels: str | None = None, size: int = 96) -> np.ndarray:
        path = str(path)
        pixels = pixels if isinstance(pixels, str) and pixels.strip() else None
        disk_key = self._disk_key(path, pixels, size) if (self.cache_dir is not None or pixels is None) else None
        key = (path, size, disk_key or (hash(pixels) if pixels else None))
        with self._lock:
            thumb = self._items.get(key)
            if thumb is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return thumb
            self.misses += 1
        thumb = self._read_disk(disk_key, size) if disk_key else None
        if thumb is None:
            try:
                thumb = _square_rgb(decode_image(path, pixels), size)
                self.failures.pop(path, None)
                if disk_key:
                    self._write_disk(disk_key, thumb)
            except ImageReadError as exc:
                self.failures[path] = exc.reason
                return placeholder(size)  # not cached: the file may be fixed later
        thumb.setflags(write=False)
        with self._lock:
            self._items[key] = thumb
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return thumb
