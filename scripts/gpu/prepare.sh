#!/usr/bin/env bash
# GPU verification kit, step 1 (runs here, on the development machine): fills the ignored folder
# .gpu-carry/ with what scripts/gpu/check.sh needs on the GPU machine and the working tree does
# not hold. That machine has nvcc, CMake, a CUDA toolkit, PyTorch, python3, make and g++, but no
# Node.js, no npm and no network.
#
#   bash scripts/gpu/prepare.sh [--force]
#
# .gpu-carry/ then holds (each rebuilt only when its inputs changed; --force rebuilds all):
#   node.xz              this machine's node binary, xz -9 (checked to need only glibc/libstdc++)
#   node_modules.tar.xz  the closure of package.json's dependencies (node-addon-api,
#                        node-gyp-build), jest, ts-jest, typescript and @types/{jest,node}, plus
#                        any installed package that lib/ test/ bench/ scripts/gpu/ import: what
#                        the addon build, `npm test` (ts-jest, the repo's jest.config.js) and the
#                        benchmarks load; no cmake-js/prebuildify (check.sh drives cmake directly)
#   node-gyp.tar.xz      npm's bundled node-gyp and its dependencies (builds the addon there,
#                        through scripts/install.js, with python3 + make + g++)
#   nodedir.tar.xz       the Node-API headers node-gyp compiles against (include/node/
#                        node_api.h, js_native_api*.h, node_version.h, common.gypi, config.gypi)
#   manifest.json        commit, dirty files, versions, sizes and sha256 of the above
# and prints what will travel (the working tree's tracked and untracked-but-not-ignored files,
# plus .gpu-carry/) against the 64 MiB limit of the device tool; exits non-zero when over.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CARRY="$REPO_ROOT/.gpu-carry"
LIMIT_BYTES=$((64 * 1024 * 1024))
FORCE=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,25p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "prepare: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

die() { echo "prepare: error: $*" >&2; exit 1; }
say() { echo "prepare: $*" >&2; }

command -v xz >/dev/null || die "xz is needed"
command -v tar >/dev/null || die "tar is needed"

# ---- node ------------------------------------------------------------------------------------
NODE_BIN="${NM_KIT_NODE:-}"
if [ -z "$NODE_BIN" ]; then
  if [ -x /usr/bin/node ]; then NODE_BIN=/usr/bin/node
  elif command -v node >/dev/null; then NODE_BIN="$(node -p process.execPath)"
  else die "no node binary here (set NM_KIT_NODE=/path/to/node)"; fi
fi
NODE_BIN="$(readlink -f "$NODE_BIN")"
NODE_VERSION="$("$NODE_BIN" --version)"
[ -d "$REPO_ROOT/node_modules" ] || die "no node_modules here: run npm ci first"

# The binary must be self-contained apart from the C/C++ runtime every Linux box has: a distro
# build that links libnode.so, libuv, OpenSSL or ICU dynamically would not start there.
unexpected="$(ldd "$NODE_BIN" | awk '{print $1}' | grep -v -E '^(linux-vdso\.so|/lib64/ld-linux-x86-64\.so|ld-linux-x86-64\.so|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libstdc\+\+\.so|libgcc_s\.so)' || true)"
[ -z "$unexpected" ] || die "$NODE_BIN links libraries the GPU machine may not have: $(echo $unexpected) (use an official nodejs.org build via NM_KIT_NODE)"
NODE_GLIBC="$(objdump -T "$NODE_BIN" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n1 || echo unknown)"
NODE_GLIBCXX="$(objdump -T "$NODE_BIN" 2>/dev/null | grep -o 'GLIBCXX_[0-9.]*' | sort -uV | tail -n1 || echo unknown)"
say "node $NODE_VERSION at $NODE_BIN: self-contained (needs $NODE_GLIBC, $NODE_GLIBCXX)"

mkdir -p "$CARRY"
stamp_of() { cat "$CARRY/.$1.stamp" 2>/dev/null || true; }
fresh() {  # fresh NAME KEY: true when NAME exists and was built from KEY
  [ "$FORCE" = 0 ] && [ -f "$CARRY/$1" ] && [ "$(stamp_of "$1")" = "$2" ]
}
put() {  # put NAME KEY: NAME.partial -> NAME, remembering KEY
  mv "$CARRY/$1.partial" "$CARRY/$1"
  printf '%s' "$2" > "$CARRY/.$1.stamp"
}

