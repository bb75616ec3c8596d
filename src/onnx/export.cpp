// QDQ ONNX export (opset 13) of a QuantModel — see include/sigmaquant/onnx.h and
// docs/formats.md, "ONNX export and import".
#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/shape_inference/implementation.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "onnx_util.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/integerize.h"
#include "sigmaquant/onnx.h"
#include "sigmaquant/transform.h"

namespace sq {
namespace {

using namespace onnx_util;

void set_meta(onnx::ModelProto& m, const std::string& key, const std::string& value) {
  onnx::StringStringEntryProto* e = m.add_metadata_props();
  e->set_key(key);
  e->set_value(value);
}

// "4", or "mixed 2..6 (3 pruned)" for per-channel bit assignments.
std::string wbits_text(const LayerBits& lb, int64_t channels) {
  if (lb.channel_wbits.empty()) return std::to_string(lb.wbits);
  int lo = 8, hi = 0, pruned = 0;
  for (int64_t c = 0; c < channels; ++c) {
    int b = lb.channel_bits(c);
    if (b == 0) { ++pruned; continue; }
    lo = std::min(lo, b);
    hi = std::max(hi, b);
  }
  std::string s = hi ? fmt::format("mixed {}..{}", lo, hi) : "all pruned";
  if (pruned) s += fmt::format(" ({} pruned)", pruned);
  return s;
}

class Exporter {
 public:
  // float_model: the FP32 graph as it is (float weights and biases, no Q/DQ): the baseline a
  // user compares the QDQ export with.
  Exporter(const QuantModel& qm, bool float_model, const OnnxExportOptions& opt)
      : qm_(qm), g_(qm.graph), float_(float_model), opt_(opt) {}

  onnx::ModelProto build() {
    if (g_.nodes.empty() || g_.nodes[0].op != Op::Input)
      fail("export_onnx: graph '{}' has no input node", g_.name);
    onnx::ModelProto m;
    m.set_ir_version(8);  // ONNX 1.12 writes IR 8
    m.set_producer_name("sigmaquant");
    m.set_producer_version("0.1.0");
    m.set_domain("sigmaquant");
    m.set_model_version(1);
    m.set_doc_string(float_ ? fmt::format(
        "SigmaQuant float model '{}' (FP32 weights, no quantization). Input: raw image in "
        "[0, 1]; output: logits.", g_.name) : fmt::format(
        "SigmaQuant quantized model '{}' as QDQ (QuantizeLinear/DequantizeLinear). Weights are "
        "int8 (zero point 0) or uint8 (zero point 128) initializers, per layer (each weight "
        "DequantizeLinear's doc_string says which), with per-channel scales; layers below 8 bits use "
        "the narrow range |q| <= 2^(b-1)-1 (their true bitwidth: metadata_props "
        "sigmaquant.wbits.*). "
        "Input: raw image in [0, 1]; output: logits.",
        g_.name));
    onnx::OperatorSetIdProto* op = m.add_opset_import();
    op->set_domain("");
    op->set_version(kOpset);
    onnx::GraphProto& gp = *m.mutable_graph();
    gp_ = &gp;
    gp.set_name(g_.name.empty() ? "sigmaquant" : g_.name);

    // Input [N, C, H, W] with a dynamic batch.
    onnx::ValueInfoProto* in = gp.add_input();
    in->set_name("input");
    auto* tt = in->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(onnx::TensorProto::FLOAT);
    tt->mutable_shape()->add_dim()->set_dim_param("N");
    for (int64_t d : g_.input_shape) tt->mutable_shape()->add_dim()->set_dim_value(d);

    if (!float_) {
      points_ = activation_quant_points(g_, qm_.bits);
      place_quantizers();
    }
    values_.assign(g_.nodes.size(), "");
    for (size_t i = 0; i < g_.nodes.size(); ++i) emit(static_cast<int>(i));

    // Output "logits" [N, classes].
    add_node(gp, "Identity", "output", {values_.back()}, {"logits"});
    onnx::ValueInfoProto* out = gp.add_output();
    out->set_name("logits");
    auto* ot = out->mutable_type()->mutable_tensor_type();
    ot->set_elem_type(onnx::TensorProto::FLOAT);
    ot->mutable_shape()->add_dim()->set_dim_param("N");
    for (int64_t d : g_.nodes.back().out_shape) ot->mutable_shape()->add_dim()->set_dim_value(d);

    set_meta(m, "sigmaquant.model", g_.name);
    if (float_) return m;
    set_meta(m, "sigmaquant.bits", bits_to_json(qm_.bits, &g_).dump());
    for (int i : g_.weight_layers()) {
      const Node& n = g_.nodes[i];
      const LayerBits& lb = qm_.bits.for_layer(n.name);
      set_meta(m, "sigmaquant.wbits." + n.name, wbits_text(lb, n.out_channels));
      set_meta(m, "sigmaquant.abits." + n.name, std::to_string(lb.abits));
    }
    if (!qm_.meta.empty()) set_meta(m, "sigmaquant.meta", qm_.meta.dump());
    return m;
  }

