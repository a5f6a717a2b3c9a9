"""Every acknowledged edit survives SIGKILL at a random point.

A helper process (``sys.executable -c``) imports the journal once and, for each round, forks
an editor that opens the same journal, applies random edits in a loop and prints
``OP <json>`` before and ``ACK <len>`` after each call returns. The test kills the editor
with SIGKILL after a random number of ACKs, while a call is in flight (mid-burst), or after a
random delay; it then reopens the journal and checks it against an independent model of the
acknowledged operations (the one in-flight operation may or may not be there). Forking from
a warm helper keeps a round at a few milliseconds instead of a Python start-up.
"""
from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

from uldl_studio.core.labels.edits import EditJournal, JournalWarning

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL (POSIX)"),
]

REPO_ROOT = Path(__file__).resolve().parents[2]

EDITOR = r"""
import json, os, random, sys, time
sys.path.insert(0, sys.argv[1])
from uldl_studio.core.labels.edits import EditJournal

IDS = [f"s{i}" for i in range(10)] + ["ü, \"quoted\""]

def say(text):  # one write() per line: a kill never leaves half a line in the pipe
    os.write(1, (text + "\n").encode("utf-8"))

def edit_loop(path, seed):
    rng = random.Random(seed)
    journal = EditJournal(path)
    say(f"READY {len(journal)}")
    while True:
        r = rng.random()
        ids = rng.sample(IDS, rng.randint(1, 4))
        if r < 0.45:
            op = ["relabel", ids, [rng.randint(0, 6) for _ in ids]]
        elif r < 0.65:
            op = ["unsure", ids, rng.random() < 0.6]
        elif r < 0.85:
            op = ["undo"]
        else:
            op = ["redo"]
        say("OP " + json.dumps(op))
        if op[0] == "relabel":
            journal.relabel(op[1], op[2])
        elif op[0] == "unsure":
            journal.mark_unsure(op[1], op[2])
        elif op[0] == "undo":
            journal.undo()
        else:
            journal.redo()
        say(f"ACK {len(journal)}")
        if rng.random() < 0.2:  # mostly bursts, sometimes a pause
            time.sleep(rng.random() * 0.003)

for command in sys.stdin:
    path, seed = command.split("\t")
    pid = os.fork()
    if pid == 0:
        try:
            say(f"PID {os.getpid()}")
            edit_loop(path, int(seed))
        except BaseException as exc:
            say(f"ERROR {exc!r}")
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    say(f"DONE {status}")
"""


class Model:
    """Independent reference for the journal's semantics (labels, unsure, undo/redo stacks)."""

    def __init__(self) -> None:
        self.labels: dict[str, int] = {}
        self.unsure: set[str] = set()
        self.undo_stack: list[tuple] = []
        self.redo_stack: list[tuple] = []
        self.n = 0  # journaled operations

    def copy(self) -> "Model":
        other = Model()
        other.labels, other.unsure = dict(self.labels), set(self.unsure)
        other.undo_stack, other.redo_stack, other.n = list(self.undo_stack), list(self.redo_stack), self.n
        return other

    def _set(self, kind, values: dict) -> None:
        for sid, value in values.items():
            if kind == "relabel":
                if value is None:
                    self.labels.pop(sid, None)
                else:
                    self.labels[sid] = value
            elif value:
                self.unsure.add(sid)
            else:
                self.unsure.discard(sid)

    def apply(self, op: list) -> None:
        kind = op[0]
        if kind in ("relabel", "unsure"):
            if kind == "relabel":
                wanted = dict(zip(op[1], op[2]))
                new = {s: v for s, v in wanted.items() if self.labels.get(s) != v}
                old = {s: self.labels.get(s) for s in new}
            else:
                new = {s: op[2] for s in op[1] if (s in self.unsure) != op[2]}
                old = {s: not op[2] for s in new}
            if not new:
                return
            self._set(kind, new)
            self.undo_stack.append((kind, new, old))
            self.redo_stack.clear()
        elif kind == "undo":
            if not self.undo_stack:
                return
            command = self.undo_stack.pop()
            self._set(command[0], command[2])
            self.redo_stack.append(command)
        else:
            if not self.redo_stack:
                return
            command = self.redo_stack.pop()
            self._set(command[0], command[1])
            self.undo_stack.append(command)
        self.n += 1

    def state(self):
        return self.labels, self.unsure, len(self.undo_stack), len(self.redo_stack), self.n


