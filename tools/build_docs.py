"""Build the documentation site from the notebooks in nbs/ with Sphinx, myst-nb and sphinx-book-theme.

    python tools/build_docs.py [--out _docs] [--src _proc]

1. Prepares a copy of every notebook under nbs/ in `--src` (nbs/ itself is never written): cells starting with
   `#| hide` are dropped, the `#|` directive lines of the other code cells are removed, and after each `#| export`
   cell of a library notebook comes nbdev's `show_doc` (signature, parameters, docstring) of every public function
   and class the cell defines. The module is the one named by the notebook's `#| default_exp`, so notebooks can be
   renamed or renumbered freely; its `__all__` says what is public.
2. Writes conf.py and the site's table of contents (appended, hidden, to the home page nbs/index.ipynb) and copies
   the MathJax that Debian's libjs-mathjax installs (tools/install_docs_deps.sh) into the site's static files.
3. Runs `sphinx-build -W --keep-going`: any warning fails the build, a link to a notebook that does not exist
   among them (`[x](other.ipynb)`). Notebooks are rendered from their stored outputs, never executed.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import importlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))   # document this checkout's clipwb, whatever is installed
MATHJAX = Path(os.environ.get("CLIPWB_MATHJAX", "/usr/share/javascript/mathjax"))   # Debian's libjs-mathjax
# folder under nbs/ → section of the site, in reading order; the library notebooks (nbs/*.ipynb) are "reference"
SECTIONS = {"tutorials": "Tutorials", "explanations": "Explanations", "reference": "Library reference",
            "stages": "Stages"}

_DIRECTIVE = re.compile(r"^#\|\s*([\w-]+):?[ \t]*(.*?)\s*$")


def cell_source(cell: dict) -> str:
    "A cell's source as one string."
    s = cell.get("source", "")
    return s if isinstance(s, str) else "".join(s)


def directives(src: str) -> tuple[dict[str, str], str]:
    "The leading `#| name[: value]` lines of a code cell as a dict, and the code after them."
    lines, found = src.splitlines(), {}
    while lines and (m := _DIRECTIVE.match(lines[0])):
        found[m.group(1)] = m.group(2)
        lines.pop(0)
    return found, "\n".join(lines).strip("\n")


def notebook_module(nb: dict) -> str | None:
    "The module a notebook exports to: `clipwb.<default_exp>` (a trailing `.__init__` dropped), or None."
    for c in nb["cells"]:
        if c["cell_type"] == "code" and (m := re.search(r"^#\|\s*default_exp\s+(\S+)", cell_source(c), re.M)):
            return "clipwb." + m.group(1).removesuffix(".__init__")
    return None


def public_names(module: str) -> list[str]:
    "The functions and classes of `module`'s `__all__` that the module itself defines (re-exports are documented "
    "where they are defined)."
    mod = importlib.import_module(module)
    return [n for n in getattr(mod, "__all__", []) if (inspect.isfunction(o := getattr(mod, n, None))
                                                       or inspect.isclass(o)) and o.__module__ == module]


def defined_names(src: str) -> list[str]:
    "Top-level functions and classes a code cell defines, in order."
    try: tree = ast.parse(src)
    except SyntaxError: return []
    return [o.name for o in tree.body if isinstance(o, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def show_doc_md(obj, level: int) -> str:
    "nbdev's `show_doc` of `obj` as markdown under a heading of `level`, without its leading rule."
    from nbdev.showdoc import show_doc
    md = show_doc(obj, title_level=level)._repr_markdown_()
    return md.removeprefix("---").lstrip("\n")


def _md(src: str) -> dict:
    "A markdown cell; its id (nbformat 4.5 wants one) comes from its text, so a build is reproducible."
    return {"cell_type": "markdown", "id": "doc-" + hashlib.sha1(src.encode()).hexdigest()[:12], "metadata": {},
            "source": src}


def _heading_level(md: str, last: int) -> int:
    for line in md.splitlines():
        if m := re.match(r"^(#{1,6})\s", line): last = len(m.group(1))
    return last


def prepare_notebook(nb: dict, module: str | None = None) -> tuple[dict, list[str]]:
    """A copy of notebook `nb` as the site shows it, and the public names whose `show_doc` it holds.

    `module` (default: from `#| default_exp`) is imported; each of its public functions and classes is documented
    after the export cell that defines it, any the cells do not define (made by a function, say) at the end."""
    module = module or notebook_module(nb)
    todo = public_names(module) if module else []
    mod = importlib.import_module(module) if module else None
    cells, shown, level = [], [], 1
    for c in nb["cells"]:
        src = cell_source(c)
        if c["cell_type"] == "markdown":
            level = _heading_level(src, level)
            cells.append(c); continue
        if c["cell_type"] != "code":
            cells.append(c); continue
        d, body = directives(src)
        if "hide" in d or not body.strip(): continue
        cells.append({**c, "source": body})
        if d.keys() & {"export", "exports", "exporti"}:
            for name in defined_names(body):
                if name in todo and name not in shown:
                    cells.append(_md(show_doc_md(getattr(mod, name), min(level + 1, 6))))
                    shown.append(name)
    if rest := [n for n in todo if n not in shown]:
        cells.append(_md("## Other public names"))
        cells += [_md(show_doc_md(getattr(mod, n), 3)) for n in rest]
        shown += rest
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            **nb.get("metadata", {}), "language_info": {"name": "python"}}   # nbdev_clean drops language_info
    return {**nb, "metadata": meta, "cells": cells}, shown


@dataclass
class Page:
    "One notebook of the site."
    src: Path            # relative to nbs/
    section: str         # "" for the home page
    module: str | None   # the module a library notebook exports to
    names: list[str] = field(default_factory=list)   # public names documented on the page

    @property
    def doc(self) -> str:
        "The page's Sphinx document name (its path without `.ipynb`)."
        return self.src.with_suffix("").as_posix()


def _section(rel: Path) -> str:
    if len(rel.parts) == 1: return "" if rel.name == "index.ipynb" else SECTIONS["reference"]
    return SECTIONS.get(rel.parts[0], rel.parts[0].replace("_", " ").capitalize())


def find_notebooks(nbs: Path) -> list[Path]:
    "Every notebook under `nbs`, relative to it (hidden folders, `_` folders and checkpoints left out)."
    return sorted(p.relative_to(nbs) for p in nbs.rglob("*.ipynb")
                  if not any(part.startswith((".", "_")) for part in p.relative_to(nbs).parts))


def toctree(pages: list[Page]) -> list[dict]:
    "The site's navigation as hidden toctree cells for the home page: one per section, in reading order."
    order = list(SECTIONS.values())
    sections = sorted({p.section for p in pages if p.section}, key=lambda s: (s not in order,
                                                                               order.index(s) if s in order else 0, s))
    out = []
    for s in sections:
        docs = "\n".join(p.doc for p in pages if p.section == s)
        out.append(_md(f"```{{toctree}}\n:hidden:\n:caption: {s}\n\n{docs}\n```"))
    return out


CONF = '''\
# Generated by tools/build_docs.py: the Sphinx configuration of the clipwb documentation site.
project = "clipwb"
author = "clipwb developers"
copyright = "2026 onwards, clipwb developers"
extensions = ["myst_nb", "sphinx.ext.mathjax"]
root_doc = "index"
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]
nb_execution_mode = "off"                  # pages show the outputs stored in the notebooks
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
myst_update_mathjax = False                # the configuration below is MathJax 2's (Debian's libjs-mathjax)
html_theme = "sphinx_book_theme"
html_title = "clipwb"
html_static_path = ["_static"]
html_last_updated_fmt = None
html_theme_options = {{"show_toc_level": 2, "home_page_in_toc": True}}
html_context = {{"default_mode": "light"}}  # unset, the theme's script logs an error on every page
html_favicon = "_static/favicon.svg"       # also spares the browser a request for /favicon.ico
mathjax_path = "mathjax/MathJax.js"        # a local copy under _static/, never a CDN
mathjax3_config = None
mathjax2_config = {{
    "jax": ["input/TeX", "output/CommonHTML"],
    "extensions": ["tex2jax.js"],
    "TeX": {{"extensions": ["AMSmath.js", "AMSsymbols.js", "noErrors.js", "noUndefined.js"]}},
    "tex2jax": {{"inlineMath": [["\\\\(", "\\\\)"]], "displayMath": [["\\\\[", "\\\\]"]],
                "processEscapes": True, "ignoreClass": "document", "processClass": "math|output_area"}},
    "CommonHTML": {{"webFont": "TeX"}},
    "showMathMenu": False,
}}
'''

FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" '
           'fill="#0b63c4"/><text x="8" y="12" font-size="11" text-anchor="middle" fill="#fff" '
           'font-family="sans-serif">c</text></svg>')

# the parts of libjs-mathjax the configuration above loads (MathJax.js fetches them on demand)
_MATHJAX_KEEP = ("MathJax.js", "jax/input/TeX", "jax/output/CommonHTML", "jax/element", "extensions",
                 "fonts/HTML-CSS/TeX/woff", "localization/en")


def copy_mathjax(dest: Path, src: Path = MATHJAX) -> Path:
    "Copy the MathJax 2 files the site loads from `src` (Debian's libjs-mathjax) to `dest`."
    if not (src / "MathJax.js").is_file():
        raise SystemExit(f"MathJax not found in {src}: run `bash tools/install_docs_deps.sh` "
                         "(Debian's libjs-mathjax) or set CLIPWB_MATHJAX to a MathJax 2 folder")
    for part in _MATHJAX_KEEP:
        s, d = src / part, dest / part
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_dir(): shutil.copytree(s, d, dirs_exist_ok=True)
        else: shutil.copy2(s, d)
    return dest


def prepare(src: Path, nbs: Path = ROOT / "nbs") -> list[Page]:
    "Write the prepared notebooks, conf.py and MathJax to `src` (replaced); the pages in reading order."
    if src.exists(): shutil.rmtree(src)
    src.mkdir(parents=True)
    pages = []
    for rel in find_notebooks(nbs):
        nb = json.loads((nbs / rel).read_text(encoding="utf-8"))
        module = notebook_module(nb) if len(rel.parts) == 1 else None
        out, names = prepare_notebook(nb, module)
        pages.append(Page(rel, _section(rel), module, names))
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(json.dumps(out, indent=1, ensure_ascii=False), encoding="utf-8")
    index = [p for p in pages if p.src == Path("index.ipynb")]
    if not index: raise SystemExit(f"{nbs} has no index.ipynb: it is the site's home page")
    home = json.loads((src / "index.ipynb").read_text(encoding="utf-8"))
    home["cells"] += toctree(pages)
    (src / "index.ipynb").write_text(json.dumps(home, indent=1, ensure_ascii=False), encoding="utf-8")
    (src / "conf.py").write_text(CONF.format())
    copy_mathjax(src / "_static" / "mathjax")
    (src / "_static" / "favicon.svg").write_text(FAVICON)
    order = {s: i for i, s in enumerate(["", *SECTIONS.values()])}
    return sorted(pages, key=lambda p: (order.get(p.section, len(order) - 1.5), p.src.as_posix()))


@dataclass
class Site:
    "What `build` built."
    out: Path
    pages: list[Page]
    seconds: float
    returncode: int   # sphinx-build's exit status: 0 only when there was no warning
    log: str          # sphinx-build's output: its warnings, if any


def build(out: Path = ROOT / "_docs", src: Path = ROOT / "_proc", jobs: int = 2, check: bool = True,
          nbs: Path = ROOT / "nbs") -> Site:
    """Prepare the notebooks of `nbs` into `src` and build the site into `out` (both replaced) with sphinx-build.

    Any warning fails the build: with `check`, a `SystemExit` quoting them; else see `Site.returncode` and `.log`."""
    t0 = time.perf_counter()
    cwd = os.getcwd()
    os.chdir(ROOT)          # nbdev's show_doc reads settings.ini from the working directory
    try: pages = prepare(Path(src).resolve(), Path(nbs).resolve())
    finally: os.chdir(cwd)
    out, src = Path(out).resolve(), Path(src).resolve()
    if out.exists(): shutil.rmtree(out)
    # built inside src, then moved: myst-nb writes its jupyter_execute/ folder beside the html folder
    html = src / "_build" / "html"
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", "-j", str(jobs),
           "-d", str(src / "_build" / "doctrees"), str(src), str(html)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if html.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(html, out)
    site = Site(out, pages, time.perf_counter() - t0, r.returncode, r.stdout + r.stderr)
    if check and r.returncode != 0:
        raise SystemExit(f"sphinx-build failed (status {r.returncode}):\n{site.log}")
    return site


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "_docs", help="the site's folder (replaced)")
    ap.add_argument("--src", type=Path, default=ROOT / "_proc", help="where the prepared notebooks go (replaced)")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="sphinx-build's parallel processes")
    a = ap.parse_args(argv)
    site = build(a.out, a.src, a.jobs)
    print(f"built {len(site.pages)} pages into {site.out} in {site.seconds:.0f} s; open {site.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
