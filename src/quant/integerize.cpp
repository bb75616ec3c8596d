#include "sigmaquant/integerize.h"

#include <climits>
#include <cmath>

#include "sigmaquant/error.h"
#include "sigmaquant/transform.h"

namespace sq {

Requant quantize_multiplier(double m) {
  Requant r;
  if (m <= 0) return r;
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

int32_t requantize(int64_t acc, const Requant& r) {
  __int128 p = static_cast<__int128>(acc) * r.multiplier;
  if (r.shift > 0) {
    p = (p + (static_cast<__int128>(1) << (r.shift - 1))) >> r.shift;
  } else if (r.shift < 0) {
    p = p << (-r.shift);
  }
  if (p > INT32_MAX) return INT32_MAX;
  if (p < INT32_MIN) return INT32_MIN;
  return static_cast<int32_t>(p);
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
      double unit = static_cast<double>(in.scale) * (sw > 0 ? sw : 1.0);
      double b = bias ? std::nearbyint(bias->data[c] / unit) : 0.0;
      L.bias.push_back(static_cast<int32_t>(std::clamp(b, double(INT32_MIN), double(INT32_MAX))));
      L.requant.push_back(L.out_node >= 0 ? quantize_multiplier(unit / L.out_scale) : Requant{});
    }
    im.layers.push_back(std::move(L));
  }
  return im;
}

}  // namespace sq
