"""Shared pytest fixtures for the core and Qt tests."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Real data lives beside the repository, never inside it (../shared/data/README.md).
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def ferplus_root() -> Path:
    """The real FER+ data (``../shared/data/ferplus``); skips the test when it is absent."""
    root = SHARED_DATA / "ferplus"
    if not (root / "FER2013Train" / "label.csv").is_file():
        pytest.skip(f"real FER+ data not found at {root} (a clone without ../shared/data)")
    return root
