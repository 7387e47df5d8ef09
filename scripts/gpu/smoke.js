#!/usr/bin/env node
// Every op of the package once, on small tensors, on DEVICE and on the CPU, results compared:
// the fastest CUDA-vs-CPU parity check, and the workload compute-sanitizer runs over.
//
//   node scripts/gpu/smoke.js [--device=cuda|cpu] [--quick] [--json=FILE]
//
// Inputs come from randn/rand with fixed seeds (generated on the host, so both devices see the
// same bits). Each case runs on the CPU backend (the reference, per the architecture) and on
// DEVICE; outputs are compared bit for bit (copies, casts, fills, random creation, integer
// results) or by relative Frobenius error with the tolerances the test suites use on CUDA
// (f32 GEMM-like 1e-5..1e-4, bf16 1e-2, Newton-Schulz in bf16 5e-2). With --device=cpu the
// comparison is CPU against CPU (what the dry run exercises). --quick (for compute-sanitizer)
// skips the realistic-size cases. Also checks that no device memory is left allocated, and lists
// the native entry points no case reached (so a new op without a smoke case is visible).
// Exit status 0 only when every case matched.
'use strict';
const { parseFlags } = require('../../bench/script_args');
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..', '..');
const nm = require(root);
const { native } = require(path.join(root, 'dist', 'native'));

const args = parseFlags();
const DEVICE = args.device ?? 'cuda';
const QUICK = Boolean(args.quick);

// ---- which native entry points the cases reach ------------------------------------------------
const reached = new Map();
for (const [name, fn] of Object.entries(native)) {
  if (typeof fn !== 'function') continue;
  try {
    native[name] = function counted(...a) {
      reached.set(name, (reached.get(name) ?? 0) + 1);
      return fn.apply(this, a);
    };
  } catch { /* read-only export: coverage for it is simply not reported */ }
}
const NOT_OPS = new Set(['cpuInfo', 'loadCuda', 'memoryStats', 'resetPeakMemory']);

// ---- comparison ---------------------------------------------------------------------------------
function relFrob(a, b) {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  if (num === 0) return 0;
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}

function firstBitDifference(a, b) {
  const bitsA = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const bitsB = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  if (bitsA.length !== bitsB.length) return `lengths ${a.length} vs ${b.length}`;
  for (let i = 0; i < bitsA.length; i++) {
    if (bitsA[i] !== bitsB[i]) {
      const at = Math.floor(i / a.BYTES_PER_ELEMENT);
      return `element ${at}: ${a[at]} vs cpu ${b[at]}`;
    }
  }
  return null;
}

/** Reads every output: exact comparisons read raw bits, the others values. */
async function readAll(outputs, exact) {
  const host = {};
  for (const [name, t] of Object.entries(outputs)) {
    host[name] = exact ? await t.readRaw() : await t.read();
    t.dispose();
  }
  return host;
}

// ---- the cases ----------------------------------------------------------------------------------
// run(device) is synchronous (inside nm.scope, which disposes every intermediate) and returns
// { name: Tensor }; runAsync(device) returns { name: TypedArray } and cleans up after itself.
// tol: null = bit-exact; a number = max relative Frobenius error per output.
const cases = [];
const add = (op, name, tol, run, extra = {}) => cases.push({ op, name, tol, run, ...extra });
const addAsync = (op, name, tol, runAsync, extra = {}) => cases.push({ op, name, tol, runAsync, ...extra });

const r = (shape, seed, device, opts = {}) => nm.randn(shape, { seed, device, ...opts });

