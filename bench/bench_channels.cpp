// Channel-wise models in the engine (issue 13): images/s of the graph executor on the trained
// resnet20 (models/resnet20-fmnist.sqg; lenet5 likewise) under bit assignments that differ in how
// the bits are spread, and what channel groups buy per layer:
//   ./build/bin/sq_bench --benchmark_filter='Model/|ChannelGroups/'   (from the repository root;
//   SQ_MODELS=dir for another models directory; bench/channel_groups.sh makes the figures)
//   Model/<net>/<assignment>     one image at a time, 8-bit activations, Isa::Auto:
//     w8, w4                     every layer at 8 / 4 bits
//     layers_8_2                 whole layers at 8 bits (the first, the last and every third
//                                one) and the others at 2 bits
//     channels_8_2               in every layer, every third channel at 8 bits, the others at 2
//                                (the first and last layers at 8): about the same average bits
//     w4_pruned30                w4 with the 30 % of channels of smallest L1 norm of every layer
//                                but the first and the last pruned (0 bits)
//   ModelPaired/<net>/<rounds>/<images>  the five assignments interleaved, round after round,
//                                and channels_8_2 / w4_pruned30 prepared without channel groups
//                                (GraphExecutor::prepare's channel_groups = false):
//                                median images/s of each and the median of the per-round ratios
//                                (the figures of docs/results.md; the load of a shared machine
//                                hits every model alike)
//   LayerPaired/resnet20/<rounds>/<runs>  the same pairs interleaved: per layer the median of the
//                                per-round speed-up of the grouped plan
//   ChannelGroups/<net>/<layer>/{widest,grouped}  one layer of channels_8_2: the whole layer on
//                                the kernel its widest channel needs (the engine before issue 13)
//                                and as channel groups
//   SnapPaired/<net>/<rounds>/<images>  channel groups for the allocators (issue 13), interleaved
//                                as ModelPaired: layers_8_2, channels_8_2, and sigmaquant-channel's
//                                Phase 1 (widths {2, 4, 8}, the first and last layers pinned at 8,
//                                weight-memory budget = layers_8_2's, so about its average bits)
//                                with free per-channel widths (sqc_g1) and snapped to channel
//                                groups of 16 (sqc_g16): ratios to layers_8_2 and sqc_g16 / sqc_g1
// The weights are the trained ones, quantized per channel at those bits; the activation points
// get a fixed range [-4, 4] (no data here): the work per image depends on the widths and the
// shapes, not on the scales. Labels give the average weight bits and the plan.
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <functional>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "sigmaquant/cost.h"
#include "sigmaquant/dnas.h"
#include "sigmaquant/engine.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/qmodel.h"
#include "sigmaquant/transform.h"

