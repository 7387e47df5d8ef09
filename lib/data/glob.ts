// File patterns for shards and text inputs: `*` (any run of characters) and `?` (one character)
// in the last path component, e.g. `data/fineweb_train_*.bin`. Matches are sorted by name, so
// zero-padded shard numbers come out in order. Hidden files (temp files) match only a pattern that
// itself starts with a dot.
import * as fs from 'fs';
import * as path from 'path';

import { DataError, fsReason } from './errors';

export function hasWildcard(pattern: string): boolean {
  return /[*?]/.test(pattern);
}

function toRegExp(component: string): RegExp {
  let source = '';
  for (const ch of component) {
    if (ch === '*') source += '[^/]*';
    else if (ch === '?') source += '[^/]';
    else source += ch.replace(/[\\^$.|+()[\]{}]/g, '\\$&');
  }
  return new RegExp(`^${source}$`, 'u');
}

/**
 * The files a pattern names: a plain path is returned as is (if it exists), a pattern with `*` or
 * `?` in its last component expands to the matching regular files, sorted. Throws a DataError
 * naming the pattern when nothing matches.
 */
export function expandGlob(pattern: string): string[] {
  if (pattern.length === 0) throw new DataError('empty file pattern (expected a path or a glob such as data/train_*.bin)');
  const dir = path.dirname(pattern);
  const base = path.basename(pattern);
  if (hasWildcard(dir)) {
    throw new DataError(`'${pattern}': wildcards are supported only in the last path component (the file name)`);
  }
  if (!hasWildcard(base)) {
    if (!fs.existsSync(pattern)) throw new DataError(`no files match '${pattern}' (no such file)`);
    return [pattern];
  }
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (error) {
    throw new DataError(`no files match '${pattern}' (cannot list folder '${dir}': ${fsReason(error)})`);
  }
  const re = toRegExp(base);
  const matches = names
    .filter((name) => re.test(name) && (base.startsWith('.') || !name.startsWith('.')))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((name) => path.join(dir, name))
    .filter((file) => {
      try {
        return fs.statSync(file).isFile();
      } catch {
        return false;
      }
    });
  if (matches.length === 0) throw new DataError(`no files match '${pattern}'`);
  return matches;
}

/** Expands each pattern in order (each one's matches sorted), dropping repeats. */
export function expandGlobs(patterns: string | readonly string[]): string[] {
  const list = typeof patterns === 'string' ? [patterns] : patterns;
  if (list.length === 0) throw new DataError('no files given (expected a path or a glob such as data/train_*.bin)');
  const seen = new Set<string>();
  const out: string[] = [];
  for (const pattern of list) {
    for (const file of expandGlob(pattern)) {
      const key = path.resolve(file);
      if (!seen.has(key)) {
        seen.add(key);
        out.push(file);
      }
    }
  }
  return out;
}