// creation, transfer, views
add('tensor', 'f32/bf16/i32/u16 from host data', null, (d) => ({
  f32: nm.tensor([1.5, -2, 3.25, 1e-8, -0, 65504], [2, 3], { device: d }),
  bf16: nm.tensor([1.5, -2, 3.140625, 1e-8, 7, 1 / 3], [3, 2], { dtype: 'bf16', device: d }),
  i32: nm.tensor(new Int32Array([-5, 0, 2147483647, -2147483648]), [4], { device: d }),
  u16: nm.tensor(new Uint16Array([0, 1, 65535]), [3], { device: d }),
}));
add('randn/rand', 'f32 and bf16, seeded', null, (d) => ({
  n32: r([37, 13], 11, d), n16: r([5, 7, 3], 12, d, { dtype: 'bf16' }),
  u32: nm.rand([101], { seed: 13, device: d, low: -2, high: 3 }), u16: nm.rand([9], { seed: 14, device: d, dtype: 'bf16' }),
}));
add('zeros/full/empty+fill', 'every dtype', null, (d) => ({
  z: nm.zeros([3, 5], { device: d }), fb: nm.full([7], -1.25, { dtype: 'bf16', device: d }),
  fi: nm.full([4], -7, { dtype: 'i32', device: d }), fu: nm.fill(nm.empty([6], { dtype: 'u16', device: d }), 4242),
  ff: nm.fill(nm.empty([1000], { device: d }), Math.PI),
}));
addAsync('to/read', 'host -> device -> host round trip, views', null, async (d) => {
  const x = r([64, 48], 21, 'cpu');
  const y = await x.to(d);
  const z = await y.to(d); // same-device copy
  const back = await z.to('cpu');
  const rows = y.slice(5, 9);
  const v = rows.view([-1]);
  const out = { back: await back.readRaw(), slice: await v.readRaw(), same: await z.readRaw() };
  for (const t of [x, y, z, back, rows, v]) t.dispose();
  return out;
});

// elementwise, reductions, copies, casts
for (const dtype of ['f32', 'bf16']) {
  const tol = dtype === 'f32' ? 1e-6 : 1e-2;
  add('add/sub/mul', dtype, tol, (d) => {
    const a = r([257, 33], 31, d, { dtype });
    const b = r([257, 33], 32, d, { dtype });
    return { add: nm.add(a, b), sub: nm.sub(a, b), mul: nm.mul(a, b) };
  });
  add('scale/axpy', dtype, tol, (d) => {
    const x = r([1001], 33, d, { dtype });
    const y = r([1001], 34, d, { dtype });
    return { scale: nm.scale(x, -0.37), axpy: nm.axpy(y, x, 2.5) };
  });
  add('sum/sumOfSquares', `${dtype}, 100003 elements`, 1e-5, (d) => {
    const x = r([100003], 35, d, { dtype, mean: 0.25 });
    return { sum: nm.sum(x), sumsq: nm.sumOfSquares(x) };
  });
}
add('copy/copyRows', 'whole tensors and strided blocks', null, (d) => {
  const src = r([40, 24], 41, d);
  const dst = nm.zeros([40, 24], { device: d });
  const blk = nm.zeros([17, 30], { device: d });
  nm.copyRows(blk, src, { srcRow: 3, srcCol: 5, dstRow: 2, dstCol: 7, rows: 11, cols: 13 });
  const b16 = r([9, 10], 42, d, { dtype: 'bf16' });
  const d16 = nm.zeros([9, 10], { dtype: 'bf16', device: d });
  return { copy: nm.copy(dst, src), block: blk, copy16: nm.copy(d16, b16) };
});
add('cast', 'f32<->bf16, u16->i32, i32->f32, same-dtype', null, (d) => {
  const x = r([513], 43, d, { std: 3 });
  const ids = nm.tensor(new Uint16Array([0, 1, 255, 50256, 65535]), [5], { device: d });
  const ints = nm.tensor(new Int32Array([-3, 0, 16777217, 7]), [4], { device: d });
  return {
    f2b: nm.cast(x, 'bf16'), b2f: nm.cast(nm.cast(x, 'bf16'), 'f32'), f2f: nm.cast(x, 'f32'),
    u2i: nm.cast(ids, 'i32'), i2f: nm.cast(ints, 'f32'), b2b: nm.cast(nm.cast(x, 'bf16'), 'bf16'),
  };
});

