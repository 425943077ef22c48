"""Plug-in packages: a package installed with pip declares a `clipwb.plugins` entry point that registers a stage (with
its own stage notebook), a dataset reader and a merge method; `clipwb` finds them with no import in user code, and a
broken plug-in is a warning naming it, not a crash."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]

PLUGIN = '''
"""A clipwb plug-in: the `hello` stage, the `hello_pairs` reader and the `first_model` merge method."""
from dataclasses import dataclass
from pathlib import Path

from clipwb.config import STAGES, Result, StageConfig
from clipwb.data.readers import DATASETS, MemoryDataset
from clipwb.merge.methods import MERGERS


@STAGES.register("hello", notebook=str(Path(__file__).parent / "hello.ipynb"), order=11)
@dataclass
class HelloCfg(StageConfig):
    "Parameters of the hello stage."
    n: int = 3          # sum the integers 1..n
    scale: float = 1.0  # multiply the sum by this


def run_hello(cfg: HelloCfg, run_dir) -> Result:
    (Path(run_dir) / "numbers.txt").write_text(" ".join(map(str, range(1, cfg.n + 1))))
    return Result(metrics={"total": cfg.scale * sum(range(1, cfg.n + 1)), "n": cfg.n},
                  artifacts={"numbers": "numbers.txt"})


@DATASETS.register("hello_pairs", needs_path=False)
def hello_pairs(card, split=None, *, limit=None):
    from clipwb.testing import synthetic_pairs
    return MemoryDataset(synthetic_pairs(limit or 8), card=card, split=split)


@MERGERS.register("first_model")
def first_model(models, *, base=None):
    return {k: v.clone() for k, v in models[0].items()}
'''

STAGE_NB = {
    "cells": [
        {"cell_type": "markdown", "id": "a0", "metadata": {},
         "source": ["# Stage: hello\n", "\n", "Sums 1..n (a plug-in's stage)."]},
        {"cell_type": "code", "id": "a1", "metadata": {"tags": ["parameters"]}, "execution_count": None, "outputs": [],
         "source": ["n: int = 3          # sum the integers 1..n\n", "scale: float = 1.0  # multiply the sum by this\n",
                    "run_dir: str = \"\"     # output folder\n"]},
        {"cell_type": "code", "id": "a2", "metadata": {}, "execution_count": None, "outputs": [],
         "source": ["from hello_clipwb import HelloCfg, run_hello\n", "from clipwb.runs import finish, stage_run_dir\n",
                    "cfg = HelloCfg.from_params(globals())\n", "rd = stage_run_dir(run_dir, \"hello\")\n",
                    "res = run_hello(cfg, rd)\n", "finish(res, rd)\n"]},
    ],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
    "nbformat": 4, "nbformat_minor": 5,
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The plug-in package (plus a broken one) built and installed with pip into a folder of its own."""
    tmp = tmp_path_factory.mktemp("plugin")
    for name, mod, body in (("hello-clipwb", "hello_clipwb", PLUGIN),
                            ("broken-clipwb", "broken_clipwb", "import no_such_module\n")):
        pkg = tmp / name
        (pkg / mod).mkdir(parents=True)
        (pkg / mod / "__init__.py").write_text(body)
        (pkg / "pyproject.toml").write_text(textwrap.dedent(f"""\
            [build-system]
            requires = ["setuptools"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "{name}"
            version = "0.1"
            [project.entry-points."clipwb.plugins"]
            {mod.split('_')[0]} = "{mod}"
            [tool.setuptools.package-data]
            {mod} = ["*.ipynb"]
            """))
        if mod == "hello_clipwb":
            (pkg / mod / "hello.ipynb").write_text(json.dumps(STAGE_NB, indent=1))
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                        "--quiet", "--target", str(tmp / "site"), str(pkg)],
                       check=True, capture_output=True, timeout=300)
    return tmp / "site"


def _env(site, root):
    return {**os.environ, "CLIPWB_RUNS": str(root),
            "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _clipwb(site, root, *args):
    return subprocess.run([sys.executable, "-m", "clipwb", *args], capture_output=True, text=True, env=_env(site, root),
                          timeout=600)


def test_installed_package_declares_entry_points(site):
    eps = (next(site.glob("hello_clipwb-0.1.dist-info")) / "entry_points.txt").read_text()
    assert "[clipwb.plugins]" in eps and "hello = hello_clipwb" in eps
    assert (site / "hello_clipwb" / "hello.ipynb").is_file()     # the stage notebook ships inside the package


def test_stages_lists_plugin_stage_last_and_warns_about_broken_plugin(site, tmp_path):
    r = _clipwb(site, tmp_path, "stages")
    assert r.returncode == 0, r.stderr
    heads = [l.split("  (")[0] for l in r.stdout.splitlines() if l and not l.startswith(" ")]
    assert heads == ["prepare", "train", "embed", "eval", "cluster", "merge_sweep", "mcl", "moe", "mode_expert", "mode",
                     "hello"]
    assert "-p n <int>  default 3  sum the integers 1..n" in r.stdout
    assert "clipwb plug-in 'broken' (broken_clipwb) failed to load and is skipped: ModuleNotFoundError" in r.stderr


@pytest.mark.e2e
def test_plugin_stage_runs_through_the_cli(site, tmp_path):
    r = _clipwb(site, tmp_path, "run", "hello", "-p", "n", "4", "-p", "scale", "0.5")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    out = json.loads(r.stdout[r.stdout.index("{"):])
    run_dir = Path(out["run_dir"])
    assert run_dir.parent == tmp_path / "hello"
    assert json.loads((run_dir / "metrics.json").read_text()) == {"total": 5.0, "n": 4}      # 0.5 · (1 + 2 + 3 + 4)
    assert (run_dir / "numbers.txt").read_text() == "1 2 3 4"
    assert (run_dir / "hello.ipynb").is_file()
    r = _clipwb(site, tmp_path, "run", "hello", "-p", "m", "4")
    assert r.returncode == 2 and "unknown parameter(s) ['m']" in r.stderr


def test_plugin_reader_and_merger_found_by_lookup(site, tmp_path):
    """Outside stages: a card naming the plug-in's format validates, and a sweep may name its merge method."""
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "hello.md").write_text("---\nid: hello\nname: Hello\nformat: hello_pairs\nlicense: CC0-1.0\n"
                                                 "source: generated\n---\nPairs from a plug-in.\n")
    code = ("from clipwb.cards import load_card; from clipwb.data.datasets import load_dataset; "
            "from clipwb.merge.sweep import MergeSweepCfg; import warnings; warnings.simplefilter('ignore'); "
            "print(load_card('hello').format, len(load_dataset('hello', 'test', limit=5)), "
            "MergeSweepCfg.tiny(methods=['first_model'], base=None).methods)")
    env = {**_env(site, tmp_path), "CLIPWB_CARDS": str(tmp_path / "cards")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["hello_pairs", "5", "['first_model']"]
