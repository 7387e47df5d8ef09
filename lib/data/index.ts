// lib/data: token shards (modded-nanogpt / llm.c format), the loader, tokenizers, text -> shards,
// and the bundled Moby-Dick corpus.
export { DataError } from './errors';
export { expandGlob, expandGlobs } from './glob';
export {
  DEFAULT_WINDOW_TOKENS, MAX_SHARD_TOKENS, MAX_TOKEN_ID, readShard, readShardHeader, SHARD_HEADER_BYTES, SHARD_MAGIC,
  SHARD_VERSION, ShardReader, ShardWriter, writeShard,
} from './shard';
export type { ShardHeader } from './shard';
export { DataLoader } from './loader';
export type { Batch, DataLoaderOptions, LoaderState } from './loader';
export { END_OF_TEXT, getTokenizer, TOKENIZER_NAMES } from './tokenizer';
export type { Tokenizer, TokenizerName } from './tokenizer';
export {
  DEFAULT_SHARD_SIZE, DEFAULT_VAL_FRACTION, existingShards, fileDocument, prepareShards, shardName, textDocument,
} from './prepare';
export type { PrepareOptions, PrepareProgress, PrepareResult, TextDocument } from './prepare';
export { defaultCacheDir, mobyDickDocuments, prepareDefaultCorpus } from './corpus';
export type { CorpusOptions, PreparedCorpus } from './corpus';
