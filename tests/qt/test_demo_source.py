"""The demo table the GUI opens (one helper for MainWindow.open_demo and the fixtures)."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(120)


def test_small_demo_is_recorded_as_csv_and_retrains_on_the_same_samples(trained_run_dir, demo_table):
    from uldl_studio.core.engine.run import Run
    from uldl_studio.qt.demo import DEMO_N_ENV, default_demo_size, load_demo_table

    n = len(demo_table)                    # the fixtures' small demo
    assert n != default_demo_size()
    table = load_demo_table(n=n)
    assert table.attrs["format"] == "csv" and len(table) == n
    assert list(table["sample_id"]) == list(demo_table["sample_id"])
    # The fixture's run (trained on load_demo_table) re-reads exactly these samples.
    again = Run.open(trained_run_dir).training_table()
    assert sorted(again["sample_id"]) == sorted(table["sample_id"])
    assert DEMO_N_ENV == "ULDL_STUDIO_DEMO_N"


def test_size_from_the_environment(monkeypatch, tmp_path):
    from uldl_studio.qt.demo import DEMO_N_ENV, demo_source, load_demo_table

    monkeypatch.setenv(DEMO_N_ENV, "40")
    table = load_demo_table()
    assert len(table) == 40 and table.attrs["format"] == "csv"
    assert demo_source() == {"kind": "demo", "path": "demo", "format": "demo"}
