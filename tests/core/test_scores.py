"""The score registry: every built-in score against hand-computed values on a tiny table."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uldl_studio.core.labels import scores

CLASSES = ["neutral", "happiness", "anger"]


def tiny() -> pd.DataFrame:
    """Three rows, three classes; every column a score reads, values easy to follow by hand."""
    table = pd.DataFrame({
        "sample_id": ["a", "b", "c"], "path": "", "split": ["train", "train", "test"],
        "label": [0, 1, 2],
        "lambda": [0.1, 0.8, np.nan], "lambda_prev": [0.2, 0.5, np.nan],
        "p_neutral": [0.7, 0.6, 0.2], "p_happiness": [0.2, 0.3, 0.2], "p_anger": [0.1, 0.1, 0.6],
        "d_neutral": [1.0, 0.5, 1 / 3], "d_happiness": [0.0, 0.5, 1 / 3], "d_anger": [0.0, 0.0, 1 / 3],
        "dyn_margin_mean": [0.4, -0.3, 0.1], "dyn_p_given_mean": [0.6, 0.35, 0.5],
        "dyn_p_given_std": [0.05, 0.2, 0.1], "knn_disagreement": [0.0, 0.75, 0.5],
    })
    table.attrs["classes"] = CLASSES
    return table


def test_self_confidence_and_margin_by_hand():
    t = tiny()
    # p[given]: a 0.7, b 0.3, c 0.6; best other: a 0.2, b 0.6, c 0.2
    assert np.allclose(scores.values(t, "self_confidence"), [0.3, 0.7, 0.4])
    assert np.allclose(scores.values(t, "margin"), [0.2 - 0.7, 0.6 - 0.3, 0.2 - 0.6])


def test_entropy_is_normalised():
    h = scores.values(tiny(), "entropy")
    assert h[0] == 0.0
    assert h[1] == pytest.approx(math.log(2) / math.log(3))
    assert h[2] == pytest.approx(1.0)


def test_columns_read_from_training():
    t = tiny()
    assert np.array_equal(scores.values(t, "aum"), t["dyn_margin_mean"].to_numpy())
    assert np.array_equal(scores.values(t, "confidence_mean"), t["dyn_p_given_mean"].to_numpy())
    assert np.array_equal(scores.values(t, "variability"), t["dyn_p_given_std"].to_numpy())
    assert np.array_equal(scores.values(t, "knn_disagreement"), t["knn_disagreement"].to_numpy())
    assert np.allclose(scores.values(t, "lambda_change"), [-0.1, 0.3, np.nan], equal_nan=True)


def test_missing_columns_give_nan_not_an_error():
    t = tiny().drop(columns=["dyn_margin_mean", "p_anger"])
    assert np.isnan(scores.values(t, "aum")).all()
    assert np.isnan(scores.values(t, "self_confidence")).all()   # p is incomplete


def test_ambiguity_is_the_mean_percentile_rank_of_its_parts():
    t = tiny()
    # badness per part (high = bad), ranks 0..1 over the rows that have the part:
    #   self_confidence  0.3, 0.7, 0.4  -> a 0, b 1, c 0.5
    #   knn              0.0, 0.75, 0.5 -> a 0, b 1, c 0.5
    #   oof_confidence   absent (no --folds): left out
    assert np.allclose(scores.values(t, "ambiguity"), [0.0, 1.0, 0.5])
    t["knn_disagreement"] = [0.9, 0.0, 0.5]            # now the two views disagree on a and b
    assert np.allclose(scores.values(t, "ambiguity"), [0.5, 0.5, 0.5])


def test_rank_average_skips_constant_parts_and_all_nan_rows():
    out = scores.rank_average([np.array([0.0, 0.0, 0.0]), np.array([3.0, 1.0, np.nan])])
    assert out[0] == 1.0 and out[1] == 0.0 and np.isnan(out[2])


def test_sort_order_puts_the_bad_end_first_and_nan_last():
    t = tiny()
    assert scores.sort_order(t, "self_confidence").tolist() == [1, 2, 0]
    assert scores.sort_order(t, "aum").tolist() == [1, 2, 0]          # low margin first
    assert scores.sort_order(t, "lambda").tolist() == [1, 0, 2]       # NaN last
    assert scores.sort_order(t.assign(sample_id=["c", "a", "b"]), "sample_id").tolist() == [1, 2, 0]  # by id
    cached = {"self_confidence": -scores.values(t, "self_confidence")}   # a caller's values are used as they are
    assert scores.sort_order(t, "self_confidence", cached.get).tolist() == [0, 2, 1]


def test_registration_metadata_and_a_toy_score():
    names = scores.names()
    assert names[:2] == ["lambda", "ambiguity"]        # λ's column stays where exports had it
    for s in scores.registered():
        assert s.bad in ("high", "low") and s.meaning and s.label
        assert ("bad end: " + s.bad) in s.tooltip
    assert "lambda_change" not in [s.name for s in scores.exported()]

    @scores.score("toy", label="toy score", meaning="row number", bad="low", value_range=(0, 10))
    def _toy(table):
        return np.arange(len(table), dtype=float)

    try:
        assert "toy" in scores.names()
        assert scores.sort_order(tiny(), "toy").tolist() == [0, 1, 2]
    finally:
        scores.unregister("toy")
    assert "toy" not in scores.names()
    with pytest.raises(KeyError, match="unknown score 'toy'"):
        scores.get("toy")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=30), st.lists(st.floats(-5, 5), min_size=2, max_size=30))
def test_rank_average_is_in_unit_interval(a, b):
    n = min(len(a), len(b))
    out = scores.rank_average([np.array(a[:n]), np.array(b[:n])])
    finite = out[np.isfinite(out)]
    assert ((finite >= 0) & (finite <= 1)).all()
