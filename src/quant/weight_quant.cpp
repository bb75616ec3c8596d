// Symmetric weight quantizer (see include/sigmaquant/quant.h for the formulas).
#include <algorithm>
#include <cmath>

#include "sigmaquant/error.h"
#include "sigmaquant/quant.h"

namespace sq {

namespace {

// Scale of one group of weights (a channel or the tensor) at `bits`.
float group_scale(const float* w, int64_t n, int bits) {
  if (bits == 0) return 0.0f;
  if (bits == 1) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += std::fabs(w[i]);
    return n > 0 && s > 0 ? static_cast<float>(s / static_cast<double>(n)) : 1.0f;
  }
  float m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(w[i]));
  const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
  return m > 0 ? m / qmax : 1.0f;
}

void quantize_group(const float* w, int32_t* q, int64_t n, int bits, float scale) {
  if (bits == 0) {
    std::fill(q, q + n, 0);
    return;
  }
  if (bits == 1) {
    for (int64_t i = 0; i < n; ++i) q[i] = w[i] < 0 ? -1 : 1;
    return;
  }
  const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
  // Float division (not a reciprocal multiply), so that the fake-quant forward pass, which
  // divides, produces the same integers.
  for (int64_t i = 0; i < n; ++i)
    q[i] = static_cast<int32_t>(std::clamp(std::nearbyint(w[i] / scale), -qmax, qmax));
}

}  // namespace

QuantizedTensor quantize_weights_symmetric(const Tensor& w, int bits, bool per_channel) {
  if (w.shape.empty()) fail("quantize_weights_symmetric: weight tensor has no dimensions");
  if (bits < 1 || bits > 8)
    fail("quantize_weights_symmetric: {} weight bits out of range (expected 1..8)", bits);
  return quantize_weights_symmetric(w, std::vector<int>(w.shape[0], bits), per_channel);
}

QuantizedTensor quantize_weights_symmetric(const Tensor& w, const std::vector<int>& channel_bits,
                                           bool per_channel) {
  if (w.shape.empty()) fail("quantize_weights_symmetric: weight tensor has no dimensions");
  const int64_t out = w.shape[0];
  if (static_cast<int64_t>(channel_bits.size()) != out)
    fail("quantize_weights_symmetric: {} channel bitwidths for a tensor of shape {} (expected {})",
         channel_bits.size(), shape_str(w.shape), out);
  for (int b : channel_bits)
    if (b < 0 || b > 8)
      fail("quantize_weights_symmetric: channel bitwidth {} out of range (expected 0..8)", b);
  QuantizedTensor q;
  q.shape = w.shape;
  q.per_channel = per_channel;
  q.channel_bits = channel_bits;
  q.values.resize(w.data.size());
  const int64_t per = out > 0 ? w.size() / out : 0;
  if (per_channel) {
    q.scales.resize(out);
    for (int64_t c = 0; c < out; ++c) {
      const float* src = w.data.data() + c * per;
      q.scales[c] = group_scale(src, per, channel_bits[c]);
      quantize_group(src, q.values.data() + c * per, per, channel_bits[c], q.scales[c]);
    }
    return q;
  }
  const int bits = out > 0 ? channel_bits[0] : 8;
  for (int b : channel_bits)
    if (b != bits || b == 0)
      fail(
          "quantize_weights_symmetric: per-tensor scales need one non-zero bitwidth for every "
          "channel");
  q.scales = {group_scale(w.data.data(), w.size(), bits)};
  quantize_group(w.data.data(), q.values.data(), w.size(), bits, q.scales[0]);
  return q;
}

Tensor dequantize(const QuantizedTensor& q) {
  Tensor t(q.shape);
  const int64_t out = q.shape.empty() ? 0 : q.shape[0];
  const int64_t per = out > 0 ? t.size() / out : 0;
  for (int64_t c = 0; c < out; ++c)
    for (int64_t i = 0; i < per; ++i)
      t.data[c * per + i] = q.scale_of(c) * static_cast<float>(q.values[c * per + i]);
  return t;
}

}  // namespace sq
