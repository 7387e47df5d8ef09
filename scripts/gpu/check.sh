#!/usr/bin/env bash
# GPU verification kit, step 2: one command on the GPU machine (nvcc, CMake, a CUDA toolkit,
# PyTorch, python3/make/g++; no Node.js, no network) that builds and checks the CUDA path and
# brings the numbers back. Needs .gpu-carry/ from scripts/gpu/prepare.sh. See docs/GPU.md.
#
#   bash scripts/gpu/check.sh [--dry-run] [--quick | --full-bench] [--steps=a,b,...]
#                             [--budget=SECONDS] [--out=DIR]
#
#   (default)     GPU mode: device 'cuda', results under $OUT (the device tool's output folder)
#   --dry-run     the same script here, on the CPU backend: no compute-sanitizer, no PyTorch;
#                 the CUDA module is still compiled when a toolkit is at hand (nvcc on PATH,
#                 CUDA_HOME, or this repo's .toolchain/cuda); smoke and loss-curve run on the
#                 host-emulated CUDA module (build-cuda-emu); quick benchmarks unless --full-bench
#   --quick       smaller benchmark shapes (1 layer of the 124M set, fewer tokens; the GPT-2 slots'
#                 'quick' shapes of scripts/gpu/reference/slots.json: 4 layers, fewer tokens and steps)
#   --steps=...   only these steps (and the steps they need); names as in the summary table
#   --budget=S    wall-clock budget in seconds (default 540 on the GPU, 1200 in a dry run): a step
#                 that cannot get its minimum time is skipped and says so; later steps still run
#   --out=DIR     where summary.md, results.json, gpu-section.md, BENCHMARKS.box.md and
#                 logs.tar.xz go (default: $OUT on the GPU machine, $NM_KIT_DIR/out in a dry run)
#
# Everything runs in a staging copy ($NM_KIT_DIR, default /tmp/nm-gpu-kit[-dry]/ws): the working
# tree plus the unpacked carry, so the repo itself is never modified and a dry run proves that
# the carried files suffice. Each step's status lands in the summary table (ok, FAIL, timeout,
# skipped: reason, pending: a slot for later work); a failed step does not stop the steps that do
# not depend on it. summary.md and logs.tar.xz are rewritten after every step, so a run cut off
# by the time limit still brings back what it did. The table is printed last. Exit status 1 when
# a step failed or timed out.
#
# Environment: NM_KIT_PYTHON (the python with torch for loss-curve; default python3),
# NM_KIT_DIR (staging folder), NM_CUDA_ARCHS (default 90), NM_KIT_TORCH_COMPILE=1
# (also time torch.compile'd NS5), NM_KIT_SANITIZER_SUITES (the jest files memcheck-jest runs),
# NM_KIT_DEVICE=cpu (test the kit's GPU-mode flow without a GPU; not a verification),
# NM_KIT_SLOT_PRESET=full|quick|dry (the GPT-2 slots' shapes, slots.json; default by mode: e.g.
# NM_KIT_DEVICE=cpu NM_KIT_SLOT_PRESET=dry runs GPU mode's slot flow, PyTorch included, on a CPU).
set -uo pipefail

SELF="$(readlink -f "${BASH_SOURCE[0]}")"
REPO_ROOT="$(cd "$(dirname "$SELF")/../.." && pwd)"

# ================================================================================================
# Steps. Each runs as `bash check.sh __step NAME` in a child, under `timeout`, cwd $WS, output to
# $LOGS/NAME.log. Exit 0 = ok, 75 = skipped (reason in $LOGS/NAME.note), anything else = FAIL.
# A step may write a one-line note to $LOGS/NAME.note for the summary.
# ================================================================================================
note() { printf '%s\n' "$*" > "$LOGS/$STEP.note"; }

step_build-ts() {
  node node_modules/typescript/bin/tsc -p tsconfig.build.json || return 1
  note "dist/ compiled ($(find dist -name '*.js' | wc -l) files)"
}

step_build-addon() {
  rm -rf build
  # scripts/install.js is the package's own source-build path; the carried node-gyp and headers.
  npm_config_nodedir="$TOOLS/nodedir" npm_config_node_gyp="$TOOLS/gyp/node_modules/node-gyp/bin/node-gyp.js" \
    npm_config_devdir="$TOOLS/gyp-devdir" node scripts/install.js --build-from-source || return 1
  local addon
  addon="$(node -p "require('node-gyp-build').resolve('.')")" || return 1
  node -e "require('node-gyp-build')('.')" || { echo "the built addon does not load"; return 1; }
  note "$(basename "$addon"), $(du -k "$addon" | cut -f1) KiB, $(g++ --version | head -n1)"
}

