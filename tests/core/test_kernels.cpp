// The optimized conv2d / linear against the reference, exactly: every kernel of the micro-kernel
// table (sq::conv_kernels(); one whose ISA this CPU lacks is reported as skipped, naming the ISA)
// × every (weight bits, activation bits) in 2..8 × 2..8 × shapes that take every staging mode,
// the edges of each kernel's exact range, and the dispatch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <tuple>

#include "engine_cases.h"
#include "sigmaquant/engine.h"
#include "sigmaquant/error.h"
#include "test_util.h"

namespace {

using sqtest::identity_layer;
using sqtest::random_input;
using sqtest::random_layer;
using sqtest::spread_outputs;

using W = sq::Window2d;

struct Case {
  const char* name;
  sq::ConvShape s;
};
const Case kShapes[] = {
    {"rgb3x3pad", {3, 8, 8, 5, 3, 1, 1, 1}},  // im2col (3 channels)
    {"stride2odd", {17, 9, 7, 19, 3, 2, 1, 1}},
    {"pointwise", {7, 5, 5, 16, 1, 1, 0, 1}},
    {"resnetish", {16, 10, 10, 16, 3, 1, 1, 1}},
    {"k2s2", {5, 6, 6, 33, 2, 2, 0, 1}},
    {"bigpad", {2, 3, 4, 3, 3, 1, 2, 1}},
    {"linear", {37, 1, 1, 10, 1, 1, 0, 1}},
    // The direct (HWC) path: 1x1 stride 2 over a row of 9 (only the pixels read, element by
    // element), channels 16 + 4 by element (padding 0), 35 channels padded to 36 with stride 2,
    // and resnet20's first stage (28 = 3 transposes + an overlapping one). Pixel counts 25, 77,
    // 48, 784 leave 1, 5, 0, 4 pixels in the last 6-pixel tile (and 1, 5, 0, 4 in 12); more than
    // 16 output channels, so that a tile without the near-INT32_MAX bias (spread_outputs) takes
    // the int32 epilogue.
    {"direct1x1s2", {32, 9, 9, 24, 1, 2, 0, 1}},
    {"direct3x3p0", {20, 9, 13, 17, 3, 1, 0, 1}},
    {"direct3x3s2", {35, 12, 16, 40, 3, 2, 1, 1}},
    {"resnet20stage1", {16, 28, 28, 32, 3, 1, 1, 1}},
    // 1x1 stride 2, only the pixels read: by stride-2 transposes (rows of 28 → 14, the last block
    // overlapping; 34 → 17), by element where a 16-byte load would pass the row (33 → 17), and
    // stride 3.
    {"shortcut1x1s2", {16, 28, 28, 32, 1, 2, 0, 1}},
    {"shortcut1x1s2w34", {32, 5, 34, 20, 1, 2, 0, 1}},
    {"shortcut1x1s2w33", {16, 5, 33, 20, 1, 2, 0, 1}},
    {"pointwise1x1s3", {8, 10, 10, 16, 1, 3, 0, 1}},
    // One input channel: the plane (a tap group = consecutive kx of a row, the taps past k against
    // zero weights, the last reading past the plane into its slack), with stride, and 1x1.
    {"stem", {1, 28, 28, 16, 3, 1, 1, 1}},
    {"single", {1, 3, 3, 1, 3, 1, 0, 1}},
    {"stem3x3s2", {1, 9, 8, 7, 3, 2, 1, 1}},
    {"plane1x1", {1, 5, 5, 4, 1, 1, 0, 1}},
    {"stem5x5", {1, 11, 9, 5, 5, 2, 2, 1}},  // the plane would add 43 % taps: im2col
    // Non-square windows (issue 15), on every staging: Inception's 1×7 / 7×1 and 1×3 / 3×1 with
    // per-axis padding (direct HWC, and im2col for 3 channels), stride (2, 1) and (1, 2),
    // dilation (HWC tables; im2col; the plane with a row dilation, and im2col where the plane
    // cannot take a column dilation), unequal padding per side (TF's SAME: bottom/right only),
    // and a 1×1 of stride (2, 1), which the stride-subsampled HWC copy does not take.
    {"k1x7", {16, 9, 10, 20, W::of(1, 7, 1, 1, 0, 3), 1}},
    {"k7x1", {16, 10, 9, 20, W::of(7, 1, 1, 1, 3, 0), 1}},
    {"k1x3rgb", {3, 7, 8, 5, W::of(1, 3, 1, 1, 0, 1), 1}},
    {"k3x1s21", {17, 9, 7, 19, W::of(3, 1, 2, 1, 1, 0), 1}},
    {"k3x3s12", {16, 8, 12, 17, W::of(3, 3, 1, 2, 1, 1), 1}},
    {"dilated3x3", {16, 11, 10, 18, W::of(3, 3, 1, 1, 2, 2, 2, 2), 1}},
    {"dilated21rgb", {3, 11, 10, 5, W::of(3, 3, 1, 1, 2, 1, 2, 1), 1}},
    {"dilated_s2", {20, 13, 12, 17, W::of(3, 2, 2, 2, 2, 1, 2, 3), 1}},
    {"plane_dilh", {1, 12, 11, 5, W::of(3, 3, 1, 1, 2, 1, 2, 1), 1}},
    {"plane_dilw", {1, 12, 11, 5, W::of(3, 3, 1, 1, 1, 2, 1, 2), 1}},
    {"stem1x7", {1, 9, 12, 8, W::of(1, 7, 1, 1, 0, 3), 1}},
    {"same_k2", {16, 7, 9, 20, W{2, 2, 1, 1, 0, 0, 1, 1, 1, 1}, 1}},
    {"asym_pads", {5, 8, 9, 6, W{3, 3, 2, 1, 0, 2, 2, 1, 1, 1}, 1}},
    {"pointwise_s21", {16, 8, 9, 16, W::of(1, 1, 2, 1, 0, 0), 1}},
};

// The largest |w| <= w_cap at which kernel k supports activations up to x_max (0: none).
int32_t largest_supported(const sq::ConvMicroKernel& k, int32_t w_cap, int32_t x_max) {
  for (int32_t w = w_cap; w >= 1; --w)
    if (k.supports(w, x_max)) return w;
  return 0;
}

// One shape's layer, input and reference output.
struct RefCase {
  sq::IntLayer layer;
  std::vector<uint8_t> x, want;
};

// The cases of one (weight bits, activation bits, weight cap) over kShapes, made once and shared
// by every kernel's test (the reference is most of the time). The weights are clamped to
// ±w_cap before the requantization is calibrated.
const std::vector<RefCase>& ref_cases(int wbits, int abits, int32_t w_cap) {
  static std::map<std::tuple<int, int, int32_t>, std::vector<RefCase>> cache;
  std::vector<RefCase>& cases = cache[{wbits, abits, w_cap}];
  if (!cases.empty()) return cases;
  std::mt19937_64 rng(1000 + 16 * wbits + abits);
  for (const Case& c : kShapes) {
    RefCase rc;
    rc.layer = random_layer(c.s, wbits, abits, rng);
    for (auto& w : rc.layer.weights) w = std::clamp(w, -w_cap, w_cap);
    rc.x = random_input(c.s, abits, rng);
    spread_outputs(rc.layer, c.s, rc.x, abits, rng);
    rc.want.resize(c.s.out_size());
    sq::conv2d_u8_ref(c.s, rc.layer, rc.x.data(), rc.want.data());
    cases.push_back(std::move(rc));
  }
  return cases;
}

std::string kernel_param_name(const sq::ConvMicroKernel* k) { return k->name; }

using KernelBits = std::tuple<const sq::ConvMicroKernel*, int, int>;  // kernel, w bits, a bits
class EngineKernels : public ::testing::TestWithParam<KernelBits> {};

// At every bit pair: where the kernel supports the layer's weights it equals the reference; where
// it does not, prepare refuses the layer and the kernel is tested on the weights clamped to the
// largest magnitude it supports at these activation bits.
TEST_P(EngineKernels, EqualTheReferenceExactly) {
  const auto [k, wbits, abits] = GetParam();
  if (!k->cpu_has())
    GTEST_SKIP() << "this CPU lacks " << sq::isa_name(k->isa) << ": kernel " << k->name
                 << " not run";
  const int32_t w_full = 1 << (wbits - 1),
                x_max = (1 << abits) - 1;  // random_layer reaches -w_full
  int32_t w_cap = w_full;
  if (!k->supports(w_full, x_max)) {
    const RefCase& full = ref_cases(wbits, abits, w_full)[0];
    EXPECT_NE(sqtest::error_of([&] {
                sq::prepare_conv2d_u8(kShapes[0].s, full.layer, *k, abits);
              }).find("is not exact"),
              std::string::npos);
    w_cap = largest_supported(*k, w_full, x_max);
    if (w_cap == 0) GTEST_SKIP() << k->name << " supports no weights at " << abits << " bits";
  }
  const std::vector<RefCase>& cases = ref_cases(wbits, abits, w_cap);
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = kShapes[i];
    const RefCase& rc = cases[i];
    // The random requantization spreads the outputs (a test of all-clamped outputs is weak).
    std::vector<uint8_t> distinct = rc.want;
    std::sort(distinct.begin(), distinct.end());
    const auto n_distinct = std::unique(distinct.begin(), distinct.end()) - distinct.begin();
    if (c.s.out_size() >= 64 && abits >= 4) {
      EXPECT_GE(n_distinct, 4) << c.name;
    }
    sq::PreparedConv2d conv = sq::prepare_conv2d_u8(c.s, rc.layer, *k, abits);
    ASSERT_STREQ(conv.kernel_name(), k->name);
    std::vector<uint8_t> got(c.s.out_size(), 0xAB);
    conv.run(rc.x.data(), got.data());
    EXPECT_EQ(got, rc.want) << c.name << " (|w| <= " << w_cap << ")";
    // A second run on the same prepared object (scratch reused) gives the same.
    std::fill(got.begin(), got.end(), 0xCD);
    conv.run(rc.x.data(), got.data());
    EXPECT_EQ(got, rc.want) << c.name << " (second run)";
  }
}

