"""Oracles for clipwb.cluster.stream: streaming mini-batch k-means, MoDE two-level clustering, per-shard assignment."""
import numpy as np
import pandas as pd
import pytest

from clipwb.cluster.kmeans import fit_clusters
from clipwb.cluster.stream import (EmbeddingSource, TwoLevelClustering, assign_shards, minibatch_kmeans,
                                   shard_source, two_level)
from clipwb.core import ConfigError, DataError
from clipwb.io import load_embeddings, write_shard
from clipwb.testing import random_embeddings


def _write(folder, x, t=None, sizes=(400, 0, 700, 900)):
    """Shards of the rows of `x` (and `t` as text) with the given sizes; ids p00000, p00001, ..."""
    t = x if t is None else t
    edges = np.concatenate([[0], np.cumsum(sizes)])
    assert edges[-1] == len(x)
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        write_shard(folder, i, x[a:b], t[a:b], {"id": [f"p{j:05d}" for j in range(a, b)]})
    return folder


def _matched_accuracy(truth, labels):
    """Share of points whose label matches the truth after the best one-to-one relabelling (Hungarian)."""
    from scipy.optimize import linear_sum_assignment
    c = np.zeros((truth.max() + 1, labels.max() + 1))
    np.add.at(c, (truth, labels), 1)
    r, s = linear_sum_assignment(-c)
    return c[r, s].sum() / len(truth)


