// run_grid: the blocks of a launch over the calling thread and a small pool of helper threads,
// each with its own BlockScheduler; faults in kernel code become a failed launch (see
// kernel_launch.h). Blocks are independent in CUDA, so running them in parallel and in any
// order must not change what a correct kernel computes.
#undef _FORTIFY_SOURCE  // siglongjmp leaves a signal handler for a frame on another stack
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "block_scheduler.h"
#include "kernel_launch.h"

namespace nm_emu {
namespace {

// ---- faults --------------------------------------------------------------------------------

__thread sigjmp_buf* g_recover __attribute__((tls_model("initial-exec"))) = nullptr;
__thread void* g_fault_address __attribute__((tls_model("initial-exec"))) = nullptr;
__thread int g_fault_signal __attribute__((tls_model("initial-exec"))) = 0;

struct sigaction g_previous_segv, g_previous_bus;
std::string (*g_describe)(const void*) = nullptr;

void forward(int sig, siginfo_t* info, void* context) {
  const struct sigaction& prev = sig == SIGSEGV ? g_previous_segv : g_previous_bus;
  if (prev.sa_flags & SA_SIGINFO) {
    if (prev.sa_sigaction != nullptr) {
      prev.sa_sigaction(sig, info, context);
      return;
    }
  } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
    prev.sa_handler(sig);
    return;
  }
  // No handler before ours: die of the signal as the process would have.
  signal(sig, SIG_DFL);
  raise(sig);
}

// A fault on a thread that is running kernel blocks ends that launch; any other fault is not
// ours (Node's own handler, or a real crash) and goes to the handler installed before.
void on_fault(int sig, siginfo_t* info, void* context) {
  if (g_recover == nullptr) {
    forward(sig, info, context);
    return;
  }
  g_fault_address = info->si_addr;
  g_fault_signal = sig;
  siglongjmp(*g_recover, 1);
}

void install_fault_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    // NODEFER: the jump out never returns through the handler, so the signal must not stay
    // blocked; ONSTACK: a fiber stack overflow needs another stack to run the handler on.
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_previous_segv);
    sigaction(SIGBUS, &sa, &g_previous_bus);
  });
}

// Every thread that runs blocks gets an alternate signal stack (kept for the thread's life).
void ensure_signal_stack() {
  static thread_local bool done = false;
  if (done) return;
  done = true;
  const size_t bytes = 256 * 1024;
  void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return;
  stack_t ss;
  memset(&ss, 0, sizeof ss);
  ss.ss_sp = mem;
  ss.ss_size = bytes;
  sigaltstack(&ss, nullptr);
}

// ---- one grid, shared by the threads that run its blocks -------------------------------------

struct Grid {
  const KernelLaunch* launch = nullptr;
  uint64_t total = 0, chunk = 1;
  std::atomic<uint64_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  LaunchOutcome outcome;
  int active_helpers = 0;  // guarded by the pool's mutex

  void fail(LaunchOutcome::Kind kind, const std::string& message) {
    std::lock_guard<std::mutex> lock(mu);
    if (outcome.kind == LaunchOutcome::kOk) {
      outcome.kind = kind;
      outcome.message = message;
    }
    failed = true;
  }
};

std::string where(const KernelLaunch& launch) {
  char buf[512];
  snprintf(buf, sizeof buf, "kernel %s, block (%u,%u,%u) of (%u,%u,%u), thread (%u,%u,%u) of (%u,%u,%u)",
           launch.name, blockIdx.x, blockIdx.y, blockIdx.z, launch.grid.x, launch.grid.y,
           launch.grid.z, threadIdx.x, threadIdx.y, threadIdx.z, launch.block.x, launch.block.y,
           launch.block.z);
  return buf;
}

BlockScheduler& thread_scheduler() {
  static thread_local BlockScheduler* scheduler = new BlockScheduler();  // lives with the thread
  return *scheduler;
}

void run_share(Grid& grid) {
  ensure_signal_stack();
  BlockScheduler& scheduler = thread_scheduler();
  const KernelLaunch& launch = *grid.launch;
  sigjmp_buf env;
  if (sigsetjmp(env, 0) != 0) {
    g_recover = nullptr;
    const void* addr = g_fault_address;
    const bool overflow = scheduler.owns_guard_page(addr);
    scheduler.abandon();
    char what[160];
    if (overflow) {
      snprintf(what, sizeof what, "fiber stack overflow (the emulation gives each CUDA thread %zu KiB)",
               kFiberStackBytes >> 10);
    } else {
      snprintf(what, sizeof what, "%s at address %p", g_fault_signal == SIGBUS ? "bus error" : "illegal memory access", addr);
    }
    std::string message = where(launch) + ": " + what;
    if (!overflow && g_describe != nullptr) message += " (" + g_describe(addr) + ")";
    grid.fail(overflow ? LaunchOutcome::kStackOverflow : LaunchOutcome::kFault, message);
    return;
  }
  g_recover = &env;
  const dim3 g = launch.grid;
  const uint64_t plane = (uint64_t)g.x * g.y;
  std::string why;
  while (!grid.failed.load(std::memory_order_relaxed)) {
    const uint64_t first = grid.next.fetch_add(grid.chunk, std::memory_order_relaxed);
    if (first >= grid.total) break;
    const uint64_t end = first + grid.chunk < grid.total ? first + grid.chunk : grid.total;
    for (uint64_t b = first; b < end; b++) {
      const dim3 idx((unsigned)(b % g.x), (unsigned)((b % plane) / g.x), (unsigned)(b / plane));
      if (launch.host_items) {
        blockIdx = uint3{idx.x, idx.y, idx.z};
        threadIdx = uint3{0, 0, 0};
        blockDim = uint3{1, 1, 1};
        gridDim = uint3{g.x, g.y, g.z};
        launch.invoke(launch.args);
        continue;
      }
      if (!scheduler.run_block(launch, idx, &why)) {
        const bool deadlock = why.compare(0, 7, "barrier") == 0;
        grid.fail(deadlock ? LaunchOutcome::kDeadlock : LaunchOutcome::kDeviceError,
                  where(launch) + ": " + why);
        break;
      }
    }
  }
  g_recover = nullptr;
}

