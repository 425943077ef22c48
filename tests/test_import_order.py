"""One direction: a module of the package imports only modules generated from lower-numbered notebooks (or its own),
at module level and inside functions alike, and no import circle exists.

The walk reads every generated module's syntax tree: absolute and relative imports, function-level ones included,
`from package import submodule` counted as an import of the submodule. Importing `clipwb.a.b` from outside the package
`clipwb.a` also runs `clipwb/a/__init__.py`, so that package's `__init__` notebook must be lower too."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "clipwb"
HEADER = re.compile(r"File to edit: (?:\.\./)+nbs/([^ /]+)\.ipynb")


def _name(p: Path) -> str:
    parts = p.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, tuple[Path, tuple]]:
    "{module: (file, notebook key)} of every generated module; the key orders notebooks as their names do."
    out = {}
    for p in PKG.rglob("*.py"):
        if p.name == "_modidx.py": continue
        m = HEADER.search(p.read_text())
        if m is None: continue                      # not generated (the version-only clipwb/__init__.py)
        num = re.match(r"(\d+)([a-z]?)_", m.group(1))
        assert num, f"{p}: notebook {m.group(1)} has no NN_ number"
        out[_name(p)] = (p, (int(num.group(1)), num.group(2)), m.group(1))
    return out


def imports(mod: str, path: Path, known) -> list[tuple[str, int]]:
    "(imported clipwb module, line) of every import in `path`, function-level ones included."
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    found = []
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import):
            found += [(a.name, n.lineno) for a in n.names if a.name.split(".")[0] == "clipwb"]
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - n.level + 1]
                base = ".".join(parts + ([n.module] if n.module else []))
            if base.split(".")[0] != "clipwb": continue
            found += [(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base, n.lineno) for a in n.names]
    out = []
    for target, line in found:
        while target not in known and "." in target: target = target.rpartition(".")[0]
        if target in known and target != mod: out.append((target, line))
    return out


def graph():
    mods = modules()
    edges = {}
    for mod, (path, _, _) in mods.items():
        for target, line in imports(mod, path, mods):
            edges.setdefault((mod, target), line)
            # the packages above the target that the importer is not inside run their __init__ first
            parts = target.split(".")
            for i in range(2, len(parts)):
                parent = ".".join(parts[:i])
                if parent in mods and not (mod + ".").startswith(parent + "."): edges.setdefault((mod, parent), line)
    return mods, edges


def test_every_module_is_mapped_to_a_notebook():
    mods = modules()
    assert len(mods) > 40 and all(nb for _, _, nb in mods.values())
    assert "clipwb.runs" in mods and "clipwb.models.factory" in mods


def test_no_import_reaches_a_later_notebook():
    mods, edges = graph()
    up = [f"{mods[a][2]} ({mods[a][0].relative_to(ROOT)}:{line}) imports {b} from the later notebook {mods[b][2]}"
          for (a, b), line in sorted(edges.items()) if mods[b][1] > mods[a][1]]
    assert up == [], "imports that reach up:\n  " + "\n  ".join(up)


def test_no_import_circle():
    mods, edges = graph()
    adj = {m: sorted(b for a, b in edges if a == m) for m in mods}
    index, low, stack, on, circles, counter = {}, {}, [], set(), [], [0]

    def visit(v):                                    # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]; counter[0] += 1; stack.append(v); on.add(v)
        for w in adj[v]:
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: circles.append(sorted(comp))
    for v in mods:
        if v not in index: visit(v)
    assert circles == [], f"import circles: {circles}"


def test_the_guard_sees_a_planted_upward_import(tmp_path):
    "The walk finds function-level and relative imports: a planted one is reported."
    src = "def f():\n    from ..pipeline import run_pipeline\n    import clipwb.cli\n"
    p = tmp_path / "clipwb" / "data" / "x.py"; p.parent.mkdir(parents=True); p.write_text(src)
    known = {"clipwb.pipeline": None, "clipwb.cli": None, "clipwb.data": None}
    assert imports("clipwb.data.x", p, known) == [("clipwb.pipeline", 2), ("clipwb.cli", 3)]
