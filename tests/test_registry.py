"""Registry contracts: every `.register(` in nbs/ is in its registry, and every plug-in honours its contract."""
import dataclasses
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def registrations_in_notebooks():
    """{registry variable: {names}} from exported cells of nbs/*.ipynb."""
    found = {}
    for nb in sorted((ROOT / "nbs").glob("*.ipynb")):
        for c in json.loads(nb.read_text())["cells"]:
            src = "".join(c["source"])
            if c["cell_type"] != "code" or not re.match(r"#\|\s*export", src):
                continue
            for m in re.finditer(r"@(\w+)\.register(?:\(\s*[\"']([\w.-]+)[\"'][^)]*\))?\s*\n(?:@.*\n)*\s*(?:def|class)\s+(\w+)", src):
                found.setdefault(m.group(1), set()).add(m.group(2) or m.group(3))
    return found


def registries():
    from clipwb.pipeline import load_stages
    load_stages()
    from clipwb.config import STAGES
    from clipwb.data.readers import DATASETS
    return {"STAGES": STAGES, "DATASETS": DATASETS}


def test_registries_match_notebooks():
    found, regs = registrations_in_notebooks(), registries()
    for var, reg in regs.items():
        assert set(reg.names()) == found.get(var, set()), f"{var}: registry vs .register( calls in nbs/"


def test_dataset_formats_match_cards():
    from clipwb.cards import FORMATS
    assert sorted(FORMATS) == registries()["DATASETS"].names()


@pytest.mark.parametrize("stage", ["prepare", "train", "embed", "eval"])
def test_stage_config_contract(stage):
    """Every stage config: all fields have defaults, round-trips through JSON, is strict about names and types."""
    from clipwb.config import StageConfig
    from clipwb.core import ConfigError
    cls = registries()["STAGES"].get(stage)
    assert issubclass(cls, StageConfig) and cls.__doc__
    cfg = cls()
    assert cls.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="unknown parameter"):
        cls.validate_params({"no_such_param": 1})
    for f in dataclasses.fields(cls):
        if cls.field_types()[f.name] is int:
            with pytest.raises(ConfigError, match=f.name):
                cls.validate_params({f.name: "not-a-number"})


@pytest.mark.parametrize("fmt", ["shapes"])
def test_builtin_dataset_deterministic(fmt):
    from clipwb.data.datasets import load_dataset
    a, b = load_dataset(fmt, "train"), load_dataset(fmt, "train")
    assert a.ids == b.ids and len(a) > 0 and len(set(a.ids)) == len(a.ids)
    x, y = a[3], b[3]
    assert x.caption == y.caption and list(x.image.getdata()) == list(y.image.getdata())
