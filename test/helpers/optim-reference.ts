// Float64 references for the optimizer suites, written from shared spec/newton-muon.md and the
// optimizer-op contracts in csrc/core/backend.h. Nothing here calls the code under test: plain
// JS arrays / Float64Array, row-major matrices.
//
//   - dense linear algebra: matmul, transpose, Frobenius norm, Cholesky inverse with the ridge,
//     symmetric eigenvalues (cyclic Jacobi), singular values, random orthogonal matrices;
//   - NS5: the quintic Newton-Schulz iteration (3.4445, -4.7750, 2.0315), eps 1e-7;
//   - RefMatrixOptimizer: Muon / Newton-Muon as the spec runs them (K, Kinv, momentum, refresh
//     every `refreshEvery` steps, block-diagonal statistics, per-row-block NS, scale);
//   - RefAdamW: PyTorch's AdamW.

import { HostRng } from './reference';

// Global lookups are slow inside jest's vm context: hot loops use these module-local aliases.
const { abs, sqrt, max, log, cos, sin, PI, hypot } = Math;
const isFinite = Number.isFinite;

// ---- matrices -----------------------------------------------------------------------------

/** A row-major float64 matrix. */
export interface Mat {
  rows: number;
  cols: number;
  data: Float64Array;
}

export function mat(rows: number, cols: number, data?: ArrayLike<number>): Mat {
  const out = new Float64Array(rows * cols);
  if (data !== undefined) {
    if (data.length !== rows * cols) throw new Error(`mat: ${data.length} values for ${rows}x${cols}`);
    for (let i = 0; i < out.length; i++) out[i] = data[i];
  }
  return { rows, cols, data: out };
}

/** Matrix `index` of a contiguous [batch, rows, cols] array. */
export function batchItem(data: ArrayLike<number>, index: number, rows: number, cols: number): Mat {
  const out = new Float64Array(rows * cols);
  const base = index * rows * cols;
  for (let i = 0; i < out.length; i++) out[i] = data[base + i];
  return { rows, cols, data: out };
}

/** Concatenates matrices of equal size into one [batch * rows * cols] array. */
export function stack(ms: readonly Mat[]): Float64Array {
  const n = ms.reduce((s, m) => s + m.data.length, 0);
  const out = new Float64Array(n);
  let at = 0;
  for (const m of ms) {
    out.set(m.data, at);
    at += m.data.length;
  }
  return out;
}

export function identity(d: number, value = 1): Mat {
  const m = mat(d, d);
  for (let i = 0; i < d; i++) m.data[i * d + i] = value;
  return m;
}

export function transpose(a: Mat): Mat {
  const out = mat(a.cols, a.rows);
  for (let i = 0; i < a.rows; i++) {
    for (let j = 0; j < a.cols; j++) out.data[j * a.rows + i] = a.data[i * a.cols + j];
  }
  return out;
}

export function matmul(a: Mat, b: Mat): Mat {
  if (a.cols !== b.rows) throw new Error(`matmul: ${a.rows}x${a.cols} @ ${b.rows}x${b.cols}`);
  const { rows: m, cols: k } = a;
  const n = b.cols;
  const out = mat(m, n);
  const A = a.data;
  const B = b.data;
  const C = out.data;
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const av = A[i * k + p];
      if (av === 0) continue;
      const row = p * n;
      const o = i * n;
      for (let j = 0; j < n; j++) C[o + j] += av * B[row + j];
    }
  }
  return out;
}

/** alpha * a + beta * b (same shape). */
export function lincomb(alpha: number, a: Mat, beta: number, b: Mat): Mat {
  const out = mat(a.rows, a.cols);
  for (let i = 0; i < out.data.length; i++) out.data[i] = alpha * a.data[i] + beta * b.data[i];
  return out;
}

export function scaleMat(a: Mat, s: number): Mat {
  const out = mat(a.rows, a.cols);
  for (let i = 0; i < out.data.length; i++) out.data[i] = s * a.data[i];
  return out;
}

export function frobenius(a: Mat | ArrayLike<number>): number {
  const d = 'data' in a ? a.data : a;
  let s = 0;
  for (let i = 0; i < d.length; i++) s += d[i] * d[i];
  return sqrt(s);
}

