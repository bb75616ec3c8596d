// The graph executor's op registry (src/engine/ops/registry.cpp): every op the IR names has an
// engine op, except batchnorm (folded into the layer before it or into the input normalization,
// refused otherwise), so a new Op without its registry line fails here rather than in a model.
#include <gtest/gtest.h>

#include <string>

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
