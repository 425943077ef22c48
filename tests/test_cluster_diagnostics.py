"""Oracles for clipwb.cluster.diagnostics and clipwb.cluster.figures: brute force, closed forms, hand-worked toys."""
import itertools
import json
import logging
import math

import numpy as np
import pandas as pd
import pytest

from clipwb.cluster.diagnostics import (agreement, cluster_sizes, diagnose, exemplars, match_labels,
                                        matched_accuracy, nearest_captions, stability, stage_flows,
                                        term_scores, tokenize, top_terms)
from clipwb.cluster.kmeans import fit_clusters
from clipwb.cluster.labels import accumulate_stages
from clipwb.core import ConfigError, DataError
from clipwb.testing import random_embeddings

logging.getLogger("clipwb").setLevel(logging.ERROR)


# ---------------------------------------------------------------- independent references
def brute_accuracy(a, b):
    "Best agreement over every injective map between the clusters of a and b (all permutations)."
    ua, ub = list(np.unique(a)), list(np.unique(b))
    best = 0
    if len(ua) <= len(ub):
        for p in itertools.permutations(ub, len(ua)):
            m = dict(zip(ua, p)); best = max(best, sum(m[u] == v for u, v in zip(a, b)))
    else:
        for p in itertools.permutations(ua, len(ub)):
            m = dict(zip(ub, p)); best = max(best, sum(m[v] == u for u, v in zip(a, b)))
    return best / len(a)


def pair_count_ari(a, b):
    "ARI from its pair-counting definition (Hubert & Arabie), pure Python."
    a, b = list(a), list(b)
    n = len(a)
    cells = pd.crosstab(pd.Series(a), pd.Series(b)).to_numpy()
    c2 = lambda v: v * (v - 1) / 2
    s_ij = sum(c2(v) for v in cells.ravel())
    s_a, s_b = sum(c2(v) for v in cells.sum(1)), sum(c2(v) for v in cells.sum(0))
    exp = s_a * s_b / c2(n)
    return (s_ij - exp) / ((s_a + s_b) / 2 - exp)


def entropy_nmi(a, b):
    "NMI with arithmetic normalisation from entropies."
    t = pd.crosstab(pd.Series(list(a)), pd.Series(list(b))).to_numpy() / len(a)
    H = lambda p: -sum(q * math.log(q) for q in np.ravel(p) if q > 0)
    ha, hb = H(t.sum(1)), H(t.sum(0))
    mi = ha + hb - H(t)
    return mi / ((ha + hb) / 2) if ha + hb > 0 else 1.0


# ---------------------------------------------------------------- sizes and matching
def test_cluster_sizes_counts_and_imbalance():
    df = cluster_sizes([0, 0, 0, 2], k=4)
    assert df["size"].tolist() == [3, 0, 1, 0]
    assert df["fraction"].tolist() == [0.75, 0.0, 0.25, 0.0]
    assert df.attrs["imbalance"] == pytest.approx(4 * (9 + 1) / 16)


@pytest.mark.parametrize("ka,kb", [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (2, 5), (5, 3), (4, 1)])
@pytest.mark.parametrize("seed", range(3))
def test_hungarian_matches_brute_force(ka, kb, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, ka, 30), rng.integers(0, kb, 30)
    b[:18] = (a[:18] * 2 + 1) % kb                    # partly structured
    assert matched_accuracy(a, b) == pytest.approx(brute_accuracy(a, b))
    m = match_labels(a, b)
    assert len(m) == min(len(set(a)), len(set(b))) and len(set(m.values())) == len(m)
    assert np.mean([m.get(u) == v for u, v in zip(a, b)]) == pytest.approx(brute_accuracy(a, b))


def test_permuted_labelling_is_matched_exactly():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 200)
    perm = rng.permutation(5)
    assert match_labels(a, perm[a]) == {i: int(perm[i]) for i in range(5)}
    assert matched_accuracy(a, perm[a]) == 1.0
    names = np.array(list("vwxyz"))
    assert matched_accuracy(names[a], a) == 1.0       # strings against ints


def test_matching_errors():
    with pytest.raises(DataError, match="a has 3 labels but b has 2"):
        match_labels([0, 1, 2], [0, 1])


