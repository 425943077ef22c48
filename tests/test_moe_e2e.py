"""End to end: `clipwb run moe` (papermill) on an MCL-style run dir with experts.json; the MoE model it writes
goes through the eval stage like any model folder."""
import json
from pathlib import Path

import pytest

from e2e_helpers import mlp_experts, run

pytestmark = pytest.mark.e2e


def test_moe_stage_from_experts_json(tmp_path):
    mlp_experts(tmp_path / "mcl")   # e0 (the base) and e1
    (tmp_path / "mcl" / "experts.json").write_text(json.dumps({"models": ["e0", "e1"]}))   # relative paths
    root = tmp_path / "runs"
    out = run("moe", root, experts=str(tmp_path / "mcl"), init="mcl", top_k=2, max_steps=2, data_limit=32,
              eval_limit=16, routing_limit=16, device="cpu")
    rd = Path(out["run_dir"])
    assert out["metrics"]["num_experts"] == 2 and "eval/retrieval/text_retrieval_recall@1" in out["metrics"]
    assert (rd / "figures" / "routing_load.html").is_file() and (rd / "routing_layers.csv").is_file()
    ev = run("eval", root, model=str(rd / "train"), data="shapes", limit=16)
    assert (ev["metrics"]["retrieval/text_retrieval_recall@1"]
            == out["metrics"]["eval/retrieval/text_retrieval_recall@1"])
