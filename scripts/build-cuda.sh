#!/usr/bin/env bash
# Builds the CUDA backend module: build-cuda/Release/newton_muon_cuda.so (`npm run build:cuda`).
#
# Toolkit: a system CUDA toolkit when CUDAToolkit_ROOT or CUDA_HOME is set or nvcc is on PATH;
# otherwise the CUDA 13.0 toolchain from PyPI (scripts/install-cuda-toolchain.sh, .toolchain/cuda).
# NCCL: next to the toolkit, NCCL_ROOT/NCCL_HOME, the system paths, or else fetched from PyPI.
# No GPU or driver is needed to build.
#
# Environment:
#   NM_CUDA_ARCHS   CUDA architectures (CMake syntax), default "90"; release: "80-real;90"
#   NM_BUILD_JOBS   parallel compile jobs (default: number of CPUs)
#   NM_CMAKE_DIRECT=1  drive cmake directly instead of through cmake-js
#   NM_VERBOSE=1    show the full configure/build output
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="$REPO_ROOT/build-cuda"
ARCHS="${NM_CUDA_ARCHS:-90}"
JOBS="${NM_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"
VERBOSE="${NM_VERBOSE:-0}"
INSTALLER="$REPO_ROOT/scripts/install-cuda-toolchain.sh"

die() { echo "build-cuda: error: $*" >&2; exit 1; }
say() { echo "build-cuda: $*" >&2; }

# ---- the CUDA toolkit ------------------------------------------------------------------------
CUDA_ROOT=""
if [ -n "${CUDAToolkit_ROOT:-}" ]; then
  CUDA_ROOT="$CUDAToolkit_ROOT"
elif [ -n "${CUDA_HOME:-}" ]; then
  CUDA_ROOT="$CUDA_HOME"
elif command -v nvcc >/dev/null 2>&1; then
  CUDA_ROOT="$(cd "$(dirname "$(readlink -f "$(command -v nvcc)")")/.." && pwd)"
fi
if [ -n "$CUDA_ROOT" ]; then
  [ -x "$CUDA_ROOT/bin/nvcc" ] || die "no executable nvcc at $CUDA_ROOT/bin/nvcc (from CUDAToolkit_ROOT, CUDA_HOME or PATH)"
  say "using the system CUDA toolkit at $CUDA_ROOT"
else
  say "no system CUDA toolkit (nvcc, CUDA_HOME, CUDAToolkit_ROOT); using the PyPI toolchain"
  CUDA_ROOT="$(bash "$INSTALLER" | tail -n 1)" || die "installing the CUDA toolchain failed"
fi
NVCC="$CUDA_ROOT/bin/nvcc"
CUDA_RELEASE="$("$NVCC" --version | sed -n 's/.*release \([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1.\2/p' | head -n 1)"
[ -n "$CUDA_RELEASE" ] || die "could not read the CUDA release from '$NVCC --version'"
CUDA_MAJOR="${CUDA_RELEASE%%.*}"
[ "$CUDA_MAJOR" -ge 12 ] || die "CUDA $CUDA_RELEASE at $CUDA_ROOT is too old; need CUDA 12 or newer"

# ---- NCCL ------------------------------------------------------------------------------------
NCCL_DIR="${NCCL_ROOT:-${NCCL_HOME:-}}"
if [ -z "$NCCL_DIR" ]; then
  for candidate in "$CUDA_ROOT" /usr /usr/local; do
    if [ -f "$candidate/include/nccl.h" ]; then NCCL_DIR="$candidate"; break; fi
  done
fi
if [ -z "$NCCL_DIR" ]; then
  say "NCCL not found next to the toolkit or in /usr; fetching it from PyPI for CUDA $CUDA_MAJOR"
  NCCL_DIR="$(bash "$INSTALLER" --nccl-only "$CUDA_MAJOR" | tail -n 1)" || die "installing NCCL failed"
fi

# ---- CMake (>= 3.24) ---------------------------------------------------------------------------
CMAKE_BIN="$(bash "$INSTALLER" --cmake | tail -n 1)" || die "no usable cmake"

