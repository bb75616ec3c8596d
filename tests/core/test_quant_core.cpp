// Torch-free quantization math: activation quantizers, calibration, BN folding, CLE, the
// quantization points and the quantized-model file.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "sigmaquant/calibrate.h"
#include "sigmaquant/error.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/qmodel.h"
#include "sigmaquant/transform.h"
#include "sigmaquant/zoo.h"
#include "test_util.h"

namespace {

TEST(QuantAct, ScaleAndZeroPointByHand) {
  sq::ActQuant u = sq::act_quant_from_range({0.0, 2.55}, 8);
  EXPECT_FLOAT_EQ(u.scale, 0.01f);
  EXPECT_EQ(u.zero_point, 0);
  sq::ActQuant s = sq::act_quant_from_range({-1.0, 3.0}, 8);
  EXPECT_FLOAT_EQ(s.scale, 4.0f / 255);
  EXPECT_EQ(s.zero_point, 64);  // round(1 / (4/255)) = round(63.75)
  sq::ActQuant f = sq::act_quant_from_range({0.0, 1.5}, 2);
  EXPECT_FLOAT_EQ(f.scale, 0.5f);
  EXPECT_EQ(f.qmax(), 3);
}

class Calibration : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937_64 rng(1);
    std::vector<float> x(100000);
    for (float& v : x) v = static_cast<float>((rng() >> 11) * (1.0 / 9007199254740992.0));
    x[0] = 100.0f;  // one outlier
    h = sq::Histogram(0.0, 100.0, 2048);
    h.add(x.data(), static_cast<int64_t>(x.size()));
  }
  sq::Histogram h;
};

TEST_F(Calibration, MinMaxKeepsTheOutlierTheOthersClipIt) {
  EXPECT_DOUBLE_EQ(sq::choose_range(h, 8, sq::Calib::MinMax).hi, 100.0);
  double p = sq::choose_range(h, 8, sq::Calib::Percentile, 99.99).hi;
  EXPECT_GT(p, 0.9);
  EXPECT_LT(p, 1.2);
  double m = sq::choose_range(h, 4, sq::Calib::MSE).hi;
  EXPECT_GT(m, 0.9);
  EXPECT_LT(m, 3.0);
  double k = sq::choose_range(h, 4, sq::Calib::KL).hi;
  EXPECT_LT(k, 50.0);
  EXPECT_GT(k, 0.9);
  for (sq::Calib c : {sq::Calib::MinMax, sq::Calib::Percentile, sq::Calib::MSE, sq::Calib::KL})
    EXPECT_EQ(sq::calib_from_name(sq::calib_name(c)), c);
  EXPECT_THROW(sq::calib_from_name("entropy"), sq::Error);
}

TEST(Transform, FoldBatchnormByHand) {
  sq::Graph g("t", {1, 3, 3}, 2);
  int c = g.conv2d("conv", g.input(), 2, 3, 1, 0);
  int b = g.batchnorm("bn", c, 0.0);
  g.linear("fc", g.flatten("flat", g.relu("relu", b)), 2);
  g.infer_shapes();
  g.init_params(1);
  auto& bn = g.nodes[b].params;
  bn["weight"].data = {2.0f, 0.5f};
  bn["bias"].data = {1.0f, -1.0f};
  bn["running_mean"].data = {0.25f, -0.5f};
  bn["running_var"].data = {16.0f, 0.25f};  // a = 2/4 = 0.5, 0.5/0.5 = 1
  sq::Graph f = sq::fold_batchnorm(g);
  EXPECT_EQ(f.nodes.size(), g.nodes.size() - 1);
  EXPECT_THROW(f.index_of("bn"), sq::Error);
  EXPECT_EQ(f.nodes[f.index_of("relu")].inputs[0], f.index_of("conv"));
  const auto& w0 = g.nodes[c].params.at("weight").data;
  const auto& w1 = f.node("conv").params.at("weight").data;
  for (int k = 0; k < 9; ++k) {
    EXPECT_FLOAT_EQ(w1[k], 0.5f * w0[k]);
    EXPECT_FLOAT_EQ(w1[9 + k], w0[9 + k]);
  }
  // b' = a (b - mean) + beta with b = 0: 0.5 * -0.25 + 1 = 0.875; 1 * 0.5 - 1 = -0.5
  EXPECT_FLOAT_EQ(f.node("conv").params.at("bias").data[0], 0.875f);
  EXPECT_FLOAT_EQ(f.node("conv").params.at("bias").data[1], -0.5f);
  EXPECT_TRUE(f.node("conv").has_bias);
}

