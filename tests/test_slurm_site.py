"""A site's SLURM options and multi-node stages on the local one-node cluster of tools/slurm_local.sh (the cases skip,
saying why, when no controller answers).

- Site options: `clipwb submit --account --qos --setup --slurm KEY=VALUE` reach the job: the submitted sbatch script
  carries them, SLURM grants them (the job records SLURM_JOB_ACCOUNT/QOS), and a setup line runs before the stage
  (it exports MKL_NUM_THREADS, which the stage records in env.json). A bad option fails before anything is queued.
- Several SLURM tasks: a train of 2 tasks (`--nproc 2 --launch srun`: one task per process, ranks and rendezvous
  from SLURM's environment, the code path of 2 nodes) has the loss curve of the same train under torchrun with 2
  processes; requeued mid-run it resumes from rank 0's checkpoint.
Round trips and the loss curves are printed (`pytest -s`), not asserted."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clipwb.core import ConfigError
from clipwb.io import read_json
from clipwb.jobs import Resources, rendezvous_port, run_state, run_status, submit_stage, wait
from test_slurm import ROOT, _checkpoint_step, _jobs_in_queue, executor  # noqa: F401  (the fixture; it also points SLURM_CONF at the cluster)

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]
TRAIN = {"model": "clipwb-micro", "data": "shapes", "batch_size": 4, "data_limit": 32, "max_steps": 6, "epochs": 2,
         "device": "cpu", "seed": 3}


def _env(**kw) -> dict:
    "The environment of a clipwb command (and of the jobs it submits: sbatch exports it): one thread per process."
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **kw}


def _node_cpus() -> int:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%c"], capture_output=True, text=True)
    return max((int(x) for x in out.stdout.split() if x.isdigit()), default=0)


def _losses(run_dir: Path) -> list[float]:
    "The loss curve of a train run: the losses saved with its last checkpoint."
    return read_json(sorted((run_dir / "checkpoint").glob("step_*"))[-1] / "state.json")["losses"]


def _site_account(user: str) -> tuple[str, str]:
    "An account and a QOS that are not the user's defaults, made known to the local cluster's accounting (idempotent)."
    for cmd in (["add", "qos", "clipwb-high"], ["add", "account", "clipwb-lab"],
                ["add", "user", user, "account=clipwb-lab"], ["modify", "user", user, "set", "qos+=clipwb-high"]):
        subprocess.run(["sacctmgr", "-i", *cmd], capture_output=True, text=True)   # 'Nothing new added' when there
    return "clipwb-lab", "clipwb-high"


def test_site_options_reach_the_job(executor, tmp_path):  # noqa: F811
    import getpass
    account, qos = _site_account(getpass.getuser())
    assert os.environ.get("MKL_NUM_THREADS") != "3"   # the value below can only come from the setup line
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "clipwb", "submit", "prepare", "-p", "data", "shapes", "-p", "limit",
                          "4", "--executor", executor, "--runs", str(tmp_path / "runs"), "--folder",
                          str(tmp_path / "sub"), "--account", account, "--qos", qos,
                          "--setup", "export MKL_NUM_THREADS=3", "--setup", "echo site setup ran >&2",
                          "--slurm", "comment=clipwb-site-test", "--slurm", "mail-type=NONE", "--wait"],
                         capture_output=True, text=True, env=_env(), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    sub = json.loads(out.stdout.split("\n", 1)[0])
    lines = (tmp_path / "sub" / f"{sub['job_id']}_submission.sh").read_text().splitlines()
    for opt in (f"--account={account}", f"--qos={qos}", "--comment=clipwb-site-test", "--mail-type=NONE"):
        assert f"#SBATCH {opt}" in lines, (opt, lines)
    srun = next(i for i, line in enumerate(lines) if line.startswith("srun "))
    assert lines.index("export MKL_NUM_THREADS=3") < lines.index("echo site setup ran >&2") < srun
    env = read_json(Path(sub["run_dir"]) / "env.json")
    assert env["threads"]["MKL_NUM_THREADS"] == "3"                    # exported by the setup line, seen by the stage
    assert env["job"]["account"] == account and env["job"]["qos"] == qos and env["job"]["state"] == "done"   # granted
    assert "site setup ran" in Path(env["job"]["stderr"]).read_text()
    print(f"\nsite options: submit → metrics {time.perf_counter() - t0:.1f} s; sbatch script:\n" + "\n".join(lines))


def test_bad_option_fails_before_queue(executor, tmp_path):  # noqa: F811
    from clipwb.pipeline import run_pipeline
    n = _jobs_in_queue()
    kw = dict(executor=executor, root=tmp_path / "runs", folder=tmp_path / "sub")
    with pytest.raises(ConfigError, match=r"unknown sbatch option\(s\) \['mail_tpye'\].*mail_type"):
        submit_stage("prepare", {"limit": 4}, res=Resources(slurm={"mail_tpye": "END"}), **kw)
    with pytest.raises(ConfigError, match="array_parallelism takes int"):
        submit_stage("prepare", {"limit": 4}, res=Resources(slurm={"array_parallelism": "many"}), **kw)
    # what only the scheduler knows: sbatch --test-only says it before anything is queued
    with pytest.raises(ConfigError, match="(?s)SLURM refuses.*Invalid feature.*--constraint=no-such-feature"):
        submit_stage("prepare", {"limit": 4}, res=Resources(constraint="no-such-feature"), **kw)
    pipe = {"name": "opts", "steps": [{"name": "a", "stage": "prepare", "params": {"limit": 4}},
                                      {"name": "b", "stage": "prepare", "params": {"limit": 6},
                                       "resources": {"constraint": "no-such-feature"}}]}
    # step a is fine, and not started either
    with pytest.raises(ConfigError, match="(?s)nothing was started.*step 'b'.*Invalid feature"):
        run_pipeline(pipe, executor=executor, root=tmp_path / "runs")
    assert not (tmp_path / "sub").exists() and not any((tmp_path / "runs").glob("*/*/job.json"))
    assert _jobs_in_queue() == n


def _train_tasks(tmp_path, params: dict, **res) -> object:
    (sub,) = submit_stage("train", params, executor="slurm", root=tmp_path / "runs", folder=tmp_path / "sub",
                          res=Resources(nproc=2, launch="srun", **res))
    script = sub.job.paths.submission_file.read_text().splitlines()
    assert "#SBATCH --ntasks-per-node=2" in script and "--kill-on-bad-exit=1" in next(
        line for line in script if line.startswith("srun ")), script
    return sub


def test_two_tasks_equal_torchrun(executor, tmp_path, monkeypatch):  # noqa: F811
    if executor != "slurm": pytest.skip("SLURM tasks need SLURM")
    if _node_cpus() < 2: pytest.skip(f"the SLURM node offers {_node_cpus()} CPU(s); 2 tasks need 2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")   # exported to the job: both trains use one thread per process
    args = [a for k, v in TRAIN.items() for a in ("-p", k, str(v))]
    t0 = time.perf_counter()
    tr = subprocess.run([sys.executable, "-m", "clipwb", "run", "train", *args, "--nproc", "2", "--runs",
                         str(tmp_path / "torchrun")], capture_output=True, text=True, env=_env(), timeout=600)
    assert tr.returncode == 0, tr.stderr[-3000:]
    t1 = time.perf_counter()
    sub = _train_tasks(tmp_path, TRAIN)
    (res,) = wait([sub])
    t2 = time.perf_counter()
    ref = Path(json.loads(tr.stdout)["run_dir"])
    assert res["metrics"]["world_size"] == 2 and res["metrics"]["steps"] == TRAIN["max_steps"]
    a, b = _losses(ref), _losses(sub.run_dir)
    assert len(a) == len(b) == TRAIN["max_steps"]
    assert b == pytest.approx(a, rel=1e-6, abs=1e-7), (a, b)
    rank1 = sub.run_dir / "ranks" / "1"   # rank 0 alone writes the run; rank 1 executed its copy of the notebook
    assert (rank1 / "train.ipynb").is_file() and not (rank1 / "metrics.json").exists()
    assert not (rank1 / "model").exists()
    job = read_json(sub.run_dir / "env.json")["job"]
    assert job["tasks"] == 2 and job["state"] == "done" and job["job_id"] == sub.job_id
    assert job["rendezvous"] == f"localhost:{rendezvous_port(int(sub.job_id))}"   # the first host of the node list
    print(f"\nloss curves, train 2 processes (torchrun {t1 - t0:.1f} s) vs 2 SLURM tasks ({t2 - t1:.1f} s):")
    print("step  torchrun-2proc       slurm-2task          |diff|")
    for i, (x, y) in enumerate(zip(a, b)): print(f"{i + 1:>4}  {x!r:<19}  {y!r:<19}  {abs(x - y):.1e}")
    print("submitted sbatch script of the 2-task job:\n" + sub.job.paths.submission_file.read_text())


def test_two_tasks_requeued_resume(executor, tmp_path, monkeypatch):  # noqa: F811
    """`scontrol requeue` of a 2-task train after a few checkpoints: the job comes back under its id and finishes the
    run from rank 0's checkpoint. Oracle: a marker written into the saved loss history while the job is pending
    (no task runs) is still there at the end; a start from step 0 would have rebuilt the history."""
    if executor != "slurm": pytest.skip("SLURM tasks need SLURM")
    if _node_cpus() < 2: pytest.skip(f"the SLURM node offers {_node_cpus()} CPU(s); 2 tasks need 2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    from test_slurm_requeue import _sacct_states
    params = {**TRAIN, "max_steps": 100, "epochs": 25, "checkpoint_every": 1}
    sub = _train_tasks(tmp_path, params)
    try:
        deadline = time.monotonic() + 300
        while _checkpoint_step(sub.run_dir) < 3:
            assert time.monotonic() < deadline and run_state(sub.run_dir) != "failed", run_status(sub.run_dir)
            assert not (sub.run_dir / "metrics.json").exists(), "the run finished before it could be requeued"
            time.sleep(0.2)
        subprocess.run(["scontrol", "requeue", sub.job_id], check=True)
        deadline = time.monotonic() + 120
        while subprocess.run(["squeue", "-h", "-j", sub.job_id, "-o", "%T"], capture_output=True,
                             text=True).stdout.strip() != "PENDING":   # every task of the first attempt has ended
            assert time.monotonic() < deadline, "the requeued job never showed PENDING"
            time.sleep(0.2)
        last = sorted((sub.run_dir / "checkpoint").glob("step_*"))[-1]
        k = int(last.name.split("_")[1])
        st = read_json(last / "state.json"); st["losses"][0] = 123.0; (last / "state.json").write_text(json.dumps(st))
        (res,) = wait([sub])
    finally:
        if not sub.job.done(): sub.job.cancel(check=False)
    states = _sacct_states(sub.job_id)
    assert "REQUEUED" in states[:-1] and states[-1] == "COMPLETED", states
    assert 3 <= k < 100 and res["metrics"]["steps"] == 100 and res["metrics"]["world_size"] == 2
    losses = _losses(sub.run_dir)
    assert len(losses) == 100 and losses[0] == 123.0, losses[:3]
    job = read_json(sub.run_dir / "env.json")["job"]
    assert job["state"] == "done" and job["restarts"] >= 1 and job["tasks"] == 2
    print(f"\n2 SLURM tasks requeued at checkpoint step {k}, resumed to 100 ({len(states) - 1} requeue(s))")
