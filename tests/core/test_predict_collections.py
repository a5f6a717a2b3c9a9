"""core.image_collection and core.predict.predict_collection on real image files of every kind.

A tiny run (32 px, width 8, 2 epochs) is trained once on the demo written to disk; the
collections are folders, CSVs and files made from those images.
"""
from __future__ import annotations

import threading
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from predict_support import copy_images, demo_on_disk, train_tiny_run, write_image
from uldl_studio.core.data.datasets.common import DatasetWarning
from uldl_studio.core.runs.export import read_soft_labels, soft_label_columns
from uldl_studio.core.data.image_collection import read_collection
from uldl_studio.core.cancel import Cancelled
from uldl_studio.core.runs.predict import (
    EXTRA_COLUMNS, PREDICTION_SCORES, PredictOptions, Predictor, predict_collection,
    read_predictions, write_predictions,
)
from uldl_studio.core.engine.run import Run
from uldl_studio.core.table import DatasetError, p_columns

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def demo_csv(tmp_path_factory):
    return demo_on_disk(tmp_path_factory.mktemp("demo") / "demo", n=200, seed=0)


@pytest.fixture(scope="module")
def demo_run(demo_csv, tmp_path_factory):
    from uldl_studio.core.data.datasets import load_dataset

    table = load_dataset(demo_csv, fmt="csv")
    return Run.open(train_tiny_run(table, tmp_path_factory.mktemp("runs") / "demo-run"))


@pytest.fixture(scope="module")
def predictor(demo_run):
    return Predictor(demo_run, "cpu")


def demo_images(demo_csv, n=None):
    frame = pd.read_csv(demo_csv)
    paths = [demo_csv.parent / p for p in frame["path"]]
    return paths[:n] if n else paths


# ----------------------------------------------------------------------------- reading collections
def test_an_unlabelled_folder_tree_is_read_recursively(demo_csv, tmp_path):
    src = demo_images(demo_csv, 6)
    copy_images(src[:2], tmp_path / "photos")
    copy_images(src[2:4], tmp_path / "photos" / "2024" / "trip", names=["a.png", "b.png"])
    copy_images(src[4:6], tmp_path / "photos" / "misc", names=["c.png", "d.PNG"])
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    (tmp_path / "photos" / ".hidden.png").write_bytes(b"hidden files are ignored")
    collection = read_collection(tmp_path / "photos")
    assert collection.kind == "folder" and len(collection) == 6
    assert collection.skipped == 1 and collection.skipped_example == "notes.txt"
    assert collection.table["source_label"].isna().all()
    assert "2024/trip/a.png" in set(collection.table["sample_id"])
    assert "1 non-image file skipped" in collection.describe()


def test_a_csv_with_only_paths(demo_csv, tmp_path):
    src = demo_images(demo_csv, 4)
    copy_images(src, tmp_path / "data" / "imgs", names=["w.png", "x.png", "y.png", "z.png"])
    rows = ["imgs/w.png", "imgs/x.png", "imgs/missing.png", "imgs/y.png", "imgs\\z.png"]
    (tmp_path / "data" / "list.csv").write_text("path\n" + "\n".join(rows) + "\n")
    with pytest.warns(DatasetWarning, match="1 of 5 rows: image file not found"):
        collection = read_collection(tmp_path / "data" / "list.csv")
    assert collection.kind == "csv" and len(collection) == 4
    assert collection.table["path"].iloc[0] == str(tmp_path / "data" / "imgs" / "w.png")
    assert collection.table["source_label"].isna().all()
    # the folder holding the CSV reads the same
    with pytest.warns(DatasetWarning):
        assert len(read_collection(tmp_path / "data")) == 4


def test_a_single_image(demo_csv):
    path = demo_images(demo_csv, 1)[0]
    collection = read_collection(path)
    assert collection.kind == "image" and list(collection.table["sample_id"]) == [path.name]


def test_class_folders_with_unknown_names_keep_their_names(demo_csv, tmp_path):
    src = demo_images(demo_csv, 6)
    copy_images(src[:3], tmp_path / "set" / "Happy")
    copy_images(src[3:], tmp_path / "set" / "smirk")
    collection = read_collection(tmp_path / "set")
    assert collection.kind == "folders"
    assert collection.table["source_label"].tolist() == ["happiness"] * 3 + ["smirk"] * 3
    # with split folders too
    copy_images(src[:2], tmp_path / "split" / "train" / "bored")
    copy_images(src[2:4], tmp_path / "split" / "test" / "sad")
    labels = read_collection(tmp_path / "split").table["source_label"].tolist()
    assert sorted(labels) == ["bored", "bored", "sadness", "sadness"]
    assert read_collection(tmp_path / "set", fmt="images").table["source_label"].isna().all()


