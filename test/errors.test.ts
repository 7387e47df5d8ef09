// Errors at the API boundary: every one must be an Error whose message names the argument, what
// it got and what was expected. Each case asserts on message fragments, not whole messages.
import {
  add, axpy, cast, copy, copyRows, devices, empty, fill, full, gemm, matmul, mul, rand, randn, scale, scope,
  sub, sum, sumOfSquares, synchronize, Tensor, tensor, zeros,
} from '../lib/index';
import { TEST_DEVICE } from './helpers/device';

const device = TEST_DEVICE;
const cudaInfo = devices().find((d) => d.name === 'cuda')!;

function isError(e: unknown): e is Error {
  // Errors made by the native addon may come from another realm than jest's sandbox.
  return e instanceof Error || Object.prototype.toString.call(e) === '[object Error]';
}

/** fn must throw an Error whose message contains every fragment; returns it. */
function expectThrows(fn: () => unknown, ...fragments: string[]): Error {
  let thrown: unknown;
  let threw = false;
  try {
    fn();
  } catch (e) {
    threw = true;
    thrown = e;
  }
  if (!threw) throw new Error(`expected a throw mentioning ${JSON.stringify(fragments)}, but nothing was thrown`);
  if (!isError(thrown)) throw new Error(`expected an Error, got ${String(thrown)}`);
  for (const f of fragments) expect(thrown.message).toContain(f);
  return thrown;
}

/** fn must return a promise that rejects with an Error containing every fragment. */
async function expectRejects(fn: () => Promise<unknown>, ...fragments: string[]): Promise<Error> {
  let promise: Promise<unknown>;
  try {
    promise = fn();
  } catch (e) {
    throw new Error(`expected a rejected promise, but the call threw synchronously: ${String(e)}`);
  }
  let rejected: unknown;
  let didReject = false;
  await promise.then(() => undefined, (e) => {
    didReject = true;
    rejected = e;
  });
  if (!didReject) throw new Error(`expected a rejection mentioning ${JSON.stringify(fragments)}, but the promise resolved`);
  if (!isError(rejected)) throw new Error(`expected an Error, got ${String(rejected)}`);
  for (const f of fragments) expect(rejected.message).toContain(f);
  return rejected;
}

const live: Tensor[] = [];
const t = <T extends Tensor>(x: T): T => {
  live.push(x);
  return x;
};
afterAll(() => live.forEach((x) => x.dispose()));

describe('shapes and data', () => {
  test('negative, non-integer, non-number and non-array shapes', () => {
    expectThrows(() => empty([2, -1], { device }), 'empty', 'shape[1]', 'non-negative integer', 'got -1');
    expectThrows(() => empty([2.5], { device }), 'empty', 'shape[0]', 'got 2.5');
    expectThrows(() => randn([3, NaN], { device }), 'randn', 'shape[1]', 'got NaN');
    expectThrows(() => full(['2'] as unknown as number[], 1, { device }), 'full', 'shape[0]', 'got "2"');
    expectThrows(() => empty(3 as unknown as number[], { device }), 'empty', 'shape must be an array', 'got 3');
    expectThrows(() => tensor([1], null as unknown as number[], { device }), 'tensor', 'shape must be an array', 'got null');
    expectThrows(() => empty([2 ** 30, 2 ** 30], { device }), 'empty', 'too many elements', `[${2 ** 30}, ${2 ** 30}]`);
  });

  test('zeros() shape errors name zeros, the function the caller used', () => {
    expectThrows(() => zeros([2, -1], { device }), 'zeros: shape[1]', 'got -1');
    expectThrows(() => zeros(3 as unknown as number[], { device }), 'zeros: shape must be an array', 'got 3');
  });

  test('data length and element types', () => {
    expectThrows(() => tensor([1, 2, 3, 4, 5], [2, 3], { device }), 'tensor', 'data has 5 elements', 'shape [2, 3] needs 6');
    expectThrows(() => tensor(new Float32Array(7), [], { device }), 'data has 7 elements', 'shape [] needs 1');
    expectThrows(() => tensor([1, 'a'] as unknown as number[], [2], { device }), 'tensor: data[1] must be a number', 'got "a"');
    expectThrows(() => tensor('abc' as unknown as number[], [3], { device }), 'tensor: data must be a Float32Array, Int32Array, Uint16Array or number[]', 'got "abc"');
    expectThrows(() => tensor(new Float64Array(2) as unknown as number[], [2], { device }), 'tensor: data must be', 'Float64Array');
  });

  test('allocation that cannot be satisfied', async () => {
    // 2^50 bytes: beyond any address space, so the backend must refuse it.
    expectThrows(() => empty([2 ** 48], { device }), String(2 ** 50));
    // The refusal is over once reported: the next ops work (on CUDA, the failed call's error
    // must not be blamed on the next kernel launch).
    const z = zeros([3], { device });
    fill(z, 2);
    expect(Array.from(await z.read())).toEqual([2, 2, 2]);
    z.dispose();
  });
});