 private:
  std::string unique(const std::string& base) {
    std::string s = base;
    for (int k = 1; !used_.insert(s).second; ++k) s = fmt::format("{}_{}", base, k);
    return s;
  }
  void init(onnx::TensorProto t) { *gp_->add_initializer() = std::move(t); }

  // Input normalization: (x - mean) / std, as normalized_image() computes it.
  std::string normalize() {
    if (g_.input_mean.empty()) return "input";
    const int64_t c = g_.input_shape[0];
    if (static_cast<int64_t>(g_.input_mean.size()) != c ||
        static_cast<int64_t>(g_.input_std.size()) != c)
      fail("export_onnx: graph '{}' has {} input means and {} stds for {} channels", g_.name,
           g_.input_mean.size(), g_.input_std.size(), c);
    // (x - 0) / 1 is x: no Sub/Div (ONNX Runtime would run them, a pass over the input each).
    if (std::all_of(g_.input_mean.begin(), g_.input_mean.end(),
                    [](float m) { return m == 0.0f; }) &&
        std::all_of(g_.input_std.begin(), g_.input_std.end(), [](float v) { return v == 1.0f; }))
      return "input";
    std::vector<float> sd = g_.input_std;
    for (float& v : sd) v = v > 0.0f ? v : 1.0f;
    std::string mean = unique("input_mean"), sdev = unique("input_std");
    std::string centered = unique("input_centered"), normalized = unique("input_normalized");
    init(float_tensor(mean, {1, c, 1, 1}, g_.input_mean));
    init(float_tensor(sdev, {1, c, 1, 1}, sd));
    add_node(*gp_, "Sub", unique("normalize.sub"), {"input", mean}, {centered});
    add_node(*gp_, "Div", unique("normalize.div"), {centered, sdev}, {normalized});
    return normalized;
  }

  // Where Q -> DQ pairs go, so that ONNX Runtime's QDQ fusion (DQ -> Conv/Gemm -> Q into
  // QLinearConv / QGemm) matches: at every quantization point, and also at the output of every
  // node from which single-reader ReLU / max-pool / flatten nodes lead to a point, with that
  // point's quantizer. A monotone quantizer q with q(0) = 0 commutes with ReLU and max (and
  // flatten), and q(q(x)) = q(x), so the extra pairs leave the numbers as the simulation has
  // them. A node directly read by a ReLU gets none: ReLU -> Q is what ORT folds into the Q.
  // ReLU6 (Clip) is not walked: clip(q(x), 0, 6) differs from q(clip(x, 0, 6)) when 6 is not
  // on the grid.
  void place_quantizers() {
    quant_at_ = {};
    for (const auto& pt : points_) quant_at_[pt.first] = pt.first;
    for (int k = 0; k < static_cast<int>(g_.nodes.size()); ++k) {
      if (points_.count(k) || g_.nodes[k].op == Op::Input) continue;
      std::vector<int> cons = consumers(g_, k);
      if (cons.size() != 1 || g_.nodes[cons[0]].op == Op::ReLU) continue;
      int cur = k;
      while (!points_.count(cur)) {
        std::vector<int> c = consumers(g_, cur);
        Op op = c.size() == 1 ? g_.nodes[c[0]].op : Op::Input;
        if (op != Op::ReLU && op != Op::MaxPool && op != Op::Flatten) break;
        cur = c[0];
      }
      if (points_.count(cur)) quant_at_[k] = cur;
    }
  }

