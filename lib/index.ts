// newton-muon: the package root. Everything users import comes from here.
export type { Dtype } from './dtype';
export { DTYPES } from './dtype';
export type { DeviceInfo, DeviceName, DeviceSpec, MemoryStats } from './device';
export { devices, memoryStats, resetPeakMemory, synchronize } from './device';
export type { RandomOptions, TensorData, TensorOptions } from './tensor';
export { empty, full, rand, randn, tensor, Tensor, zeros } from './tensor';
export { scope } from './scope';
export type { GemmOptions, MatmulOptions, RowBlock } from './ops';
export { add, axpy, cast, copy, copyRows, fill, gemm, matmul, mul, scale, sub, sum, sumOfSquares } from './ops';
export * from './optim';
export * from './gpt2';
export * from './data';
export * from './train';
export * from './dist';