describe('dtypes', () => {
  test('unknown dtype names', () => {
    expectThrows(() => zeros([1], { dtype: 'f16' as never, device }), 'zeros: dtype', 'unknown dtype "f16"', "'f32', 'bf16', 'i32', 'u16'");
    expectThrows(() => tensor([1], [1], { dtype: 'float32' as never, device }), 'tensor: dtype', 'unknown dtype "float32"');
    expectThrows(() => cast(t(zeros([1], { device })), 'f64' as never), 'cast: dtype', 'unknown dtype "f64"');
    expectThrows(() => matmul(t(zeros([1, 1], { device })), t(zeros([1, 1], { device })), { outDtype: 'half' as never }), 'matmul: outDtype', 'unknown dtype "half"');
  });

  test('dtypes an op does not accept', () => {
    const i = t(tensor(Int32Array.from([1, 2]), [2], { device }));
    expectThrows(() => add(i, i), 'add: a', 'expected dtype f32 or bf16', 'i32');
    expectThrows(() => scale(i, 2), 'scale: x', 'expected dtype f32 or bf16');
    expectThrows(() => sum(i), 'sum: x', 'expected dtype f32 or bf16');
    expectThrows(() => sumOfSquares(t(zeros([2], { dtype: 'u16', device }))), 'sumOfSquares: x', 'u16');
    expectThrows(() => matmul(t(zeros([1, 1], { device })), t(zeros([1, 1], { device })), { outDtype: 'i32' }), "matmul: outDtype must be f32 or bf16, got 'i32'");
    expectThrows(() => randn([2], { dtype: 'i32', device }), "randn: dtype must be 'f32' or 'bf16', got 'i32'");
    expectThrows(() => rand([2], { dtype: 'u16', device }), "rand: dtype must be 'f32' or 'bf16', got 'u16'");
    const f = t(zeros([2, 2], { device }));
    expectThrows(() => gemm(t(zeros([2, 2], { dtype: 'i32', device })), f, f), 'gemm: c', 'expected dtype f32 or bf16');
    expectThrows(() => add(f.view([4]), t(zeros([4], { dtype: 'bf16', device }))), 'add: b is bf16 but a is f32');
    expectThrows(() => matmul(f, t(zeros([2, 2], { dtype: 'bf16', device }))), 'matmul: a is f32 but b is bf16');
    expectThrows(() => copy(f, t(zeros([2, 2], { dtype: 'bf16', device }))), 'copy: src is bf16 but dst is f32', 'cast()');
  });

  test('unsupported cast pairs name both dtypes and the supported ones', () => {
    const pairs: Array<[Tensor, string]> = [
      [t(zeros([2], { dtype: 'i32', device })), 'bf16'],
      [t(zeros([2], { device })), 'i32'],
      [t(zeros([2], { dtype: 'bf16', device })), 'u16'],
      [t(zeros([2], { dtype: 'i32', device })), 'u16'],
    ];
    for (const [x, to] of pairs) {
      expectThrows(() => cast(x, to as never), `cast: ${x.dtype} -> ${to} is not supported`, 'supported: f32<->bf16, u16->i32, i32->f32');
    }
  });

  test('integer values out of range or not integers', () => {
    expectThrows(() => tensor([70000], [1], { dtype: 'u16', device }), 'tensor: data[0]', '70000', 'not an integer in [0, 65535]', 'u16');
    expectThrows(() => tensor([1, -1], [2], { dtype: 'u16', device }), 'tensor: data[1]', '-1', '[0, 65535]');
    expectThrows(() => tensor([1.5], [1], { dtype: 'i32', device }), 'tensor: data[0]', '1.5', 'not a 32-bit integer', 'i32');
    expectThrows(() => tensor([2 ** 31], [1], { dtype: 'i32', device }), 'tensor: data[0]', '2147483648', 'i32');
    expectThrows(() => tensor([0, NaN], [2], { dtype: 'i32', device }), 'tensor: data[1]', 'NaN');
    expectThrows(() => tensor(Int32Array.from([5, 65536]), [2], { dtype: 'u16', device }), 'tensor: data[1]', '65536', 'u16');
    expectThrows(() => full([2], 2 ** 31, { dtype: 'i32', device }), 'full: value', '2147483648', 'not a 32-bit integer');
    expectThrows(() => full([2], -1, { dtype: 'u16', device }), 'full: value', '-1', '[0, 65535]');
    expectThrows(() => full([2], 0.5, { dtype: 'u16', device }), 'full: value', '0.5');
    const u = t(zeros([2], { dtype: 'u16', device }));
    expectThrows(() => fill(u, 1.5), 'fill', '1.5', 'not an integer', 'u16');
  });

  test('fill() rejects integers that do not fit the dtype (as full() and tensor() do)', () => {
    const u = t(zeros([2], { dtype: 'u16', device }));
    const i = t(zeros([2], { dtype: 'i32', device }));
    expectThrows(() => fill(u, 70000), 'fill', '70000', 'u16');
    expectThrows(() => fill(u, -1), 'fill', '-1', 'u16');
    expectThrows(() => fill(i, 2 ** 31), 'fill', '2147483648', 'i32');
    expectThrows(() => fill(i, -(2 ** 40)), 'fill', 'i32');
  });

  test('non-numeric scalars', () => {
    const x = t(zeros([2], { device }));
    expectThrows(() => scale(x, NaN), 'scale: alpha must be a number', 'got NaN');
    expectThrows(() => axpy(x, x, '2' as unknown as number), 'axpy: alpha must be a number', 'got "2"');
    expectThrows(() => fill(x, undefined as unknown as number), 'fill: value must be a number', 'got undefined');
    expectThrows(() => full([1], '1' as unknown as number, { device }), 'full: value must be a number', 'got "1"');
    const m = t(zeros([2, 2], { device }));
    expectThrows(() => gemm(m, m, m, { alpha: NaN }), 'gemm: alpha must be a number', 'got NaN');
    expectThrows(() => gemm(m, m, m, { beta: 'x' as unknown as number }), 'gemm: beta must be a number');
    expectThrows(() => randn([2], { seed: 1.5, device }), 'randn: seed must be an integer', 'got 1.5');
    expectThrows(() => rand([2], { seed: '1' as unknown as number, device }), 'rand: seed must be an integer', 'got "1"');
    expectThrows(() => randn([2], { std: NaN, device }), 'randn: std must be a finite number', 'got NaN');
    expectThrows(() => rand([2], { high: Infinity, device }), 'rand: high must be a finite number', 'got Infinity');
  });

  test('non-tensor operands', () => {
    const x = t(zeros([2], { device }));
    expectThrows(() => add(x, [1, 2] as unknown as Tensor), 'add: b: expected a Tensor', 'got [1,2]');
    expectThrows(() => sum(null as unknown as Tensor), 'sum: x: expected a Tensor', 'got null');
    expectThrows(() => copy({} as unknown as Tensor, x), 'copy: dst: expected a Tensor', 'Object');
  });
});

