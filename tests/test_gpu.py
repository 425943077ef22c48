"""GPU checks (run on a GPU node: `pytest -m gpu`); deselected by default and skipped without CUDA."""
import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_embeddings_match_cpu():
    """The same model and samples give the same embeddings on CUDA as on CPU (fp32, tolerance of TF32 matmuls)."""
    from clipwb.data.readers import MemoryDataset
    from clipwb.encode import encode_dataset
    from clipwb.models import create_model_and_transforms, get_tokenizer
    from clipwb.testing import synthetic_pairs
    model, _, pre = create_model_and_transforms("clipwb-tiny")
    tok, ds = get_tokenizer("clipwb-tiny"), MemoryDataset(synthetic_pairs(24, size=64))
    cpu = encode_dataset(model, ds, preprocess=pre, tokenizer=tok, batch_size=8, device="cpu", progress=False)
    gpu = encode_dataset(model, ds, preprocess=pre, tokenizer=tok, batch_size=8, device="cuda", progress=False)
    np.testing.assert_allclose(gpu["image"], cpu["image"], atol=5e-3)
    np.testing.assert_allclose(gpu["text"], cpu["text"], atol=5e-3)


@pytest.mark.parametrize("precision", ["fp32", "amp_bf16"])
def test_train_on_cuda(tmp_path, precision):
    """A few CUDA training steps reduce the loss and write a model open_clip loads."""
    import open_clip
    from clipwb.train import TrainCfg, run_train
    res = run_train(TrainCfg(model="clipwb-tiny", max_steps=30, epochs=5, batch_size=64, lr=1e-3, warmup=3,
                             data_limit=None, device="cuda", precision=precision), tmp_path)
    assert res.metrics["steps"] == 30 and res.metrics["final_loss"] < np.log(64)
    open_clip.create_model(f"local-dir:{tmp_path}/model")


def _faiss_gpu():
    import faiss    # a hard dependency (faiss-cpu); only its GPU build is optional
    if not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() == 0:
        pytest.skip("faiss sees no GPU (install the gpu extra: faiss-gpu-cu12)")
    return faiss


def test_faiss_kmeans_gpu_matches_cpu():
    """The `kmeans` clusterer on faiss's GPU index gives the CPU result up to float error."""
    _faiss_gpu()
    from sklearn.metrics import adjusted_rand_score
    from clipwb.cluster import fit_clusters
    from clipwb.testing import random_embeddings
    x, _ = random_embeddings(4000, 32, k=8, seed=0, spread=0.3)
    cpu = fit_clusters(x, "kmeans", k=8, seed=0, gpu=False)
    gpu = fit_clusters(x, "kmeans", k=8, seed=0, gpu=True)
    assert adjusted_rand_score(cpu.labels, gpu.labels) > 0.99
    assert abs(gpu.objective - cpu.objective) <= 1e-3 * cpu.objective


def test_knn_graph_gpu_matches_cpu():
    """faiss's GPU flat search finds the CPU neighbours (distances within float error; ties may swap ids)."""
    _faiss_gpu()
    from clipwb.testing import random_embeddings
    from clipwb.cluster.map import knn_graph
    x, _ = random_embeddings(3000, 64, k=10, seed=1, spread=0.8)
    ci, cd = knn_graph(x, n_neighbors=15, gpu=False)
    gi, gd = knn_graph(x, n_neighbors=15, gpu=True)
    np.testing.assert_allclose(gd, cd, atol=1e-4)
    assert (gi[:, 0] == np.arange(len(x))).all() and (gi == ci).mean() > 0.99


def _rel(a, b) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


@pytest.mark.parametrize("mode", ["amp_bf16", "bf16"])
def test_moe_grouped_bf16_matches_loop(mode):
    """MoE layer forward + backward in bf16 (under autocast with fp32 weights, or with bf16 weights): the grouped_mm
    path runs (no fallback, no warning) and equals the expert loop up to bf16 rounding. Tolerances: relative L2 error
    ≤ 2e-2 for the output and ≤ 3e-2 for every gradient (bf16 keeps 8 mantissa bits: 2⁻⁸ ≈ 4e-3 per rounding; the
    paths round in different places, the grouped one adds the bias after rounding the product; on CPU the same check
    measures 5e-3 and 6e-3). A wrong expert, weight or permutation gives errors of order 1."""
    import copy
    import warnings
    from torch import nn
    from clipwb.models.moe import MoEMLP
    torch.manual_seed(0)
    d, E, T = 256, 8, 2048
    m = MoEMLP(d, 4 * d, E, top_k=2, dispatch="grouped").cuda()
    nn.init.normal_(m.router.weight, std=1.0)   # spread the tokens over the experts
    if mode == "bf16": m.to(torch.bfloat16)
    loop = copy.deepcopy(m); loop.dispatch = "loop"
    h = torch.randn(T, d, device="cuda", dtype=torch.bfloat16 if mode == "bf16" else torch.float32)
    outs = {}
    for name, mod in (("grouped", m), ("loop", loop)):
        x = h.clone().requires_grad_(True)
        with warnings.catch_warnings(record=True) as rec, torch.autocast("cuda", torch.bfloat16,
                                                                         enabled=mode == "amp_bf16"):
            warnings.simplefilter("always")
            y = mod(x)
        assert not [w for w in rec if "fell back" in str(w.message)], [str(w.message) for w in rec]
        (y.float() * torch.linspace(-1, 1, d, device="cuda")).sum().backward()
        outs[name] = (y, x.grad, {n: p.grad for n, p in mod.named_parameters() if p.grad is not None})
    assert m.path == "grouped" and m.fallback is None and loop.path == "loop"
    (y, gx, gp), (yl, gxl, gpl) = outs["grouped"], outs["loop"]
    assert y.dtype == yl.dtype == torch.bfloat16
    assert _rel(y, yl) <= 2e-2
    assert _rel(gx, gxl) <= 3e-2
    assert set(gp) == set(gpl) and len(gp) == 4 * E + 1
    for n in gp: assert _rel(gp[n], gpl[n]) <= 3e-2, n


def test_moe_train_amp_bf16_takes_the_grouped_path(tmp_path):
    """A few amp_bf16 training steps of a tiny MoE model on CUDA: the run's metrics record the grouped path."""
    from clipwb.models import create_model, save_model
    from clipwb.moe.build import upcycle
    from clipwb.train import TrainCfg, run_train
    d = save_model(upcycle(create_model("clipwb-tiny"), 4, top_k=2), tmp_path / "moe")
    res = run_train(TrainCfg(model=str(d), max_steps=5, batch_size=32, lr=1e-3, warmup=1, data_limit=None,
                             device="cuda", precision="amp_bf16", moe_beta=0.01), tmp_path / "run")
    assert res.metrics["moe/dispatch"].startswith("grouped (") and "fallback" not in res.metrics["moe/dispatch"]
