// What the two module loaders (device_registry.cc: the CUDA module; comm_registry.cc: the Gloo
// module) share: picking the first candidate path that is a file, and listing the candidates in
// a message.
#ifndef NM_NAPI_MODULE_FILES_H
#define NM_NAPI_MODULE_FILES_H

#include <sys/stat.h>

#include <string>
#include <vector>

namespace nm::napi {

// The first of `candidates` that is a regular file, or "" when none is.
inline std::string first_existing_file(const std::vector<std::string>& candidates) {
  for (const auto& candidate : candidates) {
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) return candidate;
  }
  return "";
}

inline std::string join(const std::vector<std::string>& items, const char* separator) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : separator) + item;
  return out;
}

}  // namespace nm::napi

#endif  // NM_NAPI_MODULE_FILES_H