# ---- configure + build -----------------------------------------------------------------------
# A build folder configured with another nvcc (or another CMake) cannot be reused.
if [ -f "$OUT_DIR/CMakeCache.txt" ]; then
  cached_nvcc="$(sed -n 's/^CMAKE_CUDA_COMPILER:[A-Z]*=//p' "$OUT_DIR/CMakeCache.txt")"
  cached_cmake="$(sed -n 's/^CMAKE_COMMAND:INTERNAL=//p' "$OUT_DIR/CMakeCache.txt")"
  # cmake-js configures only a folder without a cache, so a changed NM_CUDA_ARCHS needs one too.
  cached_archs="$(sed -n 's/^NM_CUDA_ARCHS:[A-Z]*=//p' "$OUT_DIR/CMakeCache.txt")"
  if [ "$cached_nvcc" != "$NVCC" ] || [ "$(readlink -f "$cached_cmake")" != "$(readlink -f "$CMAKE_BIN")" ] \
     || [ "$cached_archs" != "$ARCHS" ]; then
    say "toolkit, cmake or architectures changed since the last build; starting from a clean $OUT_DIR"
    rm -rf "$OUT_DIR"
  fi
fi

DEFINES=(
  "CMAKE_CUDA_COMPILER=$NVCC"
  "CUDAToolkit_ROOT=$CUDA_ROOT"
  "NM_CUDA_ARCHS=$ARCHS"
  "NCCL_ROOT=$NCCL_DIR"
)

run_logged() {  # run_logged WHAT CMD...: quiet unless NM_VERBOSE=1; the log is kept on failure
  local what="$1"; shift
  mkdir -p "$OUT_DIR"
  local log="$OUT_DIR/$what.log"
  if [ "$VERBOSE" = "1" ]; then
    "$@" 2>&1 | tee "$log" >&2 || { die "$what failed (log: $log)"; }
    return 0
  fi
  if ! "$@" >"$log" 2>&1; then
    grep -E -i -B2 -A12 'error|fatal' "$log" | tail -n 60 >&2 || tail -n 60 "$log" >&2
    die "$what failed (full log: $log)"
  fi
}

# cmake-js needs no Node headers in Node-API mode (package.json "binary.napi_versions") or with
# npm's nodedir set; otherwise it would download them, which this module does not need at all
# (it is plain C ABI), so then cmake is driven directly with the same layout.
use_cmake_js=1
if [ "${NM_CMAKE_DIRECT:-0}" = "1" ]; then
  use_cmake_js=0
elif ! node -e 'process.exit(require(process.argv[1]).binary?.napi_versions ? 0 : 1)' \
       "$REPO_ROOT/package.json" 2>/dev/null && [ -z "${npm_config_nodedir:-}" ]; then
  say "package.json declares no binary.napi_versions and npm has no nodedir: driving cmake directly"
  use_cmake_js=0
fi
if [ "$use_cmake_js" = "1" ] && [ ! -e "$REPO_ROOT/node_modules/cmake-js/package.json" ]; then
  say "node_modules missing; running npm install --ignore-scripts"
  (cd "$REPO_ROOT" && npm install --ignore-scripts --no-audit --no-fund >/dev/null) \
    || die "npm install failed"
fi

start=$(date +%s)
if [ "$use_cmake_js" = "1" ]; then
  CMAKE_JS_ARGS=(--directory "$REPO_ROOT" --out "$OUT_DIR" --config Release
                 --cmake-path "$CMAKE_BIN" --parallel "$JOBS")
  for d in "${DEFINES[@]}"; do CMAKE_JS_ARGS+=("--CD$d"); done
  [ "$VERBOSE" = "1" ] || CMAKE_JS_ARGS+=(--log-level warn)
  run_logged build "$REPO_ROOT/node_modules/.bin/cmake-js" build "${CMAKE_JS_ARGS[@]}"
else
  CMAKE_ARGS=(-S "$REPO_ROOT" -B "$OUT_DIR" -DCMAKE_BUILD_TYPE=Release
              "-DCMAKE_LIBRARY_OUTPUT_DIRECTORY=$OUT_DIR/Release")
  if command -v ninja >/dev/null 2>&1; then CMAKE_ARGS+=(-G Ninja); fi
  for d in "${DEFINES[@]}"; do CMAKE_ARGS+=("-D$d"); done
  run_logged configure "$CMAKE_BIN" "${CMAKE_ARGS[@]}"
  run_logged build "$CMAKE_BIN" --build "$OUT_DIR" --config Release --parallel "$JOBS"
fi

MODULE="$OUT_DIR/Release/newton_muon_cuda.so"
[ -f "$MODULE" ] || die "the build finished but $MODULE is missing"
say "built in $(( $(date +%s) - start ))s with CUDA $CUDA_RELEASE, archs $ARCHS"
echo "$MODULE"
