#!/usr/bin/env node
// Puts a GPU kit run's numbers into docs/BENCHMARKS.md through bench/report.js's writeSection (so
// no other section is touched), and prints the run's summary table. Two sections:
//   'gpu'       from gpu-section.md (the compare step: NS5, Gram, Cholesky, optimizer steps, GEMMs)
//   'gpu-gpt2'  from gpt2-section.md (the slots gpt2-fwd-bwd and train-124m; scripts/gpu/slots.js),
//               placed right after 'gpu' the first time
// Each is written when the run produced it, so the slots, often run in their own call
// (--steps=gpt2-fwd-bwd,train-124m), are ingested from that call's folder without touching 'gpu'.
//
//   node scripts/gpu/ingest.js DIR [--sections=gpu,gpu-gpt2]
//                                             DIR: the folder the run's files came back to
//                                             (the device tool's files_at), holding
//                                             gpu-section.md / gpt2-section.md and summary.md
//   node scripts/gpu/ingest.js --placeholder  writes the sections that say no GPU run is recorded
//
// Refuses a dry run's section (CPU numbers are not GPU numbers) unless --allow-dry is given; the
// kit's own dry run uses that inside its staging copy to exercise this path.
'use strict';
const fs = require('fs');
const path = require('path');
const { writeSection } = require('../../bench/report');

const BENCHMARKS = path.join(__dirname, '..', '..', 'docs', 'BENCHMARKS.md');

const PLACEHOLDER = [
  '## GPU kit: newton-muon CUDA vs PyTorch',
  '',
  'No GPU run is recorded yet: the CUDA path is compiled (CI builds `newton_muon_cuda.so` for sm_90) but not verified on a GPU.',
  'This section is written by the GPU verification kit (`scripts/gpu/`, docs/GPU.md) from an H100/H200 run:',
  'NS5, Gram accumulation, batched Cholesky inverse, whole Muon / Newton-Muon steps for the 124M set and GPT-2 GEMMs,',
  'each as newton-muon ms, PyTorch ms and the ratio.',
].join('\n');

const PLACEHOLDER_GPT2 = [
  '## GPU kit: GPT-2 124M forward+backward and training steps, newton-muon CUDA vs PyTorch',
  '',
  'No GPU run is recorded yet. This section is written by the GPU verification kit\'s slots `gpt2-fwd-bwd` and `train-124m`',
  '(`bash scripts/gpu/check.sh --steps=gpt2-fwd-bwd,train-124m`, docs/GPU.md): GPT-2 124M forward+backward tokens/s at B = 64,',
  'T = 1024 (bf16) for each attention algorithm against the PyTorch reference model under torch.compile, with MFU and peak memory;',
  'and a few dozen speedrun-124m training steps with Muon and with Newton-Muon: step time, tokens/s, peak memory and the',
  'Newton-Muon overhead per step (plain steps and refresh steps).',
].join('\n');

const SECTIONS = { gpu: 'gpu-section.md', 'gpu-gpt2': 'gpt2-section.md' };

/** writeSection, but a new 'gpu-gpt2' block goes right after the 'gpu' block rather than at the end. */
function write(name, body) {
  if (name === 'gpu-gpt2' && fs.existsSync(BENCHMARKS)) {
    const text = fs.readFileSync(BENCHMARKS, 'utf8');
    const after = '<!-- bench:gpu:end -->';
    if (!text.includes('<!-- bench:gpu-gpt2:start -->') && text.includes(after)) {
      const next = text.replace(after, `${after}\n\n<!-- bench:gpu-gpt2:start -->\n<!-- bench:gpu-gpt2:end -->`);
      fs.writeFileSync(`${BENCHMARKS}.tmp`, next);
      fs.renameSync(`${BENCHMARKS}.tmp`, BENCHMARKS);
    }
  }
  writeSection(name, body);
}

function main() {
  const argv = process.argv.slice(2);
  const quiet = argv.includes('--quiet');
  if (argv.includes('--placeholder')) {
    write('gpu', PLACEHOLDER);
    write('gpu-gpt2', PLACEHOLDER_GPT2);
    if (!quiet) console.log('wrote the placeholder gpu and gpu-gpt2 sections of docs/BENCHMARKS.md');
    return;
  }
  const dir = argv.find((a) => !a.startsWith('--'));
  if (!dir) {
    console.error('usage: ingest.js DIR [--sections=gpu,gpu-gpt2] | --placeholder');
    process.exit(2);
  }
  const only = argv.find((a) => a.startsWith('--sections='))?.slice(11).split(',').filter(Boolean) ?? Object.keys(SECTIONS);
  for (const name of only) {
    if (!(name in SECTIONS)) {
      console.error(`ingest: unknown section '${name}' (known: ${Object.keys(SECTIONS).join(', ')})`);
      process.exit(2);
    }
  }
  const found = only.filter((name) => fs.existsSync(path.join(dir, SECTIONS[name])));
  if (!found.length) {
    console.error(`ingest: none of ${only.map((n) => path.join(dir, SECTIONS[n])).join(', ')} exists (did the kit's compare step or the GPT-2 slots run? see summary.md)`);
    process.exit(1);
  }
  for (const name of found) {
    const body = fs.readFileSync(path.join(dir, SECTIONS[name]), 'utf8');
    if (/dry run/.test(body.split('\n')[0]) && !argv.includes('--allow-dry')) {
      console.error(`ingest: ${SECTIONS[name]} is a dry run's section (CPU numbers); not writing it to docs/BENCHMARKS.md`);
      process.exit(1);
    }
  }
  for (const name of found) {
    write(name, fs.readFileSync(path.join(dir, SECTIONS[name]), 'utf8'));
    if (!quiet) console.log(`wrote the ${name} section of ${path.relative(process.cwd(), BENCHMARKS)} from ${SECTIONS[name]}`);
  }
  if (quiet) return;
  const missing = only.filter((n) => !found.includes(n));
  if (missing.length) console.log(`(not in this run: ${missing.map((n) => SECTIONS[n]).join(', ')}; those sections are unchanged)`);
  const summary = path.join(dir, 'summary.md');
  if (fs.existsSync(summary)) {
    const text = fs.readFileSync(summary, 'utf8');
    const table = text.split('\n').filter((l) => l.startsWith('|')).slice(0, 40).join('\n');
    console.log(`\n${table}\n\nUpdate docs/GPU.md "Status" by hand from ${summary} (what passed, what failed with which op).`);
  }
}

main();
