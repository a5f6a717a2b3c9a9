"""Image decoding, model inputs, bulk loading with problem reports, thumbnails."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from uldl_studio.core.data.datasets import DatasetWarning, load_dataset
from uldl_studio.core.data.images import (
    ImageProblem, ImageReadError, ThumbnailCache, decode_image, drop_bad_images, load_images, to_model_input,
)
from uldl_studio.core.table import make_table


def noise_image(mode: str = "RGB", size=(32, 24), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


def test_decode_grey_rgb_rgba(tmp_path):
    Image.new("L", (10, 8), 77).save(tmp_path / "g.png")
    grey = decode_image(str(tmp_path / "g.png"))
    assert grey.dtype == np.uint8 and grey.shape == (8, 10) and (grey == 77).all()
    Image.new("RGB", (10, 8), (10, 20, 30)).save(tmp_path / "c.jpg", quality=100)
    rgb = decode_image(str(tmp_path / "c.jpg"))
    assert rgb.shape == (8, 10, 3) and abs(int(rgb[0, 0, 2]) - 30) <= 3
    Image.new("RGBA", (4, 4), (200, 100, 50, 0)).save(tmp_path / "t.png")
    rgba = decode_image(str(tmp_path / "t.png"))
    assert rgba.shape == (4, 4, 3) and (rgba == 0).all()  # fully transparent over black
    Image.new("RGBA", (4, 4), (200, 100, 50, 255)).save(tmp_path / "o.png")
    assert tuple(decode_image(str(tmp_path / "o.png"))[0, 0]) == (200, 100, 50)
    Image.new("LA", (4, 4), (90, 255)).save(tmp_path / "la.png")
    assert decode_image(str(tmp_path / "la.png")).shape == (4, 4)


def test_decode_palette_and_bilevel(tmp_path):
    img = Image.new("P", (6, 6))
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    img.putpixel((1, 1), 1)
    img.save(tmp_path / "p.png")
    arr = decode_image(str(tmp_path / "p.png"))
    assert arr.shape == (6, 6, 3) and tuple(arr[1, 1]) == (255, 0, 0) and tuple(arr[0, 0]) == (0, 0, 0)
    img.info["transparency"] = 0
    img.save(tmp_path / "pt.png", transparency=0)
    arr = decode_image(str(tmp_path / "pt.png"))
    assert tuple(arr[1, 1]) == (255, 0, 0) and tuple(arr[0, 0]) == (0, 0, 0)
    Image.new("1", (5, 5), 1).save(tmp_path / "b.png")
    assert (decode_image(str(tmp_path / "b.png")) == 255).all()


def test_decode_16bit_scales_to_8bit(tmp_path):
    values = np.array([[0, 257, 257 * 100], [32768, 65280, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as img:
        assert img.mode.startswith("I")  # really stored as 16-bit
    arr = decode_image(str(tmp_path / "deep.png"))
    assert arr.dtype == np.uint8
    assert arr.tolist() == [[0, 1, 100], [128, 254, 255]]


def test_decode_pixel_strings(tmp_path):
    pixels = " ".join(str(i % 256) for i in range(2304))
    arr = decode_image("data.csv#0", pixels)
    assert arr.shape == (48, 48) and arr[0, 5] == 5
    with pytest.raises(ImageReadError, match=r"data.csv#1: pixel string has 2303 values, expected 2304"):
        decode_image("data.csv#1", " ".join(["1"] * 2303))
    with pytest.raises(ImageReadError, match="outside 0..255"):
        decode_image("data.csv#2", " ".join(["300"] * 2304))
    with pytest.raises(ImageReadError, match="other than integers"):
        decode_image("data.csv#3", "a b c d")


def test_fer2013_rows_decode_from_csv_without_pixels(tmp_path):
    path = tmp_path / "fer 2013.csv"
    pd.DataFrame({"emotion": [0, 3], "pixels": [" ".join(["7"] * 2304), " ".join(["9"] * 2304)],
                  "Usage": ["Training", "PublicTest"]}).to_csv(path, index=False)
    assert (decode_image(f"{path}#1") == 9).all()
    table = load_dataset(path)
    images, problems = load_images(table.drop(columns="pixels"), 48, 1)
    assert problems == [] and images[0].max() == 7


def test_errors_name_file_and_reason(tmp_path):
    with pytest.raises(ImageReadError, match=r"nope.png: missing file"):
        decode_image(str(tmp_path / "nope.png"))
    (tmp_path / "text.png").write_text("this is not an image")
    with pytest.raises(ImageReadError, match=r"text.png: not an image"):
        decode_image(str(tmp_path / "text.png"))
    noise_image().save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut.png: (truncated|corrupt) image"):
        decode_image(str(tmp_path / "cut.png"))
    noise_image().save(tmp_path / "whole.jpg")
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut.jpg: (truncated|corrupt) image"):
        decode_image(str(tmp_path / "cut.jpg"))


def test_to_model_input():
    grey = np.arange(48 * 48, dtype=np.uint8).reshape(48, 48)
    out = to_model_input(grey, 48, 1)
    assert out.shape == (1, 48, 48) and out.dtype == np.uint8 and (out[0] == grey).all()
    out3 = to_model_input(grey, 32, 3)
    assert out3.shape == (3, 32, 32) and (out3[0] == out3[2]).all()
    rgb = np.zeros((20, 40, 3), dtype=np.uint8)
    rgb[..., 1] = 255
    luma = to_model_input(rgb, 16, 1)
    assert luma.shape == (1, 16, 16) and abs(int(luma.mean()) - 150) <= 1  # 0.587 * 255
    assert to_model_input(rgb, 16, 3)[1].min() == 255
    with pytest.raises(ValueError):
        to_model_input(grey, 8, 2)


def _table(paths, pixels=None):
    frame = pd.DataFrame({"sample_id": [f"s{i}" for i in range(len(paths))], "path": paths,
                          "split": "train", "label": [i % 2 for i in range(len(paths))]})
    if pixels is not None:
        frame["pixels"] = pixels
    return make_table(frame, ["neutral", "happiness"], "x", "csv")


def test_load_images_reports_problems_and_continues(tmp_path):
    odd = tmp_path / "dir with space" / "visage ü é 表情.png"
    odd.parent.mkdir()
    noise_image("L", (48, 48), 1).save(odd)
    Image.fromarray(np.array([[1000, 65535]], dtype=np.uint16)).save(tmp_path / "deep.png")
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 40, 80, 120] + [0] * (256 * 3 - 6))
    palette.save(tmp_path / "palette.png")
    (tmp_path / "notes.png").write_bytes(b"hello")
    noise_image().save(tmp_path / "whole.jpg")
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    good = [str(tmp_path / "whole.jpg"), str(odd), str(tmp_path / "deep.png"), str(tmp_path / "palette.png")]
    bad = [str(tmp_path / "missing.png"), str(tmp_path / "notes.png"), str(tmp_path / "cut.jpg")]
    paths = good * 150 + bad  # 603 rows: several chunks across two threads
    calls = []
    images, problems = load_images(_table(paths), 32, 1, workers=2, progress=lambda d, t: calls.append((d, t)))
    assert images.shape == (603, 1, 32, 32) and images.dtype == np.uint8
    assert [p.row for p in problems] == [600, 601, 602]
    reasons = [p.reason for p in problems]
    assert reasons[0] == "missing file" and reasons[1].startswith("not an image")
    assert reasons[2].startswith(("truncated", "corrupt"))
    assert all(images[i].any() for i in range(4)) and not images[600:].any()
    assert calls[-1] == (603, 603)
    single, problems_single = load_images(_table(paths), 32, 1, workers=1)
    assert (single == images).all() and problems_single == problems


def test_load_images_pixel_rows(tmp_path):
    good = " ".join(["5"] * 2304)
    table = _table(["f.csv#0", "f.csv#1"], [good, "1 2 3"])
    images, problems = load_images(table, 48, 3)
    assert images[0].min() == 5 and not images[1].any()
    assert problems == [ImageProblem("f.csv#1", "pixel string has 3 values, expected 2304 (48x48)", 1)]


def test_drop_bad_images_warns_with_counts(tmp_path):
    table = _table(["a.png", "b.png", "c.png"])
    problems = [ImageProblem("/x/b.png", "missing file", 1), ImageProblem("/x/c.png", "not an image", 2)]
    with pytest.warns(DatasetWarning, match=r"2 images could not be read: first: b.png \(missing file\); "
                                            r"c.png \(not an image\)"):
        kept = drop_bad_images(table, problems)
    assert list(kept["sample_id"]) == ["s0"] and kept.attrs["classes"] == ["neutral", "happiness"]
    assert drop_bad_images(table, []) is table


def test_thumbnail_cache_memory_and_disk(tmp_path):
    path = tmp_path / "ä face.png"
    noise_image("L", (48, 40)).save(path)
    cache = ThumbnailCache(max_items=2, cache_dir=tmp_path / "thumbs")
    thumb = cache.get(str(path), size=64)
    assert thumb.shape == (64, 64, 3) and thumb.dtype == np.uint8
    assert cache.get(str(path), size=64) is thumb and cache.hits == 1
    written = list((tmp_path / "thumbs").rglob("*.png"))
    assert len(written) == 1
    fresh = ThumbnailCache(cache_dir=tmp_path / "thumbs")
    assert (fresh.get(str(path), size=64) == thumb).all()
    # a changed file gets a new thumbnail (mtime and size are in the key)
    Image.new("L", (48, 40), 255).save(path)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert cache.get(str(path), size=64).max() == 255
    # LRU bound
    for i in range(3):
        Image.new("L", (8, 8), i).save(tmp_path / f"{i}.png")
        cache.get(str(tmp_path / f"{i}.png"), size=16)
    assert len(cache) == 2


def test_thumbnail_cache_bad_file_and_pixels(tmp_path):
    cache = ThumbnailCache()
    bad = cache.get(str(tmp_path / "gone.png"), size=32)
    assert bad.shape == (32, 32, 3) and cache.failures[str(tmp_path / "gone.png")] == "missing file"
    thumb = cache.get("f.csv#0", pixels=" ".join(["200"] * 2304), size=96)
    assert thumb.shape == (96, 96, 3) and thumb.min() == 200


@pytest.mark.timeout(120)
def test_load_images_real_ferplus_subset(ferplus_root):
    table = load_dataset(ferplus_root, limit=200)
    images, problems = load_images(table, 48, 1, workers=2)
    assert problems == [] and images.shape == (600, 1, 48, 48)
    assert 60 < images.mean() < 200
