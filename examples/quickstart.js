#!/usr/bin/env node
// A first look at the tensor API: pick the best device, build random matrices, multiply them
// on the device, check the result against plain JavaScript float64 math, and show that every
// tensor is freed. Run: `node examples/quickstart.js [device]`.
'use strict';
const nm = require('..');

async function main() {
  const spec = process.argv[2] ?? 'auto';
  for (const d of nm.devices()) {
    console.log(`device ${d.name}: ${d.available ? 'available' : `unavailable (${d.reason})`}`);
  }
  const device = spec === 'auto' ? (nm.devices().find((d) => d.name === 'cuda')?.available ? 'cuda' : 'cpu') : spec;

  const [m, k, n] = [512, 768, 384];
  const a = nm.randn([m, k], { seed: 1, device });
  const b = nm.randn([k, n], { seed: 2, device });
  const c = nm.matmul(a, b);
  const [ha, hb, hc] = await Promise.all([a.read(), b.read(), c.read()]);
  let maxRel = 0;
  for (let i = 0; i < m; i += 37) {
    for (let j = 0; j < n; j++) {
      let ref = 0;
      let mag = 0;
      for (let p = 0; p < k; p++) {
        ref += ha[i * k + p] * hb[p * n + j];
        mag += Math.abs(ha[i * k + p] * hb[p * n + j]);
      }
      maxRel = Math.max(maxRel, Math.abs(hc[i * n + j] - ref) / mag);
    }
  }
  console.log(`matmul [${m}x${k}] @ [${k}x${n}] on ${device}: max relative error vs float64 ${maxRel.toExponential(2)}`);

  const reps = 20;
  const start = process.hrtime.bigint();
  for (let r = 0; r < reps; r++) nm.gemm(c, a, b);
  await nm.synchronize(device);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(`gemm throughput: ${((2 * m * n * k * reps) / seconds / 1e9).toFixed(1)} GFLOP/s`);

  const total = nm.sumOfSquares(c);
  console.log(`||C||_F^2 = ${(await total.read())[0].toExponential(4)}`);
  for (const t of [a, b, c, total]) t.dispose();
  await nm.synchronize();
  console.log('live memory after dispose:', JSON.stringify(nm.memoryStats()));
  if (maxRel > 1e-4) throw new Error(`matmul disagrees with the float64 reference (${maxRel})`);
}

main().catch((error) => {
  console.error(`quickstart: ${error.message}`);
  process.exit(1);
});
