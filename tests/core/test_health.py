"""core.health: per-class likely-mislabelled rates and the given × constructed confusion,
checked against counts worked out by hand on six rows."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from uldl_studio.core.review import health

NAN = np.nan
CLASSES = ["a", "b", "c"]


def six_rows() -> pd.DataFrame:
    """Row: split, given label, d, p -> constructed label (by hand).

    0 train  a  d=(.6 .3 .1)              -> a  agrees
    1 train  a  d=(.2 .7 .1)              -> b  flagged
    2 train  b  d=(.1 .1 .8)              -> c  flagged
    3 train  c  d=(.45 .1 .45) tie a / c  -> c  agrees (a tie with the given label keeps it)
    4 valid  c  d=NaN  p=(.1 .2 .7)       -> c  agrees (p where d is missing)
    5 test   c  d=NaN  p=(.5 .3 .2)       -> a  flagged
    Train rows have p=(.1 .1 .8) so that using p instead of d would change them.
    """
    d = np.array([[.6, .3, .1], [.2, .7, .1], [.1, .1, .8], [.45, .1, .45],
                  [NAN, NAN, NAN], [NAN, NAN, NAN]])
    p = np.array([[.1, .1, .8]] * 4 + [[.1, .2, .7], [.5, .3, .2]])
    table = pd.DataFrame({"sample_id": [f"s{i}" for i in range(6)], "path": "x",
                          "split": ["train"] * 4 + ["valid", "test"], "label": [0, 0, 1, 2, 2, 2]})
    for j, c in enumerate(CLASSES):
        table[f"d_{c}"] = d[:, j]
        table[f"p_{c}"] = p[:, j]
    table.attrs["classes"] = CLASSES
    return table


def test_constructed_labels_by_hand():
    assert health.constructed_labels(six_rows()).tolist() == [0, 1, 2, 2, 2, 0]


def test_confusion_all_rows_and_training_rows():
    table = six_rows()
    assert health.confusion(table).tolist() == [[1, 1, 0], [0, 0, 1], [1, 0, 2]]
    train = health.training_rows(table)
    assert train.tolist() == [0, 1, 2, 3]
    assert health.confusion(table, train).tolist() == [[1, 1, 0], [0, 0, 1], [0, 0, 1]]
    mask = table["split"].to_numpy() == "train"
    assert health.confusion(table, mask).tolist() == health.confusion(table, train).tolist()


def test_mislabel_rates_by_hand():
    table = six_rows()
    rates = health.mislabel_rates(table)
    assert list(rates.columns) == ["class", "n", "likely_mislabelled", "rate"]
    assert rates["class"].tolist() == CLASSES
    assert rates["n"].tolist() == [2, 1, 3]
    assert rates["likely_mislabelled"].tolist() == [1, 1, 1]
    assert rates["rate"].to_numpy() == pytest.approx([0.5, 1.0, 1 / 3])
    train = health.mislabel_rates(table, health.training_rows(table))
    assert train["n"].tolist() == [2, 1, 1]
    assert train["likely_mislabelled"].tolist() == [1, 1, 0]
    assert train["rate"].to_numpy() == pytest.approx([0.5, 1.0, 0.0])


def test_cell_rows_and_flagged_rows():
    table = six_rows()
    assert health.cell_rows(table, 0, 1).tolist() == [1]
    assert health.cell_rows(table, 2, 0).tolist() == [5]
    assert health.cell_rows(table, 2, 2).tolist() == [3, 4]
    assert health.cell_rows(table, 2, 2, rows=health.training_rows(table)).tolist() == [3]
    assert health.cell_rows(table, 1, 1).tolist() == []
    assert health.flagged_rows(table).tolist() == [1, 2, 5]
    assert health.flagged_rows(table, given=2).tolist() == [5]
    assert health.flagged_rows(table, given=2, rows=[0, 1, 2, 3]).tolist() == []
    # every cell's rows together are exactly the counted rows, and add up to the matrix
    m = len(CLASSES)
    counts = health.confusion(table)
    for g in range(m):
        for k in range(m):
            assert len(health.cell_rows(table, g, k)) == counts[g, k]


def test_relabel_moves_a_row_between_confusion_rows():
    table = six_rows()
    table.loc[1, "label"] = 1  # the annotator agrees with d: row 1 is a "b"
    assert health.confusion(table).tolist() == [[1, 0, 0], [0, 1, 1], [1, 0, 2]]
    rates = health.mislabel_rates(table)
    assert rates["n"].tolist() == [1, 2, 3]
    assert rates["likely_mislabelled"].tolist() == [0, 1, 1]


def test_class_means_ignore_nan_and_follow_rows():
    table = six_rows()
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0, NAN])
    assert health.class_means(table, values) == pytest.approx([1.5, 3.0, 4.5])
    means = health.class_means(table, values, rows=[0, 2])
    assert means[:2] == pytest.approx([1.0, 3.0]) and np.isnan(means[2])
    with pytest.raises(ValueError):
        health.class_means(table, values[:3])


def test_p_is_used_when_d_is_absent_or_partly_nan():
    table = six_rows().drop(columns=[f"d_{c}" for c in CLASSES])
    assert health.has_distributions(table)
    assert health.constructed_labels(table).tolist() == [2, 2, 2, 2, 2, 0]
    assert health.confusion(table).tolist() == [[0, 0, 2], [0, 0, 1], [1, 0, 2]]
    partial = six_rows()
    partial.loc[0, "d_b"] = NAN  # d not finite on every class: p decides
    assert health.constructed_labels(partial)[0] == 2


def test_a_table_without_results_counts_nothing():
    table = six_rows().drop(columns=[f"{x}_{c}" for x in "dp" for c in CLASSES])
    assert not health.has_distributions(table)
    assert not health.has_distributions(None)
    assert (health.constructed_labels(table) == -1).all()
    assert health.confusion(table).tolist() == [[0] * 3] * 3
    rates = health.mislabel_rates(table)
    assert rates["n"].tolist() == [0, 0, 0] and rates["rate"].isna().all()


def test_labels_outside_the_classes_are_not_counted():
    table = six_rows()
    table.loc[0, "label"] = -1
    table.loc[1, "label"] = 7
    assert health.given_labels(table).tolist() == [-1, -1, 1, 2, 2, 2]
    assert health.confusion(table).sum() == 4
    assert health.mislabel_rates(table)["n"].tolist() == [0, 1, 3]


def test_off_diagonal_of_each_row_is_the_flagged_count_on_random_tables():
    rng = np.random.default_rng(3)
    n, classes = 200, ["a", "b", "c", "d"]
    table = pd.DataFrame({"sample_id": np.arange(n).astype(str), "path": "x",
                          "split": rng.choice(["train", "valid"], n), "label": rng.integers(0, 4, n)})
    d = rng.dirichlet(np.ones(4), n).round(1)  # rounding makes ties common
    d[table["split"] == "valid"] = NAN
    p = rng.dirichlet(np.ones(4), n).round(1)
    for j, c in enumerate(classes):
        table[f"d_{c}"], table[f"p_{c}"] = d[:, j], p[:, j]
    table.attrs["classes"] = classes
    counts = health.confusion(table)
    rates = health.mislabel_rates(table)
    assert counts.sum() == n
    assert (counts.sum(axis=1) - np.diag(counts)).tolist() == rates["likely_mislabelled"].tolist()
    assert len(health.flagged_rows(table)) == rates["likely_mislabelled"].sum()


def test_the_soft_label_decides_when_the_run_has_one():
    """A run's exported soft label (soft_<class>) outranks d: d keeps 1 − λ of the given label,
    so with a small λ only the soft label (mixed with the calibrated prediction) can flip."""
    import pandas as pd

    from uldl_studio.core.review.health import constructed_labels

    t = pd.DataFrame({"sample_id": ["a", "b"], "path": "", "split": "train", "label": [0, 0],
                      "d_x": [0.8, 0.8], "d_y": [0.2, 0.2], "soft_x": [0.45, 0.7], "soft_y": [0.55, 0.3]})
    t.attrs["classes"] = ["x", "y"]
    assert constructed_labels(t).tolist() == [1, 0]
    assert constructed_labels(t.drop(columns=["soft_x", "soft_y"])).tolist() == [0, 0]
