// ONNX against ONNX Runtime (onnxruntime-node, installed by scripts/setup_onnxruntime.sh):
// the exported QDQ model vs the simulated quantized model, the imported fixture vs ORT, and the
// command-line flow import -> eval -> ptq. Skipped (saying why) only when node is not installed.
//
// For measurements: SQ_ONNX_AGREEMENT_N=10000 makes the agreement tests use that many test images
// (default 500); SQ_ONNX_QMODEL=q.sqg makes the W8A8 test use that quantized model instead of its
// own PTQ, and SQ_ONNX_SAVE=out.onnx keeps its export.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "sigmaquant/data.h"
#include "sigmaquant/engine.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/onnx.h"
#include "sigmaquant/quantize.h"
#include "sigmaquant/train.h"
#include "sigmaquant/transform.h"
#include "sigmaquant/zoo.h"
#include "test_util.h"

namespace {

using sqtest::have_fashion_mnist;

using sqtest::run_cli;

const std::string kSrc = SQ_SOURCE_DIR;
const std::string kFixture = kSrc + "/tests/data/fmnist_cnn.onnx";

std::string sh(const std::string& cmd, int* code) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  std::string out;
  if (!p) { *code = -1; return out; }
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int st = pclose(p);
  *code = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
  return out;
}

bool have_node() { return std::system("command -v node >/dev/null 2>&1") == 0; }

// Installs onnxruntime-node if needed (idempotent); fails the test if that does not work.
::testing::AssertionResult ensure_ort() {
  static int code = -2;
  static std::string out;
  if (code == -2) out = sh("bash " + kSrc + "/scripts/setup_onnxruntime.sh", &code);
  if (code != 0) return ::testing::AssertionFailure() << "setup_onnxruntime.sh failed:\n" << out;
  return ::testing::AssertionSuccess();
}

#define REQUIRE_ORT()                                                                   \
  do {                                                                                  \
    if (!have_node()) GTEST_SKIP() << "node (Node.js) is not installed: no ONNX Runtime"; \
    ASSERT_TRUE(ensure_ort());                                                          \
  } while (0)

