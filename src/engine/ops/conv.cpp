// Conv / linear layers: groups = 1 on the optimized channel groups (GroupedConv2d), grouped and
// depthwise convs on conv_grouped.cpp's rows (every conv of a reference plan on conv2d_u8_ref),
// output at the next point downstream with ReLU/ReLU6 fused into the clamp; the last layer as
// float logits. A layer whose output is no point but feeds an average pooling through
// ReLU/ReLU6 is conv_pool.cpp's.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "op.h"
#include "sigmaquant/error.h"

#ifdef __x86_64__
#include <immintrin.h>
#endif

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
// integers and epilogue. Optimized plans keep the weights as int8 rows padded to 64 bytes with each
// row's Σ w after them (one consts block: 4× fewer bytes to stream than the layer's int32 weights,
// which is what a batch-1 matrix-vector product waits for) and reduce Σ w·x − zp·Σ w with int32
// partial sums per block of 32,768 products (|w| <= 128, x <= 255: a block stays below 2^31).
constexpr int64_t kRowAlign = 64, kDotBlock = 32768;

int64_t padded_row(int64_t k) { return (k + kRowAlign - 1) / kRowAlign * kRowAlign; }

std::vector<uint8_t> pack_linear(const ConvShape& s, const IntLayer& L) {
  const int64_t k = s.in_c, kp = padded_row(k);
  std::vector<uint8_t> block(static_cast<size_t>(s.out_c * kp + s.out_c * 8), 0);
  for (int64_t c = 0; c < s.out_c; ++c) {
    int64_t sum = 0;
    for (int64_t i = 0; i < k; ++i) {
      const int32_t w = L.weights[static_cast<size_t>(c * k + i)];
      if (w < -128 || w > 127)
        fail("engine: layer '{}' has weight {} (expected 8 bits)", L.name, w);
      block[static_cast<size_t>(c * kp + i)] = static_cast<uint8_t>(static_cast<int8_t>(w));
      sum += w;
    }
    std::memcpy(block.data() + s.out_c * kp + c * 8, &sum, 8);
  }
  return block;
}

// Σ_i w[i]·x[i] over one row (k products, w padded with zeros to a multiple of 64).
using RowDot = int64_t (*)(const int8_t* w, const uint8_t* x, int64_t k);

int64_t row_dot_portable(const int8_t* w, const uint8_t* x, int64_t k) {
  int64_t total = 0;
  for (int64_t b = 0; b < k; b += kDotBlock) {
    const int64_t e = std::min(k, b + kDotBlock);
    int32_t part = 0;
    for (int64_t i = b; i < e; ++i) part += int32_t{w[i]} * int32_t{x[i]};
    total += part;
  }
  return total;
}

template <RowDot kDot>
void eval_linear(const Run& r, const Step& st) {
  const ConvShape& s = st.conv;
  const IntLayer& L = r.layers[st.layer];
  const uint8_t* block = r.consts[st.table].data();
  const int64_t k = s.in_c, kp = padded_row(k);
  const uint8_t* x = r.in(st);
  const bool exact_bias = L.bias_float.size() == L.bias.size();
  for (int64_t c = 0; c < s.out_c; ++c) {
    int64_t wsum;
    std::memcpy(&wsum, block + s.out_c * kp + c * 8, 8);
    const int64_t dot = kDot(reinterpret_cast<const int8_t*>(block + c * kp), x, k) -
                        int64_t{L.in_zero_point} * wsum;
    const double unit = static_cast<double>(L.in_scale) * L.weight_scales[c];
    r.logits[c] = static_cast<float>(exact_bias ? static_cast<double>(dot) * unit + L.bias_float[c]
                                                : static_cast<double>(L.bias[c] + dot) * unit);
  }
}

const StepType kLinearF32{Step::Kind::ConvF32, "linear(f32)", eval_linear<row_dot_portable>};

