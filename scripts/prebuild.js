#!/usr/bin/env node
// `npm run prebuild`: the binaries that ship in the npm package, in prebuilds/linux-x64/:
//
//   newton-muon.glibc.node   the addon (N-API 8, so one file serves every Node >= 20), built by
//                            prebuildify with node-gyp against the local Node headers (nothing is
//                            downloaded) and stripped. node-gyp-build loads it by that name.
//   newton_muon_cuda.so      the CUDA module (scripts/build-cuda.sh) for the release
//                            architectures, stripped, its RUNPATH reset to "$ORIGIN" alone: the
//                            build's RUNPATH points into the build machine's toolkit. At run time
//                            the CUDA 13 libraries come from the usual places, and the addon's
//                            loader also searches NVIDIA's pip wheels (csrc/napi/cuda_libraries.h).
//   newton_muon_gloo.so      the Gloo collectives module (scripts/build-gloo.sh), stripped; it links
//                            Debian's libgloo.so.0 (users: apt-get install libgloo0)
//
// Environment:
//   NM_CUDA_ARCHS        CUDA architectures, default "80-real;90" (sm_80 + sm_90 SASS, compute_90
//                        PTX that newer GPUs JIT-compile); CI uses "90" to save time
//   NM_PREBUILD_CUDA=0   skip the CUDA module (the package then runs on the CPU only)
//   NM_PREBUILD_GLOO=0   skip the Gloo module (no multi-process training on the CPU)
//
// Note: prebuildify runs `node-gyp rebuild`, so build/Release no longer holds an addon afterwards
// and node-gyp-build loads the prebuild; `npm run build:addon` makes a development build again.
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const { root, localNodeDir, nodeGypScript } = require('./install.js');

const RELEASE_ARCHS = '80-real;90';
const RELEASE_RUNPATH = '$ORIGIN';
const outDir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);

function die(message) {
  console.error(`prebuild: error: ${message}`);
  process.exit(1);
}

function say(message) {
  console.log(`prebuild: ${message}`);
}

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', ...options });
  if (result.error) die(`${command}: ${result.error.message}`);
  if (result.status !== 0) die(`${command} ${args.join(' ')} exited with ${result.status ?? result.signal}`);
  return result;
}

function sizeOf(file) {
  return `${(fs.statSync(file).size / 1024 / 1024).toFixed(2)} MiB`;
}

// ---- ELF: read and rewrite DT_RUNPATH / DT_RPATH in place (what chrpath -r does) -------------
// The new string must fit in the old one's bytes; the rest is zeroed, so no trace of the build
// machine's paths remains in the file.
const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const DT_NULL = 0;
const DT_STRTAB = 5;
const DT_RPATH = 15;
const DT_RUNPATH = 29;

function dynamicStrings(buf, file) {
  if (buf.readUInt32BE(0) !== 0x7f454c46 || buf[4] !== 2 || buf[5] !== 1) {
    die(`${file} is not a 64-bit little-endian ELF file`);
  }
  const phoff = Number(buf.readBigUInt64LE(0x20));
  const phentsize = buf.readUInt16LE(0x36);
  const phnum = buf.readUInt16LE(0x38);
  const loads = [];
  let dynamic = null;
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    const segment = {
      type: buf.readUInt32LE(o),
      offset: Number(buf.readBigUInt64LE(o + 8)),
      vaddr: Number(buf.readBigUInt64LE(o + 16)),
      filesz: Number(buf.readBigUInt64LE(o + 32)),
    };
    if (segment.type === PT_LOAD) loads.push(segment);
    if (segment.type === PT_DYNAMIC) dynamic = segment;
  }
  if (!dynamic) die(`${file} has no dynamic section`);
  const entries = [];
  for (let o = dynamic.offset; o + 16 <= dynamic.offset + dynamic.filesz; o += 16) {
    const tag = Number(buf.readBigInt64LE(o));
    if (tag === DT_NULL) break;
    entries.push({ tag, value: Number(buf.readBigUInt64LE(o + 8)) });
  }
  const strtab = entries.find((e) => e.tag === DT_STRTAB);
  if (!strtab) die(`${file} has no dynamic string table`);
  const load = loads.find((s) => strtab.value >= s.vaddr && strtab.value < s.vaddr + s.filesz);
  if (!load) die(`${file}: the dynamic string table is outside every loaded segment`);
  const strtabOffset = load.offset + (strtab.value - load.vaddr);
  return entries
    .filter((e) => e.tag === DT_RUNPATH || e.tag === DT_RPATH)
    .map((e) => {
      const start = strtabOffset + e.value;
      const end = buf.indexOf(0, start);
      return { tag: e.tag === DT_RUNPATH ? 'RUNPATH' : 'RPATH', start, end, text: buf.toString('latin1', start, end) };
    });
}

