#!/usr/bin/env node
// GPT-2 forward+backward tokens/s and peak memory on our backend: newton-muon's side of the GPU
// kit's `gpt2-fwd-bwd` slot (scripts/gpu/check.sh; PyTorch's side is
// scripts/gpu/reference/gpt2_bench.py; scripts/gpu/slots.js puts the two together).
//
//   node bench/gpt2_fwd_bwd.js [--device=cuda|cpu] [--preset=full|quick|dry]
//        [--slots=scripts/gpu/reference/slots.json] [--algos=auto,flash,...] [--budget=SECONDS]
//        [--json=FILE]
//
// For each attention algorithm of the preset (slots.json "gpt2-fwd-bwd"), in order: a GPT2 on the
// device (default precision: bf16 mixed precision on CUDA, f32 on the CPU; seed 1), `warmup`
// untimed forwardBackward calls, resetPeakMemory(), then `calls` timed calls. forwardBackward reads
// the loss back, so each call ends synchronized: every call is timed whole, wall clock. Tokens are
// seeded uniform ids in [0, vocab), resident on the device (as PyTorch's side has them). Gradients
// accumulate across calls (no zeroGrad), as on PyTorch's side. Peak memory is
// memoryStats()[device].peakBytes over the timed calls: the tensors newton-muon allocates
// (parameters, gradients, activations, temporaries), not cuBLAS workspaces.
// An algorithm this build does not know (AttentionAlgo, or the backend's list) is skipped with a
// note, and so is one that would not fit in --budget (estimated from the algorithms before it);
// one that runs out of device memory is recorded as 'oom' (a finding, not a failure of the script).
'use strict';
const { median, parseFlags, slotSpec } = require('./script_args');
const fs = require('fs');
const nm = require('..');
const { mfu } = require('./gpt2_flops');
const { randomTokens } = require('./synthetic');

const args = parseFlags();
const DEVICE = args.device ?? 'cuda';
const PRESET = args.preset ?? 'full';
const spec = slotSpec(args, 'gpt2-fwd-bwd');
const started = Date.now();
const deadline = args.budget ? started + Number(args.budget) * 1000 : Infinity;

const seconds = (t0) => Number(process.hrtime.bigint() - t0) / 1e9;

/**
 * null when `algo` runs on this device (one small attention forward), else why not. An
 * algorithm unknown to this build (the TypeScript list or the backend's) is 'unsupported'; any
 * other failure is an error of the algorithm itself.
 */
function probe(algo, cfg) {
  const c = cfg.nEmbd;
  const shape = { b: 1, t: 8, heads: cfg.nHead };
  const qkv = nm.randn([8, 3 * c], { seed: 7, device: DEVICE });
  try {
    const r = nm.attentionForward(qkv, shape, { algo });
    r.out.dispose();
    r.lse.dispose();
    return null;
  } catch (error) {
    const message = String(error.message ?? error);
    return { unsupported: /algo must be/i.test(message), message: message.slice(0, 300) };
  } finally {
    qkv.dispose();
  }
}

async function measure(algo, p, ids, targets) {
  const { model: cfg, B, T } = p;
  const t0 = process.hrtime.bigint();
  const model = new nm.GPT2(cfg, { device: DEVICE, seed: 1, attention: algo });
  const constructS = seconds(t0);
  try {
    const losses = [];
    const t1 = process.hrtime.bigint();
    for (let i = 0; i < p.warmup; i++) losses.push(await model.forwardBackward(ids, targets, B, T));
    const warmupS = seconds(t1);
    nm.resetPeakMemory();
    const walls = [];
    for (let i = 0; i < p.calls; i++) {
      const t = process.hrtime.bigint();
      losses.push(await model.forwardBackward(ids, targets, B, T));
      walls.push(seconds(t));
    }
    const peakBytes = nm.memoryStats()[DEVICE]?.peakBytes ?? null;
    const perCall = median(walls);
    return {
      status: 'ok', precision: model.precision, constructS, warmupS, callS: { median: perCall, min: Math.min(...walls), all: walls },
      tokensPerS: (B * T) / perCall, peakBytes, firstLoss: losses[0], lastLoss: losses[losses.length - 1],
    };
  } finally {
    model.dispose();
  }
}