key="$(sha256sum "$NODE_BIN" | cut -d' ' -f1)"
if fresh node.xz "$key"; then
  say "node.xz is up to date"
else
  say "compressing node (xz -9, about a minute)"
  xz -9 -c "$NODE_BIN" > "$CARRY/node.xz.partial"
  put node.xz "$key"
fi

# ---- node_modules closure -------------------------------------------------------------------
listing="$(mktemp)"
trap 'rm -f "$listing" "$listing.gyp" "$listing.hdr"' EXIT
"$NODE_BIN" "$REPO_ROOT/scripts/gpu/closure.js" "$REPO_ROOT/node_modules" --package="$REPO_ROOT/package.json" \
  --scan="$REPO_ROOT/lib" --scan="$REPO_ROOT/test" --scan="$REPO_ROOT/bench" --scan="$REPO_ROOT/scripts/gpu" \
  jest ts-jest typescript @types/jest @types/node > "$listing"
# Key: every listed file's path, size and mtime.
key="$(cd "$REPO_ROOT" && tr '\n' '\0' < "$listing" | xargs -0 stat -c '%n %s %Y' | sha256sum | cut -d' ' -f1)"
if fresh node_modules.tar.xz "$key"; then
  say "node_modules.tar.xz is up to date"
else
  say "packing node_modules ($(wc -l < "$listing") files)"
  tar -C "$REPO_ROOT" -cf - --no-recursion -T "$listing" | xz -6 -T0 > "$CARRY/node_modules.tar.xz.partial"
  put node_modules.tar.xz "$key"
fi

# ---- node-gyp (npm's bundled copy) ------------------------------------------------------------
GYP_MODULES=""
for candidate in "${npm_config_node_gyp:+$(dirname "$(dirname "$(dirname "$npm_config_node_gyp")")")}" \
                 "$(dirname "$(dirname "$NODE_BIN")")/lib/node_modules/npm/node_modules" \
                 /usr/lib/node_modules/npm/node_modules /usr/local/lib/node_modules/npm/node_modules; do
  if [ -n "$candidate" ] && [ -f "$candidate/node-gyp/bin/node-gyp.js" ]; then GYP_MODULES="$candidate"; break; fi
done
[ -n "$GYP_MODULES" ] || die "npm's node-gyp was not found (looked beside $NODE_BIN and in /usr{,/local}/lib/node_modules/npm)"
"$NODE_BIN" "$REPO_ROOT/scripts/gpu/closure.js" "$GYP_MODULES" node-gyp > "$listing.gyp"
GYP_BASE="$(dirname "$GYP_MODULES")"
GYP_VERSION="$("$NODE_BIN" -p "require('$GYP_MODULES/node-gyp/package.json').version")"
key="$(cd "$GYP_BASE" && tr '\n' '\0' < "$listing.gyp" | xargs -0 stat -c '%n %s %Y' | sha256sum | cut -d' ' -f1)"
if fresh node-gyp.tar.xz "$key"; then
  say "node-gyp.tar.xz is up to date (node-gyp $GYP_VERSION)"
else
  say "packing node-gyp $GYP_VERSION from $GYP_MODULES"
  tar -C "$GYP_BASE" -cf - --no-recursion -T "$listing.gyp" | xz -6 -T0 > "$CARRY/node-gyp.tar.xz.partial"
  put node-gyp.tar.xz "$key"
fi

# ---- Node-API headers --------------------------------------------------------------------------
NODEDIR=""
for candidate in "${npm_config_nodedir:-}" "$(dirname "$(dirname "$NODE_BIN")")" /usr /usr/local; do
  if [ -n "$candidate" ] && [ -f "$candidate/include/node/node_api.h" ]; then NODEDIR="$candidate"; break; fi
done
[ -n "$NODEDIR" ] || die "no Node headers (include/node/node_api.h) beside $NODE_BIN, in /usr or /usr/local"
hdr_version="$(sed -n 's/^#define NODE_\(MAJOR\|MINOR\|PATCH\)_VERSION \([0-9]*\).*/\2/p' "$NODEDIR/include/node/node_version.h" | paste -sd.)"
[ "v$hdr_version" = "$NODE_VERSION" ] || say "warning: headers in $NODEDIR are v$hdr_version, node is $NODE_VERSION (Node-API is stable across them)"
: > "$listing.hdr"
for f in node_api.h node_api_types.h js_native_api.h js_native_api_types.h node_version.h common.gypi config.gypi; do
  [ -f "$NODEDIR/include/node/$f" ] || die "$NODEDIR/include/node/$f is missing"
  echo "include/node/$f" >> "$listing.hdr"