function setRunpath(file, value) {
  const buf = fs.readFileSync(file);
  const paths = dynamicStrings(buf, file);
  if (paths.length === 0) die(`${file} has no RUNPATH to rewrite (expected the build's RUNPATH)`);
  for (const p of paths) {
    if (value.length > p.end - p.start) die(`${file}: "${value}" does not fit in the old ${p.tag} "${p.text}"`);
    buf.fill(0, p.start, p.end);
    buf.write(value, p.start, 'latin1');
  }
  fs.writeFileSync(file, buf);
  return paths.map((p) => p.text);
}

function runpathOf(file) {
  return dynamicStrings(fs.readFileSync(file), file).map((p) => `${p.tag}=${p.text}`).join(' ') || 'none';
}

// ---- the addon -------------------------------------------------------------------------------
function prebuildAddon() {
  const nodedir = localNodeDir();
  if (!nodedir) die('no local Node headers (include/node/node_api.h) to build against; set npm_config_nodedir');
  const gyp = nodeGypScript();
  if (!gyp) die('node-gyp was not found (npm normally bundles it)');
  let prebuildify;
  try {
    prebuildify = require.resolve('prebuildify/bin.js', { paths: [root] });
  } catch {
    die('prebuildify is not installed; run `npm ci` (it is a devDependency)');
  }
  say(`addon: prebuildify (N-API, headers from ${nodedir}, node-gyp ${gyp})`);
  // --target: node-gyp wants a version; with npm_config_nodedir set it takes the headers from
  // there and downloads nothing. Node-API builds run on every Node with Node-API 8 (Node >= 12.22).
  run(process.execPath, [prebuildify, '--napi', '--strip', '--tag-libc',
    `--target=${process.versions.node}`, `--node-gyp=${gyp}`],
  { env: { ...process.env, npm_config_nodedir: nodedir } });
  const built = fs.readdirSync(outDir).filter((f) => f.endsWith('.node'));
  if (built.length !== 1) die(`expected one .node in ${outDir}, found: ${built.join(', ') || 'none'}`);
  return path.join(outDir, built[0]);
}

// ---- the CUDA module -------------------------------------------------------------------------
const cudaBuildDir = path.join(root, 'build-cuda');

// The architectures build-cuda/ is configured for (undefined when it is not configured).
function configuredArchs() {
  try {
    const cache = fs.readFileSync(path.join(cudaBuildDir, 'CMakeCache.txt'), 'utf8');
    return /^NM_CUDA_ARCHS:[A-Z]*=(.*)$/m.exec(cache)?.[1];
  } catch {
    return undefined;
  }
}

