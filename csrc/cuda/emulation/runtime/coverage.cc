// The coverage count: how often each kernel instance ran and each entry point (CUDA runtime,
// cuBLAS, cuSOLVER, cub, NCCL stand-ins) was called in this process. With
// NM_CUDA_EMU_COVERAGE_DIR set, the counts are written at exit to
// $NM_CUDA_EMU_COVERAGE_DIR/coverage-<pid>.json; scripts/cuda-emu-coverage.js merges the files
// of a test run and lists what never ran. Also the failure injection of NM_CUDA_EMU_FAIL (calls
// and kernels, runtime.h).
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "runtime.h"

namespace nm_emu {
namespace {

struct Counts {
  std::mutex mu;
  std::deque<std::string> kernel_names;  // a deque: c_str() pointers stay valid
  std::vector<std::atomic<uint64_t>*> kernel_runs;
  std::map<std::string, std::atomic<uint64_t>*> entries;
};

void dump_at_exit();

Counts& counts() {
  // Never destroyed: the counts are written at exit, after static destructors may have run.
  static Counts* c = [] {
    atexit(dump_at_exit);
    return new Counts();
  }();
  return *c;
}

void write_json_string(FILE* f, const std::string& s) {
  fputc('"', f);
  for (char ch : s) {
    if (ch == '"' || ch == '\\') fputc('\\', f);
    fputc(ch, f);
  }
  fputc('"', f);
}

void dump_at_exit() {
  const char* dir = getenv("NM_CUDA_EMU_COVERAGE_DIR");
  if (dir == nullptr || dir[0] == '\0') return;
  Counts& c = counts();
  std::lock_guard<std::mutex> lock(c.mu);
  char path[4096];
  snprintf(path, sizeof path, "%s/coverage-%d.json", dir, (int)getpid());
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE* f = fopen(tmp, "w");
  if (f == nullptr) {
    fprintf(stderr, "cuda emulation: cannot write the coverage counts to %s: %s\n", tmp, strerror(errno));
    return;
  }
  fprintf(f, "{\"kernels\":{");
  for (size_t i = 0; i < c.kernel_names.size(); i++) {
    fprintf(f, "%s", i ? "," : "");
    write_json_string(f, c.kernel_names[i]);
    fprintf(f, ":%llu", (unsigned long long)c.kernel_runs[i]->load());
  }
  fprintf(f, "},\"calls\":{");
  bool first = true;
  for (const auto& e : c.entries) {
    fprintf(f, "%s", first ? "" : ",");
    first = false;
    write_json_string(f, e.first);
    fprintf(f, ":%llu", (unsigned long long)e.second->load());
  }
  fprintf(f, "}}\n");
  fclose(f);
  rename(tmp, path);
}

struct Injection {
  std::string name;
  int status = 0;
  uint64_t nth = 1;  // 0 = every call
};

std::vector<Injection> parse_injections() {
  std::vector<Injection> out;
  const char* spec = getenv("NM_CUDA_EMU_FAIL");
  if (spec == nullptr) return out;
  std::string s = spec;
  size_t start = 0;
  while (start < s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    const std::string item = s.substr(start, end - start);
    start = end + 1;
    const size_t eq = item.find('=');
    if (eq == std::string::npos) continue;
    Injection inj;
    inj.name = item.substr(0, eq);
    std::string rest = item.substr(eq + 1);
    const size_t at = rest.find('@');
    if (at != std::string::npos) {
      const std::string n = rest.substr(at + 1);
      inj.nth = n == "*" ? 0 : strtoull(n.c_str(), nullptr, 10);
      rest = rest.substr(0, at);
    }
    inj.status = (int)strtol(rest.c_str(), nullptr, 10);
    if (inj.status != 0) out.push_back(inj);
  }
  return out;
}

const std::vector<Injection>& injections() {
  static const std::vector<Injection> list = parse_injections();
  return list;
}

}  // namespace

EntryPoint::EntryPoint(const char* name) : name_(name) {
  Counts& c = counts();
  std::lock_guard<std::mutex> lock(c.mu);
  std::atomic<uint64_t>*& slot = c.entries[name];
  if (slot == nullptr) slot = new std::atomic<uint64_t>(0);
  calls_ = slot;
}

int EntryPoint::call() {
  const uint64_t n = calls_->fetch_add(1, std::memory_order_relaxed) + 1;
  for (const Injection& inj : injections()) {
    if (inj.name == name_ && (inj.nth == 0 || inj.nth == n)) return inj.status;
  }
  return 0;
}

namespace coverage {

int register_kernel(const std::string& name) {
  Counts& c = counts();
  std::lock_guard<std::mutex> lock(c.mu);
  for (size_t i = 0; i < c.kernel_names.size(); i++) {
    if (c.kernel_names[i] == name) return (int)i;
  }
  c.kernel_names.push_back(name);
  c.kernel_runs.push_back(new std::atomic<uint64_t>(0));
  return (int)c.kernel_names.size() - 1;
}

const char* kernel_name(int id) {
  Counts& c = counts();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.kernel_names[(size_t)id].c_str();  // stable: names are never removed
}

int count_kernel(int id) {
  Counts& c = counts();
  std::atomic<uint64_t>* runs;
  const char* name;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    runs = c.kernel_runs[(size_t)id];
    name = c.kernel_names[(size_t)id].c_str();
  }
  const uint64_t n = runs->fetch_add(1, std::memory_order_relaxed) + 1;
  if (injections().empty()) return 0;
  const char* bare = strstr(name, ": ");  // "file.cu: kernel<args>" -> "kernel<args>"
  bare = bare != nullptr ? bare + 2 : name;
  for (const Injection& inj : injections()) {
    if (inj.name == bare && (inj.nth == 0 || inj.nth == n)) return inj.status;
  }
  return 0;
}

}  // namespace coverage
}  // namespace nm_emu
