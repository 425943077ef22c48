"""UMAP on an exact faiss kNN graph vs umap-learn's default (its own NN-descent), measured side by side.

    python benchmarks/bench_umap.py [--n 50000] [--d 256] [--n-neighbors 15] [--n-epochs 200] [--seed S]

Data: `--n` L2-normalised points in `--d` dimensions from `--blobs` Gaussian blobs on the sphere
(clipwb.testing.random_embeddings), metric cosine, like CLIP embeddings. Prints raw seconds for
  faiss_knn        clipwb.cluster.map.knn_graph alone (exact IndexFlatIP, GPU if faiss-gpu sees one)
  faiss+umap       knn_graph + umap_embed(knn=...) (umap never runs NN-descent)
  faiss_ivf_knn    knn_graph(ivf_probe=16): approximate IVF search (and ivf+umap), with its recall
  nn_descent       umap.umap_.nearest_neighbors alone (the step faiss replaces)
  umap_default     umap.UMAP(...).fit_transform (pynndescent NN-descent + the same layout optimisation)
and the ratio (faiss+umap) / umap_default. The aim is a ratio <= 0.5.
Both runs use the same UMAP parameters, the same n_epochs and the same seed setting (default: no
seed, so both run the layout in parallel). numba code is compiled first by small warm-up runs of
both paths, so the timings exclude JIT compilation. Also prints the recall of umap's approximate
graph against the exact one. Timings depend on the machine and on its load: report them with the
thread counts printed here.
"""
import argparse
import os
import time
import warnings

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--blobs", type=int, default=20)
    ap.add_argument("--spread", type=float, default=0.8)
    ap.add_argument("--n-neighbors", type=int, default=15)
    ap.add_argument("--min-dist", type=float, default=0.1)
    ap.add_argument("--n-epochs", type=int, default=200,
                    help="same for both (umap's own default is 200 above 10k points)")
    ap.add_argument("--seed", type=int, default=None,
                    help="random_state for both runs (serial layout); default none (parallel)")
    ap.add_argument("--ivf-probe", type=int, default=16, help="also time knn_graph(ivf_probe=...); 0 to skip")
    ap.add_argument("--skip-default", action="store_true", help="time only the faiss path")
    a = ap.parse_args()

    import faiss
    import numba
    import umap
    from clipwb.testing import random_embeddings
    from clipwb.cluster.map import knn_graph, umap_embed

    warnings.filterwarnings("ignore", message=r".*n_jobs value")
    kw = dict(n_neighbors=a.n_neighbors, min_dist=a.min_dist, metric="cosine", n_epochs=a.n_epochs)
    ref_kw = dict(kw, random_state=a.seed, n_jobs=1 if a.seed is not None else -1)
    print(f"n={a.n} d={a.d} blobs={a.blobs} n_neighbors={a.n_neighbors} n_epochs={a.n_epochs} seed={a.seed} | "
          f"cpus={os.cpu_count()} numba_threads={numba.get_num_threads()} "
          f"faiss_omp_threads={faiss.omp_get_max_threads()} "
          f"faiss_gpus={faiss.get_num_gpus() if hasattr(faiss, 'get_num_gpus') else 0} load={os.getloadavg()[0]:.1f}")

    # warm-up: compile umap's layout code and pynndescent (force_approximation: NN-descent even below 4096 points)
    xw, _ = random_embeddings(3000, a.d, k=a.blobs, spread=a.spread, seed=1)
    t0 = time.perf_counter()
    umap_embed(xw, seed=a.seed, **kw)
    if not a.skip_default: umap.UMAP(force_approximation_algorithm=True, **ref_kw).fit_transform(xw)
    print(f"warm-up (JIT compile, 3000 points): {time.perf_counter() - t0:.1f} s")

    x, _ = random_embeddings(a.n, a.d, k=a.blobs, spread=a.spread, seed=0)
    t0 = time.perf_counter()
    knn = knn_graph(x, n_neighbors=a.n_neighbors, metric="cosine")
    t_knn = time.perf_counter() - t0
    t0 = time.perf_counter()
    xy = umap_embed(x, knn=knn, seed=a.seed, **kw)
    t_layout = time.perf_counter() - t0
    t_ours = t_knn + t_layout
    assert np.isfinite(xy).all()
    print(f"faiss_knn      {t_knn:8.2f} s")
    print(f"faiss+umap     {t_ours:8.2f} s   (layout {t_layout:.2f} s)")
    if a.ivf_probe:
        t0 = time.perf_counter()
        ivf = knn_graph(x, n_neighbors=a.n_neighbors, metric="cosine", ivf_probe=a.ivf_probe)
        t_ivf = time.perf_counter() - t0
        r_ivf = np.mean([len(set(p) & set(q)) / a.n_neighbors for p, q in zip(ivf[0], knn[0])])
        t0 = time.perf_counter()
        umap_embed(x, knn=ivf, seed=a.seed, **kw)
        t_ivf_layout = time.perf_counter() - t0
        print(f"faiss_ivf_knn  {t_ivf:8.2f} s   (ivf_probe={a.ivf_probe}, recall vs exact: {r_ivf:.4f})")
        print(f"ivf+umap       {t_ivf + t_ivf_layout:8.2f} s   (layout {t_ivf_layout:.2f} s)")
    if a.skip_default: return
    from umap.umap_ import nearest_neighbors
    t0 = time.perf_counter()
    nearest_neighbors(x, a.n_neighbors, "cosine", {}, True, np.random.RandomState(a.seed),
                      use_pynndescent=True, n_jobs=ref_kw["n_jobs"])
    t_nnd = time.perf_counter() - t0
    print(f"nn_descent     {t_nnd:8.2f} s   (umap's own graph alone, the part faiss_knn replaces)")
    t0 = time.perf_counter()
    ref = umap.UMAP(**ref_kw)
    ref.fit_transform(x)
    t_ref = time.perf_counter() - t0
    approx = ref._knn_indices
    recall = np.mean([len(set(p) & set(q)) / a.n_neighbors for p, q in zip(approx, knn[0])])
    print(f"umap_default   {t_ref:8.2f} s   (NN-descent recall vs exact: {recall:.4f})")
    print(f"ratio (faiss+umap) / umap_default = {t_ours / t_ref:.3f}   (target <= 0.5)")
    print(f"ratio faiss_knn / nn_descent       = {t_knn / t_nnd:.3f}")
    if a.ivf_probe:
        print(f"ratio (ivf+umap) / umap_default   = {(t_ivf + t_ivf_layout) / t_ref:.3f}")
        print(f"ratio faiss_ivf_knn / nn_descent   = {t_ivf / t_nnd:.3f}")
    print(f"ratio faiss_knn / umap_default     = {t_knn / t_ref:.3f}")
    print(f"layout share of umap_default ~ {(t_ref - t_nnd) / t_ref:.2f} (a lower bound for the total ratio "
          "whatever the kNN search costs)")


if __name__ == "__main__":
    main()
