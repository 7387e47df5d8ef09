// CPU GEMM driver: kernel dispatch, cache blocking and threading around the packed
// micro-kernels (gemm_pack.cc, gemm_microkernel_*.cc).
//
// Loop structure (GotoBLAS / BLIS), per batch entry:
//   for jc in n step nc:              B block columns   (kc x nc packed block shared, in L3)
//     for pc in k step kc:            depth blocks      (pack B once: parallel region 1)
//       for ic in m step mc:          A row blocks      (parallel region 2: one item per
//         pack A block (mc x kc, L2)                     A block, or A block x column chunk)
//         for jr in nc step NR:       B micro-panel (L1) reused across all ir
//           for ir in mc step MR:     micro-kernel: MR x NR tile of C in registers
// The first depth block applies the caller's beta; later ones accumulate into C (beta = 1).
//
// Threading: the pool is not reentrant, so each parallel region is one parallel_for. Large
// problems parallelise inside each entry (the two regions above); batches of small matrices
// instead give one entry to each item and run it serially. Tiny problems skip packing.
//
// bf16 output: partial sums must stay f32 until the end. Up to k = kBf16MaxDepth the whole
// depth is one block and each finished tile is rounded straight into C; deeper products go to
// an f32 scratch (in row chunks, to bound its size) that is rounded into C once at the end.
#include "gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <new>

#include "../core/bf16.h"
#include "cpu_features.h"
#include "gemm_internal.h"
#include "thread_pool.h"

namespace nm::cpu {
namespace {

using gemm_detail::KernelInfo;
using gemm_detail::kMaxMR;
using gemm_detail::kMaxNR;

// Below this many multiply-adds (m * n * k) packing costs more than it saves.
constexpr double kSmallWork = 32768.0;
// Below this, one entry is not worth waking the pool for (a few microseconds of work).
constexpr double kParallelMinWork = 1 << 18;
// Batched entries smaller than this run one per pool item instead of each using the pool.
constexpr double kBatchItemMaxWork = 1 << 23;
// bf16 output keeps partial sums in registers across the whole of k when k is at most this,
// stretching the depth block past the kernel's kc: measured on Zen 4, a 768-deep block costs
// under 5% against the tuned one, far less than an f32 scratch pass over C.
constexpr int64_t kBf16MaxDepth = 1024;
// Upper bound on the f32 scratch used for bf16 output with k > kBf16MaxDepth (16 MiB).
constexpr int64_t kScratchFloats = int64_t{1} << 22;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }
// m * n * k as a double: a size estimate for heuristics that cannot overflow.
double work_of(int64_t m, int64_t n, int64_t k) {
  return static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
}

// ---- kernel selection --------------------------------------------------------------------

const KernelInfo* usable_avx512() {
  return cpu_has_avx512f() ? gemm_detail::avx512_kernel() : nullptr;
}
const KernelInfo* usable_avx2() {
  return cpu_has_avx2_fma() ? gemm_detail::avx2_kernel() : nullptr;
}

const KernelInfo* best_kernel() {
  if (const KernelInfo* k = usable_avx512()) return k;
  if (const KernelInfo* k = usable_avx2()) return k;
  return gemm_detail::generic_kernel();
}

// Chosen once per process. NM_GEMM_KERNEL=generic|avx2|avx512 forces a kernel (to test the
// portable path on a machine with AVX); a forced kernel the CPU cannot run falls back to the
// best one it can.
const KernelInfo& selected_kernel() {
  static const KernelInfo* const kernel = [] {
    const char* env = std::getenv("NM_GEMM_KERNEL");
    const KernelInfo* forced = nullptr;
    if (env != nullptr) {
      if (std::strcmp(env, "generic") == 0) forced = gemm_detail::generic_kernel();
      if (std::strcmp(env, "avx2") == 0) forced = usable_avx2();
      if (std::strcmp(env, "avx512") == 0) forced = usable_avx512();
    }
    return forced != nullptr ? forced : best_kernel();
  }();
  return *kernel;
}

// ---- buffers -----------------------------------------------------------------------------

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};
using FloatBuffer = std::unique_ptr<float[], FreeDeleter>;

