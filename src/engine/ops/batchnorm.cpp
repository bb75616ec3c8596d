// A batchnorm no conv absorbs (DenseNet's pre-activation BN after a concat; qmodel.h
// standalone_batchnorm): codes at its input's point → per channel a 256-entry table → codes at
// the point after it (through ReLU/ReLU6, max-pool, flatten: the walk). Each table is the
// simulation's arithmetic in float, as LibTorch's CPU batch_norm in evaluation computes it
// (measured against torch 1.13: invstd = 1 / √(var + eps), α = invstd · γ, β = fma(−mean, α, b),
// y = fma(x, α, β), all float), then the ReLU and the output quantizer.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "op.h"
#include "sigmaquant/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace sq::ops {

namespace {

// y = fma(x, α, β') with α = invstd·γ, β' = fma(−mean, α, β), invstd = 1 / √(var + eps), all
// float: the table's and the float form's one formula (LibTorch's, above).
std::pair<float, float> batchnorm_affine(float gamma, float beta, float mean, float var,
                                         double eps) {
  const float invstd = 1.0f / std::sqrt(var + static_cast<float>(eps));
  const float alpha = invstd * gamma;
  return {alpha, std::fma(-mean, alpha, beta)};
}

template <LutFn kLook>
void eval_channel_lut(const Run& r, const Step& st) {
  const int64_t plane = st.n / st.channels;
  const uint8_t* in = r.in(st);
  uint8_t* o = r.out(st);
  for (int64_t ch = 0; ch < st.channels; ++ch)
    kLook(r.luts[st.table + ch].data(), in + ch * plane, plane, o + ch * plane);
}

const StepType kChannelLut{Step::Kind::ChannelLut, "channel-table", eval_channel_lut<lut_u8>};
const StepType kChannelLutVbmi{Step::Kind::ChannelLut, "channel-table(avx512)",
                               eval_channel_lut<lut_u8_vbmi>};

// The float form (AVX-512 plans): batchnorm_table's arithmetic itself, 16 codes at a time, from
// two floats a channel (α, shift) instead of its 256-byte table — DenseNet's standalone
// batchnorms read 33,000 tables (8.6 MB) an image, which streamed from the cache at a fraction
// of the compute's speed. Used only where, per channel, it gives the table on all 256 codes.
struct BnFloat {
  float s_in, s_out;
  int32_t zp_in, qmax_in, zp_out, lo, hi, relu, relu6;
};

#if defined(__x86_64__) || defined(__i386__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f,avx512bw,avx512vl"))) void bn_float_plane(const BnFloat& f,
                                                                         float alpha, float shift,
                                                                         const uint8_t* x,
                                                                         int64_t n, uint8_t* y) {
  constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  const __m512i qmax = _mm512_set1_epi32(f.qmax_in), zpi = _mm512_set1_epi32(f.zp_in);
  const __m512 si = _mm512_set1_ps(f.s_in), so = _mm512_set1_ps(f.s_out), a = _mm512_set1_ps(alpha),
               b = _mm512_set1_ps(shift), zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f),
               zpo = _mm512_set1_ps(static_cast<float>(f.zp_out)),
               lo = _mm512_set1_ps(static_cast<float>(f.lo)),
               hi = _mm512_set1_ps(static_cast<float>(f.hi));
  for (int64_t k = 0; k < n; k += 16) {
    const __mmask16 m = n - k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - k)) - 1);
    __m512i c = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, x + k));
    c = _mm512_sub_epi32(_mm512_min_epi32(c, qmax), zpi);
    const __m512 xv = _mm512_mul_round_ps(_mm512_cvtepi32_ps(c), si, kRound);
    __m512 v = _mm512_fmadd_round_ps(xv, a, b, kRound);  // one rounding, as std::fma
    if (f.relu) v = _mm512_max_ps(v, zero);
    if (f.relu6) v = _mm512_min_ps(v, six);
    v = _mm512_add_ps(_mm512_roundscale_ps(_mm512_div_round_ps(v, so, kRound), kRound), zpo);
    v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
    _mm_mask_storeu_epi8(y + k, m, _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(v)));
  }
}
#pragma GCC diagnostic pop

void eval_bn_float(const Run& r, const Step& st) {
  const uint8_t* block = r.consts[st.table].data();
  BnFloat f;
  std::memcpy(&f, block, sizeof f);
  const int64_t plane = st.n / st.channels;
  const uint8_t* in = r.in(st);
  uint8_t* o = r.out(st);
  for (int64_t ch = 0; ch < st.channels; ++ch) {
    float ab[2];
    std::memcpy(ab, block + sizeof f + ch * 8, 8);
    bn_float_plane(f, ab[0], ab[1], in + ch * plane, plane, o + ch * plane);
  }
}

