"""Recall@k that cannot measure alignment (few distinct captions per image, or a chance level of 0.5 or more) is still
computed but flagged: `retrieval/meaningful` false in the metrics, the reason in results.json and the log."""
import json
import logging

import numpy as np

from clipwb.eval.retrieval import retrieval_ceiling, retrieval_meaningful, unmeaningful_retrieval


def test_hand_worked_duplicates_and_chance():
    "10 images, captions 'a'×4 'b'×4 'c' 'd': 4 texts (0.4 per image); the best R@1 is 4/10; chance R@3 = 0.3."
    caps, t2i = list("aaaabbbbcd"), np.arange(10)
    assert retrieval_ceiling(caps, t2i) == 0.4
    ok, why = retrieval_meaningful(caps, t2i, 10, ks=(1, 3))
    assert not ok and why.startswith("4 distinct captions for 10 images (0.40 per image < 0.5)") and "chance" not in why
    ok, why = retrieval_meaningful(list("abcdefghij"), t2i, 10, ks=(1, 10))
    assert not ok and why == "chance of image_retrieval_recall@10 is 1.000 ≥ 0.5 (10 images, k up to 10)"
    assert not retrieval_meaningful(list("abcdefghij"), t2i, 10, ks=(1, 5))[0]          # chance R@5 = 5/10: at 0.5
    assert retrieval_meaningful(list("abcdefghijk"), np.arange(11), 11, ks=(1, 5)) == (True, "")   # 5/11 < 0.5


def test_eval_stage_flags_a_tiny_gallery(tmp_path, caplog):
    "The eval stage on 8 shapes images: R@5 and R@10 chance ≥ 0.5, so the flag is false and the reason is kept."
    from clipwb.eval.run import EvalCfg, run_eval
    with caplog.at_level(logging.WARNING, logger="clipwb"):
        res = run_eval(EvalCfg(limit=8, tasks=["retrieval"]), tmp_path)
    m, saved = res.metrics, json.loads((tmp_path / "results.json").read_text())
    assert m["retrieval/meaningful"] is False and "retrieval/image_retrieval_recall@1" in m    # kept, flagged
    assert "chance of" in saved["retrieval_note"] and saved["retrieval_note"] in caplog.text
    from clipwb.core import even_subset
    from clipwb.data.datasets import load_dataset
    ds = load_dataset("shapes", "test")
    assert saved["n_distinct_captions"] == len({c for i in even_subset(len(ds), 8) for c in ds.all_captions(i)})
    assert unmeaningful_retrieval(m) >= {"retrieval/image_retrieval_recall@1",
                                         "chance/retrieval/text_retrieval_recall@5"}
