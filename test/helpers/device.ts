// Which device the suites run on: NM_TEST_DEVICE=cuda on the GPU machine, the CPU otherwise.
import { DeviceName } from '../../lib/device';

export const TEST_DEVICE: DeviceName = process.env.NM_TEST_DEVICE === 'cuda' ? 'cuda' : 'cpu';

/** A fresh seed per call (tests must see new random inputs each run), printed on failure. */
let seedCounter = 0;
const runSeed = Number(process.env.NM_TEST_SEED ?? Date.now() % 1_000_000);
export function freshSeed(): number {
  return runSeed * 1000 + seedCounter++;
}
export const RUN_SEED = runSeed;
