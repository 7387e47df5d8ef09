// Checkpoints: one folder per save, <run>/checkpoints/step_000100/, holding
//   model.safetensors      the weights (PyTorch names; loads into GPT2.loadSafetensors)
//   optimizer.safetensors  every optimizer state tensor, named '<role>/<name>' (role: matrix, adamw)
//   state.json             step, config, optimizer kinds and step counts, loader position, clock
//   metrics.jsonl          the run's metrics up to this step (a resumed run continues it)
// The folder is written under a temp name and renamed into place, so a crash never leaves a
// half-written checkpoint; an older checkpoint is removed only after the new one exists.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';

import { fsReason } from '../data/errors';
import type { LoaderState } from '../data/loader';
import { readSafetensors, writeSafetensors } from '../gpt2/safetensors';
import type { SafetensorsEntry } from '../gpt2/safetensors';
import type { OptimizerState } from '../optim/state';
import { Tensor } from '../tensor';
import type { TrainConfig } from './config';

export const CHECKPOINT_FORMAT = 'newton-muon-checkpoint';
export const CHECKPOINT_VERSION = 1;
export const STATE_FILE = 'state.json';
export const MODEL_FILE = 'model.safetensors';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
export const METRICS_FILE = 'metrics.jsonl';

export interface CheckpointState {
  format: typeof CHECKPOINT_FORMAT;
  version: number;
  step: number;
  config: TrainConfig;
  optimizers: Record<string, { kind: string; step: number }>;
  loader: LoaderState;
  /** Training seconds (evaluation excluded) and tokens so far. */
  elapsedS: number;
  tokens: number;
  /** First step and training seconds at which the val loss reached the target, if it did. */
  target: { step: number; elapsedS: number } | null;
}

/** A checkpoint that cannot be used: the message names the folder and the problem. */
export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

export function checkpointName(step: number): string {
  return `step_${String(step).padStart(6, '0')}`;
}

/** Reads a state dict's tensors to host arrays (what safetensors stores). */
async function hostTensors(role: string, state: OptimizerState, out: Record<string, SafetensorsEntry>): Promise<void> {
  for (const [name, t] of Object.entries(state.tensors)) {
    const key = `${role}/${name}`;
    if (t instanceof Tensor) {
      if (t.dtype !== 'f32') throw new CheckpointError(`optimizer state '${key}' is ${t.dtype}; only f32 state is saved`);
      out[key] = { shape: [...t.shape], data: (await t.read()) as Float32Array };
    } else if (t instanceof Float32Array) {
      out[key] = { shape: [t.length], data: t };
    } else {
      throw new CheckpointError(`optimizer state '${key}' is not f32`);
    }
  }
}

export interface CheckpointContents {
  state: CheckpointState;
  saveModel: (file: string) => Promise<void>;
  optimizers: Record<string, OptimizerState>;
  metrics: string;
}

/** Temp folders of checkpoints this process is writing (removed by removePartialCheckpoints). */
const writing = new Set<string>();
let exitHook = false;

/**
 * Removes the temp folders of checkpoints this process is still writing: what a process that is
 * told to stop (SIGTERM from a launcher whose other rank failed) does before it exits, so nothing
 * half-written stays on disk.
 */
export function removePartialCheckpoints(): void {
  for (const tmp of writing) fs.rmSync(tmp, { recursive: true, force: true });
  writing.clear();
}

/**
 * Removes temp folders left in dir by checkpoint writers that no longer run (a process killed
 * mid-write cannot clean up after itself); a live writer's folder is left alone.
 */
