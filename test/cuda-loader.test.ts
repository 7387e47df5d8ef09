// The CUDA module loader: whatever is wrong with newton_muon_cuda.so (missing, not a library, no
// entry point, another op-table ABI, a CUDA library it links that cannot be found), devices()
// gives a clear reason, asking for 'cuda' throws it, 'auto' falls back, and the CPU keeps working.
// Where the module's libraries live outside the linker's path, the loader finds them through
// NM_CUDA_LIBRARY_PATH or the pip-wheel layout (site-packages/nvidia/*/lib).
//
// The addon loads the CUDA module once per process, so every case runs in a fresh `node` child
// with its own environment (lib/*.ts compiled on the fly by TypeScript's transpileModule).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { runLibChild } from './helpers/child';

const root = path.join(__dirname, '..');
let tmp = '';

interface ChildReport {
  cuda: { available: boolean; reason?: string };
  explicitCuda: string;
  auto: string;
  roundTrip: number[];
}

const CHILD = `
const { devices } = require(lib + '/device.ts');
const { tensor } = require(lib + '/tensor.ts');
const { add } = require(lib + '/ops.ts');
(async () => {
  const cuda = devices().find((d) => d.name === 'cuda');
  let explicitCuda = 'no error';
  try { tensor(new Float32Array([1]), [1], { device: 'cuda' }).dispose(); } catch (e) { explicitCuda = e.message; }
  const a = tensor(new Float32Array([1, 2, 3]), [3], { device: 'auto' });
  const b = add(a, a);
  const roundTrip = Array.from(await b.read());
  const auto = a.device;
  a.dispose(); b.dispose();
  process.stdout.write(JSON.stringify({ cuda, explicitCuda, auto, roundTrip }));
})().catch((e) => { console.error(e); process.exit(1); });
`;

// Runs the child with NM_CUDA_MODULE and the other loader variables set only as given.
function loadIn(env: Record<string, string>): ChildReport {
  const unset = ['NM_CUDA_MODULE', 'NM_CUDA_LIBRARY_PATH', 'VIRTUAL_ENV', 'CONDA_PREFIX', 'PYTHONPATH', 'LD_LIBRARY_PATH'];
  return JSON.parse(runLibChild(CHILD, env, unset)) as ChildReport;
}

// Every case: CUDA unavailable with a reason, 'cuda' throws that reason, 'auto' and the CPU work.
function expectUnavailable(report: ChildReport, ...patterns: (string | RegExp)[]): string {
  expect(report.cuda.available).toBe(false);
  const reason = report.cuda.reason ?? '';
  for (const p of patterns) {
    if (typeof p === 'string') expect(reason).toContain(p);
    else expect(reason).toMatch(p);
  }
  expect(report.explicitCuda).toContain("'cuda' is not available");
  expect(report.explicitCuda).toContain(reason);
  expect(report.auto).toBe('cpu');
  expect(report.roundTrip).toEqual([2, 4, 6]);
  return reason;
}

function compiler(): string | null {
  for (const cxx of [process.env.CXX, 'g++', 'c++', 'clang++']) {
    if (cxx && spawnSync(cxx, ['--version']).status === 0) return cxx;
  }
  return null;
}

const cxx = compiler();

// g++ -shared SOURCE -o OUT [extra args]
function buildLibrary(name: string, source: string, extra: string[] = []): string {
  const src = path.join(tmp, `${name}.cc`);
  const out = path.join(tmp, name);
  fs.writeFileSync(src, source);
  const result = spawnSync(cxx!, ['-shared', '-fPIC', '-o', out, src, ...extra], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`building ${name} failed:\n${result.stderr}`);
  return out;
}

