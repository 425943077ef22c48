"""Every module imports alone in a fresh interpreter; `import clipwb` stays light."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(".".join(("clipwb",) + p.relative_to(ROOT / "clipwb").with_suffix("").parts)
                 for p in (ROOT / "clipwb").rglob("*.py")
                 if p.name not in ("__init__.py", "_modidx.py", "__main__.py"))


@pytest.mark.parametrize("mod", MODULES)
def test_module_imports_alone(mod):
    r = subprocess.run([sys.executable, "-c", f"import {mod}"], capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr[-2000:]


def test_import_clipwb_is_light():
    code = "import sys, clipwb; heavy = [m for m in ('torch', 'open_clip', 'faiss', 'umap', 'plotly', 'papermill') if m in sys.modules]; print(heavy)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
