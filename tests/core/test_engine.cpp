// The integer engine: bit packing round trips, reference kernels by hand, and the optimized
// conv2d/linear against the reference exactly: every micro-kernel (those whose ISA this CPU lacks
// are reported as skipped) × (weight bits, activation bits) × shapes, and the ISA dispatch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <tuple>

#include "sigmaquant/engine.h"
#include "sigmaquant/error.h"
#include "sigmaquant/qmodel.h"
#include "test_util.h"

namespace {

// ---------------------------------------------------------------------------------------------
// Packing

int32_t lo_of(int bits) { return bits == 0 ? 0 : bits == 1 ? -1 : -(1 << (bits - 1)); }
int32_t hi_of(int bits) { return bits == 0 ? 0 : bits == 1 ? 1 : (1 << (bits - 1)) - 1; }

std::vector<int32_t> random_codes(size_t n, int bits, std::mt19937_64& rng) {
  std::vector<int32_t> v(n);
  const int32_t lo = lo_of(bits), hi = hi_of(bits);
  for (auto& x : v) {
    if (bits == 1) {
      x = rng() % 2 ? 1 : -1;
    } else {
      x = lo + static_cast<int32_t>(rng() % static_cast<uint64_t>(hi - lo + 1));
    }
  }
  // The extremes at both ends, where they fit.
  if (n >= 2) v[0] = lo, v[n - 1] = hi;
  return v;
}

class EnginePack : public ::testing::TestWithParam<int> {};

TEST_P(EnginePack, RoundTripsAwkwardLengths) {
  const int bits = GetParam();
  std::mt19937_64 rng(100 + bits);
  for (size_t n : {0, 1, 2, 3, 5, 7, 8, 9, 13, 15, 16, 17, 31, 33, 63, 64, 65, 127, 1001}) {
    const auto v = random_codes(n, bits, rng);
    const auto p = sq::pack_bits(v, bits);
    ASSERT_EQ(p.size(), (n * bits + 7) / 8) << "n=" << n;
    EXPECT_EQ(sq::unpack_bits(p, n, bits), v) << "n=" << n;
    // The unused high bits of the last byte are zero.
    if (!p.empty() && (n * bits) % 8) {
      EXPECT_EQ(p.back() >> ((n * bits) % 8), 0) << "n=" << n;
    }
  }
}

TEST_P(EnginePack, RejectsValuesOutOfRange) {
  const int bits = GetParam();
  std::vector<int32_t> v(5, 0);
  if (bits == 1) v.assign(5, 1);
  v[3] = hi_of(bits) + 1;
  EXPECT_THROW(sq::pack_bits(v, bits), sq::Error);
  v[3] = lo_of(bits) - 1;
  EXPECT_THROW(sq::pack_bits(v, bits), sq::Error);
}

INSTANTIATE_TEST_SUITE_P(Engine, EnginePack, ::testing::Range(0, 9),
                         [](const auto& info) { return "w" + std::to_string(info.param); });

TEST(EnginePackLayout, BitOrderByHand) {
  // 2 bits: codes 01 11 00 10, element 0 in the low bits.
  EXPECT_EQ(sq::pack_bits({1, -1, 0, -2}, 2), std::vector<uint8_t>({0x8D}));
  // 3 bits: 011, 100, 001 at stream bits 0-2, 3-5, 6-8: element 2 straddles the byte boundary.
  EXPECT_EQ(sq::pack_bits({3, -4, 1}, 3), std::vector<uint8_t>({0x63, 0x00}));
  EXPECT_EQ(sq::pack_bits({3, -4, -3}, 3), std::vector<uint8_t>({0x63, 0x01}));
  // 1 bit: a sign bit, 1 = -1.
  EXPECT_EQ(sq::pack_bits({1, -1, -1, 1, 1, 1, 1, 1, -1}, 1), std::vector<uint8_t>({0x06, 0x01}));
  // 8 bits: plain two's complement bytes.
  EXPECT_EQ(sq::pack_bits({-128, 127, -1}, 8), std::vector<uint8_t>({0x80, 0x7F, 0xFF}));
  EXPECT_TRUE(sq::pack_bits({0, 0, 0}, 0).empty());
  EXPECT_THROW(sq::pack_bits({1}, 9), sq::Error);
  EXPECT_THROW(sq::pack_bits({1}, 0), sq::Error);
  EXPECT_THROW(sq::unpack_bits(std::vector<uint8_t>(1), 3, 3), sq::Error);  // needs 2 bytes
}

TEST(EnginePackLayout, RowsAtTheirOwnWidths) {
  std::mt19937_64 rng(7);
  const std::vector<int> widths = {0, 1, 2, 3, 4, 5, 6, 7, 8, 3};
  const int64_t cols = 13;
  std::vector<int32_t> w;
  size_t bytes = 0;
  for (int b : widths) {
    auto r = random_codes(cols, b, rng);
    w.insert(w.end(), r.begin(), r.end());
    bytes += (cols * b + 7) / 8;
  }
  const auto p = sq::pack_rows(w, static_cast<int64_t>(widths.size()), cols, widths);
  EXPECT_EQ(p.data.size(), bytes);
  EXPECT_EQ(sq::unpack_rows(p), w);
  EXPECT_THROW(sq::pack_rows(w, 3, cols, {1, 2, 3}), sq::Error);
}

// ---------------------------------------------------------------------------------------------
// Reference kernels by hand

// A layer with identity requantization (M = 1), output zero point 0 and range 0..255.
sq::IntLayer identity_layer(std::vector<int32_t> w, std::vector<int32_t> bias, int32_t zp_in) {
  sq::IntLayer L;
  L.name = "hand";
  L.weights = std::move(w);
  L.bias = std::move(bias);
  L.in_zero_point = zp_in;
  L.out_node = 1;
  L.out_hi = 255;
  L.requant.assign(L.bias.size(), sq::quantize_multiplier(1.0));
  return L;
}

TEST(EngineRef, Conv2dPaddingIsTheZeroPoint) {
  // 1 channel 2x2 input, 2x2 kernel, padding 1 -> 3x3 output; x − zp = [[1, 2], [3, 4]].
  const uint8_t x[4] = {11, 12, 13, 14};
  sq::IntLayer L = identity_layer({1, 2, 3, 4}, {100}, 10);
  sq::ConvShape s{1, 2, 2, 1, 2, 1, 1, 1};
  ASSERT_EQ(s.out_h(), 3);
  uint8_t y[9];
  sq::conv2d_u8_ref(s, L, x, y);
  // Output (oy, ox) sums w[ky][kx] · d[oy+ky−1][ox+kx−1]; padded taps add 0.
  const uint8_t want[9] = {100 + 4,      100 + 3 + 8,          100 + 6,
                           100 + 2 + 12, 100 + 1 + 4 + 9 + 16, 100 + 2 + 12,
                           100 + 6,      100 + 3 + 8,          100 + 4};
  for (int i = 0; i < 9; ++i) EXPECT_EQ(y[i], want[i]) << i;
  float f[9];
  L.out_node = -1;
  L.in_scale = 0.5f;
  L.weight_scales = {0.25f};
  sq::conv2d_f32_ref(s, L, x, f);
  EXPECT_FLOAT_EQ(f[4], 130 * 0.125f);
  EXPECT_THROW(sq::conv2d_u8_ref(s, L, x, y), sq::Error);  // float output
}

TEST(EngineRef, DepthwiseIsPerChannelConvolution) {
  std::mt19937_64 rng(3);
  const int64_t C = 3;
  sq::ConvShape dw{C, 5, 4, C, 3, 2, 1, C};
  std::vector<int32_t> w(dw.weights()), bias(C);
  for (auto& v : w) v = static_cast<int32_t>(rng() % 15) - 7;
  for (auto& v : bias) v = static_cast<int32_t>(rng() % 41) - 20;
  std::vector<uint8_t> x(dw.in_size());
  for (auto& v : x) v = static_cast<uint8_t>(rng() % 16);
  sq::IntLayer L = identity_layer(w, bias, 5);
  L.out_zero_point = 128;
  std::vector<uint8_t> y(dw.out_size());
  sq::conv2d_u8_ref(dw, L, x.data(), y.data());
  const int64_t pix = dw.out_h() * dw.out_w();
  for (int64_t c = 0; c < C; ++c) {
    sq::ConvShape one{1, 5, 4, 1, 3, 2, 1, 1};
    sq::IntLayer Lc = identity_layer({w.begin() + c * 9, w.begin() + c * 9 + 9}, {bias[c]}, 5);
    Lc.out_zero_point = 128;
    std::vector<uint8_t> yc(pix);
    sq::conv2d_u8_ref(one, Lc, x.data() + c * 20, yc.data());
    EXPECT_TRUE(std::equal(yc.begin(), yc.end(), y.begin() + c * pix)) << "channel " << c;
  }
}

TEST(EngineRef, LinearRequantizesAndClamps) {
  const uint8_t x[3] = {2, 4, 6};  // zp 2: d = 0, 2, 4
  sq::IntLayer L = identity_layer({1, 1, 1, -3, 0, -1}, {1, 0}, 2);
  L.requant = {sq::quantize_multiplier(0.5), sq::quantize_multiplier(0.5)};
  L.out_zero_point = 10;
  L.out_lo = 10;  // a fused ReLU
  L.out_hi = 12;
  uint8_t y[2];
  sq::linear_u8_ref(3, 2, L, x, y);
  EXPECT_EQ(y[0], 12);  // (1 + 6) / 2 = 3.5 -> 4, + 10 = 14, clamped to 12
  EXPECT_EQ(y[1], 10);  // -4 / 2 = -2, + 10 = 8, clamped to 10
  EXPECT_THROW(sq::linear_u8_ref(4, 2, L, x, y), sq::Error);  // wrong weight count
}

TEST(EngineRef, PoolsByHand) {
  // 1 channel 3x3: 1..9
  const uint8_t x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  sq::PoolShape s{1, 3, 3, 2, 2, 1};  // kernel 2, stride 2, padding 1 -> 2x2
  uint8_t y[4];
  sq::maxpool_u8_ref(s, x, y);
  EXPECT_EQ(std::vector<uint8_t>(y, y + 4), std::vector<uint8_t>({1, 3, 7, 9}));
  // Average, count_include_pad: windows {pad,pad,pad,1}, {pad,pad,2,3}, {pad,4,pad,7}, {5,6,8,9}
  // with zp 1: sums of x − 1 = 0, 3, 9, 24 over 4 -> 0, 0.75, 2.25, 6 -> half up 0, 1, 2, 6.
  auto p = sq::make_avgpool_params(1.0f, 1, 1.0f, 1, 4, 0, 255);
  sq::avgpool_u8_ref(s, p, x, y);
  EXPECT_EQ(std::vector<uint8_t>(y, y + 4), std::vector<uint8_t>({1, 2, 3, 7}));
  // Global: mean of x − 1 over 9 = 4, rescaled ×2 (s_out = s_in / 2), zp_out 3 -> 11.
  auto g = sq::make_avgpool_params(1.0f, 1, 0.5f, 3, 9, 0, 255);
  sq::global_avgpool_u8_ref(1, 9, g, x, y);
  EXPECT_EQ(y[0], 11);
  // Ties round half up: (1 + 2) / 2 = 1.5 -> 2.
  const uint8_t two[2] = {1, 2};
  sq::global_avgpool_u8_ref(1, 2, sq::make_avgpool_params(1.0f, 0, 1.0f, 0, 2, 0, 255), two, y);
  EXPECT_EQ(y[0], 2);
}

TEST(EngineRef, AddMatchesRealArithmetic) {
  std::mt19937_64 rng(11);
  int exact = 0, total = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const float sa = 0.01f + (rng() % 1000) / 20000.0f, sb = 0.01f + (rng() % 1000) / 20000.0f;
    const float so = 0.02f + (rng() % 1000) / 10000.0f;
    const int32_t za = rng() % 256, zb = rng() % 256, zo = rng() % 256;
    const auto p = sq::make_add_params(sa, za, sb, zb, so, zo, 0, 255);
    uint8_t a[64], b[64], y[64];
    for (int i = 0; i < 64; ++i) a[i] = rng() % 256, b[i] = rng() % 256;
    sq::add_u8_ref(p, a, b, 64, y);
    for (int i = 0; i < 64; ++i) {
      const double r = (double(sa) * (a[i] - za) + double(sb) * (b[i] - zb)) / so;
      const double want = std::clamp(std::floor(r + 0.5) + zo, 0.0, 255.0);
      EXPECT_LE(std::fabs(y[i] - want), 1.0);
      exact += y[i] == want;
      ++total;
    }
  }
  EXPECT_GE(exact, total * 99 / 100);
  EXPECT_THROW(sq::make_add_params(0.1f, 0, 0.1f, 256, 0.1f, 0, 0, 255), sq::Error);
  EXPECT_THROW(sq::make_add_params(0.1f, 0, 0.1f, 0, 0.1f, 0, 0, 256), sq::Error);
  EXPECT_THROW(sq::make_add_params(0.1f, 0, 0.0f, 0, 0.1f, 0, 0, 255), sq::Error);
  // A fused ReLU6-style clamp and the ReLU clamp kernel.
  uint8_t v[4] = {0, 5, 9, 200};
  sq::clamp_u8_ref(v, 4, 5, 100);
  EXPECT_EQ(std::vector<uint8_t>(v, v + 4), std::vector<uint8_t>({5, 5, 9, 100}));
}

