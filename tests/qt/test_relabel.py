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
    session = selection = bridge.session
    run = Run.open(run_dir)
    session.set_run(run)
    session.set_queue_order(key="lambda", split="all")
    controller = RelabelController(bridge, window)
    window.show()
    window.activateWindow()
    qtbot.waitExposed(window)
    yield window, session, selection, controller
    session.journal.close()


def test_number_key_relabels_current_and_undo_redo(qtbot, rig):
    window, session, selection, controller = rig
    row = 5
    selection.set_current(row)
    given = int(session.table["label"].iat[row])
    new = (given + 1) % len(session.classes)
    with qtbot.waitSignal(controller.bridge.editsChanged):
        qtbot.keyClick(window, Qt.Key(Qt.Key.Key_1 + new))
    assert int(session.table["label"].iat[row]) == new
    assert bool(session.table["edited"].iat[row])
    sid = session.table["sample_id"].iat[row]
    # On disk before the view heard of it: a fresh journal sees it.
    from uldl_studio.core.labels.edits import EditJournal

    assert EditJournal(session.journal.path).labels()[sid] == new
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert int(session.table["label"].iat[row]) == given
    assert not bool(session.table["edited"].iat[row])
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert int(session.table["label"].iat[row]) == new


def test_bulk_relabel_is_one_undo_step(qtbot, rig):
    window, session, selection, controller = rig
    rows = np.array([1, 2, 3, 10])
    selection.select(rows)
    target = 2
    qtbot.keyClick(window, Qt.Key(Qt.Key.Key_1 + target), Qt.KeyboardModifier.ControlModifier)
    assert (session.table["label"].to_numpy()[rows] == target).all()
    assert session.journal.undo_depth == 1
    controller.undo()
    assert (session.table["label"].to_numpy()[rows] == session.table["label_given"].to_numpy()[rows]).all()
    # The dialog route, with the question answered by the test.
    controller.ask_class = lambda classes: 0
    controller.relabel_selection_dialog()
    assert (session.table["label"].to_numpy()[rows] == 0).all()


def test_enter_accepts_and_moves_to_most_ambiguous(qtbot, rig):
    window, session, selection, controller = rig
    lam = session.column("lambda").astype(float)
    order = np.argsort(-np.nan_to_num(lam, nan=-1), kind="stable")
    first, second = int(order[0]), int(order[1])
    selection.set_current(first)
    qtbot.keyClick(window, Qt.Key.Key_Return)
    sid = session.table["sample_id"].iat[first]
    assert sid in session.reviewed_ids()                  # accepted = reviewed
    assert not bool(session.table["edited"].iat[first])   # ... but not edited
    assert selection.current == second
    qtbot.keyClick(window, Qt.Key.Key_Return)
    third = int(order[2])
    assert selection.current == third


def test_arrows_and_space(qtbot, rig):
    window, session, selection, controller = rig
    queue = session.queue
    selection.set_current(int(queue[7]))
    qtbot.keyClick(window, Qt.Key.Key_Right)
    assert selection.current == queue[8]
    qtbot.keyClick(window, Qt.Key.Key_Left)
    qtbot.keyClick(window, Qt.Key.Key_Left)
    row = int(queue[6])
    assert selection.current == row
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert bool(session.table["unsure"].iat[row])
    assert session.table["sample_id"].iat[row] in session.journal.unsure()
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert not bool(session.table["unsure"].iat[row])


def test_edits_need_a_run(qtbot, demo_table):
    from uldl_studio.qt.relabel import RelabelController
    from uldl_studio.qt.session_bridge import SessionBridge

    window = QWidget()
    qtbot.addWidget(window)
    bridge = SessionBridge(window)
    session = bridge.session
    session.set_dataset(demo_table, {"kind": "demo", "path": "demo"})
    session.set_current(0)
    messages = []
    controller = RelabelController(bridge, window)
    controller.statusMessage.connect(messages.append)
    controller.relabel_current(1)
    assert messages and "train" in messages[-1]
    assert not session.flag("edited").any()


