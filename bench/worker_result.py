"""The benchmarks' subprocess protocol: a worker prints one ``RESULT {json}`` line, the parent
runs it in a fresh process (fair timing and peak memory) and reads that line back."""
from __future__ import annotations

import json
import os
import subprocess
import sys

PREFIX = "RESULT "


def report(result: dict) -> None:
    """Worker side: print the result line."""
    print(PREFIX + json.dumps(result), flush=True)


def run_worker(cmd: list[str], label: str, env: dict | None = None) -> dict:
    """Parent side: run ``cmd`` (warnings silenced; ``env`` added to the environment) and return
    its result; exit naming ``label`` with the worker's stderr if it failed or printed no result."""
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})})
    lines = [line for line in proc.stdout.splitlines() if line.startswith(PREFIX)]
    if proc.returncode != 0 or not lines:
        sys.exit(f"{label} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[0][len(PREFIX):])
