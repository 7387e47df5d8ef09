// Writes one section of docs/BENCHMARKS.md between markers, keeping every other section, and
// describes the machine and commit the numbers came from.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.join(__dirname, '..');
const file = path.join(root, 'docs', 'BENCHMARKS.md');

function machine() {
  const cpu = os.cpus()[0]?.model?.trim() ?? 'unknown CPU';
  const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).stdout.trim() || 'unknown';
  const dirty = spawnSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: root, encoding: 'utf8' }).stdout.trim() ? ' (uncommitted changes)' : '';
  return `${cpu}, ${os.cpus().length} logical cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; ` +
    `Node ${process.version}; ${new Date().toISOString().slice(0, 10)}; commit ${commit}${dirty}`;
}

const HEADER = '# Benchmarks\n\nProduced by `npm run bench` (sections are rewritten by the run that measures them).\n' +
  'Tests never assert timings; the numbers live here.\n';

function writeSection(name, body) {
  const start = `<!-- bench:${name}:start -->`;
  const end = `<!-- bench:${name}:end -->`;
  const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : HEADER;
  const block = `${start}\n${body.trim()}\n${end}`;
  const re = new RegExp(`${start}[\\s\\S]*?${end}`);
  const next = re.test(text) ? text.replace(re, block) : `${text.trimEnd()}\n\n${block}\n`;
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, next);
  fs.renameSync(tmp, file);
}

module.exports = { machine, writeSection };
