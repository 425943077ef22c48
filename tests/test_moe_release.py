"""CLIP-MoE's released checkpoints: a micro checkpoint written by an independent transcription of the reference's
modules (parameter names and shapes as in its `model_clipmoe.py`), loaded into clipwb, compared forward by forward."""
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clipwb.core import ConfigError, DataError
from clipwb.moe.release import (clipmoe_state_dict, load_clipmoe, longclip_positions, read_checkpoint,
                                save_clipmoe)
from clipwb.models.moe import moe_layers_of

# ---- the reference, transcribed: module names/shapes from its definitions, forward written here ----------------

class RefLN(nn.LayerNorm):
    def forward(self, x):
        return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps).to(x.dtype)

def quick_gelu(x): return x * torch.sigmoid(1.702 * x)

def ref_mlp(d, with_dropout):
    parts = [("c_fc", nn.Linear(d, 4 * d)), ("gelu", nn.Identity())]
    if with_dropout: parts.append(("dropout", nn.Dropout(0.0)))
    return nn.Sequential(OrderedDict(parts + [("c_proj", nn.Linear(4 * d, d))]))

class RefBlock(nn.Module):   # ResidualAttentionBlock / MoEResidualAttentionBlock
    def __init__(self, d, heads, experts=0, top_k=2):
        super().__init__()
        self.attn, self.ln_1, self.ln_2, self.top_k = nn.MultiheadAttention(d, heads), RefLN(d), RefLN(d), top_k
        if experts:
            self.experts = nn.ModuleList(ref_mlp(d, True) for _ in range(experts))
            self.gate = nn.Linear(d, experts, bias=False)
        else: self.mlp = ref_mlp(d, False)

    @staticmethod
    def run(mlp, h): return mlp.c_proj(quick_gelu(mlp.c_fc(h)))

    def forward(self, x, mask):   # x [L, N, d], sequence first as in the reference
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        h = self.ln_2(x)
        if not hasattr(self, "gate"): return x + self.run(self.mlp, h)
        t = h.reshape(-1, h.shape[-1])
        p = self.gate(t).float().softmax(-1)
        w, idx = p.topk(self.top_k, -1)
        w = w / w.sum(-1, keepdim=True)
        every = torch.stack([self.run(e, t) for e in self.experts], 1)          # [T, E, d]: all experts, all tokens
        y = (every.gather(1, idx[..., None].expand(-1, -1, t.shape[-1])) * w[..., None]).sum(1)
        return x + y.reshape(h.shape)

