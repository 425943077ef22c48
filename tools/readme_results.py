"""Write the README's demo results from a finished `make demo` pipeline run.

    python tools/readme_results.py runs/demo/<time>

writes benchmarks/demo_results.json (the numbers) and the block between the demo-results markers of
nbs/index.ipynb (rendered from that JSON by clipwb.results.results_markdown), then regenerates README.md from
nbs/index.ipynb (tests/test_readme_results.py and tests/test_docs.py check that all three agree).
"""
import json
import sys
from pathlib import Path

from clipwb.docs import update_index_results
from clipwb.io import atomic_write_text
from clipwb.results import demo_results, results_markdown

ROOT = Path(__file__).resolve().parents[1]

def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr); return 2
    res = demo_results(argv[0])
    atomic_write_text(ROOT / "benchmarks" / "demo_results.json", json.dumps(res, indent=1, sort_keys=True) + "\n")
    readme = update_index_results(results_markdown(res), ROOT)
    print(f"wrote {ROOT / 'benchmarks' / 'demo_results.json'}, the results block of {ROOT / 'nbs' / 'index.ipynb'} and {readme}")
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
