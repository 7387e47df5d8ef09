// The safetensors format (what PyTorch / Hugging Face users exchange weights in): an 8-byte
// little-endian header length, a JSON header { name: { dtype, shape, data_offsets } }, then the
// raw little-endian data. We read and write F32 tensors (and read BF16, widened to f32).
import * as fs from 'fs';
import * as path from 'path';

import { fromBf16Array } from '../dtype';

export interface SafetensorsEntry {
  shape: number[];
  data: Float32Array;
}

/** Writes tensors atomically (temp file + rename): a crash never leaves a half-written file. */
export function writeSafetensors(file: string, tensors: Record<string, SafetensorsEntry>, metadata: Record<string, string> = {}): void {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  const names = Object.keys(tensors);
  for (const name of names) {
    const { shape, data } = tensors[name];
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8); // align the data section to 8 bytes
  const jsonBytes = Buffer.from(json, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(jsonBytes.length));
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, prefix);
    fs.writeSync(fd, jsonBytes);
    for (const name of names) {
      const { data } = tensors[name];
      fs.writeSync(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    }
    fs.fsyncSync(fd);
  } catch (error) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw error;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
}

interface ParsedHeader {
  bytes: Buffer;
  dataStart: number;
  header: Record<string, unknown>;
}

function parse(file: string): ParsedHeader {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (error) {
    throw new Error(`safetensors: cannot read ${file}: ${(error as Error).message}`);
  }
  if (bytes.length < 8) throw new Error(`safetensors: ${file} is too short (${bytes.length} bytes) to be a safetensors file`);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  if (headerLength <= 0 || 8 + headerLength > bytes.length) {
    throw new Error(`safetensors: ${file} declares a ${headerLength}-byte header but has ${bytes.length} bytes in all`);
  }
  let header: unknown;
  try {
    header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
  } catch {
    throw new Error(`safetensors: ${file} has an unreadable JSON header`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw new Error(`safetensors: ${file} has a JSON header that is not an object`);
  }
  return { bytes, dataStart: 8 + headerLength, header: header as Record<string, unknown> };
}

/** The header's __metadata__ (string to string), or {}. */
export function readSafetensorsMetadata(file: string): Record<string, string> {
  return (parse(file).header.__metadata__ as Record<string, string> | undefined) ?? {};
}

/** Reads every tensor (F32, or BF16 widened to f32); throws naming the file and the problem. */
export function readSafetensors(file: string): Record<string, SafetensorsEntry> {
  const { bytes, dataStart, header } = parse(file);
  const out: Record<string, SafetensorsEntry> = {};
  for (const [name, value] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const isIndex = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
    const entry = (value ?? {}) as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const { dtype, shape, data_offsets: offsets } = entry;
    if (typeof value !== 'object' || !Array.isArray(shape) || !shape.every(isIndex) || !Array.isArray(offsets) || offsets.length !== 2
      || !offsets.every(isIndex) || offsets[1] < offsets[0]) {
      throw new Error(`safetensors: ${file}: tensor '${name}' has a malformed header entry`);
    }
    const numel = shape.reduce((a, b) => a * b, 1);
    const size = dtype === 'F32' ? 4 : dtype === 'BF16' ? 2 : 0;
    if (size === 0) throw new Error(`safetensors: ${file}: tensor '${name}' has dtype ${dtype}; only F32 and BF16 are supported`);
    const [begin, end] = offsets;
    if (end - begin !== numel * size || dataStart + end > bytes.length) {
      throw new Error(`safetensors: ${file}: tensor '${name}' (${dtype} ${JSON.stringify(shape)}) has a data range [${begin}, ${end}) that does not match its size or the file`);
    }
    const copy = new Uint8Array(end - begin);
    copy.set(bytes.subarray(dataStart + begin, dataStart + end));
    out[name] = { shape, data: size === 4 ? new Float32Array(copy.buffer) : fromBf16Array(new Uint16Array(copy.buffer)) };
  }
  return out;
}
