// Conv / linear layers: groups = 1 on the optimized channel groups (GroupedConv2d), grouped and
// depthwise convs (and every conv of a reference plan) on conv2d_u8_ref, output at the next point
// downstream with ReLU/ReLU6 fused into the clamp; the last layer as float logits. A layer whose
// output is no point but feeds an average pooling through ReLU/ReLU6 is conv_pool.cpp's.
#include <fmt/format.h>

#include "op.h"
#include "sigmaquant/error.h"

namespace sq::ops {

namespace {

void eval_fast(const Run& r, const Step& st) { r.fast[st.fast].run(r.in(st), r.out(st)); }

void eval_ref(const Run& r, const Step& st) {
  conv2d_u8_ref(st.conv, r.layers[st.layer], r.in(st), r.out(st));
}

void eval_f32(const Run& r, const Step& st) {
  conv2d_f32_ref(st.conv, r.layers[st.layer], r.in(st), r.logits);
}

const StepType kConvFast{Step::Kind::ConvFast, "conv", eval_fast};
const StepType kConvRef{Step::Kind::ConvRef, "conv(ref)", eval_ref};
const StepType kConvF32{Step::Kind::ConvF32, "conv(f32)", eval_f32};

}  // namespace

void prepare_conv(Context& c, int node) {
  const Graph& g = c.g;
  const int li = c.layer_index(node);
  const IntLayer& L = c.layer(li);
  const Context::Val& in = c.input(L.in_node, node);
  if (in.point != L.in_node)
    fail("engine: layer '{}' reads codes of '{}' (expected its input point '{}')", L.name,
         g.nodes[in.point].name, g.nodes[L.in_node].name);
  Step st;
  st.name = g.nodes[node].name;
  st.layer = li;
  st.in = in.buf;
  st.conv = conv_shape_of(g, node);
  check_conv(st.conv, &L);
  if (node == g.output()) {
    if (L.out_node >= 0)
      fail("engine: the output layer '{}' writes point '{}' (expected float logits)", L.name,
           g.nodes[L.out_node].name);
    c.set_logits(st.conv.out_size());
    c.push(std::move(st), kConvF32);
    c.val(node).done = true;
    return;
  }
  if (L.out_node < 0) return push_conv_pool(c, node, std::move(st));
  Walk w = c.walk(node);
  if (w.point != L.out_node)
    fail("engine: layer '{}' writes point {} (expected '{}', the next point downstream)", L.name,
         L.out_node, w.point < 0 ? "none" : g.nodes[w.point].name);
  const ActQuant& q = c.point(L.out_node);
  const auto [lo, hi] = act_range(q, w.relu, w.relu6);
  if (L.out_scale != q.scale || L.out_zero_point != q.zero_point || L.out_lo != lo ||
      L.out_hi != hi)
    fail(
        "engine: layer '{}' writes '{}' at scale {}, zero point {}, range {}..{} "
        "(expected {}, {}, {}..{})",
        L.name, g.nodes[L.out_node].name, L.out_scale, L.out_zero_point, L.out_lo, L.out_hi,
        q.scale, q.zero_point, lo, hi);
  if (static_cast<int64_t>(L.requant.size()) != st.conv.out_c)
    fail("engine: layer '{}' has {} requantization constants (expected {})", L.name,
         L.requant.size(), st.conv.out_c);
  const int64_t bytes = st.conv.out_size();
  if (c.isa != Isa::Reference && st.conv.groups == 1) {
    GroupedConv2d conv =
        prepare_conv2d_grouped(st.conv, L, c.isa, c.point(L.in_node).bits, c.channel_groups);
    const std::string detail = fmt::format(" [{}]", conv.kernel_names());
    st.fast = c.add_fast(std::move(conv));
    return c.push_output(node, std::move(st), kConvFast, w, bytes, detail);
  }
  c.push_output(node, std::move(st), kConvRef, w, bytes);
}

}  // namespace sq::ops
