#!/usr/bin/env bash
# Packaging test (`npm run test:package`, run by CI after `npm run prebuild`): what a user gets
# from `npm install newton-muon` on a machine without a compiler.
#
#   1. npm pack; the tarball holds exactly what users need (see "files" in package.json).
#   2. Install it into an empty folder with PATH reduced to node, npm and a few basic tools (no
#      cc, gcc, g++, make, python3) and npm_config_nodedir pointing at nothing, so any attempt to
#      build from source fails loudly instead of passing by accident.
#   3. From that folder: require('newton-muon') and a tensor round trip, the typings compile,
#      devices() explains CUDA, `newton-muon/tfjs` with @tensorflow/tfjs installed next to it,
#      `npx newton-muon-train --help` and the default job.
#
# Needs prebuilds/linux-x64/ (npm run prebuild). NM_KEEP_PACKAGE_TEST=1 keeps the temp folder.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/nm-package-test.XXXXXX")"
if [ "${NM_KEEP_PACKAGE_TEST:-0}" = "1" ]; then
  echo "package: keeping $WORK"
else
  trap 'rm -rf "$WORK"' EXIT
fi

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "package: ok   $*"; }
fail() { failed=$((failed + 1)); echo "package: FAIL $*" >&2; }
die() { echo "package: error: $*" >&2; echo "package: $passed passed, $((failed + 1)) failed"; exit 1; }

ADDON="$(ls prebuilds/linux-x64/*.node 2>/dev/null | head -n 1 || true)"
[ -n "$ADDON" ] || die "no prebuilt addon in prebuilds/linux-x64/; run \`npm run prebuild\` first"
HAVE_CUDA_MODULE=0
[ -f prebuilds/linux-x64/newton_muon_cuda.so ] && HAVE_CUDA_MODULE=1
HAVE_GLOO_MODULE=0
[ -f prebuilds/linux-x64/newton_muon_gloo.so ] && HAVE_GLOO_MODULE=1

# ---- 1. npm pack ---------------------------------------------------------------------------------
echo "== npm pack"
npm pack --pack-destination "$WORK" --json --foreground-scripts=false > "$WORK/pack.json" 2> "$WORK/pack.log" \
  || { cat "$WORK/pack.log" >&2; die "npm pack failed"; }
TARBALL="$WORK/$(node -p 'require(process.argv[1])[0].filename' "$WORK/pack.json")"
[ -f "$TARBALL" ] || die "npm pack did not write $TARBALL"
node - "$WORK/pack.json" <<'JS'
const [info] = require(process.argv[2]);
const mib = (n) => `${(n / 1024 / 1024).toFixed(2)} MiB`;
console.log(`package: ${info.filename}: ${mib(info.size)} packed, ${mib(info.unpackedSize)} unpacked, ${info.entryCount} files`);
for (const f of info.files.sort((a, b) => a.path.localeCompare(b.path))) {
  console.log(`  ${String(f.size).padStart(9)}  ${f.path}`);
}
JS

# The file list: everything required is there, nothing else is.
if node - "$WORK/pack.json" "$HAVE_CUDA_MODULE" <<'JS'
const fs = require('fs');
const path = require('path');
const [info] = require(process.argv[2]);
const haveCuda = process.argv[3] === '1';
const files = new Set(info.files.map((f) => f.path));
const problems = [];
const required = ['package.json', 'README.md', 'LICENSE', 'binding.gyp', 'scripts/install.js',
  'dist/index.js', 'dist/index.d.ts', 'dist/cli/train.js', 'docs/GPU.md'];
