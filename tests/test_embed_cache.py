"""The decoded-image cache of the embed stage: identical embeddings, images decoded once, failures still reported."""
import numpy as np
import pytest

from clipwb.core import DataError
from clipwb.data.datasets import load_dataset
from clipwb.encode import encode_dataset, split_preprocess
from clipwb.models import create_model_and_transforms, get_tokenizer


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPWB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cached_decode_gives_identical_embeddings_and_decodes_once(cache):
    import torch
    torch.manual_seed(0)
    model, _, pre = create_model_and_transforms("clipwb-micro")
    tok = get_tokenizer("clipwb-micro")
    ds = load_dataset("shapes", "train", limit=40)
    bad_row = 7
    real = type(ds).load_image
    calls = []

    def load(self, i):
        calls.append(i)
        if i == bad_row: raise DataError(f"sample '{self.ids[i]}': cannot decode image (test)")
        return real(self, i)
    type(ds).load_image = load
    try:
        kw = dict(preprocess=pre, tokenizer=tok, batch_size=8, progress=False, indices=range(3, 40))
        plain = encode_dataset(model, ds, cache_decoded=False, **kw)
        first = encode_dataset(model, ds, **kw)
        assert (cache / "decoded").is_dir() and len(list((cache / "decoded").glob("*.npy"))) == 1
        calls.clear()
        again = encode_dataset(model, ds, **kw)
        assert calls == [0], "the second run reads the cached array (only the probe of sample 0 decodes)"
    finally:
        type(ds).load_image = real
    for r in (first, again):
        np.testing.assert_array_equal(r["index"], plain["index"])
        np.testing.assert_array_equal(r["image"], plain["image"])   # ToTensor + Normalize, same arithmetic
        np.testing.assert_array_equal(r["text"], plain["text"])
        assert [s["id"] for s in r["skipped"]] == [s["id"] for s in plain["skipped"]] == [ds.ids[bad_row]]
    assert split_preprocess(pre) is not None and split_preprocess(lambda im: im) is None
