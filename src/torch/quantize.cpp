// Post-training quantization (BN folding, CLE, weight scales, activation calibration, bias
// correction) and quantization-aware training, on top of the LibTorch executor.
#include "sigmaquant/quantize.h"

#include <numeric>

#include "fake_quant.h"
#include "graph_module.h"
#include "sigmaquant/error.h"
#include "sigmaquant/quant.h"
#include "sigmaquant/transform.h"
#include "train_internal.h"

namespace sq {
namespace {

// A seeded random subset of n samples (all of them when n >= size).
Dataset calibration_subset(const Dataset& d, int64_t n, uint64_t seed) {
  if (n <= 0 || n >= d.size()) return d;
  auto [rest, pick] = split(d, static_cast<double>(n) / static_cast<double>(d.size()), seed);
  (void)rest;
  return pick;
}

// Runs the module over the data in eval mode; `observer` sees every node's output.
void run_over(GraphModule& m, const Dataset& d, int64_t batch) {
  batch = inference_batch(m, d, batch);  // at most what fits in memory
  torch::NoGradGuard ng;
  m.eval();
  for (int64_t s = 0; s < d.size(); s += batch)
    m.forward(normalized_batch(d, m.graph(), s, std::min(batch, d.size() - s)));
}

// Per-input-channel mean of a tensor [N, C, ...] or [N, F], summed into acc.
void add_channel_sums(const torch::Tensor& t, std::vector<double>& acc, int64_t& count) {
  torch::Tensor c = t.dim() == 4 ? t.sum({0, 2, 3}) : t.sum(0);
  count += t.dim() == 4 ? t.size(0) * t.size(2) * t.size(3) : t.size(0);
  c = c.to(torch::kCPU, torch::kDouble).contiguous();
  if (acc.empty()) acc.assign(static_cast<size_t>(c.numel()), 0.0);
  for (int64_t i = 0; i < c.numel(); ++i) acc[i] += c.data_ptr<double>()[i];
}

// bias[o] -= sum over the weights of channel o of (Q(w) - w) * E[input channel they read].
void correct_bias(QuantModel& qm, int layer, const std::vector<double>& in_mean) {
  Node& n = qm.graph.nodes[layer];
  Tensor& w = n.params.at("weight");
  std::vector<int32_t> q = quantized_weights(qm, n.name);
  const auto& s = qm.weight_scales.at(n.name);
  const int64_t out = w.shape[0], per = w.size() / out;
  const int64_t in_per_group = w.shape[1], k = per / in_per_group;
  const int64_t out_per_group = out / n.groups;
  if (!n.has_bias) {
    n.has_bias = true;
    n.params["bias"] = Tensor({out}, 0.0f);
  }
  auto& b = n.params.at("bias").data;
  for (int64_t o = 0; o < out; ++o) {
    float sc = s.size() == 1 ? s[0] : s[o];
    int64_t group = o / out_per_group;
    double shift = 0;
    for (int64_t j = 0; j < in_per_group; ++j) {
      double m = in_mean[group * in_per_group + j];
      for (int64_t t = 0; t < k; ++t) {
        int64_t idx = (o * in_per_group + j) * k + t;
        shift += (sc * q[idx] - w.data[idx]) * m;
      }
    }
    b[o] = static_cast<float>(b[o] - shift);
  }
}

}  // namespace

QuantModel ptq(const Graph& fp32, const BitConfig& bits, const Dataset& calib, const PtqOptions& o) {
  validate_bits(bits, fp32, "bit assignment");
  if (calib.size() == 0) fail("calibration dataset '{}' is empty", calib.name);
  if (fp32.input_mean.empty()) fail("model '{}' has no input normalization (train it first)", fp32.name);
  QuantModel qm;
  qm.graph = o.fold_bn ? fold_batchnorm(fp32) : fp32;
  qm.bits = bits;
  int cle_pairs = o.cle ? cross_layer_equalize(qm.graph, true) : 0;
  qm.weight_scales = max_weight_scales(qm.graph, qm.bits);
  const std::map<int, int> points = activation_quant_points(qm.graph, qm.bits);
  Dataset cd = calibration_subset(calib, o.calib_samples, o.seed);

  GraphModule m(qm.graph);
  m.set_quant(std::make_shared<QuantSim>(qm, WeightMode::Fixed, ActMode::Fixed, false));
  // Pass 1: ranges of every quantization point, and the input-channel means of weight layers.
  std::map<int, std::pair<double, double>> minmax;
  std::map<int, std::vector<double>> sums;
  std::map<int, int64_t> counts;
  std::map<int, int> layer_of_input;
  for (int i : qm.graph.weight_layers()) layer_of_input[qm.graph.nodes[i].inputs[0]] = i;
  m.observer = [&](int node, const torch::Tensor& t) {
    if (points.count(node)) {
      double lo = t.min().item<double>(), hi = t.max().item<double>();
      auto it = minmax.find(node);
      if (it == minmax.end()) minmax[node] = {lo, hi};
      else it->second = {std::min(it->second.first, lo), std::max(it->second.second, hi)};
    }
    if (o.bias_correction && layer_of_input.count(node)) add_channel_sums(t, sums[node], counts[node]);
  };
  run_over(m, cd, o.batch_size);
  // Pass 2: histograms over the observed ranges (only the non-trivial methods need them).
  std::map<int, Histogram> hist;
  for (const auto& [node, r] : minmax) hist[node] = Histogram(r.first, r.second, o.hist_bins);
  if (o.calib != Calib::MinMax) {
    m.observer = [&](int node, const torch::Tensor& t) {
      auto it = hist.find(node);
      if (it == hist.end()) return;
      torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat).contiguous();
      it->second.add(c.data_ptr<float>(), c.numel());
    };
    run_over(m, cd, o.batch_size);
  }
  for (const auto& [node, b] : points) {
    Range r = choose_range(hist.at(node), b, o.calib, o.percentile);
    qm.acts[qm.graph.nodes[node].name] = act_quant_from_range(r, b);
  }
  if (o.bias_correction)
    for (auto& [node, acc] : sums) {
      std::vector<double> mean(acc.size());
      for (size_t c = 0; c < acc.size(); ++c) mean[c] = acc[c] / static_cast<double>(counts[node]);
      for (int i : qm.graph.weight_layers())
        if (qm.graph.nodes[i].inputs[0] == node) correct_bias(qm, i, mean);
    }
  qm.meta["ptq"] = {{"calib", calib_name(o.calib)}, {"percentile", o.percentile},
                    {"calib_samples", cd.size()}, {"fold_bn", o.fold_bn}, {"cle", o.cle},
                    {"cle_pairs", cle_pairs}, {"bias_correction", o.bias_correction}};
  return qm;
}

