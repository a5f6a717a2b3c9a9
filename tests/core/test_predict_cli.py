"""``uldl-studio predict`` through the real command line (subprocesses): bad inputs are one line
and exit status 2, and runs predict collections whose classes differ from theirs both ways
(a demo run on FER+, which has contempt; a FER+ run on the demo, which lacks it)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from predict_support import write_image
from uldl_studio.core.runs.predict import read_predictions

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

TINY = ["--set", "image_size=32", "--set", "width=8", "--set", "stages=2", "--set", "blocks=1",
        "--set", "calib_hidden=[16]", "--set", "batch_size=32", "--set", "num_threads=1", "--set", "augment=false",
        "--device", "cpu"]


def cli(*args, check=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "uldl_studio", *map(str, args)], capture_output=True, text=True,
                            env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"uldl-studio {' '.join(map(str, args))} failed:\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo data"
    cli("demo-data", out, "--n", "160", "--seed", "4")
    return out


@pytest.fixture(scope="module")
def demo_run(demo_folder, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "demo-run"
    cli("train", demo_folder / "labels.csv", "--out", run, "--epochs", "1", *TINY)
    return run


def assert_one_error_line(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("uldl-studio: error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_bad_inputs_are_one_line_and_status_2(demo_run, tmp_path):
    out = tmp_path / "pred.csv"
    (tmp_path / "empty").mkdir()
    assert_one_error_line(cli("predict", demo_run, tmp_path / "empty", "--out", out, check=False),
                          str(tmp_path / "empty"), "the folder is empty")
    (tmp_path / "list.csv").write_text("path\nmissing/a.png\nmissing/b.png\n")
    assert_one_error_line(cli("predict", demo_run, tmp_path / "list.csv", "--out", out, check=False),
                          str(tmp_path / "list.csv"), "none of the 2 image paths exist")
    (tmp_path / "corrupt").mkdir()
    for i in range(3):
        (tmp_path / "corrupt" / f"{i}.jpg").write_bytes(b"\xff\xd8 broken")
    assert_one_error_line(cli("predict", demo_run, tmp_path / "corrupt", "--out", out, check=False),
                          str(tmp_path / "corrupt"), "none of the 3 images could be read")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.md").write_text("x")
    assert_one_error_line(cli("predict", demo_run, tmp_path / "docs", "--out", out, check=False),
                          "no images in the folder: 1 files")
    assert not out.exists()


def test_a_folder_with_faces_and_tta(demo_run, demo_folder, tmp_path):
    from PIL import Image

    from uldl_studio.core.data.faces import paste_faces

    faces = [np.asarray(Image.open(p)) for p in sorted((demo_folder / "images").glob("*.png"))[:3]]
    for i, canvas in enumerate(paste_faces(faces, 3, empty=1, seed=9)):
        write_image(tmp_path / "photos" / f"photo_{i}.png", canvas.image)
    (tmp_path / "photos" / "notes.txt").write_text("skipped")
    out = tmp_path / "faces.csv"
    result = cli("predict", demo_run, tmp_path / "photos", "--out", out, "--faces", "detect", "--tta")
    assert "1 non-image file skipped" in result.stdout and "without a face not written" in result.stdout
    assert "1 of 4 images have no face" in result.stderr
    table = read_predictions(out)
    assert 1 <= len(table) <= 4 and table["sample_id"].str.contains("#face").all()
    assert table["box_w"].notna().all() and (table["box_w"] > 20).all()


def test_a_demo_run_predicts_ferplus_which_has_contempt(demo_run, ferplus_root, tmp_path):
    out = tmp_path / "ferplus.csv"
    result = cli("predict", demo_run, ferplus_root, "--limit", "300", "--out", out)  # the first contempt: #300
    table = read_predictions(out)
    assert len(table) == 300                                          # --limit N: N images in all
    assert not any(c.endswith("contempt") for c in table.columns)  # the run's classes define the output
    contempt = int((table["source_label"] == "contempt").sum())
    assert contempt >= 1
    assert f"300 rows labelled, {300 - contempt} with a class the run knows" in result.stdout
    assert "accuracy" in result.stdout and "intersection" in result.stdout


def test_a_ferplus_run_predicts_the_demo_which_lacks_contempt(ferplus_root, demo_folder, tmp_path):
    run = tmp_path / "ferplus-run"
    cli("train", ferplus_root, "--limit", "60", "--out", run, "--epochs", "1", *TINY)
    out = tmp_path / "demo.csv"
    result = cli("predict", run, demo_folder, "--out", out)
    table = read_predictions(out)
    assert "p_contempt" in table.columns and len(table) == 160
    labels = pd.read_csv(demo_folder / "labels.csv")["label"]
    assert sorted(table["source_label"]) == sorted(labels)
    assert "160 rows labelled, 160 with a class the run knows" in result.stdout
