"""The documentation site (`make docs`, clipwb.docs): README.md is generated from nbs/index.ipynb, the site builds from
every notebook without problems, every public function and class of every module is shown with its signature, and the
home page and a reference page open in headless Chromium (served over HTTP) without console errors. The build time is
printed (`pytest -s`); the screenshot goes to tmp_path and to $CLIPWB_ARTIFACTS when set."""
import functools
import html
import http.server
import importlib
import inspect
import os
import re
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from clipwb.docs import build_site, notebook_module, read_notebook, readme_text
from test_browser import chromium, page  # noqa: F401  (fixtures: headless Chromium with a CDP client)

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = build_site(tmp_path_factory.mktemp("docs") / "_docs")
    print(f"\ndocs: {len(s.pages)} pages built in {s.seconds:.1f} s")
    return s


def test_readme_is_generated_from_the_index():
    assert (ROOT / "README.md").read_text() == readme_text(NBS / "index.ipynb"), \
        "README.md differs from nbs/index.ipynb: edit the notebook, then run make readme"


def test_site_builds_without_problems(site):
    assert site.problems == [], "\n".join(site.problems)
    notebooks = sorted(p.relative_to(NBS).with_suffix(".html") for p in NBS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    assert sorted(p.relative_to(site.out) for p in site.out.rglob("*.html")) == notebooks
    assert (site.out / "docs.css").stat().st_size > 1000
    methods = (site.out / "explanations" / "methods.html").read_text()   # formulas arrive as MathML, not as TeX
    assert methods.count("<math") > 20 and "$$" not in _text(methods), "formulas left as TeX"
    sections = list(dict.fromkeys(p.section for p in site.pages))
    assert sections[0] == "Home" and sections[-2:] == ["Library reference", "Stages"]
    assert sections.index("Tutorials") < sections.index("Explanations") < sections.index("Library reference")


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def test_reference_pages_show_every_public_function(site):
    """Oracle: each module's `__all__` (written by nbdev_export) and `inspect.signature`, not the builder's own scan."""
    missing, checked = [], 0
    for p in site.pages:
        if p.section != "Library reference": continue
        mod = importlib.import_module(notebook_module(read_notebook(NBS / p.src)))
        page_html = (site.out / p.out).read_text()
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) or obj.__module__ != mod.__name__: continue
            m = re.search(rf'<h3 id="{re.escape(name)}">(.*?)(?=<h3 |</main>)', page_html, re.S)
            doc = _text(m.group(1)) if m else ""
            if f"def {name}(" not in doc:
                missing.append(f"{p.out}: {name} has no signature"); continue
            try: params = [q for q in inspect.signature(obj).parameters if q not in ("self", "cls")]
            except (TypeError, ValueError): params = []
            missing += [f"{p.out}: {name} does not show parameter {q}" for q in params if not re.search(rf"\b{q}\b", doc)]
            checked += 1
    assert not missing, "\n".join(missing)
    assert checked > 150, checked   # every module's functions, not a few


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):   # the browser dropping a connection it no longer needs is normal
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)): super().handle_error(request, client_address)


@pytest.fixture
def served(site):
    "The site over HTTP on a free loopback port, as a reader's web server would serve it."
    srv = _Server(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site.out)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try: yield f"http://127.0.0.1:{srv.server_port}"
    finally: srv.shutdown(); srv.server_close()


def _open(page, url: str):
    page.call("Page.navigate", url=url)
    t0 = time.monotonic()
    while page.js("document.readyState") != "complete" or page.js("location.href") != url:
        assert time.monotonic() - t0 < 30, f"{url} not loaded within 30 s"
        time.sleep(0.1)
    time.sleep(0.3)
    return [c for c in page.console if c.startswith(("exception", "console.error", "log.error"))]


@pytest.mark.browser
def test_site_opens_in_chromium(site, served, page, tmp_path):
    errors = _open(page, f"{served}/index.html")
    assert not errors, errors
    first = page.js("document.querySelector('main pre').innerText")
    assert "make demo" in first and "make test" in first, first           # the two set-up commands come first
    assert page.js("getComputedStyle(document.querySelector('nav.sidebar')).position") == "sticky"   # docs.css loaded
    sections = page.js("[...document.querySelectorAll('nav h2')].map(e => e.textContent)")
    assert sections.index("Tutorials") < sections.index("Explanations") < sections.index("Library reference") < sections.index("Stages")
    links = page.js("[...document.querySelectorAll('nav a, main a')].map(a => a.href).filter(h => h.startsWith(location.origin))")
    assert len(links) > 60
    for href in sorted(set(h.split("#")[0] for h in links)):
        with urllib.request.urlopen(href, timeout=10) as r: assert r.status == 200, href
    png = page.screenshot(tmp_path / "docs-index.png")
    if art := os.environ.get("CLIPWB_ARTIFACTS"): Path(art).mkdir(parents=True, exist_ok=True); (Path(art) / "docs-index.png").write_bytes(png)

    errors = _open(page, f"{served}/81_results.html")
    assert not errors, errors
    sig = page.js("(() => { const h = document.getElementById('update_block');"
                  " return h && h.parentElement.querySelector('pre').innerText; })()")
    assert sig and "def update_block(" in sig and "text:str" in sig, sig
    assert page.js("document.querySelector('nav a[aria-current=page]').textContent") == "Results"