# ---------------------------------------------------------------- stability
def test_stability_blobs_vs_noise():
    x, _ = random_embeddings(300, 16, k=3, seed=1)
    st = stability(x, k=3, seeds=(0, 1, 2), nredo=5)
    assert [p["ari"] for p in st["pairs"]] == [1.0, 1.0, 1.0]
    assert st["mean_matched_accuracy"] == 1.0
    noise = np.random.default_rng(3).uniform(-1, 1, size=(400, 8)).astype(np.float32)
    sn = stability(noise, k=5, seeds=(0, 1, 2))
    assert sn["mean_ari"] < 0.95 and sn["mean_matched_accuracy"] < 1.0
    for p in sn["pairs"]:                                 # each pair against refits and the independent ARI
        la = fit_clusters(noise, "kmeans", k=5, seed=p["seed_a"]).labels
        lb = fit_clusters(noise, "kmeans", k=5, seed=p["seed_b"]).labels
        assert p["ari"] == pytest.approx(pair_count_ari(la, lb))
        assert p["matched_accuracy"] == pytest.approx(brute_accuracy(la, lb))
    assert json.loads(json.dumps(sn)) == sn


def test_stability_needs_two_seeds():
    x, _ = random_embeddings(50, 4, k=2)
    with pytest.raises(ConfigError, match="at least two distinct seeds"):
        stability(x, k=2, seeds=(0,))


# ---------------------------------------------------------------- agreement
def test_agreement_hand_worked():
    ag = agreement([0, 0, 1, 1], {"perfect": ["b", "b", "a", "a"], "independent": ["u", "v", "u", "v"]})
    assert ag["nmi"].tolist() == [1.0, 0.0]
    assert ag["ari"].tolist() == pytest.approx([1.0, -0.5])


def test_agreement_excludes_and_counts_missing():
    lab = [0, 0, 1, 1, 2, 2]
    ag = agreement(lab, {"f": ["x", None, "y", np.nan, "z", "z"], "s": pd.Series(["x", "x", None, "y", "y", "y"])})
    assert ag.set_index("factor")[["n_used", "n_missing", "n_classes"]].to_dict("index") == {
        "f": {"n_used": 4, "n_missing": 2, "n_classes": 3}, "s": {"n_used": 5, "n_missing": 1, "n_classes": 2}}
    assert ag.loc[0, "nmi"] == pytest.approx(entropy_nmi([0, 1, 2, 2], ["x", "y", "z", "z"]))
    assert ag.loc[1, "ari"] == pytest.approx(pair_count_ari([0, 0, 1, 2, 2], ["x", "x", "y", "y", "y"]))


@pytest.mark.parametrize("seed", range(4))
def test_agreement_vs_closed_forms(seed):
    rng = np.random.default_rng(seed)
    lab, known = rng.integers(0, 4, 120), rng.integers(0, 3, 120)
    known[:60] = lab[:60] % 3
    ag = agreement(lab, {"k": known.astype(str)})
    assert ag.loc[0, "nmi"] == pytest.approx(entropy_nmi(lab, known))
    assert ag.loc[0, "ari"] == pytest.approx(pair_count_ari(lab, known))


def test_agreement_independent_is_near_zero():
    rng = np.random.default_rng(0)
    ag = agreement(rng.integers(0, 5, 5000), {"k": rng.integers(0, 4, 5000)})
    assert abs(ag.loc[0, "ari"]) < 0.01 and ag.loc[0, "nmi"] < 0.01


# ---------------------------------------------------------------- exemplars, captions, terms
@pytest.mark.parametrize("spherical", [False, True])
def test_exemplars_vs_numpy(spherical):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(250, 6)) * rng.uniform(0.3, 3, size=(250, 1))).astype(np.float32)
    cl = fit_clusters(x, "kmeans", k=5, seed=0, spherical=spherical)
    if spherical:
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        cn = cl.centroids / np.linalg.norm(cl.centroids, axis=1, keepdims=True)
        D = -(xn.astype(np.float64) @ cn.T.astype(np.float64))
    else:
        D = ((x[:, None].astype(np.float64) - cl.centroids[None].astype(np.float64)) ** 2).sum(-1)
    want = {j: sorted(np.flatnonzero(cl.labels == j).tolist(), key=lambda i: (D[i, j], i))[:6] for j in range(5)}
    assert exemplars(x, cl, n=6) == want


def test_nearest_captions_vs_brute_force():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(120, 8)).astype(np.float32)
    cent = rng.normal(size=(4, 8)).astype(np.float32)
    caps = [f"caption {i}" for i in range(120)]
    cos = (cent / np.linalg.norm(cent, axis=1, keepdims=True)) @ (emb / np.linalg.norm(emb, axis=1, keepdims=True)).T
    assert nearest_captions(cent, emb, caps, n=5) == {j: [caps[i] for i in np.argsort(-cos[j], kind="stable")[:5]]
                                                      for j in range(4)}
    d2 = ((cent[:, None] - emb[None]) ** 2).sum(-1)
    assert nearest_captions(cent, emb, caps, n=3, metric="l2") == {j: [caps[i] for i in np.argsort(d2[j])[:3]]
                                                                   for j in range(4)}


