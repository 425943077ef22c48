"""End to end: `clipwb demo --quick` runs every stage through the pipeline runner (the same path as `make demo`) and
writes the pipeline report, whose links all resolve; every step is done, with 2 pinned threads recorded."""
import json
import re
from pathlib import Path

import pytest

from e2e_helpers import clipwb

pytestmark = pytest.mark.e2e


def test_quick_demo(tmp_path):
    r = clipwb("demo", "--quick", "--runs", str(tmp_path), root=tmp_path)
    report = Path(r.stdout.strip().splitlines()[-1].split("report: ", 1)[1])
    rec = json.loads((report.parent / "pipeline.json").read_text())
    assert rec["name"] == "demo-quick" and rec["threads"] == 2
    assert [s["name"] for s in rec["steps"]] == ["prepare", "train", "embed", "eval", "cluster", "ft_a", "ft_b",
                                                 "merge", "mcl_base", "mcl", "moe", "moe_upcycled", "mode_seed",
                                                 "mode_embed", "mode"]
    assert {s["status"] for s in rec["steps"]} == {"done"}, [(s["name"], s["error"]) for s in rec["steps"]]
    for s in rec["steps"]:
        env = json.loads((Path(s["run_dir"]) / "env.json").read_text())
        assert env["threads"]["OMP_NUM_THREADS"] == "2", (s["name"], env["threads"])
    page = report.read_text()
    for step in rec["steps"]:
        assert f"id='step-{step['name']}'" in page, step["name"]
    for href in re.findall(r'href="([^"#:]+)"', page):   # relative links (not https://…)
        assert (report.parent / href).exists(), href
