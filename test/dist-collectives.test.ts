// The process-group collectives on Gloo (CPU tensors): every op, f32 and bf16, at odd sizes,
// compared bit for bit with values formed here from every rank's input (sums in f32, rounded to
// the dtype after each addition; avg the sum divided by the world size). Two rank processes, and
// a group of one in this process; plus the checks every collective makes before enqueuing.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { initProcessGroup, ProcessGroup } from '../lib/dist/process_group';
import { processGroupBackends } from '../lib/dist/backends';
import { native } from '../lib/native';
import { copy } from '../lib/ops';
import { tensor, zeros } from '../lib/tensor';
import { collectiveCases, expectedBits, inputLength, inputOf } from './helpers/dist-collective-cases';
import { describeWithGloo, freePort, killAll, spawnNode, torchrunEnv } from './helpers/dist';
import { freshSeed, RUN_SEED } from './helpers/device';

const WORKER = path.join(__dirname, 'helpers', 'dist-collectives-worker.ts');

afterAll(killAll);

function readBits(file: string, dtype: 'f32' | 'bf16'): number[] {
  const buf = fs.readFileSync(file);
  const view = dtype === 'f32' ? new Uint32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4) : new Uint16Array(buf.buffer, buf.byteOffset, buf.byteLength / 2);
  return Array.from(view);
}

/** Indices where two bit arrays differ (at most 5), for a readable failure. */
function firstDifferences(got: number[], want: number[]): string {
  if (got.length !== want.length) return `length ${got.length}, expected ${want.length}`;
  const bad: string[] = [];
  for (let i = 0; i < got.length && bad.length < 5; i++) if (got[i] !== want[i]) bad.push(`[${i}] 0x${got[i].toString(16)} != 0x${want[i].toString(16)}`);
  return bad.join(', ');
}

describeWithGloo('collectives on Gloo', () => {
  test('reports gloo available with its version, and nccl unavailable here with a reason', () => {
    const list = processGroupBackends();
    const gloo = list.find((b) => b.name === 'gloo')!;
    expect(gloo).toMatchObject({ available: true, device: 'cpu' });
    expect(gloo.details).toMatchObject({ engine: 'gloo', transport: 'tcp' });
    const nccl = list.find((b) => b.name === 'nccl')!;
    expect(nccl.device).toBe('cuda');
    if (!nccl.available) expect(nccl.reason).toMatch(/CUDA/);
  });

  test('two ranks: every collective, f32 and bf16, odd sizes, bit for bit', async () => {
    const seed = freshSeed();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nm-coll-'));
    try {
      const port = await freePort();
      const ranks = [0, 1].map((r) => spawnNode(WORKER, [dir, String(seed)], torchrunEnv(r, 2, port), 90_000));
      const results = await Promise.all(ranks.map((p) => p.done));
      for (const r of results) expect({ code: r.code, hung: r.hung, stderr: r.stderr }).toEqual({ code: 0, hung: false, stderr: '' });
      const cases = collectiveCases(2);
      const failures: string[] = [];
      cases.forEach((c, index) => {
        const inputs = [0, 1].map((r) => inputOf(c, index, r, 2, seed));
        for (const rank of [0, 1]) {
          const got = readBits(path.join(dir, `${rank}-${index}.bin`), c.dtype);
          const want = expectedBits(c, inputs, rank);
          const diff = firstDifferences(got, want);
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
      group = await initProcessGroup({ device: 'cpu', timeoutMs: 10000, launch: { source: 'torchrun', rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, masterAddr: '127.0.0.1', storePort: 0 } });
    });
    afterAll(async () => { await group.destroy(); });

    test('every collective is its identity (bitwise), f32 and bf16', async () => {
      const seed = freshSeed();
      const cases = collectiveCases(1);
      for (let index = 0; index < cases.length; index++) {
        const c = cases[index];
        const x = inputOf(c, index, 0, 1, seed);
        const input = tensor(x, [inputLength(c, 1)], { dtype: c.dtype });
        const out = zeros([c.n], { dtype: c.dtype });
        if (c.op === 'allReduce') group.allReduce(input, { op: c.reduce, out });
        if (c.op === 'reduceScatter') group.reduceScatter(out, input, { op: c.reduce });
        if (c.op === 'allGather') group.allGather(out, input);
        if (c.op === 'broadcast') copy(out, group.broadcast(input, { root: 0 }));
        const raw = await out.readRaw();
        const got = Array.from(raw instanceof Float32Array ? new Uint32Array(raw.buffer, raw.byteOffset, raw.length) : raw);
        expect({ name: c.name, diff: firstDifferences(got, expectedBits(c, [x], 0)) }).toEqual({ name: c.name, diff: '' });
        input.dispose();
        out.dispose();
      }
      await group.synchronize();
    });

    test('bad operands are refused before anything is enqueued, naming the op and the argument', () => {
      const before = group.issued;
      const f = zeros([4]);
      const i = zeros([4], { dtype: 'i32' });
      const bf = zeros([4], { dtype: 'bf16' });
      expect(() => group.allReduce(i)).toThrow(/allReduce: tensor must be f32 or bf16/);
      expect(() => group.allReduce(f, { op: 'max' as never })).toThrow(/allReduce: op must be 'sum' or 'avg'/);
      expect(() => group.allReduce(f, { out: bf })).toThrow(/allReduce: out is bf16 but input is f32/);
      expect(() => group.allReduce(f, { out: zeros([5]) })).toThrow('allReduce: out [5] and input [4] do not fit: with 1 ranks out needs as many elements as input');
      expect(() => group.reduceScatter(zeros([3]), f)).toThrow('reduceScatter: out [3] and input [4] do not fit: with 1 ranks input needs worldSize x out.numel elements');
      expect(() => group.allGather(zeros([3]), f)).toThrow('allGather: out [3] and input [4] do not fit: with 1 ranks out needs worldSize x input.numel elements');
      expect(() => group.broadcast(f, { root: 1 })).toThrow(/broadcast: root must be a rank in \[0, 1\)/);
      const gone = zeros([4]);
      gone.dispose();
      expect(() => group.allReduce(gone)).toThrow(/already disposed/);
      expect(() => group.allReduce('x' as never)).toThrow(/expected a Tensor/);
      expect(group.issued).toBe(before);
      for (const t of [f, i, bf]) t.dispose();
    });
  });

  test('Gloo missing: the module not found, or libgloo.so.0 missing, each says what to install', () => {
    const reason = native.glooOpenFailureReason('/x/newton_muon_gloo.so', 'libgloo.so.0: cannot open shared object file: No such file or directory');
    expect(reason).toBe('libgloo.so.0 not found: apt-get install libgloo0 (Gloo\'s runtime library, which the Gloo module /x/newton_muon_gloo.so links)');
    expect(native.glooOpenFailureReason('/x/m.so', 'libibverbs.so.1: cannot open shared object file: No such file or directory'))
      .toMatch(/^libibverbs.so.1 not found: .* apt-get install libgloo0/);
    expect(native.glooOpenFailureReason('/x/m.so', '/x/m.so: undefined symbol: _ZN4gloo9allreduceERKNS_16AllreduceOptionsE'))
      .toMatch(/not the version the module was built against; rebuild it with `npm run build:gloo`/);
  });
});
