#!/usr/bin/env node
// Puts a GPU kit run's numbers into docs/BENCHMARKS.md (the 'gpu' section, through bench/report.js's
// writeSection, so no other section is touched), and prints the run's summary table.
//
//   node scripts/gpu/ingest.js DIR            DIR: the folder the run's files came back to
//                                             (the device tool's files_at), holding
//                                             gpu-section.md and summary.md
//   node scripts/gpu/ingest.js --placeholder  writes the section that says no GPU run is recorded
//
// Refuses a dry run's section (CPU numbers are not GPU numbers) unless --allow-dry is given; the
// kit's own dry run uses that inside its staging copy to exercise this path.
'use strict';
const fs = require('fs');
const path = require('path');
const { writeSection } = require('../../bench/report');

const PLACEHOLDER = [
  '## GPU kit: newton-muon CUDA vs PyTorch',
  '',
  'No GPU run is recorded yet: the CUDA path is compiled (CI builds `newton_muon_cuda.so` for sm_90) but not verified on a GPU.',
  'This section is written by the GPU verification kit (`scripts/gpu/`, docs/GPU.md) from an H100/H200 run:',
  'NS5, Gram accumulation, batched Cholesky inverse, whole Muon / Newton-Muon steps for the 124M set and GPT-2 GEMMs,',
  'each as newton-muon ms, PyTorch ms and the ratio.',
].join('\n');

function main() {
  const argv = process.argv.slice(2);
  const quiet = argv.includes('--quiet');
  if (argv.includes('--placeholder')) {
    writeSection('gpu', PLACEHOLDER);
    if (!quiet) console.log('wrote the placeholder gpu section of docs/BENCHMARKS.md');
    return;
  }
  const dir = argv.find((a) => !a.startsWith('--'));
  if (!dir) {
    console.error('usage: ingest.js DIR | --placeholder');
    process.exit(2);
  }
  const sectionFile = path.join(dir, 'gpu-section.md');
  if (!fs.existsSync(sectionFile)) {
    console.error(`ingest: ${sectionFile} is missing (did the kit's compare step run? see summary.md)`);
    process.exit(1);
  }
  const body = fs.readFileSync(sectionFile, 'utf8');
  if (/dry run/.test(body.split('\n')[0]) && !argv.includes('--allow-dry')) {
    console.error('ingest: this is a dry run\'s section (CPU numbers); not writing it to docs/BENCHMARKS.md');
    process.exit(1);
  }
  writeSection('gpu', body);
  if (quiet) return;
  console.log(`wrote the gpu section of ${path.relative(process.cwd(), path.join(__dirname, '..', '..', 'docs', 'BENCHMARKS.md'))}`);
  const summary = path.join(dir, 'summary.md');
  if (fs.existsSync(summary)) {
    const text = fs.readFileSync(summary, 'utf8');
    const table = text.split('\n').filter((l) => l.startsWith('|')).slice(0, 40).join('\n');
    console.log(`\n${table}\n\nUpdate docs/GPU.md "Status" by hand from ${summary} (what passed, what failed with which op).`);
  }
}

main();