def test_csv_labels_as_names_any_text_or_indices(demo_csv, tmp_path):
    src = demo_images(demo_csv, 3)
    copy_images(src, tmp_path, names=["a.png", "b.png", "c.png"])
    (tmp_path / "named.csv").write_text("path,label\na.png,Happy\nb.png,smirk\nc.png,\n")
    assert read_collection(tmp_path / "named.csv").table["source_label"].tolist() == ["happiness", "smirk", None]
    (tmp_path / "codes.csv").write_text("path,label\na.png,0\nb.png,7\nc.png,1\n")
    assert read_collection(tmp_path / "codes.csv").table["source_label"].tolist() == \
        ["neutral", "contempt", "happiness"]


def test_limit_keeps_the_first_images(demo_csv, tmp_path):
    copy_images(demo_images(demo_csv, 8), tmp_path / "f")
    assert len(read_collection(tmp_path / "f", limit=3)) == 3


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_bad_inputs_are_one_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError) as exc:
        read_collection(tmp_path / "empty")
    assert f"{tmp_path / 'empty'}: the folder is empty" in _one_line(exc)

    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "a.txt").write_text("x")
    (tmp_path / "docs" / "sub" / "b.pdf").write_text("x")
    with pytest.raises(DatasetError) as exc:
        read_collection(tmp_path / "docs")
    assert "no images in the folder: 2 files" in _one_line(exc)

    (tmp_path / "list.csv").write_text("path\nnope/a.png\nnope/b.png\n")
    with pytest.raises(DatasetError) as exc:
        read_collection(tmp_path / "list.csv")
    text = _one_line(exc)
    assert str(tmp_path / "list.csv") in text and "none of the 2 image paths exist" in text

    (tmp_path / "cols.csv").write_text("file,emotion_name\na.png,x\n")
    with pytest.raises(DatasetError) as exc:
        read_collection(tmp_path / "cols.csv")
    assert "no path column (found columns: file, emotion_name)" in _one_line(exc)

    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError) as exc:
        read_collection(tmp_path / "notes.txt")
    assert "notes.txt: not an image" in _one_line(exc)

    with pytest.raises(DatasetError, match="no such file or folder"):
        read_collection(tmp_path / "absent")


# ----------------------------------------------------------------------------- prediction rows
def test_prediction_rows_are_soft_labels_with_the_extra_columns(demo_run, predictor, demo_csv, tmp_path):
    copy_images(demo_images(demo_csv, 20), tmp_path / "photos")
    result = predict_collection(predictor, tmp_path / "photos")
    table, classes = result.table, demo_run.classes
    out = tmp_path / "pred.csv"
    write_predictions(table, out)
    header = out.read_text().splitlines()[0].split(",")
    assert header == [*soft_label_columns(classes), *EXTRA_COLUMNS]
    back = read_soft_labels(out)  # the plain reader accepts it; extras are strings
    assert len(back) == 20 and back["source_label"].eq("").all() and back["face_index"].eq("").all()
    typed = read_predictions(out)
    np.testing.assert_array_equal(typed["x2d"].to_numpy(), table["x2d"].to_numpy())
    assert typed["face_index"].isna().all() and typed["source_label"].isna().all()

    p = table[p_columns(classes)].to_numpy()
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(p, table[[f"d_{c}" for c in classes]].to_numpy())
    assert (table["label"].to_numpy() == p.argmax(1)).all()
    assert (table["label_name"] == np.asarray(classes)[p.argmax(1)]).all()
    assert (table["split"] == "test").all() and not table["edited"].any()
    top2 = np.sort(p, axis=1)[:, -2:]
    np.testing.assert_allclose(table["margin"], -(top2[:, 1] - top2[:, 0]), atol=1e-12)
    np.testing.assert_allclose(table["self_confidence"], 1 - p.max(1), atol=1e-12)
    entropy = -(p * np.log(p)).sum(1) / np.log(len(classes))
    np.testing.assert_allclose(table["entropy"], entropy, atol=1e-9)
    from uldl_studio.core.labels import scores

    training = [s.name for s in scores.exported() if s.name not in PREDICTION_SCORES]
    assert "lambda" in training and "aum" in training
    assert table[training].isna().all().all()
    from uldl_studio.core.engine.va import circumplex_points

    config = demo_run.config
    assert config.va in ("auto", "columns")  # the demo has V-A columns: the run has a V-A head, which places them
    head = table[["va_pred_valence", "va_pred_arousal"]].to_numpy()
    assert np.isfinite(head).all()
    np.testing.assert_array_equal(table[["valence", "arousal"]].to_numpy(), head)
    assert not np.allclose(head, circumplex_points(p, classes, config.va_centroids, config.va_temperature))
    assert "predicted 20 rows from 20 images" in "\n".join(result.summary.lines())


