"""The documentation site (`make docs`: tools/build_docs.py, Sphinx + myst-nb + sphinx-book-theme) and README.md.

README.md is what tools/readme.py generates from nbs/index.ipynb; the site builds from every notebook with no Sphinx
warning, has a page per notebook, shows every public function and class of every module with its signature and
parameters, fails on a link to a notebook that does not exist, and its home page and a reference page open in
headless Chromium (served over HTTP) without console errors, with MathJax from the site's own copy. The build time
is printed (`pytest -s`); screenshots go to tmp_path and to $CLIPWB_ARTIFACTS when set."""
import functools
import html
import http.server
import importlib
import inspect
import json
import os
import re
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from test_browser import chromium, page  # noqa: F401  (fixtures: headless Chromium with a CDP client)

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
sys.path.insert(0, str(ROOT / "tools"))
import build_docs  # noqa: E402
from readme import readme_text  # noqa: E402

NOTEBOOKS = sorted(p.relative_to(NBS) for p in NBS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
LIB_NBS = [p for p in NOTEBOOKS if len(p.parts) == 1 and p.name != "index.ipynb"]


def _default_exp(rel: Path) -> str:
    "The oracle's own reading of a library notebook's module (not the builder's)."
    for c in json.loads((NBS / rel).read_text())["cells"]:
        if m := re.search(r"^#\|\s*default_exp\s+(\S+)", "".join(c["source"]), re.M):
            return "clipwb." + m.group(1).removesuffix(".__init__")
    raise AssertionError(f"{rel} has no #| default_exp")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("docs")
    s = build_docs.build(tmp / "_docs", tmp / "_proc", check=False)
    print(f"\ndocs: {len(s.pages)} pages built in {s.seconds:.1f} s (sphinx-build status {s.returncode})")
    return s


def test_readme_is_generated_from_the_index():
    assert (ROOT / "README.md").read_text() == readme_text(NBS / "index.ipynb"), \
        "README.md differs from nbs/index.ipynb: edit the notebook, then run make readme"


def test_site_builds_without_warnings(site):
    assert site.returncode == 0 and "WARNING" not in site.log and "ERROR" not in site.log, site.log
    assert sorted(p.src for p in site.pages) == NOTEBOOKS
    pages = sorted(p.relative_to(site.out) for p in site.out.rglob("*.html")
                   if p.relative_to(site.out).parts[0] not in ("_static", "_sources") and p.name not in
                   ("genindex.html", "search.html"))
    assert pages == [p.with_suffix(".html") for p in NOTEBOOKS]
    mj = site.out / "_static" / "mathjax"
    assert (mj / "MathJax.js").stat().st_size > 10_000 and any((mj / "fonts").rglob("*.woff"))
    methods = (site.out / "explanations" / "methods.html").read_text()
    assert methods.count('class="math') > 20 and "_static/mathjax/MathJax.js" in methods
    assert "cdn" not in " ".join(re.findall(r'<script[^>]*src="([^"]+)"', methods)).lower()
    home = (site.out / "index.html").read_text()
    captions = re.findall(r'<p aria-level="2" class="caption" role="heading"><span class="caption-text">([^<]+)', home)
    assert captions == ["Tutorials", "Explanations", "Library reference", "Stages"], captions


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def _sections(page_html: str) -> dict[str, str]:
    "Heading text → the text of its sections (up to the next heading), for every heading of a page."
    parts = re.split(r"(<h[1-6][^>]*>.*?</h[1-6]>)", page_html, flags=re.S)
    out = {}
    for head, body in zip(parts[1::2], parts[2::2]):
        key = _text(head).rstrip("#").strip()
        out[key] = out.get(key, "") + "\n" + _text(body)
    return out


def test_reference_pages_show_every_public_function(site):
    """Oracle: each module's `__all__` (written by nbdev_export) and `inspect.signature`, not the builder's scan."""
    missing, checked = [], 0
    for rel in LIB_NBS:
        mod = importlib.import_module(_default_exp(rel))
        secs = _sections((site.out / rel.with_suffix(".html")).read_text())
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) or obj.__module__ != mod.__name__: continue
            doc = secs.get(name, "")
            if not re.search(rf"\b{re.escape(name)}\s*\(", doc):
                missing.append(f"{rel}: {name} has no signature"); continue
            try: params = [q for q in inspect.signature(obj).parameters if q not in ("self", "cls")]
            except (TypeError, ValueError): params = []
            missing += [f"{rel}: {name} does not show parameter {q}" for q in params if not re.search(rf"\b{q}\b", doc)]
            d = inspect.getdoc(obj) or ""
            first = re.sub(r"[`*]", "", d.split()[0]) if d else ""
            if d and not d.startswith(f"{name}(") and first not in re.sub("[‘’]", "'", doc):
                missing.append(f"{rel}: {name} does not show its docstring")
            checked += 1
    assert not missing, "\n".join(missing)
    assert checked > 150, checked   # every module's functions, not a few


