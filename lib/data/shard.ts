// The token shard format of modded-nanogpt and llm.c (the FineWeb10B shards are in it):
//   a header of 256 little-endian int32 (1024 bytes): [0] magic 20240520, [1] version 1,
//   [2] the number of tokens; the rest zero. Then that many little-endian uint16 token ids.
// Shards are 200 MB each, so the reader never loads one whole: it reads the header, then token
// ranges at offsets (fs.readSync), keeping one window of the file in memory.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { DataError, fsReason } from './errors';

export const SHARD_MAGIC = 20240520;
export const SHARD_VERSION = 1;
export const SHARD_HEADER_INTS = 256;
export const SHARD_HEADER_BYTES = SHARD_HEADER_INTS * 4;
/** The header holds the count in an int32. */
export const MAX_SHARD_TOKENS = 0x7fffffff;
/** Token ids are stored as uint16. */
export const MAX_TOKEN_ID = 0xffff;
/** Tokens the reader keeps in memory by default (2 MiB). */
export const DEFAULT_WINDOW_TOKENS = 1 << 20;

const LITTLE_ENDIAN_HOST = os.endianness() === 'LE';

export interface ShardHeader {
  /** The path as given. */
  file: string;
  /** The token count the header declares (checked against the file size). */
  tokens: number;
}

function label(file: string): string {
  return path.basename(file);
}

/** Checks a header against the file's size; returns the token count or throws naming the problem. */
function checkHeader(file: string, header: Buffer, fileBytes: number): number {
  const name = label(file);
  if (fileBytes < SHARD_HEADER_BYTES) {
    throw new DataError(`${name}: ${fileBytes} bytes, shorter than the ${SHARD_HEADER_BYTES}-byte shard header (not a token shard, or truncated)`);
  }
  const magic = header.readInt32LE(0);
  if (magic !== SHARD_MAGIC) {
    throw new DataError(`${name}: magic ${magic}, expected ${SHARD_MAGIC} (not a token shard)`);
  }
  const version = header.readInt32LE(4);
  if (version !== SHARD_VERSION) {
    throw new DataError(`${name}: version ${version}, expected ${SHARD_VERSION} (unsupported token shard version)`);
  }
  const tokens = header.readInt32LE(8);
  if (tokens < 0) {
    throw new DataError(`${name}: header declares ${tokens} tokens, expected a count >= 0 (corrupt header)`);
  }
  const expected = SHARD_HEADER_BYTES + 2 * tokens;
  if (fileBytes !== expected) {
    const actualTokens = (fileBytes - SHARD_HEADER_BYTES) / 2;
    const why = fileBytes < expected ? 'truncated' : 'trailing bytes after the tokens';
    throw new DataError(`${name}: header declares ${tokens} tokens (${expected} bytes), but the file is ${fileBytes} bytes ` +
      `(${Number.isInteger(actualTokens) ? `${actualTokens} tokens` : 'an odd number of data bytes'}; ${why})`);
  }
  return tokens;
}

function openForReading(file: string): number {
  try {
    const fd = fs.openSync(file, 'r');
    if (fs.fstatSync(fd).isDirectory()) {
      fs.closeSync(fd);
      throw Object.assign(new Error('EISDIR'), { code: 'EISDIR' });
    }
    return fd;
  } catch (error) {
    throw new DataError(`${label(file)}: cannot open token shard '${file}': ${fsReason(error)}`);
  }
}

/** Reads exactly buffer.length bytes at `position`, or throws (the file shrank under us). */
function readFully(fd: number, file: string, buffer: Uint8Array, position: number): void {
  let done = 0;
  while (done < buffer.length) {
    const n = fs.readSync(fd, buffer, done, buffer.length - done, position + done);
    if (n === 0) {
      throw new DataError(`${label(file)}: file ended at byte ${position + done}, expected ${position + buffer.length} bytes (truncated while reading?)`);
    }
    done += n;
  }
}

