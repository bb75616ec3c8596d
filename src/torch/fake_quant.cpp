#include "fake_quant.h"

#include <algorithm>
#include <cmath>

#include "sigmaquant/error.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace sq {

torch::Tensor round_ste(const torch::Tensor& x) { return (x.round() - x).detach() + x; }

namespace {

// Activation fake quantization in one pass over memory (CPU), with the STE / LSQ gradients:
//   y = (clamp(round(x / s) + zp, 0, qmax) - zp) * s
//   dy/dx = 1 inside the range, 0 outside;  dy/ds = round(x/s) - x/s inside, q_clamped - zp outside
// The composed-op version (used on GPU) makes ~8 passes over each activation tensor, and on this
// 2-core machine those memory-bound passes cost more than the convolutions.
}  // namespace

bool act_fake_quant_has_vector() {
#if defined(__x86_64__)
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
#else
  return false;
#endif
}

namespace {

// The forward of n elements: y = (min(max(nearbyint(x / s) + zp, 0), qmax) − zp) · s, the same
// IEEE operations element by element in both forms (so the same bits; NaN stays NaN). Without
// SSE4.1 in the baseline, std::nearbyint is a libm call per element: the AVX2 form is ~8× faster.
void fake_quant_scalar(const float* x, float* y, int64_t n, float s, float fz, float fq) {
  for (int64_t i = 0; i < n; ++i) {
    float v = std::nearbyint(x[i] / s) + fz;
    y[i] = (std::min(std::max(v, 0.0f), fq) - fz) * s;
  }
}
// And the backward's element terms: gx = g inside the range, else 0; ts (when wanted) the float
// term of dy/ds, round(x/s) − x/s inside, clamp(q) − zp outside, times g.
void fake_quant_grad_scalar(const float* x, const float* g, float* gx, float* ts, int64_t n,
                            float s, float fz, float fq) {
  for (int64_t i = 0; i < n; ++i) {
    float u = x[i] / s, r = std::nearbyint(u), v = r + fz;
    bool inside = v >= 0.0f && v <= fq;
    gx[i] = inside ? g[i] : 0.0f;
    if (ts) ts[i] = g[i] * (inside ? r - u : std::min(std::max(v, 0.0f), fq) - fz);
  }
}
#if defined(__x86_64__)
// std::max(v, 0) = (v < 0 ? 0 : v) and std::min(v, q) = (q < v ? q : v) are maxps(0, v) and
// minps(q, v): the second operand on NaN and on equal values, as the std forms.
__attribute__((target("avx2"))) void fake_quant_avx2(const float* x, float* y, int64_t n, float s,
                                                     float fz, float fq) {
  const __m256 vs = _mm256_set1_ps(s), vz = _mm256_set1_ps(fz), vq = _mm256_set1_ps(fq),
               zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 r = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(x + i), vs),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 v = _mm256_min_ps(vq, _mm256_max_ps(zero, _mm256_add_ps(r, vz)));
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_sub_ps(v, vz), vs));
  }
  fake_quant_scalar(x + i, y + i, n - i, s, fz, fq);
}
__attribute__((target("avx2"))) void fake_quant_grad_avx2(const float* x, const float* g, float* gx,
                                                          float* ts, int64_t n, float s, float fz,
                                                          float fq) {
  const __m256 vs = _mm256_set1_ps(s), vz = _mm256_set1_ps(fz), vq = _mm256_set1_ps(fq),
               zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 u = _mm256_div_ps(_mm256_loadu_ps(x + i), vs);
    const __m256 r = _mm256_round_ps(u, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 v = _mm256_add_ps(r, vz);
    const __m256 inside =
        _mm256_and_ps(_mm256_cmp_ps(v, zero, _CMP_GE_OQ), _mm256_cmp_ps(v, vq, _CMP_LE_OQ));
    const __m256 gv = _mm256_loadu_ps(g + i);
    _mm256_storeu_ps(gx + i, _mm256_and_ps(inside, gv));
    if (ts) {
      const __m256 out = _mm256_sub_ps(_mm256_min_ps(vq, _mm256_max_ps(zero, v)), vz);
      _mm256_storeu_ps(ts + i,
                       _mm256_mul_ps(gv, _mm256_blendv_ps(out, _mm256_sub_ps(r, u), inside)));
    }
  }
  fake_quant_grad_scalar(x + i, g + i, gx + i, ts ? ts + i : nullptr, n - i, s, fz, fq);
}
#endif
bool use_avx2() { return act_fake_quant_has_vector(); }

