// The token shard format: round trips, the header, every validation error, truncation, atomic
// writes and the bounded-memory reader.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { DataError } from '../lib/data/errors';
import {
  readShard, readShardHeader, SHARD_HEADER_BYTES, SHARD_MAGIC, SHARD_VERSION, ShardReader, ShardWriter, writeShard,
} from '../lib/data/shard';

/** Fresh random token ids in [1, 65535] (never zero, so a zero-filled read cannot pass). */
function randomTokens(n: number): Uint16Array {
  const t = new Uint16Array(n);
  crypto.randomFillSync(t);
  for (let i = 0; i < n; i++) if (t[i] === 0) t[i] = 1 + (i % 65535);
  return t;
}

let dir: string;
beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nm-data-shard-')); });
afterAll(() => { fs.rmSync(dir, { recursive: true, force: true }); });

function rawHeader(magic: number, version: number, count: number): Buffer {
  const h = Buffer.alloc(SHARD_HEADER_BYTES);
  h.writeInt32LE(magic, 0);
  h.writeInt32LE(version, 4);
  h.writeInt32LE(count, 8);
  return h;
}

function expectDataError(fn: () => unknown, ...parts: (string | RegExp)[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(DataError);
  const message = (caught as Error).message;
  expect(message).not.toContain('\n');
  for (const part of parts) {
    if (typeof part === 'string') expect(message).toContain(part);
    else expect(message).toMatch(part);
  }
}

function tempFilesIn(folder: string): string[] {
  return fs.readdirSync(folder).filter((n) => n.endsWith('.tmp'));
}

describe('writeShard / readShard', () => {
  test('round trip of random tokens, header and size as the format says', () => {
    const tokens = randomTokens(12_345);
    tokens[0] = 65535;
    const file = path.join(dir, 'roundtrip_000000.bin');
    writeShard(file, tokens);
    const bytes = fs.readFileSync(file);
    expect(bytes.length).toBe(SHARD_HEADER_BYTES + 2 * tokens.length);
    expect(bytes.readInt32LE(0)).toBe(20240520);
    expect(bytes.readInt32LE(4)).toBe(1);
    expect(bytes.readInt32LE(8)).toBe(tokens.length);
    for (let i = 3; i < 256; i++) expect(bytes.readInt32LE(4 * i)).toBe(0);
    for (let i = 0; i < tokens.length; i += 97) expect(bytes.readUInt16LE(SHARD_HEADER_BYTES + 2 * i)).toBe(tokens[i]);
    expect(readShardHeader(file)).toEqual({ file, tokens: tokens.length });
    expect(Array.from(readShard(file))).toEqual(Array.from(tokens));
    expect(tempFilesIn(dir)).toEqual([]);
  });

  test('plain number arrays are accepted and checked', () => {
    const file = path.join(dir, 'numbers.bin');
    const tokens = Array.from(randomTokens(100));
    writeShard(file, tokens);
    expect(Array.from(readShard(file))).toEqual(tokens);
  });

  test('an empty shard round-trips', () => {
    const file = path.join(dir, 'empty.bin');
    writeShard(file, []);
    expect(readShardHeader(file).tokens).toBe(0);
    expect(readShard(file).length).toBe(0);
  });

  test('a token outside uint16 is refused and nothing is written', () => {
    for (const bad of [65536, -1, 1.5, NaN]) {
      const file = path.join(dir, `bad_${String(bad)}.bin`);
      expectDataError(() => writeShard(file, [5, 7, bad, 9]), `token ${bad} at index 2`, '[0, 65535]', `bad_${String(bad)}.bin`);
      expect(fs.existsSync(file)).toBe(false);
    }
    expect(tempFilesIn(dir)).toEqual([]);
  });

  test('overwriting replaces the old shard whole', () => {
    const file = path.join(dir, 'replace.bin');
    writeShard(file, randomTokens(5000));
    const second = randomTokens(300);
    writeShard(file, second);
    expect(Array.from(readShard(file))).toEqual(Array.from(second));
  });

  test('writing into a missing folder fails with a DataError naming the file', () => {
    const file = path.join(dir, 'no', 'such', 'folder', 'x.bin');
    expectDataError(() => writeShard(file, [1, 2, 3]), 'x.bin', 'no such file or directory');
  });
});

describe('ShardWriter', () => {
  test('appends in pieces; the target exists only after commit', () => {
    const file = path.join(dir, 'incremental.bin');
    const all = randomTokens(10_000);
    const w = new ShardWriter(file);
    w.append(all.subarray(0, 1));
    w.append(all.subarray(1, 4321));
    w.append(Array.from(all.subarray(4321)));
    expect(w.tokens).toBe(10_000);
    expect(fs.existsSync(file)).toBe(false);
    expect(fs.existsSync(w.tempFile)).toBe(true);
    w.commit();
    expect(fs.existsSync(w.tempFile)).toBe(false);
    expect(Array.from(readShard(file))).toEqual(Array.from(all));
  });

  test('abort leaves nothing behind', () => {
    const file = path.join(dir, 'aborted.bin');
    const w = new ShardWriter(file);
    w.append(randomTokens(100));
    w.abort();
    expect(fs.existsSync(file)).toBe(false);
    expect(tempFilesIn(dir)).toEqual([]);
    expect(() => w.append([1])).toThrow(DataError);
  });

  test('finish then publish: complete on disk before it gets its name', () => {
    const file = path.join(dir, 'two-step.bin');
    const tokens = randomTokens(64);
    const w = new ShardWriter(file);
    w.append(tokens);
    w.finish();
    expect(fs.existsSync(file)).toBe(false);
    expect(fs.statSync(w.tempFile).size).toBe(SHARD_HEADER_BYTES + 128);
    w.publish();
    expect(Array.from(readShard(file))).toEqual(Array.from(tokens));
  });
});

describe('header validation', () => {
  function writeRaw(name: string, ...parts: Buffer[]): string {
    const file = path.join(dir, name);
    fs.writeFileSync(file, Buffer.concat(parts));
    return file;
  }
  const data = (n: number): Buffer => Buffer.from(randomTokens(n).buffer);

  test('wrong magic: not a token shard', () => {
    const file = writeRaw('fineweb_val_000000.bin', rawHeader(1234, SHARD_VERSION, 10), data(10));
    expectDataError(() => readShardHeader(file), 'fineweb_val_000000.bin: magic 1234, expected 20240520 (not a token shard)');
    expectDataError(() => new ShardReader(file), 'magic 1234');
    expectDataError(() => readShard(file), 'magic 1234');
  });

  test('wrong version', () => {
    const file = writeRaw('v7.bin', rawHeader(SHARD_MAGIC, 7, 10), data(10));
    expectDataError(() => readShardHeader(file), 'v7.bin: version 7, expected 1');
  });

  test('a text file is not a shard', () => {
    const file = path.join(dir, 'notes.txt');
    fs.writeFileSync(file, 'Call me Ishmael. '.repeat(100));
    expectDataError(() => readShardHeader(file), 'notes.txt: magic', 'expected 20240520 (not a token shard)');
  });

  test('shorter than the header', () => {
    const file = writeRaw('tiny.bin', rawHeader(SHARD_MAGIC, SHARD_VERSION, 10).subarray(0, 100));
    expectDataError(() => readShardHeader(file), 'tiny.bin: 100 bytes, shorter than the 1024-byte shard header');
    const empty = writeRaw('zero-bytes.bin');
    expectDataError(() => readShardHeader(empty), 'zero-bytes.bin: 0 bytes');
  });

  test('truncated data: declared count vs actual size', () => {
    const tokens = randomTokens(1000);
    const file = path.join(dir, 'truncated.bin');
    writeShard(file, tokens);
    fs.truncateSync(file, SHARD_HEADER_BYTES + 2 * 600);
    expectDataError(() => readShardHeader(file), 'truncated.bin: header declares 1000 tokens (3024 bytes), but the file is 2224 bytes',
      '600 tokens', 'truncated');
    fs.truncateSync(file, SHARD_HEADER_BYTES + 2 * 600 + 1);
    expectDataError(() => readShardHeader(file), 'an odd number of data bytes');
  });

  test('trailing bytes after the declared tokens', () => {
    const file = writeRaw('long.bin', rawHeader(SHARD_MAGIC, SHARD_VERSION, 10), data(12));
    expectDataError(() => readShardHeader(file), 'long.bin: header declares 10 tokens', 'file is 1048 bytes', 'trailing bytes');
  });

  test('a negative count', () => {
    const file = writeRaw('negative.bin', rawHeader(SHARD_MAGIC, SHARD_VERSION, -5));
    expectDataError(() => readShardHeader(file), 'negative.bin: header declares -5 tokens');
  });

  test('a missing file and a folder', () => {
    expectDataError(() => readShardHeader(path.join(dir, 'missing_000001.bin')), 'missing_000001.bin', 'no such file or directory');
    expectDataError(() => readShardHeader(dir), 'is a directory');
  });
});

describe('ShardReader', () => {
  const tokens = randomTokens(50_000);
  let file: string;
  beforeAll(() => {
    file = path.join(dir, 'reader.bin');
    writeShard(file, tokens);
  });

  test('random ranges equal the written tokens, for windows smaller and larger than the range', () => {
    for (const windowTokens of [1, 17, 1000, 1 << 20]) {
      const reader = new ShardReader(file, { windowTokens });
      expect(reader.tokens).toBe(tokens.length);
      for (let k = 0; k < 200; k++) {
        const start = crypto.randomInt(0, tokens.length);
        const count = crypto.randomInt(0, Math.min(3000, tokens.length - start) + 1);
        const got = reader.read(start, count);
        expect(got.length).toBe(count);
        expect(Buffer.from(got.buffer, got.byteOffset, got.byteLength)
          .equals(Buffer.from(tokens.buffer, 2 * start, 2 * count))).toBe(true);
      }
      // The last token and an empty range at the end.
      expect(reader.read(tokens.length - 1, 1)[0]).toBe(tokens[tokens.length - 1]);
      expect(reader.read(tokens.length, 0).length).toBe(0);
      reader.close();
    }
  });

  test('returned arrays are copies, not views of the cache', () => {
    const reader = new ShardReader(file, { windowTokens: 1000 });
    const a = reader.read(0, 10);
    a.fill(0);
    expect(reader.read(0, 10)[0]).toBe(tokens[0]);
    reader.close();
  });

  test('a range outside the shard and a closed reader are errors', () => {
    const reader = new ShardReader(file);
    expectDataError(() => reader.read(49_990, 11), 'reader.bin: cannot read tokens [49990, 50001)', '[0, 50000)');
    expectDataError(() => reader.read(-1, 2), 'cannot read tokens');
    expectDataError(() => reader.read(0.5, 2), 'cannot read tokens');
    reader.close();
    expectDataError(() => reader.read(0, 1), 'closed');
  });

  test('memory stays bounded: reads are at most one window, never the whole file', () => {
    const big = path.join(dir, 'big.bin');
    const n = 3_000_000; // 6 MB
    writeShard(big, randomTokens(n));
    // The module object itself (`import * as` gives a read-only namespace copy).
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const spy = jest.spyOn(require('fs') as typeof fs, 'readSync');
    try {
      const reader = new ShardReader(big, { windowTokens: 100_000 });
      for (let k = 0; k < 50; k++) reader.read(k * 5000, 5001);
      reader.read(n - 10, 10);
      reader.close();
      const sizes = spy.mock.calls.map((call) => (call as unknown[])[3] as number);
      expect(sizes.length).toBeGreaterThanOrEqual(4); // the header, three windows, the tail
      expect(Math.max(...sizes)).toBeLessThanOrEqual(200_000);
      expect(sizes.reduce((a, b) => a + b, 0)).toBeLessThan(1_000_000);
    } finally {
      spy.mockRestore();
    }
  });

  test('a shard truncated after opening fails with a clear message, not garbage', () => {
    const victim = path.join(dir, 'shrinks.bin');
    writeShard(victim, randomTokens(10_000));
    const reader = new ShardReader(victim, { windowTokens: 10 });
    fs.truncateSync(victim, SHARD_HEADER_BYTES + 2 * 100);
    expectDataError(() => reader.read(5000, 10), 'shrinks.bin: file ended at byte');
    reader.close();
  });
});
