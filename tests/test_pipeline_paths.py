"""Relative paths in a pipeline file are read from the file's folder, not the working directory, and recorded absolute;
'{step}' references and model names stay as they are."""
import pytest
import yaml

from clipwb.core import ConfigError
from clipwb.pipeline import load_pipeline, plan_pipeline
from clipwb.runs import start_run


@pytest.fixture
def layout(tmp_path, monkeypatch):
    "tmp/sub/ holds the file, a model folder and a weights file; the command runs from tmp/elsewhere/."
    from clipwb.models import create_model, save_model
    sub, away = tmp_path / "sub", tmp_path / "elsewhere"
    away.mkdir()
    save_model(create_model("clipwb-micro"), sub / "models" / "base")
    (sub / "w.safetensors").write_bytes(b"")
    monkeypatch.chdir(away)
    return sub, away


def _file(sub, steps, name="p.yaml"):
    (sub / name).write_text(yaml.safe_dump({"name": "rel", "steps": steps}))
    return "../sub/" + name                                   # as typed from tmp/elsewhere


def test_paths_are_read_from_the_files_folder(layout, tmp_path):
    sub, away = layout
    f = _file(sub, [
        {"name": "ev", "stage": "eval", "params": {"model": "models/base", "limit": 8}},
        {"name": "w", "stage": "eval", "params": {"model": "clipwb-micro", "pretrained": "w.safetensors"}},
        {"name": "moe", "stage": "moe", "params": {"experts": ["models/base", "./models/base", "{ev}"]}}])
    plans = plan_pipeline(load_pipeline(f), root=tmp_path / "runs")
    base = str(sub / "models" / "base")
    ev_cfg, ev_dir = plans["ev"][2], plans["ev"][3]
    assert ev_cfg.model == base
    assert (plans["w"][2].model, plans["w"][2].pretrained) == ("clipwb-micro", str(sub / "w.safetensors"))
    assert plans["moe"][2].experts == [base, base, str(ev_dir)]        # list elements; the reference filled as before
    start_run(ev_cfg, ev_dir)
    assert yaml.safe_load((ev_dir / "params.yaml").read_text())["model"] == base   # recorded absolute
    assert not (away / "models").exists()


def test_a_path_missing_next_to_the_file_names_its_folder(layout, tmp_path):
    sub, away = layout
    (away / "models" / "base").mkdir(parents=True)   # there is one next to the working directory: not the one meant
    f = _file(sub, [{"name": "ev", "stage": "eval", "params": {"model": "./models/nothere"}}])
    with pytest.raises(ConfigError) as e: plan_pipeline(load_pipeline(f), root=tmp_path / "runs")
    assert f"model folder not found: {sub / 'models' / 'nothere'}" in str(e.value)
    assert f"read from its folder {sub}" in str(e.value)


def test_a_dict_pipeline_reads_paths_from_the_working_directory(layout, tmp_path):
    "The Python API (and the demo) give no file: relative paths are the working directory's, as for clipwb run."
    sub, away = layout
    pipe = load_pipeline({"name": "d", "steps": [{"name": "ev", "stage": "eval",
                                                  "params": {"model": "../sub/models/base"}}]})
    assert pipe.folder is None
    assert plan_pipeline(pipe, root=tmp_path / "runs")["ev"][2].model == str(sub / "models" / "base")


def test_missing_faiss_stops_a_pipeline_before_work(tmp_path, monkeypatch):
    "A step whose inputs are not run yet is not checked against them, but a missing optional module is named at once."
    import importlib.util
    from clipwb.pipeline import demo_pipeline
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "faiss" else real(name, *a))
    with pytest.raises(ConfigError) as e: plan_pipeline(load_pipeline(demo_pipeline(quick=True)), root=tmp_path)
    assert "step 'cluster' (cluster)" in str(e.value) and "clipwb-*.whl)[cpu]" in str(e.value)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_a_failed_step_skips_its_dependants_and_theirs(tmp_path):
    """A step that fails: its dependant is not run, and so is the dependant's dependant (before the fix, a step two
    levels below a failure raised KeyError and the pipeline stopped without its record)."""
    from clipwb.io import read_json
    from clipwb.pipeline import run_pipeline
    micro = {"model": "clipwb-micro", "data": "shapes", "batch_size": 8, "max_steps": 1, "data_limit": 4}  # no batch
    out = run_pipeline({"name": "chain", "steps": [
        {"name": "bad", "stage": "train", "params": micro},
        {"name": "child", "stage": "embed", "params": {"model": "{bad}", "data": "shapes", "limit": 8}},
        {"name": "grandchild", "stage": "eval", "params": {"model": "{child}", "data": "shapes", "limit": 8}}]},
        executor="local", root=tmp_path, report=False)
    steps = {s["name"]: s for s in read_json(out / "pipeline.json")["steps"]}
    assert steps["bad"]["status"] == "failed"
    assert steps["child"]["error"] == "not run: dependency 'bad' failed"
    assert steps["grandchild"]["error"] == "not run: dependency 'child' failed"
