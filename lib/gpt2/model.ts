// GPT-2 (the speedrun architecture) built from the native ops: forward, backward, flat
// parameter and gradient buffers, the Newton-Muon input hook, safetensors import/export.
//
// Precision: the CPU computes everything in f32. On CUDA the default is mixed precision as in
// the spec: GEMM operands in bf16 (weights cast from the f32 masters once per call, activations
// written in bf16 by the op that produces them), f32 accumulation, f32 residual stream, norms,
// attention and loss. loss() (evaluation) always computes in f32.
import { Dtype } from '../dtype';
import { DeviceName, DeviceSpec, resolveDevice } from '../device';
import { native } from '../native';
import { add, axpy, cast, checkTensor, copy, fill, gemm, matmul, scale, sum } from '../ops';
import { uniformSamples } from '../random';
import { untracked } from '../scope';
import { formatShape, sameShape } from '../shape';
import { empty, tensor, Tensor, zeros } from '../tensor';
import { checkConfig, GPT2Config, LM_HEAD_ALIAS, parameterSpecs, ParamSpec, WTE } from './config';
import {
  attentionBackward, AttentionAlgo, attentionForward, crossEntropy, embeddingBackward, embeddingForward, geluBackward,
  geluForward, rmsnormBackward, rmsnormForward, rotary,
} from './ops';
import { readSafetensors, writeSafetensors } from './safetensors';

export interface GPT2Options {
  device?: DeviceSpec;
  /** Seed of the deterministic initialisation. Default 0. */
  seed?: number;
  /** 'bf16' (mixed precision, the CUDA default) or 'f32' (the CPU default; CPU only supports f32). */
  precision?: 'f32' | 'bf16';
  /** Attention implementation on CUDA. Default 'auto'. */
  attention?: AttentionAlgo;
}

export interface ForwardBackwardOptions {
  /** Gradients are scaled by this (e.g. 1 / micro-batches when accumulating). Default 1. */
  gradScale?: number;
  /**
   * Newton-Muon hook: called with each Muon matrix's name and its input for this micro-batch
   * ([B*T, d_in], a tensor valid during the call only). Only pass it on steps that collect.
   */
  observeInputs?: (name: string, input: Tensor) => void;
}

type TokenInput = Int32Array | Tensor;

const RMS_EPS = 1e-6;
const ROPE_BASE = 10000;
/** Logit rows per chunk: bounds the [rows, vocab] f32 buffer to ~256 MB. */
const LOGIT_ELEMENTS = 1 << 26;

interface LayerActivations {
  x: Tensor; rstd1: Tensor; a1: Tensor; qkv: Tensor; att: Tensor; attC: Tensor; lse: Tensor;
  xMid: Tensor; rstd2: Tensor; a2: Tensor; h: Tensor; g: Tensor;
}

export class GPT2 {
  readonly config: Required<GPT2Config>;
  readonly device: DeviceName;
  readonly precision: 'f32' | 'bf16';
  readonly attention: AttentionAlgo;
  private readonly specs: ParamSpec[];
  private readonly paramFlat: Tensor;
  private readonly gradFlat: Tensor;
  private readonly params: Record<string, Tensor> = {};
  private readonly gradients: Record<string, Tensor> = {};
  private disposed = false;