// ---------------------------------------------------------------------------------------------
// Optimized conv2d / linear == reference, exactly

struct Case {
  const char* name;
  sq::ConvShape s;
};
const Case kShapes[] = {
    {"rgb3x3pad", {3, 8, 8, 5, 3, 1, 1, 1}},
    {"stride2odd", {17, 9, 7, 19, 3, 2, 1, 1}},
    {"pointwise", {7, 5, 5, 16, 1, 1, 0, 1}},
    {"resnetish", {16, 10, 10, 16, 3, 1, 1, 1}},
    {"single", {1, 3, 3, 1, 3, 1, 0, 1}},
    {"k2s2", {5, 6, 6, 33, 2, 2, 0, 1}},
    {"bigpad", {2, 3, 4, 3, 3, 1, 2, 1}},
    {"linear", {37, 1, 1, 10, 1, 1, 0, 1}},
    // The direct (im2col-free) path: 1x1 stride 2 over a row of 9 (the 8-pixel transposes
    // overlap), channels 16 + 4 by element (padding 0), 35 channels padded to 36 with stride 2,
    // and resnet20's first stage (28 = 3 transposes + an overlapping one). Pixel counts 25, 77,
    // 48, 784 leave 1, 5, 0, 4 pixels in the last 6-pixel tile; more than 16 output channels, so
    // that a tile without the near-INT32_MAX bias (spread_outputs) takes the int32 epilogue.
    {"direct1x1s2", {32, 9, 9, 24, 1, 2, 0, 1}},
    {"direct3x3p0", {20, 9, 13, 17, 3, 1, 0, 1}},
    {"direct3x3s2", {35, 12, 16, 40, 3, 2, 1, 1}},
    {"resnet20stage1", {16, 28, 28, 32, 3, 1, 1, 1}},
};

