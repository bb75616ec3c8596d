// A batchnorm no conv absorbs (DenseNet's pre-activation BN after a concat; qmodel.h
// standalone_batchnorm): codes at its input's point → per channel a 256-entry table → codes at
// the point after it (through ReLU/ReLU6, max-pool, flatten: the walk). Each table is the
// simulation's arithmetic in float, as LibTorch's CPU batch_norm in evaluation computes it
// (measured against torch 1.13: invstd = 1 / √(var + eps), α = invstd · γ, β = fma(−mean, α, b),
// y = fma(x, α, β), all float), then the ReLU and the output quantizer.
#include <algorithm>
#include <cmath>

#include "op.h"
#include "sigmaquant/error.h"

namespace sq::ops {

namespace {

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

std::array<uint8_t, 256> batchnorm_table(const ActQuant& p, const ActQuant& q, float gamma,
                                         float beta, float mean, float var, double eps, bool relu,
                                         bool relu6, int32_t lo, int32_t hi) {
  const float invstd = 1.0f / std::sqrt(var + static_cast<float>(eps));
  const float alpha = invstd * gamma;
  const float shift = std::fma(-mean, alpha, beta);
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
  for (int64_t k = 0; k < ch; ++k) {
    const auto i = static_cast<size_t>(k);
    if (!(var[i] + static_cast<float>(n.eps) > 0))
      fail("engine: batchnorm '{}': channel {} has variance {} (expected var + eps > 0)", n.name, k,
           var[i]);
    const int t = c.add_table(
        batchnorm_table(p, q, gamma[i], beta[i], mean[i], var[i], n.eps, w.relu, w.relu6, lo, hi));
    if (k == 0) st.table = t;
  }
  const int64_t bytes = st.n;
  c.push_output(node, std::move(st), use_vbmi_tables(c) ? kChannelLutVbmi : kChannelLut, w, bytes);
}

}  // namespace sq::ops
