"""PyTorch (CPU, f32) forward+backward throughput of the speedrun GPT-2 at a small config, the
yardstick for bench/gpt2.js. Written from ../shared/spec/speedrun-124m.md with PyTorch's own
fastest CPU pieces (scaled_dot_product_attention, fused rms via torch ops).

stdin: JSON {vocabSize, nLayer, nHead, nEmbd, B, T, repeats, threads}; stdout: JSON {tokens_per_s, threads, torch}.
"""
import json
import math
import sys
import time

import torch
import torch.nn.functional as F


def rmsnorm(x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


class Model(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c, v, n = cfg["nEmbd"], cfg["vocabSize"], cfg["nLayer"]
        self.cfg = cfg
        self.wte = torch.nn.Embedding(v, c)
        self.attn = torch.nn.ModuleList([torch.nn.Linear(c, 3 * c, bias=False) for _ in range(n)])
        self.proj = torch.nn.ModuleList([torch.nn.Linear(c, c, bias=False) for _ in range(n)])
        self.fc = torch.nn.ModuleList([torch.nn.Linear(c, 4 * c, bias=False) for _ in range(n)])
        self.mproj = torch.nn.ModuleList([torch.nn.Linear(4 * c, c, bias=False) for _ in range(n)])
        d = c // cfg["nHead"]
        inv = 1.0 / (10000 ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
        ang = torch.outer(torch.arange(cfg["T"], dtype=torch.float32), inv)
        self.register_buffer("cos", ang.cos()[None, None])
        self.register_buffer("sin", ang.sin()[None, None])

    def rotary(self, x):
        d = x.shape[-1] // 2
        x1, x2 = x[..., :d], x[..., d:]
        return torch.cat([x1 * self.cos + x2 * self.sin, -x1 * self.sin + x2 * self.cos], dim=-1)

    def forward(self, idx, targets):
        b, t = idx.shape
        c, h, n = self.cfg["nEmbd"], self.cfg["nHead"], self.cfg["nLayer"]
        x = self.wte(idx)
        for i in range(n):
            q, k, v = self.attn[i](rmsnorm(x)).split(c, dim=-1)
            q = self.rotary(q.view(b, t, h, -1).transpose(1, 2))
            k = self.rotary(k.view(b, t, h, -1).transpose(1, 2))
            v = v.view(b, t, h, -1).transpose(1, 2)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c)
            x = x + (1 / math.sqrt(2 * n)) * self.proj[i](y)
            x = x + self.mproj[i](F.gelu(self.fc[i](rmsnorm(x))))
        logits = F.linear(rmsnorm(x), self.wte.weight)
        return F.cross_entropy(logits.view(-1, logits.shape[-1]).float(), targets.view(-1))


def main():
    cfg = json.load(sys.stdin)
    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    model = Model(cfg)
    idx = torch.randint(0, cfg["vocabSize"], (cfg["B"], cfg["T"]))
    tgt = torch.randint(0, cfg["vocabSize"], (cfg["B"], cfg["T"]))
    for _ in range(2):
        model(idx, tgt).backward()
    best = float("inf")
    for _ in range(cfg["repeats"]):
        start = time.perf_counter()
        model(idx, tgt).backward()
        best = min(best, time.perf_counter() - start)
    print(json.dumps({"tokens_per_s": cfg["B"] * cfg["T"] / best, "threads": torch.get_num_threads(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