for (const f of fs.readdirSync('prebuilds/linux-x64')) required.push(`prebuilds/linux-x64/${f}`);
if (haveCuda && !files.has('prebuilds/linux-x64/newton_muon_cuda.so')) problems.push('the CUDA module is not packed');
for (const f of required) if (!files.has(f)) problems.push(`missing ${f}`);
// Every compiled file comes from a current source in lib/ (no stale dist/ output is shipped).
const sources = new Set();
(function walk(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p); else if (e.name.endsWith('.ts')) sources.add(path.relative('lib', p).replace(/\.ts$/, ''));
  }
})('lib');
const allowed = [
  /^(package\.json|README\.md|LICENSE|binding\.gyp|scripts\/install\.js)$/,
  /^docs\/[^/]+\.md$/,
  /^prebuilds\/linux-x64\/[^/]+\.(node|so)$/,
  /^csrc\/(core|cpu|napi)\/[^/]+\.(h|cc)$/,
  /^dist\/.+\.(js|d\.ts)$/,
];
for (const f of files) {
  if (!allowed.some((re) => re.test(f))) problems.push(`unexpected ${f}`);
  const m = /^dist\/(.+?)(\.d\.ts|\.js)$/.exec(f);
  if (m && !sources.has(m[1])) problems.push(`stale ${f} (no lib/${m[1]}.ts)`);
}
for (const s of sources) {
  if (!files.has(`dist/${s}.js`)) problems.push(`missing dist/${s}.js`);
}
for (const p of problems) console.error(`package:   ${p}`);
process.exit(problems.length ? 1 : 0);
JS
then pass "the tarball holds exactly the expected files"; else fail "the tarball's file list (see above)"; fi

# ---- 2. install with no compiler ------------------------------------------------------------------
echo "== npm install of the tarball, compilers hidden"
BIN="$WORK/bin"
mkdir -p "$BIN"
ln -s "$(command -v node)" "$BIN/node"
NPM_CLI="$(readlink -f "$(command -v npm)")"
NPX_CLI="$(readlink -f "$(command -v npx)")"
ln -s "$NPM_CLI" "$BIN/npm"
ln -s "$NPX_CLI" "$BIN/npx"
for tool in sh bash env cat ls mkdir rm cp mv ln chmod dirname basename readlink uname grep sed \
            head tail tr wc sort; do
  where="$(command -v "$tool" || true)"
  [ -n "$where" ] && ln -s "$where" "$BIN/$tool"
done
hidden=1
for tool in cc c++ gcc g++ clang make cmake python3 python nvcc; do
  if PATH="$BIN" command -v "$tool" >/dev/null 2>&1; then hidden=0; fail "$tool is reachable on the reduced PATH"; fi
done
[ "$hidden" = 1 ] && pass "cc, c++, gcc, g++, clang, make, cmake, python3, python, nvcc are not on PATH"

APP="$WORK/app"
mkdir -p "$APP"
echo '{ "name": "nm-package-test", "version": "1.0.0", "private": true }' > "$APP/package.json"
# A clean environment: only what npm needs. The npm cache of this user is reused (offline when
# it can); the registry supplies the two runtime dependencies otherwise.
# npm_config_nodedir (set only for installs) names a folder that does not exist: a source build
# would stop at once saying there are no Node headers.
run_clean() {
  local dir="$1"; shift
  (cd "$dir" && env -i PATH="$BIN" HOME="$HOME" TMPDIR="${TMPDIR:-/tmp}" \
    npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false "$@")
}
install_clean() {
  local dir="$1"; shift
  run_clean "$dir" env npm_config_nodedir="$WORK/no-node-headers-here" \
    npm install --prefer-offline --foreground-scripts "$@" "$TARBALL"
}
if install_clean "$APP" > "$WORK/install.log" 2>&1; then
  pass "npm install of the tarball succeeded"
else
  cat "$WORK/install.log" >&2
  die "npm install of the tarball failed"
fi
grep -E '^newton-muon:' "$WORK/install.log" | sed 's/^/  /' || true
PKG="$APP/node_modules/newton-muon"
if grep -q "newton-muon: using prebuilds/linux-x64/$(basename "$ADDON")" "$WORK/install.log" && [ ! -e "$PKG/build" ]; then
  pass "the install used the prebuilt addon (no source build)"
