"""merge_sweep with an MoE model folder as input: its experts, as dense models, equal the models the MoE was built
from (bit for bit); a one-hot linear merge gives expert k back; a sweep over the MoE equals the sweep over those
models for every method; an MoE base and an mcl run folder are refused with a pointer to what to pass."""
import copy
import json

import pytest
import torch

from clipwb.core import ConfigError

EVAL = dict(domains=["shapes"], limit=16, batch_size=16, stats_limit=8, heldout_limit=8, diagnostics=False)


@pytest.fixture(scope="module")
def experts(tmp_path_factory):
    """Models A, B that differ from the seeded micro base only in their MLPs (as MCL stage models), and from_experts(A,
    B)."""
    from clipwb.models import create_model, save_model
    from clipwb.moe.build import from_experts
    d = tmp_path_factory.mktemp("experts")
    base, dirs = create_model("clipwb-micro"), []
    for i in (1, 2):
        m, g = copy.deepcopy(base), torch.Generator().manual_seed(i)
        with torch.no_grad():
            for n, p in m.named_parameters():
                if ".mlp." in n:
                    p.add_(0.05 * torch.randn(p.shape, generator=g))
        dirs.append(str(save_model(m, d / f"m{i}")))
    return dirs, str(save_model(from_experts(dirs, top_k=1), d / "moe"))


def test_expert_views_are_the_models_the_moe_was_built_from(experts):
    from clipwb.io import load_tensors
    from clipwb.models import create_model
    from clipwb.moe.build import expert_state_dict
    dirs, moe_dir = experts
    moe = create_model(moe_dir)                       # loaded back from its folder
    for k, d in enumerate(dirs):
        want, got = load_tensors(f"{d}/open_clip_model.safetensors"), expert_state_dict(moe, k)
        assert sorted(got) == sorted(want)
        assert all(torch.equal(got[n], want[n]) for n in want), k
    a, b = (load_tensors(f"{d}/open_clip_model.safetensors") for d in dirs)
    assert any(not torch.equal(a[n], b[n]) for n in a)    # so a swapped expert would be caught


def test_one_hot_linear_merge_gives_expert_k(experts):
    from clipwb.merge.methods import merge
    from clipwb.models import create_model
    from clipwb.merge.collapse import dense_state_dict
    from clipwb.moe.build import expert_state_dict
    moe = create_model(experts[1])
    views = [expert_state_dict(moe, k) for k in (0, 1)]
    for k in (0, 1):
        w = [float(i == k) for i in (0, 1)]
        for got in (merge("linear", views, weights=w), dense_state_dict(moe, "linear", weights=w)):
            assert all(torch.equal(got[n], views[k][n]) for n in views[k]), k


def _records(d):
    from clipwb.io import read_json
    return {(r["method"], json.dumps(r["params"], sort_keys=True)): r["domains"] for r in read_json(d / "sweep.json")}


def test_sweep_over_moe_experts_equals_sweep_over_its_models(experts, tmp_path):
    """Oracle: the same sweep (every method, base θ_0 the seeded micro model) over A and B directly."""
    from clipwb.merge.sweep import DEFAULT_METHODS, MergeSweepCfg, run_merge_sweep
    dirs, moe_dir = experts
    grids = dict(merge_ratio=[0.0, 0.5, 1.0], lam=[1.0], density=[0.5], alpha=[1.0])
    got, want = ({}, {})
    for out, models in ((got, [moe_dir]), (want, dirs)):
        cfg = MergeSweepCfg.tiny(models=models, base="clipwb-micro", methods=list(DEFAULT_METHODS), **grids, **EVAL)
        run_merge_sweep(cfg, tmp_path / str(len(models)))
        out.update(_records(tmp_path / str(len(models))))
    assert len(got) == 2 + 1 + 3 + 1 + 1 + 1 + 1 + 1 + 1 and got.keys() == want.keys()
    for key, doms in want.items():
        g, w = got[key]["shapes"], doms["shapes"]
        assert g["metrics"].keys() == w["metrics"].keys(), key
        assert g["metrics"] == pytest.approx(w["metrics"], abs=1e-6), key
        assert g["n_samples"] == w["n_samples"]
    assert got[("input", '{"model": 0}')] != got[("input", '{"model": 1}')]
    assert got[("linear", '{"merge_ratio": 1.0}')] == got[("input", '{"model": 0}')]     # one-hot (1, 0): expert 0