// GEMM
for (const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]]) {
  const tag = `${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}`;
  add('gemm', `f32 ${tag} 33x29 by 29x17, alpha 0.5 beta 2`, 1e-5, (d) => {
    const a = r(transA ? [29, 33] : [33, 29], 51, d);
    const b = r(transB ? [17, 29] : [29, 17], 52, d);
    const c = r([33, 17], 53, d);
    return { c: nm.gemm(c, a, b, { transA, transB, alpha: 0.5, beta: 2 }) };
  });
}
add('gemm', 'bf16 operands, f32 and bf16 outputs, k = 1 and batched', 1e-2, (d) => {
  const a = r([65, 130], 54, d, { dtype: 'bf16' });
  const b = r([130, 47], 55, d, { dtype: 'bf16' });
  const k1a = r([5, 1], 56, d);
  const k1b = r([1, 6], 57, d);
  const ba = r([3, 12, 20], 58, d, { dtype: 'bf16' });
  const bb = r([3, 9, 20], 59, d, { dtype: 'bf16' });
  return {
    f32out: nm.matmul(a, b, { outDtype: 'f32' }), bf16out: nm.matmul(a, b), k1: nm.matmul(k1a, k1b),
    batched: nm.matmul(ba, bb, { transB: true, outDtype: 'f32' }),
  };
});
if (!QUICK) {
  add('gemm', 'GPT-2 shapes: 512x768 @ 3072x768^T (bf16 -> f32), wgrad 3072x512^T @ 512x768 (f32)', 1e-4, (d) => {
    const x = r([512, 768], 60, d, { dtype: 'bf16' });
    const w = r([3072, 768], 61, d, { dtype: 'bf16', std: 0.02 });
    const dy = r([512, 3072], 62, d);
    const xf = r([512, 768], 63, d);
    return { fwd: nm.matmul(x, w, { transB: true, outDtype: 'f32' }), wgrad: nm.matmul(dy, xf, { transA: true }) };
  });
}

// optimizer ops
const NS_TOL = DEVICE === 'cuda' ? 5e-2 : 1e-5;
add('newtonSchulz5', 'wide 24x40, tall 40x24, batch 3x16x32, steps 0 and 2', NS_TOL, (d) => ({
  wide: nm.newtonSchulz5(r([24, 40], 71, d)), tall: nm.newtonSchulz5(r([40, 24], 72, d)),
  batch: nm.newtonSchulz5(r([3, 16, 32], 73, d)),
  steps0: nm.newtonSchulz5(r([8, 8], 74, d), { steps: 0 }), steps2: nm.newtonSchulz5(r([12, 20], 75, d), { steps: 2 }),
}));
if (!QUICK) {
  add('newtonSchulz5', 'GPT-2 sizes 768x768, 3072x768, batch 4x768x3072', NS_TOL, (d) => ({
    sq: nm.newtonSchulz5(r([768, 768], 76, d)), tall: nm.newtonSchulz5(r([3072, 768], 77, d)),
    wide: nm.newtonSchulz5(r([4, 768, 3072], 78, d)),
  }));
}
add('accumulateInputGram', 'f32, bf16, 4 blocks, explicit scale', 1e-4, (d) => {
  const tokens = QUICK ? 96 : 2048;
  const width = QUICK ? 32 : 768;
  const k1 = nm.zeros([width, width], { device: d });
  nm.accumulateInputGram(k1, r([tokens, width], 81, d));
  nm.accumulateInputGram(k1, r([tokens, width], 82, d, { dtype: 'bf16' }), { scale: 0.5 });
  const k4 = nm.zeros([4, width / 4, width / 4], { device: d });
  nm.accumulateInputGram(k4, r([tokens, width], 83, d), { blocks: 4 });
  return { k1, k4 };
});
add('rightPrecondition', '1 block and 4 blocks', 1e-4, (d) => {
  const w = QUICK ? 16 : 768;
  const g1 = r([3 * w, w], 84, d);
  const kinv1 = r([w, w], 85, d, { std: 0.1 });
  const g4 = r([w, 4 * w], 86, d);
  const kinv4 = r([4, w, w], 87, d, { std: 0.1 });
  return { one: nm.rightPrecondition(g1, kinv1), four: nm.rightPrecondition(g4, kinv4) };
});
addAsync('choleskyInverse', 'SPD batch, one failing matrix (-I) gets I and info != 0', 1e-3, async (d) => {
  const dim = QUICK ? 24 : 768;
  const minusI = new Float32Array(dim * dim);
  for (let i = 0; i < dim; i++) minusI[i * dim + i] = -1;
  const out = nm.scope(() => {
    const z = r([5, 2 * dim, dim], 91, d, { std: 0.1 });
    const k = nm.matmul(z, z, { transA: true });
    const third = k.slice(2, 3);
    nm.copy(third, nm.tensor(minusI, [1, dim, dim], { device: d })); // matrix 2 := -I: not positive definite
    return nm.choleskyInverse(k, { ridge: 0.2 });
  });
  const inverse = await out.inverse.read();
  const info = await out.info.read();
  out.inverse.dispose();
  out.info.dispose();
  return { inverse, info };
}, { exactOutputs: ['info'] });

