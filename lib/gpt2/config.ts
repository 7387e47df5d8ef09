// GPT-2 configuration and parameter layout (the speedrun architecture: no biases, no position
// embedding, tied embedding/head). Names are the PyTorch reference's, so weights move freely.

export interface GPT2Config {
  vocabSize: number;
  nLayer: number;
  nHead: number;
  nEmbd: number;
  /** Longest sequence the model accepts (rotary has no table; this bounds activations). Default 1024. */
  maxSeqLen?: number;
}

export interface ParamSpec {
  name: string;
  shape: [number, number];
  /** PyTorch Linear default init: U(-bound, bound) with bound = 1/sqrt(fan_in). */
  initBound: number;
}

export const GPT2_124M: Required<GPT2Config> = { vocabSize: 50257, nLayer: 12, nHead: 12, nEmbd: 768, maxSeqLen: 1024 };

function positiveInt(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`GPT2 config: ${what} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

export function checkConfig(config: GPT2Config): Required<GPT2Config> {
  if (config === null || typeof config !== 'object') throw new TypeError('GPT2 config: expected { vocabSize, nLayer, nHead, nEmbd }');
  const c: Required<GPT2Config> = {
    vocabSize: positiveInt(config.vocabSize, 'vocabSize'),
    nLayer: positiveInt(config.nLayer, 'nLayer'),
    nHead: positiveInt(config.nHead, 'nHead'),
    nEmbd: positiveInt(config.nEmbd, 'nEmbd'),
    maxSeqLen: positiveInt(config.maxSeqLen ?? 1024, 'maxSeqLen'),
  };
  if (c.nEmbd % c.nHead !== 0) throw new RangeError(`GPT2 config: nEmbd (${c.nEmbd}) must be divisible by nHead (${c.nHead})`);
  if ((c.nEmbd / c.nHead) % 2 !== 0) throw new RangeError(`GPT2 config: head dim ${c.nEmbd / c.nHead} must be even (rotary)`);
  if (c.vocabSize >= 2 ** 31) throw new RangeError('GPT2 config: vocabSize must fit in i32');
  return c;
}

/** Every parameter in storage order (the order of the flat parameter buffer). */
export function parameterSpecs(config: Required<GPT2Config>): ParamSpec[] {
  const C = config.nEmbd;
  const bound = (fanIn: number) => 1 / Math.sqrt(fanIn);
  const specs: ParamSpec[] = [{ name: 'transformer.wte.weight', shape: [config.vocabSize, C], initBound: bound(C) }];
  for (let i = 0; i < config.nLayer; i++) {
    const p = `transformer.h.${i}`;
    specs.push({ name: `${p}.attn.c_attn.weight`, shape: [3 * C, C], initBound: bound(C) });
    specs.push({ name: `${p}.attn.c_proj.weight`, shape: [C, C], initBound: bound(C) });
    specs.push({ name: `${p}.mlp.c_fc.weight`, shape: [4 * C, C], initBound: bound(C) });
    specs.push({ name: `${p}.mlp.c_proj.weight`, shape: [C, 4 * C], initBound: bound(4 * C) });
  }
  return specs;
}

/** The tied head's alias, accepted when loading weights. */
export const WTE = 'transformer.wte.weight';
export const LM_HEAD_ALIAS = 'lm_head.weight';
