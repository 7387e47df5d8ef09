// Training configuration: the presets (the small default job and the GPT-2 124M speedrun record
// #4 configuration of ../../docs/TRAINING.md), overrides, and validation. Everything a run needs
// to be reproduced is in TrainConfig; config.json is this object.
import type { GPT2Config } from '../gpt2/config';
import { ATTENTION_ALGOS } from '../gpt2/ops';
import type { AttentionAlgo } from '../gpt2/ops';

export type OptimizerName = 'newton-muon' | 'muon' | 'adamw';
export const OPTIMIZER_NAMES: readonly OptimizerName[] = ['newton-muon', 'muon', 'adamw'];
export type PresetName = 'tiny' | 'speedrun-124m';
export const PRESET_NAMES: readonly PresetName[] = ['tiny', 'speedrun-124m'];

/** Where the tokens come from: the bundled Moby-Dick corpus, or shard globs. */
export type DataSource =
  | { kind: 'bundled'; tokenizer: 'byte' | 'gpt2' }
  | { kind: 'shards'; train: string; val: string };

export interface TrainConfig {
  preset: PresetName;
  model: Required<GPT2Config>;
  optimizer: OptimizerName;
  data: DataSource;
  /** Optimizer steps. */
  steps: number;
  /** Tokens per optimizer step (all micro-batches together). */
  batchTokens: number;
  /** Sequences per micro-batch (B). */
  microBatch: number;
  /** Tokens per sequence (T). */
  seqLen: number;
  /**
   * Base learning rate: AdamW (the embedding/head, or every parameter with --optimizer adamw)
   * uses it as is, Muon / Newton-Muon use matrixLrScale x it.
   */
  lr: number;
  matrixLrScale: number;
  warmupSteps: number;
  /** Linear decay to 0 over the last warmdownSteps steps. */
  warmdownSteps: number;
  adamBetas: [number, number];
  adamEps: number;
  momentum: number;
  /** Newton-Muon: preconditioner refresh period (steps). */
  refreshEvery: number;
  /** Evaluate every valEvery steps (and at step 0 and at the end). */
  valEvery: number;
  /** Evaluate on the first valTokens tokens of the val data (fewer if it holds fewer). */
  valTokens: number;
  /** Write a checkpoint every saveEvery steps (0: only at the end). */
  saveEvery: number;
  seed: number;
  device: 'cpu' | 'cuda' | 'auto';
  /** Stop (before any parameter is updated) when a gradient holds NaN or Inf. */
  checkFinite: boolean;
  /** Val loss to report reaching (step and wall-clock); null: none. */
  targetLoss: number | null;
  /**
   * A safetensors file (PyTorch names, as GPT2.saveSafetensors writes) the run starts from instead
   * of the seeded initialisation; null: the seeded initialisation. A resumed run ignores it.
   */
  initWeights: string | null;
  /**
   * The model's attention algorithm ('auto': f32 flash on CUDA, the CPU's one kernel otherwise;
   * 'flash-bf16': the tensor-core kernel, see docs/GPU.md). Changes numerics, not the state.
   */
  attention: AttentionAlgo;
}

/** The default base learning rate of each optimizer (speedrun record: Muon 0.0036, Newton-Muon 0.0040). */
export const SPEEDRUN_LR: Record<OptimizerName, number> = { 'newton-muon': 0.004, muon: 0.0036, adamw: 0.0036 };

/** The default job: a 4-layer, 128-wide byte-level GPT on Moby-Dick; ~2.5 minutes on 2 CPU cores. */
const TINY_LR: Record<OptimizerName, number> = { 'newton-muon': 0.03, muon: 0.03, adamw: 0.01 };

export function presetConfig(preset: PresetName, optimizer: OptimizerName = 'newton-muon'): TrainConfig {
  if (preset === 'tiny') {
    return {
      preset,
      model: { vocabSize: 257, nLayer: 4, nHead: 4, nEmbd: 128, maxSeqLen: 128 },
      optimizer,
      data: { kind: 'bundled', tokenizer: 'byte' },
      steps: 120,
      batchTokens: 8 * 128 * 8,
      microBatch: 8,
      seqLen: 128,
      lr: TINY_LR[optimizer],
      matrixLrScale: 0.1,
      warmupSteps: 0,
      warmdownSteps: 36,
      adamBetas: [0.9, 0.95],
      adamEps: 1e-8,
      momentum: 0.95,
      refreshEvery: 8,
      valEvery: 10,
      valTokens: 16 * 1024,
      saveEvery: 0,
      seed: 0,
      device: 'auto',
      checkFinite: true,
      targetLoss: 2.5,
      initWeights: null,
      attention: 'auto',
    };
  }
  if (preset === 'speedrun-124m') {
    return {
      preset,
      model: { vocabSize: 50257, nLayer: 12, nHead: 12, nEmbd: 768, maxSeqLen: 1024 },
      optimizer,
      data: { kind: 'shards', train: '', val: '' },
      steps: 6200,
      batchTokens: 524_288,
      microBatch: 64,
      seqLen: 1024,
      lr: SPEEDRUN_LR[optimizer],
      matrixLrScale: 0.1,
      warmupSteps: 0,
      warmdownSteps: 1800,
      adamBetas: [0.9, 0.95],
      adamEps: 1e-8,
      momentum: 0.95,
      refreshEvery: 32,
      valEvery: 125,
      valTokens: 10_485_760,
      saveEvery: 0,
      seed: 0,
      device: 'auto',
      checkFinite: true,
      targetLoss: 3.28,
      initWeights: null,
      attention: 'auto',
    };
  }
  throw new ConfigError(`unknown preset '${String(preset)}' (expected ${PRESET_NAMES.join(' or ')})`);
}

