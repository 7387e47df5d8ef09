#!/usr/bin/env node
// A few dozen training steps of the speedrun-124m configuration with our Trainer (lib/train) on
// synthetic tokens, with Muon and with Newton-Muon: the GPU kit's `train-124m` slot
// (scripts/gpu/check.sh; scripts/gpu/slots.js turns the JSON into the summary's table).
//
//   node bench/train_steps.js [--device=cuda|cpu] [--preset=full|quick|dry]
//        [--slots=scripts/gpu/reference/slots.json] [--budget=SECONDS] [--tmp=DIR] [--keep]
//        [--metrics-to=DIR] [--json=FILE]
//
// --metrics-to copies each run's metrics.jsonl there (train-OPTIMIZER-metrics.jsonl).
// Data: two shards written with lib/data's ShardWriter into a fresh temp folder (in --tmp when
// given; removed at the end unless --keep): train = steps x batch tokens + 1 seeded uniform ids in [0, 50257), val = valTokens + 1.
// Config: presetConfig('speedrun-124m', optimizer) with slots.json "train-124m"'s overrides: steps,
// micro-batch, sequence length, micro-batches per step (the preset's 8 x 64 x 1024 = 524,288 tokens
// per step in the full run), Newton-Muon's refreshEvery, valEvery = steps and valTokens = one
// micro-batch (evaluation at step 0 and at the end only; neither is inside a step's time),
// warmdownSteps 0 (the schedule does not change a step's cost; the preset's 1800 would not fit),
// saveEvery 0 and finalCheckpoint false (no 1.5 GB checkpoint; a budget stop still writes one).
// Step time: the Trainer's own per-step clock (metrics.jsonl tokens_per_s = batch tokens / step
// seconds; a step ends when its summed loss is read back, which is queued behind the step's own
// optimizer updates, so each step's time holds its forward/backward passes and its update).
// Medians leave out the first `warmupSteps` steps. Newton-Muon steps are classed by the
// optimizer's schedule (step s collects input statistics when s % refreshEvery == 0 and refreshes
// the preconditioners in its own update): 'plain' = preconditioned steps that are neither a
// collecting step nor the step after one; the extra cost of one refresh = median over the pairs
// (s, s+1) of t(s) + t(s+1) - 2 x plain median (the pair also absorbs any cost that spills into
// the next step). Peak memory: memoryStats()[device].peakBytes,
// reset after step 1 and read before the last step (whose evaluation runs f32 forward passes), so it
// covers training steps 2 .. steps-1 (model, optimizer state, activations; not cuBLAS workspaces).
// --budget: each optimizer gets an equal share of what is left; a run that would overrun its share
// stops early through Trainer.requestStop() (recorded as stoppedEarly, with the steps it did).
'use strict';
const { median, parseFlags, slotSpec } = require('./script_args');
const fs = require('fs');
const os = require('os');
const path = require('path');
const nm = require('..');
const { mfu } = require('./gpt2_flops');
const { fillTokens, uint32Stream } = require('./synthetic');

const args = parseFlags();
const DEVICE = args.device ?? 'cuda';
const PRESET = args.preset ?? 'full';
const spec = slotSpec(args, 'train-124m');
const started = Date.now();
const deadline = args.budget ? started + Number(args.budget) * 1000 : Infinity;
/** Seconds kept back for the final evaluation and checkpoint, beyond 2 x the first step's time. */
const RESERVE_S = DEVICE === 'cuda' ? 10 : 1;
/** The speedrun preset's Newton-Muon refresh period: the overhead is also reported at it. */
const PRESET_REFRESH = nm.presetConfig('speedrun-124m', 'newton-muon').refreshEvery;

function writeTokens(file, count, vocab, seed) {
  const writer = new nm.ShardWriter(file);
  try {
    const next = uint32Stream(seed);
    const chunk = new Uint16Array(1 << 20);
    for (let done = 0; done < count; done += chunk.length) {
      const part = chunk.subarray(0, Math.min(chunk.length, count - done));
      writer.append(fillTokens(part, vocab, next));
    }
    writer.commit();
  } catch (error) {
    writer.abort();
    throw error;
  }
}

function configFor(optimizer, p, data) {
  const c = nm.presetConfig('speedrun-124m', optimizer);
  if (p.model) c.model = { ...c.model, ...p.model };
  c.data = { kind: 'shards', train: data.train, val: data.val };
  c.steps = p.steps;
  c.microBatch = p.microBatch;
  c.seqLen = p.seqLen;
  c.batchTokens = p.microBatches * p.microBatch * p.seqLen;
  c.refreshEvery = p.refreshEvery;
  c.warmupSteps = 0;
  c.warmdownSteps = 0;
  c.valEvery = p.steps;
  c.valTokens = p.valTokens;
  c.saveEvery = 0;
  c.device = DEVICE;
  return nm.validateConfig(c);
}

