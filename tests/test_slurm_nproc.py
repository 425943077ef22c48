"""A stage under torchrun: `clipwb run train … --nproc 2` (two CPU processes, gloo) plans one run dir, rank 0 alone
writes metrics and artifacts, the other rank executes its own copy of the notebook under ranks/1/; the same runs
as a job (`Resources(nproc=2)`, what `submit --gpus-per-node 2` does on a GPU node) through the local executor."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clipwb.io import read_json
from clipwb.jobs import Resources, submit_stage, wait

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e
ARGS = ["train", "-p", "model", "clipwb-micro", "-p", "data", "shapes", "-p", "batch_size", "4",
        "-p", "data_limit", "16", "-p", "max_steps", "2", "-p", "device", "cpu"]


def test_run_train_nproc2(tmp_path):
    out = subprocess.run([sys.executable, "-m", "clipwb", "run", *ARGS, "--nproc", "2", "--runs", str(tmp_path)],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    res = json.loads(out.stdout)
    run = Path(res["run_dir"])
    assert [p for p in (tmp_path / "train").iterdir()] == [run]       # planned once, not per process
    m = read_json(run / "metrics.json")
    assert m["world_size"] == 2 and m["steps"] == 2 and m["n_samples"] == 16
    assert (run / "model" / "open_clip_model.safetensors").is_file() and (run / "train.ipynb").is_file()
    rank1 = run / "ranks" / "1"
    assert (rank1 / "train.ipynb").is_file()
    assert not any(rank1.glob("metrics.json")) and not (rank1 / "model").exists() and not (rank1 / "figures").exists()


def test_submit_nproc2_local(tmp_path):
    (sub,) = submit_stage("train", {"model": "clipwb-micro", "data": "shapes", "batch_size": 4, "data_limit": 16,
                                    "max_steps": 2, "device": "cpu", "seed": 1},
                          executor="local", root=tmp_path, folder=tmp_path / "sub", res=Resources(nproc=2))
    (res,) = wait([sub])
    assert res["metrics"]["world_size"] == 2 and (sub.run_dir / "ranks" / "1" / "train.ipynb").is_file()
    assert read_json(sub.run_dir / "env.json")["job"]["resources"]["nproc"] == 2
