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


# what importing a module must not pull in: the heavy libraries load inside the functions that need them
LIGHT = {"clipwb": ("torch", "open_clip", "faiss", "umap", "plotly", "papermill"),
         "clipwb.cluster.diagnostics": ("faiss", "plotly", "sklearn", "scipy", "torch"),
         "clipwb.cluster.figures": ("faiss", "plotly", "sklearn", "scipy", "torch"),
         "clipwb.cluster.map": ("faiss", "umap", "plotly", "torch", "sklearn")}


@pytest.mark.parametrize("mod", LIGHT)
def test_import_is_light(mod):
    code = f"import sys, {mod}; print([m for m in {LIGHT[mod]!r} if m in sys.modules])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
