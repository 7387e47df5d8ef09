// Typed wrappers of the GPT-2 model ops: shape / dtype / device checks, then one native call.
// Activations are 2-D [n = B*T, width]; the fused qkv buffer is [n, 3C] laid out [B, T, 3, H, D].
import { checkDtype, Dtype, dtypeCode } from '../dtype';
import { native } from '../native';
import { checkTensor } from '../ops';
import { formatShape, sameShape } from '../shape';
import { empty, Tensor } from '../tensor';

/**
 * 'auto' | 'naive' | 'flash': exact softmax attention in f32 (on CUDA, 'auto' picks 'flash' for
 * head dim 64, 'naive' otherwise). 'flash-bf16': bf16 operands (q, k, v, dout and the
 * probabilities / dS rounded to bf16 before their products, f32 accumulation; precisely as in
 * csrc/core/backend.h), tensor cores on CUDA (head dim 64 only), any head dim on the CPU. Never
 * chosen by 'auto'.
 */
export type AttentionAlgo = 'auto' | 'naive' | 'flash' | 'flash-bf16';
const ALGO_CODES: Record<AttentionAlgo, number> = { auto: 0, naive: 1, flash: 2, 'flash-bf16': 3 };
/** Every attention algorithm name, in code order. */
export const ATTENTION_ALGOS = Object.keys(ALGO_CODES) as readonly AttentionAlgo[];

function need(t: Tensor, what: string, shape: readonly number[], dtype: Dtype): void {
  checkTensor(t, what);
  if (!sameShape(t.shape, shape)) throw new RangeError(`${what}: expected shape ${formatShape(shape)}, got ${t.toString()}`);
  if (t.dtype !== dtype) throw new TypeError(`${what}: expected dtype ${dtype}, got ${t.toString()}`);
}

function sameDevice(op: string, tensors: Tensor[]): void {
  for (const t of tensors.slice(1)) {
    if (t.device !== tensors[0].device) throw new Error(`${op}: tensors on ${tensors[0].device} and ${t.device}; all must share a device`);
  }
}

function rows2d(t: Tensor, what: string): [number, number] {
  checkTensor(t, what);
  if (t.shape.length !== 2) throw new RangeError(`${what}: expected a 2-D [rows, width] tensor, got ${t.toString()}`);
  return [t.shape[0], t.shape[1]];
}

function outDtypeOf(value: Dtype | undefined, what: string): Dtype {
  const d = value === undefined ? 'f32' : checkDtype(value, what);
  if (d !== 'f32' && d !== 'bf16') throw new TypeError(`${what}: must be 'f32' or 'bf16', got '${d}'`);
  return d;
}

function algoCode(algo: AttentionAlgo | undefined): number {
  const a = algo ?? 'auto';
  if (typeof a !== 'string' || !Object.prototype.hasOwnProperty.call(ALGO_CODES, a)) {
    throw new TypeError(`attention: algo must be 'auto', 'naive', 'flash' or 'flash-bf16', got ${JSON.stringify(algo)}`);
  }
  return ALGO_CODES[a];
}

/** wte[ids[i]] for every i: [n, C]. ids (i32 [n]) must lie in [0, vocab): the caller checks. */
export function embeddingForward(wte: Tensor, ids: Tensor, out?: Tensor): Tensor {
  const [vocab, c] = rows2d(wte, 'embeddingForward: wte');
  checkTensor(ids, 'embeddingForward: ids');
  if (ids.dtype !== 'i32' || ids.shape.length !== 1) throw new TypeError(`embeddingForward: ids must be a 1-D i32 tensor, got ${ids.toString()}`);
  const n = ids.numel;
  const result = out ?? empty([n, c], { device: wte.device });
  need(result, 'embeddingForward: out', [n, c], 'f32');
  need(wte, 'embeddingForward: wte', [vocab, c], 'f32');
  sameDevice('embeddingForward', [wte, ids, result]);
  native.embeddingForward(result.handle('embeddingForward'), result.byteOffset, wte.handle('embeddingForward'), wte.byteOffset,
    ids.handle('embeddingForward'), ids.byteOffset, n, c, vocab);
  return result;
}

/** dwte[v] += sum of dout rows whose id is v (deterministic order). Returns dwte. */
export function embeddingBackward(dwte: Tensor, dout: Tensor, ids: Tensor): Tensor {
  const [vocab, c] = rows2d(dwte, 'embeddingBackward: dwte');
  need(dwte, 'embeddingBackward: dwte', [vocab, c], 'f32');
  checkTensor(ids, 'embeddingBackward: ids');
  if (ids.dtype !== 'i32' || ids.shape.length !== 1) throw new TypeError(`embeddingBackward: ids must be a 1-D i32 tensor, got ${ids.toString()}`);
  need(dout, 'embeddingBackward: dout', [ids.numel, c], 'f32');
  sameDevice('embeddingBackward', [dwte, dout, ids]);
  native.embeddingBackward(dwte.handle('embeddingBackward'), dwte.byteOffset, dout.handle('embeddingBackward'), dout.byteOffset,
    ids.handle('embeddingBackward'), ids.byteOffset, ids.numel, c, vocab);
  return dwte;
}