// Logits of ONNX Runtime for the first n images of d (raw, in [0, 1]); with `log`, ORT runs with
// its verbose log, which goes there.
std::vector<float> ort_logits(const std::string& model, const sq::Dataset& d, int64_t n,
                              const std::string& dir, std::string* log = nullptr) {
  const int64_t per = d.image_numel();
  std::string images(reinterpret_cast<const char*>(d.images.data()),
                     static_cast<size_t>(n * per) * sizeof(float));
  sq::write_file_atomic(dir + "/images.f32", images);
  int code = 0;
  std::string out = sh(fmt::format("node {}/tools/onnx/run_ort.js {} {}/images.f32 {}/logits.f32 "
                                   "--shape {},{},{} --batch 100 --threads 2{}",
                                   kSrc, model, dir, dir, d.image_shape[0], d.image_shape[1],
                                   d.image_shape[2], log ? " --verbose 1" : ""),
                       &code);
  if (log) *log = out;
  EXPECT_EQ(code, 0) << out;
  std::string bytes = code == 0 ? sq::read_file(dir + "/logits.f32") : std::string();
  std::vector<float> v(bytes.size() / sizeof(float));
  if (!v.empty()) std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

// Once per process (LibTorch refuses a second set_num_interop_threads).
void two_threads() {
  static bool done = false;
  if (!done) sq::configure_runtime(2);
  done = true;
}

int64_t argmax(const float* p, int64_t k) { return std::max_element(p, p + k) - p; }

sq::Dataset test_images(int64_t n) {
  sq::DataSpec spec;
  return sq::take(sq::load_data(spec).test, n);
}

TEST(OnnxOrt, ImportedFixtureEqualsOrt) {
  REQUIRE_ORT();
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  std::string dir = sqtest::temp_dir("onnx_fixture");
  sq::Graph g = sq::import_onnx(kFixture);
  g.input_mean = {0.0f};
  g.input_std = {1.0f};
  const int64_t n = 300;
  sq::Dataset d = test_images(n);
  two_threads();
  std::vector<float> ours = sq::predict(g, d, n);
  std::vector<float> ort = ort_logits(kFixture, d, n, dir);
  ASSERT_EQ(ours.size(), ort.size());
  double worst = 0;
  for (size_t i = 0; i < ours.size(); ++i) worst = std::max(worst, double(std::fabs(ours[i] - ort[i])));
  EXPECT_LT(worst, 1e-4) << "largest |logit difference| over " << n << " images";
}

// The float export of an FP32 model (`export --format onnx` of an FP32 .sqg): ONNX Runtime's
// logits equal LibTorch's, with the BatchNorms as they are (zoo squeezese: concat, SE, hardsigmoid)
// and folded (resnet20, trained), and the file imports back to the same logits.
TEST(OnnxOrt, FloatExportEqualsLibTorch) {
  REQUIRE_ORT();
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  std::string dir = sqtest::temp_dir("onnx_float_export");
  const int64_t n = 64;
  sq::Dataset d = test_images(n);
  two_threads();
  std::vector<sq::Graph> graphs = {sq::make_zoo_model("squeezese", d.image_shape, 10, 3)};
  graphs[0].input_mean = {0.3f};  // what training sets: the export normalizes with it
  graphs[0].input_std = {0.35f};
  if (sq::file_exists(kSrc + "/models/resnet20-fmnist.sqg"))
    graphs.push_back(sq::fold_batchnorm(sq::load_graph(kSrc + "/models/resnet20-fmnist.sqg")));
  for (const sq::Graph& g : graphs) {
    SCOPED_TRACE(g.name);
    const std::string path = dir + "/" + g.name + ".onnx";
    sq::export_onnx_float(g, path);
    std::vector<float> ours = sq::predict(g, d, n);
    std::vector<float> ort = ort_logits(path, d, n, dir);
    ASSERT_EQ(ours.size(), ort.size());
    double worst = 0, range = 0;
    for (size_t i = 0; i < ours.size(); ++i) {
      worst = std::max(worst, double(std::fabs(ours[i] - ort[i])));
      range = std::max(range, double(std::fabs(ours[i])));
    }
    EXPECT_LT(worst, 1e-4 * std::max(1.0, range)) << "largest |logit difference| over " << n;
    std::vector<float> back = sq::predict(sq::import_onnx(path), d, n);
    ASSERT_EQ(back.size(), ours.size());
    double worst_back = 0;
    for (size_t i = 0; i < ours.size(); ++i)
      worst_back = std::max(worst_back, double(std::fabs(ours[i] - back[i])));
    EXPECT_LT(worst_back, 1e-4 * std::max(1.0, range));
  }
}

// Exports PTQ models and compares ONNX Runtime's top-1 with the simulated quantized model's.
void check_agreement(const std::string& fp32, int wbits, int abits, int mid_bits, double min_agree,
                     bool measured = false) {
  REQUIRE_ORT();
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  if (!sq::file_exists(fp32)) GTEST_SKIP() << fp32 << " is missing";
  std::string dir = sqtest::temp_dir("onnx_export");
  two_threads();
  sq::Graph g = sq::load_graph(fp32);
  sq::DataSpec spec;
  sq::DataBundle data = sq::load_data(spec);
  sq::BitConfig bits = sq::BitConfig::uniform(g, wbits, abits);
  if (mid_bits) {  // a mixed assignment: every other inner layer at mid_bits (weights and acts)
    auto wl = g.weight_layers();
    for (size_t k = 1; k + 1 < wl.size(); k += 2) {
      bits.layers[g.nodes[wl[k]].name].wbits = mid_bits;
      bits.layers[g.nodes[wl[k]].name].abits = mid_bits;
    }
  }
  sq::PtqOptions po;
  po.calib_samples = 256;
  const char* given = measured ? std::getenv("SQ_ONNX_QMODEL") : nullptr;
  sq::QuantModel qm = given ? sq::load_qmodel(given) : sq::ptq(g, bits, sq::take(data.train, 2048), po);
  const char* env = std::getenv("SQ_ONNX_AGREEMENT_N");
  const int64_t n = std::min<int64_t>(env ? std::atoll(env) : 500, data.test.size());
  sq::Dataset d = sq::take(data.test, n);
  std::vector<float> sim = sq::predict_quant(qm, d, n);
  sq::export_onnx(qm, dir + "/q.onnx");
  if (const char* save = measured ? std::getenv("SQ_ONNX_SAVE") : nullptr) sq::export_onnx(qm, save);
  std::vector<float> ort = ort_logits(dir + "/q.onnx", d, n, dir);
  ASSERT_EQ(sim.size(), ort.size());
  const int64_t k = g.num_classes;
  int64_t agree = 0, correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    agree += argmax(&sim[i * k], k) == argmax(&ort[i * k], k);
    correct += argmax(&ort[i * k], k) == d.labels[i];
  }
  double a = double(agree) / double(n);
  std::printf("[onnx] %s W%dA%d%s: ORT vs simulated top-1 agreement %.2f%% (%ld/%ld), ORT accuracy %.2f%%\n",
              g.name.c_str(), wbits, abits, mid_bits ? fmt::format(" (+{}-bit layers)", mid_bits).c_str() : "",
              100 * a, long(agree), long(n), 100.0 * double(correct) / double(n));
  EXPECT_GE(a, min_agree);
}

