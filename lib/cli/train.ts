#!/usr/bin/env node
// newton-muon-train: trains the GPT-2 of lib/gpt2 with Newton-Muon, Muon or AdamW. With no
// options it runs the default job (preset `tiny`: a small byte-level model on the bundled
// Moby-Dick corpus, a few minutes on 2 CPU cores); `--preset speedrun-124m` is the GPT-2 124M
// speedrun record #4 configuration on FineWeb shards. main(argv, io) resolves to the exit status
// and writes only through io, so tests drive it without spawning a process.
import * as os from 'os';
import * as path from 'path';

import { CliIO, parseChoice, parseOrUsageExit, parseSuffixed, UsageError, walkArgs } from './common';
import { DataError } from '../data/errors';
import { devices } from '../device';
import { ATTENTION_ALGOS } from '../gpt2/ops';
import type { AttentionAlgo } from '../gpt2/ops';
import { exitWithLauncher, launchLocal } from '../dist/launcher';
import { launchEnvironment } from '../dist/env';
import type { LaunchInfo } from '../dist/env';
import { DistError } from '../dist/errors';
import { DEFAULT_TIMEOUT_MS, initProcessGroup } from '../dist/process_group';
import { onRankZero } from '../dist/rank_zero';
import type { ProcessGroup } from '../dist/process_group';
import { CheckpointError, findCheckpoint, readCheckpointState, removePartialCheckpoints } from '../train/checkpoint';
import { ConfigError, OPTIMIZER_NAMES, presetConfig, PRESET_NAMES, validateConfig } from '../train/config';
import type { OptimizerName, PresetName, TrainConfig } from '../train/config';
import { writeCompareReport } from '../train/report';
import type { CompareRun } from '../train/report';
import { detectVocabSize, Trainer } from '../train/trainer';
import type { TrainEvent, TrainResult } from '../train/trainer';

const DEVICES = ['cpu', 'cuda', 'auto'] as const;

const USAGE = `Usage: newton-muon-train [options]

Trains a GPT-2 (no biases, rotary, RMSNorm, tied embedding) with Newton-Muon (default), Muon or
AdamW, writing <out>/config.json, <out>/metrics.jsonl (one JSON object per step: step,
train_loss, val_loss when evaluated, lr, tokens_per_s, elapsed_s) and checkpoints.
With no options: the default job, preset 'tiny' (a 4-layer, 128-wide byte-level model on the
bundled Moby-Dick corpus, ~2-3 minutes on 2 CPU cores) on the best available device.

Options:
  --preset tiny|speedrun-124m   configuration to start from (default tiny). speedrun-124m: GPT-2
                                124M, 524,288 tokens/step as micro-batches of 64 x 1024, 6200 steps,
                                warmdown over the last 1800, val every 125 steps on 10,485,760
                                tokens; needs --data and --val-data (FineWeb shards)
  --optimizer newton-muon|muon|adamw
                                matrices of the blocks: Newton-Muon or Muon at 0.1 x lr, with AdamW
                                (betas 0.9, 0.95) on the tied embedding at lr; adamw: AdamW on all
  --data <glob>                 train token shards (.bin, see newton-muon-data); quote the glob
  --val-data <glob>             validation token shards
  --steps <n>                   optimizer steps (the warmdown is scaled with them unless --warmdown)
  --batch-size <tokens>         TOKENS per optimizer step, a multiple of micro-batch x seq-len;
                                the rest is gradient accumulation (e.g. 524288;
                                k, M = 1e3, 1e6)
  --micro-batch <sequences>     SEQUENCES per forward/backward pass
  --seq-len <tokens>            tokens per sequence
  --lr <x>                      base learning rate (defaults: speedrun 0.0036 Muon, 0.0040 Newton-Muon)
  --warmup <steps>              linear warmup steps (default 0)
  --warmdown <steps>            steps of the final linear decay to 0
  --device cpu|cuda|auto        where to train (default auto: cuda when available)
  --seed <n>                    initialisation seed (default 0); nothing else is random
  --init <file.safetensors>     start from these weights (PyTorch names) instead of the seeded init
  --attention <algo>            auto|naive|flash|flash-bf16: the attention kernel (CUDA; default auto)
  --val-every <steps>           evaluate every n steps (and at step 0 and at the end)
  --val-tokens <n>              evaluate on the first n val tokens
  --vocab-size <n>              model vocabulary (default: 257 for byte-level data, else 50257)
  --target-loss <x>             report the first step (and time) the val loss reaches x
  --out <dir>                   run folder (default runs/<preset>-<time>); must not hold a run
  --save-every <steps>          also checkpoint every n steps (always at the end); the newest is kept
  --resume <dir>                continue from a checkpoint (or a run folder's latest one); the
                                options default to the checkpoint's; steps and val/save settings
                                may change, the rest must match
  --compare                     train Muon and Newton-Muon on identical data and seeds into
                                <out>/muon and <out>/newton-muon and write <out>/report.html
  --nproc-per-node <n>          data parallel on this machine: start n ranks (rank r on GPU r with
                                --device cuda, Gloo over the CPU otherwise); --batch-size stays the
                                global tokens per step. Under torchrun --no-python, srun or mpiexec
                                leave it out: their environment is read (docs/DISTRIBUTED.md)
  --dist-timeout <seconds>      data parallel: the rendezvous or a collective fails after this long
                                without progress, naming the rank at fault (default 600)
  --no-shard-optimizer          data parallel: every rank runs the whole Muon / Newton-Muon step
                                (default: each rank its share of the matrices, then an all-gather)
  -h, --help                    show this text
  -v, --version                 show the package version

Examples:
  newton-muon-train                                   # the default job
  newton-muon-train --compare                         # Muon vs Newton-Muon, report.html
  newton-muon-train --optimizer muon --steps 200 --out runs/muon
  newton-muon-train --resume runs/muon --steps 300    # continue (and extend) a run
  newton-muon-data --input 'texts/*.txt' --out data/mine
  newton-muon-train --data 'data/mine/data_train_*.bin' --val-data 'data/mine/data_val_*.bin'
  newton-muon-train --preset speedrun-124m --device cuda \\
    --data 'fineweb10B/fineweb_train_*.bin' --val-data 'fineweb10B/fineweb_val_*.bin'
  newton-muon-train --nproc-per-node 8 --preset speedrun-124m --device cuda --data ... --val-data ...
  torchrun --nproc-per-node 8 --no-python newton-muon-train --preset speedrun-124m --device cuda ...
`;

