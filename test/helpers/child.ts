// Runs a piece of JavaScript in a fresh `node` child that can require the package's TypeScript
// sources (lib/*.ts, compiled on the fly by TypeScript's transpileModule; `lib` is their folder).
// For what a process can do only once: load the CUDA module (the addon loads it once per process)
// under a given environment.
import { spawnSync } from 'child_process';
import * as path from 'path';

const LIB = path.join(__dirname, '..', '..', 'lib');

const PRELUDE = `
const fs = require('fs');
const ts = require(${JSON.stringify(require.resolve('typescript'))});
require.extensions['.ts'] = (module, filename) => {
  const source = fs.readFileSync(filename, 'utf8');
  const { outputText } = ts.transpileModule(source, {
    fileName: filename,
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
  });
  module._compile(outputText, filename);
};
const lib = ${JSON.stringify(LIB)};
`;

/** The child's stdout; throws with its output when it exits non-zero. `unset` names variables removed from the environment. */
export function runLibChild(script: string, env: Record<string, string>, unset: string[] = [], timeout = 60000): string {
  const base = { ...process.env };
  for (const name of unset) delete base[name];
  const result = spawnSync(process.execPath, ['-e', PRELUDE + script], { env: { ...base, ...env }, encoding: 'utf8', timeout });
  if (result.status !== 0) {
    throw new Error(`child exited with ${result.status ?? result.signal}:\n${result.stderr}\n${result.stdout}`);
  }
  return result.stdout;
}
