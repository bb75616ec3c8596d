// Issue 11 (allocation a user can trust), part 5–7: inputs that used to be accepted and are now
// refused with a message naming the file and the field, numbers printed for people, exports that
// are written whole or not at all, and every graph that exports also runs — non-global average
// pooling after a float conv, and a batchnorm right after the input — on the engine (reference
// and optimized), the .sqm round trip and the C runtime, bit for bit.
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>

#include "engine_cases.h"
#include "quant_models.h"
#include "sigmaquant/bits.h"
#include "sigmaquant/cost.h"
#include "sigmaquant/data.h"
#include "sigmaquant/engine.h"
#include "sigmaquant/error.h"
#include "sigmaquant/export_c.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/onnx.h"
#include "sigmaquant/qmodel.h"
#include "sigmaquant/sqm.h"
#include "test_util.h"

namespace {

using sqtest::error_of;

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}
#define EXPECT_ERROR_HAS(expr, ...)                                                  \
  do {                                                                               \
    const std::string err_ = error_of([&] { (void)(expr); });                        \
    EXPECT_FALSE(err_.empty()) << #expr << " was accepted";                          \
    for (const std::string& part_ : std::vector<std::string>{__VA_ARGS__})           \
      EXPECT_TRUE(has(err_, part_)) << "missing '" << part_ << "' in: " << err_;     \
  } while (0)

// ---------------------------------------------------------------------------------------------
// Strict JSON: duplicate keys

TEST(StrictJson, DuplicateKeysAreNamedWithTheirObject) {
  EXPECT_ERROR_HAS(sq::parse_json_strict(R"({"a": 1, "b": 2, "a": 3})", "f.json"), "f.json",
                   "duplicate key 'a'", "top-level object");
  EXPECT_ERROR_HAS(sq::parse_json_strict(R"({"params": {"x": 1, "x": 1}})", "f.json"),
                   "duplicate key 'x'", "'params'");
  EXPECT_ERROR_HAS(
      sq::parse_json_strict(R"({"layers": [{"w": 1}, {"w": 2, "v": 0, "w": 4}]})", "f.json"),
      "duplicate key 'w'", "'layers[1]'");
  EXPECT_ERROR_HAS(sq::parse_json_strict(R"({"a": {"b": {"c": [1, {"d": 0, "d": 1}]}}})", "g"),
                   "duplicate key 'd'", "'a.b.c[1]'");
  // The same key in different objects, and arrays of objects, are fine.
  const auto j = sq::parse_json_strict(
      R"({"a": {"x": 1}, "b": {"x": 2}, "l": [{"x": 1}, {"x": 2}]})", "ok.json");
  EXPECT_EQ(j["b"]["x"], 2);
  EXPECT_EQ(j["l"][1]["x"], 2);
  EXPECT_ERROR_HAS(sq::parse_json_strict("{\"a\": }", "bad.json"), "bad.json: not valid JSON");
  EXPECT_ERROR_HAS(sq::parse_json_strict(std::string(300, '[') + std::string(300, ']'), "deep"),
                   "deep nests deeper than 256 levels");
  EXPECT_ERROR_HAS(sq::parse_json_strict("[1e999]", "big.json"), "big.json: not valid JSON");
}

TEST(StrictJson, BitsAndTargetFilesRefuseDuplicateKeys) {
  const std::string dir = sqtest::temp_dir("strict_json");
  const std::string bits = sqtest::write_temp(
      dir, "dup.bits.json",
      R"({"format": "sigmaquant-bits", "version": 1,
          "layers": {"conv1": {"wbits": 4, "abits": 8, "wbits": 2}}})");
  EXPECT_ERROR_HAS(sq::load_bits(bits), "dup.bits.json", "duplicate key 'wbits'",
                   "'layers.conv1'");
  const std::string bits2 = sqtest::write_temp(
      dir, "dup2.bits.json",
      R"({"format": "sigmaquant-bits", "version": 1, "layers": {"a": {"wbits": 4}},
          "layers": {"a": {"wbits": 8}}})");
  EXPECT_ERROR_HAS(sq::load_bits(bits2), "dup2.bits.json", "duplicate key 'layers'");
  const std::string target = sqtest::write_temp(
      dir, "dup.json",
      R"({"format": "sigmaquant-target", "version": 1, "name": "t", "model": "bops",
          "budgets": {"gbops": 0.8, "weight_kib": 192, "gbops": 0.1}})");
  EXPECT_ERROR_HAS(sq::load_target(target), "dup.json", "duplicate key 'gbops'", "'budgets'");
  const std::string target2 = sqtest::write_temp(
      dir, "dup2.json",
      R"({"format": "sigmaquant-target", "version": 1, "name": "t", "model": "bops",
          "name": "u"})");
  EXPECT_ERROR_HAS(sq::load_target(target2), "dup2.json", "duplicate key 'name'");
}

// A .sqg file whose JSON header is replaced (length and checksum recomputed).
std::string with_header(const std::string& file, const std::function<std::string(std::string)>& f) {
  uint64_t hlen;
  std::memcpy(&hlen, file.data() + 16, 8);
  const std::string header = f(file.substr(24, hlen));
  const std::string payload = file.substr(24 + hlen, file.size() - 28 - hlen);
  std::string out = file.substr(0, 16);
  const uint64_t n = header.size();
  out.append(reinterpret_cast<const char*>(&n), 8);
  out += header + payload;
  uLong c = crc32(0L, Z_NULL, 0);
  c = crc32(c, reinterpret_cast<const Bytef*>(out.data()), static_cast<uInt>(out.size()));
  const uint32_t crc = static_cast<uint32_t>(c);
  out.append(reinterpret_cast<const char*>(&crc), 4);
  return out;
}