async function main() {
  const p = spec[PRESET];
  if (!p) throw new Error(`unknown preset '${PRESET}' (slots.json has ${Object.keys(spec).join(', ')})`);
  const dev = nm.devices().find((d) => d.name === DEVICE);
  if (!dev?.available) throw new Error(`device ${DEVICE} is not available: ${dev?.reason}`);
  const gpu = DEVICE === 'cuda' ? String(dev.details?.name ?? 'GPU') : null;
  const algos = args.algos ? String(args.algos).split(',').filter(Boolean) : p.algos;
  const { model: cfg, B, T } = p;
  const result = {
    side: 'newton-muon', device: DEVICE, gpu, details: dev.details ?? null, preset: PRESET, what: p.what ?? null,
    model: cfg, B, T, warmup: p.warmup, calls: p.calls, node: process.version, algos: {}, headline: null, complete: false,
  };
  const save = () => { if (args.json) fs.writeFileSync(args.json, `${JSON.stringify(result, null, 1)}\n`); };
  save();
  console.log(`gpt2 fwd+bwd on ${gpu ?? DEVICE}: ${cfg.nLayer} layers, width ${cfg.nEmbd}, B=${B}, T=${T}; ` +
    `${p.warmup} warm-up + ${p.calls} timed calls per algorithm (${algos.join(', ')})${p.what ? `; ${p.what}` : ''}`);
  const n = B * T;
  const ids = nm.tensor(randomTokens(n, cfg.vocabSize, 11), [n], { dtype: 'i32', device: DEVICE });
  const targets = nm.tensor(randomTokens(n, cfg.vocabSize, 12), [n], { dtype: 'i32', device: DEVICE });
  let lastCost = null; // seconds the previous measured algorithm took, whole
  try {
    for (const algo of algos) {
      const why = probe(algo, cfg);
      if (why) {
        result.algos[algo] = why.unsupported
          ? { status: 'skipped', note: `not available in this build: ${why.message}` }
          : { status: 'error', error: `attention probe failed: ${why.message}` };
        console.log(`gpt2 ${algo}: ${result.algos[algo].status}: ${why.message}`);
        save();
        continue;
      }
      // The naive algorithm materialises the T x T scores: allow it three times the previous cost.
      const estimate = lastCost === null ? 0 : lastCost * (algo === 'naive' ? 3 : 1.2);
      if (Date.now() + estimate * 1000 > deadline) {
        result.algos[algo] = { status: 'skipped', note: `time budget: about ${estimate.toFixed(0)}s needed, ${((deadline - Date.now()) / 1000).toFixed(0)}s left of --budget=${args.budget}` };
        console.log(`gpt2 ${algo}: ${result.algos[algo].note}`);
        save();
        continue;
      }
      const t0 = process.hrtime.bigint();
      try {
        const r = await measure(algo, p, ids, targets);
        r.mfu = mfu(r.tokensPerS, cfg, T, gpu);
        result.algos[algo] = r;
        result.headline ??= algo;
        console.log(`gpt2 ${algo}: ${(r.callS.median * 1e3).toFixed(1)} ms/call (min ${(r.callS.min * 1e3).toFixed(1)}), ` +
          `${r.tokensPerS.toFixed(0)} tok/s${r.mfu.mfu != null ? `, MFU ${(r.mfu.mfu * 100).toFixed(1)}%` : ''}, ` +
          `peak ${(r.peakBytes / 2 ** 30).toFixed(2)} GiB, loss ${r.firstLoss.toFixed(4)} -> ${r.lastLoss.toFixed(4)}`);
      } catch (error) {
        const message = String(error.message ?? error).slice(0, 400);
        // Running out of device memory is a finding about the algorithm at this size, not a bug.
        result.algos[algo] = /out of memory/i.test(message) ? { status: 'oom', note: message } : { status: 'error', error: message };
        console.log(`gpt2 ${algo}: ${result.algos[algo].status}: ${message}`);
      }
      lastCost = seconds(t0);
      save();
    }
  } finally {
    ids.dispose();
    targets.dispose();
  }
  await nm.synchronize(DEVICE);
  const left = nm.memoryStats()[DEVICE];
  result.leftAllocated = left ? { bytes: left.bytes, buffers: left.buffers } : null;
  result.complete = true;
  result.seconds = (Date.now() - started) / 1000;
  save();
  const failed = Object.entries(result.algos).filter(([, r]) => r.status === 'error').map(([a]) => a);
  if (failed.length) console.log(`gpt2: errors in ${failed.join(', ')}`);
  if (left?.bytes) console.log(`gpt2: ${left.bytes} bytes in ${left.buffers} buffers left allocated`);
  process.exit(failed.length || result.headline === null || left?.bytes ? 1 : 0);
}

main().catch((error) => {
  console.error(`gpt2_fwd_bwd: ${error.stack ?? error}`);
  process.exit(1);
});
