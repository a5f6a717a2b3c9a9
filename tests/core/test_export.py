"""Soft-label export: exact columns, lossless round trip, validation, atomic writes."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from uldl_studio.core.labels import scores
from uldl_studio.core.runs import export
from uldl_studio.core.labels.edits import EditJournal, apply_edits
from uldl_studio.core.runs.export import read_soft_labels, soft_label_columns, write_soft_labels
from uldl_studio.core.labels.soft_labels import UNSURE_LABEL_MASS, reviewed_soft_labels
from uldl_studio.core.table import DatasetError, make_table

CLASSES = ["neutral", "happiness", "surprise"]
SCORE_COLUMNS = ["lambda", "ambiguity", "self_confidence", "margin", "aum", "confidence_mean", "variability",
                 "knn_disagreement", "oof_confidence", "entropy"]
COLUMNS = ["sample_id", "path", "split", "label", "label_name", "original_label", "original_label_name",
           "edited", "unsure", "reviewed", "valence", "arousal",
           *SCORE_COLUMNS,
           "d_neutral", "d_happiness", "d_surprise", "p_neutral", "p_happiness", "p_surprise"]


def make(rows: int = 4, classes=CLASSES, results: bool = True, **extra) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    m = len(classes)
    frame = pd.DataFrame({
        "sample_id": [f"s{i}" for i in range(rows)],
        "path": [f"/data/img {i}, \"x\".png" for i in range(rows)],
        "split": (["train", "valid", "test"] * rows)[:rows],
        "label": [i % m for i in range(rows)],
        "valence": rng.uniform(-1, 1, rows),
        "arousal": rng.uniform(-1, 1, rows),
        **extra,
    })
    table = make_table(frame, classes, "/data", "csv")
    if results:
        table["lambda"] = rng.uniform(0, 1, rows)
        for prefix in ("d", "p"):
            dist = rng.dirichlet(np.ones(m), rows)
            for j, c in enumerate(classes):
                table[f"{prefix}_{c}"] = dist[:, j]
    return table


def expected(table: pd.DataFrame, col: str) -> np.ndarray:
    """What the file must hold in ``col``: the table's own column, or the registered score."""
    return table[col].to_numpy() if col in table else scores.values(table, col)


def same_floats(a, b) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


# -- writing ------------------------------------------------------------------------------
def test_columns_exactly_as_designed(tmp_path):
    assert soft_label_columns(CLASSES) == COLUMNS
    out = tmp_path / "soft.csv"
    write_soft_labels(make(), out)
    header = out.read_text("utf-8").splitlines()[0]
    assert header == ",".join(COLUMNS)
    back = read_soft_labels(out)
    assert list(back.columns) == COLUMNS
    assert back.attrs["classes"] == CLASSES and back.attrs["format"] == "soft-labels"
    assert back["label"].dtype == np.int64 and back["edited"].dtype == bool
    assert back["lambda"].dtype == np.float64
    assert back["label_name"].tolist() == ["neutral", "happiness", "surprise", "neutral"]
    # ordinary tools read it too
    plain = pd.read_csv(out)
    assert list(plain.columns) == COLUMNS and plain["path"].tolist() == back["path"].tolist()


def test_round_trip_is_bit_exact_and_idempotent(tmp_path):
    table = make(50)
    table.loc[3, "valence"] = np.nan
    table.loc[4, "lambda"] = np.nan
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    write_soft_labels(table, first)
    back = read_soft_labels(first)
    for col in COLUMNS[10:]:
        assert same_floats(back[col], expected(table, col)), col
    write_soft_labels(back, second)
    assert first.read_bytes() == second.read_bytes()


