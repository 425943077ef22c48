"""The cluster browser (clipwb.cluster.browser) in a real JupyterLab driven by headless Chromium over CDP.

Starts `jupyter lab` from this venv on a free port with isolated config/data/runtime/settings folders,
writes a notebook that builds a `ClusterBrowser` on deterministic toy data, opens it in headless
Chromium (Debian's `chromium`; install with tools/install_browser.sh), runs all cells, waits for the
widget, screenshots it, and checks the page shows the chosen cluster's captions and thumbnails; then picks
another cluster in the rendered dropdown and checks the grid follows (a live kernel round trip).
Chromium is driven by the DevTools protocol over a websocket (websocket-client comes with jupyter_server),
so no chromedriver/selenium is needed. Screenshots go to tmp_path, and to $CLIPWB_ARTIFACTS when set.
"""
import base64
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHOSEN, OTHER = 20, 30  # cluster shown first, cluster picked in the dropdown
NB_CODE = textwrap.dedent(f"""
    import numpy as np
    from clipwb.testing import synthetic_pairs, TOY_SHAPES
    from clipwb.cluster.browser import ClusterBrowser
    pairs = synthetic_pairs(48, seed=0)
    caps = [f"{{p.caption}} #{{i}}" for i, p in enumerate(pairs)]
    lab = np.array([10 * (1 + TOY_SHAPES.index(p.extra["shape"])) for p in pairs])
    browser = ClusterBrowser(lab, caps, [p.image for p in pairs], n_exemplars=6, thumb_size=64, initial={CHOSEN})
""")


def _chromium() -> str | None:
    for name in (os.environ.get("CLIPWB_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (p := shutil.which(name)): return p
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(check, timeout: float, what: str, dump=lambda: "", every: float = 0.25):
    "Poll `check()` until it returns a truthy value; fail after `timeout` s with `what` and `dump()`."
    t0, last = time.monotonic(), None
    while time.monotonic() - t0 < timeout:
        try:
            if v := check(): return v
        except AssertionError: raise  # a definite failure (e.g. the process died): no point waiting
        except Exception as e:  # transient while the page/server starts; reported if we time out
            last = e
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}"
                         f"{f' (last error: {last!r})' if last else ''}\n{dump()}")


def _stop(proc: subprocess.Popen, name: str):
    "Terminate a process group we started; kill it if it does not exit."
    if proc.poll() is not None: return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try: os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError: pass
        proc.wait(5)


def _tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else f"({path} missing)"


class CDP:
    "Minimal Chrome DevTools Protocol client over one page websocket."
    def __init__(self, ws_url: str):
        import websocket
        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.n, self.console = 0, []

    def call(self, method: str, timeout: float = 30, **params):
        import websocket
        self.n += 1
        mid = self.n
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        end = time.monotonic() + timeout
        while True:
            self.ws.settimeout(max(end - time.monotonic(), 0.05))
            try: msg = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                raise AssertionError(f"CDP {method}: no answer within {timeout} s") from None
            if msg.get("id") == mid:
                if "error" in msg: raise RuntimeError(f"CDP {method}: {msg['error']}")
                return msg["result"]
            self._event(msg)

    def _event(self, msg):
        m, p = msg.get("method"), msg.get("params", {})
        if m == "Runtime.consoleAPICalled":
            self.console.append(f"console.{p['type']}: " + " ".join(str(a.get("value", a.get("description", "")))
                                                                    for a in p.get("args", [])))
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.console.append(f"exception: {d.get('exception', {}).get('description', d.get('text'))}")
        elif m == "Log.entryAdded":
            e = p.get("entry", {})
            self.console.append(f"log.{e.get('level')}: {e.get('text')} {e.get('url', '')}")

    def js(self, expr: str, timeout: float = 30):
        "Evaluate a JS expression (promises awaited) → its JSON value."
        r = self.call("Runtime.evaluate", timeout=timeout, expression=expr, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise RuntimeError(f"JS error: {d.get('exception', {}).get('description', d.get('text'))}")
        return r["result"].get("value")

    def screenshot(self, path: Path) -> bytes:
        png = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        path.write_bytes(png)
        return png


@pytest.fixture
def chromium():
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium not installed: run tools/install_browser.sh (Debian package 'chromium') "
                    "or point CLIPWB_CHROMIUM at a Chromium/Chrome binary")
    return exe