struct ActFakeQuant : public torch::autograd::Function<ActFakeQuant> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x,
                               torch::Tensor scale, int64_t zp, int64_t qmax, double grad_scale) {
    x = x.contiguous();
    const float s = std::max(std::fabs(scale.item<float>()), 1e-12f);
    torch::Tensor y = torch::empty_like(x);
    const float* xp = x.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    const float fz = static_cast<float>(zp), fq = static_cast<float>(qmax);
    const bool avx2 = use_avx2();
    at::parallel_for(0, x.numel(), 1 << 15, [&](int64_t b, int64_t e) {
#if defined(__x86_64__)
      if (avx2) return fake_quant_avx2(xp + b, yp + b, e - b, s, fz, fq);
#endif
      fake_quant_scalar(xp + b, yp + b, e - b, s, fz, fq);
    });
    ctx->save_for_backward({x, scale});
    ctx->saved_data["zp"] = zp;
    ctx->saved_data["qmax"] = qmax;
    ctx->saved_data["g"] = grad_scale;
    return y;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    torch::Tensor x = saved[0], scale = saved[1];
    const float s = std::max(std::fabs(scale.item<float>()), 1e-12f);
    const float fz = static_cast<float>(ctx->saved_data["zp"].toInt());
    const float fq = static_cast<float>(ctx->saved_data["qmax"].toInt());
    const double g = ctx->saved_data["g"].toDouble();
    torch::Tensor gy = grads[0].contiguous();
    torch::Tensor gx = torch::empty_like(x);
    const float* xp = x.data_ptr<float>();
    const float* gp = gy.data_ptr<float>();
    float* gxp = gx.data_ptr<float>();
    const bool want_s = scale.requires_grad();
    const int64_t n = x.numel(), chunk = 1 << 15, chunks = (n + chunk - 1) / chunk;
    std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
    const bool avx2 = use_avx2();
    at::parallel_for(0, chunks, 1, [&](int64_t cb, int64_t ce) {
      std::vector<float> ts(want_s ? static_cast<size_t>(chunk) : 0);
      for (int64_t c = cb; c < ce; ++c) {
        const int64_t b = c * chunk, m = std::min(n, (c + 1) * chunk) - b;
        float* t = want_s ? ts.data() : nullptr;
#if defined(__x86_64__)
        if (avx2)
          fake_quant_grad_avx2(xp + b, gp + b, gxp + b, t, m, s, fz, fq);
        else
#endif
          fake_quant_grad_scalar(xp + b, gp + b, gxp + b, t, m, s, fz, fq);
        double acc = 0;  // in element order: the sum does not depend on the path
        for (int64_t i = 0; want_s && i < m; ++i) acc += t[i];
        partial[c] = acc;
      }
    });
    torch::Tensor gs;
    if (want_s) {
      double total = 0;
      for (double p : partial) total += p;  // fixed order: deterministic
      gs = torch::full_like(scale, total * g);
    }
    return {gx, gs, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};
torch::Tensor scale_grad(const torch::Tensor& x, double g) { return (x - x * g).detach() + x * g; }

}  // namespace

void act_fake_quant(const float* x, float* y, int64_t n, float s, float zp, float qmax,
                    bool vector) {
#if defined(__x86_64__)
  if (vector && act_fake_quant_has_vector()) return fake_quant_avx2(x, y, n, s, zp, qmax);
#endif
  (void)vector;
  fake_quant_scalar(x, y, n, s, zp, qmax);
}

void act_fake_quant_grad(const float* x, const float* g, float* gx, float* ts, int64_t n, float s,
                         float zp, float qmax, bool vector) {
#if defined(__x86_64__)
  if (vector && act_fake_quant_has_vector())
    return fake_quant_grad_avx2(x, g, gx, ts, n, s, zp, qmax);
#endif
  (void)vector;
  fake_quant_grad_scalar(x, g, gx, ts, n, s, zp, qmax);
}

WeightMode weight_mode_from_name(const std::string& s) {
  if (s == "fixed") return WeightMode::Fixed;
  if (s == "ste") return WeightMode::STE;
  if (s == "lsq") return WeightMode::LSQ;
  fail("--weight-quant '{}' is not supported (expected lsq, ste or fixed)", s);
}

ActMode act_mode_from_name(const std::string& s) {
  if (s == "fixed") return ActMode::Fixed;
  if (s == "lsq") return ActMode::LSQ;
  if (s == "pact") return ActMode::PACT;
  fail("--act-quant '{}' is not supported (expected lsq, pact or fixed)", s);
}

