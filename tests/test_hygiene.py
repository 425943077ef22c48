"""Repository hygiene: notebooks clean and small, export in sync, one module per notebook, cards valid."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT / "nbs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
LIB_NBS = [p for p in NBS if p.parent == ROOT / "nbs" and p.name != "index.ipynb"]
STAGE_NBS = sorted((ROOT / "nbs" / "stages").glob("*.ipynb"))


def _cells(p):
    return json.loads(p.read_text())["cells"]


def _default_exp(p):
    for c in _cells(p):
        m = re.search(r"^#\|\s*default_exp\s+(\S+)", "".join(c["source"]), re.M)
        if m:
            return m.group(1)
    return None


@pytest.mark.parametrize("nb", NBS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_is_clean(nb):
    """What nbdev_clean would write is what is committed."""
    from nbdev.clean import clean_nb
    nbj = json.loads(nb.read_text())
    before = json.dumps(nbj, sort_keys=True)
    clean_nb(nbj, allowed_cell_metadata_keys={"tags"})
    assert json.dumps(nbj, sort_keys=True) == before, f"{nb.name}: run nbdev_clean"
    assert all(c.get("execution_count") is None for c in nbj["cells"] if c["cell_type"] == "code")


@pytest.mark.parametrize("nb", LIB_NBS, ids=lambda p: p.name)
def test_library_notebook_shape(nb):
    """Name NN[a-z]_<module>.ipynb matches default_exp; ≤ 100 cells, ≤ 380 exported statements.

    Size counts statements (logical lines), not physical lines, so that wrapping a long line to fit the
    120-character limit does not change it: 380 statements are about 450 lines of this code."""
    import io
    import tokenize
    m = re.fullmatch(r"\d\d[a-z]?_(.+)\.ipynb", nb.name)
    assert m, f"{nb.name}: name must be NN_<dotted.module>.ipynb"
    assert _default_exp(nb) == m.group(1), f"{nb.name}: default_exp must be {m.group(1)}"
    cells = _cells(nb)
    assert len(cells) <= 100
    exported = ["".join(c["source"]) for c in cells
                if c["cell_type"] == "code" and re.match(r"#\|\s*export", "".join(c["source"]))]
    statements = sum(t.type == tokenize.NEWLINE
                     for s in exported for t in tokenize.generate_tokens(io.StringIO(s).readline))
    assert statements <= 380, f"{nb.name}: {statements} exported statements; split the notebook"
    last = "".join(cells[-1]["source"])
    assert "nbdev_export()" in last, f"{nb.name}: end with a hidden nbdev_export() cell"


def test_one_notebook_per_module():
    mods = [_default_exp(p) for p in LIB_NBS]
    assert len(mods) == len(set(mods)), mods


def test_every_module_has_a_notebook():
    """No stale generated module whose notebook was renamed or deleted."""
    mods = {_default_exp(p) for p in LIB_NBS} | {"__main__"}
    for py in (ROOT / "clipwb").rglob("*.py"):
        rel = py.relative_to(ROOT / "clipwb").with_suffix("")
        name = ".".join(rel.parts)
        if name in ("__init__", "_modidx") or name.endswith("__init__"):
            continue
        assert name in mods, f"clipwb/{rel}.py has no notebook (stale export?)"


def test_export_in_sync(tmp_path):
    """nbdev_export from nbs/ reproduces the committed clipwb/ exactly."""
    for name in ("nbs", "clipwb"):
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    shutil.copy(ROOT / "settings.ini", tmp_path / "settings.ini")
    exe = Path(sys.executable).with_name("nbdev_export")
    subprocess.run([str(exe)], cwd=tmp_path, check=True, capture_output=True)
    for py in (ROOT / "clipwb").rglob("*.py"):
        rel = py.relative_to(ROOT)
        assert (tmp_path / rel).read_text() == py.read_text(), f"{rel} is out of sync: run nbdev_export"


def _stage_of(nb):
    from clipwb.config import STAGES
    return next(s for s in STAGES.names() if STAGES.meta(s)["notebook"] == nb.name)


@pytest.mark.parametrize("nb", STAGE_NBS, ids=lambda p: p.name)
def test_stage_notebook_shape(nb):
    """Stage notebooks: no outputs, no exports, exactly one `parameters` cell, and it is the one generated from the
    config class."""
    from clipwb.notebooks import parameters_cell
    cells = _cells(nb)
    assert not any(c.get("outputs") for c in cells if c["cell_type"] == "code")
    assert not any("#| export" in "".join(c["source"]) for c in cells)
    params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1
    assert "".join(params[0]["source"]) == parameters_cell(_stage_of(nb)), (
        f"{nb.name}: the parameters cell differs from its config class; regenerate it with `make sync-params` "
        "(python tools/sync_stage_params.py) and commit the notebook")


@pytest.mark.parametrize("nb", STAGE_NBS, ids=lambda p: p.name)
def test_stage_parameters_as_papermill_reads_them(nb):
    """papermill's parameter inference (its unknown-parameter warning, `--help-notebook`) finds every field, with its
    default and help."""
    import ast
    import dataclasses
    import logging
    import papermill
    from clipwb.config import STAGES, param_help
    from clipwb.notebooks import parameters_cell
    cls = STAGES.get(_stage_of(nb))
    # its 'Unable to parse line' warnings are checked below instead
    logging.getLogger("papermill").setLevel(logging.ERROR)
    got = papermill.inspect_notebook(str(nb))
    fields = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
              for f in dataclasses.fields(cls)}
    assert set(got) == set(fields) | {"run_dir"}, f"{nb.name}: papermill misses {sorted(set(fields) - set(got))}"
    assert {k: ast.literal_eval(got[k]["default"]) for k in fields} == fields
    assert got["run_dir"]["default"] == '""'
    helps, cell = param_help(cls), parameters_cell(_stage_of(nb))
    # a help too long to sit beside its line goes above it, where papermill does not look
    beside = {l.split(":")[0] for l in cell.splitlines() if not l.startswith(("#", "from ")) and "  # " in l}
    assert len(beside) > len(fields) // 2, f"{nb.name}: most help should fit beside its line"
    for k in fields:
        assert got[k]["help"] == (helps[k] if k in beside else ""), (k, got[k]["help"], helps[k])


def test_every_stage_has_a_notebook():
    from clipwb.config import STAGES
    assert sorted(STAGES.meta(s)["notebook"] for s in STAGES.names()) == sorted(p.name for p in STAGE_NBS)


def test_data_cards_valid():
    from clipwb.cards import list_cards, load_card
    ids = list_cards()
    assert {"openmoji", "shapes"} <= set(ids)
    for cid in ids:
        card = load_card(cid)
        assert card.description, f"{cid}: the card needs prose after the front matter"


def test_openmoji_attributed():
    text = (ROOT / "README.md").read_text() + (ROOT / "data_cards" / "openmoji.md").read_text()
    assert text.count("CC BY-SA 4.0") >= 2 and "OpenMoji" in text


def test_no_generated_junk_tracked():
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not out:
        pytest.skip("not a git checkout")
    bad = [f for f in out if f.startswith(("runs/", ".venv/")) or f.endswith((".pt", ".pth", ".bin", ".ckpt"))]
    assert not bad


OUTSIDE_REFS = re.compile(r"SPEC\s*§|\.\./shared/|SPEC\.md|DESIGN\.md|STYLE\.md"
                          r"|\bissues?\s+#?\d+|\bdesign\s+cards?\b", re.I)


def test_no_references_to_documents_outside_the_repository():
    """The repository explains its methods itself (nbs/explanations/methods.ipynb): no design-document citations, and
    no 'issue 4' / 'issue #4' or 'design card' a reader of the repository cannot open. Notebooks, generated modules,
    README, tests, tools, benchmarks, pipelines, data cards and settings are checked."""
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not out:
        pytest.skip("not a git checkout")
    bad = {f: m.group(0) for f in out if f.endswith((".ipynb", ".py", ".md", ".yaml", ".yml", ".sh", ".ini", ".txt"))
           and f != "tests/test_hygiene.py" and (m := OUTSIDE_REFS.search((ROOT / f).read_text(errors="replace")))}
    assert not bad, f"files citing documents that are not in the repository: {bad}"


@pytest.mark.parametrize("text", ["see issue 4", "Issue #12 §1", "(clipwb issue 4, §7)", "the design card says",
                                  "part of the Design Cards", "SPEC § 3", "../shared/x"])
def test_outside_reference_pattern_catches(text):
    assert OUTSIDE_REFS.search(text)


@pytest.mark.parametrize("text", ["the data card of openmoji", "a tissue 4 cm", "issues are listed in the notes",
                                  "an issue with 4 experts"])
def test_outside_reference_pattern_spares(text):
    assert not OUTSIDE_REFS.search(text)


def test_no_importorskip_of_a_hard_dependency():
    """A test skipped because a required package is missing would pass silently where the install is broken."""
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "settings.ini")
    names = {re.split(r"[<>=!~ ]", r)[0].lower() for r in cfg["DEFAULT"]["requirements"].split()}
    mods = {"open_clip" if n == "open_clip_torch" else "PIL" if n == "pillow" else "yaml" if n == "pyyaml"
            else "sklearn" if n == "scikit-learn" else "umap" if n == "umap-learn" else n.replace("-", "_")
            for n in names}
    bad = []
    for f in sorted((ROOT / "tests").glob("*.py")) + sorted((ROOT / "nbs").rglob("*.ipynb")):
        for m in re.findall(r"importorskip\(\\?[\"']([\w.]+)", f.read_text()):
            if m.split(".")[0] in mods: bad.append(f"{f.name}: {m}")
    assert "torch" in mods and "open_clip" in mods and not bad, bad


LINE_LIMIT = 120


def test_lines_fit_the_limit():
    """Notebook code cells and the modules generated from them: no line over 120 characters. nbdev writes each
    module's `__all__` on one line, so that line is not counted; `ruff check` (the 120-character limit of
    `ruff.toml`) lists the long lines, to wrap by hand in the notebooks (then `nbdev_export`)."""
    long = []
    for py in sorted((ROOT / "clipwb").rglob("*.py")):
        if py.name != "_modidx.py":
            long += [f"{py.relative_to(ROOT)}:{i} ({len(l)})" for i, l in enumerate(py.read_text().splitlines(), 1)
                     if len(l) > LINE_LIMIT and not l.startswith("__all__ = [")]
    for nb in NBS:
        for c in _cells(nb):
            if c["cell_type"] == "code":
                long += [f"{nb.relative_to(ROOT)} ({len(l)}): {l.strip()[:50]}…"
                         for l in "".join(c["source"]).splitlines() if len(l) > LINE_LIMIT]
    assert not long, f"{len(long)} lines over {LINE_LIMIT} characters: {long[:15]}"


def test_ruff_is_clean():
    """`ruff check` (the rules and the 120-character limit of `ruff.toml`) finds nothing in the generated modules,
    the notebooks, the tests, the tools and the benchmarks."""
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "clipwb", "nbs", "tests", "tools",
                        "benchmarks"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, f"ruff check → {r.returncode}\n{r.stdout[-6000:]}\n{r.stderr[-2000:]}"