def test_missing_results_are_filled(tmp_path):
    table = make(3, results=False)
    out = tmp_path / "soft.csv"
    write_soft_labels(table, out)
    back = read_soft_labels(out)
    expected = np.eye(3)[table["label"]]
    assert np.array_equal(back[["d_neutral", "d_happiness", "d_surprise"]].to_numpy(), expected)
    assert np.array_equal(back[["p_neutral", "p_happiness", "p_surprise"]].to_numpy(), expected)
    assert not back["edited"].any() and back["lambda"].isna().all()
    table = table.drop(columns=["valence", "arousal"])
    write_soft_labels(table, out)
    back = read_soft_labels(out)
    assert back["valence"].isna().all() and back["arousal"].isna().all()


def test_rows_without_a_distribution_get_one_hot_and_p_falls_back_to_d(tmp_path):
    table = make(3)
    table.loc[1, ["d_neutral", "d_happiness", "d_surprise"]] = np.nan      # e.g. a test sample
    table.loc[2, ["p_neutral", "p_happiness", "p_surprise"]] = np.nan
    out = tmp_path / "soft.csv"
    write_soft_labels(table, out)
    back = read_soft_labels(out)
    assert back.loc[1, ["d_neutral", "d_happiness", "d_surprise"]].tolist() == [0.0, 1.0, 0.0]
    assert back.loc[2, ["p_neutral", "p_happiness", "p_surprise"]].tolist() == \
        table.loc[2, ["d_neutral", "d_happiness", "d_surprise"]].tolist()


def test_edits_are_exported(tmp_path):
    table = make(3)
    journal = EditJournal(tmp_path / "edits.jsonl")
    journal.relabel(["s0", "s1"], [2, 1])
    journal.mark_unsure(["s2"])
    out = tmp_path / "soft.csv"
    write_soft_labels(apply_edits(table, journal), out)
    back = read_soft_labels(out)
    assert list(back.columns) == COLUMNS  # no unsure / label_given: the contract's columns only
    assert back["label"].tolist() == [2, 1, 2]
    assert back["label_name"].tolist() == ["surprise", "happiness", "surprise"]
    assert back["edited"].tolist() == [True, False, False]


def test_float_drift_is_renormalised_but_exact_rows_are_untouched(tmp_path):
    table = make(3)
    dcols = ["d_neutral", "d_happiness", "d_surprise"]
    table.loc[0, dcols] = np.asarray([0.2, 0.3, 0.5], np.float32).astype(np.float64) * (1 + 3e-7)
    out = tmp_path / "soft.csv"
    write_soft_labels(table, out)
    back = read_soft_labels(out)
    assert abs(back.loc[0, dcols].sum() - 1) < 1e-12
    assert same_floats(back.loc[1:, dcols], table.loc[1:, dcols])


@pytest.mark.parametrize("change, reason", [
    ({"d_neutral": 0.5}, "row 2 ('s1'): d sums to"),
    ({"p_happiness": -0.2}, "row 2 ('s1'): p has negative entries"),
    ({"d_surprise": np.nan}, "row 2 ('s1'): d has NaN or infinite entries"),
    ({"lambda": 1.5}, "row 2 ('s1'): lambda 1.5 is outside [0, 1]"),
    ({"valence": -2.0}, "row 2 ('s1'): valence -2.0 is outside [-1, 1]"),
    ({"label": 3}, "row 2 ('s1'): label 3 is outside 0..2"),
    ({"split": "val"}, "row 2 ('s1'): split 'val' is not one of"),
    ({"sample_id": "s0"}, "row 2: duplicate sample_id 's0'"),
])
def test_writer_refuses_bad_tables_and_keeps_the_old_file(tmp_path, change, reason):
    out = tmp_path / "soft.csv"
    out.write_text("previous export\n")
    table = make(3)
    for col, value in change.items():
        table[col] = table[col].astype(object) if isinstance(value, str) else table[col]
        table.loc[1, col] = value
    with pytest.raises(DatasetError) as info:
        write_soft_labels(table, out)
    assert str(out) in str(info.value) and reason in str(info.value)
    assert out.read_text() == "previous export\n"


