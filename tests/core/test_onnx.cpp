// ONNX export (QDQ) and import, torch-free: structure of the exported model, the importer's
// operator mapping, and every import error. Runs against ONNX Runtime are in
// tests/torch/test_onnx_cli.cpp.
#include <gtest/gtest.h>

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>

#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/integerize.h"
#include "sigmaquant/onnx.h"
#include "sigmaquant/qmodel.h"
#include "test_util.h"

namespace {

using sqtest::error_of;

const std::string kFixture = std::string(SQ_SOURCE_DIR) + "/tests/data/fmnist_cnn.onnx";

// A small graph touching every operator, quantized with a 4-bit layer and random ranges.
sq::QuantModel tiny_qmodel(int wbits_mid, int abits_mid) {
  sq::Graph g("tiny", {1, 12, 12}, 10);
  int x = g.input();
  x = g.conv2d("conv1", x, 8, 3, 1, 1, 1, true);
  x = g.relu("relu1", x);
  int a = g.conv2d("conv2", x, 8, 3, 1, 1, 2, false);
  a = g.batchnorm("bn2", a);
  a = g.relu6("relu2", a);
  x = g.add("add", x, a);
  x = g.maxpool("pool", x, 2, 2);
  x = g.avgpool("apool", x, 3, 1, 1);
  x = g.global_avgpool("gap", x);
  x = g.flatten("flat", x);
  g.linear("fc", x, 10);
  g.input_mean = {0.25f};
  g.input_std = {0.5f};
  g.infer_shapes();
  g.init_params(7);
  sq::QuantModel qm;
  qm.graph = g;
  qm.bits = sq::BitConfig::uniform(g, 8, 8);
  qm.bits.layers["conv2"].wbits = wbits_mid;
  qm.bits.layers["conv2"].abits = abits_mid;
  qm.weight_scales = sq::max_weight_scales(g, qm.bits);
  for (const auto& [node, bits] : sq::activation_quant_points(g, qm.bits)) {
    sq::Range r{node == 0 ? -0.5 : 0.0, 2.0 + node * 0.1};
    qm.acts[g.nodes[node].name] = sq::act_quant_from_range(r, bits);
  }
  return qm;
}

onnx::ModelProto parse(const std::string& bytes) {
  onnx::ModelProto m;
  EXPECT_TRUE(m.ParseFromString(bytes));
  return m;
}

std::map<std::string, std::string> metadata(const onnx::ModelProto& m) {
  std::map<std::string, std::string> md;
  for (const auto& e : m.metadata_props()) md[e.key()] = e.value();
  return md;
}

int count_ops(const onnx::ModelProto& m, const std::string& op) {
  return static_cast<int>(std::count_if(m.graph().node().begin(), m.graph().node().end(),
                                        [&](const onnx::NodeProto& n) { return n.op_type() == op; }));
}

const onnx::TensorProto* initializer(const onnx::ModelProto& m, const std::string& name) {
  for (const auto& t : m.graph().initializer())
    if (t.name() == name) return &t;
  return nullptr;
}

TEST(OnnxExport, QdqStructureBitsAndMetadata) {
  sq::QuantModel qm = tiny_qmodel(4, 4);
  sq::OnnxExportOptions u8;  // the uint8 container everywhere (auto: WeightTypePerLayer)
  u8.weights = sq::OnnxWeights::U8;
  onnx::ModelProto m = parse(sq::export_onnx_bytes(qm, u8));
  EXPECT_EQ(m.opset_import(0).version(), 13);
  // Normalization first, then one Q/DQ pair per quantization point.
  EXPECT_EQ(m.graph().node(0).op_type(), "Sub");
  EXPECT_EQ(m.graph().node(1).op_type(), "Div");
  // One Q/DQ pair per quantization point, plus one at gap's output (flatten leads from it to the
  // point 'flat', so its quantizer goes there too: the form ORT fuses), plus the 8-bit container
  // step before the Clip of each sub-8-bit point; a DequantizeLinear per weight and per bias
  // (conv1 and fc have one).
  const auto points = sq::activation_quant_points(qm.graph, qm.bits);
  int clips = 0;
  for (const auto& [node, bits] : points) clips += bits < 8;
  EXPECT_EQ(count_ops(m, "QuantizeLinear"), static_cast<int>(points.size()) + 1 + clips);
  EXPECT_EQ(count_ops(m, "DequantizeLinear"),
            static_cast<int>(points.size() + 1 + clips + qm.graph.weight_layers().size() + 2));
  ASSERT_NE(initializer(m, "gap.act_scale"), nullptr);
  EXPECT_EQ(initializer(m, "gap.act_scale")->float_data(0), qm.acts.at("flat").scale);
  // The bias: int32 at scale s_in · s_w[c] behind a per-channel DequantizeLinear.
  const auto* bq = initializer(m, "conv1.bias_quantized");
  const auto* bs = initializer(m, "conv1.bias_scale");
  ASSERT_NE(bq, nullptr);
  ASSERT_NE(bs, nullptr);
  EXPECT_EQ(bq->data_type(), onnx::TensorProto::INT32);
  ASSERT_EQ(bq->raw_data().size(), 8 * sizeof(int32_t));
  const float s_in = qm.acts.at("input").scale;
  for (int c = 0; c < 8; ++c) {
    int32_t v;
    std::memcpy(&v, bq->raw_data().data() + 4 * c, 4);
    const float sc = s_in * qm.weight_scales.at("conv1")[c];
    EXPECT_FLOAT_EQ(bs->float_data(c), sc);
    EXPECT_EQ(v, static_cast<int32_t>(std::nearbyint(
                     double(qm.graph.node("conv1").params.at("bias").data[c]) / sc)));
  }
  // conv2 reads relu1 at 4 bits... but relu1 is also read by the add (8 bits) and conv1's input
  // is 8-bit: relu1 stays 8-bit unless a weight layer wants more. The 4-bit point gets a Clip.
  EXPECT_GT(clips, 0);
  EXPECT_EQ(count_ops(m, "Clip"), clips + 1);  // + the ReLU6
  // A sub-8-bit point: Q/DQ in the 8-bit container (what ORT fuses with the layer before), the
  // b-bit Clip on its output, then the b-bit Q/DQ.
  for (const auto& n : m.graph().node())
    if (n.op_type() == "Clip" && n.name().find(".act_clip") != std::string::npos) {
      bool from_dq8 = false;
      for (const auto& d : m.graph().node())
        if (d.output(0) == n.input(0)) from_dq8 = d.op_type() == "DequantizeLinear";
      EXPECT_TRUE(from_dq8) << n.name();
    }
  // 4-bit weights: narrow range inside a uint8 container (value + 128), per-channel scales.
  const auto* w = initializer(m, "conv2.weight_quantized");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->data_type(), onnx::TensorProto::UINT8);
  int maxabs = 0;
  for (char c : w->raw_data()) maxabs = std::max(maxabs, std::abs(static_cast<int>(static_cast<uint8_t>(c)) - 128));
  EXPECT_EQ(maxabs, 7);
  EXPECT_EQ(initializer(m, "conv2.weight_scale")->float_data_size(), 8);
  const auto* w8 = initializer(m, "conv1.weight_quantized");
  maxabs = 0;
  for (char c : w8->raw_data()) maxabs = std::max(maxabs, std::abs(static_cast<int>(static_cast<uint8_t>(c)) - 128));
  EXPECT_EQ(maxabs, 127);
  auto md = metadata(m);
  EXPECT_EQ(md["sigmaquant.wbits.conv2"], "4");
  EXPECT_EQ(md["sigmaquant.abits.conv2"], "4");
  EXPECT_EQ(md["sigmaquant.wbits.fc"], "8");
  EXPECT_NE(md["sigmaquant.bits"].find("conv2"), std::string::npos);
  bool doc = false;
  for (const auto& n : m.graph().node())
    if (n.name() == "conv2.weight_dequantize") doc = n.doc_string().find("4-bit") != std::string::npos;
  EXPECT_TRUE(doc);
  // Integer weights equal quantized_weights().
  std::vector<int32_t> q = sq::quantized_weights(qm, "conv2");
  ASSERT_EQ(w->raw_data().size(), q.size());
  for (size_t i = 0; i < q.size(); ++i)
    EXPECT_EQ(static_cast<int>(static_cast<uint8_t>(w->raw_data()[i])) - 128, q[i]);
  EXPECT_EQ(m.graph().output(0).name(), "logits");
}

