"""The README's demo results are what clipwb.results renders from benchmarks/demo_results.json (tools/readme_results.py)."""
import json
from pathlib import Path

from clipwb.results import readme_block, results_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_readme_results_are_generated_from_the_demo_metrics():
    res = json.loads((ROOT / "benchmarks" / "demo_results.json").read_text())
    assert res["pipeline"] == "demo" and {s["stage"] for s in res["steps"]} >= {"train", "eval", "cluster", "merge_sweep"}
    assert readme_block((ROOT / "README.md").read_text()) == results_markdown(res), \
        "README results differ from benchmarks/demo_results.json: run tools/readme_results.py on a demo run"
