"""Stage defaults are the real job (every sample, every epoch); the smoke sizes are explicit (`XCfg.smoke`, `tiny`);
`clipwb run <stage> -f params.yaml` reruns a recorded run's parameters, `-p` winning."""
import contextlib
import dataclasses
import io
import json

import pytest
import yaml

SIZES = ("limit", "data_limit", "eval_limit", "max_steps", "routing_limit")   # how many samples / steps a stage uses


def _stages():
    from clipwb.config import STAGES
    return STAGES.names()


@pytest.mark.parametrize("stage", _stages())
def test_defaults_are_the_real_job_and_tiny_the_smoke_run(stage):
    from clipwb.runs import stage_config
    cls = stage_config(stage)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k in SIZES:
        if k in fields: assert fields[k].default is None, f"{cls.__name__}.{k} defaults to {fields[k].default}"
    assert set(cls.smoke) <= set(fields), sorted(set(cls.smoke) - set(fields))
    tiny = cls.tiny()
    assert {k: getattr(tiny, k) for k in cls.smoke} == cls.smoke
    assert all(v is not None for v in cls.smoke.values())


def test_run_eval_with_model_and_data_plans_every_sample(tmp_path):
    "The issue's command, `clipwb run eval -p model M -p data D`, evaluates all of D's test split, not 64 samples."
    from clipwb.runs import plan_run
    cfg, _, _ = plan_run("eval", {"model": "clipwb-micro", "data": "shapes"}, root=tmp_path)
    assert cfg.limit is None
    cfg, _, _ = plan_run("train", {"model": "clipwb-micro", "data": "shapes"}, root=tmp_path)
    assert (cfg.max_steps, cfg.data_limit) == (None, None)


def test_a_recorded_params_yaml_reruns_its_run_and_p_wins(tmp_path):
    from clipwb.cli import main
    from clipwb.config import Result
    from clipwb.runs import finish, plan_run, start_run
    runs = tmp_path / "runs"
    cfg, rd, _ = plan_run("eval", {"limit": "8", "tasks": "retrieval"}, root=runs)
    start_run(cfg, rd); finish(Result(metrics={"x": 1.0}), rd)       # a recorded, complete run (nothing executed)

    def cli(*args):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): rc = main(list(args))
        return rc, out.getvalue(), err.getvalue()

    rc, out, err = cli("run", "eval", "-f", str(rd / "params.yaml"), "--runs", str(runs))
    assert rc == 0, err
    assert (json.loads(out)["status"], json.loads(out)["run_dir"]) == ("complete", str(rd))
    # -p wins over the file: another run, with the file's other values
    from clipwb.cli import stage_params
    params = stage_params("eval", [rd / "params.yaml"], [("limit", "16")])
    new, nrd, status = plan_run("eval", params, root=runs)
    assert (new.limit, new.tasks, status) == (16, ["retrieval"], "new") and nrd != rd
    assert {k: v for k, v in new.to_dict().items() if k != "limit"} == {k: v for k, v in cfg.to_dict().items()
                                                                         if k != "limit"}
    # checked like -p, before any work, naming the file
    bad = tmp_path / "bad.yaml"; bad.write_text(yaml.safe_dump({"limit": "lots"}))
    rc, _, err = cli("run", "eval", "-f", str(bad), "--runs", str(tmp_path / "other"))
    assert rc == 2 and f"-f {bad}: parameter 'limit'" in err and not (tmp_path / "other").exists()
    rc, _, err = cli("run", "train", "-f", str(rd / "params.yaml"), "--runs", str(tmp_path / "other"))
    assert rc == 2 and "unknown parameter(s) ['limit', 'tasks', 'templates']" in err
