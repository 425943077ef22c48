"""Train-step time with the MCL batch sampler vs the ordinary shuffled order, same model, data and batch.

    python benchmarks/bench_mcl.py [--model clipwb-micro] [--n 512] [--batch-size 32] [--steps 12] [--cells 4]
        [--repeats 3]

Runs `clipwb.train.run_train` twice per repeat, alternating: plain (a per-epoch permutation) and
with `mcl_labels` (random pseudo-labels with `--cells` cells, batches from `MCLBatchSampler`).
Prints the median seconds per optimizer step of each (the stage's own `train_time_s`, data loading
included, checkpointing not) and their ratio. Target: mcl / plain ≤ 1.05 (the sampler only
reorders indices once per epoch).
"""
import argparse
import statistics
import tempfile
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="clipwb-micro")
    ap.add_argument("--data", default="shapes")
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--cells", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()

    import pandas as pd
    from clipwb.data.datasets import load_dataset
    from clipwb.train import TrainCfg, run_train

    ids = load_dataset(a.data, "train").ids[:a.n]
    with tempfile.TemporaryDirectory() as d:
        pseudo = np.random.default_rng(0).integers(0, a.cells, len(ids))
        pd.DataFrame({"id": ids, "pseudo": pseudo}).to_parquet(f"{d}/labels.parquet")
        common = dict(model=a.model, data=a.data, data_limit=a.n, batch_size=a.batch_size, max_steps=a.steps,
                      epochs=100, checkpoint_every=10**6, device=a.device)
        times = {"plain": [], "mcl": []}
        for r in range(a.repeats):
            for name, extra in (("plain", {}), ("mcl", {"mcl_labels": d})):
                m = run_train(TrainCfg.tiny(**common, **extra), f"{d}/{name}{r}").metrics
                times[name].append(m["train_time_s"] / m["steps"])
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"model {a.model}, {a.n} samples, batch {a.batch_size}, {a.steps} steps × {a.repeats} repeats, "
          f"{a.cells} cells")
    for k, v in med.items():
        print(f"  {k:6s} {v * 1000:8.1f} ms/step   (runs: {', '.join(f'{t * 1000:.0f}' for t in times[k])})")
    print(f"  ratio mcl / plain = {med['mcl'] / med['plain']:.3f}   (target ≤ 1.05)")
    # the sampler's own cost, independent of CPU contention on the training steps: one epoch's order
    from clipwb.mcl import MCLBatchSampler
    big = np.random.default_rng(0).integers(0, 81, 1_000_000)
    s = MCLBatchSampler(big, a.batch_size, seed=0)
    t0 = time.perf_counter(); s.set_epoch(1); s.order(); dt = time.perf_counter() - t0
    print(f"  sampler alone: one epoch of 1,000,000 samples / 81 cells ({len(s)} batches) in {dt:.2f} s "
          f"= {dt / len(s) * 1000:.3f} ms per batch, {dt / len(s) / med['plain'] * 100:.2f} % of a plain step")


if __name__ == "__main__":
    main()