/** ||actual - expected||_F / ||expected||_F. */
export function relFrobError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`relFrobError: ${actual.length} vs ${expected.length} values`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < actual.length; i++) {
    const d = actual[i] - expected[i];
    num += d * d;
    den += expected[i] * expected[i];
  }
  return sqrt(num) / sqrt(den);
}

/** Columns [c0, c0 + width) of a. */
export function colSlice(a: Mat, c0: number, width: number): Mat {
  const out = mat(a.rows, width);
  for (let i = 0; i < a.rows; i++) {
    for (let j = 0; j < width; j++) out.data[i * width + j] = a.data[i * a.cols + c0 + j];
  }
  return out;
}

/** Rows [r0, r0 + height) of a. */
export function rowSlice(a: Mat, r0: number, height: number): Mat {
  return { rows: height, cols: a.cols, data: a.data.slice(r0 * a.cols, (r0 + height) * a.cols) };
}

/** Writes b into a's columns starting at c0 (in place). */
export function setCols(a: Mat, c0: number, b: Mat): void {
  for (let i = 0; i < b.rows; i++) {
    for (let j = 0; j < b.cols; j++) a.data[i * a.cols + c0 + j] = b.data[i * b.cols + j];
  }
}

/** Writes b into a's rows starting at r0 (in place). */
export function setRows(a: Mat, r0: number, b: Mat): void {
  a.data.set(b.data, r0 * a.cols);
}

export function trace(a: Mat): number {
  let t = 0;
  for (let i = 0; i < a.rows; i++) t += a.data[i * a.cols + i];
  return t;
}

/** max |a_ij - a_ji| / max |a_ij|. */
export function asymmetry(a: Mat): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.rows; i++) {
    for (let j = 0; j < a.cols; j++) {
      num = max(num, abs(a.data[i * a.cols + j] - a.data[j * a.cols + i]));
      den = max(den, abs(a.data[i * a.cols + j]));
    }
  }
  return num / den;
}

// ---- random data ----------------------------------------------------------------------------

/** Standard normal samples (Box-Muller over HostRng), never exactly zero. */
export function normals(rng: HostRng, n: number, std = 1): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i += 2) {
    const u1 = 1 - rng.next(); // (0, 1]
    const u2 = rng.next();
    const r = sqrt(-2 * log(u1));
    out[i] = r * cos(2 * PI * u2) * std;
    if (i + 1 < n) out[i + 1] = r * sin(2 * PI * u2) * std;
  }
  for (let i = 0; i < n; i++) if (out[i] === 0) out[i] = std * 1e-3;
  return out;
}

/** Normal samples rounded to f32 (what a tensor will hold). */
export function normalsF32(rng: HostRng, n: number, std = 1): Float32Array {
  return Float32Array.from(normals(rng, n, std));
}

/** An n x n orthogonal matrix (modified Gram-Schmidt of a Gaussian matrix, twice). */
export function randomOrthogonal(rng: HostRng, n: number): Mat {
  return orthonormalColumns(mat(n, n, normals(rng, n * n)));
}

/** Orthonormalizes the columns of a (rows >= cols) by modified Gram-Schmidt, two passes. */
export function orthonormalColumns(a: Mat): Mat {
  const { rows, cols } = a;
  const q = mat(rows, cols, a.data);
  for (let pass = 0; pass < 2; pass++) {
    for (let j = 0; j < cols; j++) {
      for (let p = 0; p < j; p++) {
        let dot = 0;
        for (let i = 0; i < rows; i++) dot += q.data[i * cols + p] * q.data[i * cols + j];
        for (let i = 0; i < rows; i++) q.data[i * cols + j] -= dot * q.data[i * cols + p];
      }
      let norm = 0;
      for (let i = 0; i < rows; i++) norm += q.data[i * cols + j] ** 2;
      norm = sqrt(norm);
      for (let i = 0; i < rows; i++) q.data[i * cols + j] /= norm;
    }
  }
  return q;
}

/**
 * U diag(s) V^T for random orthogonal U ([rows, rows]) and V ([cols, cols]) with the given
 * singular values (min(rows, cols) of them).
 */
