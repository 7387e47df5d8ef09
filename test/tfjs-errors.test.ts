// Bad input to the tfjs adapter gets a clear error naming the variable (or layer, or option)
// before anything changes: a non-2-D variable as a matrix, a missing gradient, a variable of
// another model, a wrong input width, training a loaded optimizer before attach(), a wrong
// gradient shape, bad options, registration after the first step, use after dispose. Plus the
// warning (with tfjs's hint) for a matrix whose input was never observed.
import { MuonOptimizer, NewtonMuonOptimizer } from '../lib/tfjs';
import { freshSeed, TEST_DEVICE } from './helpers/device';
import { mse, snapshot, tf } from './helpers/tfjs-reference';

const device = TEST_DEVICE;

function mlp(seed: number, name: string): tf.Sequential {
  return tf.sequential({
    name,
    layers: [
      tf.layers.dense({ units: 5, inputShape: [4], activation: 'tanh', kernelInitializer: tf.initializers.glorotNormal({ seed }), name: `${name}_hidden` }),
      tf.layers.dense({ units: 2, kernelInitializer: tf.initializers.glorotNormal({ seed: seed + 1 }), name: `${name}_out` }),
    ],
  });
}

const kernel = (model: tf.LayersModel, i: number): tf.Variable => (model.layers[i] as unknown as { kernel: { read(): tf.Variable } }).kernel.read();