const StepType kBnFloat{Step::Kind::ChannelLut, "channel-affine(avx512)", eval_bn_float};
#endif

std::array<uint8_t, 256> batchnorm_table(const ActQuant& p, const ActQuant& q, float gamma,
                                         float beta, float mean, float var, double eps, bool relu,
                                         bool relu6, int32_t lo, int32_t hi) {
  const auto [alpha, shift] = batchnorm_affine(gamma, beta, mean, var, eps);
  std::array<uint8_t, 256> t{};
  for (int code = 0; code < 256; ++code) {
    const float x = static_cast<float>(std::min(code, p.qmax()) - p.zero_point) * p.scale;
    float y = std::fma(x, alpha, shift);
    if (relu || relu6) y = std::max(y, 0.0f);
    if (relu6) y = std::min(y, 6.0f);
    const float v = std::nearbyint(y / q.scale) + static_cast<float>(q.zero_point);
    t[static_cast<size_t>(code)] =
        static_cast<uint8_t>(std::clamp(v, static_cast<float>(lo), static_cast<float>(hi)));
  }
  return t;
}

}  // namespace

void prepare_batchnorm(Context& c, int node) {
  // (check_graph refused, up front, a batchnorm that is not standalone_batchnorm)
  const Node& n = c.g.nodes[node];
  const Context::Val in = c.input(n.inputs.at(0), node);
  const Walk w = c.walk(node);
  if (w.point < 0) fail("engine: batchnorm '{}' reaches no quantization point", n.name);
  const ActQuant& p = c.point(in.point);
  const ActQuant& q = c.point(w.point);
  const auto [lo, hi] = act_range(q, w.relu, w.relu6);
  const int64_t ch = n.out_shape.at(0);
  for (const auto& [key, shape] : c.g.expected_param_shapes(node)) {
    auto it = n.params.find(key);
    if (it == n.params.end() || it->second.shape != shape ||
        it->second.size() != numel(shape))
      fail("engine: batchnorm '{}': '{}' is missing or not of shape {}", n.name, key,
           shape_str(shape));
  }
  const auto& gamma = n.params.at("weight").data;
  const auto& beta = n.params.at("bias").data;
  const auto& mean = n.params.at("running_mean").data;
  const auto& var = n.params.at("running_var").data;
  Step st;
  st.name = n.name;
  st.in = in.buf;
  st.n = c.numel(node);
  st.channels = ch;
  std::vector<std::array<uint8_t, 256>> tables;
  for (int64_t k = 0; k < ch; ++k) {
    const auto i = static_cast<size_t>(k);
    if (!(var[i] + static_cast<float>(n.eps) > 0))
      fail("engine: batchnorm '{}': channel {} has variance {} (expected var + eps > 0)", n.name, k,
           var[i]);
    tables.push_back(
        batchnorm_table(p, q, gamma[i], beta[i], mean[i], var[i], n.eps, w.relu, w.relu6, lo, hi));
  }
  const int64_t bytes = st.n;
#if defined(__x86_64__) || defined(__i386__)
  if (use_vbmi_tables(c)) {  // the AVX-512 tier: the float form where it is every table
    const BnFloat f{p.scale,        q.scale, p.zero_point, p.qmax(),
                    q.zero_point,   lo,      hi,           w.relu || w.relu6 ? 1 : 0,
                    w.relu6 ? 1 : 0};
    std::vector<uint8_t> block(sizeof f + static_cast<size_t>(ch) * 8);
    std::memcpy(block.data(), &f, sizeof f);
    std::array<uint8_t, 256> codes{}, got{};
    for (int v = 0; v < 256; ++v) codes[static_cast<size_t>(v)] = static_cast<uint8_t>(v);
    bool same = true;
    for (int64_t k = 0; k < ch && same; ++k) {
      const auto i = static_cast<size_t>(k);
      const auto [alpha, shift] = batchnorm_affine(gamma[i], beta[i], mean[i], var[i], n.eps);
      const float ab[2] = {alpha, shift};
      std::memcpy(block.data() + sizeof f + k * 8, ab, 8);
      bn_float_plane(f, ab[0], ab[1], codes.data(), 256, got.data());
      same = got == tables[i];
    }
    if (same) {
      st.table = c.add_consts(std::move(block));
      return c.push_output(node, std::move(st), kBnFloat, w, bytes);
    }
  }
#endif
  for (int64_t k = 0; k < ch; ++k) {
    const int t = c.add_table(tables[static_cast<size_t>(k)]);
    if (k == 0) st.table = t;
  }
  c.push_output(node, std::move(st), use_vbmi_tables(c) ? kChannelLutVbmi : kChannelLut, w, bytes);
}

}  // namespace sq::ops
