"""Every lost sample counted: a damaged webdataset (3 shards × 20 samples: one corrupt image, one shard truncated in
the middle of its 11th sample, one sample under `../` member names) with `size: 60` in its data card. The stages'
sample accounts (`clipwb.data.readers.sample_accounts`) must say 60 expected = used + lost, with the lost samples by
reason in the numbers this file built (the oracle), on one log line, in metrics.json and in the pipeline report."""
import io
import json
import tarfile
from pathlib import Path

import pytest

from clipwb.testing import synthetic_pairs, write_tar_shard

PER, CUT_AT = 20, 10            # samples per shard; shard 1 is cut inside the txt of its sample 10
CORRUPT, UNSAFE = 5, 19         # shard 0's sample 5 has a broken png; shard 2's sample 19 is named ../<id>
LOST = {"truncated_tail": PER - CUT_AT, "undecodable_image": 1, "unsafe_member": 1}
N_USED = 3 * PER - sum(LOST.values())   # 48


def _add(tf, name, data):
    ti = tarfile.TarInfo(name); ti.size = len(data); tf.addfile(ti, io.BytesIO(data))


def _png(im):
    b = io.BytesIO(); im.save(b, "PNG"); return b.getvalue()


def damaged(folder: Path) -> Path:
    "The damaged copy: 00000.tar with a corrupt png, 00001.tar truncated, 00002.tar with one `../` sample."
    ps = synthetic_pairs(3 * PER, seed=11)
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / "00000.tar", "w") as tf:
        for j, s in enumerate(ps[:PER]):
            _add(tf, f"{s.id}.png", b"\x89PNG\r\n\x1a\n broken" if j == CORRUPT else _png(s.image))
            _add(tf, f"{s.id}.txt", s.caption.encode())
    src = write_tar_shard(ps[PER:2 * PER], folder / "00001.tar").read_bytes()
    with tarfile.open(folder / "00001.tar") as tf: ms = tf.getmembers()   # png, txt, json per sample
    (folder / "00001.tar").write_bytes(src[:ms[3 * CUT_AT + 1].offset_data + 2])
    with tarfile.open(folder / "00002.tar", "w") as tf:
        for j, s in enumerate(ps[2 * PER:]):
            pre = "../" if j == UNSAFE else ""
            _add(tf, f"{pre}{s.id}.png", _png(s.image)); _add(tf, f"{pre}{s.id}.txt", s.caption.encode())
    return folder


def card(cards: Path, cid: str, path, size=None, splits=None) -> str:
    lines = ["---", f"id: {cid}", "name: a damaged copy", "format: webdataset", "license: test", "source: the test",
             f"path: {path}" if path else None, f"splits: {json.dumps(splits)}" if splits else None,
             f"size: {json.dumps(size)}" if size is not None else None, "tasks: [retrieval]", "---", "Damaged."]
    cards.mkdir(exist_ok=True)
    (cards / f"{cid}.md").write_text("\n".join(x for x in lines if x is not None) + "\n")
    return cid


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPWB_CARDS", str(tmp_path / "cards"))
    monkeypatch.setenv("CLIPWB_CACHE", str(tmp_path / "cache"))
    return tmp_path


def lost_of(m: dict, prefix: str = "") -> dict:
    return {k[len(prefix) + 5:]: v for k, v in m.items() if k.startswith(f"{prefix}lost/")}


def adds_up(m: dict, used: str, prefix: str = "") -> None:
    "The invariant: expected = used (+ unread) + lost, and the reasons sum to the lost."
    g = lambda k: m[f"{prefix}{k}"]
    assert g("n_expected") == g(f"n_{used}") + m.get(f"{prefix}n_unread", 0) + g("n_lost")
    assert sum(lost_of(m, prefix).values()) == g("n_lost")


