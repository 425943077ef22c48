"""One rule for where runs go — `--runs`, else `$CLIPWB_RUNS`, else `./runs` in the working directory, from a checkout
as from a wheel — and every command that writes or lists runs says which root it uses, and why, as its first line."""
import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clipwb.core import ConfigError, runs_dir

DEFAULT = "(./runs in the working directory; --runs or CLIPWB_RUNS to change)"


def _cli(cwd, *args, **env):
    e = {k: v for k, v in os.environ.items() if k != "CLIPWB_RUNS"}
    e.update(env)
    return subprocess.run([sys.executable, "-m", "clipwb", *args], cwd=cwd, env=e, capture_output=True, text=True,
                          timeout=300)


def test_runs_go_to_the_working_directory_not_the_checkout(tmp_path, monkeypatch):
    "clipwb is imported from a checkout here; run from another folder, its runs go to that folder's ./runs."
    from clipwb.jobs import submitted_runs
    from clipwb.runs import plan_run
    monkeypatch.delenv("CLIPWB_RUNS", raising=False)
    monkeypatch.chdir(tmp_path)
    assert runs_dir() == tmp_path.resolve() / "runs"
    assert plan_run("prepare", {"data": "shapes", "limit": 4})[1].parent == tmp_path.resolve() / "runs" / "prepare"
    (tmp_path / "runs" / "prepare" / "x").mkdir(parents=True)
    (tmp_path / "runs" / "prepare" / "x" / "job.json").write_text('{"submitted": 1}')
    assert submitted_runs() == [tmp_path / "runs" / "prepare" / "x"]


@pytest.mark.parametrize("args", [["run", "train", "-p", "data", "no_such_card"],
                                  ["submit", "train", "-p", "data", "no_such_card"],
                                  ["pipeline", "run", "no_such_file.yaml"],
                                  ["status"]])
def test_every_command_says_the_runs_root_first(tmp_path, args):
    "Typed in a folder without CLIPWB_RUNS: the first line names <folder>/runs and why, before any error."
    r = _cli(tmp_path, *args)
    assert r.stderr.splitlines()[0] == f"runs root: {tmp_path.resolve() / 'runs'} {DEFAULT}", r.stderr[-2000:]
    assert r.returncode == (0 if args == ["status"] else 2)


def test_the_first_line_names_clipwb_runs_and_runs_flag(tmp_path):
    r = _cli(tmp_path, "run", "train", "-p", "data", "no_such_card", CLIPWB_RUNS="env-runs")
    assert r.stderr.splitlines()[0] == (f"runs root: {tmp_path.resolve() / 'env-runs'} (CLIPWB_RUNS=env-runs; "
                                        "--runs overrides it)")
    r = _cli(tmp_path, "run", "train", "-p", "data", "no_such_card", "--runs", "mine", CLIPWB_RUNS="env-runs")
    assert r.stderr.splitlines()[0] == f"runs root: {tmp_path.resolve() / 'mine'} (--runs mine)"
    assert not any(tmp_path.iterdir())                      # refused before work: no runs folder anywhere


def test_demo_says_the_runs_root_first(tmp_path, monkeypatch):
    "clipwb demo (a pipeline like any other) prints the line before its pipeline starts."
    import clipwb.cli as cli
    monkeypatch.delenv("CLIPWB_RUNS", raising=False)
    monkeypatch.chdir(tmp_path)
    seen = []
    def fake(pipe, root=None, **kw):
        seen.append(root); raise ConfigError("stopped here")
    monkeypatch.setattr(cli, "run_pipeline", fake)
    err = io.StringIO()
    with contextlib.redirect_stderr(err): assert cli.main(["demo", "--quick"]) == 2
    assert err.getvalue().splitlines()[0] == f"runs root: {tmp_path.resolve() / 'runs'} {DEFAULT}"
    assert seen == [None] and "stopped here" in err.getvalue()


def test_a_pipeline_records_its_runs_root(tmp_path, monkeypatch):
    "pipeline.json says which root the pipeline used and why (a complete step is only recorded, not rerun)."
    from clipwb.io import read_json
    from clipwb.pipeline import run_pipeline
    from clipwb.runs import run_step
    monkeypatch.delenv("CLIPWB_RUNS", raising=False)
    monkeypatch.chdir(tmp_path)
    run_step("prepare", {"data": "shapes", "limit": 4}, root=tmp_path / "runs")
    out = run_pipeline({"name": "p", "steps": [{"name": "a", "stage": "prepare",
                                                "params": {"data": "shapes", "limit": 4}}]}, report=False)
    assert out.parent.parent == tmp_path.resolve() / "runs"
    rec = read_json(out / "pipeline.json")
    assert rec["runs_root"] == f"runs root: {tmp_path.resolve() / 'runs'} {DEFAULT}"
    assert [s["status"] for s in rec["steps"]] == ["skipped (complete)"]


def test_gitignore_covers_runs_folders_anywhere():
    "Notebooks run in JupyterLab have their own folder as working directory: a runs/ there stays untracked too."
    root = Path(__file__).resolve().parents[1]
    for path in ("runs/x", "nbs/runs/x", "nbs/tutorials/runs/x", "nbs/stages/runs/x"):
        r = subprocess.run(["git", "check-ignore", "-q", path], cwd=root, capture_output=True)
        if r.returncode == 128: pytest.skip("not a git checkout")
        assert r.returncode == 0, f"{path} is not git-ignored"
