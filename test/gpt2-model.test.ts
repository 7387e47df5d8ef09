// The GPT2 class around the math (the math itself: gpt2-fixture.test.ts): parameter names,
// shapes and count; the deterministic PyTorch-default init; gradient accumulation and zeroGrad;
// bitwise reproducibility; the Newton-Muon observeInputs hook; a finite-difference check of the
// whole model; safetensors import/export; the errors for bad input; and memory accounting.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import {
  copy, empty, GPT2, GPT2_124M, memoryStats, parameterSpecs, readSafetensors, readSafetensorsMetadata, resetPeakMemory, synchronize, Tensor, tensor,
  writeSafetensors,
} from '../lib/index';
import type { GPT2Config, SafetensorsEntry } from '../lib/index';
import { freshSeed, TEST_DEVICE } from './helpers/device';
import { liveOn, settleGarbage } from './helpers/memory';
import { HostRng } from './helpers/reference';

const device = TEST_DEVICE;
const CUDA = device === 'cuda';
const { abs, max, sqrt } = Math;

// C = 32 so mlp.c_proj's bound (1/sqrt(128)) is far from everyone else's (1/sqrt(32)).
const TINY: GPT2Config = { vocabSize: 37, nLayer: 2, nHead: 2, nEmbd: 32, maxSeqLen: 32 };
const [B, T] = [3, 10];
const MATRIX_KINDS = ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'];

function names(nLayer: number): string[] {
  const out = ['transformer.wte.weight'];
  for (let i = 0; i < nLayer; i++) for (const kind of MATRIX_KINDS) out.push(`transformer.h.${i}.${kind}.weight`);
  return out;
}

function shapes(cfg: GPT2Config): Record<string, number[]> {
  const C = cfg.nEmbd;
  const out: Record<string, number[]> = { 'transformer.wte.weight': [cfg.vocabSize, C] };
  for (let i = 0; i < cfg.nLayer; i++) {
    out[`transformer.h.${i}.attn.c_attn.weight`] = [3 * C, C];
    out[`transformer.h.${i}.attn.c_proj.weight`] = [C, C];
    out[`transformer.h.${i}.mlp.c_fc.weight`] = [4 * C, C];
    out[`transformer.h.${i}.mlp.c_proj.weight`] = [C, 4 * C];
  }
  return out;
}

function tokens(rng: HostRng, n: number, vocab: number): Int32Array {
  return Int32Array.from({ length: n }, () => rng.int(0, vocab - 1));
}

function batch(seed: number, cfg: GPT2Config = TINY, b = B, t = T): { ids: Int32Array; tgt: Int32Array } {
  const rng = new HostRng(seed);
  return { ids: tokens(rng, b * t, cfg.vocabSize), tgt: tokens(rng, b * t, cfg.vocabSize) };
}

async function readAll(record: Record<string, Tensor>): Promise<Record<string, Float32Array>> {
  const out: Record<string, Float32Array> = {};
  for (const [name, t] of Object.entries(record)) out[name] = (await t.read()) as Float32Array;
  return out;
}

function relFrob(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < expected.length; i++) {
    num += (actual[i] - expected[i]) ** 2;
    den += expected[i] ** 2;
  }
  return sqrt(num) / sqrt(den);
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

function expectAllClose(actual: Record<string, Float32Array>, expected: Record<string, Float32Array>, tol: number, what: string): void {
  const bad = Object.keys(expected)
    .map((name) => ({ name, err: relFrob(actual[name], expected[name]) }))
    .filter((r) => !(r.err <= tol));
  if (bad.length > 0) throw new Error(`${what}: beyond ${tol}: ${bad.map((r) => `${r.name} ${r.err.toExponential(3)}`).join(', ')}`);
}

/** A model that is disposed at the end of the test even when it fails. */
const live: GPT2[] = [];
function model(cfg: GPT2Config = TINY, opts: ConstructorParameters<typeof GPT2>[1] = {}): GPT2 {
  const m = new GPT2(cfg, { device, precision: 'f32', ...opts });
  live.push(m);
  return m;
}
afterEach(() => {
  for (const m of live.splice(0)) m.dispose();
});

// ---- parameters ------------------------------------------------------------------------------

describe('parameters', () => {
  test('the 124M config: names, shapes, init bounds and 123,532,032 parameters (from the specs, nothing allocated)', () => {
    const specs = parameterSpecs(GPT2_124M);
    expect(specs.map((s) => s.name)).toEqual(names(12));
    const expected = shapes(GPT2_124M);
    for (const s of specs) expect(s.shape).toEqual(expected[s.name]);
    const count = specs.reduce((n, s) => n + s.shape[0] * s.shape[1], 0);
    // 50257 * 768 (tied embedding/head, counted once) + 12 * 12 * 768^2.
    expect(count).toBe(50257 * 768 + 12 * 12 * 768 * 768);
    expect(count).toBe(123_532_032);
    for (const s of specs) expect(s.initBound).toBe(1 / sqrt(s.name.endsWith('mlp.c_proj.weight') ? 4 * 768 : 768));
    expect(GPT2_124M).toEqual({ vocabSize: 50257, nLayer: 12, nHead: 12, nEmbd: 768, maxSeqLen: 1024 });
  });

  test('stateDict() and grads(): PyTorch names in storage order, the right shapes, f32, on the device; grads start at zero', async () => {
    const m = model();
    const params = m.stateDict();
    const grads = m.grads();
    expect(Object.keys(params)).toEqual(names(TINY.nLayer));
    expect(Object.keys(grads)).toEqual(names(TINY.nLayer));
    const expected = shapes(TINY);
    let count = 0;
    for (const name of names(TINY.nLayer)) {
      for (const t of [params[name], grads[name]]) {
        expect(t.shape).toEqual(expected[name]);
        expect(t.dtype).toBe('f32');
        expect(t.device).toBe(device);
      }
      count += params[name].numel;
    }
    expect(m.parameterCount).toBe(count);
    expect(m.config).toEqual({ ...TINY });
    expect(m.precision).toBe('f32');
    for (const g of Object.values(await readAll(grads))) expect(g.every((v) => v === 0)).toBe(true);
    // The views tile the flat buffers in order.
    const { params: flat } = m.flatBuffers();
    expect(flat.numel).toBe(count);
    const flatHost = (await flat.read()) as Float32Array;
    const host = await readAll(params);
    let offset = 0;
    for (const name of names(TINY.nLayer)) {
      expect(sameBits(flatHost.subarray(offset, offset + host[name].length), host[name])).toBe(true);
      offset += host[name].length;
    }
  });

  test('the CPU default precision is f32; the CUDA default is bf16', () => {
    const m = new GPT2(TINY, { device });
    live.push(m);
    expect(m.precision).toBe(CUDA ? 'bf16' : 'f32');
    expect(m.config.maxSeqLen).toBe(32);
    const d = new GPT2({ vocabSize: 5, nLayer: 1, nHead: 1, nEmbd: 4 }, { device });
    live.push(d);
    expect(d.config.maxSeqLen).toBe(1024);
  });
});

