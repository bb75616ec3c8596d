// conv → ReLU/ReLU6 → global or windowed average pooling with no quantization point in between
// (MobileNetV2's head): one step on int64 accumulators, the activation applied to them at 2^−8
// accumulator units, summed over the window (padded taps add 0 and count), requantized per
// channel to the point after the pooling. When the pooling (→ flatten) is the network's output
// (SqueezeNet's classifier: conv → ReLU → global pooling), the step writes float logits.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "op.h"
#include "sigmaquant/error.h"
#include "sigmaquant/transform.h"

namespace sq::ops {

namespace {

constexpr int kGapFrac = 8;  // activation bounds and sums at 2^−8 accumulator units

// The conv's accumulators (bias + Σ w · (x − zp)) into r.acc, as conv2d_acc_ref: the reference
// plan's loops, or, in optimized plans, one output pixel at a time — its patch gathered as
// x − zp (padding 0) into int32 scratch after the accumulators, then a dot product per output
// channel in int32 partial sums a compiler vectorizes (|w| <= 127, |x − zp| <= 255: a block of
// 4,096 products stays below 2^27). The integers are the same; only the order of the sum differs.
using AccFn = void (*)(const ConvShape&, const IntLayer&, const uint8_t*, int64_t*);

void acc_ref(const ConvShape& s, const IntLayer& L, const uint8_t* x, int64_t* acc) {
  conv2d_acc_ref(s, L, x, acc);
}

__attribute__((always_inline)) inline void acc_by_patches(const ConvShape& s, const IntLayer& L,
                                                           const uint8_t* x, int64_t* acc) {
  const int64_t oh = s.out_h(), ow = s.out_w(), pix = oh * ow;
  const int64_t ocg = s.out_c / s.groups;
  const int64_t taps = s.in_c / s.groups * s.window.kernel_h * s.window.kernel_w;
  int32_t* __restrict col = reinterpret_cast<int32_t*>(acc + s.out_size());
  for (int64_t g = 0; g < s.groups; ++g)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        gather_patch(s, x, L.in_zero_point, g, oy, ox, col);
        for (int64_t oc = g * ocg; oc < (g + 1) * ocg; ++oc) {
          const int32_t* __restrict wr = L.weights.data() + oc * taps;
          int64_t total = L.bias[oc];
          for (int64_t b = 0; b < taps; b += 4096) {
            const int64_t e = std::min(taps, b + 4096);
            int32_t part = 0;
            for (int64_t k = b; k < e; ++k) part += wr[k] * col[k];
            total += part;
          }
          acc[oc * pix + oy * ow + ox] = total;
        }
      }
}

void acc_portable(const ConvShape& s, const IntLayer& L, const uint8_t* x, int64_t* acc) {
  acc_by_patches(s, L, x, acc);
}

#ifdef __x86_64__
__attribute__((target("avx2"))) void acc_avx2(const ConvShape& s, const IntLayer& L,
                                              const uint8_t* x, int64_t* acc) {
  acc_by_patches(s, L, x, acc);
}
#endif

// int64 slots after the accumulators for the patch (int32).
int64_t patch_slots(const ConvShape& s) {
  return (s.in_c / s.groups * s.window.kernel_h * s.window.kernel_w + 1) / 2;
}

// A step's accumulators into r.acc: an AccFn on the layer, or (groups = 1 in optimized plans) the
// conv kernels' tiles (GroupedConv2d::run_acc, the same integers).
using StepAcc = void (*)(const Run&, const Step&);
template <AccFn kAcc>
void acc_of(const Run& r, const Step& st) {
  kAcc(st.conv, r.layers[st.layer], r.in(st), r.acc);
}
void acc_tiles(const Run& r, const Step& st) { r.fast[st.fast].run_acc(r.in(st), r.acc); }

template <bool kGlobal, StepAcc kAcc>
void eval_conv_pool(const Run& r, const Step& st) {
  kAcc(r, st);
  uint8_t* out = r.out(st);
  const int64_t hw = st.conv.out_h() * st.conv.out_w();
  for (int64_t c = 0; c < st.conv.out_c; ++c) {
    // The activation on the accumulators, in 2^−8 units, in place.
    int64_t* a = r.acc + c * hw;
    const int64_t cap = st.gap_hi[c];
    for (int64_t p = 0; p < hw; ++p) {
      int64_t v = a[p] * (int64_t{1} << kGapFrac);
      if (st.relu) v = std::max<int64_t>(v, 0);
      if (cap >= 0) v = std::min(v, cap);
      a[p] = v;
    }
    auto emit = [&](int64_t sum) {
      const int64_t y = int64_t{requantize(sum, st.gap_m[c])} + st.zp_out;
      return static_cast<uint8_t>(std::clamp<int64_t>(y, st.lo, st.hi));
    };
    if (kGlobal) {
      int64_t sum = 0;
      for (int64_t p = 0; p < hw; ++p) sum += a[p];
      out[c] = emit(sum);
      continue;
    }
    // Average pooling windows (avgpool_u8_ref's loops): padded taps add 0, count in M.
    const PoolShape& ps = st.pool;
    const int64_t oh = ps.out_h(), ow = ps.out_w();
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        int64_t sum = 0;
        for (int64_t ky = 0; ky < ps.window.kernel_h; ++ky)
          for (int64_t kx = 0; kx < ps.window.kernel_w; ++kx) {
            const int64_t iy = oy * ps.window.stride_h - ps.window.pad_top + ky,
                          ix = ox * ps.window.stride_w - ps.window.pad_left + kx;
            if (iy < 0 || iy >= ps.in_h || ix < 0 || ix >= ps.in_w) continue;
            sum += a[iy * ps.in_w + ix];
          }
        out[(c * oh + oy) * ow + ox] = emit(sum);
      }
  }
}

