// Muon: momentum + Newton-Schulz orthogonalisation, no preconditioner (Kinv = I always).
import { MatrixOptimizer, MatrixParam, MuonOptions } from './matrix_optimizer';

export class Muon extends MatrixOptimizer {
  constructor(params: readonly MatrixParam[], options: MuonOptions) {
    super('muon', params, options);
  }
}
