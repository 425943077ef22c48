"""Errors before work: unknown cards, models, missing folders and unfinished referenced runs stop `clipwb run` with
status 2 during validation, before any run folder exists."""
import contextlib
import io

import pytest

from clipwb.cli import main
from clipwb.config import Result
from clipwb.runs import finish, plan_run, start_run


def _cli(*args):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()): rc = main(list(args))
    return rc, err.getvalue()


@pytest.mark.parametrize("params,words", [
    (["-p", "data", "no_such_card"], "parameter 'data': no data card 'no_such_card'"),
    (["-p", "model", "no_such_model"], "parameter 'model': unknown model 'no_such_model'"),
    (["-p", "model", "/no/such/dir"], "model folder not found: /no/such/dir"),
    (["-p", "init", "/no/such/run"], "parameter 'init': path not found: /no/such/run"),
    (["-p", "model", "ViT-B-32"], "model 'ViT-B-32' needs weights: pass pretrained <tag>"),
    (["-p", "pretrained", "no_such_tag"], "pretrained 'no_such_tag' of clipwb-micro: neither one of its tags"),
])
def test_bad_reference_exits_2_without_a_run_folder(tmp_path, params, words):
    rc, err = _cli("run", "train", *params, "--runs", str(tmp_path))
    assert rc == 2 and words in err, err
    assert not any(tmp_path.iterdir())


def test_unfinished_referenced_run(tmp_path):
    cfg, rd, _ = plan_run("train", {}, root=tmp_path / "a")
    start_run(cfg, rd)                                      # a run folder without metrics.json: interrupted
    rc, err = _cli("run", "eval", "-p", "model", str(rd), "--runs", str(tmp_path / "b"))
    assert rc == 2 and "is an unfinished run (no metrics.json)" in err and not (tmp_path / "b").exists()
    finish(Result(), rd)                        # complete, but no model/ inside: still refused, by resolve_model
    rc, err = _cli("run", "eval", "-p", "model", str(rd), "--runs", str(tmp_path / "b"))
    assert rc == 2 and "has no open_clip_config.json" in err
