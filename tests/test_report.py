"""The pipeline report (clipwb.report) opened in headless Chromium: a small pipeline (prepare, a 2-step micro
training, a failing step and its dependant) run with the local executor; the page loads without console errors,
carries plotly.js once, every figure is drawn (a plot SVG inside each figure div, and its screenshot region is
not blank), and the failure is shown. The screenshot goes to tmp_path and to $CLIPWB_ARTIFACTS when set."""
import base64
import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_browser import chromium, page  # noqa: F401  (fixtures: headless Chromium with a CDP client)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from clipwb.pipeline import run_pipeline
    root = tmp_path_factory.mktemp("runs")
    micro = {"model": "clipwb-micro", "data": "shapes", "batch_size": 8, "data_limit": 16}
    out = run_pipeline({"name": "rep", "steps": [
        {"name": "prepare", "stage": "prepare", "params": {"data": "shapes", "limit": 8}},
        {"name": "train", "stage": "train", "params": {**micro, "max_steps": 2}},
        {"name": "bad", "stage": "train", "params": {**micro, "max_steps": 1, "data_limit": 4}},   # no batch of 8
        {"name": "after_bad", "stage": "embed", "params": {"model": "{bad}", "data": "shapes", "limit": 8}}]},
        executor="local", root=root)
    return out / "report.html"


def test_report_is_self_contained(report):
    html = report.read_text()
    assert html.count("plotly.js v") == 1 and 'src="plotly.min.js"' not in html and "<script src=" not in html
    assert html.count('class="plotly-graph-div"') >= 2        # prepare's class counts and train's loss curve
    assert "final_loss" in html and "n_train" in html and "dependency &#x27;bad&#x27; failed" in html


def test_report_renders_in_chromium(report, page, tmp_path):  # noqa: F811  (`page` is the imported fixture)
    page.call("Page.navigate", url=report.as_uri())
    t0 = time.monotonic()
    while page.js("document.readyState") != "complete" or page.js(
            "[...document.querySelectorAll('.plotly-graph-div')].some(d => !d.querySelector('.main-svg .trace'))"):
        assert time.monotonic() - t0 < 60, "figures not drawn within 60 s"
        time.sleep(0.25)
    time.sleep(0.5)
    errors = [c for c in page.console if c.startswith(("exception", "console.error", "log.error"))]
    assert not errors, errors
    h = page.js("document.documentElement.scrollHeight")
    page.call("Emulation.setDeviceMetricsOverride", width=1400, height=int(h), deviceScaleFactor=1, mobile=False)
    time.sleep(0.5)
    rects = page.js("[...document.querySelectorAll('.plotly-graph-div')].map(d => {const r = d.getBoundingClientRect();"
                    " return [r.left + scrollX, r.top + scrollY, r.width, r.height,"
                    " d.querySelectorAll('.main-svg .trace').length]})")
    png = base64.b64decode(page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"])
    (tmp_path / "report.png").write_bytes(png)
    if art := os.environ.get("CLIPWB_ARTIFACTS"):
        Path(art).mkdir(parents=True, exist_ok=True); (Path(art) / "report.png").write_bytes(png)
    img = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
    assert len(rects) >= 2
    for x, y, w, hh, marks in rects:
        assert w > 100 and hh > 100 and marks > 0, (x, y, w, hh, marks)
        region = img[int(y):int(y + hh), int(x):int(x + w)]
        assert region.size and (region < 200).mean() > 0.005 and region.std() > 10, (x, y, region.std())
