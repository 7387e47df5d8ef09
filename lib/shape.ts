// Shape validation and arithmetic shared by tensors and ops.

export type Shape = readonly number[];

/** Checks that shape is an array of non-negative safe integers; throws naming `what`. */
export function checkShape(shape: unknown, what: string): number[] {
  if (!Array.isArray(shape)) {
    throw new TypeError(`${what}: shape must be an array of non-negative integers, got ${describe(shape)}`);
  }
  shape.forEach((dim, i) => {
    if (typeof dim !== 'number' || !Number.isSafeInteger(dim) || dim < 0) {
      throw new TypeError(`${what}: shape[${i}] must be a non-negative integer, got ${describe(dim)} in ${describe(shape)}`);
    }
  });
  const numel = shapeNumel(shape);
  if (!Number.isSafeInteger(numel)) throw new RangeError(`${what}: shape ${formatShape(shape)} has too many elements`);
  return shape.slice();
}

export function shapeNumel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function formatShape(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** A short description of any value for error messages. */
export function describe(value: unknown): string {
  if (Array.isArray(value)) return value.length > 8 ? `an array of length ${value.length}` : JSON.stringify(value);
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name} of length ${(value as unknown as ArrayLike<number>).length}`;
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === null) return 'null';
  if (typeof value === 'object') return `an object (${value.constructor?.name ?? 'Object'})`;
  return String(value);
}