def test_confirmations_and_undo_name_the_sample_and_the_change(qtbot, rig):
    window, session, selection, controller = rig
    messages = []
    controller.statusMessage.connect(messages.append)
    row = int(session.queue[0])
    sid = session.table["sample_id"].iat[row]
    classes = session.classes
    given = int(session.table["label"].iat[row])
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
    selection.select(session.queue[:3])
    controller.relabel_selection(0)
    controller.undo()
    assert messages[-1] == f"Undone: 3 samples → {classes[0]}"


def test_keys_do_nothing_while_a_predicted_sample_is_shown(qtbot, rig, tmp_path):
    """A predicted sample of another collection is shown: digits, Space and Enter change no
    dataset row (the sample shown before it included), and the status bar says why."""
    import pandas as pd

    window, session, selection, controller = rig
    classes = session.classes
    row = int(session.queue[0])
    selection.set_current(row)
    p = np.full(len(classes), 1 / len(classes))
    predictions = pd.DataFrame([{"sample_id": "photo_2.jpg#face0", "path": str(tmp_path / "photo_2.jpg"),
                                 "split": "test", "label": 0, **{f"p_{c}": p[j] for j, c in enumerate(classes)}}])
    predictions.attrs["classes"] = classes
    session.set_predictions(predictions)
    selection.set_current(session.dataset_size)
    assert session.current == len(session) - 1 and not session.is_dataset_row(session.current)
    messages = []
    controller.statusMessage.connect(messages.append)
    before = session.table[["label", "unsure", "reviewed"]].copy()
    history = len(session.journal)
    for key in (Qt.Key.Key_3, Qt.Key.Key_Space, Qt.Key.Key_Return):
        qtbot.keyClick(window, key)
        assert "photo_2.jpg#face0 is a predicted sample" in messages[-1]
    qtbot.keyClick(window, Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)
    assert len(session.journal) == history
    assert session.table[["label", "unsure", "reviewed"]].equals(before)
    # a dataset sample shown again: keys act on it
    selection.set_current(row)
    assert session.is_dataset_row(session.current)
    qtbot.keyClick(window, Qt.Key.Key_3)
    assert int(session.table["label"].iat[row]) == 2


def test_a_selection_relabels_only_its_dataset_rows(qtbot, rig, tmp_path):
    """Ctrl+digit and Shift+Space on a selection that holds predicted rows edit its dataset rows
    only; a selection of predicted rows alone changes nothing, and the status bar says why."""
    import pandas as pd

    window, session, selection, controller = rig
    classes = session.classes
    p = np.full(len(classes), 1 / len(classes))
    predictions = pd.DataFrame([{"sample_id": str(session.table["sample_id"].iat[0]), "path": str(tmp_path / "a.jpg"),
                                 "split": "train", "label": 0, **{f"p_{c}": p[j] for j, c in enumerate(classes)}}])
    predictions.attrs["classes"] = classes
    session.set_predictions(predictions)
    predicted = session.dataset_size
    row = int(session.queue[0])
    selection.set_current(row)
    messages = []
    controller.statusMessage.connect(messages.append)
    history = len(session.journal)
    selection.select([row, predicted])
    qtbot.keyClick(window, Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)
    assert len(session.journal) == history + 1 and list(session.journal.labels()) == [session.sample_ids([row])[0]]
    assert messages[-1].startswith("1 samples →")
    assert int(session.table["label"].iat[predicted]) == 0 and not session.flag("edited")[predicted]
    qtbot.keyClick(window, Qt.Key.Key_Space, Qt.KeyboardModifier.ShiftModifier)
    assert session.flag("unsure")[row] and not session.flag("unsure")[predicted]
    history = len(session.journal)
    selection.select([predicted])
    qtbot.keyClick(window, Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)
    assert len(session.journal) == history and "only predicted samples" in messages[-1]
