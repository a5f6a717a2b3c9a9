"""The decoded-image cache: real image files on disk, real worker processes, a real SIGKILL."""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from uldl_studio.cli import main as cli_main
from uldl_studio.core.data.datasets.common import DatasetWarning
from uldl_studio.core.data.datasets.demo import read_demo, write_demo
from uldl_studio.core.data.image_cache import (MANIFEST, CachedImages, cache_root, clear_caches, list_caches,
                                          open_cached_images)
from uldl_studio.core.cancel import Cancelled
from uldl_studio.core.data.images import load_readable_images


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ULDL_STUDIO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "images"


@pytest.fixture()
def dataset(tmp_path) -> pd.DataFrame:
    """600 demo faces on disk, one corrupt file and one missing file among them."""
    folder = tmp_path / "demo"
    write_demo(folder, n=600, seed=5)
    table = read_demo(folder)
    Path(table["path"].iloc[7]).write_bytes(b"not a png at all")
    os.remove(table["path"].iloc[11])
    return table


def _open(table, size=48, channels=1, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept, images = open_cached_images(table, size, channels, **kwargs)
    return kept, images, [str(w.message) for w in caught if issubclass(w.category, DatasetWarning)]


def _reference(table, size=48, channels=1):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept, images = load_readable_images(table, size, channels)
    return kept, images, [str(w.message) for w in caught if issubclass(w.category, DatasetWarning)]


def _entry(cache_dir: Path) -> Path:
    (entry,) = [p for p in cache_dir.iterdir() if p.is_dir()]
    return entry


@pytest.mark.parametrize("size,channels,workers", [(48, 1, 1), (32, 3, 2)])
def test_pixels_and_dropped_rows_equal_decoding_into_memory(dataset, size, channels, workers):
    kept, cached, warned = _open(dataset, size, channels, workers=workers)
    ref_kept, ref, ref_warned = _reference(dataset, size, channels)
    assert list(kept["sample_id"]) == list(ref_kept["sample_id"]) and len(kept) == 598
    assert cached.shape == ref.shape and np.array_equal(cached.to_array(), ref)
    assert warned == ref_warned and "2 images could not be read" in warned[0]
    assert "missing file" in warned[0] and "not an image" in warned[0]
    # the second open reads the manifest: nothing is decoded, the same warning is given
    calls = []
    kept2, again, warned2 = _open(dataset, size, channels, progress=lambda d, t: calls.append(d))
    assert calls == [] and warned2 == warned and np.array_equal(again.to_array(), ref)


def test_reads_come_back_in_the_order_asked_and_survive_pickling(dataset):
    _, cached, _ = _open(dataset)
    _, ref, _ = _reference(dataset)
    rows = np.array([5, 4, 3, 3, 100, 0, 597, 6, 7, 8])
    assert np.array_equal(cached.read(rows), ref[rows])
    copy = pickle.loads(pickle.dumps(cached))
    assert isinstance(copy, CachedImages) and np.array_equal(copy.read(rows), ref[rows])
    assert cached.read([]).shape == (0, 1, 48, 48)


def test_a_changed_file_is_decoded_again_and_a_new_one_appended_old_slots_untouched(dataset, cache_dir, tmp_path):
    kept, first, _ = _open(dataset)
    entry = _entry(cache_dir)
    manifest = json.loads((entry / MANIFEST).read_text())
    data_file = entry / manifest["data"]
    before = data_file.read_bytes()
    changed = Path(kept["path"].iloc[3])
    Image.fromarray(np.full((64, 64), 200, np.uint8)).save(changed)
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10 ** 9))
    extra = tmp_path / "demo" / "images" / "extra.png"
    Image.fromarray(np.full((64, 64), 40, np.uint8)).save(extra)
    grown = pd.concat([kept, kept.iloc[[0]].assign(sample_id="extra", path=str(extra))], ignore_index=True)
    grown.attrs = dict(kept.attrs)
    calls = []
    kept2, second, _ = _open(grown, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1] == (len(grown), len(grown))
    after = data_file.read_bytes()
    assert after[:len(before)] == before                      # nothing referenced was overwritten
    assert len(after) == len(before) + 2 * 48 * 48            # one slot for the changed file, one for the new
    assert (second.read([3]) == 200).all() and (second.read([len(grown) - 1]) == 40).all()
    rest = [i for i in range(len(kept)) if i != 3]
    assert np.array_equal(second.read(rest), first.read(rest))


def test_a_corrupt_manifest_is_rebuilt(dataset, cache_dir):
    _, _, _ = _open(dataset)
    entry = _entry(cache_dir)
    (entry / MANIFEST).write_text("{ half a manifest")
    _, cached, _ = _open(dataset)
    _, ref, _ = _reference(dataset)
    assert np.array_equal(cached.to_array(), ref)
    assert len(list(entry.glob("data-*.u8"))) == 1             # the untrusted data file is gone


def test_a_manifest_promising_more_than_its_data_file_is_not_trusted(dataset, cache_dir):
    _open(dataset)
    entry = _entry(cache_dir)
    manifest = json.loads((entry / MANIFEST).read_text())
    with open(entry / manifest["data"], "r+b") as handle:
        handle.truncate(10)
    _, cached, _ = _open(dataset)
    _, ref, _ = _reference(dataset)
    assert np.array_equal(cached.to_array(), ref)