else
  fail "the install did not use the prebuilt addon (see $WORK/install.log)"
fi
if [ ! -e "$APP/node_modules/typescript" ] && [ ! -e "$APP/node_modules/prebuildify" ]; then
  pass "no devDependencies (typescript, prebuildify) were installed"
else
  fail "devDependencies were installed into the app"
fi

# ---- 3. use it ------------------------------------------------------------------------------------
echo "== require('newton-muon') from the app"
cat > "$APP/roundtrip.js" <<'JS'
const assert = require('assert');
const nm = require('newton-muon');
(async () => {
  const values = [1, -2, 3.5, 4, 0.25, -6];
  const a = nm.tensor(new Float32Array(values), [2, 3]);
  const b = nm.add(a, a);
  assert.deepStrictEqual(Array.from(await b.read()), values.map((v) => 2 * v));
  const h = nm.cast(a, 'bf16');
  assert.deepStrictEqual(Array.from(await h.read()), values);
  const eye = nm.tensor(new Float32Array([1, 0, 0, 1, 0, 0]), [3, 2]);
  const c = nm.matmul(a, eye);
  assert.deepStrictEqual(Array.from(await c.read()), [1, -2, 4, 0.25]);
  for (const t of [a, b, h, eye, c]) t.dispose();
  await nm.synchronize();
  const { bytes, buffers, peakBytes } = nm.memoryStats().cpu;
  assert.deepStrictEqual({ bytes, buffers }, { bytes: 0, buffers: 0 });
  assert.ok(peakBytes >= 100, `peakBytes ${peakBytes} should count the 100 bytes that were live`);
  for (const d of nm.devices()) console.log(`device ${JSON.stringify(d)}`);
  for (const b of nm.processGroupBackends()) console.log(`backend ${JSON.stringify(b)}`);
  console.log('roundtrip ok');
})().catch((e) => { console.error(e); process.exit(1); });
JS
if run_clean "$APP" node roundtrip.js > "$WORK/roundtrip.log" 2>&1 && grep -q '^roundtrip ok$' "$WORK/roundtrip.log"; then
  pass "require('newton-muon') and a tensor round trip (f32, bf16, matmul, dispose)"
else
  fail "require / tensor round trip"
fi
sed 's/^/  /' "$WORK/roundtrip.log"

# CUDA: available on a GPU machine with the libraries; otherwise a precise reason that names the
# shipped module (never "not found" when it ships).
cuda_line="$(grep '^device {"name":"cuda"' "$WORK/roundtrip.log" || true)"
if [ "$HAVE_CUDA_MODULE" = 1 ]; then
  if echo "$cuda_line" | grep -q '"available":true' ||
     echo "$cuda_line" | grep -q 'node_modules/newton-muon/prebuilds/linux-x64/newton_muon_cuda.so'; then
    pass "devices() reports the shipped CUDA module (available, or why not)"
  else
    fail "devices() does not report the shipped CUDA module: $cuda_line"
  fi
else
  echo "package: note: no prebuilt CUDA module (NM_PREBUILD_CUDA=0?); skipping its check"
fi

# Gloo: the shipped module loads where libgloo0 is installed (CI installs it), else the reason
# names the missing library.
gloo_line="$(grep '^backend {"name":"gloo"' "$WORK/roundtrip.log" || true)"
if [ "$HAVE_GLOO_MODULE" = 1 ]; then
  if echo "$gloo_line" | grep -q 'node_modules/newton-muon/prebuilds/linux-x64/newton_muon_gloo.so'; then
    pass "processGroupBackends() reports the shipped Gloo module (available, or why not)"
  else
    fail "processGroupBackends() does not report the shipped Gloo module: $gloo_line"
  fi
else
  echo "package: note: no prebuilt Gloo module (NM_PREBUILD_GLOO=0?); skipping its check"
fi

