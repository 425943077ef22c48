"""Routing statistics against brute-force counting on a hand-built random routing."""
import math

import numpy as np
import pytest

from clipwb.moe.routing import Routing, mutual_information, routing_tables


def _routing(seed=0, n_samples=12, tokens_per=5, layers=(2, 3), E=4, k=2):
    rng = np.random.default_rng(seed)
    T = n_samples * tokens_per
    probs = rng.dirichlet(np.ones(E), size=(len(layers), T)).astype(np.float32)
    experts = np.argsort(-probs, axis=-1, kind="stable")[..., :k]
    sample = np.repeat(np.arange(n_samples), tokens_per)
    kind = np.tile([0] + [1] * (tokens_per - 1), n_samples)
    return Routing("image", list(layers), experts, probs, sample, kind)


def test_tables_match_brute_force():
    r = _routing()
    E, (_, T, k) = r.num_experts, r.experts.shape
    labels = {"a": np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, -1])}
    st = routing_tables({"image": r}, labels)
    for j, layer in enumerate(r.layers):
        for e in range(E):
            top1 = sum(1 for t in range(T) if r.experts[j, t, 0] == e) / T
            topk = sum(1 for t in range(T) for q in range(k) if r.experts[j, t, q] == e) / (T * k)
            row = st.load.query("layer == @layer and expert == @e").iloc[0]
            assert row.top1 == pytest.approx(top1) and row.topk == pytest.approx(topk) and row.uniform == 0.25
        # label × expert, brute force over tokens of known label
        for c in (0, 1, 2):
            toks = [t for t in range(T) if labels["a"][r.sample[t]] == c]
            for e in range(E):
                want = sum(1 for t in toks if r.experts[j, t, 0] == e) / len(toks)
                got = st.label_expert.query("layer == @layer and label == @c and expert == @e").fraction.item()
                assert got == pytest.approx(want)
        # MI by the definition Σ p(x,y) log p(x,y)/(p(x)p(y)) over tokens of known label
        toks = [t for t in range(T) if labels["a"][r.sample[t]] >= 0]
        n = len(toks)
        pxy, px, py = {}, {}, {}
        for t in toks:
            x, y = labels["a"][r.sample[t]], r.experts[j, t, 0]
            pxy[x, y] = pxy.get((x, y), 0) + 1 / n; px[x] = px.get(x, 0) + 1 / n; py[y] = py.get(y, 0) + 1 / n
        mi = sum(p * math.log(p / (px[x] * py[y])) for (x, y), p in pxy.items())
        lay = st.layers.query("layer == @layer").iloc[0]
        assert lay["mi/a"] == pytest.approx(mi / math.log(E), abs=1e-9)
        # entropies
        ent = np.mean([-sum(p * math.log(p) for p in r.probs[j, t] if p > 0) for t in range(T)]) / math.log(E)
        assert lay.routing_entropy == pytest.approx(ent, rel=1e-5)
        l1 = [sum(1 for t in range(T) if r.experts[j, t, 0] == e) / T for e in range(E)]
        assert lay.load_entropy == pytest.approx(-sum(p * math.log(p) for p in l1 if p > 0) / math.log(E))
        # CLS vs patch
        for kname, kv in (("cls", 0), ("patch", 1)):
            toks = [t for t in range(T) if r.kind[t] == kv]
            for e in range(E):
                want = sum(1 for t in toks if r.experts[j, t, 0] == e) / len(toks)
                got = st.cls_patch.query("layer == @layer and kind == @kname and expert == @e").fraction.item()
                assert got == pytest.approx(want)


def test_mutual_information_extremes():
    a = np.array([0, 0, 1, 1, 2, 2])
    assert mutual_information(a, a) == pytest.approx(math.log(3))
    assert mutual_information(a, np.zeros(6, int)) == pytest.approx(0.0)
    assert mutual_information(np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])) == pytest.approx(0.0)


def test_figures_and_widget_build():
    from clipwb.moe.routing import routing_figures, routing_widget
    st = routing_tables({"image": _routing()}, {"a": np.arange(12) % 3})
    figs = routing_figures(st)
    assert set(figs) == {"routing_load", "routing_mi", "routing_image_a"}
    assert len(figs["routing_image_a"].data) == 2 and figs["routing_load"].layout.title.text
    w = routing_widget(st)
    assert len(w.children) == 2
