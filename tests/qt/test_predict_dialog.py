"""PredictDialog: any input (folder, CSV of paths, one image), faces and TTA options, progress,
a working Cancel, the summary, and the predicted table in ``finishedWith``."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton

from uldl_studio.core.engine.run import Run
from uldl_studio.qt.export_dialogs import PredictDialog

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def images(tmp_path, demo_table):
    """12 demo images copied into a plain folder (no labels) with a text file beside them."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, path in enumerate(demo_table["path"].head(12)):
        Image.open(path).save(folder / f"p{i:02d}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture
def dialog(qtbot, run_dir, tmp_path, settings_dir):
    dlg = PredictDialog(Run.open(run_dir), tmp_path)
    qtbot.addWidget(dlg)
    return dlg


def run_to_end(qtbot, dlg, timeout=60_000):
    with qtbot.waitSignal(dlg.finishedWith, timeout=timeout) as blocker:
        dlg.start()
    return blocker.args


def test_a_plain_folder_gives_the_summary_and_the_table(qtbot, dialog, images, tmp_path):
    from uldl_studio.core.runs.predict import read_predictions

    assert dialog.file_button.text() == "File…"
    assert [dialog.faces_combo.itemData(i) for i in range(dialog.faces_combo.count())] == ["off", "auto", "detect"]
    dialog.data_edit.setText(str(images))
    dialog.out_edit.setText(str(tmp_path / "pred.csv"))
    dialog.tta_check.setChecked(True)
    outcome, info = run_to_end(qtbot, dialog)
    assert outcome == "done", info
    assert info["rows"] == 12 and info["path"] == str(tmp_path / "pred.csv")
    assert isinstance(info["table"], pd.DataFrame) and len(info["table"]) == 12
    assert {"x2d", "y2d", "source_label", "face_index"} <= set(info["table"].columns)
    assert info["summary"]["tta"] and info["summary"]["skipped_files"] == 1
    assert "predicted 12 rows from 12 images" in dialog.summary.text()
    assert "Wrote 12 rows" in dialog.summary.text() and dialog.close_button.text() == "Close"
    back = read_predictions(tmp_path / "pred.csv")
    np.testing.assert_allclose(back["x2d"].to_numpy(), info["table"]["x2d"].to_numpy())


def test_one_image_file_with_face_detection(qtbot, dialog, demo_table, tmp_path):
    from uldl_studio.core.data.faces import paste_faces

    face = np.asarray(Image.open(demo_table["path"].iloc[0]).resize((128, 128)))
    canvas = paste_faces([face], 1, seed=2, scale=(0.3, 0.4))[0]
    Image.fromarray(canvas.image).save(tmp_path / "photo.png")
    dialog.data_edit.setText(str(tmp_path / "photo.png"))
    dialog.out_edit.setText(str(tmp_path / "face.csv"))
    dialog.faces_combo.setCurrentIndex(dialog.faces_combo.findData("detect"))
    outcome, info = run_to_end(qtbot, dialog)
    assert outcome == "done", info
    table = info["table"]
    assert list(table["sample_id"]) == ["photo.png#face0"] and int(table["face_index"].iloc[0]) == 0
    assert "1 face found" in dialog.summary.text()


def test_a_csv_of_paths_and_a_labelled_summary(qtbot, dialog, demo_table, tmp_path):
    rows = demo_table.head(10)
    pd.DataFrame({"path": rows["path"], "label": ["happy", "contempt"] * 5}).to_csv(tmp_path / "list.csv", index=False)
    dialog.data_edit.setText(str(tmp_path / "list.csv"))
    dialog.out_edit.setText(str(tmp_path / "pred.csv"))
    outcome, info = run_to_end(qtbot, dialog)
    assert outcome == "done", info
    assert info["summary"]["labelled_rows"] == 10 and info["summary"]["scored_rows"] == 5
    assert "5 with a class the run knows" in dialog.summary.text()


def test_cancel_stops_the_prediction_early_and_writes_nothing(qtbot, dialog, demo_table, tmp_path):
    # 4000 rows over the same 40 files: long enough to cancel in the middle
    paths = demo_table["path"].head(40).tolist() * 100
    pd.DataFrame({"sample_id": [f"s{i}" for i in range(len(paths))], "path": paths}).to_csv(
        tmp_path / "many.csv", index=False)
    dialog.chunk_size = 32
    dialog.data_edit.setText(str(tmp_path / "many.csv"))
    dialog.out_edit.setText(str(tmp_path / "cancelled.csv"))
    reported = []
    show = dialog._on_progress
    dialog._on_progress = lambda item: (reported.append(item), show(item))  # every report, also after Cancel
    with qtbot.waitSignal(dialog.finishedWith, timeout=60_000) as blocker:
        dialog.start()
        qtbot.waitUntil(lambda: dialog.progress is not None and dialog.progress.value() >= 64, timeout=30_000)
        qtbot.mouseClick(dialog.progress.findChild(QPushButton), Qt.MouseButton.LeftButton)
    assert blocker.args[0] == "cancelled"
    predicted = [p.batch for p in reported if p.phase == "predict"]
    assert predicted and max(predicted) >= 64
    assert max(predicted) < len(paths) // 2            # it stopped, far from the end
    assert "write" not in [p.phase for p in reported]
    assert not (tmp_path / "cancelled.csv").exists()
    assert "Cancelled" in dialog.error.text()


def test_a_bad_input_is_reported_in_the_dialog(qtbot, dialog, tmp_path):
    (tmp_path / "empty").mkdir()
    dialog.data_edit.setText(str(tmp_path / "empty"))
    dialog.out_edit.setText(str(tmp_path / "x.csv"))
    outcome, message = run_to_end(qtbot, dialog)
    assert outcome == "failed" and "the folder is empty" in message
    assert "the folder is empty" in dialog.error.text() and not (tmp_path / "x.csv").exists()


def test_the_dialog_remembers_its_last_inputs(qtbot, run_dir, images, tmp_path, settings_dir):
    import shutil

    from uldl_studio.qt.settings import StudioSettings

    run = Run.open(run_dir)
    first = PredictDialog(run, tmp_path)
    qtbot.addWidget(first)
    assert first.data_edit.text() == "" and not first.tta_check.isChecked()
    assert first.faces_combo.currentData() == "off" and first.format_combo.currentData() == "auto"
    assert first.out_edit.text() == str(tmp_path / "predicted_soft_labels.csv")
    results = tmp_path / "results"
    results.mkdir()
    first.data_edit.setText(str(images))
    first.format_combo.setCurrentIndex(first.format_combo.findData("images"))
    first.faces_combo.setCurrentIndex(first.faces_combo.findData("auto"))
    first.tta_check.setChecked(True)
    first.out_edit.setText(str(results / "pred.csv"))
    outcome, info = run_to_end(qtbot, first)
    assert outcome == "done", info
    first.close()

    # Opened again (elsewhere by default): the same inputs, and a new name beside the last output.
    again = PredictDialog(run, tmp_path / "elsewhere")
    qtbot.addWidget(again)
    assert again.data_edit.text() == str(images)
    assert again.format_combo.currentData() == "images" and again.faces_combo.currentData() == "auto"
    assert again.tta_check.isChecked()
    assert again.out_edit.text() == str(results / "pred-2.csv")
    assert StudioSettings().predict_values()["out_dir"] == str(results)

    # A parent window's settings are the ones used; paths that are gone are not filled in.
    shutil.rmtree(images)
    shutil.rmtree(results)
    parent = QPushButton()
    qtbot.addWidget(parent)
    parent.settings = StudioSettings()
    gone = PredictDialog(run, tmp_path / "default", parent)
    assert gone.settings is parent.settings
    assert gone.data_edit.text() == "" and gone.faces_combo.currentData() == "auto"
    assert gone.out_edit.text() == str(tmp_path / "default" / "pred.csv")


def test_a_dialog_that_does_not_start_changes_nothing(qtbot, run_dir, tmp_path, settings_dir):
    from uldl_studio.qt.settings import StudioSettings

    dlg = PredictDialog(Run.open(run_dir), tmp_path)
    qtbot.addWidget(dlg)
    dlg.faces_combo.setCurrentIndex(dlg.faces_combo.findData("detect"))
    dlg.start()                                # no images chosen: refused, nothing saved
    assert "Choose the images" in dlg.error.text()
    dlg.reject()
    assert StudioSettings().predict_values() == {}
    fresh = PredictDialog(Run.open(run_dir), tmp_path)
    qtbot.addWidget(fresh)
    assert fresh.faces_combo.currentData() == "off"


def test_adapting_to_the_collection_is_one_tick_and_the_file_says_so(qtbot, dialog, demo_table, tmp_path):
    """The priors and AdaBN boxes reach the prediction; the file's ``adapted`` column and the
    summary say what was applied; the choice is remembered."""
    folder = tmp_path / "many"
    folder.mkdir()
    for i, path in enumerate(demo_table["path"].head(80)):
        Image.open(path).save(folder / f"q{i:02d}.png")
    dialog.data_edit.setText(str(folder))
    dialog.out_edit.setText(str(tmp_path / "adapted.csv"))
    dialog.priors_check.setChecked(True)
    dialog.bn_check.setChecked(True)
    assert dialog.adapt() == ("bn", "priors")
    outcome, info = run_to_end(qtbot, dialog)
    assert outcome == "done", info
    table = pd.read_csv(tmp_path / "adapted.csv")
    assert "adapted" in table.columns and table["adapted"].notna().all()
    applied = set(str(table["adapted"].iat[0]).split("+"))
    assert applied <= {"bn", "priors", "none"} and applied != set()
    assert tuple(info["summary"]["adapt"]) == ("bn", "priors")
    again = PredictDialog(dialog.run, tmp_path)
    qtbot.addWidget(again)
    assert again.priors_check.isChecked() and again.bn_check.isChecked()
