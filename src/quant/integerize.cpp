#include "sigmaquant/integerize.h"

#include <climits>
#include <cmath>

#include "sigmaquant/error.h"
#include "sigmaquant/transform.h"

namespace sq {

Requant quantize_multiplier(double m) {
  Requant r;
  if (!(m > 0)) return r;
  if (!std::isfinite(m)) {  // saturates every non-zero input (requantize)
    r.multiplier = INT32_MAX;
    r.shift = -32;
    return r;
  }
  int exp = 0;
  double q = std::frexp(m, &exp);  // m = q · 2^exp, q in [0.5, 1)
  int64_t mult = static_cast<int64_t>(std::llround(q * 2147483648.0));
  if (mult == (int64_t{1} << 31)) {
    mult /= 2;
    ++exp;
  }
  r.multiplier = static_cast<int32_t>(mult);
  r.shift = 31 - exp;
  return r;
}

double accumulator_unit(float in_scale, float weight_scale) {
  return static_cast<double>(in_scale) * (weight_scale > 0 ? weight_scale : 1.0);
}

int32_t requantize(int64_t acc, const Requant& r) {
  __int128 p = static_cast<__int128>(acc) * r.multiplier;  // |p| < 2^95
  if (r.shift > 0) {
    // From shift 96 on, |p| < 2^(shift−1): the result rounds to 0 (and 1 << 127 would overflow;
    // a tiny multiplier M from an extreme scale ratio gives such shifts — found by fuzz_sqm).
    if (r.shift >= 96) return 0;
    p = (p + (static_cast<__int128>(1) << (r.shift - 1))) >> r.shift;
  } else if (r.shift < 0) {
    // M >= 1: a left shift that saturates; multiplied, not shifted (p may be negative).
    if (p == 0) return 0;
    if (r.shift <= -32) return p > 0 ? INT32_MAX : INT32_MIN;
    p *= static_cast<__int128>(1) << (-r.shift);
  }
  if (p > INT32_MAX) return INT32_MAX;
  if (p < INT32_MIN) return INT32_MIN;
  return static_cast<int32_t>(p);
}

ChannelBias channel_bias(float b, double unit, float out_scale) {
  ChannelBias cb;
  const double exact = b / unit;
  const double q = std::clamp(std::nearbyint(exact), double(INT32_MIN), double(INT32_MAX));
  cb.bias = static_cast<int32_t>(q);
  cb.bias_float = static_cast<float>(q * unit);
  if (out_scale > 0) cb.requant = quantize_multiplier(unit / out_scale);
  return cb;
}

int32_t IntLayer::output(int64_t c, int64_t acc) const {
  int64_t v = static_cast<int64_t>(requantize(acc, requant[c])) + out_zero_point;
  return static_cast<int32_t>(std::min<int64_t>(std::max<int64_t>(v, out_lo), out_hi));
}

IntModel integerize(const QuantModel& qm) {
  const Graph& g = qm.graph;
  const std::map<int, int> points = activation_quant_points(g, qm.bits);
  auto act_of = [&](int node) -> const ActQuant& {
    auto it = qm.acts.find(g.nodes[node].name);
    if (it == qm.acts.end()) fail("integerize: no activation quantizer for '{}'", g.nodes[node].name);
    return it->second;
  };
  IntModel im;
  for (const auto& [node, bits] : points) im.points[node] = act_of(node);
  for (int i : g.weight_layers()) {
    const Node& n = g.nodes[i];
    const LayerBits& lb = qm.bits.for_layer(n.name);
    IntLayer L;
    L.name = n.name;
    L.node = i;
    L.weights = quantized_weights(qm, n.name);
    L.in_node = n.inputs[0];
    const ActQuant& in = act_of(L.in_node);
    L.in_scale = in.scale;
    L.in_zero_point = in.zero_point;
    const auto& ws = qm.weight_scales.at(n.name);
    // Follow the output through ops that commute with quantization to the next point.
    int cur = i;
    bool relu = false, relu6 = false;
    while (!points.count(cur)) {
      auto cons = consumers(g, cur);
      if (cons.size() != 1) break;
      Op op = g.nodes[cons[0]].op;
      if (op != Op::ReLU && op != Op::ReLU6 && op != Op::MaxPool && op != Op::Flatten) break;
      relu |= op == Op::ReLU;
      relu6 |= op == Op::ReLU6;
      cur = cons[0];
    }
    if (points.count(cur)) {
      const ActQuant& out = act_of(cur);
      L.out_node = cur;
      L.out_scale = out.scale;
      L.out_zero_point = out.zero_point;
      L.out_lo = (relu || relu6) ? out.zero_point : 0;
      L.out_hi = out.qmax();
      if (relu6)
        L.out_hi = std::min<int32_t>(out.qmax(), static_cast<int32_t>(std::nearbyint(6.0 / out.scale)) +
                                                     out.zero_point);
    }
    const Tensor* bias = n.has_bias ? &n.params.at("bias") : nullptr;
    for (int64_t c = 0; c < n.out_channels; ++c) {
      L.channel_bits.push_back(lb.channel_bits(c));
      float sw = ws.size() == 1 ? ws[0] : ws[c];
      if (lb.channel_bits(c) == 0) sw = 0;
      L.weight_scales.push_back(sw);
      const float b = bias ? bias->data[c] : 0.0f;
      const ChannelBias cb =
          channel_bias(b, accumulator_unit(in.scale, sw), L.out_node >= 0 ? L.out_scale : 0.0f);
      L.bias.push_back(cb.bias);
      L.bias_float.push_back(cb.bias_float);
      L.requant.push_back(cb.requant);
    }
    im.layers.push_back(std::move(L));
  }
  return im;
}

}  // namespace sq
