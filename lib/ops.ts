// Typed op functions: every argument is checked (type, disposal, device, dtype, shape) and a
// clear error thrown before anything is enqueued; then exactly one native call.
import { checkDtype, Dtype, dtypeCode, dtypeSize, isFloatDtype } from './dtype';
import { native } from './native';
import { describe, formatShape, sameShape } from './shape';
import { checkValueFits, empty, Tensor } from './tensor';

const BINARY_CODES = { add: 0, sub: 1, mul: 2 } as const;

/** Checks that value is a live Tensor; throws naming `what`. */
export function checkTensor(value: unknown, what: string): Tensor {
  if (!(value instanceof Tensor)) throw new TypeError(`${what}: expected a Tensor, got ${describe(value)}`);
  if (value.isDisposed) throw new Error(`${what}: ${value.toString()} was already disposed`);
  return value;
}

function checkFloat(t: Tensor, what: string): void {
  if (!isFloatDtype(t.dtype)) throw new TypeError(`${what}: expected dtype f32 or bf16, got ${t.toString()}`);
}

function checkSameDevice(op: string, named: Record<string, Tensor>): void {
  const entries = Object.entries(named);
  const [firstName, first] = entries[0];
  for (const [name, t] of entries.slice(1)) {
    if (t.device !== first.device) {
      throw new Error(`${op}: ${name} is on ${t.device} but ${firstName} is on ${first.device}; move one with await t.to(device)`);
    }
  }
}

function checkSameLayout(op: string, a: Tensor, aName: string, b: Tensor, bName: string): void {
  if (!sameShape(a.shape, b.shape)) {
    throw new RangeError(`${op}: ${bName} has shape ${formatShape(b.shape)} but ${aName} has ${formatShape(a.shape)}; they must match`);
  }
  if (a.dtype !== b.dtype) throw new TypeError(`${op}: ${bName} is ${b.dtype} but ${aName} is ${a.dtype}; they must match`);
}

function checkNumber(value: unknown, what: string): number {
  if (typeof value !== 'number' || Number.isNaN(value)) throw new TypeError(`${what} must be a number, got ${describe(value)}`);
  return value;
}

function binary(op: keyof typeof BINARY_CODES, a: Tensor, b: Tensor): Tensor {
  checkTensor(a, `${op}: a`);
  checkTensor(b, `${op}: b`);
  checkFloat(a, `${op}: a`);
  checkSameLayout(op, a, 'a', b, 'b');
  checkSameDevice(op, { a, b });
  const out = empty(a.shape, { dtype: a.dtype, device: a.device });
  native.binary(BINARY_CODES[op], out.handle(op), out.byteOffset, a.handle(op), a.byteOffset,
    b.handle(op), b.byteOffset, dtypeCode(a.dtype), a.numel);
  return out;
}

/** a + b elementwise (same shape and float dtype; math in f32). */
export const add = (a: Tensor, b: Tensor): Tensor => binary('add', a, b);
/** a - b elementwise. */
export const sub = (a: Tensor, b: Tensor): Tensor => binary('sub', a, b);
/** a * b elementwise. */
export const mul = (a: Tensor, b: Tensor): Tensor => binary('mul', a, b);

/** alpha * x, as a new tensor. */
export function scale(x: Tensor, alpha: number): Tensor {
  checkTensor(x, 'scale: x');
  checkFloat(x, 'scale: x');
  checkNumber(alpha, 'scale: alpha');
  const out = empty(x.shape, { dtype: x.dtype, device: x.device });
  native.scale(out.handle('scale'), out.byteOffset, x.handle('scale'), x.byteOffset, alpha, dtypeCode(x.dtype), x.numel);
  return out;
}

/** y += alpha * x, in place; returns y. */
export function axpy(y: Tensor, x: Tensor, alpha: number): Tensor {
  checkTensor(y, 'axpy: y');
  checkTensor(x, 'axpy: x');
  checkFloat(y, 'axpy: y');
  checkSameLayout('axpy', y, 'y', x, 'x');
  checkSameDevice('axpy', { y, x });
  checkNumber(alpha, 'axpy: alpha');
  native.axpy(y.handle('axpy'), y.byteOffset, x.handle('axpy'), x.byteOffset, alpha, dtypeCode(y.dtype), y.numel);
  return y;
}

function reduce(x: Tensor, squares: boolean, op: string): Tensor {
  checkTensor(x, `${op}: x`);
  checkFloat(x, `${op}: x`);
  const out = empty([], { dtype: 'f32', device: x.device });
  native.reduce(out.handle(op), out.byteOffset, x.handle(op), x.byteOffset, dtypeCode(x.dtype), x.numel, squares);
  return out;
}

/** Sum of all elements, as a scalar f32 tensor (deterministic order). */
export const sum = (x: Tensor): Tensor => reduce(x, false, 'sum');
/** Sum of squares of all elements, as a scalar f32 tensor. */
export const sumOfSquares = (x: Tensor): Tensor => reduce(x, true, 'sumOfSquares');

