// Small helpers shared by the benchmark and GPU-kit scripts (bench/, scripts/gpu/).
'use strict';

/** `--key=value` -> { key: 'value' } (values may contain '='), `--flag` -> { flag: true }. */
function parseFlags(argv = process.argv.slice(2)) {
  return Object.fromEntries(argv.map((a) => {
    const [k, ...v] = a.replace(/^--/, '').split('=');
    return [k, v.length ? v.join('=') : true];
  }));
}

/** The median of a list of numbers; null for an empty list. */
function median(values) {
  if (!values.length) return null;
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** One slot of scripts/gpu/reference/slots.json (the GPU kit's shapes), or of --slots=FILE. */
function slotSpec(args, name) {
  const fs = require('fs');
  const path = require('path');
  const file = args.slots ?? path.join(__dirname, '..', 'scripts', 'gpu', 'reference', 'slots.json');
  return JSON.parse(fs.readFileSync(file, 'utf8'))[name];
}

module.exports = { median, parseFlags, slotSpec };
