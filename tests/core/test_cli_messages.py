"""What the command line says: --set errors, --resume, --version, plural counts, progress in a
log or on a terminal, a closed stdout, missing splits, and errors under torchrun."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(240)

TINY = ["--set", "image_size=16", "--set", "width=8", "--set", "stages=2", "--set", "blocks=1",
        "--set", "calib_hidden=[16]", "--set", "batch_size=16", "--set", "num_threads=1", "--device", "cpu"]


def cli(*args, check=True, **kwargs):
    result = subprocess.run([sys.executable, "-m", "uldl_studio", *map(str, args)], capture_output=True,
                            text=True, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"uldl-studio {' '.join(map(str, args))} failed:\n{result.stderr[-3000:]}")
    return result


def error_line(result) -> str:
    assert result.returncode == 2, result.stderr[-1500:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def ce_run(tmp_path_factory):
    """A finished two-epoch plain cross-entropy run on 30 demo training images."""
    run = tmp_path_factory.mktemp("runs") / "ce"
    result = cli("train", "demo", "--out", run, "--limit", "30", "--epochs", "2", "--method", "ce", *TINY)
    return run, result


# ------------------------------------------------------------------------------------- --set
def test_set_unknown_key_names_it_and_suggests_the_closest(tmp_path):
    line = error_line(cli("train", "demo", "--out", tmp_path / "r", "--set", "widht=3", check=False))
    assert "widht" in line and "did you mean width" in line
    line = error_line(cli("train", "demo", "--out", tmp_path / "r", "--set", "lamda_lr=2", check=False))
    assert "lambda_lr" in line.split("did you mean", 1)[1]
    line = error_line(cli("train", "demo", "--out", tmp_path / "r", "--set", "nosuchkey=3", check=False))
    assert "'nosuchkey'" in line and "TypeError" not in line and "unexpected keyword" not in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("pair, expected", [("k=abc", "an integer"), ("width=3.5", "an integer"),
                                            ("lr=fast", "a number"), ("amp=maybe", "true or false"),
                                            ("calib_hidden=5", "a JSON list")])
def test_set_bad_value_names_option_value_and_type(tmp_path, pair, expected):
    line = error_line(cli("train", "demo", "--out", tmp_path / "r", "--set", pair, check=False))
    key, value = pair.split("=")
    assert f"--set {pair}" in line and f"{key} expects {expected}" in line and value in line


def test_set_values_are_typed_by_the_option():
    from uldl_studio.cli import _parse_overrides

    parsed = _parse_overrides(["lr=1e-3", "amp=false", "delta=null", "calib_hidden=[8,4]", "arch=resnet18",
                               "width=32", "soft_label_mix=1"])
    assert parsed == {"lr": 0.001, "amp": False, "delta": None, "calib_hidden": [8, 4], "arch": "resnet18",
                      "width": 32, "soft_label_mix": 1.0}
    assert isinstance(parsed["soft_label_mix"], float)


def test_train_help_lists_every_set_option():
    import dataclasses

    from uldl_studio.core.engine.config import TrainConfig

    text = cli("train", "--help").stdout
    for field in dataclasses.fields(TrainConfig):
        assert f"{field.name}=" in text, field.name


# ----------------------------------------------------------------------------------- --resume
def test_resume_of_a_complete_run_says_so_and_trains_nothing(ce_run):
    run, _ = ce_run
    before = (run / "history.csv").read_bytes()
    result = cli("train", "demo", "--out", run, "--resume")
    assert "already complete (2 of 2 epochs)" in result.stdout and "--epochs N" in result.stdout
    assert "epoch " not in result.stderr
    assert (run / "history.csv").read_bytes() == before


def test_resume_says_where_it_continues(ce_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(ce_run[0], run)
    result = cli("train", "demo", "--out", run, "--resume", "--epochs", "3")
    assert f"resuming {run} after epoch 2 of 3" in result.stderr
    assert "epoch 3/3" in result.stderr and "epoch 2/3" not in result.stderr


# -------------------------------------------------------------------- what a training prints
def test_progress_in_a_log_is_plain_lines_and_ce_has_no_lambda(ce_run):
    _, result = ce_run
    log = result.stderr
    assert "\r" not in log and "img/s" not in log and "batch/s" not in log and "it/s" not in log
    epochs = [line for line in log.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 2 and all("valid acc" in line for line in epochs)
    assert "λ" not in log and "lam=" not in log


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses a pseudo-terminal")
def test_progress_on_a_terminal_draws_bars(tmp_path):
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # 120 columns for the bars
    process = subprocess.Popen([sys.executable, "-m", "uldl_studio", "train", "demo", "--out", tmp_path / "r",
                                "--limit", "40", "--epochs", "1", *TINY, "--set", "progress_every=1"],
                               stdout=subprocess.DEVNULL, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert process.wait(timeout=200) == 0
    text = b"".join(chunks).decode("utf-8", "replace")
    assert re.search(r"epoch 1/1: +\d+%\|", text), text[-2000:]      # a tqdm bar
    assert "mean λ" in text                                             # LDLVA reports λ


def test_no_valid_split_is_said_not_printed_as_nan(tmp_path):
    from PIL import Image

    root = tmp_path / "faces" / "train"
    for cls, shade in (("happy", 40), ("sad", 200)):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            Image.new("L", (16, 16), shade + i).save(root / cls / f"{i}.png")
    result = cli("train", tmp_path / "faces", "--out", tmp_path / "r", "--epochs", "1", "--method", "ce", *TINY)
    assert "nan" not in result.stderr
    assert re.search(r"warning: .*faces: no valid and no test samples", result.stderr), result.stderr
    assert "no valid split" in result.stderr


# -------------------------------------------------------------------- counts, pipes, version
def test_counts_are_singular_for_one(ce_run, tmp_path):
    from PIL import Image

    Image.new("L", (16, 16), 90).save(tmp_path / "face.png")
    result = cli("predict", ce_run[0], tmp_path / "face.png", "--out", tmp_path / "one.csv")
    assert "wrote 1 row to" in result.stdout and "1 rows" not in result.stdout
    assert "wrote 2 demo samples" in cli("demo-data", tmp_path / "d", "--n", "2").stdout


def test_predict_limit_is_the_number_of_images(ce_run, tmp_path):
    import pandas as pd

    cli("predict", ce_run[0], "demo", "--limit", "7", "--out", tmp_path / "p.csv")
    assert len(pd.read_csv(tmp_path / "p.csv")) == 7


def test_a_closed_stdout_ends_quietly(ce_run):
    process = subprocess.Popen([sys.executable, "-m", "uldl_studio", "evaluate", ce_run[0]],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()                   # like `| head` that has read enough
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=100) == 141  # what a shell reports for a Unix tool killed by SIGPIPE
    assert stderr == ""


def test_version_names_the_torch_build_and_cuda():
    import torch

    import uldl_studio

    line = cli("--version").stdout.strip()
    assert line.startswith(f"uldl-studio {uldl_studio.__version__} (torch {torch.__version__}, ")
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
    assert build in line
    assert ("CUDA usable" if torch.cuda.is_available() else "CUDA not usable") in line


# --------------------------------------------------------------------------------- torchrun
@pytest.mark.distributed
def test_an_error_under_torchrun_is_one_line_from_rank_zero(tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip(f"{torchrun}: not installed")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    missing = tmp_path / "no such dataset"
    result = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "uldl_studio", "train",
                             str(missing), "--out", str(tmp_path / "r"), "--device", "cpu"],
                            capture_output=True, text=True, env=env, timeout=200)
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("uldl-studio: error:")]
    assert ours == [f"uldl-studio: error: {missing}: no such file or folder"], result.stderr[-3000:]


def test_a_torchrun_rank_ends_with_its_status_and_all_it_printed():
    """A rank ends through ``_end_rank`` (no interpreter teardown, where a DDP process group
    left alive aborts now and then): what it wrote to the pipes still arrives, and its status."""
    code = ("import sys; from uldl_studio.cli import _end_rank; "
            "sys.stdout.write('run written, no newline yet'); sys.stderr.write('a warning'); _end_rank(3)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # pipes block-buffered, as usual
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 3
    assert result.stdout == "run written, no newline yet"
    assert result.stderr == "a warning"
