// The process-group collectives: every op, f32 and bf16, at odd sizes, compared bit for bit with
// values formed here on the host from every rank's input (sums in f32, rounded to the dtype after
// each addition; avg the sum divided by the world size). On the CPU (Gloo): two rank processes
// and a group of one in this process, plus the checks every collective makes before enqueuing.
// The GPU kit runs the same file with NM_TEST_DEVICE=cuda NM_TEST_WORLD=<GPUs> (NCCL): a group of
// one on GPU 0, and one rank per GPU when there are several. With more than two ranks the engine's
// summation order is its own, so sums are compared within a bound instead of bit for bit.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { initProcessGroup, ProcessGroup } from '../lib/dist/process_group';
import { devices } from '../lib/device';
import { processGroupBackends } from '../lib/dist/backends';
import { native } from '../lib/native';
import { copy } from '../lib/ops';
import { tensor, zeros } from '../lib/tensor';
import { bf16Value, collectiveCases, expectedBits, inputLength, inputOf } from './helpers/dist-collective-cases';
import type { CollectiveCase } from './helpers/dist-collective-cases';
import { describeWithBackend, freePort, killAll, spawnNode, torchrunEnv } from './helpers/dist';
import { freshSeed, RUN_SEED, TEST_DEVICE } from './helpers/device';

const WORKER = path.join(__dirname, 'helpers', 'dist-collectives-worker.ts');
const BACKEND = TEST_DEVICE === 'cuda' ? 'nccl' : 'gloo';
/** Ranks of the multi-process test: 2 on the CPU; on CUDA one per GPU (NM_TEST_WORLD). */
const WORLD = Number(process.env.NM_TEST_WORLD ?? (TEST_DEVICE === 'cuda' ? 1 : 2));

afterAll(killAll);

function readBits(file: string, dtype: 'f32' | 'bf16'): number[] {
  const buf = fs.readFileSync(file);
  const view = dtype === 'f32' ? new Uint32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4) : new Uint16Array(buf.buffer, buf.byteOffset, buf.byteLength / 2);
  return Array.from(view);
}

/**
 * Indices where two outputs differ (at most 5), for a readable failure: bit for bit, or for sums
 * over more than two ranks within `bound` of the expected value (relative to the sum of the
 * inputs' magnitudes, which bounds every summation order's rounding).
 */
function firstDifferences(got: number[], want: number[], dtype: 'f32' | 'bf16', bound = 0, scale: number[] = []): string {
  if (got.length !== want.length) return `length ${got.length}, expected ${want.length}`;
  const value = (b: number): number => (dtype === 'bf16' ? bf16Value(b) : new Float32Array(new Uint32Array([b]).buffer)[0]);
  const bad: string[] = [];
  for (let i = 0; i < got.length && bad.length < 5; i++) {
    if (got[i] === want[i]) continue;
    if (bound > 0 && Math.abs(value(got[i]) - value(want[i])) <= bound * (scale[i] ?? 0)) continue;
    bad.push(`[${i}] ${value(got[i])} (0x${got[i].toString(16)}) != ${value(want[i])} (0x${want[i].toString(16)})`);
  }
  return bad.join(', ');
}

/** Per output element, the sum of the magnitudes of what was reduced into it. */
function magnitudes(c: CollectiveCase, inputs: Float32Array[], rank: number): number[] {
  const at = c.op === 'reduceScatter' ? rank * c.n : 0;
  return Array.from({ length: c.n }, (_, i) => inputs.reduce((sum, x) => sum + Math.abs(x[at + i]), 0));
}

