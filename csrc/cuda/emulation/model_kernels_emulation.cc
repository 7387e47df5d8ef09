// Emulation harness of the CUDA module's row and elementwise kernels: compiles the real kernel
// headers (../model_norm_gelu_kernels.cuh, ../model_cross_entropy_kernels.cuh,
// ../model_rotary_kernels.cuh, ../optim_kernels.cuh) with g++ against the host shim, launches
// them as the host code does (model_norm_gelu.cu, model_cross_entropy.cu, model_rotary.cu,
// optim.cu: the same grid, block and shared sizes) on small random inputs, and compares with the
// CPU backend's own kernels (csrc/cpu/model_norm_gelu.cc, model_cross_entropy.cc,
// model_rotary.cc, optim_updates.cc and thread_pool.cc, linked in). Exit status 0 when everything
// matches, 1 otherwise.
//
//   g++ -O2 -std=c++20 -pthread -Wno-unused-parameter -Icsrc/cuda/emulation/include
//       csrc/cuda/emulation/model_kernels_emulation.cc csrc/cpu/model_norm_gelu.cc
//       csrc/cpu/model_cross_entropy.cc csrc/cpu/model_rotary.cc csrc/cpu/optim_updates.cc
//       csrc/cpu/thread_pool.cc -o emu && ./emu [seed]
//
// (-Icsrc/cuda/emulation/include: its cuda_bf16.h stands in for CUDA's, for ../dtypes.cuh.)
// Run by test/cuda-emulation.test.ts. Every output element is checked as
// |got - cpu| <= tol * mag, where mag is the size of the element's terms (for a product, |cpu|;
// for a difference or sum such as rstd*dout - x*k, the sum of the terms' sizes), so elements
// whose terms cancel are measured against their terms, not against ~0. NaN must meet NaN.
// Tolerances: f32 outputs 1e-5 (the CUDA suites' f32 tolerance; the kernels follow the CPU's
// rounding order, so most elements agree bit for bit and the rest by an f32 ulp of a per-row
// scalar), bf16 outputs 1e-2. Every launch is run twice and must give the same bits.
#define NM_CUDA_EMULATION 1
#include "cuda_host_shim.h"
// (the shim must come first)
#include "../model_cross_entropy_kernels.cuh"
#include "../model_norm_gelu_kernels.cuh"
#include "../model_rotary_kernels.cuh"
#include "../optim_kernels.cuh"

#include "harness_rng.h"
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "../../cpu/model_kernels_a.h"
#include "../../cpu/model_kernels_b.h"
#include "../../cpu/optim_kernels.h"

namespace ng = nm_cuda::norm_gelu_kernels;
namespace xe = nm_cuda::cross_entropy_kernels;
namespace rk = nm_cuda::rotary_kernels;
namespace ok_ = nm_cuda::optim_kernels;

