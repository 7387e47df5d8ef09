// The training loop: gradient accumulation over micro-batches, the lr schedule on both
// optimizers, Newton-Muon's input statistics on collecting steps, fp32 evaluation without
// gradients, metrics.jsonl / config.json, checkpoints and exact resumption.
//
// One step s (1-based, s = steps completed afterwards):
//   zero grads; for each micro-batch: loader.next(), forwardBackwardLazy(gradScale 1/micro-batches,
//   the observeInputs hook when the matrix optimizer collects statistics this step; the losses
//   are summed on the device and read once, after the updates);
//   check every gradient is finite (nothing is updated otherwise); set lr; step both optimizers;
//   evaluate if s % valEvery == 0 or s == steps; log; checkpoint if s % saveEvery == 0 or s == steps.
// Nothing in the loop is random, so model + optimizer state + loader position + step is the whole
// state: a resumed run computes bit for bit what an uninterrupted one would (on the CPU).
//
// Data parallel (options.group, a lib/dist ProcessGroup): batchTokens stays the global tokens per
// step; rank r runs micro-batches r, r + W, r + 2W, ... of the step (the DataLoader's rank
// slicing), each with gradScale 1 / (all micro-batches), and the gradients are summed over the
// ranks once per step from the flat buffer. Rank 0's initial (or restored) weights and state are
// broadcast. Newton-Muon's statistics are summed with their counts on refresh steps. The matrix
// step is sharded by default (lib/dist/sharding.ts). The per-micro-batch losses and the val
// batches' losses are gathered and averaged in the single-process order. Rank 0 alone writes the
// run folder; a checkpoint resumes at any world size with the same global batch.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';

import { prepareDefaultCorpus } from '../data/corpus';
import { DataError, fsReason } from '../data/errors';
import { DataLoader } from '../data/loader';
import type { LoaderState } from '../data/loader';
import { ShardReader } from '../data/shard';
import { expandGlobs } from '../data/glob';
import { resolveDevice } from '../device';
import type { DeviceName } from '../device';
import { GPT2 } from '../gpt2/model';
import { WTE } from '../gpt2/config';
import { gpt2MatrixParams } from '../gpt2/matrix_params';
import type { ProcessGroup } from '../dist/process_group';
import { onRankZero } from '../dist/rank_zero';
import { planShards, ShardedMatrixStep } from '../dist/sharding';
import { copy, fill } from '../ops';
import { AdamW } from '../optim/adamw';
import { assertGradientsFinite } from '../optim/finite';
import type { MatrixOptimizer } from '../optim/matrix_optimizer';
import { Muon } from '../optim/muon';
import { NewtonMuon } from '../optim/newton_muon';
import { untracked } from '../scope';
import { empty, tensor, Tensor, zeros } from '../tensor';
import type { OptimizerState } from '../optim/state';
import {
  CheckpointError, CheckpointState, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, METRICS_FILE, MODEL_FILE, pruneCheckpoints,
  checkpointName, readCheckpointMetrics, readCheckpointState, readOptimizerStates, removeStaleCheckpointTemps, writeCheckpoint,
} from './checkpoint';
import { ConfigError, microBatches, TrainConfig, validateConfig } from './config';
import { lrMultiplier } from './schedule';

/** One line of metrics.jsonl. train_loss is null on the step-0 line (evaluation before training). */
export interface MetricPoint {
  step: number;
  train_loss: number | null;
  val_loss?: number;
  lr: number;
  tokens_per_s: number;
  elapsed_s: number;
}

export type TrainEvent =
  | { type: 'start'; config: TrainConfig; device: DeviceName; parameters: number; startStep: number; valTokens: number; trainTokens: number; microBatches: number;
    /** Data parallel: ranks, and whether the matrix step is sharded. */
    worldSize: number; sharded: boolean }
  | { type: 'step'; point: MetricPoint; etaS: number | null }
  | { type: 'checkpoint'; step: number; dir: string }
  | { type: 'target'; step: number; elapsedS: number; valLoss: number };