/** Step-time statistics from the run's metrics (seconds per step from tokens_per_s). */
function analyse(optimizer, config, points, warmupSteps) {
  const times = new Map();
  for (const m of points) if (m.step > 0 && m.tokens_per_s > 0) times.set(m.step, config.batchTokens / m.tokens_per_s);
  const steps = [...times.keys()].sort((a, b) => a - b);
  const after = steps.filter((s) => s > warmupSteps);
  const out = { stepS: Object.fromEntries(steps.map((s) => [s, times.get(s)])), measuredSteps: after.length };
  const all = median(after.map((s) => times.get(s)));
  out.medianStepS = all;
  if (optimizer !== 'newton-muon') {
    out.steadyStepS = all;
    return out;
  }
  const P = config.refreshEvery;
  const collects = (s) => s % P === 0;
  const plain = after.filter((s) => s > P && !collects(s) && !collects(s - 1));
  const plainS = median(plain.map((s) => times.get(s)));
  out.plainSteps = plain.length;
  out.plainStepS = plainS;
  out.steadyStepS = plainS;
  const refresh = after.filter((s) => collects(s));
  out.refreshSteps = refresh;
  out.refreshStepS = median(refresh.map((s) => times.get(s)));
  out.afterRefreshStepS = median(refresh.filter((s) => times.has(s + 1)).map((s) => times.get(s + 1)));
  const pairs = refresh.filter((s) => times.has(s + 1)).map((s) => times.get(s) + times.get(s + 1));
  out.refreshExtraS = plainS === null || !pairs.length ? null : median(pairs) - 2 * plainS;
  return out;
}

async function runOne(optimizer, p, data, tmp, shareS, result) {
  const config = configFor(optimizer, p, data);
  const outDir = path.join(tmp, `run-${optimizer}`);
  const warnings = [];
  const runStart = Date.now();
  const r = { status: 'started', optimizer, lr: config.lr, refreshEvery: optimizer === 'newton-muon' ? config.refreshEvery : null };
  result.runs[optimizer] = r;
  let trainer = null;
  try {
    const t0 = Date.now();
    trainer = await nm.Trainer.create({
      config, outDir, onWarning: (m) => warnings.push(m), finalCheckpoint: false,
      onEvent: (e) => {
        if (e.type !== 'step' || e.point.step === 0) return;
        const s = e.point.step;
        if (s === 1) nm.resetPeakMemory();
        if (s < config.steps) r.peakBytes = nm.memoryStats()[DEVICE]?.peakBytes ?? null;
        // Stop early when the next step (and the final evaluation + checkpoint, about as long as
        // the first step) would overrun this optimizer's share of the budget.
        const stepS = config.batchTokens / Math.max(1, e.point.tokens_per_s);
        const firstS = r.firstStepS ??= stepS;
        if (s < config.steps && Date.now() - runStart + (1.5 * stepS + 2 * firstS + RESERVE_S) * 1000 > shareS * 1000) {
          r.stoppedEarly = `time budget: stopped after step ${s} of ${config.steps} (share ${shareS.toFixed(0)}s)`;
          trainer.requestStop();
        }
      },
    });
    r.createS = (Date.now() - t0) / 1000;
    r.parameters = trainer.model.parameterCount;
    r.microBatches = nm.microBatches(config);
    const res = await trainer.run();
    r.steps = res.steps;
    r.trainS = res.elapsedS;
    r.initialValLoss = res.initialValLoss;
    r.finalTrainLoss = res.finalTrainLoss;
    r.finalValLoss = res.finalValLoss;
    Object.assign(r, analyse(optimizer, config, res.metrics, p.warmupSteps));
    r.tokensPerS = r.steadyStepS ? config.batchTokens / r.steadyStepS : null;
    r.mfu = mfu(r.tokensPerS, config.model, config.seqLen, result.gpu);
    const metricsFile = path.join(outDir, 'metrics.jsonl');
    r.metricsLines = fs.existsSync(metricsFile) ? fs.readFileSync(metricsFile, 'utf8').split('\n').filter(Boolean).length : 0;
    if (args['metrics-to'] && fs.existsSync(metricsFile)) fs.copyFileSync(metricsFile, path.join(String(args['metrics-to']), `train-${optimizer}-metrics.jsonl`));
    if (optimizer === 'newton-muon') r.failedRefreshes = trainer.failedRefreshes;
    r.status = 'ok';
  } catch (error) {
    r.status = 'error';
    r.error = String(error.message ?? error).slice(0, 400);
  } finally {
    trainer?.dispose();
    r.warnings = warnings.slice(0, 5);
    r.wallS = (Date.now() - runStart) / 1000;
  }
  return r;
}