export function withSingularValues(rng: HostRng, rows: number, cols: number, s: readonly number[]): Mat {
  const r = Math.min(rows, cols);
  if (s.length !== r) throw new Error(`withSingularValues: need ${r} singular values, got ${s.length}`);
  const u = randomOrthogonal(rng, rows);
  const v = randomOrthogonal(rng, cols);
  const us = mat(rows, cols);
  for (let i = 0; i < rows; i++) {
    for (let k = 0; k < r; k++) us.data[i * cols + k] = u.data[i * rows + k] * s[k];
  }
  return matmul(us, transpose(v));
}

/** n values spread geometrically over [lo, hi], in random order. */
export function spread(rng: HostRng, n: number, lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(n === 1 ? hi : lo * (hi / lo) ** (i / (n - 1)));
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** The n x n Sylvester-Hadamard matrix (n a power of two): entries +-1, H^T H = n I. */
export function hadamard(n: number): Mat {
  if (n < 1 || (n & (n - 1)) !== 0) throw new Error(`hadamard: ${n} is not a power of two`);
  const h = mat(n, n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let bits = i & j;
      let parity = 0;
      while (bits) {
        parity ^= bits & 1;
        bits >>= 1;
      }
      h.data[i * n + j] = parity ? -1 : 1;
    }
  }
  return h;
}

// ---- Newton-Schulz ---------------------------------------------------------------------------

export const NS5_COEFFS: readonly [number, number, number] = [3.4445, -4.775, 2.0315];

export interface Ns5RefOptions {
  steps?: number;
  eps?: number;
}

/**
 * The quintic Newton-Schulz iteration of the spec, in float64: X = G / (||G||_F + eps);
 * transpose if rows > cols; steps times A = X X^T, B = b A + c A A, X = a X + B X; transpose back.
 */
export function ns5(g: Mat, opts: Ns5RefOptions = {}): Mat {
  const steps = opts.steps ?? 5;
  const eps = opts.eps ?? 1e-7;
  const [a, b, c] = NS5_COEFFS;
  let x = scaleMat(g, 1 / (frobenius(g) + eps));
  const tall = g.rows > g.cols;
  if (tall) x = transpose(x);
  for (let s = 0; s < steps; s++) {
    const A = matmul(x, transpose(x));
    const B = lincomb(b, A, c, matmul(A, A));
    x = lincomb(a, x, 1, matmul(B, x));
  }
  return tall ? transpose(x) : x;
}

/** NS5 of each matrix of a contiguous [batch, rows, cols] array. */
export function ns5Batch(data: ArrayLike<number>, batch: number, rows: number, cols: number, opts: Ns5RefOptions = {}): Float64Array {
  const out: Mat[] = [];
  for (let i = 0; i < batch; i++) out.push(ns5(batchItem(data, i, rows, cols), opts));
  return stack(out);
}

/** The scalar map one NS step applies to each singular value: f(s) = a s + b s^3 + c s^5. */
export function quintic(s: number): number {
  const [a, b, c] = NS5_COEFFS;
  return a * s + b * s ** 3 + c * s ** 5;
}

// ---- symmetric eigenvalues / singular values --------------------------------------------------

/** Eigenvalues of a symmetric matrix by the cyclic Jacobi method, ascending. */
export function symmetricEigenvalues(sym: Mat): Float64Array {
  const n = sym.rows;
  if (sym.cols !== n) throw new Error('symmetricEigenvalues: not square');
  const a = Float64Array.from(sym.data);
  // Symmetrize first (inputs computed in floating point are symmetric only to rounding).
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const v = 0.5 * (a[i * n + j] + a[j * n + i]);
      a[i * n + j] = v;
      a[j * n + i] = v;
    }
  }
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    let diag = 0;
    for (let i = 0; i < n; i++) {
      diag += a[i * n + i] ** 2;
      for (let j = i + 1; j < n; j++) off += a[i * n + j] ** 2;
    }
    if (off <= 1e-30 * diag || off === 0) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (apq === 0) continue;
        const app = a[p * n + p];
        const aqq = a[q * n + q];
        const theta = (aqq - app) / (2 * apq);
        const t = (theta >= 0 ? 1 : -1) / (abs(theta) + hypot(1, theta));
        const cs = 1 / sqrt(1 + t * t);
        const sn = t * cs;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p];
          const akq = a[k * n + q];
          a[k * n + p] = cs * akp - sn * akq;
          a[k * n + q] = sn * akp + cs * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k];
          const aqk = a[q * n + k];
          a[p * n + k] = cs * apk - sn * aqk;
          a[q * n + k] = sn * apk + cs * aqk;
        }
      }
    }
  }
  const eig = new Float64Array(n);
  for (let i = 0; i < n; i++) eig[i] = a[i * n + i];
  return eig.sort();
}

