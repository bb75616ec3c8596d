// Quantizer math (torch-free).
//
// For now: the symmetric weight quantizer the data-aware cost models need. A float weight tensor
// [out, ...] becomes integers q and scales s with  w ≈ s[c] · q  (c = output channel, or one s for
// the whole tensor):
//   b >= 2 bits: qmax = 2^(b-1) - 1, s = max|w| / qmax, q = clamp(round(w / s), -qmax, qmax)
//                (round half to even, like torch.round; the range is symmetric, so -2^(b-1) is
//                never used)
//   b == 1:      q = sign(w) in {-1, +1} (0 maps to +1), s = mean|w|  (XNOR-Net style binary)
//   b == 0:      the channel is pruned: q = 0, s = 0
// An all-zero channel gets s = 1 and q = 0, so dequantization never divides by zero.
//
//   sq::QuantizedTensor q = sq::quantize_weights_symmetric(node.params.at("weight"), 4, true);
//   float w0 = q.scales[0] * q.values[0];
#pragma once

#include <cstdint>
#include <vector>

#include "sigmaquant/tensor.h"

namespace sq {

struct QuantizedTensor {
  Shape shape;                    // the float tensor's shape, [out, ...]
  std::vector<int32_t> values;    // row-major like the float tensor
  std::vector<float> scales;      // one per output channel (per-channel) or a single one
  std::vector<int> channel_bits;  // the bitwidth each output channel was quantized to
  bool per_channel = true;

  float scale_of(int64_t channel) const { return per_channel ? scales[channel] : scales[0]; }
};

// All channels at `bits` (1..8).
QuantizedTensor quantize_weights_symmetric(const Tensor& w, int bits, bool per_channel);
// One bitwidth per output channel (0 = pruned, else 1..8). Per-tensor scales need every channel
// at the same non-zero width; throws sq::Error otherwise.
QuantizedTensor quantize_weights_symmetric(const Tensor& w, const std::vector<int>& channel_bits,
                                           bool per_channel);
// Float weights back from q: s · q.
Tensor dequantize(const QuantizedTensor& q);

}  // namespace sq
