// The CUDA module's row and elementwise kernels, checked without a GPU (see
// attention-emulation.test.ts for the attention kernels and docs/GPU.md): the harness
// csrc/cuda/emulation/model_kernels_emulation.cc compiles the real kernel headers
// (model_norm_gelu_kernels.cuh, model_cross_entropy_kernels.cuh, model_rotary_kernels.cuh,
// optim_kernels.cuh) with g++ against the host shim and the emulation's launcher (CUDA threads
// on fibers, real barriers for __syncthreads, an exchange buffer for warp shuffles, 0xff-filled
// shared memory), launches
// them with the host code's grid / block sizes and compares with the CPU backend's kernels,
// linked in from csrc/cpu: RMSNorm forward (f32, in place, bf16 output) and backward
// (accumulate 0 / 1) for row lengths 1..1030 (block sizes 32..256), GELU forward (f32, bf16) and
// backward, cross-entropy losses and gradients (vocab 1..1537, 32..512 threads, -inf logits, an
// out-of-range target, grad_scale 0), rotary forward and inverse, momentum (plain, Nesterov),
// apply_update and AdamW; the elementwise launches run their grid-stride loops more than once.
// Every element within 1e-5 (f32) / 1e-2 (bf16) of its terms, every launch twice with the same
// bits. A fresh seed each run (printed; NM_TEST_SEED fixes it).
import * as path from 'path';

import { buildAndRunHarness, EMULATION, ROOT } from './helpers/emulation';

const CPU = path.join(ROOT, 'csrc', 'cpu');

test('rmsnorm, gelu, cross-entropy, rotary and optimizer CUDA kernels in host emulation match the CPU backend, deterministically', () => {
  // include/ holds the stand-in <cuda_bf16.h> for ../dtypes.cuh; the CPU kernels are built with
  // the addon's -Wno-unused-parameter.
  const cpuSources = ['model_norm_gelu.cc', 'model_cross_entropy.cc', 'model_rotary.cc', 'optim_updates.cc',
    'thread_pool.cc'].map((f) => path.join(CPU, f));
  const report = buildAndRunHarness('model_kernels_emulation.cc',
    ['-Wno-unused-parameter', `-I${path.join(EMULATION, 'include')}`], cpuSources);
  expect(report).toMatch(/all kernels match/);
}, 180_000);
