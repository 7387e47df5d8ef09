#!/usr/bin/env node
// The GPU kit's loss-curve check: our trainer against the PyTorch reference trainer
// (scripts/reference/train.py, written from the specs) on the same job, from the same initial
// weights, on the same tokens, with Newton-Muon and with Muon. It is how we know the CUDA trainer
// is right, not only fast.
//
//   node scripts/gpu/loss_curve.js [--device=cuda|cpu] [--steps=N] [--python=python3]
//                                  [--reference-device=cpu|cuda] [--work=DIR] [--json=FILE]
//                                  [--markdown=FILE] [--note=FILE]
//
// --reference-device: where PyTorch runs the reference (default: --device). The kit's dry run
// checks our CUDA flow on the host-emulated module with the reference on the CPU (no GPU there).
//
// The job: the `tiny` preset (4 layers x 128, byte-level Moby-Dick, 8 micro-batches of 8 x 128
// tokens per step) for N steps (default 200 on CUDA, 12 on the CPU), evaluated every N/10 steps.
// Initial weights come from PyTorch's RNG (train.py --write-init) and both trainers load them.
//
// Verdict:
//   CUDA: ours runs in bf16 mixed precision, the reference under bf16 autocast (--bf16); their
//     distance is compared with the reference's own bf16 noise, measured by a third run in fp32:
//     pass when every val loss (and the mean train loss of the last tenth of the steps) of ours
//     is within 2 x max(noise, 0.01) + 0.01 nats of the bf16 reference, where noise is the
//     largest |bf16 - fp32| distance of the reference over the same points.
//   CPU: ours in f32 against the reference in float64: every train and val loss within 1e-4.
// Exit status: 0 pass, 1 a curve disagrees (or a run failed), 75 PyTorch is not importable.
'use strict';
const { parseFlags } = require('../../bench/script_args');
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.join(__dirname, '..', '..');
const { prepareDefaultCorpus } = require(path.join(root, 'dist', 'data', 'corpus'));
const { presetConfig, Trainer } = require(path.join(root, 'dist', 'train'));

const args = parseFlags();
const DEVICE = args.device ?? 'cuda';
const REFERENCE_DEVICE = args['reference-device'] ?? DEVICE;
const STEPS = Number(args.steps ?? (DEVICE === 'cuda' ? 200 : 12));
const PYTHON = args.python ?? 'python3';
const WORK = path.resolve(args.work ?? path.join(root, '.loss-curve'));
const REFERENCE = path.join(root, 'scripts', 'reference', 'train.py');
const OPTIMIZERS = ['newton-muon', 'muon'];
const CPU_TOLERANCE = 1e-4;

function python(argv, what) {
  const r = spawnSync(PYTHON, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) throw new Error(`${what} failed (${r.error?.message ?? `status ${r.status}`}): ${(r.stderr || '').trim().split('\n').slice(-3).join(' | ')}`);
  return r.stdout;
}

function readCurve(file) {
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l));
}

/** Largest |a - b| over the points where both have `key`, with the step where it happens. */
function maxDiff(a, b, key) {
  let worst = { diff: 0, step: null };
  const byStep = new Map(b.map((p) => [p.step, p]));
  for (const p of a) {
    const q = byStep.get(p.step);
    if (q === undefined || p[key] == null || q[key] == null) continue;
    const d = Math.abs(p[key] - q[key]);
    if (!(d <= worst.diff)) worst = { diff: d, step: p.step };
  }
  return worst;
}

/** Mean train loss over the last tenth of the steps (the end of the curve, smoothed). */
function tailMean(curve) {
  const points = curve.filter((p) => p.train_loss != null && p.step > STEPS - Math.max(1, Math.round(STEPS / 10)));
  return points.reduce((s, p) => s + p.train_loss, 0) / points.length;
}

async function ours(optimizer, corpusDir, init) {
  const base = presetConfig('tiny', optimizer);
  const config = {
    ...base, steps: STEPS, warmdownSteps: Math.round((base.warmdownSteps * STEPS) / base.steps),
    valEvery: Math.max(1, Math.round(STEPS / 10)), device: DEVICE, initWeights: init, targetLoss: null,
  };
  const outDir = path.join(WORK, `ours-${optimizer}`);
  fs.rmSync(outDir, { recursive: true, force: true });
  const trainer = await Trainer.create({ config, outDir, cacheDir: corpusDir, onWarning: (w) => console.log(`warning: ${w}`) });
  try {
    const result = await trainer.run();
    return { outDir, curve: result.metrics, seconds: result.elapsedS };
  } finally {
    trainer.dispose();
  }
}

function reference(configFile, init, corpus, variant) {
  const out = path.join(WORK, `ref-${variant.name}-${path.basename(path.dirname(configFile))}.jsonl`);
  const t0 = Date.now();
  python([REFERENCE, '--config', configFile, '--init', init, '--train', corpus.trainGlob, '--val', corpus.valGlob,
    '--out', out, '--device', REFERENCE_DEVICE, '--quiet', ...variant.flags], `the reference trainer (${variant.name})`);
  return { curve: readCurve(out), seconds: (Date.now() - t0) / 1000 };
}

