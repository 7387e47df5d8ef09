// Data-parallel training on Gloo: a tiny GPT-2 trained by two rank processes gives, step by step,
// the train and val losses of one process with twice the accumulation (the same global batch),
// for Newton-Muon (refresh every 2 steps), Muon and AdamW, with the sharded matrix step on and off;
// sharding changes no bit; a checkpoint written by two ranks resumes in one process; and the CLI's
// --nproc-per-node 2 matches a plain run with the same --batch-size.
//
// Tolerance: 1e-6 relative. Two ranks sum the gradients of their micro-batches, then each other's
// ((g0 + g2) + (g1 + g3) for four micro-batches where one process adds g0 + g1 + g2 + g3 in
// turn), so the weights may differ in the last bit after the first step; the losses themselves are
// gathered and averaged in the single-process order. The suite reports how many steps matched bit
// for bit.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { writeShard } from '../lib/data/shard';
import { presetConfig, Trainer } from '../lib/train';
import type { MetricPoint, OptimizerName, TrainConfig } from '../lib/train';
import { structuredTokens } from './helpers/tokens';
import { cleanEnv, describeWithGloo, freePort, killAll, lines, spawnNode, torchrunEnv, TRAIN_CLI } from './helpers/dist';

const WORKER = path.join(__dirname, 'helpers', 'dist-train-worker.ts');
const TOLERANCE = 1e-6;
const HARD_TIMEOUT_MS = 120_000;

let root: string;
const report: string[] = [];

function baseConfig(optimizer: OptimizerName): TrainConfig {
  const c = presetConfig('tiny', optimizer);
  return {
    ...c,
    model: { vocabSize: 64, nLayer: 2, nHead: 2, nEmbd: 64, maxSeqLen: 16 },
    data: { kind: 'shards', train: path.join(root, 'data', 'toy_train_*.bin'), val: path.join(root, 'data', 'toy_val_*.bin') },
    steps: 6, microBatch: 2, seqLen: 16,
    // 4 micro-batches per step: 2 per rank with two ranks, 4 in one process.
    batchTokens: 4 * 2 * 16,
    warmupSteps: 0, warmdownSteps: 2, refreshEvery: 2,
    valEvery: 1, valTokens: 3 * 2 * 16, // 3 val batches: ranks evaluate unequal shares
    saveEvery: 0, device: 'cpu', targetLoss: null,
  };
}

function readMetrics(dir: string): MetricPoint[] {
  return fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as MetricPoint);
}

async function worldOne(config: TrainConfig, out: string, options: { resumeFrom?: string; stopAtStep?: number } = {}): Promise<MetricPoint[]> {
  const trainer = await Trainer.create({ config, outDir: out, resumeFrom: options.resumeFrom, onWarning: () => undefined });
  try {
    return (await trainer.run({ stopAtStep: options.stopAtStep })).metrics;
  } finally {
    trainer.dispose();
  }
}

async function worldTwo(config: TrainConfig, out: string, shard: boolean, extra: { stopAtStep?: number; resumeFrom?: string } = {}): Promise<MetricPoint[]> {
  const spec = path.join(root, `${path.basename(out)}.spec.json`);
  fs.writeFileSync(spec, JSON.stringify({ config, outDir: out, shard, timeoutMs: 30_000, ...extra }));
  const port = await freePort();
  const ranks = [0, 1].map((r) => spawnNode(WORKER, [spec], torchrunEnv(r, 2, port), HARD_TIMEOUT_MS));
  const results = await Promise.all(ranks.map((p) => p.done));
  results.forEach((r, rank) => expect({ rank, code: r.code, hung: r.hung, stderr: r.stderr }).toEqual({ rank, code: 0, hung: false, stderr: '' }));
  return readMetrics(out);
}

interface Comparison { maxRel: number; bitwise: number; values: number }

