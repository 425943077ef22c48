"""Model cards: every model folder a tiny train, moe and merge writes carries a README.md whose YAML front matter
parses (open_clip hub fields, licence) and whose numbers equal the run's metrics.json and config.json."""
import math
from pathlib import Path

import pytest
import yaml

from clipwb.io import read_json

FRONT = ("tags", "library_name", "pipeline_tag", "license")


def _card(d: Path) -> tuple[dict, str]:
    text = (d / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n"), d
    head, body = text[4:].split("\n---\n", 1)
    meta = yaml.safe_load(head)   # the front matter parses as YAML on its own
    assert all(k in meta for k in FRONT) and meta["library_name"] == "open_clip", (d, sorted(meta))
    cfg = read_json(d / "open_clip_config.json")["model_cfg"]
    assert f"**Architecture:** CLIP (open_clip), embedding dimension {cfg['embed_dim']}" in body
    assert f"image tower: ViT, width {cfg['vision_cfg']['width']}, layers {cfg['vision_cfg']['layers']}" in body
    for sec in ("## Training data", "## Metrics", "## Licence"): assert sec in body, (d, sec)
    return meta, body


def _same(a, b) -> bool:   # equal, NaN equal to NaN
    if isinstance(a, dict): return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list): return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a): return math.isnan(b)
    return a == b and type(a) is type(b)


def _check_run_model(d: Path, run_dir: Path, stage: str):
    meta, body = _card(d)
    info, metrics, params = meta["clipwb"], read_json(run_dir / "metrics.json"), read_json(run_dir / "config.json")
    params.pop("stage_config")
    assert info["stage"] == stage and info["run"] == str(run_dir)
    assert _same(info["metrics"], metrics) and metrics                  # the numbers of the run's metrics file …
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            assert f"| {k} | {v!r} |" in body, k                       # … also in the Markdown table
    assert _same(info["params"], params)
    assert [e["id"] for e in info["data"]] == [params["data"]] == meta["datasets"] == ["shapes"]
    assert meta["license"] == "cc0-1.0" and "CC0-1.0" in body.split("## Licence")[1]   # the shapes data card
    return meta


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from e2e_helpers import mlp_experts
    from clipwb.runs import run_step
    tmp = tmp_path_factory.mktemp("cards")
    experts = mlp_experts(tmp / "experts")
    tr = run_step("train", dict(model="clipwb-micro", data="shapes", max_steps=2, batch_size=8, data_limit=16,
                                warmup=1), root=tmp / "runs")
    moe = run_step("moe", dict(experts=[str(e) for e in experts], init="mcl", top_k=2, max_steps=2, batch_size=8,
                               data_limit=16, eval_limit=16, routing_limit=16, baseline=False), root=tmp / "runs")
    return tmp, experts, tr, moe


def test_train_model_card(runs):
    _, _, tr, _ = runs
    meta = _check_run_model(tr.run_dir / "model", tr.run_dir, "train")
    assert meta["clipwb"]["init"] == "random" and meta["clipwb"]["role"] == "the run's model artifact"


def test_moe_model_cards(runs):
    _, experts, _, moe = runs
    from clipwb.runs import run_model_folders
    assert run_model_folders(moe.run_dir) == [moe.run_dir / "init", moe.run_dir / "train" / "model"]
    meta = _check_run_model(moe.run_dir / "train" / "model", moe.run_dir, "moe")
    assert "mixture-of-experts" in meta["tags"]
    init, body = _card(moe.run_dir / "init")   # the MoE before router training: the run's facts, not its metrics
    assert "metrics" not in init["clipwb"] and init["clipwb"]["role"] == "the run's init artifact"
    assert init["clipwb"]["inherits"] == [str(e) for e in experts]
    assert "2 experts, top-2" in body and "None recorded for this folder" in body


def test_merged_model_card(runs, tmp_path):
    from clipwb.merge.stream import merge_models
    _, experts, tr, _ = runs
    out = merge_models("linear", [tr.run_dir / "model", experts[1]], out=tmp_path / "merged", weights=[0.25, 0.75])
    meta, body = _card(out)
    m = meta["clipwb"]["merge"]
    assert m["method"] == "linear" and m["weights"] == [0.25, 0.75] and len(m["models"]) == 2
    assert meta["datasets"] == ["shapes"] and meta["license"] == "cc0-1.0"   # passed on from the trained input
    assert "merge" in meta["tags"] and "- **Merge:**" in body
    assert body.split("## Licence")[1].count("training data 'shapes'") == 1   # the same terms listed once


def test_licences_combine(tmp_path):
    """OpenMoji data (CC BY-SA 4.0, attributed) on pretrained openai weights (MIT): licence 'other', both named."""
    import json
    from clipwb.cards import read_model_card, write_model_card
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": {"embed_dim": 8}}))
    write_model_card(tmp_path, init="pretrained:openai", source="ViT-B-32", data=["openmoji"])
    meta, body = read_model_card(tmp_path), (tmp_path / "README.md").read_text()
    assert meta["license"] == "other" and meta["license_name"] == "CC-BY-SA-4.0 AND MIT"
    assert "All emojis designed by OpenMoji" in body and "pretrained weights ViT-B-32 (openai): MIT" in body


def test_foreign_readme_passes_nothing_on(tmp_path):
    """A folder whose README.md is not a clipwb card (front matter that is not YAML) is read strictly as an error,
    and as nothing when it is only a folder the weights came from."""
    import json
    from clipwb.cards import CardError, read_model_card, write_model_card
    (tmp_path / "a").mkdir(); (tmp_path / "m").mkdir()
    (tmp_path / "a" / "README.md").write_text("---\nkey: [unclosed\n---\n# someone else's model\n")
    (tmp_path / "m" / "open_clip_config.json").write_text(json.dumps({"model_cfg": {"embed_dim": 8}}))
    with pytest.raises(CardError, match="not valid YAML"): read_model_card(tmp_path / "a")
    write_model_card(tmp_path / "m", init="random", source="x", inherits=[tmp_path / "a"])
    meta = read_model_card(tmp_path / "m")
    assert meta["license"] == "other" and meta["clipwb"]["licenses"] == []
