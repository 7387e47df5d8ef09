#!/usr/bin/env node
// npm's install hook: use the prebuilt addon (prebuilds/linux-x64/) when it loads on this machine,
// and build from source only when it does not (or when asked: --build-from-source, or
// npm_config_build_from_source=true / =newton-muon, which `npm install --build-from-source` sets).
// Never downloads Node headers: a source build uses local ones (npm_config_nodedir when set, else
// the headers beside this node binary, /usr, /usr/local) and says so when there are none.
// The CUDA module is never built here: it comes prebuilt, or from `npm run build:cuda`; without
// it the package works on the CPU and devices() says why CUDA is unavailable.
// The Gloo module (multi-process training on the CPU) is built here in a clone when Gloo's headers
// are installed (apt-get install libgloo-dev) and it is missing or older than its sources;
// otherwise a note says how to get it, and processGroupBackends() says why it is unavailable.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.join(__dirname, '..');

function wantsSource(argv = process.argv, env = process.env) {
  const flag = String(env.npm_config_build_from_source || '').toLowerCase();
  return argv.includes('--build-from-source') || flag === 'true' || flag === 'newton-muon';
}

// The addon node-gyp-build would pick (build/Release first, then prebuilds/), loaded in a child
// process so a crash or a half-loaded library cannot take this script down.
function probeAddon() {
  const code = `const p = require(${JSON.stringify(require.resolve('node-gyp-build'))}).resolve(${JSON.stringify(root)});` +
    `require(p); process.stdout.write(p);`;
  const result = spawnSync(process.execPath, ['-e', code], { cwd: root, encoding: 'utf8' });
  if (result.status === 0) return { ok: true, path: result.stdout };
  const text = `${result.stderr || ''}`.split('\n').find((line) => /Error|error/.test(line)) ||
    `exit status ${result.status}`;
  return { ok: false, reason: text.trim() };
}

function hasHeaders(dir) {
  return Boolean(dir) && fs.existsSync(path.join(dir, 'include', 'node', 'node_api.h'));
}

// Local Node headers: an explicit npm_config_nodedir is taken at its word (a wrong one fails
// loudly instead of silently building against other headers).
function localNodeDir(env = process.env) {
  if (env.npm_config_nodedir) return hasHeaders(env.npm_config_nodedir) ? env.npm_config_nodedir : null;
  const candidates = [path.dirname(path.dirname(process.execPath)), '/usr', '/usr/local'];
  return candidates.find(hasHeaders) || null;
}

// npm bundles node-gyp; find it relative to the npm that runs us, or the global one.
function nodeGypScript(env = process.env) {
  const candidates = [env.npm_config_node_gyp];
  try { candidates.push(require.resolve('node-gyp/bin/node-gyp.js')); } catch { /* not installed */ }
  if (env.npm_execpath) {
    candidates.push(path.join(path.dirname(env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  }
  candidates.push(path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  return candidates.find((c) => c && fs.existsSync(c)) || null;
}

function fail(message) {
  console.error(`newton-muon: ${message}`);
  process.exit(1);
}

function buildFromSource(why) {
  console.error(`newton-muon: building the native addon from source (${why})`);
  const nodedir = localNodeDir();
  if (!nodedir) {
    const where = process.env.npm_config_nodedir
      ? `npm_config_nodedir=${process.env.npm_config_nodedir} has no include/node/node_api.h`
      : 'looked for include/node/node_api.h beside the node binary, in /usr and /usr/local';
    fail(`no local Node headers to build against (${where}). Install your distribution's Node ` +
      'development headers (or set npm_config_nodedir) and reinstall; nothing is downloaded.');
  }
  const gyp = nodeGypScript();
  if (!gyp) fail('building from source needs node-gyp, which was not found (npm normally provides it).');
  const jobs = String(Math.max(1, os.availableParallelism?.() ?? 2));
  const result = spawnSync(process.execPath, [gyp, 'rebuild', `--nodedir=${nodedir}`, '-j', jobs],
    { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) {
    fail(`building the native addon failed (node-gyp exited with ${result.status ?? result.signal}). ` +
      'A source build needs a C++17 compiler, make and Python 3; on linux-x64 with glibc 2.34+ the ' +
      'prebuilt addon needs none of them.');
  }
}

const GLOO_SOURCES = path.join(root, 'csrc', 'gloo');
const GLOO_MODULE = path.join(root, 'build-gloo', 'Release', 'newton_muon_gloo.so');

function glooConfigFound(env = process.env) {
  const dirs = [env.Gloo_DIR, '/usr/share/cmake/Gloo', '/usr/local/share/cmake/Gloo', '/usr/lib/cmake/Gloo'];
  return dirs.some((d) => d && fs.existsSync(path.join(d, 'GlooConfig.cmake')));
}

// The newest modification time of the module's sources (its own folder and the ABI header).
function glooSourcesTime() {
  const files = fs.readdirSync(GLOO_SOURCES).map((f) => path.join(GLOO_SOURCES, f));
  files.push(path.join(root, 'csrc', 'core', 'comm.h'), path.join(root, 'csrc', 'core', 'bf16.h'));
  return Math.max(...files.map((f) => fs.statSync(f).mtimeMs));
}

function buildGlooModule() {
  if (!fs.existsSync(GLOO_SOURCES)) return; // an installed package: the module comes prebuilt
  if (fs.existsSync(GLOO_MODULE) && fs.statSync(GLOO_MODULE).mtimeMs >= glooSourcesTime()) return;
  if (!glooConfigFound()) {
    console.error('newton-muon: note: Gloo is not installed, so multi-process training on the CPU (and its tests) ' +
      'is unavailable; apt-get install libgloo-dev, then npm run build:gloo');
    return;
  }
  console.error('newton-muon: building the Gloo module (multi-process training on the CPU)');
  const result = spawnSync('bash', [path.join(root, 'scripts', 'build-gloo.sh')], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  if (result.status !== 0) fail(`building the Gloo module failed (scripts/build-gloo.sh exited with ${result.status ?? result.signal})`);
}

function main() {
  if (wantsSource()) {
    buildFromSource('asked for with --build-from-source');
  } else {
    const probe = probeAddon();
    if (probe.ok) console.log(`newton-muon: using ${path.relative(root, probe.path)}`);
    else buildFromSource(`no prebuilt addon loads here: ${probe.reason}`);
  }
  buildGlooModule();
}

module.exports = { root, wantsSource, localNodeDir, nodeGypScript };

if (require.main === module) main();
