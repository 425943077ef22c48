"""The two cases a user reported as silently wrong, rerun at their sizes through the CLI (`clipwb run embed`).

    python benchmarks/trust_cases.py [--out runs/trust_cases]

1. **Images replaced in place.** A `format: table` card of 200 PNG pairs is embedded; every PNG is then inverted in
   place (same names, ids and card) and the same command is run again. Prints the rerun's exit status and message
   (a data change is refused as stale, no run folder made), then the `--force` rerun's largest difference from an
   embedding made with an empty cache (0 when the decoded-image cache follows the files) and from the first run.
2. **A damaged webdataset.** 1,500 pairs in 75 shards of 20 with `size: 1500` in the card; shard 7 is cut in the
   middle of its 11th sample, one image is corrupt, one sample's members are named `../<key>`. Prints the embed
   stage's sample accounts: expected = embedded + lost, and the lost samples by reason.

Everything is written under `--out` (removed first); the cache, cards and runs root are private to it.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from clipwb.testing import synthetic_pairs, write_table, write_tar_shard

ROOT = Path(__file__).resolve().parents[1]
CARD = "---\nid: {id}\nname: {id}\nformat: {fmt}\nlicense: test\nsource: benchmarks/trust_cases.py\npath: {path}\n" \
       "{extra}tasks: [retrieval]\n---\nA copy made by benchmarks/trust_cases.py.\n"


def clipwb(env: dict, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clipwb", *args], capture_output=True, text=True, env=env)


def embed(env: dict, card: str, *extra) -> tuple[int, dict | None, str]:
    "`clipwb run embed` of every sample of `card` → (exit status, result JSON or None, stderr)."
    r = clipwb(env, "run", "embed", "-p", "data", card, "-p", "model", "clipwb-micro", "-p", "limit", "none",
               "-p", "split", "none", "-p", "device", "cpu", *extra)
    out = json.loads(r.stdout[r.stdout.index("{"):]) if r.returncode == 0 else None
    return r.returncode, out, r.stderr


def vectors(run_dir: str | Path) -> np.ndarray:
    e = Path(run_dir) / "embeddings"
    return np.concatenate([np.load(p) for p in sorted(e.glob("img_emb_*.npy"))]).astype(np.float32)


def in_place(out: Path, env: dict) -> None:
    write_table(synthetic_pairs(200, seed=3), out / "table")
    (out / "cards" / "mytable.md").write_text(CARD.format(id="mytable", fmt="table", path=out / "table" / "pairs.csv",
                                                          extra=""))
    rc, first, _ = embed(env, "mytable")
    assert rc == 0, "the first embed failed"
    for p in sorted((out / "table").rglob("*.png")):
        st = p.stat()
        ImageOps.invert(Image.open(p).convert("RGB")).save(p)
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))   # a later mtime, whatever the clock resolution
    rc, _, err = embed(env, "mytable")
    said = next((line for line in err.splitlines() if "changed on disk" in line), err.strip().splitlines()[-1])
    print(f"1. images replaced in place: rerun exit status {rc}; {said[:300]}")
    print(f"   run folders after the refused rerun: {len(list((out / 'runs' / 'embed').iterdir()))}")
    rc, forced, _ = embed(env, "mytable", "--force")
    fresh_env = {**env, "CLIPWB_CACHE": str(out / "empty-cache"), "CLIPWB_RUNS": str(out / "runs-fresh")}
    rc2, fresh, _ = embed(fresh_env, "mytable")
    a, b, c = vectors(forced["run_dir"]), vectors(fresh["run_dir"]), vectors(first["run_dir"])
    print(f"   --force: max |Δ| to an empty-cache embedding {np.abs(a - b).max():.4g}; "
          f"to the first run (old pixels) {np.abs(a - c).max():.4g}")


def _add(tf, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name); ti.size = len(data); tf.addfile(ti, io.BytesIO(data))


def damaged(out: Path, env: dict) -> None:
    per, shards, cut_shard, cut_at = 20, 75, 7, 10
    ps = synthetic_pairs(per * shards, seed=5)
    folder = out / "wds"; folder.mkdir(parents=True)
    for s in range(shards):
        part, path = ps[s * per:(s + 1) * per], folder / f"{s:05d}.tar"
        if s in (3, 40):   # shard 3: one corrupt image; shard 40: one sample under '../' names
            with tarfile.open(path, "w") as tf:
                for j, p in enumerate(part):
                    b = io.BytesIO(); p.image.save(b, "PNG")
                    pre = "../" if s == 40 and j == 4 else ""
                    _add(tf, f"{pre}{p.id}.png", b"\x89PNG\r\n\x1a\n broken" if s == 3 and j == 7 else b.getvalue())
                    _add(tf, f"{pre}{p.id}.txt", p.caption.encode())
        else: write_tar_shard(part, path)
        if s == cut_shard:   # cut inside the png of sample `cut_at`: it and the ones after it are lost
            with tarfile.open(path) as tf: ms = tf.getmembers()
            path.write_bytes(path.read_bytes()[:ms[3 * cut_at].offset_data + 10])
    (out / "cards" / "damaged.md").write_text(CARD.format(id="damaged", fmt="webdataset", path=folder,
                                                          extra=f"size: {per * shards}\n"))
    rc, res, err = embed(env, "damaged")
    m = json.loads((Path(res["run_dir"]) / "metrics.json").read_text())
    lost = {k[5:]: v for k, v in m.items() if k.startswith("lost/")}
    print(f"2. damaged webdataset (card size {per * shards}; built to lose {per - cut_at} in the cut tail, 1 corrupt, "
          f"1 unsafe): {m['n_expected']} expected = {m['n_embedded']} embedded + {m['n_lost']} lost {lost}")
    nb = (Path(res["run_dir"]) / "embed.ipynb").read_text()   # the stage's log lives in its executed notebook
    line = re.search(r"embed: \d+ expected[^\\\"]*", nb)
    print("   log: " + (line.group(0) if line else "(no accounts line)"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "runs" / "trust_cases"))
    out = Path(ap.parse_args().out).resolve()
    shutil.rmtree(out, ignore_errors=True); (out / "cards").mkdir(parents=True)
    env = {**os.environ, "CLIPWB_CARDS": str(out / "cards"), "CLIPWB_CACHE": str(out / "cache"),
           "CLIPWB_RUNS": str(out / "runs")}
    in_place(out, env)
    damaged(out, env)


if __name__ == "__main__":
    main()