/** Singular values of x (min(rows, cols) of them), ascending, via the smaller Gram matrix. */
export function singularValues(x: Mat): Float64Array {
  const gram = x.rows <= x.cols ? matmul(x, transpose(x)) : matmul(transpose(x), x);
  return symmetricEigenvalues(gram).map((e) => sqrt(max(e, 0)));
}

// ---- Cholesky inverse --------------------------------------------------------------------------

export interface CholeskyRef {
  /** (K + ridge I)^-1, or I when the factorisation failed. */
  inverse: Mat;
  /** 0 ok, i > 0 leading minor of order i not positive definite, -1 non-finite input. */
  info: number;
  ridge: number;
}

/** (K + ridge I)^-1 with ridge = ridgeMult * trace(K) / d + ridgeEps, by Cholesky, in float64. */
export function choleskyInverseRef(k: Mat, ridgeMult = 0.2, ridgeEps = 1e-8): CholeskyRef {
  const d = k.rows;
  for (let i = 0; i < k.data.length; i++) {
    if (!isFinite(k.data[i])) return { inverse: identity(d), info: -1, ridge: NaN };
  }
  const ridge = (ridgeMult * trace(k)) / d + ridgeEps;
  // Lower-triangular L with L L^T = K + ridge I (reads the lower triangle of K).
  const L = new Float64Array(d * d);
  for (let j = 0; j < d; j++) {
    let diag = k.data[j * d + j] + ridge;
    for (let p = 0; p < j; p++) diag -= L[j * d + p] ** 2;
    if (!(diag > 0)) return { inverse: identity(d), info: j + 1, ridge };
    const ljj = sqrt(diag);
    L[j * d + j] = ljj;
    for (let i = j + 1; i < d; i++) {
      let v = k.data[i * d + j];
      for (let p = 0; p < j; p++) v -= L[i * d + p] * L[j * d + p];
      L[i * d + j] = v / ljj;
    }
  }
  // inverse = L^-T L^-1: solve L Y = I, then L^T X = Y.
  const inv = mat(d, d);
  const y = new Float64Array(d);
  for (let col = 0; col < d; col++) {
    for (let i = 0; i < d; i++) {
      let v = i === col ? 1 : 0;
      for (let p = 0; p < i; p++) v -= L[i * d + p] * y[p];
      y[i] = v / L[i * d + i];
    }
    for (let i = d - 1; i >= 0; i--) {
      let v = y[i];
      for (let p = i + 1; p < d; p++) v -= L[p * d + i] * inv.data[p * d + col];
      inv.data[i * d + col] = v / L[i * d + i];
    }
  }
  return { inverse: inv, info: 0, ridge };
}

/** 2-norm condition number of a symmetric positive definite matrix. */
export function spdCondition(a: Mat): number {
  const e = symmetricEigenvalues(a);
  return e[e.length - 1] / e[0];
}

// ---- Muon / Newton-Muon ----------------------------------------------------------------------

export interface RefMatrixSpec {
  name: string;
  /** Initial weights, [rows, cols] row-major. */
  w: ArrayLike<number>;
  rows: number;
  cols: number;
  rowBlocks?: number;
  inputBlocks?: number;
  inputKey?: string;
}

export interface RefMatrixOptions {
  lr: number;
  momentum?: number;
  nesterov?: boolean;
  nsSteps?: number;
  weightDecay?: number;
  refreshEvery?: number;
  statsDecay?: number;
  ridge?: number;
  ridgeEps?: number;
  initDiag?: number;
}

interface RefStat {
  key: string;
  d: number;
  blocks: number;
  k: Mat[];
  kinv: Mat[];
  s: Mat[];
  observations: number;
  failures: number;
}

interface RefParam {
  spec: RefMatrixSpec;
  w: Mat;
  buf: Mat;
  rowBlocks: number;
  scale: number;
  stat?: RefStat;
}