export interface RmsnormOptions {
  /** Default 1e-6 (the spec's). */
  eps?: number;
  /** Dtype of the normalised output (the next GEMM's operand). Default f32. */
  outDtype?: Dtype;
  out?: Tensor;
  rstd?: Tensor;
}

/** Weightless RMSNorm of each row of x (f32 [n, C]): { out, rstd [n] }. */
export function rmsnormForward(x: Tensor, opts: RmsnormOptions = {}): { out: Tensor; rstd: Tensor } {
  const [n, c] = rows2d(x, 'rmsnormForward: x');
  need(x, 'rmsnormForward: x', [n, c], 'f32');
  const outDtype = outDtypeOf(opts.outDtype ?? opts.out?.dtype, 'rmsnormForward: outDtype');
  const eps = opts.eps ?? 1e-6;
  if (!Number.isFinite(eps) || eps < 0) throw new RangeError(`rmsnormForward: eps must be a finite number >= 0, got ${eps}`);
  const out = opts.out ?? empty([n, c], { dtype: outDtype, device: x.device });
  const rstd = opts.rstd ?? empty([n], { device: x.device });
  need(out, 'rmsnormForward: out', [n, c], outDtype);
  need(rstd, 'rmsnormForward: rstd', [n], 'f32');
  sameDevice('rmsnormForward', [x, out, rstd]);
  native.rmsnormForward(out.handle('rmsnormForward'), out.byteOffset, dtypeCode(outDtype), rstd.handle('rmsnormForward'), rstd.byteOffset,
    x.handle('rmsnormForward'), x.byteOffset, n, c, eps);
  return { out, rstd };
}

/** dx (=|+=) d rmsnorm(x) / dx applied to dout. Returns dx (new unless `into` is given). */
export function rmsnormBackward(dout: Tensor, x: Tensor, rstd: Tensor, opts: { into?: Tensor; accumulate?: boolean } = {}): Tensor {
  const [n, c] = rows2d(x, 'rmsnormBackward: x');
  need(x, 'rmsnormBackward: x', [n, c], 'f32');
  need(dout, 'rmsnormBackward: dout', [n, c], 'f32');
  need(rstd, 'rmsnormBackward: rstd', [n], 'f32');
  if (opts.accumulate && !opts.into) throw new TypeError('rmsnormBackward: accumulate needs `into`');
  const dx = opts.into ?? empty([n, c], { device: x.device });
  need(dx, 'rmsnormBackward: into', [n, c], 'f32');
  sameDevice('rmsnormBackward', [dout, x, rstd, dx]);
  native.rmsnormBackward(dx.handle('rmsnormBackward'), dx.byteOffset, dout.handle('rmsnormBackward'), dout.byteOffset,
    x.handle('rmsnormBackward'), x.byteOffset, rstd.handle('rmsnormBackward'), rstd.byteOffset, n, c, Boolean(opts.accumulate));
  return dx;
}

/** Exact (erf) GELU of x (f32), output f32 or bf16. */
export function geluForward(x: Tensor, opts: { outDtype?: Dtype; out?: Tensor } = {}): Tensor {
  checkTensor(x, 'geluForward: x');
  if (x.dtype !== 'f32') throw new TypeError(`geluForward: x must be f32, got ${x.toString()}`);
  const outDtype = outDtypeOf(opts.outDtype ?? opts.out?.dtype, 'geluForward: outDtype');
  const out = opts.out ?? empty(x.shape, { dtype: outDtype, device: x.device });
  need(out, 'geluForward: out', x.shape, outDtype);
  sameDevice('geluForward', [x, out]);
  native.geluForward(out.handle('geluForward'), out.byteOffset, dtypeCode(outDtype), x.handle('geluForward'), x.byteOffset, x.numel);
  return out;
}

/** dout * GELU'(x), as a new f32 tensor (or into `into`). */
export function geluBackward(dout: Tensor, x: Tensor, into?: Tensor): Tensor {
  checkTensor(x, 'geluBackward: x');
  need(x, 'geluBackward: x', x.shape, 'f32');
  need(dout, 'geluBackward: dout', x.shape, 'f32');
  const dx = into ?? empty(x.shape, { device: x.device });
  need(dx, 'geluBackward: into', x.shape, 'f32');
  sameDevice('geluBackward', [dout, x, dx]);
  native.geluBackward(dx.handle('geluBackward'), dx.byteOffset, dout.handle('geluBackward'), dout.byteOffset, x.handle('geluBackward'), x.byteOffset, x.numel);
  return dx;
}

export interface AttentionShape {
  b: number;
  t: number;
  heads: number;
}

