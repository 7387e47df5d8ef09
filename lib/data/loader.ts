// The training data loader of modded-nanogpt / llm.c over token shards. Each next() cuts B*T+1
// contiguous tokens: inputs are the first B*T, targets the same shifted by one. The position then
// advances by B*T*worldSize (in data parallel, rank r reads at position + r*B*T, so the ranks
// together consume one contiguous stretch per step). When the rest of a shard cannot hold the next
// step, the loader moves to the start of the next shard; after the last shard it wraps around to
// the first and counts an epoch. state()/restore() make a resumed run read exactly what an
// uninterrupted one would have.
import * as path from 'path';

import { DataError } from './errors';
import { expandGlobs } from './glob';
import { DEFAULT_WINDOW_TOKENS, readShardHeader, ShardReader } from './shard';

export interface DataLoaderOptions {
  /** A shard path, a glob (`*`, `?` in the file name) or a list of them; globs expand sorted. */
  files: string | readonly string[];
  /** B: sequences per micro-batch. */
  batchSize: number;
  /** T: tokens per sequence. */
  seqLen: number;
  /** This process's rank in data parallel (default 0). */
  rank?: number;
  /** Number of data-parallel processes (default 1). */
  worldSize?: number;
  /** Tokens the shard reader keeps in memory (default 1M, or one batch in data parallel). */
  windowTokens?: number;
}

export interface Batch {
  /** B*T token ids, row-major [B, T]. */
  inputs: Int32Array;
  /** The tokens that follow each input token: inputs shifted left by one, [B, T]. */
  targets: Int32Array;
}

/** Where the loader stands; plain JSON. `shardCount` and `shardFile` let restore() check the data. */
export interface LoaderState {
  /** Index of the current shard in `files`. */
  shard: number;
  /** Token offset in that shard where the next step starts. */
  position: number;
  /** Completed passes over all shards. */
  epoch: number;
  shardCount?: number;
  shardFile?: string;
}

function checkPositiveInteger(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new DataError(`${name} must be a positive integer (got ${JSON.stringify(value) ?? String(value)})`);
  }
  return value;
}

export class DataLoader {
  readonly files: readonly string[];
  /** Token count of each shard, from its header. */
  readonly shardTokens: readonly number[];
  readonly batchSize: number;
  readonly seqLen: number;
  readonly rank: number;
  readonly worldSize: number;
  /** Tokens one next() returns as inputs: B*T. */
  readonly batchTokens: number;
  /** Tokens the position advances per step: B*T*worldSize. */
  readonly stepTokens: number;
  private readonly windowTokens: number;
  private shard = 0;
  private position = 0;
  private epoch = 0;
  private reader: ShardReader | null = null;

  constructor(options: DataLoaderOptions) {
    this.batchSize = checkPositiveInteger('batch size (B)', options.batchSize);
    this.seqLen = checkPositiveInteger('sequence length (T)', options.seqLen);
    this.worldSize = checkPositiveInteger('worldSize', options.worldSize ?? 1);
    const rank = options.rank ?? 0;
    if (typeof rank !== 'number' || !Number.isSafeInteger(rank) || rank < 0 || rank >= this.worldSize) {
      throw new DataError(`rank must be an integer in [0, ${this.worldSize}) for worldSize ${this.worldSize} (got ${rank})`);
    }
    this.rank = rank;
    this.batchTokens = this.batchSize * this.seqLen;
    this.stepTokens = this.batchTokens * this.worldSize;
    if (!Number.isSafeInteger(this.stepTokens)) throw new DataError(`B*T*worldSize = ${this.stepTokens} is too large`);
    this.windowTokens = options.windowTokens ??
      (this.worldSize === 1 ? Math.max(DEFAULT_WINDOW_TOKENS, this.batchTokens + 1) : this.batchTokens + 1);

    this.files = expandGlobs(options.files);
    const need = this.stepTokens + 1;
    this.shardTokens = this.files.map((file) => {
      const { tokens } = readShardHeader(file);
      if (tokens < need) {
        throw new DataError(`${path.basename(file)}: ${tokens} tokens, too few for one batch ` +
          `(B*T${this.worldSize > 1 ? '*worldSize' : ''}+1 = ${need} tokens with B=${this.batchSize}, T=${this.seqLen}` +
          `${this.worldSize > 1 ? `, worldSize=${this.worldSize}` : ''})`);
      }
      return tokens;
    });
  }