// How often `what` occurs in `text`.
int occurrences(const std::string& text, const std::string& what) {
  int k = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++k;
  return k;
}

// The export in the form ORT's QDQ fusion takes: ORT's optimizer (level "all", verbose log)
// matches every conv's and every linear layer's DQ -> Conv/Gemm (-> Q) group (QLinearConv /
// QGemm), every ReLU between two points (as LeakyRelu: QLinearLeakyRelu), and no float
// convolution is left for its NCHWc transformer; the weights are int8 exactly where ORT's x86
// u8s8 kernels cannot saturate (2 * largest input code * max|q| <= 32767), uint8 elsewhere; ORT's
// logits agree with the integer engine's and the simulation's as before. bits_file (examples/)
// replaces the uniform wbits / abits.
void check_fused(const std::string& fp32, int wbits = 8, int abits = 8,
                 const std::string& bits_file = "") {
  REQUIRE_ORT();
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  if (!sq::file_exists(fp32)) GTEST_SKIP() << fp32 << " is missing";
  std::string dir = sqtest::temp_dir("onnx_fused");
  two_threads();
  sq::Graph g = fp32.size() > 5 && fp32.substr(fp32.size() - 5) == ".onnx" ? sq::import_onnx(fp32)
                                                                           : sq::load_graph(fp32);
  if (g.input_mean.empty()) {
    g.input_mean = {0.0f};
    g.input_std = {1.0f};
  }
  sq::DataSpec spec;
  sq::DataBundle data = sq::load_data(spec);
  sq::PtqOptions po;
  po.calib_samples = 256;
  sq::BitConfig bits = bits_file.empty() ? sq::BitConfig::uniform(g, wbits, abits)
                                         : sq::load_bits(kSrc + "/" + bits_file);
  sq::QuantModel qm = sq::ptq(g, bits, sq::take(data.train, 2048), po);
  const int64_t n = 500;
  sq::Dataset d = sq::take(data.test, n);
  const std::string bytes = sq::export_onnx_bytes(qm);
  sq::write_file_atomic(dir + "/q.onnx", bytes);
  std::string log;
  std::vector<float> ort = ort_logits(dir + "/q.onnx", d, n, dir, &log);
  int convs = 0, linears = 0, int8_layers = 0;
  for (int i : qm.graph.weight_layers()) {
    const sq::Node& nd = qm.graph.nodes[i];
    convs += nd.op == sq::Op::Conv2d;
    linears += nd.op == sq::Op::Linear;
    int wmax = 0;
    for (int32_t v : sq::quantized_weights(qm, nd.name)) wmax = std::max(wmax, std::abs(v));
    int8_layers += 2 * qm.acts.at(qm.graph.nodes[nd.inputs[0]].name).qmax() * wmax <= 32767;
  }
  EXPECT_EQ(occurrences(bytes, "int8 container (zero point 0)"), int8_layers);
  if (wbits == 8 && bits_file.empty()) {
    EXPECT_EQ(int8_layers, 0);  // 8-bit codes reach 127
  } else if (wbits <= 7 && abits == 8 && bits_file.empty()) {
    EXPECT_EQ(int8_layers, convs + linears);
  }
  EXPECT_EQ(occurrences(log, "MatchAndProcess] Matched Conv"), convs) << log.substr(0, 4000);
  EXPECT_EQ(occurrences(log, "MatchAndProcess] Matched Gemm"), linears);
  EXPECT_EQ(occurrences(log, "MatchAndProcess] Matched LeakyRelu"),
            occurrences(bytes, "LeakyRelu with alpha 0"));
  EXPECT_EQ(occurrences(log, "NchwcTransformer modified: 1"), 0) << "float convolutions left";
  std::vector<float> sim = sq::predict_quant(qm, d, n);
  sq::GraphExecutor ex = sq::GraphExecutor::prepare(qm.graph, sq::integerize(qm));
  const int64_t k = ex.output_size();
  ASSERT_EQ(ort.size(), static_cast<size_t>(n * k));
  std::vector<float> eng(static_cast<size_t>(k));
  int64_t with_engine = 0, with_sim = 0;
  for (int64_t i = 0; i < n; ++i) {
    ex.run(d.image(i), eng.data());
    const int64_t o = argmax(&ort[i * k], k);
    with_engine += o == argmax(eng.data(), k);
    with_sim += o == argmax(&sim[i * k], k);
  }
  std::printf(
      "[onnx] %s %s fused (%d of %d layers int8): ORT vs engine %.2f%%, vs simulated "
      "%.2f%% (%ld images)\n",
      g.name.c_str(),
      bits_file.empty() ? fmt::format("W{}A{}", wbits, abits).c_str() : bits_file.c_str(),
      int8_layers, convs + linears, 100.0 * double(with_engine) / double(n),
      100.0 * double(with_sim) / double(n), long(n));
  EXPECT_GE(double(with_engine) / double(n), 0.99);
  EXPECT_GE(double(with_sim) / double(n), 0.99);
}

