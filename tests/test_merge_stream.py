"""Streamed whole-model merges: equal to the in-memory merge, loadable by open_clip, checked before writing."""
import json
import shutil
import struct

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.testing import assert_close

from clipwb.core import ConfigError, DataError
from clipwb.io import read_json, write_json
from clipwb.merge.methods import MergeError, merge
from clipwb.merge.stream import CONFIG, WEIGHTS, TensorFile, merge_models


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    from clipwb.models import create_model, save_model
    root = tmp_path_factory.mktemp("models")
    return [save_model(create_model("clipwb-micro", seed=s), root / f"m{s}") for s in range(4)]


def sds(dirs):
    return [load_file(str(d / WEIGHTS)) for d in dirs]


def grams_for(sd, seed):
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in sd.items():
        if k.endswith(("mlp.c_fc.weight", "mlp.c_proj.weight", "attn.in_proj_weight", "attn.out_proj.weight")):
            x = rng.normal(size=(2 * v.shape[1], v.shape[1]))
            out[k] = torch.tensor(x.T @ x)
    x = rng.normal(size=(200, sd["visual.proj"].shape[0]))
    out["visual.proj"] = torch.tensor(x.T @ x)                   # in_out layout: x @ P
    return out


CASES = [("linear", {"weights": [0.2, 0.3, 0.5]}), ("uniform_soup", {}), ("task_arithmetic", {"lam": 0.4}),
         ("ties", {"density": 0.2, "lam": 0.8}), ("ties", {"density": 0.5, "scope": "per_tensor", "merge_func": "sum"})]


@pytest.mark.parametrize("method,kw", CASES, ids=lambda c: c if isinstance(c, str) else "-".join(map(str, c.values())))
def test_stream_equals_in_memory(dirs, tmp_path, method, kw):
    base = dirs[0] if method in ("task_arithmetic", "ties") else None
    out = merge_models(method, dirs[1:], base=base, out=tmp_path / "out", chunk_mb=0.02, **kw)   # slices ≪ tensors
    s = sds(dirs)
    want = merge(method, s[1:], base=s[0] if base else None, **kw)
    got = load_file(str(out / WEIGHTS))
    assert set(got) == set(want)
    assert_close(got, want, rtol=0, atol=0)


def test_stream_regmean_and_fisher_from_files(dirs, tmp_path):
    s = sds(dirs[:3])
    grams = [grams_for(sd, i) for i, sd in enumerate(s)]
    gpaths = []
    for i, g in enumerate(grams):
        save_file(g, str(tmp_path / f"g{i}.safetensors")); gpaths.append(tmp_path / f"g{i}.safetensors")
    out = merge_models("regmean", dirs[:3], grams=gpaths, alpha=0.9, out=tmp_path / "rm", chunk_mb=0.05)
    assert_close(load_file(str(out / WEIGHTS)), merge("regmean", s, grams=grams, alpha=0.9), rtol=1e-6, atol=1e-6)
    fishers = [{k: torch.rand(v.shape, generator=torch.Generator().manual_seed(i)) for k, v in sd.items()
                if k.startswith("visual.")} for i, sd in enumerate(s)]
    save_file(fishers[1], str(tmp_path / "f1.safetensors"))            # a dict, a file and a dict
    out = merge_models("fisher", dirs[:3], fishers=[fishers[0], tmp_path / "f1.safetensors", fishers[2]],
                       out=tmp_path / "fi", chunk_mb=0.02)
    assert_close(load_file(str(out / WEIGHTS)), merge("fisher", s, fishers=fishers), rtol=0, atol=0)