// Weight types (docs/formats.md, "Weights"): auto gives int8 exactly to the layers where
// 2 * (largest input code) * max|q| <= 32767 (ONNX Runtime's x86 u8s8 kernels cannot saturate),
// uint8 with zero point 128 to the others; u8 and s8 force one type; the codes are the same.
TEST(OnnxExport, WeightTypePerLayer) {
  sq::QuantModel qm = tiny_qmodel(7, 8);  // conv2: 7-bit weights (|q| <= 63) after 8-bit codes
  qm.bits.layers["fc"].abits = 7;         // fc: 8-bit weights after 7-bit codes (<= 127)
  for (const auto& [node, bits] : sq::activation_quant_points(qm.graph, qm.bits))
    qm.acts[qm.graph.nodes[node].name] = sq::act_quant_from_range({0.0, 2.0 + node * 0.1}, bits);
  auto type_of = [](const onnx::ModelProto& m, const std::string& layer) {
    return initializer(m, layer + ".weight_quantized")->data_type();
  };
  auto codes = [](const onnx::ModelProto& m, const std::string& layer) {
    const auto* w = initializer(m, layer + ".weight_quantized");
    const bool u8 = w->data_type() == onnx::TensorProto::UINT8;
    std::vector<int32_t> v;
    for (char c : w->raw_data())
      v.push_back(u8 ? static_cast<int>(static_cast<uint8_t>(c)) - 128 : static_cast<int8_t>(c));
    return v;
  };
  onnx::ModelProto m = parse(sq::export_onnx_bytes(qm));     // auto
  EXPECT_EQ(type_of(m, "conv1"), onnx::TensorProto::UINT8);  // 2 * 255 * 127 > 32767
  EXPECT_EQ(type_of(m, "conv2"), onnx::TensorProto::INT8);   // 2 * 255 * 63 = 32130
  EXPECT_EQ(type_of(m, "fc"), onnx::TensorProto::INT8);      // 2 * 127 * 127 = 32258
  EXPECT_EQ(initializer(m, "conv2.weight_zero_point")->data_type(), onnx::TensorProto::INT8);
  EXPECT_EQ(initializer(m, "conv1.weight_zero_point")->data_type(), onnx::TensorProto::UINT8);
  for (const auto& n : m.graph().node()) {
    if (n.name() == "conv2.weight_dequantize") {
      EXPECT_NE(n.doc_string().find("int8 container (zero point 0)"), std::string::npos);
    }
  }
  sq::OnnxExportOptions opt;
  for (sq::OnnxWeights w : {sq::OnnxWeights::U8, sq::OnnxWeights::S8}) {
    opt.weights = w;
    onnx::ModelProto f = parse(sq::export_onnx_bytes(qm, opt));
    for (const char* layer : {"conv1", "conv2", "fc"}) {
      EXPECT_EQ(type_of(f, layer),
                w == sq::OnnxWeights::U8 ? onnx::TensorProto::UINT8 : onnx::TensorProto::INT8);
      EXPECT_EQ(codes(f, layer), sq::quantized_weights(qm, layer)) << layer;
      EXPECT_EQ(codes(f, layer), codes(m, layer)) << layer;
    }
  }
  EXPECT_EQ(sq::parse_onnx_weights("auto"), sq::OnnxWeights::Auto);
  EXPECT_EQ(sq::parse_onnx_weights("s8"), sq::OnnxWeights::S8);
  EXPECT_NE(
      error_of([] { sq::parse_onnx_weights("int8"); }).find("'int8' (expected auto, u8 or s8)"),
      std::string::npos);
}

// A ReLU between two quantization points (a residual add's, then the next conv's input) goes out
// as LeakyRelu(alpha = 0), which ONNX Runtime fuses with its Q/DQ into a table lookup; a ReLU
// after a layer the Q folds into stays Relu. An input normalization of mean 0, std 1 is left out.
TEST(OnnxExport, ReluBetweenPointsAndIdentityNormalization) {
  sq::Graph g("res", {1, 8, 8}, 10);
  int x = g.input();
  int a = g.relu("r1", g.conv2d("c1", x, 4, 3, 1, 1, 1, true));
  int b = g.conv2d("c2", a, 4, 3, 1, 1, 1, true);
  int r = g.relu("r2", g.add("add", a, b));
  int c = g.relu("r3", g.conv2d("c3", r, 4, 3, 1, 1, 1, true));
  g.linear("fc", g.flatten("flat", g.global_avgpool("gap", c)), 10);
  g.input_mean = {0.0f};
  g.input_std = {1.0f};
  g.infer_shapes();
  g.init_params(3);
  sq::QuantModel qm;
  qm.graph = g;
  qm.bits = sq::BitConfig::uniform(g, 8, 8);
  qm.weight_scales = sq::max_weight_scales(g, qm.bits);
  for (const auto& [node, bits] : sq::activation_quant_points(g, qm.bits))
    qm.acts[g.nodes[node].name] = sq::act_quant_from_range({node == 0 ? 0.0 : -1.0, 2.0}, bits);
  onnx::ModelProto m = parse(sq::export_onnx_bytes(qm));
  EXPECT_EQ(count_ops(m, "Sub"), 0);
  EXPECT_EQ(count_ops(m, "Div"), 0);
  EXPECT_EQ(m.graph().node(0).op_type(), "QuantizeLinear");
  EXPECT_EQ(m.graph().node(0).input(0), "input");
  std::map<std::string, std::string> op;
  for (const auto& n : m.graph().node()) op[n.name()] = n.op_type();
  EXPECT_EQ(op["r1"], "Relu");       // c1 -> Relu -> Q: ORT folds the ReLU into the Q
  EXPECT_EQ(op["r2"], "LeakyRelu");  // add's point -> ReLU -> c3's input point
  EXPECT_EQ(op["r3"], "Relu");
  for (const auto& n : m.graph().node())
    if (n.name() == "r2") {
      ASSERT_EQ(n.attribute_size(), 1);
      EXPECT_EQ(n.attribute(0).name(), "alpha");
      EXPECT_EQ(n.attribute(0).f(), 0.0f);
    }
  // The float export keeps Relu (no Q/DQ to fuse with).
  onnx::ModelProto f = parse(sq::export_onnx_float_bytes(g));
  EXPECT_EQ(count_ops(f, "LeakyRelu"), 0);
}

TEST(OnnxExport, PerChannelBitsAndPrunedChannels) {
  sq::QuantModel qm = tiny_qmodel(8, 8);
  auto& lb = qm.bits.layers["conv2"];
  lb.channel_wbits = {0, 2, 3, 4, 5, 6, 7, 8};
  lb.wbits = 8;
  qm.weight_scales = sq::max_weight_scales(qm.graph, qm.bits);
  onnx::ModelProto m = parse(sq::export_onnx_bytes(qm));
  const auto* w = initializer(m, "conv2.weight_quantized");
  const int64_t per = 4 * 9;  // in/groups x 3 x 3
  for (int c = 0; c < 8; ++c) {
    int qmax = c == 0 ? 0 : (1 << (lb.channel_wbits[c] - 1)) - 1, seen = 0;
    for (int64_t k = 0; k < per; ++k)
      seen = std::max(seen, std::abs(static_cast<int>(static_cast<uint8_t>(w->raw_data()[c * per + k])) - 128));
    EXPECT_EQ(seen, qmax) << "channel " << c;
  }
  EXPECT_EQ(metadata(m)["sigmaquant.wbits.conv2"], "mixed 2..8 (1 pruned)");

  // Every layer's int32 bias is the engine's (integerize), a pruned channel's too (unit s_x),
  // at scale s_x·s_w: ONNX Runtime then adds the bias the engine and the simulation add. (conv1
  // and fc have biases and no batchnorm after them; conv1's channel 0 pruned here.)
  sq::QuantModel qb = tiny_qmodel(8, 8);
  qb.bits.layers["conv1"].channel_wbits = {0, 8, 8, 8, 4, 8, 8, 8};
  qb.weight_scales = sq::max_weight_scales(qb.graph, qb.bits);
  m = parse(sq::export_onnx_bytes(qb));
  const sq::IntModel im = sq::integerize(qb);
  int checked = 0;
  for (const sq::IntLayer& L : im.layers) {
    if (L.name != "conv1" && L.name != "fc") continue;
    const auto* bq = initializer(m, L.name + ".bias_quantized");
    const auto* bs = initializer(m, L.name + ".bias_scale");
    ASSERT_NE(bq, nullptr) << L.name;
    ASSERT_NE(bs, nullptr) << L.name;
    ASSERT_EQ(bq->raw_data().size(), L.bias.size() * 4) << L.name;
    for (size_t c = 0; c < L.bias.size(); ++c) {
      int32_t v;
      float scale;
      std::memcpy(&v, bq->raw_data().data() + 4 * c, 4);
      if (bs->raw_data().empty())
        scale = bs->float_data(static_cast<int>(c));
      else
        std::memcpy(&scale, bs->raw_data().data() + 4 * c, 4);
      EXPECT_EQ(v, L.bias[c]) << L.name << " channel " << c;
      EXPECT_FLOAT_EQ(scale, static_cast<float>(sq::accumulator_unit(L.in_scale, L.weight_scales[c])))
          << L.name << " channel " << c;
      EXPECT_FLOAT_EQ(L.bias_float[c], static_cast<float>(L.bias[c] * sq::accumulator_unit(
                                                            L.in_scale, L.weight_scales[c])));
      ++checked;
    }
  }
  EXPECT_EQ(checked, 18);
  EXPECT_EQ(im.layers[0].weight_scales[0], 0.0f);  // the pruned channel, unit s_x
}

