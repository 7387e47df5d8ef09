// Newton-Muon and Muon for code with its own autograd: weights and gradients are Float32Arrays
// on the host, in PyTorch's [out, in] layout or Keras / tfjs's [in, out]. This class only moves
// data (upload, transpose, read back into the caller's arrays); every step is our NewtonMuon /
// Muon on device tensors, so the math is exactly theirs.
import { DeviceName, DeviceSpec, resolveDevice } from '../device';
import { native } from '../native';
import { untracked } from '../scope';
import { describe, formatShape } from '../shape';
import { empty, Tensor, tensor } from '../tensor';
import { MatrixOptimizer, MatrixParam, MuonOptions, NewtonMuonOptions } from './matrix_optimizer';
import { Muon } from './muon';
import { NewtonMuon } from './newton_muon';
import { OptimizerState } from './state';

/** How a weight matrix is stored: [out, in] (PyTorch, our tensors) or [in, out] (Keras, tfjs Dense). */
export type MatrixLayout = 'out-in' | 'in-out';

export interface ArrayMatrix {
  /** The weights, row-major in `layout`; every step writes the new values into this array. */
  weight: Float32Array;
  /** The gradient (same shape and layout) a step reads unless step() is handed one by name. */
  grad?: Float32Array;
  /** The stored shape: [out, in] for 'out-in', [in, out] for 'in-out'. */
  shape: readonly [number, number];
  /** Default 'out-in'. */
  layout?: MatrixLayout;
  /** Names the matrix in messages, step() and observeInput(). Default `param{i}`. */
  name?: string;
  /** Orthogonalise this many blocks of output features separately (fused q, k, v: 3). Default 1. */
  rowBlocks?: number;
  /** Newton-Muon: a block-diagonal input statistic with this many blocks. Default 1. */
  inputBlocks?: number;
  /** Newton-Muon: matrices with the same key read the same input and share one statistic. */
  inputKey?: string;
}

export interface ArrayOptimizerOptions {
  /** Where the optimizer state lives and the math runs: 'auto' (default: CUDA when available), 'cpu' or 'cuda'. */
  device?: DeviceSpec;
}

interface Entry {
  name: string;
  weight: Float32Array;
  grad?: Float32Array;
  layout: MatrixLayout;
  /** [out, in]: the matrix as our optimizer sees it. */
  rows: number;
  cols: number;
  inputKey: string;
  inputBlocks: number;
  param: Tensor;
  gradOnDevice: Tensor;
  /** Host buffer for transposing 'in-out' data on its way to the device. */
  staging?: Float32Array;
}

/** Gradients for one step by matrix name (each in its matrix's layout), overriding `grad`. */
export type ArrayGradients = Readonly<Record<string, Float32Array>>;

/** ArrayNewtonMuon and ArrayMuon: the host-array surface over one NewtonMuon / Muon. */
export abstract class ArrayMatrixOptimizer {
  private readonly entries: Entry[] = [];
  private readonly byName = new Map<string, Entry>();
  private readonly byWeight = new Map<Float32Array, Entry>();
  private readonly inner: MatrixOptimizer;
  readonly device: DeviceName;

  protected constructor(
    private readonly op: string,
    matrices: readonly ArrayMatrix[],
    options: (MuonOptions | NewtonMuonOptions) & ArrayOptimizerOptions,
    build: (params: MatrixParam[], options: NewtonMuonOptions) => MatrixOptimizer,
  ) {
    if (options === null || typeof options !== 'object') throw new TypeError(`${op}: options must be an object with at least { lr }`);
    if (!Array.isArray(matrices) || matrices.length === 0) throw new TypeError(`${op}: matrices must be a non-empty array of { weight, shape }`);
    this.device = resolveDevice(options.device ?? 'auto', `${op}: device`);
    const { device: _device, ...optimizerOptions } = options;
    matrices.forEach((m, i) => this.entries.push(this.checkMatrix(m, i)));
    untracked(() => {
      for (const e of this.entries) {
        e.param = empty([e.rows, e.cols], { device: this.device });
        e.gradOnDevice = empty([e.rows, e.cols], { device: this.device });
      }
    });
    try {
      const params = this.entries.map((e, i) => ({
        param: e.param, grad: e.gradOnDevice, name: e.name,
        rowBlocks: matrices[i].rowBlocks, inputBlocks: matrices[i].inputBlocks, inputKey: matrices[i].inputKey,
      }));
      this.inner = untracked(() => build(params, optimizerOptions as NewtonMuonOptions));
    } catch (error) {
      this.releaseTensors();
      throw error;
    }
  }

