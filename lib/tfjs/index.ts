// newton-muon/tfjs: Newton-Muon and Muon as TensorFlow.js optimizers. Needs @tensorflow/tfjs-core
// (an optional peer dependency; @tensorflow/tfjs brings it). See docs/INTEROP.md.
export { NewtonMuonOptimizer } from './newton_muon';
export { MuonOptimizer } from './muon';
export type { AddMatrixOptions, MuonOptimizerOptions, NewtonMuonOptimizerOptions, TfjsOptimizerOptions } from './matrix_optimizer';
export { TfjsMatrixOptimizer } from './matrix_optimizer';
export type { AttachOptions, DenseMatrixOptions, LayersModelLike } from './model';
