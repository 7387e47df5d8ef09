#!/usr/bin/env bash
# Installs what building newton_muon_cuda.so needs, from NVIDIA's PyPI wheels, for machines
# without a system CUDA toolkit (CI, developer boxes without a GPU). Building needs no GPU or
# driver; running the module does.
#
#   scripts/install-cuda-toolchain.sh            CUDA 13.0 toolkit + NCCL -> .toolchain/cuda
#                                                (nvcc, headers, cudart, cuBLAS(Lt), cuSOLVER,
#                                                NCCL merged into include/ and lib/); prints it
#   scripts/install-cuda-toolchain.sh --nccl-only MAJOR
#                                                only NCCL for CUDA MAJOR (12 or 13), for a system
#                                                toolkit without NCCL -> .toolchain/nccl-cuMAJOR
#                                                (include/, lib/); prints it
#   scripts/install-cuda-toolchain.sh --cmake    a CMake from PyPI -> .toolchain/cmake, when the
#                                                system one is older than 3.24; prints the cmake
#                                                binary to use (the system one when it is new enough)
#   --force                                      reinstall even when the stamp matches
#
# Idempotent: each folder has a stamp file with its version list; a rerun with the same list is a
# no-op. Installs go to a scratch folder that is swapped in at the end, so an interrupted run never
# leaves a half-populated toolkit. Quiet by default (NM_VERBOSE=1 shows progress and pip output).
set -euo pipefail

# Keep in step with the driver the release targets (CUDA 13.0 here).
CUDA_WHEELS=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-cccl==13.0.85
  nvidia-cuda-crt==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cublas==13.0.2.14
  nvidia-cusolver==12.0.4.66
  nvidia-nccl-cu13==2.28.3
  nvidia-cusparse==12.6.3.3
  nvidia-nvjitlink==13.0.88
)
NCCL_VERSION=2.28.3
# CMakeLists.txt needs 3.24 (see the note there about CUDA 13 and FindCUDAToolkit).
CMAKE_MIN_VERSION=3.24.0
CMAKE_WHEEL="cmake==3.31.6"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLCHAIN_DIR="${NM_TOOLCHAIN_DIR:-$REPO_ROOT/.toolchain}"
VERBOSE="${NM_VERBOSE:-0}"
PYTHON="${PYTHON:-python3}"

die() { echo "install-cuda-toolchain: error: $*" >&2; exit 1; }
log() { if [ "$VERBOSE" = "1" ]; then echo "install-cuda-toolchain: $*" >&2; fi; }

# Runs a command quietly; on failure shows the tail of its output and stops with a message.
run_quiet() {
  local what="$1"; shift
  if [ "$VERBOSE" = "1" ]; then
    "$@" >&2 || die "$what failed (command: $*)"
    return 0
  fi
  local out
  if ! out="$("$@" 2>&1)"; then
    printf '%s\n' "$out" | tail -n 40 >&2
    die "$what failed (command: $*)"
  fi
}

need_pip() {
  [ "$(uname -s)" = "Linux" ] || die "the PyPI CUDA wheels are Linux-only (this is $(uname -s))"
  [ "$(uname -m)" = "x86_64" ] || die "only x86_64 is set up here (this is $(uname -m))"
  command -v "$PYTHON" >/dev/null 2>&1 || die "python3 is required (to run pip); set PYTHON=..."
  "$PYTHON" -m pip --version >/dev/null 2>&1 \
    || die "'$PYTHON -m pip' does not work; install pip (apt-get install python3-pip)"
}

