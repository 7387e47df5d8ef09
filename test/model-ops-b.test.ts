// GPT-2 model ops, part B: rotary embedding and causal multi-head attention (forward, lse and
// backward), against float64 references written here, on fresh random inputs. For attention:
// (1) the float64 analytic backward is checked against central differences of the float64
// forward (checks the reference itself), (2) every algo value ('auto', 'naive', 'flash') is
// checked against the float64 forward / lse / backward, (3) on CUDA the naive and flash paths are
// compared with each other, and every path must be deterministic (same bits twice).
// 'flash-bf16' (bf16 operands, other semantics) is tested in attention-bf16.test.ts.
// Layouts: qkv [B*T, 3C] = [B, T, 3, H, D]; out [B*T, C]; lse [B, H, T].
import { attentionBackward, attentionForward, AttentionAlgo, rotary, Tensor, tensor } from '../lib/index';
import { freshSeed, TEST_DEVICE } from './helpers/device';
import { centralDiff, expectClose, expectSameBits, HostRng } from './helpers/reference';

const device = TEST_DEVICE;
const { abs, cos, exp, log, max, pow, sin, sqrt, PI } = Math;
const ALGOS: AttentionAlgo[] = ['auto', 'naive', 'flash'];

// ---- host data ------------------------------------------------------------------------------

/** n normal samples (Box-Muller on HostRng) times std, rounded to f32. */
function normals(rng: HostRng, n: number, std = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u1 = 1 - rng.next();
    const u2 = rng.next();
    out[i] = std * sqrt(-2 * log(u1)) * cos(2 * PI * u2);
  }
  return out;
}

function put(data: Float32Array, shape: number[]): Tensor {
  return tensor(data, shape, { device });
}

async function f32AndDispose(t: Tensor): Promise<Float32Array> {
  const v = (await t.read()) as Float32Array;
  t.dispose();
  return v;
}

interface Shape {
  b: number;
  t: number;
  heads: number;
  d: number;
}

const shapeName = (s: Shape): string => `B=${s.b} T=${s.t} H=${s.heads} D=${s.d}`;

// ---- float64 references ---------------------------------------------------------------------

/** Rotary on the q and k parts of qkv in float64 (v copied): { y, scale = |x1| + |x2| }. */
function rotary64(x: ArrayLike<number>, s: Shape, base: number, inverse: boolean): { y: Float64Array; scale: Float64Array } {
  const c = s.heads * s.d;
  const half = s.d / 2;
  const y = Float64Array.from(x);
  const scale = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) scale[i] = abs(x[i]);
  for (let row = 0; row < s.b * s.t; row++) {
    const pos = row % s.t;
    for (let v = 0; v < 2 * s.heads; v++) {
      const at = row * 3 * c + v * s.d;
      for (let j = 0; j < half; j++) {
        const angle = pos * pow(base, (-2 * j) / s.d);
        const co = cos(angle);
        const si = inverse ? -sin(angle) : sin(angle);
        const a = x[at + j];
        const bb = x[at + half + j];
        y[at + j] = a * co + bb * si;
        y[at + half + j] = -a * si + bb * co;
        scale[at + j] = scale[at + half + j] = abs(a) + abs(bb);
      }
    }
  }
  return { y, scale };
}

interface Attention64 {
  out: Float64Array;
  lse: Float64Array;
  /** p[((b*H + h)*T + i)*T + j], zero above the diagonal. */
  p: Float64Array;
  /** Unnormalised scaled scores s[((b*H + h)*T + i)*T + j]. */
  s: Float64Array;
  /** Per out element: sum_j p_ij |v_jd| (the size of its terms). */
  outScale: Float64Array;
  /** Per lse element: max_j |s_ij| + log(i + 1) + 1. */
  lseScale: Float64Array;
}