// Short last tiles (ConvMicroKernel::tail): for every kernel with them, layers of 12 + r and r
// pixels for every r in 1 .. nr − 1, at 8 and 3 bits, equal the reference — the last tile
// computes its r pixels alone and the full tiles before it are untouched.
TEST(EngineKernelsTail, ShortTilesEqualTheReference) {
  int kernels = 0;
  for (const sq::ConvMicroKernel* k : sq::conv_kernels()) {
    if (!k->tail || !k->cpu_has()) continue;
    ++kernels;
    std::mt19937_64 rng(77);
    for (int bits : {8, 3})
      for (int r = 1; r < k->nr; ++r)
        for (int64_t w : {int64_t{k->nr} + r, int64_t{r}}) {
          const sq::ConvShape s{24, 1, w, 20, 1, 1, 0, 1};
          sq::IntLayer L = random_layer(s, bits, 8, rng);
          const std::vector<uint8_t> x = random_input(s, 8, rng);
          spread_outputs(L, s, x, 8, rng);
          std::vector<uint8_t> want(s.out_size()), got(s.out_size(), 0xAB);
          sq::conv2d_u8_ref(s, L, x.data(), want.data());
          if (!k->supports(1 << (bits - 1), 255)) continue;
          sq::PreparedConv2d conv = sq::prepare_conv2d_u8(s, L, *k, 8);
          conv.run(x.data(), got.data());
          EXPECT_EQ(got, want) << k->name << ": " << w << " pixels, w" << bits;
        }
  }
  if (kernels == 0) GTEST_SKIP() << "no kernel with short tiles runs on this CPU";
}

