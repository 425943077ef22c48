"""GPU checks (run on a GPU node: `pytest -m gpu`); deselected by default and skipped without CUDA."""
import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_embeddings_match_cpu():
    """The same model and samples give the same embeddings on CUDA as on CPU (fp32, tolerance of TF32 matmuls)."""
    from clipwb.data.readers import MemoryDataset
    from clipwb.embed import encode_dataset
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
