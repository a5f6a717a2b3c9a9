"""A CSV of images is read by one reader for training (core.data.datasets.csv_layout.load_csv)
and for prediction (core.data.image_collection.read_collection), with one label rule."""
import warnings

import numpy as np
import pytest

from uldl_studio.core.data.datasets.common import DatasetWarning
from uldl_studio.core.data.datasets.csv_layout import load_csv
from uldl_studio.core.data.image_collection import read_collection
from uldl_studio.core.table import DatasetError, classes_of
from predict_support import write_image


def images(folder, names):
    for i, name in enumerate(names):
        write_image(folder / name, np.full((8, 8), 20 * i))


def read_both(csv):
    """(training table, collection, the warnings of each)."""
    with warnings.catch_warnings(record=True) as train_warnings:
        warnings.simplefilter("always")
        table = load_csv(csv)
    with warnings.catch_warnings(record=True) as predict_warnings:
        warnings.simplefilter("always")
        collection = read_collection(csv)
    return (table, collection, [str(w.message) for w in train_warnings if w.category is DatasetWarning],
            [str(w.message) for w in predict_warnings if w.category is DatasetWarning])


def test_unknown_label_names_are_dropped_for_training_and_kept_for_prediction(tmp_path):
    images(tmp_path / "img", ["a.png", "b.png", "c.png", "d.png", "e.png"])
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\nimg/a.png,Happy\nimg/b.png,smirk\nimg/c.png,sad\nimg/d.png,\nimg/e.png,smirk\n")
    table, collection, train_warnings, predict_warnings = read_both(csv)
    listing = "rows with unknown label names: 'smirk' (2x, first row 2); expected"
    assert any(f"{csv}: dropped 2 of 5 {listing}" in w for w in train_warnings)
    [predict_warning] = [w for w in predict_warnings if listing in w]  # one line, naming the file and the label
    assert predict_warning.startswith(f"{csv}: 2 of 5 {listing}") and "kept with the label as written" in predict_warning
    # training: a class for every sample (the empty label dropped too)
    assert list(table["sample_id"]) == ["img/a.png", "img/c.png"]
    assert [classes_of(table)[i] for i in table["label"]] == ["happiness", "sadness"]
    # prediction: every image, the unknown label as written, the empty one as none
    assert list(collection.table["sample_id"]) == [f"img/{n}.png" for n in "abcde"]
    assert collection.table["source_label"].tolist() == ["happiness", "smirk", "sadness", None, "smirk"]
    # the same paths for the rows both keep
    kept = collection.table.set_index("sample_id").loc[table["sample_id"], "path"]
    assert kept.tolist() == table["path"].tolist()


def test_indices_outside_the_class_list_follow_the_same_rule(tmp_path):
    images(tmp_path, ["a.png", "b.png", "c.png"])
    (tmp_path / "classes.txt").write_text("surprise\nfear\nhappy\n")
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\na.png,0\nb.png,7\nc.png,2\n")
    table, collection, train_warnings, predict_warnings = read_both(csv)
    listing = "rows with label indices outside 0..2: '7' (1x, first row 2); classes: surprise, fear, happiness"
    assert any(f"dropped 1 of 3 {listing}" in w for w in train_warnings)
    assert any(f"1 of 3 {listing}; kept with the label as written" in w for w in predict_warnings)
    assert classes_of(table) == ["surprise", "fear", "happiness"] and list(table["label"]) == [0, 2]
    assert collection.table["source_label"].tolist() == ["surprise", "7", "happiness"]


def test_paths_ids_and_duplicates_are_read_alike(tmp_path):
    images(tmp_path / "sub", ["a.png", "b.png", "c.png"])
    csv = tmp_path / "labels.csv"
    csv.write_text("Path;Label;Sample_ID\nsub\\a.png;happy;first\nsub/b.png;sad;\nsub/c.png;sad;first\n")
    table, collection, train_warnings, predict_warnings = read_both(csv)
    for frame in (table, collection.table):
        assert list(frame["sample_id"]) == ["first", "sub/b.png"]
        assert list(frame["path"]) == [str(tmp_path / "sub" / "a.png"), str(tmp_path / "sub" / "b.png")]
    for messages in (train_warnings, predict_warnings):
        assert any("dropped 1 of 3 rows: duplicate sample id" in w for w in messages)


def test_a_label_column_is_needed_to_train_and_optional_to_predict(tmp_path):
    images(tmp_path, ["a.png", "b.png"])
    csv = tmp_path / "list.csv"
    csv.write_text("path\na.png\nb.png\n")
    assert read_collection(csv).table["source_label"].isna().all()
    with pytest.raises(DatasetError, match="missing label"):
        load_csv(csv)
    # and --format images reads a labelled CSV without its labels
    (tmp_path / "labelled.csv").write_text("path,label\na.png,happy\nb.png,smirk\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_collection(tmp_path / "labelled.csv", fmt="images").table["source_label"].isna().all()
