// Makes memoryStats() comparisons deterministic: tensors that earlier tests (or earlier suites
// in the same jest worker) dropped without disposing are freed by their GC finalizers at an
// unpredictable time. settleGarbage() forces a full collection and lets the finalizers run, so
// a baseline taken right after it cannot move unless the test itself allocates or frees.
import * as v8 from 'v8';
import * as vm from 'vm';

import { memoryStats } from '../../lib/device';
import { DeviceName } from '../../lib/device';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

export async function settleGarbage(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc();
    await tick();
  }
}

/** { bytes, buffers } live on device (zeros when the device has no slot yet). */
export function liveOn(device: DeviceName): { bytes: number; buffers: number } {
  const s = memoryStats()[device];
  return { bytes: s?.bytes ?? 0, buffers: s?.buffers ?? 0 };
}
