// Portable random sampling: the standard library's distributions differ between implementations,
// so seeded results would not reproduce across compilers. Everything random in the project draws
// from std::mt19937_64 through these.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>

namespace sq {

// Uniform in (0, 1), 53 bits.
inline double uniform01(std::mt19937_64& rng) {
  return (static_cast<double>(rng() >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

// Uniform index in [0, n) (n >= 1; the modulo bias is below 2^-40 for any n used here).
inline uint64_t uniform_index(std::mt19937_64& rng, uint64_t n) { return rng() % n; }

// Standard normal samples (Box–Muller).
struct Normal {
  std::mt19937_64 rng;
  explicit Normal(uint64_t seed) : rng(seed) {}
  double uniform() { return uniform01(rng); }
  double operator()() {
    return std::sqrt(-2.0 * std::log(uniform())) * std::cos(6.283185307179586 * uniform());
  }
};

}  // namespace sq