  const ActQuant& act_of(int point) const {
    const std::string& name = g_.nodes[point].name;
    auto it = qm_.acts.find(name);
    if (it == qm_.acts.end()) fail("export_onnx: no activation quantizer for '{}'", name);
    return it->second;
  }

  // Q -> DQ of node i's output x with the quantizer of point p; returns the dequantized value.
  std::string quantize_act(int i, int p, const std::string& x) {
    const Node& n = g_.nodes[i];
    const ActQuant& a = act_of(p);
    if (a.bits < 1 || a.bits > 8) fail("export_onnx: '{}': activation bits {} (expected 1..8)", n.name, a.bits);
    if (!(a.scale > 0) || !std::isfinite(a.scale))
      fail("export_onnx: '{}': activation scale {} (expected > 0)", n.name, a.scale);
    if (a.zero_point < 0 || a.zero_point > a.qmax())
      fail("export_onnx: '{}': zero point {} outside 0..{}", n.name, a.zero_point, a.qmax());
    std::string s = unique(n.name + ".act_scale"), z = unique(n.name + ".act_zero_point");
    init(float_tensor(s, {}, {a.scale}));
    init(uint8_tensor(z, {}, {a.zero_point}));
    std::string in = x;
    if (a.bits < 8) {
      // uint8 saturates at 0..255, the b-bit grid at 0..2^b−1. First the 8-bit container's Q/DQ
      // with the same scale and zero point (which ONNX Runtime fuses with the conv or linear
      // layer before it into QLinearConv / QGemm: a Clip right before the Q it does not fold,
      // and it would run that layer in float), then a clip to the grid's range
      // [s·(0 − zp), s·(qmax − zp)] and the b-bit Q: min(max(round(x/s) + zp, 0), qmax), as the
      // simulation (the clip compares s·(c − zp) with the same products, and Q gives back c).
      std::string q8 = unique(n.name + ".q8"), dq8 = unique(n.name + ".dq8");
      onnx::NodeProto* q8n =
          add_node(*gp_, "QuantizeLinear", unique(n.name + ".quantize8"), {x, s, z}, {q8});
      q8n->set_doc_string(fmt::format("8-bit container step of a {}-bit activation", a.bits));
      add_node(*gp_, "DequantizeLinear", unique(n.name + ".dequantize8"), {q8, s, z}, {dq8});
      std::string lo = unique(n.name + ".act_min"), hi = unique(n.name + ".act_max");
      init(float_tensor(lo, {}, {a.scale * static_cast<float>(-a.zero_point)}));
      init(float_tensor(hi, {}, {a.scale * static_cast<float>(a.qmax() - a.zero_point)}));
      in = unique(n.name + ".clipped");
      onnx::NodeProto* c =
          add_node(*gp_, "Clip", unique(n.name + ".act_clip"), {dq8, lo, hi}, {in});
      c->set_doc_string(fmt::format("{}-bit activation range", a.bits));
    }
    std::string q = unique(n.name + ".q"), dq = unique(n.name + ".dq");
    onnx::NodeProto* qn = add_node(*gp_, "QuantizeLinear", unique(n.name + ".quantize"), {in, s, z}, {q});
    qn->set_doc_string(fmt::format("{}-bit activation (uint8 container), zero point {}", a.bits,
                                   a.zero_point));
    add_node(*gp_, "DequantizeLinear", unique(n.name + ".dequantize"), {q, s, z}, {dq});
    return dq;
  }

  // Whether layer i's weight codes q go out as int8 (zero point 0) rather than uint8 (q + 128,
  // zero point 128). ONNX Runtime fuses int8 weights into its u8s8 kernels, which on x86 without
  // VNNI add pairs of u8 x s8 products in int16 (vpmaddubsw) and saturate past 32767; with the
  // input's codes in 0..a_max that cannot happen while 2 * a_max * max|q| <= 32767 (8-bit inputs:
  // |q| <= 64, i.e. any layer of <= 7-bit weights). Its u8u8 kernels (uint8 weights) never
  // saturate but run slower on such CPUs (docs/results.md, "ONNX Runtime on the QDQ export").
  bool int8_weights(int i, const std::vector<int32_t>& q) const {
    if (opt_.weights != OnnxWeights::Auto) return opt_.weights == OnnxWeights::S8;
    int32_t wmax = 0;
    for (int32_t v : q) wmax = std::max(wmax, v < 0 ? -v : v);
    const int64_t amax = act_of(g_.nodes[i].inputs[0]).qmax();
    return 2 * amax * wmax <= 32767;
  }

