// GEMM throughput: ours (CPU, and CUDA when available) against numpy/OpenBLAS on this machine.
'use strict';
const path = require('path');
const nm = require('..');
const { runPythonJson } = require('./python');

const CASES = [
  { label: '512^3', m: 512, n: 512, k: 512, transA: false, transB: false },
  { label: '1024^3', m: 1024, n: 1024, k: 1024, transA: false, transB: false },
  // GPT-2 MLP shapes at 8 x 1024 tokens: forward X @ W^T (NT), input grad dY @ W (NN),
  // weight grad dY^T X (TN).
  { label: 'GPT-2 fwd X[8192,768] @ W[3072,768]^T', m: 8192, n: 3072, k: 768, transA: false, transB: true },
  { label: 'GPT-2 8192x768 by 768x3072 (NN)', m: 8192, n: 3072, k: 768, transA: false, transB: false },
  { label: 'GPT-2 wgrad dY[8192,3072]^T @ X[8192,768]', m: 3072, n: 768, k: 8192, transA: true, transB: false },
];

async function timeOurs(device, dtype, c, repeats) {
  const a = nm.randn(c.transA ? [c.k, c.m] : [c.m, c.k], { seed: 1, device, dtype });
  const b = nm.randn(c.transB ? [c.n, c.k] : [c.k, c.n], { seed: 2, device, dtype });
  const out = nm.empty([c.m, c.n], { device, dtype: 'f32' });
  const opts = { transA: c.transA, transB: c.transB };
  nm.gemm(out, a, b, opts);
  await nm.synchronize(device);
  let best = Infinity;
  for (let r = 0; r < repeats; r++) {
    const start = process.hrtime.bigint();
    nm.gemm(out, a, b, opts);
    await nm.synchronize(device);
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e9);
  }
  for (const t of [a, b, out]) t.dispose();
  return (2 * c.m * c.n * c.k) / best / 1e9;
}

async function benchGemm({ quick }) {
  const repeats = quick ? 2 : 5;
  const cases = quick ? CASES.slice(0, 1) : CASES;
  const cpuInfo = nm.devices().find((d) => d.name === 'cpu');
  const cuda = nm.devices().find((d) => d.name === 'cuda');
  const numpy = runPythonJson(path.join(__dirname, 'numpy_gemm.py'), cases.map(({ label, ...c }) => c), [String(repeats)]);
  const rows = [];
  for (const [i, c] of cases.entries()) {
    const ours = await timeOurs('cpu', 'f32', c, repeats);
    const ref = numpy ? numpy.results[i] : null;
    const row = { label: c.label, ours, numpy: ref, ratio: ref ? ours / ref : null };
    if (cuda?.available) {
      row.cudaF32 = await timeOurs('cuda', 'f32', c, repeats);
      row.cudaBf16 = await timeOurs('cuda', 'bf16', c, repeats);
    }
    rows.push(row);
    console.log(`gemm ${c.label}: ours ${ours.toFixed(1)} GFLOP/s` + (ref ? `, numpy ${ref.toFixed(1)} (ratio ${(ours / ref).toFixed(2)})` : '') +
      (row.cudaF32 ? `, cuda f32 ${row.cudaF32.toFixed(0)}, bf16 ${row.cudaBf16.toFixed(0)}` : ''));
  }
  const f = (v) => (v == null ? 'n/a' : v.toFixed(1));
  const lines = [
    '## GEMM (fp32 on the CPU; GFLOP/s, best of ' + repeats + ')',
    '',
    `CPU kernel: ${cpuInfo.details?.gemmKernel}, ${cpuInfo.details?.threads} threads. Yardstick: numpy matmul, ${numpy ? numpy.blas : 'unavailable'}, same machine, same run.`,
    '',
    '| shape (m x k by k x n) | newton-muon CPU | numpy | ratio |' + (cuda?.available ? ' CUDA f32 | CUDA bf16 |' : ''),
    '|---|---|---|---|' + (cuda?.available ? '---|---|' : ''),
    ...rows.map((r) => `| ${r.label} | ${f(r.ours)} | ${f(r.numpy)} | ${r.ratio == null ? 'n/a' : r.ratio.toFixed(2)} |` +
      (cuda?.available ? ` ${r.cudaF32.toFixed(0)} | ${r.cudaBf16.toFixed(0)} |` : '')),
  ];
  if (!cuda?.available) lines.push('', `CUDA: not measured here (${cuda?.reason}).`);
  return lines.join('\n');
}

module.exports = { benchGemm };