// The accumulator mode (conv → ReLU → average pooling, the float logits): on every tier this CPU
// runs, at 8 and 4 bits, every shape's run_acc equals conv2d_acc_ref's integers, for a layer
// whose output is no quantization point; run() on such a conv is refused.
TEST(EngineKernelsAcc, RunAccEqualsTheReferenceAccumulators) {
  int tiers = 0;
  for (const sqtest::IsaCase& ic : sqtest::kIsas) {
    if (!sqtest::cpu_runs(ic)) continue;
    ++tiers;
    for (int bits : {8, 4}) {
      std::mt19937_64 rng(77 + bits);
      for (const Case& c : kShapes) {
        sq::IntLayer L = random_layer(c.s, bits, bits, rng);
        L.out_node = -1;  // a float output: no requantization needed
        L.requant.clear();
        L.weight_scales.assign(static_cast<size_t>(c.s.out_c), 0.01f);
        const std::vector<uint8_t> x = random_input(c.s, bits, rng);
        std::vector<int64_t> want(c.s.out_size()), got(c.s.out_size(), -7);
        sq::conv2d_acc_ref(c.s, L, x.data(), want.data());
        sq::PreparedConv2d conv = sq::prepare_conv2d_acc(c.s, L, ic.isa, bits);
        conv.run_acc(x.data(), got.data());
        EXPECT_EQ(got, want) << ic.name << " " << c.name << " at " << bits << " bits";
        std::vector<uint8_t> y(c.s.out_size());
        EXPECT_THROW(conv.run(x.data(), y.data()), sq::Error);
      }
    }
  }
  EXPECT_GE(tiers, 1);
}

