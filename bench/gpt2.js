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
