// The emulation harnesses' random inputs: splitmix64 (a seed gives the same inputs on every
// machine), uniform in (0, 1), symmetric uniform, and Box-Muller normals.
#ifndef NM_CUDA_EMULATION_HARNESS_RNG_H
#define NM_CUDA_EMULATION_HARNESS_RNG_H

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace nm_emu {

struct Rng {
  uint64_t state;
  double uniform() {  // (0, 1)
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
  }
  float normal(double std) {
    return (float)(std * std::sqrt(-2.0 * std::log(uniform())) * std::cos(6.283185307179586 * uniform()));
  }
  float sym(double a) { return (float)(a * (2.0 * uniform() - 1.0)); }  // (-a, a)
  std::vector<float> vec(size_t n, double a) {
    std::vector<float> v(n);
    for (float& x : v) x = sym(a);
    return v;
  }
};

}  // namespace nm_emu

#endif  // NM_CUDA_EMULATION_HARNESS_RNG_H
