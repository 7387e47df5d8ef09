#!/usr/bin/env node
// newton-muon against PyTorch, case by case (the GPU kit's `compare` step; docs/GPU.md).
//
//   node bench/torch_compare.js [--device=cuda|cpu] [--cases=scripts/gpu/reference/cases.json]
//        [--quick] [--torch=torch.json] [--json=results.json] [--section=gpu-section.md]
//        [--env=env.txt] [--manifest=manifest.json] [--note=FILE] [--only=id,id]
//
// Runs every case of cases.json with our backend, with the same shapes and the same timing
// protocol as scripts/gpu/reference/torch_bench.py (whose JSON --torch reads), and writes the
// ratios ours / torch: a markdown section (the 'gpu' section of docs/BENCHMARKS.md, written there
// by scripts/gpu/ingest.js through bench/report.js) and the raw numbers as JSON. Our side can
// only measure wall-clock time (synchronize() is the one barrier it has), so the ratio is taken
// against PyTorch's wall-clock time measured the same way; PyTorch's CUDA-event time is shown too.
// Without --torch (a dry run) the PyTorch columns read n/a.
'use strict';
const { median, parseFlags } = require('./script_args');
const fs = require('fs');
const path = require('path');
const nm = require('..');
const { gpt2Matrices: gpt2MatrixSet } = require('./optim');

const args = parseFlags();
const root = path.join(__dirname, '..');
const DEVICE = args.device ?? 'cuda';
const QUICK = Boolean(args.quick);
const spec = JSON.parse(fs.readFileSync(args.cases ?? path.join(root, 'scripts', 'gpu', 'reference', 'cases.json'), 'utf8'));
// A quick run on the CPU backend (the kit's dry run) only exercises the code: one call per case.
const timing = QUICK ? (DEVICE === 'cpu' ? spec.timingDry : spec.timingQuick) : spec.timing;

/** Same protocol as torch_bench.py's time_calls (wall clock only: we have no event API). */
async function timeCalls(fn, prepare) {
  const iters = prepare ? 1 : timing.iters;
  for (let i = 0; i < timing.warmup; i++) {
    if (prepare) await prepare();
    await fn();
  }
  await nm.synchronize(DEVICE);
  const walls = [];
  for (let r = 0; r < timing.repeats; r++) {
    if (prepare) {
      await prepare();
      await nm.synchronize(DEVICE);
    }
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iters; i++) await fn();
    await nm.synchronize(DEVICE);
    walls.push(Number(process.hrtime.bigint() - t0) / 1e6 / iters);
  }
  return { wall_ms: { median: median(walls), min: Math.min(...walls) } };
}

const gpt2Matrices = (layers, seed) => gpt2MatrixSet(DEVICE, layers, seed);

async function runCase(c) {
  const owned = [];
  const keep = (t) => { owned.push(t); return t; };
  const randn = (shape, opts = {}) => keep(nm.randn(shape, { seed: 1234 + owned.length, device: DEVICE, ...opts }));
  try {
    switch (c.op) {
      case 'ns5': {
        const xs = c.groups.map((g) => randn(g));
        const outs = c.groups.map((g) => keep(nm.empty(g, { device: DEVICE })));
        return await timeCalls(() => xs.forEach((x, i) => nm.newtonSchulz5(x, { out: outs[i] })));
      }
      case 'gram': {
        const x = randn([c.tokens, c.d], { dtype: c.dtype });
        const k = keep(nm.zeros([c.d, c.d], { device: DEVICE }));
        return await timeCalls(() => nm.accumulateInputGram(k, x));
      }
      case 'cholinv': {
        const z = randn([c.batch, c.d, c.d], { std: 0.05 });
        const k = keep(nm.matmul(z, z, { transA: true }));
        const inv = keep(nm.empty([c.batch, c.d, c.d], { device: DEVICE }));
        const info = keep(nm.empty([c.batch], { dtype: 'i32', device: DEVICE }));
        const r = await timeCalls(() => nm.choleskyInverse(k, { out: inv, info }));
        const failed = Array.from(await info.read()).filter((v) => v !== 0).length;
        if (failed) r.note = `${failed} factorisations failed`;
        return r;
      }
      case 'gemm': {
        const a = randn(c.transA ? [c.k, c.m] : [c.m, c.k], { dtype: c.dtype });
        const b = randn(c.transB ? [c.n, c.k] : [c.k, c.n], { dtype: c.dtype });
        const out = keep(nm.empty([c.m, c.n], { device: DEVICE }));
        const r = await timeCalls(() => nm.gemm(out, a, b, { transA: c.transA, transB: c.transB }));
        r.tflops = (2 * c.m * c.n * c.k) / (r.wall_ms.median / 1e3) / 1e12;
        return r;
      }
      case 'muon':
      case 'newton-muon': {
        const mats = gpt2Matrices(c.layers, 100);
        for (const m of mats) { keep(m.param); keep(m.grad); }
        const list = mats.map(({ param, grad, name, rowBlocks, inputBlocks }) => ({ param, grad, name, rowBlocks, inputBlocks }));
        if (c.op === 'muon') {
          const opt = new nm.Muon(list, { lr: 4e-4 });
          try { return await timeCalls(() => opt.step()); } finally { opt.dispose(); }
        }
        const opt = new nm.NewtonMuon(list, { lr: 4e-4, refreshEvery: 2, onWarning: () => {} });
        try {
          const inputs = { 768: randn([c.tokens, 768], { dtype: c.inputDtype }), 3072: randn([c.tokens, 3072], { dtype: c.inputDtype }) };
          const observedStep = async () => {
            if (opt.collectsStatistics()) for (const m of mats) opt.observeInput(m.param, inputs[m.param.shape[1]]);
            await opt.step();
          };
          await observedStep();
          await observedStep(); // past the first refresh: every later step preconditions
          const wantRefresh = c.phase === 'refresh';
          const r = await timeCalls(observedStep, async () => { if (opt.collectsStatistics() !== wantRefresh) await observedStep(); });
          await opt.flushReports();
          if (opt.failedRefreshes) r.note = `${opt.failedRefreshes} factorisations failed`;
          return r;
        } finally { opt.dispose(); }
      }
      default:
        throw new Error(`unknown op ${c.op}`);
    }
  } finally {
    await nm.synchronize(DEVICE);
    for (const t of owned) t.dispose();
  }
}