function attention64(qkv: ArrayLike<number>, sh: Shape, scale: number): Attention64 {
  const { b: B, t: T, heads: H, d: D } = sh;
  const c = H * D;
  const out = new Float64Array(B * T * c);
  const outScale = new Float64Array(B * T * c);
  const lse = new Float64Array(B * H * T);
  const lseScale = new Float64Array(B * H * T);
  const p = new Float64Array(B * H * T * T);
  const s = new Float64Array(B * H * T * T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const bh = b * H + h;
      for (let i = 0; i < T; i++) {
        const qi = (b * T + i) * 3 * c + h * D;
        const rowAt = (bh * T + i) * T;
        let m = -Infinity;
        let maxAbs = 0;
        for (let j = 0; j <= i; j++) {
          const kj = (b * T + j) * 3 * c + c + h * D;
          let acc = 0;
          for (let d = 0; d < D; d++) acc += qkv[qi + d] * qkv[kj + d];
          const v = acc * scale;
          s[rowAt + j] = v;
          m = max(m, v);
          maxAbs = max(maxAbs, abs(v));
        }
        let sum = 0;
        for (let j = 0; j <= i; j++) sum += exp(s[rowAt + j] - m);
        lse[bh * T + i] = m + log(sum);
        lseScale[bh * T + i] = maxAbs + log(i + 1) + 1;
        for (let j = 0; j <= i; j++) p[rowAt + j] = exp(s[rowAt + j] - m) / sum;
        const oi = (b * T + i) * c + h * D;
        for (let j = 0; j <= i; j++) {
          const vj = (b * T + j) * 3 * c + 2 * c + h * D;
          const pj = p[rowAt + j];
          for (let d = 0; d < D; d++) {
            out[oi + d] += pj * qkv[vj + d];
            outScale[oi + d] += pj * abs(qkv[vj + d]);
          }
        }
      }
    }
  }
  return { out, lse, p, s, outScale, lseScale };
}

/**
 * The analytic backward in float64: dqkv, plus per element the size of its terms for the
 * tolerance (each dS term weighted by everything whose f32 rounding it inherits: p's error grows
 * with |s| and |lse|, dP - delta cancels).
 */
function attentionBackward64(dout: ArrayLike<number>, qkv: ArrayLike<number>, sh: Shape, scale: number, fwd: Attention64): { dqkv: Float64Array; scale: Float64Array } {
  const { b: B, t: T, heads: H, d: D } = sh;
  const c = H * D;
  const dqkv = new Float64Array(B * T * 3 * c);
  const tol = new Float64Array(B * T * 3 * c);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const bh = b * H + h;
      for (let i = 0; i < T; i++) {
        const gi = (b * T + i) * c + h * D;
        const qi = (b * T + i) * 3 * c + h * D;
        const rowAt = (bh * T + i) * T;
        let delta = 0;
        let deltaAbs = 0;
        for (let d = 0; d < D; d++) {
          delta += dout[gi + d] * fwd.out[gi + d];
          deltaAbs += abs(dout[gi + d]) * fwd.outScale[gi + d];
        }
        // p = exp(s - lse) inherits the absolute rounding errors of s and lse.
        const pErr = fwd.lseScale[bh * T + i] + abs(fwd.lse[bh * T + i]);
        for (let j = 0; j <= i; j++) {
          const kj = (b * T + j) * 3 * c + c + h * D;
          const vj = kj + c;
          let dp = 0;
          let dpAbs = 0;
          for (let d = 0; d < D; d++) {
            dp += dout[gi + d] * qkv[vj + d];
            dpAbs += abs(dout[gi + d] * qkv[vj + d]);
          }
          const pj = fwd.p[rowAt + j];
          const ds = pj * (dp - delta);
          const dsScale = pj * (dpAbs + deltaAbs) * (pErr + abs(fwd.s[rowAt + j]));
          for (let d = 0; d < D; d++) {
            dqkv[qi + d] += scale * ds * qkv[kj + d];
            tol[qi + d] += scale * dsScale * abs(qkv[kj + d]);
            dqkv[kj + d] += scale * ds * qkv[qi + d];
            tol[kj + d] += scale * dsScale * abs(qkv[qi + d]);
            dqkv[vj + d] += pj * dout[gi + d];
            tol[vj + d] += pj * abs(dout[gi + d]) * (pErr + abs(fwd.s[rowAt + j]));
          }
        }
      }
    }
  }
  return { dqkv, scale: tol };
}

