"""Stage runs as jobs (clipwb.jobs, clipwb.pipeline) on a real SLURM (and, through tests/test_slurm_local.py,
with submitit's LocalExecutor). `make test` starts a private one-node cluster with tools/slurm_local.sh up before
pytest (and stops it after); the SLURM cases skip, saying why, when no controller answers. Each test uses its own
runs root and submitit folder (job ids restart when the cluster's state is purged, and a reused folder would return
an old result). Round trips (submit → metrics) are printed (`pytest -s`), not asserted."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clipwb.core import ConfigError
from clipwb.io import read_json
from clipwb.runs import StageFailed
from clipwb.jobs import (cancel, run_state, run_status, slurm_available, submit_stage, wait)

ROOT = Path(__file__).resolve().parents[1]
SLURM_DIR = Path(os.environ.get("CLIPWB_SLURM_DIR", "/tmp/clipwb-slurm"))
if not os.environ.get("SLURM_CONF") and (SLURM_DIR / "slurm.conf").is_file():
    os.environ["SLURM_CONF"] = str(SLURM_DIR / "slurm.conf")   # the cluster of tools/slurm_local.sh up

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]
MICRO = {"model": "clipwb-micro", "data": "shapes", "batch_size": 8}


@pytest.fixture
def executor(request):
    "SLURM here; tests/test_slurm_local.py runs the same tests with the local executor (another xdist worker)."
    if why := slurm_available(): pytest.skip(f"SLURM is not available: {why}")
    return "slurm"


def _jobs_in_queue() -> int:
    "Jobs SLURM knows of (sacct), or 0 without SLURM."
    if slurm_available(): return 0
    out = subprocess.run(["sacct", "-n", "-X", "-a", "-S", "now-1days", "-o", "jobid"], capture_output=True, text=True)
    return len(out.stdout.split())


def test_submit_smoke_cli(executor, tmp_path):
    "`clipwb submit … --wait` prints the metrics; the run's env.json records the job; `clipwb status` reads it."
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "clipwb", "submit", "prepare", "-p", "data", "shapes",
                          "-p", "limit", "8", "--executor", executor, "--runs", str(tmp_path / "runs"),
                          "--folder", str(tmp_path / "sub"), "--wait"],
                         capture_output=True, text=True, env=env, timeout=600)
    took = time.perf_counter() - t0
    assert out.returncode == 0, out.stderr[-3000:]
    first, rest = out.stdout.split("\n", 1)
    sub, res = json.loads(first), json.loads(rest)
    assert res["metrics"]["n_train"] == 8 and res["run_dir"] == sub["run_dir"]
    job = read_json(Path(sub["run_dir"]) / "env.json")["job"]
    assert job["job_id"] == sub["job_id"] and job["executor"] == executor and job["host"] and job["state"] == "done"
    assert Path(job["stdout"]).parent == tmp_path / "sub"
    line = f"runs root: {(tmp_path / 'runs').resolve()} (--runs {tmp_path / 'runs'})"   # said first, by both
    assert out.stderr.splitlines()[0] == line and Path(job["stderr"]).read_text().splitlines()[0] == line
    st = subprocess.run([sys.executable, "-m", "clipwb", "status", sub["run_dir"]], capture_output=True, text=True,
                        env=env)
    assert st.returncode == 0 and "run complete" in st.stdout, st.stdout + st.stderr
    print(f"\nround trip submit → metrics ({executor}, CLI, prepare on 8 samples): {took:.1f} s")


def test_array_of_three(executor, tmp_path):
    "--array-from limit=4,6,8: three jobs, three run dirs, each with its own metrics."
    subs = submit_stage("prepare", {"data": "shapes"}, executor=executor, root=tmp_path / "runs",
                        folder=tmp_path / "sub", array="limit=4,6,8")
    assert len({s.run_dir for s in subs}) == 3 and len({s.job_id for s in subs}) == 3
    res = wait(subs)
    assert [r["metrics"]["n_train"] for r in res] == [4, 6, 8]
    assert [read_json(s.run_dir / "config.json")["limit"] for s in subs] == [4, 6, 8]


def test_failing_job(executor, tmp_path):
    "A stage that raises on the node: a clear error naming the run; the executed notebook with the traceback is kept."
    # 4 samples: no batch of 8
    (sub,) = submit_stage("train", {**MICRO, "data_limit": 4, "max_steps": 1}, executor=executor,
                          root=tmp_path / "runs", folder=tmp_path / "sub")
    with pytest.raises(StageFailed) as e:
        wait([sub])
    msg = str(e.value)
    assert "make no batch of 8" in msg and str(sub.run_dir) in msg and sub.job_id in msg, msg
    nb = sub.run_dir / "train.ipynb"
    assert nb.is_file() and "make no batch of 8" in nb.read_text()
    assert run_state(sub.run_dir) == "failed" and not (sub.run_dir / "metrics.json").exists()


def _checkpoint_step(run_dir: Path) -> int:
    cks = sorted((run_dir / "checkpoint").glob("step_*"))
    return int(cks[-1].name.split("_")[1]) if cks else 0


def test_cancel_mid_run_then_resubmit_resumes(executor, tmp_path):
    """Cancel a training job after a few checkpoints, submit the same parameters again: the new job runs in the
    same run dir and continues from the checkpoint. Oracle: a marker written into the saved loss history while no
    job runs is still there at the end (a restart from step 0 would have rebuilt the history)."""
    params = {**MICRO, "data_limit": 16, "epochs": 40, "max_steps": 60, "checkpoint_every": 1}
    (sub,) = submit_stage("train", params, executor=executor, root=tmp_path / "runs", folder=tmp_path / "sub1")
    deadline = time.monotonic() + 300
    while _checkpoint_step(sub.run_dir) < 3:
        assert time.monotonic() < deadline and run_state(sub.run_dir) != "failed", run_status(sub.run_dir)
        time.sleep(0.5)
    cancel(sub.run_dir)
    deadline = time.monotonic() + 60
    while not sub.job.done():
        assert time.monotonic() < deadline, f"job {sub.job_id} still {sub.job.state} 60 s after cancel"
        time.sleep(0.5)
    time.sleep(1)
    assert not sub.job.paths.result_pickle.exists(), "the cancelled job reported its dead kernel as a result"
    k = _checkpoint_step(sub.run_dir)
    assert 3 <= k < 60 and not (sub.run_dir / "metrics.json").exists()
    ck = sorted((sub.run_dir / "checkpoint").glob("step_*"))[-1] / "state.json"
    st = read_json(ck); st["losses"][0] = 123.0; ck.write_text(json.dumps(st))
    (again,) = submit_stage("train", params, executor=executor, root=tmp_path / "runs", folder=tmp_path / "sub2")
    assert again.run_dir == sub.run_dir and again.status == "resume"
    (res,) = wait([again])
    assert res["metrics"]["steps"] == 60
    final = read_json(sorted((sub.run_dir / "checkpoint").glob("step_*"))[-1] / "state.json")
    assert final["step"] == 60 and len(final["losses"]) == 60 and final["losses"][0] == 123.0
    print(f"\n{executor}: cancelled at checkpoint step {k}, resumed to 60")


def test_pipeline_with_dependency(executor, tmp_path):
    """train → embed ({train}) plus a failing train with a dependant: the good chain completes (on SLURM the embed job
    waits with afterok on the train job), the failure is reported and its dependant does not run; a rerun skips the
    complete steps; the report names the failure."""
    from clipwb.pipeline import pipeline_failures, run_pipeline
    pipe = {"name": "two", "steps": [
        {"name": "train", "stage": "train", "params": {**MICRO, "data_limit": 16, "max_steps": 1}},
        {"name": "embed", "stage": "embed", "params": {"model": "{train}", "data": "shapes", "limit": 8}},
        # fails: no batch of 8
        {"name": "bad", "stage": "train", "params": {**MICRO, "data_limit": 4, "max_steps": 1}},
        {"name": "after_bad", "stage": "embed", "params": {"model": "{bad}", "data": "shapes", "limit": 8}}]}
    out = run_pipeline(pipe, executor=executor, root=tmp_path / "runs")
    rec = {s["name"]: s for s in read_json(out / "pipeline.json")["steps"]}
    assert rec["train"]["status"] == rec["embed"]["status"] == "done"
    assert read_json(Path(rec["embed"]["run_dir"]) / "config.json")["model"] == rec["train"]["run_dir"]
    assert rec["bad"]["status"] == "failed" and "make no batch" in rec["bad"]["error"]
    assert rec["after_bad"]["status"] == "not run" and "'bad'" in rec["after_bad"]["error"]
    assert set(pipeline_failures(out)) == {"bad", "after_bad"}
    if executor == "slurm":
        script = next(Path(rec["embed"]["run_dir"]).parents[1]
                      .glob(f".submitit/two-*/embed/{rec['embed']['job_id']}_submission.sh"))
        assert f"--dependency=afterok:{rec['train']['job_id']}" in script.read_text()
    page = (out / "report.html").read_text()
    assert "after_bad" in page and "dependency &#x27;bad&#x27; failed" in page
    pipe["steps"] = pipe["steps"][:2]
    rec2 = read_json(run_pipeline(pipe, executor=executor, root=tmp_path / "runs") / "pipeline.json")
    assert [s["status"] for s in rec2["steps"]] == ["skipped (complete)"] * 2


def test_parameters_rejected_before_queue(executor, tmp_path):
    "A typo in a stage's or a pipeline's parameters raises before any job exists."
    from clipwb.pipeline import run_pipeline
    n = _jobs_in_queue()
    with pytest.raises(ConfigError, match="limt"):
        submit_stage("prepare", {"limt": 8}, executor=executor, root=tmp_path / "runs", folder=tmp_path / "sub")
    with pytest.raises(ConfigError, match="batch_size"):   # the second element is bad: nothing of the array goes
        submit_stage("train", MICRO, executor=executor, root=tmp_path / "runs", folder=tmp_path / "sub",
                     array="batch_size=8,1")
    bad = {"name": "bad", "steps": [{"name": "a", "stage": "prepare", "params": {"limit": 4}},
                                    {"name": "b", "stage": "embed", "params": {"model": "{a}", "lmit": 3}}]}
    with pytest.raises(ConfigError, match="lmit"):
        run_pipeline(bad, executor=executor, root=tmp_path / "runs")
    assert not (tmp_path / "sub").exists() and not (tmp_path / "runs").exists()
    assert _jobs_in_queue() == n


def test_shipped_demo_pipelines_match_demo_plan(tmp_path):
    "pipelines/demo.yaml and demo-quick.yaml are generated from demo_plan and validate as `make demo` plans them."
    from clipwb.pipeline import demo_yaml, load_pipeline, order, plan_pipeline
    for quick, name in ((False, "demo.yaml"), (True, "demo-quick.yaml")):
        assert (ROOT / "pipelines" / name).read_text() == demo_yaml(quick), \
            f"pipelines/{name} differs from demo_plan: run `clipwb pipeline export-demo` and commit the files"
        pipe = load_pipeline(ROOT / "pipelines" / name)
        order(pipe)
        # every step plans before any runs
        assert set(plan_pipeline(pipe, root=tmp_path / name)) == {s.name for s in pipe.steps}


def test_status_shows_the_progress_of_a_running_stage(executor, tmp_path):
    "While a submitted train runs, `clipwb status <run>` prints its progress line (steps, rate, ETA, loss); cancelled."
    import re
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CLIPWB_PROGRESS_EVERY": "1"}   # reaches the job (sbatch exports)
    params = sum((["-p", k, str(v)] for k, v in
                  {**MICRO, "data_limit": 64, "max_steps": 5000, "epochs": 1000, "device": "cpu"}.items()), [])
    with open(tmp_path / "submit.out", "w") as fo, open(tmp_path / "submit.err", "w") as fe:   # a local job keeps
        rc = subprocess.run([sys.executable, "-m", "clipwb", "submit", "train", *params, "--executor", executor,
                             "--runs", str(tmp_path / "runs"), "--folder", str(tmp_path / "sub")],   # a pipe open
                            stdout=fo, stderr=fe, env=env, timeout=600).returncode
    assert rc == 0, (tmp_path / "submit.err").read_text()[-3000:]
    run = json.loads((tmp_path / "submit.out").read_text().splitlines()[0])["run_dir"]
    pat = re.compile(r"  progress: train (\d+)/5000 steps, [\d.]+ step/s, ETA .+, loss [\d.]+.* \(\d+ s ago\)")
    seen, t0 = [], time.time()
    try:
        while time.time() - t0 < 300 and len(seen) < 2:
            st = subprocess.run([sys.executable, "-m", "clipwb", "status", run], capture_output=True, text=True,
                                env=env)
            assert st.returncode == 0, st.stderr
            lines = st.stdout.splitlines()
            assert "run complete" not in lines[0], st.stdout
            if len(lines) > 1 and (m := pat.fullmatch(lines[1])) and int(m[1]) > 0 and m[1] not in seen:
                seen.append(m[1])
            time.sleep(2)
    finally: cancel(run)
    assert len(seen) == 2 and int(seen[1]) > int(seen[0]), seen   # the line advances while the job runs
    print(f"\nclipwb status of a running {executor} train:\n{lines[0]}\n{lines[1]}")
