"""Webdataset at scale: a cached per-shard offset index, lazy opening, per-worker shard splitting, and every refused
or unreadable sample reported by the embed stage (metrics, manifest, log)."""
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

import clipwb.data.readers as rd
import clipwb.data.webdataset as wd
from clipwb.data.datasets import make_loader, shard_batches
from clipwb.data.webdataset import WebDataset
from clipwb.testing import synthetic_pairs, write_tar_shard


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPWB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _shards(folder, n_shards=4, per=5, seed=0):
    ps = synthetic_pairs(n_shards * per, seed=seed)
    for k in range(n_shards):
        write_tar_shard(ps[k * per:(k + 1) * per], Path(folder) / f"{k:05d}.tar")
    return ps


def _count_builds(monkeypatch):
    calls = []
    real = wd.build_shard_index
    monkeypatch.setattr(wd, "build_shard_index", lambda *a, **k: calls.append(a[0].name) or real(*a, **k))
    return calls


def test_index_is_built_once_cached_and_opening_reads_no_sample(tmp_path, cache, monkeypatch):
    ps = _shards(tmp_path / "wds")
    builds = _count_builds(monkeypatch)
    WebDataset(tmp_path / "wds", label_names=["shape"])   # the first open builds every shard's index
    assert (sorted(builds) == [f"{k:05d}.tar" for k in range(4)]
            and len(list((cache / "webdataset_index").glob("*.jsonl"))) == 4)
    builds.clear()
    rows_read = []
    real = wd.shard_index
    monkeypatch.setattr(wd, "shard_index", lambda s, **k: rows_read.append(k.get("rows", True)) or real(s, **k))
    ds = WebDataset(tmp_path / "wds", label_names=["shape"])
    assert builds == [] and rows_read == [False] * 4, "a cached open reads each index's header only"
    assert len(ds) == 20 and ds._cache == {}
    # lazy columns give what the eager reader gave
    assert list(ds.ids) == [p.id for p in ps] and list(ds.captions) == [p.caption for p in ps]
    assert ds.ids[7] == ps[7].id and ds.captions[-1] == ps[-1].caption and ds.ids[2:4] == [ps[2].id, ps[3].id]
    assert [ds.classnames("shape")[j] for j in ds.targets("shape")] == [p.extra["shape"] for p in ps]
    for i in (0, 9, 19): assert list(ds[i].image.getdata()) == list(ps[i].image.getdata())
    assert ds[13].extra == {"shape": ps[13].extra["shape"]} and ds.all_captions(3) == [ps[3].caption]
    assert len(WebDataset(tmp_path / "wds", limit=7)) == 7 and WebDataset(tmp_path / "wds", limit=7).ids[-1] == ps[6].id


