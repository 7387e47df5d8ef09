// The data-parallel benchmarks (`npm run bench -- --only=dist`), run as rank processes of
// bench/dist_worker.js on this machine:
//   - Gloo collective bandwidth with two ranks, as nccl-tests reports it: algbw = S / t, with S
//     the size of the full buffer (the all-reduced / broadcast tensor, the all-gather output, the
//     reduce-scatter input), and busbw = algbw x 2(n-1)/n (all-reduce), x (n-1)/n (reduce-scatter,
//     all-gather), x 1 (broadcast): what each link carries, comparable across world sizes.
//   - Training throughput of the default job (preset tiny, Newton-Muon) with two ranks against one
//     process, on the same cores (one compute thread per rank, two for the single process), with
//     the sharded step on and off; and the communication's share of a step: the collectives one
//     step issues, each timed alone on buffers of the step's sizes, over the median step time.
'use strict';
const { spawn } = require('child_process');
const os = require('os');
const path = require('path');
const nm = require('..');
const { median } = require('./script_args');
const { freePort } = require('../dist/dist/launcher');

const WORKER = path.join(__dirname, 'dist_worker.js');


/** Runs `world` ranks of the worker; resolves to rank 0's JSON. */
async function ranks(world, mode, spec, threads) {
  const port = await freePort();
  const runs = Array.from({ length: world }, (_, rank) => new Promise((resolve, reject) => {
    const env = { ...process.env, RANK: String(rank), WORLD_SIZE: String(world), LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: String(world),
      MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), NM_NUM_THREADS: String(threads) };
    const child = spawn(process.execPath, [WORKER, mode, JSON.stringify(spec)], { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c) => { out += c; });
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`rank ${rank} of the ${mode} benchmark exited with ${code}`))));
  }));
  const outputs = await Promise.all(runs);
  return JSON.parse(outputs[0]);
}

const FACTORS = { allReduce: (n) => (2 * (n - 1)) / n, reduceScatter: (n) => (n - 1) / n, allGather: (n) => (n - 1) / n, broadcast: () => 1 };

function size(bytes) {
  return bytes >= 2 ** 20 ? `${(bytes / 2 ** 20).toFixed(bytes >= 2 ** 24 ? 0 : 1)} MiB` : `${(bytes / 1024).toFixed(0)} KiB`;
}

async function benchCollectives(quick) {
  const sizes = quick ? [65536, 1 << 20] : [4096, 65536, 1 << 20, 16 << 20, 64 << 20];
  // A fresh pair of ranks per size: Gloo's loopback TCP connections carry state from one size to
  // the next (after small messages, 1 MiB all-reduces were measured at ~80 ms each here, against
  // ~1-2 ms on connections that had first moved a large buffer), so each size starts from new ones.
  const rows = [];
  for (const size of sizes) rows.push(...await ranks(2, 'collectives', { sizes: [size], iters: quick ? 5 : 50, bytesPerSize: quick ? 32e6 : 512e6 }, 1));
  const lines = ['| size | op | time (us) | algbw (GB/s) | busbw (GB/s) |', '|---|---|---|---|---|'];
  for (const row of rows) {
    for (const [op, seconds] of Object.entries(row.seconds)) {
      const algbw = row.bytes / seconds / 1e9;
      lines.push(`| ${size(row.bytes)} | ${op} | ${(seconds * 1e6).toFixed(0)} | ${algbw.toFixed(2)} | ${(algbw * FACTORS[op](2)).toFixed(2)} |`);
      console.log(`dist gloo ${op} ${size(row.bytes)}: ${(seconds * 1e6).toFixed(0)} us, busbw ${(algbw * FACTORS[op](2)).toFixed(2)} GB/s`);
    }
  }
  return lines.join('\n');
}

