// The graph executor's op registry (src/engine/ops/registry.cpp): every op the IR names has an
// engine op, except batchnorm (folded into the layer before it or into the input normalization,
// refused otherwise), so a new Op without its registry line fails here rather than in a model.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/ops/op.h"

TEST(GraphExecutorOps, EveryGraphOpButBatchnormHasAPrepare) {
  int named = 0;
  for (int k = 0; std::string(sq::op_name(static_cast<sq::Op>(k))) != "?"; ++k) {
    const sq::Op op = static_cast<sq::Op>(k);
    ++named;
    if (op == sq::Op::BatchNorm) {
      EXPECT_EQ(sq::ops::find_prepare(op), nullptr);
    } else {
      EXPECT_NE(sq::ops::find_prepare(op), nullptr) << sq::op_name(op);
    }
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
