"""merge_sweep stage library: endpoints equal direct evaluation, hand-merged oracles, resume, cache invalidation, bad
parameters."""
import shutil

import pytest
import torch

from clipwb.core import ConfigError

EVAL = dict(domains=["shapes"], limit=16, batch_size=16, stats_limit=8, heldout_limit=8, diagnostics=False)


@pytest.fixture(scope="module")
def finetunes(tmp_path_factory):
    """Two micro CLIPs fine-tuned a few steps from the seeded `clipwb-micro` base (different data order)."""
    from clipwb.train import TrainCfg, run_train
    root = tmp_path_factory.mktemp("ft")
    for seed in (1, 2):
        run_train(TrainCfg.tiny(data="shapes", max_steps=2, batch_size=8, data_limit=32, lr=2e-3, seed=seed),
                  root / f"ft{seed}")
    return [str(root / "ft1"), str(root / "ft2")]


@pytest.fixture(scope="module")
def sweep(finetunes, tmp_path_factory):
    from clipwb.merge.sweep import MergeSweepCfg, run_merge_sweep
    cfg = MergeSweepCfg.tiny(models=finetunes, base="clipwb-micro", merge_ratio=[0, 0.5, 1], lam=[0, 1.0],
                             density=[0.5], alpha=[1.0], **EVAL)
    d = tmp_path_factory.mktemp("sweep")
    return cfg, d, run_merge_sweep(cfg, d)


def _direct(sd_or_name, cfg):
    """Evaluate a model (name/dir or state dict on the micro architecture) with eval.run.evaluate, outside the sweep."""
    from clipwb.data.datasets import load_dataset
    from clipwb.eval.run import evaluate
    from clipwb.models import create_model_and_transforms, get_tokenizer
    model, _, pre = create_model_and_transforms(sd_or_name if isinstance(sd_or_name, str) else "clipwb-micro")
    if not isinstance(sd_or_name, str):
        model.load_state_dict(sd_or_name)
    r = evaluate(model, load_dataset("shapes", cfg.split), preprocess=pre, tokenizer=get_tokenizer("clipwb-micro"),
                 limit=cfg.limit, batch_size=cfg.batch_size, progress=False)
    return r["metrics"]


def _point(d, method, **params):
    from clipwb.io import read_json
    recs = [r for r in read_json(d / "sweep.json")
            if r["method"] == method and all(r["params"].get(k) == v for k, v in params.items())]
    assert len(recs) == 1, (method, params, len(recs))
    return recs[0]["domains"]["shapes"]["metrics"]


def _sd(name):
    from clipwb.models import create_model
    return {k: v.detach().clone() for k, v in create_model(name).state_dict().items()}


def test_endpoints_equal_direct_evaluation(sweep, finetunes):
    cfg, d, _ = sweep
    m0, m1 = _direct(finetunes[0], cfg), _direct(finetunes[1], cfg)
    assert m0 != m1                                           # so swapped endpoints would be caught
    assert _point(d, "linear", merge_ratio=1.0) == m0
    assert _point(d, "linear", merge_ratio=0.0) == m1
    assert _point(d, "input", model=0) == _point(d, "linear", merge_ratio=1.0)
    assert _point(d, "task_arithmetic", lam=0.0) == _direct("clipwb-micro", cfg)     # λ = 0 is the base


def test_merged_points_equal_hand_merged_models(sweep, finetunes):
    """Oracle: the state dicts written out by hand (average; θ0 + Σ(θm − θ0)) evaluated directly."""
    cfg, d, _ = sweep
    a, b, base = _sd(finetunes[0]), _sd(finetunes[1]), _sd("clipwb-micro")
    avg = {k: 0.5 * a[k] + 0.5 * b[k] for k in a}
    ta = {k: base[k] + ((a[k] - base[k]) + (b[k] - base[k])) for k in a}
    assert any(not torch.equal(a[k], b[k]) for k in a)        # the fine-tunes differ
    # and the oracles tell points apart
    assert _direct(avg, cfg) != _direct(a, cfg) and _direct(ta, cfg) != _direct(avg, cfg)
    for got, want in ((_point(d, "linear", merge_ratio=0.5), _direct(avg, cfg)),
                      (_point(d, "uniform_soup"), _direct(avg, cfg)),
                      (_point(d, "task_arithmetic", lam=1.0), _direct(ta, cfg))):
        assert got.keys() == want.keys()
        assert got == pytest.approx(want, abs=1e-6)


def test_table_has_every_point_and_domain(sweep):
    import pandas as pd
    cfg, d, res = sweep
    t = pd.read_csv(d / "sweep.csv")
    want = {"input": 2, "base": 1, "linear": 3, "task_arithmetic": 2, "ties": 2, "regmean": 1, "fisher": 1,
            "uniform_soup": 1, "greedy_soup": 1}
    assert t.groupby("method").size().to_dict() == want
    assert set(t.domain) == {"shapes"} and t["score"].between(0, 1).all()
    assert res.metrics["points_total"] == res.metrics["points_computed"] == sum(want.values())
    assert res.metrics["best/linear/shapes/score"] == t[t.method == "linear"]["score"].max()
    assert len(list((d / "points").glob("*.json"))) == sum(want.values())


