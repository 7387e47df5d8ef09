export { AdamW } from './adamw';
export type { AdamWOptions, AdamWParam } from './adamw';
export { Muon } from './muon';
export { NewtonMuon } from './newton_muon';
export type { MatrixParam, MuonOptions, NewtonMuonOptions } from './matrix_optimizer';
export { accumulateInputGram, choleskyInverse, newtonSchulz5, NS5_COEFFICIENTS, rightPrecondition } from './kernels';
export type { CholeskyInverseOptions, GramOptions, NewtonSchulzOptions, RightPreconditionOptions } from './kernels';
export type { OptimizerState } from './state';
