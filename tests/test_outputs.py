"""Outputs a team can share: every file a stage writes gets the user's umask (0644 under umask 022), not the 0600 a
bare temporary file has; the atomic write stays atomic."""
import os

import pytest

from clipwb.runs import run_step


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_run_folder_is_readable_by_the_group_and_others(umask_022, tmp_path):
    info = run_step("prepare", {"data": "shapes", "limit": 8}, root=tmp_path)
    files = [p for p in info.run_dir.rglob("*") if p.is_file()]
    assert any(p.name == "metrics.json" for p in files) and len(files) >= 4
    private = {str(p.relative_to(info.run_dir)): oct(p.stat().st_mode & 0o777) for p in files
               if (p.stat().st_mode & 0o044) != 0o044}
    assert not private, f"files a teammate cannot read: {private}"
    assert {p.stat().st_mode & 0o777 for p in files} <= {0o644, 0o755}