sq::IntLayer random_layer(const sq::ConvShape& s, int wbits, int abits, std::mt19937_64& rng) {
  sq::IntLayer L;
  L.name = "random";
  L.out_node = 1;
  const int32_t wlo = -(1 << (wbits - 1)), whi = (1 << (wbits - 1)) - 1;
  L.weights.resize(s.weights());
  for (auto& w : L.weights)
    w = wlo + static_cast<int32_t>(rng() % static_cast<uint64_t>(whi - wlo + 1));
  L.weights[0] = wlo;  // the extreme code, for 8 bits -128
  const int32_t amax = (1 << abits) - 1;
  L.in_zero_point = static_cast<int32_t>(rng() % (amax + 1));
  L.out_zero_point = static_cast<int32_t>(rng() % (amax / 2 + 1));
  L.out_lo = rng() % 2 ? L.out_zero_point : 0;                     // sometimes a fused ReLU
  L.out_hi = rng() % 3 ? amax : std::max(L.out_lo, amax * 3 / 4);  // sometimes a ReLU6 below qmax
  // Placeholders; spread_outputs sets them from real accumulators.
  L.bias.assign(s.out_c, 0);
  L.requant.assign(s.out_c, sq::quantize_multiplier(std::ldexp(1.0, -wbits - 2)));
  return L;
}