TEST(OnnxExport, WritesAtomicallyAndFailsOnBadPath) {
  std::string dir = sqtest::temp_dir("onnx_export");
  sq::QuantModel qm = tiny_qmodel(8, 8);
  sq::export_onnx(qm, dir + "/m.onnx");
  EXPECT_EQ(sq::read_file(dir + "/m.onnx"), sq::export_onnx_bytes(qm));
  EXPECT_NE(error_of([&] { sq::export_onnx(qm, dir + "/no/such/dir/m.onnx"); }), "");
  qm.acts.erase(qm.acts.begin()->first);
  EXPECT_NE(error_of([&] { sq::export_onnx_bytes(qm); }).find("no activation quantizer"),
            std::string::npos);
}

TEST(OnnxImport, FixtureMapsEveryLayer) {
  sq::Graph g = sq::import_onnx(kFixture);
  EXPECT_EQ(g.input_shape, (sq::Shape{1, 28, 28}));
  EXPECT_EQ(g.num_classes, 10);
  std::vector<std::string> ops;
  for (const auto& n : g.nodes) ops.push_back(sq::op_name(n.op));
  EXPECT_EQ(ops, (std::vector<std::string>{"input", "conv2d", "batchnorm", "relu", "maxpool",
                                           "conv2d", "batchnorm", "relu", "maxpool", "flatten",
                                           "linear"}));
  EXPECT_EQ(g.nodes[1].name, "/conv1/Conv");
  EXPECT_EQ(g.nodes[10].params.at("weight").shape, (sq::Shape{10, 784}));
  EXPECT_TRUE(g.nodes[10].has_bias);
  EXPECT_EQ(g.total_params(), 8 * 9 + 16 * 8 * 9 + 784 * 10 + 10 + 2 * 8 + 2 * 16);
}

// ---- hand-built ONNX models for the operator mapping and the errors ----

struct Builder {
  onnx::ModelProto m;
  onnx::GraphProto* g;
  explicit Builder(sq::Shape chw = {2, 6, 6}, int opset = 13) {
    m.set_ir_version(7);
    auto* o = m.add_opset_import();
    o->set_version(opset);
    g = m.mutable_graph();
    g->set_name("t");
    auto* in = g->add_input();
    in->set_name("x");
    auto* tt = in->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(onnx::TensorProto::FLOAT);
    tt->mutable_shape()->add_dim()->set_dim_param("N");
    for (int64_t d : chw) tt->mutable_shape()->add_dim()->set_dim_value(d);
  }
  onnx::NodeProto* node(const std::string& op, const std::string& name,
                        std::vector<std::string> ins, std::vector<std::string> outs) {
    auto* n = g->add_node();
    n->set_op_type(op);
    n->set_name(name);
    for (auto& i : ins) n->add_input(i);
    for (auto& o : outs) n->add_output(o);
    return n;
  }
  void ints(onnx::NodeProto* n, const std::string& a, std::vector<int64_t> v) {
    auto* at = n->add_attribute();
    at->set_name(a);
    at->set_type(onnx::AttributeProto::INTS);
    for (auto x : v) at->add_ints(x);
  }
  void i(onnx::NodeProto* n, const std::string& a, int64_t v) {
    auto* at = n->add_attribute();
    at->set_name(a);
    at->set_type(onnx::AttributeProto::INT);
    at->set_i(v);
  }
  void str(onnx::NodeProto* n, const std::string& a, const std::string& v) {
    auto* at = n->add_attribute();
    at->set_name(a);
    at->set_type(onnx::AttributeProto::STRING);
    at->set_s(v);
  }
  onnx::TensorProto tensor(const std::string& name, sq::Shape dims, float start = 0.01f) {
    onnx::TensorProto t;
    t.set_name(name);
    t.set_data_type(onnx::TensorProto::FLOAT);
    int64_t n = 1;
    for (auto d : dims) { t.add_dims(d); n *= d; }
    for (int64_t k = 0; k < n; ++k) t.add_float_data(start * static_cast<float>((k % 7) - 3));
    return t;
  }
  void init(const std::string& name, sq::Shape dims, float start = 0.01f) {
    *g->add_initializer() = tensor(name, dims, start);
  }
  void init_i64(const std::string& name, std::vector<int64_t> v) {
    auto* t = g->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    t->add_dims(static_cast<int64_t>(v.size()));
    for (auto x : v) t->add_int64_data(x);
  }
  void output(const std::string& name) { g->add_output()->set_name(name); }
  std::string bytes() const { return m.SerializeAsString(); }
  sq::Graph import() const { return sq::import_onnx_bytes(bytes(), "t.onnx"); }
  std::string error() const { return error_of([&] { import(); }); }
};

// x -> Conv(3x3, pad 1) -> [extra] -> GlobalAveragePool -> Flatten -> Gemm -> y
Builder conv_net(const std::function<void(Builder&, onnx::NodeProto*)>& tweak_conv = {}) {
  Builder b;
  b.init("w", {4, 2, 3, 3});
  b.init("fw", {3, 4});
  b.init("fb", {3});
  auto* c = b.node("Conv", "conv", {"x", "w"}, {"c"});
  b.ints(c, "kernel_shape", {3, 3});
  b.ints(c, "pads", {1, 1, 1, 1});
  if (tweak_conv) tweak_conv(b, c);
  b.node("GlobalAveragePool", "gap", {"c"}, {"p"});
  b.node("Flatten", "flat", {"p"}, {"f"});
  auto* gm = b.node("Gemm", "fc", {"f", "fw", "fb"}, {"y"});
  b.i(gm, "transB", 1);
  b.output("y");
  return b;
}

TEST(OnnxImport, ConvGemmGroupsStridesPads) {
  sq::Graph g = conv_net([](Builder& b, onnx::NodeProto* c) {
    b.ints(c, "strides", {2, 2});
    b.i(c, "group", 2);
    b.g->mutable_initializer(0)->CopyFrom(b.tensor("w", {4, 1, 3, 3}));
  }).import();
  const sq::Node& c = g.node("conv");
  EXPECT_EQ(c.groups, 2);
  EXPECT_EQ(c.window, sq::Window2d::square(3, 2, 1));
  EXPECT_EQ(c.out_shape, (sq::Shape{4, 3, 3}));
  EXPECT_EQ(g.node("fc").params.at("weight").shape, (sq::Shape{3, 4}));
  EXPECT_EQ(g.num_classes, 3);
}

// Non-square kernels, per-axis strides, ONNX's pads [top, left, bottom, right] and dilations map
// onto the IR's window (issue 15); the float graph computes what the ONNX definition says.
TEST(OnnxImport, NonSquareStridedDilatedAndUnequallyPaddedConvs) {
  sq::Graph g = conv_net([](Builder& b, onnx::NodeProto* c) {
                  b.g->mutable_initializer(0)->CopyFrom(b.tensor("w", {4, 2, 1, 3}));
                  c->mutable_attribute(0)->set_ints(0, 1);  // kernel_shape [1, 3]
                  c->mutable_attribute(1)->set_ints(0, 0);  // pads [0, 1, 1, 1]
                  b.ints(c, "strides", {2, 1});
                  b.ints(c, "dilations", {1, 2});
                }).import();
  const sq::Node& c = g.node("conv");
  EXPECT_EQ(c.window, (sq::Window2d{1, 3, 2, 1, 0, 1, 1, 1, 1, 2}));
  // H: (6 + 0 + 1 − 1) / 2 + 1 = 4; W: (6 + 1 + 1 − 5) / 1 + 1 = 4.
  EXPECT_EQ(c.out_shape, (sq::Shape{4, 4, 4}));
  EXPECT_EQ(c.params.at("weight").shape, (sq::Shape{4, 2, 1, 3}));
  // A kernel_shape that disagrees with the weight is named.
  const std::string e = conv_net([](Builder& b, onnx::NodeProto*) {
                          b.g->mutable_initializer(0)->CopyFrom(b.tensor("w", {4, 2, 1, 3}));
                        }).error();
  EXPECT_NE(e.find("attribute kernel_shape: [3, 3] differs from the weight's 1x3"),
            std::string::npos)
      << e;
}

TEST(OnnxImport, MatMulAddBecomesLinearWithBias) {
  Builder b({1, 2, 2});
  b.init("w", {4, 3});  // [in, out]
  b.init("bias", {3}, 0.5f);
  b.init_i64("shape", {-1, 4});
  b.node("Reshape", "r", {"x", "shape"}, {"f"});
  b.node("MatMul", "mm", {"f", "w"}, {"m"});
  b.node("Add", "add", {"m", "bias"}, {"y"});
  b.output("y");
  sq::Graph g = b.import();
  ASSERT_EQ(g.nodes.size(), 3u);  // input, flatten, linear
  const sq::Node& l = g.nodes[2];
  EXPECT_EQ(l.op, sq::Op::Linear);
  EXPECT_TRUE(l.has_bias);
  EXPECT_FLOAT_EQ(l.params.at("bias").data[0], 0.5f * -3);
  // Transposed: weight[o][i] = w[i][o].
  const auto t = b.tensor("w", {4, 3});
  EXPECT_FLOAT_EQ(l.params.at("weight").data[1 * 4 + 2], t.float_data(2 * 3 + 1));
}

