// The trainer's configuration: the lr schedule, the presets (the default job's sanity, the
// speedrun record's exact numbers), validation, and how command-line options map onto a config.
import { buildConfig, parseArgs, resumeConfig, UsageError } from '../lib/cli/train';
import { ConfigError, lrMultiplier, microBatches, presetConfig, validateConfig } from '../lib/train';
import type { TrainConfig } from '../lib/train';

describe('lr schedule', () => {
  test('constant, then a linear warmdown to 0 over the last warmdownSteps (modded-nanogpt get_lr)', () => {
    const opts = { steps: 10, warmupSteps: 0, warmdownSteps: 4 };
    const m = Array.from({ length: 10 }, (_, s) => lrMultiplier(s, opts));
    expect(m).toEqual([1, 1, 1, 1, 1, 1, 4 / 4, 3 / 4, 2 / 4, 1 / 4]);
    expect(lrMultiplier(10, opts)).toBe(0);
  });

  test('warmup ramps linearly from 1/warmup to 1', () => {
    const opts = { steps: 8, warmupSteps: 4, warmdownSteps: 2 };
    expect(Array.from({ length: 8 }, (_, s) => lrMultiplier(s, opts))).toEqual([0.25, 0.5, 0.75, 1, 1, 1, 1, 0.5]);
  });

  test('no warmdown: constant to the end; every multiplier of a run is > 0', () => {
    expect(Array.from({ length: 5 }, (_, s) => lrMultiplier(s, { steps: 5, warmupSteps: 0, warmdownSteps: 0 }))).toEqual([1, 1, 1, 1, 1]);
    const speedrun = presetConfig('speedrun-124m');
    for (let s = 0; s < speedrun.steps; s++) expect(lrMultiplier(s, speedrun)).toBeGreaterThan(0);
    expect(lrMultiplier(6200 - 1800 - 1, speedrun)).toBe(1);
    expect(lrMultiplier(6199, speedrun)).toBeCloseTo(1 / 1800, 12);
  });
});

describe('presets', () => {
  test('speedrun-124m is the record #4 configuration', () => {
    for (const [opt, lr] of [['muon', 0.0036], ['newton-muon', 0.004]] as const) {
      const c = presetConfig('speedrun-124m', opt);
      expect(c.model).toEqual({ vocabSize: 50257, nLayer: 12, nHead: 12, nEmbd: 768, maxSeqLen: 1024 });
      expect(c.batchTokens).toBe(524_288);
      expect([c.microBatch, c.seqLen]).toEqual([64, 1024]);
      expect(microBatches(c)).toBe(8);
      expect(c.steps).toBe(6200);
      expect(c.warmupSteps).toBe(0);
      expect(c.warmdownSteps).toBe(1800);
      expect(c.lr).toBe(lr);
      expect(c.matrixLrScale).toBe(0.1);
      expect(c.adamBetas).toEqual([0.9, 0.95]);
      expect(c.adamEps).toBe(1e-8);
      expect(c.momentum).toBe(0.95);
      expect(c.valEvery).toBe(125);
      expect(c.valTokens).toBe(10_485_760);
      expect(c.targetLoss).toBe(3.28);
      expect(c.checkFinite).toBe(true);
    }
    // It needs shards.
    expect(() => validateConfig(presetConfig('speedrun-124m'))).toThrow(/--data/);
  });

  test('tiny (the default job) is small, valid, on the bundled byte-level corpus, on the best device', () => {
    const c = validateConfig(presetConfig('tiny'));
    expect(c.optimizer).toBe('newton-muon');
    expect(c.device).toBe('auto');
    expect(c.data).toEqual({ kind: 'bundled', tokenizer: 'byte' });
    expect(c.model.vocabSize).toBe(257);
    const C = c.model.nEmbd;
    const params = c.model.vocabSize * C + c.model.nLayer * 12 * C * C;
    expect(params).toBeLessThan(2_000_000);
    // Tokens to process in the whole job (train + every evaluation): bounded so that it finishes
    // in a few minutes at the ~5-10K tokens/s of 2 CPU cores.
    const evals = Math.floor(c.steps / c.valEvery) + 1;
    expect(c.steps * c.batchTokens + (evals * c.valTokens) / 3).toBeLessThan(1_200_000);
    expect(c.steps).toBeGreaterThanOrEqual(50);
    expect(c.valEvery).toBeLessThanOrEqual(c.steps / 5);
    expect(c.warmdownSteps).toBeGreaterThan(0);
    // Newton-Muon refreshes its preconditioner several times.
    expect(c.steps / c.refreshEvery).toBeGreaterThanOrEqual(5);
    expect(c.targetLoss).not.toBeNull();
    // The CLI with no options builds exactly this.
    expect(buildConfig(parseArgs([]))).toEqual(c);
  });
});

