"""Paths as the user typed them: relative model/init/embeddings/… and relative runs roots, resolved against the caller's
cwd."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clipwb.config import ref_fields
from clipwb.core import ConfigError
from clipwb.runs import plan_run, stage_config, start_run


def _cli(cwd, *args, runs="runs", check=True):
    "`clipwb …` run in `cwd` with a *relative* CLIPWB_RUNS, as a user would type it."
    env = {**os.environ, "CLIPWB_RUNS": runs}
    r = subprocess.run([sys.executable, "-m", "clipwb", *args], cwd=cwd, capture_output=True, text=True, env=env,
                       timeout=600)
    if check and r.returncode:
        raise AssertionError(f"clipwb {' '.join(args)} → {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return json.loads(r.stdout[r.stdout.index("{"):]) if check else r


def test_relative_model_resolved_from_cwd_before_hashing(tmp_path, monkeypatch):
    """plan_run sees `model runs/train/x` from the caller's folder: absolute in the config, so the hash names that
    folder."""
    from clipwb.models import create_model, save_model
    monkeypatch.chdir(tmp_path)
    save_model(create_model("clipwb-micro"), tmp_path / "runs" / "m" / "model")
    cfg, rd, status = plan_run("eval", {"model": "runs/m", "limit": "8"}, root="rel-runs")
    assert cfg.model == str(tmp_path / "runs" / "m") and status == "new"
    assert rd.is_absolute() and rd.parent == tmp_path / "rel-runs" / "eval"
    start_run(cfg, rd)
    assert yaml.safe_load((rd / "params.yaml").read_text())["model"] == str(tmp_path / "runs" / "m")
    assert json.loads((rd / "env.json").read_text())["init"] == {"model": f"dir:{tmp_path / 'runs' / 'm' / 'model'}"}
    sub = tmp_path / "elsewhere"; sub.mkdir(); monkeypatch.chdir(sub)
    # the same text from another folder is another folder
    with pytest.raises(ConfigError, match="model folder not found"):
        plan_run("eval", {"model": "runs/m"}, root=tmp_path / "rel-runs")
    assert (plan_run("eval", {"model": str(tmp_path / "runs" / "m"), "limit": 8}, root=tmp_path / "rel-runs")[1:]
            == (rd, "resume"))
    monkeypatch.chdir(tmp_path)
    # a fine-tune's init, also relative
    cfg = plan_run("train", {"init": "runs/m", "max_steps": 1}, root="rel-runs")[0]
    assert cfg.init == str(tmp_path / "runs" / "m")


def test_path_fields_declared_on_configs():
    """Every parameter that names a model, run folder or card is declared as such (metadata), not listed by name
    elsewhere."""
    assert {"model", "init", "data"} <= set(ref_fields(stage_config("train")))
    assert {"model", "data"} <= set(ref_fields(stage_config("eval")))
    assert {"models", "base", "domains", "stats_domains"} <= set(ref_fields(stage_config("merge_sweep")))


@pytest.mark.e2e
def test_readme_chain_with_relative_paths(tmp_path):
    """README: train, then `clipwb run eval -p model runs/train/<run>` typed literally from the user's folder, relative
    runs root."""
    work = tmp_path / "work"; work.mkdir()
    tr = _cli(work, "run", "train", "-p", "data", "shapes", "-p", "model", "clipwb-micro", "-p", "max_steps", "2",
              "-p", "batch_size", "8", "-p", "data_limit", "16")
    run = Path(tr["run_dir"])
    assert run.parent == work / "runs" / "train" and tr["metrics"]["init"] == "random"
    rel = os.path.relpath(run, work)                       # runs/train/<time>-<hash>, as the README writes it
    ev = _cli(work, "run", "eval", "-p", "model", rel, "-p", "data", "shapes", "-p", "limit", "16",
              "-p", "tasks", "retrieval",
              "--runs", "other-runs")                   # a relative --runs: resolved once, from the caller's folder
    ev_dir = Path(ev["run_dir"])
    assert ev_dir.parent == work / "other-runs" / "eval" and ev["metrics"]["init"] == f"dir:{run / 'model'}"
    assert yaml.safe_load((ev_dir / "params.yaml").read_text())["model"] == str(run)
    assert not list(run.rglob("*runs")) and not list(ev_dir.rglob("*runs"))   # nothing nested inside a run folder
    # from elsewhere: not that folder
    r = _cli(tmp_path, "run", "eval", "-p", "model", rel, "-p", "limit", "8", check=False)
    assert r.returncode == 2 and "model folder not found" in r.stderr and not (tmp_path / "runs").exists()


@pytest.mark.e2e
@pytest.mark.skipif("embeddings" not in ref_fields(stage_config("cluster")),
                    reason="ClusterCfg/EmbedCfg do not declare their path fields yet (path_field in nbs/38 and nbs/16)")
def test_readme_cluster_with_relative_embeddings(tmp_path):
    """README: `clipwb run cluster -p embeddings runs/embed/<run>` typed literally from the user's folder."""
    work = tmp_path / "work"; work.mkdir()
    em = _cli(work, "run", "embed", "-p", "data", "shapes", "-p", "limit", "32", "-p", "shard_size", "16")
    rel = os.path.relpath(em["run_dir"], work)
    cl = _cli(work, "run", "cluster", "-p", "embeddings", rel, "-p", "k", "2", "-p", "niter", "3",
              "-p", "map_points", "0", "-p", "stability_seeds", "1")
    assert Path(cl["run_dir"]).parent == work / "runs" / "cluster"
    assert yaml.safe_load((Path(cl["run_dir"]) / "params.yaml").read_text())["embeddings"] == em["run_dir"]
