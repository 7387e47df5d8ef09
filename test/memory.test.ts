// memoryStats() accounting: dispose(), [Symbol.dispose](), scope() (returned tensors survive and
// move to the enclosing scope, nested scopes, a throwing fn), and views (storage counted once,
// freed when the last view goes). Each test starts after settleGarbage() so finalizers of
// tensors leaked elsewhere cannot change the numbers mid-test.
import { add, empty, full, memoryStats, randn, resetPeakMemory, scale, scope, synchronize, Tensor, tensor, zeros } from '../lib/index';
import { freshSeed, TEST_DEVICE } from './helpers/device';
import { liveOn, settleGarbage } from './helpers/memory';

const device = TEST_DEVICE;

let baseline: { bytes: number; buffers: number };
beforeEach(async () => {
  await settleGarbage();
  baseline = liveOn(device);
});

/** Live bytes and buffers relative to the test's baseline. */
const delta = () => {
  const now = liveOn(device);
  return { bytes: now.bytes - baseline.bytes, buffers: now.buffers - baseline.buffers };
};

test('memoryStats() reports numbers for the cpu device', () => {
  const stats = memoryStats();
  expect(typeof stats.cpu?.bytes).toBe('number');
  expect(typeof stats.cpu?.buffers).toBe('number');
  if (device === 'cuda') expect(typeof stats.cuda?.bytes).toBe('number');
});

test('each allocation is counted with its exact size and released by dispose()', () => {
  const a = zeros([3, 5], { device });
  expect(delta()).toEqual({ bytes: 60, buffers: 1 });
  const b = empty([7], { dtype: 'bf16', device });
  const c = full([], 1, { dtype: 'u16', device });
  const d = tensor(Int32Array.from([1, 2, 3]), [3], { device });
  const z = zeros([0, 4], { device });
  expect(delta()).toEqual({ bytes: 60 + 14 + 2 + 12 + 0, buffers: 5 });
  a.dispose();
  expect(delta()).toEqual({ bytes: 14 + 2 + 12, buffers: 4 });
  a.dispose(); // idempotent: no double free, no double count
  expect(delta()).toEqual({ bytes: 14 + 2 + 12, buffers: 4 });
  for (const t of [b, c, d, z]) t.dispose();
  expect(delta()).toEqual({ bytes: 0, buffers: 0 });
});

test('op outputs are counted and released', async () => {
  const x = randn([100], { seed: freshSeed(), device });
  const y = scale(x, 2);
  const s = add(x, y);
  expect(delta()).toEqual({ bytes: 1200, buffers: 3 });
  await s.read();
  for (const t of [x, y, s]) t.dispose();
  expect(delta()).toEqual({ bytes: 0, buffers: 0 });
});

test('[Symbol.dispose]() frees like dispose()', () => {
  const t = zeros([10], { device });
  expect(delta().bytes).toBe(40);
  t[Symbol.dispose]();
  expect(t.isDisposed).toBe(true);
  expect(delta()).toEqual({ bytes: 0, buffers: 0 });
  t[Symbol.dispose](); // idempotent
  expect(delta()).toEqual({ bytes: 0, buffers: 0 });
});

describe('views', () => {
  test('share one allocation, counted once, freed when the last one is disposed', async () => {
    const base = randn([8, 4], { seed: freshSeed(), device });
    const want = await base.read();
    const v = base.view([32]);
    const s = base.slice(2, 5);
    const row = s.slice(1, 2); // every view holds its own reference, intermediate ones included
    const ss = row.view([2, 2]);
    expect(delta()).toEqual({ bytes: 128, buffers: 1 });
    base.dispose();
    expect(base.isDisposed).toBe(true);
    expect(delta()).toEqual({ bytes: 128, buffers: 1 }); // still held by the views
    // The remaining views still read the data.
    expect(await ss.read()).toEqual(want.subarray(12, 16));
    v.dispose();
    s.dispose();
    row.dispose();
    expect(delta()).toEqual({ bytes: 128, buffers: 1 });
    ss.dispose();
    expect(delta()).toEqual({ bytes: 0, buffers: 0 });
  });

  test('disposing a view twice releases its reference only once', () => {
    const base = zeros([6], { device });
    const v = base.view([2, 3]);
    v.dispose();
    v.dispose();
    expect(delta()).toEqual({ bytes: 24, buffers: 1 });
    base.dispose();
    expect(delta()).toEqual({ bytes: 0, buffers: 0 });
  });
});

