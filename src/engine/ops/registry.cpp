// The op registry (TensorFlow Lite Micro's op resolver, XNNPACK's config tables): one line per
// graph op, X(op, name), naming the prepare_<name>(Context&, int node) that its file under
// src/engine/ops/ defines (conv: conv.cpp; relu, lut_activation: lut.cpp; maxpool, avgpool:
// pool.cpp; the others: <name>.cpp). Adding an op is its file plus its line here;
// GraphExecutor::prepare walks the graph and calls find_prepare(node.op) for every node it has
// not yet computed.
#include "op.h"

namespace sq::ops {

#define SQ_ENGINE_OPS(X)             \
  X(Input, input)                    \
  X(Conv2d, conv)                    \
  X(Linear, conv)                    \
  X(Add, add)                        \
  X(Mul, mul)                        \
  X(MaxPool, maxpool)                \
  X(AvgPool, avgpool)                \
  X(GlobalAvgPool, avgpool)          \
  X(ReLU, relu)                      \
  X(ReLU6, relu)                     \
  X(Sigmoid, lut_activation)         \
  X(HardSigmoid, lut_activation)     \
  X(HardSwish, lut_activation)       \
  X(SiLU, lut_activation)            \
  X(LeakyReLU, lut_activation)       \
  X(Flatten, flatten)                \
  X(Concat, concat)                  \
  X(ChannelShuffle, channel_shuffle) \
  X(ChannelSlice, slice)             \
  X(BatchNorm, batchnorm)

#define SQ_DECLARE(op, name) void prepare_##name(Context&, int);
SQ_ENGINE_OPS(SQ_DECLARE)
#undef SQ_DECLARE

PrepareFn find_prepare(Op op) {
#define SQ_ENTRY(o, name) \
  if (op == Op::o) return prepare_##name;
  SQ_ENGINE_OPS(SQ_ENTRY)
#undef SQ_ENTRY
  return nullptr;  // not registered
}
#undef SQ_ENGINE_OPS

}  // namespace sq::ops
