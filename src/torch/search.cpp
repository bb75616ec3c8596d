// The LibTorch side of the searches: the QAT oracle of SigmaQuant Phase 2 (short QAT cycles,
// output-KL per layer), Hutchinson Hessian traces and Zhou et al.'s noise measurements.
#include "sigmaquant/search.h"

#include <torch/torch.h>

#include <cmath>
#include <random>
#include <set>

#include "graph_module.h"
#include "sigmaquant/error.h"
#include "sigmaquant/quant.h"
#include "sigmaquant/quantize.h"
#include "sigmaquant/random.h"
#include "sigmaquant/transform.h"
#include "train_internal.h"

namespace sq {
namespace {

// Samples [first, first + n) of d, wrapping around.
Dataset slice(const Dataset& d, int64_t first, int64_t n) {
  Dataset s;
  s.name = d.name;
  s.image_shape = d.image_shape;
  s.num_classes = d.num_classes;
  int64_t m = d.image_numel();
  s.images.resize(n * m);
  s.labels.resize(n);
  for (int64_t k = 0; k < n; ++k) {
    int64_t i = (first + k) % d.size();
    std::copy(d.image(i), d.image(i) + m, s.images.data() + k * m);
    s.labels[k] = d.labels[i];
  }
  return s;
}

std::vector<double> softmax_rows(const std::vector<float>& logits, int64_t classes) {
  std::vector<double> p(logits.size());
  for (size_t r = 0; r < logits.size() / classes; ++r) {
    const float* z = logits.data() + r * classes;
    double m = *std::max_element(z, z + classes), s = 0;
    for (int64_t c = 0; c < classes; ++c) s += p[r * classes + c] = std::exp(z[c] - m);
    for (int64_t c = 0; c < classes; ++c) p[r * classes + c] /= s;
  }
  return p;
}

// KL(p || q) summed over rows, and its mean over rows.
double sum_kl(const std::vector<double>& p, const std::vector<double>& q) {
  double kl = 0;
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] > 0) kl += p[i] * std::log(p[i] / std::max(q[i], 1e-12));
  return kl;
}
double mean_kl(const std::vector<double>& p, const std::vector<double>& q, int64_t classes) {
  return sum_kl(p, q) / static_cast<double>(p.size() / classes);
}

double accuracy_of(const std::vector<float>& logits, const Dataset& d, int64_t classes) {
  int64_t n = static_cast<int64_t>(logits.size()) / classes, right = 0;
  for (int64_t r = 0; r < n; ++r) {
    const float* z = logits.data() + r * classes;
    right += std::max_element(z, z + classes) - z == d.labels[r];
  }
  return n ? static_cast<double>(right) / n : 0;
}

