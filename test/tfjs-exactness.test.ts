// The tfjs adapter equals our own optimizers run by hand (helpers/tfjs-reference: NewtonMuon /
// Muon on the [out, in] transposes, Dense inputs captured by a layer-by-layer forward, biases by
// a plain tfjs Adam), step by step, on every weight: the difference is exactly 0 (same ops on
// the same data; the transposes are exact). Covered: model.fit and custom loops (minimize,
// applyGradients), square and non-square layers, two layers sharing an input, 3-D inputs
// [B, T, d], attach options (picked layers, rowBlocks, inputBlocks), Muon, weight decay, several
// refreshes.
import { MuonOptimizer, NewtonMuonOptimizer } from '../lib/tfjs';
import type { NewtonMuonOptions } from '../lib/index';
import { freshSeed, TEST_DEVICE } from './helpers/device';
import { HandRun, HandRunOptions, maxDiff, mse, snapshot, tf, twin } from './helpers/tfjs-reference';

const device = TEST_DEVICE;
const FALLBACK_LR = 0.01;

function mlp(seed: number, inputShape: number[], units: number[]): tf.Sequential {
  return tf.sequential({
    layers: units.map((u, i) => tf.layers.dense({
      units: u, activation: i < units.length - 1 ? 'tanh' : 'linear',
      kernelInitializer: tf.initializers.glorotNormal({ seed: seed + i }),
      biasInitializer: tf.initializers.randomNormal({ mean: 0, stddev: 0.1, seed: seed + 100 + i }),
      ...(i === 0 ? { inputShape } : {}),
    })),
  });
}

function data(seed: number, xShape: number[], outputs: number): { x: tf.Tensor; y: tf.Tensor } {
  const x = tf.randomNormal(xShape, 0, 1, 'float32', seed);
  const w = tf.randomNormal([xShape[xShape.length - 1], outputs], 0, 1, 'float32', seed + 1);
  const y = tf.tidy(() => tf.sin(tf.matMul(x.reshape([-1, w.shape[0]]), w)).reshape([...xShape.slice(0, -1), outputs]));
  w.dispose();
  return { x, y };
}

function batch(t: tf.Tensor, i: number, size: number): tf.Tensor {
  return t.slice(i * size, size);
}

/** Runs the reference on `reference` over the same batches and returns the worst per-step difference. */
async function compareWithReference(reference: tf.LayersModel, after: Float32Array[][], x: tf.Tensor, y: tf.Tensor,
  batchSize: number, o: HandRunOptions): Promise<number[]> {
  const hand = new HandRun(reference, o);
  const diffs: number[] = [];
  try {
    for (let i = 0; i < after.length; i++) {
      const [bx, by] = [batch(x, i, batchSize), batch(y, i, batchSize)];
      await hand.step(bx, by);
      tf.dispose([bx, by]);
      diffs.push(maxDiff(after[i], snapshot(reference)).diff);
    }
  } finally {
    hand.dispose();
  }
  return diffs;
}

/** Frees what a test made (optimizers, models, tensors). */
function release(...things: { dispose(): void }[]): void {
  for (const t of things) t.dispose();
}

/** model.fit over (x, y) in order, one epoch; the weights after each step (the callback only records). */
async function fitRecording(model: tf.LayersModel, x: tf.Tensor, y: tf.Tensor, batchSize: number): Promise<Float32Array[][]> {
  const after: Float32Array[][] = [];
  await model.fit(x, y, { batchSize, epochs: 1, shuffle: false, verbose: 0, callbacks: { onBatchEnd: async () => { after.push(snapshot(model)); } } });
  return after;
}

const NM: NewtonMuonOptions = { lr: 0.02, refreshEvery: 2, weightDecay: 0.05 };

