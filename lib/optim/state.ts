// Optimizer state dicts: named tensors plus scalars, so training resumes exactly.
import { native } from '../native';
import { formatShape, sameShape } from '../shape';
import { Tensor } from '../tensor';
import { checkTensor, copy } from '../ops';

export interface OptimizerState {
  /** Which optimizer wrote it ('adamw', 'muon', 'newton-muon'). */
  kind: string;
  /** Completed steps. */
  step: number;
  /**
   * Named state tensors. From stateDict() these are the optimizer's live tensors: read or copy
   * them, do not dispose or write them. loadStateDict() also accepts host Float32Arrays.
   */
  tensors: Record<string, Tensor | Float32Array | Int32Array>;
}

/** Checks, without copying, that `source` fits `target` (so a load can validate everything first). */
export function checkLoadable(target: Tensor, source: Tensor | Float32Array | Int32Array, name: string): void {
  if (source instanceof Tensor) {
    checkTensor(source, `loadStateDict: ${name}`);
    if (!sameShape(source.shape, target.shape) || source.dtype !== target.dtype) {
      throw new RangeError(`loadStateDict: ${name} is ${source.toString()}, expected ${target.toString()}`);
    }
    return;
  }
  const expectedType = target.dtype === 'i32' ? Int32Array : Float32Array;
  if (!(source instanceof expectedType) || source.length !== target.numel) {
    throw new RangeError(`loadStateDict: ${name} has ${(source as { length?: number })?.length} values of ${(source as object)?.constructor?.name}, expected ${target.numel} (${expectedType.name}, shape ${formatShape(target.shape)})`);
  }
}

/** Loads every named tensor after validating all of them (a bad entry changes nothing). */
export async function loadAll(targets: Record<string, Tensor>, state: OptimizerState): Promise<void> {
  for (const [name, target] of Object.entries(targets)) checkLoadable(target, state.tensors[name], name);
  for (const [name, target] of Object.entries(targets)) await loadInto(target, state.tensors[name], name);
}

/** loadAll() without awaiting: a tensor on another device is read back with readSync(). */
export function loadAllSync(targets: Record<string, Tensor>, state: OptimizerState): void {
  for (const [name, target] of Object.entries(targets)) checkLoadable(target, state.tensors[name], name);
  for (const [name, target] of Object.entries(targets)) {
    const source = state.tensors[name];
    place(target, source instanceof Tensor && source.device !== target.device ? source.readSync() as Float32Array | Int32Array : source);
  }
}

/**
 * Copies `source` (a Tensor on any device, or host data) into the optimizer tensor `target`,
 * after checking it fits. Cross-device tensors are read back first (hence async).
 */
export async function loadInto(target: Tensor, source: Tensor | Float32Array | Int32Array, name: string): Promise<void> {
  checkLoadable(target, source, name);
  place(target, source instanceof Tensor && source.device !== target.device ? await source.read() as Float32Array | Int32Array : source);
}

/** Writes checked data into target: a same-device tensor by a device copy, host data by upload. */
function place(target: Tensor, source: Tensor | Float32Array | Int32Array): void {
  if (source instanceof Tensor) copy(target, source);
  else native.upload(target.handle('loadStateDict'), target.byteOffset, source);
}

/** Checks names: every expected one present, nothing extra; throws naming the first problem. */
export function checkStateNames(state: OptimizerState, expected: Iterable<string>, kind: string): void {
  if (state === null || typeof state !== 'object' || typeof state.tensors !== 'object' || state.tensors === null) {
    throw new TypeError('loadStateDict: expected { kind, step, tensors }');
  }
  if (state.kind !== kind) throw new TypeError(`loadStateDict: state is for '${state.kind}', this optimizer is '${kind}'`);
  if (!Number.isSafeInteger(state.step) || state.step < 0) throw new RangeError(`loadStateDict: step must be a non-negative integer, got ${state.step}`);
  const want = new Set(expected);
  for (const name of want) {
    if (!(name in state.tensors)) throw new RangeError(`loadStateDict: missing tensor '${name}'`);
  }
  for (const name of Object.keys(state.tensors)) {
    if (!want.has(name)) throw new RangeError(`loadStateDict: unexpected tensor '${name}' (this optimizer has: ${[...want].join(', ')})`);
  }
}
