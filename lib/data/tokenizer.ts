// Tokenizers for the shards. GPT-2 BPE (the encoding of the FineWeb shards, vocab 50257, end of
// text 50256) comes from the gpt-tokenizer package, which carries the encoding inside it, so it
// works offline. The byte-level tokenizer maps UTF-8 bytes to ids 0..255 plus 256 for end of
// text (vocab 257): no merges, tiny embedding, fine for the small default job.
// Each document is stored as [eot, ...tokens(text)], as in modded-nanogpt's fineweb.py.
// Text that happens to spell "<|endoftext|>" is encoded as ordinary text, never as the eot id.
import { DataError } from './errors';

export type TokenizerName = 'gpt2' | 'byte';
export const TOKENIZER_NAMES: readonly TokenizerName[] = ['gpt2', 'byte'];

export interface Tokenizer {
  readonly name: TokenizerName;
  /** Ids are in [0, vocabSize). */
  readonly vocabSize: number;
  /** The end-of-text id that starts every document. */
  readonly eotToken: number;
  /** Token ids of a text (no eot added). */
  encode(text: string): number[];
  /** The text of token ids; the eot id decodes to "<|endoftext|>". */
  decode(tokens: ArrayLike<number>): string;
  /** [eot, ...encode(text)]: one document as stored in a shard. */
  encodeDocument(text: string): number[];
}

export const END_OF_TEXT = '<|endoftext|>';

interface GptEncodingModule {
  encode(text: string, options?: { allowedSpecial?: Set<string>; disallowedSpecial?: Set<string> }): number[];
  decode(tokens: Iterable<number>): string;
}

const NO_SPECIAL = { allowedSpecial: new Set<string>(), disallowedSpecial: new Set<string>() };

class Gpt2Tokenizer implements Tokenizer {
  readonly name = 'gpt2' as const;
  readonly vocabSize = 50257;
  readonly eotToken = 50256;
  private encoding: GptEncodingModule | null = null;

  // Loaded on first use: the ranks are ~1 MB of JavaScript that the byte tokenizer never needs.
  private get bpe(): GptEncodingModule {
    if (this.encoding === null) {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      this.encoding = require('gpt-tokenizer/cjs/encoding/gpt2') as GptEncodingModule;
    }
    return this.encoding;
  }

  encode(text: string): number[] {
    return this.bpe.encode(text, NO_SPECIAL);
  }

  decode(tokens: ArrayLike<number>): string {
    const ids = Array.from(tokens);
    for (let i = 0; i < ids.length; i++) {
      const t = ids[i];
      if (!Number.isInteger(t) || t < 0 || t >= this.vocabSize) {
        throw new DataError(`gpt2 tokenizer: token ${t} at index ${i} is outside the vocabulary [0, ${this.vocabSize})`);
      }
    }
    return this.bpe.decode(ids);
  }

  encodeDocument(text: string): number[] {
    const ids = this.encode(text);
    ids.unshift(this.eotToken);
    return ids;
  }
}

class ByteTokenizer implements Tokenizer {
  readonly name = 'byte' as const;
  readonly vocabSize = 257;
  readonly eotToken = 256;
  private readonly encoder = new TextEncoder();

  encode(text: string): number[] {
    return Array.from(this.encoder.encode(text));
  }

  decode(tokens: ArrayLike<number>): string {
    const decoder = new TextDecoder('utf-8');
    let out = '';
    let bytes: number[] = [];
    const flush = (): void => {
      out += decoder.decode(Uint8Array.from(bytes));
      bytes = [];
    };
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      if (t === this.eotToken) {
        flush();
        out += END_OF_TEXT;
      } else if (Number.isInteger(t) && t >= 0 && t < 256) {
        bytes.push(t);
      } else {
        throw new DataError(`byte tokenizer: token ${t} at index ${i} is outside the vocabulary [0, ${this.vocabSize})`);
      }
    }
    flush();
    return out;
  }

  encodeDocument(text: string): number[] {
    const bytes = this.encoder.encode(text);
    const ids = new Array<number>(bytes.length + 1);
    ids[0] = this.eotToken;
    for (let i = 0; i < bytes.length; i++) ids[i + 1] = bytes[i];
    return ids;
  }
}

const cache = new Map<TokenizerName, Tokenizer>();

/** The tokenizer of a name ('gpt2' or 'byte'); throws a DataError naming the choices otherwise. */
export function getTokenizer(name: string): Tokenizer {
  if (name !== 'gpt2' && name !== 'byte') {
    throw new DataError(`unknown tokenizer '${name}' (expected ${TOKENIZER_NAMES.join(' or ')})`);
  }
  let tokenizer = cache.get(name);
  if (tokenizer === undefined) {
    tokenizer = name === 'gpt2' ? new Gpt2Tokenizer() : new ByteTokenizer();
    cache.set(name, tokenizer);
  }
  return tokenizer;
}