function dot64(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

// ---- rotary ---------------------------------------------------------------------------------

describe('rotary', () => {
  // T = 1024 reaches the largest angles (pos * freq_0 = 1023 rad); D = 2 has one pair per head.
  const SHAPES: Shape[] = [
    { b: 2, t: 37, heads: 3, d: 64 },
    { b: 1, t: 1024, heads: 1, d: 16 },
    { b: 3, t: 5, heads: 2, d: 2 },
    { b: 1, t: 1, heads: 4, d: 8 },
  ];

  test.each(SHAPES.map((s) => [shapeName(s), s] as const))('forward matches float64 and the inverse undoes it, %s', async (_name, s) => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    const c = s.heads * s.d;
    const hx = normals(rng, s.b * s.t * 3 * c, 2);
    for (const base of [10000, 500]) {
      const x = put(hx, [s.b * s.t, 3 * c]);
      expect(rotary(x, { b: s.b, t: s.t, heads: s.heads }, { base })).toBe(x);
      const y = (await x.read()) as Float32Array;
      const ref = rotary64(hx, s, base, false);
      expectClose(y, ref.y, { what: `rotary base ${base} (${shapeName(s)})`, seed, rtol: 1e-6, scale: ref.scale });
      // v is untouched, bit for bit.
      for (let row = 0; row < s.b * s.t; row++) {
        const at = row * 3 * c + 2 * c;
        expectSameBits(y.subarray(at, at + c), hx.subarray(at, at + c), 'rotary: v unchanged', seed);
      }
      // The inverse alone matches the transposed rotation, and inverse(forward(x)) == x.
      const back = rotary64(y, s, base, true);
      rotary(x, { b: s.b, t: s.t, heads: s.heads }, { base, inverse: true });
      const z = await f32AndDispose(x);
      expectClose(z, back.y, { what: `rotary inverse base ${base}`, seed, rtol: 1e-6, scale: back.scale });
      expectClose(z, hx, { what: `rotary inverse(forward(x)) == x, base ${base}`, seed, rtol: 2e-6, scale: ref.scale });
    }
  });

  test('position 0 is the identity and each head vector keeps its norm', async () => {
    const seed = freshSeed();
    const s: Shape = { b: 2, t: 50, heads: 2, d: 64 };
    const c = s.heads * s.d;
    const hx = normals(new HostRng(seed), s.b * s.t * 3 * c);
    const x = put(hx, [s.b * s.t, 3 * c]);
    rotary(x, { b: s.b, t: s.t, heads: s.heads });
    const y = await f32AndDispose(x);
    for (let b = 0; b < s.b; b++) {
      const at = b * s.t * 3 * c;
      expectSameBits(y.subarray(at, at + 3 * c), hx.subarray(at, at + 3 * c), 'rotary at t = 0', seed);
    }
    for (let row = 0; row < s.b * s.t; row++) {
      for (let v = 0; v < 2 * s.heads; v++) {
        const at = row * 3 * c + v * s.d;
        const n0 = dot64(hx.subarray(at, at + s.d), hx.subarray(at, at + s.d));
        const n1 = dot64(y.subarray(at, at + s.d), y.subarray(at, at + s.d));
        expect(abs(n1 - n0)).toBeLessThanOrEqual(1e-5 * n0);
      }
    }
  });
});

// ---- attention ------------------------------------------------------------------------------

// T = 1; odd T; T exactly one / just past one tile (32, 33, 64, 65); several query blocks; D = 64
// (the model's, flash under 'auto') and D = 16, 32 (flash only when asked for on CUDA).
const ATTENTION_SHAPES: Shape[] = [
  { b: 1, t: 1, heads: 1, d: 64 },
  { b: 2, t: 37, heads: 3, d: 64 },
  { b: 1, t: 33, heads: 2, d: 64 },
  { b: 2, t: 64, heads: 1, d: 64 },
  { b: 1, t: 65, heads: 2, d: 16 },
  { b: 1, t: 37, heads: 2, d: 16 },
  { b: 1, t: 130, heads: 1, d: 32 },
  { b: 1, t: 200, heads: 2, d: 64 },
];