function checkQkv(qkv: Tensor, what: string, s: AttentionShape): { c: number; headDim: number } {
  const [n, width] = rows2d(qkv, what);
  for (const [k, v] of Object.entries(s)) {
    if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`${what}: ${k} must be a positive integer, got ${v}`);
  }
  if (n !== s.b * s.t) throw new RangeError(`${what}: has ${n} rows, expected b*t = ${s.b * s.t}`);
  if (width % 3 !== 0 || (width / 3) % s.heads !== 0) throw new RangeError(`${what}: width ${width} is not 3 * heads(${s.heads}) * headDim`);
  if (qkv.dtype !== 'f32') throw new TypeError(`${what}: must be f32, got ${qkv.toString()}`);
  const c = width / 3;
  const headDim = c / s.heads;
  if (headDim % 2 !== 0) throw new RangeError(`${what}: head dim ${headDim} must be even (rotary halves)`);
  return { c, headDim };
}

/** Rotary embedding in place on the q and k parts of qkv; `inverse` applies the backward. */
export function rotary(qkv: Tensor, s: AttentionShape, opts: { base?: number; inverse?: boolean } = {}): Tensor {
  const { headDim } = checkQkv(qkv, 'rotary: qkv', s);
  const base = opts.base ?? 10000;
  if (!Number.isFinite(base) || base <= 1) throw new RangeError(`rotary: base must be > 1, got ${base}`);
  native.rotary(qkv.handle('rotary'), qkv.byteOffset, s.b, s.t, s.heads, headDim, base, Boolean(opts.inverse));
  return qkv;
}

/** Causal attention from the fused qkv [n, 3C]: { out [n, C], lse [b, heads, t] }. */
export function attentionForward(qkv: Tensor, s: AttentionShape, opts: { algo?: AttentionAlgo; scale?: number; out?: Tensor; lse?: Tensor } = {}): { out: Tensor; lse: Tensor } {
  const { c, headDim } = checkQkv(qkv, 'attentionForward: qkv', s);
  const algo = algoCode(opts.algo);
  const scale = opts.scale ?? 1 / Math.sqrt(headDim);
  const out = opts.out ?? empty([s.b * s.t, c], { device: qkv.device });
  const lse = opts.lse ?? empty([s.b, s.heads, s.t], { device: qkv.device });
  need(out, 'attentionForward: out', [s.b * s.t, c], 'f32');
  need(lse, 'attentionForward: lse', [s.b, s.heads, s.t], 'f32');
  sameDevice('attentionForward', [qkv, out, lse]);
  native.attentionForward(out.handle('attentionForward'), out.byteOffset, lse.handle('attentionForward'), lse.byteOffset,
    qkv.handle('attentionForward'), qkv.byteOffset, s.b, s.t, s.heads, headDim, scale, algo);
  return { out, lse };
}

/** d qkv [n, 3C] from dout [n, C] and the forward's qkv, out, lse. */
export function attentionBackward(dout: Tensor, qkv: Tensor, out: Tensor, lse: Tensor, s: AttentionShape,
  opts: { algo?: AttentionAlgo; scale?: number; into?: Tensor } = {}): Tensor {
  const { c, headDim } = checkQkv(qkv, 'attentionBackward: qkv', s);
  const algo = algoCode(opts.algo);
  const scale = opts.scale ?? 1 / Math.sqrt(headDim);
  need(dout, 'attentionBackward: dout', [s.b * s.t, c], 'f32');
  need(out, 'attentionBackward: out', [s.b * s.t, c], 'f32');
  need(lse, 'attentionBackward: lse', [s.b, s.heads, s.t], 'f32');
  const dqkv = opts.into ?? empty(qkv.shape, { device: qkv.device });
  need(dqkv, 'attentionBackward: into', qkv.shape, 'f32');
  sameDevice('attentionBackward', [dout, qkv, out, lse, dqkv]);
  native.attentionBackward(dqkv.handle('attentionBackward'), dqkv.byteOffset, dout.handle('attentionBackward'), dout.byteOffset,
    qkv.handle('attentionBackward'), qkv.byteOffset, out.handle('attentionBackward'), out.byteOffset,
    lse.handle('attentionBackward'), lse.byteOffset, s.b, s.t, s.heads, headDim, scale, algo);
  return dqkv;
}

/**
 * Per-row softmax cross-entropy of logits (f32 [n, V]) against targets (i32 [n]): returns losses
 * [n]. With gradScale != 0 the logits are overwritten by gradScale * (softmax - onehot).
 */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: { gradScale?: number; losses?: Tensor } = {}): Tensor {
  const [n, vocab] = rows2d(logits, 'crossEntropy: logits');
  need(logits, 'crossEntropy: logits', [n, vocab], 'f32');
  need(targets, 'crossEntropy: targets', [n], 'i32');
  const gradScale = opts.gradScale ?? 0;
  if (!Number.isFinite(gradScale)) throw new RangeError(`crossEntropy: gradScale must be finite, got ${gradScale}`);
  const losses = opts.losses ?? empty([n], { device: logits.device });
  need(losses, 'crossEntropy: losses', [n], 'f32');
  sameDevice('crossEntropy', [logits, targets, losses]);
  native.crossEntropy(losses.handle('crossEntropy'), losses.byteOffset, logits.handle('crossEntropy'), logits.byteOffset,
    targets.handle('crossEntropy'), targets.byteOffset, n, vocab, gradScale);
  return losses;
}