describeWithBackend(BACKEND, `collectives on ${BACKEND}`, () => {
  test(`reports ${BACKEND} available with its version, and the other backend available or why not`, () => {
    const list = processGroupBackends();
    const mine = list.find((b) => b.name === BACKEND)!;
    expect(mine).toMatchObject({ available: true, device: TEST_DEVICE });
    expect(mine.details).toMatchObject({ engine: BACKEND });
    const nccl = list.find((b) => b.name === 'nccl')!;
    expect(nccl.device).toBe('cuda');
    if (!nccl.available) expect(nccl.reason).toMatch(/CUDA/);
  });

  (WORLD >= 2 ? test : test.skip)(`${WORLD} ranks: every collective, f32 and bf16, odd sizes, ${WORLD === 2 ? 'bit for bit' : 'bit for bit but the sums'}`, async () => {
    const seed = freshSeed();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nm-coll-'));
    const ranks = [...Array(WORLD).keys()];
    try {
      const port = await freePort();
      const procs = ranks.map((r) => spawnNode(WORKER, [dir, String(seed), TEST_DEVICE], torchrunEnv(r, WORLD, port), 90_000));
      const results = await Promise.all(procs.map((p) => p.done));
      for (const r of results) expect({ code: r.code, hung: r.hung, stderr: r.stderr }).toEqual({ code: 0, hung: false, stderr: '' });
      const cases = collectiveCases(WORLD);
      const failures: string[] = [];
      cases.forEach((c, index) => {
        const inputs = ranks.map((r) => inputOf(c, index, r, WORLD, seed));
        const reduces = c.op === 'allReduce' || c.op === 'reduceScatter';
        // More than two ranks: the engine's order of additions; each rounding is at most half an
        // ulp of a partial sum bounded by the sum of magnitudes.
        const bound = WORLD > 2 && reduces ? (WORLD - 1) * (c.dtype === 'bf16' ? 2 ** -8 : 2 ** -24) : 0;
        for (const rank of ranks) {
          const got = readBits(path.join(dir, `${rank}-${index}.bin`), c.dtype);
          const diff = firstDifferences(got, expectedBits(c, inputs, rank), c.dtype, bound, reduces ? magnitudes(c, inputs, rank) : []);
          if (diff !== '') failures.push(`${c.name}, rank ${rank}: ${diff}`);
        }
      });
      expect({ seed: RUN_SEED, failures }).toEqual({ seed: RUN_SEED, failures: [] });
      expect(cases.length).toBeGreaterThan(40);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  describe('a group of one in this process', () => {
    let group: ProcessGroup;
    beforeAll(async () => {
      group = await initProcessGroup({ device: TEST_DEVICE, timeoutMs: 10000, launch: { source: 'torchrun', rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, masterAddr: '127.0.0.1', storePort: 0 } });
    });
    afterAll(async () => { await group.destroy(); });

    test('every collective is its identity (bitwise), f32 and bf16', async () => {
      const seed = freshSeed();
      const cases = collectiveCases(1);
      for (let index = 0; index < cases.length; index++) {
        const c = cases[index];
        const x = inputOf(c, index, 0, 1, seed);
        const input = tensor(x, [inputLength(c, 1)], { dtype: c.dtype, device: TEST_DEVICE });
        const out = zeros([c.n], { dtype: c.dtype, device: TEST_DEVICE });
        if (c.op === 'allReduce') group.allReduce(input, { op: c.reduce, out });
        if (c.op === 'reduceScatter') group.reduceScatter(out, input, { op: c.reduce });
        if (c.op === 'allGather') group.allGather(out, input);
        if (c.op === 'broadcast') copy(out, group.broadcast(input, { root: 0 }));
        const raw = await out.readRaw();
        const got = Array.from(raw instanceof Float32Array ? new Uint32Array(raw.buffer, raw.byteOffset, raw.length) : raw);
        expect({ name: c.name, diff: firstDifferences(got, expectedBits(c, [x], 0), c.dtype) }).toEqual({ name: c.name, diff: '' });
        input.dispose();
        out.dispose();
      }
      await group.synchronize();
    });

    test('bad operands are refused before anything is enqueued, naming the op and the argument', () => {
      const before = group.issued;
      const device = TEST_DEVICE;
      const f = zeros([4], { device });
      const i = zeros([4], { dtype: 'i32', device });
      const bf = zeros([4], { dtype: 'bf16', device });
      expect(() => group.allReduce(i)).toThrow(/allReduce: tensor must be f32 or bf16/);
      expect(() => group.allReduce(f, { op: 'max' as never })).toThrow(/allReduce: op must be 'sum' or 'avg'/);
      expect(() => group.allReduce(f, { out: bf })).toThrow(/allReduce: out is bf16 but input is f32/);
      expect(() => group.allReduce(f, { out: zeros([5], { device }) })).toThrow('allReduce: out [5] and input [4] do not fit: with 1 ranks out needs as many elements as input');
      expect(() => group.reduceScatter(zeros([3], { device }), f)).toThrow('reduceScatter: out [3] and input [4] do not fit: with 1 ranks input needs worldSize x out.numel elements');
      expect(() => group.allGather(zeros([3], { device }), f)).toThrow('allGather: out [3] and input [4] do not fit: with 1 ranks out needs worldSize x input.numel elements');
      const other = device === 'cpu' ? 'cuda' : 'cpu';
      if (devices().find((d) => d.name === other)!.available) {
        const elsewhere = zeros([4], { device: other });
        expect(() => group.allReduce(elsewhere)).toThrow(`allReduce: tensor is on ${other} but this process group (${BACKEND}) moves ${device} tensors`);
        elsewhere.dispose();
      }
      expect(() => group.broadcast(f, { root: 1 })).toThrow(/broadcast: root must be a rank in \[0, 1\)/);
      const gone = zeros([4], { device });
      gone.dispose();
      expect(() => group.allReduce(gone)).toThrow(/already disposed/);
      expect(() => group.allReduce('x' as never)).toThrow(/expected a Tensor/);
      expect(group.issued).toBe(before);
      for (const t of [f, i, bf]) t.dispose();
    });
  });

  (BACKEND === 'gloo' ? test : test.skip)('Gloo missing: the module not found, or libgloo.so.0 missing, each says what to install', () => {
    const reason = native.glooOpenFailureReason('/x/newton_muon_gloo.so', 'libgloo.so.0: cannot open shared object file: No such file or directory');
    expect(reason).toBe('libgloo.so.0 not found: apt-get install libgloo0 (Gloo\'s runtime library, which the Gloo module /x/newton_muon_gloo.so links)');
    expect(native.glooOpenFailureReason('/x/m.so', 'libibverbs.so.1: cannot open shared object file: No such file or directory'))
      .toMatch(/^libibverbs.so.1 not found: .* apt-get install libgloo0/);
    expect(native.glooOpenFailureReason('/x/m.so', '/x/m.so: undefined symbol: _ZN4gloo9allreduceERKNS_16AllreduceOptionsE'))
      .toMatch(/not the version the module was built against; rebuild it with `npm run build:gloo`/);
  });
});
