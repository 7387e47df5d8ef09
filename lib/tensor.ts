// Tensor: a typed, shaped view of device memory. Contiguous row-major; views share their
// base's allocation (Storage, reference-counted) and differ only in offset and shape.
import { checkDtype, Dtype, dtypeCode, dtypeSize, fromBf16Array, ReadArray, toBf16Array } from './dtype';
import { DeviceName, DeviceSpec, resolveDevice } from './device';
import { BufferHandle, native } from './native';
import { normalSamples, uniformSamples } from './random';
import { trackInScope } from './scope';
import { checkShape, describe, formatShape, Shape, shapeNumel } from './shape';

/** One device allocation, shared by a tensor and its views; freed when the last one is disposed. */
class Storage {
  private refs = 1;

  constructor(readonly handle: BufferHandle, readonly device: DeviceName, readonly bytes: number) {}

  retain(): void {
    this.refs++;
  }

  release(): void {
    if (--this.refs === 0) native.free(this.handle);
  }
}

export interface TensorOptions {
  dtype?: Dtype;
  device?: DeviceSpec;
}

export class Tensor {
  readonly shape: readonly number[];
  readonly numel: number;
  private disposed = false;

  /** @internal Use tensor(), zeros(), empty(), randn() or an op to make tensors. */
  constructor(
    /** @internal */ readonly storage: Storage,
    /** @internal element offset into storage */ readonly offset: number,
    shape: Shape,
    readonly dtype: Dtype,
  ) {
    this.shape = Object.freeze(shape.slice());
    this.numel = shapeNumel(shape);
    trackInScope(this);
  }

  get device(): DeviceName {
    return this.storage.device;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** Size of the tensor's data in bytes. */
  get byteLength(): number {
    return this.numel * dtypeSize(this.dtype);
  }

  /** @internal Byte offset of element 0 in the storage. */
  get byteOffset(): number {
    return this.offset * dtypeSize(this.dtype);
  }

  /** @internal The storage handle, or an error naming `what` if this tensor was disposed. */
  handle(what: string): BufferHandle {
    if (this.disposed) throw new Error(`${what}: ${this.toString()} was already disposed`);
    return this.storage.handle;
  }

  /**
   * Copies the data to the host once all work enqueued before this call has run. Never blocks
   * the event loop. f32 and bf16 read as Float32Array (bf16 widened exactly), i32 as Int32Array,
   * u16 as Uint16Array.
   */
  async read(): Promise<ReadArray<this['dtype']>> {
    const bytes = await native.download(this.handle('read'), this.byteOffset, this.byteLength);
    return decodeRead(this.dtype, bytes) as ReadArray<this['dtype']>;
  }

  /**
   * read(), but waiting on the calling thread: it BLOCKS Node's event loop (timers, I/O, other
   * promises) until every op enqueued before it has run on this tensor's device, like tfjs's
   * dataSync(). For interop code that cannot await (a tf.Optimizer's applyGradients); use
   * `await read()` everywhere else. Same copy, same values as read().
   */
  readSync(): ReadArray<this['dtype']> {
    const bytes = native.downloadSync(this.handle('readSync'), this.byteOffset, this.byteLength);
    return decodeRead(this.dtype, bytes) as ReadArray<this['dtype']>;
  }

  /** The stored bits: bf16 as Uint16Array, every other dtype as read() gives it. */
  async readRaw(): Promise<Float32Array | Uint16Array | Int32Array> {
    const bytes = await native.download(this.handle('readRaw'), this.byteOffset, this.byteLength);
    if (this.dtype === 'bf16' || this.dtype === 'u16') return new Uint16Array(bytes);
    return this.dtype === 'i32' ? new Int32Array(bytes) : new Float32Array(bytes);
  }

  /** Frees the memory (stream-ordered: pending ops that use it finish first). Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.storage.release();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** The same data with another shape (same number of elements; one dim may be -1). */
  view(shape: readonly number[]): Tensor {
    this.handle('view');
    const resolved = resolveViewShape(shape, this.numel, `view(${describe(shape)}) of ${this.toString()}`);
    this.storage.retain();
    return new Tensor(this.storage, this.offset, resolved, this.dtype);
  }

  /** Rows [start, end) along dimension 0, as a view sharing this tensor's memory. */
  slice(start: number, end: number = this.shape[0]): Tensor {
    this.handle('slice');
    const what = `slice(${start}, ${end}) of ${this.toString()}`;
    if (this.shape.length === 0) throw new RangeError(`${what}: a scalar has no dimension to slice`);
    const rows = this.shape[0];
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || end > rows) {
      throw new RangeError(`${what}: expected integers 0 <= start <= end <= ${rows}`);
    }
    const rowSize = rows === 0 ? 0 : this.numel / rows;
    this.storage.retain();
    return new Tensor(this.storage, this.offset + start * rowSize, [end - start, ...this.shape.slice(1)], this.dtype);
  }