TEST(OnnxOrt, ExportedW8A8FusesIntoQuantizedKernelsResnet20) {
  check_fused(kSrc + "/models/resnet20-fmnist.sqg");
}

TEST(OnnxOrt, ExportedW8A8FusesIntoQuantizedKernelsImportedCnn) {
  check_fused(kFixture);
}

// Below 8 bits the weights go out as int8 (ORT's faster u8s8 kernels, exact there): 6-bit
// weights of resnet20 and of the imported CNN, and the mixed assignment of examples/ (8-bit
// stem with per-channel widths and classifier: uint8; 6/4/3-bit inner layers: int8; 6- and
// 4-bit activations: the 8-bit Q/DQ step that keeps the convolutions fused).
TEST(OnnxOrt, ExportedLowBitInt8WeightsFuseAndAgreeResnet20) {
  check_fused(kSrc + "/models/resnet20-fmnist.sqg", 6, 8);
}

TEST(OnnxOrt, ExportedLowBitInt8WeightsFuseAndAgreeImportedCnn) { check_fused(kFixture, 6, 8); }

TEST(OnnxOrt, ExportedMixedPrecisionFusesAndAgreesResnet20) {
  check_fused(kSrc + "/models/resnet20-fmnist.sqg", 0, 0, "examples/resnet20-mixed.bits.json");
}

TEST(OnnxOrt, ExportedW8A8AgreesWithSimulation) {
  check_agreement(kSrc + "/models/resnet20-fmnist.sqg", 8, 8, 0, 0.99, true);
}

TEST(OnnxOrt, ExportedMixedBitsAgreesWithSimulation) {
  check_agreement(kSrc + "/models/lenet5-fmnist.sqg", 8, 8, 4, 0.99);
}

