"""Oracles for balanced k-means: exact balanced assignment (Hungarian on replicated columns), blobs, skew, memory."""
import tracemalloc

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from clipwb.core import DataError
from clipwb.cluster.balanced import _means, _solve, balanced_assign, balanced_kmeans  # private: warm-start oracle
from clipwb.cluster.kmeans import fit_clusters, imbalance
from clipwb.testing import random_embeddings


def sqdist(x, c):
    return ((x[:, None, :].astype(np.float64) - c[None].astype(np.float64)) ** 2).sum(-1)


def lsa_cost(d, capacities=None):
    """Optimal cost with sizes = capacities, or N/K ±1 (which clusters get +1 optimised) when None."""
    n, K = d.shape
    if capacities is None:
        q, r = divmod(n, K)
        cols = np.repeat(np.arange(K), q)
        big = 1e6 * (d.max() + 1)  # every "main" slot must be filled; r "extra" slots (one per centre) are free
        cost = d[:, cols] - big
        if r:
            cols, cost = np.concatenate([cols, np.arange(K)]), np.hstack([cost, d])
    else:
        cols = np.repeat(np.arange(K), capacities)
        cost = d[:, cols]
    rows, cc = linear_sum_assignment(cost)
    return float(d[rows, cols[cc]].sum())


def skewed(n, d, seed, fracs=(0.6, 0.25, 0.1, 0.05)):
    """Blobs of very unequal sizes on the sphere."""
    rng = np.random.default_rng(seed)
    x, _ = random_embeddings(n * 3, d, k=len(fracs), seed=seed, spread=0.5)
    _, y = random_embeddings(n * 3, d, k=len(fracs), seed=seed, spread=0.5)
    parts = [x[y == j][: int(f * n)] for j, f in enumerate(fracs)]
    x = np.concatenate(parts)
    return x[rng.permutation(len(x))]


def core_halo(n, d, seed, core=0.9, spread=0.1):
    """A tight blob holding `core` of the points plus a uniform halo on the sphere: faiss k-means is very imbalanced."""
    rng = np.random.default_rng(seed)
    nc = int(core * n)
    mu = rng.normal(size=d); mu /= np.linalg.norm(mu)
    x = np.concatenate([mu + spread * rng.normal(size=(nc, d)) / np.sqrt(d), rng.normal(size=(n - nc, d))])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x[rng.permutation(n)].astype(np.float32)


def assert_balanced_optimum(x, c, lab, info, dm=None, opt=None):
    """Sizes N/K, the +1 clusters exactly N mod K of them, and cost within [opt - 1e-6, opt + 1e-5]·opt of the
    Hungarian optimum (`dm`, `opt` reused when the caller already has them). Returns (sizes, dm)."""
    n, k = len(x), len(c)
    sizes = np.bincount(lab, minlength=k)
    assert sizes.sum() == n and sizes.max() - sizes.min() <= 1
    assert (sizes == n // k + 1).sum() == n % k
    dm = sqdist(x, c) if dm is None else dm
    opt = lsa_cost(dm) if opt is None else opt
    got = float(dm[np.arange(n), lab].sum())
    assert opt - 1e-6 * opt <= got <= opt + 1e-5 * opt, (got, opt, info)
    return sizes, dm


CASES = [(600, 4, 8), (601, 6, 8), (1000, 7, 16), (1500, 10, 32), (2000, 8, 16), (1999, 9, 12)]


@pytest.mark.parametrize("n,k,d", CASES)
@pytest.mark.parametrize("n_candidates,max_candidates", [(16, 64), (3, 64), (3, 3)])
def test_assign_matches_hungarian(n, k, d, n_candidates, max_candidates):
    """(3, 3): the lists never lengthen, so exactness rests on re-listing starved points alone."""
    x = skewed(n, d, seed=n + k)
    n = len(x)
    c = x[np.random.default_rng(k).choice(n, k, replace=False)]
    lab, info = balanced_assign(x, c, n_candidates=n_candidates, max_candidates=max_candidates, return_info=True)
    assert info["n_candidates"] <= max(max_candidates, n_candidates)
    sizes, dm = assert_balanced_optimum(x, c, lab, info)
    assert -1e-5 <= info["gap_rel"] <= 1e-5, info  # certificate from the prices agrees
    greedy = dm.argmin(1)
    assert imbalance(np.bincount(greedy, minlength=k)) > imbalance(sizes)


@pytest.mark.parametrize("gen,n,grown", [(skewed, 2000, 8), (core_halo, 1600, 16)])
def test_lengthened_lists_stay_exact(gen, n, grown):
    """Lists start at 2 of 32 clusters and must grow: fast while 2m <= K/4 (2 -> 4 -> 8), slowly beyond (8 -> 16,
    after 500 relists in a phase, which the tight core-plus-halo data forces)."""
    k = 32
    x = gen(n, 16, seed=n + k)
    c = x[np.random.default_rng(k).choice(len(x), k, replace=False)]
    lab, info = balanced_assign(x, c, n_candidates=2, max_candidates=16, return_info=True)
    assert info["n_candidates"] == grown, info
    assert_balanced_optimum(x, c, lab, info)


def test_warm_start_from_bad_prices_is_exact_and_bounded():
    """Warm starts from the previous solve's prices and from the same prices reversed (a price war on tight
    core-plus-halo data) both reach the Hungarian optimum, and the war guard bounds the work: the reversed start
    took 1.5e5 bids per point before the guard counted whole phases and fell back to a cold solve."""
    k, x = 32, core_halo(2000, 16, seed=0)
    n = len(x)
    lab, p, _ = _solve(x, x[np.random.default_rng(0).choice(n, k, replace=False)], n_candidates=4)
    c = _means(x, lab, k, False)
    dm = sqdist(x, c)
    opt = lsa_cost(dm)
    for price in (p, p[::-1]):
        got_lab, _, info = _solve(x, c, price=price.copy(), warm=True, n_candidates=4)
        assert_balanced_optimum(x, c, got_lab, info, dm, opt)
        assert info["bids"] <= 200 * n, info


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_assign_explicit_capacities(seed):
    rng = np.random.default_rng(seed)
    x = skewed(900, 12, seed=seed)
    n, k = len(x), 7
    c = rng.normal(size=(k, 12)).astype(np.float32) * 0.5
    cap = rng.multinomial(n, rng.dirichlet(np.ones(k)))
    lab = balanced_assign(x, c, capacities=cap, n_candidates=4)
    np.testing.assert_array_equal(np.bincount(lab, minlength=k), cap)
    dm = sqdist(x, c)
    opt, got = lsa_cost(dm, cap), float(dm[np.arange(n), lab].sum())
    assert abs(got - opt) <= 1e-5 * opt


def test_spherical_assign_matches_hungarian():
    x = skewed(800, 16, seed=3)
    c = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)
    lab = balanced_assign(x, c, spherical=True)
    cu = c / np.linalg.norm(c, axis=1, keepdims=True)
    dm = sqdist(x, cu)
    assert abs(float(dm[np.arange(len(x)), lab].sum()) - lsa_cost(dm)) <= 1e-5 * lsa_cost(dm)


