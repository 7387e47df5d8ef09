// Tokenizers: GPT-2 BPE (known ids of the real encoding, round trips, end of text) and the
// byte-level tokenizer; and that tokenizing text in chunks cut at lastSafeCut equals the whole.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { mobyDickDocuments } from '../lib/data/corpus';
import { DataError } from '../lib/data/errors';
import { fileDocument, lastSafeCut } from '../lib/data/prepare';
import { END_OF_TEXT, getTokenizer } from '../lib/data/tokenizer';

const UNICODE_SAMPLES = [
  'Call me Ishmael. Some years ago—never mind how long precisely—having little or no money…',
  'naïve café, Ærøskøbing, Straße, ñandú',
  '日本語のテキスト、中文文本，한국어 텍스트',
  'emoji 🐋🐳 and a family 👨‍👩‍👧 and flags 🇳🇴',
  'combining e\u0301 and RTL: שלום עולם, مرحبا بالعالم',
  'tabs\tand\r\nwindows lines\n\n\n   indented   ',
  '',
];

describe('GPT-2 BPE', () => {
  const gpt2 = getTokenizer('gpt2');

  test('vocabulary and end of text of GPT-2', () => {
    expect(gpt2.name).toBe('gpt2');
    expect(gpt2.vocabSize).toBe(50257);
    expect(gpt2.eotToken).toBe(50256);
  });

  test('known ids of the GPT-2 encoding', () => {
    expect(gpt2.encode('Hello world')).toEqual([15496, 995]);
    expect(gpt2.encode(' the')).toEqual([262]);
    expect(gpt2.encode('.')).toEqual([13]);
    expect(gpt2.encode(',')).toEqual([11]);
    expect(gpt2.encode('\n')).toEqual([198]);
    expect(gpt2.encode('!')).toEqual([0]);
    expect(gpt2.decode([15496, 11, 995, 0])).toBe('Hello, world!');
  });

  test('unicode round trips', () => {
    for (const text of UNICODE_SAMPLES) {
      const ids = gpt2.encode(text);
      for (const id of ids) expect(id >= 0 && id < 50256).toBe(true);
      expect(gpt2.decode(ids)).toBe(text);
    }
  });

  test('documents start with end of text; the text "<|endoftext|>" is ordinary text', () => {
    const doc = gpt2.encodeDocument('Hello world');
    expect(doc).toEqual([50256, 15496, 995]);
    const spelled = gpt2.encode(`a ${END_OF_TEXT} b`);
    expect(spelled).not.toContain(50256);
    expect(gpt2.decode(spelled)).toBe(`a ${END_OF_TEXT} b`);
    expect(gpt2.decode([50256])).toBe(END_OF_TEXT);
  });

  test('decode refuses ids outside the vocabulary', () => {
    expect(() => gpt2.decode([15496, 50257])).toThrow(DataError);
    expect(() => gpt2.decode([-1])).toThrow('outside the vocabulary [0, 50257)');
  });
});

describe('byte-level', () => {
  const byte = getTokenizer('byte');

  test('UTF-8 bytes, vocab 257, end of text 256', () => {
    expect(byte.vocabSize).toBe(257);
    expect(byte.eotToken).toBe(256);
    expect(byte.encode('Hi é🐋')).toEqual([72, 105, 32, 0xc3, 0xa9, 0xf0, 0x9f, 0x90, 0x8b]);
    expect(byte.encodeDocument('ab')).toEqual([256, 97, 98]);
  });

  test('round trips, with end of text between documents', () => {
    for (const text of UNICODE_SAMPLES) expect(byte.decode(byte.encode(text))).toBe(text);
    const stream = [...byte.encodeDocument('naïve'), ...byte.encodeDocument('🐋')];
    expect(byte.decode(stream)).toBe(`${END_OF_TEXT}naïve${END_OF_TEXT}🐋`);
  });

  test('random bytes decode without throwing; ids outside the vocabulary throw', () => {
    const bytes = crypto.randomBytes(1000);
    expect(typeof byte.decode(Array.from(bytes))).toBe('string');
    expect(() => byte.decode([65, 257])).toThrow('byte tokenizer: token 257 at index 1 is outside the vocabulary [0, 257)');
  });
});

test('unknown tokenizer names the choices', () => {
  expect(() => getTokenizer('sentencepiece')).toThrow("unknown tokenizer 'sentencepiece' (expected gpt2 or byte)");
});

describe('chunked tokenization', () => {
  const text = mobyDickDocuments().slice(0, 12).map((d) => [...d.chunks()].join('')).join('\n\n');

  test('lastSafeCut finds a space between two non-space characters', () => {
    expect(lastSafeCut('ab cd')).toBe(2);
    expect(lastSafeCut('one two three')).toBe(7);
    expect(lastSafeCut('one two three', 8)).toBe(-1);
    expect(lastSafeCut('ab, cd.')).toBe(3);
    expect(lastSafeCut('é 1')).toBe(1);
    expect(lastSafeCut('🐋 🐳')).toBe(2);
    for (const none of ['a  b', 'x\ny', 'x\t y', 'abc', ' ab', 'ab ']) expect(lastSafeCut(none)).toBe(-1);
  });

  test('cutting at safe places gives exactly the tokens of the whole text (GPT-2)', () => {
    const gpt2 = getTokenizer('gpt2');
    const whole = gpt2.encode(text);
    for (const size of [3, 50, 997, 20_000]) {
      const pieces: number[] = [];
      let rest = text;
      while (rest.length > size) {
        const cut = lastSafeCut(rest.slice(0, size + 1), 1);
        const at = cut > 0 ? cut : rest.length;
        pieces.push(...gpt2.encode(rest.slice(0, at)));
        rest = rest.slice(at);
      }
      pieces.push(...gpt2.encode(rest));
      expect(pieces).toEqual(whole);
    }
  });

  test('every safe cut of adversarial text keeps the tokens (numbers, punctuation, contractions, spaces)', () => {
    const gpt2 = getTokenizer('gpt2');
    const fragments = ['x = [1, 2, 3];', "y's", "'quoted'", "don't", ' double  spaces ', '3.14', '1,000,000', '(a)', '{b}',
      '<c>', '--d', 'café', '🐋', '日本', '\n', '\t', 'I\'ll', "we've", '$5', '#tag', '@you', 'e\u0301', 'ALLCAPS', '  '];
    for (let trial = 0; trial < 30; trial++) {
      let sample = '';
      for (let k = 0; k < 40; k++) sample += fragments[crypto.randomInt(fragments.length)] + (crypto.randomInt(3) === 0 ? '' : ' ');
      const whole = gpt2.encode(sample);
      for (let i = 1; i < sample.length - 1; i++) {
        if (lastSafeCut(sample.slice(0, i + 2), i) !== i) continue;
        expect([...gpt2.encode(sample.slice(0, i)), ...gpt2.encode(sample.slice(i))]).toEqual(whole);
      }
    }
  });

  test('a file read in small chunks tokenizes like the whole file, also with multi-byte characters', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nm-data-tok-'));
    try {
      const file = path.join(dir, 'book.txt');
      const content = `${text}\n${UNICODE_SAMPLES.join(' Ωmega ')}`;
      fs.writeFileSync(file, content);
      const gpt2 = getTokenizer('gpt2');
      const whole = gpt2.encode(content);
      for (const chunkBytes of [7, 4096]) {
        const chunks = [...fileDocument(file, { chunkBytes }).chunks()];
        expect(chunks.length).toBeGreaterThan(1);
        expect(chunks.join('')).toBe(content);
        expect(chunks.flatMap((c) => gpt2.encode(c))).toEqual(whole);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
