"""Muon and Newton-Muon in plain PyTorch, written from ../../shared/spec/newton-muon.md.

The independent reference for lib/optim: one object per GPT-2 run, holding every block matrix.
Per matrix (spec, "The algorithm as the reference implementation runs it"):
  refresh steps ((step + 1) % refresh_every == 0): K <- beta K + (1 - beta) mean_micro(X^T X / N),
    Kinv <- (K + ridge I)^-1 by Cholesky, ridge = 0.2 tr(K)/d + 1e-8, identity on failure;
  every step: G <- G Kinv (block-diagonal for mlp.c_proj), buf <- m buf + G, U = G + m buf,
    O = NS5(U) (per row block for the fused q,k,v), W <- W - lr scale O.
Muon is the same loop without the statistics (Kinv = I).

Written as a user of PyTorch would (one matrix at a time, no batching): clarity over speed.
"""
import math

import torch

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz5(u, steps=5, eps=1e-7, dtype=None):
    """msgn(u) for one [rows, cols] matrix by the quintic iteration; computes in `dtype`
    (default: u's), normalising in u's dtype first as the spec says."""
    a, b, c = NS_COEFFICIENTS
    x = u / (torch.linalg.matrix_norm(u) + eps)
    if dtype is not None:
        x = x.to(dtype)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    for _ in range(steps):
        m = x @ x.T
        poly = b * m + c * (m @ m)
        x = a * x + poly @ x
    if tall:
        x = x.T
    return x.to(u.dtype)


def ridged_inverse(k, ridge=0.2, ridge_eps=1e-8):
    """(K + r I)^-1 with r = ridge tr(K)/d + ridge_eps by Cholesky; (identity, False) on failure."""
    d = k.shape[0]
    eye = torch.eye(d, dtype=k.dtype, device=k.device)
    r = ridge * torch.trace(k) / d + ridge_eps
    lower, info = torch.linalg.cholesky_ex(k + r * eye)
    if int(info) != 0:
        return eye, False
    return torch.cholesky_inverse(lower), True


class MatrixOptimizer:
    """Muon (precondition=False) or Newton-Muon (True) over a list of (name, param, row_blocks,
    input_blocks). lr is set by the caller before each step (the schedule)."""

    def __init__(self, matrices, lr, precondition, momentum=0.95, refresh_every=32, stats_decay=0.95,
                 ridge=0.2, ridge_eps=1e-8, init_diag=1e-3, ns_steps=5, ns_dtype=None):
        self.matrices = matrices
        self.lr = lr
        self.precondition = precondition
        self.momentum = momentum
        self.refresh_every = refresh_every
        self.stats_decay = stats_decay
        self.ridge = ridge
        self.ridge_eps = ridge_eps
        self.ns_steps = ns_steps
        self.ns_dtype = ns_dtype
        self.steps = 0
        self.failures = 0
        self.buf = {name: torch.zeros_like(p) for name, p, _, _ in matrices}
        self.stats = {}
        if precondition:
            for name, p, _, input_blocks in matrices:
                d = p.shape[1] // input_blocks
                eye = torch.eye(d, dtype=p.dtype, device=p.device)
                self.stats[name] = {
                    "blocks": input_blocks, "d": d,
                    "K": [init_diag * eye.clone() for _ in range(input_blocks)],
                    "Kinv": [eye.clone() for _ in range(input_blocks)],
                    "S": [torch.zeros_like(eye) for _ in range(input_blocks)],
                    "observations": 0,
                }

    def collects_statistics(self):
        return self.precondition and (self.steps + 1) % self.refresh_every == 0

    def observe(self, name, x):
        """x: the matrix's input for one micro-batch, [N, d_in]. Only on collecting steps."""
        if not self.collects_statistics():
            return
        s = self.stats[name]
        x = x.to(s["S"][0].dtype)
        for j in range(s["blocks"]):
            xj = x[:, j * s["d"]:(j + 1) * s["d"]]
            s["S"][j] += xj.T @ xj / x.shape[0]
        s["observations"] += 1

    def _refresh(self):
        for s in self.stats.values():
            if s["observations"] == 0:
                continue
            for j in range(s["blocks"]):
                s["K"][j] = self.stats_decay * s["K"][j] + (1 - self.stats_decay) * s["S"][j] / s["observations"]
                s["Kinv"][j], ok = ridged_inverse(s["K"][j], self.ridge, self.ridge_eps)
                self.failures += 0 if ok else 1
                s["S"][j].zero_()
            s["observations"] = 0

    @torch.no_grad()
    def step(self):
        if self.collects_statistics():
            self._refresh()
        for name, p, row_blocks, _ in self.matrices:
            g = p.grad
            if self.precondition:
                s = self.stats[name]
                d = s["d"]
                g = torch.cat([g[:, j * d:(j + 1) * d] @ s["Kinv"][j] for j in range(s["blocks"])], dim=1)
            buf = self.buf[name]
            buf.mul_(self.momentum).add_(g)
            u = g + self.momentum * buf
            rows, cols = p.shape
            br = rows // row_blocks
            o = torch.cat([newton_schulz5(u[i * br:(i + 1) * br], self.ns_steps, dtype=self.ns_dtype) for i in range(row_blocks)], dim=0)
            scale = math.sqrt(cols) if row_blocks > 1 else math.sqrt(max(rows, cols))
            p.add_(o, alpha=-self.lr * scale)
        self.steps += 1


def gpt2_matrices(model):
    """The block matrices of a scripts/reference/gpt2.py model with the spec's handling:
    (name, param, row_blocks, input_blocks)."""
    out = []
    for i in range(model.cfg["nLayer"]):
        p = f"transformer.h.{i}"
        out.append((f"{p}.attn.c_attn.weight", model.param(f"{p}.attn.c_attn.weight"), 3, 1))
        out.append((f"{p}.attn.c_proj.weight", model.param(f"{p}.attn.c_proj.weight"), 1, 1))
        out.append((f"{p}.mlp.c_fc.weight", model.param(f"{p}.mlp.c_fc.weight"), 1, 1))
        out.append((f"{p}.mlp.c_proj.weight", model.param(f"{p}.mlp.c_proj.weight"), 1, 4))
    return out
