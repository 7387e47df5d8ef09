// Which device the suites run on: NM_TEST_DEVICE=cuda on the GPU machine, the CPU otherwise.
import { DeviceName, devices } from '../../lib/device';

export const TEST_DEVICE: DeviceName = process.env.NM_TEST_DEVICE === 'cuda' ? 'cuda' : 'cpu';

/**
 * True when 'cuda' is the host-emulated module (npm run test:cuda-emu, docs/GPU.md): it runs every
 * kernel on the CPU, far slower than a GPU, so the few tests sized for a GPU's speed shrink to
 * the CPU's sizes under this flag (they still run, at the GPU tolerances).
 */
export const EMULATED: boolean = TEST_DEVICE === 'cuda' && devices().find((d) => d.name === 'cuda')?.details?.emulated === true;

/** A fresh seed per call (tests must see new random inputs each run), printed on failure. */
let seedCounter = 0;
const runSeed = Number(process.env.NM_TEST_SEED ?? Date.now() % 1_000_000);
export function freshSeed(): number {
  return runSeed * 1000 + seedCounter++;
}
export const RUN_SEED = runSeed;
