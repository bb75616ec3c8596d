// Integerization (torch-free): from a QuantModel to the integer tensors and fixed-point constants
// an integer-only engine runs. Arithmetic (docs/quantization.md, "Integer arithmetic"):
//
//   acc[c]  = bias_q[c] + Σ w_q · (x_q − zp_x)                 (int32 accumulate, int64-safe)
//   y_q[c]  = clamp(requantize(acc[c], M[c]) + zp_out, lo, hi)
//   M[c]    = s_x · s_w[c] / s_out ≈ multiplier[c] · 2^(−shift[c]),  multiplier in [2^30, 2^31)
//   bias_q  = round_half_even(b[c] / (s_x · s_w[c]))             (saturated to int32)
//   requantize(a, M) = (a · multiplier + 2^(shift−1)) >> shift   (round half up; arithmetic shift)
//
// The layer's output is quantized at the next quantization point downstream through ReLU, ReLU6,
// max-pooling and flatten (they commute with a monotone quantizer), with the activation fused into
// [lo, hi]. A layer with no such point (the logits) keeps a float output: acc · s_x · s_w[c].
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sigmaquant/qmodel.h"

namespace sq {

struct Requant {
  int32_t multiplier = 0;  // in [2^30, 2^31), or 0 for M = 0
  int shift = 0;           // right shift; may be negative (left shift) when M >= 1
};
Requant quantize_multiplier(double m);
int32_t requantize(int64_t acc, const Requant& r);  // saturates to int32

struct IntLayer {
  std::string name;            // the weight layer
  int node = -1;               // its index in the QuantModel's graph
  std::vector<int32_t> weights;  // row-major like the float weights, |w| <= 2^(bits-1) − 1
  std::vector<int> channel_bits;
  std::vector<float> weight_scales;  // per output channel (pruned: 0)
  int in_node = -1;  // the quantization point it reads
  float in_scale = 1;
  int32_t in_zero_point = 0;
  std::vector<int32_t> bias;  // per output channel, in units of s_x · s_w[c]
  int out_node = -1;          // the quantization point it writes (-1: float output)
  float out_scale = 0;
  int32_t out_zero_point = 0, out_lo = 0, out_hi = 0;
  std::vector<Requant> requant;  // per output channel

  // The quantized output of channel c for an accumulator value (out_node >= 0).
  int32_t output(int64_t c, int64_t acc) const;
};

struct IntModel {
  std::vector<IntLayer> layers;  // in graph order
};

IntModel integerize(const QuantModel& qm);

}  // namespace sq