TEST(OnnxImport, ClipReluPoolsBatchNormIdentityDropoutConstant) {
  Builder b({2, 8, 8});
  auto* k = b.node("Constant", "const_w", {}, {"w"});
  auto* at = k->add_attribute();
  at->set_name("value");
  at->set_type(onnx::AttributeProto::TENSOR);
  *at->mutable_t() = b.tensor("", {2, 2, 1, 1});
  b.init("lo", {}, 0.0f);
  b.init("hi", {});
  b.g->mutable_initializer(1)->set_float_data(0, 6.0f);
  for (const char* p : {"s", "bb", "mu", "var"}) b.init(p, {2}, 0.2f);
  b.g->mutable_initializer(5)->set_float_data(0, 1.0f);
  b.g->mutable_initializer(5)->set_float_data(1, 2.0f);
  b.node("Conv", "conv", {"x", "w"}, {"c"});
  b.node("BatchNormalization", "bn", {"c", "s", "bb", "mu", "var"}, {"n"});
  b.node("Clip", "relu6", {"n", "lo", "hi"}, {"r6"});
  b.node("Identity", "id", {"r6"}, {"i"});
  // 1 × 1 pools at stride 1 (torch's AdaptiveAvgPool2d to its input's size: VGG at 224²) copy
  // their input: aliased like Identity, no node.
  auto* ap1 = b.node("AveragePool", "ap1", {"i"}, {"i1"});
  b.ints(ap1, "kernel_shape", {1, 1});
  auto* mp1 = b.node("MaxPool", "mp1", {"i1"}, {"i2"});
  b.ints(mp1, "kernel_shape", {1, 1});
  b.ints(mp1, "strides", {1, 1});
  auto* mp = b.node("MaxPool", "mp", {"i2"}, {"m"});
  b.ints(mp, "kernel_shape", {2, 2});
  b.ints(mp, "strides", {2, 2});
  auto* ap = b.node("AveragePool", "ap", {"m"}, {"a"});
  b.ints(ap, "kernel_shape", {3, 3});
  b.ints(ap, "pads", {1, 1, 1, 1});
  b.i(ap, "count_include_pad", 1);
  b.node("Relu", "relu", {"a"}, {"r"});
  b.node("Add", "add", {"r", "a"}, {"s2"});
  b.node("Dropout", "drop", {"s2"}, {"d"});
  b.node("GlobalAveragePool", "gap", {"d"}, {"g"});
  b.node("Flatten", "flat", {"g"}, {"y"});
  b.output("y");
  sq::Graph g = b.import();
  std::vector<std::string> ops;
  for (const auto& n : g.nodes) ops.push_back(sq::op_name(n.op));
  EXPECT_EQ(ops, (std::vector<std::string>{"input", "conv2d", "batchnorm", "relu6", "maxpool",
                                           "avgpool", "relu", "add", "global_avgpool", "flatten"}));
  EXPECT_EQ(g.node("ap").window.pad_top, 1);
  EXPECT_EQ(g.num_classes, 2);
}

TEST(OnnxImport, LeadingSubDivIsTheInputNormalization) {
  Builder b({2, 4, 4});
  b.init("mean", {1, 2, 1, 1}, 0.1f);  // -0.3, -0.2
  b.init("std", {1, 2, 1, 1}, 0.5f);
  b.g->mutable_initializer(1)->set_float_data(0, 0.5f);
  b.g->mutable_initializer(1)->set_float_data(1, 0.25f);
  b.node("Sub", "sub", {"x", "mean"}, {"c"});
  b.node("Div", "div", {"c", "std"}, {"n"});
  b.node("GlobalAveragePool", "gap", {"n"}, {"g"});
  b.node("Flatten", "flat", {"g"}, {"y"});
  b.output("y");
  sq::Graph g = b.import();
  EXPECT_EQ(g.nodes.size(), 3u);  // input, gap, flatten
  ASSERT_EQ(g.input_mean.size(), 2u);
  EXPECT_FLOAT_EQ(g.input_mean[0], -0.3f);
  EXPECT_FLOAT_EQ(g.input_std[1], 0.25f);
  // Anywhere else, Sub/Div are refused, named.
  Builder d({2, 4, 4});
  d.init("k", {1, 2, 1, 1}, 0.5f);
  d.node("Relu", "relu", {"x"}, {"r"});
  d.node("Div", "div", {"r", "k"}, {"y"});
  d.output("y");
  EXPECT_NE(d.error().find("node 'div' (Div): supported only as the input normalization"),
            std::string::npos) << d.error();
}

TEST(OnnxImport, UnsupportedOperatorsAreNamed) {
  Builder b;
  b.node("Softmax", "act1", {"x"}, {"s"});
  b.node("Resize", "", {"s"}, {"y"});
  b.output("y");
  std::string e = b.error();
  EXPECT_NE(e.find("t.onnx"), std::string::npos) << e;
  EXPECT_NE(e.find("Softmax (other than the graph's output) (node 'act1')"), std::string::npos) << e;
  EXPECT_NE(e.find("Resize (node '#1')"), std::string::npos) << e;
  // The exported QDQ model is not a float CNN: its Q/DQ operators are named.
  std::string q = error_of([] { sq::import_onnx_bytes(sq::export_onnx_bytes(tiny_qmodel(8, 8)), "q.onnx"); });
  EXPECT_NE(q.find("QuantizeLinear ("), std::string::npos) << q;
  // 12: the average pooling read by the global one is a quantization point too (qmodel.h).
  EXPECT_NE(q.find("DequantizeLinear (12 nodes: 'input.dequantize', 'conv1.weight_dequantize', "
                   "'conv1.bias_dequantize', … 9 more)"), std::string::npos) << q;
}

// x.view(x.size(0), -1) as torch.onnx.export writes it: Shape -> Gather -> Unsqueeze -> Concat
// -> Reshape, folded into a flatten (Unsqueeze's axes: an attribute before opset 13, an input from
// 13 on).
Builder shape_flatten_net(int opset) {
  Builder b({2, 6, 6}, opset);
  b.init("w", {4, 2, 3, 3});
  b.init("fw", {3, 144});
  b.init_i64("zero", {0});
  b.g->mutable_initializer(2)->clear_dims();  // "zero": a scalar index
  b.init_i64("minus1", {-1});
  b.init_i64("axes0", {0});
  auto* c = b.node("Conv", "conv", {"x", "w"}, {"c"});
  b.ints(c, "pads", {1, 1, 1, 1});
  b.node("Relu", "relu", {"c"}, {"r"});
  b.node("Shape", "shape", {"r"}, {"s"});
  auto* ga = b.node("Gather", "gather", {"s", "zero"}, {"n"});
  b.i(ga, "axis", 0);
  if (opset < 13) b.ints(b.node("Unsqueeze", "unsq", {"n"}, {"n1"}), "axes", {0});
  else b.node("Unsqueeze", "unsq", {"n", "axes0"}, {"n1"});
  b.i(b.node("Concat", "cat", {"n1", "minus1"}, {"target"}), "axis", 0);
  b.node("Reshape", "reshape", {"r", "target"}, {"f"});
  auto* gm = b.node("Gemm", "fc", {"f", "fw"}, {"y"});
  b.i(gm, "transB", 1);
  b.output("y");
  return b;
}

TEST(OnnxImport, DynamicBatchFlattenIsFolded) {
  for (int opset : {11, 13, 17}) {
    Builder b = shape_flatten_net(opset);
    sq::Graph g = b.import();
    std::vector<std::string> ops;
    for (const auto& n : g.nodes) ops.push_back(sq::op_name(n.op));
    EXPECT_EQ(ops, (std::vector<std::string>{"input", "conv2d", "relu", "flatten", "linear"}))
        << "opset " << opset;
  }
  // The batch size may reach Reshape only: as a Gemm weight it is refused, naming the node.
  Builder w = shape_flatten_net(13);
  w.g->mutable_node(7)->set_input(1, "target");
  w.g->mutable_node(7)->set_input(0, "f");
  std::string e = w.error();
  EXPECT_NE(e.find("node 'fc' (Gemm): input 'target' depends on the batch size"), std::string::npos) << e;
  // An index out of range is named.
  Builder r = shape_flatten_net(13);
  r.g->mutable_initializer(2)->set_int64_data(0, 7);
  e = r.error();
  EXPECT_NE(e.find("node 'gather' (Gather): index 7 is out of range for rank 4"), std::string::npos) << e;
}

