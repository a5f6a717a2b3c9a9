"""The real FER+ data in ../shared/data/ferplus (skipped when absent)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from uldl_studio.core.classes import FERPLUS_CLASSES
from uldl_studio.core.data.datasets import detect_format, load_dataset
from uldl_studio.core.table import classes_of, reference_distribution, validate_table

pytestmark = pytest.mark.timeout(120)

# PNGs per split in the README, and what remains after dropping unknown/NF majorities
# (measured on this data; the independent count below re-derives them from label.csv).
README_PNGS = {"train": 28558, "valid": 3579, "test": 3573}
KEPT = {"train": 28385, "valid": 3555, "test": 3545}
FOLDERS = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}


@pytest.fixture(scope="module")
def majority(ferplus_root):
    return load_dataset(ferplus_root)


def test_png_counts_match_readme(ferplus_root):
    for split, folder in FOLDERS.items():
        assert sum(1 for p in (ferplus_root / folder).iterdir() if p.suffix == ".png") == README_PNGS[split]


def test_counts_per_split(ferplus_root, majority):
    assert detect_format(ferplus_root) == "ferplus"
    validate_table(majority)
    assert classes_of(majority) == list(FERPLUS_CLASSES)
    assert majority.groupby("split").size().to_dict() == KEPT
    # Independent count with the csv module: keep rows whose ten-way argmax is an emotion.
    for split, folder in FOLDERS.items():
        with open(ferplus_root / folder / "label.csv", newline="") as handle:
            votes = [list(map(int, row[2:])) for row in csv.reader(handle)]
        kept = sum(1 for v in votes if max(range(10), key=lambda j: (v[j], -j)) < 8 and sum(v[:8]) > 0)
        assert kept == KEPT[split]


def test_reference_distributions(majority):
    ref = reference_distribution(majority)
    assert ref is not None and ref.shape == (len(majority), 8)
    np.testing.assert_allclose(ref.sum(axis=1), 1.0, atol=1e-12)
    assert (ref >= 0).all()
    # the majority label is the argmax of the votes (lowest index on ties)
    assert (majority["label"].to_numpy() == ref.argmax(axis=1)).all()
    first = majority.set_index("sample_id").loc["FER2013Train/fer0000000.png"]
    assert first["ref_neutral"] == 0.4 and first["ref_anger"] == 0.3 and first["label"] == 0
    assert all(Path(p).is_file() for p in majority["path"].iloc[::5000])


def test_sample_mode(ferplus_root, majority):
    a = load_dataset(ferplus_root, single_label="sample", seed=0)
    b = load_dataset(ferplus_root, single_label="sample", seed=0)
    c = load_dataset(ferplus_root, single_label="sample", seed=1)
    assert list(a["sample_id"]) == list(majority["sample_id"])
    assert (a["label"] == b["label"]).all()
    assert (a["label"] != c["label"]).mean() > 0.1
    differs = (a["label"] != majority["label"]).mean()
    # One annotator disagrees with the crowd majority on roughly a quarter of FER+ images.
    assert 0.15 < differs < 0.35
    # every drawn label had at least one vote
    ref = reference_distribution(a)
    assert (ref[np.arange(len(a)), a["label"].to_numpy()] > 0).all()


def test_single_split_and_limit(ferplus_root):
    valid = load_dataset(ferplus_root / "FER2013Valid")
    assert set(valid["split"]) == {"valid"} and len(valid) == KEPT["valid"]
    small = load_dataset(ferplus_root, limit=10)
    assert small.groupby("split").size().to_dict() == {"train": 10, "valid": 10, "test": 10}


def test_loading_all(ferplus_root):
    table = load_dataset(ferplus_root)
    assert len(table) == sum(KEPT.values())
