"""What one clipwb module takes from another is public: no `_private` name is imported across modules (a helper that
two modules share gets a public name, a docstring and a place in the docs)."""
import ast
import re
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
    bad = [hit for py in sorted((ROOT / "clipwb").rglob("*.py")) if py.name != "_modidx.py"
           for hit in _private_imports(py)]
    assert not bad, ("make these public (a name without the underscore, a docstring) or keep them in one module:\n"
                     + "\n".join(bad))


def test_the_check_sees_relative_and_absolute_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "clipwb" / "cluster"
    pkg.mkdir(parents=True)
    (pkg / "x.py").write_text("from .kmeans import as_points, _faiss\nfrom ..io import _l2n\ndef f():\n"
                              "    from clipwb.embed import _dim\n    from clipwb.cluster.x import _own\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert [h.split(": ", 1)[1] for h in _private_imports(pkg / "x.py")] == [
        "from clipwb.cluster.kmeans import _faiss", "from clipwb.io import _l2n", "from clipwb.embed import _dim"]


_INLINE_NORM = re.compile(r"/\s*(?:np\.maximum\(\s*)?np\.linalg\.norm\(|^\s*def \w*(?:l2n|l2_norm)\w*\(", re.M)


def test_one_l2_normaliser():
    """Rows are L2-normalised by `clipwb.core.l2_normalize` alone: no other module defines a normaliser or divides by
    `np.linalg.norm` itself (torch losses may call `F.normalize` on their own features)."""
    bad = [f"{py.relative_to(ROOT)}:{src[:m.start()].count(chr(10)) + 1}: {m.group(0).strip()}"
           for py in sorted((ROOT / "clipwb").rglob("*.py")) if py.name not in ("_modidx.py", "core.py")
           for src in [py.read_text()] for m in _INLINE_NORM.finditer(src)]
    assert not bad, "use clipwb.core.l2_normalize:\n" + "\n".join(bad)
    assert _INLINE_NORM.search("x = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)")
    assert _INLINE_NORM.search("def _l2n(x):") and not _INLINE_NORM.search("def normalized(self):")