// ---- initialisation --------------------------------------------------------------------------

describe('initialisation', () => {
  test('same seed, same weights (bit for bit); another seed, different weights in every tensor', async () => {
    const seed = freshSeed();
    const a = await readAll(model(TINY, { seed }).stateDict());
    const b = await readAll(model(TINY, { seed }).stateDict());
    const c = await readAll(model(TINY, { seed: seed + 1 }).stateDict());
    for (const name of names(TINY.nLayer)) {
      expect(sameBits(a[name], b[name])).toBe(true);
      const differ = a[name].reduce((n, v, i) => n + (v !== c[name][i] ? 1 : 0), 0);
      expect(differ).toBeGreaterThan(0.99 * a[name].length);
    }
    // Tensors of the same shape get their own streams.
    expect(sameBits(a['transformer.h.0.mlp.c_fc.weight'], a['transformer.h.1.mlp.c_fc.weight'])).toBe(false);
  });

  test('the default seed is 0 and is deterministic', async () => {
    const a = await readAll(model().stateDict());
    const b = await readAll(model(TINY, { seed: 0 }).stateDict());
    for (const name of names(TINY.nLayer)) expect(sameBits(a[name], b[name])).toBe(true);
  });

  (CUDA ? test : test.skip)('a seed gives the same weights on the CPU and on CUDA', async () => {
    const seed = freshSeed();
    const g = await readAll(model(TINY, { seed }).stateDict());
    const cpu = new GPT2(TINY, { device: 'cpu', seed });
    try {
      const c = await readAll(cpu.stateDict());
      for (const name of names(TINY.nLayer)) expect(sameBits(g[name], c[name])).toBe(true);
    } finally {
      cpu.dispose();
    }
  });

  test('every tensor is U(-1/sqrt(fan_in), 1/sqrt(fan_in)): fan_in C, and 4C for mlp.c_proj', async () => {
    const cfg: GPT2Config = { vocabSize: 300, nLayer: 2, nHead: 2, nEmbd: 32 };
    const seed = freshSeed();
    const params = await readAll(model(cfg, { seed }).stateDict());
    for (const [name, w] of Object.entries(params)) {
      const fanIn = name.endsWith('mlp.c_proj.weight') ? 4 * cfg.nEmbd : cfg.nEmbd;
      const bound = 1 / sqrt(fanIn);
      let maxAbs = 0;
      let sum = 0;
      let sumSq = 0;
      for (const v of w) {
        maxAbs = max(maxAbs, abs(v));
        sum += v;
        sumSq += v * v;
      }
      const n = w.length;
      const mean = sum / n;
      const variance = sumSq / n - mean * mean;
      const what = `${name} (seed ${seed}, bound ${bound})`;
      expect([what, maxAbs <= Math.fround(bound)]).toEqual([what, true]);
      expect([what, maxAbs >= 0.98 * bound]).toEqual([what, true]); // n >= 1024: P(max < 0.98 bound) = 0.99^n < 4e-5
      expect([what, abs(mean) < 6 * bound / sqrt(3 * n)]).toEqual([what, true]);
      expect([what, abs(variance / (bound * bound / 3) - 1) < 0.1]).toEqual([what, true]);
    }
  });
});

// ---- gradients -------------------------------------------------------------------------------

