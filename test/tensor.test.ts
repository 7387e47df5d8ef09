// Tensors: creation from every data kind and dtype, shapes (scalar, zero-size, odd), metadata,
// views and slices sharing memory, to(), read()/readRaw(), full/zeros/empty.
import { axpy, copy, empty, fill, full, scale, Tensor, tensor, zeros } from '../lib/index';
import { EMULATED, freshSeed, TEST_DEVICE } from './helpers/device';
import { bf16BitsRef, bf16Value, expectSameBits, f32ThenBf16, HostRng } from './helpers/reference';

const device = TEST_DEVICE;
const SHAPES: number[][] = [[], [1], [0], [0, 3], [3, 0, 2], [7], [5, 3], [3, 5, 2], [33, 17], [1, 1, 1, 129]];
const numelOf = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

describe('round trips', () => {
  test.each(SHAPES)('f32 from Float32Array and number[], shape %j', async (...shape) => {
    const seed = freshSeed();
    const data = new HostRng(seed).nonZeroF32(numelOf(shape));
    const a = tensor(data, shape, { device });
    const b = tensor(Array.from(data), shape, { device });
    for (const t of [a, b]) {
      expect(t.shape).toEqual(shape);
      expect(t.dtype).toBe('f32');
      expect(t.device).toBe(device);
      expect(t.numel).toBe(data.length);
      expect(t.byteLength).toBe(4 * data.length);
      const back = await t.read();
      expect(back).toBeInstanceOf(Float32Array);
      expectSameBits(back, data, `f32 round trip ${JSON.stringify(shape)}`, seed);
      t.dispose();
    }
  });

  test.each(SHAPES)('bf16 from Float32Array and number[], shape %j: values rounded to nearest even', async (...shape) => {
    const seed = freshSeed();
    const data = new HostRng(seed).nonZeroF32(numelOf(shape));
    const expected = Float32Array.from(data, (v) => f32ThenBf16(v));
    const expectedBits = Uint16Array.from(data, (v) => bf16BitsRef(v));
    for (const source of [data, Array.from(data)]) {
      const t = tensor(source, shape, { dtype: 'bf16', device });
      expect(t.dtype).toBe('bf16');
      expect(t.byteLength).toBe(2 * data.length);
      const back = await t.read();
      expect(back).toBeInstanceOf(Float32Array);
      expectSameBits(back, expected, `bf16 round trip ${JSON.stringify(shape)}`, seed);
      const raw = await t.readRaw();
      expect(raw).toBeInstanceOf(Uint16Array);
      expectSameBits(raw, expectedBits, `bf16 bits ${JSON.stringify(shape)}`, seed);
      t.dispose();
    }
  });

  test.each(SHAPES)('i32 from Int32Array and number[], shape %j', async (...shape) => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    const n = numelOf(shape);
    const data = Int32Array.from({ length: n }, (_, i) => (i === 0 ? -(2 ** 31) : i === 1 ? 2 ** 31 - 1 : rng.int(-(2 ** 31), 2 ** 31 - 1)));
    const a = tensor(data, shape, { device });
    const b = tensor(Array.from(data), shape, { dtype: 'i32', device });
    for (const t of [a, b]) {
      expect(t.dtype).toBe('i32');
      expect(t.shape).toEqual(shape);
      const back = await t.read();
      expect(back).toBeInstanceOf(Int32Array);
      expectSameBits(back, data, `i32 round trip ${JSON.stringify(shape)}`, seed);
      expectSameBits(await t.readRaw(), data, `i32 readRaw ${JSON.stringify(shape)}`, seed);
      t.dispose();
    }
  });

  test.each(SHAPES)('u16 from Uint16Array and number[], shape %j', async (...shape) => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    const n = numelOf(shape);
    const data = Uint16Array.from({ length: n }, (_, i) => (i === 0 ? 65535 : i === 1 ? 0 : rng.int(0, 65535)));
    const a = tensor(data, shape, { device });
    const b = tensor(Array.from(data), shape, { dtype: 'u16', device });
    for (const t of [a, b]) {
      expect(t.dtype).toBe('u16');
      const back = await t.read();
      expect(back).toBeInstanceOf(Uint16Array);
      expectSameBits(back, data, `u16 round trip ${JSON.stringify(shape)}`, seed);
      t.dispose();
    }
  });

  test('integer data can be stored as f32 and u16 data as i32', async () => {
    const ints = Int32Array.from([-7, 0, 16777217, 3]);
    const f = tensor(ints, [4], { dtype: 'f32', device });
    expect(await f.read()).toEqual(Float32Array.from([-7, 0, 16777216, 3]));
    const u = tensor(Uint16Array.from([65535, 1]), [2], { dtype: 'i32', device });
    expect(await u.read()).toEqual(Int32Array.from([65535, 1]));
    f.dispose();
    u.dispose();
  });

  test('the shape array is copied and frozen', () => {
    const shape = [2, 3];
    const t = zeros(shape, { device });
    shape[0] = 5;
    expect(t.shape).toEqual([2, 3]);
    expect(Object.isFrozen(t.shape)).toBe(true);
    expect(String(t)).toBe(`Tensor([2, 3], f32, ${device})`);
    t.dispose();
  });
});

