// Optimizer benchmarks: NS5, Gram accumulation, batched Cholesky inverse, and whole Muon /
// Newton-Muon steps for the GPT-2 124M matrix set, on every available device.
'use strict';
const nm = require('..');

async function timeIt(device, fn, repeats) {
  fn();
  await nm.synchronize(device);
  let best = Infinity;
  for (let r = 0; r < repeats; r++) {
    const start = process.hrtime.bigint();
    fn();
    await nm.synchronize(device);
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e6);
  }
  return best;
}

/** The 48 Muon matrices of GPT-2 124M (12 layers, C = 768), as the trainer will hand them over. */
function gpt2Matrices(device, layers, seed) {
  const C = 768;
  const specs = [];
  for (let l = 0; l < layers; l++) {
    specs.push({ name: `h.${l}.attn.c_attn`, shape: [3 * C, C], rowBlocks: 3 });
    specs.push({ name: `h.${l}.attn.c_proj`, shape: [C, C] });
    specs.push({ name: `h.${l}.mlp.c_fc`, shape: [4 * C, C] });
    specs.push({ name: `h.${l}.mlp.c_proj`, shape: [C, 4 * C], inputBlocks: 4 });
  }
  return specs.map((s, i) => ({
    name: s.name,
    rowBlocks: s.rowBlocks,
    inputBlocks: s.inputBlocks,
    param: nm.randn(s.shape, { seed: seed + 2 * i, std: 0.02, device }),
    grad: nm.randn(s.shape, { seed: seed + 2 * i + 1, std: 1e-3, device }),
  }));
}

async function benchDevice(device, { quick }) {
  const repeats = quick ? 1 : 3;
  const rows = [];
  const add = (label, ms) => {
    rows.push(`| ${device} | ${label} | ${ms.toFixed(1)} |`);
    console.log(`optim ${device} ${label}: ${ms.toFixed(1)} ms`);
  };
  for (const shape of [[768, 768], [3072, 768]]) {
    const x = nm.randn(shape, { seed: 5, device });
    const out = nm.empty(shape, { device });
    add(`newtonSchulz5 ${shape.join('x')}`, await timeIt(device, () => nm.newtonSchulz5(x, { out }), repeats));
    x.dispose();
    out.dispose();
  }
  const tokens = quick ? 8192 : 65536;
  const x = nm.randn([tokens, 768], { seed: 6, device });
  const k = nm.zeros([768, 768], { device });
  add(`accumulateInputGram ${tokens}x768`, await timeIt(device, () => nm.accumulateInputGram(k, x), repeats));
  x.dispose();
  const batch = quick ? 8 : 84;
  const z = nm.randn([batch, 768, 768], { seed: 7, device, std: 0.05 });
  const gram = nm.matmul(z, z, { transA: true });
  const inv = nm.empty([batch, 768, 768], { device });
  const info = nm.empty([batch], { dtype: 'i32', device });
  add(`choleskyInverse ${batch} x 768x768`, await timeIt(device, () => nm.choleskyInverse(gram, { out: inv, info }), repeats));
  for (const t of [k, z, gram, inv, info]) t.dispose();

  const layers = quick ? 1 : 12;
  for (const [Kind, label] of [[nm.Muon, 'Muon'], [nm.NewtonMuon, 'NewtonMuon']]) {
    const mats = gpt2Matrices(device, layers, 100);
    const opt = new Kind(mats.map(({ param, grad, name, rowBlocks, inputBlocks }) => ({ param, grad, name, rowBlocks, inputBlocks })),
      { lr: 0.0004, refreshEvery: 2, onWarning: () => {} });
    const inputs = label === 'NewtonMuon' ? {
      c768: nm.randn([quick ? 1024 : 8192, 768], { seed: 8, device }),
      c3072: nm.randn([quick ? 1024 : 8192, 3072], { seed: 9, device }),
    } : null;
    const observe = () => {
      if (!opt.collectsStatistics()) return;
      for (const m of mats) opt.observeInput(m.param, m.param.shape[1] === 768 ? inputs.c768 : inputs.c3072);
    };
    // refreshEvery 2: steps alternate non-refresh (even) and refresh (odd).
    const stepOnce = async () => { observe(); await opt.step(); await nm.synchronize(device); };
    await stepOnce(); await stepOnce();
    let plain = Infinity;
    let refresh = Infinity;
    for (let r = 0; r < repeats; r++) {
      let t = process.hrtime.bigint();
      await stepOnce();
      plain = Math.min(plain, Number(process.hrtime.bigint() - t) / 1e6);
      t = process.hrtime.bigint();
      await stepOnce();
      refresh = Math.min(refresh, Number(process.hrtime.bigint() - t) / 1e6);
    }
    const set = `${mats.length} GPT-2 matrices (${layers} layer${layers > 1 ? 's' : ''})`;
    if (label === 'Muon') add(`Muon step, ${set}`, Math.min(plain, refresh));
    else {
      add(`NewtonMuon step (no refresh), ${set}`, plain);
      add(`NewtonMuon step (refresh, stats from 8192 tokens/matrix), ${set}`, refresh);
    }
    opt.dispose();
    for (const m of mats) { m.param.dispose(); m.grad.dispose(); }
    if (inputs) { inputs.c768.dispose(); inputs.c3072.dispose(); }
  }
  return rows;
}

async function benchOptim({ quick }) {
  const rows = [];
  for (const d of nm.devices().filter((info) => info.available)) rows.push(...await benchDevice(d.name, { quick }));
  return ['## Optimizer ops (milliseconds, best of ' + (quick ? 1 : 3) + ')', '', '| device | what | ms |', '|---|---|---|', ...rows].join('\n');
}

module.exports = { benchOptim, gpt2Matrices };
