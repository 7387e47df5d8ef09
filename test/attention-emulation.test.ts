// The CUDA attention kernels, checked without a GPU: each harness in csrc/cuda/emulation/
// compiles a real kernel header with g++ against host shims of the CUDA built-ins and runs it on
// the emulation's launcher (csrc/cuda/emulation/launcher: CUDA threads on fibers, real barriers
// for __syncthreads / __syncwarp, an exchange buffer for warp shuffles, 0xff-filled shared memory
// so unwritten reads show up as NaN), runs the forward
// and backward kernels for several shapes and exits non-zero on any mismatch; its report is
// printed on failure. A fresh seed each run (printed; NM_TEST_SEED fixes it).
//
// flash-bf16 (attention_bf16_emulation.cc, kernels in attention_flash_bf16_kernels.cuh, also the
// nvcuda::wmma shim): B=2, H=2, T = 1, 17, 63, 64, 65, 130 and B=1, H=3, T=200 (scale 0.2),
// compared with a float64 reference that applies the same bf16 roundings (tight per-element
// bounds), with exact attention (1e-2) and with a control (the bounds must reject attention
// without the P / dS roundings).
//
// flash, f32 (attention_flash_emulation.cc, kernels in attention_flash_kernels.cuh): head dims
// 16, 32, 64, T = 1, 31, 32, 33, 64, 65, 100, 130 with B and H > 1 (peaked softmax rows), compared
// with exact causal attention in float64 element by element (2e-5 of each element's terms, for
// out, lse, dq, dk, dv), and a second run must be bit-identical.
import { buildAndRunHarness } from './helpers/emulation';

test('flash-bf16 CUDA kernels in host emulation match the float64 references', () => {
  expect(buildAndRunHarness('attention_bf16_emulation.cc', [])).toMatch(/all shapes match/);
}, 180_000);

test('flash (f32) CUDA kernels in host emulation match exact float64 attention, deterministically', () => {
  // `#pragma unroll` in the kernel header is nvcc's; g++ ignores it.
  expect(buildAndRunHarness('attention_flash_emulation.cc', ['-Wno-unknown-pragmas'])).toMatch(/all shapes match/);
}, 180_000);