describe('scope()', () => {
  test('disposes every tensor created inside except the returned one', async () => {
    const kept = scope(() => {
      const a = randn([10], { seed: freshSeed(), device });
      const b = scale(a, 3);
      zeros([5], { device });
      return add(a, b);
    });
    expect(kept.isDisposed).toBe(false);
    expect(delta()).toEqual({ bytes: 40, buffers: 1 });
    expect((await kept.read()).length).toBe(10);
    kept.dispose();
    expect(delta()).toEqual({ bytes: 0, buffers: 0 });
  });

  test('returned arrays and plain objects keep their tensors; other values pass through', () => {
    let inner: Tensor[] = [];
    const result = scope(() => {
      const a = zeros([1], { device });
      const b = zeros([2], { device });
      const c = zeros([3], { device });
      inner = [a, b, c];
      return { pair: [a, { deep: b }], label: 'x', n: 3 };
    });
    expect(result.label).toBe('x');
    expect(result.n).toBe(3);
    expect(inner.map((t) => t.isDisposed)).toEqual([false, false, true]);
    expect(delta()).toEqual({ bytes: 12, buffers: 2 });
    inner[0].dispose();
    inner[1].dispose();
    expect(delta()).toEqual({ bytes: 0, buffers: 0 });
  });

  test('a returned view keeps its storage alive after the base is disposed', async () => {
    const data = Float32Array.from([1, 2, 3, 4, 5, 6]);
    const row = scope(() => tensor(data, [3, 2], { device }).slice(1, 2));
    expect(delta()).toEqual({ bytes: 24, buffers: 1 });
    expect(Array.from(await row.read())).toEqual([3, 4]);
    row.dispose();
    expect(delta()).toEqual({ bytes: 0, buffers: 0 });
  });

  test('nested scopes: what the inner one returns belongs to the outer one', () => {
    let fromInner: Tensor | undefined;
    let innerTemp: Tensor | undefined;
    const outerResult = scope(() => {
      fromInner = scope(() => {
        innerTemp = zeros([4], { device });
        return zeros([8], { device });
      });
      expect(innerTemp!.isDisposed).toBe(true);
      expect(fromInner.isDisposed).toBe(false);
      expect(delta()).toEqual({ bytes: 32, buffers: 1 });
      return zeros([2], { device });
    });
    // The outer scope did not return fromInner, so it was disposed with the outer scope.
    expect(fromInner!.isDisposed).toBe(true);
    expect(outerResult.isDisposed).toBe(false);
    expect(delta()).toEqual({ bytes: 8, buffers: 1 });
    outerResult.dispose();
    expect(delta()).toEqual({ bytes: 0, buffers: 0 });
  });

  test('nested scopes: a tensor returned through both survives', () => {
    const t = scope(() => scope(() => zeros([3], { device })));
    expect(t.isDisposed).toBe(false);
    expect(delta()).toEqual({ bytes: 12, buffers: 1 });
    t.dispose();
  });

  test('a throwing fn still disposes what it created, and the error propagates', () => {
    let created: Tensor | undefined;
    expect(() => scope(() => {
      created = zeros([16], { device });
      zeros([16], { device });
      throw new Error('boom');
    })).toThrow('boom');
    expect(created!.isDisposed).toBe(true);
    expect(delta()).toEqual({ bytes: 0, buffers: 0 });
    // A later tensor is not tracked by the dead scope's frame.
    const after = zeros([1], { device });
    expect(delta()).toEqual({ bytes: 4, buffers: 1 });
    after.dispose();
  });

  test('a throwing inner scope leaves the outer scope working', () => {
    const kept = scope(() => {
      const outerTemp = zeros([2], { device });
      try {
        scope(() => {
          zeros([64], { device });
          throw new RangeError('inner');
        });
      } catch (e) {
        expect((e as Error).message).toBe('inner');
      }
      expect(outerTemp.isDisposed).toBe(false);
      return zeros([3], { device });
    });
    expect(delta()).toEqual({ bytes: 12, buffers: 1 });
    kept.dispose();
  });

  test('tensors created before the scope are untouched, even if used inside', () => {
    const outside = zeros([5], { device });
    scope(() => {
      scale(outside, 2);
      return outside; // returning a tensor the scope does not own is fine
    });
    expect(outside.isDisposed).toBe(false);
    expect(delta()).toEqual({ bytes: 20, buffers: 1 });
    outside.dispose();
  });

  test('fn returning a Promise throws and disposes what was created synchronously', () => {
    let created: Tensor | undefined;
    expect(() => scope(() => {
      created = zeros([9], { device });
      return Promise.resolve(created);
    })).toThrow(/scope\(fn\): fn returned a Promise/);
    expect(created!.isDisposed).toBe(true);
    expect(delta()).toEqual({ bytes: 0, buffers: 0 });
  });
});

test('tensors dropped without dispose() are reclaimed by the garbage collector', async () => {
  (() => {
    for (let i = 0; i < 10; i++) zeros([100], { device });
  })();
  expect(delta()).toEqual({ bytes: 4000, buffers: 10 });
  await settleGarbage();
  expect(delta()).toEqual({ bytes: 0, buffers: 0 });
});

test('peakBytes records the high-water mark until resetPeakMemory()', async () => {
  resetPeakMemory();
  const start = memoryStats()[device]!;
  expect(start.peakBytes).toBe(start.bytes);
  const n = 1000 + (freshSeed() % 1000);
  const a = zeros([n], { device });
  const b = zeros([2 * n], { device });
  a.dispose();
  b.dispose();
  await synchronize(device);
  const after = memoryStats()[device]!;
  expect(after.bytes).toBe(start.bytes);
  expect(after.peakBytes).toBe(start.bytes + 12 * n);
  resetPeakMemory();
  expect(memoryStats()[device]!.peakBytes).toBe(start.bytes);
});
