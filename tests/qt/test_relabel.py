"""Keyboard relabelling: number keys, Enter (accept + next ambiguous), arrows, Space (unsure),
bulk relabel of a selection as one undoable edit, Ctrl+Z / Ctrl+Shift+Z through the journal."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def rig(qtbot, run_dir):
    from uldl_studio.core.engine.run import Run
    from uldl_studio.qt.relabel import RelabelController
    from uldl_studio.qt.session_bridge import SessionBridge

    window = QWidget()
    qtbot.addWidget(window)
    bridge = SessionBridge(window)
    project = selection = bridge.session
    run = Run.open(run_dir)
    project.set_run(run)
    project.set_queue_order(key="lambda", split="all")
    controller = RelabelController(bridge, window)
    window.show()
    window.activateWindow()
    qtbot.waitExposed(window)
    yield window, project, selection, controller
    project.journal.close()


def test_number_key_relabels_current_and_undo_redo(qtbot, rig):
    window, project, selection, controller = rig
    row = 5
    selection.set_current(row)
    given = int(project.table["label"].iat[row])
    new = (given + 1) % len(project.classes)
    with qtbot.waitSignal(controller.bridge.editsChanged):
        qtbot.keyClick(window, Qt.Key(Qt.Key.Key_1 + new))
    assert int(project.table["label"].iat[row]) == new
    assert bool(project.table["edited"].iat[row])
    sid = project.table["sample_id"].iat[row]
    # On disk before the view heard of it: a fresh journal sees it.
    from uldl_studio.core.labels.edits import EditJournal

    assert EditJournal(project.journal.path).labels()[sid] == new
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert int(project.table["label"].iat[row]) == given
    assert not bool(project.table["edited"].iat[row])
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert int(project.table["label"].iat[row]) == new


def test_bulk_relabel_is_one_undo_step(qtbot, rig):
    window, project, selection, controller = rig
    rows = np.array([1, 2, 3, 10])
    selection.select(rows)
    target = 2
    qtbot.keyClick(window, Qt.Key(Qt.Key.Key_1 + target), Qt.KeyboardModifier.ControlModifier)
    assert (project.table["label"].to_numpy()[rows] == target).all()
    assert project.journal.undo_depth == 1
    controller.undo()
    assert (project.table["label"].to_numpy()[rows] == project.table["label_given"].to_numpy()[rows]).all()
    # The dialog route, with the question answered by the test.
    controller.ask_class = lambda classes: 0
    controller.relabel_selection_dialog()
    assert (project.table["label"].to_numpy()[rows] == 0).all()


def test_enter_accepts_and_moves_to_most_ambiguous(qtbot, rig):
    window, project, selection, controller = rig
    lam = project.column("lambda").astype(float)
    order = np.argsort(-np.nan_to_num(lam, nan=-1), kind="stable")
    first, second = int(order[0]), int(order[1])
    selection.set_current(first)
    qtbot.keyClick(window, Qt.Key.Key_Return)
    sid = project.table["sample_id"].iat[first]
    assert sid in project.reviewed_ids()                  # accepted = reviewed
    assert not bool(project.table["edited"].iat[first])   # ... but not edited
    assert selection.current == second
    qtbot.keyClick(window, Qt.Key.Key_Return)
    third = int(order[2])
    assert selection.current == third


def test_arrows_and_space(qtbot, rig):
    window, project, selection, controller = rig
    queue = project.queue
    selection.set_current(int(queue[7]))
    qtbot.keyClick(window, Qt.Key.Key_Right)
    assert selection.current == queue[8]
    qtbot.keyClick(window, Qt.Key.Key_Left)
    qtbot.keyClick(window, Qt.Key.Key_Left)
    row = int(queue[6])
    assert selection.current == row
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert bool(project.table["unsure"].iat[row])
    assert project.table["sample_id"].iat[row] in project.journal.unsure()
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert not bool(project.table["unsure"].iat[row])


def test_edits_need_a_run(qtbot, demo_table):
    from uldl_studio.qt.relabel import RelabelController
    from uldl_studio.qt.session_bridge import SessionBridge

    window = QWidget()
    qtbot.addWidget(window)
    bridge = SessionBridge(window)
    project = bridge.session
    project.set_dataset(demo_table, {"kind": "demo", "path": "demo"})
    project.set_current(0)
    messages = []
    controller = RelabelController(bridge, window)
    controller.statusMessage.connect(messages.append)
    controller.relabel_current(1)
    assert messages and "train" in messages[-1]
    assert not project.flag("edited").any()


def test_confirmations_and_undo_name_the_sample_and_the_change(qtbot, rig):
    window, project, selection, controller = rig
    messages = []
    controller.statusMessage.connect(messages.append)
    row = int(project.queue[0])
    sid = project.table["sample_id"].iat[row]
    classes = project.classes
    given = int(project.table["label"].iat[row])
    new = (given + 2) % len(classes)
    selection.set_current(row)
    controller.relabel_current(new)
    assert messages[-1] == f"{sid}: {classes[given]} → {classes[new]} (saved; Ctrl+Z undoes)"
    controller.undo()
    assert messages[-1] == f"Undone: {sid} {classes[given]} → {classes[new]}"
    controller.redo()
    assert messages[-1] == f"Redone: {sid} {classes[given]} → {classes[new]}"
    controller.toggle_unsure()
    controller.undo()
    assert messages[-1] == f"Undone: {sid} marked unsure"
    selection.select(project.queue[:3])
    controller.relabel_selection(0)
    controller.undo()
    assert messages[-1] == f"Undone: 3 samples → {classes[0]}"


def test_keys_do_nothing_while_a_predicted_sample_is_shown(qtbot, rig, tmp_path):
    """A predicted sample of another collection is shown: digits, Space and Enter change no
    dataset row (the sample shown before it included), and the status bar says why."""
    import pandas as pd

    window, project, selection, controller = rig
    classes = project.classes
    row = int(project.queue[0])
    selection.set_current(row)
    p = np.full(len(classes), 1 / len(classes))
    predictions = pd.DataFrame([{"sample_id": "photo_2.jpg#face0", "path": str(tmp_path / "photo_2.jpg"),
                                 "split": "test", "label": 0, **{f"p_{c}": p[j] for j, c in enumerate(classes)}}])
    predictions.attrs["classes"] = classes
    project.set_predictions(predictions)
    project.show_prediction(0)
    assert project.current == -1 and project.shown_prediction == 0
    messages = []
    controller.statusMessage.connect(messages.append)
    before = project.table[["label", "unsure", "reviewed"]].copy()
    history = len(project.journal)
    for key in (Qt.Key.Key_3, Qt.Key.Key_Space, Qt.Key.Key_Return):
        qtbot.keyClick(window, key)
        assert "photo_2.jpg#face0 is a predicted sample" in messages[-1]
    qtbot.keyClick(window, Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)
    assert len(project.journal) == history
    assert project.table[["label", "unsure", "reviewed"]].equals(before)
    # a dataset sample shown again: keys act on it
    selection.set_current(row)
    assert project.shown_prediction == -1
    qtbot.keyClick(window, Qt.Key.Key_3)
    assert int(project.table["label"].iat[row]) == 2
