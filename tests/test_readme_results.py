"""The README's demo results are what clipwb.results renders from benchmarks/demo_results.json (tools/readme_results.py):
the block lives in nbs/index.ipynb, and README.md (generated from it) carries the same block."""
import json
from pathlib import Path

from clipwb.docs import cell_source, read_notebook
from clipwb.results import readme_block, results_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_readme_results_are_generated_from_the_demo_metrics():
    res = json.loads((ROOT / "benchmarks" / "demo_results.json").read_text())
    assert res["pipeline"] == "demo" and {s["stage"] for s in res["steps"]} >= {"train", "eval", "cluster", "merge_sweep"}
    index = "\n\n".join(cell_source(c) for c in read_notebook(ROOT / "nbs" / "index.ipynb")["cells"])
    assert readme_block(index) == results_markdown(res), \
        "nbs/index.ipynb's results differ from benchmarks/demo_results.json: run tools/readme_results.py on a demo run"
    assert readme_block((ROOT / "README.md").read_text()) == results_markdown(res), \
        "README.md's results differ from nbs/index.ipynb's: run make readme"
