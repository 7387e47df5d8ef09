// Host <-> device and device <-> device copies, all enqueued on the backend's stream.
//
// upload must snapshot the caller's (pageable) host buffer before returning, so it copies it into
// pinned staging memory and enqueues an async DMA from there. Staging memory is a ring of pinned
// chunks; a chunk's event is recorded after every copy out of it, and the chunk is refilled only
// once that event has completed (queried, or waited on when the ring is at its size limit). No
// CUDA call is ever made from a host callback.
#include <stdint.h>
#include <string.h>

#include <mutex>
#include <new>
#include <vector>

#include "check.h"
#include "context.h"
#include "ops.h"

namespace nm_cuda {

namespace {

constexpr size_t kChunkBytes = size_t(8) << 20;  // 8 MiB per pinned chunk
constexpr size_t kMaxChunks = 16;                 // at most 128 MiB of pinned staging memory
constexpr size_t kPieceAlign = 256;               // start each piece on a DMA-friendly boundary
// A request that does not fit in the current chunk's tail moves on to a fresh chunk when the
// tail is smaller than this, instead of being split into a tiny copy plus the rest.
constexpr size_t kMinSplit = size_t(64) << 10;

struct StagingChunk {
  char* host = nullptr;
  size_t used = 0;
  cudaEvent_t done = nullptr;  // recorded after the latest copy out of this chunk
};

size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

}  // namespace

struct StagingPool {
  std::mutex mu;
  std::vector<StagingChunk> chunks;  // a ring, filled in index order; chunks[current] is open
  size_t current = 0;
};

namespace {

nm_status new_chunk(const char* op, StagingChunk* chunk) {
  NM_CUDA_CHECK(op, cudaMallocHost(&chunk->host, kChunkBytes));
  cudaError_t err = cudaEventCreateWithFlags(&chunk->done, cudaEventDisableTiming);
  if (err != cudaSuccess) {
    cudaFreeHost(chunk->host);
    chunk->host = nullptr;
    return fail_cuda(op, "cudaEventCreateWithFlags", err);
  }
  chunk->used = 0;
  return NM_OK;
}

void free_chunk(StagingChunk* chunk) {
  if (chunk->done != nullptr) cudaEventDestroy(chunk->done);
  if (chunk->host != nullptr) cudaFreeHost(chunk->host);
  chunk->done = nullptr;
  chunk->host = nullptr;
}

// Inserts chunk at position `at`; on failure (no host memory for the vector) frees the chunk,
// since no exception may cross the module's C interface.
bool add_chunk(StagingPool* pool, size_t at, StagingChunk chunk) {
  try {
    pool->chunks.insert(pool->chunks.begin() + (ptrdiff_t)at, chunk);
    return true;
  } catch (...) {
    free_chunk(&chunk);
    return false;
  }
}

// Makes the next chunk of the ring the open one, with nothing in it. The next chunk is the one
// filled longest ago; it is reused once its last copy has completed. While it is still busy the
// ring grows (up to kMaxChunks), after that the caller waits for the copy to finish.
nm_status advance(StagingPool* pool, const char* op) {
  if (pool->chunks.empty()) {
    StagingChunk chunk;
    NM_TRY(new_chunk(op, &chunk));
    if (!add_chunk(pool, 0, chunk)) {
      return set_error(NM_ERR_OUT_OF_MEMORY, "%s: out of host memory", op);
    }
    pool->current = 0;
    return NM_OK;
  }
  const size_t next = (pool->current + 1) % pool->chunks.size();
  StagingChunk& candidate = pool->chunks[next];
  cudaError_t state = cudaEventQuery(candidate.done);
  if (state == cudaErrorNotReady) {
    if (pool->chunks.size() < kMaxChunks) {
      StagingChunk chunk;
      NM_TRY(new_chunk(op, &chunk));
      // Inserted right after the open chunk: the ring order (oldest next) is kept.
      if (!add_chunk(pool, next, chunk)) {
        return set_error(NM_ERR_OUT_OF_MEMORY, "%s: out of host memory", op);
      }
      pool->current = next;
      return NM_OK;
    }
    state = cudaEventSynchronize(candidate.done);
    if (state != cudaSuccess) return fail_cuda(op, "cudaEventSynchronize", state);
  } else if (state != cudaSuccess) {
    return fail_cuda(op, "cudaEventQuery", state);
  }
  candidate.used = 0;
  pool->current = next;
  return NM_OK;
}

// Reserves up to `want` bytes of free staging memory in the open chunk (advancing the ring when
// it is full). Returns the piece and its length (1..want).
nm_status reserve(StagingPool* pool, const char* op, size_t want, char** piece, size_t* len) {
  if (pool->chunks.empty()) NM_TRY(advance(pool, op));
  for (int attempt = 0; attempt < 2; attempt++) {
    StagingChunk& chunk = pool->chunks[pool->current];
    const size_t start = align_up(chunk.used, kPieceAlign);
    const size_t room = start < kChunkBytes ? kChunkBytes - start : 0;
    if (room >= want || room >= kMinSplit) {
      *len = room < want ? room : want;
      *piece = chunk.host + start;
      chunk.used = start + *len;
      return NM_OK;
    }
    NM_TRY(advance(pool, op));  // a fresh chunk has kChunkBytes of room
  }
  return set_error(NM_ERR_DEVICE, "%s: staging ring failed to provide space", op);
}

}  // namespace

void staging_destroy(nm_backend* be) {
  if (be == nullptr || be->staging == nullptr) return;
  for (StagingChunk& chunk : be->staging->chunks) free_chunk(&chunk);
  delete be->staging;
  be->staging = nullptr;
}

nm_status upload(nm_backend* be, void* dst, const void* host_src, size_t bytes) {
  static const char* const kOp = "upload";
  NM_TRY(enter(be, kOp));
  if (bytes == 0) return NM_OK;
  if (dst == nullptr) return fail_invalid(kOp, "dst is NULL");
  if (host_src == nullptr) return fail_invalid(kOp, "host_src is NULL");
  if (be->staging == nullptr) {
    be->staging = new (std::nothrow) StagingPool();
    if (be->staging == nullptr) {
      return set_error(NM_ERR_OUT_OF_MEMORY, "%s: out of host memory", kOp);
    }
  }
  StagingPool* pool = be->staging;
  std::lock_guard<std::mutex> lock(pool->mu);
  const char* src = static_cast<const char*>(host_src);
  char* out = static_cast<char*>(dst);
  size_t done = 0;
  while (done < bytes) {
    char* piece = nullptr;
    size_t len = 0;
    NM_TRY(reserve(pool, kOp, bytes - done, &piece, &len));
    memcpy(piece, src + done, len);
    NM_CUDA_CHECK(kOp, cudaMemcpyAsync(out + done, piece, len, cudaMemcpyHostToDevice, be->stream));
    NM_CUDA_CHECK(kOp, cudaEventRecord(pool->chunks[pool->current].done, be->stream));
    done += len;
  }
  return NM_OK;
}

nm_status download(nm_backend* be, void* host_dst, const void* src, size_t bytes) {
  static const char* const kOp = "download";
  NM_TRY(enter(be, kOp));
  if (bytes == 0) return NM_OK;
  if (host_dst == nullptr) return fail_invalid(kOp, "host_dst is NULL");
  if (src == nullptr) return fail_invalid(kOp, "src is NULL");
  // A pageable destination would make cudaMemcpyAsync synchronous (blocking the enqueuing
  // thread); the contract says host_dst comes from host_alloc, so hold callers to it.
  cudaPointerAttributes attr;
  NM_CUDA_CHECK(kOp, cudaPointerGetAttributes(&attr, host_dst));
  if (attr.type != cudaMemoryTypeHost) {
    return fail_invalid(kOp, "host_dst %p is not pinned host memory from host_alloc", host_dst);
  }
  NM_CUDA_CHECK(kOp, cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, be->stream));
  return NM_OK;
}