sq::Graph tiny_graph() {
  sq::Graph g("tiny", {1, 4, 4}, 3);
  int x = g.relu("relu", g.conv2d("conv", g.input(), 2, 3, 1, 1, 1, true));
  g.linear("fc", g.flatten("flat", x), 3);
  g.infer_shapes();
  g.init_params(1);
  return g;
}

TEST(StrictJson, SqgHeaderRefusesDuplicateKeys) {
  const std::string dir = sqtest::temp_dir("strict_sqg");
  const std::string good = dir + "/good.sqg";
  sq::save_graph_file(good, {tiny_graph(), {{"note", 1}}, {}});
  const std::string bytes = sq::read_file(good);
  const std::string bad = sqtest::write_temp(dir, "dup.sqg", with_header(bytes, [](std::string h) {
    const size_t at = h.find("\"note\":1");
    EXPECT_NE(at, std::string::npos) << h;
    return h.replace(at, 8, "\"note\":1,\"note\":2");
  }));
  EXPECT_ERROR_HAS(sq::load_graph_file(bad), "dup.sqg: header", "duplicate key 'note'", "'meta'");
  EXPECT_NO_THROW(sq::load_graph_file(good));
}

// ---------------------------------------------------------------------------------------------
// NaN / Inf weights

TEST(NonFiniteWeights, SqgLoadNamesTheFileAndTheTensor) {
  const std::string dir = sqtest::temp_dir("nan_sqg");
  const float kBad[] = {std::nanf(""), std::numeric_limits<float>::infinity(),
                        -std::numeric_limits<float>::infinity()};
  const char* kWord[] = {"NaN", "+Inf", "-Inf"};
  int tried = 0;
  for (const char* param : {"conv.weight", "conv.bias", "fc.weight", "fc.bias"})
    for (int k = 0; k < 3; ++k) {
      sq::Graph g = tiny_graph();
      const std::string node = std::string(param).substr(0, std::string(param).find('.'));
      const std::string pname = std::string(param).substr(node.size() + 1);
      g.nodes[g.index_of(node)].params.at(pname).data[1] = kBad[k];
      const std::string path = dir + "/bad" + std::to_string(tried++) + ".sqg";
      sq::save_graph(path, g);  // saving does not judge: a checkpoint of a diverged run is kept
      EXPECT_ERROR_HAS(sq::load_graph(path), path, std::string("tensor ") + param, kWord[k],
                       "element 1");
    }
  EXPECT_EQ(tried, 12);
}

TEST(NonFiniteWeights, QuantizedModelLoadRefusesThemToo) {
  const sq::QuantModel qm = sqtest::synthetic_qmodel("mlp", {1, 8, 8}, 10, 1);
  sq::QuantModel bad = qm;
  bad.graph.nodes[bad.graph.weight_layers()[0]].params.at("weight").data[5] = std::nanf("");
  const std::string path = sqtest::temp_dir("nan_qmodel") + "/q.sqg";
  sq::save_qmodel(path, bad);
  EXPECT_ERROR_HAS(sq::load_qmodel(path), path, "NaN", "element 5");
}

// A one-conv ONNX model with the given weight and bias values.
std::string onnx_conv(const std::vector<float>& w, const std::vector<float>& b) {
  onnx::ModelProto m;
  m.set_ir_version(7);
  m.add_opset_import()->set_version(13);
  onnx::GraphProto* g = m.mutable_graph();
  g->set_name("t");
  auto* in = g->add_input();
  in->set_name("x");
  auto* tt = in->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(onnx::TensorProto::FLOAT);
  tt->mutable_shape()->add_dim()->set_dim_param("N");
  for (int64_t d : {1, 2, 2}) tt->mutable_shape()->add_dim()->set_dim_value(d);
  auto tensor = [&](const std::string& name, std::vector<int64_t> dims,
                    const std::vector<float>& v) {
    auto* t = g->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : dims) t->add_dims(d);
    for (float x : v) t->add_float_data(x);
  };
  tensor("conv1.weight", {2, 1, 1, 1}, w);
  tensor("conv1.bias", {2}, b);
  tensor("fc.weight", {2, 8}, std::vector<float>(16, 0.1f));
  auto* c = g->add_node();
  c->set_op_type("Conv");
  c->set_name("conv");
  for (const char* s : {"x", "conv1.weight", "conv1.bias"}) c->add_input(s);
  c->add_output("c");
  auto* f = g->add_node();
  f->set_op_type("Flatten");
  f->set_name("flat");
  f->add_input("c");
  f->add_output("f");
  auto* fc = g->add_node();
  fc->set_op_type("Gemm");
  fc->set_name("fc");
  for (const char* s : {"f", "fc.weight"}) fc->add_input(s);
  fc->add_output("y");
  auto* at = fc->add_attribute();
  at->set_name("transB");
  at->set_type(onnx::AttributeProto::INT);
  at->set_i(1);
  g->add_output()->set_name("y");
  return m.SerializeAsString();
}

