// Text -> token shards (what `newton-muon-data` and the bundled corpus run). Each document is
// stored as [eot, ...tokens], documents back to back; the first tokens form the val shard
// `<prefix>_val_000000.bin`, the rest train shards `<prefix>_train_000001.bin`, ... of
// `shardSize` tokens (the last one shorter), as modded-nanogpt's fineweb.py lays out FineWeb.
//
// Two passes with bounded memory: text is read and tokenized in chunks into one temp file of raw
// uint16 tokens (the val split needs the total count first), then cut into shards. Every shard is
// written under a temp name and all are renamed at the end, so a failure leaves nothing behind.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';

import { DataError, fsReason } from './errors';
import { MAX_SHARD_TOKENS, ShardWriter } from './shard';
import { getTokenizer } from './tokenizer';
import type { Tokenizer, TokenizerName } from './tokenizer';

export const DEFAULT_SHARD_SIZE = 100_000_000;
export const DEFAULT_VAL_FRACTION = 0.05;
export const DEFAULT_PREFIX = 'data';
const READ_CHUNK_BYTES = 4 << 20;
const IO_TOKENS = 1 << 20;

/** One document: a name (for messages), its size in bytes (for progress), its text in chunks. */
export interface TextDocument {
  name: string;
  bytes: number;
  chunks(): Iterable<string>;
}

/** A document held in memory. */
export function textDocument(name: string, text: string): TextDocument {
  return { name, bytes: Buffer.byteLength(text, 'utf8'), chunks: () => [text] };
}

const WHITESPACE = /\s/;

/**
 * Where `text` can be cut so that tokenizing the two halves apart gives the same tokens as the
 * whole: at a space with non-whitespace on both sides ("a| b", "1,| 2"). GPT-2's pre-tokenizer
 * never joins a non-space character to a following space (the space starts the next piece:
 * " b", " 2", " ("), and BPE never merges across pieces, so the pieces of the halves are the
 * pieces of the whole. Returns the last such index at or after `from`, or -1.
 */
export function lastSafeCut(text: string, from = 0): number {
  for (let i = text.length - 2; i >= Math.max(from, 1); i--) {
    if (text.charCodeAt(i) === 0x20 && !WHITESPACE.test(text[i - 1]) && !WHITESPACE.test(text[i + 1])) return i;
  }
  return -1;
}

/**
 * A UTF-8 text file as a document, read `chunkBytes` at a time and cut only at safe places, so
 * memory stays bounded for big files. Throws a DataError for a missing, unreadable or non-UTF-8 file.
 */
export function fileDocument(file: string, options: { chunkBytes?: number } = {}): TextDocument {
  const chunkBytes = options.chunkBytes ?? READ_CHUNK_BYTES;
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (error) {
    throw new DataError(`cannot read input '${file}': ${fsReason(error)}`);
  }
  if (!stat.isFile()) throw new DataError(`cannot read input '${file}': not a regular file`);
  function* chunks(): Generator<string> {
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (error) {
      throw new DataError(`cannot read input '${file}': ${fsReason(error)}`);
    }
    try {
      const decoder = new TextDecoder('utf-8', { fatal: true });
      const buffer = Buffer.alloc(chunkBytes);
      let pending = '';
      let offset = 0;
      for (;;) {
        let n: number;
        try {
          n = fs.readSync(fd, buffer, 0, chunkBytes, offset);
        } catch (error) {
          throw new DataError(`cannot read input '${file}': ${fsReason(error)}`);
        }
        try {
          pending += decoder.decode(buffer.subarray(0, n), { stream: n > 0 });
        } catch {
          throw new DataError(`${file}: not UTF-8 text (invalid byte sequence within bytes ${offset}..${offset + n}); ` +
            'inputs must be UTF-8 text files');
        }
        offset += n;
        if (n === 0) break;
        if (pending.length >= chunkBytes) {
          const cut = lastSafeCut(pending, pending.length >> 1);
          if (cut > 0) {
            yield pending.slice(0, cut);
            pending = pending.slice(cut);
          }
        }
      }
      if (pending.length > 0) yield pending;
    } finally {
      fs.closeSync(fd);
    }
  }
  return { name: file, bytes: stat.size, chunks };
}

export type ShardSplit = 'val' | 'train';

/** `<prefix>_<split>_<index, 6 digits>.bin`, the FineWeb naming. */
export function shardName(prefix: string, split: ShardSplit, index: number): string {
  return `${prefix}_${split}_${String(index).padStart(6, '0')}.bin`;
}