std::vector<uint8_t> random_input(const sq::ConvShape& s, int abits, std::mt19937_64& rng) {
  std::vector<uint8_t> x(s.in_size());
  for (auto& v : x) v = static_cast<uint8_t>(rng() % (1u << abits));
  return x;
}

// Sets each channel's bias and multiplier from the accumulators the layer actually produces on x,
// so that the outputs spread over the activation range (not all clamped): M · std(acc) is a
// quarter of the range, give or take a factor of 2, and the bias shifts by up to one std.
void spread_outputs(sq::IntLayer& L, const sq::ConvShape& s, const std::vector<uint8_t>& x,
                    int abits, std::mt19937_64& rng) {
  sq::IntLayer raw = L;
  raw.out_node = -1;
  raw.in_scale = 1;
  raw.weight_scales.assign(s.out_c, 1.0f);
  std::fill(raw.bias.begin(), raw.bias.end(), 0);
  std::vector<float> acc(s.out_size());
  sq::conv2d_f32_ref(s, raw, x.data(), acc.data());  // exact: |acc| < 2^24 here
  const int64_t pix = s.out_h() * s.out_w();
  for (int64_t c = 0; c < s.out_c; ++c) {
    double sum = 0, sum2 = 0;
    for (int64_t p = 0; p < pix; ++p)
      sum += acc[c * pix + p], sum2 += double(acc[c * pix + p]) * acc[c * pix + p];
    const double mean = sum / pix, sd = std::sqrt(std::max(1.0, sum2 / pix - mean * mean));
    const double u = (rng() % 1001) / 1000.0;  // [0, 1]
    L.bias[c] = static_cast<int32_t>(std::llround(-mean + (2 * u - 1) * sd));
    L.requant[c] = sq::quantize_multiplier(std::ldexp(1.0, abits - 2) / sd * std::exp2(2 * u - 1));
  }
  if (s.out_c > 4) {  // one channel near the int32 edge, one pruned
    L.bias[s.out_c - 1] = INT32_MAX - static_cast<int32_t>(rng() % 1000);
    L.requant[1] = sq::Requant{};
  }
}

