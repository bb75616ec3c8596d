// Reference kernels: the oracle the optimized kernels are tested against. Written for clarity
// (direct loops, int64 accumulators), one sample at a time; see engine.h for the contracts.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "sigmaquant/engine.h"
#include "sigmaquant/error.h"

namespace sq {

void check_conv(const ConvShape& s, const IntLayer* L) {
  const Window2d& w = s.window;
  if (s.in_c <= 0 || s.in_h <= 0 || s.in_w <= 0 || s.out_c <= 0 || s.groups <= 0 ||
      w.kernel_h <= 0 || w.kernel_w <= 0 || w.stride_h <= 0 || w.stride_w <= 0 ||
      w.dilation_h <= 0 || w.dilation_w <= 0 || w.pad_top < 0 || w.pad_left < 0 ||
      w.pad_bottom < 0 || w.pad_right < 0)
    fail(
        "conv shape: in {}x{}x{}, out {}, window {}, groups {} "
        "(expected positive sizes, strides and dilations, and padding >= 0)",
        s.in_c, s.in_h, s.in_w, s.out_c, window_str(w), s.groups);
  if (s.in_c % s.groups || s.out_c % s.groups)
    fail("conv shape: {} input and {} output channels are not divisible by {} groups", s.in_c,
         s.out_c, s.groups);
  if (s.out_h() <= 0 || s.out_w() <= 0)
    fail("conv shape: window {} spans {}x{}, larger than the padded input {}x{}", window_str(w),
         w.extent_h(), w.extent_w(), s.in_h + w.pad_top + w.pad_bottom,
         s.in_w + w.pad_left + w.pad_right);
  if (!L) return;
  if (static_cast<int64_t>(L->weights.size()) != s.weights())
    fail("layer '{}': {} weights (expected {} for the conv shape)", L->name, L->weights.size(),
         s.weights());
  if (static_cast<int64_t>(L->bias.size()) != s.out_c)
    fail("layer '{}': {} biases (expected {})", L->name, L->bias.size(), s.out_c);
  if (L->out_node >= 0 && static_cast<int64_t>(L->requant.size()) != s.out_c)
    fail("layer '{}': {} requantization constants (expected {})", L->name, L->requant.size(),
         s.out_c);
  if (L->out_node < 0 && static_cast<int64_t>(L->weight_scales.size()) != s.out_c)
    fail("layer '{}': {} weight scales (expected {})", L->name, L->weight_scales.size(), s.out_c);
}

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
  return ConvShape{in[0], in[1], in[2], n.out_channels, n.window, n.groups};
}

namespace {

// Calls out(c, pixel, acc) with acc = bias[c] + Σ w · (x − zp_x) for every output.
template <typename Out>
void conv2d_acc_ref(const ConvShape& s, const IntLayer& L, const uint8_t* x, Out out) {
  check_conv(s, &L);
  const int64_t oh = s.out_h(), ow = s.out_w();
  const int64_t icg = s.in_c / s.groups, ocg = s.out_c / s.groups;
  const Window2d& w = s.window;
  const int64_t kh = w.kernel_h, kw = w.kernel_w;
  const int64_t zp = L.in_zero_point;
  for (int64_t oc = 0; oc < s.out_c; ++oc) {
    const int64_t g = oc / ocg;
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        int64_t acc = L.bias[oc];
        for (int64_t i = 0; i < icg; ++i)
          for (int64_t ky = 0; ky < kh; ++ky)
            for (int64_t kx = 0; kx < kw; ++kx) {
              const int64_t iy = oy * w.stride_h - w.pad_top + ky * w.dilation_h,
                            ix = ox * w.stride_w - w.pad_left + kx * w.dilation_w;
              // Padding is the real value 0, i.e. the input zero point: it contributes nothing.
              if (iy < 0 || iy >= s.in_h || ix < 0 || ix >= s.in_w) continue;
              const int64_t xv = x[((g * icg + i) * s.in_h + iy) * s.in_w + ix];
              acc +=
                  static_cast<int64_t>(L.weights[((oc * icg + i) * kh + ky) * kw + kx]) * (xv - zp);
            }
        out(oc, oy * ow + ox, acc);
      }
  }
}

void check_u8_point(const char* op, int32_t zp_a, int32_t zp_b, int32_t zp_out, int32_t lo,
                    int32_t hi) {
  for (int32_t zp : {zp_a, zp_b, zp_out})
    if (zp < 0 || zp > 255) fail("{}: zero point {} (expected 0..255)", op, zp);
  if (lo < 0 || hi > 255 || lo > hi)
    fail("{}: output range {}..{} (expected 0 <= lo <= hi <= 255)", op, lo, hi);
}