/** Sets every element of x to value, in place; returns x. */
export function fill(x: Tensor, value: number): Tensor {
  checkTensor(x, 'fill: x');
  if (typeof value !== 'number') throw new TypeError(`fill: value must be a number, got ${describe(value)}`);
  checkValueFits(value, x.dtype, 'fill: value');
  native.fill(x.handle('fill'), x.byteOffset, dtypeCode(x.dtype), x.numel, value);
  return x;
}

/** Copies src into dst (same dtype and element count; shapes may differ), in place; returns dst. */
export function copy(dst: Tensor, src: Tensor): Tensor {
  checkTensor(dst, 'copy: dst');
  checkTensor(src, 'copy: src');
  checkSameDevice('copy', { dst, src });
  if (dst.dtype !== src.dtype) throw new TypeError(`copy: src is ${src.dtype} but dst is ${dst.dtype}; use cast()`);
  if (dst.numel !== src.numel) {
    throw new RangeError(`copy: src has ${src.numel} elements ${formatShape(src.shape)} but dst has ${dst.numel} ${formatShape(dst.shape)}`);
  }
  native.copy(dst.handle('copy'), dst.byteOffset, src.handle('copy'), src.byteOffset, src.byteLength);
  return dst;
}

const CASTS: ReadonlySet<string> = new Set(['f32>bf16', 'bf16>f32', 'f32>f32', 'bf16>bf16', 'u16>i32', 'i32>f32']);

/** x converted to dtype, as a new tensor (f32 -> bf16 rounds to nearest even). */
export function cast(x: Tensor, dtype: Dtype): Tensor {
  checkTensor(x, 'cast: x');
  const target = checkDtype(dtype, 'cast: dtype');
  if (!CASTS.has(`${x.dtype}>${target}`)) {
    throw new TypeError(`cast: ${x.dtype} -> ${target} is not supported (supported: f32<->bf16, u16->i32, i32->f32)`);
  }
  const out = empty(x.shape, { dtype: target, device: x.device });
  native.cast(out.handle('cast'), out.byteOffset, dtypeCode(target), x.handle('cast'), x.byteOffset, dtypeCode(x.dtype), x.numel);
  return out;
}

export interface RowBlock {
  /** First row and column of the block in src. Default 0. */
  srcRow?: number; srcCol?: number;
  /** Where the block lands in dst. Default 0. */
  dstRow?: number; dstCol?: number;
  /** Block size. Default: all of src from (srcRow, srcCol). */
  rows?: number; cols?: number;
}

function as2d(t: Tensor, what: string): [number, number] {
  if (t.shape.length !== 2) throw new RangeError(`${what}: expected a 2-D tensor, got ${t.toString()}`);
  return [t.shape[0], t.shape[1]];
}

