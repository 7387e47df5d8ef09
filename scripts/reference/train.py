#!/usr/bin/env python3
"""The PyTorch reference trainer: runs the job a newton-muon config.json describes, from the
same initial weights and on the same token order, so the two loss curves can be compared.

Written from ../../shared/spec/ (the model, the optimizers, the data order, the schedule) and
from the meaning of each TrainConfig field (lib/train/config.ts): one step = lr from the schedule
(constant after an optional linear warmup, linear warmdown to 0 over the last warmdownSteps);
micro-batches of microBatch x seqLen until batchTokens, gradients averaged; Muon / Newton-Muon at
lr x matrixLrScale on the 4 block matrices of every layer and AdamW (torch.optim.AdamW, wd 0) at
lr on the tied embedding, or AdamW on everything with optimizer 'adamw'. Evaluation (no grad,
parameter dtype, no autocast) at step 0, every valEvery steps and at the end, over the first
valTokens tokens of the val shards (whole micro-batches, at least one).

    python3 scripts/reference/train.py --config RUN/config.json --init WEIGHTS.safetensors \\
        --train 'GLOB' --val 'GLOB' --out metrics.jsonl [--device cpu|cuda] [--dtype float64|float32]
        [--bf16] [--steps N]
    python3 scripts/reference/train.py --write-init WEIGHTS.safetensors --model '{"vocabSize":..}' --seed S

--bf16: the spec's mixed precision (bf16 autocast for matmuls and attention, Newton-Schulz in
bf16), as newton-muon's CUDA trainer runs. Writes one JSON line per step:
{"step", "train_loss", "val_loss"?, "lr"} (step 0: evaluation only).
"""
import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import Loader  # noqa: E402
from gpt2 import GPT2, LM_HEAD_ALIAS, WTE, init_params, param_shapes  # noqa: E402
from optim import MatrixOptimizer, gpt2_matrices  # noqa: E402
from safetensors_io import read_safetensors, write_safetensors  # noqa: E402

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def lr_multiplier(step, steps, warmup, warmdown):
    """Step is 0-based (the update that completes step + 1)."""
    if step < warmup:
        return (step + 1) / warmup
    if step < steps - warmdown:
        return 1.0
    return max(0.0, (steps - step) / warmdown)


def load_init(path, cfg, dtype):
    tensors, _ = read_safetensors(path)
    if LM_HEAD_ALIAS in tensors and WTE not in tensors:
        tensors[WTE] = tensors.pop(LM_HEAD_ALIAS)
    shapes = param_shapes(cfg)
    missing = [n for n in shapes if n not in tensors]
    extra = [n for n in tensors if n not in shapes and n != LM_HEAD_ALIAS]
    if missing or extra:
        raise SystemExit(f"{path}: missing {missing}, unexpected {extra}")
    for n, shape in shapes.items():
        if tuple(tensors[n].shape) != shape:
            raise SystemExit(f"{path}: '{n}' has shape {tuple(tensors[n].shape)}, expected {shape}")
    return {n: tensors[n].to(dtype) for n in shapes}


