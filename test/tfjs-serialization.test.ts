// Saving and resuming: model.save(handler, { includeOptimizer: true }) -> tf.loadLayersModel ->
// attach -> fit continues exactly as the uninterrupted run (every weight and every optimizer
// state value bit for bit: momentum, K, K^-1, the step count mid refresh cycle, Adam's moments
// and bias-correction products). Also getConfig / fromConfig / the registry, and setWeights on
// an optimizer before and after its state is laid out.
import { MuonOptimizer, NewtonMuonOptimizer } from '../lib/tfjs';
import { freshSeed, TEST_DEVICE } from './helpers/device';
import { maxDiff, snapshot, tf, twin } from './helpers/tfjs-reference';

const device = TEST_DEVICE;
type AnyOptimizer = NewtonMuonOptimizer | MuonOptimizer;

function mlp(seed: number): tf.Sequential {
  return tf.sequential({
    layers: [
      tf.layers.dense({ units: 9, inputShape: [6], activation: 'tanh', kernelInitializer: tf.initializers.glorotNormal({ seed }) }),
      tf.layers.dense({ units: 3, kernelInitializer: tf.initializers.glorotNormal({ seed: seed + 1 }) }),
    ],
  });
}

async function saveToMemory(model: tf.LayersModel): Promise<tf.io.ModelArtifacts> {
  let saved: tf.io.ModelArtifacts | undefined;
  await model.save(tf.io.withSaveHandler(async (artifacts) => {
    saved = artifacts;
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
  }), { includeOptimizer: true });
  return saved!;
}

/** Every optimizer weight's values by name. */
async function optimizerValues(optimizer: AnyOptimizer): Promise<Map<string, Float32Array | Int32Array>> {
  const weights = await optimizer.getWeights();
  return new Map(weights.map((w) => [w.name, (w.tensor.dataSync() as Float32Array | Int32Array).slice()]));
}

const makers: [string, (fallbackLr: number) => AnyOptimizer][] = [
  ['NewtonMuonOptimizer', (fallbackLr) => new NewtonMuonOptimizer({ lr: 0.02, refreshEvery: 4, weightDecay: 0.01, fallbackLr, device })],
  ['MuonOptimizer', (fallbackLr) => new MuonOptimizer({ lr: 0.02, weightDecay: 0.01, fallbackLr, device })],
];