  /** A new tensor with a copy of the data on `device` (always a copy, even on the same device). */
  async to(device: DeviceSpec): Promise<Tensor> {
    const target = resolveDevice(device, 'to');
    const handle = this.handle('to');
    if (target === this.device) {
      const out = empty(this.shape, { dtype: this.dtype, device: target });
      native.copy(out.handle('to'), out.byteOffset, handle, this.byteOffset, this.byteLength);
      return out;
    }
    const bytes = await native.download(handle, this.byteOffset, this.byteLength);
    const out = empty(this.shape, { dtype: this.dtype, device: target });
    native.upload(out.handle('to'), out.byteOffset, new Uint8Array(bytes));
    return out;
  }

  toString(): string {
    return `Tensor(${formatShape(this.shape)}, ${this.dtype}, ${this.device})`;
  }
}

/** Host bytes of a read as the dtype's read() array. */
function decodeRead(dtype: Dtype, bytes: ArrayBuffer): Float32Array | Int32Array | Uint16Array {
  switch (dtype) {
    case 'f32': return new Float32Array(bytes);
    case 'bf16': return fromBf16Array(new Uint16Array(bytes));
    case 'i32': return new Int32Array(bytes);
    case 'u16': return new Uint16Array(bytes);
  }
}

function resolveViewShape(shape: readonly number[], numel: number, what: string): number[] {
  if (!Array.isArray(shape)) throw new TypeError(`${what}: shape must be an array`);
  const inferred = shape.filter((d) => d === -1).length;
  if (inferred > 1) throw new TypeError(`${what}: at most one dimension may be -1`);
  const known = checkShape(shape.map((d) => (d === -1 ? 1 : d)), what);
  const knownNumel = shapeNumel(known);
  if (inferred === 1) {
    if (knownNumel === 0 || numel % knownNumel !== 0) {
      throw new RangeError(`${what}: cannot infer the -1 dimension for ${numel} elements`);
    }
    return shape.map((d) => (d === -1 ? numel / knownNumel : d));
  }
  if (knownNumel !== numel) {
    throw new RangeError(`${what}: shape ${formatShape(shape)} has ${knownNumel} elements, expected ${numel}`);
  }
  return known;
}

// ---- creation ------------------------------------------------------------------------------

function options(opts: TensorOptions | undefined, what: string, defaultDtype: Dtype = 'f32'): { dtype: Dtype; device: DeviceName } {
  if (opts !== undefined && (opts === null || typeof opts !== 'object')) {
    throw new TypeError(`${what}: options must be an object, got ${describe(opts)}`);
  }
  const dtype = opts?.dtype === undefined ? defaultDtype : checkDtype(opts.dtype, `${what}: dtype`);
  return { dtype, device: resolveDevice(opts?.device, `${what}: device`) };
}

function allocate(shape: number[], dtype: Dtype, device: DeviceName): Tensor {
  const bytes = shapeNumel(shape) * dtypeSize(dtype);
  return new Tensor(new Storage(native.alloc(device, bytes), device, bytes), 0, shape, dtype);
}

/** Uninitialised memory of the given shape. */
export function empty(shape: readonly number[], opts?: TensorOptions): Tensor {
  const { dtype, device } = options(opts, 'empty');
  return allocate(checkShape(shape, 'empty'), dtype, device);
}

function filled(what: string, shape: readonly number[], value: number, opts: TensorOptions | undefined): Tensor {
  const { dtype, device } = options(opts, what);
  if (typeof value !== 'number') {
    throw new TypeError(`${what}: value must be a number, got ${describe(value)}`);
  }
  checkValueFits(value, dtype, `${what}: value`);
  const out = allocate(checkShape(shape, what), dtype, device);
  native.fill(out.handle(what), 0, dtypeCode(dtype), out.numel, value);
  return out;
}

/** A tensor with every element set to value. */
export function full(shape: readonly number[], value: number, opts?: TensorOptions): Tensor {
  return filled('full', shape, value, opts);
}

export function zeros(shape: readonly number[], opts?: TensorOptions): Tensor {
  return filled('zeros', shape, 0, opts);
}