function prebuildCuda() {
  const archs = process.env.NM_CUDA_ARCHS || RELEASE_ARCHS;
  // cmake-js only configures a build folder that has no CMakeCache.txt yet, so a folder
  // configured for other architectures would silently keep them: start it afresh.
  const before = configuredArchs();
  if (before !== undefined && before !== archs) {
    say(`CUDA module: build-cuda/ is configured for "${before}"; rebuilding it for "${archs}"`);
    fs.rmSync(cudaBuildDir, { recursive: true, force: true });
  }
  say(`CUDA module: scripts/build-cuda.sh for architectures "${archs}"`);
  const result = spawnSync('bash', [path.join(root, 'scripts', 'build-cuda.sh')], {
    cwd: root,
    env: { ...process.env, NM_CUDA_ARCHS: archs },
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
  });
  if (result.status !== 0) die(`building the CUDA module failed (scripts/build-cuda.sh exited with ${result.status ?? result.signal})`);
  const built = result.stdout.trim().split('\n').pop();
  if (!built || !fs.existsSync(built)) die(`scripts/build-cuda.sh did not print the module it built (got "${built}")`);
  const after = configuredArchs();
  if (after !== archs) die(`build-cuda/ is configured for "${after}", not the requested "${archs}"`);

  const dest = path.join(outDir, 'newton_muon_cuda.so');
  fs.copyFileSync(built, dest);
  run('strip', ['--strip-all', dest]);
  const old = setRunpath(dest, RELEASE_RUNPATH);
  say(`CUDA module: RUNPATH ${old.join(', ')} -> ${RELEASE_RUNPATH}`);

  // Checks: the one entry point is exported, and nothing points at this machine any more.
  const symbols = spawnSync('nm', ['-D', '--defined-only', dest], { encoding: 'utf8' });
  if (symbols.status !== 0 || !/ nm_cuda_backend_ops$/m.test(symbols.stdout) || !/ nm_cuda_comm_ops$/m.test(symbols.stdout)) {
    die(`${dest} does not export nm_cuda_backend_ops and nm_cuda_comm_ops`);
  }
  if (fs.readFileSync(dest).includes(Buffer.from(root))) die(`${dest} still contains the build path ${root}`);
  return dest;
}

// ---- the Gloo module ------------------------------------------------------------------------
function prebuildGloo() {
  say('Gloo module: scripts/build-gloo.sh');
  const result = spawnSync('bash', [path.join(root, 'scripts', 'build-gloo.sh')], {
    cwd: root, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8',
  });
  if (result.status !== 0) die(`building the Gloo module failed (scripts/build-gloo.sh exited with ${result.status ?? result.signal}); set NM_PREBUILD_GLOO=0 to ship without it`);
  const built = result.stdout.trim().split('\n').pop();
  if (!built || !fs.existsSync(built)) die(`scripts/build-gloo.sh did not print the module it built (got "${built}")`);
  const dest = path.join(outDir, 'newton_muon_gloo.so');
  fs.copyFileSync(built, dest);
  run('strip', ['--strip-all', dest]);
  const symbols = spawnSync('nm', ['-D', '--defined-only', dest], { encoding: 'utf8' });
  if (symbols.status !== 0 || !/ nm_gloo_comm_ops$/m.test(symbols.stdout)) die(`${dest} does not export nm_gloo_comm_ops`);
  if (fs.readFileSync(dest).includes(Buffer.from(root))) die(`${dest} still contains the build path ${root}`);
  return dest;
}

function main() {
  fs.rmSync(outDir, { recursive: true, force: true });
  const started = Date.now();
  const addon = prebuildAddon();
  const files = [addon];
  if (process.env.NM_PREBUILD_CUDA === '0') {
    say('CUDA module: skipped (NM_PREBUILD_CUDA=0); the package will run on the CPU only');
  } else {
    files.push(prebuildCuda());
  }
  if (process.env.NM_PREBUILD_GLOO === '0') {
    say('Gloo module: skipped (NM_PREBUILD_GLOO=0); the package will not train on several CPU processes');
  } else {
    files.push(prebuildGloo());
  }
  for (const file of files) say(`${path.relative(root, file)}: ${sizeOf(file)}, ${runpathOf(file)}`);
  say(`done in ${Math.round((Date.now() - started) / 1000)}s`);
}

module.exports = { setRunpath, runpathOf };

if (require.main === module) main();
