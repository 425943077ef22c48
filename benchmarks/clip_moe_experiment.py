"""CLIP-MoE's claim on data built for it: an MoE whose experts are MCL stage models vs sparse upcycling.

    python benchmarks/clip_moe_experiment.py [--seeds 0 1 2] [--pre-steps 3000] [--base-steps 3000]
                                             [--base-lr 2e-3] [--base-data shapes-pretrain] [--stage-steps 3000]
                                             [--stage-lr 2e-3] [--k 200]
                                             [--router-steps 300] [--router-lr 2e-3] [--trains router router+experts]
                                             [--root runs/clip_moe_experiment] [--write]

Per seed, on CPU with `clipwb-micro` (one thread; about 30 minutes a seed with three seeds in parallel on a shared
2-core machine):
  pre          trained from scratch on `shapes-synonyms` (--pre-steps): the shapes-suppress images captioned by
               their shape alone, in other words ("a spark", "a wedge"): the image tower learns shape
  base         pre continued on `shapes-pretrain` (--base-steps, --base-lr): half its captions are those, half name
               the colours and position with the shape unnamed. The base's image features hold shape (a linear
               probe reads it) and it reads the colours zero-shot, but it has never seen the words "star" or
               "triangle": the situation CLIP-MoE starts from, a pretrained CLIP whose image features hold more
               than its alignment uses. Everything after trains on `shapes-suppress`, whose captions name every
               factor. `--base-data shapes-pretrain-named` adds one suppress caption in seven: the shape's words
               are then learned (their token embeddings trained) where the colours suppress them.
  stage 1      one MCL stage from the base with only the MLPs trainable (CLIP-MoE's stages), on one-cell batches
               of --k image clusters of the base's embeddings
  control      the base trained as many steps on shuffled batches, MLPs only
  oracle       the stage trained on cells of the true easy feature (colour, background): MCL's batching with
               perfect clusters, which separates batching from clustering
  integration  the concatenated normalised embeddings of base and stage 1 (MCL's own output)
  moe-mcl      `from_experts(base, stage 1)`: each block's MLP an expert (CLIP-MoE), top-2 of 2
  moe-upcycled 2 copies of the base's MLPs (sparse upcycling), the same router budget
  moe-oracle   `from_experts(base, oracle stage)`, routers only: CLIP-MoE's MoE if the clusters were perfect
Both MoE arms train --router-steps on shuffled shapes-suppress batches, once with the routers only (CLIP-MoE) and
once with routers + experts. Each model is read on the test split: zero-shot top-1 and a linear probe per factor,
retrieval R@1, and for the MoE arms the normalised mutual information I(label; top-1 expert)/log E per layer.
Prints mean ± sd over seeds; --out writes every number as JSON, --write as benchmarks/results/clip_moe.json (or
clip_moe_<base-data>.json for another base) with its block on the results page; the README's verdicts read it.
Runs are kept under --root and reused, so an interrupted experiment resumes.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

FACTORS = ["shape", "position", "colour", "background"]
DATA = "shapes-suppress"
T2I = "retrieval/image_retrieval_recall@1"   # text → image: finds the image of a caption


def moe_arms(root, seed, base, stage, oracle, a):
    ("The MoE arms × router budgets for one seed → {name: model dir}, {name: moe metrics}; the MoE of base + oracle "
     "stage trains its routers only.")
    from clipwb.io import write_json
    from clipwb.moe.run import MoeCfg, run_moe
    arms = {"moe-mcl": dict(experts=[str(base), str(stage)], init="mcl", strict=True),
            "moe-upcycled": dict(experts=[str(base)], init="upcycle", num_experts=2),
            "moe-oracle": dict(experts=[str(base), str(oracle)], init="mcl", strict=True)}
    dirs, metrics = {}, {}
    for train in a.trains:
        for name, kw in arms.items():
            if name == "moe-oracle" and train != "router": continue
            run = root / f"{name}-{train.replace('+', '-')}-s{seed}"
            done = run / "metrics.json"
            if not done.is_file():
                res = run_moe(MoeCfg.tiny(**kw, data=DATA, data_limit=None, max_steps=a.router_steps, epochs=10**4,
                                          batch_size=a.batch_size, lr=a.router_lr, warmup=20, top_k=2,
                                          train=train, eval_limit=None, routing_limit=a.routing_limit,
                                          labels=FACTORS, baseline=False, seed=seed), run)
                write_json(done, res.metrics)   # atomic: an interrupted run leaves no half-written cache
            key = f"{name} ({train})"
            dirs[key], metrics[key] = run / "train" / "model", json.loads(done.read_text())
    return dirs, metrics


def one_seed(a, seed):
    from clipwb.mcl import suppression_experiment
    from clipwb.mcl.experiment import _cached_probe
    from clipwb.eval.run import EvalCfg, run_eval
    from clipwb.io import read_json, write_json
    from clipwb.train import TrainCfg, run_train
    root = Path(a.root)
    pre = root / f"pre-s{seed}"
    if not (pre / "model").exists():
        run_train(TrainCfg.tiny(model="clipwb-micro", data="shapes-synonyms", split="train", data_limit=None,
                                max_steps=a.pre_steps, epochs=10**4, batch_size=a.batch_size, lr=a.pre_lr,
                                warmup=20, seed=seed, checkpoint_every=10**6), pre)
    run = suppression_experiment(root, seed=seed, model=str(pre / "model"), base_steps=a.base_steps,
                                 base_lr=a.base_lr, base_data=a.base_data, stage_steps=a.stage_steps, stages=1, k=a.k,
                                 clustering="image",
                                 trainable="mlp", lr=a.stage_lr, batch_size=a.batch_size,
                                 oracle=["colour", "background"], probe=FACTORS, probe_limit=a.probe_limit)
    models = {k: dict(v) for k, v in run["models"].items()}
    kept = pre / "eval_metrics.json"
    if not kept.is_file():
        write_json(kept, run_eval(EvalCfg.tiny(model=str(pre / "model"), data=DATA, split="test", limit=None),
                                  pre / "eval").metrics)
    models["pre"] = {**read_json(kept),
                     **_cached_probe(root / "probes", [str(pre / "model")], DATA, FACTORS, a.probe_limit, None)}
    base, stage = root / f"base-s{seed}" / "model", Path(json.loads(
        (root / f"mcl-s{seed}" / "experts.json").read_text())["models"][1])
    oracle = root / f"oracle-colour-background-s{seed}" / "model"
    dirs, moe = moe_arms(root, seed, base, stage, oracle, a)
    for name, d in dirs.items():
        m = {k[len("eval/"):]: v for k, v in moe[name].items() if k.startswith("eval/")}
        m.update(_cached_probe(root / "probes", [str(d)], DATA, FACTORS, a.probe_limit, None))
        m["routing"] = {k: v for k, v in moe[name].items() if k.startswith("routing/")}
        models[name] = m
    stages = [{k: r[k] for k in ("cells", "dropped_samples", "nmi") if k in r} for r in run["stages"]]
    return {"models": models, "stages": stages}


def _ms(v) -> tuple[float, float]:
    import numpy as np
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def summary(per_seed: dict) -> dict:
    "Mean and sd over seeds of each model's zero-shot/probe per factor and retrieval; shape MI per MoE model."
    import numpy as np
    seeds = list(per_seed)
    names = list(per_seed[seeds[0]])
    keys = [f"{t}/{f}/acc1" for t in ("zeroshot", "probe") for f in FACTORS] + [T2I]
    out = {}
    for n in names:
        row = {}
        for k in keys:
            v = [per_seed[s][n].get(k) for s in seeds]
            if all(x is not None for x in v): row[k] = _ms(v)
        if "routing" in per_seed[seeds[0]][n]:
            for f in ("shape", "colour"):
                per = {s: {k.split("/")[2]: v for k, v in per_seed[s][n]["routing"].items()
                           if k.startswith("routing/image/") and k.endswith(f"/mi_{f}")} for s in seeds}
                row[f"mi_image/{f}"] = _ms([np.mean(list(p.values())) for p in per.values()])
                for b in per[seeds[0]]: row[f"mi_image/{f}/{b}"] = _ms([per[s][b] for s in seeds])
        out[n] = row
    first = per_seed[seeds[0]]["base"]
    out["chance"] = {f"{t}/{f}/acc1": (first[f"chance/{t}/{f}/acc1"], 0.0) for t in ("zeroshot", "probe")
                     for f in FACTORS if f"chance/{t}/{f}/acc1" in first}
    return out


ROWS = ["chance", "pre", "base", "control", "stage 1", "oracle", "integration", "moe-upcycled (router)",
        "moe-mcl (router)", "moe-oracle (router)", "moe-upcycled (router+experts)", "moe-mcl (router+experts)"]
NAMES = {"pre": "pre (shapes-synonyms)",
         "stage 1": "MCL stage 1 (MLPs)", "oracle": "oracle stage (true cells)",
         "integration": "integration (base ⊕ stage 1)"}


def _cell(row, k):
    return f"{row[k][0]:.3f} ± {row[k][1]:.3f}" if k in row else "–"


def _minutes(res: dict) -> str:
    if not res.get("seconds"): return ""
    return "; wall time per seed " + ", ".join(f"{v / 60:.0f}" for v in res["seconds"].values()) + " min"


def markdown(res: dict) -> str:
    "The experiment's tables (zero-shot, probe, routing MI) and its targets, from a results dict (`--out` JSON)."
    sm, n = res["summary"], len(res["seeds"])
    rows = [r for r in ROWS if r in sm]
    head = ["model", *[f"zero-shot {f}" for f in FACTORS], *[f"probe {f}" for f in FACTORS], "t→i R@1"]
    lines = [f"Mean ± sd over {n} seeds ({res['seeds']}), `shapes-suppress` test split, clipwb-micro "
             f"(`python benchmarks/clip_moe_experiment.py`{_minutes(res)}):", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [_cell(sm[r], f"{t}/{f}/acc1") for t in ("zeroshot", "probe") for f in FACTORS]
        name = f"base (+ {res.get('args', {}).get('base_data', 'shapes-pretrain')})" if r == "base" else NAMES.get(r, r)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_cell(sm[r], T2I)} |")
    moe = [r for r in rows if r.startswith("moe-")]
    if moe:
        blocks = sorted({k.split("/")[2] for k in sm[moe[0]] if k.startswith("mi_image/shape/")},
                        key=lambda b: int(b[5:]))
        head = ["model", "label", "mean", *blocks]
        lines += ["", "Routing of the image tower: I(label; top-1 expert)/log E per MoE layer (0: independent of the "
                  "label, 1: the expert names it):", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += [f"| {r} | {f} | {_cell(sm[r], f'mi_image/{f}')} | "
                  + " | ".join(_cell(sm[r], f"mi_image/{f}/{b}") for b in blocks) + " |"
                  for r in moe for f in ("shape", "colour")]
    if "stages" in res:   # what the stage's k-means cells follow: NMI(cells; factor), per seed
        nmi = [s[0]["nmi"] for s in res["stages"].values() if s and "nmi" in s[0]]
        avg = ", ".join(f"{f} {sum(x[f] for x in nmi) / max(len(nmi), 1):.2f}" for f in FACTORS)
        if nmi: lines += ["", f"What the stage's image clusters follow (NMI of cells and factor, seed mean): {avg}."]
    lines += ["", *targets(res)]
    return "\n".join(lines)


def targets(res: dict) -> list[str]:
    "The issue's targets, each met or missed, from the seed means."
    sm, out = res["summary"], []
    for train in ("router", "router+experts"):
        mcl, up = sm.get(f"moe-mcl ({train})"), sm.get(f"moe-upcycled ({train})")
        if not (mcl and up): continue
        d = mcl["zeroshot/shape/acc1"][0] - up["zeroshot/shape/acc1"][0]
        keep = mcl["zeroshot/colour/acc1"][0] / sm["base"]["zeroshot/colour/acc1"][0]
        mi = mcl["mi_image/shape"][0] - up["mi_image/shape"][0]
        out.append(f"- {train}: MCL-MoE − upcycled on zero-shot shape {d:+.3f} (target ≥ +0.15: "
                   f"{'met' if d >= 0.15 else 'missed'}); colour kept at {keep:.2f} × the base (target ≥ 0.9: "
                   f"{'met' if keep >= 0.9 else 'missed'}); shape MI {mi:+.3f} over upcycled "
                   f"({'met' if mi > 0 else 'missed'})")
    if (orc := sm.get("moe-oracle (router)")) and (up := sm.get("moe-upcycled (router)")):
        d = orc["zeroshot/shape/acc1"][0] - up["zeroshot/shape/acc1"][0]
        out.append(f"- router, with perfect cells: MoE of base + oracle stage − upcycled on zero-shot shape {d:+.3f} "
                   f"({'≥' if d >= 0.15 else 'below'} the +0.15 target)")
    return out


def add_common_args(ap: argparse.ArgumentParser, root: str, results: str) -> None:
    "The arguments every seeded benchmark takes: seeds, threads, the runs root, --out and --write."
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--root", default=root)
    ap.add_argument("--out", default=None, help="also write the results JSON here")
    ap.add_argument("--write", action="store_true", help=f"write {results} and the results page's block")


def run_seeds(a, one_seed) -> dict:
    ("Run `one_seed(a, seed) → {'models', 'stages'}` for each seed and summarise: the results dict (JSON-safe) with "
     "each seed's wall time, kept beside its runs so a rerun that reuses them reports the first.")
    import torch
    torch.set_num_threads(a.threads); os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    t0, runs, seconds = time.time(), {}, {}
    for s in a.seeds:
        t, kept = time.time(), Path(a.root) / f"seconds{getattr(a, 'tag', '')}-s{s}.json"   # tag: a setting
        runs[s] = one_seed(a, s)
        if not kept.is_file(): kept.write_text(json.dumps({"seconds": time.time() - t}))
        seconds[s] = json.loads(kept.read_text())["seconds"]
    per_seed = {s: r["models"] for s, r in runs.items()}
    return json.loads(json.dumps({"args": vars(a), "seeds": a.seeds, "per_seed": per_seed,
                                  "stages": {s: r["stages"] for s, r in runs.items()}, "summary": summary(per_seed),
                                  "seconds": seconds, "wall_s": time.time() - t0}, default=str))


def report(a, res: dict, markdown, writer: str) -> None:
    "Print the tables; --out: the results JSON there; --write: `tools/readme_results.<writer>` (JSON + page block)."
    print(markdown(res))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=1))
        print("written", a.out)
    if a.write:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
        import readme_results
        for p in getattr(readme_results, writer)(res): print("wrote", p)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(ap, "runs/clip_moe_experiment", "benchmarks/results/clip_moe*.json")
    ap.add_argument("--pre-steps", type=int, default=3000)
    ap.add_argument("--pre-lr", type=float, default=2e-3)
    ap.add_argument("--base-steps", type=int, default=3000)
    ap.add_argument("--base-lr", type=float, default=2e-3)
    ap.add_argument("--base-data", default="shapes-pretrain")
    ap.add_argument("--stage-steps", type=int, default=3000)
    ap.add_argument("--stage-lr", type=float, default=2e-3)
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--router-steps", type=int, default=300)
    ap.add_argument("--router-lr", type=float, default=2e-3)
    ap.add_argument("--trains", nargs="+", default=["router", "router+experts"])
    ap.add_argument("--routing-limit", type=int, default=500)
    ap.add_argument("--probe-limit", type=int, default=5000)
    a = ap.parse_args()
    report(a, run_seeds(a, one_seed), markdown, "write_clip_moe")


if __name__ == "__main__":
    main()
