"""Every path-valued parameter, list elements included, is resolved against the caller's working directory when it is
validated, and a missing one is named with the absolute path checked and the runs root in use."""
import json
import os
from pathlib import Path

import pytest

from clipwb.core import ConfigError
from clipwb.runs import plan_run, stage_config


def _mcl_like(folder: Path) -> Path:
    "A folder with experts.json listing two saved micro models (what an mcl run leaves), relative to the folder."
    from clipwb.models import create_model, save_model
    m = create_model("clipwb-micro")
    for s in ("stage0", "stage1"): save_model(m, folder / s)
    (folder / "experts.json").write_text(json.dumps({"models": ["stage0", "stage1"]}))
    return folder


def test_moe_experts_validated_absolute_from_another_cwd(tmp_path, monkeypatch):
    "`MoeCfg.validate_params` records a relative experts folder (and each list element) absolute, as typed."
    (tmp_path / "runs" / "mcl" / "r1").mkdir(parents=True)
    other = tmp_path / "elsewhere"; other.mkdir()
    monkeypatch.chdir(tmp_path)
    cls = stage_config("moe")
    assert cls.validate_params({"experts": "runs/mcl/r1"}) == {"experts": [str(tmp_path / "runs/mcl/r1")]}
    assert (cls.validate_params({"experts": "./a,runs/mcl/r1,clipwb-micro"})["experts"]
            == [str(tmp_path / "a"), str(tmp_path / "runs/mcl/r1"), "clipwb-micro"])   # a name stays a name
    monkeypatch.chdir(other)
    assert cls.validate_params({"experts": "../runs/mcl/r1"}) == {"experts": [str(tmp_path / "runs/mcl/r1")]}


def test_every_path_field_resolved_at_validation(tmp_path, monkeypatch):
    "Not one stage's code: every declared path field of every stage, scalar or list, is absolute after validation."
    from clipwb.config import PATH_KINDS, ref_fields
    from clipwb.runs import stage_names
    (tmp_path / "d").mkdir()
    monkeypatch.chdir(tmp_path)
    seen = 0
    for s in stage_names():
        cls = stage_config(s)
        for name, meta in ref_fields(cls).items():
            if meta["clipwb_ref"] not in PATH_KINDS: continue
            tp = str(cls.field_types()[name])
            v = cls.validate_params({name: "./d,./d" if "list" in tp else "./d"})[name]
            assert v == ([str(tmp_path / "d")] * 2 if "list" in tp else str(tmp_path / "d")), (s, name, v)
            seen += 1
    assert seen > 10


def test_missing_experts_element_names_the_absolute_path_and_runs_root(tmp_path, monkeypatch):
    "A typo in one element of a path list fails at validation: status 2, no run folder, the path checked and the root."
    _mcl_like(tmp_path / "runs" / "mcl" / "good")
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "myruns"
    with pytest.raises(ConfigError) as e:
        plan_run("moe", {"experts": "runs/mcl/good/stage0,runs/mcl/god/stage1"}, root=root)
    msg = str(e.value)
    assert "item 1" in msg and f"not found: {tmp_path / 'runs/mcl/god/stage1'}" in msg and str(root) in msg
    assert not root.exists()


@pytest.mark.e2e
def test_moe_cli_with_relative_experts(tmp_path):
    "`clipwb run moe -p experts <relative mcl-like folder>` (and the list form) runs: the notebook gets it absolute."
    import yaml
    from e2e_helpers import clipwb
    work = tmp_path / "work"; work.mkdir()
    _mcl_like(work / "runs" / "mcl" / "r1")
    root = tmp_path / "runs"
    small = ["-p", "max_steps", "1", "-p", "data_limit", "16", "-p", "batch_size", "8", "-p", "eval_limit", "8",
             "-p", "routing_limit", "8", "-p", "baseline", "false", "-p", "device", "cpu"]
    cwd = os.getcwd()
    try:
        os.chdir(work)
        for experts in ("runs/mcl/r1", "runs/mcl/r1/stage0,runs/mcl/r1/stage1"):
            r = clipwb("run", "moe", "-p", "experts", experts, *small, root=root)
            out = json.loads(r.stdout[r.stdout.index("{"):])
            rd = Path(out["run_dir"])
            assert out["metrics"]["num_experts"] == 2 and rd.parent == root / "moe"
            got = yaml.safe_load((rd / "params.yaml").read_text())["experts"]
            assert got == [str(work / e) for e in experts.split(",")]
    finally: os.chdir(cwd)
