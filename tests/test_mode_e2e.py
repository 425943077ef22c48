"""MoDE through the CLI: experts launched one by one (as a job array would) are found and skipped by `clipwb run
mode`."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from e2e_helpers import run


def _recomputed_table(expert_dirs, weights, data="shapes", split="test", limit=32):
    """Zero-shot top-1 of each expert and of the uniform and weighted ensembles, computed here from the saved expert
    weights with open_clip's own forward passes: CLIP prompt ensembling (mean of unit prompt embeddings per class,
    renormalised), cosine logits, Σ_k w_k·logits_k, argmax; and retrieval R@1 both ways from caption × image cosines
    (a caption's first-ranked image is its own; an image's first-ranked caption is one of its own)."""
    from clipwb.data.datasets import load_dataset
    from clipwb.models import create_model_and_transforms, get_tokenizer
    ds = load_dataset(data, split)
    idx = [i * len(ds) // limit for i in range(limit)] if limit < len(ds) else list(range(len(ds)))
    from clipwb.eval.zeroshot import TEMPLATES     # the card names a template set (the text, not code)
    templates = list(TEMPLATES[ds.templates]) if isinstance(ds.templates, str) else list(ds.templates)
    assert all("{c}" in t for t in templates)
    out = {}
    logits = {}
    for k, d in enumerate(expert_dirs):
        model, _, pre = create_model_and_transforms(str(d))
        tok = get_tokenizer(str(d))
        model.eval()
        with torch.no_grad():
            img = model.encode_image(torch.stack([pre(ds[i].image) for i in idx]))
            img = img / img.norm(dim=-1, keepdim=True)
            for lab in ds.label_names():
                names = ds.classnames(lab)
                cls = []
                for c in names:
                    t = model.encode_text(tok([tpl.replace("{c}", c) for tpl in templates]))
                    m = (t / t.norm(dim=-1, keepdim=True)).mean(0)
                    cls.append(m / m.norm())
                logits.setdefault(lab, []).append((img @ torch.stack(cls).T).double().numpy())
            caps = [(c, j) for j, i in enumerate(idx) for c in ds.all_captions(i)]
            txt = model.encode_text(tok([c for c, _ in caps]))
            S = ((txt / txt.norm(dim=-1, keepdim=True)) @ img.T).double().numpy()      # [captions, images]
            for lab in ("retrieval_t2i", "retrieval_i2t"): logits.setdefault(lab, []).append(S)
    own = np.array([j for _, j in caps])
    r1 = {"retrieval_t2i": lambda S: float((S.argmax(1) == own).mean()),
          "retrieval_i2t": lambda S: float((own[S.argmax(0)] == np.arange(S.shape[1])).mean())}
    for lab, lgs in logits.items():
        y = np.asarray(ds.targets(lab))[idx] if lab not in r1 else None
        acc = r1.get(lab) or (lambda l: float((l.argmax(1) == y).mean()))
        w = np.asarray(weights[f"{data}/{lab}"])
        out[f"{data}/{lab}"] = {**{f"expert_{k}": acc(l) for k, l in enumerate(lgs)},
                                "uniform": acc(sum(lgs) / len(lgs)),
                                "weighted": acc(sum(wk * l for wk, l in zip(w, lgs)))}
    return out


@pytest.mark.e2e
def test_mode_reuses_array_experts(tmp_path):
    root = tmp_path / "runs"
    seed = run("train", root, data="shapes", model="clipwb-micro", data_limit=64, batch_size=16, epochs=2,
               max_steps="none", checkpoint_every=2, keep_checkpoints="true")
    emb = run("embed", root, model=seed["run_dir"], data="shapes", split="train", limit=64)
    common = dict(seed_model=seed["run_dir"], seed_step=6, embeddings=emb["run_dir"], k=2, k_fine=4)
    e1 = run("mode_expert", root, coarse=1, **common)                       # one array element
    assert e1["metrics"]["seed_step"] == 6 and e1["metrics"]["steps"] == 8
    out = run("mode", root, eval_data="shapes", limit=32, **common)
    rd = Path(out["run_dir"])
    experts = json.loads((rd / "experts.json").read_text())["experts"]
    assert [x["status"] for x in experts] == ["done", "complete"]           # expert 1 was reused, not retrained
    assert experts[1]["run_dir"] == e1["run_dir"]
    assert len(list((root / "mode_expert").iterdir())) == 2
    # the dense column is the seed continued on all its data for the experts' total steps (2 + 2), a train run
    dense = json.loads((rd / "experts.json").read_text())["dense"]
    dm = json.loads((Path(dense["run_dir"]) / "metrics.json").read_text())
    assert out["metrics"]["dense/steps"] == out["metrics"]["experts/steps"] == dm["steps"] - 6 == 4
    assert Path(dense["run_dir"]).parent == root / "train" and dm["n_samples"] == 64
    res = json.loads((rd / "results.json").read_text())
    tab = res["table"]
    tasks = {"shapes/shape", "shapes/colour", "shapes/size", "shapes/position", "shapes/texture",
             "shapes/retrieval_t2i", "shapes/retrieval_i2t"}
    assert set(tab) == tasks | {"mean", "mean_zeroshot", "mean_retrieval"}
    assert set(tab["mean"]) == {"expert_0", "expert_1", "dense", "best_expert", "uniform", "weighted"}
    for t, w in res["weights"].items():
        assert abs(sum(w.values()) - 1) < 1e-6, t
    assert out["metrics"]["mean/weighted"] == pytest.approx(tab["mean"]["weighted"])
    # every expert and ensemble cell recomputed independently from the saved experts and the reported weights
    w = {t: [res["weights"][t][f"expert_{k}"] for k in range(2)] for t in res["weights"]}
    mine = _recomputed_table([Path(x["run_dir"]) / "model" for x in experts], w, limit=32)
    assert set(mine) == tasks
    assert out["metrics"]["mean_retrieval/weighted"] == pytest.approx(
        np.mean([tab[t]["weighted"] for t in tasks if "retrieval" in t]))
    for t, row in mine.items():
        for col, v in row.items():
            assert tab[t][col] == pytest.approx(v, abs=1 / 32 + 1e-9), (t, col)   # one sample: a near tie may flip
        assert sum(tab[t][col] == pytest.approx(v, abs=1e-9) for col, v in row.items()) >= len(row) - 1, t
    for f in ("table.csv", "weights.csv", "figures/weights.html", "figures/table.html"):
        assert (rd / f).is_file(), f
