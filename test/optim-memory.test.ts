// Optimizer memory accounting: every tensor an optimizer allocates (momentum, Newton-Schulz
// buffers, K / S / Kinv / info and their views, the checkFinite scratch, the factorisation-flag
// reads) is freed by dispose() and by the operations themselves, so memoryStats() returns to its
// starting value once the optimizer and the test's own tensors are disposed.
import { AdamW, copy, Muon, NewtonMuon, synchronize, Tensor, tensor } from '../lib/index';
import type { MatrixParam } from '../lib/index';
import { freshSeed, TEST_DEVICE } from './helpers/device';
import { liveOn, settleGarbage } from './helpers/memory';
import { normalsF32 } from './helpers/optim-reference';
import { HostRng } from './helpers/reference';

const device = TEST_DEVICE;

let baseline: { bytes: number; buffers: number };
beforeEach(async () => {
  await settleGarbage();
  baseline = liveOn(device);
});

function live(): { bytes: number; buffers: number } {
  const now = liveOn(device);
  return { bytes: now.bytes - baseline.bytes, buffers: now.buffers - baseline.buffers };
}

const SPECS = [
  { name: 'qkv', shape: [24, 8], rowBlocks: 3 },
  { name: 'proj', shape: [8, 8] },
  { name: 'fc2', shape: [8, 32], inputBlocks: 4 },
  { name: 'twin', shape: [8, 8], inputKey: 'proj' },
];

function makeTensors(rng: HostRng): { params: Tensor[]; grads: Tensor[]; specs: MatrixParam[] } {
  const params = SPECS.map((s) => tensor(normalsF32(rng, s.shape[0] * s.shape[1]), s.shape, { device }));
  const grads = SPECS.map((s) => tensor(normalsF32(rng, s.shape[0] * s.shape[1]), s.shape, { device }));
  const specs = SPECS.map((s, i) => ({ name: s.name, param: params[i], grad: grads[i], rowBlocks: s.rowBlocks, inputBlocks: s.inputBlocks, inputKey: s.inputKey }));
  return { params, grads, specs };
}

async function steps(opt: Muon | NewtonMuon, params: Tensor[], rng: HostRng, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    if (opt.collectsStatistics()) {
      SPECS.forEach((s, j) => {
        for (const tokens of [5, 9]) {
          const x = tensor(normalsF32(rng, tokens * s.shape[1]), [tokens, s.shape[1]], { device });
          opt.observeInput(params[j], x);
          x.dispose();
        }
      });
    }
    await opt.step();
  }
}

test('NewtonMuon: steps with refreshes, stateDict, flushReports, dispose -> back to the baseline', async () => {
  const rng = new HostRng(freshSeed());
  const { params, grads, specs } = makeTensors(rng);
  const tensorsOnly = live();
  const opt = new NewtonMuon(specs, { lr: 0.01, refreshEvery: 2, checkFinite: true });
  const allocated = live();
  expect(allocated.buffers).toBeGreaterThan(tensorsOnly.buffers);
  await steps(opt, params, rng, 5);
  await opt.flushReports();
  await synchronize(device);
  // Stepping allocates nothing that outlives the step.
  expect(live()).toEqual(allocated);
  for (const t of Object.values(opt.stateDict().tensors)) await (t as Tensor).read();
  expect(live()).toEqual(allocated);
  opt.dispose();
  expect(live()).toEqual(tensorsOnly);
  for (const t of [...params, ...grads]) t.dispose();
  expect(live()).toEqual({ bytes: 0, buffers: 0 });
});

test('NewtonMuon disposed right after a refresh step (factorisation flags still being read)', async () => {
  const rng = new HostRng(freshSeed());
  const { params, grads, specs } = makeTensors(rng);
  const opt = new NewtonMuon(specs, { lr: 0.01, refreshEvery: 1, onWarning: () => undefined });
  await steps(opt, params, rng, 1);
  opt.dispose();
  await opt.flushReports();
  await synchronize(device);
  for (const t of [...params, ...grads]) t.dispose();
  expect(live()).toEqual({ bytes: 0, buffers: 0 });
});

test('Muon and AdamW: dispose -> back to the baseline; a rejected checkFinite step leaks nothing', async () => {
  const rng = new HostRng(freshSeed());
  const { params, grads, specs } = makeTensors(rng);
  const muon = new Muon(specs, { lr: 0.01, checkFinite: true });
  await steps(muon, params, rng, 2);
  const withMuon = live();
  const nan = tensor(new Float32Array(64).fill(NaN), [8, 8], { device });
  copy(grads[1], nan);
  nan.dispose();
  await expect(muon.step()).rejects.toThrow(/not finite/);
  expect(live()).toEqual(withMuon);
  muon.dispose();

  const adam = new AdamW(specs.map((s) => ({ name: s.name, param: s.param, grad: s.grad })), { lr: 0.01, checkFinite: true });
  await expect(adam.step()).rejects.toThrow(/not finite/);
  const fine = tensor(normalsF32(rng, 64), [8, 8], { device });
  copy(grads[1], fine);
  fine.dispose();
  await adam.step();
  await adam.loadStateDict(adam.stateDict());
  adam.dispose();
  await synchronize(device);
  for (const t of [...params, ...grads]) t.dispose();
  expect(live()).toEqual({ bytes: 0, buffers: 0 });
});

test('loadStateDict from host arrays and from tensors allocates nothing that stays', async () => {
  const rng = new HostRng(freshSeed());
  const { params, grads, specs } = makeTensors(rng);
  const opt = new NewtonMuon(specs, { lr: 0.01, refreshEvery: 1, onWarning: () => undefined });
  await steps(opt, params, rng, 2);
  await opt.flushReports();
  const state = opt.stateDict();
  const hostTensors: Record<string, Float32Array> = {};
  for (const [n, t] of Object.entries(state.tensors)) hostTensors[n] = (await (t as Tensor).read()) as Float32Array;
  const before = live();
  await opt.loadStateDict({ ...state, tensors: hostTensors });
  await opt.loadStateDict(state);
  await synchronize(device);
  expect(live()).toEqual(before);
  opt.dispose();
  for (const t of [...params, ...grads]) t.dispose();
  expect(live()).toEqual({ bytes: 0, buffers: 0 });
});