  private checkMatrix(m: ArrayMatrix, i: number): Entry {
    const where = `${this.op}: matrices[${i}]`;
    if (m === null || typeof m !== 'object') throw new TypeError(`${where} must be { weight, shape, ... }`);
    const name = m.name ?? `param${i}`;
    if (typeof name !== 'string' || this.byName.has(name)) throw new TypeError(`${where}: name ${JSON.stringify(name)} is not a unique string`);
    const what = `${where} ('${name}')`;
    const layout = m.layout ?? 'out-in';
    if (layout !== 'out-in' && layout !== 'in-out') throw new TypeError(`${what}: layout must be 'out-in' or 'in-out', got ${describe(layout)}`);
    const shape = m.shape;
    if (!Array.isArray(shape) || shape.length !== 2 || !shape.every((d) => Number.isSafeInteger(d) && d > 0)) {
      throw new RangeError(`${what}: shape must be two positive integers [${layout === 'out-in' ? 'out, in' : 'in, out'}], got ${describe(shape)}`);
    }
    const numel = shape[0] * shape[1];
    if (!(m.weight instanceof Float32Array) || m.weight.length !== numel) {
      throw new TypeError(`${what}: weight must be a Float32Array of ${numel} values (shape ${formatShape(shape)}), got ${describe(m.weight)}`);
    }
    if (this.byWeight.has(m.weight)) throw new TypeError(`${what}: this weight array is listed twice`);
    if (m.grad !== undefined) checkArray(m.grad, numel, `${what}: grad`, shape);
    const [rows, cols] = layout === 'out-in' ? shape : [shape[1], shape[0]];
    const entry = {
      name, weight: m.weight, grad: m.grad, layout, rows, cols,
      inputKey: m.inputKey ?? name, inputBlocks: m.inputBlocks ?? 1,
      staging: layout === 'in-out' ? new Float32Array(numel) : undefined,
    } as Entry;
    this.byName.set(name, entry);
    this.byWeight.set(m.weight, entry);
    return entry;
  }

  // ---- the public surface --------------------------------------------------------------------

  get lr(): number {
    return this.inner.lr;
  }

  set lr(value: number) {
    this.inner.lr = value;
  }

  /** Completed steps. */
  get steps(): number {
    return this.inner.steps;
  }

  /** Preconditioner factorisations that failed so far (see flushReports()). */
  get failedRefreshes(): number {
    return this.inner.failedRefreshes;
  }

  /** True when the coming step refreshes the preconditioner: hand it the layer inputs then. */
  collectsStatistics(): boolean {
    return this.inner.collectsStatistics();
  }

  /**
   * This step's input X of the matrix `target` (its name, its weight array, or its inputKey):
   * `tokens` rows of d_in features, row-major ([tokens, d_in], whatever the weight layout). One
   * upload; false (and nothing copied) on steps that do not collect statistics, and for Muon.
   */
  observeInput(target: string | Float32Array, x: Float32Array, tokens: number): boolean {
    const { key, width, label } = this.statisticOf(target, 'observeInput');
    if (!Number.isSafeInteger(tokens) || tokens < 0) throw new RangeError(`observeInput(${label}): tokens must be a non-negative integer, got ${describe(tokens)}`);
    checkArray(x, tokens * width, `observeInput(${label}): x`, [tokens, width]);
    if (!this.inner.collectsStatistics() || tokens === 0) return false;
    const onDevice = untracked(() => tensor(x, [tokens, width], { device: this.device }));
    try {
      return this.inner.observeInput(key, onDevice);
    } finally {
      onDevice.dispose();
    }
  }

