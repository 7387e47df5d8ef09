// Element types. Codes match nm_dtype in csrc/core/backend.h.

export type Dtype = 'f32' | 'bf16' | 'i32' | 'u16';

export const DTYPES: readonly Dtype[] = ['f32', 'bf16', 'i32', 'u16'];

const CODES: Record<Dtype, number> = { f32: 0, bf16: 1, i32: 2, u16: 3 };
const SIZES: Record<Dtype, number> = { f32: 4, bf16: 2, i32: 4, u16: 2 };

export function dtypeCode(dtype: Dtype): number {
  return CODES[dtype];
}

export function dtypeSize(dtype: Dtype): number {
  return SIZES[dtype];
}

export function isFloatDtype(dtype: Dtype): boolean {
  return dtype === 'f32' || dtype === 'bf16';
}

/** Throws naming `what` unless value is one of the known dtypes. */
export function checkDtype(value: unknown, what: string): Dtype {
  if (typeof value === 'string' && (DTYPES as readonly string[]).includes(value)) return value as Dtype;
  throw new TypeError(`${what}: unknown dtype ${JSON.stringify(value)} (expected one of ${DTYPES.map((d) => `'${d}'`).join(', ')})`);
}

/** The typed array read() returns for each dtype (bf16 is widened to f32 exactly). */
export type ReadArray<D extends Dtype> = D extends 'i32' ? Int32Array : D extends 'u16' ? Uint16Array : Float32Array;

// bf16 is the top half of an f32. Rounding: nearest, ties to even; NaN stays NaN.
const convF32 = new Float32Array(1);
const convU32 = new Uint32Array(convF32.buffer);

export function f32ToBf16Bits(value: number): number {
  convF32[0] = value;
  const bits = convU32[0];
  if ((bits & 0x7fffffff) > 0x7f800000) return ((bits >>> 16) | 0x0040) & 0xffff;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16BitsToF32(bits: number): number {
  convU32[0] = (bits & 0xffff) << 16;
  return convF32[0];
}

export function toBf16Array(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f32ToBf16Bits(values[i]);
  return out;
}

export function fromBf16Array(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) outBits[i] = bits[i] << 16;
  return out;
}