TEST(NonFiniteWeights, OnnxImportNamesTheFileAndTheInitializer) {
  EXPECT_NO_THROW(sq::import_onnx_bytes(onnx_conv({0.5f, -0.5f}, {0.f, 0.1f}), "ok.onnx"));
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_ERROR_HAS(sq::import_onnx_bytes(onnx_conv({0.5f, std::nanf("")}, {0.f, 0.f}), "m.onnx"),
                   "m.onnx", "'conv1.weight'", "NaN", "element 1");
  EXPECT_ERROR_HAS(sq::import_onnx_bytes(onnx_conv({0.5f, 0.5f}, {inf, 0.f}), "m.onnx"), "m.onnx",
                   "'conv1.bias'", "+Inf", "element 0");
  EXPECT_ERROR_HAS(sq::import_onnx_bytes(onnx_conv({-inf, 0.5f}, {0.f, 0.f}), "m.onnx"),
                   "'conv1.weight'", "-Inf");
}

// ---------------------------------------------------------------------------------------------
// Weight scales: refused at load and at every export, not first by `run`

TEST(WeightScales, NegativeScaleRefusedAtLoadOfTheQuantizedModel) {
  sq::QuantModel qm = sqtest::synthetic_qmodel("lenet5", {1, 28, 28}, 10, 2);
  const std::string layer = qm.graph.nodes[qm.graph.weight_layers()[1]].name;
  qm.weight_scales[layer][0] = -0.01f;
  const std::string path = sqtest::temp_dir("neg_scale") + "/q.sqg";
  sq::save_qmodel(path, qm);
  EXPECT_ERROR_HAS(sq::load_qmodel(path), path, "quant.weight_scales." + layer + "[0]", "-0.01",
                   "finite number >= 0");
}

TEST(WeightScales, EveryExportRefusesNegativeOrNonFiniteScales) {
  const sq::QuantModel good = sqtest::synthetic_qmodel("lenet5", {1, 28, 28}, 10, 2);
  const std::string layer = good.graph.nodes[good.graph.weight_layers()[1]].name;
  const std::string dir = sqtest::temp_dir("bad_scale_export");
  int n = 0;
  for (float s : {-0.01f, std::nanf(""), std::numeric_limits<float>::infinity()}) {
    sq::QuantModel qm = good;
    qm.weight_scales[layer][0] = s;
    const std::string tag = std::to_string(n++);
    // integerize() refuses first (quantized_weights), so no exporter sees such a model.
    EXPECT_ERROR_HAS(sq::integerize(qm), layer, "weight scale", "finite");
    EXPECT_ERROR_HAS(sq::export_c(qm, dir + "/c" + tag), layer, "weight scale");
    EXPECT_FALSE(sq::file_exists(dir + "/c" + tag + "/model.h"));
    EXPECT_ERROR_HAS(sq::export_onnx_bytes(qm), "export_onnx", layer, "weight scale");
    // An integer model made elsewhere: save_sqm refuses what load_sqm would.
    sq::IntModel im = sq::integerize(good);
    im.layers[1].weight_scales[0] = s;
    const std::string path = dir + "/m" + tag + ".sqm";
    EXPECT_ERROR_HAS(sq::save_sqm(path, good.graph, im), path, layer, "weight scale", "finite");
    EXPECT_FALSE(sq::file_exists(path));
  }
}

// ---------------------------------------------------------------------------------------------
// Labels

std::string be32(uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[i] = static_cast<char>(v >> (24 - 8 * i));
  return s;
}
// An idx dataset directory: n images of 2x2 per split, the given labels.
std::string idx_dir(const std::string& tag, const std::vector<uint8_t>& train,
                    const std::vector<uint8_t>& test) {
  const std::string dir = sqtest::temp_dir(tag);
  for (const auto& [prefix, labels] :
       {std::pair{std::string("train"), train}, std::pair{std::string("t10k"), test}}) {
    const uint32_t n = static_cast<uint32_t>(labels.size());
    sqtest::write_temp(dir, prefix + "-images-idx3-ubyte",
                       be32(0x803) + be32(n) + be32(2) + be32(2) + std::string(n * 4, '\x40'));
    sqtest::write_temp(dir, prefix + "-labels-idx1-ubyte",
                       be32(0x801) + be32(n) + std::string(labels.begin(), labels.end()));
  }
  return dir;
}

