// GPT-2 forward+backward tokens/s on the CPU at a small config, against PyTorch on the CPU with
// the same number of threads, in the same run (the issue 4 yardstick: at least 0.7 of PyTorch).
'use strict';
const os = require('os');
const path = require('path');
const nm = require('..');
const { runPythonJson } = require('./python');

const CONFIG = { vocabSize: 50257, nLayer: 4, nHead: 4, nEmbd: 256, maxSeqLen: 256 };
const B = 8;
const T = 256;

async function timeOurs(repeats) {
  const model = new nm.GPT2(CONFIG, { device: 'cpu', seed: 1 });
  const n = B * T;
  const inputs = new Int32Array(n).map((_, i) => (i * 7919) % CONFIG.vocabSize);
  const targets = new Int32Array(n).map((_, i) => (i * 104729 + 3) % CONFIG.vocabSize);
  for (let i = 0; i < 2; i++) await model.forwardBackward(inputs, targets, B, T);
  nm.resetPeakMemory();
  let best = Infinity;
  for (let r = 0; r < repeats; r++) {
    const start = process.hrtime.bigint();
    await model.forwardBackward(inputs, targets, B, T);
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e9);
  }
  const peak = nm.memoryStats().cpu.peakBytes;
  model.dispose();
  return { tokensPerS: n / best, peakBytes: peak };
}

async function benchGpt2({ quick }) {
  const repeats = quick ? 1 : 5;
  const threads = nm.devices().find((d) => d.name === 'cpu').details?.threads ?? os.cpus().length;
  const ours = await timeOurs(repeats);
  const torch = runPythonJson(path.join(__dirname, 'torch_gpt2.py'), { ...CONFIG, B, T, repeats, threads }, [], { torch: true });
  const ratio = torch ? ours.tokensPerS / torch.tokens_per_s : null;
  console.log(`gpt2 cpu fwd+bwd: ours ${ours.tokensPerS.toFixed(0)} tok/s` +
    (torch ? `, torch ${torch.tokens_per_s.toFixed(0)} tok/s (ratio ${ratio.toFixed(2)})` : ', torch unavailable'));
  return [
    `## GPT-2 forward+backward on the CPU (tokens/s, best of ${repeats})`,
    '',
    `Config: ${CONFIG.nLayer} layers, width ${CONFIG.nEmbd}, ${CONFIG.nHead} heads, vocab ${CONFIG.vocabSize}, B=${B}, T=${T}, f32, ${threads} threads.`,
    '',
    '| newton-muon | PyTorch (same threads) | ratio | our peak memory |',
    '|---|---|---|---|',
    `| ${ours.tokensPerS.toFixed(0)} | ${torch ? `${torch.tokens_per_s.toFixed(0)} (torch ${torch.torch})` : 'n/a'} | ${ratio ? ratio.toFixed(2) : 'n/a'} | ${(ours.peakBytes / 2 ** 20).toFixed(0)} MiB |`,
  ].join('\n');
}

module.exports = { benchGpt2 };

/**
 * Peak memory of the 124M config's forward+backward at T=1024, measured with memoryStats()
 * peakBytes on the CPU using the CUDA allocation pattern (precision 'bf16': the same buffers the
 * CUDA path allocates) at B=1 and B=2, extrapolated linearly in B to the speedrun's B=64.
 */
async function benchGpt2Memory() {
  const model = new nm.GPT2(nm.GPT2_124M, { device: 'cpu', precision: 'bf16', seed: 1 });
  const modelBytes = nm.memoryStats().cpu.bytes;
  /** Peak bytes of one call at B = 1 and B = 2, and the linear extrapolation to B = 64. */
  async function peaksOf(call) {
    const peaks = [];
    for (const b of [1, 2]) {
      const n = b * 1024;
      const ids = new Int32Array(n).map((_, i) => (i * 7919) % nm.GPT2_124M.vocabSize);
      nm.resetPeakMemory();
      await call(ids, b);
      peaks.push(nm.memoryStats().cpu.peakBytes);
    }
    const perSequence = peaks[1] - peaks[0];
    return { peaks, perSequence, predicted: peaks[0] - perSequence + 64 * perSequence };
  }
  const train = await peaksOf((ids, b) => model.forwardBackward(ids, ids, b, 1024));
  // Evaluation (loss(), f32) frees each layer's activations once the next layer's input exists.
  const evaluation = await peaksOf((ids, b) => model.loss(ids, ids, b, 1024));
  model.dispose();
  const gib = (bytes) => (bytes / 2 ** 30).toFixed(2);
  console.log(`gpt2 124M peak: ${gib(train.peaks[0])} GiB at B=1, ${gib(train.peaks[1])} GiB at B=2 -> ${gib(train.predicted)} GiB at B=64; ` +
    `evaluation ${gib(evaluation.predicted)} GiB at B=64`);
  const row = (what, r) => `| ${what} | ${gib(modelBytes)} GiB | ${gib(r.peaks[0])} GiB | ${gib(r.peaks[1])} GiB | ${(r.perSequence / 2 ** 20).toFixed(0)} MiB | ${gib(r.predicted)} GiB |`;
  return [
    '## GPT-2 124M forward+backward memory (T = 1024)',
    '',
    'Measured with `memoryStats().peakBytes` on the CPU with `precision: \'bf16\'`, which allocates',
    'exactly the tensors the CUDA path allocates, at B = 1 and B = 2, then extrapolated linearly in B.',
    'Not included: CUDA-internal workspaces (cuBLAS, the attention scratch, pinned staging) and the optimizer state',
    '(Newton-Muon for 124M: about 1.6 GiB of momentum, Newton-Schulz buffers and K / S / Kinv).',
    'Evaluation is `loss()`: f32 throughout, one layer\'s activations at a time.',
    '',
    '| call | parameters + gradients | peak at B=1 | peak at B=2 | per sequence | predicted peak at B=64 (64 x 1024 tokens) |',
    '|---|---|---|---|---|---|',
    row('forwardBackward (training, bf16)', train),
    row('loss (evaluation, f32)', evaluation),
  ].join('\n');
}

module.exports.benchGpt2Memory = benchGpt2Memory;
