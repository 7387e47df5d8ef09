// The tfjs adapter's cost per step (docs/INTEROP.md): applyGradients of NewtonMuonOptimizer
// (a plain step and a refresh step, whose inputs were copied during the forward), of
// MuonOptimizer and of tfjs's own Adam, on the same gradients of tfjs MLPs, against our
// NewtonMuon.step on device tensors alone (no copies): the difference is what the adapter adds.
// tfjs runs its pure-JS CPU backend.
'use strict';
const os = require('os');
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

/** The fastest of several runs: the least disturbed by other work on the machine. */
function best(values) {
  return Math.min(...values);
}

function mlp(tf, widths) {
  return tf.sequential({
    layers: widths.slice(1).map((units, i) => tf.layers.dense({
      units, activation: i < widths.length - 2 ? 'relu' : 'linear', inputShape: i === 0 ? [widths[0]] : undefined,
      kernelInitializer: tf.initializers.glorotNormal({ seed: i + 1 }),
    })),
  });
}

/** A NewtonMuon on device tensors of the model's shapes ([out, in]); one step, timed, per call. */
function coreStepper(device, widths) {
  const params = widths.slice(1).map((units, i) => ({
    name: `w${i}`,
    param: nm.randn([units, widths[i]], { seed: 2 * i, std: 0.05, device }),
    grad: nm.randn([units, widths[i]], { seed: 2 * i + 1, std: 1e-3, device }),
  }));
  const opt = new nm.NewtonMuon(params, { lr: 1e-3, refreshEvery: 1e9 });
  return {
    async time() {
      const start = now();
      opt.stepSync();
      await nm.synchronize(device);
      return now() - start;
    },
    dispose() {
      opt.dispose();
      for (const p of params) { p.param.dispose(); p.grad.dispose(); }
    },
  };
}

async function benchTfjs({ quick }) {
  const tf = loadTf();
  if (!tf) return 'Not measured: @tensorflow/tfjs is not installed (it is a devDependency: `npm install`).';
  const { NewtonMuonOptimizer, MuonOptimizer } = require('newton-muon/tfjs');
  const steps = quick ? 4 : 16;
  const loadBefore = os.loadavg()[0];
  const devices = nm.devices().filter((d) => d.available).map((d) => d.name);
  const models = [[[784, 128, 10], 100], [[512, 512, 512, 10], 128]];
  const rows = [];
  for (const device of devices) {
    for (const [widths, batch] of models) {
      const x = tf.randomNormal([batch, widths[0]], 0, 1, 'float32', 1);
      const y = tf.randomNormal([batch, widths[widths.length - 1]], 0, 1, 'float32', 2);
      // Each optimizer trains its own copy of the model; the steps are interleaved (one step of
      // each in turn) so that all of them see the same machine load.
      const contenders = [
        ['adam', () => tf.train.adam(1e-3)],
        ['muon', (m) => new MuonOptimizer({ lr: 1e-3, device }).attach(m)],
        ['newton-muon', (m) => new NewtonMuonOptimizer({ lr: 1e-3, refreshEvery: 1e9, device }).attach(m)],
        ['refresh', (m) => new NewtonMuonOptimizer({ lr: 1e-3, refreshEvery: 1, device }).attach(m)],
      ].map(([name, make]) => {
        const model = mlp(tf, widths);
        return { name, model, optimizer: make(model), times: [] };
      });
      const core = coreStepper(device, widths);
      const coreTimes = [];
      for (let i = 0; i < steps; i++) {
        for (const c of contenders) {
          // (refresh: refreshEvery 1, so every step refreshes; its inputs are copied in this forward.)
          const { value, grads } = c.optimizer.computeGradients(() => tf.losses.meanSquaredError(y, c.model.apply(x, { training: true })));
          const start = now();
          c.optimizer.applyGradients(grads);
          c.times.push(now() - start);
          tf.dispose([value, grads]);
        }
        coreTimes.push(await core.time());
      }
      const [adam, muon, newtonMuon, refresh] = contenders.map((c) => best(c.times));
      const coreMs = best(coreTimes);
      for (const c of contenders) { c.optimizer.dispose(); c.model.dispose(); }
      core.dispose();
      const label = `${widths.join('-')}, batch ${batch}`;
      rows.push(`| ${device} | ${label} | ${adam.toFixed(2)} | ${muon.toFixed(2)} | ${newtonMuon.toFixed(2)} | ${refresh.toFixed(2)} | ${coreMs.toFixed(2)} |`);
      console.log(`tfjs ${device} ${label}: adam ${adam.toFixed(2)} muon ${muon.toFixed(2)} newton-muon ${newtonMuon.toFixed(2)} refresh ${refresh.toFixed(2)} core ${coreMs.toFixed(2)} ms`);
      tf.dispose([x, y]);
    }
  }
  return [
    `## TensorFlow.js adapter: applyGradients per step (ms, best of ${steps}; tfjs ${tf.version.tfjs}, ${tf.getBackend()} backend)`,
    '',
    'Gradients of an MLP of Dense layers (MSE loss) handed to each optimizer, steps interleaved. "refresh": a',
    'Newton-Muon step that refreshes the preconditioner; its layer inputs were copied during the forward (not counted here).',
    '"NewtonMuon.step alone": our optimizer on device tensors of the same shapes, nothing copied; the rest of a',
    'Newton-Muon column is the adapter (gradients read and transposed, weights uploaded, read back with readSync,',
    'transposed and assigned).',
    `Load average (1 min) on this ${os.cpus().length}-core machine: ${loadBefore.toFixed(1)} before the run, ` +
      `${os.loadavg()[0].toFixed(1)} after it (other jobs running at the same time make single timings noisy).`,
    '',
    '| device | model | tfjs Adam | MuonOptimizer | NewtonMuonOptimizer | NewtonMuonOptimizer refresh | NewtonMuon.step alone |',
    '|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}

module.exports = { benchTfjs };
