// Seeded synthetic token ids for the GPU kit's GPT-2 benchmarks: uniform in [0, vocab), the same
// for a given seed on every machine (a small counter-based 32-bit mixer, no Math.random).
'use strict';

/** A generator of uniform 32-bit integers from `seed` (a 32-bit Weyl sequence through a mixer). */
function uint32Stream(seed) {
  let state = (seed >>> 0) ^ 0x5bd1e995;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** Fills `out` (a typed array) with ids in [0, vocab) from `next` (a uint32Stream). */
function fillTokens(out, vocab, next) {
  for (let i = 0; i < out.length; i++) out[i] = Math.floor((next() / 4294967296) * vocab);
  return out;
}

/** n ids in [0, vocab) as an Int32Array, from `seed`. */
function randomTokens(n, vocab, seed) {
  return fillTokens(new Int32Array(n), vocab, uint32Stream(seed));
}

module.exports = { fillTokens, randomTokens, uint32Stream };