class RefTower(nn.Module):
    def __init__(self, d, layers, moe_layers, experts, top_k):
        super().__init__()
        m = min(moe_layers, layers)
        self.resblocks = nn.ModuleList([RefBlock(d, d // 64) for _ in range(layers - m)]
                                       + [RefBlock(d, d // 64, experts, top_k) for _ in range(m)])

    def forward(self, x, mask=None):
        for b in self.resblocks: x = b(x, mask)
        return x

class RefVisual(nn.Module):
    def __init__(self, res, patch, d, layers, out, moe_layers, experts, top_k):
        super().__init__()
        self.conv1 = nn.Conv2d(3, d, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(d))
        self.positional_embedding = nn.Parameter(torch.randn((res // patch) ** 2 + 1, d))
        self.ln_pre, self.ln_post = RefLN(d), RefLN(d)
        self.transformer = RefTower(d, layers, moe_layers, experts, top_k)
        self.proj = nn.Parameter(torch.randn(d, out))

    def forward(self, img):
        x = self.conv1(img).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(len(x), 1, -1), x], 1) + self.positional_embedding
        x = self.transformer(self.ln_pre(x).transpose(0, 1)).transpose(0, 1)
        return self.ln_post(x[:, 0]) @ self.proj

class RefCLIP(nn.Module):
    "CLIP-MoE's CLIP at micro size (context 248 and the Long-CLIP position split of the reference)."
    def __init__(self, *, embed=32, res=16, patch=8, vw=128, vl=2, tw=64, tl=2, vocab=50, moe_layers=1, experts=3,
                 top_k=2):
        super().__init__()
        self.visual = RefVisual(res, patch, vw, vl, embed, moe_layers, experts, top_k)
        self.transformer = RefTower(tw, tl, moe_layers, experts, top_k)
        self.token_embedding = nn.Embedding(vocab, tw)
        self.positional_embedding = nn.Parameter(torch.randn(248, tw))
        self.positional_embedding_res = nn.Parameter(torch.randn(248, tw))
        self.ln_final = RefLN(tw)
        self.text_projection = nn.Parameter(torch.randn(tw, embed))
        self.logit_scale = nn.Parameter(torch.tensor(4.6))
        with torch.no_grad():   # every weight random, layer norms included, so that no mapping slip goes unseen
            for n, p in self.named_parameters():
                if n.endswith(("ln_1.weight", "ln_2.weight", "ln_pre.weight", "ln_post.weight", "ln_final.weight")):
                    p.uniform_(0.5, 1.5)
                elif n.endswith("bias"): p.normal_(0, 0.1)
                elif p.ndim >= 2: p.normal_(0, p.shape[-1] ** -0.5)

    def encode_image(self, img): return self.visual(img)

    def encode_text(self, text):
        keep = (torch.arange(248) < 20)[:, None]
        x = self.token_embedding(text) + torch.where(keep, self.positional_embedding, self.positional_embedding_res)
        mask = torch.full((248, 248), float("-inf")).triu_(1)
        x = self.ln_final(self.transformer(x.transpose(0, 1), mask).transpose(0, 1))
        return x[torch.arange(len(x)), text.argmax(-1)] @ self.text_projection


def tokens(vocab=50):
    g = torch.Generator().manual_seed(1)
    t = torch.zeros(3, 248, dtype=torch.long)
    for i, eot in enumerate((7, 40, 230)):   # one text inside the first 20 positions, two beyond
        t[i, :eot] = torch.randint(1, vocab - 1, (eot,), generator=g); t[i, eot] = vocab - 1
    return t


@pytest.fixture(scope="module")
def ref():
    torch.manual_seed(0)
    return RefCLIP().eval()


def test_longclip_positions_follow_the_reference_rule():
    pe = torch.randn(77, 8, dtype=torch.float64)
    want = torch.zeros(248, 8, dtype=torch.float64)   # the reference's loop, element by element
    want[:20] = pe[:20]
    for i in range(77 - 1 - 20):
        for j in range(4): want[4 * i + j + 20] = (4 - j) * pe[i + 20] / 4 + j * pe[i + 21] / 4
    for j in range(4): want[244 + j] = pe[76] + j * (pe[76] - pe[75]) / 4
    got = longclip_positions(pe)
    assert got.shape == (248, 8) and torch.allclose(got, want, rtol=0, atol=1e-12)
    with pytest.raises(ConfigError, match="L ≥ keep"): longclip_positions(pe[:21])


def test_clipmoe_checkpoint_computes_the_reference_forward(ref, tmp_path):
    torch.save(ref.state_dict(), tmp_path / "clipmoe.pt")
    model = load_clipmoe(tmp_path / "clipmoe.pt", top_k=2)
    layers = moe_layers_of(model)
    assert [i for i, _ in layers["image"]] == [1] and [i for i, _ in layers["text"]] == [1]
    assert model.clipwb_config["moe"]["num_experts"] == 3 and not hasattr(model.transformer.resblocks[0].mlp, "router")
    img, txt = torch.randn(2, 3, 16, 16), tokens()
    with torch.no_grad():
        wi, wt = ref.encode_image(img), ref.encode_text(txt)
        gi, gt = model.encode_image(img), model.encode_text(txt)
        assert torch.allclose(gi, wi, atol=1e-4, rtol=1e-4), (gi - wi).abs().max()
        assert torch.allclose(gt, wt, atol=1e-4, rtol=1e-4), (gt - wt).abs().max()
        # the oracle tells the routing and the position split apart: top-1 and positional_embedding alone differ
        assert not torch.allclose(load_clipmoe(tmp_path / "clipmoe.pt", top_k=1).encode_image(img), wi, atol=1e-3)
        sd = dict(ref.state_dict()); sd["positional_embedding_res"] = sd["positional_embedding"]
        assert not torch.allclose(load_clipmoe(sd).encode_text(txt)[1:], wt[1:], atol=1e-3)
        assert torch.allclose(load_clipmoe(sd).encode_text(txt)[0], wt[0], atol=1e-4)   # EOT at 7 < 20: the same


def test_clipmoe_export_round_trip(ref, tmp_path):
    model = load_clipmoe({"module." + k: v for k, v in ref.state_dict().items()}, top_k=2)
    out = clipmoe_state_dict(model)
    want = ref.state_dict()
    assert sorted(out) == sorted(want) and all(out[k].shape == want[k].shape for k in want)
    kept = {"positional_embedding": slice(0, 20), "positional_embedding_res": slice(20, 248)}
    for k in want:   # every tensor the reference reads, to the bit (the masked-out position halves are not kept)
        assert torch.equal(out[k][kept.get(k, ...)], want[k][kept.get(k, ...)]), k
    back = RefCLIP().eval(); back.load_state_dict(out)   # strict: the reference module takes it as it is
    img, txt = torch.randn(2, 3, 16, 16), tokens()
    with torch.no_grad():
        assert torch.allclose(back.encode_text(txt), ref.encode_text(txt), atol=1e-5)
        assert torch.allclose(back.encode_image(img), ref.encode_image(img), atol=1e-5)
    for p in (tmp_path / "x.pt", tmp_path / "x.safetensors"):   # clipwb → file → clipwb: exact
        again = load_clipmoe(save_clipmoe(model, p), top_k=2)
        a, b = model.state_dict(), again.state_dict()
        assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    from clipwb.models import create_model, save_model   # and as a clipwb model folder
    again = create_model(save_model(model, tmp_path / "wb"))
    with torch.no_grad(): assert torch.equal(again.encode_text(txt), model.encode_text(txt))


def test_dense_longclip_checkpoint_loads_dense():
    torch.manual_seed(0)
    r = RefCLIP(moe_layers=0).eval()
    m = load_clipmoe(r.state_dict())
    assert not hasattr(m, "moe_routing")
    with torch.no_grad(): assert torch.allclose(m.encode_text(tokens()), r.encode_text(tokens()), atol=1e-4)
    assert sorted(clipmoe_state_dict(m)) == sorted(r.state_dict())


def test_clipmoe_mismatch_names_the_keys(ref, tmp_path):
    sd = dict(ref.state_dict())
    del sd["visual.transformer.resblocks.1.experts.2.c_fc.bias"]
    with pytest.raises(DataError, match=r"missing keys \['visual.transformer.resblocks.1.experts.2.c_fc.bias'\]"):
        load_clipmoe(sd)
    sd = dict(ref.state_dict()); sd["transformer.resblocks.1.gate.bias"] = torch.zeros(3)
    with pytest.raises(DataError, match=r"unexpected keys \['transformer.resblocks.1.gate.bias'\]"): load_clipmoe(sd)
    sd = dict(ref.state_dict()); sd["transformer.resblocks.0.gate.weight"] = torch.zeros(3, 64)
    with pytest.raises(DataError, match="1 of 2 image and 2 of 2 text blocks are MoE"): load_clipmoe(sd)
    sd["transformer.resblocks.0.gate.weight"] = sd.pop("transformer.resblocks.1.gate.weight")
    with pytest.raises(DataError, match=r"text tower's MoE blocks \[0\] are not its last ones"): load_clipmoe(sd)
    with pytest.raises(DataError, match="missing"): load_clipmoe({"logit_scale": torch.ones(())})
    with pytest.raises(ConfigError, match="top_k"): load_clipmoe(ref.state_dict(), top_k=4)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="junk.pt"): read_checkpoint(tmp_path / "junk.pt")


def test_export_of_a_77_position_model_needs_stretch():
    from clipwb.models import create_model
    with pytest.raises(ConfigError, match="quick_gelu"): clipmoe_state_dict(create_model("clipwb-micro"))
    torch.manual_seed(0)
    sd = RefCLIP(moe_layers=0).state_dict()   # an OpenAI-layout CLIP: 77 positions, no positional_embedding_res
    sd["positional_embedding"] = sd.pop("positional_embedding_res")[:77].clone()
    m = load_clipmoe(sd)
    assert m.positional_embedding.shape == (77, 64)
    with pytest.raises(ConfigError, match="stretch=True"): clipmoe_state_dict(m)
    out = clipmoe_state_dict(m, stretch=True)
    assert torch.equal(out["positional_embedding"], longclip_positions(sd["positional_embedding"]))
    assert torch.equal(out["positional_embedding_res"], out["positional_embedding"])
    assert sorted(out) == sorted(RefCLIP(moe_layers=0).state_dict())
