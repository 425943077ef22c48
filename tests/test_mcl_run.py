"""MCL stage pieces: cross-stage integration against a hand-computed concatenation; trainable presets and the lock rename."""
import numpy as np
import pytest
import torch

from clipwb.core import ConfigError
from clipwb.mcl import ConcatCLIP, MclCfg
from clipwb.models import create_model, freeze_except, get_tokenizer
from clipwb.train import TrainCfg


def _unit(e):
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def test_integration_is_the_normalised_concatenation():
    ms = [create_model("clipwb-micro", seed=s).eval() for s in (3, 4)]
    x = torch.randn(5, 3, 32, 32)
    t = get_tokenizer("clipwb-micro")(["a red star", "a cross", "blue", "x", "y"])
    with torch.no_grad():
        for enc, inp in (("encode_image", x), ("encode_text", t)):
            want = np.concatenate([_unit(getattr(m, enc)(inp).numpy()) for m in ms], 1)
            want = _unit(want)
            np.testing.assert_allclose(getattr(ConcatCLIP(ms), enc)(inp).numpy(), want, atol=1e-5)
    # the similarity of two integrated embeddings is the mean of the members' cosine similarities
    with torch.no_grad():
        a, b = ConcatCLIP(ms).encode_image(x[:1]), ConcatCLIP(ms).encode_text(t[:1])
        cos = [(_unit(m.encode_image(x[:1]).numpy()) @ _unit(m.encode_text(t[:1]).numpy()).T).item() for m in ms]
    assert (a @ b.T).item() == pytest.approx(np.mean(cos), abs=1e-5)


def test_lock_is_refused_with_a_pointer_to_trainable():
    with pytest.raises(ConfigError, match="trainable='mlp'"):
        TrainCfg.validate_params({"lock": "mlp"})
    assert TrainCfg.tiny(trainable="mlp:1").trainable == "mlp:1"


def test_visual_groups_match_open_clip_lock_image():
    m = create_model("clipwb-micro")
    for n in (1, 2, 3, 4):
        m.lock_image_tower(unlocked_groups=n)
        want = sorted(k for k, p in m.named_parameters() if p.requires_grad and k.startswith("visual."))
        assert sorted(freeze_except(m, f"visual:{n}")) == want


def test_mcl_config_checks():
    with pytest.raises(ConfigError, match="one k for both"):
        MclCfg.tiny(k_image=3, k_text=2)
    assert MclCfg.tiny(clustering="image", k_image=10).k_stage == 10
