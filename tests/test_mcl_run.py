"""MCL stage pieces: cross-stage integration against a hand-computed concatenation; an mcl run folder as a model
(eval, embed, `clipwb run eval`) against the hand-built integration, checked before work; trainable presets."""
import numpy as np
import pytest

from clipwb.core import ConfigError
from clipwb.models import ConcatCLIP
from clipwb.mcl import MclCfg
from clipwb.models import create_model, freeze_except, get_tokenizer


def _unit(e):
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def test_visual_groups_match_open_clip_lock_image():
    m = create_model("clipwb-micro")
    for n in (1, 2, 3, 4):
        m.lock_image_tower(unlocked_groups=n)
        want = sorted(k for k, p in m.named_parameters() if p.requires_grad and k.startswith("visual."))
        assert sorted(freeze_except(m, f"visual:{n}")) == want


@pytest.fixture(scope="module")
def mcl_dir(tmp_path_factory):
    """A hand-made mcl run folder: two seeded micro stage models, experts.json with relative paths, stages.json."""
    import json
    from clipwb.models import save_model
    d = tmp_path_factory.mktemp("mcl")
    for s in (3, 4):
        save_model(create_model("clipwb-micro", seed=s), d / f"stage{s}")
    (d / "experts.json").write_text(json.dumps({"models": ["stage3", "stage4"]}))
    (d / "stages.json").write_text("{}")
    return d


def _hand_integration(d):
    """ConcatCLIP of the stage models built by hand (its outputs are checked against NumPy in nbs/21_models.concat),
    with member 0's preprocess."""
    from clipwb.models import create_model_and_transforms
    members = [create_model_and_transforms(str(d / f"stage{s}")) for s in (3, 4)]
    return ConcatCLIP([m.eval() for m, _, _ in members]), members[0][2], members[0][0]


def _hand_metrics(d):
    """Held-out metrics (shapes test, 24 samples) of the hand-built integration, and of its first member alone."""
    from clipwb.data.datasets import load_dataset
    from clipwb.eval.run import evaluate
    hand, pre, member0 = _hand_integration(d)
    ds, tok = load_dataset("shapes", "test"), get_tokenizer("clipwb-micro")
    return [evaluate(m, ds, preprocess=pre, tokenizer=tok, limit=24, batch_size=16, progress=False)["metrics"]
            for m in (hand, member0)]


def test_eval_of_an_mcl_run_folder_is_the_hand_built_integration(mcl_dir, tmp_path):
    from clipwb.eval.run import EvalCfg, run_eval
    res = run_eval(EvalCfg.tiny(model=str(mcl_dir), limit=24, batch_size=16), tmp_path / "eval")
    want, alone = _hand_metrics(mcl_dir)
    assert want != alone                                   # the integration is not just its first member
    assert {k: res.metrics[k] for k in want} == pytest.approx(want, abs=1e-6)
    assert res.metrics["init"] == f"mcl:{mcl_dir.resolve()}"


@pytest.mark.e2e
def test_cli_eval_of_an_mcl_run_folder(mcl_dir, tmp_path):
    """`clipwb run eval -p model <mcl run folder>`: papermill runs the stage notebook inside its run folder."""
    from e2e_helpers import run
    out = run("eval", tmp_path / "runs", model=str(mcl_dir), data="shapes", limit=24, batch_size=16)
    want, _ = _hand_metrics(mcl_dir)
    assert {k: out["metrics"][k] for k in want} == pytest.approx(want, abs=1e-6)
    assert out["metrics"]["init"] == f"mcl:{mcl_dir.resolve()}"


def test_embed_of_an_mcl_run_folder_is_the_integration(mcl_dir, tmp_path):
    from clipwb.data.datasets import load_dataset
    from clipwb.embed import EmbedCfg, run_embed
    from clipwb.encode import encode_dataset
    run_embed(EmbedCfg.tiny(model=str(mcl_dir), limit=8, shard_size=8), tmp_path)
    img = np.load(tmp_path / "embeddings" / "img_emb_00000.npy").astype(np.float32)
    txt = np.load(tmp_path / "embeddings" / "text_emb_00000.npy").astype(np.float32)
    hand, pre, _ = _hand_integration(mcl_dir)
    enc = encode_dataset(hand, load_dataset("shapes", "train"), preprocess=pre, tokenizer=get_tokenizer("clipwb-micro"),
                         indices=range(8), progress=False)
    assert img.shape == (8, 64)
    np.testing.assert_allclose(img, enc["image"], atol=2e-3)   # shards are float16
    np.testing.assert_allclose(txt, enc["text"], atol=2e-3)