/**
 * Muon (preconditioned = false) and Newton-Muon (true) exactly as the spec describes them, in
 * float64. Params are addressed by name; statistics by inputKey (default: the param's name).
 */
export class RefMatrixOptimizer {
  readonly params = new Map<string, RefParam>();
  readonly stats = new Map<string, RefStat>();
  steps = 0;
  lr: number;
  readonly momentum: number;
  readonly nesterov: boolean;
  readonly nsSteps: number;
  readonly weightDecay: number;
  readonly refreshEvery: number;
  readonly statsDecay: number;
  readonly ridge: number;
  readonly ridgeEps: number;
  readonly initDiag: number;

  constructor(readonly preconditioned: boolean, specs: readonly RefMatrixSpec[], opts: RefMatrixOptions) {
    this.lr = opts.lr;
    this.momentum = opts.momentum ?? 0.95;
    this.nesterov = opts.nesterov ?? true;
    this.nsSteps = opts.nsSteps ?? 5;
    this.weightDecay = opts.weightDecay ?? 0;
    this.refreshEvery = opts.refreshEvery ?? 32;
    this.statsDecay = opts.statsDecay ?? 0.95;
    this.ridge = opts.ridge ?? 0.2;
    this.ridgeEps = opts.ridgeEps ?? 1e-8;
    this.initDiag = opts.initDiag ?? 1e-3;
    for (const spec of specs) {
      const { rows, cols } = spec;
      const p: RefParam = {
        spec,
        w: mat(rows, cols, spec.w),
        buf: mat(rows, cols),
        rowBlocks: spec.rowBlocks ?? 1,
        scale: (spec.rowBlocks ?? 1) > 1 ? sqrt(cols) : sqrt(max(rows, cols)),
      };
      if (preconditioned) {
        const blocks = spec.inputBlocks ?? 1;
        const d = cols / blocks;
        const key = spec.inputKey ?? spec.name;
        let stat = this.stats.get(key);
        if (!stat) {
          stat = { key, d, blocks, k: [], kinv: [], s: [], observations: 0, failures: 0 };
          for (let j = 0; j < blocks; j++) {
            stat.k.push(identity(d, this.initDiag));
            stat.kinv.push(identity(d));
            stat.s.push(mat(d, d));
          }
          this.stats.set(key, stat);
        }
        p.stat = stat;
      }
      this.params.set(spec.name, p);
    }
  }

  collectsStatistics(): boolean {
    return this.preconditioned && (this.steps + 1) % this.refreshEvery === 0;
  }

  /** S += X^T X / tokens per block (X [tokens, blocks * d]); false when not collecting. */
  observeInput(key: string, x: ArrayLike<number>, tokens: number): boolean {
    if (!this.collectsStatistics()) return false;
    const stat = this.stats.get(key) ?? this.params.get(key)?.stat;
    if (!stat) throw new Error(`RefMatrixOptimizer.observeInput: unknown key ${key}`);
    const X = mat(tokens, stat.d * stat.blocks, x);
    for (let j = 0; j < stat.blocks; j++) {
      const xj = colSlice(X, j * stat.d, stat.d);
      const gram = matmul(transpose(xj), xj);
      stat.s[j] = lincomb(1, stat.s[j], 1 / tokens, gram);
    }
    stat.observations++;
    return true;
  }

  /** One step with the given raw gradients (by param name). */
  step(grads: Record<string, ArrayLike<number>>): void {
    if (this.collectsStatistics()) this.refresh();
    for (const p of this.params.values()) {
      const { rows, cols } = p.spec;
      let g = mat(rows, cols, grads[p.spec.name]);
      if (p.stat) g = this.precondition(g, p.stat);
      // buf = m buf + G; U = G + m buf (Nesterov) or buf.
      p.buf = lincomb(this.momentum, p.buf, 1, g);
      const u = this.nesterov ? lincomb(1, g, this.momentum, p.buf) : p.buf;
      const o = mat(rows, cols);
      const h = rows / p.rowBlocks;
      for (let b = 0; b < p.rowBlocks; b++) setRows(o, b * h, ns5(rowSlice(u, b * h, h), { steps: this.nsSteps }));
      p.w = lincomb(1 - this.lr * this.weightDecay, p.w, -this.lr * p.scale, o);
    }
    this.steps++;
  }

