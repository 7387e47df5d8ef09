#!/usr/bin/env node
// One rank of bench/dist.js (started with torchrun's environment):
//   node bench/dist_worker.js collectives '{"sizes":[...],"iters":N}'   -> rank 0 prints JSON
//   node bench/dist_worker.js train '{"config":{...},"outDir":"...","shard":true}'
//        -> rank 0 prints JSON: per-step seconds, and the isolated time of the collectives one
//           step issues (the gradient all-reduce, the sharded weight all-gather, the loss gather)
'use strict';
const nm = require('..');

/**
 * Seconds per op, best of 3: `iters` back-to-back ops on every rank between two synchronized
 * points (a barrier first, so no rank starts early).
 */
async function timeOp(group, iters, op) {
  op();
  await group.synchronize();
  let best = Infinity;
  for (let rep = 0; rep < 3; rep++) {
    group.barrier();
    await group.synchronize();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iters; i++) op();
    await group.synchronize();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9 / iters);
  }
  return best;
}

async function collectives(group, spec) {
  const W = group.worldSize;
  const rows = [];
  for (const bytes of spec.sizes) {
    const n = Math.max(1, Math.floor(bytes / 4 / W) * W); // divisible by the world size
    const iters = Math.max(2, Math.min(spec.iters, Math.round((spec.bytesPerSize ?? 256e6) / (n * 4))));
    const big = nm.zeros([n]);
    const part = nm.zeros([n / W]);
    const s = {
      allReduce: await timeOp(group, iters, () => group.allReduce(big)),
      reduceScatter: await timeOp(group, iters, () => group.reduceScatter(part, big)),
      allGather: await timeOp(group, iters, () => group.allGather(big, part)),
      broadcast: await timeOp(group, iters, () => group.broadcast(big)),
    };
    rows.push({ bytes: n * 4, iters, seconds: s });
    big.dispose();
    part.dispose();
  }
  return rows;
}

async function train(group, spec) {
  const trainer = await nm.Trainer.create({ config: spec.config, outDir: spec.outDir, group, shardOptimizer: spec.shard, finalCheckpoint: false, onWarning: () => undefined });
  let result;
  try {
    result = await trainer.run();
  } finally {
    trainer.dispose();
  }
  // The collectives of one step, each alone on buffers of the step's sizes.
  const model = new nm.GPT2(spec.config.model, { device: 'cpu', seed: 0 });
  const params = model.parameterCount;
  const matrices = nm.gpt2MatrixParams(model).reduce((n, m) => n + m.param.numel, 0);
  model.dispose();
  const iters = 10;
  const grads = nm.zeros([params]);
  const comm = { gradients: await timeOp(group, iters, () => group.allReduce(grads)) };
  grads.dispose();
  if (spec.shard && spec.config.optimizer !== 'adamw' && group.worldSize > 1) {
    // The sharded weight all-gather moves worldSize slots of the largest share (~ matrices / W).
    const slot = Math.ceil(matrices / group.worldSize);
    const all = nm.zeros([slot * group.worldSize]);
    const mine = all.slice(group.rank * slot, (group.rank + 1) * slot);
    comm.weights = await timeOp(group, iters, () => group.allGather(all, mine));
    mine.dispose();
    all.dispose();
  }
  const accum = spec.config.batchTokens / (spec.config.microBatch * spec.config.seqLen) / group.worldSize;
  const losses = nm.zeros([accum + 1]);
  const gathered = nm.zeros([(accum + 1) * group.worldSize]);
  comm.losses = await timeOp(group, iters, () => group.allGather(gathered, losses));
  losses.dispose();
  gathered.dispose();
  return { steps: result.metrics.filter((m) => m.step > 0).map((m) => spec.config.batchTokens / m.tokens_per_s), comm, params, matrices };
}

async function main() {
  const [mode, json] = process.argv.slice(2);
  const spec = JSON.parse(json);
  const group = await nm.initProcessGroup({ device: 'cpu', timeoutMs: 120000 });
  const out = mode === 'collectives' ? await collectives(group, spec) : await train(group, spec);
  if (group.rank === 0) process.stdout.write(`${JSON.stringify(out)}\n`);
  await group.destroy();
}

main().then(() => process.exit(0), (error) => {
  process.stderr.write(`dist_worker: ${error.message}\n`);
  process.exit(1);
});
