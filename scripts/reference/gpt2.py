"""The speedrun GPT-2 in plain PyTorch, written from ../../shared/spec/speedrun-124m.md.

This is the independent reference our GPT-2 (lib/gpt2) is checked against: the training-curve
check (scripts/reference/train.py) and the GPU kit's forward+backward benchmark
(scripts/gpu/reference/gpt2_bench.py) both use it. Parameter names and shapes are the ones
newton-muon's stateDict() uses, so weights move between the two through safetensors.

Precision follows the spec: the parameters are held in `dtype` (float32 masters for training,
float64 for fixtures); with `autocast_bf16=True` the matmuls and attention run in bf16 under
torch.autocast while norms, the residual stream and the loss stay in the parameter dtype.
"""
import math

import torch
import torch.nn.functional as F

RMS_EPS = 1e-6
ROPE_BASE = 10000.0
WTE = "transformer.wte.weight"
LM_HEAD_ALIAS = "lm_head.weight"


def param_shapes(cfg):
    """{name: (rows, cols)} in newton-muon's order (the order of its flat parameter buffer)."""
    c = cfg["nEmbd"]
    shapes = {WTE: (cfg["vocabSize"], c)}
    for i in range(cfg["nLayer"]):
        p = f"transformer.h.{i}"
        shapes[f"{p}.attn.c_attn.weight"] = (3 * c, c)
        shapes[f"{p}.attn.c_proj.weight"] = (c, c)
        shapes[f"{p}.mlp.c_fc.weight"] = (4 * c, c)
        shapes[f"{p}.mlp.c_proj.weight"] = (c, 4 * c)
    return shapes


def init_params(cfg, generator, dtype=torch.float32):
    """PyTorch Linear default init U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for every matrix (the tied
    embedding keeps the lm_head's Linear init), drawn in float64 and rounded to f32."""
    params = {}
    for name, (rows, cols) in param_shapes(cfg).items():
        bound = 1.0 / math.sqrt(cols)
        w = (torch.rand(rows, cols, generator=generator, dtype=torch.float64) * 2 - 1) * bound
        params[name] = w.to(torch.float32).to(dtype)
    return params


def rmsnorm(x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + RMS_EPS)


def rotary(x):
    """x: [B, T, H, D]; the half-split form y1 = x1 cos + x2 sin, y2 = -x1 sin + x2 cos."""
    _, t, _, d = x.shape
    inv_freq = 1.0 / (ROPE_BASE ** (torch.arange(0, d, 2, dtype=torch.float64, device=x.device) / d))
    angles = torch.outer(torch.arange(t, dtype=torch.float64, device=x.device), inv_freq)
    cos = angles.cos()[None, :, None, :].to(x.dtype)
    sin = angles.sin()[None, :, None, :].to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return torch.cat([x1 * cos + x2 * sin, -x1 * sin + x2 * cos], dim=-1)


class GPT2(torch.nn.Module):
    """Holds the parameters under their newton-muon names (dots replaced for nn.Module)."""

    def __init__(self, cfg, params):
        super().__init__()
        self.cfg = dict(cfg)
        self.names = list(param_shapes(cfg).keys())
        self.weights = torch.nn.ParameterDict({n.replace(".", "/"): torch.nn.Parameter(params[n].clone()) for n in self.names})
        # Filled during forward when a hook is set: name -> the matrix's input [B*T, d_in].
        self.observe = None

    def param(self, name):
        return self.weights[name.replace(".", "/")]

    def named_matrices(self):
        return [(n, self.param(n)) for n in self.names]

    def forward(self, inputs, targets, autocast_bf16=False):
        """inputs, targets: int64 [B, T]. Returns the mean cross-entropy (in the params' dtype)."""
        cfg = self.cfg
        b, t = inputs.shape
        c, h, n_layer = cfg["nEmbd"], cfg["nHead"], cfg["nLayer"]
        d = c // h
        device_type = inputs.device.type
        low = torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=autocast_bf16)
        x = F.embedding(inputs, self.param(WTE))
        for i in range(n_layer):
            p = f"transformer.h.{i}"
            a1 = rmsnorm(x)
            self._observe(f"{p}.attn.c_attn.weight", a1)
            with low:
                qkv = F.linear(a1, self.param(f"{p}.attn.c_attn.weight"))
            q, k, v = qkv.to(x.dtype).split(c, dim=-1)
            q = rotary(q.view(b, t, h, d)).transpose(1, 2)
            k = rotary(k.view(b, t, h, d)).transpose(1, 2)
            v = v.view(b, t, h, d).transpose(1, 2)
            with low:
                att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            att = att.transpose(1, 2).reshape(b, t, c)
            self._observe(f"{p}.attn.c_proj.weight", att)
            with low:
                y = F.linear(att, self.param(f"{p}.attn.c_proj.weight"))
            x = x + (1.0 / math.sqrt(2 * n_layer)) * y.to(x.dtype)
            a2 = rmsnorm(x)
            self._observe(f"{p}.mlp.c_fc.weight", a2)
            with low:
                hidden = F.linear(a2, self.param(f"{p}.mlp.c_fc.weight"))
                g = F.gelu(hidden, approximate="none")
            self._observe(f"{p}.mlp.c_proj.weight", g)
            with low:
                z = F.linear(g, self.param(f"{p}.mlp.c_proj.weight"))
            x = x + z.to(x.dtype)
        af = rmsnorm(x)
        with low:
            logits = F.linear(af, self.param(WTE))
        logits = logits.to(x.dtype) if x.dtype == torch.float64 else logits.float()
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))

    def _observe(self, name, x):
        if self.observe is not None:
            self.observe(name, x.detach().reshape(-1, x.shape[-1]))
