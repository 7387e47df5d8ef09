// lib/train: the training loop, presets, lr schedule, checkpoints and the comparison report.
export { ConfigError, microBatches, OPTIMIZER_NAMES, presetConfig, PRESET_NAMES, SPEEDRUN_LR, validateConfig } from './config';
export type { DataSource, OptimizerName, PresetName, TrainConfig } from './config';
export { lrMultiplier } from './schedule';
export type { ScheduleOptions } from './schedule';
export { CheckpointError, findCheckpoint, readCheckpointState } from './checkpoint';
export type { CheckpointState } from './checkpoint';
export { detectVocabSize, resolveData, Trainer } from './trainer';
export type { MetricPoint, TrainEvent, TrainerOptions, TrainResult } from './trainer';
