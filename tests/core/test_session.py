"""The Qt-free session: edits applied once, filter, selection, current sample, events."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from uldl_studio.core.engine.config import TrainConfig
from uldl_studio.core.engine.run import Run
from uldl_studio.core.review.session import Session


def table(n: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    t = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "path": "", "split": "train",
                      "label": np.arange(n) % 3, "lambda": np.linspace(0, 0.9, n)})
    p = rng.dirichlet(np.ones(3), n)
    for j, c in enumerate(["neutral", "happiness", "anger"]):
        t[f"p_{c}"] = p[:, j]
        t[f"d_{c}"] = p[:, j]
    t.attrs["classes"] = ["neutral", "happiness", "anger"]
    return t


class Recorder:
    def __init__(self, session: Session):
        self.calls: list[tuple] = []
        for name in ("table_reset", "results_changed", "edits_changed", "run_changed", "filter_changed",
                     "selection_changed", "current_changed"):
            getattr(session.events, name).connect(lambda *args, n=name: self.calls.append((n, *args)))

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

def session_on_run(tmp_path) -> Session:
    """A session over a run of ``table()`` whose results are the table itself (journal on)."""
    t = table()
    t.attrs.update(root=str(tmp_path / "data"), format="csv")
    run = Run.create(tmp_path / "run", TrainConfig(), t)
    t.to_csv(tmp_path / "run" / "samples.csv", index=False)
    s = Session()
    s.set_run(run, t)
    return s



def test_filter_by_class_and_score_range():
    s = Session()
    s.set_dataset(table(), {"kind": "dataset", "path": "x"})
    rec = Recorder(s)
    s.set_filter(classes=[0, 2])
    assert s.visible_mask().tolist() == [(i % 3) in (0, 2) for i in range(10)]
    s.set_range("lambda", 0.5, 1.0)
    lam = np.linspace(0, 0.9, 10)
    assert s.visible_mask().tolist() == [((i % 3) in (0, 2)) and lam[i] >= 0.5 for i in range(10)]
    assert s.filter_text() == "neutral, anger · λ 0.5–1.0"
    assert rec.names() == ["filter_changed", "filter_changed"]
    s.set_filter(classes=[0, 1, 2])          # every class ticked = no class filter
    assert s.filter.classes is None
    s.clear_filter()
    assert not s.filter.active and s.visible_mask().all()
    with pytest.raises(KeyError):
        s.set_range("no-such-score", 0, 1)


def test_selection_modes_and_current():
    s = Session()
    s.set_dataset(table(), {})
    rec = Recorder(s)
    assert s.select([3, 1, 3])
    assert s.selection.tolist() == [1, 3]
    assert s.select([5], "add") and s.selection.tolist() == [1, 3, 5]
    assert s.select([3], "remove") and s.selection.tolist() == [1, 5]
    assert not s.select([1, 5])              # no change, no event
    s.select([99, -1, 2])                     # rows outside the table are dropped
    assert s.selection.tolist() == [2]
    with pytest.raises(ValueError):
        s.selection[0] = 7                    # read-only
    s.set_current(4)
    s.set_current(42)                         # outside: none
    assert s.current == -1
    assert rec.names() == ["selection_changed"] * 4 + ["current_changed"] * 2


def test_a_new_table_resets_filter_selection_and_current():
    s = Session()
    s.set_dataset(table(), {})
    s.select([1, 2])
    s.set_current(2)
    s.set_range("lambda", 0.2, 0.4)
    rec = Recorder(s)
    s.set_dataset(table(6), {})
    assert s.selection.size == 0 and s.current == -1 and not s.filter.active
    assert rec.names()[:2] == ["table_reset", "filter_changed"]


def test_update_results_keeps_selection_and_recomputes_scores():
    s = Session()
    s.set_dataset(table(), {})
    s.select([1, 2])
    before = s.score("lambda").copy()
    new = table()
    new["lambda"] = 1 - new["lambda"]
    rec = Recorder(s)
    s.update_results(new)
    assert rec.names() == ["results_changed"]
    assert s.selection.tolist() == [1, 2]
    assert np.allclose(s.score("lambda"), 1 - before)


def test_edits_go_through_the_journal_and_scores_follow(tmp_path):
    s = session_on_run(tmp_path)
    rec = Recorder(s)
    p_given_before = 1 - s.score("self_confidence")[0]
    s.relabel([0], [1])
    assert s.table["label"].iat[0] == 1 and bool(s.table["edited"].iat[0])
    assert rec.calls[-1][0] == "edits_changed" and rec.calls[-1][1].tolist() == [0]
    assert 1 - s.score("self_confidence")[0] == pytest.approx(table()["p_happiness"].iat[0])
    assert 1 - s.score("self_confidence")[0] != pytest.approx(p_given_before)
    s.mark_unsure([3], True)
    assert s.flag("unsure")[3]
    assert s.undo() and not s.flag("unsure")[3]
    assert s.undo() and s.table["label"].iat[0] == 0
    assert s.redo() and s.table["label"].iat[0] == 1
    out = tmp_path / "soft.csv"
    assert s.export(out, rows=[2, 0]) == 2
    back = pd.read_csv(out)
    assert back["sample_id"].tolist() == ["s0", "s2"] and back["label"].tolist() == [1, 2]
    s.journal.close()
    # reopening replays the journal: the same edited table
    again = Session.open_run(tmp_path / "run")
    assert again.table["label"].iat[0] == 1
    again.journal.close()


def test_edits_need_a_run():
    s = Session()
    s.set_dataset(table(), {})
    with pytest.raises(RuntimeError, match="run directory"):
        s.relabel([0], [1])


def test_most_ambiguous_among_candidates():
    s = Session()
    s.set_dataset(table(), {})
    assert s.most_ambiguous("lambda") == 9
    mask = np.ones(10, bool)
    mask[9] = False
    assert s.most_ambiguous("lambda", mask) == 8
    assert s.most_ambiguous("aum") is None         # no values


def split_table(n: int = 12) -> pd.DataFrame:
    t = table(n)
    t["split"] = ["train", "train", "valid", "train", "test", "train", "train", "valid", "train", "train",
                  "test", "train"][:n]
    return t


def test_the_review_queue_is_a_snapshot_of_training_rows(tmp_path):
    from uldl_studio.core.labels.edits import EditJournal

    s = Session()
    s.set_dataset(split_table(), {})
    s.journal = EditJournal(tmp_path / "edits.jsonl")
    events = []
    s.events.queue_changed.connect(lambda: events.append("queue"))
    s.set_queue_order(key="lambda")
    train = np.flatnonzero(s.table["split"].to_numpy() == "train")
    assert s.queue.tolist() == sorted(train.tolist(), reverse=True)   # λ rises with the row: worst last row first
    assert s.queue_key == "lambda" and events == ["queue"]
    queue = s.queue.copy()
    s.relabel([int(queue[0])], [2])                                 # edits never move the queue
    s.mark_unsure([int(queue[1])], True)
    assert np.array_equal(s.queue, queue) and events == ["queue"]
    assert s.queue_reviewed().tolist()[:3] == [True, True, False]
    # ← / → clamp at the ends; a row outside the queue starts at its first (or last) row
    assert s.queue_neighbour(int(queue[0]), -1) == queue[0]
    assert s.queue_neighbour(int(queue[-1]), +1) == queue[-1]
    assert s.queue_neighbour(2, +1) == queue[0] and s.queue_neighbour(None, -1) == queue[-1]
    # Enter: the next unreviewed row after the current one, wrapping to the start
    assert s.next_unreviewed(int(queue[0])) == queue[2]
    assert s.next_unreviewed(int(queue[-1])) == queue[2]
    # the selection, the filter and the split each rebuild it
    s.select(queue[3:6])
    assert sorted(s.queue.tolist()) == sorted(queue[3:6].tolist())
    s.select([])
    s.set_filter(classes=[0])
    assert set(s.queue.tolist()) == {r for r in queue.tolist() if s.table["label"].iat[r] == 0}
    s.clear_filter()
    s.set_queue_order(split="all")
    assert s.queue.size == len(s)
    # a score without values falls back to ambiguity, then the sample id
    s.set_queue_order(key="aum", split="train")
    assert s.queue_choice == "aum" and s.queue_key in ("ambiguity", "sample_id")
    s.journal.close()


def test_undo_says_what_it_undid(tmp_path):
    from uldl_studio.core.labels.edits import EditJournal

    s = Session()
    s.set_dataset(table(), {})
    s.journal = EditJournal(tmp_path / "edits.jsonl")
    s._refresh_edits()  # the table as a run's: label_given from the journal's view
    s.relabel([4], [0])                    # s4 was happiness (4 % 3 = 1)
    assert s.undo() == "s4 happiness → neutral"
    assert s.redo() == "s4 happiness → neutral"
    s.relabel([4], [2])
    assert s.undo() == "s4 neutral → anger"
    s.mark_unsure([1, 2], True)
    assert s.undo() == "2 samples marked unsure"
    s.relabel([0, 3], [1])
    assert s.undo() == "2 samples → happiness"
    assert s.undo() == "s4 happiness → neutral" and s.undo() is None
    s.journal.close()


def predicted(n: int = 3, ids=("a.jpg", "b.jpg", "c.jpg")) -> pd.DataFrame:
    """Rows as ``core.runs.predict`` writes them: a predicted label, d = p, no λ."""
    out = table(n)
    out["sample_id"] = list(ids)[:n]
    out["split"] = "test"
    out["label"] = out[["p_neutral", "p_happiness", "p_anger"]].to_numpy().argmax(axis=1)
    out["lambda"] = np.nan
    return out


def test_predicted_samples_are_rows_of_the_one_table_after_the_dataset():
    s = Session()
    s.set_dataset(table(), {})
    s.set_current(4)
    s.select([2, 3])
    changed = []
    s.events.predictions_changed.connect(lambda: changed.append(True))
    s.set_predictions(predicted())
    assert changed == [True] and len(s) == 13 and s.dataset_size == 10 and s.has_predictions
    assert s.table["source"].tolist() == ["dataset"] * 10 + ["prediction"] * 3
    assert s.table["sample_id"].tolist()[10:] == ["a.jpg", "b.jpg", "c.jpg"]
    assert s.dataset_mask().tolist() == [True] * 10 + [False] * 3
    assert len(s.dataset_table) == 10 and s.dataset_table["sample_id"].iat[9] == "s9"
    assert s.current == 4 and s.selection.tolist() == [2, 3]     # dataset rows keep their indices
    assert s.table["edited"].dtype == bool and not s.flag("edited")[10:].any()
    # a predicted row has no given label, no d and no λ: the scores that need them are blank there
    assert np.isnan(s.score("self_confidence")[10:]).all() and np.isnan(s.score("ambiguity")[10:]).all()
    assert np.isnan(s.score("lambda")[10:]).all() and np.isnan(s.score("entropy")[10:]).all()
    assert np.isfinite(s.score("self_confidence")[:10]).all()
    # the filter applies to them (their label is the predicted class)
    s.set_filter(classes=[int(s.table["label"].iat[11])])
    assert s.visible_mask()[11]
    s.clear_filter()
    # a predicted row can be current and selected like any row; replacing the predictions drops it
    s.set_current(11)
    s.select([12], "add")
    s.set_predictions(predicted(2))
    assert len(s) == 12 and s.current == -1 and s.selection.tolist() == [2, 3]
    s.set_predictions(None)
    assert len(s) == 10 and not s.has_predictions and s.table is s.dataset_table


def test_a_new_table_drops_the_predicted_rows():
    s = Session()
    s.set_dataset(table(), {})
    s.set_predictions(predicted())
    changed = []
    s.events.predictions_changed.connect(lambda: changed.append(len(s)))
    s.set_dataset(table(8), {})
    assert changed == [8] and len(s) == 8 and not s.has_predictions
    assert (s.table["source"] == "dataset").all()


def test_dataset_only_operations_ignore_the_predicted_rows(tmp_path):
    s = session_on_run(tmp_path)
    s.set_queue_order(split="all")
    queue = s.queue.copy()
    s.set_predictions(predicted(ids=("s0", "s1", "x.jpg")))   # ids may repeat the dataset's
    assert s.row_of("s0") == 0 and s.rows_of(["s1", "x.jpg"]).tolist() == [1]
    s.set_queue_order(split="test")                  # the predicted rows' split: still not queued
    assert s.queue.size == 0
    s.set_queue_order(split="all")
    assert np.array_equal(np.sort(s.queue), np.sort(queue))
    assert s.most_ambiguous("lambda") is not None and s.most_ambiguous("lambda") < 10
    # relabelling and unsure marks skip predicted rows: the journal never names them
    history = len(s.journal)
    s.relabel([11], [2])
    s.mark_unsure([10, 12], True)
    assert len(s.journal) == history and not s.flag("edited").any() and not s.flag("unsure").any()
    s.relabel([11, 3], [2, 2])
    assert len(s.journal) == history + 1 and s.journal.labels() == {"s3": 2}
    assert s.table["label"].iat[3] == 2 and len(s) == 13 and s.table["source"].iat[11] == "prediction"
    assert s.dataset_rows([12, 3, 10, 0]).tolist() == [3, 0]
    # the export writes the dataset's rows only, whatever the selection holds
    out = tmp_path / "soft.csv"
    assert s.export(out) == 10 and s.export(out, rows=[3, 11]) == 1
    assert pd.read_csv(out)["sample_id"].tolist() == ["s3"]
    with pytest.raises(ValueError, match="no sample of the dataset"):
        s.export(out, rows=[11])
    s.journal.close()


def test_the_journal_follows_the_annotator_across_runs_and_versions(tmp_path):
    """``set_annotator`` points the edits at that person's journal, now and in every run opened
    later; opening another version of the same run keeps that journal open."""
    from pathlib import Path

    from uldl_studio.core.labels.annotations import annotator_journal_path

    t = table()
    t.attrs.update(root=str(tmp_path / "data"), format="csv")
    run = Run.create(tmp_path / "run", TrainConfig(), t)
    t.to_csv(tmp_path / "run" / "samples.csv", index=False)
    session = Session()
    session.set_annotator("alice")
    session.set_run(run, t)
    assert Path(session.journal.path) == annotator_journal_path(run.root, "alice")
    seen = []
    session.events.annotator_changed.connect(seen.append)
    session.relabel([0], [1])
    session.set_annotator("bob")
    assert Path(session.journal.path) == annotator_journal_path(run.root, "bob") and seen == ["bob"]
    assert not session.table["reviewed"].iloc[0]                      # bob has not voted
    session.set_annotator("alice")
    assert session.table["reviewed"].iloc[0] and session.table["label"].iloc[0] == 1
    journal = session.journal
    session.set_run(Run.open(run.path), t)                             # the same family
    assert session.journal is journal
    session.set_annotator(None)
    assert Path(session.journal.path) == Path(run.root) / "edits.jsonl"
    session.close()
