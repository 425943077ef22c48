"""An installed clipwb (a wheel, not the checkout) runs stages from any folder: stage notebooks and built-in data cards
travel as package data, runs go to ./runs, user cards come from $CLIPWB_CARDS, git metadata is recorded as absent."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    "The wheel built (once for this file) from a copy of the sources, in `<tmp>/dist/`."
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for p in ("setup.py", "settings.ini", "MANIFEST.in", "README.md"):
        shutil.copy(ROOT / p, src / p) if src.exists() else (src.mkdir(), shutil.copy(ROOT / p, src / p))
    for d in ("clipwb", "nbs/stages", "data_cards"):
        shutil.copytree(ROOT / d, src / d, ignore=shutil.ignore_patterns("__pycache__", "_data"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", str(src), "-w", str(tmp / "dist")],
                   check=True, cwd=tmp, capture_output=True)
    whl = next((tmp / "dist").glob("clipwb-*.whl"))
    names = zipfile.ZipFile(whl).namelist()
    for f in (ROOT / "nbs" / "stages").glob("*.ipynb"): assert f"clipwb/_data/stages/{f.name}" in names
    for f in (ROOT / "data_cards").glob("*.md"): assert f"clipwb/_data/data_cards/{f.name}" in names
    return whl


@pytest.fixture(scope="module")
def installed(wheel):
    "The wheel installed with --target into a folder outside the checkout."
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    target, whl = wheel.parent.parent / "site", wheel
    subprocess.run([*pip, "install", "--no-deps", "--no-compile", "--target", str(target), str(whl)], check=True,
                   capture_output=True)
    return target


def _clipwb(target, cwd, *args, **env):
    e = {k: v for k, v in os.environ.items() if k not in ("CLIPWB_RUNS", "CLIPWB_CARDS")}
    e.update(PYTHONPATH=str(target), **env)              # the installed copy only, never the checkout
    return subprocess.run([sys.executable, "-m", "clipwb", *args], cwd=cwd, env=e, capture_output=True, text=True,
                          timeout=600)


def test_installed_wheel_runs_a_stage_from_any_folder(installed, tmp_path):
    work = tmp_path / "somewhere"; work.mkdir()
    where = subprocess.run([sys.executable, "-c", "import clipwb; print(clipwb.__file__)"], cwd=work,
                           capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(installed)}).stdout.strip()
    assert where.startswith(str(installed)), where
    r = _clipwb(installed, work, "stages")
    assert r.returncode == 0 and "\ntrain  (02_train.ipynb" in "\n" + r.stdout and "-p pretrained <str>" in r.stdout, (
        r.stderr[-2000:])
    cards = tmp_path / "cards"; cards.mkdir()                    # a user card, found without a checkout
    (cards / "mine.md").write_text((ROOT / "data_cards" / "shapes.md").read_text().replace("id: shapes", "id: mine"))
    r = _clipwb(installed, work, "run", "prepare", "-p", "data", "mine", "-p", "limit", "4", "-p", "splits", "test",
                CLIPWB_CARDS=str(cards))
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout[r.stdout.index("{"):])
    run = Path(out["run_dir"])
    assert r.stderr.splitlines()[0] == (f"runs root: {(work / 'runs').resolve()} (./runs in the working directory; "
                                        "--runs or CLIPWB_RUNS to change)")
    assert run.parent == work / "runs" / "prepare" and (run / "metrics.json").is_file()
    env = json.loads((run / "env.json").read_text())
    assert env["git"]["sha"] is None and "not run from a git checkout" in env["git"]["note"]
    assert json.loads((run / "run_key.json").read_text())["git"] is None
    r = _clipwb(installed, work, "run", "train", "-p", "data", "no_such_card")
    assert r.returncode == 2 and "no data card 'no_such_card'" in r.stderr


def test_the_readme_wheel_command_asks_for_the_faiss_extra(wheel):
    """The README's install line, run by the shell in the folder holding dist/, asks pip for the extra, and the wheel's
    metadata makes that extra require faiss (settings.ini → setup.py → METADATA)."""
    import re
    line = re.search(r'^pip install "\$\(ls dist/clipwb-\*\.whl\)\[(\w+)\]"', (ROOT / "README.md").read_text(), re.M)
    assert line, "README.md has no `pip install \"$(ls dist/clipwb-*.whl)[extra]\"` line"
    meta = zipfile.ZipFile(wheel).read(next(n for n in zipfile.ZipFile(wheel).namelist()
                                            if n.endswith(".dist-info/METADATA"))).decode()
    extra = line.group(1)
    assert f"Provides-Extra: {extra}" in meta
    assert re.search(rf"^Requires-Dist: faiss[\w-]*.*extra == \"{extra}\"", meta, re.M), meta[-1500:]
    report = wheel.parent.parent / "report.json"        # pip parses the line as the README writes it (no download)
    cmd = line.group(0).replace("pip install", f"{sys.executable} -m pip install --dry-run --no-deps --no-index "
                                               f"--disable-pip-version-check -q --report {report}")
    subprocess.run(["bash", "-c", cmd], cwd=wheel.parent.parent, check=True, capture_output=True)
    (inst,) = json.loads(report.read_text())["install"]
    assert inst["metadata"]["name"] == "clipwb" and inst["requested_extras"] == [extra]


def _fake_wheel(folder: Path, name: str, version: str) -> Path:
    "An empty wheel of distribution `name` at `version` (only its metadata): what pip's resolver sees, nothing to run."
    from packaging.utils import canonicalize_name
    stem = f"{canonicalize_name(name).replace('-', '_')}-{version}"
    whl = folder / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        files = {f"{stem}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                 f"{stem}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: clipwb-tests\nRoot-Is-Purelib: true\n"
                                            "Tag: py3-none-any\n"}
        for n, text in files.items(): z.writestr(n, text)
        z.writestr(f"{stem}.dist-info/RECORD", "".join(f"{n},,\n" for n in files) + f"{stem}.dist-info/RECORD,,\n")
    return whl


def test_the_wheel_keeps_a_compatible_torch_already_installed(wheel, tmp_path):
    """`pip install clipwb` into an environment that already holds a newer, compatible torch (a cluster's) keeps that
    torch: pip's resolver, offline, over a venv holding torch <tested minor + 1> and an index of metadata-only wheels
    of every requirement at its tested version (constraints.txt), installs clipwb and its other requirements only."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version
    meta = zipfile.ZipFile(wheel).read(next(n for n in zipfile.ZipFile(wheel).namelist()
                                            if n.endswith(".dist-info/METADATA"))).decode()
    reqs = [Requirement(l.split(":", 1)[1].strip()) for l in meta.splitlines() if l.startswith("Requires-Dist:")]
    reqs = [r for r in reqs if r.marker is None]                    # not the extras
    lines = [l.split("#")[0].strip() for l in (ROOT / "constraints.txt").read_text().splitlines()]
    pins = {canonicalize_name(k): v for k, v in (l.split("==") for l in lines if l)}
    index, own = tmp_path / "index", tmp_path / "own"
    index.mkdir(); own.mkdir()
    for r in reqs: _fake_wheel(index, r.name, pins[canonicalize_name(r.name)])
    tested = Version(pins["torch"])
    theirs = f"{tested.major}.{tested.minor + 1}.0"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "--disable-pip-version-check", "-q"]
    # only this test's settings: no pip.conf (a machine's constraints or indexes), no PIP_* variables
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PIP_")}, "PIP_CONFIG_FILE": os.devnull}
    r = subprocess.run([*pip, "install", "--no-index", "--no-deps", str(_fake_wheel(own, "torch", theirs))],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    report = tmp_path / "report.json"
    r = subprocess.run([*pip, "install", "--dry-run", "--no-index", "--find-links", str(index), "--report",
                        str(report), str(wheel)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    got = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"]
           for i in json.loads(report.read_text())["install"]}
    assert "torch" not in got, f"pip would replace the installed torch {theirs} with {got['torch']}"
    want = {canonicalize_name(r.name) for r in reqs} - {"torch"}
    assert set(got) == want | {"clipwb"}, sorted(set(got) ^ (want | {"clipwb"}))