// A .npy file of u1 values, shape (n,) or (n, 1, 2, 2).
std::string npy_u1(const std::vector<uint8_t>& v, bool images) {
  std::string dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (" +
                     std::to_string(images ? v.size() / 4 : v.size()) +
                     (images ? ", 1, 2, 2), }" : ",), }");
  while ((10 + dict.size() + 1) % 64) dict += ' ';
  dict += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  const uint16_t len = static_cast<uint16_t>(dict.size());
  out.append(reinterpret_cast<const char*>(&len), 2);
  return out + dict + std::string(v.begin(), v.end());
}
std::string npy_dir(const std::string& tag, const std::vector<uint8_t>& train,
                    const std::vector<uint8_t>& test) {
  const std::string dir = sqtest::temp_dir(tag);
  for (const auto& [split, labels] :
       {std::pair{std::string("train"), train}, std::pair{std::string("test"), test}}) {
    sqtest::write_temp(dir, split + "_images.npy",
                       npy_u1(std::vector<uint8_t>(labels.size() * 4, 7), true));
    sqtest::write_temp(dir, split + "_labels.npy", npy_u1(labels, false));
  }
  return dir;
}

std::vector<uint8_t> zero_to_nine(int repeat) {
  std::vector<uint8_t> v;
  for (int r = 0; r < repeat; ++r)
    for (uint8_t c = 0; c < 10; ++c) v.push_back(c);
  return v;
}

TEST(Labels, StrayTrainingLabelIsRefusedUnlessTheClassCountIsGiven) {
  std::vector<uint8_t> train = zero_to_nine(3);
  train[17] = 12;  // among 0..9: classes 10 and 11 have no sample
  for (const std::string format : {"idx", "npy"}) {
    const std::string dir = format == "idx" ? idx_dir("labels_idx", train, zero_to_nine(1))
                                            : npy_dir("labels_npy", train, zero_to_nine(1));
    const std::string file =
        format == "idx" ? "train-labels-idx1-ubyte" : "train_labels.npy";
    sq::DataSpec spec{format, dir};
    EXPECT_ERROR_HAS(sq::load_data(spec), dir + "/" + file, "no training sample has class 10, 11",
                     "largest label is 12", "at index 17", "--classes");
    spec.num_classes = 13;  // said explicitly: 13 classes it is
    EXPECT_EQ(sq::load_data(spec).train.num_classes, 13);
    spec.num_classes = 10;
    EXPECT_ERROR_HAS(sq::load_data(spec), file, "label 12 at index 17", "expected 0..9");
  }
}

TEST(Labels, StrayTestLabelIsNamedNotTurnedInto256Classes) {
  std::vector<uint8_t> test = zero_to_nine(2);
  test[13] = 255;
  for (const std::string format : {"idx", "npy"}) {
    const std::string dir = format == "idx" ? idx_dir("labels_t_idx", zero_to_nine(2), test)
                                            : npy_dir("labels_t_npy", zero_to_nine(2), test);
    const std::string file = format == "idx" ? "t10k-labels-idx1-ubyte" : "test_labels.npy";
    const std::string e = error_of([&] { sq::load_data({format, dir}); });
    EXPECT_TRUE(has(e, dir + "/" + file) && has(e, "label 255 at index 13") &&
                has(e, "expected 0..9"))
        << e;
    EXPECT_FALSE(has(e, "256")) << e;
  }
}

TEST(Labels, KnownClassCountsRefuseLabelsAtOrAboveThem) {
  std::vector<uint8_t> train = zero_to_nine(2);
  train[4] = 10;
  // "mnist" reads the same idx files with 10 classes.
  const std::string dir = idx_dir("labels_mnist", train, zero_to_nine(1));
  EXPECT_ERROR_HAS(sq::load_data({"mnist", dir}), "train-labels-idx1-ubyte",
                   "label 10 at index 4", "expected 0..9");
  sq::DataSpec spec{"mnist", idx_dir("labels_mnist_ok", zero_to_nine(1), zero_to_nine(1))};
  EXPECT_EQ(sq::load_data(spec).train.num_classes, 10);
  spec.num_classes = 12;
  EXPECT_ERROR_HAS(sq::load_data(spec), "'mnist' has 10 classes", "12");
  // Complete 0..max labels still infer max + 1; a one-class set still makes 2 classes.
  EXPECT_EQ(sq::load_data({"idx", idx_dir("labels_ok", zero_to_nine(1), {3, 1})}).test.num_classes,
            10);
  EXPECT_EQ(sq::load_data({"idx", idx_dir("labels_one", {0, 0}, {0})}).train.num_classes, 2);
}

// ---------------------------------------------------------------------------------------------
// Budget numbers for people

sq::BudgetCheck over(double value, double budget, const std::string& unit) {
  sq::BudgetCheck c;
  c.metric = "latency";
  c.unit = unit;
  c.value = value;
  c.budget = budget;
  c.fits = value <= budget;
  if (!c.fits) {
    c.excess = value - budget;
    c.excess_pct = 100.0 * c.excess / budget;
  }
  return c;
}

TEST(BudgetText, TinyOvershootShowsTheDifference) {
  const std::string t = sq::budget_check_text(over(0.0650012e-3, 0.065e-3, "s"));
  EXPECT_TRUE(has(t, "65.001 us against 65 us")) << t;
  EXPECT_TRUE(has(t, "over by 1.2 ns")) << t;
  EXPECT_TRUE(has(t, "(+0.0018 %)")) << t;
  EXPECT_FALSE(has(t, "0.000")) << t;
}

TEST(BudgetText, ExtremeBudgetsStayShort) {
  for (const std::string unit : {"s", "J", "B", "ops"}) {
    const std::string t = sq::budget_check_text(over(0.065e-3, 1e-300, unit));
    EXPECT_LT(t.size(), 80u) << t;
    EXPECT_TRUE(has(t, "e+298 %") || has(t, "e+29")) << t;
  }
  EXPECT_EQ(sq::budget_percent_text(6.5e298), "6.5e+298 %");
  EXPECT_EQ(sq::budget_percent_text(12.345), "12.3 %");
  EXPECT_EQ(sq::budget_percent_text(0.0012), "0.0012 %");
  EXPECT_EQ(sq::budget_value_text(11284, "B"), "11.02 KiB");
  EXPECT_EQ(sq::budget_value_text(512, "B"), "512 B");
  EXPECT_EQ(sq::budget_value_text(0.065e-3, "s"), "65 us");
  EXPECT_EQ(sq::budget_value_text(1.5e-3, "J"), "1.5 mJ");
  EXPECT_EQ(sq::budget_value_text(1e-300, "s"), "1e-300 s");
  EXPECT_EQ(sq::budget_value_text(1.2346e8, "ops"), "0.1235 GBOPs");
  const std::string fits = sq::budget_check_text(over(0.05e-3, 0.065e-3, "s"));
  EXPECT_EQ(fits, "50 us against 65 us, 76.9 % used");
}

// ---------------------------------------------------------------------------------------------
// Stale temporary files

pid_t dead_pid() {
  const pid_t p = ::fork();
  if (p == 0) ::_exit(0);
  int st = 0;
  ::waitpid(p, &st, 0);
  return p;
}

TEST(StaleTempFiles, OnlyDeadWritersFilesGo) {
  const std::string dir = sqtest::temp_dir("stale_tmp");
  const std::string dead = std::to_string(dead_pid());
  const std::string mine = std::to_string(::getpid());
  for (const std::string& name : std::vector<std::string>{
           "a.sqg.tmp." + dead, "b.json.tmp." + dead, "c.sqg.tmp." + mine, "d.tmp.x12",
        "e.tmp." + dead + "x", ".tmp." + dead, "f.sqg", "tmp." + dead})
    sqtest::write_temp(dir, name, "x");
  // A staging directory of a dead `export --format c`, and a subdirectory it must not touch.
  ASSERT_EQ(::mkdir((dir + "/out_c.tmp." + dead).c_str(), 0755), 0);
  sqtest::write_temp(dir + "/out_c.tmp." + dead, "model.h", "x");
  ASSERT_EQ(::mkdir((dir + "/keep").c_str(), 0755), 0);
  sqtest::write_temp(dir + "/keep", "g.tmp." + dead, "x");
  EXPECT_EQ(sq::remove_stale_temp_files(dir), 4);  // a, b, the staging dir and its model.h
  std::vector<std::string> left = sqtest::files_in(dir);
  std::sort(left.begin(), left.end());
  std::vector<std::string> want = {"c.sqg.tmp." + mine, "d.tmp.x12", "e.tmp." + dead + "x",
                                   "f.sqg", "keep", "tmp." + dead};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(left, want);  // files_in skips dot files:
  EXPECT_TRUE(sq::file_exists(dir + "/.tmp." + dead));
  EXPECT_TRUE(sq::file_exists(dir + "/keep/g.tmp." + dead));
  EXPECT_EQ(sq::remove_stale_temp_files(dir + "/missing"), 0);
  EXPECT_EQ(sq::remove_stale_temp_files(dir), 0);
}

// ---------------------------------------------------------------------------------------------
// The C export writes all of its files or none

TEST(ExportCFiles, AFailedWriteLeavesNothingHalfWritten) {
  const sq::QuantModel qm = sqtest::synthetic_qmodel("mlp", {1, 8, 8}, 10, 3);
  const std::string root = sqtest::temp_dir("export_c_set");
  // model_data.c cannot be written (a directory is in its place): before, model.h was left.
  const std::string out = root + "/out";
  ASSERT_EQ(::mkdir(out.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((out + "/model_data.c").c_str(), 0755), 0);
  EXPECT_ERROR_HAS(sq::export_c(qm, out), out + "/model_data.c", "not a regular file");
  EXPECT_EQ(sqtest::files_in(out), std::vector<std::string>{"model_data.c"});
  EXPECT_EQ(sqtest::files_in(root), std::vector<std::string>{"out"});  // no staging left
  // A fresh directory appears whole; an existing one keeps its other files.
  sq::export_c(qm, root + "/fresh/");
  EXPECT_EQ(sqtest::files_in(root + "/fresh").size(), 6u);
  sqtest::write_temp(root + "/fresh", "images.f32", "keep me");
  sq::export_c(qm, root + "/fresh");
  EXPECT_EQ(sqtest::files_in(root + "/fresh").size(), 7u);
  EXPECT_EQ(sq::read_file(root + "/fresh/images.f32"), "keep me");
  // An output that is a file is refused before anything is written.
  sqtest::write_temp(root, "file", "x");
  EXPECT_ERROR_HAS(sq::export_c(qm, root + "/file"), "file: exists and is not a directory");
  std::vector<std::string> left = sqtest::files_in(root);
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"file", "fresh", "out"}));
}

