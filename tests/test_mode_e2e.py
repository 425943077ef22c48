"""MoDE through the CLI: experts launched one by one (as a job array would) are found and skipped by `clipwb run mode`."""
import json
from pathlib import Path

import pytest

from e2e_helpers import run


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
    res = json.loads((rd / "results.json").read_text())
    tab = res["table"]
    assert set(tab) == {"shapes/shape", "shapes/colour", "shapes/size", "shapes/position", "shapes/texture", "mean"}
    assert set(tab["mean"]) == {"expert_0", "expert_1", "dense", "best_expert", "uniform", "weighted"}
    for t, w in res["weights"].items():
        assert abs(sum(w.values()) - 1) < 1e-6, t
    assert out["metrics"]["mean/weighted"] == pytest.approx(tab["mean"]["weighted"])
    for f in ("table.csv", "weights.csv", "figures/weights.html", "figures/table.html"):
        assert (rd / f).is_file(), f