function checkIndex(value: number | undefined, fallback: number, what: string): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${what} must be a non-negative integer, got ${describe(value)}`);
  return v;
}

/**
 * Copies the block src[srcRow : srcRow+rows, srcCol : srcCol+cols] into dst at (dstRow, dstCol):
 * strided row-slices of 2-D tensors (same dtype, same device); returns dst.
 */
export function copyRows(dst: Tensor, src: Tensor, block: RowBlock = {}): Tensor {
  checkTensor(dst, 'copyRows: dst');
  checkTensor(src, 'copyRows: src');
  checkSameDevice('copyRows', { dst, src });
  if (dst.dtype !== src.dtype) throw new TypeError(`copyRows: src is ${src.dtype} but dst is ${dst.dtype}`);
  const [srcRows, srcCols] = as2d(src, 'copyRows: src');
  const [dstRows, dstCols] = as2d(dst, 'copyRows: dst');
  const srcRow = checkIndex(block.srcRow, 0, 'copyRows: srcRow');
  const srcCol = checkIndex(block.srcCol, 0, 'copyRows: srcCol');
  const dstRow = checkIndex(block.dstRow, 0, 'copyRows: dstRow');
  const dstCol = checkIndex(block.dstCol, 0, 'copyRows: dstCol');
  const rows = checkIndex(block.rows, Math.max(0, srcRows - srcRow), 'copyRows: rows');
  const cols = checkIndex(block.cols, Math.max(0, srcCols - srcCol), 'copyRows: cols');
  if (srcRow + rows > srcRows || srcCol + cols > srcCols) {
    throw new RangeError(`copyRows: block rows [${srcRow}, ${srcRow + rows}) x cols [${srcCol}, ${srcCol + cols}) is outside src ${formatShape(src.shape)}`);
  }
  if (dstRow + rows > dstRows || dstCol + cols > dstCols) {
    throw new RangeError(`copyRows: block rows [${dstRow}, ${dstRow + rows}) x cols [${dstCol}, ${dstCol + cols}) is outside dst ${formatShape(dst.shape)}`);
  }
  if (rows === 0 || cols === 0) return dst;
  const size = dtypeSize(src.dtype);
  native.copyRows(dst.handle('copyRows'), dst.byteOffset + (dstRow * dstCols + dstCol) * size, dstCols * size,
    src.handle('copyRows'), src.byteOffset + (srcRow * srcCols + srcCol) * size, srcCols * size, rows, cols * size);
  return dst;
}

export interface GemmOptions {
  transA?: boolean;
  transB?: boolean;
  /** Scale of the product. Default 1. */
  alpha?: number;
  /** Scale of c's previous contents (0: c is overwritten and never read). Default 0. */
  beta?: number;
}

interface MatmulPlan {
  batch: number; m: number; n: number; k: number;
  aRows: number; aCols: number; bRows: number; bCols: number;
}

/** Checks a/b (2-D, or 3-D with equal batch) for op(a) @ op(b); returns the sizes. */
function planMatmul(op: string, a: Tensor, b: Tensor, transA: boolean, transB: boolean): MatmulPlan {
  checkTensor(a, `${op}: a`);
  checkTensor(b, `${op}: b`);
  checkFloat(a, `${op}: a`);
  if (a.dtype !== b.dtype) throw new TypeError(`${op}: a is ${a.dtype} but b is ${b.dtype}; they must match`);
  checkSameDevice(op, { a, b });
  const rank = a.shape.length;
  if ((rank !== 2 && rank !== 3) || b.shape.length !== rank) {
    throw new RangeError(`${op}: a and b must both be 2-D (or both 3-D for a batch), got a ${formatShape(a.shape)} and b ${formatShape(b.shape)}`);
  }
  const batch = rank === 3 ? a.shape[0] : 1;
  if (rank === 3 && b.shape[0] !== batch) {
    throw new RangeError(`${op}: batch sizes differ: a ${formatShape(a.shape)} vs b ${formatShape(b.shape)}`);
  }
  if (batch === 0) throw new RangeError(`${op}: batch size must be at least 1`);
  const [aRows, aCols] = a.shape.slice(-2);
  const [bRows, bCols] = b.shape.slice(-2);
  const [m, k] = transA ? [aCols, aRows] : [aRows, aCols];
  const [kb, n] = transB ? [bCols, bRows] : [bRows, bCols];
  if (k !== kb) {
    throw new RangeError(`${op}: inner dimensions differ: op(a) is [${m}, ${k}] (a ${formatShape(a.shape)}${transA ? ' transposed' : ''}) ` +
      `but op(b) is [${kb}, ${n}] (b ${formatShape(b.shape)}${transB ? ' transposed' : ''})`);
  }
  return { batch, m, n, k, aRows, aCols, bRows, bCols };
}

function launchGemm(op: string, c: Tensor, a: Tensor, b: Tensor, p: MatmulPlan, transA: boolean, transB: boolean, alpha: number, beta: number): void {
  native.gemm({
    a: a.handle(op), aOffset: a.byteOffset, b: b.handle(op), bOffset: b.byteOffset, c: c.handle(op), cOffset: c.byteOffset,
    transA, transB, m: p.m, n: p.n, k: p.k, alpha, beta,
    lda: p.aCols, ldb: p.bCols, ldc: p.n,
    strideA: p.aRows * p.aCols, strideB: p.bRows * p.bCols, strideC: p.m * p.n,
    batch: p.batch, abDtype: dtypeCode(a.dtype), cDtype: dtypeCode(c.dtype),
  });
}

/**
 * c = alpha * op(a) @ op(b) + beta * c, in place (2-D, or 3-D batched); returns c.
 * a and b share a float dtype; c may be f32 or bf16; accumulation is f32.
 */
export function gemm(c: Tensor, a: Tensor, b: Tensor, opts: GemmOptions = {}): Tensor {
  const transA = Boolean(opts.transA);
  const transB = Boolean(opts.transB);
  const p = planMatmul('gemm', a, b, transA, transB);
  checkTensor(c, 'gemm: c');
  checkFloat(c, 'gemm: c');
  checkSameDevice('gemm', { a, c });
  const expected = a.shape.length === 3 ? [p.batch, p.m, p.n] : [p.m, p.n];
  if (!sameShape(c.shape, expected)) {
    throw new RangeError(`gemm: c has shape ${formatShape(c.shape)} but op(a) @ op(b) is ${formatShape(expected)}`);
  }
  const alpha = checkNumber(opts.alpha ?? 1, 'gemm: alpha');
  const beta = checkNumber(opts.beta ?? 0, 'gemm: beta');
  launchGemm('gemm', c, a, b, p, transA, transB, alpha, beta);
  return c;
}

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  /** Output dtype. Default: the inputs'. */
  outDtype?: Dtype;
}

/** op(a) @ op(b) as a new tensor (2-D, or 3-D batched: [batch, m, n]). */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const transA = Boolean(opts.transA);
  const transB = Boolean(opts.transB);
  const p = planMatmul('matmul', a, b, transA, transB);
  const outDtype = opts.outDtype === undefined ? a.dtype : checkDtype(opts.outDtype, 'matmul: outDtype');
  if (!isFloatDtype(outDtype)) throw new TypeError(`matmul: outDtype must be f32 or bf16, got '${outDtype}'`);
  const out = empty(a.shape.length === 3 ? [p.batch, p.m, p.n] : [p.m, p.n], { dtype: outDtype, device: a.device });
  launchGemm('matmul', out, a, b, p, transA, transB, 1, 0);
  return out;
}
