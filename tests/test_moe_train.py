"""Router training through the train stage: only router parameters change, the balance loss is in the metrics;
an MoE model folder loads through clipwb.models.create_model."""
import copy

import pytest
import torch

from clipwb.io import load_tensors
from clipwb.models import create_model, get_tokenizer, save_model
from clipwb.merge.collapse import collapse
from clipwb.moe.build import from_experts, upcycle
from clipwb.models.moe import has_moe
from clipwb.train import TrainCfg, run_train


@pytest.fixture(scope="module")
def expert_dirs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("experts")
    base = create_model("clipwb-micro")
    dirs = [save_model(base, tmp / "base")]
    for i in (1, 2):
        m = copy.deepcopy(base)
        torch.manual_seed(i)
        with torch.no_grad():
            for n, p in m.named_parameters():
                if ".mlp." in n: p.add_(0.1 * torch.randn_like(p))
        dirs.append(save_model(m, tmp / f"ft{i}"))
    return dirs


def test_moe_dir_loads_through_create_model(expert_dirs, tmp_path):
    moe = from_experts(expert_dirs, top_k=2)
    d = save_model(moe, tmp_path / "moe")
    back = create_model(d)
    assert has_moe(back) and back.clipwb_config["moe"]["num_experts"] == 3
    x = torch.randn(2, 3, 32, 32)
    t = get_tokenizer(d)(["a red square", "a blue circle"])
    with torch.no_grad():
        assert torch.equal(back.encode_image(x), moe.encode_image(x))
        assert torch.equal(back.encode_text(t), moe.encode_text(t))


def test_experts_json_run_dir(expert_dirs, tmp_path):
    from clipwb.io import write_json
    from clipwb.moe.build import expert_models as resolve
    write_json(tmp_path / "experts.json", {"models": [str(d) for d in expert_dirs]})
    assert resolve(tmp_path) == [str(d.resolve()) for d in expert_dirs]
    assert resolve([str(tmp_path)]) == resolve(str(tmp_path))   # the CLI passes a one-item list
    from clipwb.moe.run import MoeCfg
    with pytest.raises(Exception, match="top_k"): MoeCfg(experts=[str(tmp_path)], top_k=4).check()
    MoeCfg(experts=[str(tmp_path)], top_k=3).check()


@pytest.mark.parametrize("lock,changed", [("router", {"router"}), (r"router,\.mlp\.experts\.", {"router", "experts"})])
def test_router_only_training_changes_only_routers(expert_dirs, tmp_path, lock, changed):
    moe = from_experts(expert_dirs, top_k=2, dropout=0.1)
    d = save_model(moe, tmp_path / "moe")
    cfg = TrainCfg(model=str(d), trainable=lock, max_steps=2, batch_size=8, data_limit=16, lr=1e-2, warmup=1,
                   logit_scale=100.0, label_smoothing=0.1, moe_beta=0.01, device="cpu")
    res = run_train(cfg, tmp_path / "run")
    before = load_tensors(d / "open_clip_model.safetensors")
    after = load_tensors(tmp_path / "run" / "model" / "open_clip_model.safetensors")
    diff = {k for k in before if not torch.equal(before[k], after[k])} - {"logit_scale"}   # fixed to 100, not trained
    assert diff, "nothing was trained"
    assert all(".mlp.router." in k or (".mlp.experts." in k and "experts" in changed) for k in diff), sorted(diff)[:5]
    assert any(".mlp.experts." in k for k in diff) == ("experts" in changed)
    assert after["logit_scale"].item() == pytest.approx(torch.log(torch.tensor(100.0)).item())
    m = res.metrics
    # between k = 2 and E = 3 ± routing
    assert 1.0 <= m["moe/balance_image"] <= 3.0 and 1.0 <= m["moe/balance_text"] <= 3.0
    assert m["moe/dispatch"] == "loop (4 layers)"   # 'auto' on CPU: the loop, on every MoE layer of both towers
    assert has_moe(create_model(tmp_path / "run"))


def test_collapse_of_from_experts_is_the_mlp_average(expert_dirs):
    moe = from_experts(expert_dirs, top_k=2)
    dense = collapse(moe, "uniform_soup")
    sds = [load_tensors(d / "open_clip_model.safetensors") for d in expert_dirs]
    k = "visual.transformer.resblocks.1.mlp.c_fc.weight"
    torch.testing.assert_close(dense.state_dict()[k], sum(sd[k] for sd in sds) / 3)
    k2 = "visual.transformer.resblocks.1.attn.in_proj_weight"
    assert torch.equal(dense.state_dict()[k2], sds[0][k2])
    up = collapse(upcycle(expert_dirs[1], 2), "linear", weights=[0.3, 0.7])
    torch.testing.assert_close(up.state_dict()[k], sds[1][k])