export interface TrainerOptions {
  config: TrainConfig;
  /** Run folder: config.json, metrics.jsonl, checkpoints/. Created; must not hold another run. */
  outDir: string;
  /** A checkpoint folder to continue from (its config must be `config`, up to steps / val / save settings). */
  resumeFrom?: string;
  onEvent?: (event: TrainEvent) => void;
  /** Newton-Muon warnings (default: console.warn). */
  onWarning?: (message: string) => void;
  /** Folder of the bundled corpus (default: $NM_CACHE_DIR or ~/.cache/newton-muon). */
  cacheDir?: string;
  /**
   * Write a checkpoint when run() reaches config.steps. Default true; false suits benchmarks
   * (a 124M checkpoint is ~1.5 GB). saveEvery and stop requests still write theirs.
   */
  finalCheckpoint?: boolean;
  /**
   * Data parallel: this rank's process group (lib/dist initProcessGroup). Every rank creates its
   * Trainer with the same config; only rank 0 reads resumeFrom / initWeights and writes outDir.
   */
  group?: ProcessGroup;
  /** Data parallel: shard the Muon / Newton-Muon step over the ranks (default true). */
  shardOptimizer?: boolean;
}

export interface TrainResult {
  outDir: string;
  /** Steps completed (fewer than config.steps when stopped early). */
  steps: number;
  /** True when run() stopped before config.steps (requestStop / stopAtStep). */
  stopped: boolean;
  finalTrainLoss: number | null;
  finalValLoss: number | null;
  initialValLoss: number | null;
  /** Training seconds (evaluation and checkpoints excluded). */
  elapsedS: number;
  tokens: number;
  target: { step: number; elapsedS: number } | null;
  checkpoint: string | null;
  metrics: MetricPoint[];
}

/** Resolved shard globs for a config (preparing the bundled corpus on first use). */
export function resolveData(config: TrainConfig, cacheDir?: string): { train: string; val: string } {
  if (config.data.kind === 'shards') return { train: config.data.train, val: config.data.val };
  const corpus = prepareDefaultCorpus({ tokenizer: config.data.tokenizer, cacheDir });
  if (corpus.vocabSize > config.model.vocabSize) {
    throw new DataError(`the bundled corpus (${corpus.tokenizer} tokenizer) needs vocab ${corpus.vocabSize}, the model has ${config.model.vocabSize}`);
  }
  return { train: corpus.trainGlob, val: corpus.valGlob };
}

/** 257 when the first 1M tokens of the first val shard are byte-level ids (<= 256), else 50257 (GPT-2). */
export function detectVocabSize(valGlob: string): number {
  const files = expandGlobs(valGlob);
  const reader = new ShardReader(files[0]);
  try {
    const tokens = reader.read(0, Math.min(reader.tokens, 1 << 20));
    let max = 0;
    for (let i = 0; i < tokens.length; i++) if (tokens[i] > max) max = tokens[i];
    return max <= 256 ? 257 : 50257;
  } finally {
    reader.close();
  }
}