def test_blobs_recovered_and_objective_close_to_faiss():
    from sklearn.metrics import adjusted_rand_score
    x, y = random_embeddings(3000, 32, k=6, seed=11)
    x, y = np.concatenate([x[y == j][:400] for j in range(6)]), np.repeat(np.arange(6), 400)
    for seed in range(3):
        b = fit_clusters(x, "balanced_kmeans", k=6, seed=seed)
        assert adjusted_rand_score(y, b.labels) == 1.0
        np.testing.assert_array_equal(b.sizes, [400] * 6)
    f = fit_clusters(x, "kmeans", k=6, nredo=10)
    assert b.objective <= 1.03 * f.objective, (b.objective, f.objective)


def test_skewed_data_balanced_where_faiss_is_not():
    x = core_halo(4000, 16, seed=0)
    f = fit_clusters(x, "kmeans", k=10, seed=0)
    b = fit_clusters(x, "balanced_kmeans", k=10, seed=0, niter=10)
    assert f.imbalance > 1.5, f.imbalance
    assert b.imbalance <= 1.01 and b.sizes.max() - b.sizes.min() <= 1
    assert b.params["gap_rel"] <= 1e-5
    # the assignment to the final centres is the exact balanced one (Hungarian oracle on 1500 points)
    dm = sqdist(x[:1500], b.centroids)
    lab = balanced_assign(x[:1500], b.centroids)
    assert abs(float(dm[np.arange(1500), lab].sum()) - lsa_cost(dm)) <= 1e-5 * lsa_cost(dm)


def test_result_contract_and_predict_modes():
    x, _ = random_embeddings(200, 8, k=4, seed=1)
    a, b = fit_clusters(x, "balanced_kmeans", k=4, seed=3), fit_clusters(x, "balanced_kmeans", k=4, seed=3)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    np.testing.assert_array_equal(a.assign(x), a.labels)  # predict="balanced" reproduces the labels
    np.testing.assert_array_equal(a.assign(x, predict="greedy"), sqdist(x, a.centroids).argmin(1))
    g = fit_clusters(x, "balanced_kmeans", k=4, seed=3, predict="greedy")
    np.testing.assert_array_equal(g.assign(x), sqdist(x, g.centroids).argmin(1))
    assert a.params["chunk_size"] == 8192 and a.method == "balanced_kmeans"
    assert abs(a.objective - float(sqdist(x, a.centroids)[np.arange(200), a.labels].sum())) <= 1e-6 * a.objective


def _peak(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_assignment_memory_does_not_grow_with_n_times_k():
    """Fixed chunk_size and n_candidates on equal blobs (candidate lists stay short): the peak Python-side allocation
    is far below one N×K matrix and grows with N by the candidate lists only (O(N·m)), not by N·K — the distance
    tile is O(chunk · K). (On hard data the lists lengthen, up to K in the worst case; see the notebook.)"""
    k, m, rng = 512, 8, np.random.default_rng(0)
    c = rng.normal(size=(k, 16)).astype(np.float32)
    x = (c[np.arange(24576) % k] + 0.05 * rng.normal(size=(24576, 16))).astype(np.float32)  # equal blobs
    balanced_assign(x[:100], x[:4])  # compile outside the measurement
    peaks = {n: _peak(lambda: balanced_assign(x[:n], c, chunk_size=512, n_candidates=m)) for n in (6144, 24576)}
    assert peaks[24576] < 0.25 * 24576 * k * 4, peaks  # a float32 N×K matrix would be 50 MB
    per_point = (peaks[24576] - peaks[6144]) / (24576 - 6144)
    assert per_point < 0.1 * k * 4, (per_point, peaks)  # an N×K float32 matrix costs 2048 bytes per point


def test_errors():
    x, _ = random_embeddings(50, 4, k=2, seed=0)
    for kw, msg in [(dict(k=0), "k must"), (dict(k=51), "k must"), (dict(k=3, niter=0), "niter"),
                    (dict(k=3, chunk_size=0), "chunk_size"), (dict(k=3, tol=2.0), "tol")]:
        with pytest.raises(ValueError, match=msg):
            balanced_kmeans(x, **kw)
    bad = x.copy(); bad[0, 0] = np.inf
    with pytest.raises(DataError, match="NaN"):
        balanced_kmeans(bad, k=2)
