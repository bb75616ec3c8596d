// The graph executor's op registry (src/engine/ops/registry.cpp): every op the IR names has an
// engine op, except batchnorm (folded into the layer before it or into the input normalization,
// refused otherwise), so a new Op without its registry line fails here rather than in a model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/ops/op.h"

TEST(GraphExecutorOps, EveryGraphOpHasAPrepare) {
  int named = 0;
  for (int k = 0; std::string(sq::op_name(static_cast<sq::Op>(k))) != "?"; ++k) {
    const sq::Op op = static_cast<sq::Op>(k);
    ++named;
    EXPECT_NE(sq::ops::find_prepare(op), nullptr) << sq::op_name(op);
  }
  EXPECT_EQ(named, static_cast<int>(sq::Op::ChannelSlice) + 1);  // the last Op
}

// The optimized plans' max pooling (row maxima, then windows over them) equals the reference on
// every window shape the IR allows: square and not, strided per axis, padded unequally (padding
// < kernel), ceil_mode, rows that do not divide evenly, one-pixel inputs.
TEST(GraphExecutorOps, FastMaxPoolEqualsTheReference) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> code(0, 255);
  int cases = 0;
  for (int64_t kh = 1; kh <= 3; ++kh)
    for (int64_t kw = 1; kw <= 3; ++kw)
      for (int64_t sh = 1; sh <= 3; ++sh)
        for (int64_t pt = 0; pt < kh; ++pt)
          for (bool ceil : {false, true})
            for (auto [h, w] : {std::pair<int64_t, int64_t>{1, 1}, {5, 7}, {8, 6}}) {
              sq::Window2d win = sq::Window2d::square(1, 1, 0);
              win.kernel_h = kh;
              win.kernel_w = kw;
              win.stride_h = sh;
              win.stride_w = 4 - sh;  // per-axis strides differ
              win.pad_top = pt;
              win.pad_bottom = kh - 1 - pt;
              win.pad_left = kw - 1;
              win.pad_right = 0;
              const sq::PoolShape s(3, h, w, win, ceil);
              if (s.out_h() <= 0 || s.out_w() <= 0) continue;
              std::vector<uint8_t> x(3 * h * w);
              for (auto& v : x) v = static_cast<uint8_t>(code(rng));
              const size_t n = static_cast<size_t>(3 * s.out_h() * s.out_w());
              std::vector<uint8_t> want(n, 7), got(n, 9);
              sq::maxpool_u8_ref(s, x.data(), want.data());
              sq::ops::maxpool_u8_fast(s, x.data(), got.data());
              ASSERT_EQ(got, want) << sq::window_str(win) << (ceil ? " ceil" : "") << " on " << h
                                   << "x" << w;
              ++cases;
            }
  EXPECT_GT(cases, 300);
}