cat > "$APP/typings.ts" <<'TS'
import { devices, tensor, matmul, type Tensor, type DeviceInfo } from 'newton-muon';
const list: DeviceInfo[] = devices();
const t: Tensor = matmul(tensor(new Float32Array(4), [2, 2]), tensor(new Float32Array(4), [2, 2]));
export const shape: readonly number[] = t.shape;
export const count: number = list.length;
TS
if (cd "$APP" && node "$REPO_ROOT/node_modules/typescript/bin/tsc" --noEmit --strict --skipLibCheck false \
      --types node --typeRoots "$REPO_ROOT/node_modules/@types" --module commonjs --target es2022 \
      --lib es2022,esnext.disposable typings.ts) > "$WORK/tsc.log" 2>&1; then
  pass "the shipped typings compile (tsc --strict against the installed package)"
else
  sed 's/^/  /' "$WORK/tsc.log"
  fail "the shipped typings do not compile"
fi

# The TensorFlow.js adapter: `newton-muon/tfjs` with @tensorflow/tfjs (an optional peer
# dependency, so the install above did not bring it) installed next to the package.
echo "== newton-muon/tfjs next to @tensorflow/tfjs"
if run_clean "$APP" node -e "require('newton-muon/tfjs')" > "$WORK/tfjs-missing.log" 2>&1; then
  fail "require('newton-muon/tfjs') worked without TensorFlow.js installed"
elif grep -q 'newton-muon/tfjs needs TensorFlow.js: `npm install @tensorflow/tfjs`' "$WORK/tfjs-missing.log"; then
  pass "without @tensorflow/tfjs, require('newton-muon/tfjs') says what to install"
else
  sed 's/^/  /' "$WORK/tfjs-missing.log"
  fail "require('newton-muon/tfjs') without TensorFlow.js: unexpected error"
fi
TFJS_VERSION="$(node -p "require('$REPO_ROOT/node_modules/@tensorflow/tfjs/package.json').version")"
if run_clean "$APP" npm install --prefer-offline --no-save "@tensorflow/tfjs@$TFJS_VERSION" > "$WORK/tfjs-install.log" 2>&1; then
  pass "npm install @tensorflow/tfjs@$TFJS_VERSION next to the package"
else
  tail -n 30 "$WORK/tfjs-install.log" | sed 's/^/  /'
  fail "npm install @tensorflow/tfjs@$TFJS_VERSION"
fi
cat > "$APP/tfjs.js" <<'JS'
const assert = require('assert');
const tf = require('@tensorflow/tfjs');
const { NewtonMuonOptimizer } = require('newton-muon/tfjs');
const { memoryStats } = require('newton-muon');
(async () => {
  const model = tf.sequential({ layers: [
    tf.layers.dense({ units: 16, inputShape: [6], activation: 'tanh', kernelInitializer: tf.initializers.glorotNormal({ seed: 1 }) }),
    tf.layers.dense({ units: 2, kernelInitializer: tf.initializers.glorotNormal({ seed: 2 }) }),
  ] });
  const optimizer = new NewtonMuonOptimizer({ lr: 0.01, refreshEvery: 2, device: 'cpu' }).attach(model);
  model.compile({ optimizer, loss: 'meanSquaredError' });
  const x = tf.randomNormal([32, 6], 0, 1, 'float32', 3);
  const y = tf.tanh(tf.matMul(x, tf.randomNormal([6, 2], 0, 1, 'float32', 4)));
  const before = model.getWeights()[0].dataSync().slice();
  const history = await model.fit(x, y, { batchSize: 8, epochs: 5, verbose: 0 });
  const losses = history.history.loss;
  assert.strictEqual(optimizer.iterations, 20);
  assert.ok(losses.every(Number.isFinite) && losses[4] < losses[0], `losses ${losses}`);
  assert.notDeepStrictEqual(Array.from(model.getWeights()[0].dataSync()), Array.from(before));
  let saved;
  await model.save(tf.io.withSaveHandler(async (a) => { saved = a; return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }; }), { includeOptimizer: true });
  const loaded = await tf.loadLayersModel(tf.io.fromMemory(saved));
  assert.ok(loaded.optimizer instanceof NewtonMuonOptimizer);
  assert.strictEqual(loaded.optimizer.iterations, 20);
  loaded.optimizer.attach(loaded);
  await loaded.fit(x, y, { batchSize: 8, epochs: 1, verbose: 0 });
  for (const o of [optimizer, loaded.optimizer]) {
    await o.flushReports();
    o.dispose();
  }
  console.log(`tfjs ${tf.version.tfjs} (${tf.getBackend()}): loss ${losses[0].toFixed(4)} -> ${losses[4].toFixed(4)} in 20 steps; saved, loaded, resumed; cpu bytes live after dispose ${memoryStats().cpu.bytes}`);
  console.log('tfjs ok');
})().catch((e) => { console.error(e); process.exit(1); });
JS
if run_clean "$APP" node tfjs.js > "$WORK/tfjs.log" 2>&1 && grep -q '^tfjs ok$' "$WORK/tfjs.log"; then
  pass "newton-muon/tfjs: NewtonMuonOptimizer trains a tfjs model through model.fit, saves, loads and resumes"
