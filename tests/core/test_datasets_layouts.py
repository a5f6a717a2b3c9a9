"""Every dataset layout from small fixtures written here, good and bad input."""
from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from uldl_studio.core.classes import AFFECTNET_CLASSES, CANONICAL, FER2013_CLASSES, FERPLUS_CLASSES, RAFDB_CLASSES
from uldl_studio.core.data.datasets import FORMATS, DatasetWarning, detect_format, load_dataset
from uldl_studio.core.table import DatasetError, classes_of, reference_distribution, validate_table


# ------------------------------------------------------------------ builders
def write_image(path: Path, value: int = 128, size=(48, 48), mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode == "L" else (value, 255 - value, value // 2)
    Image.new(mode, size, colour).save(path)
    return path


def write_csv(path: Path, header, rows, delimiter=",", bom=False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def make_ferplus(root: Path, rows_per_split=None) -> Path:
    """Three split folders; votes in the native 10-column order."""
    rows_per_split = rows_per_split or {
        "FER2013Train": [
            ("fer0000000.png", [4, 0, 0, 1, 3, 2, 0, 0, 0, 0]),   # neutral
            ("fer0000001.png", [0, 9, 1, 0, 0, 0, 0, 0, 0, 0]),   # happiness
            ("fer0000002.png", [0, 0, 0, 0, 0, 0, 0, 0, 10, 0]),  # unknown majority: dropped
            ("fer0000003.png", [0, 0, 5, 0, 0, 0, 5, 0, 0, 0]),   # tie surprise/fear -> surprise
            ("fer0000004.png", [1, 0, 0, 0, 0, 0, 0, 0, 0, 9]),   # NF: dropped
            ("fer0000005.png", [0, 0, 0, 0, 2, 0, 0, 0, 2, 0]),   # tie anger/unknown -> anger kept
        ],
        "FER2013Valid": [("fer0000010.png", [0, 0, 0, 6, 0, 0, 0, 4, 0, 0])],
        "FER2013Test": [("fer0000020.png", [0, 0, 0, 0, 0, 7, 0, 3, 0, 0])],
    }
    for folder, rows in rows_per_split.items():
        for name, _ in rows:
            write_image(root / folder / name)
        write_csv(root / folder / "label.csv", None, [[name, "(0, 0, 48, 48)", *votes] for name, votes in rows])
    return root


def make_rafdb(root: Path) -> Path:
    lines = ["train_00001.jpg 5", "train_00002.jpg 1", "train_00003.jpg 7", "test_0001.jpg 4", "test_0002.jpg 6"]
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    for line in lines:
        stem = line.split()[0][:-4]
        write_image(root / "Image" / "aligned" / f"{stem}_aligned.jpg", mode="RGB", size=(100, 100))
    return root


def make_affectnet(root: Path, train_rows=None, valid_rows=None) -> Path:
    header = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
              "facial_landmarks", "expression", "valence", "arousal"]
    train_rows = train_rows if train_rows is not None else [
        ("1/a.jpg", 0, 0.1, 0.2), ("1/b.jpg", 1, 0.8, 0.3), ("2/c.jpg", 7, -0.5, 0.1), ("2/d.jpg", 3, -2, -2),
    ]
    valid_rows = valid_rows if valid_rows is not None else [("3/e.jpg", 6, -0.6, 0.7), ("3/f.jpg", 2, -0.7, -0.2)]
    images = root / "Manually_Annotated_Images"
    for name, rows in (("training.csv", train_rows), ("validation.csv", valid_rows)):
        for rel, *_ in rows:
            write_image(images / rel, mode="RGB")
        write_csv(root / "Manually_Annotated_file_lists" / name, header,
                  [[rel, 0, 0, 48, 48, "1;2", code, v, a] for rel, code, v, a in rows])
    return root


def pixel_string(value: int, n: int = 2304) -> str:
    return " ".join([str(value)] * n)


def make_fer2013(path: Path, rows=None) -> Path:
    rows = rows or [(0, pixel_string(10), "Training"), (3, pixel_string(200), "Training"),
                    (6, pixel_string(90), "PublicTest"), (4, pixel_string(50), "PrivateTest")]
    return write_csv(path, ["emotion", "pixels", "Usage"], rows)


def load_quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        return load_dataset(*args, **kwargs)


def messages(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, DatasetWarning)]


# ------------------------------------------------------------------ FER+ (fixtures)
def test_ferplus_fixture_protocol(tmp_path):
    root = make_ferplus(tmp_path / "ferplus")
    assert detect_format(root) == "ferplus"
    table = load_dataset(root)
    validate_table(table)
    assert classes_of(table) == list(FERPLUS_CLASSES)
    assert table.attrs["format"] == "ferplus"
    assert table.groupby("split").size().to_dict() == {"train": 4, "valid": 1, "test": 1}
    by_id = table.set_index("sample_id")
    assert "FER2013Train/fer0000002.png" not in by_id.index  # unknown majority
    assert "FER2013Train/fer0000004.png" not in by_id.index  # NF majority
    names = {sid: FERPLUS_CLASSES[lab] for sid, lab in by_id["label"].items()}
    assert names["FER2013Train/fer0000000.png"] == "neutral"
    assert names["FER2013Train/fer0000003.png"] == "surprise"  # tie -> lowest index
    assert names["FER2013Train/fer0000005.png"] == "anger"  # emotion wins a tie with unknown
    ref = reference_distribution(table)
    np.testing.assert_allclose(ref.sum(axis=1), 1.0)
    np.testing.assert_allclose(by_id.loc["FER2013Train/fer0000000.png", "ref_neutral"], 0.4)
    assert Path(by_id.loc["FER2013Valid/fer0000010.png", "path"]).is_file()


def test_ferplus_single_split_folder_and_label_csv(tmp_path):
    root = make_ferplus(tmp_path / "ferplus")
    table = load_dataset(root / "FER2013Valid")
    assert set(table["split"]) == {"valid"} and len(table) == 1
    assert detect_format(root / "FER2013Test" / "label.csv") == "ferplus"
    assert set(load_dataset(root / "FER2013Test" / "label.csv")["split"]) == {"test"}


def test_ferplus_missing_image_dropped_with_warning(tmp_path):
    root = make_ferplus(tmp_path / "ferplus")
    (root / "FER2013Train" / "fer0000001.png").unlink()
    with pytest.warns(DatasetWarning, match=r"label.csv: dropped 1 of 4 rows: image file not found.*fer0000001.png"):
        table = load_dataset(root)
    assert "FER2013Train/fer0000001.png" not in set(table["sample_id"])


def test_ferplus_wrong_columns(tmp_path):
    folder = tmp_path / "FER2013Train"
    write_csv(folder / "label.csv", None, [["fer0.png", "(0,0,48,48)", 1, 2, 3]])
    with pytest.raises(DatasetError, match=r"label.csv: wrong columns: expected 12"):
        load_dataset(tmp_path, "ferplus")


def test_ferplus_bad_votes_dropped(tmp_path):
    root = make_ferplus(tmp_path / "f", {"FER2013Train": [("a.png", [5, 5, 0, 0, 0, 0, 0, 0, 0, 0]),
                                                           ("b.png", [5, "x", 0, 0, 0, 0, 0, 0, 0, 0]),
                                                           ("c.png", [0, 0, 0, 0, 0, 0, 0, 0, 0, 0])]})
    with pytest.warns(DatasetWarning) as record:
        table = load_dataset(root)
    text = " | ".join(messages(record))
    assert "not non-negative integers (first rows: 2)" in text
    assert "no emotion votes (first rows: 3)" in text
    assert list(table["sample_id"]) == ["FER2013Train/a.png"]


def test_ferplus_empty_label_csv(tmp_path):
    (tmp_path / "FER2013Train").mkdir()
    (tmp_path / "FER2013Train" / "label.csv").write_text("")
    with pytest.raises(DatasetError, match=r"label.csv: empty CSV"):
        load_dataset(tmp_path, "ferplus")


def test_ferplus_not_a_ferplus_folder(tmp_path):
    with pytest.raises(DatasetError, match=r"not a FER\+ folder: expected FER2013Train/"):
        load_dataset(tmp_path, "ferplus")


# ------------------------------------------------------------------ RAF-DB
def test_rafdb(tmp_path):
    root = make_rafdb(tmp_path / "raf" / "basic")
    assert detect_format(tmp_path / "raf") == "rafdb"
    table = load_dataset(tmp_path / "raf")
    assert classes_of(table) == list(RAFDB_CLASSES)
    by_id = table.set_index("sample_id")
    assert RAFDB_CLASSES[by_id.loc["train_00001.jpg", "label"]] == "sadness"
    assert RAFDB_CLASSES[by_id.loc["train_00002.jpg", "label"]] == "surprise"
    assert RAFDB_CLASSES[by_id.loc["train_00003.jpg", "label"]] == "neutral"
    assert table.groupby("split").size().to_dict() == {"train": 3, "test": 2}
    assert by_id.loc["test_0001.jpg", "path"] == str(root.resolve() / "Image" / "aligned" / "test_0001_aligned.jpg")


def test_rafdb_bad_codes_and_prefix(tmp_path):
    root = make_rafdb(tmp_path / "raf")
    label_file = root / "EmoLabel" / "list_patition_label.txt"
    label_file.write_text(label_file.read_text() + "train_00009.jpg 9\nval_0001.jpg 2\n")
    with pytest.warns(DatasetWarning) as record:
        table = load_dataset(root)
    text = " | ".join(messages(record))
    assert "list_patition_label.txt: dropped 1 of 7 rows: label outside 1..7" in text and "'9'" in text
    assert "does not start with train_ or test_ (first rows: 7)" in text
    assert len(table) == 5


def test_rafdb_sample_mode_is_an_error(tmp_path):
    root = make_rafdb(tmp_path / "raf")
    with pytest.raises(DatasetError, match="single_label='sample' needs several annotations"):
        load_dataset(root, single_label="sample")


# ------------------------------------------------------------------ AffectNet
def test_affectnet(tmp_path):
    root = make_affectnet(tmp_path / "affectnet")
    assert detect_format(root) == "affectnet"
    table = load_dataset(root)
    assert classes_of(table) == list(AFFECTNET_CLASSES)
    assert table.groupby("split").size().to_dict() == {"train": 4, "valid": 2}
    by_id = table.set_index("sample_id")
    assert AFFECTNET_CLASSES[by_id.loc["2/c.jpg", "label"]] == "contempt"
    assert by_id.loc["1/b.jpg", "valence"] == 0.8
    assert np.isnan(by_id.loc["2/d.jpg", "valence"]) and np.isnan(by_id.loc["2/d.jpg", "arousal"])
    assert Path(by_id.loc["3/e.jpg", "path"]).is_file()


def test_affectnet_non_emotion_and_bad_va(tmp_path):
    rows = [("1/a.jpg", 0, 0.1, 0.2), ("1/b.jpg", 8, 0.0, 0.0), ("1/c.jpg", 10, 0.0, 0.0), ("1/g.jpg", 9, 0, 0),
            ("1/d.jpg", 12, 0.0, 0.0), ("1/e.jpg", 1, 1.5, 0.2), ("1/f.jpg", 2, "abc", 0.3)]
    root = make_affectnet(tmp_path / "a", train_rows=rows)
    with pytest.warns(DatasetWarning) as record:
        table = load_dataset(root)
    text = " | ".join(messages(record))
    assert "training.csv: dropped 3 of 7 rows: expression codes 8-10 are not emotions" in text
    assert "none (8): 1, uncertain (9): 1, no-face (10): 1" in text
    assert "dropped 1 of 7 rows: expression code outside 0..10" in text and "'12'" in text
    assert "2 valence values are not numbers in [-1, 1]" in text
    by_id = table.set_index("sample_id")
    assert np.isnan(by_id.loc["1/e.jpg", "valence"]) and by_id.loc["1/e.jpg", "arousal"] == 0.2
    assert set(by_id.index) == {"1/a.jpg", "1/e.jpg", "1/f.jpg", "3/e.jpg", "3/f.jpg"}


def test_affectnet_images_beside_csv(tmp_path):
    write_image(tmp_path / "imgs" / "x" / "1.jpg")
    write_image(tmp_path / "imgs" / "x" / "2.jpg")
    write_csv(tmp_path / "imgs" / "training.csv", ["subDirectory_filePath", "expression", "valence", "arousal"],
              [["x/1.jpg", 1, 0.5, 0.5], ["x/2.jpg", 4, -0.3, 0.6]])
    table = load_dataset(tmp_path / "imgs" / "training.csv")
    assert table.attrs["format"] == "affectnet" and len(table) == 2


def test_affectnet_wrong_columns(tmp_path):
    write_csv(tmp_path / "training.csv", ["subDirectory_filePath", "emotion"], [["a.jpg", 1]])
    with pytest.raises(DatasetError, match=r"training.csv: wrong columns: missing expression; expected "
                                           r"subDirectory_filePath, expression.*found subDirectory_filePath, emotion"):
        load_dataset(tmp_path, "affectnet")


def test_affectnet_images_not_found(tmp_path):
    write_csv(tmp_path / "training.csv", ["subDirectory_filePath", "expression"], [["nowhere/a.jpg", 1]])
    with pytest.raises(DatasetError, match=r"training.csv: images not found: no file such as 'nowhere/a.jpg'"):
        load_dataset(tmp_path, "affectnet")


# ------------------------------------------------------------------ FER2013 CSV
def test_fer2013(tmp_path):
    path = make_fer2013(tmp_path / "fer2013.csv")
    assert detect_format(tmp_path) == "fer2013" and detect_format(path) == "fer2013"
    table = load_dataset(tmp_path)
    assert classes_of(table) == list(FER2013_CLASSES)
    assert list(table["split"]) == ["train", "train", "valid", "test"]
    assert list(table["sample_id"]) == ["fer0000000", "fer0000001", "fer0000002", "fer0000003"]
    assert table["path"].iloc[2] == f"{path.resolve()}#2"
    assert [FER2013_CLASSES[i] for i in table["label"]] == ["anger", "happiness", "neutral", "sadness"]
    assert table["pixels"].iloc[1].startswith("200 200")


def test_fer2013_bad_codes_and_usage(tmp_path):
    path = make_fer2013(tmp_path / "fer2013.csv", [(0, pixel_string(1), "Training"), (7, pixel_string(1), "Training"),
                                                   ("x", pixel_string(1), "PublicTest"), (2, pixel_string(1), "Other")])
    with pytest.warns(DatasetWarning) as record:
        table = load_dataset(path)
    text = " | ".join(messages(record))
    assert "fer2013.csv: dropped 2 of 4 rows: emotion code outside 0..6" in text and "(first rows: 2, 3)" in text
    assert "Usage is not Training, PublicTest or PrivateTest" in text and "'Other'" in text
    assert list(table["sample_id"]) == ["fer0000000"]


def test_fer2013_without_usage_is_hash_split(tmp_path):
    rows = [(i % 7, pixel_string(i % 256)) for i in range(60)]
    write_csv(tmp_path / "train.csv", ["emotion", "pixels"], rows)
    table = load_dataset(tmp_path / "train.csv")
    assert set(table["split"]) <= {"train", "valid", "test"} and (table["split"] == "train").mean() > 0.5


# ------------------------------------------------------------------ generic CSV
def make_generic(root: Path, rows, header=("path", "label", "split"), **kwargs) -> Path:
    for row in rows:
        if row[0] and not str(row[0]).startswith("missing"):
            write_image(root / row[0])
    return write_csv(root / "labels.csv", header, rows, **kwargs)


def test_generic_csv_names_and_synonyms(tmp_path):
    path = make_generic(tmp_path, [("img/a.png", "Happy", "train"), ("img/b.png", "angry", "training"),
                                   ("img/c.png", "sad", "val"), ("img/d.png", "neutral", "test")])
    assert detect_format(tmp_path) == "csv"
    table = load_dataset(tmp_path)
    # classes: names present, in canonical order
    assert classes_of(table) == ["neutral", "happiness", "sadness", "anger"]
    assert [classes_of(table)[i] for i in table["label"]] == ["happiness", "anger", "sadness", "neutral"]
    assert list(table["split"]) == ["train", "train", "valid", "test"]
    assert table["path"].iloc[0] == str(tmp_path / "img" / "a.png")
    assert table["sample_id"].iloc[0] == "img/a.png"
    assert table.attrs["root"] == str(path.resolve())


def test_generic_csv_integer_labels(tmp_path):
    make_generic(tmp_path, [("a.png", 0, "train"), ("b.png", 7, "train"), ("c.png", 2, "test")])
    table = load_dataset(tmp_path)
    assert classes_of(table) == list(CANONICAL)
    (tmp_path / "classes.txt").write_text("Surprise\nfear\nhappy\n")
    with pytest.warns(DatasetWarning, match=r"dropped 1 of 3 rows with label indices outside 0..2: '7' \(1x, first "
                                            r"row 2\); classes: surprise, fear, happiness"):
        table = load_dataset(tmp_path)
    assert classes_of(table) == ["surprise", "fear", "happiness"]
    assert list(table["label"]) == [0, 2]


def test_generic_csv_ref_columns_kept_and_sample_mode(tmp_path):
    rows = []
    for i in range(200):
        write_image(tmp_path / f"s{i}.png")
        rows.append((f"s{i}.png", "happy", "train", 0.2, 0.5, 0.3, 0.5, -0.5, f"id{i}"))
    header = ("path", "label", "split", "ref_neutral", "ref_happy", "ref_sadness", "valence", "arousal", "sample_id")
    write_csv(tmp_path / "labels.csv", header, rows)
    table = load_dataset(tmp_path)
    assert classes_of(table) == ["neutral", "happiness", "sadness"]
    assert list(table.columns[-3:]) == ["ref_neutral", "ref_happiness", "ref_sadness"]
    np.testing.assert_allclose(reference_distribution(table).sum(axis=1), 1.0)
    assert table["ref_happiness"].iloc[0] == 0.5 and table["sample_id"].iloc[0] == "id0"
    assert table["valence"].iloc[0] == 0.5
    a = load_dataset(tmp_path, single_label="sample", seed=1)["label"].to_numpy()
    b = load_dataset(tmp_path, single_label="sample", seed=1)["label"].to_numpy()
    c = load_dataset(tmp_path, single_label="sample", seed=2)["label"].to_numpy()
    assert (a == b).all() and (a != c).any()
    assert 0.3 < (a != 1).mean() < 0.7  # ~half the draws are not the majority class


def test_generic_csv_bom_and_semicolon(tmp_path):
    make_generic(tmp_path, [("a b/é.png", "happy", "train"), ("ü ñ.png", "fear", "test")], delimiter=";", bom=True)
    table = load_dataset(tmp_path / "labels.csv")
    assert classes_of(table) == ["happiness", "fear"]
    assert table["path"].iloc[0] == str(tmp_path / "a b" / "é.png")


def test_generic_csv_without_split_is_hash_split(tmp_path):
    rows = [(f"x{i}.png", "happy" if i % 2 else "sad") for i in range(300)]
    make_generic(tmp_path, rows, header=("path", "label"))
    table = load_dataset(tmp_path)
    again = load_dataset(tmp_path)
    assert list(table["split"]) == list(again["split"])
    share = table["split"].value_counts(normalize=True)
    assert 0.7 < share["train"] < 0.9 and 0.04 < share["valid"] < 0.17 and 0.04 < share["test"] < 0.17


def test_generic_csv_unknown_labels_listed(tmp_path):
    make_generic(tmp_path, [("a.png", "happy", "train"), ("b.png", "smirk", "train"), ("c.png", "smirk", "test"),
                            ("d.png", "bored", "test"), ("e.png", "sad", "test")])
    with pytest.warns(DatasetWarning) as record:
        table = load_dataset(tmp_path)
    text = " | ".join(messages(record))
    assert "labels.csv: dropped 3 of 5 rows with unknown label names: 'smirk' (2x, first row 2), " \
           "'bored' (1x, first row 4)" in text
    assert len(table) == 2


def test_generic_csv_all_labels_unknown_is_an_error(tmp_path):
    make_generic(tmp_path, [("a.png", "smirk", "train")])
    with pytest.raises(DatasetError, match="labels.csv: the dataset has no usable samples"):
        load_quiet(tmp_path)


def test_generic_csv_wrong_columns(tmp_path):
    write_csv(tmp_path / "labels.csv", ["file", "label"], [["a.png", "happy"]])
    with pytest.raises(DatasetError, match=r"labels.csv: wrong columns: missing path; expected path, label.*"
                                           r"found file, label"):
        load_dataset(tmp_path / "labels.csv", "csv")


def test_generic_csv_empty(tmp_path):
    (tmp_path / "labels.csv").write_text("")
    with pytest.raises(DatasetError, match=r"labels.csv: empty CSV file"):
        load_dataset(tmp_path / "labels.csv", "csv")
    (tmp_path / "labels.csv").write_text("path,label\n")
    with pytest.raises(DatasetError, match=r"labels.csv: empty CSV file \(a header but no rows\)"):
        load_dataset(tmp_path / "labels.csv", "csv")


def test_generic_csv_duplicate_ids(tmp_path):
    make_generic(tmp_path, [("a.png", "happy", "train"), ("b.png", "sad", "train"), ("a.png", "fear", "test")])
    with pytest.warns(DatasetWarning, match=r"labels.csv: dropped 1 of 3 rows: duplicate sample id.*'a.png'.*"
                                            r"first rows: 3"):
        table = load_dataset(tmp_path)
    assert list(table["sample_id"]) == ["a.png", "b.png"]


def test_generic_csv_nan_and_out_of_range_va(tmp_path):
    make_generic(tmp_path, [("a.png", "happy", "train", 0.5, 0.1), ("b.png", "sad", "train", "nan", 0.2),
                            ("c.png", "sad", "test", 3.0, ""), ("d.png", "fear", "test", -0.2, -0.3)],
                 header=("path", "label", "split", "valence", "arousal"))
    with pytest.warns(DatasetWarning) as record:
        table = load_dataset(tmp_path)
    text = " | ".join(messages(record))
    assert "labels.csv: 2 rows have a valence that is empty, NaN, not a number or outside [-1, 1]; set to NaN " \
           "(first rows: 2, 3" in text
    assert "1 rows have a arousal" in text
    assert len(table) == 4 and table["valence"].isna().sum() == 2


def test_generic_csv_one_class_warns(tmp_path):
    make_generic(tmp_path, [("a.png", "happy", "train"), ("b.png", "happy", "test")])
    with pytest.warns(DatasetWarning, match=r"labels.csv: every sample has the same label \(happiness\)"):
        load_dataset(tmp_path)


def test_generic_csv_missing_images_dropped(tmp_path):
    make_generic(tmp_path, [("a.png", "happy", "train"), ("missing.png", "sad", "train")])
    with pytest.warns(DatasetWarning, match=r"labels.csv: dropped 1 of 2 rows: image file not found.*missing.png"):
        table = load_dataset(tmp_path)
    assert list(table["sample_id"]) == ["a.png"]


def test_generic_csv_unknown_split(tmp_path):
    make_generic(tmp_path, [("a.png", "happy", "train"), ("b.png", "sad", "holdout"), ("c.png", "sad", "")])
    with pytest.warns(DatasetWarning, match=r"unknown split.*'holdout'"):
        table = load_dataset(tmp_path)
    assert list(table["sample_id"]) == ["a.png", "c.png"]
    assert table["split"].iloc[1] in ("train", "valid", "test")


def test_generic_csv_unknown_ref_column(tmp_path):
    make_generic(tmp_path, [("a.png", "happy", 0.5)], header=("path", "label", "ref_smirk"))
    with pytest.raises(DatasetError, match=r"labels.csv: column 'ref_smirk': unknown emotion label 'smirk'"):
        load_dataset(tmp_path)


def test_generic_csv_binary_file(tmp_path):
    (tmp_path / "labels.csv").write_bytes(b"\x89PNG\x00\x00garbage")
    with pytest.raises(DatasetError, match=r"labels.csv: not a text file"):
        load_dataset(tmp_path / "labels.csv", "csv")


# ------------------------------------------------------------------ folders
def test_folders_flat_and_split(tmp_path):
    for cls, n in (("Happy", 5), ("sad", 4), ("neutral", 3)):
        for i in range(n):
            write_image(tmp_path / "flat" / cls / f"{i}.png")
    (tmp_path / "flat" / "sad" / "notes.txt").write_text("ignored")
    assert detect_format(tmp_path / "flat") == "folders"
    table = load_dataset(tmp_path / "flat")
    assert classes_of(table) == ["neutral", "happiness", "sadness"]
    assert len(table) == 12 and table["sample_id"].iloc[0] == "Happy/0.png"

    for split in ("train", "val", "test"):
        for cls in ("angry", "fear"):
            write_image(tmp_path / "split" / split / cls / "x.jpg", mode="RGB")
    table = load_dataset(tmp_path / "split")
    assert classes_of(table) == ["anger", "fear"]
    assert table.groupby("split").size().to_dict() == {"train": 2, "valid": 2, "test": 2}


def test_folders_unknown_names_listed(tmp_path):
    for cls in ("happy", "smirk", "bored"):
        write_image(tmp_path / cls / "0.png")
    with pytest.raises(DatasetError, match=r"unknown class folder names: 'bored', 'smirk'"):
        load_dataset(tmp_path, "folders")


def test_folders_no_images(tmp_path):
    (tmp_path / "happy").mkdir()
    with pytest.raises(DatasetError, match="no usable samples"):
        load_dataset(tmp_path, "folders")


# ------------------------------------------------------------------ detection and load_dataset
def test_detect_lists_what_it_looked_for(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError) as info:
        detect_format(tmp_path)
    text = str(info.value)
    assert str(tmp_path) in text and "\n" not in text
    for fragment in ("label.csv", "list_patition_label.txt", "subDirectory_filePath", "emotion, pixels",
                     "path, label", "named after emotions", "notes.txt"):
        assert fragment in text


def test_missing_path(tmp_path):
    with pytest.raises(DatasetError, match=r"no such folder: no such file or folder"):
        load_dataset(tmp_path / "no such folder")
    for fmt in FORMATS[:-1]:
        with pytest.raises(DatasetError, match=r"no such file or folder"):
            load_dataset(tmp_path / "no such folder", fmt)


def test_bad_arguments(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset format 'xml'"):
        load_dataset(tmp_path, "xml")
    with pytest.raises(DatasetError, match="single_label must be"):
        load_dataset(tmp_path, single_label="vote")


def test_limit_per_split(tmp_path):
    rows = [(f"x{i}.png", "happy" if i % 2 else "sad", ("train", "valid", "test")[i % 3]) for i in range(30)]
    make_generic(tmp_path, rows)
    table = load_dataset(tmp_path, limit=4)
    assert table.groupby("split").size().to_dict() == {"train": 4, "valid": 4, "test": 4}
    assert table.attrs["format"] == "csv"


def test_demo_word_loads_the_builtin_demo(monkeypatch, tmp_path):
    from uldl_studio.core.data.datasets.demo import load_demo

    monkeypatch.setenv("ULDL_STUDIO_CACHE", str(tmp_path))
    table = load_dataset("demo", seed=5, limit=10)
    assert table.attrs["format"] == "demo"
    assert table["split"].value_counts().to_dict() == {"train": 10, "valid": 10, "test": 10}
    full = load_demo(seed=5)
    first = full.groupby("split", sort=False).head(10)
    assert table["sample_id"].tolist() == first["sample_id"].tolist()
    assert table["label"].tolist() == first["label"].tolist()
    assert detect_format("demo") == "demo"
