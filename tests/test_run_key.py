"""Skip-if-complete never silently reuses a run made from another data card content, clipwb version or git commit."""
import contextlib
import io
import json

import pytest

from clipwb.cli import main
from clipwb.config import Result
from clipwb.core import ConfigError, repo_root
from clipwb.runs import finish, plan_run, start_run


@pytest.fixture
def card(tmp_path, monkeypatch):
    "A user card 'mycard' (a copy of the shapes card) in $CLIPWB_CARDS."
    d = tmp_path / "cards"; d.mkdir()
    text = (repo_root() / "data_cards" / "shapes.md").read_text().replace("id: shapes", "id: mycard")
    (d / "mycard.md").write_text(text)
    monkeypatch.setenv("CLIPWB_CARDS", str(d))
    return d / "mycard.md"


def _done_run(root, **params):
    cfg, rd, status = plan_run("eval", params, root=root)
    assert status == "new"
    start_run(cfg, rd); finish(Result(metrics={"x": 1.0}), rd)
    return rd


def _cli(*args):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out): rc = main(list(args))
    return rc, out.getvalue(), err.getvalue()


def test_edited_card_refused_then_force_or_reuse(tmp_path, card):
    root = tmp_path / "runs"
    rd = _done_run(root, data="mycard")
    key = json.loads((rd / "run_key.json").read_text())
    assert set(key) == {"cards", "data", "clipwb", "git"} and len(key["cards"]["mycard"]) == 64
    assert key["data"] == {}   # a generated card (a copy of shapes): no files behind it
    assert plan_run("eval", {"data": "mycard"}, root=root)[1:] == (rd, "complete")      # unchanged: skipped
    card.write_text(card.read_text().replace("Shapes", "Shapes, edited"))
    with pytest.raises(ConfigError, match="data card 'mycard' changed.*--force.*--reuse"):
        plan_run("eval", {"data": "mycard"}, root=root)
    rc, _, err = _cli("run", "eval", "-p", "data", "mycard", "--runs", str(root))
    assert rc == 2 and "data card 'mycard' changed" in err and "--reuse" in err
    rc, out, _ = _cli("run", "eval", "-p", "data", "mycard", "--runs", str(root), "--reuse")
    assert rc == 0 and json.loads(out)["status"] == "complete" and json.loads(out)["run_dir"] == str(rd)
    cfg, new, status = plan_run("eval", {"data": "mycard"}, root=root, force=True)
    assert status == "new" and new != rd


@pytest.mark.parametrize("field,value,words", [("clipwb", "0.0.1", "clipwb version 0.0.1"),
                                               ("git", "deadbeef", "git commit deadbeef")])
def test_other_code_version_refused(tmp_path, field, value, words):
    root = tmp_path / "runs"
    rd = _done_run(root)
    key = json.loads((rd / "run_key.json").read_text())
    (rd / "run_key.json").write_text(json.dumps({**key, field: value}))
    with pytest.raises(ConfigError, match=words):
        plan_run("eval", {}, root=root)
    assert plan_run("eval", {}, root=root, on_stale="new")[2] == "new"


def test_run_without_key_refused(tmp_path):
    root = tmp_path / "runs"
    rd = _done_run(root)
    (rd / "run_key.json").unlink()
    with pytest.raises(ConfigError, match="records no run key"):
        plan_run("eval", {}, root=root)