  // Weight initializer (int8, or uint8 with zero point 128: int8_weights) + per-channel
  // DequantizeLinear; returns the float weight's value.
  std::string weight(int i) {
    const Node& n = g_.nodes[i];
    if (float_) {
      std::string wn = unique(n.name + ".weight");
      init(float_tensor(wn, n.params.at("weight").shape, n.params.at("weight").data));
      return wn;
    }
    const LayerBits& lb = qm_.bits.for_layer(n.name);
    const Tensor& w = n.params.at("weight");
    auto sit = qm_.weight_scales.find(n.name);
    if (sit == qm_.weight_scales.end()) fail("export_onnx: no weight scales for '{}'", n.name);
    std::vector<float> s = sit->second;
    const int64_t out = n.out_channels;
    if (s.size() == 1) s.assign(static_cast<size_t>(out), s[0]);
    if (static_cast<int64_t>(s.size()) != out)
      fail("export_onnx: '{}' has {} weight scales for {} channels", n.name, s.size(), out);
    for (int64_t c = 0; c < out; ++c)
      if (!std::isfinite(s[c]) || s[c] < 0)
        fail("export_onnx: layer '{}': channel {} has weight scale {} (expected a finite number "
             ">= 0)",
             n.name, c, s[c]);
    std::vector<int32_t> q = quantized_weights(qm_, n.name);
    for (int64_t c = 0; c < out; ++c)
      if (s[c] == 0 || lb.channel_bits(c) == 0) {
        // Pruned channel: its integers are 0; scale 1 makes the int32 bias's unit in_scale,
        // the accumulator unit the engine and the simulation round a pruned channel's bias to
        // (accumulator_unit).
        s[c] = 1.0f;
        std::fill(q.begin() + c * (w.size() / out), q.begin() + (c + 1) * (w.size() / out), 0);
      }
    std::string qn = unique(n.name + ".weight_quantized"), sn = unique(n.name + ".weight_scale"),
                zn = unique(n.name + ".weight_zero_point"), wn = unique(n.name + ".weight");
    const bool s8 = int8_weights(i, q);
    if (s8) {
      init(int8_tensor(qn, w.shape, q));
      init(int8_tensor(zn, {out}, std::vector<int32_t>(static_cast<size_t>(out), 0)));
    } else {  // uint8 container with zero point 128: the int8 value + 128, the same numbers
      for (int32_t& v : q) v += 128;
      init(uint8_tensor(qn, w.shape, q));
      init(uint8_tensor(zn, {out}, std::vector<int32_t>(static_cast<size_t>(out), 128)));
    }
    init(float_tensor(sn, {out}, s));
    weight_scale_ = s;
    onnx::NodeProto* dq = add_node(*gp_, "DequantizeLinear", unique(n.name + ".weight_dequantize"),
                                   {qn, sn, zn}, {wn});
    set_int(*dq, "axis", 0);
    int b = lb.wbits;
    const char* container =
        s8 ? "int8 container (zero point 0)" : "uint8 container (zero point 128)";
    dq->set_doc_string(
        lb.channel_wbits.empty()
            ? fmt::format("{}-bit weights, narrow range [-{}, {}], {}, per-channel scales", b,
                          b <= 1 ? 1 : (1 << (b - 1)) - 1, b <= 1 ? 1 : (1 << (b - 1)) - 1,
                          container)
            : fmt::format("per-channel bitwidths ({}), {}", wbits_text(lb, out), container));
    return wn;
  }