describe('devices', () => {
  test('unknown device names', () => {
    expectThrows(() => zeros([1], { device: 'tpu' as never }), 'zeros: device', 'unknown device "tpu"', "expected 'cpu', 'cuda' or 'auto'");
    expectThrows(() => randn([1], { device: 'CPU' as never }), 'randn: device', 'unknown device "CPU"');
    expectThrows(() => zeros([1], 'cpu' as never), 'zeros: options must be an object', 'got "cpu"');
  });

  test('unknown device names in async calls reject', async () => {
    await expectRejects(() => synchronize('gpu' as never), 'synchronize', 'unknown device "gpu"');
    await expectRejects(() => t(zeros([1], { device })).to('metal' as never), 'to', 'unknown device "metal"');
  });

  (cudaInfo.available ? test.skip : test)("'cuda' on a machine without it: the error carries the reason", async () => {
    expect(cudaInfo.reason).toBeTruthy();
    expectThrows(() => zeros([1], { device: 'cuda' }), 'zeros: device', "'cuda' is not available", cudaInfo.reason!);
    expectThrows(() => tensor([1], [1], { device: 'cuda' }), 'tensor: device', cudaInfo.reason!);
    await expectRejects(() => t(zeros([1])).to('cuda'), "'cuda' is not available", cudaInfo.reason!);
    await expectRejects(() => synchronize('cuda'), "'cuda' is not available", cudaInfo.reason!);
    // 'auto' falls back silently; only an explicit 'cuda' is an error.
    expect(t(zeros([1], { device: 'auto' })).device).toBe('cpu');
  });

  (cudaInfo.available ? test : test.skip)('ops across devices (needs cuda)', () => {
    const c = t(zeros([2, 2], { device: 'cpu' }));
    const g = t(zeros([2, 2], { device: 'cuda' }));
    const move = 'move one with await t.to(device)';
    expectThrows(() => add(c, g), 'add: b is on cuda but a is on cpu', move);
    expectThrows(() => mul(g, c), 'mul: b is on cpu but a is on cuda');
    expectThrows(() => axpy(c, g, 1), 'axpy: x is on cuda but y is on cpu');
    expectThrows(() => copy(g, c), 'copy: src is on cpu but dst is on cuda');
    expectThrows(() => copyRows(c, g), 'copyRows: src is on cuda but dst is on cpu');
    expectThrows(() => matmul(c, g), 'matmul: b is on cuda but a is on cpu');
    expectThrows(() => gemm(g, c, c), 'gemm: c is on cuda but a is on cpu');
  });
});

