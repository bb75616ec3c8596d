// Pooling on codes: max-pool (max commutes with the quantizer: input and output share the point;
// padded taps ignored, ceil_mode's taps past the input skipped) and average / global average
// pooling (integer window sum, one fixed-point multiplier to the next point downstream).
#include <algorithm>

#include "op.h"
#include "sigmaquant/error.h"

namespace sq::ops {

namespace {

void eval_maxpool(const Run& r, const Step& st) { maxpool_u8_ref(st.pool, r.in(st), r.out(st)); }

void eval_avgpool(const Run& r, const Step& st) {
  avgpool_u8_ref(st.pool, st.avg, r.in(st), r.out(st));
}

void eval_gap(const Run& r, const Step& st) {
  global_avgpool_u8_ref(st.pool.c, st.pool.in_h * st.pool.in_w, st.avg, r.in(st), r.out(st));
}

const StepType kMaxPool{Step::Kind::MaxPool, "maxpool", eval_maxpool};
const StepType kAvgPool{Step::Kind::AvgPool, "avgpool", eval_avgpool};
const StepType kGap{Step::Kind::Gap, "gap", eval_gap};

}  // namespace

int push_maxpool(Context& c, int node, int in_buf) {
  const Node& m = c.g.nodes[node];
  const Shape& in = c.g.nodes[m.inputs[0]].out_shape;
  Step st;
  st.name = m.name;
  st.in = in_buf;
  st.pool = PoolShape{in.at(0), in.at(1), in.at(2), m.window, m.ceil_mode};
  const Window2d& mw = m.window;
  if (std::max(mw.pad_top, mw.pad_bottom) >= mw.kernel_h ||
      std::max(mw.pad_left, mw.pad_right) >= mw.kernel_w)
    fail("engine: max-pool '{}' window {} pads as much as its kernel", m.name, window_str(mw));
  st.out = c.new_buffer(c.numel(node));
  const int out = st.out;
  c.push(std::move(st), kMaxPool);
  return out;
}

// A max-pool not walked over by its producer: on the codes of the point it reads.
void prepare_maxpool(Context& c, int node) {
  const Context::Val in = c.input(c.g.nodes[node].inputs.at(0), node);
  Walk w;
  w.point = in.point;
  w.path = {node};
  c.emit_path(w, in.buf);
  c.ensure_point(node);
}

void prepare_avgpool(Context& c, int node) {
  const Node& n = c.g.nodes[node];
  const Context::Val& in = c.input(n.inputs.at(0), node);
  Walk w = c.walk(node);
  if (w.point < 0) fail("engine: average pooling '{}' reaches no quantization point", n.name);
  const ActQuant &p = c.point(in.point), &q = c.point(w.point);
  const auto [lo, hi] = act_range(q, w.relu, w.relu6);
  const Shape& s = c.g.nodes[n.inputs[0]].out_shape;
  if (s.size() != 3) fail("engine: pooling '{}' reads rank {} (expected C,H,W)", n.name, s.size());
  Step st;
  st.name = n.name;
  st.in = in.buf;
  const StepType* type = &kAvgPool;
  if (n.op == Op::AvgPool) {
    st.pool = PoolShape{s[0], s[1], s[2], n.window};
    st.avg = make_avgpool_params(p.scale, p.zero_point, q.scale, q.zero_point, n.window.taps(),
                                 lo, hi);
  } else {
    type = &kGap;
    st.pool = PoolShape{s[0], s[1], s[2], 1, 1, 0};
    st.avg = make_avgpool_params(p.scale, p.zero_point, q.scale, q.zero_point, s[1] * s[2], lo, hi);
  }
  c.push_output(node, std::move(st), *type, w, c.numel(node));
}

}  // namespace sq::ops