  // int32 bias at scale in_scale * weight_scale[c] behind a DequantizeLinear (the form ORT's
  // QDQ fusion takes into QLinearConv / QGemm); call after weight(i). The same int32 bias as
  // integerize's (channel_bias): the simulation and the engine round the bias to it too.
  std::string bias(int i) {
    const Node& n = g_.nodes[i];
    const Tensor& b = n.params.at("bias");
    if (float_) {
      std::string bn = unique(n.name + ".bias");
      init(float_tensor(bn, {n.out_channels}, b.data));
      return bn;
    }
    const float in_scale = act_of(n.inputs[0]).scale;
    const int64_t out = n.out_channels;
    if (b.size() != out)
      fail("export_onnx: '{}' has {} biases for {} channels", n.name, b.size(), out);
    std::vector<float> scale(static_cast<size_t>(out));
    std::vector<int32_t> q(static_cast<size_t>(out));
    for (int64_t c = 0; c < out; ++c) {
      scale[c] = in_scale * weight_scale_.at(c);
      const double unit = accumulator_unit(in_scale, weight_scale_.at(c));
      if (!(std::fabs(std::nearbyint(static_cast<double>(b.data[c]) / unit)) <= 2147483647.0))
        fail("export_onnx: '{}': channel {} bias {} does not fit int32 at scale {} (input scale {} "
             "x weight scale {})",
             n.name, c, b.data[c], scale[c], in_scale, weight_scale_.at(c));
      q[c] = channel_bias(b.data[c], unit, 0.0f).bias;  // integerize's int32 bias
    }
    std::string qn = unique(n.name + ".bias_quantized"), sn = unique(n.name + ".bias_scale"),
                zn = unique(n.name + ".bias_zero_point"), bn = unique(n.name + ".bias");
    init(int32_tensor(qn, {out}, q));
    init(float_tensor(sn, {out}, scale));
    init(int32_tensor(zn, {out}, std::vector<int32_t>(static_cast<size_t>(out), 0)));
    onnx::NodeProto* dq = add_node(*gp_, "DequantizeLinear", unique(n.name + ".bias_dequantize"),
                                   {qn, sn, zn}, {bn});
    set_int(*dq, "axis", 0);
    return bn;
  }

