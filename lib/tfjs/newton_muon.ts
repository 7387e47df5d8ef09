// NewtonMuonOptimizer: Newton-Muon as a tf.Optimizer (see matrix_optimizer.ts for how a step runs).
import { ArrayMatrix, ArrayNewtonMuon, ArrayOptimizerOptions } from '../optim/array_optimizer';
import { NewtonMuonOptions } from '../optim/matrix_optimizer';
import { NewtonMuonOptimizerOptions, TfjsMatrixOptimizer } from './matrix_optimizer';
import { ConfigDict, Serializable, SerializableConstructor, tf } from './tf';

export class NewtonMuonOptimizer extends TfjsMatrixOptimizer {
  /** The name tfjs's serialization registry (and saved models) know it by. */
  static readonly className = 'NewtonMuonOptimizer';

  constructor(options: NewtonMuonOptimizerOptions) {
    super(NewtonMuonOptimizer.className, true, options);
  }

  protected createCore(matrices: ArrayMatrix[], options: NewtonMuonOptions & ArrayOptimizerOptions): ArrayNewtonMuon {
    return new ArrayNewtonMuon(matrices, options);
  }

  static override fromConfig<T extends Serializable>(cls: SerializableConstructor<T>, config: ConfigDict): T {
    return new (cls as unknown as new (options: NewtonMuonOptimizerOptions) => T)(TfjsMatrixOptimizer.optionsFromConfig(config));
  }
}

tf.serialization.registerClass(NewtonMuonOptimizer);
