"""Property test: the generic CSV reader returns a table or raises DatasetError, nothing else."""
from __future__ import annotations

import csv
import itertools
import warnings

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from uldl_studio.core.classes import SYNONYMS
from uldl_studio.core.data.datasets import DatasetWarning, load_dataset
from uldl_studio.core.table import DatasetError, classes_of, validate_table

pytestmark = pytest.mark.timeout(120)

IMAGES = [f"img{i}.png" for i in range(6)] + ["missing.png", "sub dir/ü.png", ""]
labels = st.one_of(
    st.sampled_from(sorted(SYNONYMS)),
    st.sampled_from(["Happy", " SAD ", "smirk", "", "NaN", "1e3", "٣"]),
    st.integers(min_value=-3, max_value=12).map(str),
    st.text(max_size=8),
)
rows = st.lists(
    st.tuples(st.sampled_from(IMAGES), labels,
              st.sampled_from(["train", "valid", "test", "val", "", "holdout", "0.5", "0", "-1"]),
              st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=4))),
    max_size=12,
)
_counter = itertools.count()


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    for name in IMAGES:
        if name and name != "missing.png":
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            Image.new("L", (8, 8), 100).save(root / name)
    return root


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows, delimiter=st.sampled_from([",", ";", "\t"]), bom=st.booleans(),
       header=st.sampled_from([("path", "label", "split", "valence"), ("Path", "LABEL"), ("path", "lab"),
                               ("path", "label", "ref_happy", "ref_sad")]),
       single_label=st.sampled_from(["majority", "sample"]))
def test_generic_csv_never_raises_unexpected(image_dir, rows, delimiter, bom, header, single_label):
    path = image_dir / f"case{next(_counter)}.csv"
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(r[: len(header)] for r in rows)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DatasetWarning)
            table = load_dataset(path, "csv", single_label=single_label)
    except DatasetError as exc:
        assert str(exc)
        event("DatasetError: " + str(exc).split(": ", 1)[-1][:30])
        return
    finally:
        path.unlink()
    event("table")
    validate_table(table)
    assert len(table) > 0 and len(classes_of(table)) >= 1
    assert table["path"].map(lambda p: p.startswith(str(image_dir))).all()
