"""``uldl-studio retrain`` and ``uldl-studio versions`` through the real command line.

A real demo dataset on disk, a real tiny training, subprocesses; the second version is
trained by the CLI and the first one checked byte for byte.
"""
from __future__ import annotations

import json
import shutil

import pytest

from test_cli_end_to_end import TINY, cli
from uldl_studio.core.labels.edits import EditJournal
from uldl_studio.core.engine.run import Run

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


@pytest.fixture(scope="module")
def data_and_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("versions")
    cli("demo-data", base / "data", "--n", "200", "--seed", "3")
    cli("train", base / "data" / "labels.csv", "--out", base / "run", "--epochs", "1", *TINY)
    return base / "data" / "labels.csv", base / "run"


def test_versions_lists_a_first_training(data_and_run):
    _, run = data_and_run
    lines = cli("versions", run).stdout.splitlines()
    assert lines[0] == f"{run}: 1 version (* current)"
    assert lines[1].startswith("* v1   1/1 epochs  valid acc 0.") and lines[1].endswith("(current)")
    assert len(lines) == 2


def test_retrain_writes_a_second_version_and_keeps_the_first(data_and_run, tmp_path):
    data, trained = data_and_run
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    samples = Run.open(run).samples()
    with EditJournal(run / "edits.jsonl") as journal:
        journal.relabel([samples["sample_id"].iloc[0]], [(int(samples["label"].iloc[0]) + 1) % len(samples.attrs["classes"])])
    first = {name: (run / name).read_bytes() for name in ("checkpoint.pt", "samples.csv", "history.csv", "config.json")}

    done = cli("retrain", run, "--epochs", "2")
    out = done.stdout
    assert (f"version v2 of {run} (parent v1, 1 edited sample): training 2 epochs into {run / 'versions' / 'v2'}"
            in done.stderr)
    assert f"version v2 written to {run / 'versions' / 'v2'}; it is now the current version of {run}" in out
    assert {name: (run / name).read_bytes() for name in first} == first

    lines = cli("versions", run).stdout.splitlines()
    assert lines[0] == f"{run}: 2 versions (* current)"
    assert lines[1].startswith("  v1   1/1 epochs") and "edits not recorded" in lines[1]
    assert lines[2].startswith("* v2   2/2 epochs  valid acc 0.")
    assert lines[2].endswith("1 edited sample(s), from v1  (current)")

    metrics = json.loads(cli("evaluate", run, "--json").stdout)
    assert metrics["epochs"] == 2 and (run / "versions" / "v2" / "metrics.json").is_file()
    assert not (run / "metrics.json").exists()  # the first version's folder is not written

    refused = cli("train", data, "--out", run, *TINY, check=False)
    assert refused.returncode == 2
    assert f"uldl-studio retrain {run}" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_a_new_run_that_fails_before_its_first_epoch_leaves_no_folder(data_and_run, tmp_path):
    data, _ = data_and_run
    out = tmp_path / "new run"
    # one sample per split: the training split holds a single class, refused before epoch 1
    failed = cli("train", data, "--out", out, "--limit", "1", *TINY, check=False)
    assert failed.returncode == 2 and "training needs at least two classes" in failed.stderr
    assert not out.exists()