find_cuda_root() {
  local nvcc=""
  if [ -n "${CUDAToolkit_ROOT:-}" ]; then nvcc="$CUDAToolkit_ROOT/bin/nvcc"
  elif [ -n "${CUDA_HOME:-}" ]; then nvcc="$CUDA_HOME/bin/nvcc"
  elif command -v nvcc >/dev/null 2>&1; then nvcc="$(command -v nvcc)"
  elif [ -x /usr/local/cuda/bin/nvcc ]; then nvcc=/usr/local/cuda/bin/nvcc
  elif [ "$MODE" = dry ] && [ -x "$REPO_ROOT/.toolchain/cuda/bin/nvcc" ]; then nvcc="$REPO_ROOT/.toolchain/cuda/bin/nvcc"
  fi
  [ -n "$nvcc" ] && [ -x "$nvcc" ] || return 1
  (cd "$(dirname "$(readlink -f "$nvcc")")/.." && pwd)
}

# NCCL: next to the toolkit or in the system paths (what build-cuda.sh checks), else the
# nvidia-nccl wheel PyTorch installs (include/nccl.h + lib/libnccl.so.2, no libnccl.so: linked
# through a small folder of symlinks). build-cuda.sh would otherwise try PyPI (no network there).
find_nccl() {
  local d
  for d in "${NCCL_ROOT:-}" "${NCCL_HOME:-}" "$1" /usr /usr/local /usr/local/nccl; do
    [ -n "$d" ] && [ -f "$d/include/nccl.h" ] || continue
    if [ -e "$d/lib/libnccl.so" ] || [ -e "$d/lib64/libnccl.so" ] || [ -e "$d/lib/x86_64-linux-gnu/libnccl.so" ]; then
      echo "$d"; return 0
    fi
  done
  local wheel
  wheel="$(python3 - <<'PY' 2>/dev/null
import glob, os, site, sys
roots = []
for get in (lambda: list(__import__("nvidia.nccl").nccl.__path__), site.getsitepackages, lambda: [site.getusersitepackages()],
            lambda: [os.path.dirname(os.path.dirname(__import__("torch").__file__))]):
    try:
        roots += [p for p in get() if p]
    except Exception:
        pass
for r in roots:
    for d in [r] + glob.glob(os.path.join(r, 'nvidia', 'nccl')):
        if os.path.isfile(os.path.join(d, 'include', 'nccl.h')) and glob.glob(os.path.join(d, 'lib', 'libnccl.so*')):
            print(d); sys.exit(0)
PY
)"
  [ -n "$wheel" ] || return 1
  local shim="$TOOLS/nccl" lib
  rm -rf "$shim"; mkdir -p "$shim/lib"
  ln -s "$wheel/include" "$shim/include"
  lib="$(ls "$wheel"/lib/libnccl.so* | head -n1)"
  ln -s "$lib" "$shim/lib/libnccl.so"
  ln -s "$lib" "$shim/lib/libnccl.so.2"
  echo "$shim"
}

step_build-cuda() {
  local cuda nccl
  if ! cuda="$(find_cuda_root)"; then
    if [ "$MODE" = dry ]; then note "no CUDA toolkit here (nvcc, CUDA_HOME, .toolchain/cuda)"; return 75; fi
    echo "no nvcc: not on PATH, no CUDA_HOME/CUDAToolkit_ROOT, no /usr/local/cuda"; return 1
  fi
  if ! nccl="$(find_nccl "$cuda")"; then
    echo "NCCL not found: no include/nccl.h + libnccl.so under NCCL_ROOT, $cuda, /usr, /usr/local, nor a python nvidia-nccl wheel"
    return 1
  fi
  echo "toolkit $cuda, NCCL $nccl"
  rm -rf build-cuda
  PATH="$cuda/bin:$PATH" CUDAToolkit_ROOT="$cuda" NCCL_ROOT="$nccl" NM_CMAKE_DIRECT=1 NM_VERBOSE=1 \
    NM_CUDA_ARCHS="${NM_CUDA_ARCHS:-90}" NM_BUILD_JOBS="$(nproc)" bash scripts/build-cuda.sh || return 1
  local so=build-cuda/Release/newton_muon_cuda.so
  nm -D --defined-only "$so" | grep -q ' nm_cuda_backend_ops$' || { echo "$so lacks nm_cuda_backend_ops"; return 1; }
  nm -D --defined-only "$so" | grep -q ' nm_cuda_comm_ops$' || { echo "$so lacks nm_cuda_comm_ops (NCCL collectives)"; return 1; }
  ldd "$so"
  if ldd "$so" | grep -q 'not found'; then echo "$so has unresolved libraries (above)"; return 1; fi
  note "CUDA $("$cuda/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), sm ${NM_CUDA_ARCHS:-90}, NCCL from $nccl"
}

