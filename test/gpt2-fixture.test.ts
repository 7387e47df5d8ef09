// The whole GPT-2 (forward, loss and every gradient) against an independent PyTorch
// implementation of the speedrun spec: test/fixtures/gpt2-tiny.safetensors, made in float64 by
// scripts/make_gpt2_fixture.py (2 layers, 2 heads of 16, vocab 67, B 2 x T 24). The fixture holds
// the weights (param/<name>), the tokens, the loss (metadata) and the gradients (grad/<name>).
//
// Tolerances, f32: on the CPU the loss within 1e-6 relative and each gradient within 2e-5 relative
// Frobenius error (measured: 1e-8 and ~1.5e-6); on CUDA 1e-5 and 1e-4 (ARCHITECTURE: fp32
// 1e-5..1e-4). The CPU bounds are tight on purpose: the fixture tells apart exact from tanh GELU
// (gradient errors ~3e-4), RMSNorm eps 1e-5 from 1e-6 (~2e-3) and rotary base 10001 from 10000
// (~7e-5), none of which a loose bound would see. CUDA's default mixed precision
// (bf16 GEMM operands) is checked at 3e-2 for the loss and 5e-2 per gradient (bf16 has 8 bits of
// mantissa: ~4e-3 per rounding, compounded through 2 layers and their backward).
//
// When NM_TEST_DEVICE=cuda, a CUDA-vs-CPU parity test also runs the whole forward/backward with
// head dim 64 (the flash kernel's) for every attention implementation.
import * as path from 'path';

import { GPT2, readSafetensors, readSafetensorsMetadata, tensor } from '../lib/index';
import type { AttentionAlgo, GPT2Config, Tensor } from '../lib/index';
import { freshSeed, TEST_DEVICE } from './helpers/device';
import { HostRng } from './helpers/reference';

const device = TEST_DEVICE;
const CUDA = device === 'cuda';
const FIXTURE = path.join(__dirname, 'fixtures', 'gpt2-tiny.safetensors');
const LOSS_TOL = CUDA ? 1e-5 : 1e-6;
const GRAD_TOL = CUDA ? 1e-4 : 2e-5;

const entries = readSafetensors(FIXTURE);
const meta = readSafetensorsMetadata(FIXTURE);
const config = JSON.parse(meta.config) as GPT2Config;
const B = Number(meta.B);
const T = Number(meta.T);
const refLoss = Number(meta.loss);
const inputs = Int32Array.from(entries.inputs.data);
const targets = Int32Array.from(entries.targets.data);
const refParams: Record<string, Float32Array> = {};
const refGrads: Record<string, Float32Array> = {};
for (const [name, { data }] of Object.entries(entries)) {
  if (name.startsWith('param/')) refParams[name.slice(6)] = data;
  if (name.startsWith('grad/')) refGrads[name.slice(5)] = data;
}

/** ||actual - expected||_F / ||expected||_F in float64. */
function relFrob(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = actual[i] - expected[i];
    num += d * d;
    den += expected[i] * expected[i];
  }
  return Math.sqrt(num) / Math.sqrt(den);
}

async function readAll(record: Record<string, Tensor>): Promise<Record<string, Float32Array>> {
  const out: Record<string, Float32Array> = {};
  for (const [name, t] of Object.entries(record)) out[name] = (await t.read()) as Float32Array;
  return out;
}

/** Every gradient's relative Frobenius error; throws listing all of them when one exceeds tol. */
function expectGradsClose(actual: Record<string, Float32Array>, expected: Record<string, Float32Array>, tol: number, what: string): void {
  expect(Object.keys(actual).sort()).toEqual(Object.keys(expected).sort());
  const rows = Object.keys(expected).map((name) => {
    const err = relFrob(actual[name], expected[name]);
    return { name, err, bad: !(err <= tol) };
  });
  if (rows.some((r) => r.bad)) {
    const table = rows.map((r) => `  ${r.bad ? 'FAIL' : 'ok  '} ${r.name}: rel Frobenius error ${r.err.toExponential(3)}`).join('\n');
    throw new Error(`${what}: gradients beyond ${tol}:\n${table}`);
  }
}

