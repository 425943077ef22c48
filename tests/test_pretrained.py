"""Pretrained weights, offline: a weights file the test writes (safetensors, weights-only torch), recorded init,
clear errors before work for tags that are not downloaded, and no silent random ViT."""
import json
import os

import pytest
import torch
from safetensors.torch import save_file

from clipwb.core import ConfigError
from clipwb.eval.run import EvalCfg, run_eval
from clipwb.models import create_model, save_model
from clipwb.runs import plan_run, start_run


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    "A clipwb-micro state dict (seed 5) as safetensors, as a torch file, and as a model folder (the oracle)."
    d = tmp_path_factory.mktemp("w")
    m = create_model("clipwb-micro", seed=5)
    sd = {k: v.contiguous() for k, v in m.state_dict().items()}
    save_file(sd, d / "micro.safetensors")
    torch.save(sd, d / "micro.pt")
    torch.save({"state_dict": sd, "run": os.system}, d / "code.pt")   # a pickled function: code
    save_model(m, d / "dir")
    return d


@pytest.mark.parametrize("fname", ["micro.safetensors", "micro.pt"])
def test_eval_with_pretrained_file_equals_the_same_weights_as_a_folder(tmp_path, weights, fname):
    f = weights / fname
    got = run_eval(EvalCfg.tiny(pretrained=str(f), limit=16), tmp_path / "a").metrics
    ref = run_eval(EvalCfg.tiny(model=str(weights / "dir"), limit=16), tmp_path / "b").metrics
    rnd = run_eval(EvalCfg.tiny(limit=16), tmp_path / "c").metrics
    assert got["init"] == f"pretrained:{f}" and ref["init"] == f"dir:{weights / 'dir'}" and rnd["init"] == "random"
    num = lambda m: {k: v for k, v in m.items() if isinstance(v, float)}
    assert num(got) == num(ref) and num(got) != num(rnd)


def test_pickled_code_refused(weights):
    with pytest.raises(ConfigError, match="could not be loaded"):
        create_model("clipwb-micro", pretrained=str(weights / "code.pt"))


def test_init_recorded_before_work(tmp_path, weights, monkeypatch):
    monkeypatch.chdir(weights)
    cfg, rd, _ = plan_run("eval", {"pretrained": "micro.safetensors"}, root=tmp_path)   # relative file: resolved
    assert cfg.pretrained == str(weights / "micro.safetensors")   # a file the user named relative to their folder
    start_run(cfg, rd)
    assert json.loads((rd / "env.json").read_text())["init"] == {"model": f"pretrained:{weights / 'micro.safetensors'}"}


def test_offline_tag_not_downloaded_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as e:
        plan_run("eval", {"model": "ViT-B-32", "pretrained": "openai"}, root=tmp_path)
    msg = str(e.value)
    assert "'openai' of ViT-B-32 are not downloaded" in msg and "offline" in msg and "looked in" in msg
    assert not any(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="needs weights"):   # no silent random ViT-B-32
        plan_run("eval", {"model": "ViT-B-32"}, root=tmp_path)
    assert plan_run("eval", {"model": "ViT-B-32", "pretrained": "none"}, root=tmp_path)[2] == "new"
    from clipwb.config import resolve_path
    assert resolve_path("openai", "name_or_path") == "openai"          # a tag stays a tag
