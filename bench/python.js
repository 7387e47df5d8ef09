// Finds (or makes) a Python for the yardstick measurements: for numpy, the system python3 if it
// has numpy, else a venv in .bench/venv (numpy + threadpoolctl from PyPI); for PyTorch, a venv in
// .bench/torch-venv (torch from PyPI: a large download, made once, only when a bench asks).
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.join(__dirname, '..');

function imports(python, module) {
  return spawnSync(python, ['-c', `import ${module}`], { stdio: 'ignore' }).status === 0;
}

function venvWith(dir, module, packages) {
  const venv = path.join(root, '.bench', dir);
  const python = path.join(venv, 'bin', 'python');
  if (!fs.existsSync(python)) {
    const made = spawnSync('python3', ['-m', 'venv', venv], { stdio: 'inherit' });
    if (made.status !== 0) return null;
  }
  if (!imports(python, module)) {
    const pip = spawnSync(python, ['-m', 'pip', 'install', '--quiet', ...packages], { stdio: 'inherit' });
    if (pip.status !== 0) return null;
  }
  return python;
}

function pythonFor(torch) {
  if (torch) return venvWith('torch-venv', 'torch', ['torch', 'numpy']);
  return imports('python3', 'numpy') ? 'python3' : venvWith('venv', 'numpy', ['numpy', 'threadpoolctl']);
}

/**
 * Runs script with JSON on stdin; returns parsed JSON stdout, or null (with the reason logged).
 * opts.torch: the script needs PyTorch.
 */
function runPythonJson(script, input, args = [], opts = {}) {
  const python = pythonFor(Boolean(opts.torch));
  if (!python) {
    console.warn(`bench: no Python with ${opts.torch ? 'torch' : 'numpy'} could be set up; skipping ${path.basename(script)}`);
    return null;
  }
  // OpenBLAS core-type overrides slow a current numpy down: measure it as shipped.
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  const result = spawnSync(python, [script, ...args], { input: JSON.stringify(input), env, encoding: 'utf8', maxBuffer: 1 << 24 });
  if (result.status !== 0) {
    console.warn(`bench: ${path.basename(script)} failed: ${result.stderr}`);
    return null;
  }
  return JSON.parse(result.stdout);
}

module.exports = { runPythonJson };
