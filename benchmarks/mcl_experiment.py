"""Feature suppression on `shapes-suppress` and what MCL does about it: per-factor zero-shot accuracy.

    python benchmarks/mcl_experiment.py [--seeds 0 1 2] [--base-steps 300] [--stage-steps 300] [--stages 2]
                                        [--k 8] [--clustering image] [--trainable all] [--lr 1e-3] [--batch-size 32]

Per seed, all on CPU with `clipwb-micro`:
  base     plain CLIP trained from scratch for --base-steps on shuffled batches (MCL's stage 0)
  control  the base trained --stages × --stage-steps more steps on shuffled batches (same trainable, lr)
  stage s  MCL stage models (`clipwb.mcl.run_mcl`: clusters of the stage-(s−1) embeddings, accumulated,
           each stage trained from the base for --stage-steps on one-cell batches)
  integr.  the cross-stage integration (concatenated normalised embeddings of base and stage models)
Prints held-out (test split) zero-shot top-1 per factor, mean ± sd over seeds, with chance levels,
and writes the table as JSON to --out.
"""
import argparse
import json
import statistics
from pathlib import Path


def one_seed(a, seed: int, root: Path) -> dict:
    from clipwb.eval.run import EvalCfg, run_eval
    from clipwb.mcl.run import MclCfg, run_mcl
    from clipwb.train import TrainCfg, run_train
    tr = dict(data="shapes-suppress", data_limit=None, batch_size=a.batch_size, epochs=1000, lr=a.lr, warmup=20,
              seed=seed, checkpoint_every=10**6)
    base = root / f"base-s{seed}"
    if not (base / "model").exists(): run_train(TrainCfg.tiny(model="clipwb-micro", max_steps=a.base_steps, **tr), base)
    ctrl = root / f"control-s{seed}"
    if not (ctrl / "model").exists():
        run_train(TrainCfg.tiny(model=str(base / "model"), max_steps=a.stages * a.stage_steps, trainable=a.trainable,
                                **tr), ctrl)
    ev = lambda m, d: run_eval(EvalCfg.tiny(model=str(m), data="shapes-suppress", split="test", limit=None), d).metrics
    res = run_mcl(MclCfg.tiny(base=str(base / "model"), data="shapes-suppress", data_limit=None, stages=a.stages,
                              clustering=a.clustering, k_image=a.k, k_text=a.k, trainable=a.trainable,
                              max_steps=a.stage_steps, batch_size=a.batch_size, lr=a.lr, warmup=20, seed=seed,
                              eval_limit=None, drop_small=a.keep_small is False), root / f"mcl-s{seed}")
    st = json.loads((root / f"mcl-s{seed}" / "stages.json").read_text())
    models = {"base": st["eval"][0], **{f"stage {s}": e for s, e in enumerate(st["eval"][1:], 1)},
              "integration": st["integration"], "control": ev(ctrl / "model", ctrl / "eval")}
    cells = [r["cells"] for r in st["stages"]]
    dropped = [r["dropped_samples"] for r in st["stages"]]
    return {"models": models, "cells": cells, "dropped": dropped}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--base-steps", type=int, default=300)
    ap.add_argument("--stage-steps", type=int, default=300)
    ap.add_argument("--stages", type=int, default=2)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--clustering", default="image")
    ap.add_argument("--trainable", default="all")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--keep-small", action="store_true", help="merge cells smaller than a batch into a rest group")
    ap.add_argument("--root", default="runs/mcl_experiment")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    root = Path(a.root); root.mkdir(parents=True, exist_ok=True)
    runs = [one_seed(a, s, root) for s in a.seeds]
    factors = ["shape", "position", "colour", "background"]
    names = list(runs[0]["models"])
    chance = {f: runs[0]["models"]["base"][f"chance/zeroshot/{f}/acc1"] for f in factors}
    table = {n: {f: [r["models"][n][f"zeroshot/{f}/acc1"] for r in runs] for f in factors} for n in names}
    fmt = lambda v: f"{statistics.mean(v):.3f} ± {statistics.stdev(v) if len(v) > 1 else 0:.3f}"
    print(f"zero-shot top-1 on shapes-suppress/test, mean ± sd over seeds {a.seeds}; {vars(a)}")
    print(f"{'model':12s}" + "".join(f"{f:>18s}" for f in factors))
    for n in names: print(f"{n:12s}" + "".join(f"{fmt(table[n][f]):>18s}" for f in factors))
    print(f"{'chance':12s}" + "".join(f"{chance[f]:>18.3f}" for f in factors))
    print("cells per stage:", [r["cells"] for r in runs], " dropped samples per stage:", [r["dropped"] for r in runs])
    out = Path(a.out or root / "table.json")
    out.write_text(json.dumps({"args": vars(a), "table": table, "chance": chance,
                               "cells": [r["cells"] for r in runs], "dropped": [r["dropped"] for r in runs]}, indent=1))


if __name__ == "__main__":
    main()
