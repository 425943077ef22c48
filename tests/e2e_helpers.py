"""Helpers for the end-to-end tests: the `clipwb` CLI in a subprocess against a given runs root."""
import json
import os
import subprocess
import sys
from pathlib import Path


def clipwb(*args, root, check=True, timeout=600):
    env = {**os.environ, "CLIPWB_RUNS": str(root)}
    r = subprocess.run([sys.executable, "-m", "clipwb", *args], capture_output=True, text=True, env=env,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"clipwb {' '.join(args)} → {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def run(stage, root, /, **params):
    """`clipwb run stage` with `params` over the stage's smoke sizes (`XCfg.smoke`: the defaults are the real job)."""
    from clipwb.runs import stage_config
    args = ["run", stage]
    for k, v in {**stage_config(stage).smoke, **params}.items():
        args += ["-p", k, str(v)]
    r = clipwb(*args, root=root)
    out = json.loads(r.stdout[r.stdout.index("{"):])
    run_dir = Path(out["run_dir"])
    assert out["metrics"] == json.loads((run_dir / "metrics.json").read_text())
    for f in ("params.yaml", "config.json", "env.json", "artifacts.json", f"{stage}.ipynb"):
        assert (run_dir / f).is_file(), f"{stage}: {f} missing"
    assert run_dir.parent == root / stage
    return out


def mlp_experts(folder) -> list[Path]:
    "Two clipwb-micro model folders under `folder` (e0, e1) that differ in their MLP weights only: MoE experts."
    import copy
    import torch
    from clipwb.models import create_model, save_model
    base = create_model("clipwb-micro")
    m = copy.deepcopy(base)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if ".mlp." in n: p.add_(0.05 * torch.randn_like(p))
    return [save_model(base, Path(folder) / "e0"), save_model(m, Path(folder) / "e1")]
