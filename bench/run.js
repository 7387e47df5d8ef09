#!/usr/bin/env node
// `npm run bench [-- --quick] [-- --no-write] [-- --only=gemm|optim|gpt2|gpt2-memory|dist|tfjs]`: runs the benchmarks and
// writes docs/BENCHMARKS.md (quick runs, for smoke-testing the scripts, never write).
'use strict';
const { benchDist } = require('./dist');
const { benchGemm } = require('./gemm');
const { benchGpt2, benchGpt2Memory } = require('./gpt2');
const { benchOptim } = require('./optim');
const { benchTfjs } = require('./tfjs');
const { machine, writeSection } = require('./report');

async function main() {
  const quick = process.argv.includes('--quick');
  const write = !process.argv.includes('--no-write');
  const where = machine();
  console.log(`bench on ${where}`);
  const only = process.argv.find((a) => a.startsWith('--only='))?.slice(7);
  const sections = { gemm: benchGemm, optim: benchOptim, gpt2: benchGpt2, 'gpt2-memory': benchGpt2Memory, dist: benchDist, tfjs: benchTfjs };
  for (const [name, run] of Object.entries(sections)) {
    if (only && only !== name) continue;
    const body = await run({ quick });
    if (write && !quick) {
      writeSection(name, `${body}\n\nMachine: ${where}. Command: \`npm run bench\`.`);
      console.log(`wrote the ${name} section of docs/BENCHMARKS.md`);
    }
  }
}

main().catch((error) => {
  console.error(`bench: ${error.message}`);
  process.exit(1);
});
