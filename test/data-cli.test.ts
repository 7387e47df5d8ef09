// newton-muon-data through its main(argv, io): shards written as promised, --force, progress on a
// TTY and off it, and every bad input as one line with a non-zero status and nothing written.
// Plus one run of the compiled bin when dist/ has it.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { main, parseCount } from '../lib/cli/data';
import { readShard, readShardHeader } from '../lib/data/shard';
import { getTokenizer } from '../lib/data/tokenizer';

interface Run {
  status: number;
  stdout: string;
  stderr: string;
}

function run(argv: string[], isTTY = false): Run {
  let stdout = '';
  let stderr = '';
  let clock = 0;
  const status = main(argv, {
    stdout: { write: (s: string) => { stdout += s; } },
    stderr: { write: (s: string) => { stderr += s; }, isTTY },
    now: () => (clock += 150),
  });
  return { status, stdout, stderr };
}

function expectOneLineError(r: Run, status: number, ...parts: string[]): void {
  expect(r.status).toBe(status);
  expect(r.stdout).not.toContain('newton-muon-data');
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  expect(lines).toHaveLength(1);
  expect(lines[0].startsWith('newton-muon-data: ')).toBe(true);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  for (const part of parts) expect(lines[0]).toContain(part);
}

let root: string;
let texts: string;
const BOOK_A = 'It was the best of times, it was the worst of times. Ünïcödé 🐋 included.\n'.repeat(200);
const BOOK_B = 'Call me Ishmael. Some years ago—never mind how long precisely—having little money.\n'.repeat(150);
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nm-data-cli-'));
  texts = path.join(root, 'texts');
  fs.mkdirSync(texts);
  fs.writeFileSync(path.join(texts, 'a.txt'), BOOK_A);
  fs.writeFileSync(path.join(texts, 'b.txt'), BOOK_B);
});
afterAll(() => { fs.rmSync(root, { recursive: true, force: true }); });

function listing(dir: string): string[] {
  return fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [];
}

test('--help shows usage with examples', () => {
  const r = run(['--help']);
  expect(r.status).toBe(0);
  expect(r.stdout).toContain('Usage: newton-muon-data');
  expect(r.stdout).toContain('Examples:');
  expect(r.stdout).toContain('--force');
  expect(r.stderr).toBe('');
});

test('byte tokenizer: a val shard and train shards of --shard-size, documents in glob order', () => {
  const out = path.join(root, 'out-byte');
  const r = run(['--input', path.join(texts, '*.txt'), '--out', out, '--tokenizer', 'byte', '--shard-size', '5k', '--val-tokens', '1000']);
  expect(r.stderr).not.toContain('newton-muon-data:');
  expect(r.status).toBe(0);
  const byte = getTokenizer('byte');
  const stream = [...byte.encodeDocument(BOOK_A), ...byte.encodeDocument(BOOK_B)];
  const trainCount = Math.ceil((stream.length - 1000) / 5000);
  const names = ['data_val_000000.bin', ...Array.from({ length: trainCount }, (_, k) => `data_train_${String(k + 1).padStart(6, '0')}.bin`)];
  expect(listing(out)).toEqual([...names].sort());
  const shards = names.map((n) => readShard(path.join(out, n)));
  expect(shards[0].length).toBe(1000);
  for (let k = 1; k < trainCount; k++) expect(shards[k].length).toBe(5000);
  const joined: number[] = [];
  for (const s of shards) joined.push(...s);
  expect(joined).toEqual(stream);
  expect(r.stdout).toContain(`wrote ${names.length} shards to ${out}`);
  expect(r.stdout).toContain('1,000 val');
  expect(r.stdout).toContain('2 documents');
  // Not a TTY: plain progress lines on stdout, nothing on stderr.
  expect(r.stderr).toBe('');
  expect(r.stdout).toMatch(/100% tokenize/);
  expect(r.stdout).toMatch(/100% write/);
});