/** What main() writes to; process.stdout / process.stderr by default. */
export interface TrainCliIO extends CliIO {
  /** Folder of the bundled corpus (default $NM_CACHE_DIR or ~/.cache/newton-muon). */
  cacheDir?: string;
  /** Stop gracefully (checkpoint, then exit) on SIGINT. The bin sets it. */
  handleSignals?: boolean;
}

/** Options given on the command line (only those given). */
export interface TrainArgs {
  help: boolean;
  version: boolean;
  compare: boolean;
  preset?: PresetName;
  optimizer?: OptimizerName;
  data?: string;
  valData?: string;
  steps?: number;
  batchSize?: number;
  microBatch?: number;
  seqLen?: number;
  lr?: number;
  warmup?: number;
  warmdown?: number;
  device?: 'cpu' | 'cuda' | 'auto';
  seed?: number;
  valEvery?: number;
  valTokens?: number;
  vocabSize?: number;
  targetLoss?: number;
  out?: string;
  saveEvery?: number;
  resume?: string;
  init?: string;
  attention?: AttentionAlgo;
  nprocPerNode?: number;
  distTimeout?: number;
  noShardOptimizer?: boolean;
}

export { UsageError };

/** A whole number: 524288, 5e5, 512k (k = 1000). */
function parseInteger(option: string, text: string, min: number): number {
  const value = parseSuffixed(text);
  if (!Number.isSafeInteger(value) || value < min) {
    throw new UsageError(`${option} must be a whole number >= ${min} (got '${text}')`);
  }
  return value;
}

function parsePositive(option: string, text: string): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || value <= 0) throw new UsageError(`${option} must be a number > 0 (got '${text}')`);
  return value;
}

