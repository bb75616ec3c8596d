// Channel groups (GroupedConv2d, src/engine/conv_groups.cpp): a layer whose output channels have
// different weight widths runs each group of channels on its own kernel, and pruned (0-bit)
// channels are not computed. Exactly equal to the reference on mixed 0/2/4/8-bit layers of every
// staging mode, on every ISA tier this CPU has; the plan (which channels on which kernel) where
// the cost model's answer is clear; and the graph executor on models whose every layer mixes
// widths and prunes channels (residual adds reading pruned channels, mixed logits layer) against
// the all-reference plan.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <tuple>

#include "engine_cases.h"
#include "quant_models.h"
#include "sigmaquant/engine.h"
#include "sigmaquant/error.h"
#include "test_util.h"

namespace {

using sqtest::IsaCase;
using sqtest::kIsas;


bool cpu_runs(sq::Isa isa) {
  switch (isa) {
    case sq::Isa::Avx2:
      return sq::cpu_has_avx2();
    case sq::Isa::AvxVnni:
      return sq::cpu_has_avxvnni();
    case sq::Isa::Avx512Vnni:
      return sq::cpu_has_avx512vnni();
    default:
      return true;
  }
}

struct ShapeCase {
  const char* name;
  sq::ConvShape s;
};
void PrintTo(const ShapeCase& c, std::ostream* os) { *os << c.name; }
const ShapeCase kShapes[] = {
    {"hwc3x3", {16, 10, 10, 40, 3, 1, 1, 1}},         // direct HWC
    {"hwc3x3s2", {35, 12, 16, 37, 3, 2, 1, 1}},       // direct, stride 2, odd channels
    {"shortcut1x1s2", {16, 14, 14, 48, 1, 2, 0, 1}},  // only the pixels read
    {"stem", {1, 28, 28, 24, 3, 1, 1, 1}},            // the plane
    {"rgb", {3, 8, 8, 33, 3, 1, 1, 1}},               // im2col
    {"linear", {120, 1, 1, 84, 1, 1, 0, 1}},
};

// A layer whose channel c has weights of bits[c] bits (0: all zero), spread requantization.
sq::IntLayer mixed_layer(const sq::ConvShape& s, const std::vector<int>& bits, int abits,
                         std::mt19937_64& rng, std::vector<uint8_t>& x) {
  sq::IntLayer L = sqtest::random_layer(s, 8, abits, rng);
  const int64_t cols = s.weights() / s.out_c;
  for (int64_t c = 0; c < s.out_c; ++c) {
    const int b = bits[c];
    for (int64_t k = 0; k < cols; ++k) {
      int32_t& w = L.weights[c * cols + k];
      if (b == 0) {
        w = 0;
      } else {
        const int32_t m = (1 << (b - 1)) - 1;
        w = static_cast<int32_t>(rng() % (2 * m + 1)) - m;
      }
    }
  }
  L.channel_bits = bits;
  x = sqtest::random_input(s, abits, rng);
  sqtest::spread_outputs(L, s, x, abits, rng);
  return L;
}

// Widths cycling over 8, 4, 2, 0 with a random start per layer, so every group size occurs.
std::vector<int> cycling_bits(int64_t n, std::mt19937_64& rng) {
  static const int kW[] = {8, 4, 2, 0, 4, 2, 2};
  std::vector<int> b(static_cast<size_t>(n));
  const size_t start = rng() % 7;
  for (int64_t c = 0; c < n; ++c) b[c] = kW[(start + static_cast<size_t>(c)) % 7];
  return b;
}

class EngineChannelGroups : public ::testing::TestWithParam<std::tuple<ShapeCase, IsaCase, int>> {};

TEST_P(EngineChannelGroups, MixedWidthsEqualTheReferenceExactly) {
  const auto [sc, ic, abits] = GetParam();
  if (!cpu_runs(ic.isa)) GTEST_SKIP() << "this CPU lacks " << ic.name;
  std::mt19937_64 rng(77 + abits);
  std::vector<uint8_t> x;
  const std::vector<int> bits = cycling_bits(sc.s.out_c, rng);
  const sq::IntLayer L = mixed_layer(sc.s, bits, abits, rng, x);
  std::vector<uint8_t> want(sc.s.out_size());
  sq::conv2d_u8_ref(sc.s, L, x.data(), want.data());
  sq::GroupedConv2d gc = sq::prepare_conv2d_grouped(sc.s, L, ic.isa, abits);
  // Every channel is in exactly one group or constant; the pruned ones constant.
  std::vector<int> seen(static_cast<size_t>(sc.s.out_c), 0);
  for (const auto& ch : gc.group_channels())
    for (int64_t c : ch) {
      ++seen[c];
      EXPECT_NE(bits[c], 0) << "pruned channel " << c << " computed";
    }
  for (int64_t c : gc.constant_channels()) {
    ++seen[c];
    EXPECT_EQ(bits[c], 0) << "channel " << c;
  }
  for (int64_t c = 0; c < sc.s.out_c; ++c) EXPECT_EQ(seen[c], 1) << "channel " << c;
  for (const sq::PreparedConv2d& g : gc.groups())
    EXPECT_EQ(sq::isa_name(g.kernel().isa), std::string(ic.name)) << g.kernel_name();
  // Garbage first: every plane must be written.
  std::vector<uint8_t> got(want.size(), 0xA5);
  for (int rep = 0; rep < 2; ++rep) {  // twice: the constant planes are rewritten every run
    gc.run(x.data(), got.data());
    ASSERT_EQ(got, want) << gc.kernel_names();
    std::fill(got.begin(), got.end(), 0x5A);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, EngineChannelGroups,
                         ::testing::Combine(::testing::ValuesIn(kShapes),
                                            ::testing::ValuesIn(kIsas), ::testing::Values(4, 8)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).name) + "_" +
                                  std::get<1>(info.param).name + "_a" +
                                  std::to_string(std::get<2>(info.param));
                         });

