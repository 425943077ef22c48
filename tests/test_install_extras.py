"""The README's wheel install names the extra that brings faiss (per settings.ini), so an installed clipwb runs every
stage; and the message of a stage refused for a missing faiss names that same command."""
import configparser
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WHEEL_LINE = re.compile(r'^pip install "\$\(ls dist/clipwb-\*\.whl\)\[(\w+)\]"', re.M)


def _extras() -> dict[str, list[str]]:
    ini = configparser.ConfigParser()
    ini.read(ROOT / "settings.ini")
    return {k.removesuffix("_requirements"): v.split() for k, v in ini["DEFAULT"].items()
            if k.endswith("_requirements") and k != "requirements"}


def _wheel_installs(readme: str) -> list[str]:
    "Every `pip install` line of the README that installs the built wheel; the extra it names, or '' for none."
    lines = [l for l in readme.splitlines() if l.startswith("pip install") and ".whl" in l]
    assert lines, "the README has no wheel install line"
    return [(m.group(1) if (m := WHEEL_LINE.match(l)) else "") for l in lines]


def test_the_readme_wheel_install_brings_faiss():
    extras, readme = _extras(), (ROOT / "README.md").read_text()
    got = _wheel_installs(readme)
    assert "" not in got, f"a README wheel line installs no extra, so faiss is missing: {got}"
    faiss = {e for e, reqs in extras.items() if any(r.split("=")[0].split(">")[0].startswith("faiss") for r in reqs)}
    assert got[0] in faiss, f"the first wheel line's extra [{got[0]}] does not bring faiss ({extras})"
    assert faiss <= set(got), f"extras with faiss {sorted(faiss)}; README names {got}"   # the GPU line too


def test_the_missing_faiss_message_names_the_readme_command(monkeypatch):
    from clipwb.config import missing_needs
    from clipwb.cluster.run import ClusterCfg
    cmd = WHEEL_LINE.search((ROOT / "README.md").read_text()).group(0)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "faiss" else real(name, *a))
    (msg,) = missing_needs(ClusterCfg)
    extra = WHEEL_LINE.match(cmd).group(1)
    assert cmd in msg and f"clipwb[{extra}]" in msg and "faiss-cpu" in msg, msg


@pytest.mark.parametrize("bad", ['pip install dist/clipwb-*.whl', 'pip install "dist/clipwb-*.whl[cpu]"'])
def test_the_check_catches_a_line_without_a_usable_extra(bad):
    "A wheel line without an extra, or with one pip cannot read (the * is not expanded inside quotes), is caught."
    assert _wheel_installs(f"x\n{bad}   # comment\n") == [""]


# ---- requirements as ranges, the tested stack in constraints.txt, one GPU story --------------------------------------

def _requirements(key: str = "requirements") -> list:
    from packaging.requirements import Requirement
    ini = configparser.ConfigParser()
    ini.read(ROOT / "settings.ini")
    return [Requirement(r) for r in ini["DEFAULT"][key].split()]


def _pins() -> dict:
    "constraints.txt: canonical name → pinned version."
    from packaging.utils import canonicalize_name
    assert (ROOT / "constraints.txt").is_file(), "no constraints.txt: the tested stack is pinned nowhere"
    lines = [l.split("#")[0].strip() for l in (ROOT / "constraints.txt").read_text().splitlines()]
    pins = dict(l.split("==") for l in lines if l)
    return {canonicalize_name(k): v for k, v in pins.items()}


def test_every_third_party_import_of_the_package_is_declared():
    """Every module clipwb/ imports (function-level imports too) comes from a distribution that settings.ini names, as a
    requirement or in an extra: nothing works only because something else happened to bring it (numba came with
    umap-learn)."""
    import ast
    import sys
    from importlib.metadata import packages_distributions
    from packaging.utils import canonicalize_name
    declared = {canonicalize_name(r.name) for k in ("requirements", "cpu_requirements", "gpu_requirements")
                for r in _requirements(k)}
    dists, missing = packages_distributions(), {}
    for py in sorted((ROOT / "clipwb").rglob("*.py")):
        for node in ast.walk(ast.parse(py.read_text())):
            if isinstance(node, ast.Import): mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module: mods = [node.module]
            else: continue
            for m in (m.split(".")[0] for m in mods):
                if m in sys.stdlib_module_names or m in ("clipwb", "__future__"): continue
                assert m in dists, f"{py.relative_to(ROOT)} imports {m}, which no installed distribution provides"
                if not {canonicalize_name(d) for d in dists[m]} & declared:
                    missing.setdefault(m, set()).add(str(py.relative_to(ROOT)))
    assert not missing, f"imported but not declared in settings.ini: {missing}"


def test_requirements_are_ranges_the_tested_stack_satisfies():
    """`pip install clipwb` states ranges, not the exact stack: torch, torchvision and open_clip_torch admit a newer
    release than the tested one (a cluster's own torch stays); every requirement and the cpu extra are pinned in
    constraints.txt, at a version inside their range (so `make install` can never conflict)."""
    from packaging.utils import canonicalize_name
    from packaging.version import Version
    pins = _pins()
    for r in _requirements() + _requirements("cpu_requirements"):
        name = canonicalize_name(r.name)
        assert name in pins, f"{r.name} is not pinned in constraints.txt"
        assert r.specifier.contains(pins[name], prereleases=True), f"{r} excludes the tested {r.name}=={pins[name]}"
    for r in _requirements():
        if canonicalize_name(r.name) in ("torch", "torchvision", "open-clip-torch"):
            v = Version(pins[canonicalize_name(r.name)])
            newer = f"{v.major}.{v.minor + 1}.0"
            assert r.specifier.contains(newer), f"{r} refuses {r.name} {newer}: an exact pin replaces a cluster's torch"


def test_make_install_applies_the_constraints():
    "The venv is built with `-c constraints.txt`, and rebuilt when the file changes."
    import re as _re
    mk = (ROOT / "Makefile").read_text()
    rule = _re.search(r"^\$\(STAMP\):(.*)$", mk, _re.M)
    assert rule and "constraints.txt" in rule.group(1).split(), rule and rule.group(0)
    body = mk[rule.end():].split("\n\n")[0]
    assert _re.search(r"pip install .*-e \"\.\[dev,cpu\]\" -c constraints\.txt", body), body


def test_environment_yml_and_the_gpu_extra_name_the_same_faiss():
    """One GPU story: environment.yml installs faiss only through the gpu extra (no conda faiss beside it), with the
    tested versions."""
    import yaml
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    conda = [d for d in deps if isinstance(d, str)]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert not [d for d in conda if d.startswith("faiss")], f"conda installs faiss itself: {conda}"
    assert "-c constraints.txt" in pip, pip
    (editable,) = [p for p in pip if p.startswith("-e")]
    extras = re.search(r"\[([\w,]+)\]", editable).group(1).split(",")
    assert "gpu" in extras and "cpu" not in extras, editable
    gpu = [r.name for r in _requirements("gpu_requirements") if r.name.startswith("faiss")]
    assert len(gpu) == 1, gpu
