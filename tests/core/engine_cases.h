// Layers and inputs for the engine's kernel tests (test_engine.cpp, test_kernels.cpp): random
// layers at given weight / activation bits whose requantization spreads the outputs over the
// range, and a hand-checkable identity layer.
#pragma once

#include <ostream>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "sigmaquant/engine.h"

namespace sqtest {

// Every ISA tier the dispatch can be given, with its name for test parameters.
struct IsaCase {
  sq::Isa isa;
  const char* name;
};
inline const IsaCase kIsas[] = {{sq::Isa::Portable, "portable"},
                                {sq::Isa::Avx2, "avx2"},
                                {sq::Isa::AvxVnni, "avxvnni"},
                                {sq::Isa::Avx512Vnni, "avx512vnni"}};
inline void PrintTo(const IsaCase& c, std::ostream* os) { *os << c.name; }
// Whether this CPU runs the tier (Portable: always).
inline bool cpu_runs(const IsaCase& c) {
  return (c.isa != sq::Isa::Avx2 || sq::cpu_has_avx2()) &&
         (c.isa != sq::Isa::AvxVnni || sq::cpu_has_avxvnni()) &&
         (c.isa != sq::Isa::Avx512Vnni || sq::cpu_has_avx512vnni());
}

// A layer with identity requantization (M = 1), output zero point 0 and range 0..255.
inline sq::IntLayer identity_layer(std::vector<int32_t> w, std::vector<int32_t> bias,
                                   int32_t zp_in) {
  sq::IntLayer L;
  L.name = "hand";
  L.weights = std::move(w);
  L.bias = std::move(bias);
  L.in_zero_point = zp_in;
  L.out_node = 1;
  L.out_hi = 255;
  L.requant.assign(L.bias.size(), sq::quantize_multiplier(1.0));
  return L;
}

inline sq::IntLayer random_layer(const sq::ConvShape& s, int wbits, int abits,
                                 std::mt19937_64& rng) {
  sq::IntLayer L;
  L.name = "random";
  L.out_node = 1;
  const int32_t wlo = -(1 << (wbits - 1)), whi = (1 << (wbits - 1)) - 1;
  L.weights.resize(s.weights());
  for (auto& w : L.weights)
    w = wlo + static_cast<int32_t>(rng() % static_cast<uint64_t>(whi - wlo + 1));
  L.weights[0] = wlo;  // the extreme code, for 8 bits -128
  const int32_t amax = (1 << abits) - 1;
  L.in_zero_point = static_cast<int32_t>(rng() % (amax + 1));
  L.out_zero_point = static_cast<int32_t>(rng() % (amax / 2 + 1));
  L.out_lo = rng() % 2 ? L.out_zero_point : 0;                     // sometimes a fused ReLU
  L.out_hi = rng() % 3 ? amax : std::max(L.out_lo, amax * 3 / 4);  // sometimes a ReLU6 below qmax
  // Placeholders; spread_outputs sets them from real accumulators.
  L.bias.assign(s.out_c, 0);
  L.requant.assign(s.out_c, sq::quantize_multiplier(std::ldexp(1.0, -wbits - 2)));
  return L;
}

inline std::vector<uint8_t> random_input(const sq::ConvShape& s, int abits, std::mt19937_64& rng) {
  std::vector<uint8_t> x(s.in_size());
  for (auto& v : x) v = static_cast<uint8_t>(rng() % (1u << abits));
  return x;
}

// Sets each channel's bias and multiplier from the accumulators the layer actually produces on x,
// so that the outputs spread over the activation range (not all clamped): M · std(acc) is a
// quarter of the range, give or take a factor of 2, and the bias shifts by up to one std.
inline void spread_outputs(sq::IntLayer& L, const sq::ConvShape& s, const std::vector<uint8_t>& x,
                           int abits, std::mt19937_64& rng) {
  sq::IntLayer raw = L;
  raw.out_node = -1;
  raw.in_scale = 1;
  raw.weight_scales.assign(s.out_c, 1.0f);
  std::fill(raw.bias.begin(), raw.bias.end(), 0);
  std::vector<float> acc(s.out_size());
  sq::conv2d_f32_ref(s, raw, x.data(), acc.data());  // exact: |acc| < 2^24 here
  const int64_t pix = s.out_h() * s.out_w();
  for (int64_t c = 0; c < s.out_c; ++c) {
    double sum = 0, sum2 = 0;
    for (int64_t p = 0; p < pix; ++p)
      sum += acc[c * pix + p], sum2 += double(acc[c * pix + p]) * acc[c * pix + p];
    const double mean = sum / pix, sd = std::sqrt(std::max(1.0, sum2 / pix - mean * mean));
    const double u = (rng() % 1001) / 1000.0;  // [0, 1]
    L.bias[c] = static_cast<int32_t>(std::llround(-mean + (2 * u - 1) * sd));
    L.requant[c] = sq::quantize_multiplier(std::ldexp(1.0, abits - 2) / sd * std::exp2(2 * u - 1));
  }
  if (s.out_c > 4) {  // one channel near the int32 edge, one pruned
    L.bias[s.out_c - 1] = INT32_MAX - static_cast<int32_t>(rng() % 1000);
    L.requant[1] = sq::Requant{};
  }
}

}  // namespace sqtest
