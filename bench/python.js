// Finds (or makes) a Python with numpy for the yardstick measurements: the system python3 if it
// has numpy, else a venv in .bench/venv with numpy and threadpoolctl from PyPI.
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.join(__dirname, '..');

function hasNumpy(python) {
  return spawnSync(python, ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0;
}

function pythonWithNumpy() {
  if (hasNumpy('python3')) return 'python3';
  const venv = path.join(root, '.bench', 'venv');
  const python = path.join(venv, 'bin', 'python');
  if (!fs.existsSync(python)) {
    const made = spawnSync('python3', ['-m', 'venv', venv], { stdio: 'inherit' });
    if (made.status !== 0) return null;
  }
  if (!hasNumpy(python)) {
    const pip = spawnSync(python, ['-m', 'pip', 'install', '--quiet', 'numpy', 'threadpoolctl'], { stdio: 'inherit' });
    if (pip.status !== 0) return null;
  }
  return python;
}

/** Runs script with JSON on stdin; returns parsed JSON stdout, or null (with the reason logged). */
function runPythonJson(script, input, args = []) {
  const python = pythonWithNumpy();
  if (!python) {
    console.warn('bench: no Python with numpy could be set up; skipping the numpy comparison');
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
