"""Oracles for merge statistics (RegMean grams, diagonal Fisher) and merge diagnostics (distances, cosines, curves)."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F


@pytest.fixture(scope="module")
def micro():
    from clipwb.models import create_model
    return create_model("clipwb-micro")


@pytest.fixture(scope="module")
def batches():
    from clipwb.models import get_tokenizer
    tok = get_tokenizer("clipwb-micro")
    g = torch.Generator().manual_seed(1)
    caps = [["a red circle", "a very small blue square on a striped yellow background", "x"],
            ["green", "two large purple triangles", "a cross"]]
    return [(torch.randn(3, 3, 32, 32, generator=g), tok(c)) for c in caps]


def _expected_keys(model):
    """Linear maps listed from the module tree, independently of clipwb.merge.stats."""
    keys = set()
    for n, m in model.named_modules():
        if isinstance(m, torch.nn.MultiheadAttention):
            keys |= {f"{n}.in_proj_weight", f"{n}.out_proj.weight"}
        elif type(m) is torch.nn.Linear:
            keys.add(f"{n}.weight")
    return keys | {n for n, p in model.named_parameters() if n in ("visual.proj", "text_projection")}


def _oracle_grams(model, batches, *, exclude_padding):
    """float64 model: inputs captured by hooks; out_proj's input solved from the native attention output."""
    model = copy.deepcopy(model).double()
    no_vproj, no_tproj = copy.deepcopy(model), copy.deepcopy(model)   # towers returning the pooled features
    no_vproj.visual.proj, no_tproj.text_projection = None, None
    cap, state = {}, {"mask": None}

    def put(k, x):
        x = x.detach()
        if state["mask"] is not None and not k.startswith("visual."):
            x = x[state["mask"]]
        cap.setdefault(k, []).append(x.reshape(-1, x.shape[-1]))

    hooks = []
    for n, m in model.named_modules():
        if isinstance(m, torch.nn.MultiheadAttention):
            hooks.append(m.register_forward_pre_hook(lambda mod, a, n=n: put(f"{n}.in_proj_weight", a[0])))

            def post(mod, a, out, n=n):   # y = z W_oᵀ + b  =>  z = (y − b) W_o⁻ᵀ
                y = out[0] - mod.out_proj.bias
                put(f"{n}.out_proj.weight", torch.linalg.solve(mod.out_proj.weight, y.reshape(-1, y.shape[-1]).T).T
                    .reshape(y.shape))
            hooks.append(m.register_forward_hook(post))
        elif type(m) is torch.nn.Linear:
            hooks.append(m.register_forward_pre_hook(lambda mod, a, n=n: put(f"{n}.weight", a[0])))
    vis_in, txt_in = {}, {}
    with torch.no_grad():
        for im, tk in batches:
            im = im.double()
            feats = model.encode_image(im)
            state["mask"] = (torch.arange(tk.shape[1]) <= tk.argmax(-1)[:, None]) if exclude_padding else None
            tfeats = model.encode_text(tk)
            state["mask"] = None
            vis_in.setdefault("x", []).append(no_vproj.encode_image(im))
            txt_in.setdefault("x", []).append(no_tproj.encode_text(tk))
            assert torch.allclose(vis_in["x"][-1] @ model.visual.proj, feats)
            assert torch.allclose(txt_in["x"][-1] @ model.text_projection, tfeats)
    for h in hooks:
        h.remove()
    cap["visual.proj"], cap["text_projection"] = vis_in["x"], txt_in["x"]
    grams = {k: torch.cat(v).T @ torch.cat(v) for k, v in cap.items()}
    return grams, {k: sum(len(x) for x in v) for k, v in cap.items()}


def test_gram_keys_cover_every_linear_map(micro, batches):
    from clipwb.merge.stats import collect_grams, linear_weight_keys
    g = collect_grams(micro, batches)
    assert set(g) == _expected_keys(micro) == set(linear_weight_keys(micro))
    assert len(g) == 2 * 2 * 4 + 2