def test_moe_counts_as_its_experts_and_base_must_be_dense(experts, tmp_path):
    from clipwb.merge.sweep import MergeSweepCfg, input_names, sweep_inputs
    dirs, moe_dir = experts
    assert sweep_inputs([moe_dir, dirs[0]]) == [(moe_dir, 0), (moe_dir, 1), (dirs[0], None)]
    assert input_names([(moe_dir, 1)]) == [f"{moe_dir} (expert 1)"]
    assert (MergeSweepCfg.tiny(models=[moe_dir], base=None, methods=["uniform_soup"]).inputs()
            == [(moe_dir, 0), (moe_dir, 1)])
    with pytest.raises(ConfigError, match="is an MoE model; task vectors need one dense θ_0.*clipwb.merge.collapse"):
        MergeSweepCfg.tiny(models=dirs, base=moe_dir)
    with pytest.raises(ConfigError, match="'linear' interpolates 2 models .* got 4"):
        MergeSweepCfg.tiny(models=[moe_dir, moe_dir], base=None, methods=["linear"])
    with pytest.raises(ConfigError, match="one card per model \\(2 inputs\\)"):
        MergeSweepCfg.tiny(models=[moe_dir], base=None, methods=["regmean"], stats_domains=["shapes"])
    (tmp_path / "experts.json").write_text(json.dumps({"models": dirs}))
    (tmp_path / "stages.json").write_text("{}")
    with pytest.raises(ConfigError, match="folder of an mcl run; list its stage models"):
        MergeSweepCfg.tiny(models=[str(tmp_path), dirs[0]], base=None, methods=["uniform_soup"])


def test_planned_moe_folder_is_counted_when_the_sweep_starts(experts, tmp_path):
    """A pipeline may plan a sweep over a folder that does not exist yet: it counts as one input then, its experts at
    run time."""
    import shutil
    from clipwb.merge.sweep import MergeSweepCfg, run_merge_sweep
    dirs, moe_dir = experts
    later = tmp_path / "later"
    cfg = MergeSweepCfg.tiny(models=[str(later), *dirs], base=None, methods=["linear"], merge_ratio=[0.5], **EVAL)
    shutil.copytree(moe_dir, later)
    with pytest.raises(ConfigError, match="got 4[;a-z ]"):
        run_merge_sweep(cfg, tmp_path / "sweep")
    assert not (tmp_path / "sweep" / "points").exists()


def test_merge_models_refuses_an_moe_beside_a_dense_model(experts, tmp_path):
    """The streaming merger works tensor by tensor on models of one kind; a mix is refused with a pointer to the
    sweep."""
    from clipwb.merge.methods import MergeError
    from clipwb.merge.stream import merge_models
    dirs, moe_dir = experts
    with pytest.raises(MergeError, match="moe is an MoE model and .*m1 a dense one: .*merge_sweep stage"):
        merge_models("uniform_soup", [dirs[0], moe_dir], out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_merge_models_of_moe_models_is_an_moe_model(experts, tmp_path):
    """Two MoE folders of one shape merge expert by expert: the soup of an MoE with itself is that MoE (a loadable MoE
    folder)."""
    from clipwb.merge.stream import merge_models
    from clipwb.models import create_model, moe_config
    _, moe_dir = experts
    out = merge_models("uniform_soup", [moe_dir, moe_dir], out=tmp_path / "out")
    assert moe_config(out) == moe_config(moe_dir)
    a, b = create_model(out).state_dict(), create_model(moe_dir).state_dict()
    assert sorted(a) == sorted(b) and all(torch.allclose(a[k], b[k], atol=1e-7) for k in a)
