// The emulation's own stand-ins of the CUDA runtime, cuBLAS, cuSOLVER, cub and NCCL, checked
// against what the real ones document (csrc/cuda/emulation/selftest/standins_selftest.cc, built
// with the emulated module by npm run build:cuda-emu), so that the emulated suite's verdicts can
// be trusted: fresh memory is NaN, streams are lazy and ordered, launch and copy errors are the
// runtime's, cuBLAS computes exactly what its column-major arguments say and refuses what it
// refuses, potrf's info, cub's stable sort over [begin_bit, end_bit), NCCL at world size 1, and
// faults becoming sticky errors. One scenario per process (a sticky error ends a process's
// context). Runs in npm run test:cuda-emu; skipped elsewhere (no emulated build).
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { EMULATED } from './helpers/device';

const SELFTEST = path.join(path.dirname(process.env.NM_CUDA_MODULE ?? ''), 'standins_selftest');
const SCENARIOS = ['runtime', 'cublas', 'cusolver', 'cub', 'nccl', 'sticky-kernel', 'sticky-cublas', 'sticky-free'];

(EMULATED ? test : test.skip).each(SCENARIOS)('stand-ins: %s', (scenario) => {
  expect(fs.existsSync(SELFTEST)).toBe(true);
  let report = '';
  try {
    // Its own kernels are not the module's: no coverage counts from it.
    const env = { ...process.env };
    delete env.NM_CUDA_EMU_COVERAGE_DIR;
    report = execFileSync(SELFTEST, [scenario], { encoding: 'utf8', stdio: 'pipe', timeout: 60_000, env });
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(`standins_selftest ${scenario} failed:\n${err.stdout ?? ''}${err.stderr ?? ''}${err.stdout ? '' : err.message}`);
  }
  expect(report).toContain(`${scenario}: 0 failure(s)`);
});