else
  fail "newton-muon/tfjs with @tensorflow/tfjs"
fi
grep -v -e '^$' -e '=====' -e 'Hi, looks like' "$WORK/tfjs.log" | sed 's/^/  /'
cat > "$APP/tfjs-typings.ts" <<'TS'
import * as tf from '@tensorflow/tfjs';
import { MuonOptimizer, NewtonMuonOptimizer, type NewtonMuonOptimizerOptions } from 'newton-muon/tfjs';
import { ArrayNewtonMuon } from 'newton-muon';
const options: NewtonMuonOptimizerOptions = { lr: 0.01, fallback: tf.train.adam(1e-3), device: 'auto' };
const model = tf.sequential({ layers: [tf.layers.dense({ units: 2, inputShape: [3] })] });
const optimizer: tf.Optimizer = new NewtonMuonOptimizer(options).attach(model, { layers: [model.layers[0].name] });
export const muon: tf.Optimizer = new MuonOptimizer({ lr: 0.02 });
export const plain = new ArrayNewtonMuon([{ weight: new Float32Array(6), shape: [2, 3] }], { lr: 0.01 });
model.compile({ optimizer, loss: 'meanSquaredError' });
TS
if (cd "$APP" && node "$REPO_ROOT/node_modules/typescript/bin/tsc" --noEmit --strict --skipLibCheck true \
      --types node --typeRoots "$REPO_ROOT/node_modules/@types" --module commonjs --target es2022 \
      --lib es2022,dom,esnext.disposable tfjs-typings.ts) > "$WORK/tsc-tfjs.log" 2>&1; then
  pass "the newton-muon/tfjs typings compile against @tensorflow/tfjs (tsc --strict, node10 resolution)"
else
  sed 's/^/  /' "$WORK/tsc-tfjs.log"
  fail "the newton-muon/tfjs typings do not compile"
fi

echo "== npx newton-muon-train"
if run_clean "$APP" npx --no-install newton-muon-train --help > "$WORK/help.log" 2>&1 &&
   grep -q '^Usage: newton-muon-train' "$WORK/help.log"; then
  pass "npx newton-muon-train --help"
else
  fail "npx newton-muon-train --help"
fi
sed 's/^/  /' "$WORK/help.log"
if run_clean "$APP" npx --no-install newton-muon-train --device cpu > "$WORK/job.log" 2>&1; then
  pass "npx newton-muon-train --device cpu (the default job)"
else
  fail "npx newton-muon-train --device cpu"
fi
sed 's/^/  /' "$WORK/job.log"