// ---- the helper pool -------------------------------------------------------------------------

class Pool {
 public:
  static Pool& get() {
    static Pool* pool = new Pool();  // never destroyed: helpers may outlive static destructors
    return *pool;
  }

  void run(Grid& grid) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock() || helpers_ == 0 || grid.total < 2) {
      run_share(grid);  // another stream's grid has the helpers, or nothing to share
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      grid_ = &grid;
      sequence_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    run_share(grid);
    std::unique_lock<std::mutex> lock(mu_);
    grid_ = nullptr;
    done_.wait(lock, [&] { return grid.active_helpers == 0; });
  }

 private:
  Pool() : helpers_(launcher_threads() - 1) {
    for (unsigned i = 0; i < helpers_; i++) std::thread([this] { helper(); }).detach();
  }

  void helper() {
    uint64_t seen = 0;
    for (;;) {
      // Launches come in bursts: spin a little before sleeping, so back-to-back kernels do not
      // each pay a wake-up.
      for (int i = 0; i < 2000 && sequence_.load(std::memory_order_acquire) == seen; i++) {
        __builtin_ia32_pause();
      }
      Grid* grid = nullptr;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return sequence_.load(std::memory_order_relaxed) != seen; });
        seen = sequence_.load(std::memory_order_relaxed);
        grid = grid_;
        if (grid != nullptr) grid->active_helpers++;
      }
      if (grid == nullptr) continue;
      run_share(*grid);
      std::lock_guard<std::mutex> lock(mu_);
      grid->active_helpers--;
      if (grid->active_helpers == 0) done_.notify_all();
    }
  }

  const unsigned helpers_;
  std::mutex busy_;  // one grid at a time has the helpers
  std::mutex mu_;
  std::condition_variable cv_, done_;
  Grid* grid_ = nullptr;
  std::atomic<uint64_t> sequence_{0};
};

}  // namespace

unsigned launcher_threads() {
  static const unsigned threads = [] {
    const char* env = getenv("NM_CUDA_EMU_THREADS");
    long n = env != nullptr ? strtol(env, nullptr, 10) : 0;
    if (n <= 0) n = (long)std::thread::hardware_concurrency();
    if (n <= 0) n = 1;
    return (unsigned)(n > 64 ? 64 : n);
  }();
  return threads;
}

void set_fault_describer(std::string (*describe)(const void* addr)) { g_describe = describe; }

const char* check_launch_config(dim3 grid, dim3 block) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return "a grid dimension is 0";
  if (grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535) {
    return "the grid exceeds (2^31-1, 65535, 65535)";
  }
  if (block.x == 0 || block.y == 0 || block.z == 0) return "a block dimension is 0";
  if (block.x > 1024 || block.y > 1024 || block.z > 64) return "the block exceeds (1024, 1024, 64)";
  if ((uint64_t)block.x * block.y * block.z > 1024) return "the block has more than 1024 threads";
  return nullptr;
}

bool run_guarded(void (*fn)(void*), void* arg, std::string* fault) {
  install_fault_handler();
  ensure_signal_stack();
  sigjmp_buf env;
  if (sigsetjmp(env, 0) != 0) {
    g_recover = nullptr;
    const void* addr = g_fault_address;
    char what[96];
    snprintf(what, sizeof what, "illegal memory access at address %p", addr);
    *fault = what;
    if (g_describe != nullptr) *fault += " (" + g_describe(addr) + ")";
    return false;
  }
  g_recover = &env;
  fn(arg);
  g_recover = nullptr;
  return true;
}

LaunchOutcome run_grid(const KernelLaunch& launch) {
  install_fault_handler();
  Grid grid;
  grid.launch = &launch;
  grid.total = (uint64_t)launch.grid.x * launch.grid.y * launch.grid.z;
  const uint64_t per = grid.total / ((uint64_t)launcher_threads() * 8);
  grid.chunk = per < 1 ? 1 : per;
  Pool::get().run(grid);
  return grid.outcome;
}

}  // namespace nm_emu
