"""MoDE's released ensemble: synthetic expert checkpoints and cluster files in MetaCLIP's `mode` layout, imported as
clipwb model folders and a `ModeClusters`; the ensemble weights checked against the release's formula computed here
from the raw files."""
import math

import numpy as np
import pytest
import torch

from clipwb.core import DataError
from clipwb.mode.ensemble import expert_weights
from clipwb.mode.release import EXPERT_CHECKPOINT, import_mode_release, mode_release_experts, read_mode_centres
from clipwb.models import create_model


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mode_release")
    models = [create_model("clipwb-micro", seed=10 + i) for i in range(3)]
    for i, m in enumerate(models):
        p = tmp / "out" / EXPERT_CHECKPOINT.format(i=i); p.parent.mkdir(parents=True)
        pre = "_orig_mod.module." if i == 2 else "module."   # DDP, and DDP under torch.compile
        torch.save({"step": 100, "state_dict": {pre + k: v for k, v in m.state_dict().items()},
                    "optimizer": {"state": {}, "param_groups": [{"lr": 5e-4, "params": [0, 1]}]}}, p)
    g = torch.Generator().manual_seed(3)
    fine = torch.nn.functional.normalize(torch.randn(10, 16, generator=g), dim=-1)
    assign = torch.tensor([2, 0, 1, 1, 2, 0, 0, 2, 1, 2])
    cdir = tmp / "cluster_center" / "euclidean"; cdir.mkdir(parents=True)
    torch.save({"center": fine}, cdir / "F10.pth")
    torch.save({"coarse": torch.randn(3, 16, generator=g), "assign": assign}, cdir / "F10-C3.pth")
    return tmp, models, fine, assign, cdir


def release_weights(task, fine, assign, s0=5.0, tau=8.0, T=200):
    "The release's ensemble weights, from its description: nearest fine centre per class, grouped by expert."
    dist, near = torch.cdist(torch.as_tensor(task, dtype=torch.float64), fine.double()).min(-1)
    n = len(task)
    add = math.exp(0.5 - math.sqrt(n)) if n < 10 else 0.0
    mul = s0 * math.log10(max(10, n - T))
    s = np.zeros(int(assign.max()) + 1)
    for d, a in zip(dist.tolist(), near.tolist()): s[int(assign[a])] += math.exp((add - d) * mul)
    e = np.exp(s / tau - (s / tau).max())
    return e / e.sum()


def test_imported_release_is_the_ensemble(release, tmp_path):
    tmp, models, fine, assign, cdir = release
    dirs, mc = import_mode_release(tmp / "out", cdir, tmp_path / "imp", model="clipwb-micro")
    assert (mc.k, mc.k_fine) == (3, 10) and mc.info["encoder_name"] == "simcse"
    assert np.array_equal(mc.fine_centres, fine.numpy()) and mc.fine_to_coarse.tolist() == assign.tolist()
    for d, m in zip(dirs, models):   # expert i is checkpoint i, to the bit
        a, b = create_model(d).state_dict(), m.state_dict()
        assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    g = torch.Generator().manual_seed(5)
    for n in (3, 12):   # fewer and more than 10 classes (the additive sharpening term is on for n < 10)
        task = torch.nn.functional.normalize(fine[torch.randint(0, 10, (n,), generator=g)]
                                             + 0.3 * torch.randn(n, 16, generator=g), dim=-1).numpy()
        got = expert_weights(task, mc.fine_centres, mc.fine_to_coarse, k=mc.k)
        assert np.allclose(got, release_weights(task, fine, assign), atol=1e-9)
    near = fine[assign == 1][:2].numpy()   # classes at expert 1's fine centres weigh expert 1 most
    assert expert_weights(near, mc.fine_centres, mc.fine_to_coarse, k=mc.k).argmax() == 1


def test_release_layout_errors(release, tmp_path):
    tmp, models, fine, assign, cdir = release
    bad = tmp_path / "bad.pt"
    sd = {k: v for k, v in models[0].state_dict().items() if k != "ln_final.bias"}
    torch.save({"state_dict": sd}, bad)
    with pytest.raises(DataError, match=r"missing keys \['ln_final.bias'\]"):
        import_mode_release([bad, bad, bad], cdir, tmp_path / "x", model="clipwb-micro")
    with pytest.raises(DataError, match="2 expert checkpoints for 3 coarse"):
        import_mode_release(mode_release_experts(tmp / "out")[:2], cdir, tmp_path / "x", model="clipwb-micro")
    two = tmp_path / "two"; two.mkdir()
    for f in ("F10.pth", "F10-C3.pth"): (two / f).write_bytes((cdir / f).read_bytes())
    torch.save({"coarse": torch.randn(2, 16), "assign": torch.zeros(9, dtype=torch.long)}, two / "F10-C2.pth")
    with pytest.raises(DataError, match="several"): read_mode_centres(two)
    assert read_mode_centres(two, k=3)["fine_to_coarse"].tolist() == assign.tolist()
    with pytest.raises(DataError, match="'assign' must give each of the 10 fine clusters"): read_mode_centres(two, k=2)
    torch.save({"centre": fine}, two / "F10.pth")
    with pytest.raises(DataError, match=r"\['center'\] missing"): read_mode_centres(two, k=3)
    gap = tmp_path / "gap" / "expert_1" / "checkpoints"; gap.mkdir(parents=True); (gap / "epoch_latest.pt").touch()
    with pytest.raises(DataError, match=r"\[1\] are not numbered 0"): mode_release_experts(tmp_path / "gap")