// Grouped convs as group tiles (ResNeXt's and RegNet's): ⌊16 / ocg⌋ consecutive groups a dense
// part with block-diagonal weights, on every tier this CPU runs — 4, 8, 16 and 32 outputs a
// group, 3 (16 not a multiple), groups not filling the last part, strided and padded windows,
// 8 and 4 bits — equal conv2d_u8_ref exactly; depthwise-like 1-input groups too.
TEST(EngineKernelsGrouped, GroupTilesEqualTheReference) {
  struct G {
    const char* name;
    sq::ConvShape s;
  };
  const G shapes[] = {
      {"resnext_s1", {32, 9, 9, 32, 3, 1, 1, 8}},  // 4 in, 4 out a group: 2 parts of 4
      {"regnet", {48, 8, 8, 48, 3, 2, 1, 6}},      // 8 a group: 3 parts of 2
      {"g16", {64, 6, 7, 64, 3, 1, 1, 4}},         // 16: a part per group
      {"g32", {64, 5, 5, 64, 3, 1, 1, 2}},         // 32: two tiles a part
      {"ocg3", {10, 7, 7, 15, 3, 1, 1, 5}},        // 2 in, 3 out: 5 groups a part
      {"ragged", {40, 6, 6, 40, 1, 1, 0, 5}},      // 8 a group, 5 groups: the last part 1
      {"mult", {8, 7, 7, 32, 3, 1, 1, 8}},         // 1 input, 4 outputs a group
  };
  int tiers = 0;
  for (const sqtest::IsaCase& ic : sqtest::kIsas) {
    if (!sqtest::cpu_runs(ic)) continue;
    ++tiers;
    for (int bits : {8, 4}) {
      std::mt19937_64 rng(91 + bits);
      for (const G& g : shapes) {
        sq::IntLayer L = random_layer(g.s, bits, bits, rng);
        const std::vector<uint8_t> x = random_input(g.s, bits, rng);
        spread_outputs(L, g.s, x, bits, rng);
        std::vector<uint8_t> want(g.s.out_size()), got(g.s.out_size(), 0xAB);
        sq::conv2d_u8_ref(g.s, L, x.data(), want.data());
        sq::GroupedConv2d conv = sq::prepare_conv2d_group_tiles(g.s, L, ic.isa, bits);
        conv.run(x.data(), got.data());
        EXPECT_EQ(got, want) << ic.name << " " << g.name << " at " << bits << " bits ("
                             << conv.kernel_names() << ")";
      }
    }
  }
  EXPECT_GE(tiers, 1);
}

INSTANTIATE_TEST_SUITE_P(Engine, EngineKernels,
                         ::testing::Combine(::testing::ValuesIn(sq::conv_kernels()),
                                            ::testing::Range(2, 9), ::testing::Range(2, 9)),
                         [](const auto& info) {
                           return kernel_param_name(std::get<0>(info.param)) + "_w" +
                                  std::to_string(std::get<1>(info.param)) + "a" +
                                  std::to_string(std::get<2>(info.param));
                         });

class EngineKernelLimits : public ::testing::TestWithParam<const sq::ConvMicroKernel*> {};

#define SQ_SKIP_MISSING(k)                                                                \
  if (!(k)->cpu_has())                                                                    \
  GTEST_SKIP() << "this CPU lacks " << sq::isa_name((k)->isa) << ": kernel " << (k)->name \
               << " not run"

