"""Two annotators vote at once in one run, from two real processes killed with SIGKILL: no
acknowledged vote is lost and neither process locks the other out."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from uldl_studio.core.labels.annotations import read_votes

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL (POSIX)")]

REPO_ROOT = Path(__file__).resolve().parents[2]
N_IDS, M = 400, 5

VOTER = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
from uldl_studio.core.labels.annotations import annotator_journal
run, name, offset = sys.argv[2], sys.argv[3], int(sys.argv[4])
journal = annotator_journal(run, name)
os.write(1, b"READY\n")
for i in range(int(sys.argv[6]) if len(sys.argv) > 6 else 0, int(sys.argv[5])):
    journal.relabel([f"s{i}"], [(i + offset) % 5])
    os.write(1, f"ACK {i}\n".encode())   # one write per line: a kill never leaves half a line
os.write(1, b"DONE\n")
"""


def _table() -> pd.DataFrame:
    table = pd.DataFrame({"sample_id": [f"s{i}" for i in range(N_IDS)], "path": "x", "split": "train",
                          "label": np.zeros(N_IDS, dtype=np.int64)})
    table.attrs = {"classes": [f"c{j}" for j in range(M)], "root": "", "format": "csv"}
    return table


def _start(run: Path, name: str, offset: int, first: int = 0) -> subprocess.Popen:
    """A process voting as ``name`` on samples ``first``.. of the table, (i + offset) % M each."""
    return subprocess.Popen([sys.executable, "-c", VOTER, str(REPO_ROOT), str(run), name, str(offset), str(N_IDS),
                             str(first)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _acked_until_killed(proc: subprocess.Popen, kill_after: int) -> int:
    """Read ACK lines until ``kill_after`` of them, SIGKILL the process mid-stream; the highest ACK."""
    last = -1
    for line in proc.stdout:
        text = line.decode().strip()
        if text.startswith("ACK"):
            last = int(text.split()[1])
            if last + 1 >= kill_after:
                break
        elif text == "DONE":
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    for line in proc.stdout:  # ACKs written before the kill landed
        text = line.decode().strip()
        if text.startswith("ACK"):
            last = int(text.split()[1])
    return last


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_annotators_at_once_lose_no_vote(tmp_path, seed):
    rng = random.Random(seed)
    run = tmp_path / "run"
    run.mkdir()
    alice, bob = _start(run, "alice", 1), _start(run, "bob", 2)
    try:
        for proc in (alice, bob):
            assert proc.stdout.readline().strip() == b"READY"
        acked = {"alice": _acked_until_killed(alice, rng.randint(20, 200)),
                 "bob": _acked_until_killed(bob, rng.randint(20, 200))}
    finally:
        for proc in (alice, bob):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc in (alice, bob):
        assert b"Error" not in proc.stderr.read(), "an annotator was locked out or failed"
    assert min(acked.values()) >= 19
    votes = read_votes(run, _table())
    assert votes.annotators == ["alice", "bob"]
    for a, (name, offset) in enumerate((("alice", 1), ("bob", 2))):
        column = votes.labels[:, a]
        last = acked[name]
        # every acknowledged vote is there, with its label
        assert np.array_equal(column[:last + 1], (np.arange(last + 1) + offset) % M)
        # at most the one vote in flight at the kill follows; nothing else
        assert (column[last + 2:] == -1).all()


def _ack_lines(proc: subprocess.Popen) -> list[int]:
    return [int(line.split()[1]) for line in proc.stdout.read().decode().splitlines() if line.startswith("ACK")]


@pytest.mark.parametrize("seed", [3, 4])
def test_two_annotators_killed_together_reopen_and_finish(tmp_path, seed):
    """Both writers run at once and are SIGKILLed together, mid-stream; both reopen
    their journals (the dead writers' locks are gone) and carry on after their last acknowledged
    vote: every vote of the first session survived, and the two sessions together hold each
    annotator's every vote."""
    rng = random.Random(seed)
    run = tmp_path / "run"
    run.mkdir()
    alice, bob = _start(run, "alice", 1), _start(run, "bob", 2)
    try:
        for proc in (alice, bob):
            assert proc.stdout.readline().strip() == b"READY"
        bob_first = -1                        # bob has written at least one vote (a busy machine may start him late)
        for line in bob.stdout:
            if line.startswith(b"ACK"):
                bob_first = int(line.split()[1])
                break
        wanted = rng.randint(20, 150)         # both write meanwhile; alice's ACKs time the kill
        for line in alice.stdout:
            if line.startswith(b"ACK") and int(line.split()[1]) + 1 >= wanted:
                break
        for proc in (alice, bob):
            proc.send_signal(signal.SIGKILL)
        for proc in (alice, bob):
            proc.wait(30)
        acked = {"alice": max([wanted - 1, *_ack_lines(alice)]), "bob": max([bob_first, *_ack_lines(bob)])}
    finally:
        for proc in (alice, bob):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert min(acked.values()) >= 0, "a writer acknowledged nothing before the kill"
    assert acked["alice"] < N_IDS - 1, "alice finished before the kill: no kill mid-stream"
    after_kill = read_votes(run, _table())
    for a, (name, offset) in enumerate((("alice", 1), ("bob", 2))):
        last = acked[name]
        assert np.array_equal(after_kill.labels[:last + 1, a], (np.arange(last + 1) + offset) % M)
        assert (after_kill.labels[last + 2:, a] == -1).all()
    # the second session: each annotator carries on after their last acknowledged vote
    again = [_start(run, "alice", 1, acked["alice"] + 1), _start(run, "bob", 2, acked["bob"] + 1)]
    for proc in again:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0 and b"DONE" in out, err.decode()[-2000:]
    votes = read_votes(run, _table())
    assert votes.annotators == ["alice", "bob"]
    for a, offset in enumerate((1, 2)):
        assert np.array_equal(votes.labels[:, a], (np.arange(N_IDS) + offset) % M)
