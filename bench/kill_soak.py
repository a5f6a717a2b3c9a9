"""Kill soak of the real app: SIGKILL the GUI on a run while it relabels, reopen, check.

    python bench/kill_soak.py                    # 200 kills on a tiny demo run made once
    python bench/kill_soak.py --kills 20 --seed 3 --work /tmp/soak --keep

A tiny trained run is made once (``uldl-studio train demo --limit 60 --epochs 1 --set
image_size=16 ...``). Each round starts the app on the run in its own process, as
``uldl-studio gui RUN`` does, with an in-process key driver (``bench/soak_driver.py RUN
ACK_LOG``): once the window has loaded the run it types number keys, Space, Ctrl+Z,
Ctrl+Shift+Z and arrows, and after the window shows each edit it appends an
acknowledgement (journal seq, sample ids, label and unsure as shown) to the ack log, fsync-ed.
The soak SIGKILLs the process at a random moment (mostly while it types, sometimes while it is
still starting), then opens ``RUN/edits.jsonl`` with ``EditJournal`` and replays it with its
own model: for every acknowledged seq the journal must hold that operation and, replayed up to
it, give the labels and unsure marks the window showed; every reopen must come up (its "ready"
line) with exactly the state of the journal at that moment. Prints: kills, reopen failures,
acknowledged edits, lost acknowledged edits (the target is 0), time.

The child runs with ``QT_QPA_PLATFORM=offscreen`` unless ``--platform`` says otherwise; its
settings, caches and demo live under ``--work``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))  # soak_driver, when this file is loaded by path (the test)

TRAIN_ARGS = ["--limit", "60", "--epochs", "1", "--device", "cpu", "--set", "image_size=16", "--set", "width=8",
              "--set", "stages=2", "--set", "blocks=1", "--set", "calib_hidden=[16]", "--set", "num_threads=1"]


def cli_command() -> list[str]:
    """``uldl-studio`` beside this interpreter (a venv's script), else ``python -m uldl_studio``."""
    script = Path(sys.executable).parent / "uldl-studio"
    return [str(script)] if script.exists() else [sys.executable, "-m", "uldl_studio"]


def child_env(work: Path, platform: str = "offscreen") -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["QT_QPA_PLATFORM"] = platform
    for name, sub in (("ULDL_STUDIO_CACHE", "cache"), ("XDG_CONFIG_HOME", "config"),
                      ("XDG_CACHE_HOME", "xdg-cache"), ("XDG_DATA_HOME", "xdg-data")):
        env[name] = str(work / sub)
    return env


def make_run(work: Path, env: dict) -> Path:
    """The tiny trained run (made once per work folder)."""
    run_dir = work / "run"
    if (run_dir / "samples.csv").is_file():
        return run_dir
    done = subprocess.run(cli_command() + ["train", "demo", "--out", str(run_dir)] + TRAIN_ARGS, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"training the soak run failed:\n{done.stdout[-2000:]}")
    return run_dir


# ----------------------------------------------------------------------------- checking

def base_labels(run_dir: Path) -> tuple[list[str], dict[str, int]]:
    """Sample ids in table order and the labels the window starts from (no edits)."""
    import pandas as pd

    samples = pd.read_csv(run_dir / "samples.csv", dtype={"sample_id": str})
    column = "label_given" if "label_given" in samples else "label"
    ids = samples["sample_id"].astype(str).tolist()
    return ids, dict(zip(ids, samples[column].astype(int).tolist()))


@dataclass
class Replay:
    """An independent model of the journal's semantics, walked record by record."""

    labels: dict = field(default_factory=dict)
    unsure: set = field(default_factory=set)
    commands: dict = field(default_factory=dict)

    def _set(self, command: dict, values) -> None:
        for sid, value in zip(command["ids"], values):
            if command["op"] == "relabel":
                if value is None:
                    self.labels.pop(sid, None)
                else:
                    self.labels[sid] = value
            elif value:
                self.unsure.add(sid)
            else:
                self.unsure.discard(sid)

    def apply(self, record: dict) -> None:
        op = record["op"]
        if op in ("relabel", "unsure"):
            self.commands[record["seq"]] = record
            self._set(record, record["labels"] if op == "relabel" else [record["value"]] * len(record["ids"]))
        else:
            command = self.commands[record["target"]]
            if op == "undo":
                self._set(command, command["prev"])
            else:
                self._set(command, command["labels"] if command["op"] == "relabel"
                          else [command["value"]] * len(command["ids"]))

    def shown(self, sid: str, base: dict) -> list:
        return [int(self.labels.get(sid, base.get(sid, -1))), sid in self.unsure]


def read_log(path: Path, offset: int = 0) -> tuple[list[dict], int]:
    """Complete JSON lines of the ack log from byte ``offset``; returns them and the new offset."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    records = []
    for line in data[:end].splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            pass  # cannot happen with one write per line; ignored rather than trusted
    return records, offset + end


def check_journal(run_dir: Path, acks: list[dict], readies: list[dict], ids: list[str], base: dict) -> dict:
    """Open the journal as the app does and check every acknowledgement and every reopen."""
    from uldl_studio.core.labels.edits import EditJournal, JournalWarning
    from soak_driver import state_digest

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        journal = EditJournal(run_dir / "edits.jsonl")
    torn = sum(issubclass(w.category, JournalWarning) for w in caught)
    history = journal.history
    journal.close()
    by_seq = {r["seq"]: r for r in history}
    wanted: dict[int, list] = {}
    for ack in acks:
        wanted.setdefault(ack["ack"], []).append(("ack", ack))
    for ready in readies:
        wanted.setdefault(ready["seq"], []).append(("ready", ready))
    replay = Replay()
    lost, bad_reopens = [], []
    pending = sorted(wanted)
    i = 0

    def evaluate(seq: int) -> None:
        for kind, item in wanted[seq]:
            if kind == "ack":
                record = by_seq.get(seq)
                ok = record is not None and record["op"] == item["op"] and all(
                    replay.shown(sid, base) == list(value) for sid, value in item["shown"].items())
                if not ok:
                    lost.append(item)
            else:
                labels = [replay.labels.get(sid, base[sid]) for sid in ids]
                unsure = [sid in replay.unsure for sid in ids]
                if item["digest"] != state_digest(ids, labels, unsure) or item["ops"] != len(
                        [r for r in history if r["seq"] <= seq]):
                    bad_reopens.append(item)

    while i < len(pending) and pending[i] <= 0:
        evaluate(pending[i])
        i += 1
    for record in history:
        replay.apply(record)
        while i < len(pending) and pending[i] <= record["seq"]:
            if pending[i] == record["seq"]:
                evaluate(pending[i])
            else:  # a seq the journal does not have
                lost.extend(item for kind, item in wanted[pending[i]] if kind == "ack")
                bad_reopens.extend(item for kind, item in wanted[pending[i]] if kind == "ready")
            i += 1
    for seq in pending[i:]:  # acknowledged beyond the journal's end: lost
        lost.extend(item for kind, item in wanted[seq] if kind == "ack")
        bad_reopens.extend(item for kind, item in wanted[seq] if kind == "ready")
    model_ok = replay.labels == journal.labels() and replay.unsure == journal.unsure()
    return {"lost": lost, "bad_reopens": bad_reopens, "torn": torn, "ops": len(history),
            "last_seq": journal.last_seq, "model_agrees": model_ok}


# ----------------------------------------------------------------------------- the soak

def soak(kills: int = 200, *, seed: int = 0, work: Path | None = None, platform: str = "offscreen",
         early_kill: float = 0.15, max_typing_s: float = 1.5, startup_timeout_s: float = 120.0,
         log=print) -> dict:
    """Run the soak; returns the summary (see the module docstring)."""
    started = time.perf_counter()
    work = Path(work) if work is not None else Path(tempfile.mkdtemp(prefix="uldl-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    lock = open(work / "soak.lock", "w")
    try:  # two soaks on one run would share its journal and ack log: refuse the second
        import fcntl

        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # pragma: no cover - not POSIX
        pass
    except OSError:
        lock.close()
        raise RuntimeError(f"{work}: another kill soak is running in this folder") from None
    env = child_env(work, platform)
    run_dir = make_run(work, env)
    made = time.perf_counter() - started
    ids, base = base_labels(run_dir)
    ops_before = check_journal(run_dir, [], [], ids, base)["ops"] if (run_dir / "edits.jsonl").exists() else 0
    ack_log = work / "ack.log"
    app_err = open(work / "app.stderr", "ab")
    rng = random.Random(seed)
    offset = read_log(ack_log)[1]
    all_acks: list[dict] = []
    all_readies: list[dict] = []
    summary = {"kills": 0, "kills_while_starting": 0, "reopens": 0, "reopen_failures": 0, "crashes": 0,
               "acknowledged": 0, "lost": 0, "bad_reopens": 0, "torn_lines": 0, "journal_ops": 0,
               "startup_s_max": 0.0, "startup_s_total": 0.0, "run_dir": str(run_dir)}
    failures: list[str] = []
    try:
        for round_no in range(kills):
            early = rng.random() < early_kill
            t0 = time.perf_counter()
            proc = subprocess.Popen([sys.executable, str(BENCH / "soak_driver.py"), str(run_dir), str(ack_log),
                                     "--seed", str(seed * 100_003 + round_no)], env=env,
                                    stdout=subprocess.DEVNULL, stderr=app_err)
            ready = None
            round_records: list[dict] = []
            if early:  # somewhere in the start-up: imports, window, reading the run, replaying the journal
                deadline = t0 + rng.uniform(0.0, max(0.5, summary["startup_s_total"] / max(1, summary["reopens"])))
                while time.perf_counter() < deadline and proc.poll() is None:
                    time.sleep(0.01)
            else:
                while ready is None and proc.poll() is None and time.perf_counter() - t0 < startup_timeout_s:
                    time.sleep(0.02)
                    records, offset = read_log(ack_log, offset)
                    round_records += records
                    ready = next((r for r in round_records if r.get("ready") == proc.pid), None)
                    if any(r.get("failed") == proc.pid for r in round_records):
                        break
                if ready is None:
                    summary["reopen_failures"] += 1
                    failures.append(f"round {round_no}: no window with the run after "
                                    f"{time.perf_counter() - t0:.1f} s (exit {proc.poll()}); "
                                    + "; ".join(r.get("message", "") for r in round_records if r.get("failed")))
                else:
                    startup = time.perf_counter() - t0
                    summary["reopens"] += 1
                    summary["startup_s_total"] += startup
                    summary["startup_s_max"] = max(summary["startup_s_max"], startup)
                    time.sleep(rng.uniform(0.0, max_typing_s))
            if proc.poll() is not None:  # it ended before the kill: a crash (or an early exit)
                summary["crashes"] += 1
                failures.append(f"round {round_no}: the app exited by itself (status {proc.returncode})")
            else:
                os.kill(proc.pid, signal.SIGKILL)
                summary["kills"] += 1
            proc.wait()
            records, offset = read_log(ack_log, offset)
            round_records += records
            mine = [r for r in round_records if r.get("pid") == proc.pid or r.get("ready") == proc.pid]
            acks = [r for r in mine if "ack" in r]
            readies = [r for r in mine if "ready" in r]
            if early:
                summary["reopens"] += bool(readies)
                summary["kills_while_starting"] += not readies
            all_acks += acks
            all_readies += readies
            summary["acknowledged"] += len(acks)
            result = check_journal(run_dir, acks, readies, ids, base)
            summary["torn_lines"] += result["torn"]
            if result["lost"] or result["bad_reopens"] or not result["model_agrees"]:
                failures.append(f"round {round_no}: {len(result['lost'])} acknowledged edit(s) lost, "
                                f"{len(result['bad_reopens'])} reopen(s) with another state, "
                                f"model agrees: {result['model_agrees']}; first: "
                                f"{(result['lost'] or result['bad_reopens'] or [None])[0]}")
            if log is not None and (round_no + 1) % 10 == 0:
                log(f"  {round_no + 1}/{kills} rounds: {summary['acknowledged']} acknowledged, "
                    f"{result['ops']} journal ops, {time.perf_counter() - started:.0f} s")
    finally:
        app_err.close()
        lock.close()
    final = check_journal(run_dir, all_acks, all_readies, ids, base)  # everything, once more, at the end
    summary["lost"] = len(final["lost"])
    summary["bad_reopens"] = len(final["bad_reopens"])
    summary["journal_ops"] = final["ops"] - ops_before
    # journaled but never acknowledged: the edit in flight when a kill came (at most one per kill)
    summary["unacknowledged_ops"] = summary["journal_ops"] - summary["acknowledged"]
    summary["model_agrees"] = final["model_agrees"]
    summary["failures"] = failures
    summary["seconds"] = time.perf_counter() - started
    summary["seconds_making_run"] = made
    summary["work"] = str(work)
    return summary


def umap_cancel_ms(run_dir: Path, repeats: int = 3, working_s: float = 1.0) -> list[float]:
    """Milliseconds from setting a UMAP job's cancel event to its return (its child killed
    and reaped), cancelled ``working_s`` into the child's work (umap-learn is still importing)."""
    import threading

    from uldl_studio.qt.umap_worker import compute_umap

    took = []
    for _ in range(repeats):
        cancel, ended = threading.Event(), []
        worker = threading.Thread(target=lambda: (compute_umap(run_dir, cancel), ended.append(time.perf_counter())))
        worker.start()
        time.sleep(working_s)
        started = time.perf_counter()
        cancel.set()
        worker.join(60)
        took.append((ended[0] - started) * 1000 if ended else float("nan"))
    return took


