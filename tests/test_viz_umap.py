"""Oracles for clipwb.cluster.map: the faiss kNN graph against brute force and umap-learn's own search,
UMAP fed exactly that graph (never its own NN-descent), map quality, and the figure / HTML contents."""
import base64
import io

import numpy as np
import pandas as pd
import pytest

from clipwb.core import ConfigError, DataError
from clipwb.testing import random_embeddings, synthetic_pairs, toy_image
from clipwb.cluster.map import cluster_map, knn_graph, map_figure, save_map_html, thumbnails_b64, umap_embed


def _brute(x, metric):
    x = x.astype(np.float64)
    if metric == "cosine":
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        return 1 - xn @ xn.T
    return np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_knn_matches_brute_force(metric):
    x = np.random.default_rng(1).normal(size=(400, 20)).astype(np.float32)
    idx, dist = knn_graph(x, n_neighbors=12, metric=metric)
    d = _brute(x, metric)
    assert idx.shape == dist.shape == (400, 12) and idx.dtype == np.int64 and dist.dtype == np.float32
    np.testing.assert_array_equal(idx, np.argsort(d, axis=1, kind="stable")[:, :12])
    np.testing.assert_allclose(dist[:, 1:], np.take_along_axis(d, idx, 1)[:, 1:], atol=2e-4, rtol=1e-4)
    np.testing.assert_array_equal(idx[:, 0], np.arange(400))
    assert (dist[:, 0] == 0).all() and (np.diff(dist, axis=1) >= 0).all()


@pytest.mark.parametrize("copies,k", [(3, 10), (12, 5), (40, 15)])
def test_knn_duplicates_self_first(copies, k):
    rng = np.random.default_rng(2)
    base = rng.normal(size=(30, 8)).astype(np.float32)
    x = np.concatenate([np.repeat(base[:1], copies, 0), base[1:]])
    for metric in ("cosine", "euclidean"):
        idx, dist = knn_graph(x, n_neighbors=k, metric=metric)
        np.testing.assert_array_equal(idx[:, 0], np.arange(len(x)))
        assert (dist[:, 0] == 0).all()
        for i in range(copies):          # the other copies come next, at distance 0, never self twice
            m = min(k, copies)
            assert len(set(idx[i])) == k
            assert set(idx[i, 1:m]) <= set(range(copies)) - {i}
            np.testing.assert_allclose(dist[i, 1:m], 0, atol=1e-5)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_knn_ivf_is_approximate_but_same_format(metric):
    x, _ = random_embeddings(4000, 32, k=12, spread=0.8, seed=10)
    x = np.concatenate([x, np.repeat(x[:1], 20, 0)])          # 21 copies of point 0
    exact, _ = knn_graph(x, n_neighbors=15, metric=metric)
    idx, dist = knn_graph(x, n_neighbors=15, metric=metric, ivf_probe=8)
    recall = np.mean([len(set(a) & set(b)) / 15 for a, b in zip(idx, exact)])
    assert 0.9 <= recall, recall
    np.testing.assert_array_equal(idx[:, 0], np.arange(len(x)))
    assert (dist[:, 0] == 0).all() and (np.diff(dist, axis=1) >= 0).all()
    true = np.take_along_axis(np.stack([_brute_row(x, i, metric) for i in range(50)]), idx[:50], 1)
    np.testing.assert_allclose(dist[:50], true, atol=2e-3)   # distances are exact for the pairs found


def _brute_row(x, i, metric):
    x = x.astype(np.float64)
    if metric == "cosine":
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        r = 1 - xn @ xn[i]
        r[i] = 0
        return r
    return np.sqrt(((x - x[i]) ** 2).sum(-1))


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_knn_agrees_with_umap_nearest_neighbors(metric):
    """umap-learn's own search (pynndescent NN-descent) is approximate: high recall against the exact
    faiss graph, the same self-first layout, and the same distance on every shared pair."""
    from umap.umap_ import nearest_neighbors
    x, _ = random_embeddings(1500, 16, k=5, spread=0.6, seed=3)
    k = 15
    idx, dist = knn_graph(x, n_neighbors=k, metric=metric)
    a_idx, a_dist, _ = nearest_neighbors(x, k, metric, {}, metric == "cosine", np.random.RandomState(0),
                                         use_pynndescent=True, n_jobs=1)
    np.testing.assert_array_equal(a_idx[:, 0], np.arange(len(x)))
    np.testing.assert_allclose(a_dist[:, 0], 0, atol=1e-3)
    recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(a_idx, idx)])
    assert recall >= 0.95, recall
    ours = {(i, j): d for i in range(len(x)) for j, d in zip(idx[i], dist[i])}
    shared = [(ours[(i, j)], d) for i in range(len(x)) for j, d in zip(a_idx[i], a_dist[i]) if (i, j) in ours]
    o, t = np.array(shared).T
    np.testing.assert_allclose(o, t, atol=2e-3, rtol=1e-3)