EvalResult evaluate_quant(const QuantModel& qm, const Dataset& data, const EvalOptions& o) {
  GraphModule m(qm.graph);
  m.set_quant(std::make_shared<QuantSim>(qm, WeightMode::Fixed, ActMode::Fixed));
  return evaluate_module(m, data, o);
}

std::vector<float> predict_quant(const QuantModel& qm, const Dataset& data, int64_t n) {
  GraphModule m(qm.graph);
  m.set_quant(std::make_shared<QuantSim>(qm, WeightMode::Fixed, ActMode::Fixed));
  return predict_module(m, data, n);
}

namespace {
std::unique_ptr<GraphModule> qat_module(const QuantModel& qm, const QatOptions& q) {
  auto m = std::make_unique<GraphModule>(qm.graph);
  m->set_quant(std::make_shared<QuantSim>(qm, weight_mode_from_name(q.weight_mode),
                                          act_mode_from_name(q.act_mode)));
  return m;
}
}  // namespace

void check_qat_memory(const QuantModel& qm, const Dataset& train, const TrainOptions& o,
                      const QatOptions& q) {
  if (checks_memory(o)) check_training_memory(*qat_module(qm, q), train, o, "QAT");
}

MemoryEstimate estimate_qat_memory(const QuantModel& qm, const Dataset& train,
                                   const TrainOptions& o, const QatOptions& q) {
  return estimate_training_memory(*qat_module(qm, q), train, o);
}

TrainResult qat(QuantModel& qm, const Dataset& train_set, const Dataset* val,
                const TrainOptions& o, const QatOptions& q) {
  WeightMode wm = weight_mode_from_name(q.weight_mode);
  ActMode am = act_mode_from_name(q.act_mode);
  GraphModule m(qm.graph);
  auto sim = std::make_shared<QuantSim>(qm, wm, am);
  m.set_quant(sim);
  auto snapshot = [&] {
    QuantModel s = qm;
    m.export_to(s.graph);
    sim->export_to(s);
    if (wm == WeightMode::STE) s.weight_scales = max_weight_scales(s.graph, s.bits);
    return s;
  };
  CheckpointHooks hooks;
  hooks.snapshot = [&] { return to_graph_file(snapshot()); };
  hooks.restore = [&](const GraphFile& f) {
    QuantModel r = from_graph_file(f, o.checkpoint);
    m.import_from(r.graph);
    sim->import_from(r);
  };
  TrainResult res = train_module(m, train_set, val, o, hooks);
  QuantModel done = snapshot();
  done.meta["qat"] = {{"epochs", o.epochs}, {"lr", o.lr}, {"weight_mode", q.weight_mode},
                      {"act_mode", q.act_mode}, {"seed", o.seed}};
  qm = std::move(done);
  return res;
}

}  // namespace sq
