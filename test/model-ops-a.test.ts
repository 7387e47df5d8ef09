// GPT-2 model ops, part A: token embedding (forward, deterministic backward), weightless RMSNorm,
// exact GELU and softmax cross-entropy, against float64 references written here, on fresh random
// inputs. Each backward is checked three ways: (1) the float64 analytic gradient against central
// differences of the float64 forward (checks the reference itself), (2) our backward against the
// float64 analytic gradient, (3) central differences through our own f32 forward against our
// backward. Plus: bf16 outputs, rmsnorm_backward accumulate, embedding-backward bit-exactness and
// determinism with heavily repeated ids, cross-entropy with grad_scale 0 leaving logits unchanged.
import {
  crossEntropy, embeddingBackward, embeddingForward, geluBackward, geluForward, rmsnormBackward, rmsnormForward, Tensor, tensor,
} from '../lib/index';
import { freshSeed, TEST_DEVICE } from './helpers/device';
import { bf16BitsRef, bf16UlpDistance, centralDiff, expectClose, expectSameBits, HostRng, mapRef } from './helpers/reference';

const device = TEST_DEVICE;
const { abs, exp, fround, log, max, sqrt, PI } = Math;

// ---- host data ------------------------------------------------------------------------------

/** n normal samples (Box-Muller on HostRng), times std, plus mean, rounded to f32. */
function normals(rng: HostRng, n: number, std = 1, mean = 0): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u1 = 1 - rng.next();
    const u2 = rng.next();
    out[i] = mean + std * sqrt(-2 * log(u1)) * Math.cos(2 * PI * u2);
  }
  return out;
}

function f32(t: Tensor): Promise<Float32Array> {
  return t.read() as Promise<Float32Array>;
}

async function f32AndDispose(t: Tensor): Promise<Float32Array> {
  const v = await f32(t);
  t.dispose();
  return v;
}

function put(data: Float32Array | Int32Array, shape: number[]): Tensor {
  return tensor(data, shape, { device });
}

// ---- float64 references ---------------------------------------------------------------------

/** erfc in float64 with full relative accuracy (Maclaurin series below 2, continued fraction above). */
function erfc64(z: number): number {
  if (z < 0) return 2 - erfc64(-z);
  if (z < 2) {
    const z2 = z * z;
    let term = z;
    let sum = z;
    for (let n = 1; n < 200; n++) {
      term *= -z2 / n;
      const t = term / (2 * n + 1);
      sum += t;
      if (abs(t) < 1e-18) break;
    }
    return 1 - (sum * 2) / sqrt(PI);
  }
  let f = z;
  for (let k = 200; k >= 1; k--) f = z + k / 2 / f;
  return exp(-z * z) / (sqrt(PI) * f);
}

const normalCdf64 = (x: number): number => 0.5 * erfc64(-x / Math.SQRT2);
const normalPdf64 = (x: number): number => exp(-0.5 * x * x) / sqrt(2 * PI);
const gelu64 = (x: number): number => x * normalCdf64(x);
const geluGrad64 = (x: number): number => normalCdf64(x) + x * normalPdf64(x);

/** Weightless RMSNorm in float64: { out, rstd }. */
function rmsnorm64(x: ArrayLike<number>, n: number, c: number, eps: number): { out: Float64Array; rstd: Float64Array } {
  const out = new Float64Array(n * c);
  const rstd = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let ss = 0;
    for (let j = 0; j < c; j++) ss += x[i * c + j] * x[i * c + j];
    const r = 1 / sqrt(ss / c + eps);
    rstd[i] = r;
    for (let j = 0; j < c; j++) out[i * c + j] = x[i * c + j] * r;
  }
  return { out, rstd };
}

/**
 * The op's backward formula in float64 for the given rstd: dx = r*g - x * r^3 * mean(g*x).
 * Also the scale of its terms (|r*g| + |x*k|) for tolerances.
 */
function rmsnormBackward64(g: ArrayLike<number>, x: ArrayLike<number>, rstd: ArrayLike<number>, n: number, c: number): { dx: Float64Array; scale: Float64Array } {
  const dx = new Float64Array(n * c);
  const scale = new Float64Array(n * c);
  for (let i = 0; i < n; i++) {
    let dot = 0;
    for (let j = 0; j < c; j++) dot += g[i * c + j] * x[i * c + j];
    const r = rstd[i];
    const k = r * r * r * (dot / c);
    for (let j = 0; j < c; j++) {
      const a = r * g[i * c + j];
      const b = x[i * c + j] * k;
      dx[i * c + j] = a - b;
      scale[i * c + j] = abs(a) + abs(b);
    }
  }
  return { dx, scale };
}

