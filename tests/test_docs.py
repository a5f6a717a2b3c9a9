"""The docs cannot drift from the code.

1. Every ```sh block of README.md runs, in order, in one temporary folder, on the demo at a
   tiny size. The rule (CONTRIBUTING.md, "Docs that cannot drift"):
   - lines whose first word is ``make``, ``source``, ``sudo``, ``pip``, ``git`` or ``cd`` are
     skipped (installation and shell set-up);
   - ``uldl-studio`` runs as ``python -m uldl_studio`` with this interpreter;
   - ``demo-data`` gets ``--n 150``; ``train`` gets ``--epochs 1`` (replacing any ``--epochs``)
     and a tiny network (:data:`TINY`); ``retrain`` gets ``--epochs 1``;
   - ``gui`` gets ``--screenshot FILE.png`` and renders offscreen;
   - every command must exit with status 0.
2. The soft-label columns the README lists are the columns ``export`` and ``predict`` write, in
   order (read from the files the README's own commands wrote).
3. Every Markdown table in the docs has the same number of cells in every row (an unescaped
   ``|`` inside a code span splits a cell when rendered).
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = [README, REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md")),
        *sorted((REPO / "bench").glob("*.md"))]
SKIPPED = {"make", "source", "sudo", "pip", "git", "cd"}
TINY = ["--set", "image_size=16", "--set", "width=8", "--set", "stages=2", "--set", "blocks=1",
        "--set", "calib_hidden=[16]", "--set", "batch_size=32", "--set", "num_threads=1"]


# ----------------------------------------------------------------------------- the README's commands
def fenced_blocks(text: str, language: str) -> list[str]:
    """The bodies of the ```language blocks of a Markdown text, in order."""
    return re.findall(rf"^```{language}[ \t]*\n(.*?)^```[ \t]*$", text, flags=re.M | re.S)


def readme_commands(text: str) -> list[list[str]]:
    """The README's runnable commands: the lines of its ```sh blocks, comments removed,
    ``\\`` continuations joined, set-up lines skipped."""
    commands = []
    for block in fenced_blocks(text, "sh"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] not in SKIPPED:
                commands.append(words)
    return commands


def tiny_command(words: list[str], shots: Path, index: int) -> list[str]:
    """One README command as the test runs it (the rule in the module docstring)."""
    if words[0] != "uldl-studio":
        raise AssertionError(f"README: a ```sh line runs {words[0]!r}; only uldl-studio commands are "
                             "checked (put other commands in a ```text block): " + " ".join(words))
    args = list(words[1:])
    command = args[0] if args else ""
    if command in ("train", "retrain") and "--epochs" in args:
        at = args.index("--epochs")
        del args[at:at + 2]
    if command == "demo-data":
        args += ["--n", "150"]
    elif command == "train":
        args += ["--epochs", "1", *TINY]
    elif command == "retrain":
        args += ["--epochs", "1"]
    elif command == "gui" and "--screenshot" not in args:
        args += ["--screenshot", str(shots / f"gui-{index}.png")]
    return [sys.executable, "-m", "uldl_studio", *args]


def test_readme_has_runnable_commands_and_the_rule_rejects_unknown_programs(tmp_path):
    commands = readme_commands(README.read_text(encoding="utf-8"))
    names = {words[1] for words in commands if len(words) > 1}
    assert {"demo-data", "train", "evaluate", "export", "gui", "predict"} <= names, names
    assert readme_commands("```sh\nmake install   # set-up\nuldl-studio train x --out r  # c\n```\n") == \
        [["uldl-studio", "train", "x", "--out", "r"]]
    with pytest.raises(AssertionError, match="only uldl-studio"):
        tiny_command(["python", "script.py"], tmp_path, 0)
    assert tiny_command(["uldl-studio", "train", "d", "--epochs", "8"], tmp_path, 0)[3:8] == \
        ["train", "d", "--epochs", "1", "--set"]


@pytest.fixture(scope="module")
def readme_walk(tmp_path_factory):
    """Run the README's commands; return the folder they ran in and the commands run."""
    work = tmp_path_factory.mktemp("readme")
    shots = tmp_path_factory.mktemp("shots")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(REPO),
           "ULDL_STUDIO_SETTINGS_DIR": str(tmp_path_factory.mktemp("settings"))}
    ran = []
    for index, words in enumerate(readme_commands(README.read_text(encoding="utf-8"))):
        command = tiny_command(words, shots, index)
        result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, (f"README command failed: {' '.join(words)}\n"
                                        f"{result.stderr[-3000:]}")
        ran.append(words)
    return work, ran


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_readme_commands_run_on_the_demo(readme_walk):
    work, ran = readme_walk
    assert ran
    assert list(work.iterdir())             # they wrote what they say they write


