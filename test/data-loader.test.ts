// The DataLoader: B*T+1 cuts with targets shifted by one, advancing, switching shards when the
// rest does not fit, wrapping with an epoch count, exact resume from state(), data-parallel
// partitioning, globs, and the errors.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { DataError } from '../lib/data/errors';
import { expandGlob, expandGlobs } from '../lib/data/glob';
import { DataLoader } from '../lib/data/loader';
import type { Batch } from '../lib/data/loader';
import { SHARD_HEADER_BYTES, writeShard } from '../lib/data/shard';

function randomTokens(n: number): Uint16Array {
  const t = new Uint16Array(n);
  crypto.randomFillSync(t);
  for (let i = 0; i < n; i++) if (t[i] === 0) t[i] = 1 + (i % 65535);
  return t;
}

function expectDataError(fn: () => unknown, ...parts: string[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(DataError);
  for (const part of parts) expect((caught as Error).message).toContain(part);
}

let root: string;
beforeAll(() => { root = fs.mkdtempSync(path.join(os.tmpdir(), 'nm-data-loader-')); });
afterAll(() => { fs.rmSync(root, { recursive: true, force: true }); });

/** A fresh folder with shards of the given sizes: `name_train_000001.bin`, ...; returns their tokens. */
function makeShards(sizes: number[], name = 'set'): { dir: string; glob: string; shards: Uint16Array[] } {
  const dir = fs.mkdtempSync(path.join(root, `${name}-`));
  const shards = sizes.map((n, k) => {
    const tokens = randomTokens(n);
    writeShard(path.join(dir, `${name}_train_${String(k + 1).padStart(6, '0')}.bin`), tokens);
    return tokens;
  });
  return { dir, glob: path.join(dir, `${name}_train_*.bin`), shards };
}

function expectBatch(batch: Batch, tokens: Uint16Array, start: number, n: number): void {
  expect(batch.inputs).toBeInstanceOf(Int32Array);
  expect(batch.targets).toBeInstanceOf(Int32Array);
  expect(batch.inputs.length).toBe(n);
  expect(batch.targets.length).toBe(n);
  expect(Array.from(batch.inputs)).toEqual(Array.from(tokens.subarray(start, start + n)));
  expect(Array.from(batch.targets)).toEqual(Array.from(tokens.subarray(start + 1, start + n + 1)));
}

describe('DataLoader cutting and advancing', () => {
  test('each batch is B*T+1 contiguous tokens, targets shifted by one, advancing by B*T', () => {
    const { glob, shards } = makeShards([1000]);
    const loader = new DataLoader({ files: glob, batchSize: 3, seqLen: 16 });
    expect(loader.batchTokens).toBe(48);
    expect(loader.stepTokens).toBe(48);
    for (let s = 0; s < 5; s++) {
      const batch = loader.next();
      expectBatch(batch, shards[0], s * 48, 48);
      // Row b of the [B, T] layout is the b-th consecutive stretch of T tokens.
      expect(batch.inputs[16]).toBe(shards[0][s * 48 + 16]);
      expect(batch.targets[15]).toBe(batch.inputs[16]);
    }
    expect(loader.state()).toMatchObject({ shard: 0, position: 5 * 48, epoch: 0 });
    loader.close();
  });

  test('moves to the next shard when the rest does not fit, wraps after the last and counts epochs', () => {
    // B*T = 40: shard 1 (130 tokens) holds steps at 0, 40, 80 (80+41 = 121 <= 130; 120+41 > 130);
    // shard 2 (81 tokens) holds 0 and 40 exactly (40+41 = 81); shard 3 (45) holds one.
    const { glob, shards } = makeShards([130, 81, 45]);
    const loader = new DataLoader({ files: glob, batchSize: 2, seqLen: 20 });
    expect(loader.batchesPerEpoch).toBe(6);
    expect(loader.totalTokens).toBe(256);
    const expected: [number, number][] = [[0, 0], [0, 40], [0, 80], [1, 0], [1, 40], [2, 0]];
    for (let epoch = 0; epoch < 3; epoch++) {
      for (const [shard, start] of expected) {
        expect(loader.state()).toMatchObject({ shard, position: start, epoch });
        expectBatch(loader.next(), shards[shard], start, 40);
      }
    }
    expect(loader.state()).toMatchObject({ shard: 0, position: 0, epoch: 3 });
    loader.close();
  });

  test('a single shard wraps onto itself', () => {
    const { glob, shards } = makeShards([100]);
    const loader = new DataLoader({ files: glob, batchSize: 1, seqLen: 33 });
    expectBatch(loader.next(), shards[0], 0, 33);
    expectBatch(loader.next(), shards[0], 33, 33);
    expect(loader.state().epoch).toBe(0);
    expectBatch(loader.next(), shards[0], 66, 33); // 66 + 34 = 100 fits exactly
    expect(loader.state()).toMatchObject({ shard: 0, position: 0, epoch: 1 });
    expectBatch(loader.next(), shards[0], 0, 33);
    loader.close();
  });

  test('reset() starts over', () => {
    const { glob, shards } = makeShards([300, 300]);
    const loader = new DataLoader({ files: glob, batchSize: 2, seqLen: 50 });
    for (let i = 0; i < 3; i++) loader.next();
    expect(loader.state().shard).toBe(1);
    loader.reset();
    expect(loader.state()).toMatchObject({ shard: 0, position: 0, epoch: 0 });
    expectBatch(loader.next(), shards[0], 0, 100);
    loader.close();
  });

  test('reads only a window of each shard, never the whole file', () => {
    const { glob } = makeShards([2_000_000]);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const spy = jest.spyOn(require('fs') as typeof fs, 'readSync');
    try {
      const loader = new DataLoader({ files: glob, batchSize: 4, seqLen: 64, windowTokens: 10_000 });
      for (let i = 0; i < 100; i++) loader.next();
      loader.close();
      const sizes = spy.mock.calls.map((call) => (call as unknown[])[3] as number);
      expect(sizes.length).toBeGreaterThan(0);
      expect(Math.max(...sizes)).toBeLessThanOrEqual(Math.max(SHARD_HEADER_BYTES, 20_000));
      expect(sizes.reduce((a, b) => a + b, 0)).toBeLessThan(200_000); // 100 * 256 tokens ~ 51 KB of data
    } finally {
      spy.mockRestore();
    }
  });
});

describe('state() / restore()', () => {
  test('a restored loader yields the same batches as the uninterrupted one, across shard switches and epochs', () => {
    const { glob } = makeShards([500, 377, 260]);
    const opts = { files: glob, batchSize: 4, seqLen: 24 };
    const reference = new DataLoader(opts);
    const batches: Batch[] = [];
    const states: string[] = [];
    for (let i = 0; i < 40; i++) {
      states.push(JSON.stringify(reference.state()));
      batches.push(reference.next());
    }
    reference.close();
    for (const at of [0, 1, 4, 5, 9, 17, 23, 31]) {
      const resumed = new DataLoader(opts);
      resumed.restore(JSON.parse(states[at]));
      for (let i = at; i < 40; i++) {
        const b = resumed.next();
        expect(b.inputs).toEqual(batches[i].inputs);
        expect(b.targets).toEqual(batches[i].targets);
      }
      resumed.close();
    }
    expect(JSON.parse(states[39]).epoch).toBeGreaterThanOrEqual(2);
  });

  test('state() is plain JSON naming the shard', () => {
    const { glob } = makeShards([200, 200], 'named');
    const loader = new DataLoader({ files: glob, batchSize: 1, seqLen: 64 });
    for (let i = 0; i < 3; i++) loader.next();
    const state = loader.state();
    expect(JSON.parse(JSON.stringify(state))).toEqual(state);
    expect(state).toEqual({ shard: 1, position: 0, epoch: 0, shardCount: 2, shardFile: 'named_train_000002.bin' });
    loader.close();
  });

  test('a state that does not fit is refused, naming what is wrong', () => {
    const { glob } = makeShards([200, 150], 'check');
    const loader = new DataLoader({ files: glob, batchSize: 2, seqLen: 10 });
    expectDataError(() => loader.restore({ shard: 2, position: 0, epoch: 0 }), 'shard 2 does not exist', '2 shards');
    expectDataError(() => loader.restore({ shard: 0, position: -1, epoch: 0 }), 'position must be an integer >= 0');
    expectDataError(() => loader.restore({ shard: 0, position: 1.5, epoch: 0 }), 'position');
    expectDataError(() => loader.restore({ shard: 0, position: 0, epoch: -2 }), 'epoch');
    expectDataError(() => loader.restore({ shard: 1, position: 140, epoch: 0 }), 'position 140 in check_train_000002.bin', '21 tokens', 'holds 150');
    expectDataError(() => loader.restore({ shard: 0, position: 0, epoch: 0, shardCount: 3 }), 'saved over 3 shards, but 2 are given');
    expectDataError(() => loader.restore({ shard: 0, position: 0, epoch: 0, shardFile: 'other_000001.bin' }),
      "was 'other_000001.bin'", "'check_train_000001.bin'");
    expectDataError(() => loader.restore(null as never), 'loader state must be an object');
    expectDataError(() => loader.restore({ position: 0, epoch: 0 } as never), 'shard must be an integer');
    // A refused restore leaves the loader where it was.
    loader.next();
    expect(loader.state()).toMatchObject({ shard: 0, position: 20 });
    loader.close();
  });
});

describe('data parallel', () => {
  test('ranks read disjoint consecutive slices and together cover each step', () => {
    const world = 3;
    const { glob, shards } = makeShards([1000, 700]);
    const B = 2;
    const T = 25;
    const loaders = Array.from({ length: world }, (_, rank) => new DataLoader({ files: glob, batchSize: B, seqLen: T, rank, worldSize: world }));
    expect(loaders[0].stepTokens).toBe(150);
    // Shard 1: steps at 0, 150, ..., 750 (750+151 <= 1000; 900+151 > 1000): 6 steps; shard 2: 0..450 (450+151 <= 700): 4 steps.
    expect(loaders[0].batchesPerEpoch).toBe(10);
    const starts: [number, number][] = [];
    for (let p = 0; p + 151 <= 1000; p += 150) starts.push([0, p]);
    for (let p = 0; p + 151 <= 700; p += 150) starts.push([1, p]);
    for (const [shard, start] of [...starts, ...starts]) {
      for (let rank = 0; rank < world; rank++) {
        expectBatch(loaders[rank].next(), shards[shard], start + rank * B * T, B * T);
      }
      const s = loaders.map((l) => l.state());
      expect(s[1]).toEqual(s[0]);
      expect(s[2]).toEqual(s[0]);
    }
    expect(loaders[0].state().epoch).toBe(2);
    for (const l of loaders) l.close();
  });

  test('rank and worldSize are checked', () => {
    const { glob } = makeShards([1000]);
    expectDataError(() => new DataLoader({ files: glob, batchSize: 1, seqLen: 8, rank: 2, worldSize: 2 }), 'rank must be an integer in [0, 2)');
    expectDataError(() => new DataLoader({ files: glob, batchSize: 1, seqLen: 8, rank: -1 }), 'rank');
    expectDataError(() => new DataLoader({ files: glob, batchSize: 1, seqLen: 8, worldSize: 0 }), 'worldSize must be a positive integer');
  });
});

describe('files and globs', () => {
  test('glob matches are sorted; ? matches one character; hidden temp files never match', () => {
    const dir = fs.mkdtempSync(path.join(root, 'glob-'));
    for (const name of ['d_000010.bin', 'd_000002.bin', 'd_000001.bin', 'd_x.txt', '.d_000003.bin.123.tmp']) {
      writeShard(path.join(dir, name), randomTokens(100));
    }
    fs.mkdirSync(path.join(dir, 'd_000004.bin')); // a folder is not a match
    expect(expandGlob(path.join(dir, 'd_*.bin')).map((f) => path.basename(f))).toEqual(['d_000001.bin', 'd_000002.bin', 'd_000010.bin']);
    expect(expandGlob(path.join(dir, 'd_00000?.bin')).map((f) => path.basename(f))).toEqual(['d_000001.bin', 'd_000002.bin']);
    expect(expandGlob(path.join(dir, 'd_000002.bin'))).toEqual([path.join(dir, 'd_000002.bin')]);
    // A list keeps its order; repeats are dropped.
    const list = expandGlobs([path.join(dir, 'd_000010.bin'), path.join(dir, 'd_*.bin')]);
    expect(list.map((f) => path.basename(f))).toEqual(['d_000010.bin', 'd_000001.bin', 'd_000002.bin']);
  });

  test('the loader follows a list of files in the order given', () => {
    const { dir, shards } = makeShards([100, 100], 'list');
    const files = [path.join(dir, 'list_train_000002.bin'), path.join(dir, 'list_train_000001.bin')];
    const loader = new DataLoader({ files, batchSize: 1, seqLen: 50 });
    expectBatch(loader.next(), shards[1], 0, 50);
    expectBatch(loader.next(), shards[0], 0, 50);
    loader.close();
  });

  test('a glob with no match names the glob', () => {
    const glob = path.join(root, 'nothing_here_*.bin');
    expectDataError(() => new DataLoader({ files: glob, batchSize: 1, seqLen: 8 }), `no files match '${glob}'`);
    expectDataError(() => new DataLoader({ files: path.join(root, 'missing.bin'), batchSize: 1, seqLen: 8 }), 'no files match', 'missing.bin');
    expectDataError(() => new DataLoader({ files: path.join(root, 'no-dir', '*.bin'), batchSize: 1, seqLen: 8 }), 'no files match', 'cannot list folder');
    expectDataError(() => new DataLoader({ files: path.join(root, '*', 'x.bin'), batchSize: 1, seqLen: 8 }), 'only in the last path component');
    expectDataError(() => new DataLoader({ files: [], batchSize: 1, seqLen: 8 }), 'no files given');
  });

  test('a file in the glob that is not a shard is named', () => {
    const { dir, glob } = makeShards([100], 'mixed');
    fs.writeFileSync(path.join(dir, 'mixed_train_000002.bin'), 'this is text, not tokens'.repeat(60));
    expectDataError(() => new DataLoader({ files: glob, batchSize: 1, seqLen: 8 }), 'mixed_train_000002.bin: magic', 'not a token shard');
  });
});

describe('bad sizes', () => {
  test('B and T must be positive integers', () => {
    const { glob } = makeShards([100]);
    for (const [batchSize, seqLen, what] of [[0, 8, 'batch size (B)'], [1.5, 8, 'batch size (B)'], [2, -3, 'sequence length (T)'],
      [2, NaN, 'sequence length (T)'], ['4' as unknown as number, 8, 'batch size (B)']] as [number, number, string][]) {
      expectDataError(() => new DataLoader({ files: glob, batchSize, seqLen }), `${what} must be a positive integer`);
    }
  });

  test('a shard too small for one batch is named with the tokens it needs', () => {
    const { glob } = makeShards([500, 64], 'small');
    expectDataError(() => new DataLoader({ files: glob, batchSize: 2, seqLen: 32 }),
      'small_train_000002.bin: 64 tokens, too few for one batch', 'B*T+1 = 65 tokens with B=2, T=32');
    expectDataError(() => new DataLoader({ files: glob, batchSize: 2, seqLen: 8, worldSize: 4 }),
      'small_train_000002.bin: 64 tokens', 'B*T*worldSize+1 = 65');
    // One token fewer per step and it fits.
    const ok = new DataLoader({ files: glob, batchSize: 3, seqLen: 21 });
    expect(ok.batchesPerEpoch).toBe(Math.floor(499 / 63) + 1);
    ok.close();
  });
});
