"""Cost of the sparse MoE layer (clipwb.moe.MoEMLP) against the dense MLP it replaces, measured side by side.

    python benchmarks/bench_moe.py [--tokens 4096] [--widths 192 384 768] [--repeats 5] [--device cpu|cuda]

Layer: a top-2-of-4 MoE layer and the dense open_clip MLP (c_fc → GELU → c_proj, 4× width) on the same
4,096 tokens, fp32, one thread (torch.set_num_threads(1)). A top-2 MoE does twice the dense matmul work
per token plus routing, sorting and the permutation, so the ideal ratio is 2.0; targets: forward ≤ 2.4,
forward + backward ≤ 2.6. Whole model: encode_image throughput of clipwb-tiny with MoE (4 experts, top-2)
on every block against the dense model (target MoE time / dense time ≤ 1.8: attention is not doubled).
Timings are the median of `--repeats` runs after a warm-up, dense and MoE interleaved so a shared
machine's load hits both; the ratios are what to compare, raw times depend on the machine.
On CUDA (`--device cuda`) the layer is also timed in bf16 with the grouped-matmul path against the loop.
Grouped path, stacked expert weights (`--device` as given): forward without gradient with the stacked weights cached
against stacking them on every forward (the behaviour before the cache), and what a training step (forward +
backward) still pays for stacking the expert weights once per forward (the stack and its gradient's split).
"""
import argparse
import copy
import statistics
import time

import torch
from torch import nn

from clipwb.models import create_model
from clipwb.models.moe import MoEMLP, apply_moe


def _time(fn, sync):
    sync(); t = time.perf_counter(); fn(); sync()
    return time.perf_counter() - t


def side_by_side(fns: dict, repeats: int, sync) -> dict:
    for f in fns.values(): f()   # warm-up
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items(): times[k].append(_time(f, sync))
    return {k: statistics.median(v) for k, v in times.items()}


def dense_mlp(d):
    return nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))


def layer_rows(widths, tokens, repeats, device, dtype=torch.float32, dispatch="loop"):
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []
    for d in widths:
        torch.manual_seed(0)
        dense = dense_mlp(d).to(device, dtype)
        moe = MoEMLP(d, 4 * d, 4, top_k=2, dispatch=dispatch).to(device, dtype)
        moe.router.float()
        nn.init.normal_(moe.router.weight, std=1.0)   # a spread-out routing, not one expert
        x = torch.randn(tokens, d, device=device, dtype=dtype)
        xg = x.clone().requires_grad_(True)
        with torch.no_grad():
            fwd = side_by_side({"dense": lambda: dense(x), "moe": lambda: moe(x)}, repeats, sync)
        fb = side_by_side({"dense": lambda: dense(xg).sum().backward(), "moe": lambda: moe(xg).sum().backward()},
                          repeats, sync)
        rows.append((d, fwd["dense"], fwd["moe"], fb["dense"], fb["moe"]))
    return rows


def stack_rows(widths, tokens, repeats, device, dtype=torch.float32):
    ("Grouped path: (d, no-grad fwd cached, no-grad fwd re-stacked, training f+b, the stack's own f+b in training), "
     "seconds.")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []
    for d in widths:
        torch.manual_seed(0)
        moe = MoEMLP(d, 4 * d, 4, top_k=2, dispatch="grouped").to(device, dtype)
        moe.router.float()
        nn.init.normal_(moe.router.weight, std=1.0)
        x = torch.randn(tokens, d, device=device, dtype=dtype)
        restack = copy.deepcopy(moe); restack.cache_weights = False   # the behaviour before the cache
        with torch.no_grad():
            fwd = side_by_side({"cached": lambda: moe(x), "restack": lambda: restack(x)}, repeats, sync)
        # training: what the step pays for the stack (copy forward, gradient split backward; the sums are extra)
        fb = side_by_side({"step": lambda: moe(x).sum().backward(),
                           "stack": lambda: sum(t.sum() for t in moe.stacked_weights(dtype)).backward()}, repeats, sync)
        rows.append((d, fwd["cached"], fwd["restack"], fb["step"], fb["stack"]))
    return rows


def model_row(repeats, batch=64):
    dense = create_model("clipwb-tiny").eval()
    moe = apply_moe(create_model("clipwb-tiny"), num_experts=4, top_k=2, dispatch="loop").eval()
    x = torch.randn(batch, 3, 64, 64)
    with torch.no_grad():
        t = side_by_side({"dense": lambda: dense.encode_image(x), "moe": lambda: moe.encode_image(x)}, repeats,
                         lambda: None)
    return t["dense"], t["moe"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--widths", type=int, nargs="+", default=[192, 384, 768])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(f"MoE layer (4 experts, top-2) / dense MLP, {a.tokens} tokens, fp32, 1 thread, {a.device}")
    print(f"{'width':>6} {'dense fwd ms':>13} {'moe fwd ms':>11} {'fwd ratio':>10} "
          f"{'dense f+b ms':>13} {'moe f+b ms':>11} {'f+b ratio':>10}")
    for d, df, mf, db, mb in layer_rows(a.widths, a.tokens, a.repeats, a.device):
        print(f"{d:>6} {df * 1e3:>13.1f} {mf * 1e3:>11.1f} {mf / df:>10.2f} "
              f"{db * 1e3:>13.1f} {mb * 1e3:>11.1f} {mb / db:>10.2f}"
              f"   (targets ≤ 2.4 / ≤ 2.6)")
    td, tm = model_row(a.repeats)
    print(f"clipwb-tiny encode_image, batch 64: dense {64 / td:.0f} img/s, MoE on every block {64 / tm:.0f} img/s, "
          f"time ratio {tm / td:.2f} (target ≤ 1.8)")
    print(f"grouped path (F.grouped_mm), {a.tokens} tokens, fp32, {a.device}: stacked expert weights")
    print(f"{'width':>6} {'fwd cached ms':>14} {'fwd re-stack ms':>16} {'ratio':>6} "
          f"{'train f+b ms':>13} {'stack f+b ms':>13} {'share':>6}")
    for d, fc, fr, fs, st in stack_rows(a.widths, a.tokens, a.repeats, a.device):
        print(f"{d:>6} {fc * 1e3:>14.1f} {fr * 1e3:>16.1f} {fc / fr:>6.2f} {fs * 1e3:>13.1f} {st * 1e3:>13.1f} "
              f"{st / fs:>6.1%}")
    if a.device == "cuda":
        print("CUDA bf16, MoE layer: grouped_mm path / loop path (forward, forward+backward)")
        for d in a.widths:
            g = layer_rows([d], a.tokens, a.repeats, "cuda", torch.bfloat16, "grouped")[0]
            l = layer_rows([d], a.tokens, a.repeats, "cuda", torch.bfloat16, "loop")[0]
            print(f"{d:>6} fwd {g[2] * 1e3:.3f} / {l[2] * 1e3:.3f} ms = {g[2] / l[2]:.2f}   "
                  f"f+b {g[4] * 1e3:.3f} / {l[4] * 1e3:.3f} ms = {g[4] / l[4]:.2f}   "
                  f"(MoE/dense bf16 loop fwd {l[2] / l[1]:.2f})")


if __name__ == "__main__":
    main()