  constructor(config: GPT2Config, opts: GPT2Options = {}) {
    this.config = checkConfig(config);
    this.device = resolveDevice(opts.device, 'GPT2: device');
    const precision = opts.precision ?? (this.device === 'cuda' ? 'bf16' : 'f32');
    if (precision !== 'f32' && precision !== 'bf16') throw new TypeError(`GPT2: precision must be 'f32' or 'bf16', got ${String(precision)}`);
    this.precision = precision;
    this.attention = opts.attention ?? 'auto';
    const seed = opts.seed ?? 0;
    if (!Number.isSafeInteger(seed)) throw new TypeError(`GPT2: seed must be an integer, got ${String(seed)}`);
    this.specs = parameterSpecs(this.config);
    // Tensor i is drawn from the stream seed * 1009 + i, which must stay a safe integer.
    if (!Number.isSafeInteger(seed * 1009 + this.specs.length) || !Number.isSafeInteger(seed * 1009)) {
      throw new RangeError(`GPT2: seed must lie within +-${Math.floor(Number.MAX_SAFE_INTEGER / 1009) - this.specs.length}, got ${seed}`);
    }
    const total = this.specs.reduce((n, s) => n + s.shape[0] * s.shape[1], 0);
    // Model buffers belong to the model, not to any enclosing scope().
    [this.paramFlat, this.gradFlat] = untracked(() => [empty([total], { device: this.device }), zeros([total], { device: this.device })]);
    untracked(() => {
      let offset = 0;
      this.specs.forEach((spec, i) => {
        const numel = spec.shape[0] * spec.shape[1];
        this.params[spec.name] = flatView(this.paramFlat, offset, spec.shape);
        this.gradients[spec.name] = flatView(this.gradFlat, offset, spec.shape);
        // PyTorch Linear default init, one deterministic stream per tensor.
        const values = uniformSamples(numel, seed * 1009 + i, -spec.initBound, spec.initBound);
        native.upload(this.paramFlat.handle('GPT2'), this.paramFlat.byteOffset + offset * 4, values);
        offset += numel;
      });
    });
  }

  /** Number of parameters (the tied embedding counted once). */
  get parameterCount(): number {
    return this.paramFlat.numel;
  }

  /** Live parameter views by PyTorch name (f32). Do not dispose them. */
  stateDict(): Record<string, Tensor> {
    this.checkLive('stateDict');
    return { ...this.params };
  }

  /** Live gradient views, same names as stateDict(). Accumulated by forwardBackward. */
  grads(): Record<string, Tensor> {
    this.checkLive('grads');
    return { ...this.gradients };
  }

  /** The flat parameter and gradient buffers (one all-reduce / one optimizer launch can cover them). */
  flatBuffers(): { params: Tensor; grads: Tensor } {
    return { params: this.paramFlat, grads: this.gradFlat };
  }

  zeroGrad(): void {
    this.checkLive('zeroGrad');
    fill(this.gradFlat, 0);
  }

  /**
   * Replaces every parameter from a record of host arrays or tensors, after checking that no
   * name is missing, extra or misshaped ('lm_head.weight' is accepted for the tied embedding).
   */
  async loadStateDict(record: Record<string, Float32Array | Tensor>): Promise<void> {
    this.checkLive('loadStateDict');
    if (record === null || typeof record !== 'object') throw new TypeError('GPT2.loadStateDict: expected a record of tensors');
    const entries = new Map<string, Float32Array | Tensor>();
    for (const [name, value] of Object.entries(record)) {
      const key = name === LM_HEAD_ALIAS ? WTE : name;
      if (entries.has(key)) {
        if (key === WTE) continue; // both the embedding and its tied alias: take the first
        throw new RangeError(`GPT2.loadStateDict: '${name}' appears twice`);
      }
      entries.set(key, value);
    }
    for (const spec of this.specs) {
      const value = entries.get(spec.name);
      if (value === undefined) throw new RangeError(`GPT2.loadStateDict: missing tensor '${spec.name}' ${formatShape(spec.shape)}`);
      const numel = spec.shape[0] * spec.shape[1];
      if (value instanceof Tensor) {
        checkTensor(value, `GPT2.loadStateDict: '${spec.name}'`);
        if (!sameShape(value.shape, spec.shape) || value.dtype !== 'f32') {
          throw new RangeError(`GPT2.loadStateDict: '${spec.name}' is ${value.toString()}, expected f32 ${formatShape(spec.shape)}`);
        }
      } else if (!(value instanceof Float32Array) || value.length !== numel) {
        throw new RangeError(`GPT2.loadStateDict: '${spec.name}' has ${(value as { length?: number })?.length} values, expected a Float32Array of ${numel} ${formatShape(spec.shape)}`);
      }
    }
    const known = new Set(this.specs.map((s) => s.name));
    for (const name of entries.keys()) {
      if (!known.has(name)) throw new RangeError(`GPT2.loadStateDict: unexpected tensor '${name}' (not a parameter of this ${this.config.nLayer}-layer model)`);
    }
    for (const spec of this.specs) {
      const value = entries.get(spec.name)!;
      const target = this.params[spec.name];
      if (value instanceof Float32Array) native.upload(target.handle('loadStateDict'), target.byteOffset, value);
      else if (value.device === this.device) copy(target, value);
      else native.upload(target.handle('loadStateDict'), target.byteOffset, (await value.read()) as Float32Array);
    }
  }