TEST(Transform, CrossLayerEqualizationEqualizesRanges) {
  sq::Graph g = sq::make_zoo_model("mlp", {1, 8, 8}, 10, 3);
  // Make fc1's output channels very uneven so that equalization has work to do.
  auto& w = g.nodes[g.index_of("fc1")].params.at("weight");
  for (int64_t o = 0; o < w.shape[0]; ++o)
    for (int64_t i = 0; i < w.shape[1]; ++i) w.data[o * w.shape[1] + i] *= (o % 7 == 0) ? 20.0f : 1.0f;
  int pairs = sq::cross_layer_equalize(g, true, 20);
  EXPECT_EQ(pairs, 2);  // fc1 -> relu -> fc2, fc2 -> relu -> fc3
  const auto& w1 = g.node("fc1").params.at("weight");
  const auto& w2 = g.node("fc2").params.at("weight");
  for (int64_t c = 0; c < 8; ++c) {
    double r1 = 0, r2 = 0;
    for (int64_t i = 0; i < w1.shape[1]; ++i) r1 = std::max(r1, std::fabs(double(w1.data[c * w1.shape[1] + i])));
    for (int64_t o = 0; o < w2.shape[0]; ++o) r2 = std::max(r2, std::fabs(double(w2.data[o * w2.shape[1] + c])));
    EXPECT_NEAR(r1 / r2, 1.0, 0.05) << "channel " << c;
  }
}

TEST(QuantPoints, InputsOfWeightLayersAndResidualAdds) {
  sq::Graph g = sq::make_zoo_model("resnet8", {1, 28, 28}, 10);
  sq::BitConfig b = sq::BitConfig::uniform(g, 4, 4);
  b.layers["stage2.block1.shortcut.conv"].abits = 6;  // reads the same tensor as stage2's conv a
  auto pts = sq::activation_quant_points(g, b);
  EXPECT_EQ(pts.at(0), 4);  // the network input, read by the stem conv
  int shared = g.node("stage2.block1.a.conv").inputs[0];
  EXPECT_EQ(pts.at(shared), 6);  // the larger of its readers' abits
  int add = g.index_of("stage1.block1.add");
  EXPECT_EQ(pts.at(add), sq::kAddBits);
  EXPECT_EQ(pts.at(g.nodes[add].inputs[0]), sq::kAddBits);  // the residual branch
  sq::pin_first_last(b, g, 8);
  EXPECT_EQ(b.for_layer("stem.conv").wbits, 8);
  EXPECT_EQ(b.for_layer("fc").abits, 8);
  EXPECT_EQ(b.for_layer("stage1.block1.a.conv").wbits, 4);
}

TEST(QuantModelFile, RoundTripAndClearErrors) {
  std::string dir = sqtest::temp_dir("qmodel");
  sq::QuantModel qm;
  qm.graph = sq::fold_batchnorm(sq::make_zoo_model("resnet8", {1, 28, 28}, 10));
  qm.bits = sq::BitConfig::uniform(qm.graph, 4, 8);
  qm.weight_scales = sq::max_weight_scales(qm.graph, qm.bits);
  for (const auto& [node, bits] : sq::activation_quant_points(qm.graph, qm.bits))
    qm.acts[qm.graph.nodes[node].name] = sq::act_quant_from_range({-1.0, 2.0}, bits);
  sq::save_qmodel(dir + "/q.sqg", qm);
  sq::QuantModel back = sq::load_qmodel(dir + "/q.sqg");
  EXPECT_EQ(back.bits, qm.bits);
  EXPECT_EQ(back.weight_scales, qm.weight_scales);
  EXPECT_EQ(back.acts.size(), qm.acts.size());
  EXPECT_EQ(sq::quantized_weights(back, "stem.conv"), sq::quantized_weights(qm, "stem.conv"));
  for (int32_t v : sq::quantized_weights(qm, "fc")) EXPECT_LE(std::abs(v), 7);

  sq::save_graph(dir + "/fp.sqg", sq::make_zoo_model("lenet5", {1, 28, 28}, 10));
  try {
    sq::load_qmodel(dir + "/fp.sqg");
    FAIL();
  } catch (const sq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("fp.sqg: not a quantized model"), std::string::npos);
  }
}

}  // namespace