def test_training_images_land_at_their_own_map_position(demo_run, predictor, demo_csv, tmp_path):
    samples = demo_run.samples().head(40)
    names = [f"foreign_{i}.png" for i in range(len(samples))]
    copy_images(samples["path"].tolist(), tmp_path / "again", names=names)
    table = predict_collection(predictor, tmp_path / "again").table.set_index("sample_id").loc[names]
    spread = np.hypot(samples["x2d"].std(), samples["y2d"].std())
    distance = np.hypot(table["x2d"].to_numpy() - samples["x2d"].to_numpy(),
                        table["y2d"].to_numpy() - samples["y2d"].to_numpy())
    assert distance.max() < 0.01 * spread, (distance.max(), spread)
    np.testing.assert_allclose(table[p_columns(demo_run.classes)].to_numpy(),
                               samples[p_columns(demo_run.classes)].to_numpy(), atol=1e-4)
    # and each one's nearest training sample on the map is itself
    all_samples = demo_run.samples()
    xy = all_samples[["x2d", "y2d"]].to_numpy()
    nearest = np.linalg.norm(xy[None] - table[["x2d", "y2d"]].to_numpy()[:, None], axis=2).argmin(1)
    assert (all_samples["sample_id"].to_numpy()[nearest] == samples["sample_id"].to_numpy()).mean() >= 0.95


def test_a_labelled_dataset_with_a_class_the_run_lacks(demo_run, predictor, demo_csv, tmp_path):
    src = demo_images(demo_csv, 12)
    copy_images(src, tmp_path, names=[f"{i}.png" for i in range(12)])
    labels = ["happiness", "contempt", "sad", "bored"] * 3
    ref = np.full((12, 2), 0.5)
    frame = pd.DataFrame({"path": [f"{i}.png" for i in range(12)], "label": labels,
                          "ref_happiness": ref[:, 0], "ref_contempt": ref[:, 1]})
    frame.to_csv(tmp_path / "labels.csv", index=False)
    result = predict_collection(predictor, tmp_path / "labels.csv")
    s = result.summary
    assert result.table["source_label"].tolist() == ["happiness", "contempt", "sadness", "bored"] * 3
    assert s.labelled_rows == 12 and s.scored_rows == 6  # happiness and sadness are the run's classes
    truth = np.array([demo_run.classes.index(c) for c in ["happiness", "sadness"] * 3])
    predicted = result.table["label"].to_numpy()[[0, 2, 4, 6, 8, 10]]
    assert s.accuracy == pytest.approx(float(np.mean(truth == predicted)))
    # the reference restricted to the run's classes: contempt's mass dropped, happiness renormalised to 1
    assert s.ldl_rows == 6 and 0 <= s.ldl["intersection"] <= 1
    happiness = result.table["p_happiness"].to_numpy()[[0, 2, 4, 6, 8, 10]]
    assert s.ldl["intersection"] == pytest.approx(float(happiness.mean()))
    assert "12 rows labelled, 6 with a class the run knows" in "\n".join(s.lines())