# In a dry run the steps that exercise the CUDA code paths (smoke, loss-curve) run on the
# host-emulated module (npm run build:cuda-emu, docs/GPU.md "The emulated module") as device
# 'cuda', so the kit's CUDA flow runs end to end before a GPU sees it. Not a GPU result.
EMU_MODULE=build-cuda-emu/newton_muon_cuda_emu.so

step_build-cuda-emu() {
  if [ "$MODE" != dry ]; then note "GPU mode: the real module is checked"; return 75; fi
  bash scripts/build-cuda-emu.sh || return 1
  note "$EMU_MODULE: $(wc -l < build-cuda-emu/module-entry-points.txt) library entry points; smoke, dist and loss-curve run on it"
}

# The device of the CUDA steps: the emulated module in a dry run, else $DEV.
cuda_step_device() { if [ "$MODE" = dry ]; then echo cuda; else echo "$DEV"; fi; }
run_cuda_step() {  # run_cuda_step CMD...: CMD with the emulated module as 'cuda' in a dry run
  if [ "$MODE" = dry ]; then NM_CUDA_MODULE="$WS/$EMU_MODULE" "$@"; else "$@"; fi
}

step_cuda-load() {
  node -e '
    const nm = require(".");
    const list = nm.devices();
    for (const d of list) console.log(JSON.stringify(d));
    const cuda = list.find((d) => d.name === "cuda");
    const text = cuda.available ? `cuda: ${cuda.details.name} (cc ${cuda.details.computeCapability}), driver ${cuda.details.driverVersion}, runtime ${cuda.details.runtimeVersion}` : `cuda unavailable: ${cuda.reason}`;
    require("fs").writeFileSync(process.argv[1], text.slice(0, 300) + "\n");
    process.exit(cuda.available || process.argv[2] === "cpu" ? 0 : 1);
  ' "$LOGS/$STEP.note" "$DEV"
}

step_smoke() {
  local quick=(); [ "$QUICK" = 1 ] && [ "$MODE" = dry ] && quick=(--quick)
  run_cuda_step node scripts/gpu/smoke.js --device="$(cuda_step_device)" "${quick[@]}" --json="$LOGS/smoke.json"
  local rc=$?
  note "$(grep '^smoke: .* ok, ' "$LOGS/$STEP.log" | tail -n1 | sed 's/^smoke: //')$(grep -q '^FAIL  memory' "$LOGS/$STEP.log" && echo '; memory left allocated')$([ "$MODE" = dry ] && echo ' (emulated CUDA module)')"
  return $rc
}

step_jest() {
  NM_TEST_DEVICE="$DEV" node node_modules/jest/bin/jest.js --ci --json --outputFile="$LOGS/jest.json" \
    --cacheDirectory="$KIT_DIR/jest-cache"
  local rc=$?
  [ -f "$LOGS/jest.json" ] && node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const failed = [];
    for (const f of r.testResults) for (const t of f.assertionResults) if (t.status === "failed") failed.push(t.fullName);
    const broken = r.testResults.filter((f) => f.status === "failed" && f.assertionResults.length === 0).map((f) => require("path").basename(f.name));
    let s = `${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests} skipped (${r.numTotalTestSuites} suites)`;
    if (broken.length) s += `; suites that did not run: ${broken.join(", ")}`;
    if (failed.length) s += `; failing: ${failed.slice(0, 6).join(" | ")}${failed.length > 6 ? " | ..." : ""}`;
    require("fs").writeFileSync(process.argv[2], s + "\n");
  ' "$LOGS/jest.json" "$LOGS/$STEP.note"
  return $rc
}

find_sanitizer() {
  local cuda c
  cuda="$(find_cuda_root 2>/dev/null || true)"
  for c in "$(command -v compute-sanitizer 2>/dev/null)" "$cuda/bin/compute-sanitizer" "$cuda/compute-sanitizer/compute-sanitizer"; do
    [ -n "$c" ] && [ -x "$c" ] && { echo "$c"; return 0; }
  done
  return 1
}

sanitize() {  # sanitize TOOL CMD...: compute-sanitizer over CMD; note = its summary line
  local tool="$1"; shift
  if [ "$MODE" = dry ]; then note "dry run: no GPU"; return 75; fi
  local san; san="$(find_sanitizer)" || { echo "compute-sanitizer not found next to nvcc"; return 1; }
  "$san" --version | tail -n1
  "$san" --tool "$tool" --error-exitcode 86 --print-limit 40 --target-processes all "$@"
  local rc=$?
  local summary
  summary="$(grep -E '(ERROR|RACECHECK) SUMMARY' "$LOGS/$STEP.log" | tail -n1 | sed 's/^=*\s*//')"
  note "${summary:-no summary line (exit $rc)}"
  return $rc
}