// The logits: act((acc − bias) · unit + b) per pixel in double, averaged over the plane
// (sq_conv_gap_f32 in the C runtime is the same arithmetic, operation for operation).
template <StepAcc kAcc>
void eval_conv_gap_f32(const Run& r, const Step& st) {
  const IntLayer& L = r.layers[st.layer];
  kAcc(r, st);
  const int64_t hw = st.conv.out_h() * st.conv.out_w();
  const bool b_float = L.bias_float.size() == L.bias.size();
  for (int64_t c = 0; c < st.conv.out_c; ++c) {
    const double unit = static_cast<double>(L.in_scale) * static_cast<double>(L.weight_scales[c]);
    const int64_t* a = r.acc + c * hw;
    double sum = 0;
    for (int64_t p = 0; p < hw; ++p) {
      double v = b_float ? static_cast<double>(a[p] - L.bias[c]) * unit +
                               static_cast<double>(L.bias_float[c])
                         : static_cast<double>(a[p]) * unit;
      if ((st.relu || st.relu6) && v < 0) v = 0;
      if (st.relu6 && v > 6) v = 6;
      sum += v;
    }
    r.logits[c] = static_cast<float>(sum / static_cast<double>(hw));
  }
}

// Per step kind: the reference plan's, the portable and the AVX2 patch accumulation, and the
// conv kernels' (its label gets the kernel's name).
struct Kinds {
  StepType ref, portable, avx2, tiles;
};
#ifdef __x86_64__
#define SQ_ACC_AVX2 acc_avx2
#else
#define SQ_ACC_AVX2 acc_portable
#endif
const Kinds kConvGap{
    {Step::Kind::ConvGap, "conv+gap(ref)", eval_conv_pool<true, acc_of<acc_ref>>},
    {Step::Kind::ConvGap, "conv+gap", eval_conv_pool<true, acc_of<acc_portable>>},
    {Step::Kind::ConvGap, "conv+gap(avx2)", eval_conv_pool<true, acc_of<SQ_ACC_AVX2>>},
    {Step::Kind::ConvGap, "conv+gap", eval_conv_pool<true, acc_tiles>}};
const Kinds kConvGapF32{
    {Step::Kind::ConvGapF32, "conv+gap(f32, ref)", eval_conv_gap_f32<acc_of<acc_ref>>},
    {Step::Kind::ConvGapF32, "conv+gap(f32)", eval_conv_gap_f32<acc_of<acc_portable>>},
    {Step::Kind::ConvGapF32, "conv+gap(f32, avx2)", eval_conv_gap_f32<acc_of<SQ_ACC_AVX2>>},
    {Step::Kind::ConvGapF32, "conv+gap(f32)", eval_conv_gap_f32<acc_tiles>}};
const Kinds kConvPool{
    {Step::Kind::ConvPool, "conv+avgpool(ref)", eval_conv_pool<false, acc_of<acc_ref>>},
    {Step::Kind::ConvPool, "conv+avgpool", eval_conv_pool<false, acc_of<acc_portable>>},
    {Step::Kind::ConvPool, "conv+avgpool(avx2)", eval_conv_pool<false, acc_of<SQ_ACC_AVX2>>},
    {Step::Kind::ConvPool, "conv+avgpool", eval_conv_pool<false, acc_tiles>}};
#undef SQ_ACC_AVX2

// The step type for st, and in optimized plans of a groups = 1 conv whose reduction keeps the
// kernels' int32 exact, its tiles (st.fast set; detail: " [kernel]").
const StepType& prepare_step(Context& c, const Kinds& k, Step& st, std::string& detail) {
  if (c.isa == Isa::Reference) return k.ref;
  const IntLayer& L = c.layer(st.layer);
  if (st.conv.groups == 1 && st.conv.taps() <= PreparedConv2d::kMaxTaps) {
    GroupedConv2d conv = prepare_conv2d_grouped_acc(st.conv, L, c.isa, c.point(L.in_node).bits);
    detail = fmt::format(" [{}]", conv.kernel_names());
    st.fast = c.add_fast(std::move(conv));
    return k.tiles;
  }
#ifdef __x86_64__
  if (c.isa != Isa::Portable && cpu_has_avx2()) return k.avx2;
#endif
  return k.portable;
}