@pytest.mark.parametrize("padding", ["exclude", "include"])
def test_grams_match_brute_force(micro, batches, padding):
    from clipwb.merge.stats import collect_grams
    ref, counts = _oracle_grams(micro, batches, exclude_padding=padding == "exclude")
    m64, b64 = copy.deepcopy(micro).double(), [(i.double(), t) for i, t in batches]
    g64 = collect_grams(m64, b64, precision="float64", text_padding=padding)
    g32 = collect_grams(micro, batches, text_padding=padding)
    assert g64.counts == counts == g32.counts
    for k in ref:
        torch.testing.assert_close(g64[k], ref[k], rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(g32[k], ref[k], rtol=1e-4, atol=1e-4)
        assert torch.equal(g64[k], g64[k].T)
    n_txt = sum(int((t != 0).sum()) for _, t in batches)   # non-pad tokens = positions up to end-of-text
    assert counts["transformer.resblocks.0.mlp.c_fc.weight"] == (n_txt if padding == "exclude" else 6 * 16)
    assert counts["visual.transformer.resblocks.1.attn.out_proj.weight"] == 6 * 17


def test_float32_partial_sums_flushed(micro, batches, monkeypatch):
    """Flushing the float32 buffers into float64 after every call changes nothing beyond float32 rounding."""
    from clipwb.merge import stats
    ref = stats.collect_grams(micro, batches, precision="float64")
    monkeypatch.setattr(stats, "_FLUSH_ROWS", 4)
    g = stats.collect_grams(micro, batches * 3)
    for k in ref:
        torch.testing.assert_close(g[k], 3 * ref[k], rtol=1e-4, atol=1e-4)
    assert g.normalized()["visual.proj"].allclose(ref["visual.proj"] / 6)


def test_collect_grams_leaves_model_unchanged(batches):
    from clipwb.merge.stats import collect_grams
    from clipwb.models import create_model
    m = create_model("clipwb-micro").train()
    m.transformer.resblocks[1].eval()
    sd = copy.deepcopy(m.state_dict())
    params = dict(m.named_parameters())
    with torch.no_grad():
        ref = m.encode_text(batches[0][1])
    for bad in (False, True):
        if bad:
            with pytest.raises(Exception):
                collect_grams(m, [(batches[0][0], torch.zeros(3, 40, dtype=torch.long))])  # too long: fails mid-forward
        else:
            collect_grams(m, batches)
        assert list(m.state_dict()) == list(sd)
        assert all(torch.equal(v, sd[k]) for k, v in m.state_dict().items())
        assert dict(m.named_parameters()).keys() == params.keys()
        assert all(p is params[k] for k, p in m.named_parameters())
        assert m.training and not m.transformer.resblocks[1].training and m.transformer.resblocks[0].training
        assert all(not x._forward_pre_hooks and not x._forward_hooks and "forward" not in x.__dict__
                   for x in m.modules())
        assert all(p.grad is None for p in m.parameters())
        with torch.no_grad():
            torch.testing.assert_close(m.encode_text(batches[0][1]), ref)


def test_fisher_logistic_closed_form():
    from clipwb.merge.stats import fisher_diagonal
    torch.manual_seed(3)
    model = torch.nn.Linear(1, 1)
    data = [(torch.randn(4, 1), torch.randint(0, 2, (4,)).float()) for _ in range(5)]
    loss = lambda m, x, y, reduction="mean": F.binary_cross_entropy_with_logits(m(x)[:, 0], y, reduction=reduction)
    w, b = model.weight.item(), model.bias.item()
    gb, gs = [], []
    for x, y in data:
        r = 1 / (1 + np.exp(-(w * x[:, 0].numpy() + b))) - y.numpy()
        gb.append([np.mean(r * x[:, 0].numpy()), np.mean(r)])
        gs += [[ri * xi, ri] for ri, xi in zip(r, x[:, 0].numpy())]
    for per, g in (("batch", gb), ("sample", gs)):
        f = fisher_diagonal(model, data, per=per, loss_fn=loss)
        np.testing.assert_allclose([f["weight"].item(), f["bias"].item()], (np.array(g) ** 2).mean(0), rtol=1e-5)
        assert f["weight"].dtype == torch.float32


def test_fisher_clip_matches_autograd(micro, batches):
    from clipwb.merge.stats import fisher_diagonal
    from clipwb.train import clip_loss
    fb = fisher_diagonal(micro, batches, per="batch")
    fs = fisher_diagonal(micro, batches[:1], per="sample")
    ref_b, ref_s = {}, {}
    m = copy.deepcopy(micro)
    for im, tk in batches:
        m.zero_grad()
        clip_loss(m.encode_image(im), m.encode_text(tk), m.logit_scale.exp()).backward()
        for k, p in m.named_parameters():
            ref_b[k] = ref_b.get(k, 0) + p.grad ** 2 / len(batches)
    im, tk = batches[0]
    for i in range(len(im)):   # sample i's term, written out: ½[CE(image_i → texts) + CE(text_i → images)]
        m.zero_grad()
        a, t = F.normalize(m.encode_image(im), dim=-1), F.normalize(m.encode_text(tk), dim=-1)
        s = m.logit_scale.exp() * a @ t.T
        (0.5 * (torch.logsumexp(s[i], 0) - s[i, i] + torch.logsumexp(s[:, i], 0) - s[i, i])).backward()
        for k, p in m.named_parameters():
            ref_s[k] = ref_s.get(k, 0) + p.grad ** 2 / len(im)
    for k in ref_b:
        torch.testing.assert_close(fb[k], ref_b[k], rtol=1e-4, atol=1e-12)
        torch.testing.assert_close(fs[k], ref_s[k], rtol=1e-4, atol=1e-12)
    assert all(p.grad is None for p in micro.parameters())


def test_stat_batches_seeded():
    from clipwb.data.datasets import load_dataset
    from clipwb.merge.stats import stat_batches
    from clipwb.models import create_model_and_transforms, get_tokenizer
    _, _, pre = create_model_and_transforms("clipwb-micro")
    tok, ds = get_tokenizer("clipwb-micro"), load_dataset("shapes", "train")
    a = stat_batches(ds, preprocess=pre, tokenizer=tok, batch_size=5, limit=12, seed=4)
    b = stat_batches(ds, preprocess=pre, tokenizer=tok, batch_size=5, limit=12, seed=4)
    assert [len(t) for _, t in a] == [5, 5, 2]
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(4))[:12].tolist()
    assert torch.equal(a[0][1], tok([ds.captions[i] for i in idx[:5]]))


