"""MCLBatchSampler against the reference semantics, checked by simulation over ranks and by closed forms."""
from collections import Counter

import numpy as np
import pytest

from clipwb.data.samplers import MCLBatchSampler


def _labels(seed=0, n=1000, k=13):
    rng = np.random.default_rng(seed)
    return rng.integers(0, k, n) * 7 + 3          # non-contiguous label values


def _global_steps(labels, B, W, seed, epoch=0, **kw):
    "Zip the W simulated ranks: list of per-step lists of per-rank batches."
    ss = [MCLBatchSampler(labels, B, world_size=W, rank=r, seed=seed, **kw) for r in range(W)]
    for s in ss: s.set_epoch(epoch)
    lens = {len(s) for s in ss}
    assert len(lens) == 1, "every rank must have the same number of batches"
    per_rank = [list(s) for s in ss]
    assert all(len(p) == len(ss[0]) for p in per_rank), "__len__ must equal the batches yielded"
    return list(zip(*per_rank)), ss[0]


@pytest.mark.parametrize("W", [1, 2, 4])
@pytest.mark.parametrize("B", [3, 8])
def test_every_global_step_is_one_group(W, B):
    lab = _labels()
    steps, s = _global_steps(lab, B, W, seed=5)
    for step in steps:
        flat = [i for b in step for i in b]
        assert all(len(b) == B for b in step)
        assert len(set(flat)) == len(flat), "ranks' batches of one step must be disjoint"
        assert len(set(lab[flat])) == 1, "a global step must hold a single pseudo-label"


@pytest.mark.parametrize("W", [1, 2, 4])
def test_epoch_multiset_is_the_kept_items(W):
    lab, B = _labels(1), 4
    steps, s = _global_steps(lab, B, W, seed=2, epoch=3)
    used = Counter(i for step in steps for b in step for i in b)
    assert max(used.values()) == 1, "no index is used twice in an epoch"
    G = B * W
    counts = Counter(lab.tolist())
    # closed form: per label, floor(n / G)·G items are used
    per_label = Counter(lab[list(used)].tolist())
    assert per_label == Counter({l: n // G * G for l, n in counts.items() if n >= G})
    assert s.dropped["samples"] == sum(n % G for n in counts.values())
    assert s.dropped["groups"] == sum(n < G for n in counts.values())
    assert s.dropped["kept"] == len(used) == sum(n // G * G for n in counts.values())


def test_rank_streams_are_disjoint_and_round_robin():
    lab = np.array([0] * 40 + [1] * 17 + [2] * 8 + [5] * 3)
    steps, _ = _global_steps(lab, 2, 4, seed=0)
    order = [int(lab[step[0][0]]) for step in steps]
    # groups 0, 1, 2 own 5, 2, 1 global batches: round-robin visits 0 1 2 0 1 0 0 0; label 5 never appears
    assert order == [0, 1, 2, 0, 1, 0, 0, 0]
    for r in range(4):
        for q in range(r + 1, 4):
            assert not {i for st in steps for i in st[r]} & {i for st in steps for i in st[q]}


def test_seed_and_epoch_determinism():
    lab = _labels(2)
    a, b = MCLBatchSampler(lab, 5, seed=9), MCLBatchSampler(lab, 5, seed=9)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)
    c = MCLBatchSampler(lab, 5, seed=10)
    assert list(a) != list(c)
    a.set_epoch(1)
    assert list(a) == list(b)


def test_drop_small_false_merges_into_rest():
    lab = np.array([0] * 20 + [1] * 3 + [2] * 2 + [3] * 9)      # G = 8: 1, 2 are small; 3 (9) is not
    s = MCLBatchSampler(lab, 4, world_size=2, drop_small=False)
    assert s.labels == [0, 3, "rest"]
    assert s.dropped["rest_group"] == 5 and s.dropped["groups"] == 1      # the rest group itself (5 < 8)
    steps, _ = _global_steps(lab, 4, 2, seed=0, drop_small=False)
    assert len(steps) == 20 // 8 + 9 // 8
    lab2 = np.array([0] * 20 + [1] * 5 + [2] * 6)                 # rest = 11 ≥ 8: one mixed global batch
    steps, s2 = _global_steps(lab2, 4, 2, seed=0, drop_small=False)
    assert len(steps) == 2 + 1 and s2.dropped["samples"] == 4 + 3
    mixed = [st for st in steps if len(set(lab2[[i for b in st for i in b]])) > 1]
    assert len(mixed) <= 1 and all(set(lab2[[i for b in st for i in b]]) <= {1, 2} for st in mixed)


def test_no_torch_distributed_needed():
    import torch.distributed as dist
    assert not (dist.is_available() and dist.is_initialized())
    assert len(list(MCLBatchSampler(_labels(), 8))) == len(MCLBatchSampler(_labels(), 8))