def test_embed_counts_every_lost_sample_in_metrics_log_and_report(env, caplog):
    from clipwb.embed import EmbedCfg, run_embed
    from clipwb.io import write_json
    from clipwb.report import write_report
    from clipwb.runs import finish
    card(env / "cards", "dmg", damaged(env / "wds"), size=3 * PER)
    rd = env / "runs" / "embed"
    with caplog.at_level("INFO", logger="clipwb"):   # another test module quiets the clipwb logger
        res = run_embed(EmbedCfg(data="dmg", split=None, limit=None, shard_size=16, batch_size=16), rd)
    finish(res, rd)
    m = json.loads((rd / "metrics.json").read_text())
    assert (m["n_expected"], m["n_embedded"], m["n_lost"]) == (3 * PER, N_USED, 3 * PER - N_USED)
    assert lost_of(m) == LOST and m["n_unexpected"] == 0 and "n_truncated_uncounted" not in m
    adds_up(m, "embedded")
    assert m["skipped/truncated_tar"] == 1   # the skip records stay: the truncation is one record, not a count
    line = "embed: 60 expected, 48 embedded, 12 lost (10 truncated_tail, 1 undecodable_image, 1 unsafe_member)"
    assert line in caplog.text
    man = json.loads((rd / "embeddings" / "manifest.json").read_text())
    assert man["accounts"]["n_lost"] == 12 and man["n_embedded"] == N_USED
    write_json(env / "runs" / "pipeline.json", {"name": "dmg", "executor": "local", "started": 0.0, "finished": 1.0,
                                               "steps": [{"name": "emb", "stage": "embed", "run_dir": str(rd),
                                                          "status": "done", "seconds": 1.0}]})
    page = write_report(env / "runs").read_text()
    assert f"<p class='accounts failed'>{line}</p>" in page and "<td class='failed'>12 of 60</td>" in page


def test_source_accounts_truncated_tail_from_stats_card_or_neither(env, caplog):
    from clipwb.cards import load_card
    from clipwb.data.datasets import load_dataset
    from clipwb.data.readers import log_accounts, sample_accounts
    wds = damaged(env / "wds")
    acc = lambda cid: sample_accounts(load_dataset(cid), N_USED, [{"index": CORRUPT, "reason": "cannot decode image"}],
                                      used="read")
    # neither a card size nor a stats file: the tail after the cut cannot be counted, and the stage says so
    a = acc(card(env / "cards", "plain", wds))
    assert (a["n_expected"], a["n_lost"], a["n_truncated_uncounted"]) == (3 * PER - 9, 3, 1)
    assert lost_of(a) == {**LOST, "truncated_tail": 1}   # only the sample the cut went through
    with caplog.at_level("WARNING", logger="clipwb"):
        log_accounts("embed", a)
    assert "1 truncated shard(s) whose lost tail cannot be counted" in caplog.text
    # img2dataset's stats file beside the cut shard says it was written with 20 samples
    (wds / "00001_stats.json").write_text(json.dumps({"count": 22, "successes": PER, "failed_to_download": 2,
                                                      "failed_to_resize": 0, "duration": 1.5, "status_dict": {}}))
    a = acc("plain")
    assert a["n_expected"] == 3 * PER and lost_of(a) == LOST and "n_truncated_uncounted" not in a
    # stats and a card that says 2 more: the tail comes from the stats, the 2 are missing from the source
    b = acc(card(env / "cards", "more", wds, size=3 * PER + 2))
    assert b["n_expected"] == 3 * PER + 2 and lost_of(b) == {**LOST, "missing_from_source": 2}
    adds_up(b, "read")
    assert load_card("more").size == 62