export function removeStaleCheckpointTemps(dir: string): void {
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const entry of entries) {
    const m = /^\.step_\d+\.(\d+)\.[0-9a-f]+\.tmp(\.old)?$/.exec(entry);
    if (m === null || processAlive(Number(m[1]))) continue;
    fs.rmSync(path.join(dir, entry), { recursive: true, force: true });
  }
}

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Writes <dir>/<checkpointName(step)> atomically; returns its path. */
export async function writeCheckpoint(dir: string, contents: CheckpointContents): Promise<string> {
  const final = path.join(dir, checkpointName(contents.state.step));
  const tmp = path.join(dir, `.${path.basename(final)}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`);
  writing.add(tmp);
  if (!exitHook) {
    // A process that exits mid-write (process.exit from a failed data-parallel group, a SIGTERM
    // handler) still removes its temp folder; only SIGKILL leaves one (removeStaleCheckpointTemps).
    process.on('exit', removePartialCheckpoints);
    exitHook = true;
  }
  try {
    fs.mkdirSync(tmp, { recursive: true });
    await contents.saveModel(path.join(tmp, MODEL_FILE));
    const tensors: Record<string, SafetensorsEntry> = {};
    for (const [role, state] of Object.entries(contents.optimizers)) await hostTensors(role, state, tensors);
    writeSafetensors(path.join(tmp, OPTIMIZER_FILE), tensors, { format: CHECKPOINT_FORMAT });
    fs.writeFileSync(path.join(tmp, METRICS_FILE), contents.metrics);
    fs.writeFileSync(path.join(tmp, STATE_FILE), `${JSON.stringify(contents.state, null, 2)}\n`);
    let old: string | null = null;
    if (fs.existsSync(final)) {
      old = `${tmp}.old`;
      fs.renameSync(final, old);
    }
    fs.renameSync(tmp, final);
    if (old !== null) fs.rmSync(old, { recursive: true, force: true });
    return final;
  } catch (error) {
    fs.rmSync(tmp, { recursive: true, force: true });
    if (error instanceof CheckpointError) throw error;
    throw new CheckpointError(`cannot write checkpoint '${final}': ${fsReason(error)}`);
  } finally {
    writing.delete(tmp);
  }
}

/** Removes every checkpoint folder in dir but `keep`. */
export function pruneCheckpoints(dir: string, keep: string): void {
  for (const entry of fs.readdirSync(dir)) {
    const p = path.join(dir, entry);
    if (/^step_\d+$/.test(entry) && p !== keep) fs.rmSync(p, { recursive: true, force: true });
  }
}

/**
 * The checkpoint folder that `where` names: a checkpoint folder itself, a run folder (its latest
 * checkpoint) or a run's checkpoints/ folder.
 */
export function findCheckpoint(where: string): string {
  const isCheckpoint = (p: string) => fs.existsSync(path.join(p, STATE_FILE));
  if (!fs.existsSync(where)) throw new CheckpointError(`checkpoint '${where}' does not exist`);
  if (isCheckpoint(where)) return where;
  for (const dir of [path.join(where, 'checkpoints'), where]) {
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) continue;
    const steps = fs.readdirSync(dir).filter((e) => /^step_\d+$/.test(e) && isCheckpoint(path.join(dir, e))).sort();
    if (steps.length > 0) return path.join(dir, steps[steps.length - 1]);
  }
  throw new CheckpointError(`'${where}' is not a checkpoint (no ${STATE_FILE}) and holds none`);
}

export function readCheckpointState(dir: string): CheckpointState {
  let state: CheckpointState;
  try {
    state = JSON.parse(fs.readFileSync(path.join(dir, STATE_FILE), 'utf8')) as CheckpointState;
  } catch (error) {
    throw new CheckpointError(`cannot read checkpoint '${dir}': ${error instanceof SyntaxError ? `${STATE_FILE} is not valid JSON` : fsReason(error)}`);
  }
  if (state?.format !== CHECKPOINT_FORMAT || state.version !== CHECKPOINT_VERSION) {
    throw new CheckpointError(`'${dir}' is not a version-${CHECKPOINT_VERSION} newton-muon checkpoint`);
  }
  if (!Number.isSafeInteger(state.step) || state.step < 0 || typeof state.config !== 'object' || state.config === null) {
    throw new CheckpointError(`checkpoint '${dir}': ${STATE_FILE} is malformed`);
  }
  return state;
}

/** The optimizer state dicts of a checkpoint, as host arrays, by role. */
export function readOptimizerStates(dir: string, state: CheckpointState): Record<string, OptimizerState> {
  let entries: Record<string, SafetensorsEntry>;
  try {
    entries = readSafetensors(path.join(dir, OPTIMIZER_FILE));
  } catch (error) {
    throw new CheckpointError(`checkpoint '${dir}': ${(error as Error).message}`);
  }
  const out: Record<string, OptimizerState> = {};
  for (const [role, { kind, step }] of Object.entries(state.optimizers)) out[role] = { kind, step, tensors: {} };
  for (const [key, { data }] of Object.entries(entries)) {
    const slash = key.indexOf('/');
    const role = key.slice(0, slash);
    if (slash < 0 || out[role] === undefined) throw new CheckpointError(`checkpoint '${dir}': unexpected optimizer tensor '${key}'`);
    out[role].tensors[key.slice(slash + 1)] = data;
  }
  return out;
}

export function readCheckpointMetrics(dir: string): string {
  try {
    return fs.readFileSync(path.join(dir, METRICS_FILE), 'utf8');
  } catch {
    return '';
  }
}
