// FLOPs of a GPT-2 training token and the bf16 peaks the GPU kit's MFU figures are taken against
// (shared/spec/speedrun-124m.md, "Throughput anchors").
'use strict';

/**
 * Training FLOPs per token (forward + backward) as the spec counts them: 6 x the matmul
 * parameters (the 12 C^2 of each block and the tied V x C head) + 6 x L x C x T for attention.
 * 124M at T = 1024: 6 x 123.5M + 6 x 12 x 768 x 1024 = 0.798 GFLOP.
 */
function flopsPerToken(model, T) {
  const { vocabSize: V, nLayer: L, nEmbd: C } = model;
  return 6 * (V * C + 12 * L * C * C) + 6 * L * C * T;
}

/** The measured bf16 GEMM ceiling of an H100/H200 (the spec's anchor), FLOP/s. */
const MEASURED_CEILING = 790e12;

/**
 * The datasheet dense bf16 tensor-core peak of the GPU named `name` (FLOP/s), or null for
 * anything else (the CPU backend of a dry run): H100 SXM and H200 989.4 TFLOP/s, H100 PCIe 756.
 */
function datasheetPeak(name) {
  const n = String(name ?? '');
  if (/H100.*PCIe/i.test(n)) return 756e12;
  if (/H100|H200/i.test(n)) return 989.4e12;
  return null;
}

/**
 * MFU of `tokensPerS` on the GPU `name`: against the datasheet peak (null off an H100/H200) and
 * against the spec's measured 790 TFLOP/s ceiling (only on an H100/H200 too).
 */
function mfu(tokensPerS, model, T, name) {
  const peak = datasheetPeak(name);
  if (!(tokensPerS > 0) || peak === null) return { flopsPerToken: flopsPerToken(model, T), peak: null, mfu: null, mfuOfCeiling: null };
  const achieved = tokensPerS * flopsPerToken(model, T);
  return { flopsPerToken: flopsPerToken(model, T), achievedTflops: achieved / 1e12, peak, mfu: achieved / peak, mfuOfCeiling: achieved / MEASURED_CEILING };
}

module.exports = { datasheetPeak, flopsPerToken, MEASURED_CEILING, mfu };