version_ge() {  # version_ge A B: A >= B
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

stamp_ok() {  # stamp_ok DIR TEXT
  [ "$FORCE" = "0" ] && [ -f "$1/.nm-toolchain-stamp" ] && [ "$(cat "$1/.nm-toolchain-stamp")" = "$2" ]
}

# Downloads wheels (pip's cache makes reruns fast) and unpacks them into DEST, keeping the
# permission bits that zipfile's extract drops (nvcc, ptxas, cicc must stay executable).
fetch_wheels() {  # fetch_wheels SCRATCH DEST WHEEL...
  local scratch="$1" dest="$2"; shift 2
  mkdir -p "$scratch/wheels" "$dest"
  log "downloading $*"
  run_quiet "pip download ($*)" \
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: -d "$scratch/wheels" "$@"
  log "unpacking"
  run_quiet "unpacking the wheels" "$PYTHON" - "$dest" "$scratch"/wheels/*.whl <<'PY'
import os, sys, zipfile
dest = sys.argv[1]
for wheel in sys.argv[2:]:
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            path = z.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(path, mode)
PY
}

# The wheels ship only SONAME files (libcublas.so.13); the linker's -lcublas wants libcublas.so.
link_unversioned() {  # link_unversioned LIBDIR
  local f base
  for f in "$1"/lib*.so.*; do
    [ -f "$f" ] || continue
    base="${f%%.so.*}.so"
    [ -e "$base" ] || ln -s "$(basename "$f")" "$base"
  done
}

# Replaces FINAL with the finished tree NEW (same parent folder, so mv is a rename).
swap_in() {  # swap_in NEW FINAL
  rm -rf "$2.old"
  if [ -e "$2" ]; then mv "$2" "$2.old"; fi
  mv "$1" "$2"
  rm -rf "$2.old"
}

install_cuda() {
  local prefix="$TOOLCHAIN_DIR/cuda" stamp
  stamp="$(printf '%s\n' "${CUDA_WHEELS[@]}")"
  if stamp_ok "$prefix" "$stamp" && "$prefix/bin/nvcc" --version >/dev/null 2>&1; then
    echo "$prefix"
    return 0
  fi
  need_pip
  local work="$prefix.partial"
  rm -rf "$work"
  trap 'rm -rf "'"$work"'"' EXIT
  fetch_wheels "$work" "$work/unpacked" "${CUDA_WHEELS[@]}"

  local cuda="$work/unpacked/nvidia/cu13" nccl="$work/unpacked/nvidia/nccl" tree="$work/tree"
  [ -x "$cuda/bin/nvcc" ] || die "nvcc missing from the unpacked wheels ($cuda/bin/nvcc)"
  [ -f "$nccl/include/nccl.h" ] || die "nccl.h missing from the unpacked NCCL wheel"
  mv "$cuda" "$tree"
  cp -a "$nccl/include/." "$tree/include/"
  cp -a "$nccl/lib/." "$tree/lib/"
  link_unversioned "$tree/lib"
  local lib
  for lib in libcudart.so libcublas.so libcublasLt.so libcusolver.so libnccl.so; do
    [ -e "$tree/lib/$lib" ] || die "expected $lib in the toolkit after unpacking"
  done
  # Some build systems look for lib64/ under a toolkit root.
  [ -e "$tree/lib64" ] || ln -s lib "$tree/lib64"
  "$tree/bin/nvcc" --version >/dev/null 2>&1 \
    || die "the unpacked nvcc does not run: $("$tree/bin/nvcc" --version 2>&1 | tail -n 3)"

  printf '%s\n' "$stamp" > "$tree/.nm-toolchain-stamp"
  swap_in "$tree" "$prefix"
  rm -rf "$work"
  trap - EXIT
  "$prefix/bin/nvcc" --version >/dev/null 2>&1 || die "nvcc does not run after the install"
  log "$("$prefix/bin/nvcc" --version | grep -i release || true)"
  echo "$prefix"
}

install_nccl() {
  case "$NCCL_MAJOR" in
    12|13) ;;
    *) die "--nccl-only needs the CUDA major version, 12 or 13 (got '$NCCL_MAJOR')" ;;
  esac
  local prefix="$TOOLCHAIN_DIR/nccl-cu$NCCL_MAJOR" wheel="nvidia-nccl-cu$NCCL_MAJOR==$NCCL_VERSION"
  if stamp_ok "$prefix" "$wheel" && [ -f "$prefix/include/nccl.h" ]; then
    echo "$prefix"
    return 0
  fi
  need_pip
  local work="$prefix.partial"
  rm -rf "$work"
  trap 'rm -rf "'"$work"'"' EXIT
  fetch_wheels "$work" "$work/unpacked" "$wheel"
  local nccl="$work/unpacked/nvidia/nccl"
  [ -f "$nccl/include/nccl.h" ] || die "nccl.h missing from the unpacked $wheel"
  link_unversioned "$nccl/lib"
  [ -e "$nccl/lib/libnccl.so" ] || die "libnccl.so missing from the unpacked $wheel"
  printf '%s\n' "$wheel" > "$nccl/.nm-toolchain-stamp"
  swap_in "$nccl" "$prefix"
  rm -rf "$work"
  trap - EXIT
  echo "$prefix"
}

install_cmake() {
  local sys_ver=""
  if command -v cmake >/dev/null 2>&1; then
    sys_ver="$(cmake --version | head -n1 | awk '{print $3}')"
  fi
  if [ "$FORCE" = "0" ] && [ -n "$sys_ver" ] && version_ge "$sys_ver" "$CMAKE_MIN_VERSION"; then
    log "system cmake $sys_ver is new enough"
    command -v cmake
    return 0
  fi
  local prefix="$TOOLCHAIN_DIR/cmake"
  if stamp_ok "$prefix" "$CMAKE_WHEEL" && "$prefix/bin/cmake" --version >/dev/null 2>&1; then
    echo "$prefix/bin/cmake"
    return 0
  fi
  need_pip
  log "installing $CMAKE_WHEEL (system cmake: ${sys_ver:-none})"
  local work="$prefix.partial"
  rm -rf "$work"
  trap 'rm -rf "'"$work"'"' EXIT
  fetch_wheels "$work" "$work/unpacked" "$CMAKE_WHEEL"
  # The wheel carries a complete CMake install (bin/, share/cmake-X.Y/) under cmake/data.
  local data="$work/unpacked/cmake/data"
  [ -x "$data/bin/cmake" ] || die "unexpected layout of the $CMAKE_WHEEL wheel (no cmake/data/bin/cmake)"
  printf '%s\n' "$CMAKE_WHEEL" > "$data/.nm-toolchain-stamp"
  swap_in "$data" "$prefix"
  rm -rf "$work"
  trap - EXIT
  "$prefix/bin/cmake" --version >/dev/null 2>&1 || die "the PyPI cmake does not run"
  echo "$prefix/bin/cmake"
}

MODE=cuda
NCCL_MAJOR=""
FORCE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --force) FORCE=1 ;;
    --nccl-only)
      [ $# -ge 2 ] || die "--nccl-only needs the CUDA major version (12 or 13)"
      MODE=nccl
      NCCL_MAJOR="$2"
      shift
      ;;
    --cmake) MODE=cmake ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "install-cuda-toolchain: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

mkdir -p "$TOOLCHAIN_DIR"
case "$MODE" in
  cuda) install_cuda ;;
  nccl) install_nccl ;;
  cmake) install_cmake ;;
esac