// ---------------------------------------------------------------------------------------------
// Everything that exports runs: average pooling after a float conv; batchnorm after the input

// Mixed bits (per-channel with a pruned and a binary channel in the middle layer), max scales,
// activation ranges calibrated on a float forward pass (quant_models.h).
sq::QuantModel quantize_graph(sq::Graph g, uint64_t seed) {
  g.infer_shapes();
  g.init_params(seed);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  for (int i : g.weight_layers())
    for (float& b : g.nodes[i].params.at("bias").data) b = nd(rng);
  sq::QuantModel qm;
  qm.graph = g;
  qm.graph.input_mean.assign(static_cast<size_t>(g.input_shape[0]), 0.3f);
  qm.graph.input_std.assign(static_cast<size_t>(g.input_shape[0]), 0.35f);
  const auto wl = qm.graph.weight_layers();
  for (size_t k = 0; k < wl.size(); ++k) {
    const sq::Node& n = qm.graph.nodes[wl[k]];
    sq::LayerBits lb;
    lb.wbits = k == 0 || k + 1 == wl.size() ? 8 : 3 + static_cast<int>(k % 4);
    lb.abits = k == 0 || k + 1 == wl.size() ? 8 : 6;
    if (k == 1) {
      for (int64_t c = 0; c < n.out_channels; ++c)
        lb.channel_wbits.push_back(c == 0 ? 0 : c == 1 ? 1 : 2 + static_cast<int>(c % 7));
      lb.wbits = 8;
    }
    qm.bits.layers[n.name] = lb;
  }
  qm.weight_scales = sq::max_weight_scales(qm.graph, qm.bits);
  const auto pts = sq::activation_quant_points(qm.graph, qm.bits);
  const int64_t numel = g.input_shape[0] * g.input_shape[1] * g.input_shape[2];
  const std::vector<float> imgs = sqtest::random_images(4, numel, seed + 1);
  std::map<int, std::pair<float, float>> range;
  for (int s = 0; s < 4; ++s) {
    auto v = sqtest::simulate_nodes(qm, imgs.data() + s * numel, false);
    for (const auto& [node, bits] : pts) {
      auto [lo, hi] = std::minmax_element(v[node].begin(), v[node].end());
      auto& r = range.try_emplace(node, 0.0f, 0.0f).first->second;
      r.first = std::min(r.first, *lo);
      r.second = std::max(r.second, *hi);
    }
  }
  for (const auto& [node, bits] : pts)
    qm.acts[qm.graph.nodes[node].name] =
        sq::act_quant_from_range({range[node].first, range[node].second}, bits);
  return qm;
}

