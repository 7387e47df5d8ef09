// What the CPU we run on supports, for the kernels that pick an instruction-set variant at run
// time (GEMM micro-kernels, the Cholesky dot tiles, attention). Each answer is computed once.
// Non-x86 builds answer false (only the generic kernels exist there).
#ifndef NM_CPU_CPU_FEATURES_H
#define NM_CPU_CPU_FEATURES_H

namespace nm::cpu {

// AVX2 (attention's per-head loops are compiled for it with target("avx2")).
inline bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool yes = (__builtin_cpu_init(), __builtin_cpu_supports("avx2"));
  return yes;
#else
  return false;
#endif
}

// AVX2 and FMA (the AVX2 GEMM micro-kernel and the Cholesky dot tiles use both).
inline bool cpu_has_avx2_fma() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool yes = (__builtin_cpu_init(), __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
  return yes;
#else
  return false;
#endif
}

// AVX-512F (libgcc also checks that the OS saves the zmm state).
inline bool cpu_has_avx512f() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool yes = (__builtin_cpu_init(), __builtin_cpu_supports("avx512f"));
  return yes;
#else
  return false;
#endif
}

}  // namespace nm::cpu

#endif  // NM_CPU_CPU_FEATURES_H
