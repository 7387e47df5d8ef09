// Device selection and accounting: which backends exist here, and how much memory is live.
import * as path from 'path';

import { native, NativeDeviceInfo, packageRoot } from './native';

export type DeviceName = 'cpu' | 'cuda';
/** What callers may pass: a concrete device, or 'auto' (cuda when available, else cpu). */
export type DeviceSpec = DeviceName | 'auto';

export interface DeviceInfo {
  name: DeviceName;
  available: boolean;
  /** Why the device cannot be used (only when available is false). */
  reason?: string;
  /** Backend details: CPU threads and GEMM kernel; CUDA GPU name, compute capability, versions. */
  details?: Record<string, unknown>;
  /** Where the CUDA module was loaded from. */
  modulePath?: string;
}

/**
 * Where the addon looks for a separately loaded module, in order: the path in `envVar` alone when
 * it is set, else this package's build folder, then its prebuilds.
 */
export function moduleCandidates(envVar: string, buildFolder: string, file: string): string[] {
  const fromEnv = process.env[envVar];
  if (fromEnv) return [path.resolve(fromEnv)];
  return [
    path.join(packageRoot, buildFolder, 'Release', file),
    path.join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`, file),
  ];
}

/** Where the addon looks for newton_muon_cuda.so, in order. NM_CUDA_MODULE overrides all. */
export function cudaModuleCandidates(): string[] {
  return moduleCandidates('NM_CUDA_MODULE', 'build-cuda', 'newton_muon_cuda.so');
}

let cudaInfo: NativeDeviceInfo | undefined;
let cudaIndex = 0;

/**
 * Picks the GPU this process uses as device 'cuda' (default 0). One GPU per process: a
 * data-parallel rank takes the GPU of its local rank. Call it before the first use of CUDA
 * (devices(), 'auto', 'cuda'); afterwards only the same index is accepted.
 */
export function selectCudaDevice(index: number): void {
  if (!Number.isSafeInteger(index) || index < 0) throw new RangeError(`selectCudaDevice: index must be an integer >= 0, got ${String(index)}`);
  if (cudaInfo !== undefined && index !== cudaIndex) {
    throw new Error(`selectCudaDevice(${index}): CUDA is already in use on GPU ${cudaIndex} in this process (select the GPU before the first use of CUDA)`);
  }
  cudaIndex = index;
}

function toDeviceInfo(raw: NativeDeviceInfo): DeviceInfo {
  const info: DeviceInfo = { name: raw.name as DeviceName, available: raw.available };
  if (raw.reason) info.reason = raw.reason;
  if (raw.describe) info.details = JSON.parse(raw.describe) as Record<string, unknown>;
  if (raw.modulePath) info.modulePath = raw.modulePath;
  return info;
}

function cuda(): NativeDeviceInfo {
  // Loading is attempted once per process; the outcome (and its reason) is cached natively.
  cudaInfo ??= native.loadCuda(cudaModuleCandidates(), cudaIndex);
  return cudaInfo;
}

/** Every device this package knows, with availability and, when unavailable, the exact reason. */
export function devices(): DeviceInfo[] {
  return [toDeviceInfo(native.cpuInfo()), toDeviceInfo(cuda())];
}

/**
 * Resolves a device spec to a concrete, available device; throws naming `what` when the spec is
 * unknown or the device cannot be used here (never silently falls back when 'cuda' was asked).
 */
export function resolveDevice(spec: unknown, what = 'device'): DeviceName {
  if (spec === undefined || spec === 'cpu') return 'cpu';
  if (spec === 'auto') return cuda().available ? 'cuda' : 'cpu';
  if (spec === 'cuda') {
    const info = cuda();
    if (!info.available) throw new Error(`${what}: 'cuda' is not available: ${info.reason}`);
    return 'cuda';
  }
  throw new TypeError(`${what}: unknown device ${JSON.stringify(spec)} (expected 'cpu', 'cuda' or 'auto')`);
}

/** Waits (without blocking the event loop) until all work enqueued so far on the device(s) ran. */
export async function synchronize(device?: DeviceSpec): Promise<void> {
  if (device !== undefined) {
    await native.synchronize(resolveDevice(device, 'synchronize'));
    return;
  }
  const live: DeviceName[] = ['cpu'];
  if (cudaInfo?.available) live.push('cuda');
  await Promise.all(live.map((d) => native.synchronize(d)));
}

export interface MemoryStats {
  /** Bytes of device memory held by live tensors. */
  bytes: number;
  /** Number of live allocations (views share their base's allocation). */
  buffers: number;
  /** Most bytes live at once since the process started or resetPeakMemory() was called. */
  peakBytes: number;
}

/** Starts a new peak-memory measurement: each device's peakBytes becomes its current bytes. */
export function resetPeakMemory(): void {
  native.resetPeakMemory();
}

/** Live bytes and allocations per device, so callers (and tests) can prove nothing leaks. */
export function memoryStats(): Partial<Record<DeviceName, MemoryStats>> {
  return native.memoryStats() as Partial<Record<DeviceName, MemoryStats>>;
}