function expectLossClose(actual: number, expected: number, tol: number, what: string): void {
  const rel = Math.abs(actual - expected) / Math.abs(expected);
  if (!(rel <= tol)) throw new Error(`${what}: loss ${actual} vs reference ${expected} (rel error ${rel.toExponential(3)} > ${tol})`);
}

test('the fixture is what the suite expects (sizes, token ranges, every parameter and gradient present)', () => {
  expect(config).toEqual({ vocabSize: 67, nLayer: 2, nHead: 2, nEmbd: 32, maxSeqLen: 64 });
  expect(inputs.length).toBe(B * T);
  expect(targets.length).toBe(B * T);
  for (const ids of [inputs, targets]) for (const id of ids) expect(id >= 0 && id < config.vocabSize).toBe(true);
  expect(Object.keys(refParams).length).toBe(1 + 4 * config.nLayer);
  expect(Object.keys(refGrads).sort()).toEqual(Object.keys(refParams).sort());
  expect(Number.isFinite(refLoss)).toBe(true);
});

describe.each(CUDA ? ['auto', 'naive'] as AttentionAlgo[] : ['auto'] as AttentionAlgo[])('f32, attention %s', (attention) => {
  let model: GPT2;
  beforeAll(async () => {
    model = new GPT2(config, { device, precision: 'f32', seed: freshSeed(), attention });
    await model.loadStateDict(refParams);
  });
  afterAll(() => model.dispose());

  test('loadStateDict puts the fixture weights in bit for bit', async () => {
    const params = await readAll(model.stateDict());
    for (const [name, ref] of Object.entries(refParams)) expect(Buffer.from(params[name].buffer).equals(Buffer.from(ref.buffer))).toBe(true);
  });

  test('forwardBackward: the loss and every gradient match PyTorch (float64)', async () => {
    model.zeroGrad();
    const loss = await model.forwardBackward(inputs, targets, B, T);
    expectLossClose(loss, refLoss, LOSS_TOL, `f32 ${device} forwardBackward`);
    expectGradsClose(await readAll(model.grads()), refGrads, GRAD_TOL, `f32 ${device}`);
  });

  test('loss() gives the forward loss and leaves the gradients alone', async () => {
    model.zeroGrad();
    const trained = await model.forwardBackward(inputs, targets, B, T);
    const before = await readAll(model.grads());
    const evaluated = await model.loss(inputs, targets, B, T);
    expectLossClose(evaluated, refLoss, LOSS_TOL, `f32 ${device} loss()`);
    expect(Math.abs(evaluated - trained)).toBeLessThanOrEqual(1e-6 * Math.abs(trained));
    const after = await readAll(model.grads());
    for (const name of Object.keys(before)) expect(Buffer.from(after[name].buffer).equals(Buffer.from(before[name].buffer))).toBe(true);
  });

  test('tokens may be given as i32 tensors on the device', async () => {
    const ids = tensor(inputs, [B * T], { dtype: 'i32', device });
    const tgt = tensor(targets, [B * T], { dtype: 'i32', device });
    try {
      model.zeroGrad();
      const loss = await model.forwardBackward(ids, tgt, B, T);
      expectLossClose(loss, refLoss, LOSS_TOL, 'tensor tokens');
      expectGradsClose(await readAll(model.grads()), refGrads, GRAD_TOL, 'tensor tokens');
    } finally {
      ids.dispose();
      tgt.dispose();
    }
  });
});

(CUDA ? test : test.skip)('CUDA mixed precision (the bf16 default) stays close to the float64 reference', async () => {
  const model = new GPT2(config, { device, seed: freshSeed() });
  try {
    expect(model.precision).toBe('bf16');
    await model.loadStateDict(refParams);
    const loss = await model.forwardBackward(inputs, targets, B, T);
    expectLossClose(loss, refLoss, 3e-2, 'bf16 forwardBackward');
    expectGradsClose(await readAll(model.grads()), refGrads, 5e-2, 'bf16');
    // Evaluation computes in f32 whatever the training precision.
    expectLossClose(await model.loss(inputs, targets, B, T), refLoss, 1e-5, 'bf16 model, f32 loss()');
  } finally {
    model.dispose();
  }
});