namespace {

std::string model_path(const std::string& net) {
  const char* dir = std::getenv("SQ_MODELS");
  return std::string(dir ? dir : "models") + "/" + net + "-fmnist.sqg";
}

bool exists(const std::string& path) { return std::ifstream(path).good(); }

using Assign = std::function<void(const sq::Graph&, sq::BitConfig&)>;

// L1 norms of a layer's output channels.
std::vector<double> channel_norms(const sq::Node& n) {
  const auto& w = n.params.at("weight").data;
  const int64_t per = static_cast<int64_t>(w.size()) / n.out_channels;
  std::vector<double> norm(static_cast<size_t>(n.out_channels), 0.0);
  for (int64_t c = 0; c < n.out_channels; ++c)
    for (int64_t k = 0; k < per; ++k) norm[c] += std::fabs(w[c * per + k]);
  return norm;
}

void uniform_bits(const sq::Graph& g, sq::BitConfig& b, int wbits) {
  for (int l : g.weight_layers()) {
    sq::LayerBits lb;
    lb.wbits = wbits;
    b.layers[g.nodes[l].name] = lb;
  }
}

const std::vector<std::pair<std::string, Assign>>& assignments() {
  static const std::vector<std::pair<std::string, Assign>> a = {
      {"w8", [](const sq::Graph& g, sq::BitConfig& b) { uniform_bits(g, b, 8); }},
      {"w4", [](const sq::Graph& g, sq::BitConfig& b) { uniform_bits(g, b, 4); }},
      {"layers_8_2",
       [](const sq::Graph& g, sq::BitConfig& b) {
         const auto layers = g.weight_layers();
         for (size_t k = 0; k < layers.size(); ++k)
           b.layers[g.nodes[layers[k]].name].wbits =
               (k == 0 || k + 1 == layers.size() || k % 3 == 0) ? 8 : 2;
       }},
      {"channels_8_2",
       [](const sq::Graph& g, sq::BitConfig& b) {
         const auto layers = g.weight_layers();
         for (size_t k = 0; k < layers.size(); ++k) {
           const sq::Node& n = g.nodes[layers[k]];
           sq::LayerBits lb;
           lb.wbits = 8;
           if (k != 0 && k + 1 != layers.size())
             for (int64_t c = 0; c < n.out_channels; ++c) lb.channel_wbits.push_back(c % 3 ? 2 : 8);
           b.layers[n.name] = lb;
         }
       }},
      {"w4_pruned30",
       [](const sq::Graph& g, sq::BitConfig& b) {
         const auto layers = g.weight_layers();
         for (size_t k = 0; k < layers.size(); ++k) {
           const sq::Node& n = g.nodes[layers[k]];
           sq::LayerBits lb;
           lb.wbits = 4;
           if (k != 0 && k + 1 != layers.size()) {
             const std::vector<double> norm = channel_norms(n);
             std::vector<int64_t> order(norm.size());
             std::iota(order.begin(), order.end(), 0);
             std::stable_sort(order.begin(), order.end(),
                              [&](int64_t x, int64_t y) { return norm[x] < norm[y]; });
             lb.channel_wbits.assign(norm.size(), 4);
             const auto pruned = static_cast<size_t>(std::llround(0.3 * norm.size()));
             for (size_t i = 0; i < pruned; ++i) lb.channel_wbits[order[i]] = 0;
           }
           b.layers[n.name] = lb;
         }
       }},
  };
  return a;
}

sq::QuantModel quant_model(const std::string& net, const Assign& assign) {
  sq::QuantModel qm;
  qm.graph = sq::fold_batchnorm(sq::load_graph(model_path(net)));
  uniform_bits(qm.graph, qm.bits, 8);
  assign(qm.graph, qm.bits);
  qm.weight_scales = sq::max_weight_scales(qm.graph, qm.bits);
  for (const auto& [node, bits] : sq::activation_quant_points(qm.graph, qm.bits))
    qm.acts[qm.graph.nodes[node].name] = sq::act_quant_from_range({-4.0, 4.0}, bits);
  return qm;
}

std::vector<float> random_image(int64_t n) {
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = u(rng);
  return x;
}

void bench_model(benchmark::State& state, const std::string& net, const Assign& assign) {
  if (!exists(model_path(net))) {
    state.SkipWithError(("no " + model_path(net) + " (run from the repository root)").c_str());
    return;
  }
  const sq::QuantModel qm = quant_model(net, assign);
  sq::GraphExecutor ex = sq::GraphExecutor::prepare(qm.graph, sq::integerize(qm));
  const std::vector<float> img = random_image(ex.input_size());
  std::vector<float> logits(static_cast<size_t>(ex.output_size()));
  for (auto _ : state) {
    ex.run(img.data(), logits.data());
    benchmark::DoNotOptimize(logits.data());
  }
  state.SetItemsProcessed(state.iterations());
  int grouped = 0;
  for (const std::string& line : ex.describe()) grouped += line.find(" x") != std::string::npos;
  state.SetLabel(fmt::format("{:.2f} avg weight bits, {} layers in channel groups",
                             sq::average_weight_bits(qm.bits, qm.graph), grouped));
}

// One layer of channels_8_2: the previous plan (every channel on the widest channel's kernel)
// against channel groups.
void bench_layer(benchmark::State& state, const std::string& net, int layer, bool grouped) {
  if (!exists(model_path(net))) {
    state.SkipWithError(("no " + model_path(net)).c_str());
    return;
  }
  const sq::QuantModel qm = quant_model(net, assignments()[3].second);
  const sq::IntModel im = sq::integerize(qm);
  const sq::IntLayer& L = im.layers.at(static_cast<size_t>(layer));
  const sq::ConvShape s = sq::conv_shape_of(qm.graph, L.node);
  std::vector<uint8_t> x(static_cast<size_t>(s.in_size())), y(static_cast<size_t>(s.out_size()));
  std::mt19937_64 rng(2);
  for (auto& v : x) v = static_cast<uint8_t>(rng() % 256);
  if (grouped) {
    sq::GroupedConv2d c = sq::prepare_conv2d_grouped(s, L);
    for (auto _ : state) {
      c.run(x.data(), y.data());
      benchmark::DoNotOptimize(y.data());
    }
    state.SetLabel(c.kernel_names());
  } else {
    sq::PreparedConv2d c = sq::prepare_conv2d_u8(s, L);
    for (auto _ : state) {
      c.run(x.data(), y.data());
      benchmark::DoNotOptimize(y.data());
    }
    state.SetLabel(c.kernel_name());
  }
  state.counters["GOP/s"] =
      benchmark::Counter(2.0 * static_cast<double>(s.weights() * s.out_h() * s.out_w()) *
                             static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
}

double thread_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Every assignment of one network, interleaved: in each of `rounds` rounds every model runs
// `images` images back to back (CPU time of this thread), so that a change of the machine's load
// (other processes on the 2 cores) hits all of them alike. Counters: each model's median images/s
// over the rounds, and the median over the rounds of each round's ratio to w8, w4 and layers_8_2.
void bench_paired(benchmark::State& state, const std::string& net) {
  if (!exists(model_path(net))) {
    state.SkipWithError(("no " + model_path(net)).c_str());
    return;
  }
  // The five assignments, then channels_8_2 and w4_pruned30 prepared without channel groups
  // (every layer on its widest channel's kernel, pruned channels computed: the engine before).
  std::vector<std::pair<std::string, Assign>> as = assignments();
  as.push_back({"channels_8_2_nogroups", as[3].second});
  as.push_back({"w4_pruned30_nogroups", as[4].second});
  std::vector<sq::GraphExecutor> ex;
  for (size_t m = 0; m < as.size(); ++m) {
    const sq::QuantModel qm = quant_model(net, as[m].second);
    ex.push_back(sq::GraphExecutor::prepare(qm.graph, sq::integerize(qm), sq::Isa::Auto, m < 5));
  }
  const std::vector<float> img = random_image(ex[0].input_size());
  std::vector<float> logits(static_cast<size_t>(ex[0].output_size()));
  const int rounds = static_cast<int>(state.range(0)), images = static_cast<int>(state.range(1));
  std::vector<std::vector<double>> ips(as.size());
  for (auto _ : state) {
    for (int r = 0; r < rounds; ++r)
      for (size_t m = 0; m < ex.size(); ++m) {
        const double t0 = thread_seconds();
        for (int i = 0; i < images; ++i) ex[m].run(img.data(), logits.data());
        ips[m].push_back(images / (thread_seconds() - t0));
        benchmark::DoNotOptimize(logits.data());
      }
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  for (size_t m = 0; m < as.size(); ++m) {
    state.counters[as[m].first] = median(ips[m]);
    // Ratios to w8, w4, layers_8_2, and of each channel-grouped model to itself without groups.
    std::vector<size_t> bases = {0, 1, 2};
    if (m == 3) bases.push_back(5);
    if (m == 4) bases.push_back(6);
    for (size_t base : bases) {
      if (base == m) continue;
      std::vector<double> ratio;
      for (size_t r = 0; r < ips[m].size(); ++r) ratio.push_back(ips[m][r] / ips[base][r]);
      state.counters[as[m].first + "/" + as[base].first] = median(ratio);
    }
  }
}

// sigmaquant-channel's Phase 1 at layers_8_2's weight memory (size target), channel group `group`.
Assign sqc_assign(int group) {
  return [group](const sq::Graph& g, sq::BitConfig& b) {
    sq::BitConfig ref = b;
    assignments()[2].second(g, ref);  // layers_8_2
    sq::CostEvaluator ce(g, sq::builtin_target("size"));
    sq::Budgets budget;
    budget.weight_bytes = static_cast<double>(ce.evaluate(ref).weight_bytes);
    const auto layers = g.weight_layers();
    const std::map<std::string, int> pinned{{g.nodes[layers.front()].name, 8},
                                            {g.nodes[layers.back()].name, 8}};
    b = sq::sigmaquant_channel_phase1(g, ce, budget, {2, 4, 8}, 8, pinned, group).bits;
  };
}

// Channel groups for the allocators: layers_8_2, channels_8_2, sqc_g1, sqc_g16 interleaved;
// counters: median images/s, the median per-round ratio to layers_8_2, and sqc_g16 / sqc_g1.
void bench_snap_paired(benchmark::State& state, const std::string& net) {
  if (!exists(model_path(net))) {
    state.SkipWithError(("no " + model_path(net)).c_str());
    return;
  }
  const std::vector<std::pair<std::string, Assign>> as = {{"layers_8_2", assignments()[2].second},
                                                          {"channels_8_2", assignments()[3].second},
                                                          {"sqc_g1", sqc_assign(1)},
                                                          {"sqc_g16", sqc_assign(16)}};
  std::vector<sq::GraphExecutor> ex;
  std::string label;
  for (const auto& [name, assign] : as) {
    const sq::QuantModel qm = quant_model(net, assign);
    ex.push_back(sq::GraphExecutor::prepare(qm.graph, sq::integerize(qm)));
    int mixed = 0;  // layers with per-channel widths
    for (const auto& [layer, lb] : qm.bits.layers) mixed += !lb.channel_wbits.empty();
    label += fmt::format("{}{} {:.2f} bits ({} layers mixed)", label.empty() ? "" : ", ", name,
                         sq::average_weight_bits(qm.bits, qm.graph), mixed);
  }
  const std::vector<float> img = random_image(ex[0].input_size());
  std::vector<float> logits(static_cast<size_t>(ex[0].output_size()));
  const int rounds = static_cast<int>(state.range(0)), images = static_cast<int>(state.range(1));
  std::vector<std::vector<double>> ips(as.size());
  for (auto _ : state) {
    for (int r = 0; r < rounds; ++r)
      for (size_t m = 0; m < ex.size(); ++m) {
        const double t0 = thread_seconds();
        for (int i = 0; i < images; ++i) ex[m].run(img.data(), logits.data());
        ips[m].push_back(images / (thread_seconds() - t0));
        benchmark::DoNotOptimize(logits.data());
      }
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  auto ratio = [&](size_t m, size_t base) {
    std::vector<double> r;
    for (size_t k = 0; k < ips[m].size(); ++k) r.push_back(ips[m][k] / ips[base][k]);
    return median(r);
  };
  for (size_t m = 0; m < as.size(); ++m) {
    state.counters[as[m].first] = median(ips[m]);
    if (m > 0) state.counters[as[m].first + "/layers_8_2"] = ratio(m, 0);
  }
  state.counters["sqc_g16/sqc_g1"] = ratio(3, 2);
  state.SetLabel(label);
}

// resnet20's layers of distinct shapes, by index in graph order (stem.conv = 0).
const std::pair<const char*, int> kLayers[] = {
    {"stage1", 1},        {"stage2_first", 7},     {"stage2_shortcut", 9}, {"stage2", 10},
    {"stage3_first", 14}, {"stage3_shortcut", 16}, {"stage3", 17}};

// ChannelGroups' pairs interleaved: per layer of channels_8_2, rounds of `reps` runs of the
// widest-kernel plan then of the grouped one; counter <layer> = the median over the rounds of
// the grouped plan's speed-up (time widest / time grouped).
void bench_layers_paired(benchmark::State& state, const std::string& net) {
  if (!exists(model_path(net))) {
    state.SkipWithError(("no " + model_path(net)).c_str());
    return;
  }
  const sq::QuantModel qm = quant_model(net, assignments()[3].second);
  const sq::IntModel im = sq::integerize(qm);
  const int rounds = static_cast<int>(state.range(0)), reps = static_cast<int>(state.range(1));
  for (auto _ : state) {
    for (const auto& [name, index] : kLayers) {
      const sq::IntLayer& L = im.layers.at(static_cast<size_t>(index));
      const sq::ConvShape s = sq::conv_shape_of(qm.graph, L.node);
      std::vector<uint8_t> x(static_cast<size_t>(s.in_size())),
          y(static_cast<size_t>(s.out_size()));
      std::mt19937_64 rng(2);
      for (auto& v : x) v = static_cast<uint8_t>(rng() % 256);
      sq::PreparedConv2d whole = sq::prepare_conv2d_u8(s, L);
      sq::GroupedConv2d grouped = sq::prepare_conv2d_grouped(s, L);
      std::vector<double> ratio;
      for (int r = 0; r < rounds; ++r) {
        double t0 = thread_seconds();
        for (int i = 0; i < reps; ++i) whole.run(x.data(), y.data());
        const double tw = thread_seconds() - t0;
        t0 = thread_seconds();
        for (int i = 0; i < reps; ++i) grouped.run(x.data(), y.data());
        ratio.push_back(tw / (thread_seconds() - t0));
        benchmark::DoNotOptimize(y.data());
      }
      std::sort(ratio.begin(), ratio.end());
      state.counters[name] = ratio[ratio.size() / 2];
    }
  }
}

const int kRegistered = [] {
  for (const char* net : {"resnet20", "lenet5"})
    for (const auto& [name, assign] : assignments())
      benchmark::RegisterBenchmark((std::string("Model/") + net + "/" + name).c_str(),
                                   [net = std::string(net), assign = assign](benchmark::State& st) {
                                     bench_model(st, net, assign);
                                   })
          ->Unit(benchmark::kMicrosecond);
  for (const char* net : {"resnet20", "lenet5"})
    benchmark::RegisterBenchmark(
        (std::string("ModelPaired/") + net).c_str(),
        [net = std::string(net)](benchmark::State& st) { bench_paired(st, net); })
        ->Args({9, std::string(net) == "lenet5" ? 2000 : 100})
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("SnapPaired/resnet20",
                               [](benchmark::State& st) { bench_snap_paired(st, "resnet20"); })
      ->Args({9, 100})
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("LayerPaired/resnet20",
                               [](benchmark::State& st) { bench_layers_paired(st, "resnet20"); })
      ->Args({15, 200})
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
  for (const auto& [name, index] : kLayers)
    for (bool grouped : {false, true})
      benchmark::RegisterBenchmark(
          (std::string("ChannelGroups/resnet20/") + name + (grouped ? "/grouped" : "/widest"))
              .c_str(),
          [index = index, grouped](benchmark::State& st) {
            bench_layer(st, "resnet20", index, grouped);
          })
          ->Unit(benchmark::kMicrosecond);
  return 0;
}();

}  // namespace
