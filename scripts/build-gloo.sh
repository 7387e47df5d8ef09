#!/usr/bin/env bash
# Builds the Gloo collectives module: build-gloo/Release/newton_muon_gloo.so (`npm run build:gloo`;
# `npm install` runs it too when Gloo's headers are present). It is the 'gloo' process-group
# engine (multi-process training on CPU tensors, lib/dist) over Debian's libgloo:
#   apt-get install libgloo-dev      (headers + GlooConfig.cmake; pulls the runtime libgloo0)
#
# Environment:
#   Gloo_DIR        folder of GlooConfig.cmake (default: CMake's search, /usr/share/cmake/Gloo)
#   NM_BUILD_JOBS   parallel compile jobs (default: number of CPUs)
#   NM_VERBOSE=1    show the full configure/build output
# Prints the module's path as its last line.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="$REPO_ROOT/build-gloo"
JOBS="${NM_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"
VERBOSE="${NM_VERBOSE:-0}"

die() { echo "build-gloo: error: $*" >&2; exit 1; }
say() { echo "build-gloo: $*" >&2; }

command -v cmake >/dev/null 2>&1 || die "cmake is needed (apt-get install cmake)"
command -v c++ >/dev/null 2>&1 || die "a C++17 compiler is needed (apt-get install g++)"
if [ -z "${Gloo_DIR:-}" ] && [ ! -f /usr/share/cmake/Gloo/GlooConfig.cmake ] && [ ! -f /usr/local/share/cmake/Gloo/GlooConfig.cmake ]; then
  die "Gloo's development files are not installed (no GlooConfig.cmake): apt-get install libgloo-dev, or set Gloo_DIR"
fi

run_logged() {  # run_logged WHAT CMD...: quiet unless NM_VERBOSE=1; the log is kept on failure
  local what="$1"; shift
  mkdir -p "$OUT_DIR"
  local log="$OUT_DIR/$what.log"
  if [ "$VERBOSE" = "1" ]; then
    "$@" 2>&1 | tee "$log" >&2 || die "$what failed (log: $log)"
    return 0
  fi
  if ! "$@" >"$log" 2>&1; then
    grep -E -i -B2 -A12 'error|fatal' "$log" | tail -n 60 >&2 || tail -n 60 "$log" >&2
    die "$what failed (full log: $log)"
  fi
}

start=$(date +%s)
ARGS=(-S "$REPO_ROOT/csrc/gloo" -B "$OUT_DIR" -DCMAKE_BUILD_TYPE=Release
      "-DCMAKE_LIBRARY_OUTPUT_DIRECTORY=$OUT_DIR/Release")
[ -n "${Gloo_DIR:-}" ] && ARGS+=("-DGloo_DIR=$Gloo_DIR")
if command -v ninja >/dev/null 2>&1 && [ ! -f "$OUT_DIR/Makefile" ]; then ARGS+=(-G Ninja); fi
run_logged configure cmake "${ARGS[@]}"
run_logged build cmake --build "$OUT_DIR" --parallel "$JOBS"

MODULE="$OUT_DIR/Release/newton_muon_gloo.so"
[ -f "$MODULE" ] || die "the build finished but $MODULE is missing"
say "built in $(( $(date +%s) - start ))s"
echo "$MODULE"
