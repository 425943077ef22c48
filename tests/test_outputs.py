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


def test_metrics_never_hold_negative_zero(tmp_path):
    from clipwb.config import Result
    from clipwb.runs import finish
    finish(Result(metrics={"delta": -0.0, "curve": [0.25, -0.0], "nested": {"gap": -0.0}}), tmp_path)
    text = (tmp_path / "metrics.json").read_text()
    assert "-0" not in text and '"delta": 0.0' in text


def test_env_json_explains_a_changed_number(umask_022, tmp_path):
    "The CPU, torch's CPU build and capability, and the thread settings used are in every run's env.json."
    import torch
    from clipwb.io import read_json
    env = read_json(run_step("prepare", {"data": "shapes", "limit": 8}, root=tmp_path).run_dir / "env.json")
    assert env["cpu"]["model"] and isinstance(env["cpu"]["simd"], list)
    assert env["torch"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["torch"]["num_threads"] >= 1 and env["torch"]["libraries"]
    assert {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "available_cpus"} <= set(env["threads"])
