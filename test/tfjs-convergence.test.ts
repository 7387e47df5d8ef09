// Convergence smoke test: a small tfjs MLP fitted with NewtonMuonOptimizer through plain
// model.compile / model.fit learns a smooth teacher function: the training loss falls at least
// 10x. (Whether it beats Adam is not asserted: examples/tfjs-mnist.js compares them.)
import { NewtonMuonOptimizer } from '../lib/tfjs';
import { freshSeed, TEST_DEVICE } from './helpers/device';
import { tf } from './helpers/tfjs-reference';

const device = TEST_DEVICE;

test(`NewtonMuonOptimizer: model.fit lowers the loss at least 10x (${device})`, async () => {
  const seed = freshSeed();
  const x = tf.randomNormal([128, 8], 0, 1, 'float32', seed);
  const y = tf.tidy(() => tf.sin(tf.matMul(x, tf.randomNormal([8, 2], 0, 0.7, 'float32', seed + 1))));
  const model = tf.sequential({
    layers: [
      tf.layers.dense({ units: 32, inputShape: [8], activation: 'tanh', kernelInitializer: tf.initializers.glorotNormal({ seed }) }),
      tf.layers.dense({ units: 32, activation: 'tanh', kernelInitializer: tf.initializers.glorotNormal({ seed: seed + 2 }) }),
      tf.layers.dense({ units: 2, kernelInitializer: tf.initializers.glorotNormal({ seed: seed + 3 }) }),
    ],
  });
  const optimizer = new NewtonMuonOptimizer({ lr: 0.01, refreshEvery: 8, fallbackLr: 0.01, device }).attach(model);
  model.compile({ optimizer, loss: 'meanSquaredError' });
  const history = await model.fit(x, y, { batchSize: 16, epochs: 60, shuffle: false, verbose: 0 });
  const losses = history.history.loss as number[];
  expect(losses.every(Number.isFinite)).toBe(true);
  expect(losses[losses.length - 1]).toBeLessThanOrEqual(losses[0] / 10);
  optimizer.dispose();
  model.dispose();
  tf.dispose([x, y]);
});
