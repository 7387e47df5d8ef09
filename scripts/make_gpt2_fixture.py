"""Makes test/fixtures/gpt2-tiny.safetensors: a PyTorch reference of the speedrun GPT-2 (written
from ../shared/spec/speedrun-124m.md, float64 on the CPU) evaluated on a tiny random config.

The fixture holds the weights (param/<name>), the token ids (inputs, targets; stored as F32, exact
for these small integers), the loss (metadata) and every gradient (grad/<name>), so the jest
suite can check our forward and backward against an independent implementation.

The weights are drawn like the spec's init (U(-1/sqrt(fan_in), 1/sqrt(fan_in))) except that c_attn
is scaled by ATTN_GAIN, so the attention scores spread over a few units and the softmax (and its
backward) is far from uniform: a weak-signal fixture would hide attention bugs.

Before writing, the hand-written pieces are checked against PyTorch's own implementations
(scaled_dot_product_attention, gelu, rms_norm when present) and the gradients against
torch.autograd.gradcheck-style central differences on a few entries.

Run: python3 scripts/make_gpt2_fixture.py   (needs torch and numpy; `pip install torch numpy` works
on the CPU). The output is deterministic for a given torch version.
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
from gpt2 import param_shapes, rmsnorm, rotary  # noqa: E402  (the reference model's pieces, from the spec)
from safetensors_io import write_safetensors  # noqa: E402

CONFIG = {"vocabSize": 67, "nLayer": 2, "nHead": 2, "nEmbd": 32, "maxSeqLen": 64}
B, T = 2, 24
SEED = 1234
ATTN_GAIN = 3.0
OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "gpt2-tiny.safetensors"))


def forward(params, inputs, targets, cfg):
    c, h, n_layer = cfg["nEmbd"], cfg["nHead"], cfg["nLayer"]
    d = c // h
    wte = params["transformer.wte.weight"]
    x = wte[inputs]  # [B, T, C]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for i in range(n_layer):
        p = f"transformer.h.{i}"
        qkv = rmsnorm(x) @ params[f"{p}.attn.c_attn.weight"].T
        q, k, v = qkv.split(c, dim=-1)
        q = rotary(q.view(B, T, h, d))
        k = rotary(k.view(B, T, h, d))
        v = v.view(B, T, h, d)
        scores = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(d)
        scores = scores.masked_fill(~mask, float("-inf"))
        att = torch.einsum("bhts,bshd->bthd", scores.softmax(-1), v).reshape(B, T, c)
        x = x + (1.0 / math.sqrt(2 * n_layer)) * (att @ params[f"{p}.attn.c_proj.weight"].T)
        hidden = rmsnorm(x) @ params[f"{p}.mlp.c_fc.weight"].T
        gelu = 0.5 * hidden * (1.0 + torch.erf(hidden / math.sqrt(2.0)))
        x = x + gelu @ params[f"{p}.mlp.c_proj.weight"].T
    logits = rmsnorm(x) @ wte.T
    return torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


def self_check(params, inputs, targets, loss):
    """The hand-written ops against PyTorch's, and a few gradient entries against differences."""
    F = torch.nn.functional
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(B, T, 2, 16, generator=gen, dtype=torch.float64)
    if hasattr(F, "rms_norm"):
        assert torch.allclose(rmsnorm(x), F.rms_norm(x, (16,), eps=1e-6), rtol=1e-12, atol=1e-12)
    assert torch.allclose(0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0))), F.gelu(x, approximate="none"), rtol=1e-12, atol=1e-12)
    q, k, v = (torch.randn(B, 2, T, 16, generator=gen, dtype=torch.float64) * 2 for _ in range(3))
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    mine = ((q @ k.transpose(-1, -2)) / 4.0).masked_fill(~mask, float("-inf")).softmax(-1) @ v
    assert torch.allclose(mine, F.scaled_dot_product_attention(q, k, v, is_causal=True), rtol=1e-10, atol=1e-10)
    # Rotary is a rotation: norms of each head vector are preserved, and position 0 is the identity.
    r = rotary(x)
    assert torch.allclose(r.norm(dim=-1), x.norm(dim=-1), rtol=1e-12)
    assert torch.equal(r[:, 0], x[:, 0])
    # Central differences on a few entries of every parameter (float64: h = 1e-6 is plenty).
    with torch.no_grad():
        for name, p in params.items():
            for idx in [(0, 0), (p.shape[0] - 1, p.shape[1] - 1), (p.shape[0] // 2, p.shape[1] // 3)]:
                old = p[idx].item()
                p[idx] = old + 1e-6
                up = forward(params, inputs, targets, CONFIG).item()
                p[idx] = old - 1e-6
                down = forward(params, inputs, targets, CONFIG).item()
                p[idx] = old
                fd = (up - down) / 2e-6
                g = p.grad[idx].item()
                assert abs(fd - g) <= 1e-7 + 1e-5 * abs(g), (name, idx, fd, g)
        assert forward(params, inputs, targets, CONFIG).item() == loss


def main():
    gen = torch.Generator().manual_seed(SEED)
    params = {}
    for name, (rows, cols) in param_shapes(CONFIG).items():
        bound = 1.0 / math.sqrt(cols)  # PyTorch Linear default init, fan_in = cols
        w = (torch.rand(rows, cols, generator=gen, dtype=torch.float64) * 2 - 1) * bound
        if ".attn.c_attn." in name:
            w = w * ATTN_GAIN
        # Round to f32 first: the fixture stores f32 weights and our model computes from those.
        params[name] = w.to(torch.float32).to(torch.float64).requires_grad_(True)
    tokens = torch.randint(0, CONFIG["vocabSize"], (B, T + 1), generator=gen)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    loss = forward(params, inputs, targets, CONFIG)
    loss.backward()
    self_check(params, inputs, targets, loss.item())
    tensors = {f"param/{n}": p for n, p in params.items()}
    tensors.update({f"grad/{n}": p.grad for n, p in params.items()})
    tensors["inputs"] = inputs.to(torch.float64)
    tensors["targets"] = targets.to(torch.float64)
    meta = {"config": json.dumps(CONFIG), "B": str(B), "T": str(T), "loss": repr(loss.item()), "attnGain": repr(ATTN_GAIN),
            "torch": torch.__version__}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    write_safetensors(OUT, tensors, meta)
    print(f"wrote {OUT}: loss {loss.item():.10f}")


if __name__ == "__main__":
    main()
