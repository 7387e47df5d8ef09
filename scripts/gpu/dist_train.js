#!/usr/bin/env node
// The GPU kit's data-parallel training check (step `dist` of scripts/gpu/check.sh): a few steps of
// newton-muon-train with --nproc-per-node <world> (NCCL, one rank per GPU) against a plain run with
// the same --batch-size, on synthetic token shards; the losses must agree step by step.
//
//   node scripts/gpu/dist_train.js [--device=cuda|cpu] [--world=N] [--steps=N] [--work=DIR]
//                                  [--json=FILE] [--note=FILE]
//
// Agreement: a group of one computes exactly what a plain run does, so world 1 must match bit for
// bit. With several ranks the gradients are summed in another order; the tolerance is 1e-6
// relative on the CPU (f32) and 1e-3 on CUDA (bf16 GEMM operands amplify the last-bit
// differences over the steps). The run also reports both runs' median step time.
'use strict';
const { median, parseFlags } = require('../../bench/script_args');
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.join(__dirname, '..', '..');
const { writeShard } = require(path.join(root, 'dist', 'data', 'shard'));

const args = parseFlags();
const DEVICE = args.device ?? 'cuda';
const WORLD = Number(args.world ?? 1);
const STEPS = Number(args.steps ?? 8);
const WORK = path.resolve(args.work ?? path.join(root, '.dist-train'));
const TOLERANCE = WORLD === 1 ? 0 : DEVICE === 'cuda' ? 1e-3 : 1e-6;

/** Tokens with structure (each follows from the two before), so the loss falls. */
function tokens(n, seed) {
  const out = [1, seed % 512];
  let s = seed;
  while (out.length < n) {
    s = (s * 1103515245 + 12345) >>> 0;
    out.push((out[out.length - 1] * 7 + out[out.length - 2] + ((s >>> 16) % 3)) % 512);
  }
  return out;
}

function run(name, extra) {
  const out = path.join(WORK, name);
  const argv = [path.join(root, 'dist', 'cli', 'train.js'), '--data', path.join(WORK, 'data', 'kit_train_*.bin'),
    '--val-data', path.join(WORK, 'data', 'kit_val_*.bin'), '--vocab-size', '512', '--micro-batch', '4', '--seq-len', '64',
    '--batch-size', String(4 * 64 * 2 * WORLD), '--steps', String(STEPS), '--val-every', '2', '--val-tokens', String(4 * 64 * 2),
    '--device', DEVICE, '--out', out, ...extra];
  const t0 = Date.now();
  const r = spawnSync(process.execPath, argv, { encoding: 'utf8', timeout: 240_000 });
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  if (r.status !== 0) throw new Error(`${name}: newton-muon-train exited with ${r.status ?? r.signal}: ${(r.stderr || '').trim().split('\n').pop()}`);
  const metrics = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
  return { metrics, seconds: (Date.now() - t0) / 1000 };
}

function main() {
  fs.rmSync(WORK, { recursive: true, force: true });
  fs.mkdirSync(path.join(WORK, 'data'), { recursive: true });
  writeShard(path.join(WORK, 'data', 'kit_val_000000.bin'), tokens(20_000, 1));
  writeShard(path.join(WORK, 'data', 'kit_train_000001.bin'), tokens(4 * 64 * 2 * WORLD * (STEPS + 2) + 1, 2));
  const plain = run('plain', []);
  const parallel = run('parallel', ['--nproc-per-node', String(WORLD), '--dist-timeout', '120']);
  let maxRel = 0;
  let bitwise = 0;
  let values = 0;
  const problems = [];
  plain.metrics.forEach((p, i) => {
    const q = parallel.metrics[i];
    for (const key of ['train_loss', 'val_loss']) {
      if (p[key] == null) continue;
      values++;
      if (q === undefined || q[key] == null) {
        problems.push(`step ${p.step}: no ${key} in the parallel run`);
        continue;
      }
      if (p[key] === q[key]) bitwise++;
      const rel = Math.abs(p[key] - q[key]) / Math.abs(p[key]);
      maxRel = Math.max(maxRel, rel);
      if (!(rel <= TOLERANCE)) problems.push(`step ${p.step} ${key}: ${q[key]} vs ${p[key]} (relative ${rel.toExponential(2)})`);
    }
  });
  const batch = 4 * 64 * 2 * WORLD;
  const stepMs = (m) => Number((median(m.filter((x) => x.step > 1).map((x) => batch / x.tokens_per_s)) * 1000).toFixed(2));
  const summary = {
    device: DEVICE, world: WORLD, steps: STEPS, tolerance: TOLERANCE, maxRelative: maxRel, bitwise, values, problems,
    plainSeconds: plain.seconds, parallelSeconds: parallel.seconds, medianStepMs: { plain: stepMs(plain.metrics), parallel: stepMs(parallel.metrics) },
  };
  if (args.json) fs.writeFileSync(args.json, `${JSON.stringify(summary, null, 2)}\n`);
  const note = `${WORLD} rank${WORLD > 1 ? 's' : ''} (${DEVICE === 'cuda' ? 'nccl' : 'gloo'}) vs plain, ${STEPS} steps: max relative ${maxRel.toExponential(2)} ` +
    `(limit ${TOLERANCE}), ${bitwise}/${values} losses bit for bit; median step ${summary.medianStepMs.parallel} ms vs ${summary.medianStepMs.plain} ms` +
    `${problems.length ? `; ${problems[0]}` : ''}`;
  if (args.note) fs.writeFileSync(args.note, `${note}\n`);
  console.log(`dist-train: ${note}`);
  process.exit(problems.length === 0 ? 0 : 1);
}

try {
  main();
} catch (error) {
  console.error(`dist-train: ${error.message}`);
  if (args.note) fs.writeFileSync(args.note, `${error.message.slice(0, 300)}\n`);
  process.exit(1);
}
