// The integer engine: bit packing round trips and the reference kernels by hand. The optimized
// kernels against the reference: test_kernels.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "engine_cases.h"
#include "sigmaquant/engine.h"
#include "sigmaquant/error.h"
#include "test_util.h"

namespace {

using sqtest::identity_layer;

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

// Non-square, strided per axis, dilated, unequally padded (issue 15): the reference accumulators
// against the float definition written differently — the input copied into an explicitly padded
// plane (pad_top rows above, pad_bottom below, ...), then y[oy][ox] = Σ w[i][ky][kx] ·
// padded[i][oy·sh + ky·dh][ox·sw + kx·dw] with no bounds checks at all.
TEST(EngineRef, NonSquareDilatedConvEqualsTheFloatDefinition) {
  using W = sq::Window2d;
  std::mt19937_64 rng(17);
  const std::pair<const char*, W> windows[] = {
      {"1x7 p(0,3)", W::of(1, 7, 1, 1, 0, 3)},
      {"7x1 p(3,0)", W::of(7, 1, 1, 1, 3, 0)},
      {"3x1 s(2,1)", W::of(3, 1, 2, 1, 1, 0)},
      {"3x3 d2 p2", W::of(3, 3, 1, 1, 2, 2, 2, 2)},
      {"2x3 s(1,2) d(3,1)", W::of(2, 3, 1, 2, 1, 1, 3, 1)},
      {"3x3 pads [0,1,2,0]", W{3, 3, 1, 1, 0, 1, 2, 0, 1, 1}},
      {"2x2 s2 pads [0,0,1,1] d(1,2)", W{2, 2, 2, 2, 0, 0, 1, 1, 1, 2}},
  };
  for (const auto& [name, win] : windows)
    for (int64_t groups : {1, 2}) {
      const int64_t ic = 4, ih = 9, iw = 8, oc = 6, icg = ic / groups, ocg = oc / groups;
      const sq::ConvShape s{ic, ih, iw, oc, win, groups};
      const int64_t ph = ih + win.pad_top + win.pad_bottom, pw = iw + win.pad_left + win.pad_right;
      const int64_t oh = (ph - (win.kernel_h - 1) * win.dilation_h - 1) / win.stride_h + 1;
      const int64_t ow = (pw - (win.kernel_w - 1) * win.dilation_w - 1) / win.stride_w + 1;
      ASSERT_EQ(s.out_h(), oh) << name;
      ASSERT_EQ(s.out_w(), ow) << name;
      std::vector<int32_t> w(s.weights()), bias(oc);
      for (auto& v : w) v = static_cast<int32_t>(rng() % 255) - 127;
      for (auto& v : bias) v = static_cast<int32_t>(rng() % 2001) - 1000;
      std::vector<uint8_t> x(s.in_size());
      for (auto& v : x) v = static_cast<uint8_t>(rng() % 256);
      const int32_t zp = 37;
      std::vector<double> padded(static_cast<size_t>(ic * ph * pw), 0.0);  // the real value 0
      for (int64_t i = 0; i < ic; ++i)
        for (int64_t y = 0; y < ih; ++y)
          for (int64_t xx = 0; xx < iw; ++xx)
            padded[(i * ph + y + win.pad_top) * pw + xx + win.pad_left] =
                double(x[(i * ih + y) * iw + xx]) - zp;
      sq::IntLayer L = identity_layer(w, bias, zp);
      std::vector<int64_t> acc(static_cast<size_t>(oc * oh * ow));
      sq::conv2d_acc_ref(s, L, x.data(), acc.data());
      for (int64_t o = 0; o < oc; ++o)
        for (int64_t oy = 0; oy < oh; ++oy)
          for (int64_t ox = 0; ox < ow; ++ox) {
            double want = bias[o];
            for (int64_t i = 0; i < icg; ++i)
              for (int64_t ky = 0; ky < win.kernel_h; ++ky)
                for (int64_t kx = 0; kx < win.kernel_w; ++kx)
                  want +=
                      w[((o * icg + i) * win.kernel_h + ky) * win.kernel_w + kx] *
                      padded[((o / ocg * icg + i) * ph + oy * win.stride_h + ky * win.dilation_h) *
                                 pw +
                             ox * win.stride_w + kx * win.dilation_w];
            ASSERT_EQ(double(acc[(o * oh + oy) * ow + ox]), want)
                << name << " groups " << groups << " at " << o << "," << oy << "," << ox;
          }
    }
  // A window that does not fit the padded input, and a zero dilation, are refused.
  EXPECT_THROW(sq::check_conv(sq::ConvShape{1, 4, 4, 1, W::of(3, 3, 1, 1, 0, 0, 2, 1), 1}),
               sq::Error);
  EXPECT_THROW(sq::check_conv(sq::ConvShape{1, 4, 4, 1, W::of(1, 1, 1, 1, 0, 0, 0, 1), 1}),
               sq::Error);
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

// Pools over non-square windows with unequal padding, by hand.
TEST(EngineRef, NonSquarePoolsByHand) {
  // 1 channel 3x4: 1..12. Window 3x2, stride (1, 2), pads [top 1, left 0, bottom 0, right 1]:
  // rows -1..1 and 0..2 (out_h = (3 + 1 − 3) / 1 + 1 = 2), columns 0-1 and 2-3 (out_w = (4 + 1 −
  // 2) / 2 + 1 = 2).
  const uint8_t x[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  const sq::PoolShape s{1, 3, 4, sq::Window2d{3, 2, 1, 2, 1, 0, 0, 1, 1, 1}};
  ASSERT_EQ(s.out_h(), 2);
  ASSERT_EQ(s.out_w(), 2);
  uint8_t y[4];
  sq::maxpool_u8_ref(s, x, y);
  EXPECT_EQ(std::vector<uint8_t>(y, y + 4), std::vector<uint8_t>({6, 8, 10, 12}));
  // Average with zp 0 over 6 taps (the padded row counts), to an output scale of 2 (no ties):
  // 14 / 12 = 1.17 -> 1, 22 / 12 = 1.83 -> 2, 33 / 12 = 2.75 -> 3, 45 / 12 = 3.75 -> 4.
  sq::avgpool_u8_ref(s, sq::make_avgpool_params(1.0f, 0, 2.0f, 0, 6, 0, 255), x, y);
  EXPECT_EQ(std::vector<uint8_t>(y, y + 4), std::vector<uint8_t>({1, 2, 3, 4}));
  // Pools have no dilation.
  sq::PoolShape d = s;
  d.window.dilation_w = 2;
  EXPECT_THROW(sq::maxpool_u8_ref(d, x, y), sq::Error);
}

// The simulation's add (fake_quant.cpp): float32 operand values, a float32 sum, the output
// quantizer's float32 division and round half to even.
uint8_t simulated_add(float sa, int za, float sb, int zb, float so, int zo, int lo, int hi, int a,
                      int b) {
  const volatile float va = static_cast<float>(a - za) * sa, vb = static_cast<float>(b - zb) * sb;
  const volatile float y = va + vb;
  const float q = std::nearbyint(y / so) + static_cast<float>(zo);
  return static_cast<uint8_t>(std::clamp(q, static_cast<float>(lo), static_cast<float>(hi)));
}

TEST(EngineRef, AddEqualsTheSimulationsFloatArithmetic) {
  std::mt19937_64 rng(11);
  // Random scales, and ratios that make exact ties common (half to even, as the simulation).
  struct Case {
    float sa, sb, so;
    int za, zb, zo, lo, hi;
  };
  std::vector<Case> cases = {{0.5f, 0.25f, 1.0f, 3, 200, 128, 0, 255},
                             {1.0f, 1.0f, 0.5f, 0, 255, 7, 0, 15},
                             {0.1f, 0.1f, 0.2f, 128, 128, 128, 128, 255},
                             {3e-3f, 7e-6f, 1e-2f, 0, 0, 0, 0, 255}};
  for (int trial = 0; trial < 40; ++trial) {
    const float sa = 0.01f + (rng() % 1000) / 20000.0f, sb = 0.01f + (rng() % 1000) / 20000.0f;
    const float so = 0.02f + (rng() % 1000) / 10000.0f;
    const int lo = static_cast<int>(rng() % 64);
    cases.push_back({sa, sb, so, static_cast<int>(rng() % 256), static_cast<int>(rng() % 256),
                     static_cast<int>(rng() % 256), lo, 255 - static_cast<int>(rng() % 64)});
  }
  std::vector<uint8_t> a(65536), b(65536), y(65536);
  for (int i = 0; i < 65536; ++i)
    a[i] = static_cast<uint8_t>(i >> 8), b[i] = static_cast<uint8_t>(i);
  for (const Case& c : cases) {
    const auto p = sq::make_add_params(c.sa, c.za, c.sb, c.zb, c.so, c.zo, c.lo, c.hi);
    ASSERT_TRUE(p.exact());
    sq::add_u8_ref(p, a.data(), b.data(), 65536, y.data());
    int bad = 0;
    for (int i = 0; i < 65536 && bad < 5; ++i) {
      const uint8_t want =
          simulated_add(c.sa, c.za, c.sb, c.zb, c.so, c.zo, c.lo, c.hi, a[i], b[i]);
      if (y[i] != want) {
        ++bad;
        ADD_FAILURE() << "scales " << c.sa << ", " << c.sb << " -> " << c.so << ", codes "
                      << int{a[i]} << " + " << int{b[i]} << ": " << int{y[i]} << ", simulation "
                      << int{want};
      }
    }
  }
  // Scales 2^30 apart do not fit the exact form: the fixed-point fallback, within one code.
  const auto f = sq::make_add_params(0x1p-30f, 5, 1.0f, 9, 0.7f, 3, 0, 255);
  EXPECT_FALSE(f.exact());
  sq::add_u8_ref(f, a.data(), b.data(), 65536, y.data());
  for (int i = 0; i < 65536; i += 97)
    EXPECT_LE(std::abs(y[i] - simulated_add(0x1p-30f, 5, 1.0f, 9, 0.7f, 3, 0, 255, a[i], b[i])), 1);
  EXPECT_THROW(sq::make_add_params(0.1f, 0, 0.1f, 256, 0.1f, 0, 0, 255), sq::Error);
  EXPECT_THROW(sq::make_add_params(0.1f, 0, 0.1f, 0, 0.1f, 0, 0, 256), sq::Error);
  EXPECT_THROW(sq::make_add_params(0.1f, 0, 0.0f, 0, 0.1f, 0, 0, 255), sq::Error);
  EXPECT_THROW(sq::make_add_params(0.1f, 0, INFINITY, 0, 0.1f, 0, 0, 255), sq::Error);
  // A fused ReLU6-style clamp and the ReLU clamp kernel.
  uint8_t v[4] = {0, 5, 9, 200};
  sq::clamp_u8_ref(v, 4, 5, 100);
  EXPECT_EQ(std::vector<uint8_t>(v, v + 4), std::vector<uint8_t>({5, 5, 9, 100}));
}

}  // namespace
