"""Clustering benchmarks, measured side by side on the same data, N, K, D and iterations.

    python benchmarks/bench_cluster.py [--n 50000] [--d 64] [--k 64,256] [--niter 10] [--repeats 1]

(1) balanced_kmeans vs a direct `faiss.Kmeans` trained on all N points (max_points_per_centroid = N):
    time ratio (target <= 2.0) with balanced imbalance <= 1.01; objectives and imbalance of both;
    peak Python-side memory (tracemalloc) of one balanced assignment at N/4 and N, next to the size of
    an N x K float32 distance matrix: it grows with N·m (m candidates per point, at most --max-candidates)
    plus a chunk x K tile, not with N·K.
(2) clipwb's `kmeans` wrapper vs the bare `faiss.Kmeans(...).train(x)` it wraps, same defaults
    (256 points per centroid): time ratio (target <= 1.2), and vs train + faiss's own labelling of all N points
    (`index.search(x, 1)`), which is what the wrapper returns.
Data: L2-normalised blobs with Zipf-distributed sizes (faiss k-means is imbalanced on it).
Times are best of `--repeats`, interleaved; the raw seconds are printed too (shared machines are noisy).
"""
import argparse
import time
import tracemalloc

import numpy as np


def zipf_blobs(n, d, *, blobs=32, spread=0.4, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(blobs, d)); c /= np.linalg.norm(c, axis=1, keepdims=True)
    w = 1 / np.arange(1, blobs + 1); w /= w.sum()
    y = rng.choice(blobs, size=n, p=w)
    x = c[y] + spread * rng.normal(size=(n, d)) / np.sqrt(d)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def timed(fn):
    t = time.perf_counter(); out = fn(); return time.perf_counter() - t, out


def objective(x, c, labels):
    from clipwb.cluster.balanced import cost_of_labels
    return cost_of_labels(x, c, labels)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--k", default="64,256", help="comma-separated cluster counts")
    ap.add_argument("--niter", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--chunk-size", type=int, default=8192)
    ap.add_argument("--n-candidates", type=int, default=16)
    ap.add_argument("--max-candidates", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    import faiss
    from clipwb.cluster.balanced import balanced_assign, balanced_kmeans
    from clipwb.cluster.kmeans import imbalance, kmeans
    import logging
    logging.getLogger("clipwb.cluster.kmeans").setLevel(logging.ERROR)  # the subsampling warning is expected in (2)

    x = zipf_blobs(a.n, a.d, seed=a.seed)
    balanced_assign(x[:200], x[:4])  # compile the auction kernel outside the timings
    print(f"n={a.n} d={a.d} niter={a.niter} faiss threads={faiss.omp_get_max_threads()} repeats={a.repeats}")
    rows = []
    for k in [int(s) for s in a.k.split(",")]:
        tb, tf, tw, td = [], [], [], []
        for _ in range(a.repeats):  # interleaved
            t, b = timed(lambda: balanced_kmeans(x, k=k, seed=a.seed, niter=a.niter, chunk_size=a.chunk_size,
                                                 n_candidates=a.n_candidates, max_candidates=a.max_candidates))
            tb.append(t)
            km = faiss.Kmeans(a.d, k, niter=a.niter, seed=a.seed, max_points_per_centroid=a.n)
            t, _ = timed(lambda: km.train(x)); tf.append(t)
        tl = []
        for _ in range(max(5, a.repeats)):  # (2) is milliseconds: more repeats, interleaved
            t, _ = timed(lambda: kmeans(x, k=k, seed=a.seed, niter=a.niter, gpu=False)); tw.append(t)
            raw = faiss.Kmeans(a.d, k, niter=a.niter, seed=a.seed)
            t, _ = timed(lambda: raw.train(x)); td.append(t)
            t, _ = timed(lambda: raw.index.search(x, 1)); tl.append(t + td[-1])
        fl = km.index.search(x, 1)[1][:, 0]
        f_sizes, f_obj = np.bincount(fl, minlength=k), objective(x, km.centroids, fl)
        # memory of one balanced assignment (warm kernel) at N/4 and N, chunk and candidates fixed
        peaks = {}
        for n in (a.n // 4, a.n):
            tracemalloc.start()
            _, info = balanced_assign(x[:n], b.centroids, chunk_size=a.chunk_size, n_candidates=a.n_candidates,
                                      max_candidates=a.max_candidates, return_info=True)
            peaks[n] = (tracemalloc.get_traced_memory()[1], info["n_candidates"]); tracemalloc.stop()
        rows.append(dict(k=k, tb=min(tb), tf=min(tf), tw=min(tw), td=min(td), tl=min(tl), b=b, f_imb=imbalance(f_sizes),
                         f_obj=f_obj, peaks=peaks))
        print(f"  done K={k}: balanced {min(tb):.2f}s, faiss {min(tf):.2f}s", flush=True)

    print("\n(1) balanced_kmeans vs faiss.Kmeans on all N points (same niter)")
    print(f"{'K':>5} {'balanced s':>11} {'faiss s':>9} {'ratio':>7} {'target':>7} {'bal imb':>8} {'faiss imb':>9} "
          f"{'bal obj/faiss obj':>18} {'iters':>6} {'gap_rel':>9}")
    for r in rows:
        b = r["b"]
        print(f"{r['k']:>5} {r['tb']:>11.2f} {r['tf']:>9.2f} {r['tb'] / r['tf']:>7.2f} {'<=2.0':>7} "
              f"{b.imbalance:>8.4f} {r['f_imb']:>9.3f} {b.objective / r['f_obj']:>18.4f} "
              f"{b.params['n_iter']:>6} {b.params['gap_rel']:>9.1e}")
    print("\n    peak Python-side memory of one balanced assignment (tracemalloc), chunk fixed; "
          "m = candidates per point")
    print("    reached (starts at --n-candidates, may double up to --max-candidates on hard data)")
    print(f"{'K':>5} {'N':>9} {'m':>4} {'peak MB':>9} {'N*K*4 MB':>9} {'peak/(N*K*4)':>13}")
    for r in rows:
        for n, (p, m) in r["peaks"].items():
            full = n * r["k"] * 4
            print(f"{r['k']:>5} {n:>9} {m:>4} {p / 2**20:>9.1f} {full / 2**20:>9.1f} {p / full:>13.3f}")
    print("\n(2) clipwb kmeans wrapper vs bare faiss.Kmeans(...).train (256 points per centroid, same niter);")
    print("    the wrapper also labels all N points, so the like-for-like column adds faiss's own index.search(x, 1)")
    print(f"{'K':>5} {'wrapper s':>10} {'train s':>9} {'ratio':>7} {'train+labels s':>15} {'ratio':>7} {'target':>7}")
    for r in rows:
        print(f"{r['k']:>5} {r['tw']:>10.4f} {r['td']:>9.4f} {r['tw'] / r['td']:>7.2f} {r['tl']:>15.4f} "
              f"{r['tw'] / r['tl']:>7.2f} {'<=1.2':>7}")


if __name__ == "__main__":
    main()