describe('gradients', () => {
  test('accumulation: two calls with gradScale 0.5 equal one call with gradScale 1; the returned loss ignores gradScale', async () => {
    const seed = freshSeed();
    const { ids, tgt } = batch(seed);
    const a = model(TINY, { seed });
    const b = model(TINY, { seed });
    const l1 = await a.forwardBackward(ids, tgt, B, T, { gradScale: 0.5 });
    const l2 = await a.forwardBackward(ids, tgt, B, T, { gradScale: 0.5 });
    const l = await b.forwardBackward(ids, tgt, B, T);
    expect(l1).toBe(l);
    expect(l2).toBe(l);
    expectAllClose(await readAll(a.grads()), await readAll(b.grads()), 1e-6, `accumulated vs single (seed ${seed})`);
  });

  test('accumulation over two micro-batches is the mean of their separate gradients', async () => {
    const seed = freshSeed();
    const one = batch(seed);
    const two = batch(seed + 1);
    const m = model(TINY, { seed });
    await m.forwardBackward(one.ids, one.tgt, B, T);
    const g1 = await readAll(m.grads());
    m.zeroGrad();
    await m.forwardBackward(two.ids, two.tgt, B, T);
    const g2 = await readAll(m.grads());
    m.zeroGrad();
    await m.forwardBackward(one.ids, one.tgt, B, T, { gradScale: 0.5 });
    await m.forwardBackward(two.ids, two.tgt, B, T, { gradScale: 0.5 });
    const acc = await readAll(m.grads());
    const mean: Record<string, Float32Array> = {};
    for (const name of Object.keys(g1)) mean[name] = g1[name].map((v, i) => 0.5 * v + 0.5 * g2[name][i]);
    expectAllClose(acc, mean, 1e-6, `two micro-batches (seed ${seed})`);
  });

  test('forwardBackwardLazy: the same mean loss (as a device scalar, f32) and the same gradients as forwardBackward', async () => {
    const seed = freshSeed();
    const { ids, tgt } = batch(seed);
    const a = model(TINY, { seed });
    const b = model(TINY, { seed });
    const l = await a.forwardBackward(ids, tgt, B, T, { gradScale: 0.5 });
    const lazy = b.forwardBackwardLazy(ids, tgt, B, T, { gradScale: 0.5 });
    try {
      expect(lazy.shape).toEqual([]);
      expect(lazy.dtype).toBe('f32');
      expect(lazy.device).toBe(b.device);
      expect((await lazy.read())[0]).toBeCloseTo(l, 6);
    } finally {
      lazy.dispose();
    }
    expectAllClose(await readAll(b.grads()), await readAll(a.grads()), TEST_DEVICE === "cpu" ? 0 : 1e-6, `lazy vs read-back (seed ${seed})`);
    expect(() => b.forwardBackwardLazy(ids, tgt, B, T + 1)).toThrow(/has \d+ tokens, expected B\*T/);
  });

  test('zeroGrad() clears every gradient; forwardBackward fills every one', async () => {
    const seed = freshSeed();
    const { ids, tgt } = batch(seed);
    const m = model(TINY, { seed });
    await m.forwardBackward(ids, tgt, B, T);
    for (const [name, g] of Object.entries(await readAll(m.grads()))) {
      const nonZero = g.reduce((n, v) => n + (v !== 0 ? 1 : 0), 0);
      // wte: only rows of tokens seen as inputs or predicted over get gradient; all via the head.
      expect([name, nonZero > 0.5 * g.length]).toEqual([name, true]);
      expect([name, g.every(Number.isFinite)]).toEqual([name, true]);
    }
    m.zeroGrad();
    for (const g of Object.values(await readAll(m.grads()))) expect(g.every((v) => v === 0)).toBe(true);
  });

  test('two identical forwardBackward runs give identical losses and gradients (bit for bit on the CPU)', async () => {
    const seed = freshSeed();
    const { ids, tgt } = batch(seed);
    const m = model(TINY, { seed });
    const l1 = await m.forwardBackward(ids, tgt, B, T);
    const g1 = await readAll(m.grads());
    m.zeroGrad();
    const l2 = await m.forwardBackward(ids, tgt, B, T);
    const g2 = await readAll(m.grads());
    const other = model(TINY, { seed });
    const l3 = await other.forwardBackward(ids, tgt, B, T);
    const g3 = await readAll(other.grads());
    expect(l2).toBe(l1);
    expect(l3).toBe(l1);
    if (CUDA) {
      expectAllClose(g2, g1, 1e-6, 'cuda rerun');
      expectAllClose(g3, g1, 1e-6, 'cuda second model');
    } else {
      for (const name of Object.keys(g1)) {
        expect([name, sameBits(g2[name], g1[name]), sameBits(g3[name], g1[name])]).toEqual([name, true, true]);
      }
    }
  });

  // Central differences of the f32 loss: h = 1e-2 keeps the rounding noise of a ~2.5 loss (a few
  // f32 ulps, ~1e-6) at ~1e-4 in the quotient; Richardson extrapolation (steps h and 2h) removes
  // the O(h^2) truncation error; gradients of the entries picked (the largest of each tensor) are
  // ~1e-2 or more.
  test('finite differences of the whole model agree with the gradients (tiny config, f32)', async () => {
    const cfg: GPT2Config = { vocabSize: 13, nLayer: 2, nHead: 2, nEmbd: 8, maxSeqLen: 8 };
    const [b, t] = [2, 6];
    const seed = freshSeed();
    const { ids, tgt } = batch(seed, cfg, b, t);
    const m = model(cfg, { seed });
    await m.forwardBackward(ids, tgt, b, t);
    const grads = await readAll(m.grads());
    const base = await readAll(m.stateDict());
    const rng = new HostRng(seed);
    const h = 1e-2;
    const report: string[] = [];
    let failures = 0;
    const lossAt = async (name: string, index: number, delta: number): Promise<number> => {
      const w = base[name].slice();
      w[index] += delta;
      await m.loadStateDict({ ...base, [name]: w });
      return m.loss(ids, tgt, b, t);
    };
    for (const name of Object.keys(grads)) {
      const g = grads[name];
      // The two largest-magnitude entries and one random entry.
      const order = Array.from(g.keys()).sort((i, j) => abs(g[j]) - abs(g[i]));
      for (const index of [order[0], order[1], rng.int(0, g.length - 1)]) {
        // Richardson extrapolation of two central differences (steps 2h and h) cancels the O(h^2)
        // truncation term, which a strongly curved entry (e.g. of the tied embedding) can make
        // larger than the tolerance on its own.
        const central = async (step: number): Promise<number> => ((await lossAt(name, index, step)) - (await lossAt(name, index, -step))) / (2 * step);
        const fd = (4 * (await central(h)) - (await central(2 * h))) / 3;
        const err = abs(fd - g[index]);
        const ok = err <= 2e-4 + 2e-2 * abs(g[index]);
        if (!ok) failures++;
        report.push(`${ok ? 'ok  ' : 'FAIL'} ${name}[${index}]: grad ${g[index].toExponential(4)} fd ${fd.toExponential(4)}`);
      }
    }
    // A random direction through every parameter at once: d/de L(w + e*d) = <grad, d>.
    const dir: Record<string, Float32Array> = {};
    let dot = 0;
    for (const [name, g] of Object.entries(grads)) {
      dir[name] = Float32Array.from(g, () => (rng.next() < 0.5 ? -1 : 1));
      for (let i = 0; i < g.length; i++) dot += g[i] * dir[name][i];
    }
    const along = async (e: number): Promise<number> => {
      const rec: Record<string, Float32Array> = {};
      for (const name of Object.keys(base)) rec[name] = base[name].map((v, i) => v + e * dir[name][i]);
      await m.loadStateDict(rec);
      return m.loss(ids, tgt, b, t);
    };
    const e = 1e-3;
    const fdDir = ((await along(e)) - (await along(-e))) / (2 * e);
    const dirOk = abs(fdDir - dot) <= 1e-3 + 1e-2 * abs(dot);
    if (!dirOk) failures++;
    report.push(`${dirOk ? 'ok  ' : 'FAIL'} random direction: <grad, d> ${dot.toExponential(4)} fd ${fdDir.toExponential(4)}`);
    if (failures > 0) throw new Error(`finite differences (seed ${seed}):\n${report.join('\n')}`);
  });
});

