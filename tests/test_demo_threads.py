"""The one chain runner pins the stage processes' thread count (torch's CPU reductions depend on it): a pipeline file's
`threads` (the demo's 2), else the CPUs the process may use; an OMP_NUM_THREADS the user exported wins. `clipwb demo`
and `make demo` both go through `run_pipeline`, so the demo is pinned however it is started."""
import os

import pytest

import clipwb.pipeline as pl
from clipwb.io import write_json
from clipwb.jobs import Submission


@pytest.fixture
def seen(monkeypatch):
    "Every step 'runs' by recording the OMP_NUM_THREADS its process would inherit, on a machine with 8 CPUs."
    got = []
    def fake_submit(stage, plans, **kw):
        got.append(os.environ.get("OMP_NUM_THREADS"))
        (_, _, run_dir, status), = plans
        run_dir.mkdir(parents=True, exist_ok=True); write_json(run_dir / "metrics.json", {})
        return [Submission(stage, run_dir, status, "local")]
    monkeypatch.setattr(pl, "submit_planned", fake_submit)
    monkeypatch.setattr(pl, "available_cpus", lambda: 8)
    return got


def test_demo_pins_its_threads_on_a_bigger_machine(seen, tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    out = pl.run_pipeline(pl.demo_pipeline(quick=True), root=tmp_path, report=False)
    assert len(seen) == len(pl.demo_plan(quick=True)) and set(seen) == {str(pl.DEMO_THREADS)}
    assert "OMP_NUM_THREADS" not in os.environ
    assert pl.read_json(out / "pipeline.json")["threads"] == pl.DEMO_THREADS


def test_a_file_without_threads_uses_the_available_cpus(seen, tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    pl.run_pipeline({"name": "p", "steps": [{"name": "a", "stage": "prepare", "params": {"limit": 4}}]},
                    root=tmp_path, report=False)
    assert seen == ["8"]


def test_the_users_threads_win(seen, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    out = pl.run_pipeline(pl.demo_pipeline(quick=True), root=tmp_path, report=False)
    assert set(seen) == {"7"} and pl.read_json(out / "pipeline.json")["threads"] == 7


def test_clipwb_demo_is_the_pipeline_runner(monkeypatch, tmp_path):
    import clipwb.cli as cli
    calls = []
    def fake_run(src, **kw):
        calls.append((src, kw)); (tmp_path / "out").mkdir(exist_ok=True)
        write_json(tmp_path / "out" / "pipeline.json", {"steps": []}); return tmp_path / "out"
    monkeypatch.setattr(cli, "run_pipeline", fake_run)
    assert cli.main(["demo", "--quick", "--runs", str(tmp_path)]) == 0
    assert calls == [(pl.demo_pipeline(quick=True), {"root": str(tmp_path)})]
