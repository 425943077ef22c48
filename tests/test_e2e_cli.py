"""End to end, each in its own runs root: parameter checks, a failing cell, a killed run that resumes, the stage
listing."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2e_helpers import clipwb

pytestmark = pytest.mark.e2e


def test_bad_parameters_rejected_before_running(tmp_path):
    r = clipwb("run", "embed", "-p", "shard_sise", "3", root=tmp_path, check=False)
    assert r.returncode == 2 and "unknown parameter(s) ['shard_sise']" in r.stderr
    r = clipwb("run", "embed", "-p", "limit", "lots", root=tmp_path, check=False)
    assert r.returncode == 2 and "'limit'" in r.stderr
    assert not any(tmp_path.rglob("*.ipynb"))


def test_failing_cell_keeps_notebook(tmp_path):
    "A model folder whose weights file is damaged passes validation (the files are there) and fails in the kernel."
    from clipwb.models import create_model, save_model
    bad = save_model(create_model("clipwb-micro"), tmp_path / "damaged")
    (bad / "open_clip_model.safetensors").write_bytes(b"not a safetensors file")
    r = clipwb("run", "embed", "-p", "model", str(bad), "-p", "limit", "8", root=tmp_path, check=False)
    assert r.returncode == 1, r.stderr
    nbs = list((tmp_path / "embed").glob("*/embed.ipynb"))
    assert len(nbs) == 1 and "Traceback" in nbs[0].read_text()
    assert "executed notebook with the traceback" in r.stderr
    assert not (nbs[0].parent / "metrics.json").exists()


def test_killed_embed_resumes_without_loss_or_duplicates(tmp_path):
    """SIGKILL the CLI's process group after the second shard, rerun: every id exactly once, as in an uninterrupted run.

    The kernel runs in its own session and outlives the kill for up to a second, still writing shards: the rerun's
    kernel must wait for it (the run folder's writer lock) rather than write beside it."""
    params = ["-p", "data", "shapes", "-p", "limit", "600", "-p", "shard_size", "20", "-p", "batch_size", "20"]
    env = {**os.environ, "CLIPWB_RUNS": str(tmp_path / "a")}
    p = subprocess.Popen([sys.executable, "-m", "clipwb", "run", "embed", *params], env=env, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list((tmp_path / "a").rglob("metadata_00001.parquet")):
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    run_dir = next((tmp_path / "a" / "embed").iterdir())
    assert not (run_dir / "metrics.json").exists(), "the run finished before it could be killed"
    r = clipwb("run", "embed", *params, root=tmp_path / "a")
    out = json.loads(r.stdout[r.stdout.index("{"):])
    assert Path(out["run_dir"]) == run_dir and out["metrics"]["new_samples"] < 600
    rb = clipwb("run", "embed", *params, root=tmp_path / "b").stdout
    ref = json.loads(rb[rb.index("{"):])
    from clipwb.io import load_embeddings
    import numpy as np
    ia, ta, ma = load_embeddings(run_dir / "embeddings")
    ib, tb, mb = load_embeddings(Path(ref["run_dir"]) / "embeddings")
    assert ma["id"].is_unique and list(ma["id"]) == list(mb["id"]) and len(ma) == 600
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_array_equal(ta, tb)


def test_stages_listing(tmp_path):
    r = clipwb("stages", root=tmp_path)
    for st in ("prepare", "train", "embed", "eval", "cluster", "merge_sweep"):
        assert f"\n{st}  (" in "\n" + r.stdout
    assert "-p shard_size <int>  default 64  samples per shard" in r.stdout