// The plan on AVX2 at 8-bit activations, where the widths' kernels differ (avx2_madd16 for 8-bit
// weights, avx2_maddubs_i16 for <= 4 bits at 8-bit activations: flush 8) and the cost model's
// choice is clear: 16 wide + 48 narrow channels split; one wide channel among 15 narrow does not
// (one tile either way); 3 wide + 29 narrow split with 13 narrow channels filling the wide
// group's tile (2 tiles, not 3).
TEST(EngineChannelGroups, SplitsWhereACheaperKernelPays) {
  if (!sq::cpu_has_avx2()) GTEST_SKIP() << "this CPU lacks AVX2";
  auto plan = [](int wide, int narrow) {
    std::mt19937_64 rng(5);
    const sq::ConvShape s{32, 8, 8, wide + narrow, 3, 1, 1, 1};
    std::vector<int> bits(static_cast<size_t>(wide + narrow), 4);
    for (int k = 0; k < wide; ++k) bits[static_cast<size_t>(k * (wide + narrow) / wide)] = 8;
    std::vector<uint8_t> x;
    const sq::IntLayer L = mixed_layer(s, bits, 8, rng, x);
    sq::GroupedConv2d gc = sq::prepare_conv2d_grouped(s, L, sq::Isa::Avx2, 8);
    std::vector<uint8_t> want(s.out_size()), got(s.out_size());
    sq::conv2d_u8_ref(s, L, x.data(), want.data());
    gc.run(x.data(), got.data());
    EXPECT_EQ(got, want);
    return gc.kernel_names();
  };
  EXPECT_EQ(plan(16, 48), "avx2_madd16 x16 + avx2_maddubs_i16 x48");
  EXPECT_EQ(plan(1, 15), "avx2_madd16");
  EXPECT_EQ(plan(3, 29), "avx2_madd16 x16 + avx2_maddubs_i16 x16");
  EXPECT_EQ(plan(0, 32), "avx2_maddubs_i16");
}

// Every channel pruned: no kernel runs, every plane is its bias's constant; a layer with
// one live channel among pruned ones computes that one.
TEST(EngineChannelGroups, PrunedChannelsAreConstants) {
  std::mt19937_64 rng(9);
  const sq::ConvShape s{8, 6, 6, 20, 3, 1, 1, 1};
  for (int live : {0, 1}) {
    std::vector<int> bits(20, 0);
    if (live) bits[7] = 3;
    std::vector<uint8_t> x;
    sq::IntLayer L = mixed_layer(s, bits, 8, rng, x);
    // Outputs 128 + (37c − 300)/10: distinct per channel, none clamped.
    L.out_zero_point = 128;
    L.out_lo = 0;
    L.out_hi = 255;
    for (int64_t c = 0; c < 20; ++c) {
      L.bias[c] = static_cast<int32_t>(c * 37) - 300;
      L.requant[c] = sq::quantize_multiplier(0.1);
    }
    std::vector<uint8_t> want(s.out_size()), got(s.out_size(), 0xEE);
    sq::conv2d_u8_ref(s, L, x.data(), want.data());
    sq::GroupedConv2d gc = sq::prepare_conv2d_grouped(s, L, sq::Isa::Auto, 8);
    EXPECT_EQ(gc.groups().size(), static_cast<size_t>(live));
    EXPECT_EQ(gc.constant_channels().size(), static_cast<size_t>(20 - live));
    gc.run(x.data(), got.data());
    EXPECT_EQ(got, want);
    // The constants are not all one value (the biases differ): a wrong channel would show.
    std::vector<uint8_t> v = gc.constant_values();
    std::sort(v.begin(), v.end());
    EXPECT_GT(std::unique(v.begin(), v.end()) - v.begin(), 10);
  }
  // The checks of the whole layer still apply with every channel pruned.
  std::vector<uint8_t> x;
  sq::IntLayer L = mixed_layer(s, std::vector<int>(20, 0), 8, rng, x);
  EXPECT_NE(sqtest::error_of([&] {
              sq::prepare_conv2d_grouped(s, L, sq::Isa::Auto, 9);
            }).find("activation bits"),
            std::string::npos);
  L.out_node = -1;
  L.weight_scales.assign(20, 1.0f);
  EXPECT_NE(sqtest::error_of([&] {
              sq::prepare_conv2d_grouped(s, L, sq::Isa::Auto, 8);
            }).find("float output"),
            std::string::npos);
}