export function parseArgs(argv: readonly string[]): TrainArgs {
  const args: TrainArgs = { help: false, version: false, compare: false };
  walkArgs(argv, (flag, value, raw) => {
    switch (flag) {
      case '-h': case '--help': args.help = true; break;
      case '-v': case '--version': args.version = true; break;
      case '--compare': args.compare = true; break;
      case '--preset': args.preset = parseChoice(flag, value(), PRESET_NAMES, PRESET_NAMES.join(' or ')); break;
      case '--optimizer': args.optimizer = parseChoice(flag, value(), OPTIMIZER_NAMES, OPTIMIZER_NAMES.join(', ')); break;
      case '--device': args.device = parseChoice(flag, value(), DEVICES, 'cpu, cuda or auto'); break;
      case '--data': args.data = value(); break;
      case '--val-data': args.valData = value(); break;
      case '--out': case '-o': args.out = value(); break;
      case '--resume': args.resume = value(); break;
      case '--init': args.init = value(); break;
      case '--attention': args.attention = parseChoice(flag, value(), ATTENTION_ALGOS, ATTENTION_ALGOS.join(', ')); break;
      case '--steps': args.steps = parseInteger('--steps', value(), 1); break;
      case '--batch-size': args.batchSize = parseInteger('--batch-size', value(), 1); break;
      case '--micro-batch': args.microBatch = parseInteger('--micro-batch', value(), 1); break;
      case '--seq-len': args.seqLen = parseInteger('--seq-len', value(), 1); break;
      case '--warmup': args.warmup = parseInteger('--warmup', value(), 0); break;
      case '--warmdown': args.warmdown = parseInteger('--warmdown', value(), 0); break;
      case '--seed': args.seed = parseInteger('--seed', value(), 0); break;
      case '--val-every': args.valEvery = parseInteger('--val-every', value(), 1); break;
      case '--val-tokens': args.valTokens = parseInteger('--val-tokens', value(), 1); break;
      case '--vocab-size': args.vocabSize = parseInteger('--vocab-size', value(), 2); break;
      case '--save-every': args.saveEvery = parseInteger('--save-every', value(), 0); break;
      case '--lr': args.lr = parsePositive('--lr', value()); break;
      case '--target-loss': args.targetLoss = parsePositive('--target-loss', value()); break;
      case '--nproc-per-node': args.nprocPerNode = parseInteger('--nproc-per-node', value(), 1); break;
      case '--dist-timeout': args.distTimeout = parsePositive('--dist-timeout', value()); break;
      case '--no-shard-optimizer': args.noShardOptimizer = true; break;
      default:
        throw new UsageError(raw.startsWith('-') ? `unknown option '${raw}'` : `unexpected argument '${raw}'`);
    }
  });
  if (args.help || args.version) return args;
  if ((args.data === undefined) !== (args.valData === undefined)) throw new UsageError('give both --data and --val-data (train and validation shards)');
  if (args.compare && args.resume !== undefined) throw new UsageError('--compare cannot be combined with --resume');
  if (args.init !== undefined && args.resume !== undefined) throw new UsageError('--init starts a new run; a resumed run continues from its checkpoint\'s weights');
  if (args.compare && args.optimizer !== undefined) throw new UsageError('--compare runs both Muon and Newton-Muon; leave out --optimizer');
  return args;
}

/** A fresh configuration: the preset, then the options given. */
export function buildConfig(args: TrainArgs, optimizer?: OptimizerName): TrainConfig {
  const preset = args.preset ?? 'tiny';
  const base = presetConfig(preset, optimizer ?? args.optimizer ?? 'newton-muon');
  const c: TrainConfig = { ...base, model: { ...base.model } };
  if (args.data !== undefined && args.valData !== undefined) {
    c.data = { kind: 'shards', train: args.data, val: args.valData };
    if (args.vocabSize === undefined && preset === 'tiny') c.model.vocabSize = detectVocabSize(args.valData);
  }
  if (args.vocabSize !== undefined) c.model.vocabSize = args.vocabSize;
  if (args.steps !== undefined) {
    c.steps = args.steps;
    if (args.warmdown === undefined) c.warmdownSteps = Math.round((base.warmdownSteps * args.steps) / base.steps);
  }
  if (args.warmdown !== undefined) c.warmdownSteps = args.warmdown;
  if (args.warmup !== undefined) c.warmupSteps = args.warmup;
  else c.warmupSteps = Math.min(c.warmupSteps, Math.max(0, c.steps - c.warmdownSteps));
  if (args.seqLen !== undefined) {
    c.seqLen = args.seqLen;
    c.model.maxSeqLen = Math.max(c.model.maxSeqLen, args.seqLen);
  }
  if (args.microBatch !== undefined) c.microBatch = args.microBatch;
  if (args.batchSize !== undefined) c.batchTokens = args.batchSize;
  else if (args.microBatch !== undefined || args.seqLen !== undefined) {
    // Keep the preset's number of micro-batches per step.
    c.batchTokens = (base.batchTokens / (base.microBatch * base.seqLen)) * c.microBatch * c.seqLen;
  }
  if (args.lr !== undefined) c.lr = args.lr;
  if (args.device !== undefined) c.device = args.device;
  if (args.seed !== undefined) c.seed = args.seed;
  if (args.valEvery !== undefined) c.valEvery = args.valEvery;
  if (args.valTokens !== undefined) c.valTokens = args.valTokens;
  if (args.saveEvery !== undefined) c.saveEvery = args.saveEvery;
  if (args.targetLoss !== undefined) c.targetLoss = args.targetLoss;
  if (args.init !== undefined) c.initWeights = args.init;
  if (args.attention !== undefined) c.attention = args.attention;
  return validateConfig(c);
}

