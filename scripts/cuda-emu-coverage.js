#!/usr/bin/env node
// The coverage count of an emulated test run (npm run test:cuda-emu): which kernels and which
// library entry points of the CUDA module ran, how often, and which never did.
//
//   node scripts/cuda-emu-coverage.js [build-cuda-emu]
//
// Inputs, all in the build folder: coverage/coverage-<pid>.json (written at exit by every process
// that loaded newton_muon_cuda_emu.so with NM_CUDA_EMU_COVERAGE_DIR set: kernel instances by
// "file: name<args>" with their runs, entry points with their calls) and module-entry-points.txt
// (the CUDA / cuBLAS / cuSOLVER / cub / NCCL functions the module's own objects call, from nm).
// The kernels the module defines come from its sources (every __global__ function in csrc/cuda).
// Writes coverage.md and coverage.json next to them and prints the summary; exits 1 when a
// kernel or an entry point never ran, or when no counts were found.
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
const buildDir = path.resolve(process.argv[2] ?? path.join(root, 'build-cuda-emu'));
const cudaDir = path.join(root, 'csrc', 'cuda');

function fail(message) {
  console.error(`cuda-emu-coverage: ${message}`);
  process.exit(1);
}

// ---- counts of the run -------------------------------------------------------------------------
const countDir = path.join(buildDir, 'coverage');
const files = fs.existsSync(countDir) ? fs.readdirSync(countDir).filter((f) => /^coverage-\d+\.json$/.test(f)) : [];
if (files.length === 0) fail(`no coverage counts in ${countDir} (run npm run test:cuda-emu)`);
const kernelRuns = new Map();
const calls = new Map();
for (const f of files) {
  const counts = JSON.parse(fs.readFileSync(path.join(countDir, f), 'utf8'));
  for (const [name, n] of Object.entries(counts.kernels)) kernelRuns.set(name, (kernelRuns.get(name) ?? 0) + n);
  for (const [name, n] of Object.entries(counts.calls)) calls.set(name, (calls.get(name) ?? 0) + n);
}

// ---- what the module contains ------------------------------------------------------------------
// Kernels: every __global__ function of csrc/cuda, by the file that defines it.
const defined = [];
for (const file of fs.readdirSync(cudaDir).filter((f) => /\.(cu|cuh)$/.test(f)).sort()) {
  const text = fs.readFileSync(path.join(cudaDir, file), 'utf8');
  const re = /__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)\s*\(/g;
  for (let m; (m = re.exec(text)) !== null;) defined.push({ file, name: m[1] });
}
// A registered instance "file.cu: ns::name<args>" -> its file and its bare name.
function parseInstance(key) {
  const [file, rest] = key.split(': ');
  const bare = rest.replace(/<.*$/, '').replace(/^.*::/, '');
  return { file, bare };
}
const moduleFiles = new Set(fs.readdirSync(cudaDir));
const instances = [...kernelRuns.keys()].map((key) => ({ key, ...parseInstance(key), runs: kernelRuns.get(key) }))
  .filter((i) => moduleFiles.has(i.file));  // only the module's launch sites (not a test program's)
// A kernel defined in a .cu is launched from that file; one in a .cuh header from any file.
const withoutLaunchSite = defined.filter((k) => !instances.some((i) => i.bare === k.name && (k.file.endsWith('.cuh') || i.file === k.file)));

const entryPoints = fs.readFileSync(path.join(buildDir, 'module-entry-points.txt'), 'utf8').split('\n').filter(Boolean);
// The stand-ins count a template entry point under its name without template arguments.
const entryKey = (symbol) => symbol.replace(/<.*>$/, '');
const entries = entryPoints.map((symbol) => ({ symbol, calls: calls.get(entryKey(symbol)) ?? 0 }));

// ---- report -------------------------------------------------------------------------------------
const neverRun = instances.filter((i) => i.runs === 0);
const neverCalled = entries.filter((e) => e.calls === 0);
const lines = [
  '# Coverage of the CUDA module in the emulated test run',
  '',
  `${files.length} process(es) loaded the emulated module. Kernels defined in csrc/cuda: ${defined.length}; ` +
    `kernel instances compiled with a launch site: ${instances.length}, of which ran: ${instances.length - neverRun.length}. ` +
    `Library entry points the module calls: ${entries.length}, of which called: ${entries.length - neverCalled.length}.`,
  '',
  `Never executed: ${neverRun.length + withoutLaunchSite.length + neverCalled.length === 0 ? 'nothing' : ''}`,
  ...withoutLaunchSite.map((k) => `- kernel ${k.name} (${k.file}): no launch site`),
  ...neverRun.map((i) => `- kernel ${i.key}`),
  ...neverCalled.map((e) => `- entry point ${e.symbol}`),
  '',
  '| kernel instance (launching file: kernel) | runs |',
  '|---|---:|',
  ...instances.sort((a, b) => a.key.localeCompare(b.key)).map((i) => `| \`${i.key}\` | ${i.runs} |`),
  '',
  '| library entry point | calls |',
  '|---|---:|',
  ...entries.map((e) => `| \`${e.symbol}\` | ${e.calls} |`),
  '',
];
fs.writeFileSync(path.join(buildDir, 'coverage.md'), lines.join('\n'));
fs.writeFileSync(path.join(buildDir, 'coverage.json'), JSON.stringify({
  processes: files.length,
  kernels: Object.fromEntries(instances.map((i) => [i.key, i.runs])),
  kernelsWithoutLaunchSite: withoutLaunchSite.map((k) => `${k.file}: ${k.name}`),
  entryPoints: Object.fromEntries(entries.map((e) => [e.symbol, e.calls])),
}, null, 2) + '\n');

console.log(`cuda-emu-coverage: kernels ${instances.length - neverRun.length}/${instances.length} instances ran ` +
  `(${defined.length} kernels defined, ${withoutLaunchSite.length} without a launch site); ` +
  `entry points ${entries.length - neverCalled.length}/${entries.length} called (report: ${path.join(buildDir, 'coverage.md')})`);
for (const k of withoutLaunchSite) console.log(`  never executed: kernel ${k.name} (${k.file}): no launch site`);
for (const i of neverRun) console.log(`  never executed: kernel ${i.key}`);
for (const e of neverCalled) console.log(`  never executed: entry point ${e.symbol}`);
process.exit(neverRun.length + withoutLaunchSite.length + neverCalled.length === 0 ? 0 : 1);
