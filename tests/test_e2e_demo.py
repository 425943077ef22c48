"""End to end: `clipwb demo --quick` runs every stage and writes an index page whose links all resolve."""
import re
from pathlib import Path

import pytest

from e2e_helpers import clipwb

pytestmark = pytest.mark.e2e


def test_quick_demo(tmp_path):
    r = clipwb("demo", "--quick", "--runs", str(tmp_path), root=tmp_path)
    idx = Path(r.stdout.strip().splitlines()[-1].split("open ", 1)[1])
    page = idx.read_text()
    for head in ("prepare", "train", "embed", "eval", "cluster", "ft_a (train)", "ft_b (train)", "merge (merge_sweep)",
                 "mcl"):
        assert f"<h2>{head}</h2>" in page, head
    for href in re.findall(r'href="([^"]+)"', page):
        assert (idx.parent / href).exists(), href