done
key="$(cd "$NODEDIR" && tr '\n' '\0' < "$listing.hdr" | xargs -0 stat -c '%n %s %Y' | sha256sum | cut -d' ' -f1)"
if fresh nodedir.tar.xz "$key"; then
  say "nodedir.tar.xz is up to date"
else
  tar -C "$NODEDIR" -cf - -T "$listing.hdr" | xz -9 > "$CARRY/nodedir.tar.xz.partial"
  put nodedir.tar.xz "$key"
fi

# ---- manifest and the size budget -----------------------------------------------------------
NM_KIT_NODE_VERSION="$NODE_VERSION" NM_KIT_GYP_VERSION="$GYP_VERSION" NM_KIT_NODE_GLIBC="$NODE_GLIBC/$NODE_GLIBCXX" \
NM_KIT_MODULE_FILES="$(wc -l < "$listing")" \
  "$NODE_BIN" - "$REPO_ROOT" "$CARRY" "$LIMIT_BYTES" <<'JS'
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const { spawnSync } = require('child_process');
const [root, carry, limit] = process.argv.slice(2);
const git = (...a) => spawnSync('git', a, { cwd: root, encoding: 'utf8', maxBuffer: 1 << 26 });
const commit = git('rev-parse', 'HEAD').stdout.trim() || 'unknown';
const dirty = git('status', '--porcelain').stdout.split('\n').filter(Boolean);
// What the device tool copies: tracked files plus untracked files git does not ignore.
const listed = git('ls-files', '-z', '--cached', '--others', '--exclude-standard').stdout.split('\0').filter(Boolean);
let treeBytes = 0;
let treeFiles = 0;
for (const f of new Set(listed)) {
  try {
    const st = fs.lstatSync(path.join(root, f));
    if (st.isFile()) { treeBytes += st.size; treeFiles++; }
  } catch { /* deleted in the working tree: does not travel */ }
}
const files = {};
let carryBytes = 0;
for (const name of fs.readdirSync(carry).sort()) {
  if (name.startsWith('.') || name.endsWith('.partial') || name === 'manifest.json') continue;
  const full = path.join(carry, name);
  const size = fs.statSync(full).size;
  files[name] = { bytes: size, sha256: crypto.createHash('sha256').update(fs.readFileSync(full)).digest('hex') };
  carryBytes += size;
}
const manifest = {
  created: new Date().toISOString(),
  commit, dirtyFiles: dirty,
  node: process.env.NM_KIT_NODE_VERSION, nodeNeeds: process.env.NM_KIT_NODE_GLIBC,
  nodeGyp: process.env.NM_KIT_GYP_VERSION, nodeModulesFiles: Number(process.env.NM_KIT_MODULE_FILES),
  files, treeFiles, treeBytes,
};
const text = JSON.stringify(manifest, null, 1) + '\n';
fs.writeFileSync(path.join(carry, 'manifest.json'), text);
carryBytes += Buffer.byteLength(text);
const mib = (b) => `${(b / 2 ** 20).toFixed(2)} MiB`;
const rows = [...Object.entries(files).map(([n, f]) => [`.gpu-carry/${n}`, f.bytes]), ['.gpu-carry/manifest.json', Buffer.byteLength(text)],
  [`working tree (${treeFiles} tracked + untracked-not-ignored files)`, treeBytes]];
const total = carryBytes + treeBytes;
const width = Math.max(...rows.map((r) => r[0].length));
console.log('\nwhat travels to the GPU machine (carry: [".gpu-carry"]):');
for (const [n, b] of rows) console.log(`  ${n.padEnd(width)}  ${mib(b).padStart(10)}`);
console.log(`  ${'total'.padEnd(width)}  ${mib(total).padStart(10)}  (limit ${mib(Number(limit))})`);
console.log(`commit ${commit}${dirty.length ? ` + ${dirty.length} uncommitted change(s) (they travel too; recorded in manifest.json)` : ''}`);
if (total > Number(limit)) {
  console.error(`prepare: error: ${mib(total)} is over the ${mib(Number(limit))} the device tool carries`);
  process.exit(1);
}
JS
