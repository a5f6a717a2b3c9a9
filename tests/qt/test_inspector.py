"""Inspector: image, labels, λ, V-A, the d / p / reference bars and the K neighbours."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.timeout(120)


def test_shows_a_training_sample(qtbot, run_bridge):
    from uldl_studio.qt.inspector import Inspector

    bridge = run_bridge
    project = bridge.session
    inspector = Inspector(bridge)
    qtbot.addWidget(inspector)
    inspector.resize(420, 700)
    inspector.show()
    train_row = int(np.flatnonzero(project.table["split"].to_numpy() == "train")[3])
    inspector.set_row(train_row)
    rec = project.table.iloc[train_row]
    assert inspector.title.text() == rec["sample_id"]
    assert project.classes[int(rec["label"])] in inspector.fields["label"].text()
    assert inspector.fields["lambda"].text().startswith(f"{rec['lambda']:.3f}")
    assert not inspector.image.pixmap().isNull()
    # d, p and the demo's reference distribution as three bar series.
    assert set(inspector.chart.bars) == {"d", "p", "ref"}
    heights = inspector.chart.bars["d"].opts["height"]
    assert np.allclose(heights, rec[[f"d_{c}" for c in project.classes]].to_numpy(float))
    # The K neighbours that built d, with s, ζ and c.
    shown = [t for t in inspector.tiles if t.row is not None]
    k = project.run.config.k
    assert len(shown) == k
    assert "s " in shown[0].text() and "ζ" in shown[0].text() and "c " in shown[0].text()
    with qtbot.waitSignal(inspector.neighbourActivated) as blocker:
        shown[0].click()
    assert blocker.args == [shown[0].row]


def test_edit_state_and_test_rows(qtbot, run_bridge):
    from uldl_studio.qt.inspector import Inspector

    bridge = run_bridge
    project = bridge.session
    inspector = Inspector(bridge)
    qtbot.addWidget(inspector)
    test_row = int(np.flatnonzero(project.table["split"].to_numpy() == "test")[0])
    inspector.set_row(test_row)
    assert "only training samples" in inspector.neighbour_note.text()
    given = int(project.table["label"].iat[test_row])
    new = (given + 1) % len(project.classes)
    project.relabel([test_row], [new])
    assert "edited" in inspector.fields["state"].text()
    assert f"was {project.classes[given]}" in inspector.fields["label"].text()
    project.mark_unsure([test_row], True)
    assert "unsure" in inspector.fields["state"].text()
    inspector.set_row(None)
    assert inspector.title.text() == "No sample selected"


def test_dataset_without_results(qtbot, demo_table):
    from uldl_studio.qt.inspector import Inspector
    from uldl_studio.qt.session_bridge import SessionBridge

    bridge = SessionBridge()
    bridge.session.set_dataset(demo_table, {"kind": "demo", "path": "demo"})
    inspector = Inspector(bridge)
    qtbot.addWidget(inspector)
    inspector.set_row(0)
    assert set(inspector.chart.bars) == {"ref"}          # only the reference before training
    assert inspector.fields["lambda"].text() == "–"
    assert "after training" in inspector.neighbour_note.text()


def test_neighbour_tiles_show_their_share_of_d_tilde(qtbot, run_bridge):
    """Raw s, ζ and c can all be tiny; each tile says what it contributed to d̃, and the shares
    add up to 1 over the neighbours."""
    import re

    from uldl_studio.qt.inspector import Inspector

    inspector = Inspector(run_bridge)
    qtbot.addWidget(inspector)
    table = run_bridge.session.table
    train_row = int(np.flatnonzero(table["split"].to_numpy() == "train")[0])
    inspector.set_row(train_row)
    shown = [t for t in inspector.tiles if t.isVisibleTo(inspector)]
    assert shown
    shares = [float(re.search(r"(\d+)% of d̃", t.text()).group(1)) for t in shown]
    assert abs(sum(shares) - 100) <= len(shares)          # whole percents, rounded
    assert all("c " in t.toolTip() and "s " in t.toolTip() for t in shown)


def test_a_predicted_sample_shows_the_whole_image_with_its_face_box(qtbot, run_bridge, tmp_path):
    import pandas as pd
    from PIL import Image

    from uldl_studio.qt.inspector import Inspector

    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((200, 300), 128, np.uint8)).save(photo)
    classes = run_bridge.session.classes
    p = np.full(len(classes), 0.5 / (len(classes) - 1))
    p[1] = 0.5
    row = {"sample_id": "photo.png", "path": str(photo), "split": "test", "label": 1,
           "label_name": classes[1], "source_label": "", "face_index": 0,
           "box_x": 100, "box_y": 50, "box_w": 80, "box_h": 80, "valence": 0.2, "arousal": 0.1,
           **{f"p_{c}": p[j] for j, c in enumerate(classes)}, **{f"d_{c}": p[j] for j, c in enumerate(classes)}}
    predictions = pd.DataFrame([row])
    predictions.attrs["classes"] = classes
    run_bridge.session.set_predictions(predictions)
    inspector = Inspector(run_bridge)
    qtbot.addWidget(inspector)
    inspector.set_row(run_bridge.session.dataset_size)    # the predicted row, by the one fill path
    assert inspector.title.text() == "photo.png (predicted)"
    assert inspector.fields["pred"].text().startswith(classes[1])
    image = inspector.image.pixmap().toImage()
    assert image.width() == 160                                   # the whole photo, scaled to fit
    reds = sum(1 for x in range(image.width()) for y in range(image.height())
               if image.pixelColor(x, y).red() > 200 and image.pixelColor(x, y).green() < 100)
    assert reds > 50                                              # the face box is drawn
    assert set(inspector.chart.bars) == {"p"}


def test_a_narrow_inspector_puts_the_fields_under_the_image(qtbot, run_bridge):
    from PySide6.QtWidgets import QBoxLayout

    from uldl_studio.qt.inspector import Inspector

    inspector = Inspector(run_bridge)
    qtbot.addWidget(inspector)
    inspector.resize(600, 800)
    inspector.show()
    qtbot.waitUntil(lambda: inspector._top.direction() == QBoxLayout.Direction.LeftToRight, timeout=2_000)
    inspector.resize(Inspector.STACK_BELOW - 60, 800)
    qtbot.waitUntil(lambda: inspector._top.direction() == QBoxLayout.Direction.TopToBottom, timeout=2_000)
    run_bridge.session.set_current(0)
    qtbot.wait(50)
    label = inspector.fields["label"]
    right = label.mapTo(inspector, label.rect().topRight()).x()
    assert right <= inspector.width()                       # the value column is inside the panel
    assert inspector.image.geometry().bottom() < label.mapTo(inspector, label.rect().topLeft()).y()


@pytest.mark.parametrize("height", [700, 740])
def test_the_key_help_is_in_view_when_the_dock_is_shorter_than_the_panel_would_like(qtbot, run_bridge, height):
    """In its dock the inspector sits in a scroll area. Given more than its minimum, it fits
    without scrolling: the bar chart gives up height, never a wrapped row or the key help."""
    from PySide6.QtWidgets import QScrollArea

    from uldl_studio.qt.inspector import Inspector

    inspector = Inspector(run_bridge)
    inspector.set_hint("Keys: 1–8 relabel · Ctrl+1–8 selection · Enter accept → next in queue · "
                       "←/→ · Space unsure · Ctrl+Z undo")
    holder = QScrollArea()
    holder.setWidgetResizable(True)
    holder.setWidget(inspector)
    qtbot.addWidget(holder)
    holder.resize(430, height)
    holder.show()
    run_bridge.session.set_current(int(np.flatnonzero(run_bridge.session.table["split"].to_numpy() == "train")[0]))
    qtbot.wait(100)
    given = inspector.fields["label"]
    given.setText("surprise (was happiness) [key 3] · a long label wraps onto a second line")
    qtbot.wait(100)
    assert holder.verticalScrollBar().maximum() == 0
    assert given.height() >= given.heightForWidth(given.width()) > given.fontMetrics().height()  # no row cut
    hint = inspector.hint
    assert hint.height() >= hint.heightForWidth(hint.width()) > hint.fontMetrics().height()
    assert hint.mapTo(holder.viewport(), hint.rect().bottomLeft()).y() <= holder.viewport().height()

