// The reference the tfjs adapter is checked against: our own NewtonMuon / Muon run by hand on
// the same matrices in our layout ([out, in], transposed here element by element), with every
// Dense input captured by hand (a forward pass layer by layer), and the other weights stepped by
// a plain tfjs Adam given the same gradients in the same order model.fit gives them. Nothing
// here uses lib/tfjs.
import * as tf from '@tensorflow/tfjs';

import { Muon, NewtonMuon, tensor, Tensor } from '../../lib/index';
import { native } from '../../lib/native';
import type { MatrixParam, NewtonMuonOptions } from '../../lib/index';
import { TEST_DEVICE } from './device';

tf.env().set('IS_TEST', true); // quiets tfjs's "install tfjs-node" banner; turns on its kernel leak checks
export { tf };

export type LossFn = (yTrue: tf.Tensor, yPred: tf.Tensor) => tf.Scalar;

/** fit's 'meanSquaredError': per-sample mean over the last axis, then the batch mean. */
export const mse: LossFn = (yTrue, yPred) => tf.mean(tf.mean(tf.square(tf.sub(yPred, yTrue)), -1));

/** [rows, cols] row-major -> [cols, rows] row-major. */
export function transposeHost(src: ArrayLike<number>, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

export interface DenseRef {
  layer: tf.layers.Layer;
  /** Matrices with the same key share one statistic. */
  inputKey?: string;
  rowBlocks?: number;
  inputBlocks?: number;
}

/** Each Dense layer's input for x, computed layer by layer (a Sequential of plain layers). */
export function sequentialInputs(model: tf.Sequential, x: tf.Tensor): Map<string, tf.Tensor> {
  const out = new Map<string, tf.Tensor>();
  let h = x;
  for (const layer of model.layers) {
    if (layer.getClassName() === 'Dense') out.set(layer.name, h);
    h = layer.apply(h) as tf.Tensor;
  }
  return out;
}

export interface HandRunOptions {
  kind: 'newton-muon' | 'muon';
  options: NewtonMuonOptions;
  fallbackLr: number;
  /** Dense layers to treat as matrices with their statistic keys (default: every Dense, own key). */
  dense?: DenseRef[];
  /** Each Dense layer's input for a batch x (default: sequentialInputs). */
  inputsOf?: (x: tf.Tensor) => Map<string, tf.Tensor>;
}

interface HandMatrix {
  layer: tf.layers.Layer;
  variable: tf.Variable;
  inputs: number;
  outputs: number;
  param: Tensor;
  grad: Tensor;
  key: string;
  rowBlocks?: number;
  inputBlocks?: number;
}

/** Trains `model` (a twin of the model under test) one batch at a time, by hand. */
export class HandRun {
  readonly matrices: HandMatrix[];
  readonly optimizer: NewtonMuon | Muon;
  readonly adam: tf.Optimizer;

  constructor(readonly model: tf.LayersModel, private readonly o: HandRunOptions) {
    const dense: DenseRef[] = o.dense ?? model.layers.filter((l) => l.getClassName() === 'Dense').map((layer) => ({ layer }));
    this.matrices = dense.map(({ layer, inputKey, rowBlocks, inputBlocks }) => {
      const variable = (layer as unknown as { kernel: { read(): tf.Variable } }).kernel.read();
      const [inputs, outputs] = variable.shape;
      return {
        layer, variable, inputs, outputs, key: inputKey ?? variable.name, rowBlocks, inputBlocks,
        param: tensor(transposeHost(variable.dataSync(), inputs, outputs), [outputs, inputs], { device: TEST_DEVICE }),
        grad: tensor(new Float32Array(inputs * outputs), [outputs, inputs], { device: TEST_DEVICE }),
      };
    });
    const params: MatrixParam[] = this.matrices.map((m) => ({
      param: m.param, grad: m.grad, name: m.variable.name, inputKey: m.key, rowBlocks: m.rowBlocks, inputBlocks: m.inputBlocks,
    }));
    this.optimizer = o.kind === 'muon' ? new Muon(params, o.options) : new NewtonMuon(params, { ...o.options, onWarning: () => {} });
    this.adam = tf.train.adam(o.fallbackLr);
  }

  /** One step on batch (x, y); the inputs are captured before the weights change. */
  async step(x: tf.Tensor, y: tf.Tensor, loss: LossFn = mse): Promise<void> {
    const kernels = new Set(this.matrices.map((m) => m.variable.name));
    if (this.optimizer.collectsStatistics()) {
      const inputs = (this.o.inputsOf ?? ((b: tf.Tensor) => sequentialInputs(this.model as tf.Sequential, b)))(x);
      const seen = new Set<string>();
      for (const m of this.matrices) {
        if (seen.has(m.key)) continue;
        seen.add(m.key);
        const h = inputs.get(m.layer.name)!;
        const flat = tensor(h.dataSync() as Float32Array, [h.size / m.inputs, m.inputs], { device: TEST_DEVICE });
        this.optimizer.observeInput(m.key, flat);
        flat.dispose();
      }
      for (const t of inputs.values()) if (t !== x) t.dispose();
    }
    const trainable = this.model.trainableWeights.map((w) => w.read() as tf.Variable);
    const { value, grads } = tf.variableGrads(() => loss(y, this.model.apply(x, { training: true }) as tf.Tensor), trainable);
    value.dispose();
    for (const m of this.matrices) {
      const g = transposeHost(grads[m.variable.name].dataSync(), m.inputs, m.outputs);
      native.upload(m.grad.handle('test'), m.grad.byteOffset, g);
    }
    await this.optimizer.step();
    for (const m of this.matrices) {
      const w = transposeHost(await m.param.read(), m.outputs, m.inputs);
      m.variable.assign(tf.tensor(w, [m.inputs, m.outputs]));
    }
    const rest = trainable.filter((v) => !kernels.has(v.name)).map((v) => ({ name: v.name, tensor: grads[v.name] }));
    if (rest.length > 0) this.adam.applyGradients(rest);
    tf.dispose(grads);
  }

  dispose(): void {
    this.optimizer.dispose();
    for (const m of this.matrices) {
      m.param.dispose();
      m.grad.dispose();
    }
    this.adam.dispose();
  }
}

/** Every weight of the model, copied to the host, in model order. */
export function snapshot(model: tf.LayersModel): Float32Array[] {
  return model.getWeights().map((w) => Float32Array.from(w.dataSync() as Float32Array));
}

/** The largest |a - b| over all weights (and the largest |a|, for scale). */
export function maxDiff(a: Float32Array[], b: Float32Array[]): { diff: number; scale: number } {
  let diff = 0;
  let scale = 0;
  a.forEach((wa, i) => {
    const wb = b[i];
    if (wa.length !== wb.length) throw new Error(`weight ${i}: ${wa.length} vs ${wb.length} values`);
    for (let j = 0; j < wa.length; j++) {
      diff = Math.max(diff, Math.abs(wa[j] - wb[j]));
      scale = Math.max(scale, Math.abs(wa[j]));
    }
  });
  return { diff, scale };
}

/** A twin of `model` (same config, same weights): tfjs models have no clone(). */
export async function twin(model: tf.LayersModel): Promise<tf.LayersModel> {
  const copy = await tf.models.modelFromJSON({ modelTopology: model.toJSON(null, false) as tf.io.ModelJSON['modelTopology'] });
  copy.setWeights(model.getWeights());
  return copy;
}
