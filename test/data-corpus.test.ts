// The bundled Moby-Dick corpus: prepared on first use into a cache folder (first 5% of tokens as
// val), reused on the second call, re-prepared when the cache is broken; readable by the loader.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { defaultCacheDir, mobyDickDocuments, prepareDefaultCorpus } from '../lib/data/corpus';
import { expandGlob } from '../lib/data/glob';
import { DataLoader } from '../lib/data/loader';
import { readShard } from '../lib/data/shard';
import { getTokenizer } from '../lib/data/tokenizer';

let cacheDir: string;
beforeAll(() => { cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nm-data-corpus-')); });
afterAll(() => { fs.rmSync(cacheDir, { recursive: true, force: true }); });

function concat(arrays: Uint16Array[]): Uint16Array {
  const out = new Uint16Array(arrays.reduce((n, a) => n + a.length, 0));
  let k = 0;
  for (const a of arrays) {
    out.set(a, k);
    k += a.length;
  }
  return out;
}

test('the package text: 138 sections after the contents, Ishmael in chapter 1', () => {
  const docs = mobyDickDocuments();
  expect(docs.length).toBe(138);
  const chapter1 = [...docs[2].chunks()].join('');
  expect(chapter1.startsWith('CHAPTER 1. Loomings.\n\nCall me Ishmael.')).toBe(true);
  expect(docs[docs.length - 1].name).toBe('Epilogue');
});

describe('byte-level corpus', () => {
  test('first call prepares: val is the first 5% of the token stream, every document starts with eot', () => {
    const corpus = prepareDefaultCorpus({ tokenizer: 'byte', cacheDir });
    expect(corpus.reused).toBe(false);
    expect(corpus.tokenizer).toBe('byte');
    expect(corpus.vocabSize).toBe(257);
    expect(corpus.eotToken).toBe(256);
    expect(corpus.dir.startsWith(cacheDir)).toBe(true);

    const docs = mobyDickDocuments();
    const bytes = docs.reduce((n, d) => n + d.bytes, 0);
    expect(corpus.documents).toBe(docs.length);
    expect(corpus.tokens).toBe(bytes + docs.length);
    expect(corpus.valTokens).toBe(Math.round(corpus.tokens * 0.05));
    expect(corpus.trainTokens).toBe(corpus.tokens - corpus.valTokens);

    const val = expandGlob(corpus.valGlob);
    const train = expandGlob(corpus.trainGlob);
    expect(val).toEqual(corpus.valFiles);
    expect(train).toEqual(corpus.trainFiles);
    expect(val.map((f) => path.basename(f))).toEqual(['moby_val_000000.bin']);
    const stream = concat([...val, ...train].map(readShard));
    expect(stream.length).toBe(corpus.tokens);
    expect(readShard(val[0]).length).toBe(corpus.valTokens);
    let eots = 0;
    for (const t of stream) if (t === 256) eots++;
    expect(eots).toBe(docs.length);
    expect(stream[0]).toBe(256);
    const text = getTokenizer('byte').decode(stream);
    expect(text.startsWith('<|endoftext|>ETYMOLOGY.')).toBe(true);
    expect(text).toContain('<|endoftext|>CHAPTER 1. Loomings.\n\nCall me Ishmael.');
    // No temp folders left in the cache.
    expect(fs.readdirSync(cacheDir).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  test('the second call reuses the cache without rewriting it', () => {
    const first = prepareDefaultCorpus({ tokenizer: 'byte', cacheDir });
    const mtime = fs.statSync(first.trainFiles[0]).mtimeMs;
    const second = prepareDefaultCorpus({ tokenizer: 'byte', cacheDir });
    expect(second.reused).toBe(true);
    expect({ ...second, reused: false }).toEqual({ ...first, reused: false });
    expect(fs.statSync(second.trainFiles[0]).mtimeMs).toBe(mtime);
  });

  test('a damaged cache is prepared again', () => {
    const corpus = prepareDefaultCorpus({ tokenizer: 'byte', cacheDir });
    fs.truncateSync(corpus.trainFiles[0], 5000);
    const again = prepareDefaultCorpus({ tokenizer: 'byte', cacheDir });
    expect(again.reused).toBe(false);
    expect(again.tokens).toBe(corpus.tokens);
    expect(readShard(again.trainFiles[0]).length).toBe(corpus.trainTokens);
    fs.writeFileSync(path.join(corpus.dir, 'corpus.json'), '{ not json');
    expect(prepareDefaultCorpus({ tokenizer: 'byte', cacheDir }).reused).toBe(false);
    expect(prepareDefaultCorpus({ tokenizer: 'byte', cacheDir }).reused).toBe(true);
  });

  test('the loader reads it', () => {
    const corpus = prepareDefaultCorpus({ tokenizer: 'byte', cacheDir });
    const loader = new DataLoader({ files: corpus.trainGlob, batchSize: 8, seqLen: 256 });
    const { inputs, targets } = loader.next();
    expect(inputs[0]).toBe(readShard(corpus.trainFiles[0])[0]);
    expect(targets[0]).toBe(inputs[1]);
    expect(loader.batchesPerEpoch).toBe(Math.floor((corpus.trainTokens - 1) / 2048));
    loader.close();
    const val = new DataLoader({ files: corpus.valGlob, batchSize: 8, seqLen: 256 });
    expect(val.next().inputs[0]).toBe(256);
    val.close();
  });
});

test('GPT-2 corpus: ids below 50257, decodes back to the book', () => {
  const corpus = prepareDefaultCorpus({ tokenizer: 'gpt2', cacheDir });
  expect(corpus.reused).toBe(false);
  expect(corpus.vocabSize).toBe(50257);
  expect(corpus.eotToken).toBe(50256);
  expect(corpus.tokens).toBeGreaterThan(250_000);
  expect(corpus.tokens).toBeLessThan(400_000);
  expect(corpus.valTokens).toBe(Math.round(corpus.tokens * 0.05));
  const stream = concat([...corpus.valFiles, ...corpus.trainFiles].map(readShard));
  let max = 0;
  let eots = 0;
  for (const t of stream) {
    max = Math.max(max, t);
    if (t === 50256) eots++;
  }
  expect(max).toBe(50256);
  expect(eots).toBe(corpus.documents);
  const gpt2 = getTokenizer('gpt2');
  const expected = mobyDickDocuments().map((d) => `<|endoftext|>${[...d.chunks()].join('')}`).join('');
  expect(gpt2.decode(stream)).toBe(expected);
  expect(prepareDefaultCorpus({ tokenizer: 'gpt2', cacheDir }).reused).toBe(true);
});

test('the default cache folder is $NM_CACHE_DIR, else ~/.cache/newton-muon', () => {
  const saved = process.env.NM_CACHE_DIR;
  try {
    process.env.NM_CACHE_DIR = path.join(cacheDir, 'from-env');
    expect(defaultCacheDir()).toBe(path.join(cacheDir, 'from-env'));
    const corpus = prepareDefaultCorpus({ tokenizer: 'byte' });
    expect(corpus.dir.startsWith(path.join(cacheDir, 'from-env'))).toBe(true);
    delete process.env.NM_CACHE_DIR;
    expect(defaultCacheDir()).toBe(path.join(os.homedir(), '.cache', 'newton-muon'));
  } finally {
    if (saved === undefined) delete process.env.NM_CACHE_DIR;
    else process.env.NM_CACHE_DIR = saved;
  }
});

test('an unwritable cache folder is one clear error', () => {
  const file = path.join(cacheDir, 'a-file');
  fs.writeFileSync(file, 'x');
  expect(() => prepareDefaultCorpus({ tokenizer: 'byte', cacheDir: path.join(file, 'cache') }))
    .toThrow(/cannot create the cache folder .*a-file.*NM_CACHE_DIR/);
});