def test_cancel_leaves_nothing_trusted_and_a_later_open_works(dataset, cache_dir):
    seen = []
    stop = threading.Event()

    def progress(done, total):
        seen.append(done)
        stop.set()

    with pytest.raises(Cancelled):
        _open(dataset, progress=progress, cancel=stop, workers=1)
    assert seen and seen[-1] < len(dataset)
    assert not (_entry(cache_dir) / MANIFEST).exists()
    _, cached, _ = _open(dataset)
    _, ref, _ = _reference(dataset)
    assert np.array_equal(cached.to_array(), ref)


KILLED_BUILD = """
import os, sys, time
from pathlib import Path
from uldl_studio.core.data.datasets.demo import read_demo
from uldl_studio.core.data.image_cache import open_cached_images
table = read_demo(sys.argv[1])
def progress(done, total):
    Path(sys.argv[2]).write_text(str(done))
    time.sleep(0.5)
open_cached_images(table, 48, 1, workers=1, progress=progress)
"""


def test_a_killed_build_is_not_trusted(dataset, tmp_path, cache_dir):
    """First a complete build of half the rows, then a second build of all rows killed half-way:
    the next open gives exactly what decoding into memory gives."""
    half = dataset.iloc[:300].reset_index(drop=True)
    half.attrs = dict(dataset.attrs)
    _open(half)
    marker = tmp_path / "progress"
    child = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(tmp_path / "demo"), str(marker)],
                             env={**os.environ, "PYTHONWARNINGS": "ignore"})
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    assert int(marker.read_text()) < len(dataset)
    manifest = json.loads((_entry(cache_dir) / MANIFEST).read_text())
    assert manifest["slots"] == 300                            # still the complete first build's manifest
    _, cached, _ = _open(dataset)
    _, ref, _ = _reference(dataset)
    assert np.array_equal(cached.to_array(), ref)


def test_two_processes_building_one_entry_take_turns(dataset, tmp_path):
    script = ("import sys, numpy as np; from uldl_studio.core.data.datasets.demo import read_demo;"
              "from uldl_studio.core.data.image_cache import open_cached_images;"
              "t = read_demo(sys.argv[1]); k, c = open_cached_images(t, 48, 1, workers=1);"
              "np.save(sys.argv[2], c.to_array())")
    outs = [tmp_path / f"out{i}.npy" for i in range(2)]
    children = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "demo"), str(out)],
                                 env={**os.environ, "PYTHONWARNINGS": "ignore"}) for out in outs]
    assert [c.wait(120) for c in children] == [0, 0]
    _, ref, _ = _reference(dataset)
    assert all(np.array_equal(np.load(out), ref) for out in outs)
    (entry,) = list_caches()
    assert entry.images == 598 and entry.problems == 2
    manifest = json.loads((entry.folder / MANIFEST).read_text())
    assert manifest["slots"] == 600                           # decoded once (bad files hold a blank slot), not twice


def test_fer2013_pixel_rows_are_cached_by_their_pixels(tmp_path):
    rng = np.random.default_rng(0)
    pixels = [" ".join(map(str, rng.integers(0, 256, 48 * 48))) for _ in range(4)]
    csv = tmp_path / "fer2013.csv"
    table = pd.DataFrame({"sample_id": [f"s{i}" for i in range(4)], "path": [f"{csv}#{i}" for i in range(4)],
                          "pixels": pixels, "split": "train", "label": [0, 1, 0, 1]})
    table.attrs = {"classes": ["neutral", "happiness"], "root": str(tmp_path)}
    _, cached, _ = _open(table)
    _, ref, _ = _reference(table)
    assert np.array_equal(cached.to_array(), ref)
    table.loc[2, "pixels"] = " ".join(["7"] * (48 * 48))
    _, again, _ = _open(table)
    assert (again.read([2]) == 7).all() and np.array_equal(again.read([0, 1, 3]), ref[[0, 1, 3]])


def test_list_and_clear_from_the_command_line(dataset, capsys, cache_dir):
    _open(dataset)
    _open(dataset, 32, 3)
    assert cli_main(["cache"]) == 0
    out = capsys.readouterr().out
    assert str(cache_root()) in out and "48x48x1  598 images, 2 unreadable" in out and "32x32x3" in out
    assert "2 entries" in out
    assert cli_main(["cache", "clear", "no-such-dataset"]) == 0
    assert "0 cache entries removed" in capsys.readouterr().out and len(list_caches()) == 2
    assert cli_main(["cache", "clear"]) == 0
    out = capsys.readouterr().out
    assert "2 cache entries removed" in out and list_caches() == []
    assert clear_caches() == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs file permissions that bind (not root)")
def test_an_unreadable_by_permission_file_is_tried_again(dataset):
    path = Path(dataset["path"].iloc[0])
    path.chmod(0)
    try:
        _, _, warned = _open(dataset)
        assert "permission denied" in warned[0]
    finally:
        path.chmod(0o644)
    kept, cached, _ = _open(dataset)
    assert kept["sample_id"].iloc[0] == dataset["sample_id"].iloc[0]


UNGUARDED = """
from uldl_studio.core.data.datasets.demo import read_demo
from uldl_studio.core.data.image_cache import open_cached_images
import sys
open_cached_images(read_demo(sys.argv[1]), 48, 1, workers=2)
print("done")
"""


def test_a_script_without_a_main_guard_fails_instead_of_hanging(dataset, tmp_path):
    """Spawned decoding workers import the script again: without ``if __name__ == "__main__"``
    they would wait for the lock their parent holds."""
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED)
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "demo")], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode != 0 and "done" not in result.stdout
    assert "__main__" in result.stderr
