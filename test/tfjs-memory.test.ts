// Memory stays flat: over 200 steps of model.fit and of a custom minimize() loop, both
// tf.memory().numTensors and our memoryStats() (bytes and buffers) are the same after the last
// step as after the first few (the state is laid out once; per-step copies are freed), and
// dispose() gives back every tensor and byte the optimizer took, call hooks included.
import { memoryStats } from '../lib/index';
import { NewtonMuonOptimizer } from '../lib/tfjs';
import { freshSeed, TEST_DEVICE } from './helpers/device';
import { liveOn, settleGarbage } from './helpers/memory';
import { mse, tf } from './helpers/tfjs-reference';

const device = TEST_DEVICE;

function mlp(seed: number): tf.Sequential {
  return tf.sequential({
    layers: [
      tf.layers.dense({ units: 12, inputShape: [6], activation: 'tanh', kernelInitializer: tf.initializers.glorotNormal({ seed }) }),
      tf.layers.dense({ units: 12, activation: 'tanh', kernelInitializer: tf.initializers.glorotNormal({ seed: seed + 1 }) }),
      tf.layers.dense({ units: 2, kernelInitializer: tf.initializers.glorotNormal({ seed: seed + 2 }) }),
    ],
  });
}

interface Counts {
  tensors: number;
  bytes: number;
  buffers: number;
}

const counts = (): Counts => ({ tensors: tf.memory().numTensors, ...liveOn(device) });

describe(`tfjs adapter memory (${device})`, () => {
  test('model.fit: 200 steps (refresh every 4) flat in tf.memory() and memoryStats(); dispose() frees all', async () => {
    const seed = freshSeed();
    const model = mlp(seed);
    const x = tf.randomNormal([40, 6], 0, 1, 'float32', seed);
    const y = tf.randomNormal([40, 2], 0, 1, 'float32', seed + 1);
    await settleGarbage();
    const before = counts();
    const optimizer = new NewtonMuonOptimizer({ lr: 0.01, refreshEvery: 4, device }).attach(model);
    model.compile({ optimizer, loss: 'meanSquaredError' });
    const seen: Counts[] = [];
    // 5 batches per epoch x 40 epochs = 200 steps; counted at the end of each step. (The empty
    // onEpochEnd: without an epoch-end callback tfjs's fit itself keeps ~1 scalar per epoch alive
    // until it returns, with any optimizer, tf.train.adam included.)
    await model.fit(x, y, {
      batchSize: 8, epochs: 40, shuffle: false, verbose: 0,
      callbacks: { onBatchEnd: async () => { seen.push(counts()); }, onEpochEnd: async () => {} },
    });
    expect(seen).toHaveLength(200);
    expect(optimizer.iterations).toBe(200);
    expect(seen[199]).toEqual(seen[7]);
    expect(new Set(seen.slice(7).map((c) => JSON.stringify(c))).size).toBe(1);
    expect(seen[199].bytes).toBeGreaterThan(before.bytes); // the state lives on our device
    optimizer.dispose();
    await settleGarbage();
    const after = counts();
    expect({ bytes: after.bytes, buffers: after.buffers }).toEqual({ bytes: before.bytes, buffers: before.buffers });
    // Only the model's compile-time tensors remain beyond `before`; the optimizer's are gone.
    expect(after.tensors).toBeLessThan(seen[199].tensors);
    model.dispose();
    tf.dispose([x, y]);
  });

  test('custom loop with minimize(): 200 steps flat; getWeights() tensors freed by the next call and by dispose()', async () => {
    const seed = freshSeed();
    const model = mlp(seed);
    const x = tf.randomNormal([16, 6], 0, 1, 'float32', seed);
    const y = tf.randomNormal([16, 2], 0, 1, 'float32', seed + 1);
    await settleGarbage();
    const tensorsBefore = tf.memory().numTensors;
    const before = liveOn(device);
    const optimizer = new NewtonMuonOptimizer({ lr: 0.01, refreshEvery: 3, device }).attach(model);
    const seen: Counts[] = [];
    for (let i = 0; i < 200; i++) {
      optimizer.minimize(() => mse(y, model.apply(x) as tf.Tensor));
      seen.push(counts());
    }
    expect(seen[199]).toEqual(seen[5]);
    await optimizer.getWeights();
    const withWeights = tf.memory().numTensors;
    await optimizer.getWeights();
    expect(tf.memory().numTensors).toBe(withWeights);
    optimizer.dispose();
    await settleGarbage();
    expect(liveOn(device)).toEqual(before);
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    expect(memoryStats()[device]).toBeDefined();
    model.dispose();
    tf.dispose([x, y]);
  });
});