// Adds to tr[k], for each tensor xs[k], `iterations` Rademacher estimates of v^T H v, H the
// Hessian of `loss` with respect to xs[k] (Hutchinson). A tensor with no second-order path (a
// late activation of a ReLU network: piecewise linear logits) adds nothing.
void add_hutchinson(const torch::Tensor& loss, const std::vector<torch::Tensor>& xs,
                    int iterations, std::vector<double>& tr) {
  auto grads = torch::autograd::grad({loss}, xs, {}, true, true, true);
  for (int it = 0; it < iterations; ++it) {
    std::vector<torch::Tensor> vs;
    torch::Tensor dot = torch::zeros({});
    for (size_t k = 0; k < xs.size(); ++k) {
      vs.push_back(torch::randint(0, 2, xs[k].sizes()).to(torch::kFloat) * 2 - 1);
      if (grads[k].defined()) dot = dot + (grads[k] * vs[k]).sum();
    }
    if (!dot.requires_grad()) continue;
    auto hv = torch::autograd::grad({dot}, xs, {}, true, false, true);
    for (size_t k = 0; k < xs.size(); ++k)
      if (hv[k].defined()) tr[k] += (hv[k] * vs[k]).sum().item<double>();
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------

QuantModel requantize_model(const Graph& fp32, const QuantModel* from, const BitConfig& bits,
                            const Dataset& calib, int64_t calib_samples, uint64_t seed) {
  auto fresh = [&] {
    PtqOptions p;
    p.calib_samples = calib_samples;
    p.seed = seed;
    QuantModel qm = ptq(fp32, bits, calib, p);
    for (int i : qm.graph.weight_layers()) {
      const Node& n = qm.graph.nodes[i];
      const LayerBits& lb = bits.for_layer(n.name);
      if (lb.channel_wbits.empty())
        qm.weight_scales[n.name] =
            mse_weight_scales(n, lb.wbits, lb.granularity == Granularity::PerChannel);
    }
    return qm;
  };
  if (!from) return fresh();
  bool same_acts = true;
  for (int i : from->graph.weight_layers()) {
    const std::string& n = from->graph.nodes[i].name;
    same_acts = same_acts && from->bits.for_layer(n).abits == bits.for_layer(n).abits;
  }
  if (!same_acts) return fresh();
  QuantModel qm = *from;
  for (int i : qm.graph.weight_layers()) {
    const Node& n = qm.graph.nodes[i];
    const LayerBits &was = from->bits.for_layer(n.name), &now = bits.for_layer(n.name);
    if (was == now) continue;
    if (!now.channel_wbits.empty())
      fail("Phase 2 works on per-layer bits ('{}' has per-channel bits)", n.name);
    qm.weight_scales[n.name] =
        mse_weight_scales(n, now.wbits, now.granularity == Granularity::PerChannel);
  }
  qm.bits = bits;
  return qm;
}

// ---------------------------------------------------------------------------------------------
// The QAT oracle

struct QatOracle::Impl {
  Graph fp32, folded;
  const Dataset& train;
  Dataset val, kl_data;
  OracleOptions o;
  std::optional<QuantModel> current;
  std::map<std::pair<std::string, int>, double> kl_cache;  // layers; points as "act:<name>"
  std::map<std::string, ActivationStats> act_stats;      // point_kl's quantizers
  std::vector<double> ref_probs;
  double spent = 0;
  int64_t cursor = 0;  // where the next cycle's slice of the training set starts

  Impl(const Graph& g, const Dataset& t, const Dataset& v, const OracleOptions& opt)
      : fp32(g), folded(fold_batchnorm(g)), train(t), o(opt) {
    if (train.size() == 0) fail("Phase 2: the training set is empty");
    if (v.size() == 0) fail("Phase 2: the validation set is empty");
    val = slice(v, 0, std::min<int64_t>(o.val_samples, v.size()));
    kl_data = slice(train, 0, std::min<int64_t>(o.kl_samples, train.size()));
  }

  // The weights of layer node n quantized at `bits` (per channel, MSE scales), dequantized: the
  // only change output_kl makes to the FP32 network.
  static Tensor quantized_weight(const Node& n, int bits) {
    Tensor w = n.params.at("weight");
    std::vector<float> s = mse_weight_scales(n, bits, true);
    int64_t rows = w.shape[0], cols = w.size() / rows;
    double qmax = bits >= 2 ? std::ldexp(1.0, bits - 1) - 1 : 1;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < cols; ++k) {
        float& v = w.data[r * cols + k];
        if (s[r] == 0) continue;
        v = bits == 1 ? (v >= 0 ? s[r] : -s[r])
                      : static_cast<float>(
                            std::clamp(std::nearbyint(double(v) / s[r]), -qmax, qmax) * s[r]);
      }
    return w;
  }

  // The output KL of every weight layer at `bits`: the mean over the KL images of KL(p || q), p
  // the FP32 network's softmax, q the softmax of the FP32 network with that one layer's weights
  // quantized. In one pass over the network (in layer order): per batch of the KL images, the
  // FP32 forward node by node, and at each weight layer the rest of the network once more from
  // there with that layer quantized. The values before the layer are the FP32 ones either way,
  // so they are computed once, not once per layer: about half the work of one forward per layer,
  // on the same batches as predict's (one forward per layer, as before: the same numbers).
  // Per layer of folded.weight_layers(), in that order.
  std::vector<double> output_kl_all(int bits) {
    GraphModule m(folded);
    torch::NoGradGuard ng;
    m.eval();
    const std::vector<int> layers = folded.weight_layers();
    std::vector<torch::Tensor> qw;
    for (int li : layers) qw.push_back(to_torch(quantized_weight(folded.nodes[li], bits)));
    const int64_t n = kl_data.size(), classes = folded.num_classes,
                  batch = EvalOptions{}.batch_size;
    const size_t nodes = folded.nodes.size();
    std::vector<double> sum(layers.size(), 0.0);
    for (int64_t first = 0; first < n; first += batch) {
      const int64_t bs = std::min(batch, n - first);
      const torch::Tensor x = normalized_batch(kl_data, folded, first, bs);
      std::vector<torch::Tensor> v(nodes);
      std::vector<std::vector<float>> quantized(layers.size());
      size_t at = 0;
      for (size_t k = 0; k < layers.size(); ++k) {
        const auto li = static_cast<size_t>(layers[k]);
        m.run_nodes(x, v, at, li);
        at = li;
        torch::Tensor& w = m.param(layers[k], "weight");
        const torch::Tensor fp32 = w;
        w = qw[k];
        std::vector<torch::Tensor> rest = v;
        m.run_nodes(x, rest, li, nodes);
        w = fp32;
        quantized[k] = from_torch(rest.back()).data;
      }
      m.run_nodes(x, v, at, nodes);
      const std::vector<double> ref = softmax_rows(from_torch(v.back()).data, classes);
      for (size_t k = 0; k < layers.size(); ++k)
        sum[k] += sum_kl(ref, softmax_rows(quantized[k], classes));
    }
    for (double& v : sum) v /= static_cast<double>(n);
    return sum;
  }
};

QatOracle::QatOracle(const Graph& fp32, const Dataset& train, const Dataset& val,
                     const OracleOptions& o)
    : impl_(std::make_unique<Impl>(fp32, train, val, o)) {}
QatOracle::~QatOracle() = default;

double QatOracle::train_and_evaluate(const BitConfig& bits, double epochs, int iteration) {
  Impl& m = *impl_;
  QuantModel qm = requantize_model(m.fp32, m.current ? &*m.current : nullptr, bits, m.train,
                                   m.o.calib_samples, m.o.seed);
  EvalOptions eo;
  eo.dist = m.o.dist.get();  // shares evaluated per rank, counts all-reduced: the same everywhere
  if (epochs <= 0) {  // no cycle: the step is scored by post-training quantization alone
    m.current = qm;
    return evaluate_quant(qm, m.val, eo).accuracy;
  }
  const int64_t global_batch = m.o.batch_size * dist_world_size(m.o.dist.get());
  int64_t n = std::max<int64_t>(global_batch, std::llround(epochs * m.train.size()));
  // The cycle's slice depends only on the iteration, so a resumed search sees the same data.
  int64_t first = (static_cast<int64_t>(iteration) * n) % m.train.size();
  Dataset part = slice(m.train, first, n);
  TrainOptions t;
  t.epochs = 1;
  t.lr = m.o.lr;
  t.batch_size = m.o.batch_size;
  t.memory_limit = m.o.memory_limit;
  t.augment = m.o.augment;
  t.augment_pad = m.o.augment_pad;
  t.augment_flip = m.o.augment_flip;
  t.seed = m.o.seed + static_cast<uint64_t>(iteration);
  t.progress = m.o.progress && dist_rank(m.o.dist.get()) == 0;
  t.label = "cycle " + std::to_string(iteration);
  t.dist = m.o.dist;
  QatOptions q;
  q.weight_mode = m.o.qat_weight_mode;
  q.act_mode = m.o.qat_act_mode;
  qat(qm, part, nullptr, t, q);
  m.spent += static_cast<double>(n) / m.train.size();
  m.current = qm;
  return evaluate_quant(qm, m.val, eo).accuracy;
}

double QatOracle::layer_kl(const std::string& layer, int bits) {
  Impl& m = *impl_;
  auto key = std::make_pair(layer, bits);
  auto it = m.kl_cache.find(key);
  if (it != m.kl_cache.end()) return it->second;
  // Rank 0 measures and every rank takes its figure (a sum with the others' zeros): decisions
  // made from it are the same everywhere, also across machines whose float results could differ.
  DistContext* d = m.o.dist.get();
  if (m.o.kl == "weight") {
    std::vector<double> v{0.0};
    if (dist_rank(d) == 0) v[0] = weight_kl(m.folded.node(layer), bits);
    dist_allreduce_sum(d, v, fmt::format("Phase 2: KL of layer '{}' at {} bits", layer, bits));
    m.kl_cache[key] = v[0];
    return v[0];
  }
  // Output KL: every layer at this width in one pass (Phase 2 asks about nearly every layer at
  // every width it considers), measured by rank 0 and handed to every rank.
  const std::vector<int> layers = m.folded.weight_layers();
  std::vector<double> v =
      dist_rank(d) == 0 ? m.output_kl_all(bits) : std::vector<double>(layers.size(), 0.0);
  dist_allreduce_sum(d, v, fmt::format("Phase 2: KL of every layer at {} bits", bits));
  for (size_t k = 0; k < layers.size(); ++k)
    m.kl_cache[std::make_pair(m.folded.nodes[layers[k]].name, bits)] = v[k];
  auto found = m.kl_cache.find(key);
  if (found == m.kl_cache.end())
    fail("Phase 2: layer '{}' is not a weight layer of the network (no KL)", layer);
  return found->second;
}

const QuantModel& QatOracle::model() const {
  if (!impl_->current) fail("the oracle has not trained a model yet");
  return *impl_->current;
}
void QatOracle::set_model(const QuantModel& qm) { impl_->current = qm; }
void QatOracle::reset_model() { impl_->current.reset(); }
double QatOracle::qat_epochs() const { return impl_->spent; }

// ---------------------------------------------------------------------------------------------
// Hutchinson traces

std::map<std::string, double> hutchinson_traces(const Graph& g, const Dataset& data,
                                                int64_t samples, int iterations, uint64_t seed) {
  if (data.size() == 0) fail("Hessian traces: the dataset is empty");
  if (iterations < 1) fail("Hessian traces: at least one probe is needed");
  Graph f = fold_batchnorm(g);
  GraphModule m(f);
  m.eval();
  std::vector<int> layers = f.weight_layers();
  std::vector<torch::Tensor> ws;
  for (int i : layers) ws.push_back(m.param(i, "weight"));
  std::vector<double> tr(layers.size(), 0);
  // Batches of 128 images, fewer where the double backward would not fit in memory.
  const int64_t batch =
      batch_that_fits(m, data, 128, "hessian", [&](const torch::Tensor& x, const torch::Tensor& y) {
        std::vector<double> t(ws.size(), 0.0);
        add_hutchinson(torch::nn::functional::cross_entropy(m.forward(x), y), ws, 1, t);
      });
  torch::manual_seed(seed);
  int64_t n = std::min(samples, data.size()), batches = 0;
  for (int64_t first = 0; first < n; first += batch, ++batches) {
    int64_t bs = std::min(batch, n - first);
    torch::Tensor x = normalized_batch(data, f, first, bs);
    torch::Tensor y = torch::empty({bs}, torch::kLong);
    for (int64_t k = 0; k < bs; ++k) y[k] = static_cast<int64_t>(data.labels[first + k]);
    torch::Tensor loss = torch::nn::functional::cross_entropy(m.forward(x), y);
    add_hutchinson(loss, ws, iterations, tr);
  }
  std::map<std::string, double> out;
  for (size_t l = 0; l < layers.size(); ++l)
    out[f.nodes[layers[l]].name] = tr[l] / (static_cast<double>(batches) * iterations);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Zhou et al.'s noise gain and robustness

void adaptive_measure(const Graph& g, const Dataset& data, int64_t samples, double drop,
                      uint64_t seed, std::map<std::string, double>& p,
                      std::map<std::string, double>& t) {
  if (data.size() == 0) fail("adaptive: the dataset is empty");
  Graph f = fold_batchnorm(g);
  Dataset d = slice(data, 0, std::min(samples, data.size()));
  int64_t classes = f.num_classes;
  std::vector<float> ref = predict(f, d);
  double base = accuracy_of(ref, d, classes);
  auto noisy = [&](int layer, double k, double* noise_energy) {
    Graph h = f;
    Tensor& w = h.nodes[layer].params.at("weight");
    double sd = weight_std(f.nodes[layer]) * k;
    Normal nd(seed + static_cast<uint64_t>(layer));
    for (float& v : w.data) v += static_cast<float>(sd * nd());
    std::vector<float> z = predict(h, d);
    double e = 0;
    for (size_t i = 0; i < z.size(); ++i) e += double(z[i] - ref[i]) * (z[i] - ref[i]);
    *noise_energy = e / d.size();
    return accuracy_of(z, d, classes);
  };
  for (int i : f.weight_layers()) {
    const std::string& name = f.nodes[i].name;
    double n = static_cast<double>(f.nodes[i].params.at("weight").size());
    // Noise gain in the linear regime: small noise (1% of the weights' sigma).
    double e_small = 0;
    noisy(i, 0.01, &e_small);
    double sd = weight_std(f.nodes[i]) * 0.01;
    p[name] = e_small / std::max(sd * sd * n, 1e-30);
    // Robustness: the logit-noise energy where accuracy first drops by `drop` (bisection on log k).
    double lo = std::log(0.01), hi = std::log(10.0), e_at = 0;
    double e_hi = 0;
    if (base - noisy(i, std::exp(hi), &e_hi) < drop) {
      t[name] = e_hi;  // never drops that far: as robust as measured
      continue;
    }
    for (int it = 0; it < 7; ++it) {
      double mid = 0.5 * (lo + hi), e = 0;
      if (base - noisy(i, std::exp(mid), &e) >= drop) {
        hi = mid;
        e_at = e;
      } else {
        lo = mid;
      }
    }
    if (e_at == 0) noisy(i, std::exp(hi), &e_at);
    t[name] = e_at;
  }
}

// ---------------------------------------------------------------------------------------------
// Activation measurements (searched activation widths)

namespace {

// Applies `fn` to the outputs of the chosen nodes inside GraphModule's forward (weights float).
class PointHook : public QuantHook {
 public:
  std::set<int> nodes;
  std::function<torch::Tensor(int, const torch::Tensor&)> fn;
  bool quantizes_weight(int) const override { return false; }
  bool quantizes_act(int node) const override { return nodes.count(node) > 0; }
  torch::Tensor weight(int, const torch::Tensor& w) override { return w; }
  torch::Tensor act(int node, const torch::Tensor& x) override { return fn(node, x); }
};

Graph folded_with_shapes(const Graph& g) {
  Graph f = fold_batchnorm(g);
  f.infer_shapes();
  return f;
}

// Affine a-bit fake quantization over [lo, hi] (lo <= 0 <= hi after widening to include 0).
torch::Tensor affine_quant(const torch::Tensor& x, double lo, double hi, int bits) {
  lo = std::min(lo, 0.0);
  hi = std::max(hi, 0.0);
  const double levels = std::ldexp(1.0, bits) - 1;
  const double scale = (hi - lo) / levels;
  if (!(scale > 0)) return torch::zeros_like(x);
  const double zp = std::nearbyint(-lo / scale);
  return (torch::clamp(torch::round(x / scale) + zp, 0.0, levels) - zp) * scale;
}

constexpr double kClipGrid[] = {1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3};

}  // namespace

std::map<std::string, ActivationStats> activation_statistics(const Graph& g, const Dataset& data,
                                                             int64_t samples,
                                                             const std::vector<int>& widths) {
  if (data.size() == 0) fail("activation statistics: the dataset is empty");
  torch::NoGradGuard ng;
  Graph f = folded_with_shapes(g);
  const std::vector<ActivationPoint> points = activation_points(f);
  Dataset d = slice(data, 0, std::min(samples, data.size()));
  GraphModule m(f);
  m.eval();
  std::map<int, const ActivationPoint*> at;
  for (const ActivationPoint& p : points) at[p.node] = &p;
  struct Acc {
    double sum = 0, sumsq = 0, lo = 0, hi = 0;
    int64_t count = 0;
    std::map<std::pair<int, int>, double> sse;  // (width, clip index) -> sum of squared errors
  };
  std::map<int, Acc> acc;
  bool second = false;
  m.observer = [&](int node, const torch::Tensor& x) {
    auto it = at.find(node);
    if (it == at.end()) return;
    Acc& a = acc[node];
    torch::Tensor xd = x.to(torch::kDouble);
    if (!second) {
      const double lo = xd.min().item<double>(), hi = xd.max().item<double>();
      if (a.count == 0) a.lo = lo, a.hi = hi;
      a.lo = std::min(a.lo, lo);
      a.hi = std::max(a.hi, hi);
      a.sum += xd.sum().item<double>();
      a.sumsq += (xd * xd).sum().item<double>();
      a.count += xd.numel();
      return;
    }
    for (int w : widths)
      for (size_t c = 0; c < std::size(kClipGrid); ++c) {
        torch::Tensor e = affine_quant(x, a.lo * kClipGrid[c], a.hi * kClipGrid[c], w) - x;
        a.sse[{w, static_cast<int>(c)}] += e.to(torch::kDouble).pow(2).sum().item<double>();
      }
  };
  predict_module(m, d, 0);
  second = true;
  predict_module(m, d, 0);
  m.observer = nullptr;
  std::map<std::string, ActivationStats> out;
  for (const ActivationPoint& p : points) {
    const Acc& a = acc.at(p.node);
    ActivationStats s;
    s.elements = p.elements;
    s.lo = a.lo;
    s.hi = a.hi;
    const double mean = a.sum / static_cast<double>(a.count);
    s.sigma = std::sqrt(std::max(0.0, a.sumsq / static_cast<double>(a.count) - mean * mean));
    for (int w : widths) {
      double best = std::numeric_limits<double>::infinity();
      for (size_t c = 0; c < std::size(kClipGrid); ++c) {
        const double e = a.sse.at({w, static_cast<int>(c)});
        if (e < best) best = e, s.clip[w] = kClipGrid[c];
      }
      s.noise[w] = best / static_cast<double>(d.size());
    }
    out[p.name] = s;
  }
  return out;
}

double QatOracle::point_kl(const std::string& point, int bits) {
  Impl& m = *impl_;
  auto key = std::make_pair("act:" + point, bits);
  auto it = m.kl_cache.find(key);
  if (it != m.kl_cache.end()) return it->second;
  auto measure = [&] {
    auto st = m.act_stats.find(point);
    if (st == m.act_stats.end() || !st->second.clip.count(bits)) {
      std::vector<int> widths = {bits};
      for (int w = kMinActBits; w <= 8; ++w)
        if (w != bits) widths.push_back(w);
      for (auto& [name, s] : activation_statistics(m.fp32, m.kl_data, m.kl_data.size(), widths))
        m.act_stats[name] = s;
      st = m.act_stats.find(point);
      if (st == m.act_stats.end())
        fail("Phase 2: '{}' is not an activation point of model '{}'", point, m.folded.name);
    }
    if (m.ref_probs.empty())
      m.ref_probs = softmax_rows(predict(m.folded, m.kl_data), m.folded.num_classes);
    torch::NoGradGuard ng;
    GraphModule mod(m.folded);
    mod.eval();
    auto hook = std::make_shared<PointHook>();
    hook->nodes = {m.folded.index_of(point)};
    const ActivationStats& s = st->second;
    const double r = s.clip.at(bits);
    hook->fn = [&](int, const torch::Tensor& x) {
      return affine_quant(x, s.lo * r, s.hi * r, bits);
    };
    mod.set_quant(hook);
    return mean_kl(m.ref_probs,
                   softmax_rows(predict_module(mod, m.kl_data, 0), m.folded.num_classes),
                   m.folded.num_classes);
  };
  // As layer_kl: rank 0 measures, every rank takes its figure.
  DistContext* d = m.o.dist.get();
  std::vector<double> v{0.0};
  if (dist_rank(d) == 0) v[0] = measure();
  dist_allreduce_sum(d, v, fmt::format("Phase 2: KL of activation point '{}' at {} bits", point,
                                       bits));
  m.kl_cache[key] = v[0];
  return v[0];
}

std::map<std::string, double> activation_hessian_traces(const Graph& g, const Dataset& data,
                                                        int64_t samples, int iterations,
                                                        uint64_t seed) {
  if (data.size() == 0) fail("activation Hessian traces: the dataset is empty");
  if (iterations < 1) fail("activation Hessian traces: at least one probe is needed");
  Graph f = folded_with_shapes(g);
  const std::vector<ActivationPoint> points = activation_points(f);
  GraphModule m(f);
  m.eval();
  auto hook = std::make_shared<PointHook>();
  std::map<int, torch::Tensor> captured;
  for (const ActivationPoint& p : points) hook->nodes.insert(p.node);
  hook->fn = [&](int node, const torch::Tensor& x) {
    captured[node] = x;
    return x;
  };
  m.set_quant(hook);
  std::map<int, double> tr;
  // Batches of 128 images, fewer where the double backward would not fit in memory.
  const int64_t batch = batch_that_fits(
      m, data, 128, "activation-hessian", [&](const torch::Tensor& x, const torch::Tensor& y) {
        captured.clear();
        torch::Tensor loss =
            torch::nn::functional::cross_entropy(m.forward(x.detach().requires_grad_(true)), y);
        std::vector<torch::Tensor> xs;
        for (const auto& [node, t] : captured) xs.push_back(t);
        std::vector<double> t(xs.size(), 0.0);
        add_hutchinson(loss, xs, 1, t);
        captured.clear();
      });
  torch::manual_seed(seed);
  int64_t n = std::min(samples, data.size()), batches = 0;
  for (int64_t first = 0; first < n; first += batch, ++batches) {
    int64_t bs = std::min(batch, n - first);
    torch::Tensor x = normalized_batch(data, f, first, bs).requires_grad_(true);
    torch::Tensor y = torch::empty({bs}, torch::kLong);
    for (int64_t k = 0; k < bs; ++k) y[k] = static_cast<int64_t>(data.labels[first + k]);
    captured.clear();
    torch::Tensor loss = torch::nn::functional::cross_entropy(m.forward(x), y);
    std::vector<int> nodes;
    std::vector<torch::Tensor> xs;
    for (const auto& [node, t] : captured) nodes.push_back(node), xs.push_back(t);
    std::vector<double> batch_tr(xs.size(), 0.0);
    add_hutchinson(loss, xs, iterations, batch_tr);
    for (size_t k = 0; k < xs.size(); ++k) tr[nodes[k]] += batch_tr[k];
  }
  m.set_quant(nullptr);
  std::map<std::string, double> out;
  for (const ActivationPoint& p : points)
    out[p.name] = tr[p.node] / (static_cast<double>(batches) * iterations);
  return out;
}

void adaptive_measure_activations(const Graph& g, const Dataset& data, int64_t samples,
                                  double drop, uint64_t seed,
                                  const std::map<std::string, ActivationStats>& stats,
                                  std::map<std::string, double>& p,
                                  std::map<std::string, double>& t) {
  if (data.size() == 0) fail("adaptive: the dataset is empty");
  torch::NoGradGuard ng;
  Graph f = folded_with_shapes(g);
  const std::vector<ActivationPoint> points = activation_points(f);
  Dataset d = slice(data, 0, std::min(samples, data.size()));
  const int64_t classes = f.num_classes;
  GraphModule m(f);
  m.eval();
  const std::vector<float> ref = predict_module(m, d, 0);
  const double base = accuracy_of(ref, d, classes);
  auto hook = std::make_shared<PointHook>();
  m.set_quant(hook);
  for (const ActivationPoint& pt : points) {
    auto st = stats.find(pt.name);
    if (st == stats.end()) fail("adaptive: no activation statistics for point '{}'", pt.name);
    const double sigma = std::max(st->second.sigma, 1e-12);
    hook->nodes = {pt.node};
    double sd = 0;
    hook->fn = [&](int, const torch::Tensor& x) { return x + sd * torch::randn_like(x); };
    auto noisy = [&](double k, double* noise_energy) {
      sd = sigma * k;
      torch::manual_seed(seed + static_cast<uint64_t>(pt.node));  // the same noise at every k
      std::vector<float> z = predict_module(m, d, 0);
      double e = 0;
      for (size_t i = 0; i < z.size(); ++i) e += double(z[i] - ref[i]) * (z[i] - ref[i]);
      *noise_energy = e / static_cast<double>(d.size());
      return accuracy_of(z, d, classes);
    };
    double e_small = 0;
    noisy(0.01, &e_small);
    const double sd_small = sigma * 0.01;
    p[pt.name] = e_small / std::max(sd_small * sd_small * static_cast<double>(pt.elements), 1e-30);
    double lo = std::log(0.01), hi = std::log(10.0), e_at = 0, e_hi = 0;
    if (base - noisy(std::exp(hi), &e_hi) < drop) {
      t[pt.name] = e_hi;
      continue;
    }
    for (int it = 0; it < 7; ++it) {
      double mid = 0.5 * (lo + hi), e = 0;
      if (base - noisy(std::exp(mid), &e) >= drop) {
        hi = mid;
        e_at = e;
      } else {
        lo = mid;
      }
    }
    if (e_at == 0) noisy(std::exp(hi), &e_at);
    t[pt.name] = e_at;
  }
  m.set_quant(nullptr);
}

}  // namespace sq