async function benchTraining(quick) {
  const steps = quick ? 6 : 40;
  const warm = quick ? 1 : 4;
  const base = nm.presetConfig('tiny', 'newton-muon');
  const config = { ...base, steps, warmdownSteps: 0, valEvery: steps, valTokens: base.microBatch * base.seqLen, saveEvery: 0, device: 'cpu', targetLoss: null };
  const cores = os.availableParallelism();
  const runs = [
    { label: '1 process', world: 1, shard: false, threads: cores },
    { label: `2 ranks, sharded step`, world: 2, shard: true, threads: Math.max(1, Math.floor(cores / 2)) },
    { label: `2 ranks, unsharded`, world: 2, shard: false, threads: Math.max(1, Math.floor(cores / 2)) },
  ];
  const lines = ['| run | compute threads per rank | median step (ms) | tokens/s | communication per step (ms) | communication share |', '|---|---|---|---|---|---|'];
  let bytes = null;
  for (const run of runs) {
    const outDir = path.join(os.tmpdir(), `nm-bench-dist-${process.pid}-${run.world}-${run.shard}`);
    const r = await ranks(run.world, 'train', { config, outDir, shard: run.shard }, run.threads);
    const step = median(r.steps.slice(warm));
    const comm = run.world === 1 ? 0 : Object.values(r.comm).reduce((a, b) => a + b, 0);
    bytes ??= { params: r.params, matrices: r.matrices };
    lines.push(`| ${run.label} | ${run.threads} | ${(step * 1e3).toFixed(1)} | ${Math.round(config.batchTokens / step).toLocaleString('en-US')} | ` +
      `${run.world === 1 ? '-' : `${(comm * 1e3).toFixed(2)} (${Object.entries(r.comm).map(([k, v]) => `${k} ${(v * 1e3).toFixed(2)}`).join(', ')})`} | ` +
      `${run.world === 1 ? '-' : `${((comm / step) * 100).toFixed(1)}%`} |`);
    console.log(`dist train ${run.label}: ${(step * 1e3).toFixed(1)} ms/step`);
    require('fs').rmSync(outDir, { recursive: true, force: true });
  }
  return `Default job (preset tiny: GPT-2 ${config.model.nLayer} x ${config.model.nEmbd}, ${bytes.params.toLocaleString('en-US')} parameters, ` +
    `${config.batchTokens.toLocaleString('en-US')} tokens per step as ${config.batchTokens / (config.microBatch * config.seqLen)} micro-batches of ` +
    `${config.microBatch} x ${config.seqLen}), Newton-Muon, ${steps} steps, median over steps ${warm + 1}..${steps}:\n\n${lines.join('\n')}`;
}

async function benchDist({ quick }) {
  const gloo = nm.processGroupBackends().find((b) => b.name === 'gloo');
  if (!gloo.available) return `## Data parallel (Gloo)\n\nNot measured: gloo is unavailable here (${gloo.reason}).`;
  const before = os.loadavg()[0];
  const collectives = await benchCollectives(quick);
  const training = await benchTraining(quick);
  const after = os.loadavg()[0];
  return `## Data parallel on the CPU (Gloo ${gloo.details.version}, two ranks on this machine)\n\n` +
    `Load average (1 min) of the machine before / after the run: ${before.toFixed(1)} / ${after.toFixed(1)} on ${os.availableParallelism()} cores ` +
    `(above the core count, other jobs shared the cores and small-message latencies in particular are noisy).\n\n` +
    `Collectives, f32, two ranks over TCP loopback, one compute thread each (nccl-tests' definitions: algbw = size / time; ` +
    `busbw = algbw x 2(n-1)/n for all-reduce, x (n-1)/n for reduce-scatter and all-gather, x 1 for broadcast; size = the full buffer):\n\n` +
    `${collectives}\n\nTraining, two ranks against one process on the same cores (the communication time is each collective of a step ` +
    `timed alone on buffers of its size: on the CPU the ranks' compute and Gloo's copies share the cores, so it is a lower bound):\n\n${training}`;
}

module.exports = { benchDist };
