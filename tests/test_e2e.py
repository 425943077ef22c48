"""End to end: the stage notebooks run one after another by papermill through the `clipwb` CLI into one temp runs
root."""
import json
from pathlib import Path

import numpy as np
import pytest

from e2e_helpers import clipwb, run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def trained(root):
    return run("train", root, data="shapes", model="clipwb-micro", max_steps=3, batch_size=8, data_limit=48)


def test_prepare(root):
    out = run("prepare", root, data="shapes", limit=24)
    m = out["metrics"]
    assert {k: v for k, v in m.items() if "/" not in k} == {"n_train": 24, "n_test": 24, "skipped_records_train": 0,
                                                             "skipped_records_test": 0}
    assert [m[f"{s}/{k}"] for s in ("train", "test") for k in ("n_expected", "n_readable", "n_lost")] == [24, 24, 0] * 2
    run_dir = Path(out["run_dir"])
    summary = json.loads((run_dir / "prepare_summary.json").read_text())
    assert summary["splits"]["train"]["n"] == 24 and (run_dir / "figures" / "samples.png").stat().st_size > 0
    assert (run_dir / "figures" / "class_counts.html").is_file()


def test_train(trained):
    m = trained["metrics"]
    assert m["steps"] == 3 and m["final_loss"] > 0
    model_dir = Path(trained["run_dir"]) / "model"
    assert (model_dir / "open_clip_config.json").is_file() and (model_dir / "open_clip_model.safetensors").is_file()


def test_embed(root, trained):
    out = run("embed", root, model=trained["run_dir"], data="shapes", limit=40, shard_size=16)
    m = out["metrics"]
    assert (m["n_embedded"], m["n_shards"], m["n_skipped"]) == (40, 3, 0)
    from clipwb.io import load_embeddings
    img, txt, meta = load_embeddings(Path(out["run_dir"]) / "embeddings")
    assert img.shape == (40, m["dim"]) and meta["id"].is_unique


def _recall_at_k(queries, candidates, target, ks):
    """Brute force (float64, stable sort): the fraction of queries whose target candidate is among the k best."""
    pos = np.argsort(-(queries @ candidates.T), axis=1, kind="stable").argsort(axis=1)[np.arange(len(target)), target]
    return {k: float(np.mean(pos < k)) for k in ks}


def test_eval_metrics_recomputed_from_saved_embeddings(root, trained):
    """The eval stage's recall@k and zero-shot accuracy equal NumPy brute force over the embed stage's saved fp16 shards
    of the same model and split (class prompts embedded here with open_clip's own loader), up to fp16 rounding."""
    import open_clip
    import torch
    from clipwb.data.datasets import load_dataset
    from clipwb.eval.zeroshot import TEMPLATES
    from clipwb.io import load_embeddings
    from clipwb.models import get_tokenizer
    ev = run("eval", root, model=trained["run_dir"], data="shapes", split="test", limit="none")["metrics"]
    em = run("embed", root, model=trained["run_dir"], data="shapes", split="test", limit="none", shard_size=64)
    img, txt, meta = load_embeddings(Path(em["run_dir"]) / "embeddings")
    n = len(meta)
    assert ev["n_samples"] == n > 100 and em["metrics"]["n_skipped"] == 0
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    img, txt = unit(img.astype(np.float64)), unit(txt.astype(np.float64))
    tol = 2 / n   # fp16 shards vs the eval's fp32 embeddings: at most two near-tied queries may change sides
    ks = (1, 5, 10)
    for k, v in _recall_at_k(txt, img, np.arange(n), ks).items():      # one caption per shapes image
        assert abs(ev[f"retrieval/image_retrieval_recall@{k}"] - v) <= tol, (
            k, ev[f"retrieval/image_retrieval_recall@{k}"], v)
    for k, v in _recall_at_k(img, txt, np.arange(n), ks).items():
        assert abs(ev[f"retrieval/text_retrieval_recall@{k}"] - v) <= tol, (
            k, ev[f"retrieval/text_retrieval_recall@{k}"], v)
    model_dir = Path(trained["run_dir"]) / "model"
    model = open_clip.create_model(f"local-dir:{model_dir}").eval()
    tok, ds, checked = get_tokenizer(str(model_dir)), load_dataset("shapes", "test"), 0
    for lab in ds.label_names():
        names = ds.classnames(lab)
        prompts = [t.replace("{c}", c) for c in names for t in TEMPLATES["shapes"]]
        with torch.no_grad():
            w = unit(model.encode_text(tok(prompts)).double().numpy())
        w = unit(w.reshape(len(names), len(TEMPLATES["shapes"]), -1).mean(1))
        target = np.array([names.index(c) for c in meta[lab]])
        acc1 = float(np.mean((img @ w.T).argmax(1) == target))
        assert abs(ev[f"zeroshot/{lab}/acc1"] - acc1) <= tol, (lab, ev[f"zeroshot/{lab}/acc1"], acc1)
        checked += 1
    assert checked == 5


