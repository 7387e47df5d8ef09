// What `NM_CUDA_LAUNCH(grid, block, smem, stream, kernel)(args...)` (kernel_compat.cuh) becomes
// in the emulated module: nm_emu::Launch<&kernel>(grid, block, smem, stream)(args...), which
// converts the arguments to the kernel's parameter types, checks the configuration (an invalid
// one is left for cudaGetLastError, as with <<<>>>) and enqueues the grid on the stream. Every
// kernel instance with a launch site registers itself by name ("file.cu: kernel<args>") when the
// module loads, so the coverage count (runtime.h) knows the kernels that never ran.
#ifndef NM_EMU_KERNEL_ENQUEUE_H
#define NM_EMU_KERNEL_ENQUEUE_H

#include <stddef.h>

#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../launcher/kernel_launch.h"

typedef struct CUstream_st* cudaStream_t;

namespace nm_emu {

// A launch waiting in a stream: the launcher's description plus the storage of its arguments.
struct QueuedKernel {
  KernelLaunch launch;
  int kernel_id = -1;
  const void* func = nullptr;  // the kernel's address (cudaFuncSetAttribute's key)
  virtual ~QueuedKernel() = default;
};

template <typename Tuple>
struct QueuedKernelWith final : QueuedKernel {
  Tuple args;
  template <typename... Args>
  explicit QueuedKernelWith(Args&&... a) : args(std::forward<Args>(a)...) {}
};

// Implemented in runtime/kernel_enqueue.cc.
int register_kernel(const char* pretty_function, const char* launching_file);
const char* kernel_name(int kernel_id);
void enqueue_kernel(cudaStream_t stream, std::unique_ptr<QueuedKernel> kernel);

template <auto Kernel>
const char* kernel_pretty_function() {
  return __PRETTY_FUNCTION__;  // "... [with auto Kernel = ns::name<args>]"
}

// __BASE_FILE__ is the source file being compiled (this header is part of every one), so two
// kernels of the same name in different files (each in its file's anonymous namespace) count apart.
template <auto Kernel>
struct KernelId {
  static inline const int id = register_kernel(kernel_pretty_function<Kernel>(), __BASE_FILE__);
};

template <typename Fn>
struct KernelParams;
template <typename... Params>
struct KernelParams<void (*)(Params...)> {
  typedef std::tuple<std::decay_t<Params>...> Tuple;
};

template <auto Kernel, typename Tuple>
void invoke_kernel(const void* args) {
  std::apply(Kernel, *static_cast<const Tuple*>(args));
}

template <auto Kernel>
class Launch {
 public:
  Launch(dim3 grid, dim3 block, size_t smem_bytes = 0, cudaStream_t stream = nullptr)
      : grid_(grid), block_(block), smem_(smem_bytes), stream_(stream) {}

  template <typename... Args>
  void operator()(Args&&... args) const {
    typedef typename KernelParams<decltype(Kernel)>::Tuple Tuple;
    static_assert(sizeof...(Args) == std::tuple_size<Tuple>::value,
                  "a kernel launch needs exactly one argument per kernel parameter");
    auto queued = std::make_unique<QueuedKernelWith<Tuple>>(std::forward<Args>(args)...);
    queued->kernel_id = KernelId<Kernel>::id;
    queued->func = reinterpret_cast<const void*>(Kernel);
    queued->launch.name = kernel_name(queued->kernel_id);
    queued->launch.invoke = &invoke_kernel<Kernel, Tuple>;
    queued->launch.args = &queued->args;
    queued->launch.grid = grid_;
    queued->launch.block = block_;
    queued->launch.dynamic_smem = smem_;
    enqueue_kernel(stream_, std::move(queued));
  }

 private:
  dim3 grid_, block_;
  size_t smem_;
  cudaStream_t stream_;
};

}  // namespace nm_emu

#endif  // NM_EMU_KERNEL_ENQUEUE_H