def test_writer_refuses_partial_distribution_columns(tmp_path):
    table = make(3).drop(columns=["p_surprise"])
    with pytest.raises(DatasetError, match=r"only some p_ columns; missing \['p_surprise'\]"):
        write_soft_labels(table, tmp_path / "x.csv")


def test_failure_half_way_leaves_the_old_file_intact(tmp_path, monkeypatch):
    out = tmp_path / "soft.csv"
    write_soft_labels(make(3), out)
    before = out.read_bytes()
    real_rows = export._rows

    def rows_then_crash(frame, classes):
        for i, row in enumerate(real_rows(frame, classes)):
            if i == 2:
                raise OSError(28, "No space left on device")
            yield row

    monkeypatch.setattr(export, "_rows", rows_then_crash)
    with pytest.raises(OSError, match="No space left"):
        write_soft_labels(make(10), out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["soft.csv"]  # no temporary left behind
    with pytest.raises(OSError):
        write_soft_labels(make(10), tmp_path / "soft.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["soft.csv"]


def test_json_flavour_round_trip(tmp_path):
    table = make(6)
    table.loc[2, "arousal"] = np.nan
    out = tmp_path / "soft.json"
    write_soft_labels(table, out)
    back = read_soft_labels(out)
    assert list(back.columns) == COLUMNS
    for col in COLUMNS[10:]:
        assert same_floats(back[col], expected(table, col)), col
    csv_back = tmp_path / "soft.csv"
    write_soft_labels(table, csv_back)
    pd.testing.assert_frame_equal(back, read_soft_labels(csv_back), check_exact=True)


# -- hypothesis: lossless round trip ---------------------------------------------------------
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=12)
prob = st.one_of(
    st.sampled_from([0.0, 5e-324, 2.2250738585072014e-308, 1e-300, 1e-17, 0.1, 1.0 / 3, 1.0]),
    st.floats(0.0, 1.0, allow_subnormal=True),
)
va = st.one_of(st.just(math.nan), st.floats(-1.0, 1.0, allow_subnormal=True))
lam = st.one_of(st.just(math.nan), st.floats(0.0, 1.0, allow_subnormal=True))


@st.composite
def tables(draw):
    m = draw(st.integers(2, 8))
    classes = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"][:m]
    n = draw(st.integers(1, 6))
    ids = draw(st.lists(text, min_size=n, max_size=n, unique=True))
    frame = pd.DataFrame({
        "sample_id": ids,
        "path": draw(st.lists(st.one_of(text, st.sampled_from(["a,b", '"q"', "x\ny", "é/ü 漢.png", " sp ", "c\r\nd"])),
                              min_size=n, max_size=n)),
        "split": draw(st.lists(st.sampled_from(["train", "valid", "test"]), min_size=n, max_size=n)),
        "label": draw(st.lists(st.integers(0, m - 1), min_size=n, max_size=n)),
        "valence": draw(st.lists(va, min_size=n, max_size=n)),
        "arousal": draw(st.lists(va, min_size=n, max_size=n)),
    })
    table = make_table(frame, classes, "/x", "csv")
    table["lambda"] = draw(st.lists(lam, min_size=n, max_size=n))
    table["edited"] = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    for prefix in ("d", "p"):
        rows = []
        for _ in range(n):
            raw = np.asarray(draw(st.lists(prob, min_size=m, max_size=m)), np.float64)
            assume(raw.sum() > 0)
            row = raw / raw.sum()
            assume(abs(row.sum() - 1.0) <= 1e-9)
            rows.append(row)
        dist = np.asarray(rows)
        for j, c in enumerate(classes):
            table[f"{prefix}_{c}"] = dist[:, j]
    return table


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.filter_too_much])
@given(table=tables(), suffix=st.sampled_from([".csv", ".json"]))
def test_round_trip_property(tmp_path_factory, table, suffix):
    out = tmp_path_factory.mktemp("rt") / f"soft{suffix}"
    write_soft_labels(table, out)
    back = read_soft_labels(out)
    classes = table.attrs["classes"]
    assert back.attrs["classes"] == classes
    assert list(back.columns) == soft_label_columns(classes)
    for col in ("sample_id", "path", "split"):
        assert back[col].tolist() == table[col].tolist(), col
    assert back["label"].tolist() == table["label"].tolist()
    assert back["edited"].tolist() == table["edited"].tolist()
    d_cols = [f"d_{c}" for c in classes]
    d = reviewed_soft_labels(table[d_cols].to_numpy(), table["label"].to_numpy(), table["edited"].to_numpy(),
                             np.zeros(len(table), bool))
    for col in soft_label_columns(classes)[12:]:
        want = d[:, d_cols.index(col)] if col in d_cols else expected(table, col)
        assert same_floats(back[col], want), col
    # edited rows carry the one-hot of their label
    edited = back["edited"].to_numpy()
    assert np.array_equal(back[d_cols].to_numpy()[edited], np.eye(len(classes))[back["label"].to_numpy()[edited]])