# --------------------------------------------------------------------------- soft-label columns
def documented_columns(text: str) -> tuple[list[str], list[str]]:
    """The README's column lists: (export's columns, the columns predict adds), from the first
    two ```text blocks of its "Soft-label CSV" section."""
    section = ("\n" + text).split("\n## Soft-label CSV", 1)[1].split("\n## ", 1)[0]
    blocks = fenced_blocks(section, "text")
    assert len(blocks) >= 2, "README, Soft-label CSV: expected two ```text blocks of columns"
    return ([c.strip() for c in blocks[0].replace("\n", " ").split(",") if c.strip()],
            [c.strip() for c in blocks[1].replace("\n", " ").split(",") if c.strip()])


def expand(columns: list[str], classes: list[str]) -> list[str]:
    out = []
    for column in columns:
        match = re.fullmatch(r"(\w+)<class>…", column)
        out += [f"{match.group(1)}{c}" for c in classes] if match else [column]
    return out


def _written_file(work: Path, ran: list[list[str]], command: str) -> Path:
    for words in ran:
        if len(words) > 1 and words[1] == command and "--out" in words:
            return work / words[words.index("--out") + 1]
    raise AssertionError(f"README: no `uldl-studio {command} … --out FILE` in a ```sh block")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_documented_soft_label_columns_are_what_export_and_predict_write(readme_walk):
    import pandas as pd

    work, ran = readme_walk
    exported = pd.read_csv(_written_file(work, ran, "export"), nrows=1).columns.tolist()
    predicted = pd.read_csv(_written_file(work, ran, "predict"), nrows=1).columns.tolist()
    classes = [c[2:] for c in exported if c.startswith("p_")]
    base, extra = documented_columns(README.read_text(encoding="utf-8"))
    assert expand(base, classes) == exported
    assert expand(base, classes) + extra == predicted


def test_documented_columns_parser_reads_the_lists():
    text = ("## Soft-label CSV\n\n```text\nsample_id, label,\nd_<class>…, p_<class>…\n```\n\n"
            "```text\nsource_label, x2d\n```\n\n## Next\n")
    base, extra = documented_columns(text)
    assert expand(base, ["a", "b"]) == ["sample_id", "label", "d_a", "d_b", "p_a", "p_b"]
    assert extra == ["source_label", "x2d"]


# ------------------------------------------------------------------------------- Markdown tables
def table_problems(text: str, name: str = "") -> list[str]:
    """Rows of Markdown tables whose cell count differs from their header's (or a table whose
    second line is not a delimiter row). Cells split on every ``|`` not escaped as ``\\|``, as
    GitHub renders them (a code span does not protect a pipe)."""
    problems = []
    in_fence = False
    table: list[tuple[int, str]] = []

    def cells(line: str) -> int:
        body = line.strip()
        body = body[1:] if body.startswith("|") else body
        body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
        return len(re.split(r"(?<!\\)\|", body))

    def check(rows: list[tuple[int, str]]) -> None:
        if len(rows) < 2:
            return
        (first, header), (_, delimiter) = rows[0], rows[1]
        if not re.fullmatch(r"\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?", delimiter.strip()):
            problems.append(f"{name}:{first + 1}: a table's second line must be its delimiter row")
            return
        width = cells(header)
        if cells(delimiter) != width:
            problems.append(f"{name}:{first + 2}: the delimiter row has {cells(delimiter)} cells, "
                            f"the header {width}")
        for number, row in rows[2:]:
            if cells(row) != width:
                problems.append(f"{name}:{number + 1}: {cells(row)} cells, the header has {width} "
                                "(an unescaped | inside the row?)")

    for number, line in enumerate(text.splitlines()):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            check(table)
            table = []
            continue
        if not in_fence and line.lstrip().startswith("|"):
            table.append((number, line))
        else:
            check(table)
            table = []
    check(table)
    return problems


def test_the_table_check_finds_a_pipe_in_a_code_span():
    good = "| a | b |\n|---|---|\n| `x` | y \\| z |\n"
    broken = "| a | b |\n|---|---|\n| `ROOT/Train|Valid/` | y |\n"
    assert table_problems(good) == []
    assert table_problems(broken, "X.md") == ["X.md:3: 3 cells, the header has 2 (an unescaped | inside the row?)"]
    assert table_problems("| a | b |\n| x | y |\n", "Y.md") == [
        "Y.md:1: a table's second line must be its delimiter row"]
    assert table_problems("```\n| not | a | table\n| x |\n```\n") == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_markdown_tables_render(doc):
    assert table_problems(doc.read_text(encoding="utf-8"), str(doc.relative_to(REPO))) == []