  /** G @ Kinv, block-diagonal: column slice j of G times block j. */
  precondition(g: Mat, stat: RefStat): Mat {
    const out = mat(g.rows, g.cols);
    for (let j = 0; j < stat.blocks; j++) setCols(out, j * stat.d, matmul(colSlice(g, j * stat.d, stat.d), stat.kinv[j]));
    return out;
  }

  private refresh(): void {
    for (const stat of this.stats.values()) {
      if (stat.observations === 0) continue; // nothing observed: K and Kinv are kept
      for (let j = 0; j < stat.blocks; j++) {
        stat.k[j] = lincomb(this.statsDecay, stat.k[j], (1 - this.statsDecay) / stat.observations, stat.s[j]);
        const r = choleskyInverseRef(stat.k[j], this.ridge, this.ridgeEps);
        if (r.info !== 0) stat.failures++;
        stat.kinv[j] = r.inverse;
        stat.s[j] = mat(stat.d, stat.d);
      }
      stat.observations = 0;
    }
  }

  weights(name: string): Float64Array {
    const p = this.params.get(name);
    if (!p) throw new Error(`RefMatrixOptimizer: no param ${name}`);
    return p.w.data;
  }
}

// ---- AdamW -------------------------------------------------------------------------------------

export interface RefAdamWOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

/** PyTorch's AdamW in float64, for one flat parameter per name. */
export class RefAdamW {
  readonly w = new Map<string, Float64Array>();
  private readonly m = new Map<string, Float64Array>();
  private readonly v = new Map<string, Float64Array>();
  steps = 0;
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;

  constructor(params: Record<string, ArrayLike<number>>, opts: RefAdamWOptions) {
    this.lr = opts.lr;
    [this.beta1, this.beta2] = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    for (const [name, w] of Object.entries(params)) {
      this.w.set(name, Float64Array.from(w));
      this.m.set(name, new Float64Array(w.length));
      this.v.set(name, new Float64Array(w.length));
    }
  }

  step(grads: Record<string, ArrayLike<number>>): void {
    const t = this.steps + 1;
    const bias1 = 1 - this.beta1 ** t;
    const bias2 = 1 - this.beta2 ** t;
    for (const [name, w] of this.w) {
      const g = grads[name];
      const m = this.m.get(name)!;
      const v = this.v.get(name)!;
      for (let i = 0; i < w.length; i++) {
        w[i] *= 1 - this.lr * this.weightDecay;
        m[i] = this.beta1 * m[i] + (1 - this.beta1) * g[i];
        v[i] = this.beta2 * v[i] + (1 - this.beta2) * g[i] * g[i];
        w[i] -= (this.lr / bias1) * (m[i] / (sqrt(v[i]) / sqrt(bias2) + this.eps));
      }
    }
    this.steps = t;
  }
}

// ---- assertions ------------------------------------------------------------------------------

/**
 * Throws unless ||actual - expected||_F <= tol * ||expected||_F, with the error, the worst
 * element and the seed in the message.
 */
export function expectRelFrob(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string, seed?: number | number[]): void {
  const tag = seed === undefined ? '' : ` (seed ${Array.isArray(seed) ? seed.join(', ') : seed})`;
  if (actual.length !== expected.length) throw new Error(`${what}: got ${actual.length} values, expected ${expected.length}${tag}`);
  const err = relFrobError(actual, expected);
  if (!(err <= tol)) {
    let worst = 0;
    for (let i = 1; i < actual.length; i++) {
      if (!(abs(actual[i] - expected[i]) <= abs(actual[worst] - expected[worst]))) worst = i;
    }
    throw new Error(`${what}: relative Frobenius error ${err.toExponential(3)} > ${tol}${tag}; ` +
      `worst at index ${worst}: got ${actual[worst]}, expected ${expected[worst]}`);
  }
}

/** Throws (with the seed) unless cond holds. */
export function check(cond: boolean, message: string, seed?: number | number[]): void {
  if (!cond) throw new Error(`${message}${seed === undefined ? '' : ` (seed ${Array.isArray(seed) ? seed.join(', ') : seed})`}`);
}