/**
 * The configuration to resume with: the checkpoint's, with steps, val/save settings, device,
 * target and data paths taken from the options; any other option must agree with it.
 */
export function resumeConfig(saved: TrainConfig, args: TrainArgs, where: string): TrainConfig {
  // initWeights: absent in configs written before it existed; it only matters for a fresh start.
  const c: TrainConfig = { ...saved, model: { ...saved.model }, initWeights: saved.initWeights ?? null, attention: saved.attention ?? 'auto' };
  const mismatch = (what: string, mine: unknown, theirs: unknown): never => {
    throw new CheckpointError(`checkpoint '${where}' is from another configuration: ${what} is ${JSON.stringify(theirs)} there, ${JSON.stringify(mine)} here`);
  };
  const same = (what: string, mine: unknown, theirs: unknown): void => {
    if (mine !== undefined && mine !== theirs) mismatch(what, mine, theirs);
  };
  same('preset', args.preset, saved.preset);
  same('optimizer', args.optimizer, saved.optimizer);
  same('batch size (tokens)', args.batchSize, saved.batchTokens);
  same('micro-batch', args.microBatch, saved.microBatch);
  same('seq-len', args.seqLen, saved.seqLen);
  same('lr', args.lr, saved.lr);
  same('seed', args.seed, saved.seed);
  same('vocab size', args.vocabSize, saved.model.vocabSize);
  same('warmup', args.warmup, saved.warmupSteps);
  if (args.data !== undefined && args.valData !== undefined) {
    if (saved.data.kind !== 'shards') mismatch('data', args.data, 'the bundled corpus');
    c.data = { kind: 'shards', train: args.data, val: args.valData };
  }
  if (args.steps !== undefined) {
    c.steps = args.steps;
    if (args.warmdown === undefined) c.warmdownSteps = Math.min(saved.warmdownSteps, args.steps);
  }
  if (args.warmdown !== undefined) c.warmdownSteps = args.warmdown;
  if (args.device !== undefined) c.device = args.device;
  if (args.attention !== undefined) c.attention = args.attention;
  if (args.valEvery !== undefined) c.valEvery = args.valEvery;
  if (args.valTokens !== undefined) c.valTokens = args.valTokens;
  if (args.saveEvery !== undefined) c.saveEvery = args.saveEvery;
  if (args.targetLoss !== undefined) c.targetLoss = args.targetLoss;
  return validateConfig(c);
}

function timestamp(): string {
  return new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, '').replace('T', '-');
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

const count = (n: number): string => n.toLocaleString('en-US');