def _nb(*cells) -> dict:
    return {"cells": [{"cell_type": t, "id": f"c{i}", "metadata": {}, "source": s,
                       **({"outputs": [], "execution_count": None} if t == "code" else {})}
                      for i, (t, s) in enumerate(cells)],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def test_module_comes_from_default_exp_and_broken_links_fail(tmp_path):
    """A library notebook under any name documents the module its `#| default_exp` names; hidden cells are dropped,
    directives removed; a link to a notebook that does not exist fails the build, naming it."""
    nbs = tmp_path / "nbs"
    (nbs / "tutorials").mkdir(parents=True)
    lib = _nb(("code", "#| default_exp registry"), ("markdown", "# The registry, renamed"),
              ("code", "#| hide\nSECRET_HIDDEN_CELL = 1"),
              ("code", "#| export\nclass Registry:\n    pass"), ("code", "#| eval: false\nshown_example = 2"))
    (nbs / "99_any_name.ipynb").write_text(json.dumps(lib))
    (nbs / "tutorials" / "t.ipynb").write_text(json.dumps(_nb(("markdown", "# T\n\n[home](../index.ipynb)"))))
    index = _nb(("markdown", "# Home\n\n[the registry](99_any_name.ipynb), [a tutorial](tutorials/t.ipynb), "
                             "[gone](tutorials/missing_page.ipynb)"))
    (nbs / "index.ipynb").write_text(json.dumps(index))
    bad = build_docs.build(tmp_path / "out", tmp_path / "src", jobs=1, check=False, nbs=nbs)
    assert bad.returncode != 0 and "missing_page" in bad.log, bad.log
    assert len(re.findall(r"WARNING", bad.log)) == 1, bad.log

    index["cells"][0]["source"] = "# Home\n\n[the registry](99_any_name.ipynb), [a tutorial](tutorials/t.ipynb)"
    (nbs / "index.ipynb").write_text(json.dumps(index))
    good = build_docs.build(tmp_path / "out", tmp_path / "src", jobs=1, check=False, nbs=nbs)
    assert good.returncode == 0, good.log
    assert [p.module for p in good.pages if p.src.name == "99_any_name.ipynb"] == ["clipwb.registry"]
    page_html = (tmp_path / "out" / "99_any_name.html").read_text()
    secs = _sections(page_html)
    assert re.search(r"\bRegistry\(", secs["Registry"]) and "A named collection of plug-ins" in secs["Registry"], secs
    assert "SECRET_HIDDEN_CELL" not in page_html and "shown_example" in page_html and "#|" not in _text(page_html)
    assert "default_exp" not in _text(page_html)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):   # the browser dropping a connection it no longer needs is normal
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@pytest.fixture
def served(site):
    "The site over HTTP on a free loopback port, as a reader's web server would serve it."
    srv = _Server(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site.out)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try: yield f"http://127.0.0.1:{srv.server_port}"
    finally: srv.shutdown(); srv.server_close()


def _open(tab, url: str, settle=lambda: True):
    tab.console.clear()
    tab.call("Page.navigate", url=url)
    t0 = time.monotonic()
    while tab.js("document.readyState") != "complete" or tab.js("location.href") != url or not settle():
        assert time.monotonic() - t0 < 30, f"{url} not loaded within 30 s"
        time.sleep(0.1)
    time.sleep(0.3)
    tab.js("1")   # drain the console events that arrived meanwhile
    return [c for c in tab.console if c.startswith(("exception", "console.error", "log.error"))]


