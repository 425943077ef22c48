"""MoE layer oracles: sorted dispatch (loop and grouped_mm) against the all-experts reference, forward and
gradients; identity oracles (identical experts, one expert); balance loss closed forms and a NumPy re-implementation."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from clipwb.models import create_model, get_tokenizer
from clipwb.models.moe import MoEMLP, apply_moe, load_balancing_loss, moe_layers_of, router_z_loss
from clipwb.moe.build import upcycle

HAS_GROUPED = hasattr(torch.nn.functional, "grouped_mm") or hasattr(torch, "_grouped_mm")


def _moe(E=4, k=2, d=16, renormalize=True, dispatch="loop", seed=0):
    torch.manual_seed(seed)
    m = MoEMLP(d, 4 * d, E, top_k=k, renormalize=renormalize, dispatch=dispatch)
    for e in m.experts:   # experts that differ
        nn.init.normal_(e.c_fc.weight, std=0.3); nn.init.normal_(e.c_fc.bias, std=0.3); nn.init.normal_(e.c_proj.bias)
    nn.init.normal_(m.router.weight)
    return m


def _grads(m, y):
    m.zero_grad()
    y.pow(2).sum().backward()
    return {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("dispatch", ["loop"] + (["grouped"] if HAS_GROUPED else []))
@pytest.mark.parametrize("E,k,renormalize", [(4, 2, True), (4, 2, False), (3, 1, True), (5, 3, True), (4, 4, False)])
def test_dispatch_equals_all_experts_reference(dispatch, E, k, renormalize):
    m = _moe(E, k, renormalize=renormalize, dispatch=dispatch)
    ref = copy.deepcopy(m)
    h = torch.randn(2, 37, 16, requires_grad=True)
    y = m(h)
    h2 = h.detach().clone().requires_grad_(True)
    yr = ref.reference(h2.reshape(-1, 16)).reshape(h.shape)
    torch.testing.assert_close(y, yr, rtol=1e-5, atol=1e-5)
    g, gr = _grads(m, y), _grads(ref, yr)
    assert set(g) == set(gr) and "router.weight" in g
    for n in g: torch.testing.assert_close(g[n], gr[n], rtol=1e-5, atol=1e-5, msg=n)
    torch.testing.assert_close(h.grad, h2.grad, rtol=1e-5, atol=1e-5)


def test_dispatch_with_an_empty_expert():
    m = _moe(4, 1)
    with torch.no_grad(): m.router.weight.zero_(); m.router.weight[0, 0] = 50   # tokens with h_0 > 0 → expert 0
    h = torch.randn(20, 16).abs()
    torch.testing.assert_close(m(h), m.reference(h), rtol=1e-5, atol=1e-5)


def test_dispatch_is_deterministic():
    m = _moe(4, 2)
    h = torch.randn(300, 16)
    assert torch.equal(m(h), m(h))


def test_grouped_fallback_warns_once_and_records_the_path(monkeypatch):
    import clipwb.models.moe as M
    monkeypatch.setattr(M, "_WARNED", set())
    m = _moe(3, 2, d=6)   # fp32 rows of 24 bytes: grouped_mm wants strides that are multiples of 16 bytes
    m.dispatch = "grouped"
    h = torch.randn(20, 6)
    with pytest.warns(RuntimeWarning, match="fell back to the expert loop") as rec:
        y = m(h); m(h); m(h)
    assert len([w for w in rec if "fell back" in str(w.message)]) == 1
    assert m.path == "loop (fallback)" and "width 6" in m.fallback
    torch.testing.assert_close(y, m.reference(h), rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(M, "GROUPED_MM", None)   # a torch without any grouped matmul
    with pytest.warns(RuntimeWarning, match="has no grouped_mm"): _moe(dispatch="grouped")(torch.randn(5, 16))


@pytest.mark.skipif(not HAS_GROUPED, reason="torch has no grouped_mm")
def test_grouped_inference_stacks_the_expert_weights_once(monkeypatch):
    m = _moe(dispatch="grouped").eval()
    h = torch.randn(40, 16)
    calls, stack = [], torch.stack
    monkeypatch.setattr(torch, "stack", lambda *a, **k: calls.append(1) or stack(*a, **k))
    with torch.no_grad():
        y1 = m(h); first = len(calls)
        y2 = m(h); assert len(calls) == first and m.path == "grouped"   # second forward: no stack at all
        m.experts[2].c_proj.bias.add_(1.0)                                 # an in-place update invalidates the cache
        y3 = m(h); assert len(calls) > first
    assert first == 4 and torch.equal(y1, y2) and not torch.equal(y2, y3)
    torch.testing.assert_close(y3, m.reference(h), rtol=1e-5, atol=1e-5)
    keys = {f"experts.{i}.{n}.{w}" for i in range(4) for n in ("c_fc", "c_proj") for w in ("weight", "bias")}
    assert set(m.state_dict()) == keys | {"router.weight"}   # the cache is no state: the external layout is unchanged


@pytest.mark.skipif(not HAS_GROUPED, reason="torch has no grouped_mm")
def test_grouped_under_autocast_computes_in_the_autocast_dtype():
    """bf16 autocast on CPU: grouped and loop both compute in bf16 (same dtype, no fallback), equal up to bf16
    rounding (outputs within 3e-2 of values of order 1; 8-bit mantissa, two matmuls of width 16 and 64)."""
    m = _moe(dispatch="grouped")
    loop = copy.deepcopy(m); loop.dispatch = "loop"
    h = torch.randn(50, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, yl = m(h), loop(h)
    assert m.path == "grouped" and m.fallback is None
    assert y.dtype == yl.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), yl.float(), rtol=3e-2, atol=3e-2)


def test_one_expert_top1_equals_dense_block():
    dense = create_model("clipwb-micro")
    moe = apply_moe(copy.deepcopy(dense), num_experts=1, top_k=1)
    x = torch.randn(3, 3, 32, 32)
    t = get_tokenizer("clipwb-micro")(["a red square", "a circle", "x"])
    with torch.no_grad():
        assert torch.equal(moe.encode_image(x), dense.encode_image(x))
        assert torch.equal(moe.encode_text(t), dense.encode_text(t))


@pytest.mark.parametrize("seed", [0, 1])
def test_identical_experts_equal_dense_whatever_the_router(seed):
    dense = create_model("clipwb-micro")
    moe = upcycle(dense, 4, top_k=2, seed=seed)
    torch.manual_seed(seed)
    for _, layer in [p for ls in moe_layers_of(moe).values() for p in ls]:
        nn.init.normal_(layer.router.weight, std=5.0)   # any router
    x = torch.randn(3, 3, 32, 32)
    t = get_tokenizer("clipwb-micro")(["a red square", "a circle", "x"])
    with torch.no_grad():   # identical experts: Σ_j w_j f(h) = f(h) up to rounding of Σ w_j = 1
        torch.testing.assert_close(moe.encode_image(x), dense.encode_image(x), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(moe.encode_text(t), dense.encode_text(t), rtol=1e-6, atol=1e-6)


def test_moe_on_every_block_of_both_towers_runs():
    model = apply_moe(create_model("clipwb-tiny"), num_experts=3, top_k=2, moe_layers=100)
    layers = moe_layers_of(model)
    assert len(layers["image"]) == len(model.visual.transformer.resblocks) == 4
    assert len(layers["text"]) == len(model.transformer.resblocks) == 4
    assert model.visual.transformer.resblocks[0].get_weight_dtype() == torch.float32   # open_clip reads mlp.c_fc
    with torch.no_grad():
        img = model.encode_image(torch.randn(2, 3, 64, 64))
        txt = model.encode_text(get_tokenizer("clipwb-tiny")(["a", "b c"]))
    assert img.shape == (2, 128) and txt.shape == (2, 128) and torch.isfinite(img).all()
    recs = model.moe_routing.records
    assert len(recs["image"]) == 4 and len(recs["text"]) == 4
    assert recs["text"][0].mask.reshape(2, -1).sum(1).tolist() == [3, 4]   # SOT + words + EOT, padding masked
    kind = recs["image"][0].kind.reshape(2, -1)
    assert kind[:, 0].tolist() == [0, 0] and bool((kind[:, 1:] == 1).all())


def test_text_moe_layers_clamped_to_depth():
    model = apply_moe(create_model("clipwb-micro"), num_experts=2, top_k=1, moe_layers=1)
    layers = moe_layers_of(model)
    assert [i for i, _ in layers["image"]] == [1] and [i for i, _ in layers["text"]] == [1]


# ---- load-balancing loss ------------------------------------------------------------------------

def _np_balance(logits, masks, k, aggregate="pooled"):
    "The loss by explicit loops: over all layers' kept tokens together ('pooled'), or per layer then averaged."
    zs = [np.asarray(z, np.float64)[np.asarray(m, bool)] for z, m in zip(logits, masks)]
    out = []
    for z in ([np.concatenate(zs)] if aggregate == "pooled" else zs):
        p = np.exp(z - z.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
        T, E = p.shape
        order = np.argsort(-p, axis=1, kind="stable")[:, :k]
        f = np.zeros((k, E))
        for t in range(T):
            for j in range(k): f[j, order[t, j]] += 1 / T
        out.append(E * (f * p.mean(0)).sum())
    return float(np.mean(out))


@pytest.mark.parametrize("E,k", [(4, 1), (4, 2), (8, 2), (3, 3)])
def test_balance_loss_closed_forms(E, k):
    # balance: uniform probabilities with every expert chosen equally often in each rank j
    T = E * 6
    z = torch.zeros(T, E)
    for t in range(T):
        for j in range(k): z[t, (t + j) % E] = 1e-4 * (k - j)   # tiny preference: rank j → expert t+j
    assert load_balancing_loss([z, z], top_k=k).item() == pytest.approx(k, rel=1e-3)
    # collapse: every token puts (almost) all probability on expert 0
    zc = torch.full((T, E), -40.0); zc[:, 0] = 40
    assert load_balancing_loss([zc], top_k=k).item() == pytest.approx(E, rel=1e-4)


def test_balance_loss_matches_numpy_with_masks():
    g = torch.Generator().manual_seed(0)
    logits = [torch.randn(50, 6, generator=g) * 2 for _ in range(3)]
    masks = [torch.rand(50, generator=g) > 0.3 for _ in range(3)]
    for k in (1, 2, 3):
        for agg in ("pooled", "layer_mean"):
            got = load_balancing_loss(logits, top_k=k, mask=masks, aggregate=agg).item()
            assert got == pytest.approx(_np_balance(logits, masks, k, agg), rel=1e-5)
    # masked tokens count nowhere: dropping them gives the same value
    kept = [z[m] for z, m in zip(logits, masks)]
    assert load_balancing_loss(kept, top_k=2).item() == pytest.approx(
        load_balancing_loss(logits, top_k=2, mask=masks).item(), rel=1e-6)


def test_balance_loss_ignores_text_padding_in_the_model():
    model = apply_moe(create_model("clipwb-micro"), num_experts=4, top_k=2)
    tok = get_tokenizer("clipwb-micro")
    from clipwb.models.moe import moe_aux_loss
    model.eval()
    model.encode_text(tok(["a red square"]))
    short = moe_aux_loss(model, beta=1.0)[1]["balance_text"]
    model.encode_text(tok(["a red square"]))   # same text, same loss
    assert moe_aux_loss(model, beta=1.0)[1]["balance_text"] == pytest.approx(short)
    recs = model.moe_routing.records["text"]
    z = [r.logits[r.mask] for r in recs]
    assert short == pytest.approx(load_balancing_loss(z, top_k=2).item(), rel=1e-6)
    assert int(recs[0].mask.sum()) == 5 and recs[0].mask.numel() == 16


def test_router_z_loss():
    z = torch.zeros(10, 4)
    assert router_z_loss([z]).item() == pytest.approx(np.log(4) ** 2, rel=1e-6)
