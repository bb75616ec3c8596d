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
#include <map>
#include <string>
#include <vector>

#include "sigmaquant/qmodel.h"

namespace sq {

struct Requant {
  int32_t multiplier = 0;  // in [2^30, 2^31), or 0 for M = 0
  int shift = 0;           // right shift; may be negative (left shift) when M >= 1
};
Requant quantize_multiplier(double m);
// requantize(a, r) = (a · multiplier + 2^(shift−1)) >> shift, saturated to int32.
// The accumulator's unit of an output channel: s_x · s_w[c], or s_x for a pruned channel (s_w = 0;
// its bias keeps that unit). A channel's requantization is quantize_multiplier(unit / s_out):
// derived, so model files need not store it.
double accumulator_unit(float in_scale, float weight_scale);
int32_t requantize(int64_t acc, const Requant& r);  // saturates to int32

// A weight layer's constants for output channel c from its float bias b and accumulator unit:
// bias = round_half_even(b / unit) (saturated to int32), bias_float = bias · unit (the bias the
// quantized model adds: the simulation rounds it the same way, QuantSim::bias, and so do ONNX's
// QLinearConv, TFLite and CMSIS-NN, so every runtime computes the same integers), and, for a
// quantized output (out_scale > 0), requant = quantize_multiplier(unit / out_scale).
// integerize() and model-file loaders both call this.
struct ChannelBias {
  int32_t bias = 0;
  float bias_float = 0;
  Requant requant;
};
ChannelBias channel_bias(float b, double unit, float out_scale);

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
  std::vector<float> bias_float;  // bias · unit: the rounded float bias (0 without one), per channel
  int out_node = -1;          // the quantization point it writes (-1: float output)
  float out_scale = 0;
  int32_t out_zero_point = 0, out_lo = 0, out_hi = 0;
  std::vector<Requant> requant;  // per output channel

  // The quantized output of channel c for an accumulator value (out_node >= 0).
  int32_t output(int64_t c, int64_t acc) const;
};

struct IntModel {
  std::vector<IntLayer> layers;  // in graph order
  // Every activation quantization point (qmodel.h's activation_quant_points), by node index, with
  // its bits, scale and zero point: what the graph executor needs beyond the weight layers (the
  // add operands and outputs, the input, a point reached through pooling).
  std::map<int, ActQuant> points;
};

IntModel integerize(const QuantModel& qm);

}  // namespace sq
