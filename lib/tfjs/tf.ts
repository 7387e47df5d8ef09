// The one place that loads @tensorflow/tfjs-core (an optional peer dependency: only users of
// `newton-muon/tfjs` need it). It must be the copy the user's tfjs uses, so it is resolved from
// this package's location the normal way and never bundled.
import type * as TfCore from '@tensorflow/tfjs-core';

export type Tf = typeof TfCore;
export type TfTensor = TfCore.Tensor;
export type TfScalar = TfCore.Scalar;
export type TfVariable = TfCore.Variable;
export type TfOptimizer = TfCore.Optimizer;
export type ConfigDict = TfCore.serialization.ConfigDict;
export type Serializable = TfCore.serialization.Serializable;
export type SerializableConstructor<T extends Serializable> = TfCore.serialization.SerializableConstructor<T>;
/** tfjs's NamedTensor (not exported by tfjs-core's index). */
export interface NamedTensor {
  name: string;
  tensor: TfTensor;
}
export type NamedTensorMap = TfCore.NamedTensorMap;

function load(): Tf {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('@tensorflow/tfjs-core') as Tf;
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    if (e.code === 'MODULE_NOT_FOUND' && e.message.includes('@tensorflow/tfjs-core')) {
      throw new Error('newton-muon/tfjs needs TensorFlow.js: `npm install @tensorflow/tfjs` (or @tensorflow/tfjs-core ' +
        'with a backend). It is an optional peer dependency, so installing newton-muon does not bring it.');
    }
    throw error;
  }
}

export const tf: Tf = load();
