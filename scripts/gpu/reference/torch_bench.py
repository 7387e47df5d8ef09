#!/usr/bin/env python3
"""PyTorch reference timings for the GPU kit (scripts/gpu/check.sh, step `torch`).

Written for this project from shared/spec/newton-muon.md: NS5 (quintic Newton-Schulz in bf16),
the input-Gram accumulation, the ridged batched Cholesky inverse, and whole Muon / Newton-Muon
steps for the GPT-2 124M matrix set, as a plain PyTorch user would write them. The cases, shapes
and timing protocol come from cases.json, which bench/torch_compare.js reads too.

    python3 torch_bench.py --cases cases.json [--quick] [--device cuda|cpu] [--compile] --out FILE

Each case: `warmup` untimed calls, then `repeats` runs of `iters` back-to-back calls closed by one
synchronize; per call = run / iters. On CUDA both CUDA-event time (device) and wall-clock time
(what newton-muon's side can measure: it has no event API) are reported; median and min.
Optimizer steps run in two variants: "batched" (same-shape matrices share one batched NS5 call,
the layout newton-muon uses) and "loop" (one NS5 call per matrix, as the reference trainer runs
it), reported as `ID` and `ID@loop`. --compile adds `ID@compile` for the NS5 cases when
torch.compile works here (it needs no network; a failure is recorded, not fatal).
Writes JSON: {torch, cuda, device, results: {id: {what, variant, event_ms, wall_ms, peak_mib}}}.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


# ---- the algorithm (from the spec) ------------------------------------------------------------

def ns5(g, steps=5, eps=1e-7):
    """msgn(g) for a [batch, rows, cols] f32 tensor: quintic Newton-Schulz in bf16, returns f32."""
    a, b, c = NS_COEFFICIENTS
    norm = torch.linalg.matrix_norm(g, keepdim=True)  # Frobenius, f32
    x = (g / (norm + eps)).to(torch.bfloat16)
    tall = g.shape[-2] > g.shape[-1]
    if tall:
        x = x.mT
    for _ in range(steps):
        A = x @ x.mT
        B = b * A + c * (A @ A)
        x = a * x + B @ x
    if tall:
        x = x.mT
    return x.float()


def cholesky_inverse_ridged(k, ridge=0.2, ridge_eps=1e-8):
    """(K + r I)^-1, r = ridge * trace(K) / d + ridge_eps, per matrix of a [batch, d, d] batch;
    a matrix whose factorisation fails gets the identity. Returns (inverse, info)."""
    d = k.shape[-1]
    eye = torch.eye(d, device=k.device, dtype=k.dtype)
    r = ridge * k.diagonal(dim1=-2, dim2=-1).sum(-1) / d + ridge_eps
    lower, info = torch.linalg.cholesky_ex(k + r[:, None, None] * eye)
    inverse = torch.cholesky_inverse(lower)
    return torch.where((info == 0)[:, None, None], inverse, eye), info


def accumulate_gram(k, x, blocks=1):
    """K[j] += X_j^T X_j / N for the column blocks X_j of x ([N, blocks * d]); K is [blocks, d, d] f32."""
    n = x.shape[0]
    d = x.shape[1] // blocks
    xb = x.view(n, blocks, d).transpose(0, 1)  # [blocks, N, d]
    s = torch.bmm(xb.mT, xb)  # bf16 x -> bf16 product (f32 accumulation inside cuBLAS)
    k.add_(s, alpha=1.0 / n)


def gpt2_specs(layers, c=768):
    """(name, [rows, cols], row blocks, input blocks) for the Muon matrices of GPT-2 124M."""
    specs = []
    for layer in range(layers):
        specs += [
            (f"h.{layer}.attn.c_attn", (3 * c, c), 3, 1),
            (f"h.{layer}.attn.c_proj", (c, c), 1, 1),
            (f"h.{layer}.mlp.c_fc", (4 * c, c), 1, 1),
            (f"h.{layer}.mlp.c_proj", (c, 4 * c), 1, 4),
        ]
    return specs


class MatrixOptimizer:
    """Muon (newton=False) or Newton-Muon (newton=True) over 2-D f32 matrices, per the spec.

    batched=True keeps every same-shape matrix (or row block) in one [count, rows, cols] buffer so
    one NS5 call covers them; batched=False runs NS5 per matrix."""

    def __init__(self, specs, params, grads, lr, newton, refresh_every=32, batched=True, momentum=0.95,
                 stats_decay=0.95, ridge=0.2, ridge_eps=1e-8, init_diag=1e-3, ns_steps=5):
        self.lr, self.newton, self.refresh_every, self.batched = lr, newton, refresh_every, batched
        self.momentum, self.stats_decay, self.ridge, self.ridge_eps, self.ns_steps = momentum, stats_decay, ridge, ridge_eps, ns_steps
        self.steps = 0
        device = params[0].device
        counts, stat_counts = {}, {}
        self.mats = []
        for (name, (rows, cols), row_blocks, input_blocks), p, g in zip(specs, params, grads):
            key = (rows // row_blocks, cols)
            m = {"name": name, "p": p, "g": g, "rows": rows, "cols": cols, "row_blocks": row_blocks, "key": key,
                 "slot": counts.get(key, 0), "buf": torch.zeros_like(p),
                 "scale": math.sqrt(cols) if row_blocks > 1 else math.sqrt(max(rows, cols))}
            counts[key] = m["slot"] + row_blocks
            if newton:
                d = cols // input_blocks
                m.update(blocks=input_blocks, d=d, first=stat_counts.get(d, 0), observations=0)
                stat_counts[d] = m["first"] + input_blocks
            self.mats.append(m)
        self.inp = {k: torch.zeros(n, *k, device=device) for k, n in counts.items()}
        self.out = {k: torch.zeros(n, *k, device=device) for k, n in counts.items()}
        for m in self.mats:
            m["u"] = self.inp[m["key"]][m["slot"]:m["slot"] + m["row_blocks"]].view(m["rows"], m["cols"])
            m["o"] = self.out[m["key"]][m["slot"]:m["slot"] + m["row_blocks"]].view(m["rows"], m["cols"])
        self.K, self.S, self.Kinv = {}, {}, {}
        for d, n in stat_counts.items():
            eye = torch.eye(d, device=device)
            self.K[d] = init_diag * eye.repeat(n, 1, 1)
            self.S[d] = torch.zeros(n, d, d, device=device)
            self.Kinv[d] = eye.repeat(n, 1, 1)

    def collects(self):
        return self.newton and (self.steps + 1) % self.refresh_every == 0

    def observe(self, m, x):
        if not self.collects():
            return
        accumulate_gram(self.S[m["d"]][m["first"]:m["first"] + m["blocks"]], x, m["blocks"])
        m["observations"] += 1

    def refresh(self):
        for d in self.K:
            # Per statistic: K <- beta K + (1 - beta) * mean of this step's observations.
            host = [0.0] * self.K[d].shape[0]
            for m in self.mats:
                if m["d"] == d and m["observations"] > 0:
                    host[m["first"]:m["first"] + m["blocks"]] = [(1 - self.stats_decay) / m["observations"]] * m["blocks"]
            coef = torch.tensor(host, device=self.K[d].device)
            keep = torch.where(coef > 0, self.stats_decay, 1.0)
            self.K[d].mul_(keep[:, None, None]).add_(coef[:, None, None] * self.S[d])
            self.S[d].zero_()
            self.Kinv[d], _ = cholesky_inverse_ridged(self.K[d], self.ridge, self.ridge_eps)
        for m in self.mats:
            m["observations"] = 0

    def step(self):
        if self.collects():
            self.refresh()
        precondition = self.newton and self.steps + 1 >= self.refresh_every
        for m in self.mats:
            g = m["g"]
            if precondition:
                kinv = self.Kinv[m["d"]][m["first"]:m["first"] + m["blocks"]]
                if m["blocks"] == 1:
                    g = g @ kinv[0]
                else:  # block-diagonal: column slice j of G times block j
                    gb = g.view(m["rows"], m["blocks"], m["d"]).transpose(0, 1)
                    g = torch.bmm(gb, kinv).transpose(0, 1).reshape(m["rows"], m["cols"])
            m["buf"].mul_(self.momentum).add_(g)
            torch.add(g, m["buf"], alpha=self.momentum, out=m["u"])  # Nesterov
            if not self.batched:
                o = ns5(m["u"].view(m["row_blocks"], *m["key"]), self.ns_steps)
                m["p"].add_(o.view(m["rows"], m["cols"]), alpha=-self.lr * m["scale"])
        if self.batched:
            for key, inp in self.inp.items():
                self.out[key].copy_(ns5(inp, self.ns_steps))
            for m in self.mats:
                m["p"].add_(m["o"], alpha=-self.lr * m["scale"])
        self.steps += 1


# ---- timing -------------------------------------------------------------------------------------

def summarize(values):
    return {"median": statistics.median(values), "min": min(values)} if values else None


def time_calls(fn, timing, device, prepare=None):
    """Median/min per-call time; prepare() runs untimed before each timed run (forces iters 1)."""
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    iters = 1 if prepare else timing["iters"]
    for _ in range(timing["warmup"]):
        if prepare:
            prepare()
        fn()
    sync()
    events, walls = [], []
    for _ in range(timing["repeats"]):
        if prepare:
            prepare()
            sync()
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        if cuda:
            end.record()
        sync()
        walls.append((time.perf_counter() - t0) * 1e3 / iters)
        if cuda:
            events.append(start.elapsed_time(end) / iters)
    return {"event_ms": summarize(events), "wall_ms": summarize(walls)}


def randn(shape, device, std=1.0, dtype=torch.float32, gen=None):
    return (torch.randn(*shape, device=device, generator=gen) * std).to(dtype)


def run_case(case, timing, device, gen, compile_ns5):
    op = case["op"]
    out = {}
    if op == "ns5":
        xs = [randn(g, device, gen=gen) for g in case["groups"]]
        out[case["id"]] = time_calls(lambda: [ns5(x) for x in xs], timing, device)
        if compile_ns5:
            try:
                fn = torch.compile(ns5)
                out[case["id"] + "@compile"] = time_calls(lambda: [fn(x) for x in xs], timing, device)
            except Exception as error:  # noqa: BLE001 - recorded, the kit goes on
                out[case["id"] + "@compile"] = {"error": f"{type(error).__name__}: {error}"[:300]}
    elif op == "gram":
        dtype = torch.bfloat16 if case["dtype"] == "bf16" else torch.float32
        x = randn((case["tokens"], case["d"]), device, dtype=dtype, gen=gen)
        k = torch.zeros(1, case["d"], case["d"], device=device)
        out[case["id"]] = time_calls(lambda: accumulate_gram(k, x), timing, device)
    elif op == "cholinv":
        z = randn((case["batch"], case["d"], case["d"]), device, std=0.05, gen=gen)
        k = z.mT @ z
        out[case["id"]] = time_calls(lambda: cholesky_inverse_ridged(k), timing, device)
    elif op == "gemm":
        dtype = torch.bfloat16 if case["dtype"] == "bf16" else torch.float32
        m, n, kk = case["m"], case["n"], case["k"]
        a = randn((kk, m) if case["transA"] else (m, kk), device, dtype=dtype, gen=gen)
        b = randn((n, kk) if case["transB"] else (kk, n), device, dtype=dtype, gen=gen)
        fn = lambda: (a.mT if case["transA"] else a) @ (b.mT if case["transB"] else b)  # noqa: E731
        out[case["id"]] = time_calls(fn, timing, device)
    elif op in ("muon", "newton-muon"):
        newton = op == "newton-muon"
        specs = gpt2_specs(case["layers"])
        for batched in (True, False):
            params = [randn(s[1], device, std=0.02, gen=gen) for s in specs]
            grads = [randn(s[1], device, std=1e-3, gen=gen) for s in specs]
            opt = MatrixOptimizer(specs, params, grads, lr=4e-4, newton=newton, refresh_every=2 if newton else 32, batched=batched)
            variant = case["id"] + ("" if batched else "@loop")
            if not newton:
                out[variant] = time_calls(opt.step, timing, device)
                continue
            in_dtype = torch.bfloat16 if case.get("inputDtype") == "bf16" else torch.float32
            inputs = {768: randn((case["tokens"], 768), device, dtype=in_dtype, gen=gen),
                      3072: randn((case["tokens"], 3072), device, dtype=in_dtype, gen=gen)}

            def observed_step():
                if opt.collects():
                    for mat in opt.mats:
                        opt.observe(mat, inputs[mat["cols"]])
                opt.step()

            observed_step()
            observed_step()  # past the first refresh: every later step preconditions
            want_refresh = case["phase"] == "refresh"

            def prepare():
                if opt.collects() != want_refresh:
                    observed_step()

            out[variant] = time_calls(observed_step, timing, device, prepare=prepare)
    else:
        raise ValueError(f"unknown op {op}")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated case ids")
    args = parser.parse_args()

    spec = json.load(open(args.cases))
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("torch_bench: CUDA is not available to PyTorch here")
    # Like newton-muon's f32 GEMMs: full f32, no TF32.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    timing = spec["timingQuick"] if args.quick else spec["timing"]
    only = set(filter(None, args.only.split(",")))
    gen = torch.Generator(device=device)
    gen.manual_seed(1234)
    result = {
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "quick": args.quick, "timing": timing, "results": {},
    }
    for case in spec["cases"]:
        if only and case["id"] not in only:
            continue
        case = {**case, **(case.get("quick", {}) if args.quick else {})}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        try:
            measured = run_case(case, timing, device, gen, args.compile)
        except Exception as error:  # noqa: BLE001 - one failing case must not hide the others
            measured = {case["id"]: {"error": f"{type(error).__name__}: {error}"[:300]}}
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        for variant, r in measured.items():
            r.update(what=case["what"], variant=variant.partition("@")[2] or "batched", peak_mib=peak)
            result["results"][variant] = r
            t = r.get("event_ms") or r.get("wall_ms")
            print(f"torch {variant}: " + (f"{t['median']:.3f} ms" if t else r.get("error", "?")), file=sys.stderr)
        print(f"  ({case['id']}: {time.perf_counter() - t0:.1f}s)", file=sys.stderr)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        save(result, args.out)  # after every case: a run cut off by its time limit keeps what it measured
    result["complete"] = True
    save(result, args.out)


def save(result, path):
    with open(path + ".partial", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(path + ".partial", path)


if __name__ == "__main__":
    main()
