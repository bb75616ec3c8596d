// ChainExecutor: a straight chain of conv2d / linear layers with fused ReLU/ReLU6, max-pooling and
// flatten between them, over two uint8 arenas planned in prepare (engine.h).
#include <algorithm>

#include "sigmaquant/engine.h"
#include "sigmaquant/error.h"
#include "sigmaquant/transform.h"

namespace sq {

ConvShape conv_shape_of(const Graph& g, int node) {
  const Node& n = g.nodes.at(node);
  const Shape& in = g.nodes[n.inputs.at(0)].out_shape;
  if (n.op == Op::Linear) {
    int64_t f = 1;
    for (int64_t d : in) f *= d;
    return ConvShape{f, 1, 1, n.out_channels, 1, 1, 0, 1};
  }
  if (in.size() != 3)
    fail("engine: conv '{}' reads a tensor of rank {} (expected C,H,W)", n.name, in.size());
  return ConvShape{in[0], in[1], in[2], n.out_channels, n.kernel, n.stride, n.padding, n.groups};
}

ChainExecutor ChainExecutor::prepare(const Graph& g, const IntModel& im, Isa isa) {
  if (im.layers.empty()) fail("engine: the model has no weight layers");
  ChainExecutor ex;
  ex.layers_ = im.layers;
  int64_t largest = 0;
  for (size_t li = 0; li < im.layers.size(); ++li) {
    const IntLayer& L = im.layers[li];
    if (L.node < 0 || L.node >= static_cast<int>(g.nodes.size()) || g.nodes[L.node].name != L.name)
      fail("engine: layer '{}' is not node {} of graph '{}'", L.name, L.node, g.name);
    const bool last = li + 1 == im.layers.size();
    if (L.in_node < 0 || L.in_node >= L.node)
      fail("engine: layer '{}' reads node {} (expected an earlier node)", L.name, L.in_node);
    if (li == 0) {
      // The first layer reads the input, possibly through a flatten.
      const Node& in = g.nodes[L.in_node];
      if (!(in.op == Op::Input || (in.op == Op::Flatten && g.nodes[in.inputs[0]].op == Op::Input)))
        fail("engine: the first layer '{}' reads '{}' (expected the input)", L.name, in.name);
    } else if (L.in_node != im.layers[li - 1].out_node) {
      fail("engine: layer '{}' reads '{}', not the output of '{}' (not a chain)", L.name,
           g.nodes[L.in_node].name, im.layers[li - 1].name);
    }
    if (last != (L.out_node < 0))
      fail("engine: layer '{}' {} a float output (expected only the last layer to)", L.name,
           last ? "lacks" : "has");
    Step st;
    st.layer = static_cast<int>(li);
    st.conv = conv_shape_of(g, L.node);
    check_conv(st.conv, &L);
    if (li == 0) ex.input_size_ = st.conv.in_size();
    if (last) {
      st.kind = Step::Kind::ConvF32;
      ex.output_size_ = st.conv.out_size();
      ex.steps_.push_back(st);
      break;
    }
    if (st.conv.groups == 1) {
      st.kind = Step::Kind::ConvFast;
      st.fast = static_cast<int>(ex.fast_.size());
      ex.fast_.push_back(prepare_conv2d_u8(st.conv, L, isa));
    } else {
      st.kind = Step::Kind::ConvRef;
    }
    ex.steps_.push_back(st);
    largest = std::max(largest, st.conv.out_size());
    // Walk to the output point: ReLU/ReLU6 are fused into the clamp, flatten is free, max-pooling
    // runs on the codes.
    for (int cur = L.node; cur != L.out_node;) {
      auto cons = consumers(g, cur);
      if (cons.size() != 1)
        fail("engine: '{}' has {} readers (expected a chain)", g.nodes[cur].name, cons.size());
      cur = cons[0];
      const Node& m = g.nodes[cur];
      if (m.op == Op::MaxPool) {
        const Shape& in = g.nodes[m.inputs[0]].out_shape;
        Step mp;
        mp.kind = Step::Kind::MaxPool;
        mp.pool = PoolShape{in.at(0), in.at(1), in.at(2), m.kernel, m.stride, m.padding};
        if (m.padding >= m.kernel)
          fail("engine: max-pool '{}' pads {} >= kernel {}", m.name, m.padding, m.kernel);
        largest = std::max(largest, mp.pool.c * mp.pool.out_h() * mp.pool.out_w());
        ex.steps_.push_back(mp);
      } else if (m.op != Op::ReLU && m.op != Op::ReLU6 && m.op != Op::Flatten) {
        fail(
            "engine: node '{}' between '{}' and its output point is not "
            "ReLU/ReLU6/max-pool/flatten",
            m.name, L.name);
      }
    }
  }
  // The memory plan: step i reads arena (i+1)%2 (or the input) and writes arena i%2.
  ex.arena_[0].assign(static_cast<size_t>(largest), 0);
  ex.arena_[1].assign(static_cast<size_t>(largest), 0);
  return ex;
}

void ChainExecutor::run(const uint8_t* x, float* logits) {
  const uint8_t* src = x;
  for (size_t i = 0; i < steps_.size(); ++i) {
    Step& st = steps_[i];
    uint8_t* dst = arena_[i % 2].data();
    switch (st.kind) {
      case Step::Kind::ConvFast:
        fast_[st.fast].run(src, dst);
        break;
      case Step::Kind::ConvRef:
        conv2d_u8_ref(st.conv, layers_[st.layer], src, dst);
        break;
      case Step::Kind::MaxPool:
        maxpool_u8_ref(st.pool, src, dst);
        break;
      case Step::Kind::ConvF32:
        conv2d_f32_ref(st.conv, layers_[st.layer], src, logits);
        return;
    }
    src = dst;
  }
}

}  // namespace sq