function readKeyValues(file) {
  if (!file || !fs.existsSync(file)) return {};
  const out = {};
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const at = line.indexOf(': ');
    if (at > 0) out[line.slice(0, at)] = line.slice(at + 2).trim();
  }
  return out;
}

const fmt = (v, digits = 3) => (v == null || !Number.isFinite(v) ? 'n/a' : v >= 100 ? v.toFixed(1) : v.toPrecision(digits));
const ratio = (a, b) => (a == null || b == null || !(b > 0) ? 'n/a' : (a / b).toFixed(2));

async function main() {
  const dev = nm.devices().find((d) => d.name === DEVICE);
  if (!dev?.available) throw new Error(`device ${DEVICE} is not available: ${dev?.reason}`);
  const torch = args.torch && fs.existsSync(args.torch) ? JSON.parse(fs.readFileSync(args.torch, 'utf8')) : null;
  const only = new Set(String(args.only ?? '').split(',').filter(Boolean));
  const ours = {};
  const cases = spec.cases.filter((c) => !only.size || only.has(c.id)).map((c) => ({ ...c, ...(QUICK ? c.quick ?? {} : {}) }));
  for (const c of cases) {
    const t0 = Date.now();
    try {
      ours[c.id] = await runCase(c);
    } catch (error) {
      ours[c.id] = { error: String(error.message ?? error).slice(0, 300) };
    }
    const m = ours[c.id].wall_ms;
    console.log(`ours ${c.id}: ${m ? `${fmt(m.median)} ms` : ours[c.id].error} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
  }

  // Rows: each case against PyTorch's batched variant, plus rows for the other variants.
  const rows = [];
  const t = (id) => torch?.results?.[id];
  for (const c of cases) {
    const o = ours[c.id];
    rows.push({ id: c.id, what: c.what, ours: o.wall_ms?.median ?? null, oursError: o.error, note: o.note,
      torchEvents: t(c.id)?.event_ms?.median ?? null, torchWall: t(c.id)?.wall_ms?.median ?? null, torchError: t(c.id)?.error });
    for (const variant of ['loop', 'compile']) {
      const tv = t(`${c.id}@${variant}`);
      if (!tv) continue;
      rows.push({ id: `${c.id}@${variant}`, what: `${c.what}: PyTorch ${variant === 'loop' ? 'one NS5 call per matrix (as the reference trainer)' : 'torch.compile'}`,
        ours: o.wall_ms?.median ?? null, torchEvents: tv.event_ms?.median ?? null, torchWall: tv.wall_ms?.median ?? null, torchError: tv.error });
    }
  }
  for (const d of spec.derived ?? []) {
    for (const suffix of torch ? ['', '@loop'] : ['']) {
      const parts = d.from.map((id) => rows.find((r) => r.id === id + suffix));
      if (parts.some((p) => !p)) continue;
      const combine = (key) => (parts.some((p) => p[key] == null) ? null
        : parts.reduce((sum, p, i) => sum + p[key] * d.weights[i], 0) / d.divide);
      rows.push({ id: d.id + suffix, what: d.what + (suffix ? ': PyTorch one NS5 call per matrix' : ''), derived: true,
        ours: combine('ours'), torchEvents: combine('torchEvents'), torchWall: combine('torchWall') });
    }
  }
  const muon = rows.find((r) => r.id === 'muon-124m');
  const amortized = rows.find((r) => r.id === 'nm-124m-amortized');
  const overhead = (a, b) => (a != null && b != null ? `${(((a / b) - 1) * 100).toFixed(1)}%` : 'n/a');

  const env = readKeyValues(args.env);
  const manifest = args.manifest && fs.existsSync(args.manifest) ? JSON.parse(fs.readFileSync(args.manifest, 'utf8')) : {};
  const commit = manifest.commit ? `${manifest.commit.slice(0, 9)}${manifest.dirtyFiles?.length ? ` + ${manifest.dirtyFiles.length} uncommitted change(s)` : ''}` : 'unknown';
  const gpu = DEVICE === 'cuda'
    ? `${dev.details?.name ?? env.gpu ?? 'GPU'} (cc ${dev.details?.computeCapability ?? '?'}), driver ${env.gpu?.split(',').pop()?.trim() ?? dev.details?.driverVersion ?? '?'} (CUDA ${env['driver-cuda'] ?? dev.details?.driverVersion ?? '?'}), CUDA runtime ${dev.details?.runtimeVersion ?? '?'}`
    : `CPU backend (${dev.details?.threads ?? '?'} threads, ${dev.details?.gemmKernel ?? '?'} GEMM): a dry run, not GPU numbers`;
  const lines = [
    `## GPU kit: newton-muon ${DEVICE === 'cuda' ? 'CUDA' : 'CPU (dry run)'} vs PyTorch (ms per call; median of ${timing.repeats} runs of ${timing.iters} calls${QUICK ? '; quick shapes' : ''})`,
    '',
    `Device: ${gpu}. PyTorch: ${torch ? `${torch.torch} (CUDA ${torch.cuda}) on ${torch.device}` : 'not run'}. ` +
      `Node ${process.version}. Commit ${commit}. ${env.date ?? new Date().toISOString()}. Command: \`bash scripts/gpu/check.sh\` (docs/GPU.md).`,
    '',
    'Ratio = ours / PyTorch wall-clock (both measured as back-to-back calls closed by one synchronize); below 1 means newton-muon is faster. ' +
      'PyTorch runs the same algorithm written plainly from the spec (scripts/gpu/reference/torch_bench.py), bf16 NS5, no TF32. ' +
      'PyTorch\'s bf16 GEMMs write bf16, ours f32.',
    '',
    '| case | newton-muon | PyTorch (CUDA events) | PyTorch (wall) | ratio |',
    '|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.what}${r.derived ? ' (derived)' : ''}${r.note ? ` (${r.note})` : ''} | ${r.oursError ? `error: ${r.oursError}` : fmt(r.ours)} | ` +
      `${r.torchError ? `error: ${r.torchError}` : fmt(r.torchEvents)} | ${fmt(r.torchWall)} | ${ratio(r.ours, r.torchWall)} |`),
    '',
    `Newton-Muon overhead over Muon per step (refresh every 32): newton-muon ${overhead(amortized?.ours, muon?.ours)}, ` +
      `PyTorch ${overhead(amortized?.torchWall, muon?.torchWall)} (the paper's reference run: about 1.8%).`,
  ];
  const section = lines.join('\n');
  console.log(`\n${section}`);
  if (args.section) fs.writeFileSync(args.section, `${section}\n`);
  if (args.json) {
    fs.writeFileSync(args.json, JSON.stringify({ device: DEVICE, details: dev.details ?? null, quick: QUICK, timing, commit: manifest.commit ?? null,
      env, torch: torch ? { version: torch.torch, cuda: torch.cuda, device: torch.device, results: torch.results } : null, ours, rows }, null, 1));
  }
  const errors = rows.filter((r) => r.oursError).map((r) => r.id);
  if (args.note) {
    const measured = rows.filter((r) => !r.derived && r.ours != null && r.torchWall != null);
    const text = `${Object.keys(ours).length - errors.length}/${Object.keys(ours).length} cases measured` +
      (torch ? `; ratios for ${measured.length} rows; Newton-Muon overhead ${overhead(amortized?.ours, muon?.ours)} (PyTorch ${overhead(amortized?.torchWall, muon?.torchWall)})` : '; no PyTorch numbers') +
      (errors.length ? `; errors: ${errors.join(', ')}` : '');
    fs.writeFileSync(args.note, `${text}\n`);
  }
  process.exit(errors.length ? 1 : 0);
}

main().catch((error) => {
  console.error(`torch_compare: ${error.stack ?? error}`);
  process.exit(1);
});