// optimizers
function matrixSpecs(d, seed) {
  const specs = [
    { name: 'qkv', shape: [48, 16], rowBlocks: 3 },
    { name: 'proj', shape: [16, 16] },
    { name: 'fc', shape: [64, 16] },
    { name: 'down', shape: [16, 64], inputBlocks: 4 },
  ];
  return specs.map((s, i) => ({
    name: s.name, rowBlocks: s.rowBlocks, inputBlocks: s.inputBlocks,
    param: r(s.shape, seed + 2 * i, d, { std: 0.5 }), grad: r(s.shape, seed + 2 * i + 1, d),
  }));
}

async function optimizerCase(Kind, d, opts) {
  const mats = matrixSpecs(d, 100);
  const before = {};
  for (const m of mats) before[m.name] = await m.param.read();
  const opt = new Kind(mats.map(({ param, grad, name, rowBlocks, inputBlocks }) => ({ param, grad, name, rowBlocks, inputBlocks })),
    { lr: 0.02, onWarning: () => {}, ...opts });
  const x16 = r([40, 16], 120, d);
  const x64 = r([40, 64], 121, d, { dtype: 'bf16' });
  for (let s = 0; s < 4; s++) {
    if (opt.collectsStatistics?.()) {
      for (const m of mats) opt.observeInput(m.param, m.param.shape[1] === 16 ? x16 : x64);
      opt.observeInput(mats[0].param, x16); // two observations in one step: averaged
    }
    await opt.step();
    for (const m of mats) nm.axpy(m.grad, m.param, 0.1); // new gradients each step
  }
  const out = {};
  // Updates W - W0: what the suites compare (the tolerance is relative to the change).
  for (const m of mats) {
    const w = await m.param.read();
    out[`delta/${m.name}`] = w.map((v, i) => v - before[m.name][i]);
  }
  if (opt.flushReports) await opt.flushReports();
  const state = opt.stateDict();
  for (const [k, t] of Object.entries(state.tensors)) if (k.startsWith('K')) out[k] = await t.read();
  opt.dispose();
  for (const m of mats) { m.param.dispose(); m.grad.dispose(); }
  x16.dispose();
  x64.dispose();
  return out;
}
addAsync('Muon.step', '4 steps: row blocks, weight decay', NS_TOL, (d) => optimizerCase(nm.Muon, d, { weightDecay: 0.1 }));
addAsync('NewtonMuon.step', '4 steps, refresh every 2: statistics, block-diagonal K, Cholesky', NS_TOL,
  (d) => optimizerCase(nm.NewtonMuon, d, { refreshEvery: 2 }));
addAsync('AdamW.step', '3 steps, 2 params', 1e-5, async (d) => {
  const p = [r([64, 48], 131, d), r([100], 132, d)];
  const g = [r([64, 48], 133, d), r([100], 134, d)];
  const opt = new nm.AdamW(p.map((param, i) => ({ param, grad: g[i], name: `p${i}` })), { lr: 1e-2, weightDecay: 0.1 });
  for (let s = 0; s < 3; s++) await opt.step();
  const out = { p0: await p[0].read(), p1: await p[1].read() };
  opt.dispose();
  for (const t of [...p, ...g]) t.dispose();
  return out;
});