describe('validation', () => {
  const tiny = () => presetConfig('tiny');
  test.each([
    [{ steps: 0 }, /steps must be a positive integer/],
    [{ steps: -3 }, /steps must be a positive integer/],
    [{ lr: -1 }, /learning rate/],
    [{ batchTokens: 1000 }, /not a whole number of micro-batches/],
    [{ seqLen: 256, batchTokens: 8 * 256 }, /exceeds the model's maximum/],
    [{ warmdownSteps: 1000 }, /exceed the 120 steps/],
    [{ optimizer: 'sgd' }, /optimizer must be/],
    [{ device: 'tpu' }, /device must be/],
  ])('%j is rejected', (patch, message) => {
    expect(() => validateConfig({ ...tiny(), ...(patch as object) })).toThrow(ConfigError);
    expect(() => validateConfig({ ...tiny(), ...(patch as object) })).toThrow(message);
  });
});

describe('command-line options', () => {
  test('values are parsed and mapped onto the preset', () => {
    const c = buildConfig(parseArgs(['--optimizer', 'muon', '--steps', '40', '--batch-size', '1024', '--micro-batch=4', '--seq-len', '64',
      '--lr', '0.02', '--seed', '7', '--val-every', '5', '--val-tokens', '512', '--save-every', '10', '--device', 'cpu', '--target-loss', '2']));
    expect(c.optimizer).toBe('muon');
    expect([c.steps, c.batchTokens, c.microBatch, c.seqLen, c.lr, c.seed]).toEqual([40, 1024, 4, 64, 0.02, 7]);
    expect(buildConfig(parseArgs(['--batch-size', '16k', '--micro-batch', '8', '--seq-len', '100'])).batchTokens).toBe(16000);
    expect([c.valEvery, c.valTokens, c.saveEvery, c.device, c.targetLoss]).toEqual([5, 512, 10, 'cpu', 2]);
    // The warmdown keeps its share of the run.
    expect(c.warmdownSteps).toBe(Math.round((presetConfig('tiny').warmdownSteps * 40) / presetConfig('tiny').steps));
  });

  test('--attention and --init reach the config; a bad algorithm is a usage error naming the choices', () => {
    expect(buildConfig(parseArgs([])).attention).toBe('auto');
    expect(buildConfig(parseArgs([])).initWeights).toBeNull();
    const c = buildConfig(parseArgs(['--attention', 'flash-bf16', '--init', 'w.safetensors']));
    expect([c.attention, c.initWeights]).toEqual(['flash-bf16', 'w.safetensors']);
    expect(() => parseArgs(['--attention', 'fast'])).toThrow(/--attention must be auto, naive, flash, flash-bf16 \(got 'fast'\)/);
    expect(() => validateConfig({ ...presetConfig('tiny'), attention: 'fast' as never })).toThrow(/attention must be/);
  });

  test('--steps with --warmdown / --warmup', () => {
    expect(buildConfig(parseArgs(['--steps', '30', '--warmdown', '9']))).toMatchObject({ steps: 30, warmdownSteps: 9, warmupSteps: 0 });
    expect(buildConfig(parseArgs(['--steps', '30', '--warmup', '5', '--warmdown', '10']))).toMatchObject({ warmupSteps: 5, warmdownSteps: 10 });
    expect(() => buildConfig(parseArgs(['--steps', '30', '--warmdown', '40']))).toThrow(/warmdown \(40\) steps exceed the 30 steps/);
  });

  test('micro-batch / seq-len alone keep the number of micro-batches per step', () => {
    const base = presetConfig('tiny');
    const c = buildConfig(parseArgs(['--micro-batch', '2', '--seq-len', '32']));
    expect(microBatches(c)).toBe(microBatches(base));
    expect(c.batchTokens).toBe(microBatches(base) * 2 * 32);
  });

  test.each([
    [['--steps', '-5'], /--steps needs a value|--steps must be a whole number/],
    [['--steps', 'ten'], /--steps must be a whole number/],
    [['--optimizer', 'sgd'], /--optimizer must be/],
    [['--device', 'tpu'], /--device must be cpu, cuda or auto/],
    [['--preset', 'huge'], /--preset must be/],
    [['--lr', '0'], /--lr must be a number > 0/],
    [['--frobnicate'], /unknown option '--frobnicate'/],
    [['extra'], /unexpected argument/],
    [['--data', 'x.bin'], /give both --data and --val-data/],
    [['--compare', '--resume', 'r'], /cannot be combined/],
    [['--steps'], /--steps needs a value/],
  ])('%j is a usage error', (argv, message) => {
    expect(() => parseArgs(argv as string[])).toThrow(UsageError);
    expect(() => parseArgs(argv as string[])).toThrow(message);
  });

  test('resuming: the checkpoint config wins; steps may change; other differences are refused', () => {
    const saved = validateConfig({ ...presetConfig('tiny'), steps: 20, warmdownSteps: 6 });
    expect(resumeConfig(saved, parseArgs([]), 'ck')).toEqual(saved);
    expect(resumeConfig(saved, parseArgs(['--steps', '30', '--val-every', '3']), 'ck')).toMatchObject({ steps: 30, valEvery: 3, warmdownSteps: 6 });
    expect(() => resumeConfig(saved, parseArgs(['--optimizer', 'muon']), 'ck')).toThrow(/another configuration: optimizer is "newton-muon" there, "muon" here/);
    expect(() => resumeConfig(saved, parseArgs(['--lr', '0.5']), 'ck')).toThrow(/lr is 0.03 there, 0.5 here/);
    expect(() => resumeConfig(saved, parseArgs(['--seed', '3']), 'ck')).toThrow(/seed/);
    // The attention kernel may change on resume (numerics, not state); configs written before
    // attention / initWeights existed resume with their defaults.
    expect(resumeConfig(saved, parseArgs(['--attention', 'naive']), 'ck').attention).toBe('naive');
    const { attention: _a, initWeights: _i, ...older } = saved;
    expect(resumeConfig(older as TrainConfig, parseArgs([]), 'ck')).toEqual(saved);
  });
});