// Activations as PyTorch writes them: SiLU as x * Sigmoid(x), hardswish as x * HardSigmoid(x)
// below opset 14 and HardSwish from 14, hardsigmoid with alpha 1/6, LeakyRelu with its slope.
TEST(OnnxImport, TableDrivenActivations) {
  Builder b({2, 6, 6}, 14);
  b.init("w", {4, 2, 3, 3});
  b.init("fw", {3, 4});
  auto* c = b.node("Conv", "conv", {"x", "w"}, {"c"});
  b.ints(c, "pads", {1, 1, 1, 1});
  b.node("Sigmoid", "sig", {"c"}, {"s"});
  b.node("Mul", "silu", {"c", "s"}, {"a"});
  auto* h = b.node("HardSigmoid", "hsig", {"a"}, {"h"});
  auto* al = h->add_attribute();
  al->set_name("alpha");
  al->set_type(onnx::AttributeProto::FLOAT);
  al->set_f(1.0f / 6.0f);
  b.node("Mul", "hswish", {"h", "a"}, {"b"});
  auto* l = b.node("LeakyRelu", "leaky", {"b"}, {"l"});
  auto* la = l->add_attribute();
  la->set_name("alpha");
  la->set_type(onnx::AttributeProto::FLOAT);
  la->set_f(0.125f);
  b.node("HardSwish", "hs", {"l"}, {"k"});
  b.node("Sigmoid", "sig2", {"k"}, {"q"});
  b.node("GlobalAveragePool", "gap", {"q"}, {"p"});
  b.node("Flatten", "flat", {"p"}, {"f"});
  auto* gm = b.node("Gemm", "fc", {"f", "fw"}, {"y"});
  b.i(gm, "transB", 1);
  b.output("y");
  sq::Graph g = b.import();
  std::vector<std::string> ops;
  for (const auto& n : g.nodes) ops.push_back(sq::op_name(n.op));
  EXPECT_EQ(ops, (std::vector<std::string>{"input", "conv2d", "silu", "hardswish", "leaky_relu",
                                           "hardswish", "sigmoid", "global_avgpool", "flatten",
                                           "linear"}));
  EXPECT_EQ(g.node("leaky").alpha, 0.125);
}

TEST(OnnxImport, OneReportForOperatorsAndAttributes) {
  Builder b({2, 6, 6});
  b.init("w", {4, 2, 3, 3});
  auto* c = b.node("Conv", "conv", {"x", "w"}, {"c"});
  b.ints(c, "dilations", {2, 0});
  b.ints(c, "strides", {1, 2});
  b.node("Softmax", "sm", {"c"}, {"s"});
  auto* mp = b.node("MaxPool", "pool", {"s"}, {"p"});
  b.ints(mp, "kernel_shape", {3, 3});
  b.ints(mp, "dilations", {2, 1});
  b.i(mp, "ceil_mode", 2);
  b.i(b.node("Concat", "cat", {"p", "c"}, {"k"}), "axis", 1);
  b.node("Sigmoid", "gate", {"p"}, {"g"});
  b.node("Mul", "se", {"k", "g"}, {"m"});  // a squeeze-excitation-like product: supported
  b.ints(b.node("ReduceMean", "rm", {"m"}, {"r"}), "axes", {1});
  b.ints(b.node("Transpose", "tr", {"r"}, {"t"}), "perm", {0, 1, 3, 2});
  b.node("Pad", "pad", {"t"}, {"pd"});  // read by no AveragePool
  auto* hs = b.node("HardSigmoid", "hsig", {"pd"}, {"y"});  // ONNX's default alpha 0.2
  (void)hs;
  b.output("y");
  std::string e = b.error();
  for (const char* want :
       {"t.onnx: unsupported ONNX operators: Softmax (other than the graph's output) (node 'sm'), "
        "Pad (other than before an AveragePool or a Conv) (node 'pad')",
        "node 'hsig' (HardSigmoid): attribute alpha: 0.2 is not supported",
        "; unsupported attributes: node 'conv' (Conv): attribute dilations: [2, 0] must be "
        "positive",
        "node 'pool' (MaxPool): attribute ceil_mode: 2 (expected 0 or 1)",
        "node 'pool' (MaxPool): attribute dilations: 2 is not supported for pooling (only 1)",
        "node 'rm' (ReduceMean): attribute axes: [1] is not supported",
        "node 'tr' (Transpose): attribute perm: [0, 1, 3, 2] is not supported"})
    EXPECT_NE(e.find(want), std::string::npos) << want << "\n" << e;
}

// Concat, Mul (per-channel gate), ReduceMean, Pad -> AveragePool, MaxPool ceil_mode, channel
// shuffle and a final Softmax map onto the IR; what they cannot express is named.
TEST(OnnxImport, ConcatSqueezeExcitationShuffleAndSoftmax) {
  auto net = [](const std::function<void(Builder&)>& tail) {
    Builder b({4, 6, 6});
    b.init("w", {4, 4, 1, 1});
    b.node("Conv", "c1", {"x", "w"}, {"a"});
    b.node("Relu", "r1", {"a"}, {"r"});
    tail(b);
    return b;
  };
  Builder ok = net([](Builder& b) {
    b.init_i64("pads", {0, 0, 1, 1, 0, 0, 1, 1});
    b.node("Pad", "pad", {"r", "pads"}, {"p"});
    auto* ap = b.node("AveragePool", "ap", {"p"}, {"q"});
    b.ints(ap, "kernel_shape", {3, 3});
    b.i(b.node("Concat", "cat", {"q", "r"}, {"k"}), "axis", 1);  // 8 x 6 x 6
    auto* mp = b.node("MaxPool", "mp", {"k"}, {"m"});
    b.ints(mp, "kernel_shape", {3, 3});
    b.ints(mp, "strides", {2, 2});
    b.i(mp, "ceil_mode", 1);  // 6x6 -> 3x3 (2x2 without)
    auto* rm = b.node("ReduceMean", "se_mean", {"m"}, {"s"});
    b.ints(rm, "axes", {2, 3});
    b.node("Sigmoid", "se_gate", {"s"}, {"g"});
    b.node("Mul", "se", {"g", "m"}, {"e"});  // the gate first: still x * gate
    b.init_i64("s5", {0, 2, 4, 3, 3});
    b.init_i64("s4", {0, -1, 3, 3});
    b.node("Reshape", "v5", {"e", "s5"}, {"e5"});
    b.ints(b.node("Transpose", "tr", {"e5"}, {"t5"}), "perm", {0, 2, 1, 3, 4});
    b.node("Reshape", "shuffle", {"t5", "s4"}, {"sh"});
    auto* gm = b.node("ReduceMean", "gap", {"sh"}, {"f"});
    b.ints(gm, "axes", {-2, -1});
    b.i(gm, "keepdims", 0);
    b.init("fw", {5, 8});
    auto* fc = b.node("Gemm", "fc", {"f", "fw"}, {"z"});
    b.i(fc, "transB", 1);
    b.node("Softmax", "prob", {"z"}, {"y"});
    b.output("y");
  });
  std::vector<std::string> notes;
  sq::Graph g = sq::import_onnx_bytes(ok.bytes(), "t.onnx", &notes);
  std::vector<std::string> ops;
  for (const auto& n : g.nodes) ops.push_back(sq::op_name(n.op));
  EXPECT_EQ(ops, (std::vector<std::string>{"input", "conv2d", "relu", "avgpool", "concat", "maxpool",
                                           "global_avgpool", "sigmoid", "mul", "channel_shuffle",
                                           "global_avgpool", "flatten", "linear"}));
  EXPECT_EQ(g.node("ap").window.pad_top, 1);
  EXPECT_EQ(g.node("cat").out_shape, (sq::Shape{8, 6, 6}));
  EXPECT_TRUE(g.node("mp").ceil_mode);
  EXPECT_EQ(g.node("mp").out_shape, (sq::Shape{8, 3, 3}));
  EXPECT_EQ(g.nodes[g.node("se").inputs[0]].name, "mp");  // x first, the gate second
  EXPECT_EQ(g.node("shuffle").groups, 2);
  EXPECT_EQ(g.num_classes, 5);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("Softmax 'prob' at the output dropped"), std::string::npos) << notes[0];

  auto bad = [&](const std::function<void(Builder&)>& tail) { return net(tail).error(); };
  std::string e = bad([](Builder& b) {
    b.i(b.node("Concat", "cat", {"r", "r"}, {"y"}), "axis", 2);
    b.output("y");
  });
  EXPECT_NE(e.find("node 'cat' (Concat): attribute axis: 2 is not supported (only 1"),
            std::string::npos) << e;
  e = bad([](Builder& b) {
    auto* mp = b.node("MaxPool", "mp", {"r"}, {"m"});
    b.ints(mp, "kernel_shape", {2, 2});
    b.ints(mp, "strides", {2, 2});
    b.node("Mul", "prod", {"r", "m"}, {"y"});
    b.output("y");
  });
  EXPECT_NE(e.find("node 'prod' (Mul): multiplies [4, 6, 6] by [4, 3, 3]"), std::string::npos) << e;
  e = bad([](Builder& b) {
    auto* ap = b.node("AveragePool", "ap", {"r"}, {"y"});
    b.ints(ap, "kernel_shape", {3, 3});
    b.ints(ap, "strides", {2, 2});
    b.i(ap, "ceil_mode", 1);  // 6x6: 3x3 instead of 2x2
    b.output("y");
  });
  EXPECT_NE(e.find("node 'ap' (AveragePool): attribute ceil_mode: 1 is supported for AveragePool "
                   "only where it gives the same output size as 0 (here 3x3 instead of 2x2"),
            std::string::npos)
      << e;
  e = bad([](Builder& b) {
    b.init_i64("pads", {0, 0, -1, 0, 0, 0, 1, 1});
    b.node("Pad", "pad", {"r", "pads"}, {"p"});
    auto* ap = b.node("AveragePool", "ap", {"p"}, {"y"});
    b.ints(ap, "kernel_shape", {3, 3});
    b.output("y");
  });
  EXPECT_NE(e.find("node 'pad' (Pad): pads [0, 0, -1, 0, 0, 0, 1, 1] are not supported"),
            std::string::npos)
      << e;
  e = bad([](Builder& b) {  // unequal padding per side is the pool's (the window's) padding
    b.init_i64("pads", {0, 0, 0, 1, 0, 0, 1, 1});
    b.node("Pad", "pad", {"r", "pads"}, {"p"});
    auto* ap = b.node("AveragePool", "ap", {"p"}, {"y"});
    b.ints(ap, "kernel_shape", {3, 3});
    b.ints(ap, "pads", {0, 1, 0, 0});
    b.i(ap, "count_include_pad", 1);
    b.output("y");
  });
  EXPECT_NE(e.find("node 'ap' (AveragePool): reads a Pad and pads 3x3 s1 p[0,1,0,0] itself"),
            std::string::npos)
      << e;
  e = bad([](Builder& b) {
    b.init_i64("s5", {0, 2, 2, 6, 6});
    b.node("Reshape", "v5", {"r", "s5"}, {"e5"});
    b.node("Relu", "r5", {"e5"}, {"y"});
    b.output("y");
  });
  EXPECT_NE(e.find("node 'r5' (Relu): input 'e5' is a [N, groups, C/groups, H, W] view of a "
                   "channel shuffle"), std::string::npos) << e;
}