// conv → relu → avgpool(2, 2); grouped conv → relu6 → avgpool(3, 2, pad 1); 1×1 conv → the 2×2
// adaptive average pooling of a 3×3 plane (kernel 2, stride 1); conv → gap; the logits.
sq::Graph avgpool_graph() {
  sq::Graph g("avgpools", {2, 12, 12}, 5);
  int x = g.relu("r1", g.conv2d("c1", g.input(), 6, 3, 1, 1, 1, true));
  x = g.avgpool("p1", x, 2, 2, 0);  // 6x6
  x = g.relu6("r2", g.conv2d("c2", x, 8, 3, 1, 1, 2, true));
  x = g.avgpool("p2", x, 3, 2, 1);  // 3x3
  x = g.conv2d("c3", x, 8, 1, 1, 0, 1, true);
  x = g.avgpool("adaptive2x2", x, 2, 1, 0);  // 2x2
  x = g.relu("r4", g.conv2d("c4", x, 6, 1, 1, 0, 1, true));
  x = g.global_avgpool("gap", x);
  g.linear("fc", g.flatten("flat", x), 5);
  return g;
}

std::vector<float> logits_of(sq::GraphExecutor& ex, const std::vector<float>& imgs, int n) {
  std::vector<float> out(static_cast<size_t>(n * ex.output_size()));
  for (int s = 0; s < n; ++s)
    ex.run(imgs.data() + s * ex.input_size(), out.data() + s * ex.output_size());
  return out;
}

// The float logits' linear on its int8 rows: a reduction of 70,131 products (more than two of the
// optimized dot products' 32,768-product int32 blocks, not a multiple of the 64-byte rows) gives
// the reference plan's logits on every tier this CPU runs.
TEST(ExportsRun, LongLinearLogitsEqualTheReference) {
  sq::Graph g("longfc", {3, 97, 241}, 5);
  g.linear("fc", g.flatten("flat", g.input()), 5);
  const sq::QuantModel qm = quantize_graph(g, 9);
  const sq::IntModel im = sq::integerize(qm);
  sq::GraphExecutor ref = sq::GraphExecutor::prepare(qm.graph, im, sq::Isa::Reference);
  const int n = 3;
  const auto imgs = sqtest::random_images(n, ref.input_size(), 4);
  const std::vector<float> want = logits_of(ref, imgs, n);
  int tiers = 0;
  for (const sqtest::IsaCase& ic : sqtest::kIsas) {
    if (!sqtest::cpu_runs(ic)) continue;
    ++tiers;
    sq::GraphExecutor fast = sq::GraphExecutor::prepare(qm.graph, im, ic.isa);
    EXPECT_EQ(fast.describe().back().rfind("linear(f32", 0), 0u) << fast.describe().back();
    EXPECT_EQ(logits_of(fast, imgs, n), want) << ic.name;
  }
  EXPECT_GE(tiers, 1);
  bool spread = false;
  for (float v : want) spread |= v != want[0];
  EXPECT_TRUE(spread);
}

TEST(ExportsRun, AvgPoolAfterAFloatConvOnTheEngine) {
  const sq::QuantModel qm = quantize_graph(avgpool_graph(), 5);
  const sq::IntModel im = sq::integerize(qm);
  sq::GraphExecutor ref = sq::GraphExecutor::prepare(qm.graph, im, sq::Isa::Reference);
  sq::GraphExecutor fast = sq::GraphExecutor::prepare(qm.graph, im);
  int pools = 0;
  for (const auto& st : ref.steps()) pools += st.kind == sq::GraphExecutor::Step::Kind::ConvPool;
  EXPECT_EQ(pools, 3);
  const int n = 24;
  const auto imgs = sqtest::random_images(n, ref.input_size(), 7);
  const std::vector<float> a = logits_of(ref, imgs, n), b = logits_of(fast, imgs, n);
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
  // Against the simulated quantized model: the same within requantization rounding.
  double worst = 0;
  int agree = 0;
  const int64_t k = ref.output_size();
  for (int s = 0; s < n; ++s) {
    const std::vector<float> want = sqtest::simulate(qm, imgs.data() + s * ref.input_size());
    const auto [lo, hi] = std::minmax_element(want.begin(), want.end());
    for (int64_t c = 0; c < k; ++c)
      worst = std::max(worst, double(std::fabs(a[s * k + c] - want[c]) / (*hi - *lo)));
    agree += std::max_element(a.begin() + s * k, a.begin() + (s + 1) * k) - (a.begin() + s * k) ==
             std::max_element(want.begin(), want.end()) - want.begin();
  }
  EXPECT_LE(worst, 0.03);
  EXPECT_GE(agree, n - 2);
  // The .sqm round trip runs the same integers.
  const std::string path = sqtest::temp_dir("avgpool_sqm") + "/m.sqm";
  sq::save_sqm(path, qm.graph, im);
  const sq::SqmModel m = sq::load_sqm(path);
  sq::GraphExecutor from_file = sq::GraphExecutor::prepare(m.graph, m.model);
  const std::vector<float> c = logits_of(from_file, imgs, n);
  EXPECT_EQ(0, std::memcmp(a.data(), c.data(), a.size() * sizeof(float)));
}