/** Cross-entropy in float64: losses, softmax probabilities and each row's max. */
function crossEntropy64(logits: ArrayLike<number>, targets: ArrayLike<number>, n: number, vocab: number): { losses: Float64Array; probs: Float64Array; rowMax: Float64Array } {
  const losses = new Float64Array(n);
  const probs = new Float64Array(n * vocab);
  const rowMax = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let m = -Infinity;
    for (let j = 0; j < vocab; j++) m = max(m, logits[i * vocab + j]);
    let s = 0;
    for (let j = 0; j < vocab; j++) s += exp(logits[i * vocab + j] - m);
    for (let j = 0; j < vocab; j++) probs[i * vocab + j] = exp(logits[i * vocab + j] - m) / s;
    losses[i] = m + log(s) - logits[i * vocab + targets[i]];
    rowMax[i] = m;
  }
  return { losses, probs, rowMax };
}

/** Indices to probe with finite differences: `count` distinct random ones in [0, n). */
function probeIndices(rng: HostRng, n: number, count: number): number[] {
  const set = new Set<number>();
  while (set.size < Math.min(count, n)) set.add(rng.int(0, n - 1));
  return [...set];
}

function dot64(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** bf16 results: each stored value within 1 bf16 ulp of bf16(f32(exact)). */
function expectBf16Near(bits: Uint16Array, exact: ArrayLike<number>, what: string, seed: number): void {
  expect(bits.length).toBe(exact.length);
  for (let i = 0; i < exact.length; i++) {
    const want = bf16BitsRef(fround(exact[i]));
    const d = bf16UlpDistance(bits[i], want);
    if (d > 1) throw new Error(`${what}: element ${i} is 0x${bits[i].toString(16)}, expected 0x${want.toString(16)} (exact ${exact[i]}), ${d} bf16 ulps apart (seed ${seed})`);
  }
}

// ---- embedding --------------------------------------------------------------------------------

/** ids with repeats; `hot` (if given) takes about `hotShare` of the positions. */
function randomIds(rng: HostRng, n: number, vocab: number, hot?: number, hotShare = 0): Int32Array {
  return Int32Array.from({ length: n }, () => (hot !== undefined && rng.next() < hotShare ? hot : rng.int(0, vocab - 1)));
}

/** The op's exact result: per row v and channel j, f32(dwte + sum of dout in increasing i, in double). */
function embeddingBackwardExact(dwte0: Float32Array, dout: Float32Array, ids: Int32Array, c: number): Float32Array {
  const vocab = dwte0.length / c;
  const acc = new Float64Array(vocab * c);
  const hit = new Uint8Array(vocab);
  for (let i = 0; i < ids.length; i++) {
    const v = ids[i];
    hit[v] = 1;
    for (let j = 0; j < c; j++) acc[v * c + j] += dout[i * c + j];
  }
  const out = Float32Array.from(dwte0);
  for (let v = 0; v < vocab; v++) {
    if (!hit[v]) continue;  // untouched rows keep their bits exactly
    for (let j = 0; j < c; j++) out[v * c + j] = fround(dwte0[v * c + j] + acc[v * c + j]);
  }
  return out;
}

describe('embedding', () => {
  // [n, c, vocab]: tiny; odd c; c a multiple of 4 (CUDA float4 path); c past the CPU's 64-channel chunk.
  test.each([[1, 1, 1], [37, 7, 5], [300, 128, 50], [257, 130, 1000]])('forward gathers rows bitwise, n = %i, c = %i, vocab = %i', async (n, c, vocab) => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    const hw = normals(rng, vocab * c);
    const hids = randomIds(rng, n, vocab);
    const wte = put(hw, [vocab, c]);
    const ids = put(hids, [n]);
    const out = embeddingForward(wte, ids);
    expect(out.shape).toEqual([n, c]);
    const expected = new Float32Array(n * c);
    for (let i = 0; i < n; i++) expected.set(hw.subarray(hids[i] * c, hids[i] * c + c), i * c);
    expectSameBits(await f32(out), expected, 'embeddingForward', seed);
    expectSameBits(await f32(wte), hw, 'embeddingForward: wte unchanged', seed);
    for (const t of [wte, ids, out]) t.dispose();
  });

  // [n, c, vocab, hot share]: one id takes hotShare of the positions (long runs of equal ids).
  test.each([[1, 1, 1, 0], [40, 9, 6, 0.5], [700, 130, 64, 0.3], [3000, 68, 2000, 0.05]])(
    'backward accumulates exactly, deterministically, n = %i, c = %i, vocab = %i, hot share %f', async (n, c, vocab, hotShare) => {
      const seed = freshSeed();
      const rng = new HostRng(seed);
      const hdw0 = normals(rng, vocab * c, 0.5);
      const hdout = normals(rng, n * c, 1);
      const hids = randomIds(rng, n, vocab, rng.int(0, vocab - 1), hotShare);
      const dout = put(hdout, [n, c]);
      const ids = put(hids, [n]);
      const a = put(hdw0, [vocab, c]);
      const b = put(hdw0, [vocab, c]);
      expect(embeddingBackward(a, dout, ids)).toBe(a);
      embeddingBackward(b, dout, ids);
      const ra = await f32(a);
      const rb = await f32(b);
      // Bit-exact: the op sums in double in increasing position and rounds once, as JS does here.
      expectSameBits(ra, embeddingBackwardExact(hdw0, hdout, hids, c), 'embeddingBackward vs the exact double sum', seed);
      // Determinism: two runs on the same input give the same bits.
      expectSameBits(rb, ra, 'embeddingBackward run twice', seed);
      // A second call adds again.
      embeddingBackward(a, dout, ids);
      expectSameBits(await f32(a), embeddingBackwardExact(ra, hdout, hids, c), 'embeddingBackward called twice', seed);
      for (const t of [dout, ids, a, b]) t.dispose();
    });

  test('backward against finite differences of our forward (L = sum(dout * wte[ids]))', async () => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    const [n, c, vocab] = [30, 6, 7];
    const hw = normals(rng, vocab * c);
    const hdout = normals(rng, n * c);
    const hids = randomIds(rng, n, vocab, 2, 0.4);
    const ids = put(hids, [n]);
    const dwte = put(new Float32Array(vocab * c), [vocab, c]);
    const dout = put(hdout, [n, c]);
    embeddingBackward(dwte, dout, ids);
    const grad = await f32(dwte);
    const loss = async (w: Float32Array): Promise<number> => {
      const wt = put(w, [vocab, c]);
      const out = embeddingForward(wt, ids);
      wt.dispose();
      return dot64(await f32AndDispose(out), hdout);
    };
    const h = 0.25;  // L is linear in wte: any h works, and 0.25 keeps w +- h exact in f32 here
    for (const idx of probeIndices(rng, vocab * c, 8)) {
      const up = Float32Array.from(hw);
      up[idx] += h;
      const down = Float32Array.from(hw);
      down[idx] -= h;
      const fd = ((await loss(up)) - (await loss(down))) / (fround(hw[idx] + h) - fround(hw[idx] - h));
      expectClose([grad[idx]], [fd], { what: `embedding d/dwte[${idx}]`, seed, rtol: 1e-5, atol: 1e-5 * sqrt(n) });
    }
    for (const t of [ids, dwte, dout]) t.dispose();
  });
});