interface Inputs {
  seed: number;
  hqkv: Float32Array;
  hdout: Float32Array;
  scale: number;
}

function makeInputs(s: Shape): Inputs {
  const seed = freshSeed();
  const rng = new HostRng(seed);
  const c = s.heads * s.d;
  // std 1.5 makes the softmax rows peaked enough that the max subtraction matters.
  const hqkv = normals(rng, s.b * s.t * 3 * c, 1.5);
  const hdout = normals(rng, s.b * s.t * c);
  return { seed, hqkv, hdout, scale: 1 / sqrt(s.d) };
}

interface Run {
  out: Float32Array;
  lse: Float32Array;
  dqkv: Float32Array;
}

async function runAttention(s: Shape, inp: Inputs, algo: AttentionAlgo): Promise<Run> {
  const c = s.heads * s.d;
  const shape = { b: s.b, t: s.t, heads: s.heads };
  const qkv = put(inp.hqkv, [s.b * s.t, 3 * c]);
  const dout = put(inp.hdout, [s.b * s.t, c]);
  const fwd = attentionForward(qkv, shape, { algo });
  expect(fwd.out.shape).toEqual([s.b * s.t, c]);
  expect(fwd.lse.shape).toEqual([s.b, s.heads, s.t]);
  const dqkv = attentionBackward(dout, qkv, fwd.out, fwd.lse, shape, { algo });
  expect(dqkv.shape).toEqual([s.b * s.t, 3 * c]);
  const run = { out: await f32AndDispose(fwd.out), lse: await f32AndDispose(fwd.lse), dqkv: await f32AndDispose(dqkv) };
  // Inputs are not modified.
  expectSameBits(await f32AndDispose(qkv), inp.hqkv, `attention (${algo}): qkv unchanged`, inp.seed);
  expectSameBits(await f32AndDispose(dout), inp.hdout, `attention (${algo}): dout unchanged`, inp.seed);
  return run;
}

/** Whether `algo` runs for head dim d on the test device ('flash' on CUDA takes 16, 32, 64). */
const supported = (algo: AttentionAlgo, d: number): boolean => device !== 'cuda' || algo !== 'flash' || [16, 32, 64].includes(d);