// ---- the Newton-Muon hook --------------------------------------------------------------------

describe('activation memory', () => {
  /** Peak bytes above what was live before one call (the model's own buffers excluded). */
  async function extraPeak(nLayer: number, train: boolean): Promise<number> {
    const cfg = { ...TINY, nLayer, nEmbd: 64, nHead: 2 };
    const m = model(cfg, { seed: freshSeed() });
    const { ids, tgt } = batch(freshSeed(), cfg, 4, 32);
    await synchronize(device);
    resetPeakMemory();
    const before = memoryStats()[device]!.bytes;
    if (train) await m.forwardBackward(ids, tgt, 4, 32);
    else await m.loss(ids, tgt, 4, 32);
    await synchronize(device);
    return memoryStats()[device]!.peakBytes - before;
  }

  test('loss() holds one layer of activations at a time; forwardBackward() keeps every layer for the backward pass', async () => {
    const eval1 = await extraPeak(1, false);
    const eval6 = await extraPeak(6, false);
    const train1 = await extraPeak(1, true);
    const train6 = await extraPeak(6, true);
    // Per layer, forwardBackward keeps ~20 [B*T, C] f32 tensors (x, qkv, h, ...): 6 layers cost
    // 5 layers more than 1. loss() frees each layer when the next starts: depth adds almost nothing.
    const perLayer = (train6 - train1) / 5;
    expect(perLayer).toBeGreaterThan(10 * 4 * 32 * 64 * 4);
    expect(eval6 - eval1).toBeLessThan(0.5 * perLayer);
  });
});