function readHeaderFd(fd: number, file: string): number {
  const size = fs.fstatSync(fd).size;
  const header = Buffer.alloc(SHARD_HEADER_BYTES);
  if (size >= SHARD_HEADER_BYTES) readFully(fd, file, header, 0);
  return checkHeader(file, header, size);
}

/** Reads and validates a shard's header (magic, version, declared count vs file size). */
export function readShardHeader(file: string): ShardHeader {
  const fd = openForReading(file);
  try {
    return { file, tokens: readHeaderFd(fd, file) };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Random access to one shard's tokens with bounded memory: a window of `windowTokens` tokens
 * (default 1M = 2 MiB) is cached; a range inside it costs no I/O. Close it when done.
 */
export class ShardReader {
  readonly file: string;
  readonly tokens: number;
  private fd: number | null;
  private readonly windowTokens: number;
  private window: Uint16Array = new Uint16Array(0);
  private windowStart = 0;

  constructor(file: string, options: { windowTokens?: number } = {}) {
    const windowTokens = options.windowTokens ?? DEFAULT_WINDOW_TOKENS;
    if (!Number.isInteger(windowTokens) || windowTokens < 1) {
      throw new DataError(`ShardReader: windowTokens must be a positive integer (got ${windowTokens})`);
    }
    this.file = file;
    this.windowTokens = windowTokens;
    this.fd = openForReading(file);
    try {
      this.tokens = readHeaderFd(this.fd, file);
    } catch (error) {
      this.close();
      throw error;
    }
  }

  /** Tokens [start, start + count) as a fresh array. */
  read(start: number, count: number): Uint16Array {
    if (this.fd === null) throw new DataError(`${label(this.file)}: the shard reader is closed`);
    if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 || start + count > this.tokens) {
      throw new DataError(`${label(this.file)}: cannot read tokens [${start}, ${start + count}): ` +
        `expected a range inside [0, ${this.tokens})`);
    }
    const end = start + count;
    if (start >= this.windowStart && end <= this.windowStart + this.window.length) {
      return this.window.slice(start - this.windowStart, end - this.windowStart);
    }
    if (count > this.windowTokens) return this.readDirect(start, count);
    this.window = this.readDirect(start, Math.min(this.windowTokens, this.tokens - start));
    this.windowStart = start;
    return this.window.slice(0, count);
  }

  private readDirect(start: number, count: number): Uint16Array {
    const out = new Uint16Array(count);
    readFully(this.fd as number, this.file, new Uint8Array(out.buffer), SHARD_HEADER_BYTES + 2 * start);
    if (!LITTLE_ENDIAN_HOST) Buffer.from(out.buffer).swap16();
    return out;
  }

  close(): void {
    if (this.fd !== null) {
      fs.closeSync(this.fd);
      this.fd = null;
    }
    this.window = new Uint16Array(0);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Reads a whole shard. For small shards (tests, the bundled corpus); use ShardReader for big ones. */
export function readShard(file: string): Uint16Array {
  const reader = new ShardReader(file, { windowTokens: 1 });
  try {
    return reader.read(0, reader.tokens);
  } finally {
    reader.close();
  }
}

function checkTokens(file: string, tokens: ArrayLike<number>, offset: number): Uint16Array {
  if (tokens instanceof Uint16Array) return tokens;
  const out = new Uint16Array(tokens.length);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (!Number.isInteger(t) || t < 0 || t > MAX_TOKEN_ID) {
      throw new DataError(`${label(file)}: token ${t} at index ${offset + i} does not fit the shard format (expected an integer in [0, ${MAX_TOKEN_ID}])`);
    }
    out[i] = t;
  }
  return out;
}

/**
 * Writes a shard incrementally into a hidden temp file next to the target: append() tokens,
 * then commit() (header, fsync, rename). abort() removes the temp file. Until commit nothing
 * exists under the target's name, so a crash never leaves a half-written shard.
 * finish() + publish() split commit in two, for writing several shards that appear together.
 */
export class ShardWriter {
  readonly file: string;
  readonly tempFile: string;
  private fd: number | null;
  private count = 0;
  private state: 'open' | 'finished' | 'published' | 'aborted' = 'open';

  constructor(file: string) {
    this.file = file;
    const dir = path.dirname(file);
    this.tempFile = path.join(dir, `.${path.basename(file)}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`);
    try {
      this.fd = fs.openSync(this.tempFile, 'wx');
      fs.writeSync(this.fd, Buffer.alloc(SHARD_HEADER_BYTES)); // the real header is written by finish()
    } catch (error) {
      this.fd = null;
      this.state = 'aborted';
      try { fs.unlinkSync(this.tempFile); } catch { /* never created */ }
      throw new DataError(`cannot write token shard '${file}': ${fsReason(error)}`);
    }
  }

  /** Tokens written so far. */
  get tokens(): number {
    return this.count;
  }

  append(tokens: ArrayLike<number>): void {
    if (this.state !== 'open' || this.fd === null) throw new DataError(`${label(this.file)}: append after the shard was ${this.state}`);
    if (this.count + tokens.length > MAX_SHARD_TOKENS) {
      throw new DataError(`${label(this.file)}: more than ${MAX_SHARD_TOKENS} tokens (the header's int32 count cannot hold them)`);
    }
    const data = checkTokens(this.file, tokens, this.count);
    let bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (!LITTLE_ENDIAN_HOST) bytes = Buffer.from(bytes).swap16();
    this.write(bytes, null);
    this.count += data.length;
  }

  private write(bytes: Uint8Array, position: number | null): void {
    try {
      let done = 0;
      while (done < bytes.length) {
        done += fs.writeSync(this.fd as number, bytes, done, bytes.length - done, position === null ? null : position + done);
      }
    } catch (error) {
      this.abort();
      throw new DataError(`cannot write token shard '${this.file}': ${fsReason(error)}`);
    }
  }

  /** Writes the header and flushes the temp file to disk; the target name does not exist yet. */
  finish(): void {
    if (this.state !== 'open' || this.fd === null) throw new DataError(`${label(this.file)}: finish after the shard was ${this.state}`);
    const header = Buffer.alloc(SHARD_HEADER_BYTES);
    header.writeInt32LE(SHARD_MAGIC, 0);
    header.writeInt32LE(SHARD_VERSION, 4);
    header.writeInt32LE(this.count, 8);
    this.write(header, 0);
    try {
      fs.fsyncSync(this.fd);
      fs.closeSync(this.fd);
      this.fd = null;
    } catch (error) {
      this.abort();
      throw new DataError(`cannot write token shard '${this.file}': ${fsReason(error)}`);
    }
    this.state = 'finished';
  }

  /** Renames the finished temp file to the target (atomically replacing an existing file). */
  publish(): void {
    if (this.state !== 'finished') throw new DataError(`${label(this.file)}: publish needs a finished shard (it is ${this.state})`);
    try {
      fs.renameSync(this.tempFile, this.file);
    } catch (error) {
      this.abort();
      throw new DataError(`cannot write token shard '${this.file}': ${fsReason(error)}`);
    }
    this.state = 'published';
  }

  commit(): void {
    this.finish();
    this.publish();
  }

  /** Drops the temp file; a no-op once published. */
  abort(): void {
    if (this.state === 'published' || this.state === 'aborted') return;
    if (this.fd !== null) {
      try { fs.closeSync(this.fd); } catch { /* already closed */ }
      this.fd = null;
    }
    try { fs.unlinkSync(this.tempFile); } catch { /* already gone */ }
    this.state = 'aborted';
  }
}

/** Writes a whole shard atomically (temp file + rename). Tokens must be integers in [0, 65535]. */
export function writeShard(file: string, tokens: ArrayLike<number>): void {
  const writer = new ShardWriter(file);
  try {
    writer.append(tokens);
    writer.commit();
  } catch (error) {
    writer.abort();
    throw error;
  }
}
