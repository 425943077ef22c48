"""Progress you can watch: a headless stage's loops keep `progress.json` in its run folder (read here from another
process while the stage runs) and write plain lines to its log; `clipwb status` prints the line of an incomplete run;
`wait` (so `clipwb pipeline run` and `clipwb demo`) logs each new line of the step it waits for; the interrupt that
comes with every kernel shutdown is no ERROR in the job log."""
import os
import re
import subprocess
import sys
import time

import pytest
import yaml

from clipwb.io import read_json, write_json
from clipwb.progress import PROGRESS_FILE, Progress, read_progress, set_run_dir


def _local_job(rd, tmp_path, submitted=1.0):
    "A job.json of a local job whose process has ended."
    dead = subprocess.Popen([sys.executable, "-c", "pass"]); dead.wait()
    write_json(rd / "job.json", {"executor": "local", "job_id": str(dead.pid), "folder": str(tmp_path),
                                 "stderr": str(tmp_path / "job.err"), "stdout": str(tmp_path / "job.out"),
                                 "submitted": submitted})


def test_status_prints_the_progress_line_of_an_incomplete_run(tmp_path, capsys):
    from clipwb.cli import main
    rd = tmp_path / "train" / "20260101T000000000Z-0123abcd"; rd.mkdir(parents=True)
    _local_job(rd, tmp_path)
    set_run_dir(rd)
    try:
        bar = Progress(total=240, desc="train", unit="step", every=3600)
        time.sleep(0.05)
        bar.set_postfix(loss="2.310"); bar.update(120)
        from clipwb.progress import report
        report()   # what the throttle does every 15 s
        assert main(["status", str(rd)]) == 0
        out = capsys.readouterr().out.splitlines()
        bar.close()
    finally: set_run_dir(None)
    assert out[0].startswith(f"{rd}  job ") and "run incomplete" in out[0], out
    assert re.fullmatch(r"  progress: train 120/240 steps, [\d.]+ step/s, ETA \d+ s, loss 2\.310 \(\d+ s ago\)",
                        out[1]), out
    (rd / "metrics.json").write_text("{}")      # complete: no progress line
    assert main(["status", str(rd)]) == 0
    assert [ln for ln in capsys.readouterr().out.splitlines() if "progress" in ln] == []


def test_wait_logs_each_new_progress_line_of_the_job(tmp_path, caplog):
    "Records written before the submission (an earlier attempt) are not shown; each new one is shown once."
    from clipwb.jobs import Submission, wait
    rd = tmp_path / "run"; rd.mkdir()
    write_json(rd / PROGRESS_FILE, {"line": "train 9/9 steps (an earlier attempt)", "updated": time.time() - 60})
    _local_job(rd, tmp_path, submitted=time.time() - 30)

    class Job:   # runs for 8 polls, writing a new progress record on polls 2, 4 and 6
        job_id, polls = "1", 0
        def done(self):
            self.polls += 1
            if self.polls in (2, 4, 6):
                write_json(rd / PROGRESS_FILE, {"line": f"train {self.polls // 2}/3 steps", "updated": time.time()})
            return self.polls > 8
        def result(self): return {"stage": "train"}

    with caplog.at_level("INFO", logger="clipwb.jobs"):
        assert wait([Submission("train", rd, "new", "local", Job())], poll=0.01) == [{"stage": "train"}]
    assert [r.getMessage() for r in caplog.records if r.name == "clipwb.jobs"] == [
        "train: train 1/3 steps", "train: train 2/3 steps", "train: train 3/3 steps"]


@pytest.mark.e2e
def test_a_pipeline_step_reports_progress_while_it_runs(tmp_path):
    "`clipwb pipeline run` of one train step (a local job running the stage notebook in a papermill kernel)."
    pipe = tmp_path / "watch.yaml"
    pipe.write_text(yaml.safe_dump({"name": "watch", "steps": [
        {"name": "train", "stage": "train", "params": {   # 400 steps: a few seconds, so the pipeline polls it running
            "data": "shapes", "max_steps": 400, "data_limit": 96, "batch_size": 8, "epochs": 100}}]}))
    env = {**os.environ, "CLIPWB_PROGRESS_EVERY": "0", "CLIPWB_RUNS": str(tmp_path / "runs")}
    with open(tmp_path / "cli.err", "w") as err:
        p = subprocess.Popen([sys.executable, "-m", "clipwb", "pipeline", "run", str(pipe)], env=env, cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=err)
        ns, t0 = [], time.monotonic()
        while p.poll() is None and time.monotonic() - t0 < 300:   # read by this process while the stage runs
            for rd in (tmp_path / "runs" / "train").glob("*"):
                rec = read_progress(rd) if (rd / PROGRESS_FILE).is_file() else None
                if rec and rec["bars"] and rec["bars"][-1]["desc"] == "train" and p.poll() is None:
                    n = rec["bars"][-1]["n"]
                    if not ns or ns[-1] != n: ns.append(n)
            time.sleep(0.02)
        assert p.wait(timeout=60) == 0, (tmp_path / "cli.err").read_text()[-3000:]
    assert len(ns) >= 3 and ns == sorted(ns), ns           # it advanced while the stage ran, and never went back
    (rd,) = (tmp_path / "runs" / "train").glob("*")
    final = read_json(rd / PROGRESS_FILE)
    assert final["done"] and final["line"].startswith("train 400/400 steps, ") and "done in" in final["line"], final
    # the pipeline's terminal shows the step's progress as it goes
    cli = (tmp_path / "cli.err").read_text()
    shown = re.findall(r"INFO clipwb.pipeline: watch: train: train (\d+)/400 steps", cli)
    assert len(set(shown)) >= 2, cli[-3000:]
    # the job's log holds the kernel's progress lines and no ERROR (the shutdown interrupt is filtered)
    log = open(read_json(rd / "job.json")["stderr"]).read()
    done = r"^progress: train 400/400 steps, [\d.]+ step/s, done in [^,]+, loss \d\.\d{3}, epoch \d+$"
    assert re.search(done, log, re.M), log[-3000:]
    assert "ERROR" not in log and "KeyboardInterrupt" not in log, log[-3000:]


def test_status_of_a_run_started_with_clipwb_run(tmp_path, capsys):
    "A run that was not submitted has no job: `clipwb status` reads its progress record and whether its process lives."
    from clipwb.cli import main
    rd = tmp_path / "train" / "20260101T000000000Z-0123abcd"; rd.mkdir(parents=True)
    (rd / "params.yaml").write_text("max_steps: 240\n")
    set_run_dir(rd)
    try:
        bar = Progress(total=240, desc="train", unit="step", every=3600)
        bar.update(60)
        from clipwb.progress import report
        report()
        assert main(["status", str(rd)]) == 0
        out = capsys.readouterr().out.splitlines()
        bar.close()
    finally: set_run_dir(None)
    assert out[0] == f"{rd}  not submitted, process {os.getpid()} running, run incomplete", out
    assert out[1].startswith("  progress: train 60/240 steps"), out
    rec = read_json(rd / PROGRESS_FILE); rec["pid"] = 2**22 + 12345; write_json(rd / PROGRESS_FILE, rec)  # gone
    assert main(["status", str(rd)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"{rd}  not submitted, run incomplete"
    assert main(["status", str(tmp_path)]) != 0 and "is not a run folder" in capsys.readouterr().err