namespace {

constexpr double kTolF32 = 1e-5;
constexpr double kTolBf16 = 1e-2;

// context.h's kThreads and grid_blocks (that header needs the CUDA runtime), copied: the GELU,
// rotary and optimizer kernels are launched with grid_blocks(be, n) blocks of kThreads. The
// emulated device has kSmCount SMs, so at most 32 blocks: n > 8192 runs the grid-stride loops
// more than once per thread.
constexpr int kThreads = 256;
constexpr int kSmCount = 1;
unsigned int grid_blocks(int64_t n) {
  const int64_t wanted = (n + kThreads - 1) / kThreads;
  const int64_t resident = (int64_t)(kSmCount > 0 ? kSmCount : 1) * (2048 / kThreads) * 4;
  int64_t blocks = wanted < resident ? wanted : resident;
  if (blocks < 1) blocks = 1;
  return (unsigned int)blocks;
}

using nm_emu::Rng;  // harness_rng.h

float bf16_bits_to_f32(uint16_t bits) {
  __nv_bfloat16 h;
  h.bits = bits;
  return __bfloat162float(h);
}

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

bool g_ok = true;
double g_worst_f32 = 0.0, g_worst_bf16 = 0.0;

// |got - ref| <= tol * mag per element (both NaN passes); prints one line.
void check(const std::string& what, const std::vector<float>& got, const std::vector<float>& ref,
           const std::vector<double>& mag, double tol, bool deterministic) {
  size_t bad = 0, identical = 0;
  double worst = 0.0;
  for (size_t i = 0; i < ref.size(); i++) {
    const double g = got[i], r = ref[i];
    if (memcmp(&got[i], &ref[i], sizeof(float)) == 0) {
      identical++;
      continue;
    }
    if (std::isnan(g) && std::isnan(r)) continue;
    const double err = fabs(g - r), allowed = tol * mag[i];
    const double rel = mag[i] > 0 ? err / mag[i] : INFINITY;
    if (!(rel <= worst)) worst = rel;
    if (!(err <= allowed)) {
      if (bad < 3) {
        printf("    %s[%zu]: got %.9g, cpu %.9g, mag %.3g\n", what.c_str(), i, g, r, mag[i]);
      }
      bad++;
    }
  }
  const bool ok = bad == 0 && deterministic && !ref.empty() && got.size() == ref.size();
  if (!ok) g_ok = false;
  double& w = tol > kTolF32 ? g_worst_bf16 : g_worst_f32;
  if (worst > w) w = worst;
  printf("%s %-44s %zu elements, %zu bit-identical, %zu bad, worst %.1e of tol %.0e, %s\n",
         ok ? "ok  " : "FAIL", what.c_str(), ref.size(), identical, bad, worst, tol,
         deterministic ? "deterministic" : "NOT DETERMINISTIC");
}

std::vector<double> abs_of(const std::vector<float>& v) {
  std::vector<double> m(v.size());
  for (size_t i = 0; i < v.size(); i++) m[i] = fabs((double)v[i]);
  return m;
}

// ---- RMSNorm and GELU ------------------------------------------------------------------------

// model_norm_gelu.cu's rmsnorm_forward launch, f32 or bf16 output.
template <typename OutT>
void emu_rmsnorm_forward(OutT* out, float* rstd, const float* x, int64_t n, int64_t c, float eps) {
  nm_emu::launch(ng::rmsnorm_forward_kernel<OutT>, dim3(ng::row_blocks(n)),
                 dim3(ng::row_threads(c)), 0, out, rstd, x, n, c, eps);
}

void emu_rmsnorm_backward(float* dx, const float* dout, const float* x, const float* rstd,
                          int64_t n, int64_t c, int accumulate) {
  nm_emu::launch(ng::rmsnorm_backward_kernel, dim3(ng::row_blocks(n)), dim3(ng::row_threads(c)),
                 0, dx, dout, x, rstd, n, c, accumulate != 0 ? 1 : 0);
}

void test_rmsnorm(int64_t n, int64_t c, Rng& rng) {
  const float eps = 1e-5f;
  char tag[64];
  snprintf(tag, sizeof tag, "n=%lld c=%lld thr=%d", (long long)n, (long long)c,
           ng::row_threads(c));
  const size_t nc = (size_t)(n * c);
  std::vector<float> x(nc);
  for (int64_t i = 0; i < n; i++) {  // rows of different scales
    const double a = 0.05 + 3.0 * rng.uniform();
    for (int64_t j = 0; j < c; j++) x[i * c + j] = rng.sym(a);
  }
  // forward, f32
  std::vector<float> ref(nc), ref_rstd(n);
  nm::cpu::rmsnorm_forward(ref.data(), NM_F32, ref_rstd.data(), x.data(), n, c, eps);
  std::vector<float> out1(nc), out2(nc), rstd1(n), rstd2(n);
  emu_rmsnorm_forward<float>(out1.data(), rstd1.data(), x.data(), n, c, eps);
  emu_rmsnorm_forward<float>(out2.data(), rstd2.data(), x.data(), n, c, eps);
  check(std::string("rmsnorm_forward f32 out ") + tag, out1, ref, abs_of(ref), kTolF32,
        same_bits(out1, out2) && same_bits(rstd1, rstd2));
  check(std::string("rmsnorm_forward rstd ") + tag, rstd1, ref_rstd, abs_of(ref_rstd), kTolF32,
        same_bits(rstd1, rstd2));
  // forward in place (out = x, f32): the same bits as out of place
  std::vector<float> inplace = x, rstd3(n);
  emu_rmsnorm_forward<float>(inplace.data(), rstd3.data(), inplace.data(), n, c, eps);
  check(std::string("rmsnorm_forward f32 in place ") + tag, inplace, ref, abs_of(ref), kTolF32,
        same_bits(inplace, out1));
  // forward, bf16 output
  std::vector<uint16_t> ref_b(nc);
  nm::cpu::rmsnorm_forward(ref_b.data(), NM_BF16, ref_rstd.data(), x.data(), n, c, eps);
  std::vector<__nv_bfloat16> ob1(nc), ob2(nc);
  emu_rmsnorm_forward<__nv_bfloat16>(ob1.data(), rstd1.data(), x.data(), n, c, eps);
  emu_rmsnorm_forward<__nv_bfloat16>(ob2.data(), rstd2.data(), x.data(), n, c, eps);
  std::vector<float> gb(nc), rb(nc);
  for (size_t i = 0; i < nc; i++) {
    gb[i] = __bfloat162float(ob1[i]);
    rb[i] = bf16_bits_to_f32(ref_b[i]);
  }
  check(std::string("rmsnorm_forward bf16 out ") + tag, gb, rb, abs_of(rb), kTolBf16,
        memcmp(ob1.data(), ob2.data(), nc * 2) == 0);

  // backward, both accumulate modes, with the CPU's rstd
  const std::vector<float> dout = rng.vec(nc, 1.0);
  const std::vector<float> prior = rng.vec(nc, 0.5);
  for (int accumulate = 0; accumulate <= 1; accumulate++) {
    std::vector<float> ref_dx = prior;
    nm::cpu::rmsnorm_backward(ref_dx.data(), dout.data(), x.data(), ref_rstd.data(), n, c,
                              accumulate != 0);
    std::vector<float> dx1 = prior, dx2 = prior;
    emu_rmsnorm_backward(dx1.data(), dout.data(), x.data(), ref_rstd.data(), n, c, accumulate);
    emu_rmsnorm_backward(dx2.data(), dout.data(), x.data(), ref_rstd.data(), n, c, accumulate);
    std::vector<double> mag(nc);
    for (int64_t i = 0; i < n; i++) {
      double dot = 0.0;
      for (int64_t j = 0; j < c; j++) dot += (double)dout[i * c + j] * x[i * c + j];
      const double r = ref_rstd[i], k = r * r * r * dot / (double)c;
      for (int64_t j = 0; j < c; j++) {
        const size_t e = (size_t)(i * c + j);
        mag[e] = fabs(r * dout[e]) + fabs(x[e] * k) + (accumulate ? fabs((double)prior[e]) : 0.0);
      }
    }
    check(std::string("rmsnorm_backward acc=") + (accumulate ? "1 " : "0 ") + tag, dx1, ref_dx,
          mag, kTolF32, same_bits(dx1, dx2));
  }
}

void test_gelu(int64_t n, Rng& rng) {
  char tag[64];
  snprintf(tag, sizeof tag, "n=%lld blocks=%u", (long long)n, grid_blocks(n));
  const std::vector<float> x = rng.vec((size_t)n, 5.0);
  std::vector<float> ref((size_t)n), o1((size_t)n), o2((size_t)n);
  nm::cpu::gelu_forward(ref.data(), NM_F32, x.data(), n);
  for (std::vector<float>* o : {&o1, &o2}) {
    nm_emu::launch(ng::gelu_forward_kernel<float>, dim3(grid_blocks(n)), dim3(kThreads), 0,
                   o->data(), x.data(), n);
  }
  check(std::string("gelu_forward f32 ") + tag, o1, ref, abs_of(ref), kTolF32, same_bits(o1, o2));

  std::vector<uint16_t> ref_b((size_t)n);
  nm::cpu::gelu_forward(ref_b.data(), NM_BF16, x.data(), n);
  std::vector<__nv_bfloat16> b1((size_t)n), b2((size_t)n);
  for (std::vector<__nv_bfloat16>* o : {&b1, &b2}) {
    nm_emu::launch(ng::gelu_forward_kernel<__nv_bfloat16>, dim3(grid_blocks(n)), dim3(kThreads),
                   0, o->data(), x.data(), n);
  }
  std::vector<float> gb((size_t)n), rb((size_t)n);
  for (int64_t i = 0; i < n; i++) {
    gb[i] = __bfloat162float(b1[i]);
    rb[i] = bf16_bits_to_f32(ref_b[i]);
  }
  check(std::string("gelu_forward bf16 ") + tag, gb, rb, abs_of(rb), kTolBf16,
        memcmp(b1.data(), b2.data(), (size_t)n * 2) == 0);

  const std::vector<float> dout = rng.vec((size_t)n, 2.0);
  std::vector<float> ref_dx((size_t)n), d1((size_t)n), d2((size_t)n);
  nm::cpu::gelu_backward(ref_dx.data(), dout.data(), x.data(), n);
  for (std::vector<float>* d : {&d1, &d2}) {
    nm_emu::launch(ng::gelu_backward_kernel, dim3(grid_blocks(n)), dim3(kThreads), 0, d->data(),
                   dout.data(), x.data(), n);
  }
  std::vector<double> mag((size_t)n);
  for (int64_t i = 0; i < n; i++) {  // |dout| * (Phi(x) + |x| phi(x)): the terms of gelu'
    const double xv = x[i];
    const double cdf = 0.5 * erfc(-xv / sqrt(2.0)), pdf = exp(-0.5 * xv * xv) / sqrt(2 * M_PI);
    mag[i] = fabs((double)dout[i]) * (cdf + fabs(xv) * pdf);
  }
  check(std::string("gelu_backward ") + tag, d1, ref_dx, mag, kTolF32, same_bits(d1, d2));
}

// ---- cross-entropy ---------------------------------------------------------------------------

void test_cross_entropy(int64_t n, int64_t vocab, float grad_scale, Rng& rng) {
  char tag[80];
  snprintf(tag, sizeof tag, "n=%lld vocab=%lld thr=%d scale=%g", (long long)n, (long long)vocab,
           xe::cross_entropy_threads(vocab), (double)grad_scale);
  const size_t nv = (size_t)(n * vocab);
  std::vector<float> logits(nv);
  for (int64_t i = 0; i < n; i++) {
    const double a = 1.0 + 6.0 * rng.uniform();  // flat to peaked rows
    for (int64_t j = 0; j < vocab; j++) logits[i * vocab + j] = rng.sym(a);
  }
  if (vocab > 4 && n > 1) {  // a few -inf logits in row 1
    for (int64_t j = 0; j < vocab; j += 3) logits[vocab + j] = -INFINITY;
  }
  std::vector<int32_t> targets((size_t)n);
  for (int64_t i = 0; i < n; i++) targets[i] = (int32_t)(rng.uniform() * (double)vocab);
  if (vocab > 4 && n > 1) targets[1] = 1;           // a finite logit of the -inf row
  if (n > 2) targets[(size_t)n - 1] = (int32_t)vocab;  // out of range: NaN loss, no one-hot

  std::vector<float> ref_logits = logits, ref_losses((size_t)n);
  nm::cpu::cross_entropy(ref_losses.data(), ref_logits.data(), targets.data(), n, vocab,
                         grad_scale);
  std::vector<float> g1 = logits, g2 = logits, l1((size_t)n), l2((size_t)n);
  nm_emu::launch(xe::cross_entropy_kernel, dim3(xe::cross_entropy_blocks(n)),
                 dim3(xe::cross_entropy_threads(vocab)), 0, l1.data(), g1.data(), targets.data(),
                 n, vocab, grad_scale);
  nm_emu::launch(xe::cross_entropy_kernel, dim3(xe::cross_entropy_blocks(n)),
                 dim3(xe::cross_entropy_threads(vocab)), 0, l2.data(), g2.data(), targets.data(),
                 n, vocab, grad_scale);
  const bool det = same_bits(l1, l2) && same_bits(g1, g2);
  // loss = lse - x_t: measured against |lse| + |x_t|
  std::vector<double> loss_mag((size_t)n);
  for (int64_t i = 0; i < n; i++) {
    const int32_t t = targets[i];
    const double xt = (t >= 0 && t < vocab) ? (double)logits[i * vocab + t] : 0.0;
    loss_mag[i] = fabs((double)ref_losses[i] + xt) + fabs(xt);  // |lse| + |x_t|
  }
  check(std::string("cross_entropy losses ") + tag, l1, ref_losses, loss_mag, kTolF32, det);
  // gradient grad_scale * (p - onehot): against |grad_scale| * (p + onehot)
  std::vector<double> gmag(nv);
  for (int64_t i = 0; i < n; i++) {
    for (int64_t j = 0; j < vocab; j++) {
      const size_t e = (size_t)(i * vocab + j);
      gmag[e] = fabs((double)ref_logits[e]) + (j == targets[i] ? fabs((double)grad_scale) : 0.0);
    }
  }
  check(std::string("cross_entropy ") + (grad_scale != 0.0f ? "gradients " : "logits kept ") + tag,
        g1, ref_logits, gmag, kTolF32, det);
}

// ---- rotary ----------------------------------------------------------------------------------

void test_rotary(int64_t b, int64_t t, int64_t heads, int64_t head_dim, int inverse, Rng& rng) {
  const float base = 10000.0f;
  const int64_t rows = b * t, pairs = rows * (head_dim / 2);
  char tag[96];
  snprintf(tag, sizeof tag, "%s B=%lld T=%lld H=%lld D=%lld blocks=%u",
           inverse ? "inverse" : "forward", (long long)b, (long long)t, (long long)heads,
           (long long)head_dim, grid_blocks(pairs));
  const size_t total = (size_t)(rows * 3 * heads * head_dim);
  const std::vector<float> qkv = rng.vec(total, 2.0);
  std::vector<float> ref = qkv;
  nm::cpu::rotary(ref.data(), b, t, heads, head_dim, base, inverse != 0);
  std::vector<float> g1 = qkv, g2 = qkv;
  for (std::vector<float>* g : {&g1, &g2}) {  // model_rotary.cu's launch
    nm_emu::launch(rk::rotary_kernel, dim3(grid_blocks(pairs)), dim3(kThreads), 0, g->data(),
                   rows, t, heads, head_dim, (double)base, inverse != 0 ? 1 : 0);
  }
  // each rotated element is a*cos +- b*sin of its pair (a, b): against |a| + |b|; v untouched
  std::vector<double> mag(total);
  const int64_t c = heads * head_dim, half = head_dim / 2;
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t e = 0; e < 3 * c; e++) {
      const size_t at = (size_t)(r * 3 * c + e);
      if (e >= 2 * c) {
        mag[at] = fabs((double)qkv[at]);
        continue;
      }
      const int64_t d = e % head_dim, partner = d < half ? e + half : e - half;
      mag[at] = fabs((double)qkv[at]) + fabs((double)qkv[(size_t)(r * 3 * c + partner)]);
    }
  }
  check(std::string("rotary ") + tag, g1, ref, mag, kTolF32, same_bits(g1, g2));
}

