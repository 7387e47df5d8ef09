// scope(fn): every tensor created while fn runs is disposed when it returns, except the ones it
// returns (directly, or inside arrays / plain objects), which move to the enclosing scope.

/** Anything a scope can track: tensors implement it. */
export interface Disposable {
  dispose(): void;
}

const frames: Set<Disposable>[] = [];

/** Called by every tensor constructor: the innermost open scope takes ownership. */
export function trackInScope(item: Disposable): void {
  if (frames.length > 0) frames[frames.length - 1].add(item);
}

function collect(value: unknown, out: Set<unknown>, depth = 0): void {
  if (value === null || typeof value !== 'object' || depth > 8) return;
  if (typeof (value as Disposable).dispose === 'function') out.add(value);
  if (Array.isArray(value)) {
    for (const v of value) collect(v, out, depth + 1);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, out, depth + 1);
  }
}

function isThenable(value: unknown): boolean {
  return value !== null && typeof value === 'object' && typeof (value as { then?: unknown }).then === 'function';
}

/**
 * Runs fn with scope tracking suspended: tensors it creates belong to no scope (for long-lived
 * state such as optimizer buffers, which an enclosing scope must not dispose).
 */
export function untracked<T>(fn: () => T): T {
  const saved = frames.splice(0, frames.length);
  try {
    return fn();
  } finally {
    frames.push(...saved);
  }
}

export function scope<T>(fn: () => T): T {
  const frame = new Set<Disposable>();
  frames.push(frame);
  let result: T;
  try {
    result = fn();
  } catch (error) {
    frames.pop();
    for (const item of frame) item.dispose();
    throw error;
  }
  frames.pop();
  if (isThenable(result)) {
    for (const item of frame) item.dispose();
    throw new TypeError('scope(fn): fn returned a Promise; tensors created after an await cannot be ' +
      'tracked by a synchronous scope. Keep scope bodies synchronous and await outside them.');
  }
  const kept = new Set<unknown>();
  collect(result, kept);
  for (const item of frame) {
    if (kept.has(item)) trackInScope(item);
    else item.dispose();
  }
  return result;
}
