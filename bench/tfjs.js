// The tfjs adapter's cost per step (docs/INTEROP.md): applyGradients of NewtonMuonOptimizer
// (a plain step and a refresh step, whose inputs were copied during the forward), of
// MuonOptimizer and of tfjs's own Adam, on the same gradients of tfjs MLPs, against our
// NewtonMuon.step on device tensors alone (no copies): the difference is what the adapter adds.
// tfjs runs its pure-JS CPU backend.
'use strict';
const nm = require('..');

function loadTf() {
  try {
    const tf = require('@tensorflow/tfjs');
    tf.env().set('IS_TEST', true); // no "install tfjs-node" banner
    return tf;
  } catch {
    return null;
  }
}

const now = () => Number(process.hrtime.bigint()) / 1e6;

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function mlp(tf, widths) {
  return tf.sequential({
    layers: widths.slice(1).map((units, i) => tf.layers.dense({
      units, activation: i < widths.length - 2 ? 'relu' : 'linear', inputShape: i === 0 ? [widths[0]] : undefined,
      kernelInitializer: tf.initializers.glorotNormal({ seed: i + 1 }),
    })),
  });
}

/** Median ms of applyGradients(grads) on steps that refresh (refresh) or not. */
function timeApply(tf, optimizer, model, x, y, steps, refresh) {
  const times = [];
  for (let i = 0; i < steps; i++) {
    const collects = optimizer.collectsStatistics?.() ?? false;
    const { value, grads } = tf.variableGrads(() => tf.losses.meanSquaredError(y, model.apply(x, { training: true })));
    const start = now();
    optimizer.applyGradients(grads);
    const ms = now() - start;
    if (collects === refresh) times.push(ms);
    tf.dispose([value, grads]);
  }
  return median(times);
}

/** Median ms of NewtonMuon.step on device tensors of the same shapes (nothing copied). */
async function timeCore(device, widths, steps) {
  const params = widths.slice(1).map((units, i) => ({
    name: `w${i}`,
    param: nm.randn([units, widths[i]], { seed: 2 * i, std: 0.05, device }),
    grad: nm.randn([units, widths[i]], { seed: 2 * i + 1, std: 1e-3, device }),
  }));
  const opt = new nm.NewtonMuon(params, { lr: 1e-3, refreshEvery: 1e9 });
  const times = [];
  for (let i = 0; i < steps; i++) {
    const start = now();
    await opt.step();
    await nm.synchronize(device);
    times.push(now() - start);
  }
  opt.dispose();
  for (const p of params) { p.param.dispose(); p.grad.dispose(); }
  return median(times);
}

async function benchTfjs({ quick }) {
  const tf = loadTf();
  if (!tf) return 'Not measured: @tensorflow/tfjs is not installed (it is a devDependency: `npm install`).';
  const { NewtonMuonOptimizer, MuonOptimizer } = require('newton-muon/tfjs');
  const steps = quick ? 4 : 24;
  const devices = nm.devices().filter((d) => d.available).map((d) => d.name);
  const models = [[[784, 128, 10], 100], [[1024, 1024, 1024, 10], 256]];
  const rows = [];
  for (const device of devices) {
    for (const [widths, batch] of models) {
      const x = tf.randomNormal([batch, widths[0]], 0, 1, 'float32', 1);
      const y = tf.randomNormal([batch, widths[widths.length - 1]], 0, 1, 'float32', 2);
      const run = (make, refresh) => {
        const model = mlp(tf, widths);
        const optimizer = make(model);
        const ms = timeApply(tf, optimizer, model, x, y, refresh ? 4 * steps : steps, refresh);
        optimizer.dispose();
        model.dispose();
        return ms;
      };
      const adam = run(() => tf.train.adam(1e-3), false);
      const muon = run((m) => new MuonOptimizer({ lr: 1e-3, device }).attach(m), false);
      const newtonMuon = run((m) => new NewtonMuonOptimizer({ lr: 1e-3, refreshEvery: 1e9, device }).attach(m), false);
      const refresh = run((m) => new NewtonMuonOptimizer({ lr: 1e-3, refreshEvery: 4, device }).attach(m), true);
      const core = await timeCore(device, widths, steps);
      const label = `${widths.join('-')}, batch ${batch}`;
      rows.push(`| ${device} | ${label} | ${adam.toFixed(2)} | ${muon.toFixed(2)} | ${newtonMuon.toFixed(2)} | ${refresh.toFixed(2)} | ${core.toFixed(2)} |`);
      console.log(`tfjs ${device} ${label}: adam ${adam.toFixed(2)} muon ${muon.toFixed(2)} newton-muon ${newtonMuon.toFixed(2)} refresh ${refresh.toFixed(2)} core ${core.toFixed(2)} ms`);
      tf.dispose([x, y]);
    }
  }
  return [
    `## TensorFlow.js adapter: applyGradients per step (ms, median; tfjs ${tf.version.tfjs}, ${tf.getBackend()} backend)`,
    '',
    'Same gradients (an MLP of Dense layers, MSE loss) handed to each optimizer. "refresh": a Newton-Muon step that',
    'refreshes the preconditioner; its layer inputs were copied during the forward (not counted here).',
    '"NewtonMuon.step alone": our optimizer on device tensors of the same shapes, nothing copied; the rest of a',
    'Newton-Muon column is the adapter (gradients read and transposed, weights uploaded, read back with readSync,',
    'transposed and assigned).',
    '',
    '| device | model | tfjs Adam | MuonOptimizer | NewtonMuonOptimizer | NewtonMuonOptimizer refresh | NewtonMuon.step alone |',
    '|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}

module.exports = { benchTfjs };