/** Step-by-step train and val losses; throws naming the first step beyond the tolerance. */
function compare(reference: MetricPoint[], other: MetricPoint[], what: string): Comparison {
  expect(other.map((m) => m.step)).toEqual(reference.map((m) => m.step));
  let maxRel = 0;
  let bitwise = 0;
  let values = 0;
  reference.forEach((ref, i) => {
    for (const key of ['train_loss', 'val_loss'] as const) {
      const a = ref[key];
      const b = other[i][key];
      expect([key, ref.step, b === undefined || b === null]).toEqual([key, ref.step, a === undefined || a === null]);
      if (a === undefined || a === null) continue;
      values++;
      if (a === b) bitwise++;
      const rel = Math.abs(a - b!) / Math.abs(a);
      maxRel = Math.max(maxRel, rel);
      if (!(rel <= TOLERANCE)) throw new Error(`${what}: step ${ref.step} ${key} ${b} vs ${a} (relative ${rel.toExponential(2)} > ${TOLERANCE})`);
    }
  });
  return { maxRel, bitwise, values };
}

function note(what: string, c: Comparison): void {
  report.push(`${what}: max relative difference ${c.maxRel.toExponential(2)}, ${c.bitwise}/${c.values} losses bit for bit`);
}

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nm-dist-train-'));
  fs.mkdirSync(path.join(root, 'data'));
  writeShard(path.join(root, 'data', 'toy_val_000000.bin'), structuredTokens(1500, 1));
  writeShard(path.join(root, 'data', 'toy_train_000001.bin'), structuredTokens(6000, 2));
});
afterAll(() => {
  killAll();
  // eslint-disable-next-line no-console
  if (report.length > 0) console.log(`data-parallel equivalence (two ranks vs one process with twice the accumulation):\n  ${report.join('\n  ')}`);
  fs.rmSync(root, { recursive: true, force: true });
});