/** A configuration that cannot run: the message names the field and what it needs. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

function positiveInt(value: unknown, what: string): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) throw new ConfigError(`${what} must be a positive integer (got ${String(value)})`);
}

function nonNegativeInt(value: unknown, what: string): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw new ConfigError(`${what} must be an integer >= 0 (got ${String(value)})`);
}

/** Micro-batches per step: batchTokens / (microBatch * seqLen), which must be a whole number. */
export function microBatches(config: TrainConfig): number {
  return config.batchTokens / (config.microBatch * config.seqLen);
}

/** Checks every field; throws a ConfigError naming the first problem. */
export function validateConfig(c: TrainConfig): TrainConfig {
  if (!PRESET_NAMES.includes(c.preset)) throw new ConfigError(`unknown preset '${String(c.preset)}'`);
  if (!OPTIMIZER_NAMES.includes(c.optimizer)) throw new ConfigError(`optimizer must be ${OPTIMIZER_NAMES.join(', ')} (got '${String(c.optimizer)}')`);
  positiveInt(c.steps, 'steps');
  positiveInt(c.microBatch, 'micro-batch (sequences)');
  positiveInt(c.seqLen, 'sequence length');
  positiveInt(c.batchTokens, 'batch size (tokens per step)');
  nonNegativeInt(c.warmupSteps, 'warmup steps');
  nonNegativeInt(c.warmdownSteps, 'warmdown steps');
  positiveInt(c.valEvery, 'val-every');
  positiveInt(c.valTokens, 'val tokens');
  nonNegativeInt(c.saveEvery, 'save-every');
  positiveInt(c.refreshEvery, 'refresh-every');
  if (!Number.isSafeInteger(c.seed) || c.seed < 0 || c.seed > 1_000_000_000) throw new ConfigError(`seed must be an integer in [0, 1e9] (got ${String(c.seed)})`);
  if (!(typeof c.lr === 'number' && Number.isFinite(c.lr) && c.lr > 0)) throw new ConfigError(`learning rate must be a number > 0 (got ${String(c.lr)})`);
  if (!(c.matrixLrScale > 0)) throw new ConfigError(`matrix lr scale must be > 0 (got ${String(c.matrixLrScale)})`);
  if (c.device !== 'cpu' && c.device !== 'cuda' && c.device !== 'auto') throw new ConfigError(`device must be cpu, cuda or auto (got '${String(c.device)}')`);
  if (c.targetLoss !== null && !(typeof c.targetLoss === 'number' && Number.isFinite(c.targetLoss) && c.targetLoss > 0)) {
    throw new ConfigError(`target loss must be a number > 0 (got ${String(c.targetLoss)})`);
  }
  if (c.initWeights !== null && (typeof c.initWeights !== 'string' || c.initWeights === '')) {
    throw new ConfigError(`init weights must be a safetensors file path or null (got ${JSON.stringify(c.initWeights)})`);
  }
  if (!ATTENTION_ALGOS.includes(c.attention)) throw new ConfigError(`attention must be ${ATTENTION_ALGOS.join(', ')} (got '${String(c.attention)}')`);
  const per = c.microBatch * c.seqLen;
  if (c.batchTokens % per !== 0) {
    throw new ConfigError(`batch size ${c.batchTokens} tokens is not a whole number of micro-batches of ${c.microBatch} x ${c.seqLen} = ${per} tokens`);
  }
  if (c.seqLen > c.model.maxSeqLen) throw new ConfigError(`sequence length ${c.seqLen} exceeds the model's maximum ${c.model.maxSeqLen}`);
  if (c.warmupSteps + c.warmdownSteps > c.steps) {
    throw new ConfigError(`warmup (${c.warmupSteps}) + warmdown (${c.warmdownSteps}) steps exceed the ${c.steps} steps`);
  }
  if (c.data.kind === 'shards' && (c.data.train === '' || c.data.val === '')) {
    throw new ConfigError(`preset '${c.preset}' needs token shards: give --data <glob> and --val-data <glob> (see newton-muon-data)`);
  }
  return c;
}