describe('observeInputs', () => {
  test('called once per Muon matrix, 4 per layer in order, with [B*T, C] / [B*T, 4C] inputs in the GEMM precision', async () => {
    const seed = freshSeed();
    const { ids, tgt } = batch(seed);
    const m = new GPT2(TINY, { device, seed });
    live.push(m);
    const calls: Array<{ name: string; shape: number[]; dtype: string; device: string }> = [];
    await m.forwardBackward(ids, tgt, B, T, {
      observeInputs: (name, x) => calls.push({ name, shape: [...x.shape], dtype: x.dtype, device: x.device }),
    });
    const C = TINY.nEmbd;
    const expected = [];
    for (let l = 0; l < TINY.nLayer; l++) {
      for (const kind of MATRIX_KINDS) {
        expected.push({ name: `transformer.h.${l}.${kind}.weight`, shape: [B * T, kind === 'mlp.c_proj' ? 4 * C : C], dtype: m.precision, device });
      }
    }
    expect(calls).toEqual(expected);
  });

  test('hands the right tensors: rmsnorm(x) for c_attn / c_fc, attention output for attn.c_proj, GELU output for mlp.c_proj', async () => {
    const seed = freshSeed();
    const { ids, tgt } = batch(seed);
    const m = model(TINY, { seed });
    const C = TINY.nEmbd;
    // The tensors are valid during the call only: copy them out.
    const seen: Record<string, Tensor> = {};
    try {
      await m.forwardBackward(ids, tgt, B, T, {
        observeInputs: (name, x) => {
          seen[name] = copy(empty(x.shape, { dtype: x.dtype, device: x.device }), x);
        },
      });
      const host: Record<string, Float32Array> = {};
      for (const [name, t] of Object.entries(seen)) host[name] = (await t.read()) as Float32Array;
      const params = await readAll(m.stateDict());
      const wte = params['transformer.wte.weight'];
      const wqkv = params['transformer.h.0.attn.c_attn.weight'];
      // Layer 0, c_attn: rmsnorm of the embedding rows, eps 1e-6.
      const a1 = host['transformer.h.0.attn.c_attn.weight'];
      const ref = new Float64Array(B * T * C);
      for (let r = 0; r < B * T; r++) {
        let ms = 0;
        for (let j = 0; j < C; j++) ms += wte[ids[r] * C + j] ** 2;
        const rstd = 1 / sqrt(ms / C + 1e-6);
        for (let j = 0; j < C; j++) ref[r * C + j] = wte[ids[r] * C + j] * rstd;
      }
      expect(relFrob(a1, ref)).toBeLessThan(1e-6);
      // Layer 0, attn.c_proj: at position 0 causal attention sees only itself, so its output is
      // that token's v = a1 @ Wv^T (v has no rotary).
      const att = host['transformer.h.0.attn.c_proj.weight'];
      for (let bi = 0; bi < B; bi++) {
        const r = bi * T;
        const v = new Float64Array(C);
        for (let o = 0; o < C; o++) for (let j = 0; j < C; j++) v[o] += a1[r * C + j] * wqkv[(2 * C + o) * C + j];
        expect(relFrob(att.subarray(r * C, (r + 1) * C), v)).toBeLessThan(1e-5);
      }
      // Normalised inputs have unit mean square per row; GELU outputs are >= its minimum -0.17.
      for (const name of Object.keys(host)) {
        const x = host[name];
        if (name.endsWith('c_attn.weight') || name.endsWith('c_fc.weight')) {
          for (let r = 0; r < B * T; r++) {
            let ms = 0;
            for (let j = 0; j < C; j++) ms += x[r * C + j] ** 2;
            expect(abs(ms / C - 1)).toBeLessThan(1e-3); // 1 - eps / mean(x^2): ~2e-4 for embedding rows
          }
        }
        if (name.endsWith('mlp.c_proj.weight')) {
          expect(x.every((v) => v >= -0.1701)).toBe(true);
          expect(x.some((v) => v < -0.01)).toBe(true);
        }
      }
    } finally {
      for (const t of Object.values(seen)) t.dispose();
    }
  });

  test('the hook changes nothing: loss and gradients are the same with and without it', async () => {
    const seed = freshSeed();
    const { ids, tgt } = batch(seed);
    const a = model(TINY, { seed });
    const b = model(TINY, { seed });
    const la = await a.forwardBackward(ids, tgt, B, T, { observeInputs: () => undefined });
    const lb = await b.forwardBackward(ids, tgt, B, T);
    expect(la).toBe(lb);
    const ga = await readAll(a.grads());
    const gb = await readAll(b.grads());
    for (const name of Object.keys(ga)) expect([name, sameBits(ga[name], gb[name])]).toEqual([name, true]);
  });

  test('loss() never calls it (even when handed one)', async () => {
    const seed = freshSeed();
    const { ids, tgt } = batch(seed);
    const m = model(TINY, { seed });
    const spy = jest.fn();
    const loss = m.loss as unknown as (...args: unknown[]) => Promise<number>;
    await loss.call(m, ids, tgt, B, T, { observeInputs: spy });
    expect(spy).not.toHaveBeenCalled();
  });

  test('a throwing hook rejects forwardBackward with its error and leaks nothing', async () => {
    const seed = freshSeed();
    const { ids, tgt } = batch(seed);
    const m = model(TINY, { seed });
    await settleGarbage();
    const before = liveOn(device);
    await expect(m.forwardBackward(ids, tgt, B, T, {
      observeInputs: (name) => {
        if (name.includes('h.1.mlp')) throw new Error('hook failed');
      },
    })).rejects.toThrow('hook failed');
    await settleGarbage();
    expect(liveOn(device)).toEqual(before);
    // The model still works afterwards.
    m.zeroGrad();
    expect(Number.isFinite(await m.forwardBackward(ids, tgt, B, T))).toBe(true);
  });
});

// ---- safetensors -----------------------------------------------------------------------------

