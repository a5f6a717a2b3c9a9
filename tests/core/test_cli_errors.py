"""The CLI turns bad input into one clear line and a non-zero exit, never a traceback."""
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(120)


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "uldl_studio", *args], capture_output=True, text=True, cwd=cwd)


def test_missing_dataset_path_is_one_line(tmp_path):
    missing = tmp_path / "no such folder"
    result = run_cli("train", str(missing), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert str(missing) in result.stderr and "no such file or folder" in result.stderr


def test_unknown_layout_names_what_was_looked_for(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("hello")
    result = run_cli("train", str(tmp_path / "data"), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "data" in result.stderr and "label.csv" in result.stderr


def test_open_missing_run(tmp_path):
    result = run_cli("evaluate", str(tmp_path / "missing-run"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "missing-run" in result.stderr


def test_bad_set_option(tmp_path):
    result = run_cli("train", "demo", "--out", str(tmp_path / "run"), "--limit", "5", "--set", "no_such_field=3")
    assert result.returncode == 2
    assert "no_such_field" in result.stderr
    assert "Traceback" not in result.stderr


TINY = ["--set", "image_size=16", "--set", "width=8", "--set", "stages=2", "--set", "blocks=1",
        "--set", "calib_hidden=[16]", "--set", "batch_size=64", "--device", "cpu"]


def _one_line_error(result) -> str:
    assert result.returncode == 2, result.stderr[-1500:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("uldl-studio: error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_a_dataset_with_one_class_is_refused_before_training(tmp_path):
    import pandas as pd

    from uldl_studio.core.data.datasets.demo import write_demo

    csv = write_demo(tmp_path / "demo", n=40)          # the labels CSV beside its images
    folder = csv.parent
    frame = pd.read_csv(csv)
    frame["label"] = frame["label"].iloc[0]                 # every row the same class
    frame.drop(columns=[c for c in frame.columns if c.startswith("ref_")]).to_csv(csv, index=False)
    line = _one_line_error(run_cli("train", str(folder), "--out", str(tmp_path / "run"), "--epochs", "1", *TINY))
    assert "needs at least two classes" in line
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_export_under_a_file_is_one_line_and_the_progress_has_no_empty_bars(tmp_path):
    result = run_cli("train", "demo", "--out", str(tmp_path / "run"), "--limit", "40", "--epochs", "2", *TINY)
    assert result.returncode == 0, result.stderr[-1500:]
    import re

    assert not re.search(r"(^|[\s:])0batch\b", result.stderr) and "loss=nan" not in result.stderr  # no empty bar
    (tmp_path / "afile").write_text("")
    line = _one_line_error(run_cli("export", str(tmp_path / "run"), "--out", str(tmp_path / "afile" / "x.csv")))
    assert str(tmp_path / "afile") in line and "a file is in the way" in line
