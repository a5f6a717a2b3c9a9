"""Seeded label-noise injection (train split only, label_original kept)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from uldl_studio.core.classes import FERPLUS_CLASSES
from uldl_studio.core.engine.noise import circumplex_transition, inject_label_noise
from uldl_studio.core.table import make_table, validate_table


def table(n=4000, m=8, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "sample_id": [f"s{i}" for i in range(n)], "path": [f"/x/{i}.png" for i in range(n)],
        "split": rng.choice(["train", "valid", "test"], n, p=[0.8, 0.1, 0.1]),
        "label": rng.integers(0, m, n),
    })
    return make_table(frame, FERPLUS_CLASSES[:m], "/x", "csv")


@pytest.mark.parametrize("mode", ["symmetric", "class_conditional"])
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3])
def test_realised_rate_and_scope(mode, rate):
    clean = table()
    noisy = inject_label_noise(clean, rate, seed=3, mode=mode)
    validate_table(noisy)
    assert noisy.attrs == clean.attrs
    assert (noisy["label_original"] == clean["label"]).all()
    train = (noisy["split"] == "train").to_numpy()
    flipped = noisy["label"] != noisy["label_original"]
    assert not flipped[~train].any()  # valid and test stay clean
    assert abs(flipped[train].mean() - rate) < 1e-3
    assert "label_original" not in clean  # the input is not modified


def test_seeded_and_reproducible():
    clean = table()
    a = inject_label_noise(clean, 0.2, seed=1)
    b = inject_label_noise(clean, 0.2, seed=1)
    c = inject_label_noise(clean, 0.2, seed=2)
    assert (a["label"] == b["label"]).all() and (a["label"] != c["label"]).any()


def test_symmetric_spreads_over_all_other_classes():
    noisy = inject_label_noise(table(20000), 0.5, seed=0)
    flipped = noisy[noisy["label"] != noisy["label_original"]]
    pairs = pd.crosstab(flipped["label_original"], flipped["label"]).to_numpy()
    assert (np.diag(pairs) == 0).all()
    off = pairs[~np.eye(8, dtype=bool)]
    assert off.min() > 0.6 * off.mean()


def test_class_conditional_goes_to_circumplex_neighbours():
    matrix = circumplex_transition(FERPLUS_CLASSES)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    assert (np.diag(matrix) == 0).all() and ((matrix > 0).sum(axis=1) == 2).all()
    names = list(FERPLUS_CLASSES)
    assert set(np.flatnonzero(matrix[names.index("anger")])) == {names.index("fear"), names.index("disgust")}
    noisy = inject_label_noise(table(20000), 0.4, seed=0, mode="class_conditional")
    flipped = noisy[noisy["label"] != noisy["label_original"]]
    assert (matrix[flipped["label_original"], flipped["label"]] > 0).all()


def test_custom_transition_and_validation():
    clean = table(m=3)
    transition = [[0.9, 0.1, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]  # diagonal ignored
    noisy = inject_label_noise(clean, 0.3, seed=0, mode="class_conditional", transition=transition)
    flipped = noisy[noisy["label"] != noisy["label_original"]]
    expected = {0: 1, 1: 2, 2: 0}
    assert (flipped["label"] == flipped["label_original"].map(expected)).all()
    with pytest.raises(ValueError, match="3x3"):
        inject_label_noise(clean, 0.1, seed=0, mode="class_conditional", transition=np.ones((2, 2)))
    with pytest.raises(ValueError, match="row 0 has no off-diagonal weight"):
        inject_label_noise(clean, 0.1, seed=0, mode="class_conditional", transition=np.eye(3))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        inject_label_noise(clean, 1.5, seed=0)
    with pytest.raises(ValueError, match="mode"):
        inject_label_noise(clean, 0.1, seed=0, mode="pairwise")


def test_second_injection_keeps_the_true_original():
    clean = table()
    once = inject_label_noise(clean, 0.2, seed=0)
    twice = inject_label_noise(once, 0.2, seed=1)
    assert (twice["label_original"] == clean["label"]).all()
