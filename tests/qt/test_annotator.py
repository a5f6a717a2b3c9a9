"""Several annotators in the app: the name in the status bar and the settings, the run's journal
that follows it, vote bars in the inspector, blind mode, progress, the map coloured by the votes,
and a screenshot of it all (real main window, real run, real Qt event loop, offscreen)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from uldl_studio.core.labels import annotations as A

pytestmark = pytest.mark.timeout(180)


def _train_ids(run_dir, n: int) -> tuple[list[str], list[str]]:
    samples = pd.read_csv(run_dir / "samples.csv", dtype={"sample_id": str})
    train = samples[samples["split"] == "train"]
    return train["sample_id"].tolist()[:n], __import__("json").loads((run_dir / "config.json").read_text())["classes"]


def _two_annotators(run_dir):
    """alice and bob vote on the first six training samples: agree on three, split on three."""
    ids, classes = _train_ids(run_dir, 6)
    with A.annotator_journal(run_dir, "alice") as j:
        j.relabel(ids, [1] * 6)
    with A.annotator_journal(run_dir, "bob") as j:
        j.relabel(ids, [1, 1, 1, 2, 2, 2])
    return ids, classes


def _open(qtbot, window, run_dir):
    window.open_run(str(run_dir))
    qtbot.waitUntil(lambda: window.bridge.session.run is not None and window.annotator.votes is not None, timeout=60_000)


def _image_is_not_blank(path) -> None:
    image = QImage(str(path))
    assert not image.isNull() and image.width() > 200 and image.height() > 200
    pixels = np.array([[image.pixel(x, y) & 0xFFFFFF for x in range(0, image.width(), 7)]
                       for y in range(0, image.height(), 7)])
    assert len(np.unique(pixels)) > 50          # a window with content, not one flat colour


def test_two_annotators_votes_blind_mode_and_progress(qtbot, window, run_dir, tmp_path):
    ids, classes = _two_annotators(run_dir)
    controller = window.annotator
    asked = []
    controller.ask_name = lambda current: asked.append(current) or None
    controller.set_name("carol")
    assert controller.name_button.text() == "Annotator: carol"
    _open(qtbot, window, run_dir)
    assert asked == []                                      # a name is kept: nobody is asked
    project = window.bridge.session
    # carol's relabels go to her own journal in the run
    assert A.journal_annotator(run_dir, project.journal.path) == "carol"
    assert project.journal.path == run_dir / "annotations" / "carol.jsonl"

    # the table has the vote columns: the map colours by agreement and the queue by the next vote
    assert project.table["n_voters"].sum() == 12
    for mode in ("vote_entropy", "needs_another_vote", "model_vs_votes"):
        assert mode in window.map_view.available_color_modes()
    window.map_view.set_color_mode("vote_entropy")
    assert window.map_view.color_mode == "vote_entropy"

    # a sample alice and bob split on: their bars and who voted what
    split_row = project.row_of(ids[4])
    project.set_current(split_row)
    inspector = window.inspector
    votes_field = inspector.fields["votes"]
    assert votes_field.text().startswith("2 voters") and "agreement 0.00" in votes_field.text()
    assert f"alice: {classes[1]}" in votes_field.toolTip() and f"bob: {classes[2]}" in votes_field.toolTip()
    assert "votes" in inspector.chart.bars and "d" in inspector.chart.bars and "p" in inspector.chart.bars
    heights = inspector.chart.bars["votes"].opts["height"]
    assert np.allclose(heights[[1, 2]], [0.5, 0.5]) and np.isclose(np.sum(heights), 1.0)
    given_text = inspector.fields["label"].text()
    assert "hidden" not in given_text

    progress = controller.progress_label.text()
    assert progress.startswith("you: 0 votes · all: 12 on 6 samples")
    assert "alice: 6" in controller.progress_label.toolTip() and "bob: 6" in controller.progress_label.toolTip()
    window.grab().save(str(tmp_path / "annotators.png"))
    _image_is_not_blank(tmp_path / "annotators.png")

    # blind mode: the given label, the prediction, d and the other votes disappear ...
    controller.set_blind(True)
    assert window.settings.annotator_settings()["blind"] is True
    assert inspector.fields["label"].text() == "hidden until you vote"
    assert inspector.fields["pred"].text() == "hidden until you vote"
    assert inspector.chart.bars == {}
    assert votes_field.text() == "hidden until you vote" and "alice" not in votes_field.toolTip()
    assert all(not value.isVisibleTo(inspector) for _, value in inspector.score_fields.values())
    # ... the map leaves the label colours ...
    window.map_view.set_color_mode("given")
    assert window.map_view.color_mode not in ("given", "predicted")
    window.grab().save(str(tmp_path / "blind.png"))
    _image_is_not_blank(tmp_path / "blind.png")
    # ... the grid's tiles do not name it either ...
    model = window.grid_view.model
    shown = [model.data(model.index(k // model.columns, k % model.columns)) for k in range(len(model.rows))]
    assert shown and all(text.endswith("?") for text in shown)
    assert not any(name in text for text in shown for name in classes)
    # Enter would confirm a label carol cannot see: it does nothing and says why
    window.activateWindow()
    qtbot.keyClick(window, Qt.Key.Key_Return)
    assert project.journal.labels() == {} and project.current == split_row
    assert "Enter confirms nothing" in window.statusBar().currentMessage()
    # ... and come back once carol has voted, with her vote among the bars
    window.activateWindow()
    with qtbot.waitSignal(window.bridge.editsChanged):
        qtbot.keyClick(window, Qt.Key(Qt.Key.Key_1 + 2))    # carol votes class 2
    assert project.journal.labels() == {ids[4]: 2}
    assert inspector.fields["label"].text() != "hidden until you vote"
    assert votes_field.text().startswith("3 voters") and f"you: {classes[2]}" in votes_field.text()
    assert f"carol (you): {classes[2]}" in votes_field.toolTip()
    assert np.allclose(inspector.chart.bars["votes"].opts["height"][[1, 2]], [1 / 3, 2 / 3])
    assert "d" in inspector.chart.bars
    assert "you: 1 vote " in controller.progress_label.text() + " "
    if split_row in model.rows:  # her voted tile names its label again
        k = int(np.flatnonzero(model.rows == split_row)[0])
        assert not model.data(model.index(k // model.columns, k % model.columns)).endswith("?")
    # another sample carol has not voted on stays hidden
    project.set_current(project.row_of(ids[0]))
    assert inspector.fields["label"].text() == "hidden until you vote"

    # who agrees with whom
    dialog = controller.show_agreement()
    qtbot.addWidget(dialog)
    rows = [dialog.table.verticalHeaderItem(r).text() for r in range(dialog.table.rowCount())]
    assert rows == ["alice", "bob", "carol (you)", A.DATASET]
    header = [dialog.table.horizontalHeaderItem(c).text() for c in range(dialog.table.columnCount())]
    alice_bob = dialog.table.item(0, header.index("agrees with bob")).text()
    assert alice_bob == "50% of 6" and dialog.table.item(2, 0).text() == "1"
    assert "Krippendorff" in dialog.summary.text()
    dialog.grab().save(str(tmp_path / "agreement.png"))
    assert len(np.unique(np.array([[QImage(str(tmp_path / "agreement.png")).pixel(x, y) for x in range(0, 700, 9)]
                                   for y in range(0, 300, 9)]))) > 5
    dialog.close()

    # what is on disk: three annotators' journals, carol's vote among them
    votes = A.read_votes(run_dir, project.base_table)
    assert votes.annotators == ["alice", "bob", "carol"]
    assert A.sample_votes(votes, split_row).by_annotator == {"alice": 1, "bob": 2, "carol": 2}


def test_the_name_is_asked_once_kept_and_shown(qtbot, window, run_dir):
    from uldl_studio.qt.settings import StudioSettings

    _two_annotators(run_dir)
    controller = window.annotator
    assert controller.name_button.text().startswith("Annotator: annotator")
    asked = []
    controller.ask_name = lambda current: asked.append(current) or "dave"
    _open(qtbot, window, run_dir)
    assert asked == [None]                                  # asked once, when the run opened
    assert controller.name_button.text() == "Annotator: dave"
    assert StudioSettings().annotator_settings()["name"] == "dave"
    qtbot.waitUntil(lambda: A.journal_annotator(run_dir, window.bridge.session.journal.path) == "dave")
    # a click on the status bar's name changes it; the journal follows
    controller.ask_name = lambda current: asked.append(current) or "erin"
    qtbot.mouseClick(controller.name_button, Qt.MouseButton.LeftButton)
    assert asked == [None, "dave"] and controller.name_button.text() == "Annotator: erin"
    assert A.journal_annotator(run_dir, window.bridge.session.journal.path) == "erin"
    # opening the run again asks nobody
    window.annotator.votes = None
    _open(qtbot, window, run_dir)
    assert asked == [None, "dave"]


def test_the_status_bar_asks_for_the_name_without_taking_the_keyboard(qtbot, window, run_dir):
    _two_annotators(run_dir)
    controller = window.annotator
    _open(qtbot, window, run_dir)
    prompt = controller.prompt
    assert prompt.isVisible()                               # asked: no name was kept
    assert not controller.name_button.isVisible()           # the same question steps aside
    # the window keeps the keyboard: a number key still relabels
    row = window.bridge.session.row_of(_train_ids(run_dir, 8)[0][7])
    window.bridge.session.set_current(row)
    window.activateWindow()
    with qtbot.waitSignal(window.bridge.editsChanged):
        qtbot.keyClick(window, Qt.Key.Key_1)
    assert A.journal_annotator(run_dir, window.bridge.session.journal.path) == A.DEFAULT_ANNOTATOR
    qtbot.keyClicks(prompt.edit, "fay")
    qtbot.mouseClick(prompt.ok_button, Qt.MouseButton.LeftButton)
    assert not prompt.isVisible() and controller.name_button.text() == "Annotator: fay"
    assert controller.name_button.isVisible()
    assert A.journal_annotator(run_dir, window.bridge.session.journal.path) == "fay"
    assert window.settings.annotator_settings() == {"name": "fay", "blind": False, "asked": True}
    # a click on the name opens the small dialog; its answer applies when it closes
    qtbot.mouseClick(controller.name_button, Qt.MouseButton.LeftButton)
    dialog = controller._dialog
    assert dialog is not None and dialog.isVisible() and dialog.edit.text() == "fay"
    dialog.edit.setText("gus")
    with qtbot.waitSignal(controller.annotatorChanged):
        dialog._accept()
    assert controller.name_button.text() == "Annotator: gus" and controller._dialog is None
    assert A.journal_annotator(run_dir, window.bridge.session.journal.path) == "gus"


def test_the_name_dialog_refuses_a_bad_name(qtbot):
    from uldl_studio.qt.annotator import AnnotatorDialog

    dialog = AnnotatorDialog(None)
    qtbot.addWidget(dialog)
    dialog.edit.setText("crowd")                            # reserved: the dataset's anonymous voters
    dialog._accept()
    assert dialog.result() != dialog.DialogCode.Accepted and "not valid" in dialog.error.text()
    dialog.edit.setText("alice")
    dialog._accept()
    assert dialog.result() == dialog.DialogCode.Accepted and dialog.name() == "alice"


def test_the_apps_export_carries_the_combined_label_and_the_reliabilities(qtbot, window, run_dir, tmp_path):
    """The app exports what `uldl-studio export` does: where two people voted, ``d`` is their
    combined label, and the sources' reliabilities go beside the CSV."""
    import json

    from uldl_studio.core.runs.export import read_soft_labels

    ids, classes = _two_annotators(run_dir)
    window.annotator.set_name("carol")
    _open(qtbot, window, run_dir)
    out = tmp_path / "soft.csv"
    assert window.export_csv(out) == len(window.bridge.session.table)
    back = read_soft_labels(out).set_index("sample_id")
    d = back.loc[ids, [f"d_{c}" for c in classes]].to_numpy()
    assert (back.loc[ids, "n_voters"] == 2).all() and not np.allclose(d.max(1), 1.0)
    assert (d[:3].argmax(1) == 1).all()                      # both said class 1
    rel = json.loads((tmp_path / "soft.reliability.json").read_text())
    assert [s["name"] for s in rel["sources"]] == ["alice", "bob", A.DATASET]
    assert window.bridge.session.last_reliability == tmp_path / "soft.reliability.json"


def test_the_inspector_shows_the_vote_just_cast(qtbot, window, run_dir):
    """Each relabel of the shown sample is this annotator's vote: the inspector's Votes line
    says the new one at once, not the one before it."""
    ids, classes = _train_ids(run_dir, 1)
    window.annotator.set_name("carol")
    _open(qtbot, window, run_dir)
    session = window.bridge.session
    row = session.row_of(ids[0])
    session.set_current(row)
    votes = window.inspector.fields["votes"]
    for k in (2, 3, 1):
        session.relabel([row], [k])
        qtbot.waitUntil(lambda: f"you: {classes[k]}" in votes.text(), timeout=5_000)
        assert window.inspector.fields["label"].text().startswith(f"<b>{classes[k]} ")


def test_later_puts_the_question_away_and_the_name_button_back(qtbot, window, run_dir):
    controller = window.annotator
    _open(qtbot, window, run_dir)
    assert controller.prompt.isVisible() and not controller.name_button.isVisible()
    qtbot.mouseClick(controller.prompt.later_button, Qt.MouseButton.LeftButton)
    assert not controller.prompt.isVisible() and controller.name_button.isVisible()
    assert controller.name_button.text().startswith(f"Annotator: {A.DEFAULT_ANNOTATOR}")
