"""RegMean gram collection time vs a plain forward over the same data (target ≤ 1.3×, the project's performance target).

Plain forward = `encode_image` + `encode_text` under `torch.no_grad`, eval mode, no hooks.
Gram collection = `clipwb.merge.stats.collect_grams` on the same batches (every linear map of both towers).
Runs alternate (forward, collect, forward, collect, …) so load changes on a shared machine hit both; the
median of `--repeats` runs is reported together with the raw times, as process CPU time (robust when other
jobs share the cores) and wall time.

    .venv/bin/python benchmarks/bench_gram.py                 # clipwb-tiny and random-init ViT-B-32
    .venv/bin/python benchmarks/bench_gram.py --models clipwb-tiny --repeats 5
"""
import argparse
import os
import statistics
import time


def _batches(model_name, model, n_batches, batch_size, seed=0):
    import torch
    from clipwb.models import get_tokenizer
    tok = get_tokenizer(model_name)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    g = torch.Generator().manual_seed(seed)
    words = "a red green blue small large circle square triangle on grass sky photo of the".split()
    out = []
    for b in range(n_batches):
        caps = [" ".join(words[int(i)]
                         for i in torch.randint(len(words), (int(torch.randint(3, 12, (1,), generator=g)),),
                                                generator=g))
                for _ in range(batch_size)]
        out.append((torch.randn(batch_size, 3, size, size, generator=g), tok(caps)))
    return out


def _forward(model, batches):
    import torch
    with torch.no_grad():
        for im, tk in batches:
            model.encode_image(im); model.encode_text(tk)


def bench(name, *, n_batches, batch_size, repeats, variants):
    import torch
    from clipwb.models import create_model
    from clipwb.merge.stats import collect_grams
    model = create_model(name).eval()
    batches = _batches(name, model, n_batches, batch_size)
    _forward(model, batches[:1]); collect_grams(model, batches[:1])        # warm-up
    runs = {"forward": lambda: _forward(model, batches)}
    runs |= {v: (lambda kw=kw: collect_grams(model, batches, **kw)) for v, kw in variants.items()}
    cpu, wall = {v: [] for v in runs}, {v: [] for v in runs}
    for _ in range(repeats):
        for v, f in runs.items():
            c, w = time.process_time(), time.perf_counter()
            f()
            cpu[v].append(time.process_time() - c); wall[v].append(time.perf_counter() - w)
    fc, fw = statistics.median(cpu["forward"]), statistics.median(wall["forward"])
    print(f"\n{name}: {n_batches} batches × {batch_size} pairs, torch threads {torch.get_num_threads()}, "
          f"{repeats} repeats")
    print(f"  {'run':<34} {'cpu s':>7} {'ratio':>6} {'wall s':>7} {'ratio':>6}   raw cpu / wall times (s)")
    for v in runs:
        c, w = statistics.median(cpu[v]), statistics.median(wall[v])
        raw = " ".join(f"{x:.2f}/{y:.2f}" for x, y in zip(cpu[v], wall[v]))
        print(f"  {v:<34} {c:7.3f} {c / fc:6.2f} {w:7.3f} {w / fw:6.2f}   {raw}")
    return {v: statistics.median(cpu[v]) / fc for v in runs}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="clipwb-tiny,ViT-B-32")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (1: CPU time = compute time)")
    a = ap.parse_args()
    for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[v] = str(a.threads)        # before torch/scipy load: idle OpenMP threads spin and count as CPU time
    import torch
    torch.set_num_threads(a.threads)
    variants = {"collect_grams (default, float32)": {},
                "collect_grams (float64)": {"precision": "float64"},
                "collect_grams (all but mlp.c_proj)": {"modules": [r"attn\.", r"mlp\.c_fc", r"^visual\.proj$",
                                                                   r"text_projection$"]}}
    sizes = {"clipwb-tiny": (4, 64), "ViT-B-32": (2, 24)}
    ratios = {}
    for name in a.models.split(","):
        nb, bs = sizes.get(name, (2, 16))
        ratios[name] = bench(name, n_batches=nb, batch_size=bs, repeats=a.repeats, variants=variants)
    print("\nratio to the plain forward (CPU time; target ≤ 1.3):")
    for v in ["forward", *variants]:
        print(f"  {v:<34} " + "  ".join(f"{n}: {r[v]:.2f}" for n, r in ratios.items()))


if __name__ == "__main__":
    main()