// nn.ZeroPad2d before a Conv as torch 1.13 writes it (its constant folding leaves the chain): the
// pads [l, r, t, b] come from ConstantOfShape -> Concat -> Reshape [-1, 2] -> Slice (step -1) ->
// Transpose -> Reshape [-1] -> Cast, folded at import; the Conv takes the Pad's zeros on top of
// its own. A strided Slice of a constant, and what stays refused.
TEST(OnnxImport, ZeroPadBeforeConvAndFoldedPadArithmetic) {
  auto net = [](const std::function<void(Builder&)>& pads) {
    Builder b({2, 6, 6});
    b.init("w", {3, 2, 2, 4});
    pads(b);
    b.node("Pad", "pad", {"x", "pads"}, {"p"});
    auto* c = b.node("Conv", "conv", {"p", "w"}, {"c"});
    b.ints(c, "pads", {1, 0, 1, 0});
    b.node("GlobalAveragePool", "gap", {"c"}, {"g"});
    b.node("Flatten", "flat", {"g"}, {"y"});
    b.output("y");
    return b;
  };
  Builder torch_chain = net([](Builder& b) {
    b.init_i64("lrtb", {1, 2, 0, 1});
    b.init_i64("four", {4});
    auto* z = b.node("ConstantOfShape", "zeros", {"four"}, {"z"});
    auto* at = z->add_attribute();
    at->set_name("value");
    at->set_type(onnx::AttributeProto::TENSOR);
    at->mutable_t()->set_data_type(onnx::TensorProto::INT64);
    at->mutable_t()->add_dims(1);
    at->mutable_t()->add_int64_data(0);
    b.i(b.node("Concat", "cat", {"lrtb", "z"}, {"c8"}), "axis", 0);
    b.init_i64("pairs", {-1, 2});
    b.node("Reshape", "r42", {"c8", "pairs"}, {"r"});
    b.init_i64("st", {-1});
    b.init_i64("en", {-std::numeric_limits<int64_t>::max()});
    b.init_i64("ax", {0});
    b.init_i64("sp", {-1});
    b.node("Slice", "rev", {"r", "st", "en", "ax", "sp"}, {"v"});
    b.ints(b.node("Transpose", "tp", {"v"}, {"t"}), "perm", {1, 0});
    b.init_i64("flat", {-1});
    b.node("Reshape", "r8", {"t", "flat"}, {"f"});
    b.i(b.node("Cast", "cast", {"f"}, {"pads"}), "to", onnx::TensorProto::INT64);
  });
  sq::Graph g = torch_chain.import();
  const sq::Window2d& w = g.node("conv").window;
  // ONNX pads [0, 0, 0, 1, 0, 0, 1, 2] (top 0, left 1, bottom 1, right 2) plus the Conv's 1 / 1.
  EXPECT_EQ(w.pad_top, 1);
  EXPECT_EQ(w.pad_left, 1);
  EXPECT_EQ(w.pad_bottom, 2);
  EXPECT_EQ(w.pad_right, 2);
  EXPECT_EQ(g.node("conv").out_shape, (sq::Shape{3, 8, 6}));  // (6 + 3 - 2) + 1, (6 + 3 - 4) + 1
  EXPECT_EQ(g.nodes[g.node("conv").inputs[0]].op, sq::Op::Input);

  // Every other entry of a constant (Slice step 2), then the same pads.
  Builder strided = net([](Builder& b) {
    b.init_i64("all", {0, 9, 0, 9, 1, 9, 1, 9, 0, 9, 0, 9, 2, 9, 3, 9});
    b.init_i64("st", {0});
    b.init_i64("en", {16});
    b.init_i64("ax", {0});
    b.init_i64("sp", {2});
    b.node("Slice", "even", {"all", "st", "en", "ax", "sp"}, {"pads"});
  });
  const sq::Graph g2 = strided.import();
  const sq::Window2d& w2 = g2.node("conv").window;
  EXPECT_EQ(w2.pad_top, 2);
  EXPECT_EQ(w2.pad_left, 1);
  EXPECT_EQ(w2.pad_bottom, 3);
  EXPECT_EQ(w2.pad_right, 3);

  // Not zeros, or before a MaxPool: refused, named.
  Builder ones = net([](Builder& b) { b.init_i64("pads", {0, 0, 1, 1, 0, 0, 1, 1}); });
  ones.init("one", {1}, 1.0f);  // tensor() writes start * ((k % 7) - 3): -3 for k = 0
  ones.g->mutable_node(0)->add_input("one");
  std::string e = ones.error();
  EXPECT_NE(e.find("node 'pad' (Pad): constant_value is not 0"), std::string::npos) << e;
  Builder maxpool({2, 6, 6});
  maxpool.init_i64("pads", {0, 0, 1, 1, 0, 0, 1, 1});
  maxpool.node("Pad", "pad", {"x", "pads"}, {"p"});
  maxpool.ints(maxpool.node("MaxPool", "mp", {"p"}, {"m"}), "kernel_shape", {3, 3});
  maxpool.node("GlobalAveragePool", "gap", {"m"}, {"g"});
  maxpool.node("Flatten", "flat", {"g"}, {"y"});
  maxpool.output("y");
  e = maxpool.error();
  EXPECT_NE(e.find("Pad (other than before an AveragePool or a Conv) (node 'pad')"),
            std::string::npos) << e;
  // A Reshape of a constant to a shape that cannot hold its values is named.
  Builder bad_reshape = net([](Builder& b) {
    b.init_i64("eight", {0, 0, 1, 1, 0, 0, 1, 1});
    b.init_i64("three", {3, -1});
    b.node("Reshape", "r", {"eight", "three"}, {"pads"});
  });
  e = bad_reshape.error();
  EXPECT_NE(e.find("node 'r' (Reshape): target [3, -1] does not hold the 8 values"),
            std::string::npos) << e;
}

