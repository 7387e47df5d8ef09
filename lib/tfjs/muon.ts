// MuonOptimizer: Muon as a tf.Optimizer (see matrix_optimizer.ts for how a step runs). No input
// statistics, so no call hooks and nothing copied but gradients and weights.
import { ArrayMatrix, ArrayMuon, ArrayOptimizerOptions } from '../optim/array_optimizer';
import { MuonOptions } from '../optim/matrix_optimizer';
import { MuonOptimizerOptions, TfjsMatrixOptimizer } from './matrix_optimizer';
import { ConfigDict, Serializable, SerializableConstructor, tf } from './tf';

export class MuonOptimizer extends TfjsMatrixOptimizer {
  /** The name tfjs's serialization registry (and saved models) know it by. */
  static readonly className = 'MuonOptimizer';

  constructor(options: MuonOptimizerOptions) {
    super(MuonOptimizer.className, false, options);
  }

  protected createCore(matrices: ArrayMatrix[], options: MuonOptions & ArrayOptimizerOptions): ArrayMuon {
    return new ArrayMuon(matrices, options);
  }

  static override fromConfig<T extends Serializable>(cls: SerializableConstructor<T>, config: ConfigDict): T {
    return new (cls as unknown as new (options: MuonOptimizerOptions) => T)(TfjsMatrixOptimizer.optionsFromConfig(config));
  }
}

tf.serialization.registerClass(MuonOptimizer);