// ---- RMSNorm ----------------------------------------------------------------------------------

describe('rmsnorm', () => {
  // [n, c]: tiny; GPT-2 width; odd widths.
  test.each([[1, 1], [5, 768], [17, 100], [64, 33]])('forward f32 and bf16, n = %i, c = %i', async (n, c) => {
    for (const eps of [1e-6, 1e-2]) {
      const seed = freshSeed();
      const rng = new HostRng(seed);
      const hx = normals(rng, n * c, 2);
      if (n > 1) hx.fill(0, 0, c);  // an all-zero row: rstd = 1/sqrt(eps), out = 0
      const x = put(hx, [n, c]);
      const ref = rmsnorm64(hx, n, c, fround(eps));
      const { out, rstd } = rmsnormForward(x, { eps });
      expectClose(await f32(rstd), ref.rstd, { what: `rmsnorm rstd (eps ${eps})`, seed, rtol: 2e-7 });
      expectClose(await f32(out), ref.out, { what: `rmsnorm out f32 (eps ${eps})`, seed, rtol: 3e-7, atol: 1e-30 });
      const b = rmsnormForward(x, { eps, outDtype: 'bf16' });
      expect(b.out.dtype).toBe('bf16');
      expectBf16Near((await b.out.readRaw()) as Uint16Array, ref.out, `rmsnorm out bf16 (eps ${eps})`, seed);
      expectSameBits(await f32(b.rstd), await f32(rstd), 'rmsnorm rstd with a bf16 out', seed);
      for (const t of [x, out, rstd, b.out, b.rstd]) t.dispose();
    }
  });

  test.each([[1, 1], [5, 768], [17, 100], [64, 33]])('backward (write and accumulate) against float64, n = %i, c = %i', async (n, c) => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    const hx = normals(rng, n * c, 2);
    const hg = normals(rng, n * c, 1);
    const hdx0 = normals(rng, n * c, 1);
    const x = put(hx, [n, c]);
    const g = put(hg, [n, c]);
    const { out, rstd } = rmsnormForward(x);
    const hr = await f32(rstd);
    const ref = rmsnormBackward64(hg, hx, hr, n, c);
    const dx = rmsnormBackward(g, x, rstd);
    expectClose(await f32(dx), ref.dx, { what: 'rmsnorm backward', seed, rtol: 5e-7, scale: ref.scale });
    const acc = put(hdx0, [n, c]);
    expect(rmsnormBackward(g, x, rstd, { into: acc, accumulate: true })).toBe(acc);
    expectClose(await f32(acc), mapRef(n * c, (i) => hdx0[i] + ref.dx[i]), {
      what: 'rmsnorm backward, accumulate', seed, rtol: 5e-7, scale: mapRef(n * c, (i) => abs(hdx0[i]) + ref.scale[i]),
    });
    // accumulate = false into an existing buffer overwrites it.
    const over = put(hdx0, [n, c]);
    rmsnormBackward(g, x, rstd, { into: over });
    expectSameBits(await f32(over), await f32(dx), 'rmsnorm backward into a buffer', seed);
    // The float64 reference is the gradient of sum(g * rmsnorm(x)): central differences.
    const xs = Float64Array.from(hx);
    const ref64 = rmsnorm64(xs, n, c, 1e-6);
    const exactGrad = rmsnormBackward64(hg, xs, ref64.rstd, n, c).dx;
    for (const idx of probeIndices(rng, n * c, 12)) {
      // Only idx's row depends on x[idx]: differencing that row's loss alone keeps the rounding
      // noise of the sum (divided by 2h) far below the tolerance.
      const row = Math.floor(idx / c);
      const rowX = xs.subarray(row * c, (row + 1) * c);
      const rowG = hg.subarray(row * c, (row + 1) * c);
      const lossRef = (v: Float64Array): number => dot64(rmsnorm64(v, 1, c, 1e-6).out, rowG);
      const fd = centralDiff(lossRef, rowX, idx - row * c, 1e-4 * max(1, abs(xs[idx])));
      expectClose([exactGrad[idx]], [fd], { what: `rmsnorm reference gradient vs central differences at ${idx}`, seed, rtol: 1e-6, atol: 1e-7 * (1 + ref64.rstd[Math.floor(idx / c)]) });
    }
    for (const t of [x, g, out, rstd, dx, acc, over]) t.dispose();
  });

  test('backward against finite differences of our f32 forward', async () => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    const [n, c] = [3, 16];
    const hx = normals(rng, n * c, 1);
    const hg = normals(rng, n * c, 1);
    const x = put(hx, [n, c]);
    const g = put(hg, [n, c]);
    const { out, rstd } = rmsnormForward(x);
    const grad = await f32(rmsnormBackward(g, x, rstd));
    const loss = async (v: Float32Array): Promise<number> => {
      const t = put(v, [n, c]);
      const r = rmsnormForward(t);
      const o = await f32(r.out);
      for (const u of [t, r.out, r.rstd]) u.dispose();
      return dot64(o, hg);
    };
    const h = 1 / 64;
    let gmax = 0;
    for (const v of grad) gmax = max(gmax, abs(v));
    for (const idx of probeIndices(rng, n * c, 10)) {
      const up = Float32Array.from(hx);
      up[idx] += h;
      const down = Float32Array.from(hx);
      down[idx] -= h;
      const fd = ((await loss(up)) - (await loss(down))) / (fround(hx[idx] + h) - fround(hx[idx] - h));
      // O(h^2) truncation plus f32 rounding of the forward divided by 2h.
      expectClose([grad[idx]], [fd], { what: `rmsnorm d/dx[${idx}] vs our forward`, seed, atol: 2e-3 * (1 + gmax) });
    }
    for (const t of [x, g, out, rstd]) t.dispose();
  });
});