def _truth_objective(x, y):
    """Sum of squared distances to the mean of each true blob: the optimum for well-separated blobs."""
    return sum(((x[y == c].astype(np.float64) - x[y == c].mean(0)) ** 2).sum() for c in np.unique(y))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_minibatch_recovers_blobs_and_matches_faiss_objective(seed):
    from sklearn.metrics import adjusted_rand_score
    x, y = random_embeddings(20_000, 32, k=6, spread=0.3, seed=seed)
    mb = fit_clusters(x, "minibatch_kmeans", k=6, seed=seed, batch_size=1024)
    ref = fit_clusters(x, "kmeans", k=6, seed=seed, nredo=20, max_points_per_centroid=4000)
    assert adjusted_rand_score(y, ref.labels) == 1.0            # the reference itself found the blobs
    assert adjusted_rand_score(y, mb.labels) >= 0.99
    assert _matched_accuracy(y, mb.labels) >= 0.99
    assert abs(mb.objective - ref.objective) <= 0.02 * ref.objective, (mb.objective, ref.objective)
    d2 = ((x[:, None, :].astype(np.float64) - mb.centroids[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(mb.labels, d2.argmin(1))
    np.testing.assert_allclose(mb.objective, d2.min(1).sum(), rtol=1e-6)
    assert mb.params["n_batches"] == 20 and len(mb.objective_per_iter) == mb.params["n_epochs"] >= 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_minibatch_many_blobs_reaches_truth_objective(seed):
    """16 blobs (where faiss's random init needs many restarts): k-means++ with 3 candidates finds them all."""
    x, y = random_embeddings(20_000, 32, k=16, spread=0.3, seed=seed)
    mb = fit_clusters(x, "minibatch_kmeans", k=16, seed=seed, batch_size=1024, n_init=3)
    assert _matched_accuracy(y, mb.labels) >= 0.99
    assert mb.objective <= 1.01 * _truth_objective(x, y)


def test_minibatch_uses_sklearn_update():
    """One epoch over one batch from the same k-means++ centres is exactly one sklearn partial_fit step."""
    from sklearn.cluster import MiniBatchKMeans, kmeans_plusplus
    x, _ = random_embeddings(500, 8, k=4, seed=3)
    c = minibatch_kmeans(x, k=4, seed=0, batch_size=500, max_iter=1)
    rng = np.random.default_rng(0)                      # replays the documented seeding
    init, _ = kmeans_plusplus(x, 4, random_state=int(rng.integers(2**31)))
    km = MiniBatchKMeans(4, init=init, n_init=1, batch_size=500, random_state=int(rng.integers(2**31)))
    km.partial_fit(x)
    np.testing.assert_array_equal(c.centroids, km.cluster_centers_.astype(np.float32))
    assert c.params["n_steps"] == 1 and c.params["stopped_by"] == "max_iter"


@pytest.mark.parametrize("modality", ["image", "text"])
@pytest.mark.parametrize("opts", [dict(), dict(shuffle=False), dict(spherical=True), dict(n_init=3)])
def test_stream_equals_in_memory(tmp_path, modality, opts):
    x, _ = random_embeddings(2000, 16, k=5, seed=4)
    t, _ = random_embeddings(2000, 16, k=5, seed=5)
    _write(tmp_path, x, t)
    img, txt, _ = load_embeddings(tmp_path)
    mem = img if modality == "image" else txt
    src = shard_source(tmp_path, modality)
    a = fit_clusters(src, "minibatch_kmeans", k=5, seed=7, batch_size=300, **opts)
    b = fit_clusters(mem, "minibatch_kmeans", k=5, seed=7, batch_size=300, **opts)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.objective_per_iter == b.objective_per_iter and a.objective == b.objective
    assert a.params == b.params


def test_seed_determinism_and_seed_dependence():
    x, _ = random_embeddings(3000, 16, k=20, spread=0.6, seed=6)
    runs = [fit_clusters(x, "minibatch_kmeans", k=20, seed=s, batch_size=256, max_iter=3) for s in (1, 1, 2)]
    np.testing.assert_array_equal(runs[0].centroids, runs[1].centroids)
    assert not np.array_equal(runs[0].centroids, runs[2].centroids)


class _Recorder:
    """Wraps an EmbeddingSource and records how many rows each read asks for."""
    def __init__(self, src):
        self.src, self.reads, self.shard_reads = src, [], 0

    def __getattr__(self, name):
        return getattr(self.src, name)

    def rows(self, a, b):
        self.reads.append(b - a); return self.src.rows(a, b)

    def take(self, idx):
        self.reads.append(len(idx)); return self.src.take(idx)

    def shard(self, i):
        self.shard_reads += 1; return self.src.shard(i)


def test_memory_bounded_by_batch(tmp_path, monkeypatch):
    """No read during fitting or labelling asks for more than one batch of rows (init sample = one batch)."""
    import clipwb.cluster.stream as st
    x, y = random_embeddings(5000, 8, k=4, seed=8)
    _write(tmp_path, x, sizes=(1000,) * 5)
    rec = _Recorder(shard_source(tmp_path))
    monkeypatch.setattr(st, "_as_source", lambda s: rec)
    c = st.minibatch_kmeans(rec, k=4, seed=0, batch_size=400, init_size=400)
    assert max(rec.reads) <= 400 and sum(rec.reads) > 5000 and rec.shard_reads == 0
    t = st.two_level(rec, k=2, k_fine=8, fraction=0.05, batch_size=400)
    assert max(rec.reads) <= 400 and len(c.labels) == len(t.labels) == 5000


def _sqd(a, b):
    return ((a[:, None, :].astype(np.float64) - b[None]) ** 2).sum(-1)


def _check_two_level_maps(tl, x):
    """Brute-force oracle of the two-level structure: fine label = nearest fine centre of each row, coarse label =
    the map applied to it, map = nearest coarse centre of each fine centre. Returns the row-to-fine distances."""
    d_f = _sqd(x, tl.fine.centroids)
    np.testing.assert_array_equal(tl.fine_labels, d_f.argmin(1))
    np.testing.assert_array_equal(tl.labels, tl.fine_to_coarse[tl.fine_labels])
    np.testing.assert_array_equal(tl.fine_to_coarse, _sqd(tl.fine.centroids, tl.centroids).argmin(1))
    return d_f


def test_two_level_consistency(tmp_path):
    x, y = random_embeddings(3000, 16, k=24, spread=0.5, seed=9)
    _write(tmp_path, x, sizes=(1000, 1000, 1000))
    img, _, _ = load_embeddings(tmp_path)
    src = shard_source(tmp_path)
    tl = fit_clusters(src, "two_level", k=4, k_fine=24, fraction=0.3, seed=2, batch_size=700)
    assert isinstance(tl, TwoLevelClustering) and tl.method == "two_level"
    assert tl.params["n_fine_points"] == 900 and len(tl.fine.labels) == 900
    d_f = _check_two_level_maps(tl, img)
    # coarse centres = a clustering of the fine centres with the same method and seed
    ref = fit_clusters(tl.fine.centroids, "kmeans", k=4, seed=2)
    np.testing.assert_array_equal(tl.centroids, ref.centroids)
    np.testing.assert_array_equal(tl.coarse.centroids, ref.centroids)
    # objectives are exact sums of squares to the coarse / fine centre of each row
    np.testing.assert_allclose(tl.objective, ((img - tl.centroids[tl.labels].astype(np.float64)) ** 2).sum(), rtol=1e-6)
    np.testing.assert_allclose(tl.params["fine_objective"], d_f.min(1).sum(), rtol=1e-6)
    assert tl.sizes.sum() == tl.fine_sizes.sum() == 3000
    np.testing.assert_array_equal(tl.assign(img), tl.labels)
    np.testing.assert_array_equal(tl.assign_fine(img), tl.fine_labels)
    # in memory, same seed → same result
    tm = fit_clusters(img, "two_level", k=4, k_fine=24, fraction=0.3, seed=2)
    np.testing.assert_array_equal(tm.fine.centroids, tl.fine.centroids)
    np.testing.assert_array_equal(tm.labels, tl.labels)


def test_two_level_streaming_fine_method(tmp_path):
    """fraction=1 with minibatch_kmeans: the fine fit is the streamed minibatch fit of the whole source."""
    x, _ = random_embeddings(2000, 8, k=6, seed=10)
    _write(tmp_path, x, sizes=(500, 1500))
    src = shard_source(tmp_path)
    tl = two_level(src, k=2, k_fine=6, fine_method="minibatch_kmeans", fine_kw={"batch_size": 256})
    direct = minibatch_kmeans(src, k=6, seed=0, batch_size=256)
    np.testing.assert_array_equal(tl.fine.centroids, direct.centroids)
    np.testing.assert_array_equal(tl.fine_labels, direct.labels)
    np.testing.assert_array_equal(tl.labels, tl.fine_to_coarse[direct.labels])


def test_two_level_balanced():
    """MoDE's balanced k-means at both levels."""
    import clipwb.cluster.balanced  # noqa: F401  (registers balanced_kmeans)
    x, _ = random_embeddings(1200, 8, k=4, seed=11)
    tl = fit_clusters(x, "two_level", k=2, k_fine=8, fine_method="balanced_kmeans", coarse_method="balanced_kmeans")
    assert tl.fine.method == tl.coarse.method == "balanced_kmeans"
    # assignment is greedy nearest centre (MoDE step 3), not the balanced assign of the fit
    _check_two_level_maps(tl, x)
    ref = fit_clusters(tl.fine.centroids, "balanced_kmeans", k=2, seed=0)
    np.testing.assert_array_equal(tl.centroids, ref.centroids)
    np.testing.assert_array_equal(tl.assign(x), tl.labels)


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("assign_*.parquet"))}


def test_assign_shards_resume(tmp_path, monkeypatch):
    x, _ = random_embeddings(3000, 16, k=6, seed=12)
    emb = _write(tmp_path / "emb", x, sizes=(700, 0, 1300, 1000))
    src = shard_source(emb, "text")
    tl = fit_clusters(src, "two_level", k=3, k_fine=12, fraction=0.5, seed=0)
    ref = assign_shards(src, tl, tmp_path / "ref", progress=False)
    assert (ref["n_written"], ref["n_skipped"], ref["n_points"]) == (4, 0, 3000)
    assert ref["sizes"] == np.bincount(tl.labels, minlength=3).tolist()
    assert ref["fine_sizes"] == np.bincount(tl.fine_labels, minlength=12).tolist()
    df = pd.concat([pd.read_parquet(p) for p in sorted((tmp_path / "ref").glob("assign_*.parquet"))])
    assert df["id"].tolist() == [f"p{j:05d}" for j in range(3000)]
    np.testing.assert_array_equal(df["fine"].to_numpy(), tl.fine_labels)
    np.testing.assert_array_equal(df["coarse"].to_numpy(), tl.labels)
    want = _files(tmp_path / "ref")

    # 1) a run killed while writing shard 2: shards 0 and 1 are complete, nothing partial is left
    out, calls, real = tmp_path / "out", [], pd.DataFrame.to_parquet
    def flaky(self, path, *a, **kw):
        calls.append(path)
        if len(calls) == 3: raise KeyboardInterrupt("killed")
        return real(self, path, *a, **kw)
    monkeypatch.setattr(pd.DataFrame, "to_parquet", flaky)
    with pytest.raises(KeyboardInterrupt):
        assign_shards(emb, tl, out, modality="text", progress=False)
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == ["assign_00000.parquet", "assign_00001.parquet", "assignment.json"]
    # 2) rerun: the rest is written, the first two are skipped
    r = assign_shards(emb, tl, out, modality="text", progress=False)
    assert (r["n_written"], r["n_skipped"], r["n_points"]) == (2, 2, 3000)
    assert _files(out) == want
    # 3) one file deleted and a stray temporary file: only that shard is rewritten, the temp file is removed
    (out / "assign_00002.parquet").unlink()
    (out / ".assign_00003.parquet.abc123.tmp").write_bytes(b"half a file")
    r = assign_shards(emb, tl, out, modality="text", progress=False)
    assert (r["n_written"], r["n_skipped"], r["n_tmp_removed"]) == (1, 3, 1)
    assert _files(out) == want and sorted(p.name for p in out.iterdir()) == sorted([*want, "assignment.json"])
    assert r["sizes"] == ref["sizes"] and r["n_points"] == 3000


def test_assign_shards_refuses_stale_or_foreign(tmp_path):
    x, _ = random_embeddings(1000, 8, k=3, seed=13)
    emb = _write(tmp_path / "emb", x, sizes=(600, 400))
    src = shard_source(emb)
    a = fit_clusters(src, "minibatch_kmeans", k=3, seed=0)
    r = assign_shards(src, a, tmp_path / "out", progress=False)
    assert pd.read_parquet(tmp_path / "out" / "assign_00001.parquet").columns.tolist() == ["id", "cluster"]
    assert r["sizes"] == np.bincount(a.labels, minlength=3).tolist()
    b = fit_clusters(src, "minibatch_kmeans", k=4, seed=0)
    with pytest.raises(DataError, match="another clustering"):
        assign_shards(src, b, tmp_path / "out", progress=False)
    assert assign_shards(src, b, tmp_path / "out", overwrite=True, progress=False)["n_written"] == 2
    # the shards change under existing assignment files → refused
    write_shard(emb, 1, x[600:], x[600:], {"id": [f"q{j}" for j in range(400)]})
    with pytest.raises(DataError, match="do not match shard 1"):
        assign_shards(src, b, tmp_path / "out", progress=False)
    with pytest.raises(DataError, match="dimension 8"):
        assign_shards(src, fit_clusters(x[:, :4], k=2), tmp_path / "x", progress=False)


def test_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no complete embedding shards"):
        shard_source(tmp_path / "empty")
    x, _ = random_embeddings(100, 8, seed=0)
    write_shard(tmp_path / "mix", 0, x[:50], x[:50], {"id": range(50)})
    write_shard(tmp_path / "mix", 3, x[50:, :4], x[50:, :4], {"id": range(50)})
    with pytest.raises(DataError, match="img_emb_00003.npy: dimension 4 differs from 8"):
        shard_source(tmp_path / "mix")
    with pytest.raises(ConfigError, match="modality"):
        EmbeddingSource(tmp_path / "mix", "audio")
    src = shard_source(tmp_path / "mix", shards=[0])
    with pytest.raises(ConfigError, match=r"1 <= k <= N \(number of points, 50\)"):
        fit_clusters(src, "minibatch_kmeans", k=51)
    with pytest.raises(ConfigError, match="k_fine=60 is more than the 50 sampled rows"):
        fit_clusters(src, "two_level", k=51, k_fine=60)
    with pytest.raises(ConfigError, match=r"fraction must be in \(0, 1\]"):
        fit_clusters(x, "two_level", k=2, fraction=0.0)
    with pytest.raises(ConfigError, match=r"fraction must be in \(0, 1\]"):
        fit_clusters(x, "two_level", k=2, fraction=1.01)
    with pytest.raises(ConfigError, match="k_fine=2 must be >= k=3"):
        fit_clusters(x, "two_level", k=3, k_fine=2)
    with pytest.raises(ConfigError, match="batches of"):
        fit_clusters(x, "minibatch_kmeans", k=51, batch_size=60)   # two batches of 50 rows
