#include "cuda_libraries.h"

#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <set>

namespace nm::napi {
namespace {

bool is_dir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

std::vector<std::string> split_colons(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(':', start);
    if (end == std::string::npos) end = list.size();
    if (end > start) out.push_back(list.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// Sorted names of the entries of dir whose name starts with prefix ("" for all); none on error.
// (POSIX dirent rather than <filesystem>: GCC 8's libstdc++, still the compiler of some
// distributions that need the source build, wants an extra -lstdc++fs for the latter.)
std::vector<std::string> entries(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> names;
  DIR* handle = ::opendir(dir.c_str());
  if (handle == nullptr) return names;
  while (const dirent* entry = ::readdir(handle)) {
    std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    if (name.compare(0, prefix.size(), prefix) == 0) names.push_back(name);
  }
  ::closedir(handle);
  std::sort(names.begin(), names.end());
  return names;
}

// PREFIX/lib/python3.*/{site,dist}-packages (and PREFIX/lib/python3/dist-packages, Debian's).
void add_site_dirs_of_prefix(const std::string& prefix, std::vector<std::string>* sites) {
  if (prefix.empty()) return;
  const std::string lib = prefix + "/lib";
  for (const std::string& python : entries(lib, "python3")) {
    sites->push_back(lib + "/" + python + "/site-packages");
    sites->push_back(lib + "/" + python + "/dist-packages");
  }
}

// SITE/nvidia/*/lib: one folder per wheel family (cu13/lib holds cudart, cuBLAS, cuSOLVER...;
// nccl/lib holds NCCL).
void add_wheel_lib_dirs(const std::string& site, std::vector<std::string>* dirs) {
  const std::string nvidia = site + "/nvidia";
  if (!is_dir(nvidia)) return;
  for (const std::string& family : entries(nvidia, "")) dirs->push_back(nvidia + "/" + family + "/lib");
}

}  // namespace

std::vector<std::string> cuda_library_search_dirs() {
  std::vector<std::string> candidates = split_colons(env("NM_CUDA_LIBRARY_PATH"));

  std::vector<std::string> sites;
  add_site_dirs_of_prefix(env("VIRTUAL_ENV"), &sites);
  add_site_dirs_of_prefix(env("CONDA_PREFIX"), &sites);
  for (const std::string& dir : split_colons(env("PYTHONPATH"))) sites.push_back(dir);
  const std::string home = env("HOME");
  if (!home.empty()) add_site_dirs_of_prefix(home + "/.local", &sites);
  std::string pyenv = env("PYENV_ROOT");
  if (pyenv.empty() && !home.empty()) pyenv = home + "/.pyenv";
  if (!pyenv.empty()) {
    for (const std::string& version : entries(pyenv + "/versions", "")) {
      add_site_dirs_of_prefix(pyenv + "/versions/" + version, &sites);
    }
  }
  for (const char* prefix : {"/usr/local", "/usr", "/opt/conda"}) add_site_dirs_of_prefix(prefix, &sites);
  sites.push_back("/usr/lib/python3/dist-packages");
  for (const std::string& site : sites) add_wheel_lib_dirs(site, &candidates);

  for (const char* dir : {"/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"}) {
    candidates.push_back(dir);
  }
  std::vector<std::string> versioned = entries("/usr/local", "cuda-");
  std::reverse(versioned.begin(), versioned.end());  // newest first
  for (const std::string& name : versioned) candidates.push_back("/usr/local/" + name + "/lib64");

  std::vector<std::string> dirs;
  std::set<std::string> seen;
  for (const std::string& dir : candidates) {
    if (!is_dir(dir)) continue;
    char resolved[PATH_MAX];
    const std::string key = ::realpath(dir.c_str(), resolved) ? resolved : dir;
    if (seen.insert(key).second) dirs.push_back(dir);
  }
  return dirs;
}

std::string missing_library_in(const std::string& dlerror_text) {
  static const std::string kMarker = ": cannot open shared object file";
  size_t at = dlerror_text.find(kMarker);
  if (at == std::string::npos || at == 0) return "";
  return dlerror_text.substr(0, at);
}

ModuleOpenResult open_cuda_module(const std::string& path) {
  ModuleOpenResult result;
  std::set<std::string> attempted;   // library names already looked up
  std::vector<std::string> pending{path};  // files to open; the top one first
  // Each step opens a file or finds one missing library, so this bounds the work.
  for (int step = 0; step < 64 && !pending.empty(); ++step) {
    const std::string target = pending.back();
    ::dlerror();
    void* handle = ::dlopen(target.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle != nullptr) {
      pending.pop_back();
      if (pending.empty()) {
        result.handle = handle;
        result.error.clear();
        result.missing_library.clear();
        return result;
      }
      // A preloaded library stays loaded for the life of the process (its handle is dropped on
      // purpose): the module opened next refers to it by soname.
      result.preloaded.push_back(target);
      continue;
    }
    const char* why = ::dlerror();
    result.error = why ? why : "unknown dlopen error";
    const std::string missing = missing_library_in(result.error);
    // A path with a slash is a file that exists but cannot be opened (permissions), or the module
    // itself: nothing to search for. A name already looked up was not found or did not help.
    if (missing.empty() || missing.find('/') != std::string::npos ||
        !attempted.insert(missing).second) {
      result.missing_library = missing.find('/') == std::string::npos ? missing : "";
      break;
    }
    result.missing_library = missing;
    if (!result.searched) {
      result.search_dirs = cuda_library_search_dirs();
      result.searched = true;
    }
    std::string found;
    for (const std::string& dir : result.search_dirs) {
      if (is_file(dir + "/" + missing)) {
        found = dir + "/" + missing;
        break;
      }
    }
    if (found.empty()) break;
    pending.push_back(found);
  }
  return result;
}

}  // namespace nm::napi
