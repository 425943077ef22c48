"""benchmarks/mode_experiment.py: the stored MoDE experiment (benchmarks/results/mode_experiment.json) is what the
markdown of benchmarks/mode_experiment.md and the results page show, and its summary is recomputed here from the raw
per-seed tables; the summary code itself on a raw result made by hand."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks")); sys.path.insert(0, str(ROOT / "tools"))
from mode_experiment import MARKERS, MD, OUT, owners, render, seed_rows, summary  # noqa: E402
from readme import cell_source, read_notebook  # noqa: E402
from readme_results import RESULTS_NB, readme_block  # noqa: E402


def _raw(w_own: float, acc: dict, seed: int = 0) -> dict:
    "A raw per-seed result by hand: 2 experts, domains a (expert 1 owns it: 90 of its 100 captions) and b (expert 0)."
    tasks = {"a/x": dict(expert_0=0.2, expert_1=0.6, dense=0.5, best_expert=0.6, uniform=0.4, weighted=acc["a/x"]),
             "a/y": dict(expert_0=0.1, expert_1=0.3, dense=0.2, best_expert=0.3, uniform=0.2, weighted=acc["a/y"]),
             "b/z": dict(expert_0=0.7, expert_1=0.1, dense=0.6, best_expert=0.7, uniform=0.5, weighted=acc["b/z"])}
    tasks["mean"] = {c: float(np.mean([t[c] for t in tasks.values()])) for c in tasks["a/x"]}
    weights = {"a/x": {"expert_0": 1 - w_own, "expert_1": w_own}, "a/y": {"expert_0": 0.5, "expert_1": 0.5},
               "b/z": {"expert_0": w_own, "expert_1": 1 - w_own}}
    return {"seed": seed, "evals": {"8": {"table": tasks, "weights": weights}},
            "domain_clusters": {"a": [10, 90], "b": [40, 5]}, "seconds": 60.0}


def test_summary_of_a_raw_result_by_hand():
    r = _raw(0.9, {"a/x": 0.6, "a/y": 0.25, "b/z": 0.7})
    assert owners(r) == {"a": 1, "b": 0}
    rows = seed_rows(r)
    assert rows["a/x"]["owning expert"] == 0.6 and rows["a/x"]["other experts (mean)"] == 0.2
    assert rows["b/z"]["owning expert"] == 0.7 and rows["a/y"]["weight on owner τ=8"] == 0.5
    assert rows["a (mean)"]["weighted τ=8"] == pytest.approx((0.6 + 0.25) / 2)
    assert rows["task mean"]["dense"] == pytest.approx((0.5 + 0.2 + 0.6) / 3)
    arm = {"args": {}, "seeds": [r, _raw(0.8, {"a/x": 0.5, "a/y": 0.2, "b/z": 0.6}, seed=1)]}
    s = summary(arm)
    means = [np.mean([0.6, 0.25, 0.7]), np.mean([0.5, 0.2, 0.6])]
    assert s["rows"]["task mean"]["weighted τ=8"] == pytest.approx((np.mean(means), np.std(means, ddof=1)))
    assert s["rows"]["b/z"]["weighted τ=8"][1] == pytest.approx(np.std([0.7, 0.6], ddof=1))
    assert s["margins"]["8"]["owner_weight"] == pytest.approx([(0.9 + 0.5 + 0.9) / 3, (0.8 + 0.5 + 0.8) / 3])
    assert s["margins"]["8"]["owner_weight_min"] == [0.5, 0.5]      # a/y's even split is each seed's smallest
    assert s["margins"]["8"]["weighted_minus_dense"] == pytest.approx([np.mean([0.6, 0.25, 0.7]) - 1.3 / 3,
                                                                       np.mean([0.5, 0.2, 0.6]) - 1.3 / 3])


def _with_retrieval(r: dict) -> dict:
    "`r` plus a retrieval pair per domain (a: weighted 0.9 / 0.7, b: 0.3 / 0.5) and the mean rows evaluate_mode adds."
    t, w = r["evals"]["8"]["table"], r["evals"]["8"]["weights"]
    base = dict(expert_0=0.1, expert_1=0.2, dense=0.4, best_expert=0.2, uniform=0.15)
    for task, acc in {"a/retrieval_t2i": 0.9, "a/retrieval_i2t": 0.7, "b/retrieval_t2i": 0.3,
                      "b/retrieval_i2t": 0.5}.items():
        t[task] = {**base, "weighted": acc}
        w[task] = {"expert_0": 0.25, "expert_1": 0.75} if task[0] == "a" else {"expert_0": 0.6, "expert_1": 0.4}
    tasks = [k for k in t if "/" in k]
    for name, ts in (("mean", tasks), ("mean_zeroshot", tasks[:3]), ("mean_retrieval", tasks[3:])):
        t[name] = {c: float(np.mean([t[k][c] for k in ts])) for c in t["a/x"]}
    return r


def test_retrieval_tasks_get_their_own_means_and_targets():
    r = _with_retrieval(_raw(0.9, {"a/x": 0.6, "a/y": 0.25, "b/z": 0.7}))
    rows = seed_rows(r)
    assert "mean_zeroshot" not in rows and "mean_retrieval" not in rows          # the table's own means are skipped
    assert list(rows)[-5:] == ["a (mean)", "b (mean)", "zero-shot mean", "retrieval mean", "task mean"]
    assert rows["a (mean)"]["weighted τ=8"] == pytest.approx((0.6 + 0.25 + 0.9 + 0.7) / 4)
    assert rows["zero-shot mean"]["weighted τ=8"] == pytest.approx((0.6 + 0.25 + 0.7) / 3)
    assert rows["retrieval mean"]["weighted τ=8"] == pytest.approx((0.9 + 0.7 + 0.3 + 0.5) / 4)
    assert rows["task mean"]["weighted τ=8"] == pytest.approx((0.6 + 0.25 + 0.7 + 0.9 + 0.7 + 0.3 + 0.5) / 7)
    assert rows["a/retrieval_i2t"]["weight on owner τ=8"] == 0.75 and rows["b/retrieval_t2i"]["owning expert"] == 0.1
    assert rows["retrieval mean"]["weight on owner τ=8"] == pytest.approx((0.75 * 2 + 0.6 * 2) / 4)
    r2 = _with_retrieval(_raw(0.8, {"a/x": 0.5, "a/y": 0.2, "b/z": 0.6}, seed=1))
    s = summary({"args": {}, "seeds": [r, r2]})
    by = s["margins_by_mean"]
    assert set(by) == {"zero-shot mean", "retrieval mean"}
    assert by["retrieval mean"]["8"]["weighted_minus_dense"] == pytest.approx([2.4 / 4 - 0.4] * 2)
    assert by["retrieval mean"]["8"]["weighted_minus_uniform"] == pytest.approx([2.4 / 4 - 0.15] * 2)
    assert by["zero-shot mean"]["8"]["weighted_minus_dense"] == pytest.approx([1.55 / 3 - 1.3 / 3, 1.3 / 3 - 1.3 / 3])
    assert s["margins"]["8"]["weighted_minus_dense"][0] == pytest.approx((1.55 + 2.4) / 7 - (1.3 + 1.6) / 7)
    args = dict(k=2, seed_steps=10, expert_steps=5, model="m", batch_size=4, lr=0.1, data="d", k_fine=4)
    md = render({"arms": [{"args": args, "seeds": [r, r2]}]})
    assert "| **retrieval mean** |" in md and "| weighted − dense (retrieval mean) ≥ +0.05 | 8 | +0.200, +0.200 |" in md
    assert "R@1 (`retrieval_t2i`" in md
    old = render({"arms": [{"args": args, "seeds": [_raw(0.9, {"a/x": 0.6, "a/y": 0.25, "b/z": 0.7})]}]})
    assert "retrieval" not in old and "zero-shot acc@1 on the test splits" in old    # an arm without retrieval


def _stored() -> dict:
    if not OUT.is_file(): pytest.fail(f"{OUT} is missing: run python benchmarks/mode_experiment.py")
    return json.loads(OUT.read_text())


def test_stored_numbers_recomputed_from_the_raw_tables():
    res = _stored()
    assert res["arms"] and all(len(arm["seeds"]) >= 3 for arm in res["arms"])
    for arm in res["arms"]:
        s = summary(arm)
        for tau in arm["seeds"][0]["evals"]:
            # evaluate_mode's own mean row and an independent mean over the task rows agree with the summary
            per = [np.mean([v["weighted"] for t, v in r["evals"][tau]["table"].items() if "/" in t])
                   for r in arm["seeds"]]
            for r, p in zip(arm["seeds"], per):
                assert r["evals"][tau]["table"]["mean"]["weighted"] == pytest.approx(p)
            got = s["rows"]["task mean"][f"weighted τ={tau}"]
            assert got == pytest.approx((np.mean(per), np.std(per, ddof=1)))
            assert f"{got[0]:.3f} ± {got[1]:.3f}" in render({"arms": [arm]})
            dense = [r["evals"][tau]["table"]["mean"]["dense"] for r in arm["seeds"]]
            assert s["margins"][tau]["weighted_minus_dense"] == pytest.approx(np.subtract(per, dense))
        for r in arm["seeds"]:   # each domain's owner holds most of its captions; the weights of a task sum to 1
            for dm, k in owners(r).items(): assert r["domain_clusters"][dm][k] == max(r["domain_clusters"][dm])
            for w in r["evals"][next(iter(r["evals"]))]["weights"].values(): assert sum(w.values()) == pytest.approx(1)


def test_markdown_and_results_page_are_generated():
    block = render(_stored())
    assert readme_block(MD.read_text(), *MARKERS) == block, \
        f"{MD} differs from {OUT}: run python benchmarks/mode_experiment.py --render"
    page = "\n\n".join(cell_source(c) for c in read_notebook(ROOT / RESULTS_NB)["cells"])
    assert readme_block(page, *MARKERS) == block, f"{RESULTS_NB} differs from {OUT}: run --render"