nm_status copy(nm_backend* be, void* dst, const void* src, size_t bytes) {
  static const char* const kOp = "copy";
  NM_TRY(enter(be, kOp));
  if (bytes == 0) return NM_OK;
  if (dst == nullptr) return fail_invalid(kOp, "dst is NULL");
  if (src == nullptr) return fail_invalid(kOp, "src is NULL");
  if (dst == src) return NM_OK;
  NM_CUDA_CHECK(kOp, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, be->stream));
  return NM_OK;
}

nm_status copy_rows(nm_backend* be, void* dst, int64_t dst_stride_bytes, const void* src,
                    int64_t src_stride_bytes, int64_t rows, int64_t row_bytes) {
  static const char* const kOp = "copy_rows";
  NM_TRY(enter(be, kOp));
  if (rows < 0 || row_bytes < 0) {
    return fail_invalid(kOp, "rows (%lld) and row_bytes (%lld) must be >= 0", (long long)rows,
                        (long long)row_bytes);
  }
  if (rows == 0 || row_bytes == 0) return NM_OK;
  if (dst == nullptr) return fail_invalid(kOp, "dst is NULL");
  if (src == nullptr) return fail_invalid(kOp, "src is NULL");
  if (rows > 1 && (dst_stride_bytes < row_bytes || src_stride_bytes < row_bytes)) {
    return fail_invalid(kOp,
                        "strides must be >= row_bytes (%lld) when rows > 1; got dst_stride_bytes "
                        "%lld, src_stride_bytes %lld",
                        (long long)row_bytes, (long long)dst_stride_bytes,
                        (long long)src_stride_bytes);
  }
  // With a single row the strides are never used; give cudaMemcpy2DAsync valid pitches.
  const size_t dpitch = rows == 1 ? (size_t)row_bytes : (size_t)dst_stride_bytes;
  const size_t spitch = rows == 1 ? (size_t)row_bytes : (size_t)src_stride_bytes;
  if (be->max_pitch == 0 || (dpitch <= be->max_pitch && spitch <= be->max_pitch)) {
    NM_CUDA_CHECK(kOp, cudaMemcpy2DAsync(dst, dpitch, src, spitch, (size_t)row_bytes,
                                         (size_t)rows, cudaMemcpyDeviceToDevice, be->stream));
    return NM_OK;
  }
  // Pitches beyond what the 2D copy engine path accepts: one copy per row (rare; huge strides).
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
  for (int64_t r = 0; r < rows; r++) {
    NM_CUDA_CHECK(kOp, cudaMemcpyAsync(d + r * dst_stride_bytes, s + r * src_stride_bytes,
                                       (size_t)row_bytes, cudaMemcpyDeviceToDevice, be->stream));
  }
  return NM_OK;
}

}  // namespace nm_cuda
