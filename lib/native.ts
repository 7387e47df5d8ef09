// Loads the addon (node-gyp-build finds build/Release or the matching prebuild) and declares
// the typed surface of csrc/napi. Nothing outside lib/ops.ts, lib/tensor.ts and lib/device.ts
// should call it: the native layer trusts its callers to have validated shapes and dtypes.
import * as path from 'path';

/** Opaque handle to one device allocation (an N-API External). */
export interface BufferHandle {
  readonly __nmBuffer: unique symbol;
}

export interface NativeDeviceInfo {
  name: string;
  available: boolean;
  reason?: string;
  /** One-line JSON from the backend's describe(). */
  describe?: string;
  modulePath?: string;
}

export interface NativeGemmArgs {
  a: BufferHandle; aOffset: number;
  b: BufferHandle; bOffset: number;
  c: BufferHandle; cOffset: number;
  transA: boolean; transB: boolean;
  m: number; n: number; k: number;
  alpha: number; beta: number;
  lda: number; ldb: number; ldc: number;
  strideA: number; strideB: number; strideC: number;
  batch: number;
  abDtype: number; cDtype: number;
}

/** Opaque handle to one communicator of a process group (an N-API External). */
export interface CommHandle {
  readonly __nmComm: unique symbol;
}

/** What commCreate needs to join a group (csrc/core/comm.h, nm_comm_config). */
export interface NativeCommConfig {
  rank: number;
  worldSize: number;
  timeoutMs: number;
  /** NCCL: rank 0's unique id. */
  uniqueId?: ArrayBuffer;
  /** Gloo: the rendezvous store and this group's key prefix; the address peers reach us at. */
  storeHost: string;
  storePort: number;
  storePrefix: string;
  hostname: string;
  iface: string;
}

