// Integerization: fixed-point requantization by hand, and the integer pipeline of a layer against
// the float simulation of the same quantized layer.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "sigmaquant/integerize.h"

namespace {

TEST(Integerize, RequantizeByHand) {
  sq::Requant half = sq::quantize_multiplier(0.5);
  EXPECT_EQ(half.multiplier, 1 << 30);
  EXPECT_EQ(half.shift, 31);
  EXPECT_EQ(sq::requantize(100, half), 50);
  EXPECT_EQ(sq::requantize(3, half), 2);    // 1.5 rounds half up
  EXPECT_EQ(sq::requantize(-3, half), -1);  // -1.5 rounds half up too
  sq::Requant big = sq::quantize_multiplier(3.0);
  EXPECT_EQ(sq::requantize(7, big), 21);
  EXPECT_EQ(sq::requantize(int64_t{1} << 40, big), INT32_MAX);  // saturates
  std::mt19937_64 rng(1);
  for (int i = 0; i < 10000; ++i) {
    double m = std::ldexp(1.0 + (rng() % 1000) / 1000.0, static_cast<int>(rng() % 30) - 25);
    int64_t a = static_cast<int64_t>(rng() % 2000001) - 1000000;
    sq::Requant r = sq::quantize_multiplier(m);
    EXPECT_LE(std::fabs(sq::requantize(a, r) - a * m), 0.5 + 1e-6 * std::fabs(a * m) + 1e-9)
        << "m=" << m << " a=" << a;
  }
}

TEST(Integerize, LayerMatchesTheFloatSimulation) {
  sq::QuantModel qm;
  sq::Graph& g = qm.graph;
  g = sq::Graph("t", {1, 1, 16}, 3);
  int x = g.flatten("flat", g.input());
  x = g.relu("relu", g.linear("fc1", x, 8, true));
  g.linear("fc2", x, 3);
  g.infer_shapes();
  g.init_params(5);
  for (float& b : g.nodes[g.index_of("fc1")].params["bias"].data) b = 0.05f;
  qm.bits = sq::BitConfig::uniform(g, 4, 8);
  qm.weight_scales = sq::max_weight_scales(g, qm.bits);
  qm.acts["flat"] = sq::act_quant_from_range({-1.0, 2.0}, 8);
  qm.acts["relu"] = sq::act_quant_from_range({0.0, 1.5}, 6);
  sq::IntModel im = sq::integerize(qm);
  ASSERT_EQ(im.layers.size(), 2u);
  const sq::IntLayer& L = im.layers[0];
  EXPECT_EQ(L.out_node, g.index_of("relu"));
  EXPECT_EQ(L.out_lo, 0);
  EXPECT_EQ(L.out_hi, 63);
  EXPECT_EQ(im.layers[1].out_node, -1);  // logits stay float
  for (int32_t w : L.weights) EXPECT_LE(std::abs(w), 7);

  const auto& in = qm.acts["flat"];
  const auto& out = qm.acts["relu"];
  const auto& b = g.node("fc1").params.at("bias").data;
  std::mt19937_64 rng(2);
  int exact = 0, total = 0;
  for (int trial = 0; trial < 500; ++trial) {
    std::vector<int32_t> xq(16);
    for (auto& v : xq) v = static_cast<int32_t>(rng() % 256);
    for (int c = 0; c < 8; ++c) {
      int64_t acc = L.bias[c];
      double y = b[c];
      for (int k = 0; k < 16; ++k) {
        acc += static_cast<int64_t>(L.weights[c * 16 + k]) * (xq[k] - L.in_zero_point);
        y += double(L.weight_scales[c]) * L.weights[c * 16 + k] * in.scale * (xq[k] - in.zero_point);
      }
      double ref = std::clamp(std::nearbyint(std::max(y, 0.0) / out.scale) + out.zero_point, 0.0,
                              double(out.qmax()));
      int32_t got = L.output(c, acc);
      EXPECT_LE(std::abs(got - ref), 1) << "trial " << trial << " channel " << c;
      exact += got == ref;
      ++total;
    }
  }
  // Differences come only from rounding the bias to the accumulator's unit and from ties.
  EXPECT_GE(exact, total * 97 / 100);
}

}  // namespace
