"""Selections are pure predicates (core/review/selection.py): hand-made cases and properties."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from uldl_studio.core.review.selection import (
    AllSelection, BoxSelection, IdSelection, NoneSelection, PolygonSelection, RangeSelection,
    ValueSelection, points_in_polygon,
)

pytestmark = pytest.mark.timeout(60)


def naive_in_polygon(x, y, verts):
    """The classic per-point, per-edge even-odd loop (reference implementation)."""
    out = []
    m = len(verts)
    for px, py in zip(x, y):
        inside = False
        for i in range(m):
            xa, ya = verts[i]
            xb, yb = verts[(i + 1) % m]
            if (ya > py) != (yb > py) and px < xa + (py - ya) * (xb - xa) / (yb - ya):
                inside = not inside
        out.append(inside)
    return np.array(out, dtype=bool)


@pytest.fixture
def table():
    return pd.DataFrame({
        "sample_id": ["a", "b", "c", "d", "e"],
        "label": [0, 1, 2, 1, 0],
        "lambda": [0.1, 0.5, 0.9, np.nan, 0.7],
        "valence": [-0.5, 0.0, 0.5, 0.9, -0.9],
        "arousal": [0.0, 0.2, 0.4, -0.9, 0.9],
    })


def test_range_is_inclusive_and_nan_outside(table):
    sel = RangeSelection("lambda", 0.5, 0.9)
    assert sel.mask(table).tolist() == [False, True, True, False, True]
    assert RangeSelection("lambda", 0.9, 0.5).rows(table).tolist() == [1, 2, 4]  # order free


def test_box_on_table_and_on_raw_points(table):
    sel = BoxSelection(-0.6, 0.1, -0.1, 0.3, xcols=("valence", "arousal"))
    assert sel.rows(table).tolist() == [0, 1]
    xy = table[["valence", "arousal"]].to_numpy()
    assert sel.rows(xy).tolist() == [0, 1]


def test_polygon_square_and_concave():
    square = [(0, 0), (1, 0), (1, 1), (0, 1)]
    pts = np.array([[0.5, 0.5], [1.5, 0.5], [0.5, -0.1], [0.99, 0.99], [np.nan, 0.5]])
    assert PolygonSelection(("x", "y"), square).mask(pts).tolist() == [True, False, False, True, False]
    # a "U": the notch between the arms is outside
    u_shape = [(0, 0), (3, 0), (3, 3), (2, 3), (2, 1), (1, 1), (1, 3), (0, 3)]
    pts = np.array([[0.5, 2.0], [1.5, 2.0], [2.5, 2.0], [1.5, 0.5]])
    assert PolygonSelection(("x", "y"), u_shape).mask(pts).tolist() == [True, False, True, True]


def test_polygon_self_intersecting_uses_even_odd():
    # a bow-tie: both lobes are inside, the crossing point region is split
    bowtie = [(0, 0), (2, 2), (2, 0), (0, 2)]
    pts = np.array([[0.2, 1.0], [1.8, 1.0], [1.0, 0.2], [1.0, 1.8]])
    assert PolygonSelection((0, 1), bowtie).mask(pts).tolist() == [True, True, False, False]


def test_degenerate_polygon_selects_nothing():
    pts = np.zeros((3, 2))
    assert not PolygonSelection((0, 1), [(0, 0), (1, 1)]).mask(pts).any()
    assert not points_in_polygon(np.empty(0), np.empty(0), [(0, 0), (1, 0), (0, 1)]).any()


def test_ids_by_name_and_by_position(table):
    assert IdSelection(["b", "e", "zz"]).rows(table).tolist() == [1, 4]
    assert IdSelection([4, 0, 99], column=None).rows(table).tolist() == [0, 4]
    assert IdSelection([2]).rows(np.zeros((5, 2))).tolist() == [2]


def test_values(table):
    assert ValueSelection("label", {1, 2}).rows(table).tolist() == [1, 2, 3]


def test_combinators(table):
    lam = RangeSelection("lambda", 0.5, 1.0)
    cls = ValueSelection("label", [0])
    assert (lam & cls).rows(table).tolist() == [4]
    assert (lam | cls).rows(table).tolist() == [0, 1, 2, 4]
    assert (~lam).rows(table).tolist() == [0, 3]
    assert (lam ^ cls).rows(table).tolist() == [0, 1, 2]
    assert (lam - cls).rows(table).tolist() == [1, 2]
    assert AllSelection().mask(table).all() and not NoneSelection().mask(table).any()


def test_selection_is_hashable_value_object():
    a = PolygonSelection(("x", "y"), [(0, 0), (1, 0), (0, 1)])
    b = PolygonSelection(("x", "y"), np.array([[0, 0], [1, 0], [0, 1]]))
    assert a == b and hash(a) == hash(b)


def test_large_lasso():
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(300_000, 2))
    theta = np.linspace(0, 2 * np.pi, 2000, endpoint=False)
    radius = 1 + 0.3 * np.sin(7 * theta)
    verts = np.c_[radius * np.cos(theta), radius * np.sin(theta)]
    mask = PolygonSelection((0, 1), verts).mask(xy)
    assert 0.1 < mask.mean() < 0.9


coords = st.floats(-10, 10, allow_nan=False, width=32)


@settings(max_examples=150, deadline=None)
@given(
    verts=arrays(np.float64, st.tuples(st.integers(3, 9), st.just(2)), elements=coords),
    pts=arrays(np.float64, st.tuples(st.integers(0, 40), st.just(2)), elements=coords),
)
def test_polygon_matches_reference_loop(verts, pts):
    got = points_in_polygon(pts[:, 0], pts[:, 1], verts)
    np.testing.assert_array_equal(got, naive_in_polygon(pts[:, 0], pts[:, 1], verts))


@settings(max_examples=100, deadline=None)
@given(
    values=arrays(np.float64, st.integers(0, 30), elements=st.floats(-1, 2) | st.just(np.nan)),
    a=st.tuples(st.floats(-1, 2), st.floats(-1, 2)),
    b=st.tuples(st.floats(-1, 2), st.floats(-1, 2)),
)
def test_combinators_are_boolean_algebra(values, a, b):
    data = {"v": values}
    sa, sb = RangeSelection("v", *a), RangeSelection("v", *b)
    ma, mb = sa.mask(data), sb.mask(data)
    np.testing.assert_array_equal((sa & sb).mask(data), ma & mb)
    np.testing.assert_array_equal((sa | sb).mask(data), ma | mb)
    np.testing.assert_array_equal((~sa).mask(data), ~ma)
    # De Morgan
    np.testing.assert_array_equal((~(sa & sb)).mask(data), (~sa | ~sb).mask(data))


@settings(max_examples=100, deadline=None)
@given(
    pts=arrays(np.float64, st.tuples(st.integers(0, 40), st.just(2)), elements=coords),
    box=st.tuples(coords, coords, coords, coords),
)
def test_box_agrees_with_rectangle_polygon_off_the_edges(pts, box):
    x0, x1, y0, y1 = box
    xlo, xhi = sorted((x0, x1))
    ylo, yhi = sorted((y0, y1))
    rect = [(xlo, ylo), (xhi, ylo), (xhi, yhi), (xlo, yhi)]
    on_edge = np.isin(pts[:, 0], [xlo, xhi]) | np.isin(pts[:, 1], [ylo, yhi])
    box_mask = BoxSelection(x0, x1, y0, y1).mask(pts)
    poly_mask = PolygonSelection((0, 1), rect).mask(pts)
    np.testing.assert_array_equal(box_mask[~on_edge], poly_mask[~on_edge])