@pytest.fixture
def lab(tmp_path):
    "A JupyterLab server on a free port with isolated folders → dict(url, token, root, log)."
    root, state = tmp_path / "root", tmp_path / "jupyter"
    root.mkdir()
    dirs = {k: state / k for k in ("config", "data", "runtime", "settings", "workspaces", "ipython")}
    for d in dirs.values(): d.mkdir(parents=True)
    (dirs["config"] / "jupyter_server_config.json").write_text(json.dumps({
        "ServerApp": {"jpserver_extensions": {"jupyter_lsp": False},  # no language-server scan at start-up
                      "allow_root": True},  # containers and CI run as root
        "LabApp": {"news_url": None, "extension_manager": "readonly", "expose_app_in_browser": True,
                   "check_for_updates_class": "jupyterlab.NeverCheckForUpdate"}}))
    (dirs["config"] / "labconfig").mkdir()
    (dirs["config"] / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON"))}
    env.update(JUPYTER_CONFIG_DIR=str(dirs["config"]), JUPYTER_DATA_DIR=str(dirs["data"]),
               JUPYTER_RUNTIME_DIR=str(dirs["runtime"]), JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
               JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]), IPYTHONDIR=str(dirs["ipython"]),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYDEVD_DISABLE_FILE_VALIDATION="1")
    port, token, log = _free_port(), secrets.token_hex(16), tmp_path / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--ServerApp.open_browser=False"]
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up():
        if proc.poll() is not None: raise AssertionError(f"jupyter lab exited with {proc.returncode}:\n{_tail(log)}")
        with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r: return r.status == 200
    try:
        _wait(up, 60, "jupyter lab to answer /api/status", lambda: _tail(log))
        yield dict(url=url, token=token, root=root, log=log)
    finally:
        _stop(proc, "jupyter lab")


@pytest.fixture
def page(chromium, tmp_path):
    "Headless Chromium with remote debugging → a CDP client on its first page."
    prof, log = tmp_path / "chromium-profile", tmp_path / "chromium.log"
    cmd = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--no-first-run", "--no-default-browser-check",
           "--window-size=1400,1000", "--force-device-scale-factor=1", "--remote-debugging-port=0",
           f"--user-data-dir={prof}", "about:blank"]
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    cdp = None
    try:
        active = prof / "DevToolsActivePort"
        port = _wait(lambda: active.exists() and active.read_text().split("\n")[0].strip(), 30,
                     "Chromium's DevToolsActivePort", lambda: _tail(log))

        def target():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                return next((t["webSocketDebuggerUrl"] for t in json.load(r) if t.get("type") == "page"), None)
        cdp = CDP(_wait(target, 20, "a Chromium page target", lambda: _tail(log)))
        for domain in ("Page", "Runtime", "Log"): cdp.call(f"{domain}.enable")
        yield cdp
    finally:
        if cdp is not None: cdp.ws.close()
        _stop(proc, "chromium")


def _write_notebook(path: Path):
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(NB_CODE), nbformat.v4.new_code_cell("browser")]
    nbformat.write(nb, path)


def _shown(page) -> dict:
    return page.js("""(() => {
      const root = document.querySelector('.clipwb-browser');
      if (!root) return null;
      const q = s => Array.from(root.querySelectorAll(s));
      const title = root.querySelector('.clipwb-title');
      return {cluster: title ? Number(title.dataset.cluster) : null,
              captions: q('.clipwb-caption').map(e => e.textContent),
              thumbs: q('img.clipwb-thumb').map(e => ({ok: e.complete && e.naturalWidth > 0,
                                                       r: e.getBoundingClientRect().toJSON()})),
              selected: (q('.clipwb-select select')[0] || {}).value || null,
              bar: (q('.clipwb-bar-selected')[0] || {dataset: {}}).dataset.cluster,
              text: root.innerText};
    })()""")


def _mean_rgb(png: bytes, r: dict):
    from PIL import Image
    import numpy as np
    im = Image.open(io.BytesIO(png)).convert("RGB")
    box = tuple(int(round(v)) for v in (r["left"] + 2, r["top"] + 2, r["right"] - 2, r["bottom"] - 2))
    return np.asarray(im.crop(box), float).reshape(-1, 3).mean(0)


