#!/usr/bin/env bash
# Builds the host-emulated CUDA module build-cuda-emu/newton_muon_cuda_emu.so (`npm run
# build:cuda-emu`): the same csrc/cuda sources as the real module, compiled with g++ (no nvcc, no
# GPU) against the stand-ins in csrc/cuda/emulation/ (CUDA runtime, cuBLAS, cuSOLVER, cub, NCCL,
# and a kernel launcher). Test-only: never shipped in the package, loaded only when named with
# NM_CUDA_MODULE (npm run test:cuda-emu). See docs/GPU.md, "The emulated module".
#
# Needs g++ (C++17), make and OpenBLAS with its LAPACK (Debian / Ubuntu: libopenblas-dev).
# Environment: NM_BUILD_JOBS (parallel compile jobs, default: number of CPUs).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="$REPO_ROOT/build-cuda-emu"
JOBS="${NM_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"

die() { echo "build-cuda-emu: error: $*" >&2; exit 1; }

command -v g++ >/dev/null 2>&1 || die "g++ is not on PATH (Debian: apt-get install g++)"
command -v make >/dev/null 2>&1 || die "make is not on PATH (Debian: apt-get install make)"
# OpenBLAS: cblas.h and libopenblas (with LAPACK's dpotrf_ / dpotri_), found by the compiler.
if ! printf '#include <cblas.h>\nextern "C" void dpotrf_(const char*, const int*, double*, const int*, int*);\nint main() { int n = 0, i = 0; dpotrf_("L", &n, nullptr, &n, &i); return cblas_sgemm == nullptr; }\n' \
     | g++ -x c++ - -o /dev/null -lopenblas >/dev/null 2>&1; then
  die "OpenBLAS with LAPACK was not found (cblas.h, libopenblas with dpotrf_); install it: apt-get install -y libopenblas-dev"
fi

start=$(date +%s)
make -s -f "$REPO_ROOT/csrc/cuda/emulation/module.mk" OUT="$OUT_DIR" -j"$JOBS" >&2 \
  || die "compiling or linking the emulated module failed (see above)"
MODULE="$OUT_DIR/newton_muon_cuda_emu.so"
[ -f "$MODULE" ] || die "the build finished but $MODULE is missing"
echo "build-cuda-emu: built in $(( $(date +%s) - start ))s ($(wc -l < "$OUT_DIR/module-entry-points.txt") library entry points)" >&2
echo "$MODULE"