// An entry point with the right name whose op table claims another ABI version: the load gets
// past dlopen and dlsym and stops at the version check, which proves the file was loaded.
const WRONG_ABI_ENTRY = `
#include <stddef.h>
#include <stdint.h>
static const uint32_t fake_table[64] = {9999};
extern "C" const void* nm_cuda_backend_ops(uint32_t, char*, size_t) { return fake_table; }
`;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nm-cuda-loader-'));
  fs.writeFileSync(path.join(tmp, 'not-a-library.so'), 'this is a text file, not a shared library\n');
  if (cxx === null) return;
  buildLibrary('no-entry.so', 'extern "C" int nm_something_else() { return 1; }\n');
  buildLibrary('wrong-abi.so', WRONG_ABI_ENTRY);
  buildLibrary('refusing.so', `
#include <stdio.h>
#include <stdint.h>
extern "C" const void* nm_cuda_backend_ops(uint32_t abi, char* err, size_t len) {
  snprintf(err, len, "stub module refuses ABI %u", (unsigned)abi);
  return NULL;
}
`);
  // A module that links two libraries in other folders, the way the prebuilt module links
  // libcudart.so.13 & co: libnmloaderb.so.1 needs libnmloadera.so.1 (no RPATH anywhere).
  fs.mkdirSync(path.join(tmp, 'dir-a'));
  fs.mkdirSync(path.join(tmp, 'dir-b'));
  const libA = buildLibrary('dir-a/libnmloadera.so.1', 'extern "C" int nm_loader_a() { return 7; }\n',
    ['-Wl,-soname,libnmloadera.so.1']);
  const libB = buildLibrary('dir-b/libnmloaderb.so.1',
    'extern "C" int nm_loader_a();\nextern "C" int nm_loader_b() { return nm_loader_a() + 1; }\n',
    ['-Wl,-soname,libnmloaderb.so.1', libA]);
  buildLibrary('needs-libs.so', `${WRONG_ABI_ENTRY}
extern "C" int nm_loader_b();
extern "C" int call_b() { return nm_loader_b(); }
`, [libB, libA]);
  // The same two libraries laid out as NVIDIA's pip wheels are (site-packages/nvidia/<family>/lib).
  const site = path.join(tmp, 'venv', 'lib', 'python3.99', 'site-packages', 'nvidia');
  for (const [family, lib] of [['cu99', libA], ['nccl', libB]]) {
    fs.mkdirSync(path.join(site, family, 'lib'), { recursive: true });
    fs.copyFileSync(lib, path.join(site, family, 'lib', path.basename(lib)));
  }
}, 60000);

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('a missing module: the reason names the path and how to get a module', () => {
  const missing = path.join(os.tmpdir(), 'nm-no-such-dir', 'newton_muon_cuda.so');
  expectUnavailable(loadIn({ NM_CUDA_MODULE: missing }), 'was not found', missing, 'npm run build:cuda');
});

test('a file that is not a library: the reason has dlerror\'s text', () => {
  const file = path.join(tmp, 'not-a-library.so');
  expectUnavailable(loadIn({ NM_CUDA_MODULE: file }),
    `could not load the CUDA module ${file}`, /invalid ELF header|file too short/, 'not a shared library');
});

const withCompiler = cxx === null ? test.skip : test;

withCompiler('a library without the entry point: the reason names the symbol', () => {
  const file = path.join(tmp, 'no-entry.so');
  expectUnavailable(loadIn({ NM_CUDA_MODULE: file }),
    `the CUDA module ${file} has no entry point nm_cuda_backend_ops`, 'undefined symbol');
});

withCompiler('an entry point with another op-table ABI: the reason gives both versions', () => {
  const file = path.join(tmp, 'wrong-abi.so');
  expectUnavailable(loadIn({ NM_CUDA_MODULE: file }),
    'is incompatible with this addon', 'ABI version 9999', /expects \d+/);
});

withCompiler('an entry point that refuses: its own message is passed on', () => {
  expectUnavailable(loadIn({ NM_CUDA_MODULE: path.join(tmp, 'refusing.so') }),
    'is incompatible with this addon: stub module refuses ABI');
});

withCompiler('a library the module links is missing: the reason names it and where it looked', () => {
  const file = path.join(tmp, 'needs-libs.so');
  const reason = expectUnavailable(loadIn({ NM_CUDA_MODULE: file }),
    `could not load the CUDA module ${file}`, /libnmloader[ab]\.so\.1: cannot open shared object file/,
    'NM_CUDA_LIBRARY_PATH (unset)', 'R580', 'pip install');
  expect(reason).not.toContain('ABI version 9999');
});

withCompiler('NM_CUDA_LIBRARY_PATH: the missing libraries are found there, dependencies included', () => {
  const dirs = `${path.join(tmp, 'dir-b')}:${path.join(tmp, 'dir-a')}`;
  expectUnavailable(loadIn({ NM_CUDA_MODULE: path.join(tmp, 'needs-libs.so'), NM_CUDA_LIBRARY_PATH: dirs }),
    'ABI version 9999');
});

withCompiler('NM_CUDA_LIBRARY_PATH with only one of the two folders: the other library is named', () => {
  expectUnavailable(loadIn({ NM_CUDA_MODULE: path.join(tmp, 'needs-libs.so'), NM_CUDA_LIBRARY_PATH: path.join(tmp, 'dir-b') }),
    'libnmloadera.so.1: cannot open shared object file', `NM_CUDA_LIBRARY_PATH ('${path.join(tmp, 'dir-b')}')`);
});

withCompiler('pip wheels in the active virtualenv (site-packages/nvidia/*/lib) are searched', () => {
  const venv = path.join(tmp, 'venv');
  expectUnavailable(loadIn({ NM_CUDA_MODULE: path.join(tmp, 'needs-libs.so'), VIRTUAL_ENV: venv }), 'ABI version 9999');
});
