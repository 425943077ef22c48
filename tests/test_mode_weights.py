"""MoDE ensemble weights against a written-out loop with torch.cdist (the paper's code path), and the encoder
registry."""
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def loop_weights(e, F, h, K, s0=5.0, tau=8.0, T=200):
    """Independent oracle: one class at a time, torch.cdist distances, Python sums."""
    import torch
    n = len(e)
    dist = torch.cdist(torch.tensor(e, dtype=torch.float64), torch.tensor(F, dtype=torch.float64))
    b = math.exp(0.5 - math.sqrt(n)) if n < 10 else 0.0
    m = s0 * math.log10(max(10, n - T))
    S = [0.0] * K
    for c in range(n):
        j = int(dist[c].argmin()); S[int(h[j])] += math.exp(m * (b - float(dist[c, j])))
    z = [math.exp(s / tau - max(S) / tau) for s in S]
    return [v / sum(z) for v in z]


@pytest.mark.parametrize("n", [1, 3, 9, 10, 50, 210, 211, 260])
def test_expert_weights_match_loop(n):
    from clipwb.mode.ensemble import expert_weights
    rng = np.random.default_rng(n)
    F = rng.normal(size=(12, 6)); F /= np.linalg.norm(F, axis=1, keepdims=True)
    h = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]); h[h == 2] = 1         # expert 2 gets no fine cluster
    e = rng.normal(size=(n, 6)); e /= np.linalg.norm(e, axis=1, keepdims=True)
    w = expert_weights(e, F, h, k=3)
    np.testing.assert_allclose(w, loop_weights(e, F, h, 3), rtol=1e-10, atol=1e-12)
    assert abs(w.sum() - 1) < 1e-12
    assert w[2] == min(w) and w[2] > 0                                         # S_2 = 0, still some weight


def test_bonus_and_sharpening_regimes():
    from clipwb.mode.ensemble import expert_weights
    F = np.eye(2); h = np.array([0, 1])
    for n, b, m in [(4, math.exp(0.5 - 2.0), 5.0), (100, 0.0, 5.0), (1200, 0.0, 15.0)]:
        _, t = expert_weights(np.tile([[1.0, 0.0]], (n, 1)), F, h, return_terms=True)
        assert t["b"] == pytest.approx(b) and t["m"] == pytest.approx(m)
        assert t["S"][0] == pytest.approx(n * math.exp(m * b)) and t["S"][1] == 0


def test_text_encoders_registry_matches_notebooks():
    from clipwb.mode.captions import TEXT_ENCODERS
    found = set()
    for nb in sorted((ROOT / "nbs").glob("*.ipynb")):
        for c in json.loads(nb.read_text())["cells"]:
            src = "".join(c["source"])
            if c["cell_type"] == "code" and re.match(r"#\|\s*export", src):
                found |= set(re.findall(r"@TEXT_ENCODERS\.register\(\s*[\"']([\w.-]+)[\"']", src))
    assert set(TEXT_ENCODERS.names()) == found == {"minilm", "clip", "simcse"}


@pytest.mark.parametrize("name,kw", [("minilm", {}), ("clip", {"model": "clipwb-micro"})])
def test_text_encoder_contract(name, kw):
    """Unit rows, the announced dim and key, deterministic, empty input."""
    from clipwb.mode.captions import encoder_key, caption_encoder
    enc = caption_encoder(name, **kw)
    a, b = (enc.encode(["a red circle", "a blue star", "grinning face"]),
            enc.encode(["a red circle", "a blue star", "grinning face"]))
    assert a.shape == (3, enc.dim) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(a, b)
    assert enc.key == encoder_key(name, **kw) and enc.encode([]).shape == (0, enc.dim)


def test_minilm_offline(monkeypatch):
    """The default encoder loads with the hub unreachable."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1"); monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    from clipwb.mode.captions import caption_encoder
    assert caption_encoder("minilm").dim == 384


def test_simcse_missing_weights_named(monkeypatch):
    from clipwb.core import ConfigError
    from clipwb.mode.captions import caption_encoder
    monkeypatch.setenv("HF_HUB_OFFLINE", "1"); monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    monkeypatch.delenv("CLIPWB_SIMCSE", raising=False)
    with pytest.raises(ConfigError, match="princeton-nlp/sup-simcse-bert-base-uncased"):
        caption_encoder("simcse")


def test_mode_clusters_fit_at_most_stream_sample_rows(tmp_path, monkeypatch):
    """fraction=None fits the fine clusters on all captions up to STREAM_SAMPLE (clipwb.cluster.stream), a sample
    beyond."""
    import shutil
    import clipwb.mode.experts as mx
    from clipwb.embed import EmbedCfg, run_embed
    from clipwb.mode.experts import mode_clusters
    run_embed(EmbedCfg(limit=40, shard_size=16), tmp_path / "emb")
    every = mode_clusters(tmp_path / "emb", k=2, k_fine=4, progress=False)
    assert (every.info["n_fine_points"], every.info["n_points"], every.info["fraction"]) == (40, 40, "auto")
    monkeypatch.setattr(mx, "STREAM_SAMPLE", 20)   # the name mode_clusters reads
    shutil.rmtree(every.folder)
    capped = mode_clusters(tmp_path / "emb", k=2, k_fine=4, progress=False)
    assert (capped.info["n_fine_points"], capped.info["n_points"]) == (20, 40), "every pair is still assigned"
    assert mode_clusters(tmp_path / "emb", k=2, k_fine=4, fraction=1.0, progress=False).info["n_fine_points"] == 40
