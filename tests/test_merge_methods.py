"""Merge methods against independent NumPy oracles, and the contract every registered merger honours."""
import numpy as np
import pytest
import torch
from torch.testing import assert_close

from clipwb.core import ConfigError
from clipwb.merge.methods import (MERGERS, MergeError, check_compatible, greedy_soup_search, join_modalities,
                                  kth_largest_abs, map_keys, merge, ratio_weights, split_modalities, ties_thresholds)

SHAPES = {"visual.proj": (6, 4), "blk.mlp.c_fc.weight": (5, 6), "blk.mlp.c_fc.bias": (5,), "logit_scale": (),
          "ln.weight": (6,)}


def models(n=3, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [{k: torch.randn(s, generator=g).to(dtype) for k, s in SHAPES.items()} for _ in range(n)]


def np_sd(sd):
    return {k: v.double().numpy() for k, v in sd.items()}


def spd(n, seed):
    x = np.random.default_rng(seed).normal(size=(3 * n, n))
    return x.T @ x


def required_kw(method, ms):
    """Keyword arguments a merger needs to run on `ms` (statistics built for these shapes)."""
    base = {k: torch.zeros_like(v) for k, v in ms[0].items()}
    if method in ("task_arithmetic", "ties"):
        return {"base": base}
    if method == "regmean":
        return {"grams": [{"blk.mlp.c_fc.weight": torch.tensor(spd(6, i)), "visual.proj": torch.tensor(spd(6, 10 + i))}
                          for i in range(len(ms))]}
    if method == "fisher":
        return {"fishers": [{k: torch.rand(v.shape, generator=torch.Generator().manual_seed(i)) for k, v in m.items()}
                            for i, m in enumerate(ms)]}
    if method == "greedy_soup":
        return {"evaluate": lambda sd: -float(sd["ln.weight"].float().abs().sum())}
    return {}


# ---------------------------------------------------------------- registry contract

@pytest.mark.parametrize("method", MERGERS.names())
def test_merger_contract(method):
    """Pure (inputs untouched, fresh storage), same keys/shapes, dtype kept, deterministic."""
    ms = models(3, seed=1, dtype=torch.float16)
    kw = required_kw(method, ms)
    clones = [{k: v.clone() for k, v in m.items()} for m in ms]
    ptrs = [{k: v.data_ptr() for k, v in m.items()} for m in ms]
    out = merge(method, ms, **kw)
    for m, c, p in zip(ms, clones, ptrs):
        for k in m:
            assert torch.equal(m[k], c[k]) and m[k].data_ptr() == p[k], f"{method} modified input '{k}'"
    assert list(out) == list(ms[0])
    in_ptrs = {p for d in ptrs for p in d.values()} | {v.data_ptr() for v in kw.get("base", {}).values()}
    for k, v in out.items():
        assert v.shape == ms[0][k].shape and v.dtype == torch.float16, (k, v.shape, v.dtype)
        assert v.data_ptr() not in in_ptrs, f"{method}: output '{k}' shares storage with an input"
    assert_close(out, merge(method, ms, **kw), rtol=0, atol=0)


@pytest.mark.parametrize("method", MERGERS.names())
def test_merger_one_model_is_identity(method):
    ms = models(1, seed=2)
    kw = required_kw(method, ms)
    if method == "ties":
        kw["density"] = 1.0
    assert_close(merge(method, ms, **kw), ms[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", MERGERS.names())
def test_merger_refuses_unknown_keyword(method):
    ms = models(2)
    with pytest.raises(ConfigError, match="unknown keyword"):
        merge(method, ms, no_such_option=1, **required_kw(method, ms))


# ---------------------------------------------------------------- compatibility

def test_check_compatible_names_key_and_shapes():
    a, b = models(2)
    b = dict(b, **{"blk.mlp.c_fc.bias": torch.zeros(7)})
    with pytest.raises(MergeError, match=r"'blk.mlp.c_fc.bias': shape \(7,\) in model 1 but \(5,\) in model 0"):
        check_compatible([a, b])
    with pytest.raises(MergeError, match="'ln.weight'.*missing from model 1"):
        check_compatible([a, {k: v for k, v in a.items() if k != "ln.weight"}])
    with pytest.raises(MergeError, match="'extra'.*is in base"):
        check_compatible([a], base=dict(a, extra=torch.zeros(1)))
    with pytest.raises(MergeError, match=r"shape \(3,\) in model 1"):   # raised by merge() before the method runs
        merge("linear", [a, dict(a, **{"ln.weight": torch.zeros(3)})])


# ---------------------------------------------------------------- oracles

def test_linear_and_soup_oracle():
    ms = models(3, seed=3)
    w = [0.5, -0.25, 1.5]                                   # need not sum to one
    out = merge("linear", ms, weights=w)
    for k in SHAPES:
        np.testing.assert_allclose(out[k].numpy(), sum(wi * np_sd(m)[k] for wi, m in zip(w, ms)), rtol=1e-5, atol=1e-6)
    assert_close(merge("uniform_soup", ms), {k: sum(m[k] for m in ms) / 3 for k in SHAPES})
    a, b = ms[:2]
    for r in (0.0, 1.0, 0.3):
        assert_close(merge("linear", [a, b], weights=ratio_weights(r)), {k: r * a[k] + (1 - r) * b[k] for k in SHAPES})
    np.testing.assert_allclose(ratio_weights(0.6, 3), [0.4, 2 / 3 * 0.4, 1 / 3])
    with pytest.raises(ConfigError, match="2 weights for 3 models"):
        merge("linear", ms, weights=[1, 2])


def test_task_arithmetic_oracle_and_no_inplace_bug():
    base, tv, tl = models(3, seed=4)
    lam = 0.75
    out = merge("task_arithmetic", [tv, tl], base=base, lam=lam)
    b, v, l = np_sd(base), np_sd(tv), np_sd(tl)
    for k in SHAPES:
        np.testing.assert_allclose(out[k].numpy(), b[k] + lam * ((v[k] - b[k]) + (l[k] - b[k])), rtol=1e-5, atol=1e-5)
    # the reference repo's in-place accumulator, replayed in NumPy: acc = θ_0; acc += λ(θ_m − acc) per modality
    for k in ("visual.proj", "ln.weight"):
        acc = b[k].copy()
        for m in (v, l):
            acc += lam * (m[k] - acc)
        np.testing.assert_allclose(acc, (1 - lam) ** 2 * b[k] + lam * (1 - lam) * v[k] + lam * l[k], atol=1e-12)
        assert not np.allclose(out[k].numpy(), acc, atol=1e-3)
    assert_close(merge("task_arithmetic", [tv, tl], base=base, lam=0.0), base)
    with pytest.raises(ConfigError, match="`base` is required"):
        merge("task_arithmetic", [tv, tl])


def ties_oracle(ms, base, density, scope, merge_func="mean", lam=1.0):
    """TIES in NumPy (after the official ties-merging code), with k = max(1, round(density·n)) kept entries."""
    keys = list(base)
    def trim(v):
        k = max(1, round(density * v.size))
        t = np.sort(np.abs(v).ravel())[::-1][k - 1]
        return np.where(np.abs(v) >= t, v, 0.0)
    if scope == "global":
        flat = [np.concatenate([(np_sd(m)[k] - np_sd(base)[k]).ravel() for k in keys]) for m in ms]
        T = np.stack([trim(f) for f in flat])
    else:
        T = np.stack([np.concatenate([trim((np_sd(m)[k] - np_sd(base)[k]).ravel()) for k in keys]) for m in ms])
    sign = np.sign(T.sum(0))
    agree = (np.sign(T) == sign) & (T != 0)
    merged = (T * agree).sum(0)
    if merge_func == "mean":
        merged = merged / np.maximum(agree.sum(0), 1)
    out, i = {}, 0
    for k in keys:
        n = base[k].numel()
        out[k] = np_sd(base)[k] + lam * merged[i:i + n].reshape(base[k].shape)
        i += n
    return out


@pytest.mark.parametrize("scope", ["global", "per_tensor"])
@pytest.mark.parametrize("merge_func", ["mean", "sum"])
@pytest.mark.parametrize("density", [0.1, 0.5, 1.0])
def test_ties_oracle(scope, merge_func, density):
    base, *ms = models(4, seed=5)
    out = merge("ties", ms, base=base, density=density, scope=scope, merge_func=merge_func, lam=0.7)
    want = ties_oracle(ms, base, density, scope, merge_func, lam=0.7)
    for k in SHAPES:
        np.testing.assert_allclose(out[k].numpy(), want[k], rtol=1e-5, atol=1e-5, err_msg=k)
    th = ties_thresholds(ms, base=base, density=density, scope=scope)
    assert_close(merge("ties", ms, base=base, density=density, scope=scope, merge_func=merge_func, lam=0.7,
                       thresholds=th), out)


def test_ties_lam_zero_is_base():
    base, *ms = models(3, seed=6)
    assert_close(merge("ties", ms, base=base, lam=0.0), base)


@pytest.mark.parametrize("seed", range(4))
def test_kth_largest_abs_oracle(seed):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(size=3000).astype(np.float32), np.zeros(500, np.float32),
                        rng.choice([1.5, -1.5, 2 ** -20], size=300).astype(np.float32)])
    rng.shuffle(x)
    t = torch.from_numpy(x)
    srt = np.sort(np.abs(x))[::-1]
    for k in [1, 2, 50, 1000, 3300, 3500, len(x)]:
        assert kth_largest_abs(lambda: t.split(777), k) == float(srt[k - 1])


def test_regmean_least_squares_oracle():
    rng = np.random.default_rng(7)
    X = [rng.normal(size=(40, 6)) * s for s in (1.0, 3.0, 0.5)]
    ms = models(3, seed=8)
    grams = [{"blk.mlp.c_fc.weight": torch.tensor(x.T @ x), "visual.proj": torch.tensor(x.T @ x)} for x in X]
    out = merge("regmean", ms, grams=grams)
    W = [np_sd(m)["blk.mlp.c_fc.weight"] for m in ms]               # [out, in], y = x Wᵀ
    lsq = np.linalg.lstsq(np.vstack(X), np.vstack([x @ w.T for x, w in zip(X, W)]), rcond=None)[0].T
    np.testing.assert_allclose(out["blk.mlp.c_fc.weight"].numpy(), lsq, atol=1e-5)
    P = [np_sd(m)["visual.proj"] for m in ms]                        # [in, out], y = x P
    lsq_p = np.linalg.lstsq(np.vstack(X), np.vstack([x @ p for x, p in zip(X, P)]), rcond=None)[0]
    np.testing.assert_allclose(out["visual.proj"].numpy(), lsq_p, atol=1e-5)
    for k in ("blk.mlp.c_fc.bias", "ln.weight", "logit_scale"):
        assert_close(out[k], sum(m[k] for m in ms) / 3)
    # α < 1: the closed form with shrunk off-diagonals, computed here with an explicit inverse
    a = 0.6
    Gt = [a * x.T @ x + (1 - a) * np.diag(np.diag(x.T @ x)) for x in X]
    want = sum(w @ g for w, g in zip(W, Gt)) @ np.linalg.inv(sum(Gt))
    np.testing.assert_allclose(merge("regmean", ms, grams=grams, alpha=a)["blk.mlp.c_fc.weight"].numpy(), want,
                               atol=1e-5)


def test_regmean_identity_grams_average_and_errors():
    ms = models(2, seed=9)
    eye = [{"blk.mlp.c_fc.weight": torch.eye(6)}] * 2
    assert_close(merge("regmean", ms, grams=eye), merge("linear", ms))
    with pytest.raises(MergeError, match="singular"):
        merge("regmean", ms, grams=[{"blk.mlp.c_fc.weight": torch.zeros(6, 6)}] * 2)
    with pytest.raises(MergeError, match=r"Gram of shape \(6, 6\)"):
        merge("regmean", ms, grams=[{"blk.mlp.c_fc.weight": torch.eye(5)}] * 2)
    with pytest.raises(MergeError, match="not for model 1"):
        merge("regmean", ms, grams=[eye[0], {}])


def test_fisher_oracle():
    ms = models(3, seed=10)
    F = [{k: torch.rand(s, generator=torch.Generator().manual_seed(20 + i))
          for k, s in SHAPES.items() if k != "ln.weight"}
         for i in range(3)]
    eps = 1e-3
    out = merge("fisher", ms, fishers=F, eps=eps)
    for k in SHAPES:
        if k == "ln.weight":
            want = sum(np_sd(m)[k] for m in ms) / 3
        else:
            f = [F[i][k].double().numpy() + eps for i in range(3)]
            want = sum(fi * np_sd(m)[k] for fi, m in zip(f, ms)) / sum(f)
        np.testing.assert_allclose(out[k].numpy(), want, rtol=1e-5, atol=1e-6, err_msg=k)
    same = [{k: torch.full(s, 2.0) for k, s in SHAPES.items()}] * 3
    assert_close(merge("fisher", ms, fishers=same), merge("linear", ms))


def test_greedy_soup_known_best_set():
    """Synthetic score −‖mean − target‖²: the two ingredients that cancel around the target are the best subset."""
    import itertools
    rng = np.random.default_rng(11)
    target = rng.normal(size=4)
    e = np.array([1.0, 0, 0, 0])
    vecs = [target + rng.normal(size=4) * 3, target + e, target + rng.normal(size=4) * 3, target - e,
            target + rng.normal(size=4) * 3]
    pool = [{"w": torch.tensor(p)} for p in vecs]
    score = lambda sd: -float(((sd["w"].numpy() - target) ** 2).sum())
    subsets = [s for r in range(1, 6) for s in itertools.combinations(range(5), r)]
    best = max(subsets, key=lambda s: score({"w": torch.tensor(np.mean([vecs[i] for i in s], 0))}))
    assert set(best) == {1, 3}                                  # brute force over all 31 uniform sub-soups
    soup, kept, hist = greedy_soup_search(pool, score)
    assert kept == [1, 3]
    np.testing.assert_allclose(soup["w"].numpy(), target, atol=1e-12)
    assert ([h["ingredient"] for h in hist][:2] == [1, 3]
            and [h["accepted"] for h in hist] == [True, True, False, False, False])
    history = []
    assert_close(merge("greedy_soup", pool, evaluate=score, history=history), soup)
    assert history == hist


def test_greedy_soup_may_keep_only_the_best():
    """model-soups#10: greedy is not the global optimum; a lone best ingredient blocks a better pair."""
    pool = [{"w": torch.tensor([1.0, 0])}, {"w": torch.tensor([-1.0, 0])}, {"w": torch.tensor([0, 0.5])}]
    score = lambda sd: -float((sd["w"] ** 2).sum())
    assert greedy_soup_search(pool, score)[1] == [2]


def test_greedy_soup_requires_strict_improvement():
    pool = [{"w": torch.tensor([1.0])}, {"w": torch.tensor([3.0])}]
    soup, kept, _ = greedy_soup_search(pool, lambda sd: 0.0)    # a flat score never improves
    assert kept == [0] and soup["w"].item() == 1.0


# ---------------------------------------------------------------- key mapping (vl-merging)

def vlmo_state_dict(seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {"transformer.patch_embed.proj.weight": torch.randn(8, 3, generator=g),
          "transformer.blocks.0.gamma_1": torch.randn(8, generator=g)}
    for i in range(3):                                          # blocks ≥ 2 also have the vl expert
        for m in (("v", "l", "vl") if i >= 2 else ("v", "l")):
            for name, s in (("attn.{m}.qkv.weight", (24, 8)), ("attn.{m}.q_bias", (8,)),
                            ("mlp.{m}.fc1.weight", (16, 8)), ("norm1.{m}.weight", (8,))):
                sd[f"transformer.blocks.{i}." + name.format(m=m)] = torch.randn(s, generator=g)
    return sd


def test_split_join_modalities_round_trip_and_merge():
    sd = vlmo_state_dict()
    parts = split_modalities(sd, ["v", "l", "vl"], include_shared=True)
    back = join_modalities(parts)
    assert list(sorted(back)) == sorted(sd) and all(back[k] is sd[k] for k in sd)
    two = split_modalities(sd, ["v", "l"])
    assert sorted(two["v"]) == sorted(two["l"]) and "transformer.blocks.2.attn.qkv.weight" in two["v"]
    merged = merge("linear", [two["v"], two["l"]], weights=ratio_weights(0.3))
    k = "transformer.blocks.1.mlp.fc1.weight"
    assert_close(merged[k], 0.3 * sd["transformer.blocks.1.mlp.v.fc1.weight"]
                 + 0.7 * sd["transformer.blocks.1.mlp.l.fc1.weight"])
    # three experts where vl exists: (2/3 r, 2/3 (1−r), 1/3)
    three = {m: {k: v for k, v in d.items() if k.startswith("transformer.blocks.2.")}
             for m, d in split_modalities(sd, ["v", "l", "vl"]).items()}
    m3 = merge("linear", [three["v"], three["l"], three["vl"]], weights=ratio_weights(0.3, 3))
    q = "transformer.blocks.2.attn.q_bias"
    assert_close(m3[q], 0.2 * sd["transformer.blocks.2.attn.v.q_bias"]
                 + 2 / 3 * 0.7 * sd["transformer.blocks.2.attn.l.q_bias"]
                 + 1 / 3 * sd["transformer.blocks.2.attn.vl.q_bias"])
    # the vl model lacks blocks 0–1: merging it with v fails naming the key
    with pytest.raises(MergeError, match="transformer.blocks.0"):
        merge("linear", [parts["v"], parts["vl"]])


def test_map_keys_regex_and_collisions():
    sd = {"a.v.w": 1, "a.l.w": 2, "c": 3}
    assert (map_keys(sd, {r"(.*)\.(v)\.(.*)": r"\1.\3", r"(.*)\.(l)\.(.*)": r"\1.lang.\3"})
            == {"a.w": 1, "a.lang.w": 2, "c": 3})
    with pytest.raises(MergeError, match="both map to 'a.w'"):
        map_keys(sd, {r"(.*)\.(v|l)\.(.*)": r"\1.\3"})
    with pytest.raises(MergeError, match="'c' matches no pattern"):
        map_keys(sd, {r"(.*)\.(v|l)\.(.*)": r"\1.\2\3"}, strict=True)