// Attention 'flash-bf16' (bf16 operands, any head dim on the CPU, here 16) through the whole model:
// at the bf16 tolerances of the CUDA mixed-precision test above. Its op-level checks are in
// test/attention-bf16.test.ts.
test(`attention flash-bf16 (${device}, f32 elsewhere) stays close to the float64 reference`, async () => {
  if (CUDA) return;  // CUDA has flash-bf16 for head dim 64 only; the parity block below covers it
  const model = new GPT2(config, { device, precision: 'f32', seed: freshSeed(), attention: 'flash-bf16' });
  try {
    await model.loadStateDict(refParams);
    const loss = await model.forwardBackward(inputs, targets, B, T);
    expectLossClose(loss, refLoss, 3e-2, 'flash-bf16 forwardBackward');
    expectGradsClose(await readAll(model.grads()), refGrads, 5e-2, 'flash-bf16');
  } finally {
    model.dispose();
  }
});

// Head dim 64 (what the flash kernel is written for), T not a multiple of any tile size, vocab
// not a multiple of anything: the CUDA model against the CPU one on identical weights.
describe('CUDA vs CPU parity, head dim 64', () => {
  const parity: GPT2Config = { vocabSize: 101, nLayer: 2, nHead: 2, nEmbd: 128, maxSeqLen: 256 };
  const [pb, pt] = [2, 77];
  const algos: AttentionAlgo[] = ['naive', 'flash', 'auto'];
  let cpuLoss = 0;
  let cpuGrads: Record<string, Float32Array> = {};
  let ids = new Int32Array(0);
  let tgt = new Int32Array(0);
  const seed = freshSeed();

  beforeAll(async () => {
    if (!CUDA) return;
    const rng = new HostRng(seed);
    ids = Int32Array.from({ length: pb * pt }, () => rng.int(0, parity.vocabSize - 1));
    tgt = Int32Array.from({ length: pb * pt }, () => rng.int(0, parity.vocabSize - 1));
    const cpu = new GPT2(parity, { device: 'cpu', seed });
    try {
      cpuLoss = await cpu.forwardBackward(ids, tgt, pb, pt);
      cpuGrads = await readAll(cpu.grads());
    } finally {
      cpu.dispose();
    }
  });

  // flash-bf16 (tensor cores) at the bf16 tolerances, in both precisions.
  for (const precision of ['f32', 'bf16'] as const) {
    (CUDA ? test : test.skip)(`${precision}, attention flash-bf16`, async () => {
      const gpu = new GPT2(parity, { device: 'cuda', seed, precision, attention: 'flash-bf16' });
      try {
        const loss = await gpu.forwardBackward(ids, tgt, pb, pt);
        expectLossClose(loss, cpuLoss, 3e-2, `cuda ${precision} flash-bf16 vs cpu`);
        expectGradsClose(await readAll(gpu.grads()), cpuGrads, 5e-2, `cuda ${precision} flash-bf16 vs cpu (seed ${seed})`);
      } finally {
        gpu.dispose();
      }
    });
  }
  for (const algo of algos) {
    (CUDA ? test : test.skip)(`f32, attention ${algo}`, async () => {
      const gpu = new GPT2(parity, { device: 'cuda', seed, precision: 'f32', attention: algo });
      try {
        const loss = await gpu.forwardBackward(ids, tgt, pb, pt);
        expectLossClose(loss, cpuLoss, 1e-5, `cuda ${algo} vs cpu`);
        expectGradsClose(await readAll(gpu.grads()), cpuGrads, 1e-4, `cuda ${algo} vs cpu (seed ${seed})`);
      } finally {
        gpu.dispose();
      }
    });
    (CUDA ? test : test.skip)(`bf16, attention ${algo}`, async () => {
      const gpu = new GPT2(parity, { device: 'cuda', seed, precision: 'bf16', attention: algo });
      try {
        const loss = await gpu.forwardBackward(ids, tgt, pb, pt);
        expectLossClose(loss, cpuLoss, 3e-2, `cuda bf16 ${algo} vs cpu`);
        expectGradsClose(await readAll(gpu.grads()), cpuGrads, 5e-2, `cuda bf16 ${algo} vs cpu (seed ${seed})`);
      } finally {
        gpu.dispose();
      }
    });
  }
});
