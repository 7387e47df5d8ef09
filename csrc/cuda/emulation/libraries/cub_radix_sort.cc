// cub::DeviceRadixSort::SortPairs stand-in (see ../include/cub/cub.cuh): a stable LSD radix sort,
// 8 key bits per pass, over bits [begin_bit, end_bit), in stream order. Keys and values
// ping-pong between the output arrays and two buffers in the caller's temporary storage, so the
// temporary storage is really written.
#include <string.h>

#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

#include "../include/cub/cub.cuh"
#include "../runtime/memory_map.h"
#include "../runtime/runtime.h"
#include "../runtime/stream.h"

namespace nm_emu {
namespace sort {
namespace {

size_t align256(size_t bytes) { return (bytes + 255) / 256 * 256; }

template <typename KeyT, typename ValueT>
size_t temp_bytes(size_t n) {
  return align256(n * sizeof(KeyT)) + align256(n * sizeof(ValueT)) + 256;
}

template <typename KeyT, typename ValueT>
struct Job {
  char* temp;
  const KeyT* keys_in;
  KeyT* keys_out;
  const ValueT* values_in;
  ValueT* values_out;
  size_t n;
  int begin_bit, end_bit;
};

template <typename KeyT, typename ValueT>
void run(const Job<KeyT, ValueT>& j) {
  struct Span {
    const char* name;
    const void* p;
    size_t bytes;
  };
  const Span spans[] = {{"d_temp_storage", j.temp, temp_bytes<KeyT, ValueT>(j.n)},
                        {"d_keys_in", j.keys_in, j.n * sizeof(KeyT)},
                        {"d_keys_out", j.keys_out, j.n * sizeof(KeyT)},
                        {"d_values_in", j.values_in, j.n * sizeof(ValueT)},
                        {"d_values_out", j.values_out, j.n * sizeof(ValueT)}};
  for (const Span& s : spans) {
    std::string why;
    if (rt::check_live_range(s.p, s.bytes, rt::MemoryKind::kDevice, &why)) {
      rt::set_sticky_error(cudaErrorIllegalAddress, std::string("cub::DeviceRadixSort::SortPairs: ") + s.name + ": " + why);
      return;
    }
  }
  KeyT* tk = reinterpret_cast<KeyT*>(j.temp);
  ValueT* tv = reinterpret_cast<ValueT*>(j.temp + align256(j.n * sizeof(KeyT)));
  // Pass p reads (src) and writes (dst); the last pass writes the outputs.
  const int passes = (j.end_bit - j.begin_bit + 7) / 8;
  if (passes == 0) {
    memmove(j.keys_out, j.keys_in, j.n * sizeof(KeyT));
    memmove(j.values_out, j.values_in, j.n * sizeof(ValueT));
    return;
  }
  const KeyT* src_k = j.keys_in;
  const ValueT* src_v = j.values_in;
  for (int p = 0; p < passes; p++) {
    // Alternate so that the last pass lands in the outputs.
    const bool to_out = ((passes - 1 - p) % 2) == 0;
    KeyT* dst_k = to_out ? j.keys_out : tk;
    ValueT* dst_v = to_out ? j.values_out : tv;
    const int shift = j.begin_bit + 8 * p;
    const int bits = std::min(8, j.end_bit - shift);
    const KeyT mask = (KeyT)((1u << bits) - 1);
    size_t count[257] = {0};
    for (size_t i = 0; i < j.n; i++) count[((src_k[i] >> shift) & mask) + 1]++;
    for (int d = 0; d < 256; d++) count[d + 1] += count[d];
    for (size_t i = 0; i < j.n; i++) {  // in input order: stable
      const size_t at = count[(src_k[i] >> shift) & mask]++;
      dst_k[at] = src_k[i];
      dst_v[at] = src_v[i];
    }
    src_k = dst_k;
    src_v = dst_v;
  }
}

template <typename KeyT, typename ValueT>
cudaError_t sort_pairs(void* d_temp_storage, size_t& temp_storage_bytes, const KeyT* d_keys_in, KeyT* d_keys_out,
                       const ValueT* d_values_in, ValueT* d_values_out, long long num_items, int begin_bit,
                       int end_bit, cudaStream_t stream) {
  static_assert(std::is_unsigned<KeyT>::value, "the emulation sorts unsigned integer keys");
  using namespace rt;
  if (num_items < 0) return note(cudaErrorInvalidValue);
  const size_t n = (size_t)num_items;
  if (d_temp_storage == nullptr) {
    temp_storage_bytes = temp_bytes<KeyT, ValueT>(n);
    return cudaSuccess;
  }
  if (check_context() != cudaSuccess) return sticky_error();
  if (temp_storage_bytes < temp_bytes<KeyT, ValueT>(n)) return note(cudaErrorInvalidValue);
  if (begin_bit < 0 || end_bit > (int)(8 * sizeof(KeyT)) || begin_bit > end_bit) return note(cudaErrorInvalidValue);
  Stream* s = resolve_stream(stream);
  if (s == nullptr) return note(cudaErrorInvalidResourceHandle);
  if (n == 0) return cudaSuccess;
  const Job<KeyT, ValueT> job{static_cast<char*>(d_temp_storage), d_keys_in, d_keys_out, d_values_in, d_values_out,
                              n, begin_bit, end_bit};
  s->enqueue([job] { run(job); });
  return cudaSuccess;
}

}  // namespace
}  // namespace sort
}  // namespace nm_emu

namespace cub {

template <typename KeyT, typename ValueT, typename NumItemsT>
cudaError_t DeviceRadixSort::SortPairs(void* d_temp_storage, size_t& temp_storage_bytes, const KeyT* d_keys_in,
                                       KeyT* d_keys_out, const ValueT* d_values_in, ValueT* d_values_out,
                                       NumItemsT num_items, int begin_bit, int end_bit, cudaStream_t stream) {
  NM_EMU_ENTRY("cub::DeviceRadixSort::SortPairs");
  if (nm_emu_injected_) return nm_emu::rt::note((cudaError_t)nm_emu_injected_);
  return nm_emu::sort::sort_pairs(d_temp_storage, temp_storage_bytes, d_keys_in, d_keys_out, d_values_in,
                                  d_values_out, (long long)num_items, begin_bit, end_bit, stream);
}

// What the module sorts: 32-bit token ids with 32-bit positions.
template cudaError_t DeviceRadixSort::SortPairs<uint32_t, int32_t, int>(void*, size_t&, const uint32_t*, uint32_t*,
                                                                       const int32_t*, int32_t*, int, int, int,
                                                                       cudaStream_t);

}  // namespace cub
