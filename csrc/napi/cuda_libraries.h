// Opening newton_muon_cuda.so when the dynamic linker cannot find the CUDA libraries it links
// (libcudart.so.13, libcublas.so.13, libcusolver.so.12, libnccl.so.2, ...) on its own.
//
// The prebuilt module carries no RPATH into a build machine's toolkit. A plain dlopen resolves
// the libraries the usual way (LD_LIBRARY_PATH, the module's $ORIGIN, ld.so's cache: a system
// toolkit). Only when that fails on a missing library are these folders searched, in order:
//   1. NM_CUDA_LIBRARY_PATH (colon-separated folders),
//   2. the lib/ folders of NVIDIA's pip wheels (site-packages/nvidia/*/lib, as PyTorch installs
//      them) in the active virtualenv or conda env, PYTHONPATH, the user's and the system's
//      Python installs,
//   3. toolkits not registered with ld.so (/usr/local/cuda*/lib64 and targets/x86_64-linux/lib).
// The missing library is loaded from the first folder that has it, by full path (its own missing
// dependencies the same way), and the module is opened again: glibc matches a library already
// loaded by its soname, so the module's DT_NEEDED entries resolve to the preloaded copies.
#ifndef NM_NAPI_CUDA_LIBRARIES_H
#define NM_NAPI_CUDA_LIBRARIES_H

#include <string>
#include <vector>

namespace nm::napi {

// The existing folders of the search above, in order, without duplicates.
std::vector<std::string> cuda_library_search_dirs();

// The library a dlerror() text says is missing ("libcublas.so.13: cannot open shared object
// file: No such file or directory" -> "libcublas.so.13"), or "" when the text is about something
// else (a file that is not a library, an undefined symbol, ...).
std::string missing_library_in(const std::string& dlerror_text);

struct ModuleOpenResult {
  void* handle = nullptr;              // null when the module could not be opened
  std::string error;                   // the last dlerror() text when handle is null
  std::string missing_library;         // the library still missing at the end ("" if none)
  bool searched = false;               // whether the folder search ran
  std::vector<std::string> search_dirs;  // the folders searched (when searched)
  std::vector<std::string> preloaded;  // full paths of libraries loaded from those folders
};

// dlopen(path, RTLD_NOW | RTLD_LOCAL), falling back to the search above on a missing library.
ModuleOpenResult open_cuda_module(const std::string& path);

}  // namespace nm::napi

#endif  // NM_NAPI_CUDA_LIBRARIES_H
