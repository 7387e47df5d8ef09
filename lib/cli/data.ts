#!/usr/bin/env node
// newton-muon-data: text files -> token shards in the modded-nanogpt / llm.c format, ready for
// `newton-muon-train --data`. main(argv, io) returns the exit status and writes only through io,
// so tests drive it without spawning a process.
import { CliIO, parseChoice, parseOrUsageExit, parseSuffixed, UsageError, walkArgs } from './common';
import { DataError } from '../data/errors';
import { expandGlobs } from '../data/glob';
import { DEFAULT_PREFIX, DEFAULT_SHARD_SIZE, DEFAULT_VAL_FRACTION, fileDocument, prepareShards } from '../data/prepare';
import type { PrepareProgress, PrepareResult } from '../data/prepare';
import { MAX_SHARD_TOKENS } from '../data/shard';
import { TOKENIZER_NAMES } from '../data/tokenizer';
import type { TokenizerName } from '../data/tokenizer';

const USAGE = `Usage: newton-muon-data --input <file|glob> [--input ...] --out <dir> [options]

Tokenizes UTF-8 text files into token shards (the modded-nanogpt / llm.c .bin format: a
1024-byte header, then uint16 token ids). Each input file is one document and starts with the
end-of-text token. The first tokens go to <prefix>_val_000000.bin, the rest to
<prefix>_train_000001.bin, <prefix>_train_000002.bin, ... Nothing is written unless all of it is.

Options:
  -i, --input <file|glob>  text file(s) to tokenize; repeatable; '*' and '?' work in the file
                           name (quote the glob); plain arguments are inputs too
  -o, --out <dir>          folder for the shards (created if missing)
  --tokenizer gpt2|byte    gpt2: GPT-2 BPE, vocab 50257, eot 50256 (default)
                           byte: UTF-8 bytes, vocab 257, eot 256
  --shard-size <tokens>    tokens per train shard (default ${DEFAULT_SHARD_SIZE.toExponential()}; 1e6, 50M, 2000000 ...)
  --val-fraction <f>       share of the tokens for the val shard, 0 < f < 1 (default ${DEFAULT_VAL_FRACTION})
  --val-tokens <n>         or exactly n val tokens
  --prefix <name>          shard file name prefix (default '${DEFAULT_PREFIX}')
  --force                  replace shards with this prefix already in <dir>
  -h, --help               show this text

Examples:
  newton-muon-data --input book.txt --out data/book
  newton-muon-data --input 'corpus/*.txt' --out data/corpus --prefix corpus --shard-size 1e7
  newton-muon-data -i notes.md -i 'papers/*.txt' -o data/mine --tokenizer byte --val-tokens 100000
  newton-muon-train --data 'data/book/data_train_*.bin' --val-data 'data/book/data_val_*.bin'
`;

/** What main() writes to; process.stdout / process.stderr by default. */
export type DataCliIO = CliIO;

export interface DataArgs {
  help: boolean;
  inputs: string[];
  out: string | null;
  tokenizer: TokenizerName;
  shardSize: number;
  valFraction?: number;
  valTokens?: number;
  prefix: string;
  force: boolean;
}

export { UsageError };

/** A token count: 100000000, 1e8, 100M, 50k. */
export function parseCount(option: string, text: string): number {
  const value = parseSuffixed(text);
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new UsageError(`${option} must be a positive whole number of tokens such as 1000000, 1e6 or 1M (got '${text}')`);
  }
  return value;
}

export function parseDataArgs(argv: readonly string[]): DataArgs {
  const args: DataArgs = {
    help: false, inputs: [], out: null, tokenizer: 'gpt2', shardSize: DEFAULT_SHARD_SIZE, prefix: DEFAULT_PREFIX, force: false,
  };
  walkArgs(argv, (flag, value, raw) => {
    switch (flag) {
      case '-h': case '--help': args.help = true; break;
      case '-i': case '--input': args.inputs.push(value()); break;
      case '-o': case '--out': args.out = value(); break;
      case '--tokenizer': args.tokenizer = parseChoice(flag, value(), TOKENIZER_NAMES, TOKENIZER_NAMES.join(' or ')); break;
      case '--shard-size': {
        args.shardSize = parseCount('--shard-size', value());
        if (args.shardSize > MAX_SHARD_TOKENS) throw new UsageError(`--shard-size must be at most ${MAX_SHARD_TOKENS} tokens (got ${args.shardSize})`);
        break;
      }
      case '--val-fraction': {
        const v = value();
        const f = Number(v);
        if (v.trim() === '' || !(f > 0 && f < 1)) throw new UsageError(`--val-fraction must be a number strictly between 0 and 1 (got '${v}')`);
        args.valFraction = f;
        break;
      }
      case '--val-tokens': args.valTokens = parseCount('--val-tokens', value()); break;
      case '--prefix': {
        const v = value();
        if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(v)) throw new UsageError(`--prefix must be letters, digits, '.', '_' or '-' (got '${v}')`);
        args.prefix = v;
        break;
      }
      case '--force': args.force = true; break;
      default:
        if (raw.startsWith('-') && raw.length > 1) throw new UsageError(`unknown option '${raw}'`);
        args.inputs.push(raw);
    }
  });
  if (args.help) return args;
  if (args.valFraction !== undefined && args.valTokens !== undefined) {
    throw new UsageError('give --val-fraction or --val-tokens, not both');
  }
  if (args.inputs.length === 0) throw new UsageError('no input: give text files with --input <file|glob>');
  if (args.out === null) throw new UsageError('no output folder: give --out <dir>');
  return args;
}

function megabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(bytes < 1e7 ? 2 : 1)} MB`;
}

function count(n: number): string {
  return n.toLocaleString('en-US');
}

/**
 * A progress bar on stderr when it is a TTY (redrawn in place, at most ~10 times a second);
 * otherwise plain log lines on stdout at 10% steps, so stderr holds nothing but an error.
 */
function progressReporter(io: DataCliIO): { update(p: PrepareProgress): void; end(ok: boolean): void } {
  const tty = io.stderr.isTTY === true;
  const now = io.now ?? Date.now;
  const start = now();
  let lastDraw = -Infinity;
  let lastDecile = new Map<string, number>();
  let drawn = false;
  return {
    update(p) {
      const fraction = p.total > 0 ? p.done / p.total : 1;
      const label = p.phase === 'tokenize'
        ? `tokenize ${megabytes(p.done)} / ${megabytes(p.total)}, file ${Math.min(p.documents + 1, p.documentCount)}/${p.documentCount}, ${count(p.tokens)} tokens`
        : `write ${count(p.done)} / ${count(p.total)} tokens`;
      if (tty) {
        const t = now();
        if (t - lastDraw < 100 && fraction < 1) return;
        lastDraw = t;
        const width = 30;
        const filled = Math.round(fraction * width);
        const elapsed = (t - start) / 1000;
        const rate = p.phase === 'tokenize' && elapsed > 0 ? ` ${megabytes(p.done / elapsed)}/s` : '';
        io.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ${label}${rate}\x1b[K`);
        drawn = true;
      } else {
        const decile = Math.floor(fraction * 10);
        if (decile > (lastDecile.get(p.phase) ?? -1)) {
          lastDecile.set(p.phase, decile);
          io.stdout.write(`${(decile * 10).toString().padStart(3)}% ${label}\n`);
        }
      }
    },
    /** Keeps the finished bar on its line, or erases it before an error message. */
    end(ok) {
      if (drawn) io.stderr.write(ok ? '\n' : '\r\x1b[K');
      drawn = false;
      lastDecile = new Map();
    },
  };
}

function summary(result: PrepareResult, shardTokens: (file: string) => string): string {
  const lines = [
    `wrote ${result.valFiles.length + result.trainFiles.length} shards to ${result.outDir}: ${count(result.valTokens)} val + ` +
      `${count(result.trainTokens)} train tokens from ${result.documents} document${result.documents === 1 ? '' : 's'} ` +
      `(${result.tokenizer} tokenizer, vocab ${result.vocabSize}, end of text ${result.eotToken})`,
  ];
  for (const file of [...result.valFiles, ...result.trainFiles]) lines.push(`  ${file}  ${shardTokens(file)}`);
  return `${lines.join('\n')}\n`;
}

export function main(argv: readonly string[], io: DataCliIO = { stdout: process.stdout, stderr: process.stderr }): number {
  const args = parseOrUsageExit('newton-muon-data', argv, parseDataArgs, io);
  if (typeof args === 'number') return args;
  if (args.help) {
    io.stdout.write(USAGE);
    return 0;
  }
  const progress = progressReporter(io);
  try {
    const files = expandGlobs(args.inputs);
    const documents = files.map((file) => fileDocument(file));
    const result = prepareShards(documents, {
      outDir: args.out as string,
      prefix: args.prefix,
      tokenizer: args.tokenizer,
      shardSize: args.shardSize,
      valFraction: args.valFraction,
      valTokens: args.valTokens,
      force: args.force,
      onProgress: (p) => progress.update(p),
    });
    progress.end(true);
    const sizes = new Map<string, number>([[result.valFiles[0], result.valTokens]]);
    result.trainFiles.forEach((file, k) => {
      sizes.set(file, k < result.trainFiles.length - 1 ? args.shardSize : result.trainTokens - args.shardSize * (result.trainFiles.length - 1));
    });
    io.stdout.write(summary(result, (file) => `${count(sizes.get(file) ?? 0)} tokens`));
    return 0;
  } catch (error) {
    progress.end(false);
    const message = error instanceof DataError ? error.message : `unexpected error: ${(error as Error)?.message ?? String(error)}`;
    io.stderr.write(`newton-muon-data: ${message.split('\n')[0]}\n`);
    return 1;
  }
}

if (require.main === module) {
  process.exitCode = main(process.argv.slice(2));
}