// A conv with a float output read by anything but ReLU/ReLU6 → (global) average pooling is still
// named, now with the pooling it expects.
TEST(ExportsRun, UnsupportedFloatHeadsAreNamed) {
  sq::Graph g("mp", {1, 8, 8}, 3);
  int x = g.relu("r", g.conv2d("c", g.input(), 4, 3, 1, 1, 1, true));
  x = g.avgpool("ap", g.maxpool("mp", x, 2, 2, 0), 2, 2, 0);
  g.linear("fc", g.flatten("flat", x), 3);
  const sq::QuantModel qm = quantize_graph(g, 2);
  EXPECT_ERROR_HAS(sq::GraphExecutor::prepare(qm.graph, sq::integerize(qm)), "layer 'c'", "'mp'",
                   "average pooling");
  EXPECT_ERROR_HAS(sq::export_c(qm, sqtest::temp_dir("mp_c") + "/out"), "export c", "'mp'");
}

// The batchnorm-first model: input → bn → conv → relu → maxpool → flatten → linear, with the
// ranges fixed (quant_models.h's float pass does not run batchnorm).
sq::QuantModel bn_first_qmodel(float gamma_sign, uint64_t seed) {
  sq::Graph g("bnfirst", {3, 8, 8}, 4);
  int x = g.batchnorm("bn0", g.input(), 1e-5);
  x = g.relu("r1", g.conv2d("c1", x, 4, 3, 1, 1, 1, true));
  x = g.maxpool("mp", x, 2, 2, 0);
  g.linear("fc", g.flatten("flat", x), 4);
  g.infer_shapes();
  g.init_params(seed);
  sq::Node& bn = g.nodes[g.index_of("bn0")];
  bn.params["weight"].data = {0.8f * gamma_sign, 1.3f, 0.6f};
  bn.params["bias"].data = {0.1f, -0.2f, 0.05f};
  bn.params["running_mean"].data = {0.2f, -0.1f, 0.4f};
  bn.params["running_var"].data = {0.5f, 1.7f, 0.9f};
  sq::QuantModel qm;
  qm.graph = g;
  qm.graph.input_mean = {0.3f, 0.4f, 0.5f};
  qm.graph.input_std = {0.3f, 0.25f, 0.2f};
  qm.bits = sq::BitConfig::uniform(qm.graph, 8, 8);
  qm.weight_scales = sq::max_weight_scales(qm.graph, qm.bits);
  for (const auto& [node, bits] : sq::activation_quant_points(qm.graph, qm.bits))
    qm.acts[qm.graph.nodes[node].name] = sq::act_quant_from_range(
        node == 1 ? sq::Range{-4.0f, 4.0f} : sq::Range{0.0f, 2.0f}, bits);
  return qm;
}

TEST(ExportsRun, BatchNormAfterTheInputFoldsIntoTheNormalization) {
  const sq::QuantModel qm = bn_first_qmodel(1.0f, 3);
  sq::GraphExecutor ex = sq::GraphExecutor::prepare(qm.graph, sq::integerize(qm));
  // The same model without the batchnorm, fed images the batchnorm was applied to in double:
  // the input codes differ at most where a value lies within float rounding of a half step.
  sq::QuantModel pre = qm;
  const sq::Node& bn = qm.graph.node("bn0");
  pre.graph.nodes.erase(pre.graph.nodes.begin() + 1);
  for (sq::Node& n : pre.graph.nodes)
    for (int& in : n.inputs) in = in > 1 ? in - 1 : 0;
  pre.graph.input_mean.clear();
  pre.graph.input_std.clear();
  pre.graph.infer_shapes();
  pre.acts.erase("bn0");
  pre.acts["input"] = qm.acts.at("bn0");
  sq::GraphExecutor plain = sq::GraphExecutor::prepare(pre.graph, sq::integerize(pre));
  const int n = 32;
  const int64_t numel = ex.input_size(), plane = 64;
  const auto imgs = sqtest::random_images(n, numel, 9);
  std::vector<float> bned(imgs.size());
  for (size_t k = 0; k < imgs.size(); ++k) {
    const size_t c = (k % numel) / plane;
    const double x = (imgs[k] - double(qm.graph.input_mean[c])) / qm.graph.input_std[c];
    bned[k] = static_cast<float>(bn.params.at("weight").data[c] *
                                     (x - bn.params.at("running_mean").data[c]) /
                                     std::sqrt(double(bn.params.at("running_var").data[c]) + 1e-5) +
                                 bn.params.at("bias").data[c]);
  }
  const std::vector<float> got = logits_of(ex, imgs, n), want = logits_of(plain, bned, n);
  int same = 0;
  double worst = 0;
  for (int s = 0; s < n; ++s) {
    same += std::memcmp(got.data() + 4 * s, want.data() + 4 * s, 4 * sizeof(float)) == 0;
    for (int c = 0; c < 4; ++c)
      worst = std::max(worst, double(std::fabs(got[4 * s + c] - want[4 * s + c])));
  }
  EXPECT_GE(same, n - 3);
  EXPECT_LE(worst, 0.05);
  // .sqm stores it folded (the file holds no batchnorm parameters) and runs the same integers.
  const std::string path = sqtest::temp_dir("bn_sqm") + "/m.sqm";
  sq::save_sqm(path, qm.graph, sq::integerize(qm));
  const sq::SqmModel m = sq::load_sqm(path);
  for (const sq::Node& nd : m.graph.nodes) EXPECT_NE(nd.op, sq::Op::BatchNorm);
  sq::GraphExecutor from_file = sq::GraphExecutor::prepare(m.graph, m.model);
  const std::vector<float> again = logits_of(from_file, imgs, n);
  EXPECT_EQ(0, std::memcmp(got.data(), again.data(), got.size() * sizeof(float)));
}

