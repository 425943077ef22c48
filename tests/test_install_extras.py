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
