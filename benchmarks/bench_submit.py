"""Round trip submit → metrics of one small stage (prepare on 8 Shapes samples) with the local executor and
with SLURM (the private cluster of tools/slurm_local.sh up, or $SLURM_CONF), alternating, best and median of
--repeats. Each submission gets a fresh runs root, so nothing is skipped. usage: python benchmarks/bench_submit.py"""
import argparse
import statistics
import tempfile
import time

from clipwb.jobs import slurm_available, submit_stage, wait


def once(executor: str) -> float:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        wait(submit_stage("prepare", {"data": "shapes", "limit": 8}, executor=executor, root=d))
        return time.perf_counter() - t0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    exs = ["local"] + ([] if (why := slurm_available()) else ["slurm"])
    if why: print(f"SLURM skipped: {why}")
    t = {e: [] for e in exs}
    for _ in range(a.repeats):
        for e in exs: t[e].append(once(e))
    for e in exs: print(f"{e:6s} submit → metrics: best {min(t[e]):.1f} s, median {statistics.median(t[e]):.1f} s")
    if "slurm" in t:
        print(f"slurm / local (median): {statistics.median(t['slurm']) / statistics.median(t['local']):.2f}")
