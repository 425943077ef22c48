"""Cluster stage peak memory: streaming shards (minibatch_kmeans / two_level) vs loading every embedding.

    python benchmarks/bench_cluster_stream.py [--n 1000000] [--dim 256] [--method minibatch_kmeans] [--k 8]

Writes `--n` × `--dim` synthetic float16 embeddings (Gaussian blobs, image and text) as embed-stage
shards under /tmp (once; reused), then runs the cluster stage (`run_cluster`, image modality, no
map or stability refits) in two fresh subprocesses and prints their peak RSS and time:
  stream     the stage as it is: the clusterer reads the shards batch by batch
  in-memory  the same stage forced down the load-everything path (`load_embeddings`), as before
The embeddings alone take N·D·4 bytes per modality as float32 in memory.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def write(folder: Path, n: int, d: int, shard: int = 100_000):
    import numpy as np
    from clipwb.io import complete_shards, write_json, write_shard
    if len(complete_shards(folder)) == -(-n // shard): return
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, d)).astype(np.float32)
    for i, a in enumerate(range(0, n, shard)):
        m = min(shard, n - a)
        y = rng.integers(0, 8, m)
        x = centres[y] + 0.5 * rng.normal(size=(m, d)).astype(np.float32)
        t = centres[y] + 0.7 * rng.normal(size=(m, d)).astype(np.float32)
        write_shard(folder, i, x, t, {"id": [f"s{j:08d}" for j in range(a, a + m)],
                                      "caption": [f"blob {c}" for c in y], "blob": [str(c) for c in y]})
    write_json(folder / "manifest.json", {"data": "synthetic", "split": None, "n_embedded": n, "dim": d})


CHILD = r"""
import json, resource, sys, time, tempfile
import clipwb.cluster.run as cr
folder, method, k, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
if mode == "in-memory": cr._streams = lambda m: False
t0 = time.perf_counter()
with tempfile.TemporaryDirectory() as d:
    res = cr.run_cluster(cr.ClusterCfg(embeddings=folder, method=method, k=k, k_fine=64, modality="image",
                                       map_points=0, stability_seeds=0), d)
print(json.dumps({"time_s": time.perf_counter() - t0, "streamed": res.metrics["streamed"], "n": res.metrics["n"],
                  "imbalance": res.metrics["image/imbalance"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--method", default="minibatch_kmeans", choices=["minibatch_kmeans", "two_level"])
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--dir", default="/tmp/clipwb-bench-cluster-stream")
    a = ap.parse_args()
    folder = Path(a.dir) / f"{a.n}x{a.dim}"
    t0 = time.perf_counter(); write(folder, a.n, a.dim)
    print(f"{a.n} x {a.dim} float16 shards in {folder} (written/checked in {time.perf_counter() - t0:.0f} s); "
          f"float32 in memory: {2 * a.n * a.dim * 4 / 2**20:.0f} MB for image + text")
    res = {}
    for mode in ("stream", "in-memory"):
        r = subprocess.run([sys.executable, "-c", CHILD, str(folder), a.method, str(a.k), mode], capture_output=True,
                           text=True, env=os.environ, check=True)
        res[mode] = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"  {mode:9s}  peak RSS {res[mode]['peak_rss_mb']:7.0f} MB   time {res[mode]['time_s']:6.1f} s   "
              f"streamed={res[mode]['streamed']}  imbalance {res[mode]['imbalance']:.3f}")
    print(f"  peak RSS stream / in-memory = {res['stream']['peak_rss_mb'] / res['in-memory']['peak_rss_mb']:.2f} "
          f"({a.method}, k = {a.k}, N = {a.n})")


if __name__ == "__main__":
    sys.exit(main())