// ShuffleNetV2's x.chunk(2, dim=1) as torch.onnx.export writes it: two Slice nodes on the
// channels whose ranges come from Shape -> Gather -> Add -> Div -> Mul (folded), or a Split.
// Ranges clamp as ONNX's (negative from the end, INT64_MAX to the end); a range of every channel
// is the tensor itself.
TEST(OnnxImport, ChannelSliceAndSplit) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  auto net = [](int opset, const std::function<void(Builder&)>& mid, int64_t lch = 3,
                int64_t rch = 3) {
    Builder b({4, 6, 6}, opset);
    b.init("w", {6, 4, 1, 1});
    b.node("Conv", "c1", {"x", "w"}, {"a"});  // 6 x 6 x 6
    mid(b);                                    // "l", "r": lch and rch channels
    b.init("w2", {3, rch, 1, 1});
    b.node("Conv", "c2", {"r", "w2"}, {"rc"});
    b.i(b.node("Concat", "cat", {"l", "rc"}, {"k"}), "axis", 1);
    auto* gm = b.node("ReduceMean", "gap", {"k"}, {"f"});
    b.ints(gm, "axes", {2, 3});
    b.i(gm, "keepdims", 0);
    b.init("fw", {5, lch + 3});
    b.i(b.node("Gemm", "fc", {"f", "fw"}, {"y"}), "transB", 1);
    b.output("y");
    return b;
  };
  auto slices = [&](const sq::Graph& g) {
    std::vector<std::string> s;
    for (const auto& n : g.nodes)
      if (n.op == sq::Op::ChannelSlice)
        s.push_back(fmt::format("{} [{}, {})", n.name, n.begin, n.end));
    return s;
  };
  // torch's form: the half from Shape (Gather 1 -> Add 1 -> Div 2 -> Mul 1 / Mul 2).
  sq::Graph g = net(13, [](Builder& b) {
    b.init_i64("one", {1});
    b.g->mutable_initializer(b.g->initializer_size() - 1)->clear_dims();
    b.init_i64("two", {2});
    b.g->mutable_initializer(b.g->initializer_size() - 1)->clear_dims();
    b.init_i64("zero", {0});
    b.init_i64("axis1", {1});
    b.node("Shape", "shape", {"a"}, {"s"});
    b.i(b.node("Gather", "gather", {"s", "one"}, {"c"}), "axis", 0);
    b.node("Add", "plus", {"c", "one"}, {"c1"});
    b.node("Div", "half", {"c1", "two"}, {"h"});
    b.node("Mul", "m1", {"h", "one"}, {"e1"});
    b.node("Mul", "m2", {"h", "two"}, {"e2"});
    b.node("Unsqueeze", "u1", {"e1", "zero"}, {"e1u"});
    b.node("Unsqueeze", "u2", {"e2", "zero"}, {"e2u"});
    b.node("Slice", "lo", {"a", "zero", "e1u", "axis1"}, {"l"});
    b.node("Slice", "hi", {"a", "e1u", "e2u", "axis1"}, {"r"});
  }).import();
  EXPECT_EQ(slices(g), (std::vector<std::string>{"lo [0, 3)", "hi [3, 6)"}));
  EXPECT_EQ(g.node("hi").out_shape, (sq::Shape{3, 6, 6}));
  // Negative starts, INT64_MAX ends, axis -3 and steps 1 as inputs.
  g = net(17, [&](Builder& b) {
    b.init_i64("st", {-3});
    b.init_i64("en", {kMax});
    b.init_i64("ax", {-3});
    b.init_i64("sp", {1});
    b.init_i64("z", {0});
    b.init_i64("en3", {-3});
    b.node("Slice", "lo", {"a", "z", "en3", "ax"}, {"l"});
    b.node("Slice", "hi", {"a", "st", "en", "ax", "sp"}, {"r"});
  }).import();
  EXPECT_EQ(slices(g), (std::vector<std::string>{"lo [0, 3)", "hi [3, 6)"}));
  // Slice before opset 10: ranges as attributes; a range of every channel is no node.
  g = net(9, [&](Builder& b) {
    auto* all = b.node("Slice", "all", {"a"}, {"a2"});
    b.ints(all, "starts", {0});
    b.ints(all, "ends", {kMax});
    b.ints(all, "axes", {1});
    auto* lo = b.node("Slice", "lo", {"a2"}, {"l"});
    b.ints(lo, "starts", {0});
    b.ints(lo, "ends", {3});
    b.ints(lo, "axes", {1});
    auto* hi = b.node("Slice", "hi", {"a2"}, {"r"});
    b.ints(hi, "starts", {3});
    b.ints(hi, "ends", {6});
    b.ints(hi, "axes", {1});
  }).import();
  EXPECT_EQ(slices(g), (std::vector<std::string>{"lo [0, 3)", "hi [3, 6)"}));
  // Split: sizes as an input (opset 13+), as an attribute (before), or equal parts.
  g = net(13, [](Builder& b) {
    b.init_i64("sizes", {3, 3});
    b.i(b.node("Split", "sp", {"a", "sizes"}, {"l", "r"}), "axis", 1);
  }).import();
  EXPECT_EQ(slices(g), (std::vector<std::string>{"sp [0, 3)", "sp_1 [3, 6)"}));
  g = net(11, [](Builder& b) {
    auto* sp = b.node("Split", "sp", {"a"}, {"l", "r"});
    b.i(sp, "axis", -3);
    b.ints(sp, "split", {3, 3});
  }).import();
  EXPECT_EQ(slices(g), (std::vector<std::string>{"sp [0, 3)", "sp_1 [3, 6)"}));
  g = net(
          17,
          [](Builder& b) {  // three equal parts, the middle one unused
            b.i(b.node("Split", "sp", {"a"}, {"p", "q", "u"}), "axis", 1);
            b.i(b.node("Concat", "pu", {"p", "u"}, {"l"}), "axis", 1);
            b.node("Identity", "id", {"u"}, {"r"});
          },
          4, 2)
          .import();
  EXPECT_EQ(slices(g), (std::vector<std::string>{"sp [0, 2)", "sp_1 [4, 6)"}));

  // Errors name the node and what is supported.
  auto err = [&](int opset, const std::function<void(Builder&)>& mid) {
    return net(opset, mid).error();
  };
  std::string e = err(13, [](Builder& b) {
    b.init_i64("st", {0});
    b.init_i64("en", {3});
    b.init_i64("ax", {2});
    b.node("Slice", "lo", {"a", "st", "en", "ax"}, {"l"});
    b.node("Identity", "id", {"l"}, {"r"});
  });
  EXPECT_NE(e.find("node 'lo' (Slice): axis 2 is not supported (only 1: the channels)"),
            std::string::npos) << e;
  e = err(13, [](Builder& b) {
    b.init_i64("st", {0});
    b.init_i64("en", {6});
    b.init_i64("ax", {1});
    b.init_i64("sp", {2});
    b.node("Slice", "lo", {"a", "st", "en", "ax", "sp"}, {"l"});
    b.node("Identity", "id", {"l"}, {"r"});
  });
  EXPECT_NE(e.find("node 'lo' (Slice): step 2 is not supported (only 1)"), std::string::npos) << e;
  e = err(13, [](Builder& b) {
    b.init_i64("st", {4});
    b.init_i64("en", {-3});
    b.node("Slice", "lo", {"a", "st", "en"}, {"l"});
    b.node("Identity", "id", {"l"}, {"r"});
  });
  EXPECT_NE(e.find("node 'lo' (Slice): axis 0 is not supported (only 1"), std::string::npos) << e;
  e = err(13, [](Builder& b) {
    b.init_i64("st", {4});
    b.init_i64("en", {-3});
    b.init_i64("ax", {1});
    b.node("Slice", "lo", {"a", "st", "en", "ax"}, {"l"});
    b.node("Identity", "id", {"l"}, {"r"});
  });
  EXPECT_NE(e.find("node 'lo' (Slice): channels [4, 3) of 6 are empty (starts 4, ends -3)"),
            std::string::npos) << e;
  e = err(13, [](Builder& b) {
    b.init_i64("sizes", {2, 3});
    b.i(b.node("Split", "sp", {"a", "sizes"}, {"l", "r"}), "axis", 1);
  });
  EXPECT_NE(e.find("node 'sp' (Split): split [2, 3] for 2 outputs of 6 channels (expected 2 "
                   "positive sizes that sum to 6)"), std::string::npos) << e;
  e = err(13, [](Builder& b) {
    auto* sp = b.node("Split", "sp", {"a"}, {"l", "r"});
    b.i(sp, "axis", 1);
    b.ints(sp, "split", {3, 3});
  });
  EXPECT_NE(e.find("node 'sp' (Split): attribute split: is an input from opset 13 on"),
            std::string::npos) << e;
  e = err(17, [](Builder& b) {
    b.i(b.node("Split", "sp", {"a"}, {"l", "r", "u", "v"}), "axis", 1);
  });
  EXPECT_NE(e.find("node 'sp' (Split): 6 channels do not split into 4 equal parts"),
            std::string::npos) << e;
  // Ranges computed from the data: named in the one report, with the other unsupported nodes.
  e = err(13, [](Builder& b) {
    b.init_i64("zero", {0});
    b.init_i64("ax", {1});
    b.node("ReduceMax", "rmax", {"a"}, {"mx"});
    b.node("Cast", "cast", {"mx"}, {"mi"});
    b.node("Slice", "lo", {"a", "zero", "mi", "ax"}, {"l"});
    b.node("Identity", "id", {"l"}, {"r"});
  });
  EXPECT_NE(e.find("unsupported ONNX operators: ReduceMax (node 'rmax'), Cast of computed tensors "
                   "(node 'cast'), Slice of computed ranges (node 'lo')"),
            std::string::npos) << e;
}