def _foreign(tab) -> list[str]:
    "Every resource the page loaded from anywhere but the site itself."
    return tab.js("performance.getEntriesByType('resource').map(e => e.name)"
                  ".filter(n => !n.startsWith(location.origin) && !n.startsWith('data:'))")


@pytest.mark.browser
def test_site_opens_in_chromium(site, served, page, tmp_path):  # noqa: F811  (`page` is the imported fixture)
    art = Path(os.environ["CLIPWB_ARTIFACTS"]) if os.environ.get("CLIPWB_ARTIFACTS") else None
    errors = _open(page, f"{served}/index.html")
    assert not errors, errors
    assert not _foreign(page), _foreign(page)
    assert page.js("document.querySelector('article h1').textContent").startswith("clipwb")
    code = page.js("[...document.querySelectorAll('article pre')].map(e => e.innerText).join('\\n')")
    assert "make demo" in code and "make test" in code, code
    captions = page.js("[...document.querySelectorAll('.bd-sidebar .caption-text')].map(e => e.textContent)")
    assert captions == ["Tutorials", "Explanations", "Library reference", "Stages"], captions
    links = page.js("[...document.querySelectorAll('nav a, article a')].map(a => a.href)"
                    ".filter(h => h.startsWith(location.origin))")
    assert len(links) > 60
    for href in sorted(set(h.split("#")[0] for h in links)):
        with urllib.request.urlopen(href, timeout=10) as r: assert r.status == 200, href
    png = page.screenshot(tmp_path / "docs-index.png")
    if art: art.mkdir(parents=True, exist_ok=True); (art / "docs-index.png").write_bytes(png)

    # a reference page: every public name of its module is a heading with its signature
    ref = next(p for p in site.pages if p.section == "Library reference" and len(p.names) >= 3)
    errors = _open(page, f"{served}/{ref.src.with_suffix('.html').as_posix()}")
    assert not errors, errors
    assert not _foreign(page), _foreign(page)
    heads = page.js("[...document.querySelectorAll('article h2, article h3, article h4')]"
                    ".map(e => e.textContent.replace('#', ''))")
    assert set(ref.names) <= set(heads), (ref.names, heads)
    code = page.js("[...document.querySelectorAll('article pre')].map(e => e.innerText).join('\\n')")
    assert all(re.search(rf"\b{re.escape(n)}\(", code) for n in ref.names), ref.names
    assert page.js("document.querySelector('.bd-sidebar a.current, .bd-sidebar li.current > a').textContent")
    png = page.screenshot(tmp_path / "docs-reference.png")
    if art: (art / "docs-reference.png").write_bytes(png)

    # the methods page: MathJax, the site's own copy, typesets every formula
    typeset = "!!(window.MathJax && MathJax.Hub && document.querySelector('.mjx-chtml'))"
    errors = _open(page, f"{served}/explanations/methods.html", settle=lambda: page.js(typeset))
    assert not errors, errors
    assert not _foreign(page), _foreign(page)
    mj = page.js("[...document.scripts].map(s => s.src).filter(s => s.includes('MathJax.js'))")
    assert mj and all(s.startswith(f"{served}/_static/mathjax/MathJax.js") for s in mj), mj
    t0 = time.monotonic()
    while page.js("MathJax.Hub.queue.pending || MathJax.Hub.queue.running") and time.monotonic() - t0 < 30:
        time.sleep(0.2)
    n_math = page.js("document.querySelectorAll('span.math, div.math').length")
    shown = page.js("document.querySelectorAll('.mjx-chtml.MJXc-display, span.mjx-chtml').length")
    assert n_math > 20 and shown >= n_math, (n_math, shown)
    assert page.js("document.querySelectorAll('.MathJax_Error, .mjx-merror, .mjx-noError').length") == 0
    assert not [c for c in page.console if c.startswith(("exception", "console.error", "log.error"))], page.console
