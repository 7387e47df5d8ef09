// Lets a child process run the TypeScript sources directly (node -r test/helpers/ts-register.js
// lib/cli/train.ts ...), as jest does through ts-jest: each .ts file is transpiled on require.
// The multi-process suites start their ranks this way, so they test lib/, never a stale dist/.
'use strict';
const fs = require('fs');
const ts = require('typescript');

require.extensions['.ts'] = (module, filename) => {
  const out = ts.transpileModule(fs.readFileSync(filename, 'utf8'), {
    fileName: filename,
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, inlineSourceMap: true },
  });
  module._compile(out.outputText, filename);
};