// The exports write a channel slice as Slice(starts [begin], ends [end], axes [1]); the float
// export imports back to the same slices (the checker and ONNX shape inference accept both).
TEST(OnnxExport, ChannelSliceIsASliceOnTheChannels) {
  sq::Graph g("sl", {2, 6, 6}, 3);
  int x = g.conv2d("c", g.input(), 6, 1, 1, 0);
  const int lo = g.channel_slice("lo", x, 0, 2);
  const int hi = g.channel_slice("hi", g.relu("r", x), 2, 6);
  x = g.concat("cat", {g.conv2d("hc", hi, 4, 1, 1, 0), lo});
  g.linear("fc", g.flatten("f", g.global_avgpool("gap", x)), 3);
  g.input_mean = {0.0f, 0.0f};
  g.input_std = {1.0f, 1.0f};
  g.infer_shapes();
  g.init_params(2);
  const onnx::ModelProto m = parse(sq::export_onnx_float_bytes(g));
  EXPECT_EQ(count_ops(m, "Slice"), 2);
  for (const auto& n : m.graph().node())
    if (n.op_type() == "Slice" && n.name() == "hi") {
      ASSERT_EQ(n.input_size(), 4);
      const std::vector<int64_t> want[] = {{2}, {6}, {1}};
      for (int k = 1; k < 4; ++k) {
        const onnx::TensorProto* t = initializer(m, n.input(k));
        ASSERT_NE(t, nullptr) << n.input(k);
        EXPECT_EQ(std::vector<int64_t>(t->int64_data().begin(), t->int64_data().end()), want[k - 1])
            << n.input(k);
      }
    }
  const sq::Graph back = sq::import_onnx_bytes(sq::export_onnx_float_bytes(g), "f.onnx");
  int slices = 0;
  for (const sq::Node& n : back.nodes)
    if (n.op == sq::Op::ChannelSlice) {
      ++slices;
      EXPECT_EQ(n.out_shape, g.node(n.begin == 0 ? "lo" : "hi").out_shape) << n.name;
      EXPECT_EQ(n.end, n.begin == 0 ? 2 : 6) << n.name;
    }
  EXPECT_EQ(slices, 2);
  sq::QuantModel qm;
  qm.graph = g;
  qm.bits = sq::BitConfig::uniform(g, 8, 8);
  qm.weight_scales = sq::max_weight_scales(g, qm.bits);
  for (const auto& [node, bits] : sq::activation_quant_points(g, qm.bits))
    qm.acts[g.nodes[node].name] = sq::act_quant_from_range({-1.0, 2.0}, bits);
  EXPECT_EQ(count_ops(parse(sq::export_onnx_bytes(qm)), "Slice"), 2);
}

TEST(OnnxImport, UnsupportedAttributesAreNamed) {
  auto err = [](const std::function<void(Builder&, onnx::NodeProto*)>& f) {
    return conv_net(f).error();
  };
  std::string e = err([](Builder& b, onnx::NodeProto* c) { b.ints(c, "dilations", {0, 1}); });
  EXPECT_NE(e.find("node 'conv' (Conv): attribute dilations: [0, 1] must be positive"),
            std::string::npos)
      << e;
  e = err([](Builder& b, onnx::NodeProto* c) { b.str(c, "auto_pad", "SAME_UPPER"); });
  EXPECT_NE(e.find("attribute auto_pad: 'SAME_UPPER' is not supported"), std::string::npos) << e;
  e = err([](Builder& b, onnx::NodeProto* c) { b.ints(c, "strides", {1, 2, 1}); });
  EXPECT_NE(e.find("attribute strides: has 3 values, expected 2 (2-D)"), std::string::npos) << e;
  e = err([](Builder& b, onnx::NodeProto* c) {
    c->mutable_attribute(1)->set_ints(0, -1);  // pads [-1, 1, 1, 1]
    (void)b;
  });
  EXPECT_NE(e.find("attribute pads: [-1, 1, 1, 1] must be non-negative"), std::string::npos) << e;
  e = err([](Builder& b, onnx::NodeProto* c) { b.i(c, "frobnicate", 1); });
  EXPECT_NE(e.find("attribute frobnicate: not supported"), std::string::npos) << e;

  Builder c({1, 4, 4});
  c.init("lo", {}, 0.0f);
  c.init("hi", {}, 0.25f);  // value 0.25 * (0 - 3) = -0.75: a Clip to [0, -0.75]
  c.node("Clip", "clip", {"x", "lo", "hi"}, {"y"});
  c.output("y");
  e = c.error();
  EXPECT_NE(e.find("node 'clip' (Clip): range ["), std::string::npos) << e;
  EXPECT_NE(e.find(", -0.75] is not supported (only [0, 6] as ReLU6)"), std::string::npos) << e;

  Builder p({1, 4, 4});
  auto* ap = p.node("AveragePool", "ap", {"x"}, {"y"});
  p.ints(ap, "kernel_shape", {3, 3});
  p.ints(ap, "pads", {1, 1, 1, 1});
  p.output("y");
  e = p.error();
  EXPECT_NE(e.find("attribute count_include_pad"), std::string::npos) << e;
}

TEST(OnnxImport, StructuralErrors) {
  // Dynamic channel dimension.
  Builder d;
  d.g->mutable_input(0)->mutable_type()->mutable_tensor_type()->mutable_shape()->mutable_dim(1)->set_dim_param("C");
  d.node("Relu", "r", {"x"}, {"y"});
  d.output("y");
  EXPECT_NE(d.error().find("dimension 1 (C) must be a fixed positive size"), std::string::npos) << d.error();
  // Gemm on a 4-D tensor.
  Builder g({1, 2, 2});
  g.init("w", {3, 4});
  g.node("Gemm", "fc", {"x", "w"}, {"y"});
  g.output("y");
  EXPECT_NE(g.error().find("expected a flat [N, F] tensor"), std::string::npos) << g.error();
  // Weight shape mismatch.
  Builder w({3, 4, 4});
  w.init("w", {2, 2, 1, 1});
  w.node("Conv", "conv", {"x", "w"}, {"y"});
  w.output("y");
  EXPECT_NE(w.error().find("does not match 3 input channels"), std::string::npos) << w.error();
  // A huge group count (no overflow in the channel check).
  Builder h({3, 4, 4});
  h.init("w", {2, 2, 1, 1});
  auto* hc = h.node("Conv", "conv", {"x", "w"}, {"y"});
  h.i(hc, "group", int64_t{1} << 62);
  h.output("y");
  EXPECT_NE(h.error().find("with group 4611686018427387904 does not match 3 input channels"),
            std::string::npos) << h.error();
  // Undefined input.
  Builder u;
  u.node("Relu", "r", {"nope"}, {"y"});
  u.output("y");
  EXPECT_NE(u.error().find("input 'nope' is not defined earlier"), std::string::npos) << u.error();
  // Raw data that does not fit the shape.
  Builder r({1, 2, 2});
  r.init("w", {3, 4});
  r.g->mutable_initializer(0)->clear_float_data();
  r.g->mutable_initializer(0)->set_raw_data(std::string(10, '\0'));
  r.node("Flatten", "f", {"x"}, {"f0"});
  r.node("Gemm", "fc", {"f0", "w"}, {"y"});
  r.output("y");
  EXPECT_NE(r.error().find("raw data of 10 bytes is not float32"), std::string::npos) << r.error();
}

TEST(OnnxImport, BadAndTruncatedFiles) {
  std::string dir = sqtest::temp_dir("onnx_import");
  std::string e = error_of([&] { sq::import_onnx(dir + "/missing.onnx"); });
  EXPECT_NE(e.find("missing.onnx"), std::string::npos) << e;
  std::string empty = sqtest::write_temp(dir, "empty.onnx", "");
  EXPECT_NE(error_of([&] { sq::import_onnx(empty); }).find("empty file"), std::string::npos);
  std::string junk = sqtest::write_temp(dir, "junk.onnx", "this is not a protobuf \xff\xff\xff\xff");
  e = error_of([&] { sq::import_onnx(junk); });
  EXPECT_NE(e.find("junk.onnx: not a valid ONNX model"), std::string::npos) << e;
  std::string whole = sq::read_file(kFixture);
  for (size_t cut : {whole.size() / 2, whole.size() - 3, size_t{5}}) {
    std::string t = sqtest::write_temp(dir, "cut.onnx", whole.substr(0, cut));
    e = error_of([&] { sq::import_onnx(t); });
    EXPECT_NE(e.find("cut.onnx"), std::string::npos) << "cut at " << cut << ": " << e;
  }
}

}  // namespace