// The fixtures of scripts/make_onnx_fixtures.py (torch.onnx.export at several opsets, static and
// dynamic batch): imported, their float logits equal PyTorch's, stored in fixtures.json.
TEST(OnnxFixtures, ImportedLogitsEqualPyTorch) {
  const std::string dir = kSrc + "/tests/data/onnx";
  auto j = nlohmann::json::parse(sq::read_file(dir + "/fixtures.json"));
  sq::Dataset d;
  d.image_shape = j["input_shape"].get<sq::Shape>();
  d.images = j["images"].get<std::vector<float>>();
  d.labels.assign(d.images.size() / static_cast<size_t>(d.image_numel()), 0);
  two_threads();
  ASSERT_GE(j["models"].size(), 18u);
  for (const auto& m : j["models"]) {
    const std::string file = m["file"];
    sq::Graph g = sq::import_onnx(dir + "/" + file);
    if (g.input_mean.empty()) {  // raw inputs, as PyTorch saw them
      g.input_mean.assign(static_cast<size_t>(d.image_shape[0]), 0.0f);
      g.input_std.assign(static_cast<size_t>(d.image_shape[0]), 1.0f);
    }
    d.num_classes = m["classes"];
    std::vector<float> want = m["logits"].get<std::vector<float>>();
    std::vector<float> got = sq::predict(g, d, d.size());
    ASSERT_EQ(got.size(), want.size()) << file;
    if (m.value("softmax", false)) {
      // The model ends in Softmax, which the import drops (the graph's output is the logits):
      // PyTorch's probabilities against the softmax of the imported logits.
      const size_t k = static_cast<size_t>(d.num_classes);
      for (size_t r = 0; r < got.size(); r += k) {
        const float mx = *std::max_element(got.begin() + r, got.begin() + r + k);
        double sum = 0;
        for (size_t c = 0; c < k; ++c) sum += std::exp(double(got[r + c]) - mx);
        for (size_t c = 0; c < k; ++c)
          got[r + c] = static_cast<float>(std::exp(double(got[r + c]) - mx) / sum);
      }
    }
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, double(std::fabs(got[i] - want[i])));
    EXPECT_LT(worst, 1e-4) << file << ": largest |logit difference| against PyTorch";
  }
}

// torchvision's Inception-v3 (issue 15: 1x7 / 7x1 and 1x3 / 3x1 convs with per-axis padding, Pad ->
// AveragePool, Concat), imported by `sigmaquant import`: its float logits equal PyTorch's within
// 1e-4. The ~95 MB model is not in the repository: scripts/inception_v3_check.py DIR writes it and
// PyTorch's logits; the test runs when SQ_INCEPTION_DIR names that directory.
TEST(OnnxInception, ImportedLogitsEqualPyTorch) {
  const char* env = std::getenv("SQ_INCEPTION_DIR");
  if (!env) GTEST_SKIP() << "SQ_INCEPTION_DIR is not set (scripts/inception_v3_check.py DIR)";
  const std::string dir = env;
  const std::string tmp = sqtest::temp_dir("onnx_inception");
  auto r = run_cli("import " + dir + "/inception_v3.onnx -o " + tmp + "/inc.sqg --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  sq::Graph g = sq::load_graph_file(tmp + "/inc.sqg").graph;
  int non_square = 0;
  for (const sq::Node& n : g.nodes) non_square += n.op == sq::Op::Conv2d && !n.window.is_square();
  EXPECT_GE(non_square, 20);  // Mixed_6b..6e: 1x7 / 7x1, Mixed_7b/7c: 1x3 / 3x1
  auto j = nlohmann::json::parse(sq::read_file(dir + "/ref.json"));
  sq::Dataset d;
  d.image_shape = j["input_shape"].get<sq::Shape>();
  d.images = j["images"].get<std::vector<float>>();
  d.labels.assign(d.images.size() / static_cast<size_t>(d.image_numel()), 0);
  d.num_classes = 1000;
  if (g.input_mean.empty()) {
    g.input_mean.assign(3, 0.0f);
    g.input_std.assign(3, 1.0f);
  }
  two_threads();
  const std::vector<float> want = j["logits"].get<std::vector<float>>();
  const std::vector<float> got = sq::predict(g, d, d.size());
  ASSERT_EQ(got.size(), want.size());
  double worst = 0, range = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    worst = std::max(worst, double(std::fabs(got[i] - want[i])));
    range = std::max(range, double(std::fabs(want[i])));
  }
  std::printf("[onnx] inception_v3: %d non-square convs, max |logit - PyTorch| = %.3g (max |logit| "
              "%.3g)\n",
              non_square, worst, range);
  EXPECT_LT(worst, 1e-4);
}

