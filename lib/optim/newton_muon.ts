// Newton-Muon: Muon with the right preconditioner (Z Z^T)^-1 from the layer inputs
// (Du & Su, 2026): W <- W - lr * scale * msgn(momentum(G Kinv)).
import { MatrixOptimizer, MatrixParam, NewtonMuonOptions } from './matrix_optimizer';

export class NewtonMuon extends MatrixOptimizer {
  constructor(params: readonly MatrixParam[], options: NewtonMuonOptions) {
    super('newton-muon', params, options);
  }
}
