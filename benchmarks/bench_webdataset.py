"""Webdataset at scale: time to the first batch, first open (index built) vs cached, and memory vs dataset size.

    python benchmarks/bench_webdataset.py [--shards 200] [--per-shard 1000] [--dir /tmp/clipwb-bench-wds]

Writes `--shards` synthetic shards of `--per-shard` tiny 8×8 PNG samples (once; reused), then in
fresh subprocesses (so caches and memory start clean) measures:
  first open   index every shard (cold index cache) + the first batch of a loader
  cached open  the same with the cached offset indexes: only each index's header is read
and the peak RSS of a cached open + first batch for two dataset sizes (a quarter of the shards
and all of them): opening must not hold anything per sample, so the two peaks should be close.
Target: cached open to the first batch ≤ 1 s on 2 cores.
"""
import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path


def write_shards(folder: Path, shards: int, per: int):
    import numpy as np
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pngs = []
    for c in range(16):   # a few distinct images, reused: generation stays fast
        b = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(b, "PNG")
        pngs.append(b.getvalue())
    for s in range(shards):
        p = folder / f"{s:05d}.tar"
        if p.exists(): continue
        with tarfile.open(p.with_suffix(".tmp"), "w") as tf:
            for j in range(per):
                key = f"{s:05d}{j:04d}"
                for name, data in ((f"{key}.png", pngs[j % 16]), (f"{key}.txt", f"sample {j} of shard {s}".encode()),
                                   (f"{key}.json", json.dumps({"shard": s}).encode())):
                    ti = tarfile.TarInfo(name); ti.size = len(data); tf.addfile(ti, io.BytesIO(data))
        p.with_suffix(".tmp").rename(p)


CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from clipwb.data.webdataset import WebDataset
from clipwb.data.datasets import make_loader
import torchvision.transforms as T
t_import = time.perf_counter() - t0
rss0 = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize() / 2**20
t0 = time.perf_counter()
ds = WebDataset(sys.argv[1])
t_open = time.perf_counter() - t0
b = next(iter(make_loader(ds, preprocess=T.ToTensor(), batch_size=256)))
t_first = time.perf_counter() - t0
print(json.dumps({"n": len(ds), "open_s": t_open, "first_batch_s": t_first, "import_s": t_import,
                  "batch": len(b["id"]), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_after_import_mb": rss0}))
"""


def child(pattern: str, cache: str) -> dict:
    env = {**os.environ, "CLIPWB_CACHE": cache}
    r = subprocess.run([sys.executable, "-c", CHILD, pattern], capture_output=True, text=True, env=env, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", type=int, default=200)
    ap.add_argument("--per-shard", type=int, default=1000)
    ap.add_argument("--dir", default="/tmp/clipwb-bench-wds")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    folder = Path(a.dir) / f"{a.shards}x{a.per_shard}"
    t0 = time.perf_counter(); write_shards(folder, a.shards, a.per_shard)
    print(f"{a.shards} shards x {a.per_shard} samples in {folder} "
          f"(written/checked in {time.perf_counter() - t0:.1f} s)")
    last = a.shards - 1
    quarter = max(a.shards // 4, 1) - 1
    with tempfile.TemporaryDirectory() as cache:
        first = child(f"{folder}/{{00000..{last:05d}}}.tar", cache)
        cached = [child(f"{folder}/{{00000..{last:05d}}}.tar", cache) for _ in range(a.repeats)]
        small = child(f"{folder}/{{00000..{quarter:05d}}}.tar", cache)
    best = min(cached, key=lambda r: r["first_batch_s"])
    print(f"  first open  (index built):  open {first['open_s']:7.2f} s, "
          f"first batch after {first['first_batch_s']:7.2f} s  (n = {first['n']})")
    print(f"  cached open (best of {a.repeats}):   open {best['open_s']:7.2f} s, "
          f"first batch after {best['first_batch_s']:7.2f} s"
          f"   (target <= 1 s; import of clipwb/torch not counted: {best['import_s']:.1f} s)")
    print(f"  first / cached time to first batch = {first['first_batch_s'] / best['first_batch_s']:.1f}x")
    print(f"  peak RSS, cached open + first batch: {small['peak_rss_mb']:.0f} MB at n = {small['n']}, "
          f"{best['peak_rss_mb']:.0f} MB at n = {best['n']}  (ratio {best['peak_rss_mb'] / small['peak_rss_mb']:.2f}"
          f" for {best['n'] / small['n']:.0f}x the samples)")
    print(f"  growth over the RSS after imports: {small['peak_rss_mb'] - small['rss_after_import_mb']:.0f} MB "
          f"at n = {small['n']}, "
          f"{best['peak_rss_mb'] - best['rss_after_import_mb']:.0f} MB at n = {best['n']}")


if __name__ == "__main__":
    sys.exit(main())
