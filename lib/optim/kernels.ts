// The optimizer building blocks as typed ops: argument checks first, then one native call.
// Public ones (newtonSchulz5, accumulateInputGram, choleskyInverse, rightPrecondition) are
// exported from the package root; the fused update kernels are used by the optimizers.
import { checkTensor } from '../ops';
import { native } from '../native';
import { formatShape, sameShape } from '../shape';
import { empty, Tensor } from '../tensor';

/** The quintic's coefficients (a, b, c) from the Muon reference. */
export const NS5_COEFFICIENTS: readonly [number, number, number] = [3.4445, -4.775, 2.0315];

/** True when the byte ranges of a and b intersect (views of one allocation may). */
function sharesMemory(a: Tensor, b: Tensor): boolean {
  return a.storage === b.storage && a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

function checkF32(t: Tensor, what: string): void {
  if (t.dtype !== 'f32') throw new TypeError(`${what}: expected dtype f32, got ${t.toString()}`);
}

function checkDevices(op: string, tensors: Record<string, Tensor>): void {
  const entries = Object.entries(tensors);
  for (const [name, t] of entries.slice(1)) {
    if (t.device !== entries[0][1].device) {
      throw new Error(`${op}: ${name} is on ${t.device} but ${entries[0][0]} is on ${entries[0][1].device}`);
    }
  }
}

/** Matrix dims of a 2-D tensor or a 3-D batch: [batch, rows, cols]. */
function matrixBatch(t: Tensor, what: string): [number, number, number] {
  if (t.shape.length === 2) return [1, t.shape[0], t.shape[1]];
  if (t.shape.length === 3) return [t.shape[0], t.shape[1], t.shape[2]];
  throw new RangeError(`${what}: expected a 2-D matrix or a 3-D batch of matrices, got ${t.toString()}`);
}

function checkPositiveInt(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`${what} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

function checkFiniteNumber(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new TypeError(`${what} must be a finite number, got ${String(value)}`);
  return value;
}

export interface NewtonSchulzOptions {
  /** Iterations (default 5). */
  steps?: number;
  /** Added to the Frobenius norm before dividing (default 1e-7). */
  eps?: number;
  /** Write into this f32 tensor (same shape as x, not x itself) instead of a new one. */
  out?: Tensor;
}

/**
 * msgn(x) ~ U V^T by the quintic Newton-Schulz iteration, for a 2-D f32 matrix or each matrix
 * of a 3-D batch. CPU: f32. CUDA: bf16 operands with f32 accumulation. Returns out.
 */
export function newtonSchulz5(x: Tensor, opts: NewtonSchulzOptions = {}): Tensor {
  checkTensor(x, 'newtonSchulz5: x');
  checkF32(x, 'newtonSchulz5: x');
  const [batch, rows, cols] = matrixBatch(x, 'newtonSchulz5: x');
  const steps = opts.steps ?? 5;
  if (!Number.isSafeInteger(steps) || steps < 0) throw new RangeError(`newtonSchulz5: steps must be a non-negative integer, got ${steps}`);
  const eps = checkFiniteNumber(opts.eps ?? 1e-7, 'newtonSchulz5: eps');
  let out = opts.out;
  if (out !== undefined) {
    checkTensor(out, 'newtonSchulz5: out');
    checkF32(out, 'newtonSchulz5: out');
    if (!sameShape(out.shape, x.shape)) throw new RangeError(`newtonSchulz5: out has shape ${formatShape(out.shape)}, expected ${formatShape(x.shape)}`);
    checkDevices('newtonSchulz5', { x, out });
    if (sharesMemory(out, x)) throw new Error('newtonSchulz5: out must not share memory with x (they overlap)');
  } else {
    out = empty(x.shape, { dtype: 'f32', device: x.device });
  }
  const [a, b, c] = NS5_COEFFICIENTS;
  native.newtonSchulz(out.handle('newtonSchulz5'), out.byteOffset, x.handle('newtonSchulz5'), x.byteOffset,
    batch, rows, cols, steps, a, b, c, eps);
  return out;
}

export interface GramOptions {
  /** K += scale * X^T X. Default 1 / tokens (the mean of the outer products). */
  scale?: number;
  /** Number of diagonal blocks: X is [tokens, blocks * d] and K is [blocks, d, d]. Default 1. */
  blocks?: number;
}

/**
 * K += scale * X_j^T X_j for each column block j of the layer input X ([tokens, blocks*d], f32
 * or bf16), accumulated in f32 into K ([d, d], or [blocks, d, d]). Returns K.
 */
export function accumulateInputGram(k: Tensor, x: Tensor, opts: GramOptions = {}): Tensor {
  checkTensor(k, 'accumulateInputGram: k');
  checkTensor(x, 'accumulateInputGram: x');
  checkF32(k, 'accumulateInputGram: k');
  if (x.dtype !== 'f32' && x.dtype !== 'bf16') throw new TypeError(`accumulateInputGram: x must be f32 or bf16, got ${x.toString()}`);
  checkDevices('accumulateInputGram', { k, x });
  const blocks = checkPositiveInt(opts.blocks ?? 1, 'accumulateInputGram: blocks');
  if (x.shape.length !== 2) throw new RangeError(`accumulateInputGram: x must be [tokens, features], got ${x.toString()}`);
  const [tokens, features] = x.shape;
  if (features % blocks !== 0) throw new RangeError(`accumulateInputGram: x has ${features} features, not divisible into ${blocks} blocks`);
  const d = features / blocks;
  const expected = blocks === 1 && k.shape.length === 2 ? [d, d] : [blocks, d, d];
  if (!sameShape(k.shape, expected)) {
    throw new RangeError(`accumulateInputGram: k has shape ${formatShape(k.shape)} but x ${formatShape(x.shape)} with ${blocks} block(s) needs ${formatShape(expected)}`);
  }
  if (tokens === 0) return k;
  const scale = checkFiniteNumber(opts.scale ?? 1 / tokens, 'accumulateInputGram: scale');
  // One strided-batched GEMM: block j reads the column slice j of X (batch stride d columns).
  native.gemm({
    a: x.handle('accumulateInputGram'), aOffset: x.byteOffset, b: x.handle('accumulateInputGram'), bOffset: x.byteOffset,
    c: k.handle('accumulateInputGram'), cOffset: k.byteOffset,
    transA: true, transB: false, m: d, n: d, k: tokens, alpha: scale, beta: 1,
    lda: features, ldb: features, ldc: d, strideA: d, strideB: d, strideC: d * d, batch: blocks,
    abDtype: x.dtype === 'bf16' ? 1 : 0, cDtype: 0,
  });
  return k;
}

export interface RightPreconditionOptions {
  /** Write G @ Kinv here (f32, G's shape; may not be G). Default: a new tensor. */
  out?: Tensor;
}

/**
 * G @ Kinv for G [rows, blocks*d] f32 and Kinv [d, d] or [blocks, d, d] (block-diagonal:
 * column slice j of G times block j). Returns the product (f32).
 */
export function rightPrecondition(g: Tensor, kinv: Tensor, opts: RightPreconditionOptions = {}): Tensor {
  checkTensor(g, 'rightPrecondition: g');
  checkTensor(kinv, 'rightPrecondition: kinv');
  checkF32(g, 'rightPrecondition: g');
  checkF32(kinv, 'rightPrecondition: kinv');
  checkDevices('rightPrecondition', { g, kinv });
  if (g.shape.length !== 2) throw new RangeError(`rightPrecondition: g must be 2-D, got ${g.toString()}`);
  const [blocks, d, d2] = matrixBatch(kinv, 'rightPrecondition: kinv');
  const [rows, cols] = g.shape;
  if (d !== d2 || cols !== blocks * d) {
    throw new RangeError(`rightPrecondition: kinv ${formatShape(kinv.shape)} does not fit g ${formatShape(g.shape)} (need ${blocks} square blocks of ${cols / blocks})`);
  }
  const out = opts.out ?? empty(g.shape, { dtype: 'f32', device: g.device });
  checkTensor(out, 'rightPrecondition: out');
  checkF32(out, 'rightPrecondition: out');
  if (!sameShape(out.shape, g.shape)) throw new RangeError(`rightPrecondition: out has shape ${formatShape(out.shape)}, expected ${formatShape(g.shape)}`);
  if (sharesMemory(out, g)) throw new Error('rightPrecondition: out must not be g or overlap it');
  checkDevices('rightPrecondition', { g, out });
  native.gemm({
    a: g.handle('rightPrecondition'), aOffset: g.byteOffset, b: kinv.handle('rightPrecondition'), bOffset: kinv.byteOffset,
    c: out.handle('rightPrecondition'), cOffset: out.byteOffset,
    transA: false, transB: false, m: rows, n: d, k: d, alpha: 1, beta: 0,
    lda: cols, ldb: d, ldc: cols, strideA: d, strideB: d * d, strideC: d, batch: blocks, abDtype: 0, cDtype: 0,
  });
  return out;
}

export interface CholeskyInverseOptions {
  /** ridge = ridge * trace(K)/d + ridgeEps (default 0.2). */
  ridge?: number;
  /** Default 1e-8. */
  ridgeEps?: number;
  /** Write the inverses here (f32, K's shape). */
  out?: Tensor;
  /** Per-matrix status (i32 [batch]): 0 ok, i > 0 minor i not positive definite, -1 non-finite. */
  info?: Tensor;
}

/**
 * (K + ridge I)^-1 by Cholesky for a [d, d] matrix or each of a [batch, d, d] batch (f32).
 * A matrix whose factorisation fails gets the identity; `info` says which (read it to know).
 */
export function choleskyInverse(k: Tensor, opts: CholeskyInverseOptions = {}): { inverse: Tensor; info: Tensor } {
  checkTensor(k, 'choleskyInverse: k');
  checkF32(k, 'choleskyInverse: k');
  const [batch, d, d2] = matrixBatch(k, 'choleskyInverse: k');
  if (d !== d2) throw new RangeError(`choleskyInverse: k must hold square matrices, got ${k.toString()}`);
  const ridge = checkFiniteNumber(opts.ridge ?? 0.2, 'choleskyInverse: ridge');
  const ridgeEps = checkFiniteNumber(opts.ridgeEps ?? 1e-8, 'choleskyInverse: ridgeEps');
  const inverse = opts.out ?? empty(k.shape, { dtype: 'f32', device: k.device });
  checkTensor(inverse, 'choleskyInverse: out');
  checkF32(inverse, 'choleskyInverse: out');
  if (!sameShape(inverse.shape, k.shape)) throw new RangeError(`choleskyInverse: out has shape ${formatShape(inverse.shape)}, expected ${formatShape(k.shape)}`);
  const info = opts.info ?? empty([batch], { dtype: 'i32', device: k.device });
  checkTensor(info, 'choleskyInverse: info');
  if (info.dtype !== 'i32' || info.numel !== batch) throw new TypeError(`choleskyInverse: info must be i32 with ${batch} elements, got ${info.toString()}`);
  checkDevices('choleskyInverse', { k, out: inverse, info });
  native.choleskyInverse(inverse.handle('choleskyInverse'), inverse.byteOffset, k.handle('choleskyInverse'), k.byteOffset,
    info.handle('choleskyInverse'), info.byteOffset, batch, d, ridge, ridgeEps);
  return { inverse, info };
}
