// NewtonMuonOptimizer: Newton-Muon as a tf.Optimizer (matrix_optimizer.ts has how a step runs).
import { NewtonMuonOptimizerOptions, TfjsMatrixOptimizer } from './matrix_optimizer';
import { tf } from './tf';

export class NewtonMuonOptimizer extends TfjsMatrixOptimizer {
  /** The name tfjs's serialization registry (and saved models) know it by. */
  static readonly className = 'NewtonMuonOptimizer';

  constructor(options: NewtonMuonOptimizerOptions) {
    super(NewtonMuonOptimizer.className, true, options);
  }
}

tf.serialization.registerClass(NewtonMuonOptimizer);