# -- reading: validation -------------------------------------------------------------------
@pytest.fixture
def good(tmp_path):
    path = tmp_path / "soft.csv"
    table = make(4)
    table.loc[1, "path"] = "multi\nline, \"path\""  # row 2 spans lines 3-4: row 3 is on line 5
    write_soft_labels(table, path)
    return path


def edit_cell(path, row: int, column: str, value: str) -> None:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[row - 1, column] = value
    frame.to_csv(path, index=False, lineterminator="\n")


@pytest.mark.parametrize("column, value, reason", [
    ("label", "7", "label 7 is outside 0..2 (3 classes)"),
    ("label", "x", "label 'x' is not an integer"),
    ("label_name", "happiness", "label_name 'happiness' does not match label 2 ('surprise')"),
    ("lambda", "1.2", "lambda 1.2 is outside [0, 1]"),
    ("lambda", "-0.1", "lambda -0.1 is outside [0, 1]"),
    ("valence", "abc", "valence 'abc' is not a number"),
    ("arousal", "inf", "arousal inf is outside [-1, 1]"),
    ("d_neutral", "1.5", "d_neutral 1.5 is not a probability in [0, 1]"),
    ("p_surprise", "-0.25", "p_surprise -0.25 is not a probability in [0, 1]"),
    ("d_happiness", "0.999", "the d_ columns sum to"),
    ("p_neutral", "", "p_neutral is empty (a probability is required)"),
    ("split", "validation", "split 'validation' is not one of train, valid, test"),
    ("sample_id", "s0", "duplicate sample_id 's0'"),
    ("sample_id", "", "empty sample_id"),
    ("edited", "maybe", "edited 'maybe' is not True or False"),
])
def test_reader_names_file_row_line_and_reason(good, column, value, reason):
    edit_cell(good, 3, column, value)
    with pytest.raises(DatasetError) as info:
        read_soft_labels(good)
    message = str(info.value)
    assert message.startswith(f"{good}: row 3 (line 5): "), message
    assert reason in message, message


def test_reader_reports_the_first_bad_row(good):
    edit_cell(good, 4, "lambda", "3")
    edit_cell(good, 3, "lambda", "2")
    with pytest.raises(DatasetError, match=r"row 3 \(line 5\): lambda 2.0"):
        read_soft_labels(good)


def test_reader_names_missing_columns(good):
    frame = pd.read_csv(good, dtype=str, keep_default_na=False).drop(columns=["lambda", "p_surprise"])  # scores are optional
    frame.to_csv(good, index=False)
    with pytest.raises(DatasetError, match=r"soft.csv: header: missing columns \['p_surprise'\]"):
        read_soft_labels(good)