def test_open_clip_round_trip(dirs, tmp_path):
    """open_clip's own local-dir loader reads the streamed file; its state dict equals the in-memory merge."""
    import open_clip
    out = merge_models("task_arithmetic", dirs[1:3], base=dirs[0], lam=0.5, out=tmp_path / "ta", chunk_mb=0.05)
    model = open_clip.create_model(f"local-dir:{out}")
    s = sds(dirs[:3])
    assert_close(model.state_dict(), merge("task_arithmetic", s[1:], base=s[0], lam=0.5), rtol=0, atol=0)
    assert read_json(out / CONFIG) == read_json(dirs[0] / CONFIG)
    with safe_open(str(out / WEIGHTS), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "pt" and json.loads(meta["clipwb.merge"])["lam"] == 0.5
    n = struct.unpack("<Q", (out / WEIGHTS).read_bytes()[:8])[0]
    assert n % 8 == 0                                           # header padded as safetensors writes it


def test_fp16_models_stay_fp16(dirs, tmp_path):
    half = []
    for i, d in enumerate(dirs[:3]):
        h = tmp_path / f"h{i}"; h.mkdir()
        shutil.copy(d / CONFIG, h / CONFIG)
        save_file({k: v.half() if v.is_floating_point() else v for k, v in load_file(str(d / WEIGHTS)).items()},
                  str(h / WEIGHTS), metadata={"format": "pt"})
        half.append(h)
    out = merge_models("ties", half[1:], base=half[0], density=0.3, out=tmp_path / "o", chunk_mb=0.05)
    got, s = load_file(str(out / WEIGHTS)), sds(half)
    assert {v.dtype for v in got.values() if v.is_floating_point()} == {torch.float16}
    assert_close(got, merge("ties", s[1:], base=s[0], density=0.3), rtol=0, atol=0)


def test_shape_mismatch_named_before_writing(dirs, tmp_path):
    bad = tmp_path / "bad"; shutil.copytree(dirs[1], bad)
    sd = load_file(str(bad / WEIGHTS)); sd["ln_final.weight"] = torch.ones(5)
    save_file(sd, str(bad / WEIGHTS))
    with pytest.raises(MergeError, match=rf"'ln_final.weight': shape \(5,\) in {bad} but \(32,\) in {dirs[0]}"):
        merge_models("linear", [dirs[0], bad], out=tmp_path / "o")
    assert not (tmp_path / "o" / WEIGHTS).exists()


def test_missing_key_and_config_mismatch(dirs, tmp_path):
    bad = tmp_path / "bad"; shutil.copytree(dirs[1], bad)
    sd = load_file(str(bad / WEIGHTS)); del sd["logit_scale"]
    save_file(sd, str(bad / WEIGHTS))
    with pytest.raises(MergeError, match="'logit_scale'.*missing from"):
        merge_models("linear", [dirs[0], bad], out=tmp_path / "o")
    other = tmp_path / "other"; shutil.copytree(dirs[1], other)
    cfg = read_json(other / CONFIG); cfg["model_cfg"]["embed_dim"] = 64; write_json(other / CONFIG, cfg)
    with pytest.raises(MergeError, match="another architecture"):
        merge_models("linear", [dirs[0], other], out=tmp_path / "o")
    with pytest.raises(DataError, match="not a model folder"):
        merge_models("linear", [dirs[0], tmp_path / "nowhere"], out=tmp_path / "o")
    with pytest.raises(ConfigError, match="`base` is required"):
        merge_models("ties", dirs[:2], out=tmp_path / "o")
    with pytest.raises(ConfigError, match="unknown keyword"):
        merge_models("linear", dirs[:2], out=tmp_path / "o", lam=2)
    with pytest.raises(ConfigError, match="scope must be"):
        merge_models("ties", dirs[1:3], base=dirs[0], out=tmp_path / "o", scope="layer")
    assert not (tmp_path / "o" / WEIGHTS).exists()


def test_failure_mid_merge_leaves_no_file(dirs, tmp_path):
    """A singular Gram on a late key fails after earlier tensors were written: the atomic write leaves nothing."""
    s = sds(dirs[:2])
    last = [k for k in s[0] if k.endswith("mlp.c_proj.weight")][-1]
    g = [{last: torch.zeros(s[0][last].shape[1], s[0][last].shape[1], dtype=torch.float64)}] * 2
    out = tmp_path / "o"
    with pytest.raises(MergeError, match="singular"):
        merge_models("regmean", dirs[:2], grams=g, out=out)
    assert not (out / WEIGHTS).exists() and not list(out.glob(".*tmp"))


def test_tensor_file_reads_rows(tmp_path):
    t = {"a": torch.arange(24, dtype=torch.float32).reshape(6, 4), "s": torch.tensor(3, dtype=torch.int64)}
    save_file(t, str(tmp_path / "t.safetensors"))
    with TensorFile(tmp_path / "t.safetensors") as f:
        assert_close(f.read("a", rows=(2, 5)), t["a"][2:5])
        assert f.read("s").item() == 3 and f.shapes() == {"a": (6, 4), "s": ()}
