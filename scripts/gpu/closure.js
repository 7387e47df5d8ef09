#!/usr/bin/env node
// Lists the files of the dependency closure of some packages inside one node_modules tree, so
// prepare.sh can carry exactly what the GPU machine needs (it has no network and no npm).
//
//   node scripts/gpu/closure.js NODE_MODULES_DIR [--package=package.json] [--scan=DIR]... [PKG...] > files.txt
//
// Roots: the PKG arguments, the `dependencies` of --package, and every installed package that a
// .js/.ts file under a --scan folder imports by bare name (require('x'), import ... from 'x').
// Prints one path per line, relative to NODE_MODULES_DIR's parent (so "node_modules/jest/..."),
// ready for `tar -T files.txt --no-recursion`. Dependencies are resolved the way Node resolves
// require(): from the requiring package's own node_modules up through its ancestors'. Each
// package contributes its files but not its nested node_modules/ folder; nested packages that
// the closure actually resolves are listed as packages of their own. dependencies,
// optionalDependencies and peerDependencies are followed when installed (missing optional or
// peer ones are skipped); devDependencies never are. Summary on stderr.
'use strict';
const fs = require('fs');
const path = require('path');

const { builtinModules } = require('module');

// Files no require() ever loads: source maps (*.map) and bundle-size reports (*.html). They are
// more than half of the tree (tfjs alone ships ~190 MiB of maps), and the carry has a size limit.
const NEVER_LOADED = /\.(map|html)$/;

/** Bare package names imported by the .js/.ts files under dir (recursively, skipping node_modules). */
function scanImports(dir, out) {
  if (!fs.existsSync(dir)) return;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules' && !entry.name.startsWith('.')) scanImports(full, out);
      continue;
    }
    if (!/\.(c?js|ts)$/.test(entry.name) || entry.name.endsWith('.d.ts')) continue;
    const text = fs.readFileSync(full, 'utf8');
    const re = /(?:require\(\s*|from\s+|import\(\s*)['"]([^'"./][^'"]*)['"]/g;
    for (let m = re.exec(text); m; m = re.exec(text)) {
      const spec = m[1];
      if (spec.startsWith('node:') || builtinModules.includes(spec.split('/')[0])) continue;
      const parts = spec.split('/');
      out.add(spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]);
    }
  }
}

function main() {
  const argv = process.argv.slice(2);
  const modulesArg = argv[0];
  const roots = [];
  const scanned = new Set();
  for (const a of argv.slice(1)) {
    if (a.startsWith('--package=')) {
      const pkg = JSON.parse(fs.readFileSync(a.slice(10), 'utf8'));
      roots.push(...Object.keys(pkg.dependencies ?? {}));
    } else if (a.startsWith('--scan=')) {
      scanImports(a.slice(7), scanned);
    } else {
      roots.push(a);
    }
  }
  if (!modulesArg || (roots.length === 0 && scanned.size === 0)) {
    console.error('usage: closure.js NODE_MODULES_DIR [--package=FILE] [--scan=DIR]... [PKG...]');
    process.exit(2);
  }
  const modules = fs.realpathSync(path.resolve(modulesArg));
  const base = path.dirname(modules);
  // Scanned imports count only when installed (a missing one may be optional or a type import).
  for (const name of scanned) {
    if (!roots.includes(name) && fs.existsSync(path.join(modules, name, 'package.json'))) roots.push(name);
  }
  const found = new Map(); // package dir -> name@version
  const missing = [];

  // Where require(name) from inside packageDir lands: packageDir/node_modules/name, then each
  // ancestor's node_modules/name, stopping at the tree's own node_modules.
  function resolvePackage(name, fromDir) {
    let dir = fromDir;
    for (;;) {
      const candidate = path.join(dir, 'node_modules', name);
      if (fs.existsSync(path.join(candidate, 'package.json'))) return candidate;
      if (path.resolve(dir) === base || !path.resolve(dir).startsWith(base)) return null;
      dir = path.dirname(dir);
      // Skip over "node_modules" and "@scope" path segments when walking up.
      while (path.basename(dir) === 'node_modules' || path.basename(dir).startsWith('@')) dir = path.dirname(dir);
    }
  }

  function visit(dir, via) {
    const real = fs.realpathSync(dir);
    if (found.has(real)) return;
    const pkg = JSON.parse(fs.readFileSync(path.join(real, 'package.json'), 'utf8'));
    found.set(real, `${pkg.name}@${pkg.version}`);
    const required = Object.keys(pkg.dependencies ?? {});
    const optional = [...Object.keys(pkg.optionalDependencies ?? {}), ...Object.keys(pkg.peerDependencies ?? {})];
    for (const name of required) {
      const hit = resolvePackage(name, real);
      if (hit) visit(hit, pkg.name);
      else missing.push(`${name} (needed by ${pkg.name}, via ${via})`);
    }
    for (const name of optional) {
      const hit = resolvePackage(name, real);
      if (hit) visit(hit, pkg.name);
    }
  }

  for (const root of [...new Set(roots)]) {
    const dir = path.join(modules, root);
    if (!fs.existsSync(path.join(dir, 'package.json'))) {
      console.error(`closure: ${root} is not installed in ${modules}`);
      process.exit(1);
    }
    visit(dir, '(root)');
  }
  if (missing.length > 0) {
    console.error(`closure: unresolved dependencies:\n  ${missing.join('\n  ')}`);
    process.exit(1);
  }

  const files = [];
  let bytes = 0;
  let leftOut = 0;
  function walk(dir, isPackageRoot) {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (isPackageRoot && entry.name === 'node_modules') continue; // nested packages: listed on their own
      if (entry.isDirectory()) walk(full, false);
      else if (NEVER_LOADED.test(entry.name)) leftOut += fs.lstatSync(full).size;
      else if (entry.isFile() || entry.isSymbolicLink()) {
        files.push(path.relative(base, full));
        bytes += fs.lstatSync(full).size;
      }
    }
  }
  for (const dir of [...found.keys()].sort()) walk(dir, true);
  process.stdout.write(files.join('\n') + '\n');
  console.error(`closure: ${found.size} packages, ${files.length} files, ${(bytes / 2 ** 20).toFixed(1)} MiB uncompressed ` +
    `(roots: ${roots.join(' ')}; left out: ${(leftOut / 2 ** 20).toFixed(1)} MiB of source maps and bundle reports)`);
}

main();
