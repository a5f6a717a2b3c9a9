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


@pytest.fixture(scope="session", autouse=True)
def _caches_in_a_temporary_folder(tmp_path_factory):
    """The demo and the decoded-image cache of the whole session live in a temporary folder, not
    in the user's cache (a test may point ULDL_STUDIO_CACHE elsewhere for itself)."""
    import os

    old = os.environ.get("ULDL_STUDIO_CACHE")
    os.environ["ULDL_STUDIO_CACHE"] = str(tmp_path_factory.mktemp("uldl-cache"))
    yield
    if old is None:
        os.environ.pop("ULDL_STUDIO_CACHE", None)
    else:
        os.environ["ULDL_STUDIO_CACHE"] = old