/** A live bar on stderr when it is a TTY (redrawn at most ~10 times a second); plain lines on stdout otherwise. */
function progressReporter(io: TrainCliIO, label: string): { event(e: TrainEvent): void; end(ok: boolean): void } {
  const tty = io.stderr.isTTY === true;
  const now = io.now ?? Date.now;
  let lastDraw = -Infinity;
  let drawn = false;
  let steps = 0;
  let lastVal: number | null = null;
  let every = 1;
  const prefix = label === '' ? '' : `[${label}] `;
  const erase = () => {
    if (drawn) io.stderr.write('\r\x1b[K');
    drawn = false;
  };
  return {
    event(e) {
      if (e.type === 'start') {
        steps = e.config.steps;
        every = Math.max(1, Math.round(steps / 20));
        const c = e.config;
        erase();
        io.stdout.write(`${prefix}${c.optimizer} on ${e.device}: GPT-2 ${c.model.nLayer}x${c.model.nEmbd} (${count(e.parameters)} parameters, vocab ${c.model.vocabSize}), ` +
          `${count(c.batchTokens)} tokens/step (${e.microBatches} x ${c.microBatch} x ${c.seqLen}), ${c.steps} steps, lr ${c.lr}` +
          `${e.worldSize > 1 ? `, ${e.worldSize} ranks${e.sharded ? ' (sharded matrix step)' : ''}` : ''}` +
          `${e.startStep > 0 ? `, resuming at step ${e.startStep}` : ''}; ${count(e.trainTokens)} train tokens, val on ${count(e.valTokens)}\n`);
        if (c.device === 'auto' && e.device === 'cpu' && label === '') {
          const reason = devices().find((d) => d.name === 'cuda')?.reason;
          if (reason !== undefined) io.stdout.write(`(cuda is not available: ${reason.split('\n')[0]})\n`);
        }
        return;
      }
      if (e.type === 'checkpoint') return;
      if (e.type === 'target') {
        erase();
        io.stdout.write(`${prefix}val loss ${e.valLoss.toFixed(4)} reached the target at step ${e.step} (${duration(e.elapsedS)} of training)\n`);
        return;
      }
      const p = e.point;
      if (p.val_loss !== undefined) lastVal = p.val_loss;
      const loss = p.train_loss === null ? '' : ` loss ${p.train_loss.toFixed(4)}`;
      const val = lastVal === null ? '' : ` val ${lastVal.toFixed(4)}`;
      const eta = e.etaS === null ? '' : ` ETA ${duration(e.etaS)}`;
      if (tty) {
        const t = now();
        if (t - lastDraw < 100 && p.step < steps && p.val_loss === undefined) return;
        lastDraw = t;
        const width = 24;
        const filled = Math.round((p.step / steps) * width);
        io.stderr.write(`\r${prefix}[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] step ${p.step}/${steps}${loss}${val} ` +
          `${count(p.tokens_per_s)} tok/s${eta}\x1b[K`);
        drawn = true;
      } else if (p.val_loss !== undefined || p.step % every === 0) {
        io.stdout.write(`${prefix}step ${p.step}/${steps}${loss}${p.val_loss !== undefined ? ` val ${p.val_loss.toFixed(4)}` : ''} ` +
          `lr ${p.lr.toPrecision(3)} ${count(p.tokens_per_s)} tok/s ${duration(p.elapsed_s)}${eta}\n`);
      }
    },
    end(ok) {
      if (drawn) io.stderr.write(ok ? '\n' : '\r\x1b[K');
      drawn = false;
    },
  };
}

function summary(r: TrainResult, config: TrainConfig, label = ''): string {
  const prefix = label === '' ? '' : `[${label}] `;
  const val = r.initialValLoss !== null && r.finalValLoss !== null
    ? `val loss ${r.initialValLoss.toFixed(4)} -> ${r.finalValLoss.toFixed(4)}`
    : `val loss ${r.finalValLoss?.toFixed(4) ?? '?'}`;
  const lines = [
    `${prefix}${r.stopped ? 'stopped' : 'done'}: ${r.steps}${r.stopped ? `/${config.steps}` : ''} steps, ${val}, train loss ${r.finalTrainLoss?.toFixed(4) ?? '?'}, ` +
      `${duration(r.elapsedS)} of training (${count(Math.round(r.tokens / Math.max(r.elapsedS, 1e-9)))} tokens/s)`,
  ];
  if (config.targetLoss !== null) {
    lines.push(`${prefix}target val loss ${config.targetLoss}: ${r.target === null ? 'not reached' : `reached at step ${r.target.step} after ${duration(r.target.elapsedS)}`}`);
  }
  lines.push(`${prefix}wrote ${path.join(r.outDir, 'metrics.jsonl')}, config.json${r.checkpoint !== null ? `, checkpoint ${r.checkpoint}` : ''}`);
  return `${lines.join('\n')}\n`;
}