async function main() {
  const p = spec[PRESET];
  if (!p) throw new Error(`unknown preset '${PRESET}' (slots.json has ${Object.keys(spec).join(', ')})`);
  const dev = nm.devices().find((d) => d.name === DEVICE);
  if (!dev?.available) throw new Error(`device ${DEVICE} is not available: ${dev?.reason}`);
  const gpu = DEVICE === 'cuda' ? String(dev.details?.name ?? 'GPU') : null;
  const base = nm.presetConfig('speedrun-124m');
  const model = { ...base.model, ...(p.model ?? {}) };
  const batchTokens = p.microBatches * p.microBatch * p.seqLen;
  const result = {
    side: 'newton-muon', device: DEVICE, gpu, details: dev.details ?? null, preset: PRESET, what: p.what ?? null,
    model, steps: p.steps, microBatch: p.microBatch, seqLen: p.seqLen, microBatches: p.microBatches, batchTokens,
    refreshEvery: p.refreshEvery, presetRefreshEvery: PRESET_REFRESH, warmupSteps: p.warmupSteps, valTokens: p.valTokens,
    node: process.version, runs: {}, complete: false,
  };
  const save = () => { if (args.json) fs.writeFileSync(args.json, `${JSON.stringify(result, null, 1)}\n`); };
  save();
  // A fresh folder each time (inside --tmp when given), so a run cut off earlier cannot collide.
  const parent = args.tmp ? path.resolve(String(args.tmp)) : os.tmpdir();
  fs.mkdirSync(parent, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(parent, 'nm-train-bench-'));
  console.log(`train on ${gpu ?? DEVICE}: ${model.nLayer} layers, width ${model.nEmbd}; ${p.steps} steps of ${p.microBatches} x ${p.microBatch} x ${p.seqLen} = ` +
    `${batchTokens} tokens; ${p.optimizers.join(', ')}; Newton-Muon refresh every ${p.refreshEvery}${p.what ? `; ${p.what}` : ''}; data in ${tmp}`);
  try {
    const t0 = Date.now();
    const data = { train: path.join(tmp, 'synthetic_train_000000.bin'), val: path.join(tmp, 'synthetic_val_000000.bin') };
    writeTokens(data.train, p.steps * batchTokens + 1, model.vocabSize, 2024);
    writeTokens(data.val, p.valTokens + 1, model.vocabSize, 2025);
    result.dataS = (Date.now() - t0) / 1000;
    const todo = [...p.optimizers];
    while (todo.length) {
      const optimizer = todo.shift();
      const shareS = Number.isFinite(deadline) ? (deadline - Date.now()) / 1000 / (todo.length + 1) : Infinity;
      const r = await runOne(optimizer, p, data, tmp, shareS, result);
      const ms = (v) => (v == null ? 'n/a' : `${(v * 1e3).toFixed(1)} ms`);
      console.log(`train ${optimizer}: ${r.status}${r.error ? `: ${r.error}` : ''}; ${r.steps ?? 0} steps, median step ${ms(r.medianStepS)}` +
        (optimizer === 'newton-muon' ? `, plain ${ms(r.plainStepS)}, refresh ${ms(r.refreshStepS)} + next ${ms(r.afterRefreshStepS)} (extra ${ms(r.refreshExtraS)})` : '') +
        `, ${r.tokensPerS ? r.tokensPerS.toFixed(0) : 'n/a'} tok/s, peak ${r.peakBytes != null ? (r.peakBytes / 2 ** 30).toFixed(2) : 'n/a'} GiB, ` +
        `loss ${r.initialValLoss?.toFixed(3)} -> ${r.finalValLoss?.toFixed(3)}${r.stoppedEarly ? `; ${r.stoppedEarly}` : ''} (${r.wallS.toFixed(0)}s)`);
      save();
    }
  } finally {
    if (!args.keep) fs.rmSync(tmp, { recursive: true, force: true });
  }
  const muon = result.runs.muon;
  const newton = result.runs['newton-muon'];
  if (muon?.steadyStepS && newton?.plainStepS) {
    result.overhead = {
      perStep: newton.plainStepS / muon.steadyStepS - 1,
      refreshExtraS: newton.refreshExtraS,
      [`amortizedAt${PRESET_REFRESH}`]: newton.refreshExtraS == null ? null : (newton.plainStepS + newton.refreshExtraS / PRESET_REFRESH) / muon.steadyStepS - 1,
      [`amortizedAt${p.refreshEvery}`]: newton.refreshExtraS == null ? null : (newton.plainStepS + newton.refreshExtraS / p.refreshEvery) / muon.steadyStepS - 1,
    };
    console.log(`train: Newton-Muon overhead per step ${(result.overhead.perStep * 100).toFixed(1)}% (plain steps)` +
      (newton.refreshExtraS != null ? `, one refresh +${(newton.refreshExtraS * 1e3).toFixed(1)} ms, amortized over ${PRESET_REFRESH} steps ${(result.overhead[`amortizedAt${PRESET_REFRESH}`] * 100).toFixed(1)}%` : ''));
  }
  await nm.synchronize(DEVICE);
  const left = nm.memoryStats()[DEVICE];
  result.leftAllocated = left ? { bytes: left.bytes, buffers: left.buffers } : null;
  result.complete = true;
  result.seconds = (Date.now() - started) / 1000;
  save();
  const failed = Object.values(result.runs).filter((r) => r.status !== 'ok').map((r) => r.optimizer);
  if (failed.length) console.log(`train: failed: ${failed.join(', ')}`);
  if (left?.bytes) console.log(`train: ${left.bytes} bytes in ${left.buffers} buffers left allocated`);
  process.exit(failed.length || left?.bytes ? 1 : 0);
}

main().catch((error) => {
  console.error(`train_steps: ${error.stack ?? error}`);
  process.exit(1);
});