// The edge of each kernel's exact range: every activation at its maximum against weights of the
// largest magnitude the kernel supports there, all of one sign (every partial sum, e.g. an int16
// lane just before a widening, at its extreme) and then mixed, over a reduction long enough for
// many widenings. Beyond it (one more), prepare refuses.
TEST_P(EngineKernelLimits, ExactAtTheEdgeOfItsRange) {
  const sq::ConvMicroKernel* k = GetParam();
  SQ_SKIP_MISSING(k);
  const sq::ConvShape s{64, 5, 5, 20, 3, 1, 1, 1};  // K = 576, as resnet20's last stage
  for (int abits : {2, 4, 8}) {
    const int32_t x_max = (1 << abits) - 1, wm = largest_supported(*k, 128, x_max);
    ASSERT_GT(wm, 0) << k->name;
    if (wm < 128) {
      sq::IntLayer over = identity_layer(std::vector<int32_t>(s.weights(), -(wm + 1)),
                                         std::vector<int32_t>(20, 7), 0);
      EXPECT_THROW(sq::prepare_conv2d_u8(s, over, *k, abits), sq::Error) << "w=" << wm + 1;
    }
    for (int variant = 0; variant < 3; ++variant) {  // all −wm, all +wm (127 at most), mixed
      const int32_t wext = variant == 0 ? -wm : std::min(wm, 127);
      sq::IntLayer L =
          identity_layer(std::vector<int32_t>(s.weights(), wext), std::vector<int32_t>(20, 7), 0);
      if (variant == 2)
        for (size_t i = 0; i < L.weights.size(); i += 3) L.weights[i] = -wm;
      L.requant.assign(20, sq::quantize_multiplier(100.0 / (576.0 * x_max * wm)));
      L.out_zero_point = 128;
      std::vector<uint8_t> x(s.in_size(), static_cast<uint8_t>(x_max)), want(s.out_size()),
          got(s.out_size());
      x[3] = 0;
      sq::conv2d_u8_ref(s, L, x.data(), want.data());
      sq::PreparedConv2d conv = sq::prepare_conv2d_u8(s, L, *k, abits);
      conv.run(x.data(), got.data());
      EXPECT_EQ(got, want) << "w=" << wext << " a=" << abits;
    }
  }
}

// With M = 1 and the zero point mid-range every accumulator maps to its own output, so an
// off-by-one anywhere in the sum shows (the random cases above scale it down); M = 1/2 and 1/4
// make exact ties (a = ±1.5 · 2^k), which must round half up in every epilogue.
TEST_P(EngineKernelLimits, AccumulatorsExactAtUnitScaleAndTies) {
  const sq::ConvMicroKernel* k = GetParam();
  SQ_SKIP_MISSING(k);
  std::mt19937_64 rng(9);
  for (double m : {1.0, 0.5, 0.25})
    for (sq::ConvShape s :
         {sq::ConvShape{7, 5, 6, 21, 1, 1, 0, 1}, sq::ConvShape{2, 7, 5, 17, 3, 2, 1, 1},
          sq::ConvShape{1, 4, 4, 3, 3, 1, 1, 1}}) {
      sq::IntLayer L = random_layer(s, 2, 2, rng);
      L.requant.assign(s.out_c, sq::quantize_multiplier(m));
      for (auto& b : L.bias) b = static_cast<int32_t>(rng() % 41) - 20;
      L.out_zero_point = 128;
      L.out_lo = 0;
      L.out_hi = 255;
      const auto x = random_input(s, 2, rng);
      std::vector<uint8_t> want(s.out_size()), got(s.out_size());
      sq::conv2d_u8_ref(s, L, x.data(), want.data());
      for (uint8_t v : want) ASSERT_TRUE(v > 0 && v < 255);  // nothing clamped
      sq::PreparedConv2d conv = sq::prepare_conv2d_u8(s, L, *k, 2);
      conv.run(x.data(), got.data());
      EXPECT_EQ(got, want) << " M=" << m;
    }
}

// Requantization shifts outside the vector epilogues' range (1..62): a tile holding such a
// channel takes the scalar epilogue whatever the kernel, the other tiles the vector ones. M =
// 2^31 (shift −1: saturates), 2^−40 (shift 70: rounds to 0) and ordinary multipliers side by side.
TEST_P(EngineKernelLimits, ScalarEpilogueForExtremeShifts) {
  const sq::ConvMicroKernel* k = GetParam();
  SQ_SKIP_MISSING(k);
  std::mt19937_64 rng(21);
  const sq::ConvShape s{9, 6, 5, 37, 3, 1, 1, 1};  // tiles of channels 0-15, 16-31, 32-36
  sq::IntLayer L = random_layer(s, 4, 4, rng);
  const auto x = random_input(s, 4, rng);
  spread_outputs(L, s, x, 4, rng);
  L.requant[2] = sq::quantize_multiplier(std::ldexp(1.0, 31));
  L.requant[20] = sq::quantize_multiplier(std::ldexp(1.0, -40));
  ASSERT_LT(L.requant[2].shift, 1);
  ASSERT_GT(L.requant[20].shift, 62);
  std::vector<uint8_t> want(s.out_size()), got(s.out_size());
  sq::conv2d_u8_ref(s, L, x.data(), want.data());
  sq::PreparedConv2d conv = sq::prepare_conv2d_u8(s, L, *k, 4);
  conv.run(x.data(), got.data());
  EXPECT_EQ(got, want);
}

