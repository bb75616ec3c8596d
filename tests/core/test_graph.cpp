// Graph IR: shape inference, hand-computed parameter and MAC counts, validation errors.
#include <gtest/gtest.h>

#include "sigmaquant/error.h"
#include "sigmaquant/graph.h"
#include "sigmaquant/zoo.h"
#include "test_util.h"

namespace {

using sq::Graph;

using sqtest::error_of;

TEST(GraphCounts, LeNet5MatchesHandComputation) {
  Graph g = sq::make_zoo_model("lenet5", {1, 28, 28}, 10);
  // conv1 1->6 5x5 (+bias), pad 2 keeps 28x28: 6*25+6 = 156 params, 28*28*6*25 = 117600 MACs
  // conv2 6->16 5x5 on 14x14 -> 10x10: 16*150+16 = 2416 params, 10*10*16*150 = 240000 MACs
  // fc1 400->120: 48120 / 48000; fc2 120->84: 10164 / 10080; fc3 84->10: 850 / 840
  EXPECT_EQ(g.layer_stats(g.index_of("conv1")).params, 156);
  EXPECT_EQ(g.layer_stats(g.index_of("conv1")).macs, 117600);
  EXPECT_EQ(g.layer_stats(g.index_of("conv2")).macs, 240000);
  EXPECT_EQ(g.layer_stats(g.index_of("fc1")).params, 48120);
  EXPECT_EQ(g.total_params(), 156 + 2416 + 48120 + 10164 + 850);
  EXPECT_EQ(g.total_macs(), 117600 + 240000 + 48000 + 10080 + 840);
  EXPECT_EQ(g.weight_layers().size(), 5u);
}

TEST(GraphCounts, ResNet20MatchesHandComputation) {
  Graph g = sq::make_zoo_model("resnet20", {1, 28, 28}, 10);
  // Parameters: stem 1*16*9 + BN 32; stage1 6 convs 16*16*9 + 6 BN (32 each);
  // stage2: 16*32*9 + 5 * 32*32*9 + 6 BN (64) + 1x1 shortcut 16*32 + BN 64;
  // stage3: 32*64*9 + 5 * 64*64*9 + 6 BN (128) + shortcut 32*64 + BN 128; fc 64*10 + 10.
  const int64_t stem = 144 + 32;
  const int64_t s1 = 6 * 2304 + 6 * 32;
  const int64_t s2 = 4608 + 5 * 9216 + 6 * 64 + 512 + 64;
  const int64_t s3 = 18432 + 5 * 36864 + 6 * 128 + 2048 + 128;
  EXPECT_EQ(g.total_params(), stem + s1 + s2 + s3 + 650);
  EXPECT_EQ(g.total_params(), 272186);
  // MACs: stem 28*28*16*9; stage1 6 * 28*28*16*16*9; stage2 (14x14): 14*14*32*16*9 +
  // 5 * 14*14*32*32*9 + shortcut 14*14*32*16; stage3 (7x7) likewise with 64/32; fc 640.
  const int64_t m_stem = 28 * 28 * 16 * 9;
  const int64_t m1 = 6 * 28 * 28 * 16 * 16 * 9;
  const int64_t m2 = 14 * 14 * 32 * 16 * 9 + 5 * 14 * 14 * 32 * 32 * 9 + 14 * 14 * 32 * 16;
  const int64_t m3 = 7 * 7 * 64 * 32 * 9 + 5 * 7 * 7 * 64 * 64 * 9 + 7 * 7 * 64 * 32;
  EXPECT_EQ(g.total_macs(), m_stem + m1 + m2 + m3 + 640);
  EXPECT_EQ(g.total_macs(), 31021952);
  EXPECT_EQ(g.weight_layers().size(), 22u);  // 19 convs + 2 shortcuts + fc
  EXPECT_EQ(g.nodes.back().out_shape, (sq::Shape{10}));
}

TEST(GraphShapes, EveryZooModelFitsSmallAndCifarInputs) {
  for (const auto& name : sq::zoo_names())
    for (const sq::Shape& in : {sq::Shape{1, 28, 28}, sq::Shape{3, 32, 32}}) {
      Graph g = sq::make_zoo_model(name, in, 10);
      EXPECT_EQ(g.nodes.back().out_shape, (sq::Shape{10})) << name;
      EXPECT_NO_THROW(g.check_params(name));
    }
}

TEST(GraphShapes, MobileNetHasDepthwiseConvolutions) {
  Graph g = sq::make_zoo_model("mobilenetv2", {3, 32, 32}, 100);
  int depthwise = 0;
  for (const auto& n : g.nodes)
    if (n.op == sq::Op::Conv2d && n.groups > 1) {
      ++depthwise;
      EXPECT_EQ(n.groups, n.out_channels);
      EXPECT_EQ(g.expected_param_shapes(g.index_of(n.name)).at("weight")[1], 1);
    }
  EXPECT_GT(depthwise, 4);
  EXPECT_EQ(g.nodes.back().out_shape, (sq::Shape{100}));
}

TEST(GraphShapes, InvalidGraphsAreRejectedWithTheNodeName) {
  Graph g("bad", {1, 8, 8}, 10);
  int a = g.conv2d("a", g.input(), 4, 3, 1, 1);
  int b = g.conv2d("b", g.input(), 4, 3, 2, 1);
  g.add("sum", a, b);
  std::string msg = error_of([&] { g.infer_shapes(); });
  EXPECT_NE(msg.find("'sum'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("shapes differ"), std::string::npos) << msg;

  Graph h("bad2", {3, 8, 8}, 10);
  h.conv2d("grouped", h.input(), 4, 3, 1, 1, /*groups=*/2);
  msg = error_of([&] { h.infer_shapes(); });
  EXPECT_NE(msg.find("groups=2"), std::string::npos) << msg;

  Graph k("bad3", {1, 8, 8}, 10);
  k.linear("fc", k.input(), 10);
  msg = error_of([&] { k.infer_shapes(); });
  EXPECT_NE(msg.find("flat input"), std::string::npos) << msg;

  EXPECT_NE(error_of([] { sq::make_zoo_model("resnet99", {1, 28, 28}, 10); }).find("resnet20"),
            std::string::npos);
  EXPECT_NE(error_of([] { sq::make_zoo_model("lenet5", {1, 0, 28}, 10); }).find("does not fit"),
            std::string::npos);
}

TEST(GraphParams, InitIsSeededAndWeightStdIsPopulationStd) {
  Graph a = sq::make_zoo_model("resnet8", {3, 32, 32}, 10, 7);
  Graph b = sq::make_zoo_model("resnet8", {3, 32, 32}, 10, 7);
  Graph c = sq::make_zoo_model("resnet8", {3, 32, 32}, 10, 8);
  const auto& w = a.node("stem.conv").params.at("weight");
  EXPECT_EQ(w, b.node("stem.conv").params.at("weight"));
  EXPECT_NE(w.data, c.node("stem.conv").params.at("weight").data);
  // He-normal: std close to sqrt(2 / fan_in) = sqrt(2 / 27).
  EXPECT_NEAR(sq::weight_std(a.node("stage3.block1.b.conv")), std::sqrt(2.0 / (64 * 9)), 0.01);

  sq::Node n;
  n.params["weight"] = sq::Tensor({4}, 0.0f);
  n.params["weight"].data = {1, 2, 3, 4};  // mean 2.5, population variance 1.25
  EXPECT_DOUBLE_EQ(sq::weight_std(n), std::sqrt(1.25));
}

TEST(GraphParams, CheckParamsNamesTheTensor) {
  Graph g = sq::make_zoo_model("mlp", {1, 28, 28}, 10);
  g.nodes[g.index_of("fc2")].params["weight"] = sq::Tensor({128, 255});
  std::string msg = error_of([&] { g.check_params("m.sqg"); });
  EXPECT_NE(msg.find("m.sqg: fc2.weight has shape [128, 255], expected [128, 256]"),
            std::string::npos)
      << msg;
}

}  // namespace
