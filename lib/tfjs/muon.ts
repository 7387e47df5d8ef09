// MuonOptimizer: Muon as a tf.Optimizer (matrix_optimizer.ts has how a step runs). No input
// statistics, so no call hooks and nothing copied but gradients and weights.
import { MuonOptimizerOptions, TfjsMatrixOptimizer } from './matrix_optimizer';
import { tf } from './tf';

export class MuonOptimizer extends TfjsMatrixOptimizer {
  /** The name tfjs's serialization registry (and saved models) know it by. */
  static readonly className = 'MuonOptimizer';

  constructor(options: MuonOptimizerOptions) {
    super(MuonOptimizer.className, false, options);
  }
}

tf.serialization.registerClass(MuonOptimizer);
