"""Write the README's demo results from a finished `make demo` pipeline run.

    python tools/readme_results.py runs/demo/<time>

writes benchmarks/demo_results.json (the numbers) and the README block between the demo-results markers
(rendered from that JSON by clipwb.results.results_markdown; tests/test_readme_results.py checks they agree).
"""
import json
import sys
from pathlib import Path

from clipwb.io import atomic_write_text
from clipwb.results import demo_results, results_markdown, update_block

ROOT = Path(__file__).resolve().parents[1]

def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr); return 2
    res = demo_results(argv[0])
    atomic_write_text(ROOT / "benchmarks" / "demo_results.json", json.dumps(res, indent=1, sort_keys=True) + "\n")
    readme = ROOT / "README.md"
    atomic_write_text(readme, update_block(readme.read_text(), results_markdown(res)))
    print(f"wrote {ROOT / 'benchmarks' / 'demo_results.json'} and the results block of {readme}")
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