test('gpt2 (the default) with --val-fraction and --prefix; ids are GPT-2 with eot 50256', () => {
  const out = path.join(root, 'out-gpt2');
  const r = run(['-i', path.join(texts, 'b.txt'), '-i', path.join(texts, 'a.txt'), '-o', out, '--val-fraction=0.1', '--prefix', 'books']);
  expect(r.status).toBe(0);
  expect(listing(out)).toEqual(['books_train_000001.bin', 'books_val_000000.bin']);
  const gpt2 = getTokenizer('gpt2');
  const stream = [...gpt2.encodeDocument(BOOK_B), ...gpt2.encodeDocument(BOOK_A)];
  const val = readShard(path.join(out, 'books_val_000000.bin'));
  const train = readShard(path.join(out, 'books_train_000001.bin'));
  expect(val.length).toBe(Math.round(stream.length * 0.1));
  expect([...val, ...train]).toEqual(stream);
  expect(val[0]).toBe(50256);
});

test('on a TTY the progress bar redraws in place', () => {
  const out = path.join(root, 'out-tty');
  const r = run(['--input', path.join(texts, 'a.txt'), '--out', out, '--tokenizer', 'byte'], true);
  expect(r.status).toBe(0);
  expect(r.stderr).toContain('\r[');
  expect(r.stderr).toContain('100%');
  expect(r.stderr.endsWith('\n')).toBe(true);
  expect(r.stdout).not.toContain('%');
  // A failure on a TTY erases the bar, leaving the error as the one line.
  const bad = run(['--input', path.join(texts, 'a.txt'), '--out', out, '--tokenizer', 'byte'], true);
  expect(bad.status).toBe(1);
  expect(bad.stderr.split('\r\x1b[K').pop()).toMatch(/^newton-muon-data: .*already holds.*\n$/);
});

test('existing shards are kept unless --force; --force replaces them and drops stale ones', () => {
  const out = path.join(root, 'out-force');
  expect(run(['--input', path.join(texts, '*.txt'), '--out', out, '--tokenizer', 'byte', '--shard-size', '3000']).status).toBe(0);
  const before = listing(out);
  expect(before.length).toBeGreaterThan(3);
  const firstTrain = fs.readFileSync(path.join(out, 'data_train_000001.bin'));

  const refused = run(['--input', path.join(texts, 'a.txt'), '--out', out]);
  expectOneLineError(refused, 1, `already holds ${before.length} shards`, 'data_*.bin', '--force');
  expect(listing(out)).toEqual(before);
  expect(fs.readFileSync(path.join(out, 'data_train_000001.bin')).equals(firstTrain)).toBe(true);

  const forced = run(['--input', path.join(texts, 'a.txt'), '--out', out, '--force']);
  expect(forced.status).toBe(0);
  expect(listing(out)).toEqual(['data_train_000001.bin', 'data_val_000000.bin']);
  expect(readShardHeader(path.join(out, 'data_train_000001.bin')).tokens + readShardHeader(path.join(out, 'data_val_000000.bin')).tokens)
    .toBe(getTokenizer('gpt2').encodeDocument(BOOK_A).length);
});