/** Data parallel: this rank's group and whether to shard the matrix step. */
interface DistRun {
  group: ProcessGroup;
  shard: boolean;
}

async function trainOne(config: TrainConfig, outDir: string, io: TrainCliIO, label: string, resumeFrom?: string, dist?: DistRun): Promise<TrainResult> {
  const progress = progressReporter(io, label);
  const warnings: string[] = [];
  let trainer: Trainer | null = null;
  try {
    trainer = await Trainer.create({
      config, outDir, resumeFrom, cacheDir: io.cacheDir, onEvent: (e) => progress.event(e), onWarning: (w) => warnings.push(w),
      group: dist?.group, shardOptimizer: dist?.shard,
    });
    // Ctrl-C: finish the step, write a checkpoint, exit (a second Ctrl-C kills as usual).
    const t = trainer;
    const onSigint = () => {
      process.removeListener('SIGINT', onSigint);
      t.requestStop();
    };
    if (io.handleSignals) process.on('SIGINT', onSigint);
    let result: TrainResult;
    try {
      result = await trainer.run();
    } finally {
      process.removeListener('SIGINT', onSigint);
    }
    progress.end(true);
    if (result.stopped) io.stdout.write(`${label === '' ? '' : `[${label}] `}stopped at step ${result.steps}; continue with --resume ${result.checkpoint}\n`);
    for (const w of warnings) io.stdout.write(`${label === '' ? '' : `[${label}] `}warning: ${w}\n`);
    io.stdout.write(summary(result, config, label));
    return result;
  } catch (error) {
    progress.end(false);
    throw error;
  } finally {
    trainer?.dispose();
  }
}

function version(): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('../../package.json') as { version: string }).version;
}

/** What a command line asks to train: one run, or the two runs of --compare and their report. */
interface RunPlan {
  runs: { config: TrainConfig; out: string; label: string; resume?: string }[];
  report?: string;
}

/** The runs of a command line (reads the checkpoint of --resume). */
export function planRuns(args: TrainArgs): RunPlan {
  if (args.resume !== undefined) {
    const dir = findCheckpoint(args.resume);
    const state = readCheckpointState(dir);
    const config = resumeConfig(state.config, args, dir);
    // The run folder the checkpoint belongs to (<run>/checkpoints/step_N), unless --out says otherwise.
    const parent = path.dirname(dir);
    const out = args.out ?? (path.basename(parent) === 'checkpoints' ? path.dirname(parent) : path.join('runs', `${config.preset}-${timestamp()}`));
    return { runs: [{ config, out, label: '', resume: dir }] };
  }
  const out = args.out ?? path.join('runs', `${args.preset ?? 'tiny'}-${timestamp()}`);
  if (!args.compare) return { runs: [{ config: buildConfig(args), out, label: '' }] };
  const runs = (['muon', 'newton-muon'] as const).map((opt) => {
    const config = buildConfig(args, opt);
    return { config, out: path.join(out, config.optimizer), label: config.optimizer };
  });
  return { runs, report: path.join(out, 'report.html') };
}

/** Trains the plan's runs in order; the exit status (130 when stopped early). */
async function runPlan(plan: RunPlan, io: TrainCliIO, dist?: DistRun): Promise<number> {
  const done: CompareRun[] = [];
  for (const run of plan.runs) {
    const result = await trainOne(run.config, run.out, io, run.label, run.resume, dist);
    if (result.stopped) return 130;
    done.push({ config: run.config, result });
  }
  if (plan.report !== undefined && (dist === undefined || dist.group.rank === 0)) {
    io.stdout.write(`wrote ${writeCompareReport(plan.report, done)}\n`);
  }
  return 0;
}

const ERROR_KINDS = { data: DataError, config: ConfigError, checkpoint: CheckpointError, usage: UsageError, dist: DistError } as const;

function errorKind(error: unknown): keyof typeof ERROR_KINDS | null {
  for (const [kind, type] of Object.entries(ERROR_KINDS)) if (error instanceof type) return kind as keyof typeof ERROR_KINDS;
  return null;
}

/** One line on stderr; the exit status (2 for a bad command line). */
function reportError(io: TrainCliIO, error: unknown, prefix = ''): number {
  const message = (error as Error)?.message ?? String(error);
  io.stderr.write(`newton-muon-train: ${prefix}${errorKind(error) !== null ? '' : 'error: '}${message.split('\n')[0]}\n`);
  return error instanceof UsageError ? 2 : 1;
}

