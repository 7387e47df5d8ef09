#!/usr/bin/env node
// npm's install hook: use the prebuilt addon when one matches this platform and Node-API, and
// build from source only when none does (or when asked with --build-from-source /
// npm_config_build_from_source=true). Never downloads Node headers: the build uses the local
// ones (npm_config_nodedir, else the headers beside this node binary) and says so if missing.
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.join(__dirname, '..');

function wantsSource() {
  const flag = String(process.env.npm_config_build_from_source || '').toLowerCase();
  return process.argv.includes('--build-from-source') || flag === 'true' || flag === 'newton-muon';
}

function prebuiltLoads() {
  try {
    require('node-gyp-build')(root);
    return true;
  } catch {
    return false;
  }
}

function localNodeDir() {
  const candidates = [process.env.npm_config_nodedir, path.dirname(path.dirname(process.execPath)), '/usr', '/usr/local'];
  for (const dir of candidates) {
    if (dir && fs.existsSync(path.join(dir, 'include', 'node', 'node_api.h'))) return dir;
  }
  return null;
}

function nodeGypScript() {
  const candidates = [process.env.npm_config_node_gyp];
  try { candidates.push(require.resolve('node-gyp/bin/node-gyp.js')); } catch { /* not installed */ }
  // npm ships node-gyp; find it relative to the npm that runs us, or the global one.
  if (process.env.npm_execpath) candidates.push(path.join(path.dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  candidates.push(path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  return candidates.find((c) => c && fs.existsSync(c)) || null;
}

function build() {
  const nodedir = localNodeDir();
  if (!nodedir) {
    console.error('newton-muon: no prebuilt addon matches this machine and no local Node headers were found ' +
      '(looked for include/node/node_api.h under npm_config_nodedir, the node binary\'s prefix, /usr, /usr/local). ' +
      'Install your distribution\'s Node development headers and reinstall.');
    process.exit(1);
  }
  const gyp = nodeGypScript();
  if (!gyp) {
    console.error('newton-muon: building from source needs node-gyp, which was not found (npm normally provides it).');
    process.exit(1);
  }
  const jobs = String(Math.max(1, require('os').availableParallelism?.() ?? 2));
  const result = spawnSync(process.execPath, [gyp, 'rebuild', `--nodedir=${nodedir}`, '-j', jobs], { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) {
    console.error(`newton-muon: building the native addon failed (node-gyp exited with ${result.status}).`);
    process.exit(result.status || 1);
  }
}

if (wantsSource() || !prebuiltLoads()) build();