// The activation fixtures (hardswish, hardsigmoid, silu, sigmoid, leaky_relu) and the concat /
// squeeze-excitation ones (firenet: Concat, Pad + AveragePool, ReduceMean; senet: Mul with a
// channel broadcast from conv and linear gates, Softmax dropped; shufflenet: Reshape ->
// Transpose -> Reshape as a channel shuffle; rectnet: Inception's 1x7 / 7x1 and 1x3 / 3x1
// convs, a dilated conv and a stride of (2, 1); shufflev2: ShuffleNetV2's chunk as two Slice
// nodes on the channels, then concat and channel shuffle; densenet: torchvision's DenseNet,
// width-reduced: pre-activation batchnorms after concats, which the engine runs as per-channel
// tables), imported, W8A8 PTQ on random
// images: the optimized engine equals its reference plan bit for bit, and the integer engine
// and ONNX Runtime on the QDQ export agree with the
// simulated model on top-1 (random weights: images whose simulated top-2 margin is under 1 % of
// the logit range are left out, a rounding there decides).
TEST(OnnxFixtures, ActivationNetsQuantizeAndRunOnEngineAndOrt) {
  REQUIRE_ORT();
  const std::string dir = kSrc + "/tests/data/onnx";
  const std::string tmp = sqtest::temp_dir("onnx_acts");
  two_threads();
  const int64_t n = 600;
  sq::Dataset d;
  d.image_shape = {3, 16, 16};
  d.num_classes = 10;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  d.images.resize(static_cast<size_t>(n * d.image_numel()));
  for (float& v : d.images) v = u(rng);
  d.labels.assign(static_cast<size_t>(n), 0);
  for (const char* file :
       {"hswishnet-op13-dyn.onnx", "hswishnet-op17-dyn.onnx", "silunet-op13-dyn.onnx",
        "silunet-op17-dyn.onnx", "firenet-op13-dyn.onnx", "firenet-op17-dyn.onnx",
        "senet-op13-dyn.onnx", "senet-op17-dyn.onnx", "shufflenet-op13-dyn.onnx",
        "shufflenet-op17-dyn.onnx", "rectnet-op13-dyn.onnx", "rectnet-op17-dyn.onnx",
        "shufflev2-op13-dyn.onnx", "shufflev2-op17-dyn.onnx", "densenet-op13-dyn.onnx",
        "densenet-op17-dyn.onnx"}) {
    sq::Graph g = sq::import_onnx(dir + "/" + file);
    g.input_mean.assign(3, 0.0f);
    g.input_std.assign(3, 1.0f);
    sq::PtqOptions po;
    po.calib_samples = 256;
    sq::QuantModel qm = sq::ptq(g, sq::BitConfig::uniform(g, 8, 8), sq::take(d, 256), po);
    std::vector<float> sim = sq::predict_quant(qm, d, n);
    sq::GraphExecutor ex = sq::GraphExecutor::prepare(qm.graph, sq::integerize(qm));
    sq::GraphExecutor ref =
        sq::GraphExecutor::prepare(qm.graph, sq::integerize(qm), sq::Isa::Reference);
    sq::export_onnx(qm, tmp + "/q.onnx");
    std::vector<float> ort = ort_logits(tmp + "/q.onnx", d, n, tmp);
    ASSERT_EQ(ort.size(), sim.size()) << file;
    std::vector<float> eng(10), oracle(10);
    int64_t counted = 0, with_engine = 0, with_ort = 0, exact = 0;
    for (int64_t i = 0; i < n; ++i) {
      ex.run(d.image(i), eng.data());
      ref.run(d.image(i), oracle.data());
      exact += std::memcmp(eng.data(), oracle.data(), sizeof(float) * 10) == 0;
      const float* s = &sim[i * 10];
      std::vector<float> sorted(s, s + 10);
      std::sort(sorted.begin(), sorted.end());
      if (sorted[9] - sorted[8] < 0.01f * (sorted[9] - sorted[0])) continue;
      ++counted;
      with_engine += argmax(eng.data(), 10) == argmax(s, 10);
      with_ort += argmax(&ort[i * 10], 10) == argmax(s, 10);
    }
    std::printf("[onnx] %s W8A8: engine %ld/%ld, ORT %ld/%ld agree with the simulation\n", file,
                long(with_engine), long(counted), long(with_ort), long(counted));
    EXPECT_EQ(exact, n) << file << ": optimized engine against its reference plan";
    EXPECT_GE(counted, n / 2) << file;
    EXPECT_GE(double(with_engine), 0.99 * double(counted)) << file;
    EXPECT_GE(double(with_ort), 0.99 * double(counted)) << file;
  }
}