def test_a_rewritten_shard_is_reindexed(tmp_path, cache, monkeypatch):
    _shards(tmp_path / "wds", n_shards=2)
    WebDataset(tmp_path / "wds")
    builds = _count_builds(monkeypatch)
    new = synthetic_pairs(3, seed=9)
    write_tar_shard(new, tmp_path / "wds" / "00001.tar")
    st = (tmp_path / "wds" / "00001.tar").stat()
    os.utime(tmp_path / "wds" / "00001.tar", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    ds = WebDataset(tmp_path / "wds")
    assert builds == ["00001.tar"] and len(ds) == 5 + 3 and list(ds.ids)[5:] == [p.id for p in new]


def test_truncated_and_unsafe_members_are_kept_out_with_shard_and_member(tmp_path, cache):
    ps = _shards(tmp_path / "wds", n_shards=1, per=6)
    src = (tmp_path / "wds" / "00000.tar").read_bytes()
    with tarfile.open(tmp_path / "wds" / "00000.tar") as tf: ms = tf.getmembers()
    cut = ms[3 * 3]   # the 4th sample's png
    (tmp_path / "wds" / "00000.tar").write_bytes(src[:cut.offset_data + cut.size // 2])
    with tarfile.open(tmp_path / "wds" / "00001.tar", "w") as tf:
        for name, data in (("../up.png", b"x"), ("../up.txt", b"escaped"), ("ok.png", src[:0] + _png()),
                           ("ok.txt", b"fine")):
            ti = tarfile.TarInfo(name); ti.size = len(data); tf.addfile(ti, io.BytesIO(data))
    ds = WebDataset(tmp_path / "wds")
    assert list(ds.ids) == [p.id for p in ps[:3]] + ["ok"]
    kinds = {rd.skip_kind(s): s for s in ds.skipped}
    assert set(kinds) == {"truncated_tar", "unsafe_member"}
    assert kinds["truncated_tar"]["shard"] == "00000.tar" and kinds["truncated_tar"]["member"] == f"{ps[3].id}.png"
    assert sorted(s["member"] for s in ds.skipped if rd.skip_kind(s) == "unsafe_member") == ["../up.png", "../up.txt"]


def _png():
    from PIL import Image
    b = io.BytesIO(); Image.new("RGB", (8, 8), (200, 10, 10)).save(b, "PNG"); return b.getvalue()


def test_shard_batches_give_each_worker_its_own_shards(tmp_path, cache):
    _shards(tmp_path / "wds", n_shards=5, per=4)
    ds = WebDataset(tmp_path / "wds")
    batches = shard_batches(ds, range(len(ds)), 3, 2)
    assert sorted(i for b in batches for i in b) == list(range(20))
    for j, b in enumerate(batches):   # batch j goes to worker j % 2, which owns shards j % 2, j % 2 + 2, ...
        assert {ds.shard_of(i) % 2 for i in b} == {j % 2}
    import torch

    def worker_id(im):
        info = torch.utils.data.get_worker_info()
        return torch.full((1,), info.id)
    seen = {}
    for b in make_loader(ds, preprocess=worker_id, batch_size=3, num_workers=2):
        for i, w in zip(b["index"].tolist(), b["image"][:, 0].tolist()): seen[i] = int(w)
    assert sorted(seen) == list(range(20))
    assert all(seen[i] == ds.shard_of(i) % 2 for i in seen), "worker w reads only shards w::2"


def test_embed_reports_every_refused_and_unreadable_sample(tmp_path, cache, caplog):
    from clipwb.embed import embed_to_shards
    from clipwb.models import create_model_and_transforms, get_tokenizer
    ps = _shards(tmp_path / "wds", n_shards=1, per=6)
    src = (tmp_path / "wds" / "00000.tar").read_bytes()
    with tarfile.open(tmp_path / "wds" / "00000.tar") as tf: ms = tf.getmembers()
    (tmp_path / "wds" / "00000.tar").write_bytes(src[:ms[12].offset_data + 3])   # 5th sample's png cut
    with tarfile.open(tmp_path / "wds" / "00001.tar", "w") as tf:
        for name, data in (("../a.png", _png()), ("../a.txt", b"escaped"), ("bad.png", b"\x89PNG broken"),
                           ("bad.txt", b"corrupt")):
            ti = tarfile.TarInfo(name); ti.size = len(data); tf.addfile(ti, io.BytesIO(data))
    ds = WebDataset(tmp_path / "wds")
    model, _, pre = create_model_and_transforms("clipwb-micro")
    with caplog.at_level("WARNING", logger="clipwb"):   # another test module quiets the clipwb logger
        man = embed_to_shards(model, ds, tmp_path / "emb", preprocess=pre, tokenizer=get_tokenizer("clipwb-micro"),
                              shard_size=4, batch_size=2, progress=False)
    assert (man["n_embedded"], man["n_skipped"], man["n_index_skipped"]) == (4, 1, 3)
    assert man["skipped_by_reason"] == {"truncated_tar": 1, "undecodable_image": 1, "unsafe_member": 2}
    on_disk = json.loads((tmp_path / "emb" / "manifest.json").read_text())
    assert {(s["shard"], s.get("member")) for s in on_disk["index_skipped"] + on_disk["skipped"]} == {
        ("00000.tar", f"{ps[4].id}.png"), ("00001.tar", "../a.png"), ("00001.tar", "../a.txt"),
        ("00001.tar", "bad.png")}
    text = caplog.text
    assert "1 truncated_tar (00000.tar:" in text and "2 unsafe_member (00001.tar:../a.png" in text
    assert "1 undecodable_image (00001.tar:bad.png)" in text


def test_image_only_embedding_keeps_caption_less_samples(tmp_path, cache):
    from clipwb.embed import embed_to_shards
    from clipwb.io import load_embeddings
    from clipwb.models import create_model_and_transforms
    with tarfile.open(tmp_path / "00000.tar", "w") as tf:
        for k in range(5):
            ti = tarfile.TarInfo(f"img{k}.png"); data = _png(); ti.size = len(data); tf.addfile(ti, io.BytesIO(data))
    assert len(WebDataset(tmp_path / "00000.tar")) == 0
    ds = WebDataset(tmp_path / "00000.tar", require_caption=False)
    model, _, pre = create_model_and_transforms("clipwb-micro")
    man = embed_to_shards(model, ds, tmp_path / "emb", preprocess=pre, tokenizer=None, shard_size=3, batch_size=2,
                          progress=False, modality="image")
    img, txt, meta = load_embeddings(tmp_path / "emb")
    assert man["n_embedded"] == 5 and img.shape == (5, man["dim"]) and txt.shape == (5, 0)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1, rtol=2e-3)


@pytest.mark.e2e
def test_embed_stage_reports_lost_samples_end_to_end(tmp_path, monkeypatch):
    """`clipwb run embed` on a user card (via $CLIPWB_CARDS) over a truncated tar and unsafe members."""
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    from e2e_helpers import run
    wds = tmp_path / "wds"
    ps = _shards(wds, n_shards=2, per=5)
    src = (wds / "00001.tar").read_bytes()
    with tarfile.open(wds / "00001.tar") as tf: ms = tf.getmembers()
    (wds / "00001.tar").write_bytes(src[:ms[6].offset_data + 2])   # ps[7]'s png is cut: ps[7..9] lost
    with tarfile.open(wds / "00002.tar", "w") as tf:
        for name, data in (("../x.png", _png()), ("../x.txt", b"escaped"), ("ok.png", _png()), ("ok.txt", b"fine")):
            ti = tarfile.TarInfo(name); ti.size = len(data); tf.addfile(ti, io.BytesIO(data))
    cards = tmp_path / "cards"; cards.mkdir()
    (cards / "my_wds.md").write_text(f"""---
id: my_wds
name: a test webdataset
format: webdataset
license: "test data"
source: "written by the test"
path: {wds}
templates: default
tasks: [retrieval]
---
A webdataset with a truncated shard and unsafe member names.
""")
    monkeypatch.setenv("CLIPWB_CARDS", str(cards))
    monkeypatch.setenv("CLIPWB_CACHE", str(tmp_path / "cache"))
    out = run("embed", tmp_path / "runs", data="my_wds", split="none", limit="none", shard_size=4, batch_size=4)
    m, rd_ = out["metrics"], Path(out["run_dir"])
    assert (m["n_embedded"], m["n_index_skipped"]) == (5 + 2 + 1, 3)
    assert (m["skipped/truncated_tar"], m["skipped/unsafe_member"]) == (1, 2)
    man = json.loads((rd_ / "embeddings" / "manifest.json").read_text())
    assert {(s["shard"], s["member"]) for s in man["index_skipped"]} == {
        ("00001.tar", f"{ps[7].id}.png"), ("00002.tar", "../x.png"), ("00002.tar", "../x.txt")}
    log = (rd_ / "embed.ipynb").read_text()
    assert "1 truncated_tar (00001.tar:" in log and "2 unsafe_member (00002.tar:../x.png, 00002.tar:../x.txt)" in log


def test_training_on_shards_reads_each_workers_own_shards(tmp_path, cache, monkeypatch):
    """The train stage on a webdataset with 2 workers: shard-by-shard epochs; each real loader worker reads whole
    shards."""
    import torch
    from clipwb.core import DataError
    from clipwb.data.datasets import load_dataset, shard_epoch_batches
    from clipwb.train import TrainCfg, run_train
    _shards(tmp_path / "wds", n_shards=4, per=8)
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "toywds.md").write_text(
        "---\nid: toywds\nname: toy shards\nformat: webdataset\nlicense: CC0-1.0\nsource: clipwb.testing\n"
        f"path: {tmp_path / 'wds'}/{{00000..00003}}.tar\ntasks: [retrieval]\n---\nToy.\n")
    monkeypatch.setenv("CLIPWB_CARDS", str(tmp_path / "cards"))
    ds = load_dataset("toywds")
    batches = shard_epoch_batches(ds, range(len(ds)), 4, num_workers=2, seed=3)
    assert len(batches) == 8 and sorted(i for b in batches for i in b) == list(range(32))

    def worker_id(im):
        return torch.full((1,), torch.utils.data.get_worker_info().id)
    reader = {}
    for b in make_loader(ds, preprocess=worker_id, batch_size=4, num_workers=2, batches=batches):
        for i, w in zip(b["index"].tolist(), b["image"][:, 0].tolist()):
            reader.setdefault(ds.shard_of(i), set()).add(int(w))
    assert all(len(ws) == 1 for ws in reader.values()), f"a shard read by two workers: {reader}"
    assert sorted(w for ws in reader.values() for w in ws) == [0, 0, 1, 1], "two whole shards per worker"
    assert batches != shard_epoch_batches(ds, range(len(ds)), 4, num_workers=2, seed=4)   # the next epoch's order
    cfg = dict(data="toywds", model="clipwb-micro", batch_size=4, max_steps=3, data_limit=None, warmup=1)
    m = run_train(TrainCfg(**cfg, num_workers=2), tmp_path / "run").metrics
    assert (m["data_order"], m["steps"], m["n_samples"]) == ("shards", 3, 32)
    assert run_train(TrainCfg(**cfg), tmp_path / "run0").metrics["data_order"] == "samples"
    # the worker count fixes a shard-by-shard batch order: a checkpoint is not continued under another count …
    from clipwb.core import ConfigError
    with pytest.raises(ConfigError, match="num_workers"):
        run_train(TrainCfg(**cfg, num_workers=0), tmp_path / "run")
    with pytest.raises(ConfigError, match="num_workers"):
        run_train(TrainCfg(**cfg, num_workers=2), tmp_path / "run0")
    # … while in sample order (here 1 worker) it changes nothing and stays free
    assert run_train(TrainCfg(**cfg, num_workers=1), tmp_path / "run0").metrics["data_order"] == "samples"
    with pytest.raises(DataError, match="shard_shuffle needs sharded data"):
        run_train(TrainCfg(**{**cfg, "data": "shapes"}, shard_shuffle=True), tmp_path / "run1")
