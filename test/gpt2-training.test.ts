// End to end: a tiny GPT-2 learns a synthetic corpus with learnable structure, once with AdamW on
// every parameter and once as the speedrun trains it (Newton-Muon on the 4 block matrices of each
// layer, fed the layer inputs through the observeInputs hook on collecting steps, AdamW on the tied
// embedding/head). The held-out loss must fall well below its starting value (ln 32 ~ 3.47): below
// 0.25x after 40 steps (measured over seeds: ~0.01-0.02x for both optimizers, so a slowed-down or
// half-broken optimizer fails too, not only a diverging one).
//
// The corpus: a fixed random permutation `next` of the 32 tokens forming a single cycle; the
// stream follows it (token after v is next[v]), so the next token is a deterministic function of
// the current one and the optimum loss is 0. Each sequence starts at a random point of the cycle.
import { AdamW, GPT2, gpt2MatrixParams, NewtonMuon } from '../lib/index';
import type { GPT2Config, Tensor } from '../lib/index';
import { freshSeed, TEST_DEVICE } from './helpers/device';
import { HostRng } from './helpers/reference';

const device = TEST_DEVICE;
const CFG: GPT2Config = { vocabSize: 32, nLayer: 2, nHead: 2, nEmbd: 32, maxSeqLen: 16 };
const [B, T] = [4, 16];
const STEPS = 40;

/** A random single-cycle permutation of [0, n) (Sattolo's algorithm). */
function cycle(rng: HostRng, n: number): Int32Array {
  const order = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(0, i - 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const next = new Int32Array(n);
  for (let i = 0; i < n; i++) next[order[i]] = order[(i + 1) % n];
  return next;
}

function sample(rng: HostRng, next: Int32Array): { ids: Int32Array; tgt: Int32Array } {
  const ids = new Int32Array(B * T);
  const tgt = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    let v = rng.int(0, next.length - 1);
    for (let t = 0; t < T; t++) {
      ids[b * T + t] = v;
      v = next[v];
      tgt[b * T + t] = v;
    }
  }
  return { ids, tgt };
}

interface Trainer {
  /** The observeInputs hook for the coming step's forward (undefined on steps that do not collect). */
  hook(): ((name: string, x: Tensor) => void) | undefined;
  /** One optimizer step from the model's gradients. */
  step(): Promise<void>;
  dispose(): void;
}

async function train(seed: number, makeTrainer: (model: GPT2) => Trainer): Promise<{ initial: number; final: number; losses: number[] }> {
  const rng = new HostRng(seed);
  const next = cycle(rng, CFG.vocabSize);
  const heldOut = sample(new HostRng(seed + 1), next);
  const model = new GPT2(CFG, { device, seed, precision: 'f32' });
  const trainer = makeTrainer(model);
  try {
    const initial = await model.loss(heldOut.ids, heldOut.tgt, B, T);
    const losses: number[] = [];
    for (let s = 0; s < STEPS; s++) {
      const { ids, tgt } = sample(rng, next);
      model.zeroGrad();
      losses.push(await model.forwardBackward(ids, tgt, B, T, { observeInputs: trainer.hook() }));
      await trainer.step();
    }
    const final = await model.loss(heldOut.ids, heldOut.tgt, B, T);
    return { initial, final, losses };
  } finally {
    trainer.dispose();
    model.dispose();
  }
}

function expectLearned(result: { initial: number; final: number; losses: number[] }, what: string, seed: number): void {
  const { initial, final, losses } = result;
  const trace = losses.map((l) => l.toFixed(3)).join(' ');
  const ok = Number.isFinite(final) && initial > 3 && final < 0.25 * initial;
  if (!ok) throw new Error(`${what} (seed ${seed}): held-out loss ${initial.toFixed(4)} -> ${final.toFixed(4)}, not below 0.25x; training losses: ${trace}`);
}

test('AdamW on every parameter: the loss falls', async () => {
  const seed = freshSeed();
  const result = await train(seed, (model) => {
    const grads = model.grads();
    const opt = new AdamW(Object.entries(model.stateDict()).map(([name, param]) => ({ name, param, grad: grads[name] })),
      { lr: 1e-2, betas: [0.9, 0.95], weightDecay: 0 });
    return { hook: () => undefined, step: () => opt.step(), dispose: () => opt.dispose() };
  });
  expectLearned(result, 'AdamW', seed);
});

test('Newton-Muon on the block matrices (inputs from the hook) + AdamW on the embedding: the loss falls', async () => {
  const seed = freshSeed();
  let collected = 0;
  let observed = 0;
  let refreshes = 0;
  let failed = -1;
  const result = await train(seed, (model) => {
    const params = model.stateDict();
    const grads = model.grads();
    const matrices = gpt2MatrixParams(model);
    const warnings: string[] = [];
    const muon = new NewtonMuon(matrices, { lr: 0.02, momentum: 0.95, refreshEvery: 4, onWarning: (w) => warnings.push(w) });
    const wte = 'transformer.wte.weight';
    const adam = new AdamW([{ name: wte, param: params[wte], grad: grads[wte] }], { lr: 1e-2, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0 });
    return {
      hook: () => {
        if (!muon.collectsStatistics()) return undefined;
        collected++;
        return (name, x) => {
          if (muon.observeInput(name, x)) observed++;
        };
      },
      step: async () => {
        if (muon.collectsStatistics()) refreshes++;
        await muon.step();
        await adam.step();
      },
      dispose: () => {
        failed = muon.failedRefreshes;
        if (warnings.length > 0) throw new Error(`Newton-Muon warned: ${warnings.join('; ')}`);
        muon.dispose();
        adam.dispose();
      },
    };
  });
  expectLearned(result, 'Newton-Muon', seed);
  // refreshEvery 4 over 40 steps: 10 collecting steps, each observing all 8 matrices' inputs.
  expect(collected).toBe(STEPS / 4);
  expect(refreshes).toBe(STEPS / 4);
  expect(observed).toBe((STEPS / 4) * 4 * CFG.nLayer);
  expect(failed).toBe(0);
});
