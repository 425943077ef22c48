"""Shapes cards: every factor's class names are caption words; the suppress card names every factor in every caption."""
import re

import pytest

from clipwb.data.datasets import load_dataset
from clipwb.data.shapes import POSITION_WORDS


@pytest.mark.parametrize("card", ["shapes", "shapes-suppress"])
def test_class_names_occur_in_captions(card):
    ds = load_dataset(card, "train", limit=1500)
    for k in ds.label_names():
        values = [ds.classnames(k)[t] for t in ds.targets(k)]
        for name in ds.classnames(k):
            caps = [c for c, v in zip(ds.captions, values) if v == name]
            assert caps, f"{card}: no sample of {k}={name}"
            assert any(re.search(rf"\b{re.escape(name)}\b", c) for c in caps), (
                f"{card}: {k} class {name!r} is never a caption word")


def test_suppress_captions_name_every_factor():
    ds = load_dataset("shapes-suppress", "test")
    names = {k: [ds.classnames(k)[t] for t in ds.targets(k)] for k in ds.label_names()}
    for i, cap in enumerate(ds.captions):
        for k in ds.label_names():
            v = names[k][i]
            assert (POSITION_WORDS[v] if k == "position" else v) in cap, (cap, k, v)
    assert len(set(zip(ds.targets("colour"), ds.targets("background")))) > 100