  /**
   * observeInput() for code that forms X^T X itself (on its own GPU, say): `gram` is the sum
   * over `tokens` rows of x x^T, [d_in, d_in] row-major, or only its inputBlocks diagonal blocks
   * ([inputBlocks, d, d]). Only d_in x d_in values cross to the optimizer.
   */
  observeGram(target: string | Float32Array, gram: Float32Array, tokens: number): boolean {
    const { key, width, blocks, label } = this.statisticOf(target, 'observeGram');
    if (!Number.isSafeInteger(tokens) || tokens < 0) throw new RangeError(`observeGram(${label}): tokens must be a non-negative integer, got ${describe(tokens)}`);
    const d = width / blocks;
    const full = width * width;
    const diagonal = blocks * d * d;
    if (!(gram instanceof Float32Array) || (gram.length !== full && gram.length !== diagonal)) {
      throw new TypeError(`observeGram(${label}): gram must be a Float32Array of ${full} values ([${width}, ${width}])` +
        `${blocks > 1 ? ` or ${diagonal} ([${blocks}, ${d}, ${d}], the diagonal blocks)` : ''}, got ${describe(gram)}`);
    }
    if (!this.inner.collectsStatistics() || tokens === 0) return false;
    const blocksOnly = gram.length === diagonal ? gram : diagonalBlocks(gram, width, blocks);
    const shape = blocks === 1 ? [d, d] : [blocks, d, d];
    const onDevice = untracked(() => tensor(blocksOnly, shape, { device: this.device }));
    try {
      return this.inner.observeGram(key, onDevice, tokens);
    } finally {
      onDevice.dispose();
    }
  }

  /**
   * One step, finished when it returns: uploads every weight and gradient, steps, and writes the
   * new weights into the weight arrays. Waits on the calling thread (readSync), blocking the
   * event loop for the step's duration; step() is the non-blocking form.
   */
  stepSync(grads?: ArrayGradients): void {
    this.enqueue(grads);
    this.inner.stepSync();
    for (const e of this.entries) this.writeBack(e, e.param.readSync() as Float32Array);
  }

  /** stepSync() without blocking: leave the weight arrays alone until the promise settles. */
  async step(grads?: ArrayGradients): Promise<void> {
    this.enqueue(grads);
    await this.inner.step();
    const values = await Promise.all(this.entries.map((e) => e.param.read() as Promise<Float32Array>));
    this.entries.forEach((e, i) => this.writeBack(e, values[i]));
  }

  /** Waits for the factorisation reports of earlier refresh steps. */
  flushReports(): Promise<void> {
    return this.inner.flushReports();
  }

  /** The state (momentum per matrix [out, in]; K, Kinv per statistic) as host copies, and the step. */
  async stateDict(): Promise<OptimizerState> {
    const live = this.inner.stateDict();
    const names = Object.keys(live.tensors);
    const values = await Promise.all(names.map((n) => (live.tensors[n] as Tensor).read() as Promise<Float32Array>));
    return { kind: live.kind, step: live.step, tensors: Object.fromEntries(names.map((n, i) => [n, values[i]])) };
  }

  /** Restores a stateDict() (host arrays or tensors) exactly; validated before anything changes. */
  loadStateDict(state: OptimizerState): void {
    this.inner.loadStateDictSync(state);
  }

