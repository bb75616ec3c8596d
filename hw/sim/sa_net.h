// Quantized models and their layers' integer inputs, for the RTL test and sa_report:
// tests/core/quant_models.h's synthetic mixed-precision model (random weights), a float graph
// calibrated at a bit assignment, or either re-quantized at another bit assignment.
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "core/quant_models.h"
#include "sigmaquant/engine.h"
#include "sigmaquant/integerize.h"
#include "sigmaquant/transform.h"

namespace sqhw {

struct Net {
  sq::QuantModel qm;
  sq::IntModel im;
  std::vector<std::vector<uint8_t>> inputs;  // per layer: its input codes
  std::vector<bool> chained;                 // the input came from the previous layers' output
};

// qm at another bit assignment: weight scales from max|w|, every point re-quantized from its
// calibrated range at its new bits.
inline sq::QuantModel with_bits(const sq::QuantModel& base, const sq::BitConfig& bits) {
  sq::QuantModel qm = base;
  qm.bits = bits;
  qm.weight_scales = sq::max_weight_scales(qm.graph, bits);
  qm.acts.clear();
  for (const auto& [node, b] : sq::activation_quant_points(qm.graph, bits)) {
    const sq::ActQuant& old = base.acts.at(qm.graph.nodes[static_cast<size_t>(node)].name);
    qm.acts[qm.graph.nodes[static_cast<size_t>(node)].name] =
        sq::act_quant_from_range({old.lo, old.hi}, b);
  }
  return qm;
}

// A quantized model of a float graph at `bits`: BN folded, weight scales from max|w|, activation
// ranges from a float forward pass over a few random images (as synthetic_qmodel does).
inline sq::QuantModel calibrated_qmodel(const sq::Graph& g, const sq::BitConfig& bits,
                                        uint64_t seed) {
  sq::QuantModel qm;
  qm.graph = sq::fold_batchnorm(g);
  qm.bits = bits;
  qm.weight_scales = sq::max_weight_scales(qm.graph, bits);
  const sq::Shape& in = qm.graph.input_shape;
  const int64_t numel = in[0] * in[1] * in[2];
  const std::map<int, int> pts = sq::activation_quant_points(qm.graph, bits);
  std::map<int, std::pair<float, float>> range;
  const std::vector<float> imgs = sqtest::random_images(4, numel, seed + 1);
  for (int s = 0; s < 4; ++s) {
    const auto v = sqtest::simulate_nodes(qm, imgs.data() + s * numel, false);
    for (const auto& [node, b] : pts) {
      auto [lo, hi] = std::minmax_element(v[static_cast<size_t>(node)].begin(),
                                          v[static_cast<size_t>(node)].end());
      auto& r = range.try_emplace(node, 0.0f, 0.0f).first->second;
      r.first = std::min(r.first, *lo);
      r.second = std::max(r.second, *hi);
    }
  }
  for (const auto& [node, b] : pts)
    qm.acts[qm.graph.nodes[static_cast<size_t>(node)].name] =
        sq::act_quant_from_range({range[node].first, range[node].second}, b);
  return qm;
}

// The layers' inputs: a random image quantized at the first layer's point, then every layer
// whose input point is the quantized output of an earlier layer (conv -> ReLU) gets that output
// (conv2d_u8_ref); the others (after a residual add or pooling, which the RTL does not run) get
// random codes of their width, half of them at the zero point as after a ReLU.
inline Net make_net(const sq::QuantModel& qm, uint64_t seed) {
  Net n;
  n.qm = qm;
  n.im = sq::integerize(n.qm);
  const sq::Graph& g = n.qm.graph;
  const int64_t numel = g.input_shape[0] * g.input_shape[1] * g.input_shape[2];
  const int64_t plane = g.input_shape[1] * g.input_shape[2];
  std::map<int, std::vector<uint8_t>> codes;  // node -> codes at its point
  {
    const sq::ActQuant& q = n.im.points.at(n.im.layers[0].in_node);
    const std::vector<float> img = sqtest::random_images(1, numel, seed + 7);
    std::vector<uint8_t> x(img.size());
    for (size_t i = 0; i < img.size(); ++i) {
      const size_t ch = i / static_cast<size_t>(plane);
      const float v = (img[i] - g.input_mean[ch]) / g.input_std[ch];
      x[i] = static_cast<uint8_t>(std::clamp<float>(std::nearbyint(v / q.scale) + q.zero_point,
                                                    0.0f, static_cast<float>(q.qmax())));
    }
    codes[n.im.layers[0].in_node] = x;
  }
  std::mt19937_64 rng(seed + 11);
  for (const sq::IntLayer& L : n.im.layers) {
    const sq::ConvShape s = sq::conv_shape_of(g, L.node);
    const sq::ActQuant& q = n.im.points.at(L.in_node);
    auto it = codes.find(L.in_node);
    n.chained.push_back(it != codes.end());
    std::vector<uint8_t> x;
    if (it != codes.end()) {
      x = it->second;
    } else {
      x.resize(static_cast<size_t>(s.in_size()));
      for (uint8_t& v : x)
        v = static_cast<uint8_t>(rng() % 2 ? q.zero_point : rng() % (q.qmax() + 1));
    }
    if (L.out_node >= 0) {
      std::vector<uint8_t> y(static_cast<size_t>(s.out_size()));
      sq::conv2d_u8_ref(s, L, x.data(), y.data());
      codes[L.out_node] = y;
    }
    n.inputs.push_back(std::move(x));
  }
  return n;
}

}  // namespace sqhw