@pytest.fixture(scope="module")
def embedded(root, trained):
    return run("embed", root, model=trained["run_dir"], data="shapes", limit=60, shard_size=25)


def test_cluster_two_mcl_stages(root, embedded):
    """Stage 0 clusters the embed run (joint image×text labels), stage 1 accumulates onto it; labels stay in the cluster
    runs."""
    import numpy as np
    import pandas as pd
    emb = embedded["run_dir"]
    s0 = run("cluster", root, embeddings=emb, k=2, niter=5, map_points=40, stability_seeds=2)
    s1 = run("cluster", root, embeddings=emb, k=2, niter=5, seed=1, stage=1, prev=s0["run_dir"], map_points=0,
             stability_seeds=0)
    l0 = pd.read_parquet(Path(s0["run_dir"]) / "labels.parquet")
    l1 = pd.read_parquet(Path(s1["run_dir"]) / "labels.parquet")
    assert len(l0) == 60 and list(l0["id"]) == list(l1["id"])
    np.testing.assert_array_equal(l0["cluster"], 2 * l0["text_cluster"] + l0["image_cluster"])
    np.testing.assert_array_equal(l1["pseudo"], 4 * l0["cluster"] + l1["cluster"])
    assert s1["metrics"]["cells_per_stage"] == [l0["cluster"].nunique(), l1["cluster"].nunique()]
    assert s1["metrics"]["pseudo_cells"] == l1["pseudo"].nunique()
    from clipwb.cluster import load_labels
    assert not list((Path(emb) / "embeddings").glob("labels*")), "nothing is written beside the embeddings"
    np.testing.assert_array_equal(load_labels(s1["run_dir"])["pseudo"], l1["pseudo"])
    back = load_labels(s1["run_dir"], 0)
    np.testing.assert_array_equal(back["cluster"], l0["cluster"])
    np.testing.assert_array_equal(back["pseudo"], l0["pseudo"])
    figs = json.loads((Path(s1["run_dir"]) / "artifacts.json").read_text())["figures"]
    assert "sankey" in figs and (Path(s1["run_dir"]) / figs["sankey"]).is_file()
    page = (Path(s0["run_dir"]) / "map.html").read_text()
    assert "data:image/png;base64," in page, "the map has thumbnails from the manifest's dataset"
    diag = json.loads((Path(s0["run_dir"]) / "diagnostics.json").read_text())
    assert sum(diag["sizes"]) == 60 and {r["factor"] for r in diag["agreement"]} >= {"shape", "colour"}


def test_complete_run_is_skipped(root, trained):
    r = clipwb("run", "train", "-p", "data", "shapes", "-p", "model", "clipwb-micro", "-p", "max_steps", "3",
               "-p", "batch_size", "8", "-p", "data_limit", "48", root=root)
    out = json.loads(r.stdout[r.stdout.index("{"):])
    assert out["status"] == "complete" and out["run_dir"] == trained["run_dir"]