def journal_state(journal: EditJournal):
    return journal.labels(), journal.unsure(), journal.undo_depth, journal.redo_depth, len(journal)


def test_model_agrees_with_journal(tmp_path):
    rng = random.Random(7)
    journal, model = EditJournal(tmp_path / "e.jsonl"), Model()
    for _ in range(300):
        r, ids = rng.random(), rng.sample("abcdefg", rng.randint(1, 3))
        op = (["relabel", ids, [rng.randint(0, 3) for _ in ids]] if r < 0.4 else
              ["unsure", ids, rng.random() < 0.5] if r < 0.6 else ["undo"] if r < 0.8 else ["redo"])
        {"relabel": lambda: journal.relabel(op[1], op[2]), "unsure": lambda: journal.mark_unsure(op[1], op[2]),
         "undo": journal.undo, "redo": journal.redo}[op[0]]()
        model.apply(op)
        assert journal_state(journal) == model.state()


def _line_reader(proc):
    """Lines of the helper's stdout, read by a thread so that a hang fails in seconds."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: ([lines.put(line) for line in proc.stdout], lines.put("")),
                     daemon=True).start()

    def read_line() -> str:
        try:
            line = lines.get(timeout=20)
        except queue.Empty:
            raise AssertionError("no output from the editor for 20 s") from None
        assert line, f"helper process ended early: {proc.stderr.read() if proc.poll() is not None else ''}"
        return line.rstrip("\n")

    return read_line


@pytest.mark.timeout(120)
def test_sigkill_at_random_points_loses_no_acknowledged_edit(tmp_path):
    path = tmp_path / "run" / "edits.jsonl"
    rng = random.Random(20240601)
    proc = subprocess.Popen(
        [sys.executable, "-c", EDITOR, str(REPO_ROOT)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, encoding="utf-8", bufsize=1,
    )
    read_line = _line_reader(proc)
    model = Model()
    strategies = {"acks": 0, "in-flight": 0, "timer": 0}
    torn = 0
    try:
        for round_no in range(30):
            proc.stdin.write(f"{path}\t{rng.randrange(1 << 30)}\n")
            proc.stdin.flush()
            pid = int(read_line().split()[1])
            strategy = rng.choice(list(strategies))
            strategies[strategy] += 1
            target = rng.randint(0, 25)
            timer = None
            if strategy == "timer":
                timer = threading.Timer(rng.uniform(0.0, 0.08), os.kill, (pid, signal.SIGKILL))
                timer.start()
            lines, acks, killed = [], 0, False
            while True:
                line = read_line()
                if line.startswith("DONE"):
                    status = int(line.split()[1])
                    break
                assert not line.startswith("ERROR"), line
                lines.append(line)
                acks += line.startswith("ACK")
                if not killed and ((strategy == "acks" and acks >= target)
                                   or (strategy == "in-flight" and acks >= target and line.startswith("OP"))):
                    os.kill(pid, signal.SIGKILL)
                    killed = True
            if timer is not None:
                timer.join()
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (round_no, status)

            # replay the acknowledged operations on the model
            if lines:  # (a timer may kill it before it even opened the journal)
                assert lines[0] == f"READY {model.n}", (round_no, lines[0])
            pending = None
            for line in lines[1:]:
                if line.startswith("OP "):
                    assert pending is None
                    pending = json.loads(line[3:])
                else:
                    model.apply(pending)
                    pending = None
                    assert line == f"ACK {model.n}", (round_no, line)

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                journal = EditJournal(path)  # must open cleanly
            torn += sum(issubclass(w.category, JournalWarning) for w in caught)
            got = journal_state(journal)
            if pending is not None and got != model.state():
                with_pending = model.copy()
                with_pending.apply(pending)  # the in-flight call reached the disk before the kill
                assert got == with_pending.state(), (round_no, strategy)
                model = with_pending
            assert got == model.state(), (round_no, strategy)
            journal.close()
    finally:
        proc.stdin.close()
        proc.kill()
        proc.wait()
    assert model.n > 30, "the editors hardly edited anything"
    assert all(strategies.values()), strategies
    assert torn == 0  # SIGKILL cannot tear a single write(); torn lines are tested apart

    # the undo/redo stacks survived too: walk them back and forth against the model
    journal = EditJournal(path)
    while journal.can_undo:
        assert journal.undo()
        model.apply(["undo"])
        assert journal_state(journal) == model.state()
    for _ in range(3):
        journal.redo()
        model.apply(["redo"])
    assert journal_state(journal) == model.state()
    journal.close()