step_memcheck() { sanitize memcheck node scripts/gpu/smoke.js --device="$DEV" --quick --json="$LOGS/memcheck-smoke.json"; }
step_racecheck() { sanitize racecheck node scripts/gpu/smoke.js --device="$DEV" --quick --json="$LOGS/racecheck-smoke.json"; }
step_memcheck-jest() {
  # shellcheck disable=SC2086
  NM_TEST_DEVICE="$DEV" sanitize memcheck node node_modules/jest/bin/jest.js --ci --runInBand \
    --cacheDirectory="$KIT_DIR/jest-cache" ${NM_KIT_SANITIZER_SUITES:-test/copy.test.ts test/reduce.test.ts test/optim-gram-cholesky.test.ts test/optim-newton-schulz.test.ts}
}

step_torch() {
  if [ "$MODE" = dry ]; then note "dry run: no PyTorch comparison"; return 75; fi
  local quick=(); [ "$QUICK" = 1 ] && quick=(--quick)
  python3 scripts/gpu/reference/torch_bench.py --cases scripts/gpu/reference/cases.json --device "$DEV" "${quick[@]}" \
    ${NM_KIT_TORCH_COMPILE:+--compile} --out "$LOGS/torch.json" || return 1
  note "$(node -e 'const r = require(process.argv[1]); console.log(`torch ${r.torch} (CUDA ${r.cuda}) on ${r.device}: ${Object.keys(r.results).length} results`)' "$LOGS/torch.json")"
}

step_compare() {
  local extra=(); [ "$QUICK" = 1 ] && extra+=(--quick)
  [ -f "$LOGS/torch.json" ] && extra+=(--torch="$LOGS/torch.json")
  node bench/torch_compare.js --device="$DEV" --cases=scripts/gpu/reference/cases.json "${extra[@]}" \
    --json="$OUT/results.json" --section="$OUT/gpu-section.md" --env="$LOGS/env.txt" --manifest="$LOGS/manifest.json" --note="$LOGS/$STEP.note" || return 1
  # The section goes into this copy's docs/BENCHMARKS.md through bench/report.js, as it will here
  # (scripts/gpu/ingest.js) once the files are back: proves the section mechanism on the box.
  local dry=(); [ "$DEV" = cpu ] && dry=(--allow-dry)
  node scripts/gpu/ingest.js "$OUT" --quiet --sections=gpu "${dry[@]}"
}

step_bench() {
  if [ "$QUICK" = 1 ]; then
    node bench/run.js --quick --no-write
  else
    node bench/run.js && cp docs/BENCHMARKS.md "$OUT/BENCHMARKS.box.md"
  fi
  local rc=$?
  note "$(grep -c -E '^(gemm|optim) ' "$LOGS/$STEP.log") measurements$([ "$QUICK" = 1 ] && echo ' (quick, not written)')$([ -f "$OUT/BENCHMARKS.box.md" ] && echo '; sections in BENCHMARKS.box.md')"
  return $rc
}

# The GPT-2 slots (docs/GPU.md, "The GPT-2 slots"): shapes per mode in scripts/gpu/reference/slots.json
# (full on the GPU, quick with --quick, dry in a dry run); scripts/gpu/slots.js merges the numbers
# into results.json and writes gpt2-section.md (the 'gpu-gpt2' section of docs/BENCHMARKS.md).
slot_preset() {
  if [ -n "${NM_KIT_SLOT_PRESET:-}" ]; then echo "$NM_KIT_SLOT_PRESET"
  elif [ "$MODE" = dry ]; then echo dry; elif [ "$QUICK" = 1 ]; then echo quick; else echo full; fi
}

slot_report() {  # slot_report: results.json + gpt2-section.md + this step's note; the section into this copy's BENCHMARKS.md
  node scripts/gpu/slots.js --logs="$LOGS" --out="$OUT" --note="$LOGS/$STEP.note" --slot="$STEP" --quiet || return 1
  local dry=(); [ "$DEV" = cpu ] && dry=(--allow-dry)
  node scripts/gpu/ingest.js "$OUT" --quiet --sections=gpu-gpt2 "${dry[@]}"
}

step_gpt2-fwd-bwd() {
  local preset limit t0 left rc=0
  preset="$(slot_preset)"; limit="${NM_KIT_STEP_LIMIT:-300}"; t0=$(date +%s)
  # Ours first (2/5 of the step's time at most), then PyTorch with the rest: eager, then
  # torch.compile (compiling forward + backward takes a minute or more).
  node bench/gpt2_fwd_bwd.js --device="$DEV" --preset="$preset" --budget=$(( limit * 2 / 5 )) --json="$LOGS/gpt2-ours.json" || rc=1
  if [ "$MODE" = dry ]; then
    echo "dry run: no PyTorch side"
  else
    left=$(( limit - ($(date +%s) - t0) - 15 ))
    if [ "$left" -lt 30 ]; then
      echo "no time left for the PyTorch side (${left}s)"; rc=1
    else
      timeout -k 5 "$left" python3 scripts/gpu/reference/gpt2_bench.py --preset "$preset" --device "$DEV" --budget "$left" \
        --out "$LOGS/gpt2-torch.json"
      local prc=$?
      [ "$prc" = 0 ] || { echo "gpt2_bench.py: exit $prc$([ "$prc" = 124 ] && echo ' (its time limit)')"; rc=1; }
    fi
  fi
  slot_report || rc=1
  return $rc
}