/** Offsets are in bytes; counts (n) in elements; dtypes are nm_dtype codes. */
export interface NativeAddon {
  abiVersion: number;
  cpuInfo(): NativeDeviceInfo;
  loadCuda(candidatePaths: string[], deviceIndex?: number): NativeDeviceInfo;
  memoryStats(): Record<string, { bytes: number; buffers: number; peakBytes: number }>;
  resetPeakMemory(): void;
  alloc(device: string, bytes: number): BufferHandle;
  free(buffer: BufferHandle): void;
  upload(dst: BufferHandle, byteOffset: number, data: ArrayBufferView): void;
  download(src: BufferHandle, byteOffset: number, bytes: number): Promise<ArrayBuffer>;
  /** The same stream-ordered copy, waited for on the calling thread (blocks the event loop). */
  downloadSync(src: BufferHandle, byteOffset: number, bytes: number): ArrayBuffer;
  synchronize(device: string): Promise<void>;
  copy(dst: BufferHandle, dstOffset: number, src: BufferHandle, srcOffset: number, bytes: number): void;
  copyRows(dst: BufferHandle, dstOffset: number, dstStride: number, src: BufferHandle, srcOffset: number,
    srcStride: number, rows: number, rowBytes: number): void;
  fill(dst: BufferHandle, offset: number, dtype: number, n: number, value: number): void;
  cast(dst: BufferHandle, dstOffset: number, dstDtype: number, src: BufferHandle, srcOffset: number,
    srcDtype: number, n: number): void;
  binary(op: number, out: BufferHandle, outOffset: number, a: BufferHandle, aOffset: number,
    b: BufferHandle, bOffset: number, dtype: number, n: number): void;
  scale(out: BufferHandle, outOffset: number, x: BufferHandle, xOffset: number, alpha: number,
    dtype: number, n: number): void;
  axpy(y: BufferHandle, yOffset: number, x: BufferHandle, xOffset: number, alpha: number,
    dtype: number, n: number): void;
  reduce(out: BufferHandle, outOffset: number, x: BufferHandle, xOffset: number, dtype: number,
    n: number, squares: boolean): void;
  gemm(args: NativeGemmArgs): void;
  // Optimizer ops: every operand f32 except choleskyInverse's info (i32).
  newtonSchulz(out: BufferHandle, outOffset: number, x: BufferHandle, xOffset: number, batch: number,
    rows: number, cols: number, steps: number, a: number, b: number, c: number, eps: number): void;
  choleskyInverse(kinv: BufferHandle, kinvOffset: number, k: BufferHandle, kOffset: number,
    info: BufferHandle, infoOffset: number, batch: number, d: number, ridgeMult: number, ridgeEps: number): void;
  momentumUpdate(buf: BufferHandle, bufOffset: number, u: BufferHandle, uOffset: number, g: BufferHandle,
    gOffset: number, n: number, momentum: number, nesterov: boolean): void;
  applyUpdate(w: BufferHandle, wOffset: number, u: BufferHandle, uOffset: number, n: number, decay: number,
    step: number): void;
  adamwUpdate(w: BufferHandle, wOffset: number, g: BufferHandle, gOffset: number, m: BufferHandle, mOffset: number,
    v: BufferHandle, vOffset: number, n: number, keep: number, beta1: number, oneMinusBeta1: number,
    beta2: number, oneMinusBeta2: number, stepSize: number, sqrtBias2: number, eps: number): void;
  // GPT-2 model ops (csrc/core/backend.h, "GPT-2 model ops"); f32 unless a dtype code is passed.
  embeddingForward(out: BufferHandle, outOffset: number, wte: BufferHandle, wteOffset: number, ids: BufferHandle,
    idsOffset: number, n: number, c: number, vocab: number): void;
  embeddingBackward(dwte: BufferHandle, dwteOffset: number, dout: BufferHandle, doutOffset: number, ids: BufferHandle,
    idsOffset: number, n: number, c: number, vocab: number): void;
  rmsnormForward(out: BufferHandle, outOffset: number, outDtype: number, rstd: BufferHandle, rstdOffset: number,
    x: BufferHandle, xOffset: number, n: number, c: number, eps: number): void;
  rmsnormBackward(dx: BufferHandle, dxOffset: number, dout: BufferHandle, doutOffset: number, x: BufferHandle,
    xOffset: number, rstd: BufferHandle, rstdOffset: number, n: number, c: number, accumulate: boolean): void;
  geluForward(out: BufferHandle, outOffset: number, outDtype: number, x: BufferHandle, xOffset: number, n: number): void;
  geluBackward(dx: BufferHandle, dxOffset: number, dout: BufferHandle, doutOffset: number, x: BufferHandle,
    xOffset: number, n: number): void;
  rotary(qkv: BufferHandle, qkvOffset: number, b: number, t: number, heads: number, headDim: number, base: number,
    inverse: boolean): void;
  attentionForward(out: BufferHandle, outOffset: number, lse: BufferHandle, lseOffset: number, qkv: BufferHandle,
    qkvOffset: number, b: number, t: number, heads: number, headDim: number, scale: number, algo: number): void;
  attentionBackward(dqkv: BufferHandle, dqkvOffset: number, dout: BufferHandle, doutOffset: number, qkv: BufferHandle,
    qkvOffset: number, out: BufferHandle, outOffset: number, lse: BufferHandle, lseOffset: number, b: number,
    t: number, heads: number, headDim: number, scale: number, algo: number): void;
  crossEntropy(losses: BufferHandle, lossesOffset: number, logits: BufferHandle, logitsOffset: number,
    targets: BufferHandle, targetsOffset: number, n: number, vocab: number, gradScale: number): void;
  // Process-group collectives (csrc/core/comm.h, lib/dist). reduceOp: 0 sum, 1 avg.
  commEngines(glooCandidates: string[]): NativeDeviceInfo[];
  commUniqueId(engine: string): ArrayBuffer;
  commCreate(engine: string, device: string, config: NativeCommConfig): Promise<CommHandle>;
  commAllReduce(comm: CommHandle, out: BufferHandle, outOffset: number, input: BufferHandle, inOffset: number,
    n: number, dtype: number, reduceOp: number): void;
  commReduceScatter(comm: CommHandle, out: BufferHandle, outOffset: number, input: BufferHandle, inOffset: number,
    n: number, dtype: number, reduceOp: number): void;
  commAllGather(comm: CommHandle, out: BufferHandle, outOffset: number, input: BufferHandle, inOffset: number,
    n: number, dtype: number): void;
  commBroadcast(comm: CommHandle, buf: BufferHandle, offset: number, n: number, dtype: number, root: number): void;
  commBarrier(comm: CommHandle): void;
  commStatus(comm: CommHandle): string | null;
  commAbort(comm: CommHandle, reason: string): void;
  commDestroy(comm: CommHandle): Promise<void>;
  glooOpenFailureReason(modulePath: string, dlerrorText: string): string;
}

/** The package root (dist/.. when compiled, lib/.. under ts-jest). */
export const packageRoot = path.join(__dirname, '..');

// eslint-disable-next-line @typescript-eslint/no-require-imports
const load = require('node-gyp-build') as (dir: string) => NativeAddon;

export const native: NativeAddon = load(packageRoot);
