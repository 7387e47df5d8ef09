// Stand-in for CUB's <cub/cub.cuh> under the host emulation: DeviceRadixSort::SortPairs, the one
// CUB algorithm the module uses, with CUB's interface (../../libraries/cub_radix_sort.cc):
//   - the two-call protocol: with d_temp_storage == NULL only temp_storage_bytes is set; the
//     second call needs at least that many bytes of device memory (else cudaErrorInvalidValue)
//     and really uses them (the keys and values ping-pong through them);
//   - a stable least-significant-digit radix sort over key bits [begin_bit, end_bit) only: higher
//     bits do not take part in the order, as in CUB;
//   - stream-ordered on `stream`; unsigned integer keys.
// Declared here, defined (explicitly instantiated) for the key/value types the module sorts, so a
// new combination is a link error rather than a silent gap.
#ifndef NM_EMU_CUB_CUH
#define NM_EMU_CUB_CUH

#include <stddef.h>
#include <stdint.h>

#include "../cuda_runtime.h"

namespace cub {

struct DeviceRadixSort {
  template <typename KeyT, typename ValueT, typename NumItemsT>
  static cudaError_t SortPairs(void* d_temp_storage, size_t& temp_storage_bytes, const KeyT* d_keys_in,
                               KeyT* d_keys_out, const ValueT* d_values_in, ValueT* d_values_out,
                               NumItemsT num_items, int begin_bit = 0, int end_bit = sizeof(KeyT) * 8,
                               cudaStream_t stream = 0);
};

}  // namespace cub

#endif  // NM_EMU_CUB_CUH