// Every micro-kernel is run by name (prepare_conv2d_u8's Kernel form), not only the one the
// dispatch picks on this CPU; a kernel whose ISA the CPU lacks is reported as skipped, naming it.
using Kernel = sq::PreparedConv2d::Kernel;
struct KernelCase {
  Kernel kernel;
  const char* name;
};
const KernelCase kKernels[] = {{Kernel::Portable, "portable"},
                               {Kernel::Avx2Madd16, "avx2_madd16"},
                               {Kernel::Avx2Maddubs, "avx2_maddubs"},
                               {Kernel::AvxVnniDpbusd, "avxvnni_dpbusd"}};

// The ISA a kernel needs that this CPU lacks, or nullptr when the kernel runs here.
const char* missing_isa(Kernel k) {
  if (k != Kernel::Portable && !sq::cpu_has_avx2()) return "AVX2";
  if (k == Kernel::AvxVnniDpbusd && !sq::cpu_has_avxvnni()) return "AVX-VNNI";
  return nullptr;
}

// One shape's layer, input and reference output.
struct RefCase {
  sq::IntLayer layer;
  std::vector<uint8_t> x, want;
};

// The cases of one (weight bits, activation bits) pair over kShapes, made once and shared by
// every kernel's test (the reference is most of the time). With `maddubs_range` the weights are
// clamped to ±64 before the requantization is calibrated: avx2_maddubs is exact only there.
const std::vector<RefCase>& ref_cases(int wbits, int abits, bool maddubs_range) {
  static std::map<std::tuple<int, int, bool>, std::vector<RefCase>> cache;
  std::vector<RefCase>& cases = cache[{wbits, abits, maddubs_range}];
  if (!cases.empty()) return cases;
  std::mt19937_64 rng(1000 + 16 * wbits + abits);
  for (const Case& c : kShapes) {
    RefCase rc;
    rc.layer = random_layer(c.s, wbits, abits, rng);
    if (maddubs_range)
      for (auto& w : rc.layer.weights) w = std::clamp(w, -64, 64);
    rc.x = random_input(c.s, abits, rng);
    spread_outputs(rc.layer, c.s, rc.x, abits, rng);
    rc.want.resize(c.s.out_size());
    sq::conv2d_u8_ref(c.s, rc.layer, rc.x.data(), rc.want.data());
    cases.push_back(std::move(rc));
  }
  return cases;
}

using KernelBits = std::tuple<KernelCase, int, int>;  // kernel, weight bits, activation bits
class EngineConvFast : public ::testing::TestWithParam<KernelBits> {};

