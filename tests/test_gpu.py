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
