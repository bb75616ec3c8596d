#include "sigmaquant/qmodel.h"

#include <cmath>

#include "sigmaquant/error.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/quant.h"
#include "sigmaquant/transform.h"

namespace sq {

std::map<int, int> activation_quant_points(const Graph& g, const BitConfig& bits) {
  std::map<int, int> pts;
  // Channel shuffle and slice move codes in the engine (a permutation, a range read in place):
  // their input holds a point's codes — is a point, or is itself a shuffle or slice.
  auto moves_codes = [&](int i) {
    return g.nodes[i].op == Op::ChannelShuffle || g.nodes[i].op == Op::ChannelSlice;
  };
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (moves_codes(static_cast<int>(i)) &&
        (g.nodes[i].op == Op::ChannelShuffle || !moves_codes(g.nodes[i].inputs[0])))
      pts[g.nodes[i].inputs[0]] = kAddBits;
  for (int i : g.weight_layers()) {
    int in = g.nodes[i].inputs[0];
    int b = bits.for_layer(g.nodes[i].name).abits;
    pts[in] = std::max(pts.count(in) ? pts[in] : 0, b);
  }
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (is_lut_activation(g.nodes[i].op)) {  // codes in, codes out: a table in the engine
      const int in = g.nodes[i].inputs[0];
      if (!pts.count(in)) pts[in] = kAddBits;
      if (!pts.count(static_cast<int>(i))) pts[static_cast<int>(i)] = kAddBits;
    }
  // An average pooling read by another (firenet's AvgPool2d then x.mean((2, 3))): the engine
  // rescales each pooling's window sum to a point.
  auto avg = [](Op op) { return op == Op::AvgPool || op == Op::GlobalAvgPool; };
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (avg(g.nodes[i].op) && !pts.count(static_cast<int>(i)))
      for (int c : consumers(g, static_cast<int>(i)))
        if (avg(g.nodes[c].op)) pts[static_cast<int>(i)] = kAddBits;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (g.nodes[i].op == Op::Add || g.nodes[i].op == Op::Concat || g.nodes[i].op == Op::Mul) {
      // A concat reads a slice's codes at the point they are at (ShuffleNetV2's x1 half): one
      // rescale, not two.
      for (int in : g.nodes[i].inputs)
        if (!pts.count(in) && !(g.nodes[i].op == Op::Concat && g.nodes[in].op == Op::ChannelSlice))
          pts[in] = kAddBits;
      if (!pts.count(static_cast<int>(i))) pts[static_cast<int>(i)] = kAddBits;
    }
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (standalone_batchnorm(g, static_cast<int>(i))) {
      const int in = g.nodes[i].inputs[0];
      if (!pts.count(in)) pts[in] = kAddBits;
      // The end of the ReLU/ReLU6 chain after it, unless the chain reaches a point.
      for (int end = static_cast<int>(i); !pts.count(end);) {
        const std::vector<int> cons = consumers(g, end);
        const bool relu = cons.size() == 1 && (g.nodes[cons[0]].op == Op::ReLU ||
                                               g.nodes[cons[0]].op == Op::ReLU6);
        if (!relu) pts[end] = kAddBits;
        else end = cons[0];
      }
    }
  return pts;
}

bool standalone_batchnorm(const Graph& g, int i) {
  const Node& n = g.nodes[static_cast<size_t>(i)];
  if (n.op != Op::BatchNorm || n.inputs.empty()) return false;
  // One reading the input is the input normalization's (fold_input_batchnorm).
  return g.nodes[static_cast<size_t>(n.inputs[0])].op != Op::Input && !batchnorm_folds(g, i);
}

void pin_first_last(BitConfig& b, const Graph& g, int bits) {
  auto w = g.weight_layers();
  if (w.empty()) return;
  for (int i : {w.front(), w.back()}) {
    LayerBits lb = b.for_layer(g.nodes[i].name);
    lb.wbits = bits;
    lb.abits = bits;
    lb.channel_wbits.clear();
    b.layers[g.nodes[i].name] = lb;
  }
}

std::map<std::string, std::vector<float>> max_weight_scales(const Graph& g, const BitConfig& b) {
  std::map<std::string, std::vector<float>> s;
  for (int i : g.weight_layers()) {
    const Node& n = g.nodes[i];
    const LayerBits& lb = b.for_layer(n.name);
    std::vector<int> cb(static_cast<size_t>(n.out_channels));
    for (int64_t c = 0; c < n.out_channels; ++c) cb[c] = lb.channel_bits(c);
    s[n.name] = quantize_weights_symmetric(n.params.at("weight"), cb,
                                           lb.granularity == Granularity::PerChannel)
                    .scales;
  }
  return s;
}

std::vector<int32_t> quantized_weights(const QuantModel& qm, const std::string& layer) {
  const Node& n = qm.graph.node(layer);
  const LayerBits& lb = qm.bits.for_layer(layer);
  const Tensor& w = n.params.at("weight");
  const auto& s = qm.weight_scales.at(layer);
  const int64_t out = w.shape[0], per = w.size() / out;
  // A negative scale would flip the signs, a non-finite one makes no integers at all.
  for (size_t c = 0; c < s.size(); ++c)
    if (!std::isfinite(s[c]) || s[c] < 0)
      fail("layer '{}': channel {} has weight scale {} (expected a finite number >= 0)", layer, c,
           s[c]);
  std::vector<int32_t> q(w.data.size());
  for (int64_t c = 0; c < out; ++c) {
    int bits = lb.channel_bits(c);
    float sc = s.size() == 1 ? s[0] : s[c];
    int32_t qmax = bits <= 1 ? 1 : (1 << (bits - 1)) - 1;
    for (int64_t k = 0; k < per; ++k) {
      float v = w.data[c * per + k];
      if (bits == 0 || sc == 0) {
        q[c * per + k] = 0;
      } else if (bits == 1) {
        q[c * per + k] = v >= 0 ? 1 : -1;
      } else {
        // Same arithmetic as the fake-quant forward pass: float division, round half to even.
        float r = std::nearbyint(v / sc);
        q[c * per + k] = static_cast<int32_t>(std::clamp(r, float(-qmax), float(qmax)));
      }
    }
  }
  return q;
}

bool is_qmodel(const nlohmann::json& meta) { return meta.is_object() && meta.contains("quant"); }

GraphFile to_graph_file(const QuantModel& qm) {
  nlohmann::json acts = nlohmann::json::object();
  for (const auto& [name, a] : qm.acts)
    acts[name] = {{"bits", a.bits}, {"lo", a.lo}, {"hi", a.hi}, {"scale", a.scale},
                  {"zero_point", a.zero_point}};
  GraphFile f{qm.graph, qm.meta, {}};
  f.meta["quant"] = {{"bits", bits_to_json(qm.bits, &qm.graph)},
                     {"weight_scales", qm.weight_scales},
                     {"activations", acts}};
  return f;
}

void save_qmodel(const std::string& path, const QuantModel& qm) {
  save_graph_file(path, to_graph_file(qm));
}

QuantModel load_qmodel(const std::string& path) { return from_graph_file(load_graph_file(path), path); }

QuantModel from_graph_file(GraphFile f, const std::string& path) {
  if (!is_qmodel(f.meta))
    fail("{}: not a quantized model (no 'quant' section); quantize it first with `sigmaquant ptq` "
         "or `sigmaquant qat`",
         path);
  QuantModel qm;
  qm.graph = std::move(f.graph);
  const auto& q = f.meta["quant"];
  try {
    qm.bits = bits_from_json(q.at("bits"), path + ": quant.bits");
    validate_bits(qm.bits, qm.graph, path + ": quant.bits");
    qm.weight_scales = q.at("weight_scales").get<std::map<std::string, std::vector<float>>>();
    for (const auto& [name, a] : q.at("activations").items()) {
      ActQuant aq;
      aq.bits = a.at("bits");
      aq.lo = a.at("lo");
      aq.hi = a.at("hi");
      aq.scale = a.at("scale");
      aq.zero_point = a.at("zero_point");
      qm.graph.index_of(name);
      if (aq.bits < 2 || aq.bits > 16 || !(aq.scale > 0) || !std::isfinite(aq.scale))
        fail("activation '{}': bits {} / scale {} out of range (expected 2..16 bits and a finite "
             "scale > 0)",
             name, aq.bits, aq.scale);
      if (aq.zero_point < 0 || aq.zero_point > aq.qmax() || !std::isfinite(aq.lo) ||
          !std::isfinite(aq.hi))
        fail("activation '{}': zero point {} / range [{}, {}] (expected 0..{} and a finite range)",
             name, aq.zero_point, aq.lo, aq.hi, aq.qmax());
      qm.acts[name] = aq;
    }
  } catch (const Error& e) {
    fail("{}: bad quant section: {}", path, e.what());
  } catch (const std::exception& e) {
    fail("{}: bad quant section: {}", path, e.what());
  }
  for (int i : qm.graph.weight_layers()) {
    const Node& n = qm.graph.nodes[i];
    auto it = qm.weight_scales.find(n.name);
    if (it == qm.weight_scales.end() ||
        (it->second.size() != 1 && static_cast<int64_t>(it->second.size()) != n.out_channels))
      fail("{}: quant.weight_scales.{} must hold 1 or {} values", path, n.name, n.out_channels);
    // The engine refuses these when it runs: refuse them before anything is exported.
    for (size_t c = 0; c < it->second.size(); ++c)
      if (!std::isfinite(it->second[c]) || it->second[c] < 0)
        fail("{}: quant.weight_scales.{}[{}] is {} (expected a finite number >= 0)", path, n.name,
             c, it->second[c]);
  }
  for (const auto& [node, bits] : activation_quant_points(qm.graph, qm.bits))
    if (!qm.acts.count(qm.graph.nodes[node].name))
      fail("{}: quant.activations lacks '{}'", path, qm.graph.nodes[node].name);
  f.meta.erase("quant");
  qm.meta = f.meta;
  return qm;
}

}  // namespace sq