describe('use after dispose', () => {
  test('read, readRaw and to reject; view and slice throw', async () => {
    const x = zeros([2, 3], { device });
    x.dispose();
    const name = `Tensor([2, 3], f32, ${device})`;
    await expectRejects(() => x.read(), 'read', name, 'already disposed');
    await expectRejects(() => x.readRaw(), 'readRaw', 'already disposed');
    await expectRejects(() => x.to(device), 'to', 'already disposed');
    expectThrows(() => x.view([6]), 'view', name, 'already disposed');
    expectThrows(() => x.slice(0, 1), 'slice', 'already disposed');
  });

  test('every op names the disposed argument', () => {
    const dead = zeros([2, 2], { device });
    dead.dispose();
    const ok = t(zeros([2, 2], { device }));
    expectThrows(() => add(dead, ok), 'add: a:', 'already disposed');
    expectThrows(() => sub(ok, dead), 'sub: b:', 'already disposed');
    expectThrows(() => scale(dead, 2), 'scale: x:', 'already disposed');
    expectThrows(() => axpy(dead, ok, 1), 'axpy: y:', 'already disposed');
    expectThrows(() => axpy(ok, dead, 1), 'axpy: x:', 'already disposed');
    expectThrows(() => sum(dead), 'sum: x:', 'already disposed');
    expectThrows(() => fill(dead, 1), 'fill: x:', 'already disposed');
    expectThrows(() => cast(dead, 'bf16'), 'cast: x:', 'already disposed');
    expectThrows(() => copy(ok, dead), 'copy: src:', 'already disposed');
    expectThrows(() => copyRows(dead, ok), 'copyRows: dst:', 'already disposed');
    expectThrows(() => matmul(ok, dead), 'matmul: b:', 'already disposed');
    expectThrows(() => gemm(dead, ok, ok), 'gemm: c:', 'already disposed');
  });

  test('a view of a disposed tensor is disposed only when disposed itself', async () => {
    const base = full([4], 2, { device });
    const v = base.view([2, 2]);
    base.dispose();
    expect(Array.from(await v.read())).toEqual([2, 2, 2, 2]);
    v.dispose();
    await expectRejects(() => v.read(), 'read', 'already disposed');
  });
});