ConvShape linear_shape(int64_t in_features, int64_t out_features) {
  return ConvShape{in_features, 1, 1, out_features, 1, 1, 0, 1};
}

}  // namespace

void conv2d_u8_ref(const ConvShape& s, const IntLayer& L, const uint8_t* x, uint8_t* y) {
  if (L.out_node < 0)
    fail("conv2d_u8_ref: layer '{}' has a float output (use the _f32 kernel)", L.name);
  const int64_t pix = s.out_h() * s.out_w();
  conv2d_acc_ref(s, L, x, [&](int64_t c, int64_t p, int64_t acc) {
    y[c * pix + p] = static_cast<uint8_t>(L.output(c, acc));
  });
}

void conv2d_f32_ref(const ConvShape& s, const IntLayer& L, const uint8_t* x, float* y) {
  const int64_t pix = s.out_h() * s.out_w();
  // With the float bias known, the int32 bias's rounding is undone: (acc − bias) · unit + b.
  const bool exact_bias = L.bias_float.size() == L.bias.size();
  conv2d_acc_ref(s, L, x, [&](int64_t c, int64_t p, int64_t acc) {
    const double unit = static_cast<double>(L.in_scale) * L.weight_scales[c];
    y[c * pix + p] = static_cast<float>(exact_bias ? static_cast<double>(acc - L.bias[c]) * unit +
                                                         L.bias_float[c]
                                                   : static_cast<double>(acc) * unit);
  });
}

void conv2d_acc_ref(const ConvShape& s, const IntLayer& L, const uint8_t* x, int64_t* acc) {
  const int64_t pix = s.out_h() * s.out_w();
  conv2d_acc_ref(s, L, x, [&](int64_t c, int64_t p, int64_t a) { acc[c * pix + p] = a; });
}

void linear_u8_ref(int64_t in_features, int64_t out_features, const IntLayer& L, const uint8_t* x,
                   uint8_t* y) {
  conv2d_u8_ref(linear_shape(in_features, out_features), L, x, y);
}

void linear_f32_ref(int64_t in_features, int64_t out_features, const IntLayer& L, const uint8_t* x,
                    float* y) {
  conv2d_f32_ref(linear_shape(in_features, out_features), L, x, y);
}

namespace {

// The simulation's add in integers (engine.h, AddParams): the operands' float32 values as
// multiples of one power of two, and per output code the least sum that reaches it. Leaves p.ta
// empty when the sums would not fit in int64.
void make_exact_add(AddParams& p, float s_a, float s_b, float s_out) {
  // fl((q − zp)·s), as fake_quant.cpp's ActFakeQuant computes the dequantized value.
  std::array<float, 256> va{}, vb{};
  int e = std::numeric_limits<int>::max();
  double largest = 0;
  for (int q = 0; q < 256; ++q) {
    va[static_cast<size_t>(q)] = static_cast<float>(q - p.zp_a) * s_a;
    vb[static_cast<size_t>(q)] = static_cast<float>(q - p.zp_b) * s_b;
    for (float v : {va[static_cast<size_t>(q)], vb[static_cast<size_t>(q)]}) {
      if (v == 0) continue;
      int ex = 0;
      std::frexp(v, &ex);  // |v| = m · 2^ex, m in [1/2, 1): a 24-bit mantissa · 2^(ex − 24)
      e = std::min(e, ex - 24);
      largest = std::max(largest, std::fabs(static_cast<double>(v)));
    }
  }
  if (e == std::numeric_limits<int>::max()) e = 0;
  if (std::ldexp(largest, -e) >= 0x1p60) return;  // two sums must fit in int64
  p.ta.resize(256);
  p.tb.resize(256);
  for (size_t q = 0; q < 256; ++q) {
    p.ta[q] = static_cast<int64_t>(std::ldexp(static_cast<double>(va[q]), -e));
    p.tb[q] = static_cast<int64_t>(std::ldexp(static_cast<double>(vb[q]), -e));
  }
  const int64_t smin =
      *std::min_element(p.ta.begin(), p.ta.end()) + *std::min_element(p.tb.begin(), p.tb.end());
  const int64_t smax =
      *std::max_element(p.ta.begin(), p.ta.end()) + *std::max_element(p.tb.begin(), p.tb.end());
  // The simulated code (before the clamp) of the operand sum: fl(a + b) is the exact sum rounded
  // once to float (int64 → float rounds to nearest even, the scaling by 2^e is exact), then
  // nearbyint(fl(y / s_out)) + zp_out as the output point's quantizer. Non-decreasing in the sum.
  const auto code = [&](int64_t sum) {
    const float y = std::ldexp(static_cast<float>(sum), e);
    const float r = std::clamp(y / s_out, -1e9f, 1e9f);
    return static_cast<int64_t>(std::nearbyint(r)) + p.zp_out;
  };
  p.thr.assign(257, smin);
  for (int32_t k = p.lo + 1; k <= p.hi; ++k) {
    int64_t lo = std::max(smin, p.thr[static_cast<size_t>(k - 1)]), hi = smax + 1;
    while (lo < hi) {  // the least sum in [lo, hi) whose code is at least k (hi: none)
      const int64_t mid = lo + (hi - lo) / 2;
      if (code(mid) >= k)
        hi = mid;
      else
        lo = mid + 1;
    }
    p.thr[static_cast<size_t>(k)] = lo;
  }
}

}  // namespace