// ---- GELU ---------------------------------------------------------------------------------

const GELU_SPECIALS = [0, -0, 1e-30, -1e-30, 0.5, -0.5, 3, -3, 6, -6, 10, -10, 20, -20];

function geluInputs(rng: HostRng, n: number): Float32Array {
  const x = normals(rng, n, 2.5);
  for (let i = 0; i < Math.min(n, GELU_SPECIALS.length); i++) x[i] = GELU_SPECIALS[i];
  return x;
}

describe('gelu', () => {
  // 1; odd; past the CPU's 65536-element chunk.
  test.each([1, 1001, 70001])('forward f32 and bf16, backward, n = %i', async (n) => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    const hx = geluInputs(rng, n);
    const hg = normals(rng, n, 1);
    const x = put(hx, [n]);
    const g = put(hg, [n]);
    const exact = mapRef(n, (i) => gelu64(hx[i]));
    // The relative condition number of gelu is ~x^2 for negative x: the f32 rounding of x/sqrt(2)
    // alone moves the result by about x^2 ulps there.
    const cond = mapRef(n, (i) => 1 + hx[i] * hx[i]);
    // atol: values below f32's smallest subnormal (gelu(-20) ~ -5e-88) flush to zero.
    const tiny = 1e-44;
    expectClose(await f32AndDispose(geluForward(x)), exact, { what: 'gelu forward f32', seed, rtol: 4e-7, atol: tiny, scale: mapRef(n, (i) => abs(exact[i]) * cond[i]) });
    const b = geluForward(x, { outDtype: 'bf16' });
    expect(b.dtype).toBe('bf16');
    expectBf16Near((await b.readRaw()) as Uint16Array, exact, 'gelu forward bf16', seed);
    const dx = geluBackward(g, x);
    const gradExact = mapRef(n, (i) => hg[i] * geluGrad64(hx[i]));
    const gradScale = mapRef(n, (i) => abs(hg[i]) * (normalCdf64(hx[i]) + abs(hx[i]) * normalPdf64(hx[i])) * cond[i]);
    expectClose(await f32(dx), gradExact, { what: 'gelu backward', seed, rtol: 6e-7, atol: tiny, scale: gradScale });
    expectSameBits(await f32(x), hx, 'gelu: x unchanged', seed);
    for (const t of [x, g, b, dx]) t.dispose();
  });

  test('backward: float64 reference vs central differences, ours vs finite differences of our forward', async () => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    const n = 64;
    const hx = normals(rng, n, 2);
    const hg = normals(rng, n, 1);
    // Reference: d/dx gelu64 by central differences.
    for (let i = 0; i < n; i++) {
      const h = 1e-6 * max(1, abs(hx[i]));
      const fd = (gelu64(hx[i] + h) - gelu64(hx[i] - h)) / (2 * h);
      expectClose([geluGrad64(hx[i])], [fd], { what: `gelu reference derivative at x = ${hx[i]}`, seed, rtol: 1e-7, atol: 1e-8 });
    }
    // Ours: L = sum(g * gelu(x)) through our f32 forward; elementwise, so every x moves at once.
    const x = put(hx, [n]);
    const g = put(hg, [n]);
    const grad = await f32(geluBackward(g, x));
    const h = 1 / 128;
    const up = put(hx.map((v) => v + h), [n]);
    const down = put(hx.map((v) => v - h), [n]);
    const fu = await f32AndDispose(geluForward(up));
    const fdn = await f32AndDispose(geluForward(down));
    const fd = mapRef(n, (i) => (hg[i] * (fu[i] - fdn[i])) / (fround(hx[i] + h) - fround(hx[i] - h)));
    expectClose(grad, fd, { what: 'gelu backward vs finite differences of our forward', seed, atol: 1e-4 * 4, rtol: 1e-4 });
    for (const t of [x, g, up, down]) t.dispose();
  });
});

