"""Shared pytest fixtures: isolated runs/cache folders so tests never touch the user's."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _shared_cache(tmp_path_factory):
    """One cache for the session (OpenMoji rasters are reused), unless the user set one."""
    if not os.environ.get("CLIPWB_CACHE"):
        os.environ["CLIPWB_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("CLIPWB_RUNS", str(root))
    return root