  /** Frees every device buffer. The optimizer cannot be used afterwards. */
  dispose(): void {
    this.inner.dispose();
    this.releaseTensors();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  // ---- data movement -------------------------------------------------------------------------

  private statisticOf(target: string | Float32Array, what: string): { key: string; width: number; blocks: number; label: string } {
    const entry = typeof target === 'string' ? this.byName.get(target) : target instanceof Float32Array ? this.byWeight.get(target) : undefined;
    if (entry) return { key: entry.inputKey, width: entry.cols, blocks: entry.inputBlocks, label: entry.name };
    if (typeof target === 'string') {
      const sharing = this.entries.find((e) => e.inputKey === target);
      if (sharing) return { key: target, width: sharing.cols, blocks: sharing.inputBlocks, label: target };
      throw new TypeError(`${what}: no matrix or input key named '${target}' (matrices: ${this.entries.map((e) => e.name).join(', ')})`);
    }
    throw new TypeError(`${what}: target must be a matrix name, an input key or one of the weight arrays, got ${describe(target)}`);
  }

  /** Validates every gradient, then uploads weights and gradients as [out, in]. */
  private enqueue(grads: ArrayGradients | undefined): void {
    const op = `${this.op}.step`;
    if (grads !== undefined && (grads === null || typeof grads !== 'object')) throw new TypeError(`${op}: grads must be an object { name: Float32Array }`);
    for (const name of Object.keys(grads ?? {})) {
      if (!this.byName.has(name)) throw new TypeError(`${op}: grads has '${name}', which is not a matrix of this optimizer (matrices: ${this.entries.map((e) => e.name).join(', ')})`);
    }
    const chosen = this.entries.map((e) => {
      const g = grads?.[e.name] ?? e.grad;
      if (g === undefined) throw new TypeError(`${op}: no gradient for '${e.name}' (give it as grad, or in step({ '${e.name}': ... }))`);
      checkArray(g, e.weight.length, `${op}: the gradient of '${e.name}'`, e.layout === 'out-in' ? [e.rows, e.cols] : [e.cols, e.rows]);
      return g;
    });
    this.entries.forEach((e, i) => {
      this.upload(e, e.param, e.weight);
      this.upload(e, e.gradOnDevice, chosen[i]);
    });
  }

  private upload(e: Entry, target: Tensor, data: Float32Array): void {
    const rowMajorOutIn = e.layout === 'out-in' ? data : transpose(data, e.cols, e.rows, e.staging!);
    native.upload(target.handle(`${this.op}.step`), target.byteOffset, rowMajorOutIn);
  }

  private writeBack(e: Entry, outIn: Float32Array): void {
    if (e.layout === 'out-in') e.weight.set(outIn);
    else transpose(outIn, e.rows, e.cols, e.weight);
  }

  private releaseTensors(): void {
    for (const e of this.entries) {
      e.param?.dispose();
      e.gradOnDevice?.dispose();
    }
  }
}

/** Newton-Muon on host Float32Arrays (see ArrayMatrix); the math is NewtonMuon's. */
export class ArrayNewtonMuon extends ArrayMatrixOptimizer {
  constructor(matrices: readonly ArrayMatrix[], options: NewtonMuonOptions & ArrayOptimizerOptions) {
    super('ArrayNewtonMuon', matrices, options, (params, opts) => new NewtonMuon(params, opts));
  }
}

/** Muon on host Float32Arrays (see ArrayMatrix); the math is Muon's. */
export class ArrayMuon extends ArrayMatrixOptimizer {
  constructor(matrices: readonly ArrayMatrix[], options: MuonOptions & ArrayOptimizerOptions) {
    super('ArrayMuon', matrices, options, (params, opts) => new Muon(params, opts));
  }
}

/** out = the transpose of src ([rows, cols] row-major) as [cols, rows] row-major. Returns out. */
export function transpose(src: Float32Array, rows: number, cols: number, out: Float32Array): Float32Array {
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = src[base + c];
  }
  return out;
}

/** The `blocks` diagonal [d, d] blocks of a [width, width] matrix, as [blocks, d, d]. */
function diagonalBlocks(full: Float32Array, width: number, blocks: number): Float32Array {
  const d = width / blocks;
  const out = new Float32Array(blocks * d * d);
  for (let b = 0; b < blocks; b++) {
    for (let r = 0; r < d; r++) out.set(full.subarray((b * d + r) * width + b * d, (b * d + r) * width + b * d + d), (b * d + r) * d);
  }
  return out;
}

function checkArray(value: unknown, length: number, what: string, shape: readonly number[]): void {
  if (!(value instanceof Float32Array) || value.length !== length) {
    throw new TypeError(`${what} must be a Float32Array of ${length} values (${formatShape(shape)} row-major), got ${describe(value)}`);
  }
}