def test_unreadable_images_are_skipped_with_one_warning(predictor, demo_csv, tmp_path):
    copy_images(demo_images(demo_csv, 3), tmp_path / "mixed")
    (tmp_path / "mixed" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (tmp_path / "mixed" / "empty.png").write_bytes(b"")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = predict_collection(predictor, tmp_path / "mixed")
    messages = [str(w.message) for w in caught if issubclass(w.category, DatasetWarning)]
    assert len(messages) == 1 and messages[0].startswith("2 of 5 images could not be read")
    assert "broken.jpg" in messages[0]
    assert len(result.table) == 3 and result.summary.unreadable == 2


def test_all_images_corrupt_is_an_error(predictor, tmp_path):
    for i in range(3):
        (tmp_path / "bad" / f"{i}.png").parent.mkdir(exist_ok=True)
        (tmp_path / "bad" / f"{i}.png").write_bytes(b"garbage")
    with pytest.raises(DatasetError) as exc:
        predict_collection(predictor, tmp_path / "bad")
    assert f"{tmp_path / 'bad'}: none of the 3 images could be read" in _one_line(exc)


def test_chunks_give_the_same_predictions_as_one_pass(predictor, demo_csv, tmp_path):
    copy_images(demo_images(demo_csv, 30), tmp_path / "f")
    seen = []
    small = predict_collection(predictor, tmp_path / "f", PredictOptions(chunk_size=7),
                               progress=lambda d, t, text: seen.append((d, t, text))).table
    whole = predict_collection(predictor, tmp_path / "f", PredictOptions(chunk_size=500)).table
    np.testing.assert_allclose(small[p_columns(predictor.classes)], whole[p_columns(predictor.classes)], atol=1e-5)
    assert [d for d, _, _ in seen] == [0, 7, 14, 21, 28, 30] and all(t == 30 for _, t, _ in seen)


def test_tta_averages_the_image_and_its_mirror(predictor, demo_csv, tmp_path):
    src = demo_images(demo_csv, 5)
    for i, path in enumerate(src):
        img = np.asarray(Image.open(path))
        write_image(tmp_path / "plain" / f"{i}.png", img)
        write_image(tmp_path / "mirror" / f"{i}.png", img[:, ::-1])
    cols = p_columns(predictor.classes)
    plain = predict_collection(predictor, tmp_path / "plain").table[cols].to_numpy()
    mirror = predict_collection(predictor, tmp_path / "mirror").table[cols].to_numpy()
    tta = predict_collection(predictor, tmp_path / "plain", PredictOptions(tta=True))
    np.testing.assert_allclose(tta.table[cols].to_numpy(), (plain + mirror) / 2, atol=1e-5)
    assert tta.summary.tta and not np.allclose(plain, mirror)


def test_cancel_mid_way_stops_between_chunks(predictor, demo_csv, tmp_path):
    copy_images(demo_images(demo_csv, 120), tmp_path / "many")
    cancel = threading.Event()
    seen = []

    def progress(done, total, text):
        seen.append(done)
        if done >= 20:
            cancel.set()

    with pytest.raises(Cancelled):
        predict_collection(predictor, tmp_path / "many", PredictOptions(chunk_size=10), progress=progress,
                           cancel=cancel)
    assert seen == [0, 10, 20]  # no chunk after the one at whose end it was cancelled
    # a callable works as well
    calls = iter(range(1000))
    with pytest.raises(Cancelled):
        predict_collection(predictor, tmp_path / "many", PredictOptions(chunk_size=10),
                           cancel=lambda: next(calls) > 15)


def test_json_output_carries_the_extra_columns(predictor, demo_csv, tmp_path):
    copy_images(demo_images(demo_csv, 4), tmp_path / "f")
    result = predict_collection(predictor, tmp_path / "f")
    write_predictions(result.table, tmp_path / "pred.json")
    back = read_predictions(tmp_path / "pred.json")
    assert list(back.columns)[-len(EXTRA_COLUMNS):] == list(EXTRA_COLUMNS)
    np.testing.assert_array_equal(back["y2d"].to_numpy(), result.table["y2d"].to_numpy())


def test_a_failed_write_leaves_the_previous_file(predictor, demo_csv, tmp_path):
    copy_images(demo_images(demo_csv, 4), tmp_path / "f")
    table = predict_collection(predictor, tmp_path / "f").table
    out = tmp_path / "pred.csv"
    out.write_text("previous\n")
    bad = table.copy()
    bad.loc[1, p_columns(predictor.classes)[0]] = np.nan
    with pytest.raises(DatasetError) as exc:
        write_predictions(bad, out)
    assert str(out) in str(exc.value) and ".part" not in str(exc.value)
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "pred.csv"]