describe('full / zeros / empty', () => {
  test.each([
    ['f32', -3.25, -3.25],
    ['f32', 0.1, Math.fround(0.1)],
    ['bf16', 0.1, f32ThenBf16(0.1)],
    ['i32', -(2 ** 31), -(2 ** 31)],
    ['u16', 65535, 65535],
  ] as const)('full(%s, %p)', async (dtype, value, want) => {
    const t = full([3, 7], value, { dtype, device });
    expect(t.dtype).toBe(dtype);
    expect(Array.from(await t.read())).toEqual(new Array(21).fill(want));
    t.dispose();
  });

  test.each(['f32', 'bf16', 'i32', 'u16'] as const)('zeros(%s) after the same memory held other data', async (dtype) => {
    // Allocate, fill and free a buffer first so zeros() cannot pass by reusing zeroed pages.
    const junk = full([1000], 7, { dtype, device });
    junk.dispose();
    const z = zeros([1000], { dtype, device });
    expect((await z.read()).every((v) => Object.is(v, 0))).toBe(true);
    z.dispose();
  });

  test('empty() has the shape, dtype and device asked for, and is writable', async () => {
    const e = empty([4, 0, 2], { dtype: 'u16', device });
    expect(e.shape).toEqual([4, 0, 2]);
    expect(e.numel).toBe(0);
    expect((await e.read()).length).toBe(0);
    const f = empty([3, 3], { dtype: 'bf16', device });
    fill(f, 2.5);
    expect(Array.from(await f.read())).toEqual(new Array(9).fill(2.5));
    e.dispose();
    f.dispose();
  });

  test('default dtype is f32 and default device is cpu', () => {
    const t = zeros([2]);
    expect(t.dtype).toBe('f32');
    expect(t.device).toBe('cpu');
    t.dispose();
  });
});

describe('views and slices', () => {
  test('view() reshapes without copying, with one dimension inferred', async () => {
    const seed = freshSeed();
    const data = new HostRng(seed).nonZeroF32(24);
    const t = tensor(data, [2, 3, 4], { device });
    const v = t.view([6, -1]);
    expect(v.shape).toEqual([6, 4]);
    expect(t.view([-1]).shape).toEqual([24]);
    expect(t.view([4, -1, 3]).shape).toEqual([4, 2, 3]);
    expectSameBits(await v.read(), data, 'view', seed);
    // Writing through the view is visible in the base.
    fill(v, -1.5);
    expect(Array.from(await t.read())).toEqual(new Array(24).fill(-1.5));
    const scalar = tensor([4.5], [1], { device }).view([]);
    expect(scalar.shape).toEqual([]);
    expect(Array.from(await scalar.read())).toEqual([4.5]);
    t.dispose();
    v.dispose();
    scalar.dispose();
  });

  test('slice() rows share memory with the base, both ways', async () => {
    const seed = freshSeed();
    const rows = 9;
    const cols = 5;
    const data = new HostRng(seed).nonZeroF32(rows * cols);
    const base = tensor(data, [rows, cols], { device });
    const s = base.slice(2, 6);
    expect(s.shape).toEqual([4, cols]);
    expectSameBits(await s.read(), data.subarray(2 * cols, 6 * cols), 'slice read', seed);
    // Write through the slice, read through the base.
    fill(s, 9.25);
    const afterFill = await base.read();
    for (let i = 0; i < rows * cols; i++) {
      const want = i >= 2 * cols && i < 6 * cols ? 9.25 : data[i];
      if (afterFill[i] !== want) throw new Error(`after fill(slice): base[${i}] = ${afterFill[i]}, expected ${want} (seed ${seed})`);
    }
    // Write through the base (copy), read through the slice.
    const fresh = new HostRng(seed + 1).nonZeroF32(rows * cols);
    const src = tensor(fresh, [rows, cols], { device });
    copy(base, src);
    expectSameBits(await s.read(), fresh.subarray(2 * cols, 6 * cols), 'slice after copy into base', seed);
    // A slice of a slice, and a view of a slice.
    const inner = s.slice(1, 3).view([-1]);
    expectSameBits(await inner.read(), fresh.subarray(3 * cols, 5 * cols), 'view of a slice of a slice', seed);
    for (const t of [base, s, src, inner]) t.dispose();
  });

  test('slice() defaults and empty slices', async () => {
    const t = tensor([1, 2, 3, 4, 5, 6], [3, 2], { device });
    expect(Array.from(await t.slice(1).read())).toEqual([3, 4, 5, 6]);
    const empty0 = t.slice(3, 3);
    expect(empty0.shape).toEqual([0, 2]);
    expect((await empty0.read()).length).toBe(0);
    t.dispose();
  });

  test('ops on slices use the slice offset (bf16, odd offsets)', async () => {
    const seed = freshSeed();
    const data = new HostRng(seed).nonZeroF32(7 * 3);
    const base = tensor(data, [7, 3], { dtype: 'bf16', device });
    const rounded = await base.read();
    const doubled = scale(base.slice(3, 6), 2);
    expectSameBits(await doubled.read(), Float32Array.from(rounded.subarray(9, 18), (v) => 2 * v), 'scale of a bf16 slice', seed);
    base.dispose();
    doubled.dispose();
  });
});