// ---- cross-entropy -------------------------------------------------------------------------

describe('cross_entropy', () => {
  // [n, vocab, logit std, logit offset]: tiny; small; large logits; GPT-2's vocab with a big
  // offset (max subtraction must keep exp in range).
  test.each([[1, 1, 1, 0], [3, 5, 1, 0], [17, 1000, 10, 0], [4, 50257, 3, 1000], [6, 777, 2, -300]])(
    'losses and gradient, n = %i, vocab = %i, std %f, offset %f', async (n, vocab, std, offset) => {
      const seed = freshSeed();
      const rng = new HostRng(seed);
      const hl = normals(rng, n * vocab, std, offset);
      const ht = Int32Array.from({ length: n }, () => rng.int(0, vocab - 1));
      // A few -inf logits (masked entries) away from the targets.
      if (vocab > 4) {
        for (let i = 0; i < n; i++) hl[i * vocab + ((ht[i] + 1 + i) % vocab)] = -Infinity;
      }
      const ref = crossEntropy64(hl, ht, n, vocab);
      const logits = put(hl, [n, vocab]);
      const targets = put(ht, [n]);
      // grad_scale 0: losses only, logits unchanged (bitwise).
      const l0 = crossEntropy(logits, targets);
      expect(l0.shape).toEqual([n]);
      expectClose(await f32(l0), ref.losses, { what: 'cross_entropy losses', seed, rtol: 2e-7, atol: 2e-6 });
      expectSameBits(await f32(logits), hl, 'cross_entropy with grad_scale 0 leaves the logits unchanged', seed);
      for (const gs of [1 / n, -2.5]) {
        const work = put(hl, [n, vocab]);
        const l1 = crossEntropy(work, targets, { gradScale: gs });
        expectSameBits(await f32(l1), await f32(l0), `cross_entropy losses with grad_scale ${gs}`, seed);
        const g32 = fround(gs);
        const expected = mapRef(n * vocab, (k) => g32 * (ref.probs[k] - (k % vocab === ht[Math.floor(k / vocab)] ? 1 : 0)));
        // Error sources: f32 rounding of x - max (relative 6e-8 |x - max| in p), expf and the
        // products (a few ulps of p), p - 1 at the target (an ulp of 1).
        const scale = mapRef(n * vocab, (k) => {
          const i = Math.floor(k / vocab);
          const spread = hl[k] === -Infinity ? 0 : abs(hl[k] - ref.rowMax[i]);
          return abs(g32) * (ref.probs[k] * (1 + spread) + (k % vocab === ht[i] ? 1 : 0));
        });
        expectClose(await f32(work), expected, { what: `cross_entropy gradient, grad_scale ${gs}`, seed, rtol: 5e-7, scale });
        for (const t of [work, l1]) t.dispose();
      }
      for (const t of [logits, targets, l0]) t.dispose();
    });

  test('gradient: float64 reference vs central differences, ours vs finite differences of our losses', async () => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    const [n, vocab] = [3, 11];
    const hl = normals(rng, n * vocab, 2);
    const ht = Int32Array.from({ length: n }, () => rng.int(0, vocab - 1));
    const w = normals(rng, n, 1);  // L = sum_i w_i * loss_i: row i's gradient is w_i (softmax - onehot)
    const ref = crossEntropy64(hl, ht, n, vocab);
    const ls = Float64Array.from(hl);
    const lossRef = (v: Float64Array): number => dot64(crossEntropy64(v, ht, n, vocab).losses, w);
    for (let k = 0; k < n * vocab; k++) {
      const i = Math.floor(k / vocab);
      const analytic = w[i] * (ref.probs[k] - (k % vocab === ht[i] ? 1 : 0));
      const fd = centralDiff(lossRef, ls, k, 1e-6);
      expectClose([analytic], [fd], { what: `cross_entropy reference gradient at ${k}`, seed, rtol: 1e-6, atol: 1e-8 });
    }
    // Ours: per row, grad_scale = w_i (one call per row so each row gets its own scale).
    const ours = new Float32Array(n * vocab);
    const targets = put(ht, [n]);
    for (let i = 0; i < n; i++) {
      const row = put(hl.slice(i * vocab, (i + 1) * vocab), [1, vocab]);
      const t1 = put(ht.slice(i, i + 1), [1]);
      crossEntropy(row, t1, { gradScale: w[i] }).dispose();
      ours.set(await f32AndDispose(row), i * vocab);
      t1.dispose();
    }
    const losses = async (v: Float32Array): Promise<number> => {
      const t = put(v, [n, vocab]);
      const l = await f32AndDispose(crossEntropy(t, targets));
      t.dispose();
      return dot64(l, w);
    };
    const h = 1 / 64;
    for (const k of probeIndices(rng, n * vocab, 10)) {
      const up = Float32Array.from(hl);
      up[k] += h;
      const down = Float32Array.from(hl);
      down[k] -= h;
      const fd = ((await losses(up)) - (await losses(down))) / (fround(hl[k] + h) - fround(hl[k] - h));
      expectClose([ours[k]], [fd], { what: `cross_entropy d/dlogits[${k}] vs our losses`, seed, atol: 2e-3 * (1 + abs(w[Math.floor(k / vocab)])) });
    }
    targets.dispose();
  });
});
