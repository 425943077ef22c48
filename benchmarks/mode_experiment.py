"""MoDE's claim at equal compute: K data experts against the dense model on a mixture of three caption vocabularies.

    python benchmarks/mode_experiment.py [--seeds 0 1 2] [--seed-steps 300] [--expert-steps 300 ...] [--k 3]
                                         [--k-fine 32] [--batch-size 64] [--lr 2e-3] [--model clipwb-micro]
                                         [--taus 8 0.1] [--data three-domains] [--eval-data shapes openmoji glyphs]
                                         [--root runs/mode_experiment] [--out benchmarks/results/mode_experiment.json]
    python benchmarks/mode_experiment.py --render     # benchmarks/mode_experiment.md and the results page, from --out

Per seed and per --expert-steps M (an arm), on CPU:
  seed     `--model` trained from scratch on `--data` (the `three-domains` card: Shapes, OpenMoji and glyphs
           interleaved) for S + M steps, checkpoints kept (S = --seed-steps)
  experts  MoDE's caption clusters of the seed's training captions (MiniLM, K_f fine, K coarse;
           `clipwb.mode.mode_clusters`), and per coarse cluster a `mode_expert` run: the seed continued from step S to
           S + M on that cluster (+2 % of the rest), its cosine schedule inherited
  dense    the seed continued from step S for K·M steps on all its data (equal total steps; its cosine runs to 0 at
           S + K·M)
Each model is evaluated on the `--eval-data` cards' test splits (`clipwb.mode.evaluate_mode`): zero-shot on every
label (acc@1), and text → image and image → text retrieval of each card's captions (`<card>/retrieval_t2i`,
`<card>/retrieval_i2t`, R@1): each expert, the best expert (chosen on the test set), the uniform and the weighted
ensemble (MoDE's weights from the class names, or from a retrieval task's captions), the dense model, and the weight
each task puts on the expert that owns its domain (the expert whose cluster holds most of that domain's training
captions), at each softmax temperature τ of the weights in --taus (the paper's 8 first). Per domain, and over the
zero-shot tasks, the retrieval tasks and all tasks, the means. Runs are kept under --root and reused (resumable);
the raw per-seed tables go to --out (arms of other settings already there are kept), and `render` turns them into the
markdown of benchmarks/mode_experiment.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "mode_experiment.json"
MD = ROOT / "benchmarks" / "mode_experiment.md"
MARKERS = ("<!-- mode-experiment:start -->", "<!-- mode-experiment:end -->")
TARGETS = {"weighted_minus_dense": 0.05, "weighted_minus_uniform": 0.03, "owner_weight": 0.8}


def run_seed(root: Path, seed: int, a) -> dict:
    "Seed, K experts and the equal-compute dense model for one seed and one M under `root` (reused) → raw results."
    import pandas as pd
    from clipwb.data.datasets import load_dataset
    from clipwb.embed import EmbedCfg, run_embed
    from clipwb.io import read_json, write_json
    from clipwb.mode import ModeExpertCfg, evaluate_mode, mode_clusters, run_mode_expert
    from clipwb.train import TrainCfg, run_train
    S, M, K = a.seed_steps, a.expert_steps, a.k
    d = root / f"{a.data}-{a.model}-b{a.batch_size}-lr{a.lr:g}-S{S}-M{M}-K{K}-Kf{a.k_fine}" / f"s{seed}"
    # the evaluation, per set of τ (v2: with retrieval tasks; an older result-tau….json is evaluated again)
    res_file = d / f"result-v2-tau{'-'.join(f'{t:g}' for t in a.taus)}.json"
    if res_file.is_file(): return read_json(res_file)
    t0 = time.perf_counter()
    sd, emb = d / "seed", d / "embed"
    if not (sd / "metrics.json").is_file():
        cfg = TrainCfg(data=a.data, model=a.model, data_limit=None, batch_size=a.batch_size, lr=a.lr, warmup=20,
                       epochs=10**6, max_steps=S + M, checkpoint_every=S, keep_checkpoints=True, seed=seed,
                       device="cpu")
        res = run_train(cfg, sd)
        cfg.to_json(sd / "config.json"); write_json(sd / "metrics.json", res.metrics)
    if not (emb / "embeddings" / "manifest.json").is_file():
        run_embed(EmbedCfg(model=str(sd), data=a.data, split="train", limit=None, shard_size=1000, batch_size=128,
                           device="cpu"), emb)
    ex = dict(seed_model=str(sd), seed_step=S, embeddings=str(emb), k=K, k_fine=a.k_fine, cluster_seed=seed,
              device="cpu")
    experts = [d / f"expert_{c}" for c in range(K)]
    for c, e in enumerate(experts):
        if not (e / "expert.json").is_file(): run_mode_expert(ModeExpertCfg(**ex, coarse=c), e)
    dense = d / "dense"
    if not (dense / "model").exists():
        scfg = {k: v for k, v in read_json(sd / "config.json").items() if k != "stage_config"}
        run_train(TrainCfg(**{**scfg, "resume_from": str(sd), "resume_step": S, "max_steps": S + K * M,
                              "keep_checkpoints": False}), dense)
    mc = mode_clusters(emb, k=K, k_fine=a.k_fine, seed=seed, progress=False)
    mix = load_dataset(a.data, "train")                 # which domain each training caption comes from
    dom = dict(zip(mix.ids, np.asarray(mix.classnames("domain"))[mix.targets("domain")]))
    asg = pd.concat([x for _, x in mc.assignments()], ignore_index=True)
    counts = pd.crosstab(asg.id.map(dom), asg.coarse).reindex(columns=range(K), fill_value=0)
    evs = {f"{tau:g}": evaluate_mode(experts, dense / "model", mc, a.eval_data, limit=None, tau=tau, device="cpu")
           for tau in a.taus}
    ev = next(iter(evs.values()))
    out = {"seed": seed, "evals": {t: {"table": e["table"].to_dict(orient="index"),
                                       "weights": e["weights"].to_dict(orient="index")} for t, e in evs.items()},
           "n_classes": ev["n_classes"], "n_samples": ev["n_samples"], "n_captions": ev.get("n_captions", {}),
           "retrieval_notes": ev.get("retrieval_notes", {}),
           "domain_clusters": {str(dm): [int(v) for v in row] for dm, row in counts.iterrows()},
           "seconds": round(time.perf_counter() - t0, 1)}
    write_json(res_file, out)
    return out


def owners(r: dict) -> dict[str, int]:
    "Domain → the expert whose cluster holds most of that domain's training captions."
    return {dm: int(np.argmax(row)) for dm, row in r["domain_clusters"].items()}


def _taus(r: dict) -> list[str]:
    "The temperatures of a raw result, largest (the paper's) first."
    return sorted(r["evals"], key=float, reverse=True)


def is_retrieval(task: str) -> bool:
    "Whether `<card>/<name>` is one of evaluate_mode's retrieval tasks (`retrieval_t2i`, `retrieval_i2t`)."
    return task.split("/", 1)[-1].startswith("retrieval_")


def seed_rows(r: dict) -> dict[str, dict[str, float]]:
    ("Per task of one seed's raw result: owning expert, mean of the other experts, best expert, uniform, dense, and "
     "per τ the weighted ensemble and the weight on the owning expert; then per-domain means, the zero-shot and "
     "retrieval means (when there are retrieval tasks) and the task mean (over every task).")
    own, rows = owners(r), {}
    taus = _taus(r)
    for task, t in r["evals"][taus[0]]["table"].items():
        if "/" not in task: continue                   # the table's mean rows
        k = own[task.split("/")[0]]
        others = [v for c, v in t.items() if c.startswith("expert_") and c != f"expert_{k}"]
        rows[task] = {"owning expert": t[f"expert_{k}"], "other experts (mean)": float(np.mean(others)),
                      "best expert": t["best_expert"], "uniform": t["uniform"], "dense": t["dense"]}
        for tau in taus:
            e = r["evals"][tau]
            rows[task].update({f"weighted τ={tau}": e["table"][task]["weighted"],
                               f"weight on owner τ={tau}": e["weights"][task][f"expert_{k}"]})
    cols = list(next(iter(rows.values())))
    for dm in dict.fromkeys(t.split("/")[0] for t in list(rows)):
        rows[f"{dm} (mean)"] = {c: float(np.mean([v[c] for t, v in rows.items() if t.startswith(dm + "/")]))
                                for c in cols}
    tasks = [t for t in rows if "/" in t]
    ret = [t for t in tasks if is_retrieval(t)]
    if ret:
        for name, ts in (("zero-shot mean", [t for t in tasks if t not in ret]), ("retrieval mean", ret)):
            if ts: rows[name] = {c: float(np.mean([rows[t][c] for t in ts])) for c in cols}
    rows["task mean"] = {c: float(np.mean([rows[t][c] for t in tasks])) for c in cols}
    return rows


def summary(arm: dict) -> dict:
    "Mean and sd over seeds of every row and column of `seed_rows`, and the three targets' margins per seed."
    per = [seed_rows(r) for r in arm["seeds"]]
    stat = {t: {c: (float(np.mean([p[t][c] for p in per])), float(np.std([p[t][c] for p in per], ddof=1))
                    if len(per) > 1 else 0.0) for c in per[0][t]} for t in per[0]}
    def targets(row: str, tau: str) -> dict[str, list[float]]:
        m = [p[row] for p in per]
        return {"weighted_minus_dense": [x[f"weighted τ={tau}"] - x["dense"] for x in m],
                "weighted_minus_uniform": [x[f"weighted τ={tau}"] - x["uniform"] for x in m],
                "owner_weight": [x[f"weight on owner τ={tau}"] for x in m]}
    taus = _taus(arm["seeds"][0])
    margins = {tau: {**targets("task mean", tau),
                     "owner_weight_min": [min(p[t][f"weight on owner τ={tau}"] for t in p if "/" in t) for p in per]}
               for tau in taus}
    by_mean = {row: {tau: targets(row, tau) for tau in taus} for row in ("zero-shot mean", "retrieval mean")
               if all(row in p for p in per)}
    return {"rows": stat, "margins": margins, "margins_by_mean": by_mean}


def _f(m: float, s: float) -> str: return f"{m:.3f} ± {s:.3f}"


def render(res: dict) -> str:
    "The markdown block of benchmarks/mode_experiment.md (and of the results page) for the stored results `res`."
    out = []
    for arm in res["arms"]:
        a, sm = arm["args"], summary(arm)
        seeds = [r["seed"] for r in arm["seeds"]]
        K, S, M = a["k"], a["seed_steps"], a["expert_steps"]
        mins = ", ".join(f"{r['seconds'] / 60:.1f}" for r in arm["seeds"])
        n_train = sum(sum(v) for v in arm["seeds"][0]["domain_clusters"].values())
        out.append(f"### K = {K} experts of {M} steps each (seed {S} + {M} steps; dense {S} + {K * M}), "
                   f"seeds {', '.join(map(str, seeds))}\n\n"
                   f"`{a['model']}`, batch {a['batch_size']}, lr {a['lr']:g}, {a['data']} ({n_train} training pairs; "
                   f"an expert sees about {M * a['batch_size'] / (n_train / K):.1f} passes over its cluster), "
                   f"K_f = {a['k_fine']}; zero-shot acc@1"
                   + (" (label tasks) and R@1 (`retrieval_t2i`: text → image, `retrieval_i2t`: image → text)"
                      if sm["margins_by_mean"] else "") + " on the test splits, mean ± sd over seeds. "
                   f"Wall time per seed: {mins} min.")
        cols = list(next(iter(sm["rows"].values())))
        head = ["task", *cols]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for t, row in sm["rows"].items():
            name = f"**{t}**" if "/" not in t else t
            lines.append("| " + " | ".join([name, *[_f(*row[c]) for c in cols]]) + " |")
        out.append("\n".join(lines))
        clus = "; ".join(f"seed {r['seed']}: " + ", ".join(f"{dm} {max(v) / sum(v):.2f} → expert {int(np.argmax(v))}"
                                                           for dm, v in r["domain_clusters"].items())
                         for r in arm["seeds"])
        out.append(f"Share of each domain's training captions in its owning expert's cluster: {clus}.")
        tgt = [("weighted − dense (task mean)", "weighted_minus_dense", "≥ +"),
               ("weighted − uniform (task mean)", "weighted_minus_uniform", "≥ +"),
               ("weight on the owning expert (task mean)", "owner_weight", "≥ "),
               ("weight on the owning expert (smallest over tasks)", "owner_weight_min", "")]
        rows = [(name, key, op, tau, sm["margins"][tau][key]) for name, key, op in tgt for tau in sm["margins"]]
        for mean, by_tau in sm["margins_by_mean"].items():    # the same targets on the zero-shot and retrieval means
            rows += [(name.replace("task mean", mean), key, op, tau, by_tau[tau][key]) for name, key, op in tgt[:3]
                     for tau in by_tau]
        lines = ["| target | τ | per seed | mean | met? |", "|---|---|---|---|---|"]
        for name, key, op, tau, v in rows:
            fmt = (lambda x: f"{x:+.3f}") if "+" in op else (lambda x: f"{x:.3f}")
            met = ("yes" if np.mean(v) >= TARGETS[key] else "no") if key in TARGETS else "–"
            goal = f" {op}{TARGETS[key]:.2f}" if key in TARGETS else ""
            lines.append(f"| {name}{goal} | {tau} | {', '.join(map(fmt, v))} | {fmt(np.mean(v))} | {met} |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def update_files(res: dict) -> list[Path]:
    "Rewrite the generated blocks of benchmarks/mode_experiment.md and of the results page from `res`."
    sys.path.insert(0, str(ROOT / "tools"))
    from readme_results import RESULTS_NB, update_block, update_notebook_block
    block = render(res)
    MD.write_text(update_block(MD.read_text(), block, *MARKERS))
    return [MD, update_notebook_block(ROOT / RESULTS_NB, block, *MARKERS)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--seed-steps", type=int, default=300, help="S: steps of the seed before the experts branch off")
    ap.add_argument("--expert-steps", type=int, nargs="+", default=[300], help="M: steps per expert (one arm each)")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--k-fine", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--model", default="clipwb-micro")
    ap.add_argument("--data", default="three-domains")
    ap.add_argument("--taus", type=float, nargs="+", default=[8.0, 0.1],
                    help="softmax temperatures of the MoDE weights, each evaluated (the paper's 8 first)")
    ap.add_argument("--eval-data", nargs="+", default=["shapes", "openmoji", "glyphs"])
    ap.add_argument("--root", default="runs/mode_experiment")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--render", action="store_true", help="only render --out into the markdown and the results page")
    a = ap.parse_args(argv)
    if a.render:
        print("wrote", *update_files(json.loads(Path(a.out).read_text()))); return
    arms = []
    for M in a.expert_steps:
        arg = {k: v for k, v in vars(a).items() if k not in ("seeds", "root", "out", "render", "expert_steps")}
        arg["expert_steps"] = M
        ns = argparse.Namespace(**arg)
        arms.append({"args": arg, "seeds": [run_seed(Path(a.root), s, ns) for s in a.seeds]})
        print(render({"arms": [arms[-1]]}), flush=True)
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(out.read_text())["arms"] if out.is_file() else []   # arms of other settings are kept
    arms = sorted([x for x in old if all(x["args"] != y["args"] for y in arms)] + arms,
                  key=lambda x: (x["args"]["expert_steps"], json.dumps(x["args"], sort_keys=True)))
    out.write_text(json.dumps({"arms": arms}, indent=1) + "\n")
    print("wrote", a.out)


if __name__ == "__main__":
    main()