/** Shards of this prefix already in a folder (full paths, sorted). */
export function existingShards(outDir: string, prefix: string): string[] {
  const re = new RegExp(`^${prefix.replace(/[.\\^$|+*?()[\]{}-]/g, '\\$&')}_(val|train)_\\d{6}\\.bin$`);
  let names: string[];
  try {
    names = fs.readdirSync(outDir);
  } catch {
    return [];
  }
  return names.filter((n) => re.test(n)).sort().map((n) => path.join(outDir, n));
}

export interface PrepareProgress {
  /** 'tokenize': reading text (done/total in bytes); 'write': cutting shards (done/total in tokens). */
  phase: 'tokenize' | 'write';
  done: number;
  total: number;
  /** Tokens produced so far. */
  tokens: number;
  /** Documents finished so far, of `documentCount`. */
  documents: number;
  documentCount: number;
}

export interface PrepareOptions {
  outDir: string;
  /** File name prefix (default 'data'): letters, digits, '.', '_', '-'. */
  prefix?: string;
  tokenizer?: TokenizerName | Tokenizer;
  /** Tokens per train shard (default 1e8, as FineWeb). */
  shardSize?: number;
  /** Share of all tokens (the first ones) for the val shard (default 0.05). */
  valFraction?: number;
  /** Or an exact number of val tokens. */
  valTokens?: number;
  /** Replace shards of this prefix already in outDir (otherwise refuse). */
  force?: boolean;
  onProgress?: (progress: PrepareProgress) => void;
}

export interface PrepareResult {
  outDir: string;
  valFiles: string[];
  trainFiles: string[];
  tokens: number;
  valTokens: number;
  trainTokens: number;
  documents: number;
  tokenizer: TokenizerName;
  vocabSize: number;
  eotToken: number;
}

interface ResolvedOptions {
  outDir: string;
  prefix: string;
  tokenizer: Tokenizer;
  shardSize: number;
  valFraction: number | null;
  valTokens: number | null;
  force: boolean;
}

function resolveOptions(options: PrepareOptions): ResolvedOptions {
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(prefix)) {
    throw new DataError(`prefix must be letters, digits, '.', '_' or '-' (got '${prefix}')`);
  }
  const tokenizer = typeof options.tokenizer === 'object' ? options.tokenizer : getTokenizer(options.tokenizer ?? 'gpt2');
  const shardSize = options.shardSize ?? DEFAULT_SHARD_SIZE;
  if (!Number.isSafeInteger(shardSize) || shardSize < 1 || shardSize > MAX_SHARD_TOKENS) {
    throw new DataError(`shard size must be an integer number of tokens in [1, ${MAX_SHARD_TOKENS}] (got ${shardSize})`);
  }
  if (options.valFraction !== undefined && options.valTokens !== undefined) {
    throw new DataError('give either a val fraction or a number of val tokens, not both');
  }
  let valFraction: number | null = null;
  let valTokens: number | null = null;
  if (options.valTokens !== undefined) {
    valTokens = options.valTokens;
    if (!Number.isSafeInteger(valTokens) || valTokens < 1 || valTokens > MAX_SHARD_TOKENS) {
      throw new DataError(`val tokens must be an integer in [1, ${MAX_SHARD_TOKENS}] (got ${valTokens})`);
    }
  } else {
    valFraction = options.valFraction ?? DEFAULT_VAL_FRACTION;
    if (!(typeof valFraction === 'number' && valFraction > 0 && valFraction < 1)) {
      throw new DataError(`val fraction must be a number strictly between 0 and 1 (got ${valFraction})`);
    }
  }
  if (typeof options.outDir !== 'string' || options.outDir.length === 0) {
    throw new DataError('an output folder is required');
  }
  return { outDir: options.outDir, prefix, tokenizer, shardSize, valFraction, valTokens, force: options.force ?? false };
}

function tempName(dir: string, base: string): string {
  return path.join(dir, `.${base}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`);
}