TEST(ExportsRun, ANegativeLeadingBatchNormScaleIsRefusedByRunAndEveryExport) {
  const sq::QuantModel qm = bn_first_qmodel(-1.0f, 3);
  const std::string want = "batchnorm 'bn0' right after the input";
  EXPECT_ERROR_HAS(sq::GraphExecutor::prepare(qm.graph, sq::integerize(qm)), want, "channel 0");
  const std::string dir = sqtest::temp_dir("bn_neg");
  EXPECT_ERROR_HAS(sq::save_sqm(dir + "/m.sqm", qm.graph, sq::integerize(qm)), dir + "/m.sqm",
                   want);
  EXPECT_ERROR_HAS(sq::export_c(qm, dir + "/c"), "export c", want);
  EXPECT_FALSE(sq::file_exists(dir + "/m.sqm"));
  EXPECT_TRUE(sqtest::files_in(dir).empty());
  // A batchnorm the conv before it would absorb, left unfolded, is named up front, whatever
  // comes first (one no layer can absorb runs as per-channel tables: the "dense" zoo case).
  sq::Graph g("mid", {1, 6, 6}, 3);
  int x = g.relu("r", g.batchnorm("bn_mid", g.conv2d("c", g.input(), 2, 3, 1, 1, 1, true)));
  g.linear("fc", g.flatten("flat", x), 3);
  g.infer_shapes();
  g.init_params(1);
  sq::QuantModel mid;
  mid.graph = g;
  mid.bits = sq::BitConfig::uniform(g, 8, 8);
  mid.weight_scales = sq::max_weight_scales(g, mid.bits);
  for (const auto& [node, bits] : sq::activation_quant_points(g, mid.bits))
    mid.acts[g.nodes[node].name] = sq::act_quant_from_range({-1.0f, 1.0f}, bits);
  EXPECT_ERROR_HAS(sq::GraphExecutor::prepare(mid.graph, sq::integerize(mid)),
                   "batchnorm 'bn_mid'", "BN-folded");
}

// ---- the C runtime agrees bit for bit ----

bool have_c_compiler() {
  return std::system("cc --version > /dev/null 2>&1 && make --version > /dev/null 2>&1") == 0;
}

int sh(const std::string& cmd, std::string* out) {
  FILE* p = popen(("(" + cmd + ") 2>&1").c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t got;
  out->clear();
  while ((got = fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, got);
  return pclose(p);
}

// Exports qm to C, builds the demo with strict flags, runs n random images, compares every logit
// with the engine's; returns the images that agree bit for bit.
int c_runtime_agreement(const sq::QuantModel& qm, int n, const std::string& tag) {
  const std::string dir = sqtest::temp_dir("hard_c_" + tag) + "/out";
  sq::export_c(qm, dir);
  std::string log;
  EXPECT_EQ(sh("make -s -C '" + dir +
                   "' CC=cc CFLAGS='-std=c99 -O2 -Wall -Wextra -Werror -pedantic'",
               &log),
            0)
      << log;
  sq::GraphExecutor ex = sq::GraphExecutor::prepare(qm.graph, sq::integerize(qm));
  const auto imgs = sqtest::random_images(n, ex.input_size(), 11);
  sq::write_file_atomic(dir + "/images.f32",
                        std::string(reinterpret_cast<const char*>(imgs.data()),
                                    imgs.size() * sizeof(float)));
  EXPECT_EQ(sh("cd '" + dir + "' && ./sq_demo images.f32 logits.f32 > /dev/null", &log), 0) << log;
  const std::string got = sq::read_file(dir + "/logits.f32");
  const std::vector<float> want = logits_of(ex, imgs, n);
  EXPECT_EQ(got.size(), want.size() * sizeof(float));
  if (got.size() != want.size() * sizeof(float)) return 0;
  int same = 0;
  const size_t row = static_cast<size_t>(ex.output_size()) * sizeof(float);
  for (int s = 0; s < n; ++s)
    same += std::memcmp(got.data() + s * row, reinterpret_cast<const char*>(want.data()) + s * row,
                        row) == 0;
  return same;
}

TEST(ExportsRun, CRuntimeAgreesBitForBit) {
  if (!have_c_compiler()) GTEST_SKIP() << "no C compiler";
  EXPECT_EQ(c_runtime_agreement(quantize_graph(avgpool_graph(), 5), 32, "avgpool"), 32);
  EXPECT_EQ(c_runtime_agreement(bn_first_qmodel(1.0f, 3), 32, "bn_first"), 32);
  // Padding taps inside the window and a window that is not square in the output grid.
  sq::Graph g("pad", {1, 7, 5}, 3);
  int x = g.relu6("r", g.conv2d("c", g.input(), 3, 3, 1, 0, 1, true));  // 5x3
  x = g.avgpool("ap", x, 3, 2, 1);                                         // 3x2
  g.linear("fc", g.flatten("flat", x), 3);
  EXPECT_EQ(c_runtime_agreement(quantize_graph(g, 8), 32, "padded"), 32);
}

}  // namespace