describe(`tfjs adapter: bad input (${device})`, () => {
  test('a non-2-D variable given as a matrix', () => {
    const conv = tf.sequential({ layers: [tf.layers.conv2d({ filters: 2, kernelSize: 3, inputShape: [5, 5, 1], name: 'conv' })] });
    const optimizer = new NewtonMuonOptimizer({ lr: 0.01, device });
    expect(() => optimizer.addMatrix(kernel(conv, 0))).toThrow(
      "NewtonMuonOptimizer.addMatrix: 'conv/kernel' has shape [3, 3, 1, 2]; only 2-D [in, out] variables can be matrices (leave it to the fallback optimizer)");
    expect(() => optimizer.addMatrix(tf.variable(tf.zeros([3, 3], 'int32'), true, 'counts'))).toThrow("NewtonMuonOptimizer.addMatrix: 'counts' is int32; matrices must be float32");
    expect(() => optimizer.addMatrix(tf.zeros([3, 3]) as tf.Variable)).toThrow('NewtonMuonOptimizer.addMatrix: expected a tf.Variable (or a layer\'s weight)');
    expect(() => optimizer.attach(conv, { layers: ['conv'] })).toThrow(
      "NewtonMuonOptimizer.attach: options.layers[0] names 'conv', a Conv2D layer; only Dense kernels can be matrices");
    optimizer.dispose();
    conv.dispose();
  });

  test('a missing gradient (applyGradients, or minimize with a varList that leaves a matrix out)', () => {
    const seed = freshSeed();
    const model = mlp(seed, 'm');
    const optimizer = new NewtonMuonOptimizer({ lr: 0.01, device }).attach(model);
    const x = tf.randomNormal([3, 4], 0, 1, 'float32', seed);
    const y = tf.randomNormal([3, 2], 0, 1, 'float32', seed + 1);
    const before = snapshot(model);
    const { value, grads } = tf.variableGrads(() => mse(y, model.apply(x) as tf.Tensor));
    const partial = { ...grads };
    delete partial[kernel(model, 1).name];
    expect(() => optimizer.applyGradients(partial)).toThrow(
      "NewtonMuonOptimizer.applyGradients: no gradient for matrix 'm_out/kernel'; every registered matrix needs one each step (is it used by the loss? is it in varList?); nothing was updated");
    const onlyFirst = model.layers[0].trainableWeights.map((w) => w.read() as tf.Variable);
    expect(() => optimizer.minimize(() => mse(y, model.apply(x) as tf.Tensor), false, onlyFirst)).toThrow("no gradient for matrix 'm_out/kernel'");
    expect(snapshot(model)).toEqual(before);
    expect(optimizer.iterations).toBe(0);
    tf.dispose([value, grads, x, y] as tf.TensorContainer);
    optimizer.dispose();
    model.dispose();
  });

  test('a variable of another model: fit on a model the optimizer is not attached to', async () => {
    const seed = freshSeed();
    const mine = mlp(seed, 'mine');
    const other = mlp(seed + 7, 'other');
    const optimizer = new NewtonMuonOptimizer({ lr: 0.01, device }).attach(mine);
    other.compile({ optimizer, loss: 'meanSquaredError' });
    const x = tf.randomNormal([4, 4], 0, 1, 'float32', seed);
    const y = tf.randomNormal([4, 2], 0, 1, 'float32', seed);
    const before = snapshot(other);
    await expect(other.fit(x, y, { epochs: 1, verbose: 0 })).rejects.toThrow(
      /NewtonMuonOptimizer\.applyGradients: got a gradient for variable 'other_hidden\/kernel(_\d+)?', which is not a weight of the attached model 'mine'/);
    expect(snapshot(other)).toEqual(before);
    // A variable of one's own next to the model is fine once declared.
    const temperature = tf.variable(tf.scalar(1), true, 'temperature');
    const loss = () => tf.mul(mse(y, mine.apply(x) as tf.Tensor), temperature) as tf.Scalar;
    expect(() => optimizer.minimize(loss)).toThrow("got a gradient for variable 'temperature', which is not a weight of the attached model 'mine'");
    optimizer.addFallbackVariables(temperature).minimize(loss);
    expect(optimizer.iterations).toBe(1);
    temperature.dispose();
    // addMatrix / observeInput with a variable that is not registered name it too.
    expect(() => optimizer.observeInput(kernel(other, 0), x)).toThrow(/NewtonMuonOptimizer\.observeInput: variable 'other_hidden\/kernel(_\d+)?' is not a matrix of this optimizer/);
    optimizer.dispose();
    tf.dispose([x, y]);
    mine.dispose();
    other.dispose();
  });

  test('a wrong input width', () => {
    const model = mlp(freshSeed(), 'w');
    const optimizer = new NewtonMuonOptimizer({ lr: 0.01, device }).attach(model);
    const x = tf.zeros([3, 5]);
    expect(() => optimizer.observeInput(kernel(model, 0), x)).toThrow(
      "NewtonMuonOptimizer.observeInput('w_hidden/kernel'): the input must end in 4 features ([..., 4]: 'w_hidden/kernel' is [4, 5]), got shape [3, 5]");
    expect(() => optimizer.observeInput('w_out/kernel', tf.zeros([2, 3, 4]))).toThrow("observeInput('w_out/kernel'): the input must end in 5 features");
    x.dispose();
    optimizer.dispose();
    model.dispose();
  });

  test('a wrong gradient shape; gradients refused leave every weight as it was', () => {
    const model = mlp(freshSeed(), 'g');
    const optimizer = new MuonOptimizer({ lr: 0.01, device }).attach(model);
    const grads = { [kernel(model, 0).name]: tf.zeros([5, 4]), [kernel(model, 1).name]: tf.zeros([5, 2]) };
    expect(() => optimizer.applyGradients(grads)).toThrow(
      "MuonOptimizer.applyGradients: the gradient of 'g_hidden/kernel' must be a float32 tensor [4, 5], got float32 [5, 4]; nothing was updated");
    tf.dispose(grads);
    optimizer.dispose();
    model.dispose();
  });

  test('a loaded optimizer trained before attach(), registration after the first step, use after dispose', async () => {
    const model = mlp(freshSeed(), 'l');
    const optimizer = new NewtonMuonOptimizer({ lr: 0.01, device });
    model.compile({ optimizer, loss: 'meanSquaredError' });
    const x = tf.zeros([2, 4]);
    const y = tf.zeros([2, 2]);
    await expect(model.fit(x, y, { epochs: 1, verbose: 0 })).rejects.toThrow(
      'NewtonMuonOptimizer: no matrices are registered; call optimizer.attach(model) (or addMatrix) before training');
    await optimizer.setWeights([{ name: 'iter', tensor: tf.scalar(3, 'int32') }]);
    await expect(model.fit(x, y, { epochs: 1, verbose: 0 })).rejects.toThrow(
      'This optimizer was restored by tf.loadLayersModel: attach it to the loaded model, `model.optimizer.attach(model)`');
    optimizer.attach(model);
    await expect(model.fit(x, y, { epochs: 1, verbose: 0 })).rejects.toThrow(
      "NewtonMuonOptimizer: the state given to setWeights() does not fit the registered matrices: loadStateDict: missing tensor 'momentum/l_hidden/kernel'");
    optimizer.dispose();
    const fresh = new NewtonMuonOptimizer({ lr: 0.01, device }).attach(model);
    model.compile({ optimizer: fresh, loss: 'meanSquaredError' });
    await model.fit(x, y, { epochs: 1, verbose: 0 });
    expect(() => fresh.addMatrix(tf.variable(tf.zeros([2, 2])))).toThrow('NewtonMuonOptimizer.addMatrix: register every matrix before the first step');
    expect(() => fresh.attach(model)).toThrow('register every matrix before the first step');
    fresh.dispose();
    expect(() => fresh.applyGradients({})).toThrow('NewtonMuonOptimizer.applyGradients: the optimizer was disposed');
    await expect(model.fit(x, y, { epochs: 1, verbose: 0 })).rejects.toThrow('the optimizer was disposed');
    tf.dispose([x, y]);
    model.dispose();
  });

  test('bad options and attach() arguments name what is wrong', () => {
    const model = mlp(freshSeed(), 'o');
    expect(() => new NewtonMuonOptimizer({ lr: -1 })).toThrow('NewtonMuon: lr must be a finite number > 0, got -1');
    expect(() => new MuonOptimizer({ lr: 0.1, refreshEvery: 3 } as never)).toThrow('MuonOptimizer: refreshEvery is a Newton-Muon option; use NewtonMuonOptimizer for it');
    expect(() => new NewtonMuonOptimizer({ lr: 0.1, fallback: {} as tf.Optimizer })).toThrow('NewtonMuonOptimizer: fallback must be a tf.Optimizer');
    expect(() => new NewtonMuonOptimizer({ lr: 0.1, device: 'tpu' as 'cpu' })).toThrow(`NewtonMuonOptimizer: device: unknown device "tpu"`);
    const optimizer = new NewtonMuonOptimizer({ lr: 0.1, device });
    expect(() => optimizer.attach({} as tf.LayersModel)).toThrow('NewtonMuonOptimizer.attach: expected a tfjs LayersModel');
    expect(() => optimizer.attach(model, { layers: ['nope'] })).toThrow(
      'NewtonMuonOptimizer.attach: options.layers[0] names "nope", which is not a layer of model \'o\' (its Dense layers: o_hidden, o_out)');
    expect(() => optimizer.attach(model, { matrixOptions: { o_out: { inputBlocks: 2 } } })).toThrow("NewtonMuonOptimizer.attach: 'o_out/kernel': its 5 input features do not split into 2 blocks");
    optimizer.dispose();
    const first = new NewtonMuonOptimizer({ lr: 0.1, device }).attach(model);
    expect(() => new NewtonMuonOptimizer({ lr: 0.1, device }).attach(model)).toThrow(
      "NewtonMuonOptimizer.attach: layer 'o_hidden' is attached to another optimizer; dispose() that one first");
    first.dispose();
    model.dispose();
  });

  test('a matrix whose input is never observed: NewtonMuon\'s warning, with the tfjs hint', () => {
    const seed = freshSeed();
    const model = mlp(seed, 'u');
    const warnings: string[] = [];
    const optimizer = new NewtonMuonOptimizer({ lr: 0.01, refreshEvery: 2, onWarning: (m) => warnings.push(m), device }).attach(model);
    const x = tf.randomNormal([3, 4], 0, 1, 'float32', seed);
    const y = tf.randomNormal([3, 2], 0, 1, 'float32', seed);
    for (let i = 0; i < 2; i++) {
      // Gradients taken outside the optimizer, forward without { training: true }: nothing observed.
      const { value, grads } = tf.variableGrads(() => mse(y, model.apply(x) as tf.Tensor));
      optimizer.applyGradients(grads);
      tf.dispose([value, grads] as tf.TensorContainer);
    }
    expect(warnings).toEqual([
      "NewtonMuon: no input was observed for 'u_hidden/kernel' on refresh step 1; its preconditioner was kept (warned once). " +
      'In tfjs, Dense inputs are captured during model.fit, inside optimizer.minimize(), and from model.apply(x, { training: true }); ' +
      'otherwise call optimizer.observeInput(variable, x)',
      expect.stringContaining("no input was observed for 'u_out/kernel'"),
    ]);
    tf.dispose([x, y]);
    optimizer.dispose();
    model.dispose();
  });
});
