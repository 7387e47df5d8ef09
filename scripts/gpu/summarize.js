#!/usr/bin/env node
// Writes the GPU kit's summary.md from what its steps left in the logs folder (check.sh calls it
// after every step, so a run cut off still has a summary), and with --print prints the step table.
//
//   node scripts/gpu/summarize.js --logs=DIR --out=DIR --mode=gpu|dry [--elapsed=S] [--print]
//
// Reads: steps.tsv (name, status, seconds, note), env.txt, manifest.json (from prepare.sh),
// smoke.json, jest.json, the sanitizer logs, OUT/gpu-section.md (bench/torch_compare.js),
// OUT/gpt2-section.md and the GPT-2 slots' JSON (gpt2-ours.json, gpt2-torch.json, train-ours.json;
// scripts/gpu/slots.js).
'use strict';
const { parseFlags } = require('../../bench/script_args');
const fs = require('fs');
const path = require('path');
const { collect: collectSlots } = require('./slots');

const args = parseFlags();
const logs = args.logs;
const out = args.out;
const read = (file) => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null);
const json = (file) => {
  try { return JSON.parse(read(file)); } catch { return null; }
};
const cell = (s) => String(s ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ');

const steps = (read(path.join(logs, 'steps.tsv')) ?? '').split('\n').filter(Boolean).map((line) => {
  const [name, status, seconds, note] = line.split('\t');
  return { name, status, seconds: Number(seconds), note: note ?? '' };
});
const env = {};
for (const line of (read(path.join(logs, 'env.txt')) ?? '').split('\n')) {
  const at = line.indexOf(': ');
  if (at > 0) env[line.slice(0, at)] = line.slice(at + 2);
}
const manifest = json(path.join(logs, 'manifest.json')) ?? {};

const table = [
  '| step | status | s | note |',
  '|---|---|---|---|',
  ...steps.map((s) => `| ${s.name} | ${s.status === 'ok' ? 'ok' : `**${s.status}**`} | ${s.seconds} | ${cell(s.note)} |`),
];
const count = (st) => steps.filter((s) => s.status === st).length;
const verdict = `${count('ok')} ok, ${count('FAIL')} failed, ${count('timeout')} timed out, ${count('skipped')} skipped, ` +
  `${count('pending')} pending; ${args.elapsed ?? '?'}s`;

const md = [];
md.push(`# GPU kit summary: ${args.mode === 'dry' ? 'DRY RUN on the CPU backend (not a GPU verification)' : 'GPU run'}`, '');
md.push(`- date: ${env.date ?? new Date().toISOString()}`);
md.push(`- gpu: ${env.gpu ?? 'none'}${env['driver-cuda'] ? ` (driver supports CUDA ${env['driver-cuda']})` : ''}`);
md.push(`- toolkit: nvcc ${env.nvcc ?? '?'}; cmake: ${env.cmake ?? '?'}; g++: ${env['g++'] ?? '?'}; glibc ${env.glibc ?? '?'}`);
md.push(`- torch: ${env.torch ?? '?'}; compute-sanitizer: ${env['compute-sanitizer'] ?? '?'}`);
md.push(`- node: ${env.node ?? '?'} (carried); host: ${env.host ?? '?'}`);
md.push(`- commit: ${manifest.commit ?? 'unknown'}${manifest.dirtyFiles?.length ? ` + ${manifest.dirtyFiles.length} uncommitted change(s): ${manifest.dirtyFiles.slice(0, 12).map((l) => l.trim()).join(', ')}${manifest.dirtyFiles.length > 12 ? ', ...' : ''}` : ''} (carry prepared ${manifest.created ?? '?'})`);
md.push('', '## Steps', '', ...table, '', `Result: ${verdict}.`);

// ---- failures, with the exact op --------------------------------------------------------------
const failures = [];
for (const [file, label] of [['smoke.json', 'smoke'], ['memcheck-smoke.json', 'smoke under memcheck'], ['racecheck-smoke.json', 'smoke under racecheck']]) {
  const s = json(path.join(logs, file));
  if (!s) continue;
  for (const r of s.results.filter((x) => x.status === 'mismatch' || x.status === 'error')) {
    failures.push(`- ${label}: **${r.op}** (${r.case}): ${r.status}: ${r.detail}`);
  }
  for (const l of s.leaks ?? []) failures.push(`- ${label}: memory left allocated: ${l}`);
  if (label === 'smoke' && s.unreached?.length) failures.push(`- smoke: native entry points no case reached (add cases): ${s.unreached.join(', ')}`);
}
const jest = json(path.join(logs, 'jest.json'));
if (jest) {
  for (const f of jest.testResults ?? []) {
    const file = path.basename(f.name);
    for (const t of f.assertionResults.filter((a) => a.status === 'failed')) {
      const first = (t.failureMessages?.[0] ?? '').split('\n').find((l) => l.trim()) ?? '';
      failures.push(`- jest ${file}: **${t.fullName}**: ${cell(first).slice(0, 300)}`);
    }
    if (f.status === 'failed' && f.assertionResults.length === 0) failures.push(`- jest ${file}: the suite did not run: ${cell(f.message).slice(0, 300)}`);
  }
}
for (const tool of ['memcheck', 'racecheck', 'memcheck-jest']) {
  const text = read(path.join(logs, `${tool}.log`));
  if (!text) continue;
  const errors = text.split('\n').filter((l) => /^========= (Invalid |Error:|Warning:|Program hit|Race reported|.*[Hh]azard)/.test(l) && !/SUMMARY/.test(l)).slice(0, 8);
  for (const e of errors) failures.push(`- ${tool}: ${cell(e.replace(/^=+\s*/, ''))}`);
}
// The GPT-2 slots: an attention algorithm, a PyTorch phase or a training run that failed.
const slots = collectSlots(logs);
for (const [algo, r] of Object.entries(slots['gpt2-fwd-bwd']?.ours ?? {})) {
  if (r.status === 'error' || r.status === 'oom') failures.push(`- gpt2-fwd-bwd: newton-muon attention **${algo}**: ${r.status}: ${cell(r.note).slice(0, 300)}`);
}
for (const [phase, r] of Object.entries(slots['gpt2-fwd-bwd']?.torch ?? {})) {
  if (r && typeof r === 'object' && r.status && r.status !== 'ok' && r.status !== 'skipped') failures.push(`- gpt2-fwd-bwd: PyTorch ${phase}: ${r.status}: ${cell(r.note).slice(0, 300)}`);
}
for (const [name, r] of Object.entries(slots['train-124m']?.runs ?? {})) {
  if (r.status !== 'ok') failures.push(`- train-124m: **${name}**: ${r.status}: ${cell(r.error).slice(0, 300)}`);
  else if (r.stoppedEarly) failures.push(`- train-124m: ${name}: ${r.stoppedEarly}`);
}
md.push('', '## Failures and findings', '', ...(failures.length ? failures.slice(0, 80) : ['None recorded.']));

// ---- numbers ------------------------------------------------------------------------------------
const section = read(path.join(out, 'gpu-section.md'));
md.push('', '## newton-muon vs PyTorch', '', section ? section.replace(/^## .*\n/, '').trim() : 'Not measured (see the compare step).');
const gpt2Section = read(path.join(out, 'gpt2-section.md'));
md.push('', '## GPT-2 124M: forward+backward and training steps (slots gpt2-fwd-bwd, train-124m)', '',
  gpt2Section ? gpt2Section.replace(/^## .*\n/, '').trim().replace(/^### /gm, '#### ') : 'Not measured in this run (run them with `--steps=gpt2-fwd-bwd,train-124m`).');

const lossCurve = read(path.join(logs, 'loss-curve.md'));
md.push('', '## Loss curves: our trainer vs the PyTorch reference trainer (slot loss-curve)', '',
  lossCurve ? lossCurve.trim() : 'Not run in this run (run it with `--steps=loss-curve`; it needs PyTorch).');
md.push('', 'Raw logs: logs.tar.xz (every step\'s log, env.txt, steps.tsv, smoke/jest JSON, torch.json, gpt2-ours/gpt2-torch/train-ours JSON, the training runs\' metrics.jsonl, loss-curve.json, manifest.json).');
fs.writeFileSync(path.join(out, 'summary.md'), `${md.join('\n')}\n`);

if (args.print) {
  console.log(`GPU kit (${args.mode}): ${env.gpu ?? 'no GPU'}; commit ${(manifest.commit ?? 'unknown').slice(0, 9)}`);
  if (failures.length) console.log(`\n${failures.slice(0, 20).join('\n')}\n`);
  console.log(table.join('\n'));
  console.log(`\nResult: ${verdict}. Full summary: ${path.join(out, 'summary.md')}`);
}
