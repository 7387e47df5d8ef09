// What kernel code and launch sites need to compile both under nvcc (the CUDA module) and under
// g++ for the host emulation (csrc/cuda/emulation/, which defines NM_CUDA_EMULATION and includes
// emulation/cuda_host_shim.h first):
//   - NM_CUDA_LAUNCH(grid, block, smem, stream, kernel)(args...): every kernel launch of the
//     module. Under nvcc it is exactly kernel<<<grid, block, smem, stream>>>(args...); under the
//     emulation it enqueues the grid on the emulated stream (emulation/runtime/kernel_enqueue.h).
//     The kernel comes last so that template arguments with commas need no parentheses:
//       NM_CUDA_LAUNCH(blocks, kThreads, 0, be->stream, binary_kernel<T, NM_ADD>)(o, x, y, n);
//   - shared-variable declarations that are plain `__shared__` under nvcc and, under the
//     emulation, references into the block's per-declaration shared buffers (nm_emu::site_shared:
//     one per declaration per block, as with `__shared__`, also in a device helper called many
//     times per kernel). Kernel code declares shared memory only through these.
#ifndef NM_CUDA_KERNEL_COMPAT_CUH
#define NM_CUDA_KERNEL_COMPAT_CUH

#ifdef NM_CUDA_EMULATION
#ifndef NM_CUDA_HOST_SHIM_H
#error "the emulation includes emulation/cuda_host_shim.h first"
#endif
#define NM_CUDA_LAUNCH(grid, block, smem, stream, ...) \
  ::nm_emu::Launch<&__VA_ARGS__>(grid, block, smem, stream)
#define NM_SHARED_VAR(type, name)    \
  static char name##_nm_shared_site; \
  type& name = *nm_emu::site_shared<type>(&name##_nm_shared_site, 1)
#define NM_SHARED_ARRAY(type, name, count) \
  static char name##_nm_shared_site;       \
  type* name = nm_emu::site_shared<type>(&name##_nm_shared_site, count)
// (the emulation aligns every shared declaration to 16 bytes)
#define NM_SHARED_ARRAY_A16(type, name, count) NM_SHARED_ARRAY(type, name, count)
#else
#define NM_CUDA_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>
#define NM_SHARED_VAR(type, name) __shared__ type name
#define NM_SHARED_ARRAY(type, name, count) __shared__ type name[count]
#define NM_SHARED_ARRAY_A16(type, name, count) __shared__ __align__(16) type name[count]
#endif

#endif  // NM_CUDA_KERNEL_COMPAT_CUH