function writeFileAtomic(file: string, text: string): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`);
  try {
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, file);
  } catch (error) {
    fs.rmSync(tmp, { force: true });
    throw new DataError(`cannot write '${file}': ${fsReason(error)}`);
  }
}

export class Trainer {
  readonly config: TrainConfig;
  readonly outDir: string;
  readonly device: DeviceName;
  readonly model: GPT2;
  private readonly matrixOpt: MatrixOptimizer | null;
  private readonly adam: AdamW;
  private readonly train: DataLoader;
  private readonly val: DataLoader;
  private readonly valBatches: number;
  private readonly onEvent: (event: TrainEvent) => void;
  private step = 0;
  private elapsedS = 0;
  private tokens = 0;
  private target: { step: number; elapsedS: number } | null = null;
  private metricsText = '';
  private readonly metrics: MetricPoint[] = [];
  private disposed = false;
  private stopRequested = false;
  private readonly finalCheckpoint: boolean;
  private readonly group: ProcessGroup | null;
  private readonly rank: number;
  private readonly world: number;
  private readonly sharded: ShardedMatrixStep | null;

  private constructor(config: TrainConfig, outDir: string, onEvent: (e: TrainEvent) => void, onWarning: ((m: string) => void) | undefined,
    data: { train: string; val: string }, finalCheckpoint: boolean, group: ProcessGroup | null, shard: boolean) {
    this.config = validateConfig(config);
    this.finalCheckpoint = finalCheckpoint;
    this.outDir = outDir;
    this.group = group;
    this.rank = group?.rank ?? 0;
    this.world = group?.worldSize ?? 1;
    // Only rank 0 reports progress; every rank keeps the metrics in memory.
    this.onEvent = this.rank === 0 ? onEvent : () => undefined;
    this.device = group?.device ?? resolveDevice(config.device, 'device');
    const c = config;
    if (group !== null) {
      if (config.device !== 'auto' && config.device !== group.device) {
        throw new ConfigError(`device is ${config.device} but the process group moves ${group.device} tensors`);
      }
      if (microBatches(c) % this.world !== 0) {
        throw new ConfigError(`batch size ${c.batchTokens} tokens is ${microBatches(c)} micro-batches of ${c.microBatch} x ${c.seqLen}, ` +
          `which do not split evenly over ${this.world} ranks (use a multiple of ${this.world * c.microBatch * c.seqLen} tokens)`);
      }
    }
    const slicing = { rank: this.rank, worldSize: this.world };
    this.train = new DataLoader({ files: data.train, batchSize: c.microBatch, seqLen: c.seqLen, ...slicing });
    try {
      this.val = new DataLoader({ files: data.val, batchSize: c.microBatch, seqLen: c.seqLen, ...slicing });
    } catch (error) {
      this.train.close();
      throw error;
    }
    // The val batches a single process would take: B*T chunks of the val shards, from the start.
    const chunks = this.val.shardTokens.reduce((sum, n) => sum + Math.floor((n - 1) / (c.microBatch * c.seqLen)), 0);
    this.valBatches = Math.max(1, Math.min(Math.floor(c.valTokens / (c.microBatch * c.seqLen)), chunks));
    try {
      this.model = new GPT2(c.model, { device: this.device, seed: c.seed, attention: c.attention });
    } catch (error) {
      this.train.close();
      this.val.close();
      throw error;
    }
    const params = this.model.stateDict();
    const grads = this.model.grads();
    const adamOptions = { betas: c.adamBetas, eps: c.adamEps, weightDecay: 0, checkFinite: false };
    let sharded: ShardedMatrixStep | null = null;
    if (c.optimizer === 'adamw') {
      this.matrixOpt = null;
      this.adam = new AdamW(Object.keys(params).map((name) => ({ name, param: params[name], grad: grads[name] })), { lr: c.lr, ...adamOptions });
    } else {
      const matrices = gpt2MatrixParams(this.model);
      const preconditioned = c.optimizer === 'newton-muon';
      const owners = group !== null && shard && this.world > 1 ? planShards(matrices, preconditioned, this.world) : null;
      const options = {
        lr: c.lr * c.matrixLrScale, momentum: c.momentum, nesterov: true, checkFinite: false,
        owns: owners === null ? undefined : (name: string) => owners.get(name) === this.rank,
      };
      const reduce = group !== null && this.world > 1 ? (tensors: Tensor[]) => { for (const t of tensors) group.allReduce(t, { op: 'sum' }); } : undefined;
      this.matrixOpt = preconditioned
        ? new NewtonMuon(matrices, { ...options, refreshEvery: c.refreshEvery, onWarning, allReduceStatistics: reduce })
        : new Muon(matrices, options);
      this.adam = new AdamW([{ name: WTE, param: params[WTE], grad: grads[WTE] }], { lr: c.lr, ...adamOptions });
      if (owners !== null) sharded = new ShardedMatrixStep(group!, this.matrixOpt, owners);
    }
    this.sharded = sharded;
  }

  /** Builds the run: data, model, optimizers; restores a checkpoint; creates the run folder. */
  static async create(options: TrainerOptions): Promise<Trainer> {
    const group = options.group ?? null;
    const data = await resolveDataOnce(options.config, options.cacheDir, group);
    const trainer = new Trainer(options.config, options.outDir, options.onEvent ?? (() => undefined), options.onWarning, data,
      options.finalCheckpoint ?? true, group, options.shardOptimizer ?? true);
    try {
      // Rank 0 reads the files and prepares the run folder; every rank then takes its outcome, so
      // a bad checkpoint or a taken folder fails every rank with the same message.
      const prepare = async (): Promise<void> => {
        if (options.resumeFrom !== undefined) await trainer.restore(options.resumeFrom);
        else if (trainer.config.initWeights !== null) await trainer.loadInitWeights(trainer.config.initWeights);
        trainer.prepareOutDir(options.resumeFrom !== undefined);
      };
      if (group === null) await prepare();
      else await onRankZero(group, prepare, { checkpoint: CheckpointError, data: DataError });
      if (group !== null && group.worldSize > 1) await trainer.broadcastState(options.resumeFrom !== undefined);
      return trainer;
    } catch (error) {
      trainer.dispose();
      throw error;
    }
  }

  /**
   * Data parallel: rank 0's weights, optimizer state and position to every rank (the weights even
   * for a fresh start: every rank must begin from the same bits).
   */
  private async broadcastState(resumed: boolean): Promise<void> {
    const group = this.group!;
    group.broadcast(this.model.flatBuffers().params, { root: 0 });
    if (resumed) {
      const roles = this.roles();
      for (const role of Object.keys(roles).sort()) {
        for (const t of Object.values(roles[role].stateDict().tensors)) group.broadcast(t as Tensor, { root: 0 });
      }
      const position = await group.broadcastObject(this.rank === 0 ? {
        step: this.step, elapsedS: this.elapsedS, tokens: this.tokens, target: this.target, loader: this.train.state(),
        steps: Object.fromEntries(Object.entries(roles).map(([role, opt]) => [role, opt.stateDict().step])), metrics: this.metrics,
      } : undefined, 0);
      if (this.rank !== 0) {
        this.step = position.step;
        this.elapsedS = position.elapsedS;
        this.tokens = position.tokens;
        this.target = position.target;
        this.train.restore(position.loader);
        this.metrics.push(...position.metrics);
        // The tensors already hold rank 0's state (broadcast above); this sets the step counts.
        for (const [role, opt] of Object.entries(roles)) {
          const own = opt.stateDict();
          await opt.loadStateDict({ kind: own.kind, step: position.steps[role], tensors: own.tensors });
        }
      }
    }
    await group.synchronize();
  }

  /** The starting weights from a safetensors file (config.initWeights), checked name by name. */
  private async loadInitWeights(file: string): Promise<void> {
    if (!fs.existsSync(file)) throw new DataError(`init weights '${file}' do not exist`);
    try {
      await this.model.loadSafetensors(file);
    } catch (error) {
      throw new DataError(`init weights: ${(error as Error).message.replace(/^GPT2\.loadSafetensors: /, '')}`);
    }
  }

  private async restore(dir: string): Promise<void> {
    const state = readCheckpointState(dir);
    const optimizerStates = readOptimizerStates(dir, state);
    try {
      await this.model.loadSafetensors(path.join(dir, MODEL_FILE));
    } catch (error) {
      throw new CheckpointError(`checkpoint '${dir}': ${(error as Error).message}`);
    }
    const roles = this.roles();
    for (const role of Object.keys(optimizerStates)) {
      if (!(role in roles)) throw new CheckpointError(`checkpoint '${dir}' holds '${role}' optimizer state this run does not have`);
    }
    for (const [role, opt] of Object.entries(roles)) {
      const saved = optimizerStates[role];
      if (saved === undefined) throw new CheckpointError(`checkpoint '${dir}' has no '${role}' optimizer state`);
      try {
        await opt.loadStateDict(saved);
      } catch (error) {
        throw new CheckpointError(`checkpoint '${dir}': ${role} optimizer: ${(error as Error).message}`);
      }
    }
    this.train.restore(state.loader);
    this.step = state.step;
    this.elapsedS = state.elapsedS;
    this.tokens = state.tokens;
    this.target = state.target;
    this.metricsText = readCheckpointMetrics(dir);
    for (const line of this.metricsText.split('\n')) if (line.trim() !== '') this.metrics.push(JSON.parse(line) as MetricPoint);
  }

  private roles(): Record<string, { stateDict(): OptimizerState; loadStateDict(s: OptimizerState): Promise<void> }> {
    return this.matrixOpt === null ? { adamw: this.adam } : { matrix: this.matrixOpt, adamw: this.adam };
  }

  private prepareOutDir(resuming: boolean): void {
    const out = this.outDir;
    try {
      fs.mkdirSync(out, { recursive: true });
    } catch (error) {
      throw new DataError(`cannot create the output folder '${out}': ${fsReason(error)}`);
    }
    const metricsFile = path.join(out, METRICS_FILE);
    if (!resuming && fs.existsSync(metricsFile)) {
      throw new DataError(`the output folder '${out}' already holds a run (${METRICS_FILE}); choose another --out or --resume it`);
    }
    removeStaleCheckpointTemps(path.join(out, 'checkpoints'));
    writeFileAtomic(path.join(out, 'config.json'), `${JSON.stringify(this.config, null, 2)}\n`);
    writeFileAtomic(metricsFile, this.metricsText);
  }

  get completedSteps(): number {
    return this.step;
  }

  /**
   * Newton-Muon preconditioner factorisations that failed so far (those matrices used the
   * identity); 0 for Muon and AdamW. Current after run() returns (it waits for the reports).
   */
  get failedRefreshes(): number {
    return this.matrixOpt?.failedRefreshes ?? 0;
  }

  get valTokens(): number {
    return this.valBatches * this.config.microBatch * this.config.seqLen;
  }

  /**
   * Mean fp32 loss over the first valTokens tokens of the val data (forward only). Data parallel:
   * rank r evaluates val batches r, r + W, ...; the per-batch sums are gathered and averaged in
   * batch order, so every world size gives the single-process value.
   */
  async evaluate(): Promise<number> {
    const c = this.config;
    const W = this.world;
    const per = Math.ceil(this.valBatches / W);
    const mine = Math.max(0, Math.ceil((this.valBatches - this.rank) / W));
    this.val.reset();
    const sums = new Float32Array(per);
    for (let k = 0; k < mine; k++) {
      const { inputs, targets } = this.val.next();
      sums[k] = await this.model.lossSum(inputs, targets, c.microBatch, c.seqLen);
    }
    const all = W === 1 ? sums : await this.gatherHost(sums);
    let total = 0;
    for (let g = 0; g < this.valBatches; g++) total += all[gatheredIndex(g, W, per)] / (c.microBatch * c.seqLen);
    return total / this.valBatches;
  }

  /** Every rank's values (equal lengths), concatenated in rank order; checks the group. */
  private async gatherHost(values: Float32Array): Promise<Float32Array> {
    const mine = untracked(() => tensor(values, [values.length], { device: this.device }));
    const all = untracked(() => empty([values.length * this.world], { device: this.device }));
    try {
      this.group!.allGather(all, mine);
      return await this.readChecked(all);
    } finally {
      mine.dispose();
      all.dispose();
    }
  }

  /** t's values once the stream reached them; throws the group's failure first, if any. */
  private async readChecked(t: Tensor): Promise<Float32Array> {
    const values = (await t.read()) as Float32Array;
    if (this.group !== null) await this.group.check();
    return values;
  }

  private lrAt(step: number): number {
    const c = this.config;
    return c.lr * lrMultiplier(step, { steps: c.steps, warmupSteps: c.warmupSteps, warmdownSteps: c.warmdownSteps });
  }

  private log(point: MetricPoint, etaS: number | null): void {
    const line = `${JSON.stringify(point)}\n`;
    this.metricsText += line;
    this.metrics.push(point);
    if (this.rank === 0) {
      try {
        fs.appendFileSync(path.join(this.outDir, METRICS_FILE), line);
      } catch (error) {
        throw new DataError(`cannot write '${path.join(this.outDir, METRICS_FILE)}': ${fsReason(error)}`);
      }
    }
    this.onEvent({ type: 'step', point, etaS });
    if (point.val_loss !== undefined && this.config.targetLoss !== null && this.target === null && point.val_loss <= this.config.targetLoss) {
      this.target = { step: point.step, elapsedS: point.elapsed_s };
      this.onEvent({ type: 'target', step: point.step, elapsedS: point.elapsed_s, valLoss: point.val_loss });
    }
  }

  /**
   * Asks run() to stop after the step in progress: it writes a checkpoint there and returns
   * (what Ctrl-C does in the CLI; --resume continues exactly).
   */
  requestStop(): void {
    this.stopRequested = true;
  }

  /** Runs from the current step to config.steps (or to `stopAtStep`, checkpointing there). */
  async run(options: { stopAtStep?: number } = {}): Promise<TrainResult> {
    const c = this.config;
    const globalAccum = microBatches(c);
    const accum = globalAccum / this.world; // this rank's micro-batches per step
    const W = this.world;
    const B = c.microBatch;
    const T = c.seqLen;
    this.onEvent({
      type: 'start', config: c, device: this.device, parameters: this.model.parameterCount, startStep: this.step,
      valTokens: this.valTokens, trainTokens: this.train.totalTokens, microBatches: globalAccum, worldSize: W, sharded: this.sharded !== null,
    });
    if (this.step === 0) {
      this.log({ step: 0, train_loss: null, val_loss: await this.evaluate(), lr: this.lrAt(0), tokens_per_s: 0, elapsed_s: 0 }, null);
    }
    const grads = Object.entries(this.model.grads()).map(([name, grad]) => ({ name, grad }));
    const hook = (name: string, x: Tensor) => { this.matrixOpt!.observeInput(name, x); };
    let lastCheckpoint: string | null = null;
    let rate: number | null = null;
    const startStep = this.step;
    while (this.step < c.steps) {
      const t0 = process.hrtime.bigint();
      const lr = this.lrAt(this.step);
      this.model.zeroGrad();
      const observe = this.matrixOpt?.collectsStatistics() ? hook : undefined;
      // The micro-batch losses (and, last, this rank's stop request) collect on the device and are
      // read once per step: no synchronisation between micro-batches, so the host keeps the
      // device queue full. Data parallel: they are gathered from every rank in the same read.
      const control = untracked(() => zeros([accum + 1], { device: this.device }));
      const gathered = W > 1 ? untracked(() => empty([W * (accum + 1)], { device: this.device })) : control;
      let loss: number;
      let stopAgreed: boolean;
      try {
        for (let k = 0; k < accum; k++) {
          const { inputs, targets } = this.train.next();
          const micro = this.model.forwardBackwardLazy(inputs, targets, B, T, { gradScale: 1 / globalAccum, observeInputs: observe });
          const slot = control.slice(k, k + 1);
          copy(slot, micro);
          slot.dispose();
          micro.dispose();
        }
        if (W > 1) this.group!.allReduce(this.model.flatBuffers().grads, { op: 'sum' });
        if (c.checkFinite) {
          try {
            await assertGradientsFinite(`step ${this.step + 1}`, grads);
          } catch (error) {
            const losses = await this.readChecked(control);
            throw new Error(`${(error as Error).message} (this rank's micro-batch losses ${Array.from(losses.subarray(0, accum)).join(', ')}); stopping`);
          }
        }
        this.adam.lr = lr;
        if (this.matrixOpt !== null) {
          this.matrixOpt.lr = lr * c.matrixLrScale;
          await this.matrixOpt.step();
          this.sharded?.gatherWeights();
        }
        await this.adam.step();
        if (this.stopRequested) {
          const flag = control.slice(accum, accum + 1);
          fill(flag, 1);
          flag.dispose();
        }
        if (W > 1) this.group!.allGather(gathered, control);
        // The read is queued behind the updates (stream order): when it returns, the whole step
        // has run, so the step time below covers forward, backward, both optimizers and the
        // communication.
        const values = await this.readChecked(gathered);
        let total = 0;
        for (let g = 0; g < globalAccum; g++) total += values[gatheredIndex(g, W, accum + 1)];
        loss = total / globalAccum;
        stopAgreed = Array.from({ length: W }, (_, r) => values[r * (accum + 1) + accum]).some((v) => v !== 0);
      } finally {
        control.dispose();
        if (gathered !== control) gathered.dispose();
      }
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      this.step++;
      this.elapsedS += seconds;
      this.tokens += c.batchTokens;
      const stepRate = c.batchTokens / seconds;
      rate = rate === null || this.step - startStep <= 2 ? stepRate : 0.9 * rate + 0.1 * stepRate;
      const point: MetricPoint = {
        step: this.step, train_loss: loss, lr, tokens_per_s: Math.round(stepRate), elapsed_s: Math.round(this.elapsedS * 1000) / 1000,
      };
      if (this.step % c.valEvery === 0 || this.step === c.steps) point.val_loss = await this.evaluate();
      this.log(point, ((c.steps - this.step) * c.batchTokens) / rate);
      const stop = stopAgreed || this.step === options.stopAtStep;
      const final = this.step === c.steps && this.finalCheckpoint;
      if ((c.saveEvery > 0 && this.step % c.saveEvery === 0) || final || stop) lastCheckpoint = await this.checkpoint();
      if (stop) break;
    }
    if (this.matrixOpt !== null) await this.matrixOpt.flushReports();
    const lastVal = [...this.metrics].reverse().find((m) => m.val_loss !== undefined);
    const lastTrain = [...this.metrics].reverse().find((m) => m.train_loss !== null);
    return {
      outDir: this.outDir,
      steps: this.step,
      stopped: this.step < c.steps,
      finalTrainLoss: lastTrain?.train_loss ?? null,
      finalValLoss: lastVal?.val_loss ?? null,
      initialValLoss: this.metrics.find((m) => m.step === 0)?.val_loss ?? null,
      elapsedS: this.elapsedS,
      tokens: this.tokens,
      target: this.target,
      checkpoint: lastCheckpoint,
      metrics: [...this.metrics],
    };
  }

  /**
   * Writes a checkpoint of the current step (and removes older ones of this run). Data parallel:
   * every rank calls it (a sharded optimizer's state is gathered first); rank 0 writes, and every
   * rank returns the path.
   */
  async checkpoint(): Promise<string> {
    await this.sharded?.gatherState();
    const dir = path.join(this.outDir, 'checkpoints');
    if (this.rank !== 0) return path.join(dir, checkpointName(this.step));
    try {
      fs.mkdirSync(dir, { recursive: true });
    } catch (error) {
      throw new CheckpointError(`cannot create '${dir}': ${fsReason(error)}`);
    }
    const roles = this.roles();
    const optimizers: Record<string, OptimizerState> = {};
    const kinds: Record<string, { kind: string; step: number }> = {};
    for (const [role, opt] of Object.entries(roles)) {
      optimizers[role] = opt.stateDict();
      kinds[role] = { kind: optimizers[role].kind, step: optimizers[role].step };
    }
    const loader: LoaderState = this.train.state();
    const state: CheckpointState = {
      format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION, step: this.step, config: this.config, optimizers: kinds, loader,
      elapsedS: this.elapsedS, tokens: this.tokens, target: this.target,
    };
    const written = await writeCheckpoint(dir, { state, saveModel: (file) => this.model.saveSafetensors(file), optimizers, metrics: this.metricsText });
    pruneCheckpoints(dir, written);
    this.onEvent({ type: 'checkpoint', step: this.step, dir: written });
    return written;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.train.close();
    this.val.close();
    this.sharded?.dispose();
    this.matrixOpt?.dispose();
    this.adam.dispose();
    this.model.dispose();
  }
}

/**
 * Where batch g of a step (or of the val set) lands after an all-gather: the DataLoader's rank
 * slicing gives batch g to rank g % world as its (g / world)-th, and each rank's values fill a
 * slot of `slot` entries. Summing in g order reproduces the single-process sum bit for bit.
 */
function gatheredIndex(g: number, world: number, slot: number): number {
  return (g % world) * slot + Math.floor(g / world);
}

/**
 * resolveData(), ordered so that ranks sharing a machine never prepare the bundled corpus at the
 * same time: local rank 0 of each machine first, then the others (which find it ready).
 */
async function resolveDataOnce(config: TrainConfig, cacheDir: string | undefined, group: ProcessGroup | null): Promise<{ train: string; val: string }> {
  if (group === null || group.worldSize === 1 || config.data.kind === 'shards') return resolveData(config, cacheDir);
  let data: { train: string; val: string } | null = null;
  let failure: Error | null = null;
  const attempt = (): void => {
    try {
      data = resolveData(config, cacheDir);
    } catch (error) {
      failure = error as Error;
    }
  };
  if (group.localRank === 0) attempt();
  await group.storeBarrier('bundled-corpus');
  if (group.localRank !== 0) attempt();
  if (failure !== null) throw failure;
  return data!;
}
