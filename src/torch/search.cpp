// The LibTorch side of the searches: the QAT oracle of SigmaQuant Phase 2 (short QAT cycles,
// output-KL per layer), Hutchinson Hessian traces and Zhou et al.'s noise measurements.
#include "sigmaquant/search.h"

#include <torch/torch.h>

#include <cmath>
#include <random>

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

// Mean KL(p || q) over rows.
double mean_kl(const std::vector<double>& p, const std::vector<double>& q, int64_t classes) {
  double kl = 0;
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] > 0) kl += p[i] * std::log(p[i] / std::max(q[i], 1e-12));
  return kl / static_cast<double>(p.size() / classes);
}

double accuracy_of(const std::vector<float>& logits, const Dataset& d, int64_t classes) {
  int64_t n = static_cast<int64_t>(logits.size()) / classes, right = 0;
  for (int64_t r = 0; r < n; ++r) {
    const float* z = logits.data() + r * classes;
    right += std::max_element(z, z + classes) - z == d.labels[r];
  }
  return n ? static_cast<double>(right) / n : 0;
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
  std::map<std::pair<std::string, int>, double> kl_cache;
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

  double output_kl(const std::string& layer, int bits) {
    if (ref_probs.empty()) ref_probs = softmax_rows(predict(folded, kl_data), folded.num_classes);
    Graph g = folded;
    Node& n = g.nodes[g.index_of(layer)];
    Tensor& w = n.params.at("weight");
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
    return mean_kl(ref_probs, softmax_rows(predict(g, kl_data), g.num_classes), g.num_classes);
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
  std::vector<double> v{0.0};
  if (dist_rank(d) == 0)
    v[0] = m.o.kl == "weight" ? weight_kl(m.folded.node(layer), bits) : m.output_kl(layer, bits);
  dist_allreduce_sum(d, v, fmt::format("Phase 2: KL of layer '{}' at {} bits", layer, bits));
  m.kl_cache[key] = v[0];
  return v[0];
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
  torch::manual_seed(seed);
  int64_t n = std::min(samples, data.size()), batch = 128, batches = 0;
  for (int64_t first = 0; first < n; first += batch, ++batches) {
    int64_t bs = std::min(batch, n - first);
    torch::Tensor x = normalized_batch(data, f, first, bs);
    torch::Tensor y = torch::empty({bs}, torch::kLong);
    for (int64_t k = 0; k < bs; ++k) y[k] = static_cast<int64_t>(data.labels[first + k]);
    torch::Tensor loss = torch::nn::functional::cross_entropy(m.forward(x), y);
    auto grads = torch::autograd::grad({loss}, ws, {}, true, true);
    for (int it = 0; it < iterations; ++it) {
      std::vector<torch::Tensor> vs;
      torch::Tensor dot = torch::zeros({});
      for (size_t l = 0; l < ws.size(); ++l) {
        vs.push_back(torch::randint(0, 2, ws[l].sizes()).to(torch::kFloat) * 2 - 1);
        dot = dot + (grads[l] * vs[l]).sum();
      }
      auto hv = torch::autograd::grad({dot}, ws, {}, true, false);
      for (size_t l = 0; l < ws.size(); ++l) tr[l] += (hv[l] * vs[l]).sum().item<double>();
    }
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

}  // namespace sq
