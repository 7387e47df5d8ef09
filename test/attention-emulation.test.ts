// The flash-bf16 CUDA kernels (csrc/cuda/attention_flash_bf16_kernels.cuh), checked without a GPU:
// the harness csrc/cuda/emulation/attention_bf16_emulation.cc compiles that same header with g++
// against host shims of the CUDA built-ins and of nvcuda::wmma (one std::thread per CUDA thread,
// barriers for __syncthreads / __syncwarp, whole-tile fragments per lane), runs the forward and
// backward kernels for B=2, H=2, T = 1, 17, 63, 64, 65, 130 and B=1, H=3, T=200 (scale 0.2), and
// compares with a float64 reference that applies the same bf16 roundings (tight per-element
// bounds), with exact attention (1e-2) and with a control (the bounds must reject attention
// without the P / dS roundings). It exits non-zero on any mismatch; its report is printed on
// failure. A fresh seed each run (printed; NM_TEST_SEED fixes it).
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { freshSeed } from './helpers/device';

const ROOT = path.join(__dirname, '..');
const HARNESS = path.join(ROOT, 'csrc', 'cuda', 'emulation', 'attention_bf16_emulation.cc');

test('flash-bf16 CUDA kernels in host emulation match the float64 references', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nm-attn-emu-'));
  try {
    const exe = path.join(dir, 'attention_bf16_emulation');
    try {
      execFileSync('g++', ['-O2', '-std=c++20', '-pthread', '-Wall', '-Wextra', '-Werror', HARNESS, '-o', exe], { stdio: 'pipe' });
    } catch (e) {
      const err = e as { stderr?: Buffer; message: string };
      throw new Error(`compiling the emulation harness failed (g++ with C++20 needed): ${err.stderr?.toString() ?? err.message}`);
    }
    const seed = freshSeed();
    let report = '';
    try {
      report = execFileSync(exe, [String(seed)], { encoding: 'utf8', stdio: 'pipe', timeout: 90_000 });
    } catch (e) {
      const err = e as { stdout?: string; stderr?: string; message: string };
      throw new Error(`emulation harness failed (seed ${seed}):\n${err.stdout ?? ''}${err.stderr ?? ''}${err.stdout ? '' : err.message}`);
    }
    expect(report).toMatch(/all shapes match/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 180_000);