def test_reader_header_problems(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("sample_id,path,split,label\n")
    with pytest.raises(DatasetError, match="no d_<class> columns"):
        read_soft_labels(path)
    path.write_text(",".join(COLUMNS[:13] + ["d_a", "d_b", "p_b", "p_a"]) + "\n")
    with pytest.raises(DatasetError, match=r"p_ columns \['b', 'a'\] do not match d_ columns \['a', 'b'\]"):
        read_soft_labels(path)
    path.write_text("")
    with pytest.raises(DatasetError, match="empty file"):
        read_soft_labels(path)
    with pytest.raises(DatasetError, match="no such file"):
        read_soft_labels(tmp_path / "missing.csv")
    path.write_bytes(b"\xff\xfe" + "x".encode("utf-16-le"))
    with pytest.raises(DatasetError, match="not UTF-8"):
        read_soft_labels(path)


def test_reader_wrong_field_count(good):
    lines = good.read_text("utf-8").split("\n")
    lines[4] += ",extra"
    good.write_text("\n".join(lines), "utf-8")
    with pytest.raises(DatasetError, match=r"row 3 \(line 5\): 29 fields, expected 28"):
        read_soft_labels(good)


def test_bom_semicolons_and_extra_columns(tmp_path, good):
    expected = read_soft_labels(good)
    frame = pd.read_csv(good, dtype=str, keep_default_na=False)
    frame["note"] = "hi"
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + frame.to_csv(index=False, sep=";").encode("utf-8"))
    back = read_soft_labels(bom)
    assert list(back.columns) == COLUMNS + ["note"] and back["note"].tolist() == ["hi"] * 4
    pd.testing.assert_frame_equal(back[COLUMNS], expected, check_exact=True)


def test_header_only_file_reads_as_empty(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text(",".join(COLUMNS) + "\n")
    back = read_soft_labels(path)
    assert len(back) == 0 and list(back.columns) == COLUMNS and back.attrs["classes"] == CLASSES


def test_json_reader_validates_too(tmp_path):
    path = tmp_path / "soft.json"
    write_soft_labels(make(3), path)
    text = path.read_text("utf-8")
    path.write_text(text.replace('"happiness", false', '"happiness", "nope"', 1), "utf-8")
    with pytest.raises(DatasetError, match=r"soft.json: row 2 \(entry 2\): edited 'nope'"):
        read_soft_labels(path)
    path.write_text('{"rows": []}')
    with pytest.raises(DatasetError, match="not a soft-label JSON file"):
        read_soft_labels(path)


def test_review_state_columns_round_trip_and_are_validated(tmp_path):
    table = make(5)
    table["unsure"] = [False, True, False, False, True]
    table["reviewed"] = [True, False, False, True, False]
    out = tmp_path / "soft.csv"
    write_soft_labels(table, out)
    back = read_soft_labels(out)
    assert back["unsure"].tolist() == table["unsure"].tolist()
    assert back["reviewed"].tolist() == table["reviewed"].tolist()
    # a file from before these columns still reads (all False)
    old = pd.read_csv(out, dtype=str, keep_default_na=False).drop(columns=["unsure", "reviewed"])
    old.to_csv(tmp_path / "old.csv", index=False)
    assert not read_soft_labels(tmp_path / "old.csv")[["unsure", "reviewed"]].to_numpy().any()
    edit_cell(out, 2, "reviewed", "maybe")
    with pytest.raises(DatasetError, match=r"row 2 .*reviewed 'maybe' is not True or False"):
        read_soft_labels(out)


def test_the_journal_gives_unsure_and_reviewed(tmp_path):
    table = make(4)
    with EditJournal(tmp_path / "edits.jsonl") as journal:
        journal.relabel(["s1"], [table["label"].iat[1]])     # confirmed: reviewed, not edited
        journal.relabel(["s2"], [(table["label"].iat[2] + 1) % 3])
        journal.mark_unsure(["s3"])
        edited = apply_edits(table, journal)
    write_soft_labels(edited, tmp_path / "soft.csv")
    back = read_soft_labels(tmp_path / "soft.csv")
    assert back["reviewed"].tolist() == [False, True, True, False]
    assert back["edited"].tolist() == [False, False, True, False]
    assert back["unsure"].tolist() == [False, False, False, True]