// The optimized plans' grouped and depthwise convolutions equal conv2d_u8_ref on every window
// shape: depthwise and grouped (2 and 3 input channels per group, 1 and 2 outputs per group),
// square and not, strided and dilated per axis, padded unequally (also beyond the kernel, as a
// folded Pad gives), rows wider than the accumulator block, weights of 2 to 8 bits with zeros,
// input zero points 0 and 128, requantization by a multiplier >= 1, a near-saturating bias and
// a bias fraction (and, again, tame constants every channel's int32 epilogue takes), every method
// (rows, patches, channels — depthwise only, 4 and 70 channels: past one 64-channel block) and
// both code paths (portable, and the CPU's best tier: AVX2, or AVX-512 for depthwise by channels).
TEST(GraphExecutorOps, FastGroupedConvEqualsTheReference) {
  std::mt19937 rng(9);
  std::uniform_int_distribution<int> code(0, 255);
  int cases = 0;
  struct G {
    int64_t groups, icg, ocg;
  };
  for (G gr : {G{4, 1, 1}, G{3, 2, 1}, G{2, 3, 2}, G{70, 1, 1}})
    for (int64_t kh : {1, 3})
      for (int64_t kw : {1, 3, 5})
        for (int64_t sh : {1, 2})
          for (int64_t dil : {1, 2})
            for (auto [h, w] : {std::pair<int64_t, int64_t>{1, 1}, {7, 5}, {4, 300}}) {
              sq::Window2d win = sq::Window2d::square(1, 1, 0);
              win.kernel_h = kh;
              win.kernel_w = kw;
              win.stride_h = sh;
              win.stride_w = 3 - sh;
              win.dilation_h = dil;
              win.dilation_w = 3 - dil;
              win.pad_top = kh / 2;
              win.pad_bottom = kh / 2 + 1;
              win.pad_left = kw;  // wider than the kernel's reach
              win.pad_right = 0;
              const sq::ConvShape s{gr.groups * gr.icg, h, w, gr.groups * gr.ocg, win, gr.groups};
              if (s.out_h() <= 0 || s.out_w() <= 0) continue;
              const int bits = 2 + cases % 7;
              const int qmax = (1 << (bits - 1)) - 1;
              std::uniform_int_distribution<int> wdist(-qmax, qmax);
              sq::IntLayer L;
              L.name = "g";
              L.in_zero_point = cases % 2 ? 128 : 0;
              L.out_node = 1;
              L.out_zero_point = 3;
              L.out_lo = 0;
              L.out_hi = 255;
              L.weights.resize(static_cast<size_t>(s.weights()));
              for (auto& v : L.weights) v = wdist(rng);
              std::vector<uint8_t> x(static_cast<size_t>(s.in_c * h * w));
              for (auto& v : x) v = static_cast<uint8_t>(code(rng));
              const size_t n = static_cast<size_t>(s.out_size());
              // Adversarial constants — channel 0: a multiplier >= 1 (left shift); 1: a bias
              // near INT32_MAX (|acc| >= 2^31): the epilogue's slow and fast paths — and tame
              // ones, where every channel takes the int32 epilogue (the AVX-512 depthwise path).
              for (const bool tame : {false, true}) {
                L.bias.clear();
                L.requant.clear();
                for (int64_t c = 0; c < s.out_c; ++c) {
                  L.bias.push_back(c == 1 && !tame ? 2147483000
                                                   : static_cast<int32_t>(c * 1000 - 1500));
                  L.requant.push_back(
                      sq::quantize_multiplier(c == 0 && !tame ? 2.5 : 0.004 + 0.001 * c));
                }
                std::vector<uint8_t> want(n, 7);
                sq::conv2d_u8_ref(s, L, x.data(), want.data());
                for (sq::Isa isa : {sq::Isa::Portable, sq::Isa::Auto})
                  for (auto m : {sq::ops::GroupedMethod::Rows, sq::ops::GroupedMethod::Patches,
                                 sq::ops::GroupedMethod::Channels, sq::ops::GroupedMethod::Auto}) {
                    std::vector<uint8_t> got(n, 9);
                    sq::ops::grouped_conv_u8_fast(s, L, x.data(), got.data(), isa, m);
                    ASSERT_EQ(got, want)
                        << sq::window_str(win) << " groups " << gr.groups << " icg " << gr.icg
                        << " ocg " << gr.ocg << " on " << h << "x" << w << " method "
                        << static_cast<int>(m) << (tame ? " (tame constants)" : "");
                  }
              }
              ++cases;
            }
  EXPECT_GT(cases, 150);
  EXPECT_TRUE(sq::ops::grouped_conv_fits(sq::ConvShape{4096, 3, 3, 4096, sq::Window2d::square(3, 1, 1), 1}));
  EXPECT_FALSE(sq::ops::grouped_conv_fits(sq::ConvShape{8192, 3, 3, 8192, sq::Window2d::square(3, 1, 1), 1}));
}

// Every pair of codes, exact and fallback forms, scale ratios that make ties common.
TEST(GraphExecutorOps, FastAddEqualsTheReference) {
  std::vector<uint8_t> a(65536), b(65536), want(65536), got(65536);
  for (int i = 0; i < 65536; ++i)
    a[i] = static_cast<uint8_t>(i >> 8), b[i] = static_cast<uint8_t>(i);
  int exact = 0;
  for (const sq::AddParams& p : {sq::make_add_params(0.5f, 3, 0.25f, 200, 1.0f, 128, 0, 255),
                                 sq::make_add_params(0.05f, 128, 0.07f, 0, 0.09f, 40, 40, 200),
                                 sq::make_add_params(1.0f, 0, 1.0f, 255, 0.5f, 7, 0, 15),
                                 sq::make_add_params(0.013f, 17, 0.5f, 99, 0.02f, 0, 0, 255),
                                 sq::make_add_params(0x1p-30f, 5, 1.0f, 9, 0.7f, 3, 0, 255)}) {
    sq::add_u8_ref(p, a.data(), b.data(), 65536, want.data());
    sq::ops::add_u8_table(sq::ops::add_pair_table(p).data(), a.data(), b.data(), 65536, got.data());
    ASSERT_EQ(got, want) << "add " << exact;
    exact += p.exact();
  }
  EXPECT_EQ(exact, 4);
}

// The tables' VBMI form (two vpermi2b per 64 codes, a masked tail) equals the plain lookup on
// every length around the 64-byte blocks, in place too, without writing past the end.
TEST(GraphExecutorOps, VbmiTableEqualsThePlainLookup) {
  if (!sq::cpu_has_avx512vbmi()) GTEST_SKIP() << "this CPU has no AVX-512 VBMI";
  std::mt19937 rng(31);
  std::array<uint8_t, 256> t{};
  for (auto& v : t) v = static_cast<uint8_t>(rng());
  for (int64_t n : {0, 1, 63, 64, 65, 127, 128, 200, 4099}) {
    std::vector<uint8_t> x(static_cast<size_t>(n) + 1), want(x.size(), 9), got(x.size(), 9);
    for (auto& v : x) v = static_cast<uint8_t>(rng());
    sq::ops::lut_u8(t.data(), x.data(), n, want.data());
    sq::ops::lut_u8_vbmi(t.data(), x.data(), n, got.data());
    EXPECT_EQ(got, want) << "n = " << n;                    // the byte past n stays 9 in both
    sq::ops::lut_u8_vbmi(t.data(), x.data(), n, x.data());  // in place
    x.back() = 9;
    EXPECT_EQ(x, want) << "in place, n = " << n;
  }
}