#ifdef __x86_64__
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// 16 products a step: x widened to int16, w sign-extended, vpmaddwd into 8 int32 lanes.
__attribute__((target("avx2"))) int64_t row_dot_avx2(const int8_t* w, const uint8_t* x, int64_t k) {
  int64_t total = 0;
  const int64_t kv = k / 16 * 16;
  for (int64_t b = 0; b < kv; b += kDotBlock) {
    const int64_t e = std::min(kv, b + kDotBlock);
    __m256i acc = _mm256_setzero_si256();
    for (int64_t i = b; i < e; i += 16) {
      const __m256i xv =
          _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
      const __m256i wv =
          _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i)));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(xv, wv));
    }
    alignas(32) int32_t lanes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc);
    for (int32_t v : lanes) total += v;
  }
  for (int64_t i = kv; i < k; ++i) total += int32_t{w[i]} * int32_t{x[i]};
  return total;
}

// 64 products a vpdpbusd (u8 x · s8 w, 4 per int32 lane); the last partial 64 bytes of x by a
// masked load (w is zero there).
__attribute__((target("avx512f,avx512bw,avx512vnni"))) int64_t row_dot_avx512(const int8_t* w,
                                                                              const uint8_t* x,
                                                                              int64_t k) {
  int64_t total = 0;
  for (int64_t b = 0; b < k; b += kDotBlock) {
    const int64_t e = std::min(k, b + kDotBlock);
    __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
    int64_t i = b;
    for (; i + 128 <= e; i += 128) {
      acc0 = _mm512_dpbusd_epi32(acc0, _mm512_loadu_si512(x + i), _mm512_loadu_si512(w + i));
      acc1 =
          _mm512_dpbusd_epi32(acc1, _mm512_loadu_si512(x + i + 64), _mm512_loadu_si512(w + i + 64));
    }
    for (; i < e; i += 64) {
      const int64_t m = std::min<int64_t>(64, e - i);
      const __mmask64 mask = m == 64 ? ~__mmask64{0} : (__mmask64{1} << m) - 1;
      acc0 = _mm512_dpbusd_epi32(acc0, _mm512_maskz_loadu_epi8(mask, x + i),
                                 _mm512_loadu_si512(w + i));
    }
    total += _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1));
  }
  return total;
}
#pragma GCC diagnostic pop

const StepType kLinearF32Avx2{Step::Kind::ConvF32, "linear(f32, avx2)", eval_linear<row_dot_avx2>};
const StepType kLinearF32Avx512{Step::Kind::ConvF32, "linear(f32, avx512vnni)",
                                eval_linear<row_dot_avx512>};
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
  if (c.isa == Isa::Avx512Vnni) return kLinearF32Avx512;
  if (c.isa != Isa::Portable && cpu_has_avx2()) return kLinearF32Avx2;
#endif
  return kLinearF32;
}

// Grouped convs with at least 4 outputs a group run as group tiles on the x86 tiers
// (prepare_conv2d_group_tiles): the packed kernels on at most 4× the MACs beat the grouped loops'
// int32 dot products (RegNet-Y-400MF at 64²: grouped patches were 64 % of its time; with tiles
// 3.6× faster on AVX-512, 2.1× on the AVX2 tier, ResNeXt-50 1.7× there). Depthwise convs (one
// channel a group) keep conv_grouped.cpp's channels method; the portable tier its loops.
bool use_group_tiles(const Context& c, const ConvShape& s) {
#ifdef __x86_64__
  return c.isa != Isa::Portable && s.groups > 1 && s.out_c / s.groups >= 4 &&
         s.in_c / s.groups * s.window.kernel_h * s.window.kernel_w *
                 std::max<int64_t>(1, PreparedConv2d::kOcTile / (s.out_c / s.groups)) <=
             PreparedConv2d::kMaxTaps;
#else
  (void)c;
  (void)s;
  return false;
#endif
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
    if (&type != &kConvF32) st.table = c.add_consts(pack_linear(st.conv, L));
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
  if (c.isa != Isa::Reference && use_group_tiles(c, st.conv)) {
    GroupedConv2d conv = prepare_conv2d_group_tiles(st.conv, L, c.isa, c.point(L.in_node).bits);
    const std::string detail = fmt::format(" [{}]", conv.kernel_names());
    st.fast = c.add_fast(std::move(conv));
    return c.push_output(node, std::move(st), kConvFast, w, bytes, detail);
  }
  if (const StepType* grouped = grouped_conv_step(c, st))
    return c.push_output(node, std::move(st), *grouped, w, bytes);
  c.push_output(node, std::move(st), kConvRef, w, bytes);
}

}  // namespace sq::ops
