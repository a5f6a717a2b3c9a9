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