// ---- optimizer updates -------------------------------------------------------------------------

void test_optim(int64_t n, Rng& rng) {
  char tag[64];
  snprintf(tag, sizeof tag, "n=%lld blocks=%u", (long long)n, grid_blocks(n));
  const size_t sn = (size_t)n;
  const dim3 grid(grid_blocks(n)), block(kThreads);
  const std::vector<float> g = rng.vec(sn, 0.1), buf0 = rng.vec(sn, 0.3);
  for (int nesterov = 0; nesterov <= 1; nesterov++) {
    const float momentum = 0.95f;
    std::vector<float> rb = buf0, ru(sn);
    nm::cpu::momentum_update(rb.data(), ru.data(), g.data(), n, momentum, nesterov != 0);
    std::vector<float> b1 = buf0, u1(sn), b2 = buf0, u2(sn);
    nm_emu::launch(ok_::momentum_kernel, grid, block, 0, b1.data(), u1.data(), g.data(), n,
                   momentum, nesterov);
    nm_emu::launch(ok_::momentum_kernel, grid, block, 0, b2.data(), u2.data(), g.data(), n,
                   momentum, nesterov);
    std::vector<double> mb(sn), mu(sn);
    for (size_t i = 0; i < sn; i++) {
      mb[i] = fabs((double)momentum * buf0[i]) + fabs((double)g[i]);
      mu[i] = nesterov ? fabs((double)momentum * rb[i]) + fabs((double)g[i]) : mb[i];
    }
    const bool det = same_bits(b1, b2) && same_bits(u1, u2);
    check(std::string("momentum buf nesterov=") + (nesterov ? "1 " : "0 ") + tag, b1, rb, mb,
          kTolF32, det);
    check(std::string("momentum u nesterov=") + (nesterov ? "1 " : "0 ") + tag, u1, ru, mu,
          kTolF32, det);
  }
  {
    const float decay = 0.99f, step = 0.02f;
    const std::vector<float> w0 = rng.vec(sn, 1.0);
    std::vector<float> rw = w0;
    nm::cpu::apply_update(rw.data(), g.data(), n, decay, step);
    std::vector<float> w1 = w0, w2 = w0;
    for (std::vector<float>* w : {&w1, &w2}) {  // optim.cu passes -step
      nm_emu::launch(ok_::apply_update_kernel, grid, block, 0, w->data(), g.data(), n, decay,
                     -step);
    }
    std::vector<double> mag(sn);
    for (size_t i = 0; i < sn; i++) mag[i] = fabs((double)decay * w0[i]) + fabs((double)step * g[i]);
    check(std::string("apply_update ") + tag, w1, rw, mag, kTolF32, same_bits(w1, w2));
  }
  {
    // step 3 of AdamW with lr 1e-3, weight decay 0.1
    const double lr = 1e-3, b1c = 0.9, b2c = 0.999;
    nm_adamw_scalars s;
    s.keep = (float)(1.0 - lr * 0.1);
    s.beta1 = (float)b1c;
    s.one_minus_beta1 = (float)(1.0 - b1c);
    s.beta2 = (float)b2c;
    s.one_minus_beta2 = (float)(1.0 - b2c);
    s.step_size = (float)(lr / (1.0 - pow(b1c, 3)));
    s.sqrt_bias2 = (float)sqrt(1.0 - pow(b2c, 3));
    s.eps = 1e-8f;
    const std::vector<float> w0 = rng.vec(sn, 1.0), m0 = rng.vec(sn, 0.05);
    std::vector<float> v0(sn);
    for (float& v : v0) v = (float)(1e-3 * rng.uniform());
    std::vector<float> rw = w0, rm = m0, rv = v0;
    nm::cpu::adamw_update(rw.data(), g.data(), rm.data(), rv.data(), n, s);
    std::vector<float> w1 = w0, m1 = m0, v1 = v0, w2 = w0, m2 = m0, v2 = v0;
    nm_emu::launch(ok_::adamw_kernel, grid, block, 0, w1.data(), g.data(), m1.data(), v1.data(),
                   n, s.keep, s.beta1, s.one_minus_beta1, s.beta2, s.one_minus_beta2, s.eps,
                   -s.step_size, s.sqrt_bias2);
    nm_emu::launch(ok_::adamw_kernel, grid, block, 0, w2.data(), g.data(), m2.data(), v2.data(),
                   n, s.keep, s.beta1, s.one_minus_beta1, s.beta2, s.one_minus_beta2, s.eps,
                   -s.step_size, s.sqrt_bias2);
    const bool det = same_bits(w1, w2) && same_bits(m1, m2) && same_bits(v1, v2);
    std::vector<double> mw(sn), mm(sn), mv(sn);
    for (size_t i = 0; i < sn; i++) {
      mm[i] = fabs((double)s.beta1 * m0[i]) + fabs((double)s.one_minus_beta1 * g[i]);
      mv[i] = fabs((double)s.beta2 * v0[i]) + (double)s.one_minus_beta2 * g[i] * g[i];
      const double ratio = fabs((double)rm[i]) / (sqrt((double)rv[i]) / s.sqrt_bias2 + s.eps);
      mw[i] = fabs((double)w0[i] * s.keep) + (double)s.step_size * ratio;
    }
    check(std::string("adamw w ") + tag, w1, rw, mw, kTolF32, det);
    check(std::string("adamw m ") + tag, m1, rm, mm, kTolF32, det);
    check(std::string("adamw v ") + tag, v1, rv, mv, kTolF32, det);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t seed = argc > 1 ? strtoull(argv[1], nullptr, 10) : 12345;
  const auto start = std::chrono::steady_clock::now();
  printf("model kernels emulation (rmsnorm, gelu, cross-entropy, rotary, optimizer updates), "
         "seed %llu; vs the CPU backend, tolerance f32 %.0e / bf16 %.0e of each element's "
         "terms\n",
         (unsigned long long)seed, kTolF32, kTolBf16);
  Rng rng{seed};
  auto lap = [t = start](const char* what) mutable {
    const auto now = std::chrono::steady_clock::now();
    printf("  (%s: %.1fs)\n", what, std::chrono::duration<double>(now - t).count());
    t = now;
  };
  // c: 1 thread-row of 32 lanes with one element; 33, 100 (32 threads, several per thread);
  // 256 (64 threads); 700 (192 threads); 1000, 1030 (256 threads; 1030 not a multiple of it)
  const int64_t norm_shapes[][2] = {{3, 1}, {4, 33}, {3, 100}, {5, 256}, {3, 700}, {2, 1000},
                                    {3, 1030}};
  for (const auto& s : norm_shapes) test_rmsnorm(s[0], s[1], rng);
  lap("rmsnorm");
  for (int64_t n : {1, 255, 257, 9001}) test_gelu(n, rng);  // 9001 > 32 blocks * 256
  lap("gelu");
  const int64_t ce_shapes[][2] = {{3, 1}, {4, 50}, {3, 512}, {4, 1000}, {3, 1537}};
  for (const auto& s : ce_shapes) {
    test_cross_entropy(s[0], s[1], 0.37f, rng);
    test_cross_entropy(s[0], s[1], 0.0f, rng);
  }
  lap("cross-entropy");
  const int64_t rot_shapes[][4] = {{1, 1, 1, 2}, {2, 7, 3, 6}, {2, 5, 2, 64}, {2, 70, 2, 128}};
  for (const auto& s : rot_shapes) {
    for (int inverse = 0; inverse <= 1; inverse++) {
      test_rotary(s[0], s[1], s[2], s[3], inverse, rng);
    }
  }
  lap("rotary");
  for (int64_t n : {1, 300, 9001}) test_optim(n, rng);
  lap("optimizer updates");
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  printf("worst error / tolerance scale: f32 %.1e, bf16 %.1e (%.1fs)\n", g_worst_f32,
         g_worst_bf16, secs);
  printf("%s\n", g_ok ? "all kernels match" : "MISMATCH");
  return g_ok ? 0 : 1;
}