def test_umap_uses_the_given_graph(monkeypatch):
    """umap's nearest_neighbors would fail if called; the graph umap smooths is exactly ours."""
    import umap.umap_ as uu
    def boom(*a, **k): raise AssertionError("umap ran its own nearest-neighbour search")
    monkeypatch.setattr(uu, "nearest_neighbors", boom)
    seen, orig = {}, uu.fuzzy_simplicial_set
    def spy(X, n_neighbors, random_state, metric, metric_kwds={}, knn_indices=None, knn_dists=None, *a, **k):
        seen.update(idx=np.array(knn_indices), dist=np.array(knn_dists), k=n_neighbors)
        return orig(X, n_neighbors, random_state, metric, metric_kwds, knn_indices, knn_dists, *a, **k)
    monkeypatch.setattr(uu, "fuzzy_simplicial_set", spy)
    x, _ = random_embeddings(600, 16, k=3, seed=4)
    knn = knn_graph(x, n_neighbors=20)              # wider than needed: trimmed to n_neighbors
    xy = umap_embed(x, n_neighbors=10, knn=knn, n_epochs=50)
    assert xy.shape == (600, 2) and np.isfinite(xy).all()
    assert seen["k"] == 10
    np.testing.assert_array_equal(seen["idx"], knn[0][:, :10])
    np.testing.assert_array_equal(seen["dist"], knn[1][:, :10])
    assert knn[0].min() >= 0        # our arrays were not modified in place by umap
    xy2 = umap_embed(x, n_neighbors=10, n_epochs=50)  # graph built inside: still never umap's search
    np.testing.assert_array_equal(xy, xy2)


def test_umap_blobs_stay_separated_and_seeded():
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    x, y = random_embeddings(1200, 64, k=6, spread=0.5, seed=5)
    xy = umap_embed(x, n_neighbors=15, seed=0)
    assert xy.shape == (1200, 2) and xy.dtype == np.float32 and np.isfinite(xy).all()
    acc = cross_val_score(KNeighborsClassifier(5), xy, y, cv=5).mean()
    assert acc >= 0.95, acc
    np.testing.assert_array_equal(umap_embed(x, n_neighbors=15, seed=0), xy)
    assert not np.array_equal(umap_embed(x, n_neighbors=15, seed=1), xy)


def test_umap_quality_matches_umap_default():
    """Same parameters, umap-learn's own (exact, small-data) neighbours: trustworthiness of the two maps agrees."""
    import umap
    from sklearn.manifold import trustworthiness
    x, _ = random_embeddings(1000, 32, k=8, spread=0.8, seed=6)
    ours = umap_embed(x, n_neighbors=15, seed=0)
    ref = umap.UMAP(n_neighbors=15, min_dist=0.1, metric="cosine", random_state=0).fit_transform(x)
    t_ours, t_ref = (trustworthiness(x, e, n_neighbors=10, metric="cosine") for e in (ours, ref))
    assert t_ours >= t_ref - 0.02 and t_ours > 0.85, (t_ours, t_ref)


def test_umap_errors():
    x, _ = random_embeddings(50, 8)
    with pytest.raises(DataError, match="itself first"):
        i, d = knn_graph(x, n_neighbors=5)
        umap_embed(x, n_neighbors=5, knn=(i[:, ::-1], d))
    with pytest.raises(DataError, match="n_neighbors=10"):
        umap_embed(x, n_neighbors=10, knn=knn_graph(x, n_neighbors=5))
    with pytest.raises(ConfigError, match="n_neighbors"):
        umap_embed(x, n_neighbors=50)
    with pytest.raises(ConfigError, match="metric"):
        knn_graph(x, metric="l1")
    with pytest.raises(DataError, match="NaN"):
        knn_graph(np.full((5, 3), np.nan))