INSTANTIATE_TEST_SUITE_P(Engine, EngineKernelLimits, ::testing::ValuesIn(sq::conv_kernels()),
                         [](const auto& info) { return kernel_param_name(info.param); });

// The table itself: names say the tier, tiles fit the epilogue, every tier has a kernel exact for
// all 8-bit layers (so the dispatch never fails), and lookups by name.
TEST(EngineKernelTable, EntriesAreConsistent) {
  std::map<sq::Isa, bool> tier_covers_all;
  for (const sq::ConvMicroKernel* k : sq::conv_kernels()) {
    const std::string name = k->name, isa = sq::isa_name(k->isa);
    EXPECT_TRUE(name == isa || name.rfind(isa + "_", 0) == 0) << name;
    EXPECT_EQ(k->mr, 16) << k->name;
    EXPECT_EQ(k->nr % 6, 0) << k->name;
    EXPECT_LE(k->nr, sq::PreparedConv2d::kMaxPixTile) << k->name;
    EXPECT_EQ(k->kr, k->layout == sq::WeightLayout::Quad8 ? 4 : 2) << k->name;
    tier_covers_all[k->isa] = tier_covers_all[k->isa] || k->supports(128, 255);
    EXPECT_EQ(&sq::conv_kernel(k->name), k);
  }
  for (sq::Isa isa : {sq::Isa::Portable, sq::Isa::Avx2, sq::Isa::AvxVnni, sq::Isa::Avx512Vnni})
    EXPECT_TRUE(tier_covers_all[isa]) << sq::isa_name(isa);
  EXPECT_NE(sqtest::error_of([] { sq::conv_kernel("avx9_magic"); }).find("avx2_maddubs"),
            std::string::npos);
}