def format_summary(s: dict) -> str:
    mean = s["startup_s_total"] / max(1, s["reopens"])
    lines = [
        f"kills                 {s['kills']} ({s['kills_while_starting']} while the app was starting)",
        f"reopens               {s['reopens']} (start-up to a loaded run: mean {mean:.1f} s, max {s['startup_s_max']:.1f} s)",
        f"reopen failures       {s['reopen_failures']}",
        f"crashes               {s['crashes']}",
        f"acknowledged edits    {s['acknowledged']}",
        f"lost acknowledged     {s['lost']}",
        f"reopens != journal    {s['bad_reopens']}",
        f"torn journal lines    {s['torn_lines']}",
        f"journal operations    {s['journal_ops']} ({s['unacknowledged_ops']} in flight at a kill, never acknowledged)",
        f"time                  {s['seconds']:.0f} s (making the run {s['seconds_making_run']:.0f} s)",
    ]
    lines += [f"FAILURE: {f}" for f in s["failures"][:20]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=200, help="rounds (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", help="folder for the run, the ack log and the app's settings (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    parser.add_argument("--platform", default="offscreen", help="QT_QPA_PLATFORM of the app (default offscreen)")
    parser.add_argument("--max-typing", type=float, default=1.5, help="longest typing before a kill, seconds")
    args = parser.parse_args(argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="uldl-soak-"))
    print(f"kill soak: {args.kills} rounds in {work} ({os.cpu_count()} CPU cores, QT_QPA_PLATFORM={args.platform})")
    try:
        summary = soak(args.kills, seed=args.seed, work=work, platform=args.platform, max_typing_s=args.max_typing)
        cancelled = umap_cancel_ms(Path(summary["run_dir"]))
    finally:
        if not args.work and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(format_summary(summary))
    print(f"UMAP cancelled in     {', '.join(f'{ms:.0f}' for ms in cancelled)} ms (the child killed and reaped)")
    ok = summary["lost"] == 0 and summary["reopen_failures"] == 0 and summary["crashes"] == 0 \
        and summary["bad_reopens"] == 0 and summary["model_agrees"] \
        and 0 <= summary["unacknowledged_ops"] <= summary["kills"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