// 64-byte aligned so the micro-kernels' aligned panel loads never split a cache line.
FloatBuffer alloc_floats(int64_t count) {
  const size_t bytes = static_cast<size_t>(round_up(std::max<int64_t>(count, 1) * 4, 64));
  void* p = std::aligned_alloc(64, bytes);
  if (p == nullptr) throw std::bad_alloc();
  return FloatBuffer(static_cast<float*>(p));
}

// A per-thread packing buffer that only grows. Kept across calls so repeated GEMMs (a training
// loop) do not pay page faults on fresh allocations; bounded by the block sizes (mc * kc for
// A, kc * nc for B).
class PackBuffer {
 public:
  float* get(int64_t count) {
    if (count > capacity_) {
      data_ = alloc_floats(count);
      capacity_ = count;
    }
    return data_.get();
  }

 private:
  FloatBuffer data_;
  int64_t capacity_ = 0;
};

thread_local PackBuffer t_pack_a;
thread_local PackBuffer t_pack_b;

// Runs fn(0..n-1) on the pool (pool != nullptr) or inline. Exceptions (std::bad_alloc from a
// packing buffer) must not escape on a pool worker, where they would terminate the process:
// they are caught per item and the first one is rethrown on the calling thread.
void run_range(ThreadPool* pool, int64_t n, const std::function<void(int64_t)>& fn) {
  if (pool == nullptr) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::mutex error_mutex;
  std::exception_ptr error;
  pool->parallel_for(n, [&](int64_t i) {
    try {
      fn(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  });
  if (error) std::rethrow_exception(error);
}

// ---- one batch entry ---------------------------------------------------------------------

// One matrix product with batch offsets applied. Pointers are bytes so row/column offsets can
// be applied for either dtype.
struct Entry {
  const char* a;
  int64_t lda;
  bool trans_a;
  const char* b;
  int64_t ldb;
  bool trans_b;
  nm_dtype ab_dtype;
  char* c;
  int64_t ldc;
  nm_dtype c_dtype;
  int64_t m, n, k;
  float alpha, beta;
};

float load_value(const char* base, nm_dtype dtype, int64_t index) {
  if (dtype == NM_BF16) return nm_bf16_to_f32(reinterpret_cast<const uint16_t*>(base)[index]);
  return reinterpret_cast<const float*>(base)[index];
}

void store_value(char* base, nm_dtype dtype, int64_t index, float value) {
  if (dtype == NM_BF16)
    reinterpret_cast<uint16_t*>(base)[index] = nm_f32_to_bf16(value);
  else
    reinterpret_cast<float*>(base)[index] = value;
}

// C = alpha * acc + beta * C for one stored element; beta == 0 does not read C.
void update_value(char* c, nm_dtype dtype, int64_t index, float alpha, float acc, float beta) {
  float value = alpha * acc;
  if (beta != 0.0f) value += beta * load_value(c, dtype, index);
  store_value(c, dtype, index, value);
}

// k == 0: the product is empty, so C = beta * C (zeros when beta == 0, C unread).
void scale_only(const Entry& e) {
  for (int64_t i = 0; i < e.m; ++i)
    for (int64_t j = 0; j < e.n; ++j) update_value(e.c, e.c_dtype, i * e.ldc + j, 0.0f, 0.0f, e.beta);
}

// Tiny products: direct dot products, no packing. Every flag is handled by the index maths.
void naive_gemm(const Entry& e) {
  for (int64_t i = 0; i < e.m; ++i) {
    for (int64_t j = 0; j < e.n; ++j) {
      float acc = 0.0f;
      for (int64_t p = 0; p < e.k; ++p) {
        const float x = load_value(e.a, e.ab_dtype, e.trans_a ? p * e.lda + i : i * e.lda + p);
        const float y = load_value(e.b, e.ab_dtype, e.trans_b ? j * e.ldb + p : p * e.ldb + j);
        acc += x * y;
      }
      update_value(e.c, e.c_dtype, i * e.ldc + j, e.alpha, acc, e.beta);
    }
  }
}

// Packed, blocked product with depth blocks of at most kc_max. Requires C to be f32 or
// k <= kc_max (bf16 C cannot carry partial sums between blocks); run_entry guarantees that.
void packed_gemm(const Entry& e, const KernelInfo& kern, int64_t kc_max, ThreadPool* pool) {
  const int mr = kern.mr;
  const int nr = kern.nr;
  const int threads = pool != nullptr ? pool->size() : 1;
  const size_t c_size = nm_dtype_size(e.c_dtype);

  // Equal-sized depth and column blocks (k = 300 -> 2 x 150, not 256 + 44).
  const int64_t k_blocks = ceil_div(e.k, kc_max);
  const int64_t kc = ceil_div(e.k, k_blocks);
  const int64_t n_blocks = ceil_div(e.n, kern.nc);
  const int64_t nc = round_up(ceil_div(e.n, n_blocks), nr);

  // Row blocks: at most mc rows, equal sized, and at least two per thread when there are
  // enough MR-row tiles so the dynamic schedule can balance.
  const int64_t m_tiles = ceil_div(e.m, mr);
  int64_t m_blocks = ceil_div(m_tiles, kern.mc / mr);
  if (threads > 1) m_blocks = std::max(m_blocks, std::min<int64_t>(m_tiles, 2 * threads));
  const int64_t tiles_per_block = ceil_div(m_tiles, m_blocks);
  m_blocks = ceil_div(m_tiles, tiles_per_block);
  const int64_t rows_per_block = tiles_per_block * mr;

  float* b_pack = t_pack_b.get(round_up(std::min(nc, round_up(e.n, nr)), nr) * kc);

  for (int64_t jc = 0; jc < e.n; jc += nc) {
    const int64_t n_cur = std::min(nc, e.n - jc);
    const int64_t panels = ceil_div(n_cur, nr);

    // Too few row blocks to keep every thread busy (small m): also split the columns. Each
    // column chunk then packs its own copy of the A block, which is cheap when m is small.
    int64_t col_chunks = 1;
    if (threads > 1 && m_blocks < 2 * threads) col_chunks = std::min(panels, ceil_div(2 * threads, m_blocks));
    const int64_t panels_per_chunk = ceil_div(panels, col_chunks);
    col_chunks = ceil_div(panels, panels_per_chunk);

    for (int64_t pc = 0; pc < e.k; pc += kc) {
      const int64_t k_cur = std::min(kc, e.k - pc);
      const float beta = pc == 0 ? e.beta : 1.0f;

      // Region 1: pack the kc x nc block of op(B), shared read-only by every item below.
      const int64_t groups = pool != nullptr ? std::min<int64_t>(panels, 4 * threads) : 1;
      const int64_t panels_per_group = ceil_div(panels, groups);
      run_range(pool, ceil_div(panels, panels_per_group), [&](int64_t g) {
        const int64_t first = g * panels_per_group;
        const int64_t cols = std::min(panels_per_group * nr, n_cur - first * nr);
        gemm_detail::pack_b(e.b, e.ab_dtype, e.trans_b, e.ldb, pc, k_cur, jc + first * nr, cols,
                            nr, b_pack + first * nr * k_cur);
      });

      // Region 2: each item packs one A block into its thread's buffer and sweeps its
      // column chunk of the B block, B micro-panel outer so it stays in L1 across the A block.
      run_range(pool, m_blocks * col_chunks, [&](int64_t item) {
        const int64_t mb = item / col_chunks;
        const int64_t cb = item % col_chunks;
        const int64_t i0 = mb * rows_per_block;
        const int64_t rows = std::min(rows_per_block, e.m - i0);
        const int64_t jp_begin = cb * panels_per_chunk;
        const int64_t jp_end = std::min(panels, jp_begin + panels_per_chunk);

        float* a_pack = t_pack_a.get(round_up(rows, mr) * k_cur);
        gemm_detail::pack_a(e.a, e.ab_dtype, e.trans_a, e.lda, i0, rows, pc, k_cur, mr, a_pack);

        alignas(64) float tile[kMaxMR * kMaxNR];
        for (int64_t jp = jp_begin; jp < jp_end; ++jp) {
          const int64_t j = jc + jp * nr;
          const int n_valid = static_cast<int>(std::min<int64_t>(nr, e.n - j));
          const float* b_panel = b_pack + jp * nr * k_cur;
          for (int64_t ip = 0; ip * mr < rows; ++ip) {
            const int64_t i = i0 + ip * mr;
            const int m_valid = static_cast<int>(std::min<int64_t>(mr, i0 + rows - i));
            const float* a_panel = a_pack + ip * mr * k_cur;
            if (m_valid == mr && n_valid == nr && e.c_dtype == NM_F32) {
              float* c_tile = reinterpret_cast<float*>(e.c) + i * e.ldc + j;
              kern.fn(k_cur, a_panel, b_panel, c_tile, e.ldc, e.alpha, beta);
            } else {
              // Edge tile or bf16 C: compute the full padded tile into the stack buffer and
              // update only the valid part of C.
              kern.fn(k_cur, a_panel, b_panel, tile, nr, 1.0f, 0.0f);
              char* c_row = e.c + (i * e.ldc + j) * c_size;
              for (int r = 0; r < m_valid; ++r)
                for (int s = 0; s < n_valid; ++s)
                  update_value(c_row, e.c_dtype, r * e.ldc + s, e.alpha, tile[r * nr + s], beta);
            }
          }
        }
      });
    }
  }
}

// bf16 C with k too deep for one block: f32 product into a scratch, row chunk by row chunk,
// then C = bf16(scratch + beta * C) with a single rounding.
void packed_gemm_bf16_out(const Entry& e, const KernelInfo& kern, ThreadPool* pool) {
  const int64_t chunk_rows =
      std::min(e.m, std::max<int64_t>(kern.mr, kScratchFloats / e.n / kern.mr * kern.mr));
  FloatBuffer scratch = alloc_floats(chunk_rows * e.n);
  const size_t ab_size = nm_dtype_size(e.ab_dtype);
  for (int64_t r0 = 0; r0 < e.m; r0 += chunk_rows) {
    Entry part = e;
    part.m = std::min(chunk_rows, e.m - r0);
    part.a = e.a + (e.trans_a ? r0 : r0 * e.lda) * ab_size;
    part.c = reinterpret_cast<char*>(scratch.get());
    part.ldc = e.n;
    part.c_dtype = NM_F32;
    part.beta = 0.0f;
    packed_gemm(part, kern, kern.kc, pool);

    // Round the chunk into C; parallel because it is a full pass over the chunk.
    char* c_rows = e.c + r0 * e.ldc * nm_dtype_size(NM_BF16);
    const int64_t groups = pool != nullptr ? std::min<int64_t>(part.m, 4 * pool->size()) : 1;
    const int64_t rows_per_group = ceil_div(part.m, groups);
    run_range(pool, ceil_div(part.m, rows_per_group), [&](int64_t g) {
      const int64_t end = std::min(part.m, (g + 1) * rows_per_group);
      for (int64_t i = g * rows_per_group; i < end; ++i) {
        const float* src = scratch.get() + i * e.n;
        uint16_t* dst = reinterpret_cast<uint16_t*>(c_rows) + i * e.ldc;
        if (e.beta == 0.0f) {  // C not read
          for (int64_t j = 0; j < e.n; ++j) dst[j] = nm_f32_to_bf16(src[j]);
        } else {
          for (int64_t j = 0; j < e.n; ++j)
            dst[j] = nm_f32_to_bf16(src[j] + e.beta * nm_bf16_to_f32(dst[j]));
        }
      }
    });
  }
}

// ---- matrix-vector products --------------------------------------------------------------
// With n == 1 (or m == 1, transposed into n == 1) a packed micro-tile would be 1/NR useful
// work and packing would copy the whole matrix: these are memory bound, so they stream op(A)
// once instead. Plain C++ (the compiler's baseline vectors are enough at memory speed).

template <typename T>
float widen(T v);
template <>
float widen<float>(float v) { return v; }
template <>
float widen<uint16_t>(uint16_t v) { return nm_bf16_to_f32(v); }

// y[i] = dot(row i of A, x), A row-major with contiguous rows. Eight partial sums let the
// compiler vectorise the reduction (a single sum is a serial dependency chain).
template <typename T>
void gemv_rows(const T* a, int64_t lda, const float* x, int64_t k, int64_t i_begin,
               int64_t i_end, float* y) {
  for (int64_t i = i_begin; i < i_end; ++i) {
    const T* row = a + i * lda;
    float part[8] = {};
    int64_t p = 0;
    for (; p + 8 <= k; p += 8)
      for (int u = 0; u < 8; ++u) part[u] += widen(row[p + u]) * x[p + u];
    float tail = 0.0f;
    for (; p < k; ++p) tail += widen(row[p]) * x[p];
    y[i - i_begin] = ((part[0] + part[1]) + (part[2] + part[3])) +
                     ((part[4] + part[5]) + (part[6] + part[7])) + tail;
  }
}

// y[i] = sum_p A[p][i] * x[p] for A stored [k, m] (op(A) transposed): accumulate rows of A
// scaled by x[p] into y, which keeps every read of A contiguous. Four rows per pass cut the
// loads and stores of y by four.
template <typename T>
void gemv_cols(const T* a, int64_t lda, const float* x, int64_t k, int64_t i_begin,
               int64_t i_end, float* y) {
  const int64_t width = i_end - i_begin;
  for (int64_t i = 0; i < width; ++i) y[i] = 0.0f;
  int64_t p = 0;
  for (; p + 4 <= k; p += 4) {
    const T* r0 = a + p * lda + i_begin;
    const T* r1 = r0 + lda;
    const T* r2 = r1 + lda;
    const T* r3 = r2 + lda;
    const float x0 = x[p], x1 = x[p + 1], x2 = x[p + 2], x3 = x[p + 3];
    for (int64_t i = 0; i < width; ++i)
      y[i] += (widen(r0[i]) * x0 + widen(r1[i]) * x1) + (widen(r2[i]) * x2 + widen(r3[i]) * x3);
  }
  for (; p < k; ++p) {
    const T* row = a + p * lda + i_begin;
    const float xp = x[p];
    for (int64_t i = 0; i < width; ++i) y[i] += widen(row[i]) * xp;
  }
}

// C[:, 0] = alpha * op(A) @ op(B)[:, 0] + beta * C[:, 0], for n == 1.
void gemv(const Entry& e, ThreadPool* pool) {
  // The vector op(B)[:, 0], gathered and widened once (it is read by every row).
  FloatBuffer x = alloc_floats(e.k);
  for (int64_t p = 0; p < e.k; ++p)
    x[p] = load_value(e.b, e.ab_dtype, e.trans_b ? p : p * e.ldb);

  // Row blocks of at most kRows, so each item's results fit a stack buffer; wide blocks keep
  // gemv_cols reading long contiguous runs of each row of A.
  constexpr int64_t kRows = 1024;
  const int64_t threads = pool != nullptr ? pool->size() : 1;
  const int64_t rows_per_item =
      std::min(kRows, std::max<int64_t>(8, ceil_div(e.m, 4 * threads)));
  run_range(pool, ceil_div(e.m, rows_per_item), [&](int64_t item) {
    const int64_t i_begin = item * rows_per_item;
    const int64_t i_end = std::min(e.m, i_begin + rows_per_item);
    float y[kRows];
    if (e.ab_dtype == NM_BF16) {
      const uint16_t* a = reinterpret_cast<const uint16_t*>(e.a);
      if (e.trans_a)
        gemv_cols(a, e.lda, x.get(), e.k, i_begin, i_end, y);
      else
        gemv_rows(a, e.lda, x.get(), e.k, i_begin, i_end, y);
    } else {
      const float* a = reinterpret_cast<const float*>(e.a);
      if (e.trans_a)
        gemv_cols(a, e.lda, x.get(), e.k, i_begin, i_end, y);
      else
        gemv_rows(a, e.lda, x.get(), e.k, i_begin, i_end, y);
    }
    for (int64_t i = i_begin; i < i_end; ++i)
      update_value(e.c, e.c_dtype, i * e.ldc, e.alpha, y[i - i_begin], e.beta);
  });
}

// m == 1: C (one row) viewed as an [n, 1] column is op(B)^T @ op(A)^T, an n == 1 product.
Entry transpose_row_product(const Entry& e) {
  Entry t = e;
  t.a = e.b;
  t.lda = e.ldb;
  t.trans_a = !e.trans_b;
  t.b = e.a;
  t.ldb = e.lda;
  t.trans_b = !e.trans_a;
  t.m = e.n;
  t.n = 1;
  t.ldc = 1;
  return t;
}

// ---- dispatch for one entry --------------------------------------------------------------

void run_entry(const Entry& e, const KernelInfo& kern, ThreadPool* pool) {
  if (e.k <= 0) {
    scale_only(e);
  } else if (work_of(e.m, e.n, e.k) < kSmallWork) {
    naive_gemm(e);
  } else if (e.n == 1) {
    gemv(e, pool);
  } else if (e.m == 1) {
    gemv(transpose_row_product(e), pool);
  } else if (e.c_dtype == NM_F32) {
    packed_gemm(e, kern, kern.kc, pool);
  } else if (e.k <= std::max(kern.kc, kBf16MaxDepth)) {
    packed_gemm(e, kern, e.k, pool);  // bf16 C, one depth block: rounded straight into C
  } else {
    packed_gemm_bf16_out(e, kern, pool);
  }
}

}  // namespace

const char* gemm_kernel_name() { return selected_kernel().name; }

void gemm(const nm_gemm_args& args) {
  if (args.m <= 0 || args.n <= 0 || args.batch <= 0) return;
  const KernelInfo& kern = selected_kernel();
  const size_t ab_size = nm_dtype_size(args.ab_dtype);
  const size_t c_size = nm_dtype_size(args.c_dtype);

  auto entry_at = [&](int64_t index) {
    Entry e;
    e.a = static_cast<const char*>(args.a) + index * args.stride_a * ab_size;
    e.lda = args.lda;
    e.trans_a = args.trans_a != 0;
    e.b = static_cast<const char*>(args.b) + index * args.stride_b * ab_size;
    e.ldb = args.ldb;
    e.trans_b = args.trans_b != 0;
    e.ab_dtype = args.ab_dtype;
    e.c = static_cast<char*>(args.c) + index * args.stride_c * c_size;
    e.ldc = args.ldc;
    e.c_dtype = args.c_dtype;
    e.m = args.m;
    e.n = args.n;
    e.k = args.k;
    e.alpha = args.alpha;
    e.beta = args.beta;
    return e;
  };

  ThreadPool& pool = compute_pool();
  const double work = work_of(args.m, args.n, std::max<int64_t>(args.k, 1));
  if (pool.size() > 1 && args.batch > 1 && work < kBatchItemMaxWork) {
    // Many small products: one entry per item, each run serially on its thread.
    run_range(&pool, args.batch,
              [&](int64_t index) { run_entry(entry_at(index), kern, nullptr); });
    return;
  }
  ThreadPool* inner = pool.size() > 1 && work >= kParallelMinWork ? &pool : nullptr;
  for (int64_t index = 0; index < args.batch; ++index) run_entry(entry_at(index), kern, inner);
}

}  // namespace nm::cpu
