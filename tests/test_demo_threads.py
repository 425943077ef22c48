"""The demo pins the stage kernels' thread count (torch's CPU reductions depend on it), unless the user chose one."""
from pathlib import Path

import clipwb.cli as cli
from clipwb.runs import RunInfo


def _fake_chain(monkeypatch, tmp_path):
    seen = []
    def fake_run_stage(stage, params, **kw):
        import os
        seen.append(os.environ.get("OMP_NUM_THREADS"))
        d = tmp_path / stage / str(len(seen)); d.mkdir(parents=True)
        return RunInfo(stage, d, "done", {})
    monkeypatch.setattr(cli, "run_stage", fake_run_stage)
    return seen


def test_demo_pins_threads(monkeypatch, tmp_path):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    seen = _fake_chain(monkeypatch, tmp_path)
    cli.run_demo(quick=True, root=tmp_path)
    import os
    assert seen and set(seen) == {str(cli.DEMO_THREADS)} and "OMP_NUM_THREADS" not in os.environ


def test_demo_keeps_the_users_threads(monkeypatch, tmp_path):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    seen = _fake_chain(monkeypatch, tmp_path)
    cli.run_demo(quick=True, root=tmp_path)
    assert set(seen) == {"7"}