def test_figure_contents():
    rng = np.random.default_rng(7)
    xy = rng.normal(size=(90, 2))
    lab = np.array(["cat", "dog", "emoji"])[rng.integers(0, 3, 90)]
    caps = [f"caption number {i} & more" for i in range(90)]
    fig = cluster_map(xy, color=lab, captions=caps, title="t", color_name="group")
    assert [t.type for t in fig.data] == ["scattergl"] * 3
    assert [t.name for t in fig.data] == ["cat", "dog", "emoji"]
    assert sum(len(t.x) for t in fig.data) == 90
    assert fig.layout.xaxis.title.text == "UMAP 1" and fig.layout.yaxis.title.text == "UMAP 2"
    assert fig.layout.legend.title.text == "group" and fig.layout.title.text == "t"
    rows = {int(r[2]): (r[0], r[1]) for t in fig.data for r in t.customdata}
    assert sorted(rows) == list(range(90))
    for i, (cap, cat) in rows.items():
        assert cap == f"caption number {i} &amp; more" and cat == lab[i]
    for t in fig.data:   # coordinates travel with their own points
        for x_, y_, r in zip(t.x, t.y, t.customdata): np.testing.assert_allclose((x_, y_), xy[int(r[2])])
    assert "customdata[0]" in fig.data[0].hovertemplate and "group" in fig.data[0].hovertemplate


def test_html_has_thumbnails_and_hover_script(tmp_path):
    xy = np.random.default_rng(8).normal(size=(20, 2))
    ims = [toy_image(s, "green", size=80) for s in ("circle", "square", "triangle", "circle")] * 5
    uris = thumbnails_b64(ims, size=48)
    png = base64.b64decode(uris[1].split(",", 1)[1])
    from PIL import Image
    im = Image.open(io.BytesIO(png))
    assert im.format == "PNG" and im.size == (48, 48)
    assert np.array_equal(np.asarray(im)[24, 24], np.asarray(ims[1].resize((48, 48)))[24, 24])
    fig = cluster_map(xy, color=np.arange(20) % 2, thumbnails={3: uris[3], 7: uris[7]})
    p = save_map_html(fig, tmp_path / "map.html")
    page = p.read_text()
    js = lambda u: u.replace("/", "\\u002f")
    assert js(uris[3]) in page and page.count("data:image\\u002fpng;base64") == 2
    assert "gd.on('plotly_hover'" in page and "plotly_unhover" in page and "clipwb_thumbnails" in page
    p2 = save_map_html(fig, tmp_path / "all.html", thumbnails=uris)   # list in point-index order
    assert p2.read_text().count("data:image\\u002fpng;base64") == 20


def test_map_figure_with_dataset_like_images(tmp_path):
    samples = synthetic_pairs(120, seed=1)
    x, y = random_embeddings(120, 16, k=3, seed=9)
    meta = pd.DataFrame({"id": [s.id for s in samples], "caption": [s.caption for s in samples]})
    fig = map_figure(x, y, meta, images=samples, max_thumbnails=30, n_neighbors=10, color_name="blob")
    assert sum(len(t.x) for t in fig.data) == 120 and [t.name for t in fig.data] == ["0", "1", "2"]
    th = fig.layout.meta["clipwb_thumbnails"]
    assert len(th) == 30
    i = int(next(iter(th)))
    assert th[str(i)] == thumbnails_b64([samples[i].image])[0]
    caps = {int(r[2]): r[0] for t in fig.data for r in t.customdata}
    assert all(caps[j] == samples[j].caption for j in caps)
    # a function row -> image, and sampling of points
    fig2 = map_figure(x, y, meta, images=lambda j: samples[j].image, max_points=60, n_neighbors=10)
    idx = sorted(int(r[2]) for t in fig2.data for r in t.customdata)
    assert len(idx) == 60 and len(set(idx)) == 60 and "sample of 120" in fig2.layout.title.text
    assert set(map(int, fig2.layout.meta["clipwb_thumbnails"])) == set(idx)
    with pytest.raises(DataError, match="no column 'text'"):
        map_figure(x, y, meta, caption_col="text")
