// The collective cases of test/dist-collectives.test.ts, shared by the test (which forms the
// expected values) and the rank processes (dist-collectives-worker.ts, which run them): every op,
// f32 and bf16, at odd sizes (one element, a few, more than Gloo's 1 MiB segment), from seeded
// random inputs that differ per rank.
import { f32ToBf16Bits } from '../../lib/dtype';
import { uniformSamples } from '../../lib/random';

export type CollectiveOp = 'allReduce' | 'reduceScatter' | 'allGather' | 'broadcast';

export interface CollectiveCase {
  name: string;
  op: CollectiveOp;
  dtype: 'f32' | 'bf16';
  /** Elements of the input (allReduce, broadcast, allGather) or of the output (reduceScatter). */
  n: number;
  reduce?: 'sum' | 'avg';
  root?: number;
  /** allReduce into its input / allGather from the rank's own slot of the output. */
  inPlace?: boolean;
}

export function collectiveCases(worldSize: number): CollectiveCase[] {
  const cases: CollectiveCase[] = [];
  for (const dtype of ['f32', 'bf16'] as const) {
    for (const n of [1, 7, 1023, 300007]) {
      for (const reduce of ['sum', 'avg'] as const) {
        cases.push({ name: `allReduce ${reduce} ${dtype} n=${n}`, op: 'allReduce', dtype, n, reduce, inPlace: n !== 7 });
      }
    }
    for (const n of [1, 13, 4097]) {
      for (const reduce of ['sum', 'avg'] as const) cases.push({ name: `reduceScatter ${reduce} ${dtype} n=${n}`, op: 'reduceScatter', dtype, n, reduce });
    }
    for (const n of [1, 5, 3333]) cases.push({ name: `allGather ${dtype} n=${n}`, op: 'allGather', dtype, n, inPlace: n === 5 });
    for (const n of [1, 9, 100003]) {
      for (let root = 0; root < worldSize; root++) cases.push({ name: `broadcast ${dtype} n=${n} root=${root}`, op: 'broadcast', dtype, n, root });
    }
  }
  return cases;
}

/** Elements of a rank's input. */
export function inputLength(c: CollectiveCase, worldSize: number): number {
  return c.op === 'reduceScatter' ? c.n * worldSize : c.n;
}

/** Rank `rank`'s input: uniform in [-4, 4), rounded to bf16 for bf16 cases (exactly representable). */
export function inputOf(c: CollectiveCase, index: number, rank: number, worldSize: number, seed: number): Float32Array {
  const values = uniformSamples(inputLength(c, worldSize), seed * 1000 + index * 17 + rank, -4, 4);
  if (c.dtype === 'bf16') for (let i = 0; i < values.length; i++) values[i] = bf16Value(f32ToBf16Bits(values[i]));
  return values;
}

const bits = new Uint32Array(1);
const asFloat = new Float32Array(bits.buffer);
export function bf16Value(b: number): number {
  bits[0] = b << 16;
  return asFloat[0];
}

/**
 * The expected output as the stored bits (f32 as Uint32 words, bf16 as 16-bit words), from every
 * rank's input: sums formed in f32 and rounded to the dtype after each addition (rank order), avg
 * the sum divided by the world size; exact for two ranks (one addition, which commutes).
 */
export function expectedBits(c: CollectiveCase, inputs: Float32Array[], rank: number): number[] {
  const W = inputs.length;
  const round = (x: number): number => (c.dtype === 'bf16' ? bf16Value(f32ToBf16Bits(Math.fround(x))) : Math.fround(x));
  const reduce = (values: number[]): number => {
    let acc = values[0];
    for (let i = 1; i < values.length; i++) acc = round(acc + values[i]);
    return c.reduce === 'avg' ? round(acc / W) : acc;
  };
  let out: number[];
  switch (c.op) {
    case 'allReduce':
      out = Array.from({ length: c.n }, (_, i) => reduce(inputs.map((x) => x[i])));
      break;
    case 'reduceScatter':
      out = Array.from({ length: c.n }, (_, i) => reduce(inputs.map((x) => x[rank * c.n + i])));
      break;
    case 'allGather':
      out = inputs.flatMap((x) => Array.from(x));
      break;
    case 'broadcast':
      out = Array.from(inputs[c.root!]);
      break;
  }
  return out.map((v) => storedBits(v, c.dtype));
}

/** The stored bits of a value in dtype (the value must be representable). */
export function storedBits(v: number, dtype: 'f32' | 'bf16'): number {
  if (dtype === 'bf16') return f32ToBf16Bits(v);
  asFloat[0] = v;
  return bits[0];
}
