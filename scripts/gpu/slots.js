#!/usr/bin/env node
// The GPU kit's GPT-2 slots, put together: reads what the steps `gpt2-fwd-bwd` and `train-124m`
// left in the logs folder, derives the ratios, MFU and the Newton-Muon overhead, merges them into
// OUT/results.json (key `slots`, next to the compare step's numbers) and writes OUT/gpt2-section.md
// (the 'gpu-gpt2' section of docs/BENCHMARKS.md, written there by scripts/gpu/ingest.js; the
// summary shows it too).
//
//   node scripts/gpu/slots.js --logs=DIR --out=DIR [--note=FILE --slot=gpt2-fwd-bwd|train-124m]
//
// Inputs (any may be missing): LOGS/gpt2-ours.json (bench/gpt2_fwd_bwd.js), LOGS/gpt2-torch.json
// (scripts/gpu/reference/gpt2_bench.py), LOGS/train-ours.json (bench/train_steps.js), env.txt and
// manifest.json. MFU = tokens/s x FLOPs per token (bench/gpt2_flops.js, the spec's count) / peak:
// against the H100 SXM / H200 datasheet dense bf16 peak (989.4 TFLOP/s; 756 for an H100 PCIe), and
// against the spec's measured bf16 ceiling of 790 TFLOP/s; n/a on the CPU (dry run).
'use strict';
const { parseFlags } = require('../../bench/script_args');
const fs = require('fs');
const path = require('path');
const { flopsPerToken, mfu } = require('../../bench/gpt2_flops');