def test_layer_distances_and_cosine_vs_numpy():
    from clipwb.merge.diagnostics import layer_distances, task_vector_cosine
    from clipwb.testing import toy_state_dicts
    sds = toy_state_dicts(4, seed=7)
    base = sds[3]
    d = layer_distances(sds[:3], base, by="key")
    n = [{k: v.double().numpy() for k, v in s.items()} for s in sds]
    for (i, j) in [(0, 1), (0, 2), (1, 2), (0, 3), (2, 3)]:
        b_name = "base" if j == 3 else f"m{j}"
        for k in n[0]:
            row = d[(d.a == f"m{i}") & (d.b == b_name) & (d.key == k)].iloc[0]
            np.testing.assert_allclose(row.l2, np.linalg.norm(n[i][k] - n[j][k]))
            np.testing.assert_allclose(row.rel, np.linalg.norm(n[i][k] - n[j][k]) / np.linalg.norm(n[j][k]))
    cos = task_vector_cosine(sds[:3], base)
    tv = [np.concatenate([(s[k] - n[3][k]).ravel() for k in n[3]]) for s in n[:3]]
    ref = np.array([[u @ v / np.linalg.norm(u) / np.linalg.norm(v) for v in tv] for u in tv])
    np.testing.assert_allclose(cos.values, ref, atol=1e-12)
    # identical task vectors → 1; orthogonal → 0
    half = {k: v.clone() for k, v in base.items()}
    e1 = {k: torch.zeros_like(v) for k, v in base.items()}
    e2 = {k: torch.zeros_like(v) for k, v in base.items()}
    e1["visual.proj"] += 1.0
    e2["transformer.resblocks.0.mlp.c_fc.bias"] += 2.0
    c = task_vector_cosine([e1, dict(e1), e2], {k: torch.zeros_like(v) for k, v in half.items()})
    assert c.iloc[0, 1] == pytest.approx(1.0) and c.iloc[0, 2] == pytest.approx(0.0)