describe('safetensors', () => {
  let dir = '';
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nm-gpt2-'));
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** The model's weights as safetensors entries (optionally renamed / reshaped / dropped). */
  async function entriesOf(m: GPT2): Promise<Record<string, SafetensorsEntry>> {
    const out: Record<string, SafetensorsEntry> = {};
    for (const [name, t] of Object.entries(m.stateDict())) out[name] = { shape: [...t.shape], data: (await t.read()) as Float32Array };
    return out;
  }

  async function expectSameParams(a: GPT2, b: GPT2): Promise<void> {
    const pa = await readAll(a.stateDict());
    const pb = await readAll(b.stateDict());
    for (const name of Object.keys(pa)) expect([name, sameBits(pa[name], pb[name])]).toEqual([name, true]);
  }

  test('save then load into a model with another seed gives identical parameters; nothing else is left in the folder', async () => {
    const seed = freshSeed();
    const a = model(TINY, { seed });
    const b = model(TINY, { seed: seed + 1 });
    const file = path.join(dir, 'model.safetensors');
    await a.saveSafetensors(file);
    expect(fs.readdirSync(dir)).toEqual(['model.safetensors']);
    await b.loadSafetensors(file);
    await expectSameParams(a, b);
    // A standard file: PyTorch names and shapes, F32, metadata with the format and the config.
    const read = readSafetensors(file);
    expect(Object.keys(read)).toEqual(names(TINY.nLayer));
    const expected = shapes(TINY);
    for (const [name, e] of Object.entries(read)) expect(e.shape).toEqual(expected[name]);
    const meta = readSafetensorsMetadata(file);
    expect(meta.format).toBe('pt');
    expect(JSON.parse(meta.config)).toEqual(a.config);
    const headerLength = Number(fs.readFileSync(file).readBigUInt64LE(0));
    expect(headerLength % 8).toBe(0);
    expect(fs.statSync(file).size).toBe(8 + headerLength + 4 * a.parameterCount);
    // Saving over an existing file replaces it (atomically: still one file).
    const c = model(TINY, { seed: seed + 2 });
    await c.saveSafetensors(file);
    expect(fs.readdirSync(dir)).toEqual(['model.safetensors']);
    await b.loadSafetensors(file);
    await expectSameParams(c, b);
  });

  test("the tied head's name 'lm_head.weight' is accepted for the embedding", async () => {
    const seed = freshSeed();
    const a = model(TINY, { seed });
    const entries = await entriesOf(a);
    const renamed: Record<string, SafetensorsEntry> = { 'lm_head.weight': entries['transformer.wte.weight'] };
    for (const [name, e] of Object.entries(entries)) if (name !== 'transformer.wte.weight') renamed[name] = e;
    const file = path.join(dir, 'alias.safetensors');
    writeSafetensors(file, renamed);
    const b = model(TINY, { seed: seed + 1 });
    await b.loadSafetensors(file);
    await expectSameParams(a, b);
    // Both names at once (what a PyTorch state_dict of a tied model holds) is fine too.
    writeSafetensors(file, { ...entries, 'lm_head.weight': entries['transformer.wte.weight'] });
    const c = model(TINY, { seed: seed + 2 });
    await c.loadSafetensors(file);
    await expectSameParams(a, c);
  });

  test('BF16 files are read (widened to f32)', async () => {
    const seed = freshSeed();
    const a = model(TINY, { seed });
    const entries = await entriesOf(a);
    // Hand-written BF16 safetensors: the top 16 bits of each f32 (truncation: exact bf16 values).
    const header: Record<string, unknown> = {};
    const blobs: Buffer[] = [];
    let offset = 0;
    const truncated: Record<string, Float32Array> = {};
    for (const [name, { shape, data }] of Object.entries(entries)) {
      const bits = new Uint16Array(data.length);
      const u32 = new Uint32Array(data.buffer, data.byteOffset, data.length);
      for (let i = 0; i < data.length; i++) bits[i] = u32[i] >>> 16;
      truncated[name] = new Float32Array(Uint32Array.from(bits, (v) => v << 16).buffer);
      header[name] = { dtype: 'BF16', shape, data_offsets: [offset, offset + bits.byteLength] };
      offset += bits.byteLength;
      blobs.push(Buffer.from(bits.buffer));
    }
    const json = Buffer.from(JSON.stringify(header));
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(json.length));
    const file = path.join(dir, 'bf16.safetensors');
    fs.writeFileSync(file, Buffer.concat([prefix, json, ...blobs]));
    const b = model(TINY, { seed: seed + 1 });
    await b.loadSafetensors(file);
    const got = await readAll(b.stateDict());
    for (const name of Object.keys(truncated)) expect([name, sameBits(got[name], truncated[name])]).toEqual([name, true]);
  });

  describe('bad files: errors name the file (and the tensor), and the model is left as it was', () => {
    let m: GPT2;
    let before: Record<string, Float32Array>;
    let good: Record<string, SafetensorsEntry>;
    beforeEach(async () => {
      m = model(TINY, { seed: freshSeed() });
      before = await readAll(m.stateDict());
      // Another model's weights, so a partial load would show.
      const other = new GPT2(TINY, { device, precision: 'f32', seed: freshSeed() });
      try {
        good = await entriesOf(other);
      } finally {
        other.dispose();
      }
    });
    afterEach(async () => {
      const after = await readAll(m.stateDict());
      for (const name of Object.keys(before)) expect([name, sameBits(after[name], before[name])]).toEqual([name, true]);
    });

    const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

    test('a missing file', async () => {
      const file = path.join(dir, 'nope.safetensors');
      await expect(m.loadSafetensors(file)).rejects.toThrow(new RegExp(escape(file)));
    });

    test('a file shorter than the 8-byte header length', async () => {
      const file = path.join(dir, 'short.safetensors');
      fs.writeFileSync(file, Buffer.from([1, 2, 3, 4]));
      await expect(m.loadSafetensors(file)).rejects.toThrow(new RegExp(`${escape(file)}.*too short`));
    });

    test('a header length beyond the file', async () => {
      const file = path.join(dir, 'long-header.safetensors');
      const bytes = Buffer.alloc(64);
      bytes.writeBigUInt64LE(1_000_000n);
      fs.writeFileSync(file, bytes);
      await expect(m.loadSafetensors(file)).rejects.toThrow(new RegExp(escape(file)));
    });

    test('a header that is not JSON, or not a JSON object', async () => {
      for (const text of ['{"transformer.wte.weight": {', 'null', '[1, 2]']) {
        const file = path.join(dir, 'bad-json.safetensors');
        const json = Buffer.from(text);
        const prefix = Buffer.alloc(8);
        prefix.writeBigUInt64LE(BigInt(json.length));
        fs.writeFileSync(file, Buffer.concat([prefix, json]));
        await expect(m.loadSafetensors(file)).rejects.toThrow(new RegExp(escape(file)));
      }
    });

    test('a file cut short in the data names the tensor that does not fit', async () => {
      const file = path.join(dir, 'cut.safetensors');
      writeSafetensors(file, good);
      const bytes = fs.readFileSync(file);
      fs.writeFileSync(file, bytes.subarray(0, bytes.length - 100));
      const last = names(TINY.nLayer).at(-1)!;
      await expect(m.loadSafetensors(file)).rejects.toThrow(new RegExp(`${escape(file)}.*'${escape(last)}'`));
    });

    test('a tensor with the wrong shape (same number of elements)', async () => {
      const file = path.join(dir, 'shape.safetensors');
      const name = 'transformer.h.1.mlp.c_proj.weight';
      writeSafetensors(file, { ...good, [name]: { shape: [4 * TINY.nEmbd, TINY.nEmbd], data: good[name].data } });
      await expect(m.loadSafetensors(file)).rejects.toThrow(new RegExp(`${escape(file)}.*'${escape(name)}'`));
      const wte = 'transformer.wte.weight';
      writeSafetensors(file, { ...good, [wte]: { shape: [TINY.nEmbd, TINY.vocabSize], data: good[wte].data } });
      await expect(m.loadSafetensors(file)).rejects.toThrow(new RegExp(`${escape(file)}.*'${escape(wte)}'`));
    });

    test('a missing or an extra tensor', async () => {
      const file = path.join(dir, 'names.safetensors');
      const missing = 'transformer.h.0.attn.c_proj.weight';
      const rest = { ...good };
      delete rest[missing];
      writeSafetensors(file, rest);
      await expect(m.loadSafetensors(file)).rejects.toThrow(new RegExp(`${escape(file)}.*'${escape(missing)}'`));
      const extra = 'transformer.h.2.attn.c_attn.weight';
      writeSafetensors(file, { ...good, [extra]: good['transformer.h.0.attn.c_attn.weight'] });
      await expect(m.loadSafetensors(file)).rejects.toThrow(new RegExp(`${escape(file)}.*'${escape(extra)}'`));
    });

    test('an unsupported dtype, and a data range that does not match the shape', async () => {
      const name = 'transformer.h.0.mlp.c_fc.weight';
      for (const [dtype, size] of [['F16', 2], ['F32', 3]] as const) {
        const header: Record<string, unknown> = {};
        let offset = 0;
        const blobs: Buffer[] = [];
        for (const [n, { shape, data }] of Object.entries(good)) {
          const bytes = n === name ? data.length * size : data.byteLength;
          header[n] = { dtype: n === name ? dtype : 'F32', shape, data_offsets: [offset, offset + bytes] };
          offset += bytes;
          blobs.push(Buffer.alloc(bytes));
        }
        const json = Buffer.from(JSON.stringify(header));
        const prefix = Buffer.alloc(8);
        prefix.writeBigUInt64LE(BigInt(json.length));
        const file = path.join(dir, `dtype-${dtype}-${size}.safetensors`);
        fs.writeFileSync(file, Buffer.concat([prefix, json, ...blobs]));
        await expect(m.loadSafetensors(file)).rejects.toThrow(new RegExp(`${escape(file)}.*'${escape(name)}'`));
      }
    });
  });

  test('a failed save (no such folder) throws naming the path and leaves no temp file behind', async () => {
    const m = model(TINY, { seed: freshSeed() });
    const file = path.join(dir, 'missing-folder', 'model.safetensors');
    await expect(m.saveSafetensors(file)).rejects.toThrow(/missing-folder/);
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});

// ---- errors ----------------------------------------------------------------------------------

describe('errors', () => {
  test('a token id out of range names the array, the index and the value', async () => {
    const m = model();
    const { ids, tgt } = batch(freshSeed());
    const badIds = ids.slice();
    badIds[5] = TINY.vocabSize;
    await expect(m.forwardBackward(badIds, tgt, B, T)).rejects.toThrow(/inputs\[5\] = 37.*vocabulary/);
    await expect(m.loss(badIds, tgt, B, T)).rejects.toThrow(/inputs\[5\] = 37/);
    const badTgt = tgt.slice();
    badTgt[B * T - 1] = -1;
    await expect(m.forwardBackward(ids, badTgt, B, T)).rejects.toThrow(new RegExp(`targets\\[${B * T - 1}\\] = -1`));
    // Nothing was accumulated by the failed calls.
    for (const g of Object.values(await readAll(m.grads()))) expect(g.every((v) => v === 0)).toBe(true);
  });

  test('token arrays whose length is not B*T', async () => {
    const m = model();
    const { ids, tgt } = batch(freshSeed());
    await expect(m.forwardBackward(ids.subarray(1), tgt, B, T)).rejects.toThrow(new RegExp(`inputs.*${B * T - 1}.*B\\*T = ${B * T}`));
    await expect(m.forwardBackward(ids, tgt, B, T + 1)).rejects.toThrow(/B\*T = 33/);
    await expect(m.loss(ids, tgt.subarray(2), B, T)).rejects.toThrow(/targets/);
    const t = tensor(ids.subarray(1), [B * T - 1], { dtype: 'i32', device });
    try {
      await expect(m.forwardBackward(t, tgt, B, T)).rejects.toThrow(/inputs.*B\*T = 30/);
    } finally {
      t.dispose();
    }
  });

  test('T beyond maxSeqLen, and B / T that are not positive integers', async () => {
    const m = model();
    const rng = new HostRng(freshSeed());
    const ids = tokens(rng, 33, TINY.vocabSize);
    await expect(m.forwardBackward(ids, ids, 1, 33)).rejects.toThrow(/T = 33.*maxSeqLen 32/);
    await expect(m.loss(ids, ids, 1, 33)).rejects.toThrow(/maxSeqLen/);
    for (const [b, t] of [[0, 33], [33, 0], [1.5, 22], [-1, -33], [Number.NaN, 33]]) {
      await expect(m.forwardBackward(ids, ids, b, t)).rejects.toThrow(/B|T/);
    }
  });

  test('bad options: gradScale not finite, observeInputs not a function', async () => {
    const m = model();
    const { ids, tgt } = batch(freshSeed());
    await expect(m.forwardBackward(ids, tgt, B, T, { gradScale: Number.NaN })).rejects.toThrow(/gradScale/);
    await expect(m.forwardBackward(ids, tgt, B, T, { observeInputs: 5 as unknown as () => void })).rejects.toThrow(/observeInputs/);
  });

  test('loadStateDict: a missing, extra or misshaped tensor is named and nothing is changed', async () => {
    const m = model(TINY, { seed: freshSeed() });
    const before = await readAll(m.stateDict());
    const good = await readAll(model(TINY, { seed: freshSeed() }).stateDict());
    const missing = 'transformer.h.1.mlp.c_fc.weight';
    const rest = { ...good };
    delete rest[missing];
    await expect(m.loadStateDict(rest)).rejects.toThrow(new RegExp(`missing.*'${missing.replace(/\./g, '\\.')}'`));
    await expect(m.loadStateDict({ ...good, 'transformer.h.2.attn.c_attn.weight': new Float32Array(3) })).rejects.toThrow(/unexpected.*'transformer\.h\.2\.attn\.c_attn\.weight'/);
    await expect(m.loadStateDict({ ...good, 'transformer.h.0.attn.c_proj.weight': new Float32Array(5) })).rejects.toThrow(/'transformer\.h\.0\.attn\.c_proj\.weight'.*5 values/);
    await expect(m.loadStateDict({ ...good, 'transformer.wte.weight': new Float64Array(37 * 32) as unknown as Float32Array })).rejects.toThrow(/'transformer\.wte\.weight'/);
    // A tensor of the transposed shape (same element count) is caught by its shape.
    const name = 'transformer.h.0.mlp.c_proj.weight';
    const transposed = tensor(good[name], [4 * TINY.nEmbd, TINY.nEmbd], { device });
    try {
      await expect(m.loadStateDict({ ...good, [name]: transposed })).rejects.toThrow(new RegExp(`'${name.replace(/\./g, '\\.')}'.*expected f32 \\[32, 128\\]`));
    } finally {
      transposed.dispose();
    }
    const after = await readAll(m.stateDict());
    for (const n of Object.keys(before)) expect([n, sameBits(after[n], before[n])]).toEqual([n, true]);
    // The same record as tensors on the device loads fine.
    const asTensors: Record<string, Tensor> = {};
    for (const [n, data] of Object.entries(good)) asTensors[n] = tensor(data, shapes(TINY)[n], { device });
    try {
      await m.loadStateDict(asTensors);
    } finally {
      for (const t of Object.values(asTensors)) t.dispose();
    }
    const loaded = await readAll(m.stateDict());
    for (const n of Object.keys(good)) expect([n, sameBits(loaded[n], good[n])]).toEqual([n, true]);
  });

  test('bad configs and options', () => {
    expect(() => new GPT2({ vocabSize: 10, nLayer: 1, nHead: 3, nEmbd: 32 }, { device })).toThrow(/divisible/);
    expect(() => new GPT2({ vocabSize: 10, nLayer: 1, nHead: 4, nEmbd: 12 }, { device })).toThrow(/even/);
    expect(() => new GPT2({ vocabSize: 0, nLayer: 1, nHead: 1, nEmbd: 4 }, { device })).toThrow(/vocabSize/);
    expect(() => new GPT2({ vocabSize: 10, nLayer: 1.5, nHead: 1, nEmbd: 4 }, { device })).toThrow(/nLayer/);
    expect(() => new GPT2({ vocabSize: 10, nLayer: 1, nHead: 1, nEmbd: 4, maxSeqLen: 0 }, { device })).toThrow(/maxSeqLen/);
    expect(() => new GPT2(TINY, { device, seed: 0.5 })).toThrow(/seed/);
    expect(() => new GPT2(TINY, { device, seed: 2 ** 50 })).toThrow(/seed/);
    expect(() => new GPT2(TINY, { device, seed: -(2 ** 50) })).toThrow(/seed/);
    expect(() => new GPT2(TINY, { device, precision: 'f16' as 'f32' })).toThrow(/precision/);
  });

  test('a disposed model refuses every call', async () => {
    const m = new GPT2(TINY, { device });
    m.dispose();
    m.dispose(); // idempotent
    const { ids, tgt } = batch(freshSeed());
    await expect(m.forwardBackward(ids, tgt, B, T)).rejects.toThrow(/disposed/);
    await expect(m.loss(ids, tgt, B, T)).rejects.toThrow(/disposed/);
    expect(() => m.stateDict()).toThrow(/disposed/);
    expect(() => m.grads()).toThrow(/disposed/);
    expect(() => m.zeroGrad()).toThrow(/disposed/);
    await expect(m.loadStateDict({})).rejects.toThrow(/disposed/);
    await expect(m.saveSafetensors(path.join(os.tmpdir(), 'never.safetensors'))).rejects.toThrow(/disposed/);
    await expect(m.loadSafetensors(path.join(os.tmpdir(), 'never.safetensors'))).rejects.toThrow(/disposed/);
  });
});

// ---- memory ----------------------------------------------------------------------------------

test('memory: a model holds exactly its two flat buffers; forward/backward/loss leave nothing behind; dispose frees all', async () => {
  await settleGarbage();
  const baseline = liveOn(device);
  const seed = freshSeed();
  const { ids, tgt } = batch(seed);
  const m = new GPT2(TINY, { device, seed });
  const bytes = 2 * 4 * m.parameterCount;
  expect(liveOn(device)).toEqual({ bytes: baseline.bytes + bytes, buffers: baseline.buffers + 2 });
  await m.forwardBackward(ids, tgt, B, T, { observeInputs: () => undefined });
  await m.forwardBackward(ids, tgt, B, T);
  await m.loss(ids, tgt, B, T);
  await expect(m.forwardBackward(ids, tgt, B, T + 1)).rejects.toThrow();
  const views = [m.stateDict(), m.grads()];
  await settleGarbage();
  expect(liveOn(device)).toEqual({ bytes: baseline.bytes + bytes, buffers: baseline.buffers + 2 });
  expect(views.length).toBe(2);
  m.dispose();
  await settleGarbage();
  expect(liveOn(device)).toEqual(baseline);
});