// GPT-2 model ops (lib/gpt2/ops.ts), when the package has them.
if (typeof nm.rmsnormForward === 'function') {
  add('embeddingForward/Backward', 'vocab 50, C 24, repeated ids', 1e-5, (d) => {
    const wte = r([50, 24], 141, d);
    const ids = nm.tensor(new Int32Array([3, 49, 0, 3, 17, 3, 8, 49]), [8], { device: d });
    const dout = r([8, 24], 142, d);
    const dwte = nm.zeros([50, 24], { device: d });
    return { emb: nm.embeddingForward(wte, ids), dwte: nm.embeddingBackward(dwte, dout, ids) };
  });
  add('rmsnormForward/Backward', 'n 37, C 48; f32 and bf16 out', 1e-2, (d) => {
    const x = r([37, 48], 143, d, { std: 2 });
    const f = nm.rmsnormForward(x);
    const h = nm.rmsnormForward(x, { outDtype: 'bf16' });
    const dout = r([37, 48], 144, d);
    return { out: f.out, rstd: f.rstd, out16: h.out, dx: nm.rmsnormBackward(dout, x, f.rstd) };
  });
  add('geluForward/Backward', '1000 elements, f32 and bf16 out', 1e-2, (d) => {
    const x = r([1000], 145, d, { std: 3 });
    const dout = r([1000], 146, d);
    return { g: nm.geluForward(x), g16: nm.geluForward(x, { outDtype: 'bf16' }), dx: nm.geluBackward(dout, x) };
  });
  // CUDA's flash kernels exist for head dims 16, 32 and 64 only (8 is refused), naive for any.
  for (const [algo, hd] of [['naive', 8], ['flash', 16]]) {
    add('rotary/attentionForward/Backward', `b 2, t 19, 3 heads of ${hd}, ${algo}`, 1e-4, (d) => {
      const s = { b: 2, t: 19, heads: 3 };
      const qkv = r([38, 9 * hd], 147, d);
      nm.rotary(qkv, s);
      // The CPU reference always runs its default algorithm.
      const use = d === 'cpu' ? 'auto' : algo;
      const f = nm.attentionForward(qkv, s, { algo: use });
      const dout = r([38, 3 * hd], 148, d);
      const dqkv = nm.attentionBackward(dout, qkv, f.out, f.lse, s, { algo: use });
      nm.rotary(dqkv, s, { inverse: true });
      return { out: f.out, lse: f.lse, dqkv };
    });
  }
  // flash-bf16 (bf16 tensor cores on CUDA, head dim 64 only) against the CPU's flash-bf16, which
  // has the same definition (the same bf16 roundings): they differ only by f32 summation order
  // and the rare probability that rounds to the other bf16 neighbour, hence 1e-3.
  add('attentionForward/Backward', 'b 2, t 77, 2 heads of 64, flash-bf16 on both', 1e-3, (d) => {
    const s = { b: 2, t: 77, heads: 2 };
    const qkv = r([154, 384], 150, d, { std: 1.5 });
    const f = nm.attentionForward(qkv, s, { algo: 'flash-bf16' });
    const dout = r([154, 128], 151, d);
    return { out: f.out, lse: f.lse, dqkv: nm.attentionBackward(dout, qkv, f.out, f.lse, s, { algo: 'flash-bf16' }) };
  });
  add('crossEntropy', 'n 13, vocab 101, loss and gradient', 1e-5, (d) => {
    const logits = r([13, 101], 149, d, { std: 3 });
    const targets = nm.tensor(new Int32Array([0, 100, 5, 5, 17, 99, 1, 2, 3, 50, 60, 70, 80]), [13], { device: d });
    const losses = nm.crossEntropy(logits, targets, { gradScale: 1 / 13 });
    return { losses, grad: logits };
  });
}
if (typeof nm.GPT2 === 'function') {
  addAsync('GPT2.forwardBackward', 'tiny config (2 layers, C 32, vocab 96), f32 on both devices', 1e-4, async (d) => {
    const model = new nm.GPT2({ vocabSize: 96, nLayer: 2, nHead: 2, nEmbd: 32, maxSeqLen: 16 }, { device: d, precision: 'f32', seed: 7 });
    const B = 2;
    const T = 16;
    const ids = Int32Array.from({ length: B * T + 1 }, (_, i) => (i * 37 + 11) % 96);
    const loss = await model.forwardBackward(ids.subarray(0, B * T), ids.subarray(1), B, T);
    const out = { loss: Float32Array.of(loss), grads: await model.flatBuffers().grads.read() };
    model.dispose();
    return out;
  });
}

// ---- running ----------------------------------------------------------------------------------
async function evaluate(c, device) {
  if (c.runAsync) return c.runAsync(device);
  const outputs = nm.scope(() => c.run(device));
  return readAll(outputs, c.tol === null);
}

