// The trainer end to end on the CPU through the CLI's main(argv, io) and the Trainer API, with
// a tiny configuration on small shards in a temp folder: the files a run writes (config.json,
// metrics.jsonl, checkpoints), exact resumption (a run stopped and resumed computes bit for bit
// the losses of an uninterrupted one), --compare's report, and every bad input as one line with
// a non-zero status and nothing written.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { main } from '../lib/cli/train';
import { prepareDefaultCorpus } from '../lib/data/corpus';
import { readShard, writeShard } from '../lib/data/shard';
import { writeSafetensors } from '../lib/gpt2/safetensors';
import { presetConfig, Trainer } from '../lib/train';
import type { MetricPoint, TrainConfig } from '../lib/train';
import { structuredTokens } from './helpers/tokens';

interface Run {
  status: number;
  stdout: string;
  stderr: string;
}

async function run(argv: string[], isTTY = false): Promise<Run> {
  let stdout = '';
  let stderr = '';
  let clock = 0;
  const status = await main(argv, {
    stdout: { write: (s: string) => { stdout += s; } },
    stderr: { write: (s: string) => { stderr += s; }, isTTY },
    now: () => (clock += 150),
    cacheDir: path.join(root, 'no-cache'),
  });
  return { status, stdout, stderr };
}

function expectOneLineError(r: Run, status: number, ...parts: string[]): void {
  expect(r.status).toBe(status);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  expect(lines).toHaveLength(1);
  expect(lines[0].startsWith('newton-muon-train: ')).toBe(true);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  for (const part of parts) expect(lines[0]).toContain(part);
}

function readMetrics(dir: string): MetricPoint[] {
  return fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as MetricPoint);
}

const tokens = structuredTokens;

let root: string;
let train: string;
let val: string;
const SMALL = ['--micro-batch', '2', '--seq-len', '16', '--batch-size', '64', '--val-tokens', '64', '--device', 'cpu'];
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nm-train-'));
  fs.mkdirSync(path.join(root, 'data'));
  writeShard(path.join(root, 'data', 'toy_val_000000.bin'), tokens(1000, 1));
  writeShard(path.join(root, 'data', 'toy_train_000001.bin'), tokens(3000, 2));
  writeShard(path.join(root, 'data', 'toy_train_000002.bin'), tokens(3000, 3));
  train = path.join(root, 'data', 'toy_train_*.bin');
  val = path.join(root, 'data', 'toy_val_*.bin');
});
afterAll(() => { fs.rmSync(root, { recursive: true, force: true }); });

const DATA = () => ['--data', train, '--val-data', val];

test('a run writes config.json, metrics.jsonl (the documented schema) and a final checkpoint', async () => {
  const out = path.join(root, 'run-basic');
  const r = await run([...DATA(), ...SMALL, '--steps', '6', '--val-every', '3', '--out', out, '--optimizer', 'muon']);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as TrainConfig;
  expect(config).toMatchObject({ preset: 'tiny', optimizer: 'muon', steps: 6, batchTokens: 64, microBatch: 2, seqLen: 16, valEvery: 3, device: 'cpu' });
  expect(config.data).toEqual({ kind: 'shards', train, val });
  expect(config.model.vocabSize).toBe(257); // byte-level ids detected
  const metrics = readMetrics(out);
  expect(metrics.map((m) => m.step)).toEqual([0, 1, 2, 3, 4, 5, 6]);
  expect(metrics.filter((m) => m.val_loss !== undefined).map((m) => m.step)).toEqual([0, 3, 6]);
  expect(metrics[0].train_loss).toBeNull();
  for (const m of metrics) {
    expect(Object.keys(m).sort()).toEqual(['elapsed_s', 'lr', 'step', 'tokens_per_s', 'train_loss', ...(m.val_loss !== undefined ? ['val_loss'] : [])].sort());
    expect(m.lr).toBeGreaterThan(0);
    if (m.step > 0) {
      expect(Number.isFinite(m.train_loss)).toBe(true);
      expect(m.tokens_per_s).toBeGreaterThan(0);
      expect(m.elapsed_s).toBeGreaterThan(0);
    }
  }
  // Warmdown: the lr of the last steps falls linearly.
  expect(metrics[6].lr).toBeLessThan(metrics[1].lr);
  expect(fs.readdirSync(path.join(out, 'checkpoints'))).toEqual(['step_000006']);
  expect(fs.readdirSync(path.join(out, 'checkpoints', 'step_000006')).sort()).toEqual(['metrics.jsonl', 'model.safetensors', 'optimizer.safetensors', 'state.json']);
  expect(r.stdout).toMatch(/done: 6 steps, val loss \d+\.\d+ -> \d+\.\d+/);
  // No temp files anywhere.
  const all: string[] = [];
  (function walk(d: string) { for (const e of fs.readdirSync(d)) { const p = path.join(d, e); all.push(p); if (fs.statSync(p).isDirectory()) walk(p); } })(out);
  expect(all.filter((p) => p.endsWith('.tmp'))).toEqual([]);
  // The same folder again: refused, nothing changed.
  const again = await run([...DATA(), ...SMALL, '--steps', '6', '--out', out]);
  expectOneLineError(again, 1, 'already holds a run');
  expect(readMetrics(out)).toEqual(metrics);
});

