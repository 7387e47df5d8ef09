// Toy token streams for the training suites: text with structure (a token follows from the
// previous two, with occasional noise), as byte-level tokens < 64, so a tiny model's loss falls.
export function structuredTokens(n: number, seed: number): number[] {
  const out = [256 % 64, seed % 64];
  let s = seed;
  while (out.length < n) {
    s = (s * 1103515245 + 12345) >>> 0;
    const noise = (s >>> 16) % 8 === 0 ? (s >>> 8) % 64 : 0;
    out.push((out[out.length - 1] * 3 + out[out.length - 2] + 1 + noise) % 64);
  }
  return out;
}