/** Tokenizes documents into shards in `outDir`. Throws a DataError (and writes nothing) on bad input. */
export function prepareShards(documents: readonly TextDocument[], options: PrepareOptions): PrepareResult {
  const opts = resolveOptions(options);
  const { outDir, prefix, tokenizer } = opts;
  if (documents.length === 0) throw new DataError('no input documents');
  const report = options.onProgress ?? ((): void => {});

  const existing = existingShards(outDir, prefix);
  if (existing.length > 0 && !opts.force) {
    throw new DataError(`'${outDir}' already holds ${existing.length} shard${existing.length > 1 ? 's' : ''} named ` +
      `${prefix}_*.bin (${path.basename(existing[0])}${existing.length > 1 ? ', ...' : ''}); use --force to replace them`);
  }
  try {
    fs.mkdirSync(outDir, { recursive: true });
    fs.accessSync(outDir, fs.constants.W_OK);
  } catch (error) {
    throw new DataError(`cannot write to output folder '${outDir}': ${fsReason(error)}`);
  }

  const rawFile = tempName(outDir, `${prefix}.tokens`);
  const writers: ShardWriter[] = [];
  let rawFd: number | null = null;
  try {
    // Pass 1: documents -> raw uint16 tokens in a temp file.
    try {
      rawFd = fs.openSync(rawFile, 'wx+');
    } catch (error) {
      throw new DataError(`cannot write to output folder '${outDir}': ${fsReason(error)}`);
    }
    const totalBytes = documents.reduce((sum, d) => sum + d.bytes, 0);
    const buffer = new Uint16Array(IO_TOKENS);
    let buffered = 0;
    let tokens = 0;
    let bytesDone = 0;
    const flush = (): void => {
      const bytes = new Uint8Array(buffer.buffer, 0, buffered * 2);
      try {
        let done = 0;
        while (done < bytes.length) done += fs.writeSync(rawFd as number, bytes, done, bytes.length - done);
      } catch (error) {
        throw new DataError(`cannot write to output folder '${outDir}': ${fsReason(error)}`);
      }
      buffered = 0;
    };
    const push = (ids: readonly number[]): void => {
      for (const id of ids) {
        buffer[buffered++] = id;
        if (buffered === IO_TOKENS) flush();
      }
      tokens += ids.length;
    };
    documents.forEach((doc, index) => {
      push([tokenizer.eotToken]);
      for (const chunk of doc.chunks()) {
        push(tokenizer.encode(chunk));
        bytesDone += Buffer.byteLength(chunk, 'utf8');
        report({ phase: 'tokenize', done: Math.min(bytesDone, totalBytes), total: totalBytes, tokens, documents: index, documentCount: documents.length });
      }
      report({ phase: 'tokenize', done: Math.min(bytesDone, totalBytes), total: totalBytes, tokens, documents: index + 1, documentCount: documents.length });
    });
    flush();

    // The split.
    const valTokens = opts.valTokens ?? Math.max(1, Math.round(tokens * (opts.valFraction as number)));
    if (valTokens > MAX_SHARD_TOKENS) {
      throw new DataError(`the val split of ${valTokens} tokens does not fit one shard (at most ${MAX_SHARD_TOKENS}); use --val-tokens`);
    }
    if (tokens - valTokens < 1) {
      throw new DataError(`the input holds ${tokens} tokens, too few for ${valTokens} val tokens and at least 1 train token`);
    }

    // Pass 2: raw tokens -> shards under temp names.
    const valFiles = [path.join(outDir, shardName(prefix, 'val', 0))];
    const trainFiles: string[] = [];
    let writer = new ShardWriter(valFiles[0]);
    writers.push(writer);
    let room = valTokens;
    let offset = 0;
    while (offset < tokens) {
      const n = Math.min(IO_TOKENS, tokens - offset);
      const chunk = new Uint16Array(n);
      const bytes = new Uint8Array(chunk.buffer);
      let got = 0;
      while (got < bytes.length) {
        const r = fs.readSync(rawFd, bytes, got, bytes.length - got, offset * 2 + got);
        if (r === 0) throw new DataError(`temp file '${rawFile}' ended early (was it removed?)`);
        got += r;
      }
      let i = 0;
      while (i < n) {
        if (room === 0) {
          writer.finish();
          const file = path.join(outDir, shardName(prefix, 'train', trainFiles.length + 1));
          trainFiles.push(file);
          writer = new ShardWriter(file);
          writers.push(writer);
          room = opts.shardSize;
        }
        const take = Math.min(room, n - i);
        writer.append(chunk.subarray(i, i + take));
        room -= take;
        i += take;
      }
      offset += n;
      report({ phase: 'write', done: offset, total: tokens, tokens, documents: documents.length, documentCount: documents.length });
    }
    writer.finish();

    // All shards are complete on disk: give them their names, then drop shards left from before.
    for (const w of writers) w.publish();
    const written = new Set([...valFiles, ...trainFiles].map((f) => path.resolve(f)));
    for (const old of existing) {
      if (!written.has(path.resolve(old))) fs.rmSync(old, { force: true });
    }
    return {
      outDir, valFiles, trainFiles, tokens, valTokens, trainTokens: tokens - valTokens,
      documents: documents.length, tokenizer: tokenizer.name, vocabSize: tokenizer.vocabSize, eotToken: tokenizer.eotToken,
    };
  } catch (error) {
    for (const w of writers) w.abort();
    throw error;
  } finally {
    if (rawFd !== null) fs.closeSync(rawFd);
    fs.rmSync(rawFile, { force: true });
  }
}