test('a progress bar on a TTY, plain lines otherwise', async () => {
  const tty = await run([...DATA(), ...SMALL, '--steps', '4', '--val-every', '2', '--out', path.join(root, 'run-tty')], true);
  expect(tty.status).toBe(0);
  expect(tty.stderr).toMatch(/\r\[#+\.*\] step 4\/4 loss \d+\.\d+ val \d+\.\d+ [\d,]+ tok\/s/);
  expect(tty.stdout).toMatch(/done: 4 steps/);
  const plain = await run([...DATA(), ...SMALL, '--steps', '4', '--val-every', '2', '--out', path.join(root, 'run-plain')]);
  expect(plain.stderr).toBe('');
  expect(plain.stdout).toMatch(/^step 2\/4 loss \d+\.\d+ val \d+\.\d+ lr /m);
});

test.each(['newton-muon', 'muon', 'adamw'])('%s: a stopped and resumed run has bit-identical losses', async (optimizer) => {
  // 20 steps with Newton-Muon refreshing every 8: the resume at 10 carries K, Kinv and momentum.
  const args = [...DATA(), ...SMALL, '--steps', '20', '--val-every', '5', '--optimizer', optimizer, '--lr', '0.02'];
  const full = path.join(root, `full-${optimizer}`);
  expect((await run([...args, '--out', full])).status).toBe(0);

  const part = path.join(root, `part-${optimizer}`);
  const { buildConfig, parseArgs } = await import('../lib/cli/train');
  const trainer = await Trainer.create({ config: buildConfig(parseArgs(args)), outDir: part });
  const stopped = await trainer.run({ stopAtStep: 10 });
  trainer.dispose();
  expect(stopped.stopped).toBe(true);
  expect(fs.readdirSync(path.join(part, 'checkpoints'))).toEqual(['step_000010']);

  const resumed = await run(['--resume', part]);
  expect(resumed.stderr).toBe('');
  expect(resumed.status).toBe(0);
  const a = readMetrics(full);
  const b = readMetrics(part);
  expect(b.map((m) => m.step)).toEqual(a.map((m) => m.step));
  expect(b.map((m) => m.train_loss)).toEqual(a.map((m) => m.train_loss));
  expect(b.map((m) => m.val_loss)).toEqual(a.map((m) => m.val_loss));
  expect(b.map((m) => m.lr)).toEqual(a.map((m) => m.lr));
  // Same weights at the end too.
  const wa = fs.readFileSync(path.join(full, 'checkpoints', 'step_000020', 'model.safetensors'));
  const wb = fs.readFileSync(path.join(part, 'checkpoints', 'step_000020', 'model.safetensors'));
  expect(wb.equals(wa)).toBe(true);
});

test('resuming with a conflicting option or from something that is not a checkpoint fails in one line', async () => {
  const part = path.join(root, 'part-muon');
  const before = fs.readFileSync(path.join(part, 'metrics.jsonl'), 'utf8');
  expectOneLineError(await run(['--resume', part, '--optimizer', 'adamw']), 1, 'another configuration', 'optimizer');
  expectOneLineError(await run(['--resume', part, '--seq-len', '32']), 1, 'another configuration', 'seq-len');
  expectOneLineError(await run(['--resume', path.join(root, 'data')]), 1, 'is not a checkpoint');
  expectOneLineError(await run(['--resume', path.join(root, 'nope')]), 1, 'does not exist');
  expect(fs.readFileSync(path.join(part, 'metrics.jsonl'), 'utf8')).toBe(before);
});

test('--compare trains Muon and Newton-Muon on the same data and writes a self-contained report', async () => {
  const out = path.join(root, 'compare');
  const r = await run([...DATA(), ...SMALL, '--steps', '6', '--val-every', '2', '--target-loss', '50', '--out', out, '--compare']);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const html = fs.readFileSync(path.join(out, 'report.html'), 'utf8');
  expect(html).toMatch(/^<!DOCTYPE html>/);
  expect(html).toContain('<svg');
  expect((html.match(/<polyline/g) ?? []).length).toBe(4); // val and train curve of each
  expect(html).toContain('muon');
  expect(html).toContain('newton-muon');
  expect(html).not.toMatch(/<script|src=|href=/); // self-contained
  const muon = readMetrics(path.join(out, 'muon'));
  const newton = readMetrics(path.join(out, 'newton-muon'));
  // Identical data and init: the same step-0 val loss and first-step train loss.
  expect(newton[0].val_loss).toBe(muon[0].val_loss);
  expect(newton[1].train_loss).toBe(muon[1].train_loss);
  // Target 50 is reached at the first evaluation.
  expect(html).toMatch(/<td>0<\/td>/);
  expect(r.stdout).toContain(`wrote ${path.join(out, 'report.html')}`);
});

test('--init starts from a safetensors file: step 0 evaluates those weights; config.json records the file', async () => {
  const first = path.join(root, 'run-init-source');
  expect((await run([...DATA(), ...SMALL, '--steps', '3', '--out', first, '--optimizer', 'adamw'])).status).toBe(0);
  const weights = path.join(first, 'checkpoints', 'step_000003', 'model.safetensors');
  const lastVal = readMetrics(first).at(-1)!.val_loss!;
  const out = path.join(root, 'run-init');
  const r = await run([...DATA(), ...SMALL, '--steps', '2', '--out', out, '--optimizer', 'muon', '--init', weights, '--seed', '5']);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  // The seed no longer decides the weights: step 0's val loss is the source run's last one.
  expect(readMetrics(out)[0].val_loss).toBe(lastVal);
  expect((JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as TrainConfig).initWeights).toBe(weights);
});

describe('bad input: one line, non-zero status, nothing written', () => {
  const out = () => path.join(root, 'never');
  afterEach(() => { expect(fs.existsSync(out())).toBe(false); });

  test('missing data', async () => {
    expectOneLineError(await run(['--data', path.join(root, 'missing_*.bin'), '--val-data', val, ...SMALL, '--out', out()]), 1, 'missing_*.bin');
  });
  test('a file that is not a shard', async () => {
    const bad = path.join(root, 'data', 'notashard.txt');
    fs.writeFileSync(bad, 'hello world, this is not a token shard'.repeat(50));
    expectOneLineError(await run(['--data', bad, '--val-data', val, ...SMALL, '--out', out()]), 1, 'notashard.txt');
  });
  test('a corpus shorter than one batch', async () => {
    const short = path.join(root, 'data', 'short.bin');
    writeShard(short, tokens(20, 5));
    expectOneLineError(await run(['--data', short, '--val-data', val, ...SMALL, '--out', out()]), 1, 'too few for one batch');
  });
  test('invalid option values', async () => {
    expectOneLineError(await run(['--steps', '-1']), 2, '--steps');
    expectOneLineError(await run(['--optimizer', 'sgd']), 2, '--optimizer must be newton-muon, muon, adamw');
    expectOneLineError(await run(['--device', 'tpu']), 2, '--device must be cpu, cuda or auto');
    expectOneLineError(await run(['--bogus']), 2, "unknown option '--bogus'");
    expectOneLineError(await run([...DATA(), ...SMALL, '--batch-size', '100', '--out', out()]), 1, 'not a whole number of micro-batches');
  });
  test('--init: a missing file, weights of another model, or combined with --resume', async () => {
    expectOneLineError(await run([...DATA(), ...SMALL, '--init', path.join(root, 'nope.safetensors'), '--out', out()]), 1, "init weights '", 'nope.safetensors', 'do not exist');
    const other = path.join(root, 'other.safetensors');
    writeSafetensors(other, { 'transformer.wte.weight': { shape: [3, 4], data: new Float32Array(12) } });
    expectOneLineError(await run([...DATA(), ...SMALL, '--init', other, '--out', out()]), 1, 'other.safetensors', "'transformer.wte.weight'", 'expected');
    expectOneLineError(await run(['--init', other, '--resume', path.join(root, 'run-basic')]), 2, '--init starts a new run');
  });
  test('the speedrun preset without shards', async () => {
    expectOneLineError(await run(['--preset', 'speedrun-124m', '--out', out()]), 1, '--data');
  });
  test('an output folder that cannot be written', async () => {
    const file = path.join(root, 'a-file');
    fs.writeFileSync(file, 'x');
    expectOneLineError(await run([...DATA(), ...SMALL, '--steps', '2', '--out', path.join(file, 'run')]), 1, 'cannot create the output folder');
  });
});

test('--help and the package version', async () => {
  const help = await run(['--help']);
  expect(help.status).toBe(0);
  expect(help.stdout.startsWith('Usage: newton-muon-train')).toBe(true);
  for (const option of ['--preset', '--optimizer', '--data', '--val-data', '--steps', '--batch-size', '--micro-batch', '--seq-len', '--lr',
    '--device', '--seed', '--val-every', '--out', '--resume', '--save-every', '--compare', '--target-loss', 'Examples:']) {
    expect(help.stdout).toContain(option);
  }
  expect(help.stdout).toMatch(/--batch-size <tokens>\s+TOKENS per optimizer step/);
  expect((await run(['--version'])).stdout).toMatch(/^\d+\.\d+\.\d+/);
});

test('the default job\'s model on the bundled corpus: a short run falls clearly below the unigram baseline', async () => {
  // The tiny preset shortened to 30 steps of 4,096 tokens (about a tenth of the default job).
  const tiny = presetConfig('tiny');
  const config: TrainConfig = { ...tiny, device: 'cpu', steps: 30, warmdownSteps: 9, valEvery: 30, batchTokens: 4096 };
  const cacheDir = path.join(root, 'cache');
  const trainer = await Trainer.create({ config, outDir: path.join(root, 'tiny-bundled'), cacheDir });
  const result = await trainer.run();
  trainer.dispose();
  // The unigram baseline: cross entropy of the train set's byte frequencies (add-one smoothed)
  // on the same val tokens the trainer evaluates (the first valTokens + 1 of the val shard).
  const corpus = prepareDefaultCorpus({ tokenizer: 'byte', cacheDir });
  const counts = new Float64Array(257).fill(1);
  let total = 257;
  for (const file of corpus.trainFiles) {
    const t = readShard(file);
    for (let i = 0; i < t.length; i++) counts[t[i]]++;
    total += t.length;
  }
  const val = readShard(corpus.valFiles[0]);
  const n = Math.min(config.valTokens, val.length - 1);
  let unigram = 0;
  for (let i = 1; i <= n; i++) unigram -= Math.log(counts[val[i]] / total);
  unigram /= n;
  expect(unigram).toBeGreaterThan(2.8); // ~3.2 nats for English bytes
  expect(result.steps).toBe(30);
  expect(result.initialValLoss).toBeGreaterThan(5); // ~ln 257 untrained
  expect(result.finalValLoss).toBeLessThan(unigram - 0.3);
});