def test_mcl_run_folder_is_checked_before_work(mcl_dir, tmp_path):
    import json
    from clipwb.models import save_model
    from clipwb.runs import check_refs, plan_run
    cfg, _, _ = plan_run("eval", {"model": str(mcl_dir)}, root=tmp_path / "runs")
    assert check_refs(cfg) == {"model": f"mcl:{mcl_dir.resolve()}"}
    plan_run("embed", {"model": str(mcl_dir)}, root=tmp_path / "runs")
    for stage, params in (("train", {"model": str(mcl_dir)}), ("mcl", {"base": str(mcl_dir)})):
        with pytest.raises(ConfigError, match="is an mcl run: .* only embed, eval take; .*stage3"):
            plan_run(stage, params, root=tmp_path / "runs")
    # members that would need other inputs: another context length (from the configs), another image mean (built)
    bad = tmp_path / "bad"
    save_model(create_model("clipwb-tiny"), bad / "tiny")
    (bad / "experts.json").write_text(json.dumps({"models": [str(mcl_dir / "stage3"), "tiny"]}))
    (bad / "stages.json").write_text("{}")
    with pytest.raises(ConfigError, match="'context_length': \\(16, 32\\)"):
        plan_run("eval", {"model": str(bad)}, root=tmp_path / "runs")
    m = save_model(create_model("clipwb-micro", seed=5), bad / "mean")
    conf = json.loads((m / "open_clip_config.json").read_text())
    conf["preprocess_cfg"]["mean"] = [0.5, 0.5, 0.5]
    (m / "open_clip_config.json").write_text(json.dumps(conf))
    (bad / "experts.json").write_text(json.dumps({"models": [str(mcl_dir / "stage3"), "mean"]}))
    with pytest.raises(ConfigError, match="member 1 differs from member 0 in \\{'mean'"):
        create_model(bad)


@pytest.mark.parametrize("method, seeding", [("kmeans", "kmeans++"), ("balanced_kmeans", "random")])
def test_mcl_seeding_reaches_kmeans_only(tmp_path, method, seeding):
    """The mcl stage's k-means++ default reaches a kmeans cluster step; other clusterers keep their own starts."""
    import json
    from clipwb.mcl import run_mcl
    run_mcl(MclCfg.tiny(stages=1, max_steps=1, method=method, data_limit=32, eval_limit=8), tmp_path)
    (cfg,) = list((tmp_path / "steps" / "cluster").glob("*/config.json"))
    got = json.loads(cfg.read_text())
    assert (got["method"], got["seeding"]) == (method, seeding)


def test_mcl_with_one_k_per_stage_splits_each_first_stage_cell_by_the_second_stage_k(tmp_path):
    """k_stages=[3, 2]: stage 1 clusters with k=3, stage 2 with k=2, and stage 2's cells are the (stage-1 cluster,
    stage-2 cluster) pairs, P = c_0 · 2 + c_1, checked against the two cluster runs' own labels."""
    import pandas as pd
    from clipwb.io import read_json
    from clipwb.mcl import run_mcl
    cfg = MclCfg.tiny(data_limit=48, stages=2, clustering="image", k_stages=[3, 2], max_steps=1, batch_size=4,
                      eval_limit=16, warmup=1, drop_small=False)
    run_mcl(cfg, tmp_path / "run")
    rows = read_json(tmp_path / "run" / "stages.json")["stages"]
    k = [read_json(f"{r['cluster']}/metrics.json")["k"] for r in rows]
    assert k == [3, 2]
    l0, l1 = (pd.read_parquet(f"{r['cluster']}/labels.parquet") for r in rows)
    assert (l1["pseudo"].to_numpy() == l0["cluster"].to_numpy() * 2 + l1["cluster"].to_numpy()).all()
    assert rows[1]["cells"] == len(set(zip(l0["cluster"], l1["cluster"]))) <= 6
    with pytest.raises(ConfigError, match="each of the 2 stages"):
        MclCfg.tiny(stages=2, k_stages=[3])
