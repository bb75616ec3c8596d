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

// Non-square windows (issue 15): shapes, parameters and MACs from the real kernel area; the
// square builder is Window2d::square.
TEST(GraphCounts, NonSquareWindowsByHand) {
  using W = sq::Window2d;
  Graph g("rect", {4, 17, 15}, 10);
  // 1x7 pad (0, 3): 17x15 -> 17x15; 8*4*7 = 224 params, 17*15*8*28 = 57120 MACs.
  int x = g.conv2d("c17", g.input(), 8, W::of(1, 7, 1, 1, 0, 3));
  // 7x1 pad (3, 0), stride (2, 1): (17+6-7)/2+1 = 9 rows, 15 cols; 6*8*7 = 336, 9*15*6*56.
  x = g.conv2d("c71", x, 6, W::of(7, 1, 2, 1, 3, 0));
  // 3x3 dilation 2, no padding: span 5 -> 5x11; 6*6*9 = 324, 5*11*6*54 = 17820.
  x = g.conv2d("dil", x, 6, W::of(3, 3, 1, 1, 0, 0, 2, 2));
  // 2x2, pads [0, 0, 1, 1] (SAME): 5x11 -> 5x11; depthwise 6 groups: 6*1*4 = 24, 5*11*6*4.
  x = g.conv2d("same", x, 6, W{2, 2, 1, 1, 0, 0, 1, 1, 1, 1}, 6);
  // Max pool 3x2 stride 2, pads [1, 0, 1, 1]: (5+2-3)/2+1 = 3, (11+1-2)/2+1 = 6.
  x = g.maxpool("mp", x, W{3, 2, 2, 2, 1, 0, 1, 1, 1, 1});
  x = g.global_avgpool("gap", x);
  g.linear("fc", g.flatten("flat", x), 10);
  g.infer_shapes();
  EXPECT_EQ(g.node("c17").out_shape, (sq::Shape{8, 17, 15}));
  EXPECT_EQ(g.node("c71").out_shape, (sq::Shape{6, 9, 15}));
  EXPECT_EQ(g.node("dil").out_shape, (sq::Shape{6, 5, 11}));
  EXPECT_EQ(g.node("same").out_shape, (sq::Shape{6, 5, 11}));
  EXPECT_EQ(g.node("mp").out_shape, (sq::Shape{6, 3, 6}));
  EXPECT_EQ(g.expected_param_shapes(g.index_of("c17")).at("weight"), (sq::Shape{8, 4, 1, 7}));
  EXPECT_EQ(g.expected_param_shapes(g.index_of("c71")).at("weight"), (sq::Shape{6, 8, 7, 1}));
  EXPECT_EQ(g.layer_stats(g.index_of("c17")).params, 224);
  EXPECT_EQ(g.layer_stats(g.index_of("c17")).macs, 57120);
  EXPECT_EQ(g.layer_stats(g.index_of("c71")).params, 336);
  EXPECT_EQ(g.layer_stats(g.index_of("c71")).macs, 9 * 15 * 6 * 56);
  EXPECT_EQ(g.layer_stats(g.index_of("dil")).macs, 17820);
  EXPECT_EQ(g.layer_stats(g.index_of("same")).params, 24);
  EXPECT_EQ(g.layer_stats(g.index_of("same")).macs, 5 * 11 * 6 * 4);
  EXPECT_EQ(sq::window_str(g.node("c71").window), "7x1 s(2,1) p(3,0)");
  EXPECT_EQ(sq::window_str(g.node("dil").window), "3x3 s1 p0 d2");
  EXPECT_EQ(sq::window_str(g.node("same").window), "2x2 s1 p[0,0,1,1]");
  // The square builders are the square window.
  Graph h("sq", {1, 8, 8}, 10);
  h.conv2d("c", h.input(), 2, 3, 2, 1);
  EXPECT_EQ(h.node("c").window, W::square(3, 2, 1));
  EXPECT_TRUE(h.node("c").window.is_square());
  EXPECT_FALSE(W::of(3, 3, 1, 1, 1, 1, 2, 2).is_square());
}

TEST(GraphShapes, InvalidWindowsAreRejectedWithTheNodeName) {
  using W = sq::Window2d;
  auto error_for = [](const W& w, bool pool) {
    Graph g("bad", {1, 6, 6}, 10);
    int x = pool ? g.maxpool("win", g.input(), w) : g.conv2d("win", g.input(), 2, w);
    g.linear("fc", g.flatten("flat", g.global_avgpool("gap", x)), 10);
    return error_of([&] { g.infer_shapes(); });
  };
  std::string msg = error_for(W::of(3, 3, 1, 1, 0, 0, 3, 3), false);  // spans 7 > 6
  EXPECT_NE(msg.find("'win'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("3x3 s1 p0 d3 is larger than the padded input"), std::string::npos) << msg;
  msg = error_for(W::of(1, 3, 1, 0, 0, 0), false);  // stride 0
  EXPECT_NE(msg.find("expected positive sizes"), std::string::npos) << msg;
  msg = error_for(W{3, 3, 1, 1, 0, -1, 0, 0, 1, 1}, false);
  EXPECT_NE(msg.find("padding >= 0"), std::string::npos) << msg;
  msg = error_for(W::of(3, 3, 1, 1, 1, 1, 2, 1), true);
  EXPECT_NE(msg.find("dilated pooling is not supported"), std::string::npos) << msg;
  msg = error_for(W{2, 2, 1, 1, 0, 0, 2, 0, 1, 1}, true);  // pads 2 on a kernel of 2
  EXPECT_NE(msg.find("at most half the kernel"), std::string::npos) << msg;
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