  /** Tokens in all shards together. */
  get totalTokens(): number {
    return this.shardTokens.reduce((a, b) => a + b, 0);
  }

  /** Steps in one pass over all shards (the tail of each shard that cannot hold a step is skipped). */
  get batchesPerEpoch(): number {
    return this.shardTokens.reduce((sum, n) => sum + Math.floor((n - 1) / this.stepTokens), 0);
  }

  /** The next micro-batch of this rank. */
  next(): Batch {
    const reader = this.currentReader();
    const tokens = reader.read(this.position + this.rank * this.batchTokens, this.batchTokens + 1);
    const n = this.batchTokens;
    const inputs = new Int32Array(n);
    const targets = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      inputs[i] = tokens[i];
      targets[i] = tokens[i + 1];
    }
    this.position += this.stepTokens;
    // Move on now, so state() always names a place where the next step fits.
    if (this.position + this.stepTokens + 1 > this.shardTokens[this.shard]) this.advanceShard();
    return { inputs, targets };
  }

  private advanceShard(): void {
    this.closeReader();
    this.shard += 1;
    if (this.shard === this.files.length) {
      this.shard = 0;
      this.epoch += 1;
    }
    this.position = 0;
  }

  private currentReader(): ShardReader {
    if (this.reader === null) {
      const reader = new ShardReader(this.files[this.shard], { windowTokens: this.windowTokens });
      if (reader.tokens !== this.shardTokens[this.shard]) {
        reader.close();
        throw new DataError(`${path.basename(this.files[this.shard])}: now holds ${reader.tokens} tokens, ` +
          `expected ${this.shardTokens[this.shard]} (the shard changed while the loader was using it)`);
      }
      this.reader = reader;
    }
    return this.reader;
  }

  state(): LoaderState {
    return {
      shard: this.shard,
      position: this.position,
      epoch: this.epoch,
      shardCount: this.files.length,
      shardFile: path.basename(this.files[this.shard]),
    };
  }

  /** Resumes at a position from state(); throws a DataError if it does not fit these shards. */
  restore(state: LoaderState): void {
    if (typeof state !== 'object' || state === null) {
      throw new DataError(`loader state must be an object { shard, position, epoch } (got ${JSON.stringify(state)})`);
    }
    const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
    for (const key of ['shard', 'position', 'epoch'] as const) {
      if (!isCount(state[key])) {
        throw new DataError(`loader state: ${key} must be an integer >= 0 (got ${JSON.stringify(state[key])})`);
      }
    }
    if (state.shardCount !== undefined && state.shardCount !== this.files.length) {
      throw new DataError(`loader state was saved over ${state.shardCount} shards, but ${this.files.length} are given`);
    }
    if (state.shard >= this.files.length) {
      throw new DataError(`loader state: shard ${state.shard} does not exist (${this.files.length} shards given)`);
    }
    const name = path.basename(this.files[state.shard]);
    if (state.shardFile !== undefined && state.shardFile !== name) {
      throw new DataError(`loader state: shard ${state.shard} was '${state.shardFile}', but it is '${name}' now`);
    }
    const tokens = this.shardTokens[state.shard];
    if (state.position + this.stepTokens + 1 > tokens) {
      throw new DataError(`loader state: position ${state.position} in ${name} leaves no room for a step of ` +
        `${this.stepTokens + 1} tokens (the shard holds ${tokens})`);
    }
    if (state.shard !== this.shard) this.closeReader();
    this.shard = state.shard;
    this.position = state.position;
    this.epoch = state.epoch;
  }

  /** Back to the first token of the first shard, epoch 0 (e.g. before each evaluation). */
  reset(): void {
    this.restore({ shard: 0, position: 0, epoch: 0 });
  }

  private closeReader(): void {
    this.reader?.close();
    this.reader = null;
  }

  close(): void {
    this.closeReader();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
