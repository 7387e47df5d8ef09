// devices(): the CPU is always available with backend details; the CUDA entry is always listed
// and is either available (with details) or unavailable with a non-empty reason, never both.
import { devices, synchronize, zeros } from '../lib/index';
import { TEST_DEVICE } from './helpers/device';

const list = devices();
const cpu = list.find((d) => d.name === 'cpu');
const cuda = list.find((d) => d.name === 'cuda');

test('lists exactly cpu and cuda', () => {
  expect(list.map((d) => d.name)).toEqual(['cpu', 'cuda']);
});

test('cpu is available, with thread count and GEMM kernel', () => {
  expect(cpu).toBeDefined();
  expect(cpu!.available).toBe(true);
  expect(cpu!.reason).toBeUndefined();
  const details = cpu!.details as { threads?: unknown; gemmKernel?: unknown; name?: unknown };
  expect(details.name).toBe('cpu');
  expect(Number.isInteger(details.threads)).toBe(true);
  expect(details.threads as number).toBeGreaterThanOrEqual(1);
  expect(typeof details.gemmKernel).toBe('string');
  expect(['avx512', 'avx2', 'generic']).toContain(details.gemmKernel);
  // NM_GEMM_KERNEL=generic forces the portable kernel (every CPU can run it).
  if (process.env.NM_GEMM_KERNEL === 'generic') expect(details.gemmKernel).toBe('generic');
});

test('cuda: available xor a non-empty reason', () => {
  expect(cuda).toBeDefined();
  expect(typeof cuda!.available).toBe('boolean');
  if (cuda!.available) {
    expect(cuda!.reason).toBeUndefined();
    expect(cuda!.details).toBeDefined();
    expect(typeof cuda!.modulePath).toBe('string');
  } else {
    expect(typeof cuda!.reason).toBe('string');
    expect(cuda!.reason!.length).toBeGreaterThan(10);
    expect(cuda!.details).toBeUndefined();
  }
});

test('the suites run on an available device', () => {
  expect(list.find((d) => d.name === TEST_DEVICE)!.available).toBe(true);
});

(cuda!.available ? test.skip : test)('without cuda, the reason says what was looked for and how to get it', () => {
  // Here the module is missing (no build-cuda/ output); the reason names where it looked.
  if (/not found/.test(cuda!.reason!)) {
    expect(cuda!.reason).toContain('newton_muon_cuda.so');
    expect(cuda!.reason).toContain('build:cuda');
  } else {
    expect(cuda!.reason).toMatch(/CUDA|cuda/);
  }
});

test('devices() is stable across calls and returns fresh objects', () => {
  const again = devices();
  expect(again).toEqual(list);
  again[0].available = false;
  expect(devices()[0].available).toBe(true);
});

test("'auto' resolves to cuda exactly when cuda is available", () => {
  const t = zeros([1], { device: 'auto' });
  expect(t.device).toBe(cuda!.available ? 'cuda' : 'cpu');
  t.dispose();
});

test('synchronize() resolves for all devices and for each available one', async () => {
  await expect(synchronize()).resolves.toBeUndefined();
  await expect(synchronize('cpu')).resolves.toBeUndefined();
  await expect(synchronize(TEST_DEVICE)).resolves.toBeUndefined();
});
