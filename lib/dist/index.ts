// newton-muon's data-parallel layer: process groups over NCCL (CUDA) and Gloo (CPU), the launch
// environment of torchrun / SLURM / mpiexec, the rendezvous store, and the local launcher.
export { DistError } from './errors';
export type { LaunchInfo, LaunchSource } from './env';
export { launchEnvironment } from './env';
export type { BackendInfo, DistBackend } from './backends';
export { processGroupBackends } from './backends';
export type { ProcessGroupOptions, ReduceOp } from './process_group';
export { DEFAULT_TIMEOUT_MS, initProcessGroup, ProcessGroup } from './process_group';
export type { ShardUnit } from './sharding';
export { assignShards, planShards, ShardedMatrixStep, shardUnits } from './sharding';