describe(`tfjs adapter equals NewtonMuon / Muon run by hand (${device})`, () => {
  test('custom loop with minimize(): square and non-square layers, weight decay, 4 refreshes', async () => {
    const seed = freshSeed();
    const model = mlp(seed, [6], [10, 10, 4]);
    const initial = snapshot(model);
    const reference = await twin(model);
    const optimizer = new NewtonMuonOptimizer({ ...NM, fallbackLr: FALLBACK_LR, device }).attach(model);
    const { x, y } = data(seed, [64, 6], 4);
    const after: Float32Array[][] = [];
    for (let i = 0; i < 8; i++) {
      const [bx, by] = [batch(x, i, 8), batch(y, i, 8)];
      optimizer.minimize(() => mse(by, model.apply(bx) as tf.Tensor));
      after.push(snapshot(model));
      tf.dispose([bx, by]);
    }
    expect(optimizer.iterations).toBe(8);
    const diffs = await compareWithReference(reference, after, x, y, 8, { kind: 'newton-muon', options: NM, fallbackLr: FALLBACK_LR });
    expect(diffs).toEqual(new Array(8).fill(0));
    // The weights moved (the comparison is not of two untouched models).
    expect(maxDiff(after[7], initial).diff).toBeGreaterThan(1e-3);
    release(optimizer, model, reference, x, y);
  });

  test('model.fit (no callbacks needed): 9 steps, 3 refreshes', async () => {
    const seed = freshSeed();
    const model = mlp(seed, [6], [10, 10, 4]);
    const initial = snapshot(model);
    const reference = await twin(model);
    const options = { ...NM, refreshEvery: 3 };
    const optimizer = new NewtonMuonOptimizer({ ...options, fallbackLr: FALLBACK_LR, device }).attach(model);
    model.compile({ optimizer, loss: 'meanSquaredError' });
    const { x, y } = data(seed, [72, 6], 4);
    const after = await fitRecording(model, x, y, 8);
    expect(after).toHaveLength(9);
    expect(maxDiff(after[8], initial).diff).toBeGreaterThan(1e-3);
    const diffs = await compareWithReference(reference, after, x, y, 8, { kind: 'newton-muon', options, fallbackLr: FALLBACK_LR });
    expect(diffs).toEqual(new Array(9).fill(0));
    release(optimizer, model, reference, x, y);
  });

  test('model.fit on a functional model whose two Dense layers read the same input (one statistic)', async () => {
    const seed = freshSeed();
    const build = (): { model: tf.LayersModel; a: tf.layers.Layer; b: tf.layers.Layer; c: tf.layers.Layer } => {
      const input = tf.input({ shape: [5] });
      const init = (s: number) => tf.initializers.glorotNormal({ seed: seed + s });
      const a = tf.layers.dense({ units: 7, activation: 'tanh', kernelInitializer: init(1), name: 'a' });
      const b = tf.layers.dense({ units: 7, activation: 'relu', kernelInitializer: init(2), name: 'b' });
      const c = tf.layers.dense({ units: 3, kernelInitializer: init(3), name: 'c' });
      const joined = tf.layers.concatenate().apply([a.apply(input), b.apply(input)] as tf.SymbolicTensor[]);
      return { model: tf.model({ inputs: input, outputs: c.apply(joined) as tf.SymbolicTensor }), a, b, c };
    };
    const mine = build();
    const ref = build();
    ref.model.setWeights(mine.model.getWeights());
    const optimizer = new NewtonMuonOptimizer({ ...NM, fallbackLr: FALLBACK_LR, device }).attach(mine.model);
    mine.model.compile({ optimizer, loss: 'meanSquaredError' });
    const { x, y } = data(seed, [48, 5], 3);
    const after = await fitRecording(mine.model, x, y, 8);
    // a and b share their input's statistic: one K for the two of them, one for c.
    const names = (await optimizer.getWeights()).map((w) => w.name).filter((n) => n.startsWith('newton-muon/K/'));
    expect(names).toEqual(['newton-muon/K/a/kernel', 'newton-muon/K/c/kernel']);
    const inputsOf = (bx: tf.Tensor): Map<string, tf.Tensor> => {
      const ha = ref.a.apply(bx) as tf.Tensor;
      const hb = ref.b.apply(bx) as tf.Tensor;
      const joined = tf.concat([ha, hb], -1);
      tf.dispose([ha, hb]);
      return new Map([['a', bx], ['b', bx], ['c', joined]]);
    };
    const diffs = await compareWithReference(ref.model, after, x, y, 8, {
      kind: 'newton-muon', options: NM, fallbackLr: FALLBACK_LR, inputsOf,
      dense: [{ layer: ref.a, inputKey: 'shared' }, { layer: ref.b, inputKey: 'shared' }, { layer: ref.c }],
    });
    expect(diffs).toEqual(new Array(6).fill(0));
    release(optimizer, mine.model, ref.model, x, y);
  });

  test('model.fit with 3-D inputs [B, T, d] (tokens = B * T)', async () => {
    const seed = freshSeed();
    const model = mlp(seed, [3, 5], [8, 2]);
    const reference = await twin(model);
    const optimizer = new NewtonMuonOptimizer({ ...NM, fallbackLr: FALLBACK_LR, device }).attach(model);
    model.compile({ optimizer, loss: 'meanSquaredError' });
    const { x, y } = data(seed, [24, 3, 5], 2);
    const after = await fitRecording(model, x, y, 4);
    const diffs = await compareWithReference(reference, after, x, y, 4, { kind: 'newton-muon', options: NM, fallbackLr: FALLBACK_LR });
    expect(diffs).toEqual(new Array(6).fill(0));
    release(optimizer, model, reference, x, y);
  });

  test('attach options: picked layers (the other kernel goes to Adam), rowBlocks and inputBlocks', async () => {
    const seed = freshSeed();
    const model = mlp(seed, [8], [12, 6, 3]);
    const reference = await twin(model);
    const [first, second] = model.layers.map((l) => l.name);
    const optimizer = new NewtonMuonOptimizer({ ...NM, fallbackLr: FALLBACK_LR, device }).attach(model, {
      layers: [first, second],
      matrixOptions: { [first]: { rowBlocks: 3 }, [second]: { inputBlocks: 2, rowBlocks: 2 } },
    });
    expect(optimizer.matrixNames).toEqual([`${first}/kernel`, `${second}/kernel`]);
    model.compile({ optimizer, loss: 'meanSquaredError' });
    const { x, y } = data(seed, [40, 8], 3);
    const after = await fitRecording(model, x, y, 8);
    const [rf, rs] = reference.layers;
    const diffs = await compareWithReference(reference, after, x, y, 8, {
      kind: 'newton-muon', options: NM, fallbackLr: FALLBACK_LR,
      dense: [{ layer: rf, rowBlocks: 3 }, { layer: rs, inputBlocks: 2, rowBlocks: 2 }],
    });
    expect(diffs).toEqual(new Array(5).fill(0));
    release(optimizer, model, reference, x, y);
  });

  test('Muon: a custom loop with computeGradients + applyGradients, weight decay', async () => {
    const seed = freshSeed();
    const model = mlp(seed, [9], [12, 5]);
    const reference = await twin(model);
    const options = { lr: 0.03, weightDecay: 0.1, momentum: 0.9 };
    const optimizer = new MuonOptimizer({ ...options, fallbackLr: FALLBACK_LR, device }).attach(model);
    const { x, y } = data(seed, [40, 9], 5);
    const after: Float32Array[][] = [];
    const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
    for (let i = 0; i < 5; i++) {
      const [bx, by] = [batch(x, i, 8), batch(y, i, 8)];
      const { value, grads } = optimizer.computeGradients(() => mse(by, model.apply(bx) as tf.Tensor), vars);
      optimizer.applyGradients(grads);
      tf.dispose([value, grads, bx, by] as tf.TensorContainer);
      after.push(snapshot(model));
    }
    const diffs = await compareWithReference(reference, after, x, y, 8, { kind: 'muon', options, fallbackLr: FALLBACK_LR });
    expect(diffs).toEqual(new Array(5).fill(0));
    release(optimizer, model, reference, x, y);
  });
});
