"""The cluster stage on synthetic shards: labels stay in each cluster run, streaming methods never load the
embeddings."""
import json

import numpy as np
import pytest

import clipwb.cluster.run as cr
from clipwb.cluster import fit_clusters, joint_labels, load_labels
from clipwb.cluster.run import ClusterCfg, run_cluster
from clipwb.io import write_json, write_shard
from clipwb.testing import random_embeddings


def _embed_folder(folder, n=300, d=16, k=3, seed=0, shard=100):
    """An embed-stage shard folder: blobs as image and text embeddings, ids and captions in the metadata."""
    x, y = random_embeddings(n, d, k=k, seed=seed)
    t, _ = random_embeddings(n, d, k=k, seed=seed + 1)
    for i in range(0, n, shard):
        write_shard(folder, i // shard, x[i:i + shard], t[i:i + shard],
                    {"id": [f"s{j:04d}" for j in range(i, min(n, i + shard))],
                     "caption": [f"blob {y[j]} sample {j}" for j in range(i, min(n, i + shard))]})
    write_json(folder / "manifest.json", {"data": "no_such_card", "split": None, "n_embedded": n})
    return folder


def test_two_cluster_runs_with_different_k_keep_their_own_labels(tmp_path):
    from clipwb.cluster.browser import ClusterBrowser
    emb = _embed_folder(tmp_path / "emb")
    kw = dict(embeddings=str(emb), niter=5, map_points=0, stability_seeds=0)
    r2 = run_cluster(ClusterCfg(k=2, **kw), tmp_path / "k2")
    r4 = run_cluster(ClusterCfg(k=4, **kw), tmp_path / "k4")
    l2, l4 = load_labels(tmp_path / "k2"), load_labels(tmp_path / "k4")
    assert not list(emb.glob("labels*")), "nothing may be written beside the embeddings"
    # each run's labels are its own: joint cells t·k + i with its own k, sizes as its metrics say
    np.testing.assert_array_equal(l2["cluster"], 2 * l2["text_cluster"] + l2["image_cluster"])
    np.testing.assert_array_equal(l4["cluster"], 4 * l4["text_cluster"] + l4["image_cluster"])
    assert l2["cluster"].max() < 4 and l4["cluster"].nunique() > 4
    assert (r2.metrics["cells"], r4.metrics["cells"]) == (l2["cluster"].nunique(), l4["cluster"].nunique())
    assert list(l2["id"]) == [f"s{j:04d}" for j in range(300)] and set(l2.columns) >= {"id", "pseudo"}
    # the browser reads the run it is given
    b2, b4 = ClusterBrowser.from_run(tmp_path / "k2"), ClusterBrowser.from_run(tmp_path / "k4")
    assert (sorted(b2.clusters) == sorted(l2["cluster"].unique())
            and sorted(b4.clusters) == sorted(l4["cluster"].unique()))
    # the next stage chains onto the k = 2 run, unaffected by the k = 4 run
    run_cluster(ClusterCfg(k=2, seed=1, stage=1, prev=str(tmp_path / "k2"), **kw), tmp_path / "k2s1")
    l21 = load_labels(tmp_path / "k2s1")
    np.testing.assert_array_equal(l21["pseudo"], 4 * l2["cluster"] + l21["cluster"])
    np.testing.assert_array_equal(load_labels(tmp_path / "k2s1", 0)["pseudo"], l2["pseudo"])


@pytest.mark.parametrize("method", ["minibatch_kmeans", "two_level"])
def test_streaming_methods_read_shards_and_match_in_memory_fit(tmp_path, monkeypatch, method):
    from clipwb.io import load_embeddings
    emb = _embed_folder(tmp_path / "emb", n=400, shard=128)
    img, txt, _ = load_embeddings(emb)   # the oracle: the same clusterer on the arrays in memory

    def refuse(*a, **k): raise AssertionError("a streaming method must not load every embedding")
    monkeypatch.setattr(cr, "load_embeddings", refuse)
    res = run_cluster(ClusterCfg(embeddings=str(emb), method=method, k=3, k_fine=8, map_points=0, stability_seeds=2),
                      tmp_path / "run")
    assert res.metrics["streamed"] is True
    opts = dict(k_fine=8) if method == "two_level" else {}
    want = joint_labels(fit_clusters(txt, method, k=3, **opts).labels, fit_clusters(img, method, k=3, **opts).labels,
                        k_image=3)
    np.testing.assert_array_equal(load_labels(tmp_path / "run")["cluster"], want)
    diag = json.loads((tmp_path / "run" / "diagnostics.json").read_text())
    assert diag["stage"]["streamed"] and diag["stage"]["diagnostics_rows"] == 400 and sum(diag["sizes"]) == 400


def test_streaming_diagnostics_use_a_bounded_sample(tmp_path, monkeypatch):
    emb = _embed_folder(tmp_path / "emb", n=300, shard=64)
    monkeypatch.setattr(cr, "STREAM_SAMPLE", 120)
    res = run_cluster(ClusterCfg(embeddings=str(emb), method="two_level", modality="image", k=3, k_fine=6,
                                 map_points=0, stability_seeds=0), tmp_path / "run")
    diag = json.loads((tmp_path / "run" / "diagnostics.json").read_text())
    assert diag["stage"]["diagnostics_rows"] == 120 and sum(diag["sizes"]) == 120
    assert len(load_labels(tmp_path / "run")) == 300 and res.metrics["n"] == 300