describe(`tfjs adapter: save, load, resume (${device})`, () => {
  test.each(makers)('%s: save with the optimizer, load, continue 6 steps == the uninterrupted run', async (_name, make) => {
    const seed = freshSeed();
    const x = tf.randomNormal([96, 6], 0, 1, 'float32', seed);
    const y = tf.tidy(() => tf.tanh(tf.matMul(x, tf.randomNormal([6, 3], 0, 1, 'float32', seed + 1))));
    const [x1, x2] = [x.slice(0, 48), x.slice(48, 48)];
    const [y1, y2] = [y.slice(0, 48), y.slice(48, 48)];
    const fitOptions = { batchSize: 8, epochs: 1, shuffle: false, verbose: 0 as const };

    const straight = mlp(seed);
    const interrupted = await twin(straight);
    const straightOptimizer = make(0.01).attach(straight);
    straight.compile({ optimizer: straightOptimizer, loss: 'meanSquaredError' });
    await straight.fit(x1, y1, fitOptions);
    await straight.fit(x2, y2, fitOptions);

    const firstOptimizer = make(0.01).attach(interrupted);
    interrupted.compile({ optimizer: firstOptimizer, loss: 'meanSquaredError' });
    await interrupted.fit(x1, y1, fitOptions); // 6 steps: the step count is mid refresh cycle (4)
    const artifacts = await saveToMemory(interrupted);
    expect((artifacts.trainingConfig as unknown as { optimizer_config: { class_name: string } }).optimizer_config.class_name).toBe(_name);

    const loaded = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
    const resumed = loaded.optimizer as AnyOptimizer;
    expect(resumed).toBeInstanceOf(_name === 'MuonOptimizer' ? MuonOptimizer : NewtonMuonOptimizer);
    expect(resumed.iterations).toBe(6);
    expect(resumed.getConfig()).toEqual(firstOptimizer.getConfig());
    resumed.attach(loaded); // tfjs gives an optimizer no reference to its model
    await loaded.fit(x2, y2, fitOptions);

    const diff = maxDiff(snapshot(loaded), snapshot(straight));
    expect(diff.diff).toBe(0);
    expect(diff.scale).toBeGreaterThan(0.1);
    const [a, b] = [await optimizerValues(resumed), await optimizerValues(straightOptimizer)];
    // tfjs Adam names its moments after the variables, which a loaded model renames (bias_1):
    // the state is matched by position, as Adam itself does.
    const sameName = (name: string) => name.replace(/_\d+\//, '/');
    expect([...a.keys()].map(sameName)).toEqual([...b.keys()].map(sameName));
    const bValues = [...b.values()];
    [...a].forEach(([name, values], i) => expect({ name, values: Array.from(values) }).toEqual({ name, values: Array.from(bValues[i]) }));
    expect(a.get('iter')![0]).toBe(12);

    for (const o of [straightOptimizer, firstOptimizer, resumed]) o.dispose();
    for (const m of [straight, interrupted, loaded]) m.dispose();
    tf.dispose([x, y, x1, x2, y1, y2]);
  });

  test('setWeights(getWeights()) before the first step (kept until laid out) and after it', async () => {
    const seed = freshSeed();
    const source = mlp(seed);
    const before = await twin(source);
    const after = await twin(source);
    const x = tf.randomNormal([40, 6], 0, 1, 'float32', seed);
    const y = tf.randomNormal([40, 3], 0, 1, 'float32', seed + 1);
    const fitOptions = { batchSize: 8, epochs: 1, shuffle: false, verbose: 0 as const };
    const make = () => new NewtonMuonOptimizer({ lr: 0.02, refreshEvery: 2, fallbackLr: 0.01, device });
    const first = make().attach(source);
    source.compile({ optimizer: first, loss: 'meanSquaredError' });
    await source.fit(x, y, fitOptions);
    const state = await first.getWeights();
    const weights = source.getWeights();

    const pending = make().attach(before);
    await pending.setWeights(state); // nothing laid out yet: applied at the first step
    before.setWeights(weights);
    const laidOut = make().attach(after);
    after.setWeights(weights);
    after.compile({ optimizer: laidOut, loss: 'meanSquaredError' });
    await after.fit(x.slice(0, 8), y.slice(0, 8), fitOptions); // lays out (and steps once) ...
    after.setWeights(weights);
    await laidOut.setWeights(state); // ... then overwritten: the step it took is undone
    before.compile({ optimizer: pending, loss: 'meanSquaredError' });
    for (const model of [source, before, after]) await model.fit(x, y, fitOptions);
    expect(maxDiff(snapshot(before), snapshot(source)).diff).toBe(0);
    expect(maxDiff(snapshot(after), snapshot(source)).diff).toBe(0);
    for (const o of [first, pending, laidOut]) o.dispose();
    for (const m of [source, before, after]) m.dispose();
    tf.dispose([x, y]);
  });

  test('getConfig / fromConfig / the tfjs registry; a custom fallback survives the round trip', () => {
    const options = { lr: 0.01, momentum: 0.9, nesterov: false, nsSteps: 4, weightDecay: 0.1, refreshEvery: 8, statsDecay: 0.9, ridge: 0.1, ridgeEps: 1e-6, initDiag: 1e-2 };
    const optimizer = new NewtonMuonOptimizer({ ...options, fallback: tf.train.momentum(0.05, 0.8), device: 'cpu' });
    const config = optimizer.getConfig();
    const momentumConfig = { className: 'Momentum', config: { learningRate: 0.05, momentum: 0.8, useNesterov: false } };
    expect(config).toEqual({ ...options, checkFinite: false, device: 'cpu', fallback: momentumConfig });
    const registry = tf.serialization.SerializationMap.getMap().classNameMap;
    expect(registry.NewtonMuonOptimizer[0]).toBe(NewtonMuonOptimizer);
    expect(registry.MuonOptimizer[0]).toBe(MuonOptimizer);
    const copy = NewtonMuonOptimizer.fromConfig(NewtonMuonOptimizer, config) as NewtonMuonOptimizer;
    expect(copy.getConfig()).toEqual(config);
    expect(copy.fallbackOptimizer.getClassName()).toBe('Momentum');
    const muon = new MuonOptimizer({ lr: 0.02 });
    expect(muon.getConfig()).toEqual({
      lr: 0.02, momentum: 0.95, nesterov: true, nsSteps: 5, weightDecay: 0, checkFinite: false, device: 'auto',
      fallback: { className: 'Adam', config: { learningRate: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 } },
    });
    for (const o of [optimizer, copy, muon]) o.dispose();
  });
});