def test_cluster_browser_in_jupyterlab(lab, page, tmp_path):
    import numpy as np
    ns = {}
    exec(NB_CODE, ns)  # the same data and browser, here: the expected state
    b, caps, lab_, pairs = ns["browser"], ns["caps"], ns["lab"], ns["pairs"]
    want = {c: [caps[i] for i in b.exemplars[c]] for c in (CHOSEN, OTHER)}
    foreign = lambda c: [s for s, l in zip(caps, lab_) if l != c]  # captions of every other cluster
    _write_notebook(lab["root"] / "browser.ipynb")
    art = Path(os.environ["CLIPWB_ARTIFACTS"]) if os.environ.get("CLIPWB_ARTIFACTS") else None

    def dump():
        try: text = page.js("document.body ? document.body.innerText : ''", timeout=5) or ""
        except Exception as e: text = f"(page text unavailable: {e!r})"
        try: page.screenshot(tmp_path / "failure.png")
        except Exception: pass
        return (f"--- page text (last 3000 chars) ---\n{text[-3000:]}\n--- browser console ---\n"
                + "\n".join(page.console[-40:]) + f"\n--- jupyter lab log ---\n{_tail(lab['log'])}")

    page.call("Page.navigate", url=f"{lab['url']}/lab/tree/browser.ipynb?token={lab['token']}")
    # headless windows have no focus, so shell.currentWidget stays null: find the panel by path and activate it
    panel = ("Array.from(window.jupyterapp.shell.widgets('main')).find(w => w.context && "
             "w.context.path === 'browser.ipynb')")
    _wait(lambda: page.js(f"!!(window.jupyterapp && {panel})"), 60, "JupyterLab to open browser.ipynb", dump)
    kernel = page.js(f"""(async () => {{ const w = {panel}; window.jupyterapp.shell.activateById(w.id);
                                        await w.context.ready; await w.sessionContext.ready;
                                        return w.sessionContext.session.kernel.name; }})()""", timeout=60)
    assert kernel == "python3"
    page.js("window.jupyterapp.commands.execute('notebook:run-all-cells'), true")
    s = _wait(lambda: (v := _shown(page)) and v["cluster"] == CHOSEN and len(v["captions"]) == len(want[CHOSEN])
              and all(t["ok"] for t in v["thumbs"]) and v, 60, f"the cluster browser showing cluster {CHOSEN}", dump)
    page.js("document.querySelector('.clipwb-browser').scrollIntoView(), true")
    s = _shown(page)
    png = page.screenshot(tmp_path / "cluster_browser.png")
    if art: art.mkdir(parents=True, exist_ok=True); shutil.copy(tmp_path / "cluster_browser.png", art)

    # the chosen cluster's exemplar captions, in order, and nothing from any other cluster
    assert s["captions"] == want[CHOSEN], dump()
    assert all("square" in c for c in s["captions"])
    leaked = [c for c in foreign(CHOSEN) if c in s["text"]]
    assert not leaked, f"captions of other clusters shown: {leaked[:5]}"
    assert s["selected"].startswith(f"cluster {CHOSEN} — ") and s["bar"] == str(CHOSEN)
    assert f"{b.sizes[CHOSEN]} samples" in s["text"] and b.terms[CHOSEN][0] in s["text"]
    # the screenshot really shows the thumbnails: mean colour of each drawn thumbnail ≈ its source image
    assert len(s["thumbs"]) == len(want[CHOSEN])
    for t, i in zip(s["thumbs"], b.exemplars[CHOSEN]):
        src = np.asarray(pairs[i].image, float)[2:-2, 2:-2].reshape(-1, 3).mean(0)
        np.testing.assert_allclose(_mean_rgb(png, t["r"]), src, atol=12,
                                   err_msg=f"thumbnail of sample {i} in the screenshot does not match its image")

    # pick another cluster in the rendered dropdown: the kernel re-renders and the page follows
    idx = [o[1] for o in b.dropdown.options].index(OTHER)
    page.js(f"""(() => {{ const s = document.querySelector('.clipwb-browser .clipwb-select select');
                          s.selectedIndex = {idx};
                          s.dispatchEvent(new Event('change', {{bubbles: true}})); return true; }})()""")
    s = _wait(lambda: (v := _shown(page)) and v["cluster"] == OTHER and v["captions"] == want[OTHER]
              and all(t["ok"] for t in v["thumbs"]) and v, 30, f"the grid to switch to cluster {OTHER}", dump)
    page.screenshot(tmp_path / "cluster_browser_other.png")
    if art: shutil.copy(tmp_path / "cluster_browser_other.png", art)
    assert all("triangle" in c for c in s["captions"]) and s["bar"] == str(OTHER)
    leaked = [c for c in foreign(OTHER) if c in s["text"]]
    assert not leaked, f"captions of other clusters still shown: {leaked[:5]}"
    errors = [c for c in page.console if "exception" in c or "Error displaying widget" in c]
    assert not errors, "\n".join(errors)