// The dispatch: a tier and the layer's bounds pick the kernel (Auto: the best tier the CPU has),
// and a tier or kernel the CPU lacks is refused rather than run.
TEST(EngineKernelDispatch, TierAndBoundsPickTheKernel) {
  std::mt19937_64 rng(12);
  const sq::ConvShape s{16, 6, 6, 20, 3, 1, 1, 1};
  sq::IntLayer w7 = random_layer(s, 7, 8, rng);  // |w| <= 64
  w7.in_zero_point = 3;                          // a code at every activation width below
  sq::IntLayer w8 = w7;
  w8.weights[3] = -65;
  sq::IntLayer w4 = random_layer(s, 4, 4, rng);
  sq::IntLayer w2 = random_layer(s, 2, 8, rng);
  w4.in_zero_point = w2.in_zero_point = 3;
  const auto kernel_of = [&](const sq::IntLayer& L, sq::Isa isa, int in_bits) {
    return std::string(sq::prepare_conv2d_u8(s, L, isa, in_bits).kernel_name());
  };
  EXPECT_EQ(kernel_of(w8, sq::Isa::Portable, 8), "portable");
  if (sq::cpu_has_avx2()) {
    EXPECT_EQ(kernel_of(w7, sq::Isa::Avx2, 8), "avx2_maddubs");
    EXPECT_EQ(kernel_of(w8, sq::Isa::Avx2, 8), "avx2_madd16");
    EXPECT_EQ(kernel_of(w8, sq::Isa::Avx2, 7), "avx2_maddubs");  // 2·65·127 fits int16
    EXPECT_EQ(kernel_of(w4, sq::Isa::Avx2, 4), "avx2_maddubs_i16");
    EXPECT_EQ(kernel_of(w2, sq::Isa::Avx2, 8), "avx2_maddubs_i16");
    EXPECT_EQ(kernel_of(w4, sq::Isa::Avx2, 8), "avx2_maddubs_i16");  // 8·255: 4 groups a widening
    EXPECT_EQ(kernel_of(w7, sq::Isa::Avx2, 5), "avx2_maddubs_i16");  // 64·31: 8 groups a widening
  } else {
    EXPECT_THROW(kernel_of(w7, sq::Isa::Avx2, 8), sq::Error);
  }
  for (sq::Isa isa : {sq::Isa::AvxVnni, sq::Isa::Avx512Vnni}) {
    const bool has = isa == sq::Isa::AvxVnni ? sq::cpu_has_avxvnni() : sq::cpu_has_avx512vnni();
    const std::string name = std::string(sq::isa_name(isa)) + "_dpbusd";
    if (has) {
      EXPECT_EQ(kernel_of(w8, isa, 8), name);
      EXPECT_EQ(kernel_of(w2, isa, 2), name);
    } else {
      EXPECT_THROW(kernel_of(w8, isa, 8), sq::Error) << name;
      EXPECT_NE(sqtest::error_of([&] {
                  sq::prepare_conv2d_u8(s, w8, sq::conv_kernel(name));
                }).find("which this CPU lacks"),
                std::string::npos)
          << name;
    }
  }
  for (const sq::IntLayer* L : {&w7, &w8, &w4, &w2})
    EXPECT_EQ(kernel_of(*L, sq::Isa::Auto, 4), kernel_of(*L, sq::best_isa(), 4));
  EXPECT_EQ(sq::best_isa(), sq::cpu_has_avx512vnni() ? sq::Isa::Avx512Vnni
                            : sq::cpu_has_avxvnni()  ? sq::Isa::AvxVnni
                            : sq::cpu_has_avx2()     ? sq::Isa::Avx2
                                                     : sq::Isa::Portable);
  EXPECT_THROW(kernel_of(w7, sq::Isa::Reference, 8), sq::Error);
  EXPECT_THROW(kernel_of(w7, sq::Isa::Auto, 0), sq::Error);  // activation bits 1..8
  EXPECT_THROW(kernel_of(w7, sq::Isa::Auto, 9), sq::Error);
  sq::IntLayer zp = w4;
  zp.in_zero_point = 16;  // beyond 4-bit codes
  EXPECT_THROW(kernel_of(zp, sq::Isa::Auto, 4), sq::Error);
  // What Auto runs equals the reference too.
  const auto x = random_input(s, 8, rng);
  spread_outputs(w8, s, x, 8, rng);
  std::vector<uint8_t> want(s.out_size()), got(s.out_size());
  sq::conv2d_u8_ref(s, w8, x.data(), want.data());
  sq::PreparedConv2d conv = sq::prepare_conv2d_u8(s, w8);
  conv.run(x.data(), got.data());
  EXPECT_EQ(got, want) << conv.kernel_name();
}

TEST(EngineKernelDispatch, RejectsWhatItDoesNotRun) {
  std::mt19937_64 rng(5);
  sq::ConvShape grouped{4, 4, 4, 4, 3, 1, 1, 2};
  sq::IntLayer L = random_layer(grouped, 4, 8, rng);
  EXPECT_THROW(sq::prepare_conv2d_u8(grouped, L), sq::Error);
  sq::ConvShape s{4, 4, 4, 4, 3, 1, 1, 1};
  L = random_layer(s, 4, 8, rng);
  L.out_node = -1;
  EXPECT_THROW(sq::prepare_conv2d_u8(s, L), sq::Error);
  L.out_node = 1;
  L.weights.pop_back();
  EXPECT_THROW(sq::prepare_conv2d_u8(s, L), sq::Error);
  L = random_layer(s, 4, 8, rng);
  L.weights[2] = 200;  // beyond 8 bits
  EXPECT_THROW(sq::prepare_conv2d_u8(s, L), sq::Error);
  EXPECT_THROW(sq::check_conv(sq::ConvShape{3, 4, 4, 4, 3, 1, 1, 2}), sq::Error);
  EXPECT_THROW(sq::check_conv(sq::ConvShape{3, 2, 2, 4, 5, 1, 1, 1}), sq::Error);
  // The prepared linear is the 1x1 conv over a 1x1 image.
  sq::ConvShape lin{37, 1, 1, 10, 1, 1, 0, 1};
  L = random_layer(lin, 8, 8, rng);
  const auto x = random_input(lin, 8, rng);
  std::vector<uint8_t> want(10), got(10);
  sq::linear_u8_ref(37, 10, L, x.data(), want.data());
  sq::PreparedConv2d fc = sq::prepare_linear_u8(37, 10, L);
  fc.run(x.data(), got.data());
  EXPECT_EQ(got, want);
}

}  // namespace