describe('bad input: one line, non-zero status, nothing written', () => {
  const out = (): string => path.join(root, `out-bad-${Math.random().toString(36).slice(2)}`);

  test('a missing input and a glob with no match', () => {
    const o = out();
    expectOneLineError(run(['--input', path.join(texts, 'missing.txt'), '--out', o]), 1, 'no files match', 'missing.txt');
    expectOneLineError(run(['--input', path.join(texts, '*.md'), '--out', o]), 1, `no files match '${path.join(texts, '*.md')}'`);
    expect(fs.existsSync(o)).toBe(false);
  });

  test('a binary (non-UTF-8) input', () => {
    const o = out();
    const bin = path.join(root, 'binary.dat');
    fs.writeFileSync(bin, Buffer.from([0x48, 0x69, 0xff, 0xfe, 0x00, 0xc3]));
    expectOneLineError(run(['--input', bin, '--out', o]), 1, 'binary.dat: not UTF-8 text');
    expect(listing(o)).toEqual([]);
  });

  test('too little text for a val and a train split', () => {
    const o = out();
    const tiny = path.join(root, 'tiny.txt');
    fs.writeFileSync(tiny, 'hi');
    expectOneLineError(run(['--input', tiny, '--out', o, '--val-tokens', '100']), 1, 'holds 2 tokens', 'too few');
    expect(listing(o)).toEqual([]);
  });

  test('an output folder that is a file', () => {
    const file = path.join(root, 'not-a-folder');
    fs.writeFileSync(file, 'x');
    expectOneLineError(run(['--input', path.join(texts, 'a.txt'), '--out', path.join(file, 'sub')]), 1, 'cannot write to output folder');
  });

  test('bad options are usage errors (status 2)', () => {
    const input = path.join(texts, 'a.txt');
    const o = out();
    expectOneLineError(run(['--input', input, '--out', o, '--tokenizer', 'bpe']), 2, '--tokenizer must be gpt2 or byte', "'bpe'");
    expectOneLineError(run(['--input', input, '--out', o, '--shard-size', '0']), 2, '--shard-size must be a positive whole number');
    expectOneLineError(run(['--input', input, '--out', o, '--shard-size', '1.5']), 2, '--shard-size');
    expectOneLineError(run(['--input', input, '--out', o, '--shard-size', '1e10']), 2, 'at most 2147483647');
    expectOneLineError(run(['--input', input, '--out', o, '--val-fraction', '1.5']), 2, '--val-fraction must be a number strictly between 0 and 1');
    expectOneLineError(run(['--input', input, '--out', o, '--val-fraction', '0']), 2, '--val-fraction');
    expectOneLineError(run(['--input', input, '--out', o, '--val-fraction', '0.1', '--val-tokens', '10']), 2, 'not both');
    expectOneLineError(run(['--input', input, '--out', o, '--prefix', '../x']), 2, '--prefix');
    expectOneLineError(run(['--input', input, '--out', o, '--bogus']), 2, "unknown option '--bogus'");
    expectOneLineError(run(['--input', input]), 2, 'no output folder');
    expectOneLineError(run(['--out', o]), 2, 'no input');
    expectOneLineError(run(['--input', input, '--out']), 2, '--out needs a value');
    expect(fs.existsSync(o)).toBe(false);
  });
});

test('token counts accept 1e6, 50M, 20k and plain integers', () => {
  expect(parseCount('--x', '1e8')).toBe(100_000_000);
  expect(parseCount('--x', '50M')).toBe(50_000_000);
  expect(parseCount('--x', '20k')).toBe(20_000);
  expect(parseCount('--x', '12345')).toBe(12_345);
  expect(parseCount('--x', '2.5k')).toBe(2500);
  for (const bad of ['-1', 'abc', '1.5', '', '1e-3']) expect(() => parseCount('--x', bad)).toThrow('--x must be a positive whole number');
});

describe('the compiled bin', () => {
  // Only a dist/ built from the current sources (CI builds it in `npm ci`); a stale one is skipped.
  const bin = path.join(__dirname, '..', 'dist', 'cli', 'data.js');
  const sources = [path.join(__dirname, '..', 'lib', 'cli', 'data.ts'),
    ...fs.readdirSync(path.join(__dirname, '..', 'lib', 'data')).map((n) => path.join(__dirname, '..', 'lib', 'data', n))];
  const fresh = fs.existsSync(bin) && sources.every((f) => fs.statSync(f).mtimeMs <= fs.statSync(bin).mtimeMs);
  const runIt = fresh ? test : test.skip;
  runIt('dist/cli/data.js: --help, a run, and a bad input without a stack trace', () => {
    const help = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8', timeout: 60_000 });
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('Usage: newton-muon-data');

    const o = path.join(root, 'out-bin');
    const ok = spawnSync(process.execPath, [bin, '--input', path.join(texts, 'a.txt'), '--out', o, '--tokenizer', 'byte'],
      { encoding: 'utf8', timeout: 60_000 });
    expect(ok.status).toBe(0);
    expect(listing(o)).toEqual(['data_train_000001.bin', 'data_val_000000.bin']);

    const bad = spawnSync(process.execPath, [bin, '--input', path.join(texts, 'nope-*.txt'), '--out', o],
      { encoding: 'utf8', timeout: 60_000 });
    expect(bad.status).toBe(1);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toContain('no files match');
  });
});