def test_resume_recomputes_only_missing_points(sweep, tmp_path):
    from clipwb.io import read_json
    from clipwb.merge.sweep import run_merge_sweep
    cfg, d, res = sweep
    shutil.copytree(d, tmp_path / "s")
    victim = next((tmp_path / "s" / "points").glob("ties-*.json"))
    before = read_json(victim)
    victim.unlink()
    again = run_merge_sweep(cfg, tmp_path / "s")
    assert (again.metrics["points_computed"], again.metrics["points_cached"]) == (1, res.metrics["points_total"] - 1)
    after = read_json(victim)
    assert after["domains"] == before["domains"] and after["params"] == before["params"]
    third = run_merge_sweep(cfg, tmp_path / "s")
    assert third.metrics["points_computed"] == 0


def test_changed_context_invalidates_only_its_points(sweep, tmp_path):
    """stats_limit changes the RegMean and Fisher points, nothing else."""
    from clipwb.merge.sweep import MergeSweepCfg, run_merge_sweep
    cfg, d, _ = sweep
    shutil.copytree(d, tmp_path / "s")
    cfg2 = MergeSweepCfg.tiny(**{**cfg.to_dict(), "stats_limit": 4})
    res = run_merge_sweep(cfg2, tmp_path / "s")
    assert res.metrics["points_computed"] == 2              # regmean (one alpha) + fisher


def test_greedy_soup_selects_on_heldout_split(finetunes, tmp_path, monkeypatch):
    import clipwb.merge.sweep as S
    seen = []
    real = S.tail_view
    monkeypatch.setattr(S, "tail_view", lambda ds, n: seen.append((ds.split, n)) or real(ds, n))
    cfg = S.MergeSweepCfg.tiny(models=finetunes, base=None, methods=["greedy_soup"], **EVAL)
    res = S.run_merge_sweep(cfg, tmp_path)
    # the overlap check + 2 ingredients + 1 candidate, never the test split
    assert seen and set(seen) == {("train", 8)}
    assert len(seen) == 4 and res.metrics["points_computed"] == 3
    with pytest.raises(ConfigError, match="must differ from the reported 'split'"):
        S.MergeSweepCfg.tiny(models=finetunes, heldout_split="test")


@pytest.mark.parametrize("params, match", [
    (dict(methods=["linear", "slerp"]), "unknown or empty \\['slerp'\\]"),
    (dict(merge_ratio=[0.5, 1.2]), "'merge_ratio' values must lie in \\[0, 1\\]"),
    (dict(merge_ratio=[-0.1]), "'merge_ratio' values must lie in \\[0, 1\\]"),
    (dict(models=["clipwb-micro"]), "2 or more models"),
    (dict(base=None), "set 'base'"),
    (dict(alpha=[1.5]), "'alpha' values"),
    (dict(lam=[]), "'lam' is empty"),
    (dict(merge_ratio=[0.5, 0.5]), "'merge_ratio' holds a non-finite or repeated value"),
    (dict(lam=[float("nan")]), "'lam' holds a non-finite"),
    (dict(methods=["linear"], models=["clipwb-micro"] * 4), "'linear' interpolates 2 models"),
])
def test_bad_parameters(params, match):
    from clipwb.merge.sweep import MergeSweepCfg
    with pytest.raises(ConfigError, match=match):
        MergeSweepCfg.tiny(**params)


def test_different_architectures_fail_before_any_point(tmp_path):
    from clipwb.merge.methods import MergeError
    from clipwb.merge.sweep import MergeSweepCfg, run_merge_sweep
    cfg = MergeSweepCfg.tiny(models=["clipwb-micro", "clipwb-tiny"], base=None, methods=["linear"], **EVAL)
    with pytest.raises(MergeError, match="'clipwb-tiny'"):
        run_merge_sweep(cfg, tmp_path)
    assert not (tmp_path / "points").exists()


def test_new_method_is_one_registration(finetunes, tmp_path):
    """A merger registered with a grid and needs is swept with no other edit. Oracle: picking input i equals input i."""
    import pandas as pd
    from clipwb.merge.methods import MERGERS
    from clipwb.merge.sweep import MergeSweepCfg, point_context, run_merge_sweep

    @MERGERS.register("pick_test", grid={"which": [0, 1]}, needs=["base"])
    def pick(models, *, base=None, which: float = 0):
        return {k: v.clone() for k, v in models[int(which)].items()}

    try:
        cfg = MergeSweepCfg.tiny(models=finetunes, base="clipwb-micro", methods=["pick_test"], **EVAL)
        assert "pick_test" in MergeSweepCfg.tiny(models=finetunes, methods=["pick_test", "linear"], **EVAL).methods
        with pytest.raises(ConfigError, match="\\['pick_test'\\] need the base"):
            MergeSweepCfg.tiny(models=finetunes, base=None, methods=["pick_test"], **EVAL)
        res = run_merge_sweep(cfg, tmp_path)
        for i in (0, 1):
            assert _point(tmp_path, "pick_test", which=float(i)) == _point(tmp_path, "input", model=i)
        assert _point(tmp_path, "pick_test", which=1.0) == _direct(finetunes[1], cfg)
        t = pd.read_csv(tmp_path / "sweep.csv")
        assert sorted(t[t.method == "pick_test"]["which"]) == [0.0, 1.0]
        assert res.metrics["best/pick_test/shapes/params"].startswith("which=")
        assert "curve_pick_test" in res.figures and res.figures["curve_pick_test"].layout.xaxis.title.text == "which"
        assert "stats_limit" not in point_context(cfg, "pick_test")
    finally:
        MERGERS._items.pop("pick_test")