const read = (file) => {
  try { return JSON.parse(fs.readFileSync(file, 'utf8')); } catch { return null; }
};
const readKeyValues = (file) => {
  const out = {};
  if (!fs.existsSync(file)) return out;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const at = line.indexOf(': ');
    if (at > 0) out[line.slice(0, at)] = line.slice(at + 2).trim();
  }
  return out;
};
const cell = (s) => String(s ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ');
const pct = (v, digits = 1) => (v == null || !Number.isFinite(v) ? 'n/a' : `${(v * 100).toFixed(digits)}%`);
const signedPct = (v) => (v == null || !Number.isFinite(v) ? 'n/a' : `${v >= 0 ? '+' : ''}${(v * 100).toFixed(1)}%`);
const ms = (s) => (s == null || !Number.isFinite(s) ? 'n/a' : `${(s * 1e3).toFixed(s < 0.1 ? 2 : 1)}`);
const tps = (v) => (v == null || !Number.isFinite(v) ? 'n/a' : v >= 1e4 ? `${(v / 1e3).toFixed(1)}K` : v.toFixed(0));
const signedMs = (s) => (s == null || !Number.isFinite(s) ? 'n/a' : `${s >= 0 ? '+' : '-'}${ms(Math.abs(s))} ms`);
const gib = (b) => (b == null || !Number.isFinite(b) ? 'n/a' : `${(b / 2 ** 30).toFixed(2)} GiB`);

/** The gpt2-fwd-bwd slot from both sides' JSON: rows, the headline ratio, MFU. */
function gpt2Slot(ours, torch) {
  if (!ours && !torch) return null;
  const model = ours?.model ?? torch?.model;
  const T = ours?.T ?? torch?.T;
  const gpu = ours?.gpu ?? (torch && torch.device !== 'cpu' ? torch.device : null);
  const slot = {
    preset: ours?.preset ?? torch?.preset, what: ours?.what ?? null, device: ours?.device ?? null, gpu, model, B: ours?.B ?? torch?.B, T,
    flopsPerToken: model ? flopsPerToken(model, T) : null, complete: { ours: Boolean(ours?.complete), torch: torch ? Boolean(torch.complete) : null },
    ours: {}, torch: null, headline: null,
  };
  for (const [algo, r] of Object.entries(ours?.algos ?? {})) {
    slot.ours[algo] = r.status === 'ok'
      ? { status: 'ok', precision: r.precision, callS: r.callS.median, callMinS: r.callS.min, tokensPerS: r.tokensPerS, peakBytes: r.peakBytes,
          firstLoss: r.firstLoss, ...mfuOf(r.tokensPerS, model, T, gpu) }
      : { status: r.status, note: r.note ?? r.error };
  }
  if (torch) {
    slot.torch = { version: torch.torch, cuda: torch.cuda, device: torch.device };
    for (const phase of ['eager', 'compile']) {
      const r = torch[phase];
      if (!r) continue;
      slot.torch[phase] = r.status === 'ok'
        ? { status: 'ok', callS: r.call_s.median, callMinS: r.call_s.min, eventS: r.event_s?.median ?? null, tokensPerS: r.tokens_per_s, peakBytes: r.peak_bytes,
            compileS: r.compile_s ?? null, firstLoss: r.first_loss, ...mfuOf(r.tokens_per_s, model, T, gpu) }
        : { status: r.status, note: r.note ?? r.error ?? null };
    }
  }
  const oursKey = ours?.headline ?? null;
  const torchKey = slot.torch?.compile?.status === 'ok' ? 'compile' : slot.torch?.eager?.status === 'ok' ? 'eager' : null;
  if (oursKey) {
    const o = slot.ours[oursKey];
    const t = torchKey ? slot.torch[torchKey] : null;
    slot.headline = {
      algo: oursKey, against: torchKey, oursTokensPerS: o.tokensPerS, torchTokensPerS: t?.tokensPerS ?? null,
      ratio: t ? o.tokensPerS / t.tokensPerS : null, oursMfu: o.mfu, torchMfu: t?.mfu ?? null, oursPeakBytes: o.peakBytes, torchPeakBytes: t?.peakBytes ?? null,
    };
  }
  return slot;
}

function mfuOf(tokensPerS, model, T, gpu) {
  const m = model ? mfu(tokensPerS, model, T, gpu) : null;
  return { mfu: m?.mfu ?? null, mfuOfCeiling: m?.mfuOfCeiling ?? null, tflops: m?.achievedTflops ?? null };
}

/** The train-124m slot from bench/train_steps.js's JSON. */
function trainSlot(r) {
  if (!r) return null;
  const runs = {};
  for (const [name, run] of Object.entries(r.runs ?? {})) {
    runs[name] = { ...run };
    delete runs[name].stepS;
    runs[name].stepTimesS = run.stepS ?? null;
  }
  return {
    preset: r.preset, what: r.what, device: r.device, gpu: r.gpu, model: r.model, steps: r.steps, microBatch: r.microBatch, seqLen: r.seqLen,
    microBatches: r.microBatches, batchTokens: r.batchTokens, refreshEvery: r.refreshEvery, presetRefreshEvery: r.presetRefreshEvery,
    warmupSteps: r.warmupSteps, complete: Boolean(r.complete), runs, overhead: r.overhead ?? null,
  };
}

function header(slot) {
  if (slot.device === 'cuda') return `${slot.gpu}`;
  return slot.device ? 'CPU backend: a dry run, not GPU numbers' : '?';
}

function gpt2Markdown(s) {
  const m = s.model;
  const lines = [
    `### Forward+backward: ${m.nLayer} layers, width ${m.nEmbd}, vocab ${m.vocabSize}, B = ${s.B}, T = ${s.T}${s.what ? ` (${s.what})` : ''}`,
    '',
    `One call = forward + backward of ${s.B * s.T} tokens, ending with the loss read back (each call timed whole, wall clock; median of the timed calls after warm-up). ` +
      'newton-muon: `GPT2.forwardBackward` (bf16 mixed precision on CUDA), by attention algorithm; PyTorch: scripts/reference/gpt2.py with bf16 autocast, eager and torch.compile of the loss function. ' +
      `MFU = tokens/s x ${(s.flopsPerToken / 1e9).toFixed(3)} GFLOP per token (6 x matmul parameters + 6 x L x C x T, the spec's count) / the GPU's datasheet dense bf16 peak ` +
      '(989.4 TFLOP/s for H100 SXM and H200), and in the next column / the spec\'s measured 790 TFLOP/s bf16 ceiling. ' +
      'Ratio = tokens/s over PyTorch torch.compile\'s (above 1: newton-muon faster). Peak memory: `memoryStats().peakBytes` (our tensors) / `torch.cuda.max_memory_allocated()`, over the timed calls.',
    '',
    '| implementation | ms per call (median / min) | tokens/s | ratio vs torch.compile | MFU (989) | MFU (790) | peak memory |',
    '|---|---|---|---|---|---|---|',
  ];
  const ref = s.torch?.compile?.status === 'ok' ? s.torch.compile.tokensPerS : null;
  const row = (what, r) => (r.status === 'ok'
    ? `| ${what} | ${ms(r.callS)} / ${ms(r.callMinS)} | ${tps(r.tokensPerS)} | ${ref ? (r.tokensPerS / ref).toFixed(2) : 'n/a'} | ${pct(r.mfu)} | ${pct(r.mfuOfCeiling)} | ${gib(r.peakBytes)} |`
    : `| ${what} | ${r.status}${r.note ? `: ${cell(r.note).slice(0, 200)}` : ''} | | | | | |`);
  for (const [algo, r] of Object.entries(s.ours)) lines.push(row(`newton-muon, attention '${algo}'${r.precision ? ` (${r.precision})` : ''}`, r));
  if (!s.torch) lines.push('| PyTorch | not run (dry run, or the torch part did not start) | | | | | |');
  else {
    for (const phase of ['eager', 'compile']) {
      const r = s.torch[phase];
      if (!r) continue;
      const what = phase === 'eager' ? 'PyTorch eager, bf16 autocast' : `PyTorch torch.compile, bf16 autocast${r.compileS != null ? ` (first call incl. compiling: ${r.compileS.toFixed(0)} s)` : ''}`;
      lines.push(row(what, r));
    }
  }
  const h = s.headline;
  if (h) {
    lines.push('', `Headline: newton-muon ('${h.algo}') ${tps(h.oursTokensPerS)} tokens/s` +
      (h.ratio != null ? ` vs PyTorch ${h.against === 'compile' ? 'torch.compile' : 'eager (torch.compile did not run)'} ${tps(h.torchTokensPerS)}: ratio ${h.ratio.toFixed(2)}` : '; no PyTorch number') +
      `; MFU ${pct(h.oursMfu)} vs ${pct(h.torchMfu)}; peak ${gib(h.oursPeakBytes)} vs ${gib(h.torchPeakBytes)}. ` +
      'Spec anchors for training at this size (one H100): PyTorch + torch.compile ~437K tokens/s with Newton-Muon, llm.c ~468K (~38% MFU).');
  }
  if (s.torch) lines.push('', `PyTorch ${s.torch.version} (CUDA ${s.torch.cuda}) on ${s.torch.device}.`);
  return lines;
}

function trainMarkdown(s) {
  const m = s.model;
  const lines = [
    `### Training steps: speedrun-124m on synthetic tokens (${m.nLayer} layers, width ${m.nEmbd}; ${s.steps} steps of ${s.microBatches} x ${s.microBatch} x ${s.seqLen} = ${s.batchTokens.toLocaleString('en-US')} tokens${s.what ? `; ${s.what}` : ''})`,
    '',
    'Our `Trainer` (lib/train) with the preset\'s model, batch, learning rates and momentum, on seeded uniform token ids in shards written by lib/data\'s ShardWriter; ' +
      `lr constant (warmdown 0), evaluation only at step 0 and at the end, one checkpoint at the end (neither inside a step's time). Step time = the Trainer's own clock (metrics.jsonl); medians leave out the first ${s.warmupSteps} steps. ` +
      `Newton-Muon refreshes every ${s.refreshEvery} steps here (the preset: ${s.presetRefreshEvery}) so that the run holds several refreshes: 'plain' = preconditioned steps that neither collect statistics nor run the refresh's update; ` +
      `one refresh costs the collecting step plus the next step (which times the update holding the Cholesky inverses) minus two plain steps. MFU counts the model's FLOPs only (6N + 6LCT per token; the optimizer's are extra). ` +
      'Peak memory: `memoryStats().peakBytes` over training steps 2 .. N-1 (model, optimizer state, activations).',
    '',
    '| optimizer | steps run | median step (ms) | tokens/s | MFU (989) | MFU (790) | peak memory | val loss (step 0 -> end) | note |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  const names = { muon: 'Muon', 'newton-muon': 'Newton-Muon, plain steps', adamw: 'AdamW' };
  for (const [name, r] of Object.entries(s.runs)) {
    if (r.status !== 'ok') {
      lines.push(`| ${names[name] ?? name} | ${r.steps ?? 0} | ${r.status}: ${cell(r.error ?? '').slice(0, 200)} | | | | | | |`);
      continue;
    }
    const note = [r.stoppedEarly, r.failedRefreshes ? `${r.failedRefreshes} failed factorisations` : null, r.warnings?.length ? `warnings: ${r.warnings.join('; ')}` : null].filter(Boolean).join('; ');
    lines.push(`| ${names[name] ?? name} | ${r.steps} | ${ms(r.steadyStepS)} | ${tps(r.tokensPerS)} | ${pct(r.mfu?.mfu)} | ${pct(r.mfu?.mfuOfCeiling)} | ${gib(r.peakBytes)} | ` +
      `${r.initialValLoss?.toFixed(3) ?? 'n/a'} -> ${r.finalValLoss?.toFixed(3) ?? 'n/a'} | ${cell(note).slice(0, 300)} |`);
    if (name === 'newton-muon') {
      lines.push(`| Newton-Muon, refresh steps (${(r.refreshSteps ?? []).join(', ') || 'none'}) | ${(r.refreshSteps ?? []).length} | ${ms(r.refreshStepS)} (next step ${ms(r.afterRefreshStepS)}) | | | | | | ` +
        `extra per refresh: ${signedMs(r.refreshExtraS)} |`);
    }
  }
  const o = s.overhead;
  const at = (n) => o?.[`amortizedAt${n}`];
  lines.push('', o
    ? `Newton-Muon overhead over Muon per step: ${signedPct(o.perStep)} on plain steps; one refresh adds ${signedMs(o.refreshExtraS)}; ` +
      `amortized ${signedPct(at(s.presetRefreshEvery))} per step at the preset's refresh every ${s.presetRefreshEvery} (${signedPct(at(s.refreshEvery))} at this run's ${s.refreshEvery}). ` +
      'For scale: the paper\'s reference run measured about 1.8%; the spec\'s torch.compile anchors, ~437K (Newton-Muon) vs ~444K (Muon) tokens/s, are 1.6% apart.'
    : 'Newton-Muon overhead: n/a (needs both runs with plain steps).');
  return lines;
}

/** Markdown of the measured slots; the first line says when it is a dry run (ingest.js checks). */
function slotsMarkdown(slots, { env = {}, manifest = {} } = {}) {
  const any = slots['gpt2-fwd-bwd'] ?? slots['train-124m'];
  if (!any) return null;
  const dry = any.device !== 'cuda';
  const commit = manifest.commit ? `${manifest.commit.slice(0, 9)}${manifest.dirtyFiles?.length ? ` + ${manifest.dirtyFiles.length} uncommitted change(s)` : ''}` : 'unknown';
  const lines = [
    `## GPU kit: GPT-2 124M forward+backward and training steps, newton-muon ${dry ? 'CPU (dry run)' : 'CUDA'} vs PyTorch`,
    '',
    `Device: ${header(any)}${env['driver-cuda'] ? ` (driver supports CUDA ${env['driver-cuda']})` : ''}. Commit ${commit}. ${env.date ?? new Date().toISOString()}. ` +
      'Command: `bash scripts/gpu/check.sh --steps=gpt2-fwd-bwd,train-124m` (docs/GPU.md); shapes in scripts/gpu/reference/slots.json.',
  ];
  if (slots['gpt2-fwd-bwd']) lines.push('', ...gpt2Markdown(slots['gpt2-fwd-bwd']));
  else lines.push('', '### Forward+backward', '', 'Not measured in this run (slot `gpt2-fwd-bwd`).');
  if (slots['train-124m']) lines.push('', ...trainMarkdown(slots['train-124m']));
  else lines.push('', '### Training steps', '', 'Not measured in this run (slot `train-124m`).');
  return lines.join('\n');
}

/** One line for the step table. */
function note(slotName, slots) {
  const s = slots[slotName];
  if (!s) return 'no results';
  if (slotName === 'gpt2-fwd-bwd') {
    const h = s.headline;
    const skipped = Object.entries(s.ours).filter(([, r]) => r.status !== 'ok').map(([a, r]) => `${a} ${r.status}`);
    const compile = s.torch?.compile;
    const parts = [];
    if (h) {
      parts.push(`ours ('${h.algo}') ${tps(h.oursTokensPerS)} tok/s${h.oursMfu != null ? ` (MFU ${pct(h.oursMfu)})` : ''}, peak ${gib(h.oursPeakBytes)}`);
      if (h.against) parts.push(`torch ${h.against} ${tps(h.torchTokensPerS)} tok/s, peak ${gib(h.torchPeakBytes)}: ratio ${h.ratio.toFixed(2)}`);
    } else parts.push('no algorithm measured');
    for (const [a, r] of Object.entries(s.ours)) if (r.status === 'ok' && a !== h?.algo) parts.push(`${a} ${tps(r.tokensPerS)}`);
    if (skipped.length) parts.push(skipped.join(', '));
    if (compile && compile.status !== 'ok') parts.push(`torch.compile ${compile.status}${compile.note ? `: ${compile.note}` : ''}`);
    if (!s.torch) parts.push('no PyTorch run');
    return parts.join('; ');
  }
  const parts = [];
  for (const [name, r] of Object.entries(s.runs)) {
    parts.push(r.status === 'ok' ? `${name} ${ms(r.steadyStepS)} ms/step (${tps(r.tokensPerS)} tok/s, peak ${gib(r.peakBytes)})${r.stoppedEarly ? ' stopped early' : ''}` : `${name} ${r.status}: ${r.error ?? ''}`);
  }
  if (s.overhead) parts.push(`NM overhead ${signedPct(s.overhead.perStep)}/step, refresh ${signedMs(s.overhead.refreshExtraS)}, at ${s.presetRefreshEvery}: ${signedPct(s.overhead[`amortizedAt${s.presetRefreshEvery}`])}`);
  return parts.join('; ');
}

/** Reads the logs folder's slot JSON files. */
function collect(logs) {
  const slots = {};
  const gpt2 = gpt2Slot(read(path.join(logs, 'gpt2-ours.json')), read(path.join(logs, 'gpt2-torch.json')));
  if (gpt2) slots['gpt2-fwd-bwd'] = gpt2;
  const train = trainSlot(read(path.join(logs, 'train-ours.json')));
  if (train) slots['train-124m'] = train;
  return slots;
}

function main() {
  const args = parseFlags();
  if (!args.logs || !args.out) {
    console.error('usage: slots.js --logs=DIR --out=DIR [--note=FILE --slot=NAME]');
    process.exit(2);
  }
  const slots = collect(args.logs);
  const resultsFile = path.join(args.out, 'results.json');
  const results = read(resultsFile) ?? {};
  results.slots = { ...(results.slots ?? {}), ...slots };
  fs.writeFileSync(resultsFile, JSON.stringify(results, null, 1));
  const md = slotsMarkdown(results.slots, { env: readKeyValues(path.join(args.logs, 'env.txt')), manifest: read(path.join(args.logs, 'manifest.json')) ?? {} });
  if (md) fs.writeFileSync(path.join(args.out, 'gpt2-section.md'), `${md}\n`);
  if (args.note && args.slot) fs.writeFileSync(args.note, `${note(args.slot, slots).slice(0, 390)}\n`);
  if (md && !args.quiet) console.log(md);
}

if (require.main === module) main();

module.exports = { collect, note, slotsMarkdown };