TEST(OnnxCli, ImportEvalPtq) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  std::string dir = sqtest::temp_dir("onnx_cli");
  auto r = run_cli("import " + kFixture + " -o " + dir + "/m.sqg --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  EXPECT_EQ(j["weight_layers"], 3);
  // Float accuracy of the imported model = what PyTorch measured (tests/data/fmnist_cnn.json).
  double want = nlohmann::json::parse(sq::read_file(kSrc + "/tests/data/fmnist_cnn.json"))["test_accuracy"];
  r = run_cli("eval -m " + dir + "/m.sqg --threads 2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  double got = nlohmann::json::parse(r.output.substr(r.output.find('{')))["accuracy"];
  EXPECT_NEAR(got, want, 0.002);
  r = run_cli("ptq -m " + dir + "/m.sqg --wbits 8 --abits 8 --calib-samples 256 --limit-train 1024 "
              "--limit-test 1000 --threads 2 --json -o " + dir + "/q.sqg");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto p = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  EXPECT_GT(p["accuracy"].get<double>(), p["fp32_accuracy"].get<double>() - 0.02);
  // Errors: unsupported operators and garbage are named, non-zero exit.
  std::string junk = sqtest::write_temp(dir, "junk.onnx", "not an onnx model");
  r = run_cli("import " + junk + " -o " + dir + "/x.sqg");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("junk.onnx: not a valid ONNX model"), std::string::npos) << r.output;
  // The quantized model exported from the command line: ONNX (run by ONNX Runtime) and, when
  // the integer engine's format is there, .sqm run on the engine.
  r = run_cli("export --help");
  if (r.exit_code == 0 && r.output.find("onnx") != std::string::npos) {
    auto e = run_cli("export -m " + dir + "/q.sqg --format onnx -o " + dir + "/q.onnx");
    ASSERT_EQ(e.exit_code, 0) << e.output;
    if (have_node() && ensure_ort()) {
      const int64_t n = 1000;
      sq::Dataset d = test_images(n);
      std::vector<float> ort = ort_logits(dir + "/q.onnx", d, n, dir);
      ASSERT_EQ(ort.size(), static_cast<size_t>(n * 10));
      int64_t correct = 0;
      for (int64_t i = 0; i < n; ++i) correct += argmax(&ort[i * 10], 10) == d.labels[i];
      EXPECT_NEAR(double(correct) / double(n), p["accuracy"].get<double>(), 0.01);
    }
    // --onnx-weights: u8 is what auto writes for W8A8 (8-bit codes reach 127); s8 differs;
    // anything else, or with another format, is refused before the model is read.
    e = run_cli("export -m " + dir + "/q.sqg --format onnx --onnx-weights u8 -o " + dir +
                "/u8.onnx");
    ASSERT_EQ(e.exit_code, 0) << e.output;
    EXPECT_EQ(sq::read_file(dir + "/u8.onnx"), sq::read_file(dir + "/q.onnx"));
    e = run_cli("export -m " + dir + "/q.sqg --format onnx --onnx-weights s8 -o " + dir +
                "/s8.onnx");
    ASSERT_EQ(e.exit_code, 0) << e.output;
    EXPECT_NE(sq::read_file(dir + "/s8.onnx").find("int8 container (zero point 0)"),
              std::string::npos);
    e = run_cli("export -m " + dir + "/q.sqg --format onnx --onnx-weights int8 -o " + dir +
                "/x.onnx");
    EXPECT_EQ(e.exit_code, 1);
    EXPECT_NE(e.output.find("--onnx-weights: ONNX weight type 'int8' (expected auto, u8 or s8)"),
              std::string::npos)
        << e.output;
    e = run_cli("export -m " + dir + "/q.sqg --format sqm --onnx-weights s8 -o " + dir + "/x.sqm");
    EXPECT_EQ(e.exit_code, 1);
    EXPECT_NE(e.output.find("--onnx-weights applies to --format onnx"), std::string::npos)
        << e.output;
  }
  if (r.exit_code == 0 && r.output.find("sqm") != std::string::npos) {
    auto e = run_cli("export -m " + dir + "/q.sqg --format sqm -o " + dir + "/q.sqm");
    ASSERT_EQ(e.exit_code, 0) << e.output;
    auto run = run_cli("run -m " + dir + "/q.sqm --limit 1000 --compare " + dir + "/q.sqg --json");
    ASSERT_EQ(run.exit_code, 0) << run.output;
    auto rj = nlohmann::json::parse(run.output.substr(run.output.find('{')));
    EXPECT_GE(rj["compare"]["agreement"].get<double>(), 0.99) << run.output;
  }
}

}  // namespace