TEST_P(EngineConvFast, EqualsTheReferenceExactly) {
  const auto [kc, wbits, abits] = GetParam();
  if (const char* isa = missing_isa(kc.kernel))
    GTEST_SKIP() << "this CPU lacks " << isa << ": kernel " << kc.name << " not tested";
  // 8-bit layers reach -128: avx2_maddubs must refuse them, and is tested clamped to ±64.
  const bool clamp = kc.kernel == Kernel::Avx2Maddubs && wbits == 8;
  if (clamp) {
    const RefCase& full = ref_cases(wbits, abits, false)[0];
    EXPECT_NE(sqtest::error_of([&] {
                sq::prepare_conv2d_u8(kShapes[0].s, full.layer, kc.kernel);
              }).find("exact only up to 64"),
              std::string::npos);
  }
  const std::vector<RefCase>& cases = ref_cases(wbits, abits, clamp);
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
    sq::PreparedConv2d conv = sq::prepare_conv2d_u8(c.s, rc.layer, kc.kernel);
    ASSERT_STREQ(conv.kernel_name(), kc.name);
    std::vector<uint8_t> got(c.s.out_size(), 0xAB);
    conv.run(rc.x.data(), got.data());
    EXPECT_EQ(got, rc.want) << c.name;
    // A second run on the same prepared object (scratch reused) gives the same.
    std::fill(got.begin(), got.end(), 0xCD);
    conv.run(rc.x.data(), got.data());
    EXPECT_EQ(got, rc.want) << c.name << " (second run)";
  }
}

INSTANTIATE_TEST_SUITE_P(Engine, EngineConvFast,
                         ::testing::Combine(::testing::ValuesIn(kKernels), ::testing::Range(2, 9),
                                            ::testing::Range(2, 9)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).name) + "_w" +
                                  std::to_string(std::get<1>(info.param)) + "a" +
                                  std::to_string(std::get<2>(info.param));
                         });

// The dispatch: an Isa and the layer's weights pick the kernel (Auto: the best the CPU has), and
// an ISA the CPU lacks is refused rather than run.
TEST(EngineConvFastDispatch, IsaAndWeightsPickTheKernel) {
  std::mt19937_64 rng(12);
  const sq::ConvShape s{16, 6, 6, 20, 3, 1, 1, 1};
  sq::IntLayer w7 = random_layer(s, 7, 8, rng);  // |w| <= 64
  sq::IntLayer w8 = w7;
  w8.weights[3] = -65;
  const auto kernel_of = [&](const sq::IntLayer& L, sq::Isa isa) {
    return std::string(sq::prepare_conv2d_u8(s, L, isa).kernel_name());
  };
  EXPECT_EQ(kernel_of(w8, sq::Isa::Portable), "portable");
  if (sq::cpu_has_avx2()) {
    EXPECT_EQ(kernel_of(w7, sq::Isa::Avx2), "avx2_maddubs");
    EXPECT_EQ(kernel_of(w8, sq::Isa::Avx2), "avx2_madd16");
  } else {
    EXPECT_THROW(kernel_of(w7, sq::Isa::Avx2), sq::Error);
    EXPECT_THROW(sq::prepare_conv2d_u8(s, w7, Kernel::Avx2Madd16), sq::Error);
  }
  if (sq::cpu_has_avxvnni()) {
    EXPECT_EQ(kernel_of(w8, sq::Isa::AvxVnni), "avxvnni_dpbusd");
  } else {
    EXPECT_THROW(kernel_of(w8, sq::Isa::AvxVnni), sq::Error);
    EXPECT_THROW(sq::prepare_conv2d_u8(s, w8, Kernel::AvxVnniDpbusd), sq::Error);
  }
  for (const sq::IntLayer* L : {&w7, &w8})
    EXPECT_EQ(kernel_of(*L, sq::Isa::Auto), kernel_of(*L, sq::best_isa()));
  EXPECT_EQ(sq::best_isa(), sq::cpu_has_avxvnni() ? sq::Isa::AvxVnni
                            : sq::cpu_has_avx2()  ? sq::Isa::Avx2
                                                  : sq::Isa::Portable);
  EXPECT_THROW(kernel_of(w7, sq::Isa::Reference), sq::Error);
  EXPECT_THROW(sq::prepare_conv2d_u8(s, w7, static_cast<Kernel>(17)), sq::Error);
  // What Auto runs equals the reference too.
  const auto x = random_input(s, 8, rng);
  spread_outputs(w8, s, x, 8, rng);
  std::vector<uint8_t> want(s.out_size()), got(s.out_size());
  sq::conv2d_u8_ref(s, w8, x.data(), want.data());
  sq::PreparedConv2d conv = sq::prepare_conv2d_u8(s, w8);
  conv.run(x.data(), got.data());
  EXPECT_EQ(got, want) << conv.kernel_name();
}