if [ "$HAVE_GLOO_MODULE" = 1 ] && echo "$gloo_line" | grep -q '"available":true'; then
  if run_clean "$APP" npx --no-install newton-muon-train --device cpu --nproc-per-node 2 --steps 3 --val-every 3 \
       --out runs/data-parallel > "$WORK/dp.log" 2>&1 && grep -q '^done: 3 steps' "$WORK/dp.log" && grep -q '2 ranks' "$WORK/dp.log"; then
    pass "npx newton-muon-train --nproc-per-node 2 (two Gloo ranks, the shipped modules)"
  else
    fail "npx newton-muon-train --nproc-per-node 2"
  fi
  sed 's/^/  /' "$WORK/dp.log"
fi

# npm is moving to blocking dependencies' install scripts by default (allowScripts): the package
# must work without its install script running, which it does, because node-gyp-build picks the
# prebuild at require time.
echo "== npm install --ignore-scripts (install scripts blocked)"
APP2="$WORK/app-no-scripts"
mkdir -p "$APP2"
cp "$APP/package.json" "$APP/roundtrip.js" "$APP2/"
if install_clean "$APP2" --ignore-scripts > "$WORK/install-no-scripts.log" 2>&1 &&
   run_clean "$APP2" node roundtrip.js > "$WORK/roundtrip-no-scripts.log" 2>&1 &&
   grep -q '^roundtrip ok$' "$WORK/roundtrip-no-scripts.log"; then
  pass "with install scripts blocked, require('newton-muon') and the round trip still work"
else
  cat "$WORK/install-no-scripts.log" "$WORK/roundtrip-no-scripts.log" 2>/dev/null | sed 's/^/  /'
  fail "with install scripts blocked, the package does not work"
fi

# The guard rail itself: a source build, asked for here, must fail at once and say why.
echo "== npm install --build-from-source (must fail: no headers, no compiler)"
APP3="$WORK/app-source"
mkdir -p "$APP3"
cp "$APP/package.json" "$APP3/"
if install_clean "$APP3" --build-from-source > "$WORK/install-source.log" 2>&1; then
  fail "a source build succeeded where it cannot (is a compiler or nodedir leaking in?)"
elif grep -q 'newton-muon: no local Node headers to build against' "$WORK/install-source.log"; then
  pass "a forced source build fails loudly: $(grep -o 'no local Node headers[^(]*' "$WORK/install-source.log" | head -n 1)"
else
  sed 's/^/  /' "$WORK/install-source.log"
  fail "a forced source build failed without the expected message"
fi

# The fallback for machines the prebuild does not fit (musl, glibc < 2.34, another CPU): the
# tarball's binding.gyp and csrc/ build the addon, here with this machine's compiler and headers.
echo "== npm install --build-from-source with a compiler (the fallback path)"
APP4="$WORK/app-source-ok"
mkdir -p "$APP4"
cp "$APP/package.json" "$APP/roundtrip.js" "$APP4/"
NODEDIR="$(node -e 'console.log(require(process.argv[1]).localNodeDir() || "")' "$REPO_ROOT/scripts/install.js")"
if [ -z "$NODEDIR" ]; then
  fail "no local Node headers here, so the source build fallback could not be tested"
elif (cd "$APP4" && npm_config_nodedir="$NODEDIR" npm install --prefer-offline --no-audit --no-fund \
        --build-from-source "$TARBALL") > "$WORK/install-source-ok.log" 2>&1 &&
     [ -f "$APP4/node_modules/newton-muon/build/Release/newton_muon.node" ] &&
     (cd "$APP4" && node roundtrip.js) > "$WORK/roundtrip-source-ok.log" 2>&1 &&
     grep -q '^roundtrip ok$' "$WORK/roundtrip-source-ok.log"; then
  pass "a source build from the tarball works where a compiler is present, and loads"
else
  tail -n 30 "$WORK/install-source-ok.log" "$WORK/roundtrip-source-ok.log" 2>/dev/null | sed 's/^/  /'
  fail "a source build from the tarball"
fi

echo "package: $passed passed, $failed failed"
[ "$failed" = 0 ]
