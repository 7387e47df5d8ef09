#!/usr/bin/env bash
# Runs the whole jest suite on the host-emulated CUDA module (`npm run test:cuda-emu`): device
# 'cuda' is build-cuda-emu/newton_muon_cuda_emu.so (npm run build:cuda-emu), so every CUDA-vs-CPU
# parity test and the model, optimizer, trainer and reference tests run the module's kernels and
# library calls, at the tolerances a GPU run uses. Then the coverage count: the kernels and
# library entry points the module contains that never ran (scripts/cuda-emu-coverage.js; the
# report lands in build-cuda-emu/coverage.md). Extra arguments go to jest (e.g. a test file).
#
# An emulated pass is not a GPU pass: see docs/GPU.md.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
MODULE="$REPO_ROOT/build-cuda-emu/newton_muon_cuda_emu.so"
COVERAGE="$REPO_ROOT/build-cuda-emu/coverage"
[ -f "$MODULE" ] || { echo "test-cuda-emu: $MODULE is missing; run npm run build:cuda-emu first" >&2; exit 1; }

rm -rf "$COVERAGE"
mkdir -p "$COVERAGE"
start=$(date +%s)
status=0
NM_CUDA_MODULE="$MODULE" NM_TEST_DEVICE=cuda NM_CUDA_EMU_COVERAGE_DIR="$COVERAGE" \
  node node_modules/jest/bin/jest.js "$@" || status=$?
echo "test-cuda-emu: jest on the emulated CUDA module took $(( $(date +%s) - start ))s (exit $status)" >&2
# The coverage count needs the whole suite; with a subset of tests it is still printed.
node scripts/cuda-emu-coverage.js "$REPO_ROOT/build-cuda-emu" || status=$((status == 0 ? 1 : status))
exit "$status"