def test_nearest_captions_deduplicates():
    e = np.eye(3, dtype=np.float32)
    emb, caps = np.vstack([e[0], e[0], e[0] + e[1], e[2]]), ["a", "a", "b", "c"]   # cosines 1, 1, 0.71, 0
    assert nearest_captions(e[:1], emb, caps, n=3) == {0: ["a", "b", "c"]}
    assert nearest_captions(e[:1], emb, caps, n=3, unique=False) == {0: ["a", "a", "b"]}


def test_top_terms_toy_corpus():
    corpus = ["a red circle", "red square small", "a red star", "blue circle", "blue star large", "a blue square",
              "green thing", "green circle"]
    lab = [0, 0, 0, 1, 1, 1, 2, 2]
    tt = top_terms(corpus, lab, n=2)
    assert tt[0][0] == "red" and tt[1][0] == "blue" and tt[2][0] == "green"
    assert all("circle" != v[0] for v in tt.values())


def test_term_scores_vs_formula():
    corpus = ["cat cat sofa", "cat", "dog park", "dog", "bird"]
    lab = [0, 0, 1, 1, 1]
    ts = term_scores(corpus, lab, alpha0=4.0).set_index(["cluster", "term"])
    # binary per caption: cluster 0 {cat:2, sofa:1} (3 words), cluster 1 {dog:2, park:1, bird:1} (4 words)
    tot = {"cat": 2, "sofa": 1, "dog": 2, "park": 1, "bird": 1}
    for (c, t), row in ts.iterrows():
        y = {0: {"cat": 2, "sofa": 1}, 1: {"dog": 2, "park": 1, "bird": 1}}[c].get(t, 0)
        yr, m, mr = tot[t] - y, (3, 4)[c], (4, 3)[c]
        a = 4.0 * tot[t] / 7
        d = math.log((y + a) / (m + 4 - y - a)) - math.log((yr + a) / (mr + 4 - yr - a))
        assert row["z"] == pytest.approx(d / math.sqrt(1 / (y + a) + 1 / (yr + a)))
        assert row["count"] == y > 0                  # only words the cluster uses are listed
    assert len(ts) == 5
    assert tokenize("The CAT's 3 cats!") == ["cat", "cats"]


# ---------------------------------------------------------------- stage flows and the Sankey
C0, C1, C2 = [0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 0, 0, 0, 1], [0, 1, 0, 0, 1, 1, 0, 0]
HAND_FLOWS = {((0, 0), (1, 0)): 2, ((0, 0), (1, 1)): 2, ((0, 1), (1, 2)): 3, ((0, 1), (1, 3)): 1,
              ((1, 0), (2, 0)): 1, ((1, 0), (2, 1)): 1, ((1, 1), (2, 2)): 2,
              ((1, 2), (2, 4)): 1, ((1, 2), (2, 5)): 2, ((1, 3), (2, 6)): 1}


def test_stage_flows_hand_worked():
    nodes, links = stage_flows([C0, C1, C2], k=2)
    name = {r.node: (r.stage, r.cell) for r in nodes.itertuples()}
    assert {(name[r.source], name[r.target]): r.value for r in links.itertuples()} == HAND_FLOWS
    assert dict(zip(zip(nodes["stage"], nodes["cell"]), nodes["count"])) == {
        (0, 0): 4, (0, 1): 4, (1, 0): 2, (1, 1): 2, (1, 2): 3, (1, 3): 1,
        (2, 0): 1, (2, 1): 1, (2, 2): 2, (2, 4): 1, (2, 5): 2, (2, 6): 1}
    assert nodes.attrs["cells"] == [2, 4, 6]


@pytest.mark.parametrize("max_cells", [None, 5, 30])
def test_stage_flows_conserve_samples(max_cells):
    rng = np.random.default_rng(0)
    st = [rng.integers(0, 9, 1500) for _ in range(3)]
    nodes, links = stage_flows(st, k=9, max_cells=max_cells)
    assert nodes.attrs["cells"] == accumulate_stages(st, k=9)[1]
    stage = nodes.set_index("node")["stage"]
    assert nodes.groupby("stage")["count"].sum().tolist() == [1500] * 3
    assert links.groupby(stage[links["target"]].values)["value"].sum().tolist() == [1500, 1500]
    out = links.groupby("source")["value"].sum()        # every node's outflow = its count (stages 0, 1)
    assert out.tolist() == nodes.set_index("node").loc[out.index, "count"].tolist()
    if max_cells is not None:
        assert (nodes.groupby("stage").size() <= max_cells + 1).all()