/** Throws unless value is representable in an integer dtype (float dtypes take any number). */
export function checkValueFits(value: number, dtype: Dtype, what: string): void {
  if (dtype === 'i32' && !(Number.isInteger(value) && value >= -(2 ** 31) && value < 2 ** 31)) {
    throw new RangeError(`${what}: ${value} is not a 32-bit integer (dtype i32)`);
  }
  if (dtype === 'u16' && !(Number.isInteger(value) && value >= 0 && value < 65536)) {
    throw new RangeError(`${what}: ${value} is not an integer in [0, 65535] (dtype u16)`);
  }
}

export type TensorData = Float32Array | Int32Array | Uint16Array | number[];

function defaultDtypeOf(data: TensorData): Dtype {
  if (data instanceof Int32Array) return 'i32';
  if (data instanceof Uint16Array) return 'u16';
  return 'f32';
}

/** Host bytes of data in dtype's storage format, checking every value fits. */
function encode(data: TensorData, dtype: Dtype): ArrayBufferView {
  switch (dtype) {
    case 'f32': return data instanceof Float32Array ? data : Float32Array.from(data);
    case 'bf16': return toBf16Array(data);
    case 'i32':
    case 'u16': {
      if (!(data instanceof Int32Array && dtype === 'i32') && !(data instanceof Uint16Array && dtype === 'u16')) {
        for (let i = 0; i < data.length; i++) checkValueFits(data[i], dtype, `tensor: data[${i}]`);
      }
      return dtype === 'i32' ? Int32Array.from(data) : Uint16Array.from(data);
    }
  }
}

/**
 * A tensor holding a copy of data, laid out row-major in shape. The dtype defaults to the
 * data's (Float32Array/number[] -> f32, Int32Array -> i32, Uint16Array -> u16).
 */
export function tensor(data: TensorData, shape: readonly number[], opts?: TensorOptions): Tensor {
  const isArray = Array.isArray(data);
  if (!isArray && !(data instanceof Float32Array || data instanceof Int32Array || data instanceof Uint16Array)) {
    throw new TypeError(`tensor: data must be a Float32Array, Int32Array, Uint16Array or number[], got ${describe(data)}`);
  }
  if (isArray) {
    (data as unknown[]).forEach((v, i) => {
      if (typeof v !== 'number') throw new TypeError(`tensor: data[${i}] must be a number, got ${describe(v)}`);
    });
  }
  const checked = checkShape(shape, 'tensor');
  const { dtype, device } = options(opts, 'tensor', defaultDtypeOf(data));
  const numel = shapeNumel(checked);
  if (data.length !== numel) {
    throw new RangeError(`tensor: data has ${data.length} elements but shape ${formatShape(checked)} needs ${numel}`);
  }
  const host = encode(data, dtype);
  const out = allocate(checked, dtype, device);
  native.upload(out.handle('tensor'), 0, host);
  return out;
}

export interface RandomOptions extends TensorOptions {
  /** Integer seed; the same seed gives the same values on every device. Default 0. */
  seed?: number;
}

function checkSeed(seed: unknown, what: string): number {
  if (seed === undefined) return 0;
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed)) throw new TypeError(`${what}: seed must be an integer, got ${describe(seed)}`);
  return seed;
}

function checkFinite(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new TypeError(`${what} must be a finite number, got ${describe(value)}`);
  return value;
}

/** Normal samples N(mean, std^2), generated on the host from seed (deterministic everywhere). */
export function randn(shape: readonly number[], opts: RandomOptions & { std?: number; mean?: number } = {}): Tensor {
  const checked = checkShape(shape, 'randn');
  const seed = checkSeed(opts.seed, 'randn');
  const std = checkFinite(opts.std ?? 1, 'randn: std');
  const mean = checkFinite(opts.mean ?? 0, 'randn: mean');
  const { dtype, device } = options(opts, 'randn');
  if (dtype !== 'f32' && dtype !== 'bf16') throw new TypeError(`randn: dtype must be 'f32' or 'bf16', got '${dtype}'`);
  return tensor(normalSamples(shapeNumel(checked), seed, std, mean), checked, { dtype, device });
}

/** Uniform samples in [low, high), generated on the host from seed. */
export function rand(shape: readonly number[], opts: RandomOptions & { low?: number; high?: number } = {}): Tensor {
  const checked = checkShape(shape, 'rand');
  const seed = checkSeed(opts.seed, 'rand');
  const low = checkFinite(opts.low ?? 0, 'rand: low');
  const high = checkFinite(opts.high ?? 1, 'rand: high');
  const { dtype, device } = options(opts, 'rand');
  if (dtype !== 'f32' && dtype !== 'bf16') throw new TypeError(`rand: dtype must be 'f32' or 'bf16', got '${dtype}'`);
  return tensor(uniformSamples(shapeNumel(checked), seed, low, high), checked, { dtype, device });
}