class EngineConvFastLimits : public ::testing::TestWithParam<KernelCase> {};

// With M = 1 and the zero point mid-range every accumulator maps to its own output, so an
// off-by-one anywhere in the sum shows (the random cases above scale it down); M = 1/2 and 1/4
// make exact ties (a = ±1.5 · 2^k), which must round half up in every epilogue.
TEST_P(EngineConvFastLimits, AccumulatorsExactAtUnitScaleAndTies) {
  const KernelCase kc = GetParam();
  if (const char* isa = missing_isa(kc.kernel))
    GTEST_SKIP() << "this CPU lacks " << isa << ": kernel " << kc.name << " not tested";
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
      sq::PreparedConv2d conv = sq::prepare_conv2d_u8(s, L, kc.kernel);
      conv.run(x.data(), got.data());
      EXPECT_EQ(got, want) << " M=" << m;
    }
}

// The extremes every kernel must survive: x = 255 against weights of ±64 (maddubs's int16 pair
// sums reach ±32640) and of -128/127 (beyond maddubs, which refuses them; madd16 and dpbusd stay
// exact).
TEST_P(EngineConvFastLimits, ExtremeWeightsAndActivations) {
  const KernelCase kc = GetParam();
  if (const char* isa = missing_isa(kc.kernel))
    GTEST_SKIP() << "this CPU lacks " << isa << ": kernel " << kc.name << " not tested";
  for (int32_t wext : {-64, 64, -128, 127}) {
    sq::ConvShape s{64, 5, 5, 20, 3, 1, 1, 1};  // K = 576, as resnet20's last stage
    sq::IntLayer L =
        identity_layer(std::vector<int32_t>(s.weights(), wext), std::vector<int32_t>(20, 7), 0);
    L.weights[5] = -wext / 2;  // not all equal
    L.requant.assign(20, sq::quantize_multiplier(100.0 / (576.0 * 255 * 128)));
    L.out_zero_point = 128;
    std::vector<uint8_t> x(s.in_size(), 255), want(s.out_size()), got(s.out_size());
    x[3] = 0;
    sq::conv2d_u8_ref(s, L, x.data(), want.data());
    if (kc.kernel == Kernel::Avx2Maddubs && (wext < -64 || wext > 64)) {
      EXPECT_THROW(sq::prepare_conv2d_u8(s, L, kc.kernel), sq::Error) << "w=" << wext;
      continue;
    }
    sq::PreparedConv2d conv = sq::prepare_conv2d_u8(s, L, kc.kernel);
    conv.run(x.data(), got.data());
    EXPECT_EQ(got, want) << "w=" << wext;
  }
}

// Requantization shifts outside the vector epilogues' range (1..62): a tile holding such a
// channel takes the scalar epilogue whatever the kernel, the other tiles the vector ones. M =
// 2^31 (shift −1: saturates), 2^−40 (shift 70: rounds to 0) and ordinary multipliers side by side.
TEST_P(EngineConvFastLimits, ScalarEpilogueForExtremeShifts) {
  const KernelCase kc = GetParam();
  if (const char* isa = missing_isa(kc.kernel))
    GTEST_SKIP() << "this CPU lacks " << isa << ": kernel " << kc.name << " not tested";
  std::mt19937_64 rng(21);
  const sq::ConvShape s{9, 6, 5, 37, 3, 1, 1, 1};  // tiles of channels 0-15, 16-31, 32-36
  sq::IntLayer L = random_layer(s, 6, 8, rng);
  const auto x = random_input(s, 8, rng);
  spread_outputs(L, s, x, 8, rng);
  L.requant[2] = sq::quantize_multiplier(std::ldexp(1.0, 31));
  L.requant[20] = sq::quantize_multiplier(std::ldexp(1.0, -40));
  ASSERT_LT(L.requant[2].shift, 1);
  ASSERT_GT(L.requant[20].shift, 62);
  std::vector<uint8_t> want(s.out_size()), got(s.out_size());
  sq::conv2d_u8_ref(s, L, x.data(), want.data());
  sq::PreparedConv2d conv = sq::prepare_conv2d_u8(s, L, kc.kernel);
  conv.run(x.data(), got.data());
  EXPECT_EQ(got, want);
}