describe('shape mismatches', () => {
  test('elementwise ops', () => {
    const a = t(zeros([2, 3], { device }));
    const b = t(zeros([3, 2], { device }));
    expectThrows(() => add(a, b), 'add: b has shape [3, 2] but a has [2, 3]', 'must match');
    expectThrows(() => mul(a, t(zeros([6], { device }))), 'mul: b has shape [6] but a has [2, 3]');
    expectThrows(() => axpy(a, b, 1), 'axpy: x has shape [3, 2] but y has [2, 3]');
    expectThrows(() => copy(a, t(zeros([5], { device }))), 'copy: src has 5 elements [5] but dst has 6 [2, 3]');
  });

  test('matmul and gemm', () => {
    const a23 = t(zeros([2, 3], { device }));
    const b45 = t(zeros([4, 5], { device }));
    const b35 = t(zeros([3, 5], { device }));
    expectThrows(() => matmul(a23, b45), 'matmul: inner dimensions differ', 'op(a) is [2, 3]', 'op(b) is [4, 5]');
    expectThrows(() => matmul(a23, b35, { transA: true }), 'matmul: inner dimensions differ', 'op(a) is [3, 2] (a [2, 3] transposed)');
    expectThrows(() => gemm(t(zeros([2, 4], { device })), a23, b35), 'gemm: c has shape [2, 4] but op(a) @ op(b) is [2, 5]');
    expectThrows(() => gemm(t(zeros([1, 2, 5], { device })), a23, b35), 'gemm: c has shape [1, 2, 5] but op(a) @ op(b) is [2, 5]');
    expectThrows(() => matmul(t(zeros([3], { device })), b35), 'matmul: a and b must both be 2-D (or both 3-D for a batch)', 'got a [3] and b [3, 5]');
    expectThrows(() => matmul(t(zeros([2, 2, 3], { device })), b35), 'got a [2, 2, 3] and b [3, 5]');
    expectThrows(() => matmul(t(zeros([2, 2, 3], { device })), t(zeros([3, 3, 5], { device }))), 'matmul: batch sizes differ', 'a [2, 2, 3] vs b [3, 3, 5]');
    expectThrows(() => gemm(t(zeros([2, 5], { device })), a23, b45), 'gemm: inner dimensions differ');
  });

  test('view and slice', () => {
    const x = t(zeros([2, 3], { device }));
    const name = `Tensor([2, 3], f32, ${device})`;
    expectThrows(() => x.view([4, 4]), `view([4,4]) of ${name}`, 'shape [4, 4] has 16 elements, expected 6');
    expectThrows(() => x.view([-1, -1]), 'at most one dimension may be -1');
    expectThrows(() => x.view([4, -1]), 'cannot infer the -1 dimension for 6 elements');
    expectThrows(() => x.view([-2, 3]), 'shape[0]', 'got -2');
    expectThrows(() => x.view(6 as unknown as number[]), 'shape must be an array');
    expectThrows(() => x.slice(1, 3), `slice(1, 3) of ${name}`, 'expected integers 0 <= start <= end <= 2');
    expectThrows(() => x.slice(-1), 'slice(-1, 2)', '0 <= start');
    expectThrows(() => x.slice(0.5, 1), 'slice(0.5, 1)');
    expectThrows(() => t(full([], 1, { device })).slice(0, 0), 'a scalar has no dimension to slice');
  });

  test('copyRows: rank, dtype and bounds', () => {
    const m = t(zeros([3, 4], { device }));
    expectThrows(() => copyRows(m, t(zeros([12], { device }))), 'copyRows: src: expected a 2-D tensor', 'Tensor([12], f32');
    expectThrows(() => copyRows(t(zeros([2, 2, 3], { device })), m), 'copyRows: dst: expected a 2-D tensor');
    expectThrows(() => copyRows(m, t(zeros([3, 4], { dtype: 'bf16', device }))), 'copyRows: src is bf16 but dst is f32');
    expectThrows(() => copyRows(m, t(zeros([5, 4], { device }))), 'copyRows: block rows [0, 5) x cols [0, 4) is outside dst [3, 4]');
    expectThrows(() => copyRows(m, t(zeros([3, 4], { device })), { srcCol: 2, cols: 3 }), 'cols [2, 5) is outside src [3, 4]');
    expectThrows(() => copyRows(m, m, { dstRow: -1 }), 'copyRows: dstRow must be a non-negative integer', 'got -1');
  });
});

describe('scope()', () => {
  test('fn returning a promise (or being async) is rejected with an explanation', () => {
    expectThrows(() => scope(() => Promise.resolve(1)), 'scope(fn): fn returned a Promise', 'Keep scope bodies synchronous');
    expectThrows(() => scope(async () => zeros([1], { device })), 'scope(fn): fn returned a Promise');
  });
});