describe('to()', () => {
  test(`to('${device}') is an independent copy`, async () => {
    const seed = freshSeed();
    const data = new HostRng(seed).nonZeroF32(37);
    for (const dtype of ['f32', 'bf16'] as const) {
      const t = tensor(data, [37], { dtype, device });
      const before = await t.read();
      const c = await t.to(device);
      expect(c).not.toBe(t);
      expect(c.device).toBe(device);
      expect(c.dtype).toBe(dtype);
      expect(c.shape).toEqual([37]);
      fill(t, 0.5);
      expectSameBits(await c.read(), before, `to() copy (${dtype}) after the source changed`, seed);
      t.dispose();
      c.dispose();
    }
  });

  test(`to() of a slice copies only the slice`, async () => {
    const t = tensor(Int32Array.from([1, 2, 3, 4, 5, 6]), [3, 2], { device });
    const c = await t.slice(1, 2).to('cpu');
    expect(c.device).toBe('cpu');
    expect(Array.from(await c.read())).toEqual([3, 4]);
    t.dispose();
    c.dispose();
  });
});

describe('read()', () => {
  test('does not block the event loop: a setImmediate callback runs while a long read is pending', async () => {
    const seed = freshSeed();
    // Enough queued work that the read cannot finish within one turn of the event loop.
    const gpu = device === 'cuda' && !EMULATED;
    const n = gpu ? 1 << 24 : 1 << 20;
    const iterations = gpu ? 2000 : 24;
    // Multiples of 1/64 below 2 in magnitude: every partial sum is exact in f32.
    const xs = Float32Array.from(new HostRng(seed).nonZeroF32(n), (v) => Math.round(v * 64) / 64);
    const x = tensor(xs, [n], { device });
    const y = zeros([n], { device });
    for (let i = 0; i < iterations; i++) axpy(y, x, 1);

    let readSettled = false;
    let ticksWhilePending = 0;
    const pending = y.read().then((v) => {
      readSettled = true;
      return v;
    });
    await new Promise<void>((resolve) => {
      const tick = () => {
        if (readSettled) return resolve();
        ticksWhilePending++;
        setImmediate(tick);
      };
      setImmediate(tick);
    });
    // A blocking read() would return an already-settled promise: its .then runs as a
    // microtask before any setImmediate callback, so ticksWhilePending would stay 0.
    expect(ticksWhilePending).toBeGreaterThan(0);
    // And the read saw every enqueued axpy (y = iterations * x exactly: small integer multiples).
    const got = await pending;
    for (let i = 0; i < n; i++) {
      if (got[i] !== iterations * xs[i]) throw new Error(`y[${i}] = ${got[i]}, expected ${iterations * xs[i]} (seed ${seed})`);
    }
    x.dispose();
    y.dispose();
  });

  test('sees every op enqueued before it, even when the tensor is disposed right after', async () => {
    const seed = freshSeed();
    const data = new HostRng(seed).nonZeroF32(1000);
    const t = tensor(data, [1000], { device });
    const s = scale(t, -2);
    t.dispose();
    const pending = s.read();
    s.dispose(); // stream-ordered: the pending download still sees the data
    expectSameBits(await pending, Float32Array.from(data, (v) => -2 * v), 'read after dispose', seed);
  });

  test('readRaw() of f32 and bf16 gives the stored bits', async () => {
    const values = [1, -2, 1 + 2 ** -8, 65504];
    const f = tensor(values, [4], { device });
    expect(await f.readRaw()).toEqual(Float32Array.from(values));
    const b = tensor(values, [4], { dtype: 'bf16', device });
    const raw = (await b.readRaw()) as Uint16Array;
    expect(Array.from(raw)).toEqual([0x3f80, 0xc000, 0x3f80, 0x4780]);
    expect(Array.from(raw, bf16Value)).toEqual([1, -2, 1, 65536]);
    f.dispose();
    b.dispose();
  });

  test('instances are Tensor and expose isDisposed', () => {
    const t = zeros([1], { device });
    expect(t).toBeInstanceOf(Tensor);
    expect(t.isDisposed).toBe(false);
    t.dispose();
    expect(t.isDisposed).toBe(true);
    t.dispose(); // idempotent
  });
});