// The add's float form (AVX-512 VBMI CPUs): where add_float_form accepts it, it gives the
// reference's codes on every pair, in runs of any length (partial last blocks), and with a fused
// table, table[reference code]. The exact adds of these scales all take it (the simulation's own
// float formula); the fixed-point fallback never does.
TEST(GraphExecutorOps, FloatAddEqualsTheReference) {
  if (!sq::cpu_has_avx512vbmi()) GTEST_SKIP() << "this CPU has no AVX-512 VBMI";
  std::mt19937 rng(29);
  std::uniform_int_distribution<int> code(0, 255);
  int taken = 0, cases = 0;
  for (const sq::AddParams& p : {sq::make_add_params(0.5f, 3, 0.25f, 200, 1.0f, 128, 0, 255),
                                 sq::make_add_params(0.05f, 128, 0.07f, 0, 0.09f, 40, 40, 200),
                                 sq::make_add_params(1.0f, 0, 1.0f, 255, 0.5f, 7, 0, 15),
                                 sq::make_add_params(0.013f, 17, 0.5f, 99, 0.02f, 0, 0, 255),
                                 sq::make_add_params(0.0213f, 0, 0.0377f, 0, 0.0419f, 0, 0, 255),
                                 sq::make_add_params(0x1p-30f, 5, 1.0f, 9, 0.7f, 3, 0, 255)}) {
    ++cases;
    const std::optional<sq::ops::AddFloat> f =
        sq::ops::add_float_form(p, sq::ops::add_pair_table(p));
    EXPECT_EQ(f.has_value(), p.exact()) << "add " << cases;
    if (!f) continue;
    ++taken;
    std::array<uint8_t, 256> table{};
    for (auto& v : table) v = static_cast<uint8_t>(code(rng));
    sq::ops::AddFloat fused = *f;
    for (uint8_t& v : fused.post) v = table[v];
    fused.post_identity = false;
    for (int64_t n : {1, 15, 63, 64, 65, 1000}) {
      std::vector<uint8_t> a(static_cast<size_t>(n)), b(a.size()), want(a.size()),
          got(a.size() + 1, 7);
      for (auto& v : a) v = static_cast<uint8_t>(code(rng));
      for (auto& v : b) v = static_cast<uint8_t>(code(rng));
      sq::add_u8_ref(p, a.data(), b.data(), n, want.data());
      sq::ops::add_u8_float(*f, a.data(), b.data(), n, got.data());
      EXPECT_EQ(got.back(), 7) << "wrote past the end, n = " << n;
      got.pop_back();
      ASSERT_EQ(got, want) << "add " << cases << ", n = " << n;
      sq::ops::add_u8_float(fused, a.data(), b.data(), n, got.data());
      for (auto& v : want) v = table[v];
      ASSERT_EQ(got, want) << "add " << cases << " with a table, n = " << n;
    }
  }
  EXPECT_EQ(taken, 5);
}

// The optimized plans' mul equals mul_u8_ref: element-wise and per-channel gates (per 1, 7, 64,
// a last run shorter than per), zero points 0..255, output ranges, multipliers from tiny to >= 1
// (the left-shift path).
TEST(GraphExecutorOps, FastMulEqualsTheReference) {
  std::mt19937 rng(13);
  std::uniform_int_distribution<int> code(0, 255);
  int cases = 0;
  for (int64_t per : {1, 7, 64})
    for (double scale : {1e-6, 0.003, 0.02, 0.7, 3.0})
      for (int zp : {0, 128, 255}) {
        sq::MulParams p;
        p.zp_a = zp;
        p.zp_b = 255 - zp;
        p.zp_out = (zp + 17) % 256;
        p.lo = cases % 3 == 0 ? 0 : 20;
        p.hi = cases % 3 == 0 ? 255 : 200;
        p.per = per;
        p.m = sq::quantize_multiplier(scale);
        const int64_t n = per * 5 - (per > 1 ? 3 : 0);  // the last gate covers fewer elements
        std::vector<uint8_t> a(static_cast<size_t>(n)), b(static_cast<size_t>((n + per - 1) / per));
        for (auto& v : a) v = static_cast<uint8_t>(code(rng));
        for (auto& v : b) v = static_cast<uint8_t>(code(rng));
        std::vector<uint8_t> want(a.size(), 1), got(a.size(), 2);
        sq::mul_u8_ref(p, a.data(), b.data(), n, want.data());
        sq::ops::mul_u8_fast(p, a.data(), b.data(), n, got.data());
        ASSERT_EQ(got, want) << "per " << per << " scale " << scale << " zp " << zp;
        std::fill(got.begin(), got.end(), 2);
        sq::ops::mul_u8_avx512(p, a.data(), b.data(), n, got.data());  // (scalar without AVX-512)
        ASSERT_EQ(got, want) << "avx512: per " << per << " scale " << scale << " zp " << zp;
        ++cases;
      }
  EXPECT_EQ(cases, 45);
}