  async saveSafetensors(file: string): Promise<void> {
    this.checkLive('saveSafetensors');
    const out: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const spec of this.specs) out[spec.name] = { shape: [...spec.shape], data: (await this.params[spec.name].read()) as Float32Array };
    writeSafetensors(file, out, { format: 'pt', config: JSON.stringify(this.config) });
  }

  async loadSafetensors(file: string): Promise<void> {
    this.checkLive('loadSafetensors');
    const entries = readSafetensors(file);
    const record: Record<string, Float32Array> = {};
    for (const [name, { shape, data }] of Object.entries(entries)) {
      const spec = this.specs.find((s) => s.name === (name === LM_HEAD_ALIAS ? WTE : name));
      if (spec && !sameShape(shape, spec.shape)) {
        throw new RangeError(`GPT2.loadSafetensors: ${file}: '${name}' has shape ${formatShape(shape)}, expected ${formatShape(spec.shape)}`);
      }
      record[name] = data;
    }
    try {
      await this.loadStateDict(record);
    } catch (error) {
      // Name the file: 'missing tensor' / 'unexpected tensor' are about its contents.
      if (error instanceof RangeError) throw new RangeError(`GPT2.loadSafetensors: ${file}: ${error.message.replace(/^GPT2\.loadStateDict: /, '')}`);
      throw error;
    }
  }

  /** Mean cross-entropy of the next-token predictions, forward only, in f32. */
  async loss(inputs: TokenInput, targets: TokenInput, B: number, T: number): Promise<number> {
    return this.run(inputs, targets, B, T, false, {});
  }

  /**
   * The f32 sum of the B*T token losses, forward only (loss() is it divided by B*T in double):
   * what a data-parallel evaluation gathers from every rank to form the single-process mean.
   */
  async lossSum(inputs: TokenInput, targets: TokenInput, B: number, T: number): Promise<number> {
    const total = this.compute(inputs, targets, B, T, false, {});
    try {
      return (await total.read())[0];
    } finally {
      total.dispose();
    }
  }

  /** Forward + backward: adds gradScale * d(mean loss)/d(params) into grads(); returns the mean loss. */
  async forwardBackward(inputs: TokenInput, targets: TokenInput, B: number, T: number, opts: ForwardBackwardOptions = {}): Promise<number> {
    return this.run(inputs, targets, B, T, true, opts);
  }

  /**
   * forwardBackward without the read-back: enqueues the work and returns the mean loss as a [1]
   * f32 tensor on the model's device (the caller disposes it). Gradient accumulation over many
   * micro-batches then needs no synchronisation until the caller reads a (summed) loss.
   */
  forwardBackwardLazy(inputs: TokenInput, targets: TokenInput, B: number, T: number, opts: ForwardBackwardOptions = {}): Tensor {
    const total = this.compute(inputs, targets, B, T, true, opts);
    try {
      return untracked(() => scale(total, 1 / (B * T)));
    } finally {
      total.dispose();
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of [...Object.values(this.params), ...Object.values(this.gradients), this.paramFlat, this.gradFlat]) t.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  // ---- the computation -----------------------------------------------------------------------

  private async run(inputs: TokenInput, targets: TokenInput, B: number, T: number, train: boolean, opts: ForwardBackwardOptions): Promise<number> {
    const total = this.compute(inputs, targets, B, T, train, opts);
    try {
      return (await total.read())[0] / (B * T); // the mean formed in double
    } finally {
      total.dispose();
    }
  }

  /** Checks the arguments, enqueues forward (and backward); returns the summed loss (a scalar f32 tensor, untracked). */
  private compute(inputs: TokenInput, targets: TokenInput, B: number, T: number, train: boolean, opts: ForwardBackwardOptions): Tensor {
    const op = train ? 'GPT2.forwardBackward' : 'GPT2.loss';
    this.checkLive(op);
    for (const [k, v] of [['B', B], ['T', T]] as const) {
      if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`${op}: ${k} must be a positive integer, got ${String(v)}`);
    }
    if (T > this.config.maxSeqLen) throw new RangeError(`${op}: T = ${T} exceeds the model's maxSeqLen ${this.config.maxSeqLen}`);
    const gradScale = opts.gradScale ?? 1;
    if (!Number.isFinite(gradScale)) throw new RangeError(`${op}: gradScale must be finite, got ${gradScale}`);
    if (opts.observeInputs !== undefined && typeof opts.observeInputs !== 'function') throw new TypeError(`${op}: observeInputs must be a function`);
    const temps: Tensor[] = [];
    const keep = <X extends Tensor>(t: X): X => {
      temps.push(t);
      return t;
    };
    try {
      const ids = keep(this.tokens(inputs, B * T, `${op}: inputs`));
      const tgt = keep(this.tokens(targets, B * T, `${op}: targets`));
      const lowp: Dtype = train ? this.precisionDtype() : 'f32';
      const weights = this.computeWeights(lowp, keep);
      const { acts, xFinal } = this.forward(ids, B, T, lowp, weights, train ? opts.observeInputs : undefined, keep, train);
      const lossSum = this.head(xFinal, tgt, lowp, weights[WTE], train ? gradScale / (B * T) : 0, keep);
      if (train) this.backward(ids, acts, lossSum.dxFinal!, lowp, weights, B, T);
      // The returned tensor outlives this call's temporaries: untracked, so no scope() frees it.
      return untracked(() => sum(lossSum.losses));
    } finally {
      for (const t of temps) t.dispose();
    }
  }

  private precisionDtype(): Dtype {
    if (this.precision === 'bf16') return 'bf16';
    return 'f32';
  }

  /** ids as an i32 tensor on this device, checking length and range (host data is checked fully). */
  private tokens(value: TokenInput, n: number, what: string): Tensor {
    if (value instanceof Int32Array) {
      if (value.length !== n) throw new RangeError(`${what}: has ${value.length} tokens, expected B*T = ${n}`);
      const vocab = this.config.vocabSize;
      for (let i = 0; i < n; i++) {
        const id = value[i];
        if (id < 0 || id >= vocab) throw new RangeError(`${what}[${i}] = ${id} is outside the vocabulary [0, ${vocab})`);
      }
      return tensor(value, [n], { dtype: 'i32', device: this.device });
    }
    checkTensor(value, what);
    if (value.dtype !== 'i32' || value.numel !== n) throw new RangeError(`${what}: expected an i32 tensor of B*T = ${n} tokens, got ${value.toString()}`);
    if (value.device !== this.device) throw new Error(`${what}: is on ${value.device} but the model is on ${this.device}`);
    // Device-resident ids cannot be range-checked without a sync: the caller vouches for them.
    const view = value.view([n]);
    return view;
  }

  /** The GEMM operand copies of the weights: the f32 masters themselves, or bf16 casts. */
  private computeWeights(dtype: Dtype, keep: (t: Tensor) => Tensor): Record<string, Tensor> {
    if (dtype === 'f32') return this.params;
    const out: Record<string, Tensor> = {};
    for (const [name, w] of Object.entries(this.params)) out[name] = keep(cast(w, dtype));
    return out;
  }

  /**
   * The blocks. With `retain` (training) every activation the backward pass reads is kept (via
   * `keep`, freed when the call ends); without it (loss(), evaluation) each layer's tensors are
   * freed as soon as the next layer's input exists, so evaluation holds one layer at a time.
   */
  private forward(ids: Tensor, B: number, T: number, lowp: Dtype, w: Record<string, Tensor>,
    observe: ((name: string, x: Tensor) => void) | undefined, keep: <X extends Tensor>(t: X) => X, retain: boolean): { acts: LayerActivations[]; xFinal: Tensor } {
    const { nLayer, nHead, nEmbd: C } = this.config;
    const shape = { b: B, t: T, heads: nHead };
    const residualScale = 1 / Math.sqrt(2 * nLayer);
    let x = embeddingForward(this.params[WTE], ids);
    const acts: LayerActivations[] = [];
    for (let l = 0; l < nLayer; l++) {
      const p = `transformer.h.${l}`;
      // Everything goes to `keep` (so an error anywhere frees it); without `retain` the layer's
      // tensors are also freed at the layer's end (dispose is idempotent).
      const layerTemps: Tensor[] = [keep(x)];
      const hold = <X extends Tensor>(t: X): X => {
        layerTemps.push(t);
        return keep(t);
      };
      const n1 = rmsnormForward(x, { eps: RMS_EPS, outDtype: lowp });
      const a1 = hold(n1.out);
      const rstd1 = hold(n1.rstd);
      observe?.(`${p}.attn.c_attn.weight`, a1);
      const qkv = hold(matmul(a1, w[`${p}.attn.c_attn.weight`], { transB: true, outDtype: 'f32' }));
      rotary(qkv, shape, { base: ROPE_BASE });
      const at = attentionForward(qkv, shape, { algo: this.attention });
      const att = hold(at.out);
      const lse = hold(at.lse);
      const attC = lowp === 'f32' ? att : hold(cast(att, lowp));
      observe?.(`${p}.attn.c_proj.weight`, attC);
      const y = matmul(attC, w[`${p}.attn.c_proj.weight`], { transB: true, outDtype: 'f32' });
      const xMid = hold(copy(empty([B * T, C], { device: this.device }), x));
      axpy(xMid, y, residualScale);
      y.dispose(); // not needed by backward: free it now (stream-ordered) to keep the peak down
      const n2 = rmsnormForward(xMid, { eps: RMS_EPS, outDtype: lowp });
      const a2 = hold(n2.out);
      const rstd2 = hold(n2.rstd);
      observe?.(`${p}.mlp.c_fc.weight`, a2);
      const h = hold(matmul(a2, w[`${p}.mlp.c_fc.weight`], { transB: true, outDtype: 'f32' }));
      const g = hold(geluForward(h, { outDtype: lowp }));
      observe?.(`${p}.mlp.c_proj.weight`, g);
      const z = matmul(g, w[`${p}.mlp.c_proj.weight`], { transB: true, outDtype: 'f32' });
      if (retain) acts.push({ x, rstd1, a1, qkv, att, attC, lse, xMid, rstd2, a2, h, g });
      x = keep(add(xMid, z));
      z.dispose();
      if (!retain) for (const t of layerTemps) t.dispose();
    }
    return { acts, xFinal: x };
  }

  /**
   * Final norm, tied head and cross-entropy, chunked over rows so the [rows, vocab] logits stay
   * bounded. With gradScale != 0 also returns d loss / d xFinal (and adds to dwte).
   */
  private head(xFinal: Tensor, targets: Tensor, lowp: Dtype, wte: Tensor, gradScale: number, keep: <X extends Tensor>(t: X) => X): { losses: Tensor; dxFinal?: Tensor } {
    const { nEmbd: C, vocabSize: V } = this.config;
    const n = xFinal.shape[0];
    const nf = rmsnormForward(xFinal, { eps: RMS_EPS, outDtype: lowp });
    const af = keep(nf.out);
    const rstdf = keep(nf.rstd);
    const losses = keep(empty([n], { device: this.device }));
    const train = gradScale !== 0;
    const daf = train ? keep(empty([n, C], { device: this.device })) : undefined;
    const rows = Math.max(1, Math.floor(LOGIT_ELEMENTS / V));
    for (let r0 = 0; r0 < n; r0 += rows) {
      const r1 = Math.min(n, r0 + rows);
      const afChunk = af.slice(r0, r1);
      const logits = matmul(afChunk, wte, { transB: true, outDtype: 'f32' });
      const tgtChunk = targets.slice(r0, r1);
      const lossChunk = losses.slice(r0, r1);
      crossEntropy(logits, tgtChunk, { gradScale, losses: lossChunk });
      if (train) {
        const dlogits = lowp === 'f32' ? logits : cast(logits, lowp);
        const dafChunk = daf!.slice(r0, r1);
        gemm(dafChunk, dlogits, wte);
        gemm(this.gradients[WTE], dlogits, afChunk, { transA: true, beta: 1 });
        dafChunk.dispose();
        if (dlogits !== logits) dlogits.dispose();
      }
      for (const t of [afChunk, logits, tgtChunk, lossChunk]) t.dispose();
    }
    if (!train) return { losses };
    const dxFinal = keep(rmsnormBackward(daf!, xFinal, rstdf));
    return { losses, dxFinal };
  }

  private backward(ids: Tensor, acts: LayerActivations[], dxFinal: Tensor, lowp: Dtype, w: Record<string, Tensor>,
    B: number, T: number): void {
    const { nLayer, nHead } = this.config;
    const shape = { b: B, t: T, heads: nHead };
    const residualScale = 1 / Math.sqrt(2 * nLayer);
    const grad = this.gradients;
    const dx = dxFinal; // d loss / d residual stream, updated in place layer by layer
    for (let l = nLayer - 1; l >= 0; l--) {
      const p = `transformer.h.${l}`;
      const a = acts[l];
      // This layer's gradient temporaries are freed when the layer is done (stream-ordered), so
      // the backward pass never holds more than one layer's worth of them.
      const layerTemps: Tensor[] = [];
      const tmp = <X extends Tensor>(t: X): X => {
        layerTemps.push(t);
        return t;
      };
      const low = (t: Tensor): Tensor => (lowp === 'f32' ? t : tmp(cast(t, lowp)));
      // MLP branch: x_next = xMid + c_proj(gelu(c_fc(rmsnorm(xMid)))).
      const dz = low(dx);
      gemm(grad[`${p}.mlp.c_proj.weight`], dz, a.g, { transA: true, beta: 1 });
      const dg = tmp(matmul(dz, w[`${p}.mlp.c_proj.weight`], { outDtype: 'f32' }));
      const dh = tmp(geluBackward(dg, a.h));
      const dhLow = low(dh);
      gemm(grad[`${p}.mlp.c_fc.weight`], dhLow, a.a2, { transA: true, beta: 1 });
      const da2 = tmp(matmul(dhLow, w[`${p}.mlp.c_fc.weight`], { outDtype: 'f32' }));
      rmsnormBackward(da2, a.xMid, a.rstd2, { into: dx, accumulate: true });
      // Attention branch: xMid = x + s * c_proj(attention(rotary(c_attn(rmsnorm(x))))).
      const dy = low(dx);
      gemm(grad[`${p}.attn.c_proj.weight`], dy, a.attC, { transA: true, beta: 1, alpha: residualScale });
      const datt = tmp(empty(a.att.shape, { device: this.device }));
      gemm(datt, dy, w[`${p}.attn.c_proj.weight`], { alpha: residualScale });
      const dqkv = tmp(attentionBackward(datt, a.qkv, a.att, a.lse, shape, { algo: this.attention }));
      rotary(dqkv, shape, { base: ROPE_BASE, inverse: true });
      const dqkvLow = low(dqkv);
      gemm(grad[`${p}.attn.c_attn.weight`], dqkvLow, a.a1, { transA: true, beta: 1 });
      const da1 = tmp(matmul(dqkvLow, w[`${p}.attn.c_attn.weight`], { outDtype: 'f32' }));
      rmsnormBackward(da1, a.x, a.rstd1, { into: dx, accumulate: true });
      for (const t of layerTemps) t.dispose();
    }
    embeddingBackward(grad[WTE], dx, ids);
  }

  private checkLive(what: string): void {
    if (this.disposed) throw new Error(`${what}: the model was disposed`);
  }
}

/** A [rows, cols] view of elements [offset, offset + rows*cols) of a flat buffer. */
function flatView(flat: Tensor, offset: number, shape: [number, number]): Tensor {
  const part = flat.slice(offset, offset + shape[0] * shape[1]);
  const view = part.view(shape);
  part.dispose();
  return view;
}