  void emit(int i) {
    const Node& n = g_.nodes[i];
    auto in = [&](int k) { return values_.at(n.inputs.at(k)); };
    std::string y;
    switch (n.op) {
      case Op::Input:
        y = normalize();
        break;
      case Op::Conv2d: {
        std::vector<std::string> ins = {in(0), weight(i)};
        if (n.has_bias) ins.push_back(bias(i));
        y = unique(n.name);
        onnx::NodeProto* c = add_node(*gp_, "Conv", n.name, ins, {y});
        set_window(*c, n.window);
        set_ints(*c, "dilations", {n.window.dilation_h, n.window.dilation_w});
        set_int(*c, "group", n.groups);
        break;
      }
      case Op::Linear: {
        std::vector<std::string> ins = {in(0), weight(i)};
        if (n.has_bias) ins.push_back(bias(i));
        y = unique(n.name);
        onnx::NodeProto* gm = add_node(*gp_, "Gemm", n.name, ins, {y});
        set_int(*gm, "transB", 1);
        break;
      }
      case Op::BatchNorm: {
        std::vector<std::string> ins = {in(0)};
        for (const char* p : {"weight", "bias", "running_mean", "running_var"}) {
          ins.push_back(unique(n.name + "." + p));
          init(float_tensor(ins.back(), n.params.at(p).shape, n.params.at(p).data));
        }
        y = unique(n.name);
        onnx::NodeProto* b = add_node(*gp_, "BatchNormalization", n.name, ins, {y});
        set_float(*b, "epsilon", static_cast<float>(n.eps));
        break;
      }
      case Op::ReLU:
        y = unique(n.name);
        if (!float_ && quant_at_.count(n.inputs[0]) && quant_at_.count(i)) {
          // Between two Q/DQ pairs (a residual add's point, then the next layer's): ONNX Runtime
          // fuses DQ -> LeakyRelu -> Q into one table lookup per code (QLinearLeakyRelu, the same
          // numbers as dequantize, max(x, 0), quantize); DQ -> Relu -> Q it leaves as two float
          // passes. max(x, 0·x) is ReLU.
          onnx::NodeProto* r = add_node(*gp_, "LeakyRelu", n.name, {in(0)}, {y});
          set_float(*r, "alpha", 0.0f);
          r->set_doc_string("ReLU (LeakyRelu with alpha 0: the form ONNX Runtime fuses with its Q/DQ)");
        } else {
          add_node(*gp_, "Relu", n.name, {in(0)}, {y});
        }
        break;
      case Op::ReLU6: {
        std::string lo = unique(n.name + ".min"), hi = unique(n.name + ".max");
        init(float_tensor(lo, {}, {0.0f}));
        init(float_tensor(hi, {}, {6.0f}));
        y = unique(n.name);
        add_node(*gp_, "Clip", n.name, {in(0), lo, hi}, {y});
        break;
      }
      case Op::Add:
        y = unique(n.name);
        add_node(*gp_, "Add", n.name, {in(0), in(1)}, {y});
        break;
      case Op::MaxPool:
      case Op::AvgPool: {
        y = unique(n.name);
        onnx::NodeProto* p =
            add_node(*gp_, n.op == Op::MaxPool ? "MaxPool" : "AveragePool", n.name, {in(0)}, {y});
        set_window(*p, n.window);
        if (n.op == Op::AvgPool) set_int(*p, "count_include_pad", 1);  // as the simulation
        if (n.ceil_mode) set_int(*p, "ceil_mode", 1);
        break;
      }
      case Op::GlobalAvgPool:
        y = unique(n.name);
        add_node(*gp_, "GlobalAveragePool", n.name, {in(0)}, {y});
        break;
      case Op::Flatten: {
        y = unique(n.name);
        onnx::NodeProto* f = add_node(*gp_, "Flatten", n.name, {in(0)}, {y});
        set_int(*f, "axis", 1);
        break;
      }
      case Op::Sigmoid:
      case Op::SiLU: {
        // SiLU at opset 13 (HardSwish and a SiLU operator came later): x · Sigmoid(x).
        const bool silu = n.op == Op::SiLU;
        std::string s = unique(silu ? n.name + ".sigmoid" : n.name);
        add_node(*gp_, "Sigmoid", silu ? unique(n.name + ".sigmoid") : n.name, {in(0)}, {s});
        y = s;
        if (silu) add_node(*gp_, "Mul", n.name, {in(0), s}, {y = unique(n.name)});
        break;
      }
      case Op::HardSigmoid:
      case Op::HardSwish: {
        const bool hswish = n.op == Op::HardSwish;
        std::string s = unique(hswish ? n.name + ".hardsigmoid" : n.name);
        onnx::NodeProto* h = add_node(*gp_, "HardSigmoid",
                                      hswish ? unique(n.name + ".hardsigmoid") : n.name, {in(0)}, {s});
        set_float(*h, "alpha", 1.0f / 6.0f);
        set_float(*h, "beta", 0.5f);
        y = s;
        if (hswish) add_node(*gp_, "Mul", n.name, {in(0), s}, {y = unique(n.name)});
        break;
      }
      case Op::Concat: {
        std::vector<std::string> ins;
        for (size_t k = 0; k < n.inputs.size(); ++k) ins.push_back(in(static_cast<int>(k)));
        y = unique(n.name);
        onnx::NodeProto* c = add_node(*gp_, "Concat", n.name, ins, {y});
        set_int(*c, "axis", 1);
        break;
      }
      case Op::ChannelShuffle: {
        // As PyTorch writes it: view [N, g, C/g, H, W], swap the two channel axes, view back.
        const Shape& s = n.out_shape;
        std::string shape5 = unique(n.name + ".shape5"), shape4 = unique(n.name + ".shape4");
        init(int64_tensor(shape5, {5}, {0, n.groups, s[0] / n.groups, s[1], s[2]}));
        init(int64_tensor(shape4, {4}, {0, s[0], s[1], s[2]}));
        std::string v5 = unique(n.name + ".grouped"), t5 = unique(n.name + ".transposed");
        add_node(*gp_, "Reshape", unique(n.name + ".reshape5"), {in(0), shape5}, {v5});
        onnx::NodeProto* t = add_node(*gp_, "Transpose", unique(n.name + ".transpose"), {v5}, {t5});
        set_ints(*t, "perm", {0, 2, 1, 3, 4});
        y = unique(n.name);
        add_node(*gp_, "Reshape", n.name, {t5, shape4}, {y});
        break;
      }
      case Op::ChannelSlice: {
        std::string b = unique(n.name + ".starts"), e = unique(n.name + ".ends"),
                    a = unique(n.name + ".axes");
        init(int64_tensor(b, {1}, {n.begin}));
        init(int64_tensor(e, {1}, {n.end}));
        init(int64_tensor(a, {1}, {1}));
        y = unique(n.name);
        add_node(*gp_, "Slice", n.name, {in(0), b, e, a}, {y});
        break;
      }
      case Op::Mul: {
        std::string gate = in(1);
        const Shape& xs = g_.nodes[n.inputs[0]].out_shape;
        if (xs.size() == 3 && g_.nodes[n.inputs[1]].out_shape.size() == 1) {
          // A flat per-channel gate [N, C] against [N, C, H, W]: numpy broadcasting aligns the
          // trailing axes, so it becomes [N, C, 1, 1] first.
          std::string axes = unique(n.name + ".gate_axes");
          init(int64_tensor(axes, {2}, {2, 3}));
          std::string u = unique(n.name + ".gate");
          add_node(*gp_, "Unsqueeze", unique(n.name + ".unsqueeze"), {gate, axes}, {u});
          gate = u;
        }
        y = unique(n.name);
        add_node(*gp_, "Mul", n.name, {in(0), gate}, {y});
        break;
      }
      case Op::LeakyReLU: {
        y = unique(n.name);
        onnx::NodeProto* l = add_node(*gp_, "LeakyRelu", n.name, {in(0)}, {y});
        set_float(*l, "alpha", static_cast<float>(n.alpha));
        break;
      }
    }
    auto q = quant_at_.find(i);
    values_[i] = q != quant_at_.end() ? quantize_act(i, q->second, y) : y;
  }

