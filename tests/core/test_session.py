"""The Qt-free session: edits applied once, filter, selection, current sample, events."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from uldl_studio.core.session import Session


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
    from uldl_studio.core.config import TrainConfig
    from uldl_studio.core.run import Run

    t = table()
    t.attrs.update(root=str(tmp_path / "data"), format="csv")
    run = Run.create(tmp_path / "run", TrainConfig(), t)
    t.to_csv(tmp_path / "run" / "samples.csv", index=False)
    s = Session()
    s.set_run(run, t)
    rec = Recorder(s)
    p_given_before = 1 - s.score("self_confidence")[0]
    s.relabel([0], [1])
    assert s.table["label"].iat[0] == 1 and bool(s.table["edited"].iat[0])
    assert rec.calls[-1][0] == "edits_changed" and rec.calls[-1][1].tolist() == [0]
    assert 1 - s.score("self_confidence")[0] == pytest.approx(t["p_happiness"].iat[0])
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
