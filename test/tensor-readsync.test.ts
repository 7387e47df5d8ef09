// Tensor.readSync(): the blocking read. Same values as read() for every dtype and for views at
// an offset; it waits for everything enqueued before it (a GEMM and a chain of in-place ops,
// read with no await in between: a read that did not wait would see zeros or a partial sum);
// a disposed tensor gets the same clear error as read().
import { axpy, matmul, randn, scale, tensor } from '../lib/index';
import { freshSeed, TEST_DEVICE } from './helpers/device';
import { expectSameBits, HostRng } from './helpers/reference';

const device = TEST_DEVICE;

describe(`readSync (${device})`, () => {
  test('equals read() for f32, bf16, i32, u16, and for a view at an offset', async () => {
    const rng = new HostRng(freshSeed());
    const values = rng.nonZeroF32(37);
    const cases = [
      tensor(values, [37], { device }),
      tensor(values, [37], { dtype: 'bf16', device }),
      tensor(Int32Array.from(values, (v) => Math.round(v * 1000)), [37], { device }),
      tensor(Uint16Array.from(values, (v) => Math.abs(Math.round(v * 1000)) % 65536), [37], { device }),
    ];
    for (const t of cases) {
      const sync = t.readSync();
      const async = await t.read();
      expect(sync.constructor).toBe(async.constructor);
      expectSameBits(sync, async, `readSync of ${t.toString()}`);
      t.dispose();
    }
    const base = tensor(rng.nonZeroF32(5 * 7), [5, 7], { device });
    const rows = base.slice(2, 4);
    expectSameBits(rows.readSync(), await rows.read(), 'a slice at row 2');
    rows.dispose();
    base.dispose();
  });

  test('waits for every op enqueued before it (a chain of in-place updates, a GEMM)', async () => {
    const seed = freshSeed();
    const a = randn([256, 256], { seed, device });
    const b = randn([256, 256], { seed: seed + 1, device });
    const c = matmul(a, b);
    const acc = tensor(new Float32Array(256 * 256), [256, 256], { device });
    for (let i = 0; i < 20; i++) axpy(acc, c, 0.5);
    const scaled = scale(acc, 0.1);
    // No await between the enqueues and the read: readSync must see all of them.
    const got = scaled.readSync();
    const want = await scaled.read();
    expectSameBits(got, want, 'after 20 axpy + scale');
    // 0.1 * (20 * 0.5 * c) is c again, up to rounding.
    const ref = await c.read();
    for (const i of [0, 12345, 65535]) expect(Math.abs(got[i] - ref[i])).toBeLessThanOrEqual(1e-5 * Math.abs(ref[i]) + 1e-5);
    for (const t of [a, b, c, acc, scaled]) t.dispose();
  });

  test('on a disposed tensor: the error names the call and the tensor', () => {
    const t = tensor([1, 2, 3, 4, 5, 6], [2, 3], { device });
    t.dispose();
    expect(() => t.readSync()).toThrow(`readSync: Tensor([2, 3], f32, ${device}) was already disposed`);
  });
});