  const QuantModel& qm_;
  const Graph& g_;
  const bool float_;
  const OnnxExportOptions opt_;
  onnx::GraphProto* gp_ = nullptr;
  std::map<int, int> points_;
  std::map<int, int> quant_at_;      // node -> the point whose quantizer its output gets
  std::vector<float> weight_scale_;  // the last weight(i)'s per-channel scales
  std::vector<std::string> values_;
  std::set<std::string> used_ = {"input", "logits"};
};

}  // namespace

namespace {

std::string model_bytes(const QuantModel& qm, bool float_model, const OnnxExportOptions& opt) {
  Graph g = qm.graph;
  g.infer_shapes();  // out_shape of every node (the output's, for the value info)
  QuantModel shaped = qm;
  shaped.graph = std::move(g);
  onnx::ModelProto m = Exporter(shaped, float_model, opt).build();
  try {
    onnx::checker::check_model(m);
    onnx::shape_inference::InferShapes(m, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(true, 1, false));
  } catch (const std::exception& e) {
    fail("export_onnx: model '{}' fails the ONNX checker: {}", qm.graph.name, e.what());
  }
  std::string bytes;
  if (!m.SerializeToString(&bytes)) fail("export_onnx: cannot serialize model '{}'", qm.graph.name);
  return bytes;
}

}  // namespace

OnnxWeights parse_onnx_weights(const std::string& s) {
  if (s == "auto") return OnnxWeights::Auto;
  if (s == "u8") return OnnxWeights::U8;
  if (s == "s8") return OnnxWeights::S8;
  fail("ONNX weight type '{}' (expected auto, u8 or s8)", s);
}

std::string export_onnx_bytes(const QuantModel& qm, const OnnxExportOptions& opt) {
  return model_bytes(qm, false, opt);
}

std::string export_onnx_float_bytes(const Graph& g) {
  QuantModel qm;
  qm.graph = g;
  return model_bytes(qm, true, {});
}

void export_onnx_float(const Graph& g, const std::string& path) {
  write_file_atomic(path, export_onnx_float_bytes(g));
}

void export_onnx(const QuantModel& qm, const std::string& path, const OnnxExportOptions& opt) {
  write_file_atomic(path, export_onnx_bytes(qm, opt));
}

}  // namespace sq