AddParams make_add_params(float s_a, int32_t zp_a, float s_b, int32_t zp_b, float s_out,
                          int32_t zp_out, int32_t lo, int32_t hi) {
  if (!(s_a > 0) || !(s_b > 0) || !(s_out > 0) || !std::isfinite(s_a) || !std::isfinite(s_b) ||
      !std::isfinite(s_out))
    fail("add: scales {}, {} -> {} (expected positive finite numbers)", s_a, s_b, s_out);
  check_u8_point("add", zp_a, zp_b, zp_out, lo, hi);
  AddParams p;
  p.zp_a = zp_a;
  p.zp_b = zp_b;
  p.zp_out = zp_out;
  p.lo = lo;
  p.hi = hi;
  p.s_a = s_a;
  p.s_b = s_b;
  p.s_out = s_out;
  p.m_a = quantize_multiplier(static_cast<double>(s_a) / s_out);
  p.m_b = quantize_multiplier(static_cast<double>(s_b) / s_out);
  make_exact_add(p, s_a, s_b, s_out);
  return p;
}

void add_u8_ref(const AddParams& p, const uint8_t* a, const uint8_t* b, int64_t n, uint8_t* y) {
  for (int64_t i = 0; i < n; ++i) {
    if (p.exact()) {
      y[i] = static_cast<uint8_t>(p.code_of_sum(p.ta[a[i]] + p.tb[b[i]]));
      continue;
    }
    const int64_t ta =
        requantize((int64_t{a[i]} - p.zp_a) * (int64_t{1} << AddParams::kShift), p.m_a);
    const int64_t tb =
        requantize((int64_t{b[i]} - p.zp_b) * (int64_t{1} << AddParams::kShift), p.m_b);
    // Arithmetic shift of the sum: rounds half up.
    const int64_t v =
        ((ta + tb + (int64_t{1} << (AddParams::kShift - 1))) >> AddParams::kShift) + p.zp_out;
    y[i] = static_cast<uint8_t>(std::clamp<int64_t>(v, p.lo, p.hi));
  }
}

MulParams make_mul_params(float s_a, int32_t zp_a, float s_b, int32_t zp_b, float s_out,
                          int32_t zp_out, int32_t lo, int32_t hi, int64_t per) {
  if (!(s_a > 0) || !(s_b > 0) || !(s_out > 0))
    fail("mul: scales {}, {} -> {} (expected positive)", s_a, s_b, s_out);
  if (per <= 0) fail("mul: broadcast factor {} (expected positive)", per);
  check_u8_point("mul", zp_a, zp_b, zp_out, lo, hi);
  MulParams p;
  p.zp_a = zp_a;
  p.zp_b = zp_b;
  p.zp_out = zp_out;
  p.lo = lo;
  p.hi = hi;
  p.per = per;
  p.m = quantize_multiplier(static_cast<double>(s_a) * s_b / s_out);
  return p;
}

void mul_u8_ref(const MulParams& p, const uint8_t* a, const uint8_t* b, int64_t n, uint8_t* y) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t prod = (int64_t{a[i]} - p.zp_a) * (int64_t{b[i / p.per]} - p.zp_b);
    const int64_t v = int64_t{requantize(prod, p.m)} + p.zp_out;
    y[i] = static_cast<uint8_t>(std::clamp<int64_t>(v, p.lo, p.hi));
  }
}