QuantSim::QuantSim(const QuantModel& qm, WeightMode wm, ActMode am, bool with_acts)
    : wm_(wm), am_(am) {
  const Graph& g = qm.graph;
  for (const auto& n : g.nodes) names_.push_back(n.name);
  for (int i : g.weight_layers()) {
    const Node& n = g.nodes[i];
    const LayerBits& lb = qm.bits.for_layer(n.name);
    const Tensor& w = n.params.at("weight");
    std::vector<int64_t> bshape(w.shape.size(), 1);
    bshape[0] = n.out_channels;
    W q;
    q.per_channel = lb.granularity == Granularity::PerChannel;
    std::vector<float> qmax(n.out_channels), binary(n.out_channels);
    for (int64_t c = 0; c < n.out_channels; ++c) {
      int b = lb.channel_bits(c);
      qmax[c] = b <= 1 ? (b == 1 ? 1.0f : 0.0f) : static_cast<float>((1 << (b - 1)) - 1);
      binary[c] = b == 1;
    }
    q.qmax = torch::tensor(qmax).reshape(bshape);
    q.binary = torch::tensor(binary).reshape(bshape).to(torch::kBool);
    std::vector<float> s = qm.weight_scales.at(n.name);
    if (s.size() == 1) s.assign(static_cast<size_t>(n.out_channels), s[0]);
    for (float& v : s) v = v > 0 ? v : 1.0f;  // pruned channels: any positive scale
    torch::Tensor st = q.per_channel ? torch::tensor(s).reshape(bshape)
                                     : torch::full(std::vector<int64_t>(bshape.size(), 1), s[0]);
    double per = static_cast<double>(w.size() / n.out_channels);
    q.grad_scale = 1.0 / std::sqrt(per * std::max(1.0f, *std::max_element(qmax.begin(), qmax.end())));
    std::string pname = "w" + std::to_string(i);
    q.scale = wm == WeightMode::LSQ ? register_parameter(pname, st) : register_buffer(pname, st);
    q.qmax = register_buffer(pname + "_qmax", q.qmax);
    q.binary = register_buffer(pname + "_bin", q.binary);
    weights_[i] = q;
  }
  if (!with_acts) return;
  for (const auto& [i, bits] : activation_quant_points(g, qm.bits)) {
    const std::string& name = g.nodes[i].name;
    auto it = qm.acts.find(name);
    if (it == qm.acts.end()) fail("quantized model: no activation range for '{}'", name);
    const ActQuant& aq = it->second;
    A a;
    a.zero_point = aq.zero_point;
    a.qmax = aq.qmax();
    a.pact = am == ActMode::PACT && aq.zero_point == 0;
    torch::Tensor init = torch::tensor(a.pact ? static_cast<float>(aq.hi) : aq.scale);
    std::string pname = "a" + std::to_string(i);
    a.scale = am == ActMode::Fixed ? register_buffer(pname, init) : register_parameter(pname, init);
    a.scale_value = aq.scale;
    acts_[i] = a;
  }
}

torch::Tensor QuantSim::weight(int node, const torch::Tensor& w) {
  W& q = weights_.at(node);
  torch::Tensor s = q.scale;
  if (wm_ == WeightMode::STE) {
    // Max-based scale of the current weights, not trained.
    torch::Tensor m = q.per_channel ? w.detach().abs().flatten(1).amax(1).reshape(q.qmax.sizes())
                                    : w.detach().abs().amax();
    s = (m / q.qmax.clamp_min(1)).clamp_min(1e-12);
    torch::Tensor mean_abs = w.detach().abs().flatten(1).mean(1).reshape(q.qmax.sizes());
    s = torch::where(q.binary, mean_abs.clamp_min(1e-12), s);
  } else if (wm_ == WeightMode::LSQ) {
    s = scale_grad(q.scale, q.grad_scale).abs().clamp_min(1e-12);
  }
  torch::Tensor v = w / s;
  torch::Tensor r = round_ste(torch::max(torch::min(v, q.qmax), -q.qmax));
  torch::Tensor sign = torch::where(v >= 0, torch::ones_like(v), -torch::ones_like(v));
  r = torch::where(q.binary, (sign - v).detach() + v, r);
  return r * s;
}