/** The command line without --nproc-per-node (what every rank of the local launcher runs). */
function withoutNproc(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--nproc-per-node') i++;
    else if (!argv[i].startsWith('--nproc-per-node=')) out.push(argv[i]);
  }
  return out;
}

/** What every rank must agree on: the options given (the package version is added by the group). */
function fingerprintOf(args: TrainArgs): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(args).sort()) if (key !== 'help' && key !== 'version') out[`option ${key}`] = (args as unknown as Record<string, unknown>)[key];
  return out;
}

/**
 * One rank of a data-parallel run: join the group, take rank 0's plan (rank 0 alone reads a
 * --resume checkpoint), train, leave. Errors are one line prefixed with the rank.
 */
async function runRank(args: TrainArgs, launch: LaunchInfo, io: TrainCliIO): Promise<number> {
  const prefix = launch.worldSize > 1 ? `rank ${launch.rank}: ` : '';
  exitWithLauncher(io.stderr);
  // The ranks of a machine share its cores (as torchrun's OMP_NUM_THREADS=1 intends): each CPU
  // backend takes its share, unless NM_NUM_THREADS says otherwise. Set before the backend starts.
  if (process.env.NM_NUM_THREADS === undefined && launch.localWorldSize > 1) {
    process.env.NM_NUM_THREADS = String(Math.max(1, Math.floor(os.availableParallelism() / launch.localWorldSize)));
  }
  let group: ProcessGroup | null = null;
  try {
    group = await initProcessGroup({
      device: args.device ?? 'auto', launch, timeoutMs: Math.max(1, Math.round((args.distTimeout ?? DEFAULT_TIMEOUT_MS / 1000) * 1000)),
      fingerprint: fingerprintOf(args), exitOnPeerFailure: true,
    });
    const plan = await onRankZero(group, () => planRuns(args), ERROR_KINDS);
    const quiet: TrainCliIO = { ...io, stdout: { write: () => true }, stderr: io.stderr };
    const status = await runPlan(plan, group.rank === 0 ? io : quiet, { group, shard: args.noShardOptimizer !== true });
    await group.destroy();
    return status;
  } catch (error) {
    if (group !== null && !group.failed) group.abort((error as Error)?.message ?? String(error));
    await group?.destroy().catch(() => undefined);
    return reportError(io, error, prefix);
  }
}

export async function main(argv: readonly string[], io: TrainCliIO = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const args = parseOrUsageExit('newton-muon-train', argv, parseArgs, io);
  if (typeof args === 'number') return args;
  if (args.help) {
    io.stdout.write(USAGE);
    return 0;
  }
  if (args.version) {
    io.stdout.write(`${version()}\n`);
    return 0;
  }
  let launch: LaunchInfo | null;
  try {
    launch = launchEnvironment();
    if (args.nprocPerNode !== undefined) {
      if (launch !== null && launch.worldSize > 1) {
        throw new UsageError(`--nproc-per-node starts its own ranks, but this process is already rank ${launch.rank} of ${launch.worldSize} (${launch.source}); leave the option out under a launcher`);
      }
      return await launchLocal({
        nproc: args.nprocPerNode, command: [process.execPath, ...process.execArgv, process.argv[1], ...withoutNproc(argv)],
        stderr: io.stderr, program: 'newton-muon-train',
      });
    }
  } catch (error) {
    return reportError(io, error);
  }
  if (launch !== null) return runRank(args, launch, io);
  try {
    return await runPlan(planRuns(args), io);
  } catch (error) {
    return reportError(io, error);
  }
}

if (require.main === module) {
  // A launcher stopping this rank (another rank failed): no half-written checkpoint stays behind.
  process.on('SIGTERM', () => {
    removePartialCheckpoints();
    process.exit(143);
  });
  // process.exit, not exitCode: a data-parallel rank must not outlive its group on a stray handle.
  main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, handleSignals: true }).then((status) => process.exit(status), (error: Error) => {
    process.stderr.write(`newton-muon-train: ${String(error?.message ?? error).split('\n')[0]}\n`);
    process.exit(1);
  });
}
