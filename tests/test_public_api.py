"""What one clipwb module takes from another is public: no `_private` name is imported across modules (a helper that
two modules share gets a public name, a docstring and a place in the docs)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _private_imports(py: Path) -> list[str]:
    mod = ".".join(py.relative_to(ROOT).with_suffix("").parts)
    pkg = mod.rsplit(".", 1)[0] if py.name != "__init__.py" else mod.removesuffix(".__init__")
    found = []
    for node in ast.walk(ast.parse(py.read_text())):
        if not isinstance(node, ast.ImportFrom) or node.module == "__future__": continue
        if node.level:   # relative: resolve against this module's package
            base = pkg.split(".")[:len(pkg.split(".")) - node.level + 1]
            src = ".".join(base + ([node.module] if node.module else []))
        else: src = node.module or ""
        if src.split(".")[0] != "clipwb" or src == mod: continue
        found += [f"{py.relative_to(ROOT)}:{node.lineno}: from {src} import {a.name}" for a in node.names
                  if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def test_no_private_names_imported_across_modules():
    bad = [hit for py in sorted((ROOT / "clipwb").rglob("*.py")) if py.name != "_modidx.py" for hit in _private_imports(py)]
    assert not bad, "make these public (a name without the underscore, a docstring) or keep them in one module:\n" + "\n".join(bad)


def test_the_check_sees_relative_and_absolute_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "clipwb" / "cluster"
    pkg.mkdir(parents=True)
    (pkg / "x.py").write_text("from .kmeans import as_points, _faiss\nfrom ..io import _l2n\ndef f():\n"
                              "    from clipwb.embed import _dim\n    from clipwb.cluster.x import _own\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert [h.split(": ", 1)[1] for h in _private_imports(pkg / "x.py")] == [
        "from clipwb.cluster.kmeans import _faiss", "from clipwb.io import _l2n", "from clipwb.embed import _dim"]