torch::Tensor QuantSim::act(int node, const torch::Tensor& x) {
  A& a = acts_.at(node);
  if (x.device().is_cpu() && x.scalar_type() == torch::kFloat && !a.pact) {
    double g = 1.0 / std::sqrt(static_cast<double>(x.numel()) * batch_factor *
                               static_cast<double>(a.qmax));
    return ActFakeQuant::apply(x, a.scale, a.zero_point, a.qmax, g);
  }
  if (am_ == ActMode::Fixed) {
    // (torch::fake_quantize_per_tensor_affine computes the same but was measured ~10x slower
    // here, single-threaded.) Gradient: STE inside the range, zero outside.
    double s = a.scale_value;
    torch::Tensor v = round_ste(x * (1.0 / s)) + static_cast<double>(a.zero_point);
    return (torch::clamp(v, 0.0, static_cast<double>(a.qmax)) - static_cast<double>(a.zero_point)) * s;
  }
  if (a.pact) {
    // y = clip(x, 0, alpha); alpha learns through the clip (PACT) and the step alpha / qmax.
    torch::Tensor alpha = a.scale.abs().clamp_min(1e-6);
    torch::Tensor y = torch::min(torch::relu(x), alpha);
    torch::Tensor s = alpha / static_cast<double>(a.qmax);
    return round_ste(y / s) * s;
  }
  double g =
      1.0 / std::sqrt(static_cast<double>(x.numel()) * batch_factor * static_cast<double>(a.qmax));
  torch::Tensor s = scale_grad(a.scale, g).abs().clamp_min(1e-12);
  torch::Tensor v = torch::clamp(x / s + static_cast<double>(a.zero_point), 0.0,
                                 static_cast<double>(a.qmax));
  return (round_ste(v) - static_cast<double>(a.zero_point)) * s;
}

torch::Tensor QuantSim::bias(int node, int input_node, const torch::Tensor& b) {
  // Only the model as it will run (fixed scales): while scales are learned a rounding step
  // would make the forward jump with every tiny change of a scale (data-parallel ranks would
  // drift apart), and it is far below one output step (PyTorch's QAT keeps the float bias too).
  if (wm_ != WeightMode::Fixed || am_ != ActMode::Fixed) return b;
  auto ai = acts_.find(input_node);
  auto wi = weights_.find(node);
  if (ai == acts_.end() || wi == weights_.end()) return b;
  // With fixed scales weight() used q.scale; a pruned channel's unit is s_x (accumulator_unit).
  const W& q = wi->second;
  const torch::Tensor sw =
      torch::where(q.qmax > 0, q.scale, torch::ones_like(q.qmax)).reshape(-1).expand({b.size(0)});
  const torch::Tensor unit = (sw * static_cast<float>(ai->second.scale_value)).to(b.dtype());
  return round_ste(b / unit) * unit;
}

void QuantSim::import_from(const QuantModel& qm) {
  torch::NoGradGuard ng;
  for (auto& [i, q] : weights_) {
    std::vector<float> s = qm.weight_scales.at(names_[i]);
    torch::Tensor t = torch::tensor(s).to(q.scale.device());
    q.scale.copy_(s.size() == 1 ? t.reshape(std::vector<int64_t>(q.scale.dim(), 1)).expand_as(q.scale)
                                : t.reshape(q.scale.sizes()));
  }
  for (auto& [i, a] : acts_) {
    const ActQuant& aq = qm.acts.at(names_[i]);
    a.scale.fill_(a.pact ? aq.hi : aq.scale);
    a.scale_value = aq.scale;
  }
}

void QuantSim::export_to(QuantModel& qm) const {
  torch::NoGradGuard ng;
  for (const auto& [i, q] : weights_) {
    if (wm_ == WeightMode::STE) continue;  // recomputed from the final weights by the caller
    torch::Tensor s = q.scale.detach().abs().to(torch::kCPU).flatten().contiguous();
    std::vector<float> v(s.data_ptr<float>(), s.data_ptr<float>() + s.numel());
    if (!q.per_channel) v.resize(1);
    qm.weight_scales[names_[i]] = v;
  }
  for (const auto& [i, a] : acts_) {
    ActQuant& aq = qm.acts.at(names_[i]);
    double val = std::fabs(a.scale.detach().to(torch::kCPU).item<double>());
    if (a.pact) {
      aq = act_quant_from_range({0.0, val}, aq.bits);
    } else {
      aq.scale = static_cast<float>(val);
      aq.lo = -aq.zero_point * val;
      aq.hi = (aq.qmax() - aq.zero_point) * val;
    }
  }
}

}  // namespace sq
