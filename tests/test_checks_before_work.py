"""What can be known before a stage's kernel starts is checked at validation: a split the card lacks, an unset
`${VAR}` in a card path, every element of a path list, an optional module the stage needs. Each fails `plan_run` with
`ConfigError` and leaves nothing under the runs root."""
import importlib.util

import pytest

from clipwb.core import ConfigError
from clipwb.runs import plan_run


def _refused(root, stage, params, *needles):
    with pytest.raises(ConfigError) as e: plan_run(stage, params, root=root)
    assert all(n in str(e.value) for n in needles), str(e.value)
    assert not root.exists() or not any(root.iterdir())
    return str(e.value)


def test_split_the_card_does_not_have(tmp_path):
    "The built-in readers know their splits (train, test); a card that lists splits is checked against its list."
    _refused(tmp_path / "runs", "eval", {"data": "shapes", "split": "validation"}, "no split 'validation'",
             "train, test")
    _refused(tmp_path / "runs", "train", {"data": "openmoji", "split": "val", "max_steps": 1}, "no split 'val'")
    _refused(tmp_path / "runs", "mcl", {"eval_data": "shapes", "eval_split": "dev"}, "eval_data", "no split 'dev'")
    assert plan_run("eval", {"data": "shapes", "split": "test"}, root=tmp_path / "runs")[2] == "new"


def test_unset_env_var_in_card_path(tmp_path, monkeypatch):
    "A card path with an unset `${VAR}` fails at validation, naming the variable."
    cards = tmp_path / "cards"; cards.mkdir()
    (cards / "mine.md").write_text("---\nid: mine\nname: mine\nformat: table\nlicense: CC0-1.0\nsource: here\n"
                                   "path: ${CLIPWB_TEST_UNSET_DATA}/pairs.csv\n---\nA table.\n")
    monkeypatch.setenv("CLIPWB_CARDS", str(cards))
    monkeypatch.delenv("CLIPWB_TEST_UNSET_DATA", raising=False)
    _refused(tmp_path / "runs", "eval", {"data": "mine", "split": "test"}, "${CLIPWB_TEST_UNSET_DATA}", "not set")


def test_every_element_of_a_path_list_exists(tmp_path):
    "A typo in one element of a path list (here the experts of moe) is named with its absolute path."
    (tmp_path / "a").mkdir()
    _refused(tmp_path / "runs", "moe", {"experts": [str(tmp_path / "a"), str(tmp_path / "b")]},
             "item 1", f"not found: {tmp_path / 'b'}")


@pytest.mark.parametrize("stage", ["cluster", "mcl", "mode"])
def test_missing_faiss_is_named_with_its_install_command(tmp_path, monkeypatch, stage):
    "A stage that clusters needs faiss: without it, validation fails with the command that installs it."
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "faiss" else real(name, *a))
    _refused(tmp_path / "runs", stage, {}, "'faiss'", "pip install faiss-cpu", "clipwb[cpu]")
    monkeypatch.undo()
    assert plan_run("cluster", {}, root=tmp_path / "runs")[2] == "new"


@pytest.mark.e2e
def test_cli_split_the_card_does_not_have(tmp_path):
    "Through the CLI: status 2, the split named, no run folder."
    from e2e_helpers import clipwb
    r = clipwb("run", "eval", "-p", "split", "validation", "-p", "limit", "8", root=tmp_path / "runs", check=False)
    assert r.returncode == 2 and "no split 'validation'" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "runs").exists()
