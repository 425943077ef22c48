"""Threads are pinned on every path that starts a stage's process, not only the pipeline runner: `clipwb run`
(`run_stage`: the kernel inherits OMP_NUM_THREADS) and the local/SLURM job (the CPUs the job process was given, shared
by its ranks). env.json records what was used. A value the user exported always wins."""
import os

import papermill
import pytest

import clipwb.jobs as jobs
import clipwb.notebooks as nbk
from clipwb.io import read_json, write_json
from clipwb.runs import RunInfo


@pytest.fixture
def kernel(monkeypatch):
    "The stage 'kernel' records the OMP_NUM_THREADS it inherits and completes the run; the machine has 3 CPUs."
    seen = []
    def fake_execute(nb, out, *, parameters, **kw):
        seen.append(os.environ.get("OMP_NUM_THREADS"))
        write_json(os.path.join(parameters["run_dir"], "metrics.json"), {})
    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    monkeypatch.setattr(nbk, "available_cpus", lambda: 3, raising=False)
    return seen


def test_run_stage_pins_threads_to_the_available_cpus(kernel, tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    info = nbk.run_stage("prepare", {"data": "shapes", "limit": 8}, root=tmp_path)
    assert kernel == ["3"] and "OMP_NUM_THREADS" not in os.environ
    threads = read_json(info.run_dir / "env.json")["threads"]
    assert threads["OMP_NUM_THREADS"] == "3" and threads["torch"] == 3
    assert "MKL_NUM_THREADS" in threads and threads["available_cpus"] >= 1


def test_run_stage_keeps_the_users_threads(kernel, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    info = nbk.run_stage("prepare", {"data": "shapes", "limit": 8}, root=tmp_path)
    assert kernel == ["1"] and read_json(info.run_dir / "env.json")["threads"]["OMP_NUM_THREADS"] == "1"


def test_a_job_pins_its_cpus_shared_by_its_ranks(tmp_path, monkeypatch):
    seen = []
    def fake(*a, **kw):
        seen.append(os.environ.get("OMP_NUM_THREADS")); return RunInfo("prepare", tmp_path, "done", {})
    monkeypatch.setattr(jobs, "run_stage", fake)
    monkeypatch.setattr(jobs, "run_distributed", fake)
    monkeypatch.setattr(jobs, "available_cpus", lambda: 8, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    jobs.StageJob()("prepare", {}, str(tmp_path))
    jobs.StageJob()("prepare", {}, str(tmp_path), nproc=2)
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    jobs.StageJob()("prepare", {}, str(tmp_path))
    assert seen == ["8", "4", "5"]
