"""The kill soak of the real app (``bench/kill_soak.py``), short: about 20 SIGKILLs of
``uldl-studio gui RUN`` while its key driver relabels; no acknowledged edit may be lost and the
app must reopen every time. Plus the soak's checker itself: it does see a lost edit."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")


def load_soak():
    spec = importlib.util.spec_from_file_location("kill_soak", REPO / "bench" / "kill_soak.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["kill_soak"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_kill_soak_loses_no_acknowledged_edit(tmp_path):
    soak = load_soak()
    summary = soak.soak(20, seed=11, work=tmp_path / "soak", platform="offscreen", max_typing_s=1.0, log=None)
    print(soak.format_summary(summary))
    assert summary["failures"] == []
    assert summary["lost"] == 0
    assert summary["reopen_failures"] == 0 and summary["crashes"] == 0
    assert summary["bad_reopens"] == 0 and summary["model_agrees"]
    assert summary["kills"] == 20
    assert summary["reopens"] >= 12                   # most rounds typed before the kill
    assert summary["acknowledged"] >= 20              # and edited something
    assert 0 <= summary["unacknowledged_ops"] <= summary["kills"]   # only the edit in flight at a kill

    # the ack log and the journal agree once more, read from scratch
    run_dir = Path(summary["run_dir"])
    acks = [json.loads(line) for line in (tmp_path / "soak" / "ack.log").read_text().splitlines()
            if '"ack"' in line]
    assert len(acks) == summary["acknowledged"]
    ids, base = soak.base_labels(run_dir)
    assert soak.check_journal(run_dir, acks, [], ids, base)["lost"] == []


def test_the_checker_sees_a_lost_or_changed_edit(tmp_path):
    """An acknowledgement the journal does not hold, or holds with another result, is lost."""
    import pandas as pd

    from uldl_studio.core.labels.edits import EditJournal
    soak = load_soak()
    from soak_driver import state_digest  # bench/, put on the path by kill_soak
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    pd.DataFrame({"sample_id": ["a", "b", "c"], "label": [0, 1, 2]}).to_csv(run_dir / "samples.csv", index=False)
    ids, base = soak.base_labels(run_dir)
    journal = EditJournal(run_dir / "edits.jsonl")
    journal.relabel(["a"], [2])           # seq 1
    journal.mark_unsure(["b"], True)      # seq 2
    journal.undo()                        # seq 3: b no longer unsure
    journal.close()
    good = [{"ack": 1, "op": "relabel", "ids": ["a"], "shown": {"a": [2, False]}},
            {"ack": 2, "op": "unsure", "ids": ["b"], "shown": {"b": [1, True]}},
            {"ack": 3, "op": "undo", "ids": ["b"], "shown": {"b": [1, False]}}]
    ready = {"ready": os.getpid(), "seq": 1, "ops": 1, "digest": state_digest(ids, [2, 1, 2], [False] * 3)}
    result = soak.check_journal(run_dir, good, [ready], ids, base)
    assert result["lost"] == [] and result["bad_reopens"] == [] and result["model_agrees"]

    beyond = {"ack": 4, "op": "redo", "ids": ["b"], "shown": {"b": [1, True]}}
    changed = {"ack": 1, "op": "relabel", "ids": ["a"], "shown": {"a": [1, False]}}
    wrong_ready = dict(ready, digest=state_digest(ids, [0, 1, 2], [False] * 3))
    result = soak.check_journal(run_dir, good + [beyond, changed], [wrong_ready], ids, base)
    assert sorted(item["ack"] for item in result["lost"]) == [1, 4]
    assert result["bad_reopens"] == [wrong_ready]