step_train-124m() {
  local preset limit rc=0
  preset="$(slot_preset)"; limit="${NM_KIT_STEP_LIMIT:-420}"
  node bench/train_steps.js --device="$DEV" --preset="$preset" --budget=$(( limit - 30 )) --tmp="$KIT_DIR/train-data" \
    --metrics-to="$LOGS" --json="$LOGS/train-ours.json" || rc=1
  slot_report || rc=1
  return $rc
}

step_loss-curve() {
  # Our trainer vs scripts/reference/train.py on the tiny job (scripts/gpu/loss_curve.js): 200
  # steps on the GPU (100 with --quick), judged against the reference's own bf16-vs-fp32 noise;
  # in a dry run 4 steps on the CPU against float64 when NM_KIT_PYTHON names a python with torch.
  local steps=()
  [ "$QUICK" = 1 ] && steps=(--steps=100)
  [ "$MODE" = dry ] && steps=(--steps=4 --reference-device=cpu)
  run_cuda_step node scripts/gpu/loss_curve.js --device="$(cuda_step_device)" --python="${NM_KIT_PYTHON:-python3}" "${steps[@]}" \
    --work="$KIT_DIR/loss-curve" --json="$LOGS/loss-curve.json" --markdown="$LOGS/loss-curve.md" --note="$LOGS/$STEP.note"
}

# Data parallel (docs/DISTRIBUTED.md): the collectives against values formed on the host, on NCCL in
# GPU mode (a group of one on GPU 0, and one rank per GPU when there are several) or on Gloo in a dry
# run (two CPU ranks), then a few training steps with --nproc-per-node against a plain run.
step_dist() {
  local world=2
  if [ "$DEV" = cuda ]; then
    world="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')" || world=1
    [ "$world" -ge 1 ] 2>/dev/null || world=1
  fi
  echo "ranks: $world ($([ "$DEV" = cuda ] && echo nccl || echo gloo))"
  NM_TEST_DEVICE="$DEV" NM_TEST_WORLD="$world" NM_TEST_DIST=1 node node_modules/jest/bin/jest.js --ci --runInBand \
    --cacheDirectory="$KIT_DIR/jest-cache" test/dist-collectives.test.ts || { note "collectives: jest failed (see the log)"; return 1; }
  node scripts/gpu/dist_train.js --device="$DEV" --world="$world" --work="$KIT_DIR/dist-train" --json="$LOGS/dist-train.json" \
    --note="$LOGS/$STEP.note" || return 1
  [ "$MODE" = dry ] || return 0
  # A dry run also takes the GPU run's NCCL path, on the emulated module (its NCCL runs groups of
  # one): the collectives suite on 'cuda' with one rank, then one rank of newton-muon-train
  # --device cuda against a plain run, which must agree bit for bit.
  echo "ranks: 1 (nccl, emulated CUDA module)"
  run_cuda_step env NM_TEST_DEVICE=cuda NM_TEST_WORLD=1 NM_TEST_DIST=1 node node_modules/jest/bin/jest.js --ci --runInBand \
    --cacheDirectory="$KIT_DIR/jest-cache" test/dist-collectives.test.ts \
    || { note "$(cat "$LOGS/$STEP.note"); nccl (emulated): collectives: jest failed (see the log)"; return 1; }
  local gloo_note; gloo_note="$(cat "$LOGS/$STEP.note")"
  run_cuda_step node scripts/gpu/dist_train.js --device=cuda --world=1 --work="$KIT_DIR/dist-train-emulated" \
    --json="$LOGS/dist-train-emulated.json" --note="$LOGS/$STEP.note"
  local rc=$?
  note "$gloo_note; $(cat "$LOGS/$STEP.note") (emulated CUDA module)"
  return $rc
}

if [ "${1:-}" = "__step" ]; then
  STEP="$2"
  cd "$WS" || exit 1
  started=$(date +%s)
  "step_$STEP"
  rc=$?
  echo $(( $(date +%s) - started )) > "$LOGS/$STEP.seconds"
  exit $rc
fi