describeWithGloo('data-parallel training: two ranks = one process with twice the accumulation', () => {
  const optimizers: OptimizerName[] = ['newton-muon', 'muon', 'adamw'];
  const single = new Map<OptimizerName, MetricPoint[]>();

  for (const optimizer of optimizers) {
    test(`${optimizer}: sharded and unsharded, step by step (tolerance ${TOLERANCE})`, async () => {
      const config = baseConfig(optimizer);
      const reference = await worldOne(config, path.join(root, `w1-${optimizer}`));
      single.set(optimizer, reference);
      expect(reference).toHaveLength(7);
      const sharded = await worldTwo(config, path.join(root, `w2-${optimizer}-shard`), true);
      const unsharded = await worldTwo(config, path.join(root, `w2-${optimizer}-noshard`), false);
      note(`${optimizer}, sharded`, compare(reference, sharded, `${optimizer} sharded`));
      note(`${optimizer}, unsharded`, compare(reference, unsharded, `${optimizer} unsharded`));
      // Sharding moves work, not arithmetic: the two-rank runs agree bit for bit, and so do their
      // final checkpoints (the gathered optimizer state is what every rank computed unsharded).
      expect(sharded).toEqual(unsharded.map((m, i) => ({ ...m, tokens_per_s: sharded[i].tokens_per_s, elapsed_s: sharded[i].elapsed_s })));
      for (const file of ['model.safetensors', 'optimizer.safetensors']) {
        const a = fs.readFileSync(path.join(root, `w2-${optimizer}-shard`, 'checkpoints', 'step_000006', file));
        const b = fs.readFileSync(path.join(root, `w2-${optimizer}-noshard`, 'checkpoints', 'step_000006', file));
        expect({ file, same: a.equals(b) }).toEqual({ file, same: true });
      }
      // Rank 0 alone wrote the run folder.
      expect(fs.readdirSync(path.join(root, `w2-${optimizer}-shard`)).sort()).toEqual(['checkpoints', 'config.json', 'metrics.jsonl']);
    }, 240_000);
  }

  test('a checkpoint written by two ranks (sharded Newton-Muon) resumes in one process with the uninterrupted losses', async () => {
    const config = baseConfig('newton-muon');
    const out = path.join(root, 'ckpt-w2');
    await worldTwo(config, out, true, { stopAtStep: 3 });
    const checkpoint = path.join(out, 'checkpoints', 'step_000003');
    expect(fs.existsSync(path.join(checkpoint, 'state.json'))).toBe(true);
    const resumed = await worldOne(config, out, { resumeFrom: checkpoint });
    const reference = single.get('newton-muon') ?? await worldOne(config, path.join(root, 'w1-ckpt-reference'));
    note('newton-muon, stopped at step 3 with two ranks, resumed in one process', compare(reference, resumed, 'resumed'));
    // The metrics file continues the interrupted run's: one line per step, no repeats.
    expect(readMetrics(out).map((m) => m.step)).toEqual([0, 1, 2, 3, 4, 5, 6]);
  }, 240_000);

  test('and a one-process checkpoint resumes with two ranks', async () => {
    const config = baseConfig('muon');
    const out = path.join(root, 'ckpt-w1');
    await worldOne(config, out, { stopAtStep: 2 });
    const resumed = await worldTwo(config, out, true, { resumeFrom: path.join(out, 'checkpoints', 'step_000002') });
    const reference = single.get('muon') ?? await worldOne(config, path.join(root, 'w1-ckpt1-reference'));
    note('muon, stopped at step 2 in one process, resumed with two ranks', compare(reference, resumed, 'resumed at world 2'));
  }, 240_000);

  const common = (): string[] => ['--data', path.join(root, 'data', 'toy_train_*.bin'), '--val-data', path.join(root, 'data', 'toy_val_*.bin'),
    '--vocab-size', '64', '--micro-batch', '2', '--seq-len', '16', '--batch-size', '128', '--val-tokens', '96', '--val-every', '2',
    '--steps', '6', '--device', 'cpu'];

  test('the CLI: --nproc-per-node 2 matches a plain run with the same --batch-size', async () => {
    const plain = spawnNode(TRAIN_CLI, [...common(), '--out', path.join(root, 'cli-plain')], cleanEnv(), HARD_TIMEOUT_MS);
    const plainResult = await plain.done;
    expect({ code: plainResult.code, stderr: plainResult.stderr }).toEqual({ code: 0, stderr: '' });
    const launched = spawnNode(TRAIN_CLI, [...common(), '--out', path.join(root, 'cli-dp'), '--nproc-per-node', '2', '--dist-timeout', '30'], cleanEnv(), HARD_TIMEOUT_MS);
    const result = await launched.done;
    expect({ code: result.code, hung: result.hung, stderr: result.stderr }).toEqual({ code: 0, hung: false, stderr: '' });
    expect(lines(result.stdout)[0]).toMatch(/newton-muon on cpu: .* 2 ranks \(sharded matrix step\)/);
    // One progress report (rank 0's), as in the plain run.
    expect(lines(result.stdout).filter((l) => l.startsWith('done:'))).toHaveLength(1);
    note('the CLI, newton-muon, --nproc-per-node 2', compare(readMetrics(path.join(root, 'cli-plain')), readMetrics(path.join(root, 'cli-dp')), 'CLI'));
  }, 240_000);

  test('the CLI under mpiexec\'s (Open MPI) and srun\'s (SLURM) environments, with no launcher of ours', async () => {
    const plain = path.join(root, 'cli-plain');
    if (!fs.existsSync(path.join(plain, 'metrics.jsonl'))) {
      expect((await spawnNode(TRAIN_CLI, [...common(), '--out', plain], cleanEnv(), HARD_TIMEOUT_MS).done).code).toBe(0);
    }
    const port = String(await freePort());
    const launchers: [string, (rank: string) => Record<string, string>][] = [
      ['openmpi', (r) => ({ OMPI_COMM_WORLD_RANK: r, OMPI_COMM_WORLD_SIZE: '2', OMPI_COMM_WORLD_LOCAL_RANK: r, OMPI_COMM_WORLD_LOCAL_SIZE: '2', MASTER_PORT: port })],
      ['slurm', (r) => ({ SLURM_PROCID: r, SLURM_NTASKS: '2', SLURM_LOCALID: r, SLURM_STEP_TASKS_PER_NODE: '2', SLURM_STEP_NODELIST: 'localhost', MASTER_PORT: port })],
    ];
    for (const [name, envOf] of launchers) {
      const out = path.join(root, `cli-${name}`);
      const ranks = ['0', '1'].map((r) => spawnNode(TRAIN_CLI, [...common(), '--out', out, '--dist-timeout', '30'], cleanEnv(envOf(r)), HARD_TIMEOUT_MS));
      const [a, b] = await Promise.all(ranks.map((p) => p.done));
      expect({ name, codes: [a.code, b.code], stderr: a.stderr + b.stderr }).toEqual({ name, codes: [0, 0], stderr: '' });
      expect(lines(a.stdout)[0]).toMatch(/2 ranks/);
      expect(b.stdout).toBe('');
      note(`the CLI, newton-muon, two ranks under ${name}'s environment`, compare(readMetrics(plain), readMetrics(out), name));
    }
  }, 240_000);
});