function compare(c, got, ref) {
  const problems = [];
  let worst = 0;
  for (const name of Object.keys(ref)) {
    const a = got[name];
    const b = ref[name];
    if (!a) { problems.push(`${name}: missing on ${DEVICE}`); continue; }
    if (a.length !== b.length) { problems.push(`${name}: ${a.length} values vs ${b.length} on cpu`); continue; }
    const exact = c.tol === null || (c.exactOutputs ?? []).includes(name) || a instanceof Int32Array || a instanceof Uint16Array;
    if (exact) {
      const diff = firstBitDifference(a, b);
      if (diff) problems.push(`${name}: not bit-identical (${diff})`);
      continue;
    }
    for (let i = 0; i < a.length; i++) {
      if (Number.isFinite(b[i]) !== Number.isFinite(a[i])) { problems.push(`${name}: element ${i} is ${a[i]}, cpu ${b[i]}`); break; }
    }
    const err = relFrob(a, b);
    worst = Math.max(worst, err);
    if (!(err <= c.tol)) problems.push(`${name}: relative error ${err.toExponential(2)} > ${c.tol}`);
  }
  return { problems, worst };
}

async function main() {
  const info = nm.devices();
  const dev = info.find((x) => x.name === DEVICE);
  if (!dev?.available) {
    console.error(`smoke: device ${DEVICE} is not available: ${dev?.reason ?? 'unknown device'}`);
    process.exit(2);
  }
  console.log(`smoke: ${cases.length} cases on ${DEVICE} against cpu${QUICK ? ' (quick)' : ''}; ${DEVICE}: ${JSON.stringify(dev.details ?? {})}`);
  await nm.synchronize();
  const baseline = nm.memoryStats();
  const results = [];
  for (const c of cases) {
    const label = `${c.op} (${c.name})`;
    if (c.deviceOnly && c.deviceOnly !== DEVICE) {
      results.push({ op: c.op, case: c.name, status: 'skipped', detail: `${c.deviceOnly} only` });
      console.log(`skip  ${label}: ${c.deviceOnly} only`);
      continue;
    }
    const t0 = process.hrtime.bigint();
    let entry;
    try {
      const ref = await evaluate(c, 'cpu');
      const got = await evaluate(c, DEVICE);
      await nm.synchronize();
      const { problems, worst } = compare(c, got, ref);
      entry = { op: c.op, case: c.name, status: problems.length ? 'mismatch' : 'ok', worst, tol: c.tol, detail: problems.join('; ') };
    } catch (error) {
      entry = { op: c.op, case: c.name, status: 'error', tol: c.tol, detail: String(error && error.stack ? error.stack.split('\n').slice(0, 3).join(' | ') : error) };
    }
    entry.ms = Number(process.hrtime.bigint() - t0) / 1e6;
    results.push(entry);
    const err = entry.worst === undefined || c.tol === null ? (c.tol === null ? 'bit-exact' : '') : `rel err ${entry.worst.toExponential(2)} (tol ${c.tol})`;
    console.log(`${entry.status === 'ok' ? 'ok   ' : 'FAIL '} ${label}: ${entry.status === 'ok' ? err : entry.detail}`);
  }
  await nm.synchronize();
  const after = nm.memoryStats();
  const leaks = [];
  for (const d of new Set([...Object.keys(baseline), ...Object.keys(after)])) {
    const b = baseline[d] ?? { bytes: 0, buffers: 0 };
    const a = after[d] ?? { bytes: 0, buffers: 0 };
    if (a.bytes !== b.bytes || a.buffers !== b.buffers) leaks.push(`${d}: ${a.buffers - b.buffers} buffers, ${a.bytes - b.bytes} bytes still allocated`);
  }
  const unreached = Object.keys(native).filter((k) => typeof native[k] === 'function' && !NOT_OPS.has(k) && !reached.has(k));
  const failed = results.filter((x) => x.status === 'mismatch' || x.status === 'error');
  console.log(leaks.length ? `FAIL  memory: ${leaks.join('; ')}` : 'ok    memory: every allocation freed');
  if (unreached.length) console.log(`note  native entry points no case reached: ${unreached.join(', ')}`);
  console.log(`smoke: ${results.length - failed.length - results.filter((x) => x.status === 'skipped').length} ok, ` +
    `${failed.length} failed${failed.length ? ` (${[...new Set(failed.map((x) => x.op))].join(', ')})` : ''}, ` +
    `${results.filter((x) => x.status === 'skipped').length} skipped`);
  if (args.json) {
    fs.writeFileSync(args.json, JSON.stringify({ device: DEVICE, quick: QUICK, details: dev.details ?? null, results, leaks, unreached }, null, 1));
  }
  process.exit(failed.length || leaks.length ? 1 : 0);
}

main().catch((error) => {
  console.error(`smoke: ${error.stack ?? error}`);
  process.exit(1);
});
