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
def installed(tmp_path_factory):
    "The wheel built from a copy of the sources, installed with --target into a folder outside the checkout."
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
    target = tmp / "site"
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
    assert run.parent == work / "runs" / "prepare" and (run / "metrics.json").is_file()
    env = json.loads((run / "env.json").read_text())
    assert env["git"]["sha"] is None and "not run from a git checkout" in env["git"]["note"]
    assert json.loads((run / "run_key.json").read_text())["git"] is None
    r = _clipwb(installed, work, "run", "train", "-p", "data", "no_such_card")
    assert r.returncode == 2 and "no data card 'no_such_card'" in r.stderr