class Run:
    def __init__(self, cfg, params, device, bf16):
        self.cfg = cfg
        self.bf16 = bf16
        self.model = GPT2(cfg["model"], {n: p.to(device) for n, p in params.items()})
        lr = cfg["lr"]
        betas = tuple(cfg["adamBetas"])
        if cfg["optimizer"] == "adamw":
            self.matrix = None
            adam_params = [p for _, p in self.model.named_matrices()]
        else:
            self.matrix = MatrixOptimizer(
                gpt2_matrices(self.model), lr * cfg["matrixLrScale"], precondition=cfg["optimizer"] == "newton-muon",
                momentum=cfg["momentum"], refresh_every=cfg["refreshEvery"], ns_dtype=torch.bfloat16 if bf16 else None)
            adam_params = [self.model.param(WTE)]
        self.adam = torch.optim.AdamW(adam_params, lr=lr, betas=betas, eps=cfg["adamEps"], weight_decay=0.0, foreach=False)

    def train_step(self, loader, step, device):
        c = self.cfg
        accum = c["batchTokens"] // (c["microBatch"] * c["seqLen"])
        lr = c["lr"] * lr_multiplier(step, c["steps"], c["warmupSteps"], c["warmdownSteps"])
        for p in self.model.parameters():
            p.grad = None
        collect = self.matrix is not None and self.matrix.collects_statistics()
        self.model.observe = self.matrix.observe if collect else None
        total = 0.0
        for _ in range(accum):
            x, y = loader.next()
            loss = self.model(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device), autocast_bf16=self.bf16)
            (loss / accum).backward()
            total += loss.item()
        self.model.observe = None
        for g in self.adam.param_groups:
            g["lr"] = lr
        if self.matrix is not None:
            self.matrix.lr = lr * c["matrixLrScale"]
            self.matrix.step()
        self.adam.step()
        return total / accum, lr

    @torch.no_grad()
    def evaluate(self, loader, batches, device):
        loader.reset()
        total = 0.0
        for _ in range(batches):
            x, y = loader.next()
            total += self.model(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)).item()
        return total / batches


def train(args):
    with open(args.config) as f:
        cfg = json.load(f)
    if args.steps is not None:
        cfg["steps"] = args.steps
    dtype = DTYPES[args.dtype]
    torch.manual_seed(0)
    params = load_init(args.init, cfg["model"], dtype)
    run = Run(cfg, params, args.device, args.bf16)
    B, T = cfg["microBatch"], cfg["seqLen"]
    train_loader = Loader(args.train, B, T)
    val_loader = Loader(args.val, B, T)
    val_batches = max(1, min(cfg["valTokens"] // (B * T), val_loader.batches_per_epoch))
    tmp = f"{args.out}.{os.getpid()}.tmp"
    with open(tmp, "w") as out:
        def log(point):
            out.write(json.dumps(point) + "\n")
            out.flush()
            if not args.quiet:
                print(json.dumps(point), flush=True)
        log({"step": 0, "train_loss": None, "val_loss": run.evaluate(val_loader, val_batches, args.device),
             "lr": cfg["lr"] * lr_multiplier(0, cfg["steps"], cfg["warmupSteps"], cfg["warmdownSteps"])})
        for step in range(cfg["steps"]):
            loss, lr = run.train_step(train_loader, step, args.device)
            if not math.isfinite(loss):
                raise SystemExit(f"step {step + 1}: train loss {loss}")
            point = {"step": step + 1, "train_loss": loss, "lr": lr}
            if (step + 1) % cfg["valEvery"] == 0 or step + 1 == cfg["steps"]:
                point["val_loss"] = run.evaluate(val_loader, val_batches, args.device)
            log(point)
    os.replace(tmp, args.out)
    if run.matrix is not None and run.matrix.failures:
        print(f"note: {run.matrix.failures} preconditioner factorisations failed (identity used)", file=sys.stderr)


def write_init(args):
    cfg = json.loads(args.model)
    gen = torch.Generator().manual_seed(args.seed)
    params = init_params(cfg, gen)
    write_safetensors(args.write_init, params, {"format": "pt", "config": json.dumps(cfg), "seed": str(args.seed)})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config")
    ap.add_argument("--init")
    ap.add_argument("--train")
    ap.add_argument("--val")
    ap.add_argument("--out")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float64", choices=sorted(DTYPES))
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--write-init")
    ap.add_argument("--model")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.write_init:
        if not args.model:
            ap.error("--write-init needs --model '{json GPT2 config}'")
        return write_init(args)
    for name in ("config", "init", "train", "val", "out"):
        if getattr(args, name) is None:
            ap.error(f"--{name} is required")
    if args.bf16 and args.dtype != "float32":
        ap.error("--bf16 needs --dtype float32 (fp32 master weights)")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train(args)


if __name__ == "__main__":
    main()