def test_interpolation_curve_endpoints_and_quadratic(micro, batches):
    from clipwb.merge.diagnostics import clip_loss_fn, interpolation_curve
    from clipwb.models import create_model
    from clipwb.testing import toy_state_dicts
    from clipwb.train import clip_loss
    other = create_model("clipwb-micro", seed=5)
    curve = interpolation_curve(micro.state_dict(), other.state_dict(), loss_fn=clip_loss_fn(micro, batches),
                                ratios=[0.0, 0.5, 1.0])
    with torch.no_grad():
        direct = [np.mean([float(clip_loss(m.encode_image(i), m.encode_text(t), m.logit_scale.exp()))
                           for i, t in batches])
                  for m in (micro, other)]
    np.testing.assert_allclose(curve.loss.iloc[[0, -1]], direct, rtol=1e-5)
    a, b, star = toy_state_dicts(3, seed=2)
    quad = lambda sd: sum(float(((sd[k] - star[k]) ** 2).sum()) for k in sd)
    rs = np.linspace(-1, 2, 301)
    c = interpolation_curve(a, b, loss_fn=quad, ratios=rs)
    va, vb, vs = (torch.cat([s[k].double().ravel() for k in a]) for s in (a, b, star))
    r_star = float((vs - va) @ (vb - va) / ((vb - va) ** 2).sum())
    assert abs(c.ratio[c.loss.idxmin()] - r_star) <= 0.006
    np.testing.assert_allclose(c.loss.min(), float((((1 - r_star) * va + r_star * vb - vs) ** 2).sum()), rtol=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_grams_on_cuda_match_cpu(micro, batches):
    from clipwb.merge.stats import collect_grams
    cpu = collect_grams(micro, batches, precision="float64")
    gpu = collect_grams(micro, batches, device="cuda", precision="float64")
    assert next(micro.parameters()).device.type == "cpu"
    for k in cpu:
        torch.testing.assert_close(gpu[k], cpu[k], rtol=1e-6, atol=1e-6)


def test_regmean_with_collected_grams_is_optimal(micro, batches):
    """merge('regmean') on grams from collect_grams: Σ_m (W − W_m) G̃_m = 0 for Linear maps, Σ_m G̃_m (P − P_m) = 0
    for the raw projections (x @ P), i.e. each merged map minimises Σ_m ‖X_m W − X_m W_m‖² (α-regularised)."""
    from clipwb.merge.methods import merge
    from clipwb.merge.stats import collect_grams, weight_layout
    from clipwb.models import create_model
    models = [micro, create_model("clipwb-micro", seed=1)]
    sds = [m.state_dict() for m in models]
    grams = [collect_grams(m, batches) for m in models]
    alpha = 0.5
    out = merge("regmean", sds, grams=grams, alpha=alpha)
    for k in grams[0]:
        res, scale = 0, 0
        for sd, g in zip(sds, grams):
            gt = alpha * g[k] + (1 - alpha) * torch.diag(torch.diagonal(g[k]))
            d = out[k].double() - sd[k].double()
            res = res + (d @ gt if weight_layout(k) == "out_in" else gt @ d)
            scale = scale + gt.abs().max() * sd[k].double().abs().max()
        assert float(res.abs().max() / scale) < 1e-5, k