def test_sankey_figure_data():
    from clipwb.cluster.figures import sankey_figure
    sk = sankey_figure([C0, C1, C2], k=2).data[0]
    assert sk.type == "sankey"
    cell = lambda i: (int(sk.node.customdata[i][0]), int(sk.node.label[i].split("=")[1].split()[0]))   # (stage, id)
    assert {(cell(s), cell(t)): v for s, t, v in zip(sk.link.source, sk.link.target, sk.link.value)} == HAND_FLOWS
    assert [int(l.split("n=")[1][:-1]) for l in sk.node.label] == [4, 4, 2, 2, 3, 1, 1, 1, 2, 1, 2, 1]


def test_sizes_and_agreement_figures_data():
    from clipwb.cluster.figures import agreement_figure, sizes_figure
    f = sizes_figure(cluster_sizes([0, 0, 0, 2], k=3))   # imbalance 3·(9 + 0 + 1)/16 = 1.875
    assert f.data[0].type == "bar" and list(f.data[0].y) == [3, 0, 1]
    assert "imbalance 1.875" in f.layout.title.text and f.layout.yaxis.title.text
    ag = agreement([0, 0, 1, 1], {"a": list("xxyy"), "b": list("xyxy")})
    g = agreement_figure(ag)
    assert [d.name for d in g.data] == ["NMI", "ARI"] and list(g.data[1].y) == pytest.approx([1.0, -0.5])


# ---------------------------------------------------------------- diagnose
def test_diagnose_json_and_content():
    x, truth = random_embeddings(200, 8, k=3, seed=2)
    cl = fit_clusters(x, "kmeans", k=3, seed=0, nredo=5)
    meta = pd.DataFrame({"id": [f"i{i}" for i in range(200)],
                         "caption": [f"a {'red green blue'.split()[t]} thing" for t in truth],
                         "group": ["g%d" % t if i % 10 else None for i, t in enumerate(truth)]})
    d = diagnose(x, cl, meta=meta, text_emb=x, n_exemplars=2, stability_seeds=(0, 1))
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert d["sizes"] == cl.sizes.tolist() and d["agreement"][0]["factor"] == "group"
    assert d["agreement"][0]["n_missing"] == 20 and d["agreement"][0]["ari"] == 1.0
    assert d["exemplar_ids"] == {str(j): [f"i{i}" for i in v] for j, v in exemplars(x, cl, n=2).items()}
    assert d["stability"]["mean_ari"] == 1.0          # nredo=5 carried over from cl.params
    assert all(len(v) == 1 for v in d["top_terms"].values())


@pytest.mark.parametrize("max_cells", [None, 100, 20])
def test_sankey_labels_do_not_collide(max_cells):
    """Rebuilt from the figure alone, as plotly sizes nodes (px per sample = (plot height − the fullest column's gaps)
    / N): in every column the nodes lie inside the plot without overlapping, labelled nodes are at least a line of
    text apart, the big cells keep their labels and every node's hover count is its cell's size."""
    from clipwb.cluster.figures import sankey_figure
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.full(9, 0.5))
    st3 = [rng.choice(9, 2500, p=p) for _ in range(3)]
    fig = sankey_figure(st3, k=9, max_cells=max_cells)
    sk, font = fig.data[0], fig.layout.font.size
    H = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    stage = np.array([int(c[0]) for c in sk.node.customdata])
    count = np.array([int(c[2]) for c in sk.node.customdata])
    nodes, _ = stage_flows(st3, k=9, max_cells=max_cells)
    assert stage.tolist() == nodes["stage"].tolist() and count.tolist() == nodes["count"].tolist()
    h = count * (H - (np.bincount(stage).max() - 1) * sk.node.pad) / 2500
    y, lab = np.array(sk.node.y) * H, np.array([bool(t) for t in sk.node.label])
    for s in range(3):
        i = np.flatnonzero(stage == s)
        i = i[np.argsort(y[i])]
        assert y[i[0]] - h[i[0]] / 2 > -1e-6 and y[i[-1]] + h[i[-1]] / 2 < H + 1e-6
        assert np.all(np.diff(y[i]) >= (h[i][1:] + h[i][:-1]) / 2 + sk.node.pad - 1e-6)
        assert np.all(np.diff(y[i[lab[i]]]) >= 1.2 * font), f"stage {s}: two labels closer than a line"
    assert (~lab).any() and lab[h >= 2 * 1.3 * font].all() and lab.any()
    assert all(t == f"{'other' if c < 0 else f'P{s}={c}'} (n={m})"
               for t, s, c, m in zip(np.array(sk.node.label)[lab], stage[lab], nodes["cell"][lab], count[lab]))
    assert "%{customdata[2]} samples" in sk.node.hovertemplate