def test_prepare_missing_from_source_unexpected_and_split_sizes(env, caplog):
    from clipwb.data.datasets import PrepareCfg, run_prepare
    ps = synthetic_pairs(15, seed=2)
    for k in range(2): write_tar_shard(ps[5 * k:5 * k + 5], env / "ok" / f"{k:05d}.tar")   # 10 intact samples
    write_tar_shard(ps[10:], env / "ok_test" / "00000.tar")                              # 5 more
    run = lambda cid, splits: run_prepare(PrepareCfg(data=cid, splits=splits, limit=None), env / "runs" / cid).metrics
    # the card says 13: 3 are missing from the source (nothing is truncated)
    m = run(card(env / "cards", "big", env / "ok", size=13), ["all"])
    assert (m["all/n_expected"], m["all/n_readable"], m["all/n_lost"]) == (13, 10, 3)
    assert lost_of(m, "all/") == {"missing_from_source": 3}
    adds_up(m, "readable", "all/")
    # the card says 7, fewer than the 10 the source holds: reported (metric and warning), never silent
    with caplog.at_level("WARNING", logger="clipwb"):
        m = run(card(env / "cards", "small", env / "ok", size=7), ["all"])
    assert (m["all/n_expected"], m["all/n_readable"], m["all/n_lost"], m["all/n_unexpected"]) == (10, 10, 0, 3)
    assert "3 samples more than the data card's size states" in caplog.text
    # a size per split
    m = run(card(env / "cards", "per_split", None, size={"train": 12, "test": 5},
                 splits={"train": str(env / "ok"), "test": str(env / "ok_test")}), ["train", "test"])
    assert [m[f"train/{k}"] for k in ("n_expected", "n_readable", "n_lost")] == [12, 10, 2]
    assert lost_of(m, "train/") == {"missing_from_source": 2}
    assert [m[f"test/{k}"] for k in ("n_expected", "n_readable", "n_lost")] == [5, 5, 0] and not lost_of(m, "test/")
    # prose is not compared: what the source lists is expected
    m = run(card(env / "cards", "prose", env / "ok", size="about ten images"), ["all"])
    assert (m["all/n_expected"], m["all/n_lost"]) == (10, 0)


def test_eval_accounts_on_the_damaged_copy(env):
    from clipwb.eval.run import EvalCfg, run_eval
    card(env / "cards", "dmg", damaged(env / "wds"), size=3 * PER)
    m = run_eval(EvalCfg(data="dmg", split="test", tasks=["retrieval"], limit=None, batch_size=32),
                 env / "runs" / "eval").metrics
    assert (m["n_expected"], m["n_evaluated"], m["n_lost"], m["n_samples"]) == (3 * PER, N_USED, 12, N_USED)
    assert lost_of(m) == LOST
    adds_up(m, "evaluated")


def test_train_accounts_on_the_damaged_copy(env):
    from clipwb.train import TrainCfg, run_train
    card(env / "cards", "dmg", damaged(env / "wds"), size=3 * PER)
    base = dict(data="dmg", model="clipwb-micro", data_limit=None, warmup=1)
    # one whole epoch of 7 batches of 7 reads each of the 49 indexed samples once: as embed, 48 trained, 12 lost
    m = run_train(TrainCfg(**base, batch_size=7, max_steps=None, epochs=1), env / "runs" / "epoch").metrics
    assert [m[k] for k in ("n_expected", "n_trained", "n_unread", "n_lost")] == [3 * PER, N_USED, 0, 12]
    assert lost_of(m) == LOST and m["skipped_samples"] == 1
    adds_up(m, "trained")
    # two steps of 8: 16 samples read, the rest of the pool unread by the schedule
    m = run_train(TrainCfg(**base, batch_size=8, max_steps=2), env / "runs" / "short").metrics
    assert m["n_trained"] + m["skipped_samples"] == 16 and m["n_unread"] == 49 - 16
    adds_up(m, "trained")


def test_accounts_that_do_not_add_up_fail_loudly():
    from clipwb.data.readers import MemoryDataset, sample_accounts
    ds = MemoryDataset(synthetic_pairs(6))
    assert sample_accounts(ds, 5, [{"index": 0, "reason": "cannot decode image"}])["n_lost"] == 1
    with pytest.raises(AssertionError, match="do not add up"):   # 6 used + 1 lost of 6 indexed
        sample_accounts(ds, 6, [{"index": 0, "reason": "cannot decode image"}])