# ================================================================================================
# The driver.
# ================================================================================================
MODE=gpu
QUICK=""
SELECTED=""
BUDGET=""
OUT_ARG=""
for arg in "$@"; do
  case "$arg" in
    --dry-run) MODE=dry ;;
    --quick) QUICK=1 ;;
    --full-bench) QUICK=0 ;;
    --steps=*) SELECTED="${arg#*=}" ;;
    --budget=*) BUDGET="${arg#*=}" ;;
    --out=*) OUT_ARG="${arg#*=}" ;;
    -h|--help) sed -n '2,30p' "$SELF"; exit 0 ;;
    *) echo "check.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$MODE" = dry ]; then DEV=cpu; QUICK="${QUICK:-1}"; BUDGET="${BUDGET:-1200}"
else DEV=cuda; QUICK="${QUICK:-0}"; BUDGET="${BUDGET:-540}"; fi
# Testing the kit itself without a GPU: NM_KIT_DEVICE=cpu runs GPU mode's steps on the CPU backend
# (PyTorch on the CPU; put a stand-in compute-sanitizer on PATH). Not a verification.
DEV="${NM_KIT_DEVICE:-$DEV}"

KIT_DIR="${NM_KIT_DIR:-${TMPDIR:-/tmp}/nm-gpu-kit$([ "$MODE" = dry ] && echo -dry)}"
if [ -n "$OUT_ARG" ]; then OUT="$OUT_ARG"
elif [ "$MODE" = gpu ] && [ -n "${OUT:-}" ]; then :
else OUT="$KIT_DIR/out"; fi
WS="$KIT_DIR/ws"
TOOLS="$KIT_DIR/tools"
LOGS="$KIT_DIR/logs"
CARRY="$REPO_ROOT/.gpu-carry"
T0=$(date +%s)