// A channel subset names distinct channels of the layer.
TEST(EngineChannelGroups, SubsetIsChecked) {
  std::mt19937_64 rng(3);
  const sq::ConvShape s{4, 5, 5, 6, 3, 1, 1, 1};
  std::vector<uint8_t> x;
  const sq::IntLayer L = mixed_layer(s, std::vector<int>(6, 4), 8, rng, x);
  const sq::ConvMicroKernel& k = sq::conv_kernel("portable");
  for (const std::vector<int64_t>& bad :
       {std::vector<int64_t>{}, std::vector<int64_t>{1, 1}, std::vector<int64_t>{6}}) {
    EXPECT_NE(sqtest::error_of([&] { sq::prepare_conv2d_u8(s, L, k, 8, bad); }).find("channel"),
              std::string::npos);
  }
  // Channels 4, 1 only: the others' planes untouched.
  sq::PreparedConv2d c = sq::prepare_conv2d_u8(s, L, k, 8, {4, 1});
  std::vector<uint8_t> want(s.out_size()), got(s.out_size(), 0x33);
  sq::conv2d_u8_ref(s, L, x.data(), want.data());
  c.run(x.data(), got.data());
  const int64_t pix = s.out_h() * s.out_w();
  for (int64_t ch = 0; ch < 6; ++ch)
    for (int64_t p = 0; p < pix; ++p)
      EXPECT_EQ(got[ch * pix + p], (ch == 4 || ch == 1) ? want[ch * pix + p] : 0x33)
          << "channel " << ch;
}

// The graph executor on zoo models whose every layer mixes 0/2/4/8-bit channels (first and last
// layers too: the logits layer, the convs feeding residual adds): the optimized plan equals the
// all-reference plan bit for bit, on every tier this CPU has, and pruned channels are planned as
// constants.
struct ZooCase {
  const char* name;
  sq::Shape input;
};
void PrintTo(const ZooCase& c, std::ostream* os) { *os << c.name; }
const ZooCase kZoo[] = {{"resnet8", {3, 12, 12}},
                        {"resnet20", {1, 12, 12}},
                        {"lenet5", {1, 28, 28}},
                        {"mlp", {1, 12, 12}},
                        {"mobilenetv2", {3, 16, 16}}};

class GraphExecutorChannelGroups : public ::testing::TestWithParam<std::tuple<ZooCase, IsaCase>> {};

TEST_P(GraphExecutorChannelGroups, EqualsTheReferencePlanExactly) {
  const auto [zc, ic] = GetParam();
  if (!cpu_runs(ic.isa)) GTEST_SKIP() << "this CPU lacks " << ic.name;
  sq::QuantModel qm = sqtest::synthetic_qmodel(zc.name, zc.input, 10, 13);
  sqtest::set_channel_bits(qm, {0, 2, 4, 8, 8}, 17);
  const sq::IntModel im = sq::integerize(qm);
  sq::GraphExecutor ref = sq::GraphExecutor::prepare(qm.graph, im, sq::Isa::Reference);
  sq::GraphExecutor fast = sq::GraphExecutor::prepare(qm.graph, im, ic.isa);
  // Without channel groups (the plan before them, for measurements): one kernel a layer.
  sq::GraphExecutor whole = sq::GraphExecutor::prepare(qm.graph, im, ic.isa, false);
  int pruned = 0;
  for (const std::string& line : fast.describe())
    pruned += line.find("pruned x") != std::string::npos;
  EXPECT_GT(pruned, 0) << "no layer planned pruned channels";
  for (const std::string& line : whole.describe())
    EXPECT_EQ(line.find(" x"), std::string::npos) << line;
  const int n = 8;
  const auto imgs = sqtest::random_images(n, ref.input_size(), 19);
  int spread = 0;
  for (int s = 0; s < n; ++s) {
    std::vector<float> want(10), got(10);
    ref.run(imgs.data() + s * ref.input_size(), want.data());
    fast.run(imgs.data() + s * ref.input_size(), got.data());
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), sizeof(float) * 10)) << "sample " << s;
    whole.run(imgs.data() + s * ref.input_size(), got.data());
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), sizeof(float) * 10)) << "whole, sample " << s;
    spread += std::any_of(want.begin(), want.end(), [&](float v) { return v != want[0]; });
  }
  EXPECT_GT(spread, 0) << "constant logits";
}

INSTANTIATE_TEST_SUITE_P(Zoo, GraphExecutorChannelGroups,
                         ::testing::Combine(::testing::ValuesIn(kZoo), ::testing::ValuesIn(kIsas)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).name) + "_" +
                                  std::get<1>(info.param).name;
                         });

}  // namespace
