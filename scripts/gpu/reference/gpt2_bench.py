#!/usr/bin/env python3
"""PyTorch's side of the GPU kit's `gpt2-fwd-bwd` slot (scripts/gpu/check.sh).

GPT-2 forward+backward tokens/s and peak memory of the PyTorch reference model
(scripts/reference/gpt2.py, written from shared/spec/speedrun-124m.md) with bf16 autocast, eager
and under torch.compile, at the shapes of slots.json "gpt2-fwd-bwd" (the ones
bench/gpt2_fwd_bwd.js runs on newton-muon's side).

    python3 gpt2_bench.py --slots slots.json [--preset full|quick|dry] [--device cuda|cpu]
                          [--budget SECONDS] [--no-compile] --out FILE

Protocol, as on our side: a model from init_params (seed 1), seeded uniform token ids resident on
the device, `warmup` untimed calls, then `calls` timed calls; one call = loss = f(x, y);
loss.backward(); loss.item() (the read-back synchronizes, like GPT2.forwardBackward), timed
whole on the wall clock (CUDA events too). Gradients accumulate across calls (no zero_grad), as
on our side. Peak memory: torch.cuda.max_memory_allocated() over the timed calls, after
reset_peak_memory_stats(). Eager runs first (cheap; the fallback), then torch.compile of the loss
function (the first call's time, which includes compiling forward and backward, is reported as
compile_s). A compile failure is recorded, not fatal. The JSON is rewritten after each phase (a
phase still running when the kit's timeout hits is marked "started"), so a cut-off run keeps what
it measured. TF32 is off (no f32 GEMM should need it: the matmuls run in bf16 under autocast).
"""
import argparse
import gc
import json
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "reference"))
from gpt2 import GPT2, init_params  # noqa: E402  (scripts/reference/gpt2.py)


def save(result, path):
    with open(path + ".partial", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(path + ".partial", path)


def failure(error):
    """A phase's exception as a record: 'oom' when the GPU ran out of memory (eager materialises the
    f32 logits, B*T x vocab, and their gradient: at 64 x 1024 it may not fit in 80 GB), else 'error'."""
    text = f"{type(error).__name__}: {error}"[:400]
    oom = isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in text.lower()
    return {"status": "oom" if oom else "error", "error": text}


def random_tokens(shape, vocab, seed, device):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, shape, generator=gen, dtype=torch.int64).to(device)


def run_phase(model, fn, x, y, warmup, calls, device):
    """warmup untimed calls (the first one timed on its own: it compiles), then calls timed ones."""
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    losses = []

    def call():
        loss = fn(x, y)
        loss.backward()
        return loss.item()

    t0 = time.perf_counter()
    losses.append(call())
    first_s = time.perf_counter() - t0
    for _ in range(max(0, warmup - 1)):
        losses.append(call())
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    walls, events = [], []
    for _ in range(calls):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        t = time.perf_counter()
        losses.append(call())
        walls.append(time.perf_counter() - t)
        if cuda:
            end.record()
            end.synchronize()
            events.append(start.elapsed_time(end) / 1e3)
    peak = torch.cuda.max_memory_allocated(device) if cuda else None
    median = statistics.median(walls)
    return {
        "status": "ok", "first_call_s": first_s,
        "call_s": {"median": median, "min": min(walls), "all": walls},
        "event_s": {"median": statistics.median(events), "min": min(events)} if events else None,
        "tokens_per_s": x.numel() / median, "peak_bytes": peak,
        "first_loss": losses[0], "last_loss": losses[-1],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slots", default=os.path.join(HERE, "slots.json"))
    parser.add_argument("--preset", default="full")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget", type=float, default=0, help="seconds; 0 = no limit")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    started = time.perf_counter()

    p = json.load(open(args.slots))["gpt2-fwd-bwd"][args.preset]
    cfg, b, t = p["model"], p["B"], p["T"]
    tp = p["torch"]
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpt2_bench: CUDA is not available to PyTorch here")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    result = {
        "side": "torch", "torch": torch.__version__, "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "preset": args.preset, "model": cfg, "B": b, "T": t, "timing": tp, "eager": None, "compile": None, "complete": False,
    }
    save(result, args.out)

    params = init_params(cfg, torch.Generator().manual_seed(1))
    model = GPT2(cfg, params).to(device)
    del params
    x = random_tokens((b, t), cfg["vocabSize"], 11, device)
    y = random_tokens((b, t), cfg["vocabSize"], 12, device)

    def loss_fn(inputs, targets):
        return model(inputs, targets, autocast_bf16=True)

    def fresh():
        model.zero_grad(set_to_none=True)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()

    # Eager: the cheap baseline and the fallback when compiling fails.
    result["eager"] = {"status": "started"}
    save(result, args.out)
    try:
        result["eager"] = run_phase(model, loss_fn, x, y, tp["warmup"], tp["eagerCalls"], device)
    except Exception as error:  # noqa: BLE001 - recorded; the compiled phase may still work
        result["eager"] = failure(error)
    print(f"torch eager: {json.dumps({k: result['eager'].get(k) for k in ('status', 'tokens_per_s', 'error')})}", file=sys.stderr)
    save(result, args.out)
    fresh()

    left = args.budget - (time.perf_counter() - started) if args.budget else None
    if args.no_compile:
        result["compile"] = {"status": "skipped", "note": "--no-compile"}
    elif left is not None and left < 30:
        result["compile"] = {"status": "skipped", "note": f"time budget: {left:.0f}s left of {args.budget:.0f}s"}
    else:
        result["compile"] = {"status": "started", "note": "compiling or timing when the run ended (killed by its time limit?)"}
        save(result, args.out)
        try:
            compiled = torch.compile(loss_fn)
            r = run_phase(model, compiled, x, y, tp["warmup"], tp["calls"], device)
            r["compile_s"] = r.pop("first_call_s")
            result["compile"] = r
        except Exception as error:  # noqa: BLE001 - recorded, the eager numbers stand
            result["compile"] = failure(error)
    print(f"torch compile: {json.dumps({k: result['compile'].get(k) for k in ('status', 'tokens_per_s', 'compile_s', 'error', 'note')})}", file=sys.stderr)
    result["complete"] = True
    result["seconds"] = time.perf_counter() - started
    save(result, args.out)


if __name__ == "__main__":
    main()