INSTANTIATE_TEST_SUITE_P(Engine, EngineConvFastLimits, ::testing::ValuesIn(kKernels),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(EngineConvFastDispatch, RejectsWhatItDoesNotRun) {
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

// ---------------------------------------------------------------------------------------------
// The chain executor equals the reference kernels called by hand

sq::QuantModel chain_model(bool with_add) {
  sq::QuantModel qm;
  sq::Graph& g = qm.graph;
  g = sq::Graph("chain", {3, 9, 9}, 10);
  int x = g.input();
  x = g.relu("r1", g.conv2d("c1", x, 8, 3, 1, 1, 1, true));
  x = g.maxpool("mp", x, 2, 2);
  int y = g.relu6("r2", g.conv2d("dw", x, 8, 3, 2, 1, 8, true));  // depthwise: the ref kernel
  if (with_add) y = g.add("add", y, g.conv2d("sc", x, 8, 1, 2, 0));
  y = g.relu("r3", g.conv2d("c3", y, 5, 1, 1, 0, 1, true));
  g.linear("fc", g.flatten("flat", y), 10);
  g.infer_shapes();
  g.init_params(3);
  qm.bits = sq::BitConfig::uniform(g, 4, 6);
  qm.weight_scales = sq::max_weight_scales(g, qm.bits);
  for (const auto& [node, bits] : sq::activation_quant_points(g, qm.bits)) {
    const bool signed_range = g.nodes[node].op == sq::Op::Input || g.nodes[node].op == sq::Op::Add;
    qm.acts[g.nodes[node].name] = sq::act_quant_from_range({signed_range ? -1.0 : 0.0, 2.0}, bits);
  }
  return qm;
}

TEST(EngineChain, EqualsTheReferenceKernelsByHand) {
  const sq::QuantModel qm = chain_model(false);
  const sq::IntModel im = sq::integerize(qm);
  ASSERT_EQ(im.layers.size(), 4u);
  sq::ChainExecutor ex = sq::ChainExecutor::prepare(qm.graph, im);
  ASSERT_EQ(ex.input_size(), 3 * 9 * 9);
  ASSERT_EQ(ex.output_size(), 10);
  EXPECT_EQ(ex.arena_bytes(), 2u * 8 * 9 * 9);  // two arenas of the largest tensor (c1's output)
  std::mt19937_64 rng(4);
  const int32_t in_max = (1 << 6) - 1;
  for (int trial = 0; trial < 5; ++trial) {
    std::vector<uint8_t> x(ex.input_size());
    for (auto& v : x) v = static_cast<uint8_t>(rng() % (in_max + 1));
    std::vector<float> got(10);
    ex.run(x.data(), got.data());
    // By hand: c1 (+ReLU fused) -> maxpool -> dw (+ReLU6 fused) -> c3 (+ReLU) -> flatten -> fc.
    std::vector<uint8_t> a(8 * 81), b(8 * 16), c(8 * 4), d(5 * 4);
    sq::conv2d_u8_ref({3, 9, 9, 8, 3, 1, 1, 1}, im.layers[0], x.data(), a.data());
    sq::maxpool_u8_ref({8, 9, 9, 2, 2, 0}, a.data(), b.data());
    sq::conv2d_u8_ref({8, 4, 4, 8, 3, 2, 1, 8}, im.layers[1], b.data(), c.data());
    sq::conv2d_u8_ref({8, 2, 2, 5, 1, 1, 0, 1}, im.layers[2], c.data(), d.data());
    std::vector<float> want(10);
    sq::linear_f32_ref(20, 10, im.layers[3], d.data(), want.data());
    EXPECT_EQ(got, want) << "trial " << trial;
    bool spread = false;  // the outputs are not trivially constant
    for (float v : want) spread |= v != want[0];
    EXPECT_TRUE(spread);
  }
}

TEST(EngineChain, RejectsWhatIsNotAChain) {
  const sq::QuantModel qm = chain_model(true);
  EXPECT_THROW(sq::ChainExecutor::prepare(qm.graph, sq::integerize(qm)), sq::Error);
  EXPECT_THROW(sq::ChainExecutor::prepare(qm.graph, sq::IntModel{}), sq::Error);
}

}  // namespace
