"""PyTorch (CPU, f32) forward+backward throughput of the speedrun GPT-2 at a small config, the
yardstick for bench/gpt2.js. Written from ../shared/spec/speedrun-124m.md with PyTorch's own
fastest CPU pieces (scaled_dot_product_attention, F.gelu), via scripts/reference/gpt2.py.

stdin: JSON {vocabSize, nLayer, nHead, nEmbd, B, T, repeats, threads}; stdout: JSON {tokens_per_s, threads, torch}.
"""
import json
import os
import sys
import time

import torch

# The PyTorch model is the project's reference (written from the spec, shared with the GPU kit and
# the training-curve check): scaled_dot_product_attention, F.gelu, plain tensor ops for the rest.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "reference"))
from gpt2 import GPT2, init_params  # noqa: E402


def main():
    cfg = json.load(sys.stdin)
    torch.set_num_threads(cfg["threads"])
    gen = torch.Generator().manual_seed(0)
    model = GPT2(cfg, init_params(cfg, gen))
    idx = torch.randint(0, cfg["vocabSize"], (cfg["B"], cfg["T"]), generator=gen)
    tgt = torch.randint(0, cfg["vocabSize"], (cfg["B"], cfg["T"]), generator=gen)
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
