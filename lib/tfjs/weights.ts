// The optimizer's state as tfjs NamedTensors, the form model.save({ includeOptimizer: true })
// writes and tf.loadLayersModel hands back to setWeights():
//   iter                                   completed steps (int32 scalar; tfjs's convention: first)
//   newton-muon/momentum/<matrix>          our state, flat f32 (the names of our stateDict())
//   newton-muon/K/<key>, .../Kinv/<key>
//   fallback/<name>                        the fallback optimizer's own getWeights(), in its order
//   fallback-adam/accBeta1, .../accBeta2   tfjs Adam's bias-correction products (see below)
import { OptimizerState } from '../optim/state';
import { NamedTensor, tf, TfOptimizer, TfTensor, TfVariable } from './tf';

const OURS = 'newton-muon/';
const FALLBACK = 'fallback/';
const ADAM = 'fallback-adam/';

/** tfjs Adam's running products beta^t. Its setWeights() recomputes them with pow(), which is
 * not bit-identical to the product it keeps while training, so they are saved and restored. */
interface AdamAccumulators {
  accBeta1: TfVariable;
  accBeta2: TfVariable;
}

function adamAccumulators(fallback: TfOptimizer): AdamAccumulators | undefined {
  const adam = fallback as unknown as Partial<AdamAccumulators>;
  if (fallback.getClassName() !== 'Adam' || !adam.accBeta1 || !adam.accBeta2) return undefined;
  return adam as AdamAccumulators;
}

export interface PackedWeights {
  weights: NamedTensor[];
  /** Tensors made for this call (the caller owns them); the rest are live optimizer state. */
  made: TfTensor[];
}

/** Our host state plus the fallback's weights as one NamedTensor list. */
export async function packWeights(state: OptimizerState, fallback: TfOptimizer): Promise<PackedWeights> {
  const made: TfTensor[] = [tf.scalar(state.step, 'int32')];
  const weights: NamedTensor[] = [{ name: 'iter', tensor: made[0] }];
  for (const [name, values] of Object.entries(state.tensors)) {
    const tensor = tf.tensor1d(values as Float32Array, 'float32');
    made.push(tensor);
    weights.push({ name: OURS + name, tensor });
  }
  for (const w of await fallback.getWeights()) {
    // Optimizers make their 'iter' scalar on each call (tfjs's saveIterations); the rest is live state.
    if (w.name === 'iter') made.push(w.tensor);
    weights.push({ name: FALLBACK + w.name, tensor: w.tensor });
  }
  const adam = adamAccumulators(fallback);
  if (adam) weights.push({ name: `${ADAM}accBeta1`, tensor: adam.accBeta1 }, { name: `${ADAM}accBeta2`, tensor: adam.accBeta2 });
  return { weights, made };
}

/**
 * Splits a packWeights() list: our state as host arrays (validated against `kind` later, when the
 * optimizer knows its matrices), and restores the fallback at once.
 */
export async function unpackWeights(values: readonly NamedTensor[], kind: string, fallback: TfOptimizer, what: string): Promise<OptimizerState> {
  if (!Array.isArray(values) || values.length === 0 || values[0]?.name !== 'iter') {
    throw new TypeError(`${what}: expected the list getWeights() returns, starting with 'iter'`);
  }
  const step = (await values[0].tensor.data())[0];
  const tensors: Record<string, Float32Array> = {};
  const fallbackWeights: NamedTensor[] = [];
  const accumulators: Record<string, TfTensor> = {};
  for (const { name, tensor } of values.slice(1)) {
    if (name.startsWith(OURS)) tensors[name.slice(OURS.length)] = Float32Array.from(await tensor.data());
    else if (name.startsWith(FALLBACK)) fallbackWeights.push({ name: name.slice(FALLBACK.length), tensor });
    else if (name.startsWith(ADAM)) accumulators[name.slice(ADAM.length)] = tensor;
    else throw new TypeError(`${what}: unexpected weight '${name}' (not written by this optimizer's getWeights())`);
  }
  if (fallbackWeights.length > 0) await fallback.setWeights(fallbackWeights);
  const adam = adamAccumulators(fallback);
  if (adam && accumulators.accBeta1 && accumulators.accBeta2) {
    adam.accBeta1.assign(accumulators.accBeta1);
    adam.accBeta2.assign(accumulators.accBeta2);
  }
  return { kind, step, tensors };
}
