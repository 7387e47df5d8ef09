// Copies and memsets. Checked when called, as far as CUDA does and a little further: the copy
// direction must match the pointers, and the device (or pinned) side of a copy must lie inside
// one live allocation (else cudaErrorInvalidValue). Then, as in CUDA:
//   - device and pinned memory on both sides: asynchronous, in stream order;
//   - from pageable host memory: the source is copied now (the caller may reuse it at once), the
//     transfer itself is stream-ordered;
//   - to pageable host memory: the call returns once the copy, and everything before it in the
//     stream, has run.
// A copy that faults while it runs (memory freed after it was queued) becomes the sticky
// cudaErrorIllegalAddress.
#include <string.h>

#include <memory>
#include <string>
#include <vector>

#include "memory_map.h"
#include "runtime.h"
#include "stream.h"

namespace nm_emu {
namespace rt {
namespace {

enum class Side { kDevice, kPinned, kPageable };

Side classify(const void* p) {
  AllocationInfo info;
  if (!find_allocation(p, &info)) return Side::kPageable;
  return info.kind == MemoryKind::kDevice ? Side::kDevice : Side::kPinned;
}

// The bytes a (pitch, width, height) region spans.
size_t span_of(size_t pitch, size_t width, size_t height) { return pitch * (height - 1) + width; }

cudaError_t check_side(const void* p, Side side, size_t span) {
  if (side == Side::kPageable) return cudaSuccess;
  std::string why;
  if (check_range(p, span, side == Side::kDevice ? MemoryKind::kDevice : MemoryKind::kPinned, &why)) {
    if (config().verbose) fprintf(stderr, "cuda emulation: copy: %s\n", why.c_str());
    return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

cudaError_t check_direction(enum cudaMemcpyKind kind, Side dst, Side src) {
  const bool dst_dev = dst == Side::kDevice, src_dev = src == Side::kDevice;
  switch (kind) {
    case cudaMemcpyHostToHost: return !dst_dev && !src_dev ? cudaSuccess : cudaErrorInvalidValue;
    case cudaMemcpyHostToDevice: return dst_dev && !src_dev ? cudaSuccess : cudaErrorInvalidValue;
    case cudaMemcpyDeviceToHost: return !dst_dev && src_dev ? cudaSuccess : cudaErrorInvalidValue;
    case cudaMemcpyDeviceToDevice: return dst_dev && src_dev ? cudaSuccess : cudaErrorInvalidValue;
    case cudaMemcpyDefault: return cudaSuccess;
  }
  return cudaErrorInvalidMemcpyDirection;
}

struct Copy2D {
  char* dst;
  size_t dpitch;
  const char* src;
  size_t spitch, width, height;
  static void run(void* self) {
    const Copy2D* c = static_cast<const Copy2D*>(self);
    for (size_t r = 0; r < c->height; r++) memcpy(c->dst + r * c->dpitch, c->src + r * c->spitch, c->width);
  }
};

void run_copy(const char* what, Copy2D copy) {
  std::string fault;
  if (!run_guarded(&Copy2D::run, &copy, &fault)) set_sticky_error(cudaErrorIllegalAddress, std::string(what) + ": " + fault);
}

cudaError_t copy_2d(const char* what, void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                    size_t height, enum cudaMemcpyKind kind, cudaStream_t handle, bool synchronous) {
  if (check_context() != cudaSuccess) return sticky_error();
  Stream* stream = resolve_stream(handle);
  if (stream == nullptr) return note(cudaErrorInvalidResourceHandle);
  if (width == 0 || height == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr) return note(cudaErrorInvalidValue);
  if (height > 1 && (dpitch < width || spitch < width)) return note(cudaErrorInvalidPitchValue);
  if (height > 1 && (dpitch > config().max_pitch || spitch > config().max_pitch)) {
    return note(cudaErrorInvalidPitchValue);
  }
  const Side dst_side = classify(dst), src_side = classify(src);
  cudaError_t err = check_direction(kind, dst_side, src_side);
  if (err == cudaSuccess) err = check_side(dst, dst_side, span_of(dpitch, width, height));
  if (err == cudaSuccess) err = check_side(src, src_side, span_of(spitch, width, height));
  if (err != cudaSuccess) return note(err);

  Copy2D copy{static_cast<char*>(dst), dpitch, static_cast<const char*>(src), spitch, width, height};
  std::shared_ptr<std::vector<char>> snapshot;
  if (src_side == Side::kPageable) {
    snapshot = std::make_shared<std::vector<char>>(width * height);
    for (size_t r = 0; r < height; r++) memcpy(snapshot->data() + r * width, copy.src + r * spitch, width);
    copy.src = snapshot->data();
    copy.spitch = width;
  }
  const uint64_t seq = stream->enqueue([what, copy, snapshot] { run_copy(what, copy); });
  if (synchronous || dst_side == Side::kPageable) stream->wait(seq);
  return check_context();
}

struct Fill {
  void* dst;
  int value;
  size_t bytes;
  static void run(void* self) {
    const Fill* f = static_cast<const Fill*>(self);
    memset(f->dst, f->value, f->bytes);
  }
};

cudaError_t fill(const char* what, void* dst, int value, size_t count, cudaStream_t handle, bool synchronous) {
  if (check_context() != cudaSuccess) return sticky_error();
  Stream* stream = resolve_stream(handle);
  if (stream == nullptr) return note(cudaErrorInvalidResourceHandle);
  if (count == 0) return cudaSuccess;
  std::string why;
  if (check_range(dst, count, MemoryKind::kDevice, &why)) {
    if (config().verbose) fprintf(stderr, "cuda emulation: %s: %s\n", what, why.c_str());
    return note(cudaErrorInvalidValue);
  }
  const Fill job{dst, value, count};
  const uint64_t seq = stream->enqueue([what, job] {
    std::string fault;
    Fill f = job;
    if (!run_guarded(&Fill::run, &f, &fault)) set_sticky_error(cudaErrorIllegalAddress, std::string(what) + ": " + fault);
  });
  if (synchronous) stream->wait(seq);
  return check_context();
}

}  // namespace
}  // namespace rt
}  // namespace nm_emu

using namespace nm_emu::rt;

extern "C" {

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, enum cudaMemcpyKind kind) {
  NM_EMU_RUNTIME_ENTRY("cudaMemcpy");
  return copy_2d("cudaMemcpy", dst, count, src, count, count, 1, kind, nullptr, true);
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, enum cudaMemcpyKind kind,
                            cudaStream_t stream) {
  NM_EMU_RUNTIME_ENTRY("cudaMemcpyAsync");
  return copy_2d("cudaMemcpyAsync", dst, count, src, count, count, 1, kind, stream, false);
}

cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                              size_t height, enum cudaMemcpyKind kind, cudaStream_t stream) {
  NM_EMU_RUNTIME_ENTRY("cudaMemcpy2DAsync");
  return copy_2d("cudaMemcpy2DAsync", dst, dpitch, src, spitch, width, height, kind, stream, false);
}

cudaError_t cudaMemset(void* devPtr, int value, size_t count) {
  NM_EMU_RUNTIME_ENTRY("cudaMemset");
  return fill("cudaMemset", devPtr, value, count, nullptr, true);
}

cudaError_t cudaMemsetAsync(void* devPtr, int value, size_t count, cudaStream_t stream) {
  NM_EMU_RUNTIME_ENTRY("cudaMemsetAsync");
  return fill("cudaMemsetAsync", devPtr, value, count, stream, false);
}

}  // extern "C"
