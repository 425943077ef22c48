"""Registry contracts: every `.register(` in nbs/ is in its registry, and every plug-in honours its contract."""
import dataclasses
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


# `@R.register`, or `@R.register("name", meta…)` whose metadata may hold strings with brackets and tuples, then the
# decorated def/class
REGISTRATION = re.compile(r"""@(\w+)\.register(?:\(\s*["']([\w.-]+)["'](?:"[^"]*"|'[^']*'|\([^()]*\)|[^()"'])*\))?"""
                          r"""\s*\n(?:@.*\n)*\s*(?:def|class)\s+(\w+)""")


def registrations_in_notebooks():
    """{registry variable: {names}} from exported cells of nbs/*.ipynb."""
    found = {}
    for nb in sorted((ROOT / "nbs").glob("*.ipynb")):
        for c in json.loads(nb.read_text())["cells"]:
            src = "".join(c["source"])
            if c["cell_type"] != "code" or not re.match(r"#\|\s*export", src):
                continue
            for m in re.finditer(REGISTRATION, src):
                found.setdefault(m.group(1), set()).add(m.group(2) or m.group(3))
    return found


def registries():
    "Each registry imports its built-in modules on the first lookup (`Registry(builtins=…)`): nothing else is imported."
    from clipwb.config import STAGES
    from clipwb.data.readers import DATASETS
    from clipwb.cluster.kmeans import CLUSTERERS
    from clipwb.merge.methods import MERGERS
    return {"STAGES": STAGES, "DATASETS": DATASETS, "CLUSTERERS": CLUSTERERS, "MERGERS": MERGERS}


def test_registries_match_notebooks():
    found, regs = registrations_in_notebooks(), registries()
    for var, reg in regs.items():
        assert set(reg.names()) == found.get(var, set()), f"{var}: registry vs .register( calls in nbs/"


def _stage_names():
    from clipwb.config import STAGES
    return STAGES.names()


@pytest.mark.parametrize("stage", _stage_names())
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


def _clusterer_names():
    from clipwb.cluster import CLUSTERERS
    return CLUSTERERS.names()


@pytest.mark.parametrize("method", _clusterer_names())
def test_clusterer_contract(method):
    """Every clusterer: shapes and dtypes, labels in [0, K), deterministic for a seed, assign() reproduces labels."""
    import numpy as np
    from clipwb.cluster.kmeans import Clustering, fit_clusters
    from clipwb.testing import random_embeddings
    x, _ = random_embeddings(200, 8, k=4, seed=1)
    a, b = fit_clusters(x, method, k=4, seed=3), fit_clusters(x, method, k=4, seed=3)
    assert isinstance(a, Clustering) and a.method == method
    assert a.centroids.shape == (4, 8) and a.centroids.dtype == np.float32
    assert a.labels.shape == (200,) and a.labels.dtype == np.int64
    assert a.labels.min() >= 0 and a.labels.max() < 4
    assert a.sizes.shape == (4,) and a.sizes.sum() == 200
    assert np.isfinite(a.objective) and isinstance(a.objective_per_iter, list) and isinstance(a.params, dict)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    np.testing.assert_array_equal(a.assign(x), a.labels)
