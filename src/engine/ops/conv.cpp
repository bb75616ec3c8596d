// Conv / linear layers: groups = 1 on the optimized channel groups (GroupedConv2d), grouped and
// depthwise convs on conv_grouped.cpp's rows (every conv of a reference plan on conv2d_u8_ref),
// output at the next point downstream with ReLU/ReLU6 fused into the clamp; the last layer as
// float logits. A layer whose output is no point but feeds an average pooling through
// ReLU/ReLU6 is conv_pool.cpp's.
#include <fmt/format.h>

#include <algorithm>

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

// The float logits of a linear layer (one pixel in, one out, a 1×1 window): conv2d_f32_ref's
// integers and epilogue, with the reduction Σ w · (x − zp) in int32 partial sums a compiler
// vectorizes. |w| <= 127 and |x − zp| <= 255 (weights and activations of at most 8 bits), so a
// block of 4,096 products stays below 2^27.
template <typename Sum>
inline void linear_f32(const ConvShape& s, const IntLayer& L, const uint8_t* x, float* y, Sum sum) {
  const int64_t k = s.in_c;
  const bool exact_bias = L.bias_float.size() == L.bias.size();
  for (int64_t c = 0; c < s.out_c; ++c) {
    const int64_t dot = sum(L.weights.data() + c * k, x, k, L.in_zero_point);
    const double unit = static_cast<double>(L.in_scale) * L.weight_scales[c];
    y[c] = static_cast<float>(exact_bias ? static_cast<double>(dot) * unit + L.bias_float[c]
                                         : static_cast<double>(L.bias[c] + dot) * unit);
  }
}

__attribute__((always_inline)) inline int64_t dot_u8(const int32_t* w, const uint8_t* x, int64_t k,
                                                     int32_t zp) {
  int64_t total = 0;
  for (int64_t b = 0; b < k; b += 4096) {
    const int64_t e = std::min(k, b + 4096);
    int32_t part = 0;
    for (int64_t i = b; i < e; ++i) part += w[i] * (static_cast<int32_t>(x[i]) - zp);
    total += part;
  }
  return total;
}

int64_t dot_u8_portable(const int32_t* w, const uint8_t* x, int64_t k, int32_t zp) {
  return dot_u8(w, x, k, zp);
}

void eval_linear_f32(const Run& r, const Step& st) {
  linear_f32(st.conv, r.layers[st.layer], r.in(st), r.logits, dot_u8_portable);
}

const StepType kLinearF32{Step::Kind::ConvF32, "linear(f32)", eval_linear_f32};

#ifdef __x86_64__
__attribute__((target("avx2"))) int64_t dot_u8_avx2(const int32_t* w, const uint8_t* x, int64_t k,
                                                    int32_t zp) {
  return dot_u8(w, x, k, zp);
}

void eval_linear_f32_avx2(const Run& r, const Step& st) {
  linear_f32(st.conv, r.layers[st.layer], r.in(st), r.logits, dot_u8_avx2);
}

const StepType kLinearF32Avx2{Step::Kind::ConvF32, "linear(f32, avx2)", eval_linear_f32_avx2};
#endif

// The output layer's step: in optimized plans a linear layer's vectorized reduction (AVX2 where
// the plan's ISA has it), else the reference.
const StepType& logits_step(const Context& c, const ConvShape& s) {
  const Window2d& w = s.window;
  const bool linear = c.isa != Isa::Reference && s.in_h == 1 && s.in_w == 1 && s.groups == 1 &&
                      w.kernel_h == 1 && w.kernel_w == 1 && w.pad_top == 0 && w.pad_left == 0 &&
                      w.pad_bottom == 0 && w.pad_right == 0;
  if (!linear) return kConvF32;
#ifdef __x86_64__
  const Isa isa = c.isa == Isa::Auto ? best_isa() : c.isa;
  if (isa != Isa::Portable && cpu_has_avx2()) return kLinearF32Avx2;
#endif
  return kLinearF32;
}

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
    const StepType& type = logits_step(c, st.conv);
    c.push(std::move(st), type);
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
  if (const StepType* grouped = grouped_conv_step(c, st))
    return c.push_output(node, std::move(st), *grouped, w, bytes);
  c.push_output(node, std::move(st), kConvRef, w, bytes);
}

}  // namespace sq::ops