describe('attention', () => {
  test('the float64 backward matches central differences of the float64 forward', () => {
    const s: Shape = { b: 2, t: 9, heads: 2, d: 8 };
    const inp = makeInputs(s);
    const x = Float64Array.from(inp.hqkv);
    const loss = (v: Float64Array): number => dot64(attention64(v, s, inp.scale).out, inp.hdout);
    const fwd = attention64(x, s, inp.scale);
    const { dqkv } = attentionBackward64(inp.hdout, x, s, inp.scale, fwd);
    const rng = new HostRng(inp.seed + 1);
    const idx = new Set<number>();
    while (idx.size < 40) idx.add(rng.int(0, x.length - 1));
    const fd: number[] = [];
    const an: number[] = [];
    for (const i of idx) {
      fd.push(centralDiff(loss, x, i, 1e-5));
      an.push(dqkv[i]);
    }
    expectClose(an, fd, { what: 'attention float64 backward vs central differences', seed: inp.seed, rtol: 1e-6, atol: 1e-8 });
  });

  describe.each(ATTENTION_SHAPES.map((s) => [shapeName(s), s] as const))('%s', (_name, s) => {
    test.each(ALGOS.filter((a) => supported(a, s.d)))('algo %s: out, lse and dqkv match float64; deterministic', async (algo) => {
      const inp = makeInputs(s);
      const fwd = attention64(inp.hqkv, s, inp.scale);
      const bwd = attentionBackward64(inp.hdout, inp.hqkv, s, inp.scale, fwd);
      const run = await runAttention(s, inp, algo);
      const what = `${algo} ${shapeName(s)}`;
      expectClose(run.out, fwd.out, { what: `attention out (${what})`, seed: inp.seed, rtol: 2e-5, scale: fwd.outScale });
      expectClose(run.lse, fwd.lse, { what: `attention lse (${what})`, seed: inp.seed, rtol: 1e-6, scale: fwd.lseScale });
      expectClose(run.dqkv, bwd.dqkv, { what: `attention dqkv (${what})`, seed: inp.seed, rtol: 2e-5, scale: bwd.scale });
      // Same inputs, same bits.
      const again = await runAttention(s, inp, algo);
      expectSameBits(again.out, run.out, `attention out determinism (${what})`, inp.seed);
      expectSameBits(again.lse, run.lse, `attention lse determinism (${what})`, inp.seed);
      expectSameBits(again.dqkv, run.dqkv, `attention dqkv determinism (${what})`, inp.seed);
    });
  });

  // The two CUDA paths must agree with each other (each is checked against float64 above).
  (device === 'cuda' ? test : test.skip)('CUDA: naive and flash agree', async () => {
    for (const s of ATTENTION_SHAPES.filter((x) => supported('flash', x.d))) {
      const inp = makeInputs(s);
      const fwd = attention64(inp.hqkv, s, inp.scale);
      const bwd = attentionBackward64(inp.hdout, inp.hqkv, s, inp.scale, fwd);
      const naive = await runAttention(s, inp, 'naive');
      const flash = await runAttention(s, inp, 'flash');
      const what = shapeName(s);
      expectClose(flash.out, naive.out, { what: `flash vs naive out (${what})`, seed: inp.seed, rtol: 4e-5, scale: fwd.outScale });
      expectClose(flash.lse, naive.lse, { what: `flash vs naive lse (${what})`, seed: inp.seed, rtol: 2e-6, scale: fwd.lseScale });
      expectClose(flash.dqkv, naive.dqkv, { what: `flash vs naive dqkv (${what})`, seed: inp.seed, rtol: 4e-5, scale: bwd.scale });
    }
  });

  (device === 'cuda' ? test : test.skip)('CUDA: flash rejects a head dim it has no kernel for; auto falls back to naive', async () => {
    const s: Shape = { b: 1, t: 10, heads: 2, d: 8 };
    const inp = makeInputs(s);
    const qkv = put(inp.hqkv, [s.b * s.t, 3 * s.heads * s.d]);
    expect(() => attentionForward(qkv, { b: 1, t: 10, heads: 2 }, { algo: 'flash' })).toThrow(/head_dim/);
    const { out, lse } = attentionForward(qkv, { b: 1, t: 10, heads: 2 }, { algo: 'auto' });
    const fwd = attention64(inp.hqkv, s, inp.scale);
    expectClose(await f32AndDispose(out), fwd.out, { what: 'attention auto, D = 8', seed: inp.seed, rtol: 2e-5, scale: fwd.outScale });
    lse.dispose();
    qkv.dispose();
  });

  (device === 'cpu' ? test : test.skip)('CPU accepts every algo for any head dim (one implementation)', async () => {
    const s: Shape = { b: 1, t: 10, heads: 2, d: 6 };
    const inp = makeInputs(s);
    const fwd = attention64(inp.hqkv, s, inp.scale);
    const bwd = attentionBackward64(inp.hdout, inp.hqkv, s, inp.scale, fwd);
    for (const algo of ALGOS) {
      const run = await runAttention(s, inp, algo);
      expectClose(run.out, fwd.out, { what: `attention out (${algo}, D = 6)`, seed: inp.seed, rtol: 2e-5, scale: fwd.outScale });
      expectClose(run.dqkv, bwd.dqkv, { what: `attention dqkv (${algo}, D = 6)`, seed: inp.seed, rtol: 2e-5, scale: bwd.scale });
    }
  });

  test('an unknown algo is a TypeError', () => {
    const qkv = put(new Float32Array(3 * 16), [1, 48]);
    expect(() => attentionForward(qkv, { b: 1, t: 1, heads: 1 }, { algo: 'fast' as AttentionAlgo })).toThrow(TypeError);
    qkv.dispose();
  });
});
