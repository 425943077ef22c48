"""The "multi" in MCL: does a second stage learn what the first still suppresses?

    python benchmarks/mcl_multistage.py [--seeds 0 1 2] [--base-steps 1500] [--stage-steps 3000] [--k 200 [6]]
                                        [--root runs/mcl_multistage] [--write]

Per seed, on CPU with `clipwb-micro` (one thread) on `shapes-suppress-xl` (72,000 pairs, so that the cells of a
second split still hold two batches of 16):
  base         trained from scratch --base-steps on shuffled batches: the colours suppress shape and position
  control      the base trained 2 × --stage-steps more on shuffled batches (the two stages' steps)
  stage 1      MCL stage 1: one-cell batches of --k k-means clusters of the base's image embeddings
  stage 2      MCL stage 2: the stage-1 cells split again by --k clusters of stage 1's embeddings (accumulated
               labels: at most k² cells), trained from the base as MCL does; `--k 200 6` gives each stage its own
               k (200 cells first, then each split in at most 6: as many as the shapes stage 1 learned to see)
  integration  the concatenated normalised embeddings of base, stage 1 and stage 2
  oracle 1     a stage trained from the base on cells of the true easy feature (colour, background)
  oracle 2     the same on cells of (colour, background, shape): the second split done perfectly
Each model is read on the test split: zero-shot top-1 and a linear probe of the image embedding per factor.
The oracle arms tell whether batching or clustering limits a stage. Prints mean ± sd over seeds and the targets
(stage 2 lifts position ≥ 0.15 over stage 1 and over the control; the integration keeps the easy feature, probe
≥ 0.95, and stage 1's gain within 0.05); `--write` stores benchmarks/results/mcl_multistage.json and the results
page's block (one file and block per --k setting). Runs are kept under --root and reused, so an interrupted
experiment resumes; another --k in the same root reuses the base, control, oracles and the stages whose k is kept.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clip_moe_experiment import _cell, _minutes, add_common_args, report, run_seeds  # noqa: E402  (same seeds)

FACTORS = ["shape", "position", "colour", "background"]
DATA = "shapes-suppress-xl"
ORACLES = {"oracle 1": ["colour", "background"], "oracle 2": ["colour", "background", "shape"]}
ROWS = ["chance", "base", "control", "stage 1", "stage 2", "integration", "oracle 1", "oracle 2"]
NAMES = {"control": "control (same steps, shuffled)", "integration": "integration (base ⊕ stage 1 ⊕ stage 2)",
         "oracle 1": "oracle 1 (cells: colour, background)", "oracle 2": "oracle 2 (cells: colour, background, shape)"}


def one_seed(a, seed) -> dict:
    from clipwb.mcl import suppression_experiment
    kw = dict(seed=seed, data=DATA, base_steps=a.base_steps, stage_steps=a.stage_steps, stages=2, k=ks(a.k),
              clustering="image", trainable="all", lr=a.lr, batch_size=a.batch_size, probe=FACTORS,
              probe_limit=a.probe_limit)
    models, cells = {}, None
    for name, labels in ORACLES.items():
        run = suppression_experiment(a.root, oracle=labels, **kw)
        models.update({k: v for k, v in run["models"].items() if k != "oracle"}, **{name: run["models"]["oracle"]})
        cells = [{**{k: r[k] for k in ("cells", "dropped_samples", "dropped_groups", "final_loss") if k in r},
                  "purity": purity(r["cluster"])} for r in run["stages"]]
    return {"models": models, "stages": cells}


def purity(cluster_run: str, factors=("shape", "position")) -> dict[str, float]:
    ("Per factor, the share of training pairs whose value is the most common one of their accumulated cell (1: "
     "every cell holds one value; a stage learns a factor only where its cells leave it varying).")
    import numpy as np
    import pandas as pd
    from clipwb.data.datasets import load_dataset
    lab = pd.read_parquet(Path(cluster_run) / "labels.parquet")
    ds = load_dataset(DATA, "train")
    row = pd.Series(np.arange(len(ds.ids)), index=list(ds.ids))[lab["id"]].to_numpy()
    out = {}
    for f in factors:
        df = pd.DataFrame({"cell": lab["pseudo"].to_numpy(), "y": np.asarray(ds.targets(f))[row]})
        out[f] = float(df.groupby(["cell", "y"]).size().groupby(level=0).max().sum() / len(df))
    return out


def ks(k) -> int | list[int]:
    "One k for both stages, or one per stage, from --k's values."
    k = k if isinstance(k, list) else [k]
    if len(k) not in (1, 2): raise SystemExit(f"--k takes one value, or one per stage (2), got {k}")
    return k[0] if len(k) == 1 else k


def setting(k) -> str:
    "The file/marker tag of a --k setting: '' for one k (the first result), '_k200-6' for one k per stage."
    return "" if isinstance(ks(k), int) else "_k" + "-".join(map(str, ks(k)))


def markdown(res: dict) -> str:
    "The tables and targets, from a results dict."
    sm, n, k = res["summary"], len(res["seeds"]), ks(res["args"]["k"])
    kk = f"--k {' '.join(map(str, k))}" if isinstance(k, list) else ""
    head = ["model", *[f"zero-shot {f}" for f in FACTORS], *[f"probe {f}" for f in FACTORS]]
    lines = [f"Mean ± sd over {n} seeds ({res['seeds']}), `{DATA}` test split, clipwb-micro "
             f"(`python benchmarks/mcl_multistage.py{' ' + kk if kk else ''}`{_minutes(res)}; k-means clusters "
             f"per stage {' then '.join(map(str, k)) if kk else f'{k} at both stages'}):", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in [r for r in ROWS if r in sm]:
        cells = [_cell(sm[r], f"{t}/{f}/acc1") for t in ("zeroshot", "probe") for f in FACTORS]
        lines.append(f"| {NAMES.get(r, r)} | " + " | ".join(cells) + " |")
    st = list(res["stages"].values())
    per = lambda k, fmt: "; ".join(" / ".join(format(x[k], fmt) for x in s) for s in st)
    lines += ["", f"Per seed, stage 1 / stage 2: accumulated cells {per('cells', 'd')}; cells smaller than a batch "
              f"(dropped) {per('dropped_groups', 'd')}; pairs left out of the batches (those cells and each "
              f"cell's remainder) {per('dropped_samples', ',d')}; last training loss "
              f"{per('final_loss', '.2f')} (ln 16 = 2.77: no pair of a batch told apart).", *_purity(st), "",
              *targets(res)]
    return "\n".join(lines)


def _purity(st: list) -> list[str]:
    "The line on how pure each stage's cells are in shape and position (seed means), when the results hold it."
    if not all("purity" in x for s in st for x in s): return []
    m = lambda i, f: sum(s[i]["purity"][f] for s in st) / len(st)
    return ["", "Purity of the accumulated cells (share of pairs holding their cell's most common value; seed mean), "
            "stage 1 / stage 2: shape " + " / ".join(f"{m(i, 'shape'):.2f}" for i in range(len(st[0])))
            + ", position " + " / ".join(f"{m(i, 'position'):.2f}" for i in range(len(st[0])))
            + ". Perfect second-stage cells (oracle 2) have shape purity 1 and leave position free."]


def targets(res: dict) -> list[str]:
    "The issue's targets, each met or missed, from the seed means."
    sm = res["summary"]
    z = lambda r, f, t="zeroshot": sm[r][f"{t}/{f}/acc1"][0]
    d1, d2 = z("stage 2", "position") - z("stage 1", "position"), z("stage 2", "position") - z("control", "position")
    easy = min(z("integration", "colour", "probe"), z("integration", "background", "probe"))
    keep = z("integration", "shape") - z("stage 1", "shape")
    ok = lambda c: "met" if c else "missed"
    probe = lambda r: f"colour {z(r, 'colour', 'probe'):.3f}, background {z(r, 'background', 'probe'):.3f}"
    return [f"- stage 2 − stage 1 on zero-shot position {d1:+.3f}, stage 2 − control {d2:+.3f} "
            f"(target ≥ +0.15 each: {ok(d1 >= 0.15 and d2 >= 0.15)})",
            f"- integration: easy feature by the probe {probe('integration')} (the base: {probe('base')}; target "
            f"≥ 0.95 for both: {ok(easy >= 0.95)}); zero-shot shape {keep:+.3f} against stage 1 (target within "
            f"0.05: {ok(keep >= -0.05)})",
            f"- oracle 2 − stage 2 on zero-shot position {z('oracle 2', 'position') - z('stage 2', 'position'):+.3f}, "
            f"oracle 1 − stage 1 on zero-shot shape {z('oracle 1', 'shape') - z('stage 1', 'shape'):+.3f}: "
            "what perfect cells add to each stage"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(ap, "runs/mcl_multistage", "benchmarks/results/mcl_multistage.json")
    ap.add_argument("--base-steps", type=int, default=1500)
    ap.add_argument("--stage-steps", type=int, default=3000)
    ap.add_argument("--k", type=int, nargs="+", default=[200], help="k-means clusters: one k, or one per stage")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--probe-limit", type=int, default=5000)
    a = ap.parse_args()
    a.k = ks(a.k); a.tag = setting(a.k)
    report(a, run_seeds(a, one_seed), markdown, "write_multistage")


if __name__ == "__main__":
    main()
