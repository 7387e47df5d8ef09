// Which process-group engines exist here, devices()-style: 'gloo' (CPU tensors) from
// newton_muon_gloo.so, 'nccl' (CUDA tensors) from the CUDA module; each available, or unavailable
// with the exact reason ("libgloo.so.0 not found: apt-get install libgloo0 ...").
import { devices, moduleCandidates } from '../device';
import type { DeviceName } from '../device';
import { native } from '../native';

export type DistBackend = 'gloo' | 'nccl';

export interface BackendInfo {
  name: DistBackend;
  available: boolean;
  /** Why it cannot be used (only when available is false). */
  reason?: string;
  /** Engine details (version, transport). */
  details?: Record<string, unknown>;
  /** The module it was loaded from. */
  modulePath?: string;
  /** The device whose tensors it moves. */
  device: DeviceName;
}

/** Where the addon looks for newton_muon_gloo.so, in order. NM_GLOO_MODULE overrides all. */
export function glooModuleCandidates(): string[] {
  return moduleCandidates('NM_GLOO_MODULE', 'build-gloo', 'newton_muon_gloo.so');
}

/** Every process-group backend, with availability and, when unavailable, the exact reason. */
export function processGroupBackends(): BackendInfo[] {
  devices(); // loads the CUDA module (once), where NCCL lives
  return native.commEngines(glooModuleCandidates()).map((raw) => {
    const info: BackendInfo = { name: raw.name as DistBackend, available: raw.available, device: raw.name === 'nccl' ? 'cuda' : 'cpu' };
    if (raw.reason) info.reason = raw.reason;
    if (raw.describe) info.details = JSON.parse(raw.describe) as Record<string, unknown>;
    if (raw.modulePath) info.modulePath = raw.modulePath;
    return info;
  });
}

/** The backend that moves `device`'s tensors: nccl for cuda, gloo for cpu. */
export function backendFor(device: DeviceName): DistBackend {
  return device === 'cuda' ? 'nccl' : 'gloo';
}