// From the layer through ReLU/ReLU6 nodes (marked done: fused) to the pooling node.
int find_pool(Context& c, const IntLayer& L, int node, bool& relu, bool& relu6) {
  const Graph& g = c.g;
  int cur = node;
  for (;;) {
    auto cons = consumers(g, cur);
    if (cons.size() != 1)
      fail(
          "engine: layer '{}' has no quantization point downstream and '{}' has {} readers "
          "(expected conv → relu/relu6 → average pooling)",
          L.name, g.nodes[cur].name, cons.size());
    cur = cons[0];
    const Op op = g.nodes[cur].op;
    if (op == Op::GlobalAvgPool || op == Op::AvgPool) return cur;
    if (op != Op::ReLU && op != Op::ReLU6)
      fail(
          "engine: layer '{}' has no quantization point downstream and is read by '{}' "
          "(expected conv → relu/relu6 → average pooling)",
          L.name, g.nodes[cur].name);
    relu |= op == Op::ReLU;
    relu6 |= op == Op::ReLU6;
    c.val(cur).done = true;
  }
}

}  // namespace

void push_conv_pool(Context& c, int node, Step st) {
  const IntLayer& L = c.layer(st.layer);
  bool relu = false, relu6 = false;
  const int gap = find_pool(c, L, node, relu, relu6);
  const Node& pool = c.g.nodes[gap];
  Walk w = c.walk(gap);
  if (w.point < 0) {
    // The network's output: conv → ReLU → global pooling (→ flatten) gives the float logits.
    int cur = gap;
    std::vector<int> tail;
    while (cur != c.g.output()) {
      auto cons = consumers(c.g, cur);
      if (cons.size() != 1 || c.g.nodes[cons[0]].op != Op::Flatten) break;
      cur = cons[0];
      tail.push_back(cur);
    }
    if (cur != c.g.output() || pool.op != Op::GlobalAvgPool)
      fail(
          "engine: average pooling '{}' reaches no quantization point (expected one downstream, "
          "or global pooling (→ flatten) giving the logits)",
          pool.name);
    st.relu = relu;
    st.relu6 = relu6;
    c.reserve_acc(st.conv.out_size() + patch_slots(st.conv));
    c.set_logits(st.conv.out_c);
    std::string detail;
    const StepType& type = prepare_step(c, kConvGapF32, st, detail);
    c.push(std::move(st), type, detail);
    c.val(gap).done = true;
    for (int t : tail) c.val(t).done = true;
    return;
  }
  const ActQuant& q = c.point(w.point);
  // The window each output averages over: the whole plane (global) or kh·kw taps, the padded
  // ones counting as zeros (count_include_pad, as the float model).
  int64_t hw = st.conv.out_h() * st.conv.out_w();
  const bool windowed = pool.op == Op::AvgPool;
  if (windowed) {
    st.pool = PoolShape{st.conv.out_c, st.conv.out_h(), st.conv.out_w(), pool.window};
    const Window2d& pw = pool.window;
    if (st.pool.out_h() <= 0 || st.pool.out_w() <= 0 ||
        2 * std::max(pw.pad_top, pw.pad_bottom) > pw.kernel_h ||
        2 * std::max(pw.pad_left, pw.pad_right) > pw.kernel_w)
      fail("engine: average pooling '{}': window {} over {}x{}", pool.name, window_str(pw),
           st.pool.in_h, st.pool.in_w);
    hw = pw.taps();
  }
  st.relu = relu || relu6;
  for (int64_t ch = 0; ch < st.conv.out_c; ++ch) {
    const float sw = L.weight_scales.at(ch);
    const double unit = static_cast<double>(L.in_scale) * (sw > 0 ? sw : 1.0);
    st.gap_hi.push_back(relu6 ? static_cast<int64_t>(
                                    std::min(std::ldexp(6.0 / unit, kGapFrac), std::ldexp(1.0, 62)))
                              : -1);
    st.gap_m.push_back(quantize_multiplier(unit / (std::ldexp(1.0, kGapFrac) * hw * q.scale)));
  }
  std::tie(st.lo, st.hi) = act_range(q, w.relu, w.relu6);
  st.zp_out = q.zero_point;
  c.reserve_acc(st.conv.out_size() + patch_slots(st.conv));
  std::string detail;
  const StepType& type = prepare_step(c, windowed ? kConvPool : kConvGap, st, detail);
  c.push_output(gap, std::move(st), type, w, c.numel(gap), detail);
}

}  // namespace sq::ops