async function main() {
  const probe = spawnSync(PYTHON, ['-c', 'import torch, numpy; print(torch.__version__)'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    if (args.note) fs.writeFileSync(args.note, `PyTorch is not importable by ${PYTHON}: no reference curve\n`);
    console.log(`PyTorch is not importable by ${PYTHON}`);
    process.exit(75);
  }
  fs.mkdirSync(WORK, { recursive: true });
  const corpusDir = path.join(WORK, 'cache');
  const corpus = prepareDefaultCorpus({ tokenizer: 'byte', cacheDir: corpusDir });
  const init = path.join(WORK, 'init.safetensors');
  python([REFERENCE, '--write-init', init, '--model', JSON.stringify(presetConfig('tiny').model), '--seed', '1'], 'writing the initial weights');
  const variants = DEVICE === 'cuda'
    ? [{ name: 'bf16', flags: ['--dtype', 'float32', '--bf16'] }, { name: 'fp32', flags: ['--dtype', 'float32'] }]
    : [{ name: 'float64', flags: ['--dtype', 'float64'] }];
  const report = { device: DEVICE, steps: STEPS, torch: probe.stdout.trim(), optimizers: {}, pass: true };
  for (const optimizer of OPTIMIZERS) {
    const mine = await ours(optimizer, corpusDir, init);
    const configFile = path.join(mine.outDir, 'config.json');
    const [ref, refAlt] = variants.map((v) => reference(configFile, init, corpus, v));
    const val = maxDiff(mine.curve, ref.curve, 'val_loss');
    const train = maxDiff(mine.curve, ref.curve, 'train_loss');
    const tail = Math.abs(tailMean(mine.curve) - tailMean(ref.curve));
    const entry = {
      ours: mine.curve, reference: ref.curve, seconds: { ours: mine.seconds, reference: ref.seconds },
      maxValDiff: val, maxTrainDiff: train, tailTrainDiff: tail,
      finalVal: { ours: mine.curve.at(-1).val_loss, reference: ref.curve.at(-1).val_loss },
    };
    if (DEVICE === 'cuda') {
      const noise = Math.max(maxDiff(ref.curve, refAlt.curve, 'val_loss').diff, Math.abs(tailMean(ref.curve) - tailMean(refAlt.curve)));
      entry.referenceFp32 = refAlt.curve;
      entry.noise = noise;
      entry.tolerance = 2 * Math.max(noise, 0.01) + 0.01;
      entry.pass = val.diff <= entry.tolerance && tail <= entry.tolerance;
    } else {
      entry.tolerance = CPU_TOLERANCE;
      entry.pass = val.diff <= CPU_TOLERANCE && train.diff <= CPU_TOLERANCE;
    }
    report.optimizers[optimizer] = entry;
    report.pass = report.pass && entry.pass;
    console.log(`${optimizer}: final val ours ${entry.finalVal.ours.toFixed(4)} reference ${entry.finalVal.reference.toFixed(4)}; ` +
      `max |val diff| ${val.diff.toExponential(2)} (step ${val.step}), tail train diff ${tail.toExponential(2)}; tolerance ${entry.tolerance.toExponential(2)}` +
      `${entry.noise !== undefined ? ` (reference bf16-vs-fp32 noise ${entry.noise.toExponential(2)})` : ''}: ${entry.pass ? 'ok' : 'DISAGREE'}`);
  }
  const rows = Object.entries(report.optimizers).map(([name, e]) =>
    `| ${name} | ${e.finalVal.ours.toFixed(4)} | ${e.finalVal.reference.toFixed(4)} | ${e.maxValDiff.diff.toExponential(2)} | ${e.tailTrainDiff.toExponential(2)} | ` +
    `${e.noise !== undefined ? e.noise.toExponential(2) : '-'} | ${e.tolerance.toExponential(2)} | ${e.pass ? 'ok' : '**DISAGREE**'} |`);
  const markdown = [
    `Loss-curve check on ${DEVICE}: tiny preset, ${STEPS} steps, same init (PyTorch RNG) and tokens; reference = scripts/reference/train.py ` +
      `(${DEVICE === 'cuda' ? 'bf16 autocast; noise = its own bf16-vs-fp32 distance' : 'float64'}), torch ${report.torch}.`,
    '',
    '| optimizer | final val (ours) | final val (reference) | max val diff | tail train diff | reference noise | tolerance | verdict |',
    '|---|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
  if (args.json) fs.writeFileSync(args.json, `${JSON.stringify(report)}\n`);
  if (args.markdown) fs.writeFileSync(args.markdown, `${markdown}\n`);
  if (args.note) {
    fs.writeFileSync(args.note, `${Object.entries(report.optimizers).map(([n, e]) =>
      `${n} val ${e.finalVal.ours.toFixed(3)} vs ${e.finalVal.reference.toFixed(3)} (max diff ${e.maxValDiff.diff.toExponential(1)}, tol ${e.tolerance.toExponential(1)})`).join('; ')}\n`);
  }
  process.exit(report.pass ? 0 : 1);
}

main().catch((error) => {
  console.error(`loss-curve: ${error.message}`);
  if (args.note) fs.writeFileSync(args.note, `error: ${error.message.slice(0, 300)}\n`);
  process.exit(1);
});