mkdir -p "$KIT_DIR" "$OUT" || { echo "check.sh: cannot create $KIT_DIR or $OUT" >&2; exit 1; }
rm -rf "$LOGS" "$WS"
[ "$OUT" = "$KIT_DIR/out" ] && rm -rf "${OUT:?}"/*  # only the kit's own output folder is cleared
mkdir -p "$LOGS" "$WS" "$TOOLS/bin"
STEPS_TSV="$LOGS/steps.tsv"
: > "$STEPS_TSV"

export MODE DEV QUICK KIT_DIR WS TOOLS LOGS OUT REPO_ROOT
export PATH="$TOOLS/bin:$PATH"
export PIP_NO_INDEX=1  # no network there: bench/python.js must not wait on PyPI (it skips numpy instead)

# Step table: name | needs | timeout s | minimum s | what
STEP_ORDER=(build-ts build-addon build-cuda build-cuda-emu cuda-load smoke jest dist memcheck racecheck torch compare bench memcheck-jest gpt2-fwd-bwd train-124m loss-curve)
declare -A NEEDS=(
  [build-ts]="" [build-addon]="" [build-cuda]="" [build-cuda-emu]="" [cuda-load]="build-ts build-addon"
  [smoke]="cuda-load" [jest]="cuda-load" [memcheck]="cuda-load" [racecheck]="cuda-load" [torch]=""
  [compare]="cuda-load" [memcheck-jest]="cuda-load" [bench]="cuda-load"
  [gpt2-fwd-bwd]="cuda-load" [train-124m]="cuda-load" [loss-curve]="cuda-load" [dist]="cuda-load"
)
declare -A TIMEOUT=(
  [build-ts]=180 [build-addon]=300 [build-cuda]=360 [build-cuda-emu]=300 [cuda-load]=60 [smoke]=150 [jest]=300
  [memcheck]=150 [racecheck]=150 [torch]=180 [compare]=180 [memcheck-jest]=180 [bench]=240
  [gpt2-fwd-bwd]=300 [train-124m]=420 [loss-curve]=300 [dist]=240
)
declare -A MINIMUM=(
  [build-ts]=20 [build-addon]=40 [build-cuda]=40 [build-cuda-emu]=30 [cuda-load]=5 [smoke]=20 [jest]=60
  [memcheck]=30 [racecheck]=30 [torch]=30 [compare]=30 [memcheck-jest]=60 [bench]=60
  [gpt2-fwd-bwd]=120 [train-124m]=150 [loss-curve]=90 [dist]=60
)
declare -A STATUS=()
[ "$MODE" = gpu ] && NEEDS[build-cuda]="" && NEEDS[cuda-load]="build-ts build-addon build-cuda"
[ "$MODE" = dry ] && NEEDS[smoke]="cuda-load build-cuda-emu" && NEEDS[loss-curve]="cuda-load build-cuda-emu" \
  && NEEDS[dist]="cuda-load build-cuda-emu"
# On the emulated module our side of the loss curve takes minutes (kernels on 2 CPU cores).
[ "$MODE" = dry ] && TIMEOUT[loss-curve]=900

# --steps: the named steps plus, recursively, what they need.
declare -A WANTED=()
want() { local s; for s in "$@"; do [ -n "${WANTED[$s]:-}" ] && continue; WANTED[$s]=1; want ${NEEDS[$s]}; done; }
if [ -n "$SELECTED" ]; then
  for s in ${SELECTED//,/ }; do
    [ -n "${TIMEOUT[$s]:-}" ] || { echo "check.sh: unknown step '$s' (steps: ${STEP_ORDER[*]})" >&2; exit 2; }
    want "$s"
  done
else
  for s in "${STEP_ORDER[@]}"; do WANTED[$s]=1; done
fi

elapsed() { echo $(( $(date +%s) - T0 )); }
record() {  # record NAME STATUS SECONDS NOTE
  STATUS[$1]="$2"
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(printf '%s' "$4" | tr '\t\n' '  ' | cut -c1-400)" >> "$STEPS_TSV"
}

write_summary() {
  cp "$CARRY/manifest.json" "$LOGS/manifest.json" 2>/dev/null || true
  if command -v node >/dev/null 2>&1 && [ -f "$WS/scripts/gpu/summarize.js" ]; then
    node "$WS/scripts/gpu/summarize.js" --logs="$LOGS" --out="$OUT" --mode="$MODE" --elapsed="$(elapsed)" >/dev/null 2>"$LOGS/summarize.err" \
      && { tar -C "$LOGS" -cJf "$OUT/logs.tar.xz" . 2>/dev/null; return 0; }
  fi
  # No node (unpacking failed): a plain table.
  { echo "# GPU kit summary ($MODE)"; echo; echo '| step | status | s | note |'; echo '|---|---|---|---|'
    while IFS=$'\t' read -r n s t x; do echo "| $n | $s | $t | $x |"; done < "$STEPS_TSV"; } > "$OUT/summary.md"
  tar -C "$LOGS" -cJf "$OUT/logs.tar.xz" . 2>/dev/null
}

# run_steps NAME...: runs the named steps concurrently (each under its own timeout), then records.
run_steps() {
  local name pids=() names=() starts=() need bad left limit
  for name in "$@"; do
    [ -n "${WANTED[$name]:-}" ] || continue
    bad=""
    for need in ${NEEDS[$name]}; do
      [ "${STATUS[$need]:-}" = ok ] || { bad="needs $need (${STATUS[$need]:-not run})"; break; }
    done
    if [ -n "$bad" ]; then record "$name" "skipped" 0 "$bad"; continue; fi
    left=$(( BUDGET - $(elapsed) ))
    if [ "$left" -lt "${MINIMUM[$name]}" ]; then
      record "$name" "skipped" 0 "time budget: ${left}s left of ${BUDGET}s, needs ${MINIMUM[$name]}s (run it with --steps=$name)"; continue
    fi
    limit=${TIMEOUT[$name]}; [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (limit ${limit}s)"
    NM_KIT_STEP_LIMIT="$limit" timeout -k 10 "$limit" bash "$SELF" __step "$name" > "$LOGS/$name.log" 2>&1 &
    pids+=($!); names+=("$name"); starts+=("$(date +%s)")
  done
  local i rc status text took
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}"; rc=$?
    name="${names[$i]}"
    took="$(cat "$LOGS/$name.seconds" 2>/dev/null || echo $(( $(date +%s) - ${starts[$i]} )))"
    case $rc in
      0) status=ok ;;
      75) status=skipped ;;
      124|137) status=timeout ;;
      *) status=FAIL ;;
    esac
    text="$(cat "$LOGS/$name.note" 2>/dev/null)"
    if [ "$status" = FAIL ] && [ -z "$text" ]; then text="exit $rc: $(grep -v '^\s*$' "$LOGS/$name.log" | tail -n 2 | tr '\n' ' ' | cut -c1-300)"; fi
    [ "$status" = timeout ] && text="killed after its limit${text:+; $text}"
    record "$name" "$status" "$took" "$text"
    echo "   $name: $status (${took}s) $text"
  done
  write_summary
}

# ---- unpack ---------------------------------------------------------------------------------
unpack() {
  [ -f "$CARRY/manifest.json" ] || { echo "no .gpu-carry/manifest.json: run scripts/gpu/prepare.sh here first (and carry .gpu-carry)"; return 1; }
  local f want got
  for f in node.xz node_modules.tar.xz node-gyp.tar.xz nodedir.tar.xz; do
    want="$(sed -n "/\"$f\"/,/}/s/.*\"sha256\": \"\([0-9a-f]*\)\".*/\1/p" "$CARRY/manifest.json" | head -n1)"
    got="$(sha256sum "$CARRY/$f" 2>/dev/null | cut -d' ' -f1)"
    [ -n "$want" ] && [ "$want" = "$got" ] || { echo ".gpu-carry/$f is missing or does not match manifest.json (rerun prepare.sh)"; return 1; }
  done
  xz -dc "$CARRY/node.xz" > "$TOOLS/bin/node" && chmod +x "$TOOLS/bin/node" || return 1
  "$TOOLS/bin/node" --version || { echo "the carried node does not run here (glibc: $(ldd --version | head -n1))"; return 1; }
  # The working tree as the device tool copies it: git's view when there is one (a dry run),
  # else everything but ignored build outputs (the GPU machine gets no .git).
  if git -C "$REPO_ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$REPO_ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' _ \
      | tar --null -T - -cf -) | tar -C "$WS" -xf - || return 1
  else
    tar -C "$REPO_ROOT" --exclude=./node_modules --exclude=./build --exclude=./build-cuda --exclude=./dist \
      --exclude=./prebuilds --exclude=./.toolchain --exclude=./.gpu-carry --exclude=./.bench --exclude=./.git -cf - . \
      | tar -C "$WS" -xf - || return 1
  fi
  tar -C "$WS" -xJf "$CARRY/node_modules.tar.xz" || return 1
  mkdir -p "$TOOLS/gyp" "$TOOLS/nodedir" && tar -C "$TOOLS/gyp" -xJf "$CARRY/node-gyp.tar.xz" && tar -C "$TOOLS/nodedir" -xJf "$CARRY/nodedir.tar.xz" || return 1
  echo "workspace $WS: $(find "$WS" -type f -not -path '*/node_modules/*' | wc -l) tree files, $(find "$WS/node_modules" -type f | wc -l) node_modules files"
}