void channel_shuffle_u8_ref(int64_t c, int64_t groups, int64_t plane, const uint8_t* x,
                            uint8_t* y) {
  const int64_t per = c / groups;
  for (int64_t i = 0; i < groups; ++i)
    for (int64_t j = 0; j < per; ++j)
      std::memcpy(y + (j * groups + i) * plane, x + (i * per + j) * plane,
                  static_cast<size_t>(plane));
}

namespace {
// Pools have no dilation (the IR refuses it); a shape built by hand with one is refused here.
void check_pool_dilation(const char* op, const PoolShape& s) {
  if (s.window.dilation_h != 1 || s.window.dilation_w != 1)
    fail("{}: window {} is dilated (expected dilation 1)", op, window_str(s.window));
}
}  // namespace

void maxpool_u8_ref(const PoolShape& s, const uint8_t* x, uint8_t* y) {
  check_pool_dilation("maxpool", s);
  const int64_t oh = s.out_h(), ow = s.out_w();
  for (int64_t c = 0; c < s.c; ++c)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        int m = -1;  // every window holds at least one real element (padding < kernel)
        for (int64_t ky = 0; ky < s.window.kernel_h; ++ky)
          for (int64_t kx = 0; kx < s.window.kernel_w; ++kx) {
            const int64_t iy = oy * s.window.stride_h - s.window.pad_top + ky,
                          ix = ox * s.window.stride_w - s.window.pad_left + kx;
            if (iy < 0 || iy >= s.in_h || ix < 0 || ix >= s.in_w) continue;
            m = std::max<int>(m, x[(c * s.in_h + iy) * s.in_w + ix]);
          }
        y[(c * oh + oy) * ow + ox] = static_cast<uint8_t>(std::max(m, 0));
      }
}

AvgPoolParams make_avgpool_params(float s_in, int32_t zp_in, float s_out, int32_t zp_out,
                                  int64_t window, int32_t lo, int32_t hi) {
  if (!(s_in > 0) || !(s_out > 0) || window <= 0)
    fail("avgpool: scales {} -> {}, window {} (expected positive)", s_in, s_out, window);
  check_u8_point("avgpool", zp_in, zp_in, zp_out, lo, hi);
  AvgPoolParams p;
  p.zp_in = zp_in;
  p.zp_out = zp_out;
  p.lo = lo;
  p.hi = hi;
  p.m = quantize_multiplier(static_cast<double>(s_in) / (static_cast<double>(s_out) * window));
  return p;
}

void avgpool_u8_ref(const PoolShape& s, const AvgPoolParams& p, const uint8_t* x, uint8_t* y) {
  check_pool_dilation("avgpool", s);
  const int64_t oh = s.out_h(), ow = s.out_w();
  for (int64_t c = 0; c < s.c; ++c)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        int64_t sum = 0;  // padded taps are x = zp_in: they add 0 but count in the window
        for (int64_t ky = 0; ky < s.window.kernel_h; ++ky)
          for (int64_t kx = 0; kx < s.window.kernel_w; ++kx) {
            const int64_t iy = oy * s.window.stride_h - s.window.pad_top + ky,
                          ix = ox * s.window.stride_w - s.window.pad_left + kx;
            if (iy < 0 || iy >= s.in_h || ix < 0 || ix >= s.in_w) continue;
            sum += int64_t{x[(c * s.in_h + iy) * s.in_w + ix]} - p.zp_in;
          }
        const int64_t v = int64_t{requantize(sum, p.m)} + p.zp_out;
        y[(c * oh + oy) * ow + ox] = static_cast<uint8_t>(std::clamp<int64_t>(v, p.lo, p.hi));
      }
}

void global_avgpool_u8_ref(int64_t c, int64_t hw, const AvgPoolParams& p, const uint8_t* x,
                           uint8_t* y) {
  for (int64_t ch = 0; ch < c; ++ch) {
    int64_t sum = 0;
    for (int64_t i = 0; i < hw; ++i) sum += int64_t{x[ch * hw + i]} - p.zp_in;
    const int64_t v = int64_t{requantize(sum, p.m)} + p.zp_out;
    y[ch] = static_cast<uint8_t>(std::clamp<int64_t>(v, p.lo, p.hi));
  }
}

void clamp_u8_ref(uint8_t* x, int64_t n, int32_t lo, int32_t hi) {
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<uint8_t>(std::clamp<int32_t>(x[i], lo, hi));
}

}  // namespace sq
