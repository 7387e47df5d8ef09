// Lets a child process run the TypeScript sources directly (node -r test/helpers/ts-register.js
// lib/cli/train.ts ...), as jest does through ts-jest: each .ts file is transpiled on require.
// The multi-process suites start their ranks this way, so they test lib/, never a stale dist/.
// Transpiled files are cached (keyed by path, size and mtime) in a temp folder, so the many short
// rank processes of the suites do not each pay for loading the compiler.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');

const cacheDir = path.join(os.tmpdir(), `nm-ts-register-${process.getuid?.() ?? 'u'}`);
let ts = null;

function transpile(filename, source) {
  ts ??= require('typescript');
  return ts.transpileModule(source, {
    fileName: filename,
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, inlineSourceMap: true },
  }).outputText;
}

require.extensions['.ts'] = (module, filename) => {
  const stat = fs.statSync(filename);
  const key = crypto.createHash('sha1').update(`${filename}\0${stat.size}\0${stat.mtimeMs}`).digest('hex');
  const cached = path.join(cacheDir, `${key}.js`);
  let code;
  try {
    code = fs.readFileSync(cached, 'utf8');
  } catch {
    code = transpile(filename, fs.readFileSync(filename, 'utf8'));
    try {
      fs.mkdirSync(cacheDir, { recursive: true });
      const tmp = `${cached}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, code);
      fs.renameSync(tmp, cached);
    } catch {
      // a cache that cannot be written only costs time
    }
  }
  module._compile(code, filename);
};
