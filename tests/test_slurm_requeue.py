"""A SLURM job stopped in the middle of a stage and requeued resumes its run: shown end to end on the one-node
cluster of tools/slurm_local.sh (the cases skip, saying why, when no controller answers).

An embed job of 300 samples in shards of 20 is stopped once two shards are on disk, in one of three ways:
- `requeue`: `scontrol requeue` (SLURM sends SIGTERM, then SIGKILL, and queues the job again);
- `usr2`: SIGUSR2 sent by `scancel --signal`, as a preempting cluster or `#SBATCH --signal=USR2@…` sends it:
  submitit calls `StageJob.checkpoint`, rewrites the job's pickle, requeues the job and exits;
- `time_limit`: a real time limit of 2 minutes with the default SIGUSR2 30 s before it (slurmctld checks limits every
  30 s and sends the signal up to 30 s earlier still, so a requeued attempt has 60 to 90 s). The stage's kernel is
  frozen (SIGSTOP) after the two shards so that the first attempt is surely unfinished when the signal comes.
The job must come back under the same job id and finish the run. Oracles: SLURM's accounting records the requeue
and the job log names the path taken; the shard files written before the stop are the same files at the end
(mtimes); the last attempt embedded at most the samples those shards did not hold; every id of the dataset is there
once, in order. Round trips are printed (`pytest -s`), not asserted."""
import os
import signal
import subprocess
import time

import pytest

from clipwb.io import complete_shards, load_embeddings, read_json, shard_paths
from clipwb.jobs import Resources, run_state, run_status, submit_stage, wait
from test_slurm import executor  # noqa: F401  (the fixture; importing test_slurm also points SLURM_CONF at the local cluster)

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]
N, SHARD = 300, 20
EMBED = {"data": "shapes", "limit": N, "shard_size": SHARD, "batch_size": 20}
STOPS = {  # how the job is stopped → (resources, sbatch lines, what the job's log says)
    "requeue": (Resources(), ["#SBATCH --signal=USR2@30"], "Bypassing signal SIGTERM"),
    "usr2": (Resources(), ["#SBATCH --signal=USR2@30"], "this job is preempted"),
    "time_limit": (Resources(time=2), ["#SBATCH --time=2", "#SBATCH --signal=USR2@30"], "this job is timed-out"),
}


NOT_ENDED = {"PENDING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED"}


def _sacct_states(job_id: str, wait: float = 120) -> list[str]:
    "Every record SLURM keeps of the job (-D: one per run, a requeued run included), oldest first, once it has ended."
    deadline = time.monotonic() + wait
    while True:   # the result file is written before the job's process exits and accounting hears of it; slurmctld
        # sends the requeued run's record and the last run's record to slurmdbd separately, so a query in between
        # sees ['REQUEUED'] alone (seen once in CI): wait for a last record that is an end state
        out = subprocess.run(["sacct", "-D", "-X", "-n", "-P", "-j", job_id, "-o", "State"], capture_output=True,
                             text=True)
        states = out.stdout.split()
        if states and states[-1] not in NOT_ENDED or time.monotonic() > deadline: return states
        time.sleep(0.5)


def _stop_after_two_shards(sub, stop: str) -> dict[str, int]:
    "Wait for two complete shards, snapshot the mtimes of every complete shard's files, then stop the job."
    emb, deadline = sub.run_dir / "embeddings", time.monotonic() + 300
    while len(complete_shards(emb)) < 2:
        assert time.monotonic() < deadline and run_state(sub.run_dir) != "failed", run_status(sub.run_dir)
        assert not (sub.run_dir / "metrics.json").exists(), "the run finished before it could be stopped"
        time.sleep(0.1)
    if stop == "time_limit":   # the kernel holding the run's writer lock wrote its pid there
        os.kill(int((sub.run_dir / ".writer-0.lock").read_text()), signal.SIGSTOP)
    before = {p.name: p.stat().st_mtime_ns for i in complete_shards(emb) for p in shard_paths(emb, i).values()}
    if stop == "requeue": subprocess.run(["scontrol", "requeue", sub.job_id], check=True)
    if stop == "usr2": subprocess.run(["scancel", "--signal=USR2", sub.job_id], check=True)
    return before


@pytest.mark.parametrize("stop", list(STOPS))
def test_stopped_job_is_requeued_and_resumes(executor, tmp_path, stop):  # noqa: F811  (`executor` is the imported fixture)
    from clipwb.data.datasets import load_dataset
    res_, lines, said = STOPS[stop]
    t0 = time.perf_counter()
    (sub,) = submit_stage("embed", EMBED, executor=executor, res=res_, root=tmp_path / "runs", folder=tmp_path / "sub")
    try:
        script = sub.job.paths.submission_file.read_text()
        assert all(line in script.splitlines() for line in lines), script
        pickle_before = sub.job.paths.submitted_pickle.stat().st_mtime_ns
        before = _stop_after_two_shards(sub, stop)
        t_stop = time.perf_counter()
        (res,) = wait([sub])
        t_end = time.perf_counter()
    finally:
        if not sub.job.done(): sub.job.cancel(check=False)

    states = _sacct_states(sub.job_id)
    assert "REQUEUED" in states[:-1] and states[-1] == "COMPLETED", states
    assert said in sub.job.paths.stderr.read_text()
    m, emb = res["metrics"], sub.run_dir / "embeddings"
    assert (sub.run_dir / "metrics.json").is_file() and m["n_embedded"] == N and m["n_shards"] == N // SHARD
    assert all((emb / name).stat().st_mtime_ns == t for name, t in before.items()), (
        "a shard done before the stop was rewritten")
    # the last attempt did only what was missing (none, when the first attempt wrote the rest before the requeue hit)
    assert 0 <= m["new_samples"] <= N - SHARD * (len(before) // 3), m
    ids = list(load_embeddings(emb)[2]["id"])
    assert ids == list(load_dataset("shapes", "train").ids[:N])        # each id once, in the dataset's order
    job = read_json(sub.run_dir / "env.json")["job"]
    assert job["state"] == "done" and job["job_id"] == sub.job_id and job["restarts"] == len(states) - 1, (job, states)
    # on SIGUSR2 submitit called StageJob.checkpoint and wrote the call to requeue over the job's pickle
    assert (sub.job.paths.submitted_pickle.stat().st_mtime_ns != pickle_before) == (stop != "requeue")
    print(f"\nslurm {stop} after {len(before) // 3} shards: submit → metrics {t_end - t0:.1f} s "
          f"(stop → metrics {t_end - t_stop:.1f} s), {len(states) - 1} requeue(s), last attempt embedded "
          f"{m['new_samples']} of {N}")
