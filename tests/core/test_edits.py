"""The edit journal: semantics, replay, torn and damaged files, apply_edits."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uldl_studio.core.labels.edits import (
    EditJournal,
    EditsWarning,
    JournalError,
    JournalWarning,
    apply_edits,
)
from uldl_studio.core.table import DatasetError, make_table


def state(journal: EditJournal):
    return journal.labels(), journal.unsure(), journal.undo_depth, journal.redo_depth, len(journal)


def reopen(path, **kwargs) -> EditJournal:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean journal opens without any warning
        return EditJournal(path, **kwargs)


@pytest.fixture
def jpath(tmp_path):
    return tmp_path / "run" / "edits.jsonl"


# -- semantics -------------------------------------------------------------------------
def test_open_missing_creates_nothing(jpath):
    journal = EditJournal(jpath)
    assert journal.labels() == {} and journal.unsure() == set() and len(journal) == 0
    assert not journal.can_undo and not journal.can_redo
    assert journal.undo() is False and journal.redo() is False
    assert not jpath.exists()


def test_bulk_relabel_is_one_command_and_undo_restores_previous_labels(jpath):
    journal = EditJournal(jpath)
    journal.relabel(["a"], [1])
    journal.relabel(["a", "b", "c"], [2, 2, 3])
    assert journal.labels() == {"a": 2, "b": 2, "c": 3}
    assert journal.undo() is True
    assert journal.labels() == {"a": 1}  # a back to 1, b and c back to "no edit"
    assert journal.can_redo
    assert journal.redo() is True
    assert journal.labels() == {"a": 2, "b": 2, "c": 3}
    assert journal.undo() and journal.undo()
    assert journal.labels() == {} and not journal.can_undo
    assert journal.undo() is False
    assert len(journal) == 6  # 2 commands + redo + 3 undos; a refused undo writes nothing
    assert len(jpath.read_bytes().splitlines()) == 6


def test_single_label_for_many_and_duplicates(jpath):
    journal = EditJournal(jpath)
    journal.relabel(["a", "b", "a"], 4)
    assert journal.labels() == {"a": 4, "b": 4}
    journal.relabel(["a", "b", "a"], [1, 2, 3])  # repeated id: last label wins
    assert journal.labels() == {"a": 3, "b": 2}
    journal.undo()
    assert journal.labels() == {"a": 4, "b": 4}
    journal.relabel("abc", np.int64(2))  # one id given as a plain string, a numpy label
    journal.mark_unsure("abc")
    assert journal.labels()["abc"] == 2 and journal.unsure() == {"abc"}
    journal.relabel(["a", "b"], np.array([5, 6]))
    assert journal.labels()["b"] == 6


def test_new_edit_after_undo_clears_redo(jpath):
    journal = EditJournal(jpath)
    journal.relabel(["a"], [1])
    journal.relabel(["b"], [2])
    journal.undo()
    assert journal.can_redo
    journal.mark_unsure(["c"])
    assert not journal.can_redo and journal.redo() is False
    assert state(reopen(jpath)) == state(journal)


def test_unsure_marks_are_undoable(jpath):
    journal = EditJournal(jpath)
    journal.mark_unsure(["a", "b"])
    journal.mark_unsure(["b", "c"], unsure=False)  # only b changes
    assert journal.unsure() == {"a"}
    journal.undo()
    assert journal.unsure() == {"a", "b"}
    journal.undo()
    assert journal.unsure() == set()
    journal.redo()
    assert journal.unsure() == {"a", "b"}


def test_noop_commands_are_not_journaled(jpath):
    journal = EditJournal(jpath)
    journal.relabel([], [])
    journal.mark_unsure([])
    journal.relabel(["a"], [1])
    journal.relabel(["a"], [1])           # already the journal's label
    journal.mark_unsure(["x"], unsure=False)  # already not unsure
    assert len(journal) == 1 and journal.undo_depth == 1


def test_confirming_the_given_label_is_recorded(jpath):
    # Enter "accepts the current label": the sample counts as reviewed (labels()),
    # though it is not "edited" once applied (see apply_edits).
    journal = EditJournal(jpath)
    journal.relabel(["a"], [0])
    assert journal.labels() == {"a": 0}


@pytest.mark.parametrize("bad", [[-1], [1.5], ["x"], [None]])
def test_relabel_rejects_bad_labels(jpath, bad):
    journal = EditJournal(jpath)
    with pytest.raises(ValueError):
        journal.relabel(["a"], bad)
    with pytest.raises(ValueError, match="2 sample ids but 1 labels"):
        journal.relabel(["a", "b"], [1])
    assert len(journal) == 0 and not jpath.exists()


def test_subscribers_hear_affected_ids_after_the_line_is_on_disk(jpath):
    journal = EditJournal(jpath)
    heard = []

    def callback(ids):
        # by now the edit is durable: a fresh reader sees it
        heard.append((ids, EditJournal(jpath).labels(), EditJournal(jpath).unsure()))

    unsubscribe = journal.subscribe(callback)
    journal.subscribe(lambda ids: 1 / 0)  # a broken view does not break editing
    journal.relabel(["a", "b"], [1, 2])
    journal.mark_unsure(["b"])
    journal.undo()
    unsubscribe()
    journal.redo()
    assert heard == [
        (["a", "b"], {"a": 1, "b": 2}, set()),
        (["b"], {"a": 1, "b": 2}, {"b"}),
        (["b"], {"a": 1, "b": 2}, set()),
    ]


def test_lines_are_checksummed_json(jpath):
    journal = EditJournal(jpath)
    journal.relabel(["päth, \"quoted\"\n"], [3])
    journal.undo()
    lines = jpath.read_text("utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["seq"] for r in records] == [1, 2]
    assert records[0]["op"] == "relabel" and records[0]["prev"] == [None]
    assert records[1] == {**records[1], "op": "undo", "target": 1}
    assert all(len(r["crc"]) == 8 for r in records)
    assert journal.history[0]["ids"] == ["päth, \"quoted\"\n"]


def test_close_and_context_manager(jpath):
    with EditJournal(jpath) as journal:
        journal.relabel(["a"], [1])
    with pytest.raises(JournalError, match="closed"):
        journal.relabel(["b"], [1])
    assert journal.labels() == {"a": 1}


def test_second_writer_gets_a_clear_error(jpath):
    first = EditJournal(jpath)
    first.relabel(["a"], [1])
    second = EditJournal(jpath)  # reading is always allowed
    assert second.labels() == {"a": 1}
    with pytest.raises(JournalError, match="another window or process"):
        second.relabel(["b"], [2])
    first.close()
    third = EditJournal(jpath)
    third.relabel(["b"], [2])
    assert reopen(jpath).labels() == {"a": 1, "b": 2}


def test_file_changed_since_opened_is_refused(jpath):
    EditJournal(jpath).relabel(["a"], [1])
    stale = EditJournal(jpath)
    other = EditJournal(jpath)
    other.relabel(["b"], [2])
    other.close()
    with pytest.raises(JournalError, match="changed on disk"):
        stale.relabel(["c"], [3])
    assert reopen(jpath).labels() == {"a": 1, "b": 2}


ops = st.lists(
    st.one_of(
        st.tuples(st.just("relabel"), st.lists(st.sampled_from("abcdef"), min_size=1, max_size=4), st.integers(0, 3)),
        st.tuples(st.just("unsure"), st.lists(st.sampled_from("abcdef"), min_size=1, max_size=3), st.booleans()),
        st.tuples(st.just("undo")),
        st.tuples(st.just("redo")),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops)
def test_replay_reproduces_state_and_stacks(tmp_path_factory, ops):
    path = tmp_path_factory.mktemp("j") / "edits.jsonl"
    journal = EditJournal(path)
    for op in ops:
        if op[0] == "relabel":
            journal.relabel(op[1], op[2])
        elif op[0] == "unsure":
            journal.mark_unsure(op[1], op[2])
        elif op[0] == "undo":
            journal.undo()
        else:
            journal.redo()
    copy = path.with_name("copy.jsonl")
    if path.exists():
        copy.write_bytes(path.read_bytes())
    replayed = reopen(copy)  # a copy: both may write while stepping through the stacks
    assert state(replayed) == state(journal)
    # the stacks are the same commands: undoing/redoing everything matches step by step
    while journal.can_undo:
        assert journal.undo() and replayed.undo()
        assert state(replayed) == state(journal)
    while journal.can_redo:
        assert journal.redo() and replayed.redo()
        assert state(replayed) == state(journal)
    assert journal.labels() == replayed.labels()


# -- torn and damaged files ---------------------------------------------------------------
def _three_ops(path):
    journal = EditJournal(path)
    journal.relabel(["a", "b"], [1, 2])
    journal.mark_unsure(["a"])
    before = state(journal)
    journal.relabel(["b", "ç,\"x\""], [5, 6])
    journal.close()
    return before


def test_torn_last_line_at_every_byte_offset(jpath):
    before = _three_ops(jpath)
    data = jpath.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    for cut in range(start, len(data)):
        jpath.write_bytes(data[:cut])
        if cut == start:
            journal = reopen(jpath)
        else:
            with pytest.warns(JournalWarning, match="line 3: ignoring an incomplete last edit"):
                journal = EditJournal(jpath)
        assert state(journal) == before, cut
        journal.relabel(["z"], [7])  # the torn bytes are cut away before appending
        journal.close()
        again = reopen(jpath)
        assert again.labels() == {**before[0], "z": 7}
        assert len(again) == 3 and again.history[-1]["seq"] == 3
        assert jpath.read_bytes().startswith(data[:start])


def test_bad_checksum_on_last_complete_line_is_torn(jpath):
    before = _three_ops(jpath)
    data = bytearray(jpath.read_bytes())
    data[-30] ^= 0x01
    jpath.write_bytes(bytes(data))
    with pytest.warns(JournalWarning, match="checksum mismatch"):
        journal = EditJournal(jpath)
    assert state(journal) == before


def test_garbage_tail_after_power_loss_is_torn(jpath):
    before = _three_ops(jpath)
    with open(jpath, "ab") as handle:
        handle.write(b"\x00" * 37)
    with pytest.warns(JournalWarning):
        journal = EditJournal(jpath)
    assert journal.labels() == {"a": 1, "b": 5, "ç,\"x\"": 6}
    journal.undo()
    journal.close()
    assert state(reopen(jpath))[:2] == before[:2]


def _damage_middle(path):
    journal = EditJournal(path)
    journal.relabel(["a"], [1])
    journal.relabel(["b"], [2])   # line 2: damaged below
    journal.relabel(["c"], [3])
    journal.undo()                # undoes c
    journal.mark_unsure(["d"])
    journal.close()
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"labels":[2]', b'"labels":[4]')
    path.write_bytes(b"".join(lines))


def test_bad_middle_line_is_a_clear_error_and_changes_nothing(jpath):
    _damage_middle(jpath)
    damaged = jpath.read_bytes()
    with pytest.raises(JournalError) as info:
        EditJournal(jpath)
    message = str(info.value)
    assert str(jpath) in message and "line 2:" in message and "checksum mismatch" in message
    assert "3 later line(s)" in message and "recover=True" in message
    assert isinstance(info.value, DatasetError)  # the CLI prints it as one line
    assert jpath.read_bytes() == damaged


def test_recover_keeps_valid_later_lines_and_a_backup(jpath):
    _damage_middle(jpath)
    damaged = jpath.read_bytes()
    with pytest.warns(JournalWarning) as record:
        journal = EditJournal(jpath, recover=True)
    messages = " | ".join(str(w.message) for w in record)
    assert "line 2: skipping a damaged edit" in messages and "edits.jsonl.corrupt-1" in messages
    # b's relabel is lost; c's relabel, its undo and d's mark (later lines) are kept
    assert journal.labels() == {"a": 1}
    assert journal.unsure() == {"d"}
    assert journal.undo_depth == 2 and not journal.can_redo  # [a's relabel, d's mark]
    assert (jpath.parent / "edits.jsonl.corrupt-1").read_bytes() == damaged
    journal.undo()
    journal.undo()
    assert journal.labels() == {} and journal.unsure() == set()
    journal.redo()
    journal.close()
    assert state(reopen(jpath)) == ({"a": 1}, set(), 1, 1, 7)  # the rewritten file opens cleanly


def test_undo_of_a_lost_command_is_skipped_in_recovery(jpath):
    journal = EditJournal(jpath)
    journal.relabel(["a"], [1])
    journal.relabel(["b"], [2])
    journal.undo()  # targets the b command
    journal.close()
    lines = jpath.read_bytes().splitlines(keepends=True)
    jpath.write_bytes(lines[0] + b"{broken\n" + lines[2])
    with pytest.raises(JournalError, match="line 2: damaged"):
        EditJournal(jpath)
    with pytest.warns(JournalWarning) as record:
        journal = EditJournal(jpath, recover=True)
    messages = [str(w.message) for w in record]
    assert any("line 2: skipping a damaged edit" in m for m in messages)
    assert any("line 3: skipping a damaged edit" in m and "undo of command 2" in m for m in messages)
    assert any("skipped 2 damaged line(s) (2, 3)" in m for m in messages)
    assert journal.labels() == {"a": 1} and journal.undo_depth == 1


def test_newer_format_version_is_refused(jpath):
    EditJournal(jpath).relabel(["a"], [1])
    line = json.loads(jpath.read_text())
    from uldl_studio.core.labels.edits import _encode

    del line["crc"]
    line.update(v=99, seq=2)
    with open(jpath, "ab") as handle:
        handle.write(_encode(line))
    with pytest.raises(JournalError, match="line 2: written by a newer ULDL Studio"):
        EditJournal(jpath)


def test_blank_lines_are_tolerated(jpath):
    EditJournal(jpath).relabel(["a"], [1])
    with open(jpath, "ab") as handle:
        handle.write(b"\n")
    journal = reopen(jpath)
    journal.relabel(["b"], [2])
    assert reopen(jpath).labels() == {"a": 1, "b": 2}


# -- apply_edits --------------------------------------------------------------------------
@pytest.fixture
def table():
    frame = pd.DataFrame({
        "sample_id": ["s0", "s1", "s2", "s3"],
        "path": ["/d/0.png", "/d/1.png", "/d/2.png", "/d/3.png"],
        "split": ["train", "train", "valid", "test"],
        "label": [0, 1, 2, 1],
        "lambda": [0.1, 0.2, 0.3, 0.4],
    })
    return make_table(frame, ["neutral", "happiness", "surprise"], "/d", "csv")


def test_apply_edits_columns_and_semantics(table, jpath):
    journal = EditJournal(jpath)
    journal.relabel(["s0", "s1"], [2, 1])  # s1 confirmed with its given label
    journal.mark_unsure(["s3"])
    out = apply_edits(table, journal)
    assert out["label"].tolist() == [2, 1, 2, 1]
    assert out["label_given"].tolist() == [0, 1, 2, 1]
    assert out["edited"].tolist() == [True, False, False, False]
    assert out["unsure"].tolist() == [False, False, False, True]
    assert out["edited"].dtype == bool and out["unsure"].dtype == bool
    assert out["label"].dtype == np.int64
    assert out.attrs == table.attrs
    assert table["label"].tolist() == [0, 1, 2, 1] and "edited" not in table  # input untouched
    assert out["lambda"].tolist() == table["lambda"].tolist()


def test_apply_edits_uses_label_given_as_base(table, jpath):
    journal = EditJournal(jpath)
    journal.relabel(["s0"], [2])
    trained_on_edits = apply_edits(table, journal)
    journal.undo()
    out = apply_edits(trained_on_edits, journal)
    assert out["label"].tolist() == [0, 1, 2, 1] and not out["edited"].any()


def test_apply_edits_unknown_ids_and_labels_warn_not_crash(table, jpath):
    journal = EditJournal(jpath)
    journal.relabel(["s0", "gone1", "gone2"], [1, 1, 1])
    journal.relabel(["s2"], [7])  # the table has only 3 classes
    journal.mark_unsure(["gone3", "s1"])
    with pytest.warns(EditsWarning) as record:
        out = apply_edits(table, journal)
    assert len(record) == 1
    message = str(record[0].message)
    assert "3 edited sample id(s) are not in the table" in message
    assert "1 edit(s) have a label outside" in message and str(jpath) in message
    assert out["label"].tolist() == [1, 1, 2, 1]
    assert out["unsure"].tolist() == [False, True, False, False]


def test_apply_edits_without_edits(table, jpath):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = apply_edits(table, EditJournal(jpath))
    assert out["label"].tolist() == table["label"].tolist()
    assert not out["edited"].any() and not out["unsure"].any()
    assert out["label_given"].tolist() == table["label"].tolist()
