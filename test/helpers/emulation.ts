// Builds one CUDA emulation harness (csrc/cuda/emulation/*.cc: real kernel headers compiled by
// g++ against the host shims) into a temp folder and runs it with a fresh seed (printed on
// failure; NM_TEST_SEED fixes it). Returns the harness's report; throws with the compiler's or the
// harness's output otherwise.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { freshSeed } from './device';

export const ROOT = path.join(__dirname, '..', '..');
export const EMULATION = path.join(ROOT, 'csrc', 'cuda', 'emulation');
/** The kernel launcher every harness runs on (fibers, block scheduler, grid executor). */
export const LAUNCHER_SOURCES = ['fiber.cc', 'block_scheduler.cc', 'grid_executor.cc', 'device_services.cc']
  .map((f) => path.join(EMULATION, 'launcher', f));

export function buildAndRunHarness(harness: string, extraFlags: string[] = [], extraSources: string[] = []): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nm-cuda-emu-'));
  try {
    const exe = path.join(dir, path.basename(harness, '.cc'));
    try {
      execFileSync('g++', ['-O2', '-std=c++20', '-pthread', '-Wall', '-Wextra', '-Werror', ...extraFlags,
        '-ffp-contract=off',
        path.join(EMULATION, harness), ...LAUNCHER_SOURCES, ...extraSources, '-o', exe], { stdio: 'pipe' });
    } catch (e) {
      const err = e as { stderr?: Buffer; message: string };
      throw new Error(`compiling the emulation harness ${harness} failed (g++ with C++20 needed): ${err.stderr?.toString() ?? err.message}`);
    }
    const seed = freshSeed();
    try {
      return execFileSync(exe, [String(seed)], { encoding: 'utf8', stdio: 'pipe', timeout: 90_000 });
    } catch (e) {
      const err = e as { stdout?: string; stderr?: string; message: string };
      throw new Error(`emulation harness ${harness} failed (seed ${seed}):\n${err.stdout ?? ''}${err.stderr ?? ''}${err.stdout ? '' : err.message}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
