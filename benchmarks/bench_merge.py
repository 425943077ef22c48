"""Peak memory of streamed whole-model merges (clipwb.merge.stream.merge_models) vs one model's size.

    python benchmarks/bench_merge.py [--arch ViT-B-32] [--n 2 4 8] [--methods linear task_arithmetic ties]
                                     [--chunk-mb 64] [--workdir /tmp/...] [--no-in-memory]

Writes a random-init model (`--arch`, default ViT-B-32, ~600 MB in float32) with
clipwb.models.save_model, and max(N) perturbed copies (θ + 0.01·noise), into a temporary folder
(removed at the end unless --keep). Every merge runs in a fresh Python subprocess that, after its imports, resets
the kernel's peak-RSS counter (/proc/self/clear_refs ← 5) and records VmRSS (baseline), then
reads VmHWM (peak) after the merge (falling back to ru_maxrss where the reset is refused); the
table prints

    extra_peak / model_size      (target: ≤ 1.5 for any N)

with model_size = size of one open_clip_model.safetensors, plus wall time. For reference the
same subprocess measurement is taken for the in-memory path (load_file every model, merge(),
save_file) at the smallest N. The machine may be shared: raw times are printed, not asserted.
Default run on 2 shared CPU cores: ~3 min writing 9 ViT-B-32 files (5.2 GB of disk), ~7 min of
merges (TIES dominates: two histogram passes per model for its exact global thresholds, then the
merge pass). `--arch clipwb-tiny --chunk-mb 4` is a one-minute smoke run.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import torch
from safetensors.torch import load_file, save_file
from clipwb.merge.methods import merge
from clipwb.merge.stream import merge_models, WEIGHTS
a = json.loads(sys.argv[1])
torch.set_num_threads(1)
def status(field):                                   # bytes, from /proc/self/status (VmRSS, VmHWM)
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"): return int(line.split()[1]) * 1024
try:                                                 # reset the peak (VmHWM) to the current RSS, after the imports
    open("/proc/self/clear_refs", "w").write("5"); reset = True
except OSError: reset = False                        # then the import peak counts too (an overestimate)
base_rss, t = status("VmRSS"), time.perf_counter()
models, base = a["models"], a["base"]
if a["mode"] == "stream":
    merge_models(a["method"], models, base=base, out=a["out"], chunk_mb=a["chunk_mb"], **a["kw"])
else:
    sds = [load_file(str(Path(d) / WEIGHTS)) for d in models]
    b = load_file(str(Path(base) / WEIGHTS)) if base else None
    out = merge(a["method"], sds, base=b, **a["kw"])
    Path(a["out"]).mkdir(parents=True, exist_ok=True)
    save_file(out, str(Path(a["out"]) / WEIGHTS))
peak = status("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"baseline": base_rss, "peak": peak, "seconds": time.perf_counter() - t, "hwm_reset": reset}))
"""

KW = {"linear": {}, "uniform_soup": {}, "task_arithmetic": {"lam": 0.5}, "ties": {"density": 0.2, "scope": "global"}}


def make_models(arch, n, root):
    import torch
    from safetensors.torch import load_file, save_file
    from clipwb.merge.stream import WEIGHTS
    from clipwb.models import create_model, save_model
    base = save_model(create_model(arch, seed=0), root / "base")
    sd = load_file(str(base / WEIGHTS))
    dirs = []
    for i in range(n):
        d = root / f"m{i}"; d.mkdir()
        shutil.copy(base / "open_clip_config.json", d)
        g = torch.Generator().manual_seed(i + 1)
        save_file({k: v + 0.01 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
                   for k, v in sd.items()}, str(d / WEIGHTS), metadata={"format": "pt"})
        dirs.append(d)
    return base, dirs


def run_child(mode, method, models, base, out, chunk_mb):
    arg = {"mode": mode, "method": method, "models": [str(m) for m in models], "base": str(base) if base else None,
           "out": str(out), "chunk_mb": chunk_mb, "kw": KW[method]}
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(arg)], capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    if r.returncode:
        raise SystemExit(f"{mode} {method} failed:\n{r.stderr[-3000:]}")
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="ViT-B-32",
                    help="open_clip architecture (random init), e.g. clipwb-tiny for a quick run")
    ap.add_argument("--n", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--methods", nargs="+", default=["linear", "task_arithmetic", "ties"])
    ap.add_argument("--chunk-mb", type=float, default=64)
    ap.add_argument("--workdir", default=None, help="folder for the models (default: a new temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the model files")
    ap.add_argument("--no-in-memory", action="store_true", help="skip the in-memory reference row")
    a = ap.parse_args()

    root = Path(a.workdir or tempfile.mkdtemp(prefix="bench_merge_"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        base, dirs = make_models(a.arch, max(a.n), root)
        size = (base / "open_clip_model.safetensors").stat().st_size
        print(f"{a.arch}: one model = {size / 2**20:.0f} MiB; {max(a.n) + 1} model files written in "
              f"{time.perf_counter() - t:.0f} s; chunk_mb={a.chunk_mb}")
        print(f"{'mode':10s} {'method':16s} {'N':>3s} {'extra peak MiB':>15s} {'ratio':>7s} {'seconds':>8s}")
        rows = []
        for n in a.n:
            for m in a.methods:
                b = base if m in ("task_arithmetic", "ties") else None
                modes = ["stream"] + (["in-memory"] if n == min(a.n) and not a.no_in_memory else [])
                for mode in modes:
                    r = run_child(mode, m, dirs[:n], b, root / "out", a.chunk_mb)
                    extra = r["peak"] - r["baseline"]
                    rows.append({"mode": mode, "method": m, "n": n, "extra": extra, "ratio": extra / size, **r})
                    print(f"{mode:10s} {m:16s} {n:3d} {extra / 2**20:15.0f} {extra / size:7.2f} {r['seconds']:8.1f}",
                          flush=True)
        worst = max(r["ratio"] for r in rows if r["mode"] == "stream")
        print(f"worst streamed ratio {worst:.2f} (target ≤ 1.5)")
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