facts() {  # machine facts for the summary, key: value
  {
    echo "mode: $MODE"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(uname -srm); $(nproc) cores; $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
    echo "glibc: $(ldd --version 2>/dev/null | head -n1 | awk '{print $NF}')"
    echo "node: $(node --version 2>/dev/null || echo none)"
    echo "g++: $(g++ --version 2>/dev/null | head -n1)"
    echo "python: $(python3 --version 2>&1)"
    echo "cmake: $(cmake --version 2>/dev/null | head -n1)"
    local cuda; cuda="$(find_cuda_root 2>/dev/null || true)"
    echo "nvcc: ${cuda:+$("$cuda/bin/nvcc" --version | grep -i release | sed 's/.*release //')} ${cuda:-none}"
    if command -v nvidia-smi >/dev/null 2>&1; then
      echo "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -n1)"
      echo "driver-cuda: $(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -n1)"
    else
      echo "gpu: none (no nvidia-smi)"
    fi
    echo "torch: $(timeout 60 python3 -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda, "available" if torch.cuda.is_available() else "no GPU")' 2>/dev/null || echo 'not importable')"
    echo "compute-sanitizer: $(find_sanitizer 2>/dev/null || echo none)"
  } > "$LOGS/env.txt" 2>/dev/null
}

echo "GPU kit: $MODE mode, device $DEV, $([ "$QUICK" = 1 ] && echo quick || echo full) benchmarks, budget ${BUDGET}s; workspace $KIT_DIR, output $OUT"
start=$(date +%s)
if unpack > "$LOGS/unpack.log" 2>&1; then
  record unpack ok $(( $(date +%s) - start )) "$(tail -n1 "$LOGS/unpack.log")"
else
  record unpack FAIL $(( $(date +%s) - start )) "$(tail -n1 "$LOGS/unpack.log")"
fi
echo "   unpack: ${STATUS[unpack]} $(tail -n1 "$LOGS/unpack.log")"
facts
write_summary
if [ "${STATUS[unpack]}" = ok ]; then
  # Steps on one line run concurrently: the builds, and the correctness checks (no timings
  # there). The timed steps (torch, compare, bench, gpt2-fwd-bwd, train-124m) run alone.
  # memcheck-jest, the slowest and the least needed (the smoke under memcheck already covers
  # every op), follows bench; the GPT-2 slots, long and usually run in their own call
  # (--steps=gpt2-fwd-bwd,train-124m,loss-curve), come last.
  run_steps build-ts build-addon build-cuda build-cuda-emu
  run_steps cuda-load
  run_steps smoke
  run_steps jest memcheck racecheck
  run_steps dist
  for s in torch compare bench memcheck-jest gpt2-fwd-bwd train-124m loss-curve; do run_steps "$s"; done
fi
write_summary

echo
node "$WS/scripts/gpu/summarize.js" --logs="$LOGS" --out="$OUT" --mode="$MODE" --elapsed="$(elapsed)" --print 2>/dev/null \
  || cat "$OUT/summary.md"
echo
echo "files: $(cd "$OUT" && ls | tr '\n' ' ')(in $OUT)"
if cut -f2 "$STEPS_TSV" | grep -q -E '^(FAIL|timeout)$'; then exit 1; fi
exit 0
