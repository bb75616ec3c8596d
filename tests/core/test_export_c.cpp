// C export: the generated C99 program, built by the system C compiler with -Werror -pedantic,
// reproduces GraphExecutor's logits bit for bit on zoo models (lenet5, resnet8 with adds, a small
// mobilenetv2 with depthwise convs and conv → relu6 → gap, mlp) and mixed 0..8-bit weights; the
// runtime's requantization and unpacking equal the C++ ones on extreme values; the packed weights
// are within one byte per channel of Σ params × bits / 8.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "quant_models.h"
#include "sigmaquant/engine.h"
#include "sigmaquant/error.h"
#include "sigmaquant/export_c.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/onnx.h"
#include "test_util.h"

namespace {

const char* kCFlags = "-std=c99 -O2 -Wall -Wextra -Werror -pedantic";

// The tests build the exported program with the system's cc and make.
bool have_c_compiler() {
  return std::system("cc --version > /dev/null 2>&1 && make --version > /dev/null 2>&1") == 0;
}

// Runs a shell command; returns its exit status and output.
int sh(const std::string& cmd, std::string* out = nullptr) {
  std::string full = "(" + cmd + ") 2>&1";
  FILE* p = popen(full.c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  std::string text;
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
  const int rc = pclose(p);
  if (out) *out = text;
  return rc;
}

template <typename T>
std::string bytes_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

template <typename T>
std::vector<T> read_vec(const std::string& path) {
  const std::string b = sq::read_file(path);
  std::vector<T> v(b.size() / sizeof(T));
  std::memcpy(v.data(), b.data(), v.size() * sizeof(T));
  return v;
}

// Builds the exported demo with `make` and the strict flags; returns the seconds it took.
double build_demo(const std::string& dir) {
  std::string log;
  const auto t0 = std::chrono::steady_clock::now();
  const int rc = sh(fmt::format("make -s -C '{}' CC=cc CFLAGS='{}'", dir, kCFlags), &log);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(rc, 0) << log;
  return s;
}

// Exports qm, builds the demo, runs it on n random images and compares every logit with
// GraphExecutor bit for bit. Returns the number of images whose logits are identical.
int export_and_compare(const sq::QuantModel& qm, int n, uint64_t seed, const std::string& tag) {
  const std::string dir = sqtest::temp_dir("export_c_" + tag) + "/out/" + tag;  // created by export
  sq::export_c(qm, dir);
  const double compile_s = build_demo(dir);

  sq::GraphExecutor ex = sq::GraphExecutor::prepare(qm.graph, sq::integerize(qm));
  const int64_t in = ex.input_size(), out = ex.output_size();
  const std::vector<float> imgs = sqtest::random_images(n, in, seed);
  sq::write_file_atomic(dir + "/images.f32", bytes_of(imgs));
  std::string printed;
  EXPECT_EQ(
      sh(fmt::format("cd '{}' && ./sq_demo images.f32 logits.f32 2> demo.err", dir), &printed), 0)
      << printed;
  const std::vector<float> got = read_vec<float>(dir + "/logits.f32");
  EXPECT_EQ(static_cast<int64_t>(got.size()), n * out);
  if (static_cast<int64_t>(got.size()) != n * out) return 0;

  int same = 0;
  std::set<int> classes;
  std::istringstream lines(printed);
  std::vector<float> want(static_cast<size_t>(out));
  for (int s = 0; s < n; ++s) {
    ex.run(imgs.data() + s * in, want.data());
    const float* g = got.data() + s * out;
    const bool eq = std::memcmp(g, want.data(), sizeof(float) * static_cast<size_t>(out)) == 0;
    same += eq;
    EXPECT_TRUE(eq) << tag << " image " << s << ": logit 0 is " << g[0] << " (engine " << want[0]
                    << ")";
    // The demo prints "index class" with the first maximal logit.
    long idx = -1;
    int cls = -1;
    lines >> idx >> cls;
    EXPECT_EQ(idx, s);
    EXPECT_EQ(cls, std::max_element(want.begin(), want.end()) - want.begin()) << tag << " " << s;
    classes.insert(cls);
  }
  const std::string h = sq::read_file(dir + "/model.h");
  std::printf(
      "[ export_c ] %-26s %d/%d images bit-exact, %zu classes predicted, compile %.2f s, "
      "model_data.c %zu bytes\n",
      tag.c_str(), same, n, classes.size(), compile_s, sq::read_file(dir + "/model_data.c").size());
  return same;
}

// Σ ceil-free params × bits / 8 of the weight layers, and the packed bytes pack_rows gives.
// Every quantization point's range from the float simulation of `count` images (min/max over
// all of them): the activation quantizers a calibration would give.
void calibrate_from_simulation(sq::QuantModel& qm, const std::vector<float>& imgs, int count) {
  const auto pts = sq::activation_quant_points(qm.graph, qm.bits);
  const int64_t numel = static_cast<int64_t>(imgs.size()) / count;
  std::map<int, std::pair<float, float>> range;
  for (int k = 0; k < count; ++k) {
    auto v = sqtest::simulate_nodes(qm, imgs.data() + k * numel, false);
    for (const auto& [node, bits] : pts) {
      auto [lo, hi] = std::minmax_element(v[node].begin(), v[node].end());
      auto& r = range.try_emplace(node, 0.0f, 0.0f).first->second;
      r = {std::min(r.first, *lo), std::max(r.second, *hi)};
    }
  }
  for (const auto& [node, bits] : pts)
    qm.acts[qm.graph.nodes[node].name] =
        sq::act_quant_from_range({range[node].first, range[node].second}, bits);
}

std::pair<double, int64_t> weight_sizes(const sq::QuantModel& qm) {
  const sq::IntModel im = sq::integerize(qm);
  double ideal = 0;
  int64_t packed = 0;
  for (const sq::IntLayer& L : im.layers) {
    const int64_t rows = static_cast<int64_t>(L.channel_bits.size());
    const int64_t cols = static_cast<int64_t>(L.weights.size()) / rows;
    for (int b : L.channel_bits) ideal += b * cols / 8.0;
    packed +=
        static_cast<int64_t>(sq::pack_rows(L.weights, rows, cols, L.channel_bits).data.size());
  }
  return {ideal, packed};
}

struct ZooCase {
  const char* name;
  sq::Shape input;
  int images;
};

void PrintTo(const ZooCase& z, std::ostream* os) { *os << z.name; }

class ExportCZoo : public ::testing::TestWithParam<ZooCase> {};

TEST_P(ExportCZoo, CompiledProgramEqualsGraphExecutorExactly) {
  if (!have_c_compiler()) GTEST_SKIP() << "no C compiler (cc) or make";
  const ZooCase& zc = GetParam();
  const sq::QuantModel qm = sqtest::synthetic_qmodel(zc.name, zc.input, 10, 11);
  EXPECT_EQ(export_and_compare(qm, zc.images, 5, zc.name), zc.images);
}

INSTANTIATE_TEST_SUITE_P(
    Zoo, ExportCZoo,
    ::testing::Values(ZooCase{"lenet5", {1, 28, 28}, 300}, ZooCase{"resnet8", {3, 12, 12}, 300},
                      ZooCase{"mobilenetv2", {3, 16, 16}, 200}, ZooCase{"mlp", {1, 12, 12}, 300},
                      ZooCase{"squeezese", {3, 16, 16}, 200}, ZooCase{"rect", {3, 16, 16}, 200},
                      ZooCase{"shufflev2", {3, 16, 16}, 200}, ZooCase{"dense", {3, 12, 12}, 200}),
    [](const auto& info) { return std::string(info.param.name); });

// Every weight width 1..8 as whole layers, and per-channel mixtures of 0..8 bits (pruned and
// binary channels among them), on a residual network and on lenet5.
TEST(ExportC, MixedBitwidthsOneToEight) {
  if (!have_c_compiler()) GTEST_SKIP() << "no C compiler (cc) or make";
  for (const char* name : {"lenet5", "resnet8"}) {
    const sq::Shape in =
        std::string(name) == "lenet5" ? sq::Shape{1, 28, 28} : sq::Shape{3, 12, 12};
    sq::QuantModel qm = sqtest::synthetic_qmodel(name, in, 10, 21);
    const auto layers = qm.graph.weight_layers();
    std::mt19937_64 rng(4);
    for (size_t k = 0; k < layers.size(); ++k) {
      const sq::Node& n = qm.graph.nodes[layers[k]];
      sq::LayerBits lb = qm.bits.for_layer(n.name);  // keeps abits: the points stay as calibrated
      lb.channel_wbits.clear();
      lb.wbits = 1 + static_cast<int>(k % 8);
      if (k % 2 == 1) {
        for (int64_t c = 0; c < n.out_channels; ++c)
          lb.channel_wbits.push_back(static_cast<int>(rng() % 9));
        lb.channel_wbits[0] = 1;
        lb.wbits = *std::max_element(lb.channel_wbits.begin(), lb.channel_wbits.end());
      }
      qm.bits.layers[n.name] = lb;
    }
    qm.weight_scales = sq::max_weight_scales(qm.graph, qm.bits);
    EXPECT_EQ(export_and_compare(qm, 200, 9, std::string("mixed_") + name), 200);

    // model.h states the packed size; each channel costs at most one byte over bits/8.
    const auto [ideal, packed] = weight_sizes(qm);
    const std::string dir = sqtest::temp_dir(std::string("export_c_size_") + name);
    sq::export_c(qm, dir);
    const std::string h = sq::read_file(dir + "/model.h");
    EXPECT_NE(h.find(fmt::format("#define SQ_MODEL_WEIGHT_BYTES {} ", packed)), std::string::npos);
    int64_t channels = 0;
    for (int l : layers) channels += qm.graph.nodes[l].out_channels;
    EXPECT_GE(packed, static_cast<int64_t>(std::ceil(ideal - 1e-9)) - 0);
    EXPECT_LE(packed, static_cast<int64_t>(std::ceil(ideal)) + channels);
    std::printf(
        "[ export_c ] %-26s packed weights %lld bytes, sum params*bits/8 = %.1f (+%.2f %%)\n", name,
        static_cast<long long>(packed), ideal, 100.0 * (packed - ideal) / ideal);
  }
}

// Channel groups (issue 13): every layer mixes 0/2/4/8-bit channels, the last one too, and the
// engine computes each width group on its own kernel and skips the pruned channels (constants
// from their biases, some feeding residual adds); the C runtime skips them too. Bit for bit.
TEST(ExportC, PrunedAndChannelGroupedLayersAgreeWithTheEngine) {
  if (!have_c_compiler()) GTEST_SKIP() << "no C compiler (cc) or make";
  for (const char* name : {"resnet8", "lenet5"}) {
    const sq::Shape in =
        std::string(name) == "lenet5" ? sq::Shape{1, 28, 28} : sq::Shape{3, 12, 12};
    sq::QuantModel qm = sqtest::synthetic_qmodel(name, in, 10, 23);
    sqtest::set_channel_bits(qm, {0, 2, 4, 8, 8}, 29);
    sq::GraphExecutor ex = sq::GraphExecutor::prepare(qm.graph, sq::integerize(qm));
    int pruned = 0;
    for (const std::string& line : ex.describe())
      pruned += line.find("pruned x") != std::string::npos;
    EXPECT_GT(pruned, 0) << name;
    EXPECT_EQ(export_and_compare(qm, 100, 31, std::string("groups_") + name), 100);
  }
}

// What the zoo does not reach: average pooling with padding fused with ReLU6 and a max-pool on
// the way to the next point, a depthwise conv feeding an add, conv → global average pooling with
// no activation (1-bit weights, 3-bit input), a grouped conv, a constant input channel.
TEST(ExportC, AvgPoolGroupsAndFusedChains) {
  if (!have_c_compiler()) GTEST_SKIP() << "no C compiler (cc) or make";
  sq::QuantModel qm;
  sq::Graph& g = qm.graph;
  g = sq::Graph("custom", {2, 10, 10}, 5);
  int r1 = g.relu("r1", g.conv2d("c1", g.input(), 8, 3, 1, 1, 2, true));
  int s = g.add("add", g.conv2d("dw", r1, 8, 3, 1, 1, 8, true), r1);
  int x = g.maxpool("mp", g.relu6("r6", g.avgpool("ap", s, 3, 2, 1)), 2, 1);
  x = g.global_avgpool("gap", g.conv2d("c3", x, 6, 1, 1, 0, 1, true));
  g.linear("fc", g.flatten("flat", x), 5);
  g.infer_shapes();
  g.init_params(3);
  g.input_mean = {0.5f, 0.4f};
  g.input_std = {0.25f, 0.0f};  // a constant channel: only centred
  qm.bits = sq::BitConfig::uniform(g, 5, 6);
  qm.bits.layers["dw"].wbits = 3;
  qm.bits.layers["c3"].wbits = 1;
  qm.bits.layers["c3"].abits = 3;
  qm.weight_scales = sq::max_weight_scales(g, qm.bits);
  calibrate_from_simulation(qm, sqtest::random_images(4, 200, 8), 4);
  EXPECT_EQ(export_and_compare(qm, 300, 12, "custom"), 300);
}

// SqueezeNet's classifier: the last layer is a conv → ReLU → global average pooling → flatten,
// so the logits are a float mean of activated conv outputs (no point after the conv). The engine
// (one ConvGapF32 step) agrees with the float simulation within float rounding on every logit
// when the head reads the input point directly (`deep` = false: the same codes on both sides),
// the optimized plan equals the reference plan, the C program equals the engine bit for bit, and
// the QDQ export passes the ONNX checker. With ReLU, ReLU6 and no activation; and behind a
// conv → ReLU → max-pool (`deep`), where a code the simulation rounds the other way at the head's
// input moves logits by a step, so there the check is top-1.
TEST(ExportC, ConvReluGlobalPoolHeadGivesTheLogits) {
  for (const bool deep : {false, true})
  for (const sq::Op act : {sq::Op::ReLU, sq::Op::ReLU6, sq::Op::Input}) {
    SCOPED_TRACE(fmt::format("deep {} act {}", deep, static_cast<int>(act)));
    sq::QuantModel qm;
    sq::Graph& g = qm.graph;
    g = sq::Graph("squeezehead", {3, 12, 12}, 7);
    int x = g.input();
    if (deep) x = g.maxpool("mp", g.relu("r1", g.conv2d("c1", x, 8, 3, 1, 1, 1, true)), 2, 2);
    x = g.conv2d("head", x, 7, deep ? 1 : 3, 1, deep ? 0 : 1, 1, true);
    if (act == sq::Op::ReLU) x = g.relu("head.relu", x);
    if (act == sq::Op::ReLU6) x = g.relu6("head.relu6", x);
    g.flatten("flat", g.global_avgpool("gap", x));
    g.infer_shapes();
    g.init_params(7);
    g.input_mean = {0.5f, 0.5f, 0.5f};
    g.input_std = {0.25f, 0.25f, 0.25f};
    qm.bits = sq::BitConfig::uniform(g, 6, 8);
    qm.weight_scales = sq::max_weight_scales(g, qm.bits);
    const int64_t numel = 3 * 12 * 12;
    calibrate_from_simulation(qm, sqtest::random_images(8, numel, 3), 8);
    const sq::IntModel im = sq::integerize(qm);
    sq::GraphExecutor ex = sq::GraphExecutor::prepare(g, im);
    sq::GraphExecutor ref = sq::GraphExecutor::prepare(g, im, sq::Isa::Reference);
    ASSERT_EQ(ex.output_size(), 7);
    EXPECT_NE(ex.describe().back().find("conv+gap(f32"), std::string::npos) << ex.describe().back();
    const int n = 200;
    const std::vector<float> imgs = sqtest::random_images(n, numel, 17);
    double worst = 0, spread = 0;
    int agree = 0;
    std::vector<float> got(7), got_ref(7);
    for (int i = 0; i < n; ++i) {
      const std::vector<float> want = sqtest::simulate(qm, imgs.data() + i * numel);
      ex.run(imgs.data() + i * numel, got.data());
      ref.run(imgs.data() + i * numel, got_ref.data());
      ASSERT_EQ(got, got_ref);
      for (int c = 0; c < 7; ++c) {
        worst = std::max(worst, double(std::fabs(want[c] - got[c])));
        spread = std::max(spread, double(std::fabs(want[c])));
      }
      agree += std::max_element(want.begin(), want.end()) - want.begin() ==
               std::max_element(got.begin(), got.end()) - got.begin();
    }
    if (deep)
      EXPECT_GE(agree, n * 98 / 100);
    else
      EXPECT_LT(worst, 1e-5 * spread);  // the same input codes: float rounding only
    EXPECT_EQ(export_and_compare(qm, 50, 21, "squeezehead"), 50);
    EXPECT_NO_THROW(sq::export_onnx_bytes(qm));
  }
}

// The table-driven activations (hardswish, silu, sigmoid, leaky_relu, hardsigmoid): each is a
// 256-entry table from its input point's codes to its own. The engine agrees with the float
// simulation (fake quantization at the points) on top-1 for >= 99.9 % of random images and every
// logit within 2 % of the largest |logit|; the C program equals the engine bit for bit; the graph
// survives .sqg and the QDQ export passes the ONNX checker.
TEST(ExportC, TableDrivenActivations) {
  sq::QuantModel qm;
  sq::Graph& g = qm.graph;
  g = sq::Graph("acts", {3, 12, 12}, 6);
  int x = g.activation("hswish", sq::Op::HardSwish, g.conv2d("c1", g.input(), 8, 3, 1, 1, 1, true));
  x = g.activation("silu", sq::Op::SiLU, g.conv2d("dw", x, 8, 3, 2, 1, 8, true));
  x = g.activation("sig", sq::Op::Sigmoid, g.conv2d("c2", x, 12, 1, 1, 0, 1, true));
  x = g.activation("hsig", sq::Op::HardSigmoid, g.conv2d("c3", x, 12, 3, 1, 1, 1, true));
  x = g.maxpool("mp", x, 2, 2);
  x = g.activation("leaky", sq::Op::LeakyReLU, g.conv2d("c4", x, 10, 1, 1, 0, 1, true), 0.1);
  g.linear("fc", g.flatten("flat", x), 6);  // no global pooling: random images would average out
  g.infer_shapes();
  g.init_params(5);
  g.input_mean = {0.5f, 0.5f, 0.5f};
  g.input_std = {0.25f, 0.25f, 0.25f};
  qm.bits = sq::BitConfig::uniform(g, 8, 8);
  qm.bits.layers["c3"].wbits = 4;
  qm.weight_scales = sq::max_weight_scales(g, qm.bits);
  const auto pts = sq::activation_quant_points(g, qm.bits);
  for (const char* a : {"hswish", "silu", "sig", "leaky", "hsig", "c1", "dw", "c2", "c3", "c4"})
    EXPECT_TRUE(pts.count(g.index_of(a))) << a << " is not a quantization point";
  const int64_t numel = 3 * 12 * 12;
  calibrate_from_simulation(qm, sqtest::random_images(16, numel, 3), 16);

  sq::GraphExecutor ex = sq::GraphExecutor::prepare(g, sq::integerize(qm));
  int luts = 0;
  // "table …" or, on AVX-512 VBMI plans, "table(avx512) …"
  for (const std::string& d : ex.describe())
    luts += d.rfind("table ", 0) == 0 || d.rfind("table(avx512) ", 0) == 0;
  EXPECT_GE(luts, 5);
  const int n = 1000;
  const std::vector<float> imgs = sqtest::random_images(n, numel, 17);
  int agree = 0;
  double worst = 0, spread = 0;
  std::vector<float> got(6);
  for (int i = 0; i < n; ++i) {
    const std::vector<float> want = sqtest::simulate(qm, imgs.data() + i * numel);
    ex.run(imgs.data() + i * numel, got.data());
    agree += std::max_element(want.begin(), want.end()) - want.begin() ==
             std::max_element(got.begin(), got.end()) - got.begin();
    for (int c = 0; c < 6; ++c) {
      worst = std::max(worst, double(std::fabs(want[c] - got[c])));
      spread = std::max(spread, double(std::fabs(want[c])));
    }
  }
  std::printf("[ acts ] engine vs simulation: top-1 %d/%d, largest logit difference %.5f (largest "
              "|logit| %.3f)\n", agree, n, worst, spread);
  EXPECT_GE(agree, n * 999 / 1000);
  EXPECT_LT(worst, 0.02 * spread);
  EXPECT_EQ(export_and_compare(qm, 100, 21, "acts"), 100);
  // .sqg round trip keeps leaky_relu's slope; the QDQ export passes the checker.
  const std::string dir = sqtest::temp_dir("acts_io");
  sq::save_qmodel(dir + "/q.sqg", qm);
  EXPECT_EQ(sq::load_qmodel(dir + "/q.sqg").graph.node("leaky").alpha, 0.1);
  EXPECT_NO_THROW(sq::export_onnx_bytes(qm));
}

// Channel concat (an Inception-like block: 1x1, 3x3 and max-pool branches at different points)
// and squeeze-excitation (x · gate with the gate from global pooling → conv 1x1 → ReLU → conv 1x1
// → HardSigmoid, and from global pooling → flatten → linear → ReLU → linear → Sigmoid, a flat
// gate), and a max-pool with ceil_mode: the optimized engine equals its Isa::Reference plan bit for bit, agrees with the float
// simulation (fake quantization at the points) on top-1 for >= 99 % of random images; the C
// program equals the engine bit for bit; the graph survives .sqg; the QDQ export passes the
// ONNX checker.
TEST(ExportC, ConcatAndSqueezeExcitation) {
  sq::QuantModel qm;
  sq::Graph& g = qm.graph;
  g = sq::Graph("concat_se", {3, 12, 12}, 6);
  int stem = g.relu("stem_relu", g.conv2d("stem", g.input(), 8, 3, 1, 1, 1, true));
  int b1 = g.relu("b1_relu", g.conv2d("b1", stem, 6, 1, 1, 0, 1, true));
  int b2 = g.relu6("b2_relu6", g.conv2d("b2", stem, 10, 3, 1, 1, 1, true));
  int b3 = g.maxpool("b3_pool", stem, 3, 1, 1);
  int cat = g.concat("cat", {b1, b2, b3});  // 24 channels
  // SE with 1x1 convs on the pooled vector.
  int s = g.global_avgpool("se1_gap", cat);
  s = g.relu("se1_relu", g.conv2d("se1_reduce", s, 6, 1, 1, 0, 1, true));
  s = g.activation("se1_gate", sq::Op::HardSigmoid, g.conv2d("se1_expand", s, 24, 1, 1, 0, 1, true));
  int x = g.mul("se1_mul", cat, s);
  x = g.activation("dw_act", sq::Op::HardSwish, g.conv2d("dw", x, 24, 3, 2, 1, 24, true));
  // SE with linear layers: a flat gate.
  int t = g.flatten("se2_flat", g.global_avgpool("se2_gap", x));
  t = g.relu("se2_relu", g.linear("se2_reduce", t, 8));
  t = g.activation("se2_gate", sq::Op::Sigmoid, g.linear("se2_expand", t, 24));
  x = g.mul("se2_mul", x, t);
  x = g.maxpool("cpool", x, 3, 2, 0, /*ceil_mode=*/true);  // 6x6 -> 3x3 (2x2 without)
  x = g.concat("cat2", {x, g.relu("pw_relu", g.conv2d("pw", x, 8, 1, 1, 0, 1, true))});
  g.linear("fc", g.flatten("flat", x), 6);  // no global pooling: random images would average out
  g.infer_shapes();
  ASSERT_EQ(g.node("cat").out_shape, (sq::Shape{24, 12, 12}));
  ASSERT_EQ(g.node("cat2").out_shape, (sq::Shape{32, 3, 3}));
  g.init_params(9);
  g.input_mean = {0.5f, 0.5f, 0.5f};
  g.input_std = {0.25f, 0.25f, 0.25f};
  qm.bits = sq::BitConfig::uniform(g, 8, 8);
  qm.bits.layers["b2"].wbits = 4;
  qm.bits.layers["pw"].abits = 6;
  qm.weight_scales = sq::max_weight_scales(g, qm.bits);
  const auto pts = sq::activation_quant_points(g, qm.bits);
  for (const char* a : {"cat", "b1_relu", "b2_relu6", "b3_pool", "se1_mul", "se1_gate", "se2_mul",
                        "se2_gate", "cat2", "pw_relu"})
    EXPECT_TRUE(pts.count(g.index_of(a))) << a << " is not a quantization point";
  const int64_t numel = 3 * 12 * 12;
  calibrate_from_simulation(qm, sqtest::random_images(16, numel, 4), 16);

  const sq::IntModel im = sq::integerize(qm);
  sq::GraphExecutor ex = sq::GraphExecutor::prepare(g, im);
  sq::GraphExecutor ref = sq::GraphExecutor::prepare(g, im, sq::Isa::Reference);
  int muls = 0, luts = 0;
  for (const std::string& d : ex.describe()) {
    muls += d.rfind("mul ", 0) == 0 || d.rfind("mul(avx512) ", 0) == 0;
    luts += d.rfind("table cat", 0) == 0 || d.rfind("table(avx512) cat", 0) == 0;
  }
  EXPECT_EQ(muls, 2);
  EXPECT_EQ(luts, 5);  // one table per concat input
  const int n = 1000;
  const std::vector<float> imgs = sqtest::random_images(n, numel, 23);
  int agree = 0, exact = 0;
  double worst = 0, spread = 0;
  std::vector<float> got(6), oracle(6);
  for (int i = 0; i < n; ++i) {
    const std::vector<float> want = sqtest::simulate(qm, imgs.data() + i * numel);
    ex.run(imgs.data() + i * numel, got.data());
    ref.run(imgs.data() + i * numel, oracle.data());
    exact += std::memcmp(got.data(), oracle.data(), sizeof(float) * 6) == 0;
    agree += std::max_element(want.begin(), want.end()) - want.begin() ==
             std::max_element(got.begin(), got.end()) - got.begin();
    for (int c = 0; c < 6; ++c) {
      worst = std::max(worst, double(std::fabs(want[c] - got[c])));
      spread = std::max(spread, double(std::fabs(want[c])));
    }
  }
  std::printf("[ concat+se ] engine vs simulation: top-1 %d/%d, largest logit difference %.5f "
              "(largest |logit| %.3f); engine = reference plan on %d/%d\n",
              agree, n, worst, spread, exact, n);
  EXPECT_EQ(exact, n);
  EXPECT_GE(agree, n * 99 / 100);
  EXPECT_LT(worst, 0.05 * spread);
  EXPECT_EQ(export_and_compare(qm, 100, 31, "concat_se"), 100);
  const std::string dir = sqtest::temp_dir("concat_se_io");
  sq::save_qmodel(dir + "/q.sqg", qm);
  const sq::QuantModel back = sq::load_qmodel(dir + "/q.sqg");
  EXPECT_EQ(back.graph.node("cat").inputs.size(), 3u);
  EXPECT_EQ(back.graph.node("se2_mul").op, sq::Op::Mul);
  EXPECT_TRUE(back.graph.node("cpool").ceil_mode);
  EXPECT_NO_THROW(sq::export_onnx_bytes(qm));
}

// The PyTorch fixtures with concat and squeeze-excitation (scripts/make_onnx_fixtures.py:
// firenet has Concat, Pad + AveragePool, MaxPool with ceil_mode and ReduceMean; senet has Mul
// gates from 1x1 convs and from linear layers, ReduceMean and a dropped Softmax; shufflenet has
// two channel shuffles; rectnet Inception's non-square and dilated convs; shufflev2
// ShuffleNetV2's chunk as channel slices), imported, BN folded,
// W8A8 with 4-bit
// weights in one layer, calibrated on the float simulation: the engine equals its reference
// plan, and the C program equals the engine, bit for bit.
TEST(ExportC, ImportedConcatAndSqueezeExcitationFixtures) {
  if (!have_c_compiler()) GTEST_SKIP() << "no C compiler (cc) or make";
  for (const char* file :
       {"firenet-op13-dyn", "senet-op17-dyn", "shufflenet-op13-dyn", "rectnet-op17-dyn",
        "shufflev2-op13-dyn"}) {
    sq::QuantModel qm;
    qm.graph = sq::fold_batchnorm(
        sq::import_onnx(std::string(SQ_SOURCE_DIR) + "/tests/data/onnx/" + file + ".onnx"));
    qm.graph.input_mean.assign(3, 0.0f);
    qm.graph.input_std.assign(3, 1.0f);
    qm.bits = sq::BitConfig::uniform(qm.graph, 8, 8);
    qm.bits.layers[qm.graph.nodes[qm.graph.weight_layers()[1]].name].wbits = 4;
    qm.weight_scales = sq::max_weight_scales(qm.graph, qm.bits);
    calibrate_from_simulation(qm, sqtest::random_images(8, 3 * 16 * 16, 6), 8);
    const sq::IntModel im = sq::integerize(qm);
    sq::GraphExecutor ex = sq::GraphExecutor::prepare(qm.graph, im);
    sq::GraphExecutor ref = sq::GraphExecutor::prepare(qm.graph, im, sq::Isa::Reference);
    const std::vector<float> imgs = sqtest::random_images(200, 3 * 16 * 16, 8);
    std::vector<float> a(10), b(10);
    int exact = 0;
    for (int i = 0; i < 200; ++i) {
      ex.run(imgs.data() + i * 3 * 16 * 16, a.data());
      ref.run(imgs.data() + i * 3 * 16 * 16, b.data());
      exact += std::memcmp(a.data(), b.data(), sizeof(float) * 10) == 0;
    }
    EXPECT_EQ(exact, 200) << file << ": optimized engine against its reference plan";
    EXPECT_EQ(export_and_compare(qm, 100, 41, file), 100) << file;
  }
}

// The runtime's fixed-point arithmetic against the C++ engine's, on values the models rarely
// reach: accumulators beyond int32, shifts from -31 to 95, saturation; and unpacking at 0..8 bits.
TEST(ExportC, RuntimeArithmeticEqualsTheEngine) {
  if (!have_c_compiler()) GTEST_SKIP() << "no C compiler (cc) or make";
  const std::string dir = sqtest::temp_dir("export_c_rt");
  // Any model: export writes the runtime files.
  sq::export_c(sqtest::synthetic_qmodel("mlp", {1, 4, 4}, 3, 1), dir);
  struct Rec {
    int64_t acc;
    int32_t mult, shift;
  };
  std::vector<Rec> recs;
  std::mt19937_64 rng(3);
  const int64_t accs[] = {0,
                          1,
                          -1,
                          2,
                          -2,
                          3,
                          -3,
                          INT32_MAX,
                          INT32_MIN,
                          int64_t{1} << 40,
                          -(int64_t{1} << 40),
                          INT64_MAX / 4,
                          INT64_MIN / 4,
                          12345,
                          -12345};
  for (int64_t a : accs)
    for (int shift = -31; shift <= 95; ++shift)
      for (int32_t m : {0, 1 << 30, INT32_MAX, 1518500250}) recs.push_back({a, m, shift});
  for (int i = 0; i < 20000; ++i) {
    const int64_t a = static_cast<int64_t>(rng()) >> (rng() % 64);
    const int32_t m = static_cast<int32_t>((1u << 30) + rng() % (1u << 30));
    recs.push_back({a, m, static_cast<int32_t>(rng() % 80) - 10});
  }
  // Ties: acc · M = k + 1/2 exactly must round up, for either sign.
  for (int64_t a = -40; a <= 40; ++a)
    for (int shift : {31, 32}) recs.push_back({a, 1 << 30, shift});
  sq::write_file_atomic(dir + "/rq.bin", bytes_of(recs));

  std::vector<uint8_t> packed_in;
  std::vector<int32_t> want_w;
  std::vector<int32_t> lens;
  for (int bits = 0; bits <= 8; ++bits) {
    const int n = 37;
    std::vector<int32_t> v(n);
    for (int32_t& x : v) {
      if (bits == 0)
        x = 0;
      else if (bits == 1)
        x = rng() % 2 ? 1 : -1;
      else
        x = static_cast<int32_t>(rng() % (1u << bits)) - (1 << (bits - 1));
    }
    std::vector<uint8_t> p = sq::pack_bits(v, bits);
    lens.push_back(static_cast<int32_t>(p.size()));
    packed_in.insert(packed_in.end(), p.begin(), p.end());
    want_w.insert(want_w.end(), v.begin(), v.end());
  }
  sq::write_file_atomic(dir + "/packed.bin", bytes_of(packed_in));
  // Residual adds over every pair of codes; scale ratios 1/2 and 1/4 make exact ties frequent.
  std::vector<sq::AddParams> adds = {sq::make_add_params(0.5f, 3, 0.25f, 200, 1.0f, 128, 0, 255),
                                     sq::make_add_params(0.05f, 128, 0.07f, 0, 0.09f, 40, 40, 200),
                                     sq::make_add_params(1.0f, 0, 1.0f, 255, 0.5f, 7, 0, 15),
                                     sq::make_add_params(0.013f, 17, 0.5f, 99, 0.02f, 0, 0, 255),
                                     // 2^30 apart: the fixed-point fallback
                                     sq::make_add_params(0x1p-30f, 5, 1.0f, 9, 0.7f, 3, 0, 255)};
  EXPECT_FALSE(adds.back().exact());
  std::vector<int32_t> add_in;
  for (const sq::AddParams& a : adds)
    for (int32_t v : {a.zp_a, a.zp_b, a.zp_out, a.lo, a.hi, a.m_a.multiplier, a.m_a.shift,
                      a.m_b.multiplier, a.m_b.shift, a.exact() ? 1 : 0})
      add_in.push_back(v);
  sq::write_file_atomic(dir + "/add.bin", bytes_of(add_in));
  // The exact form's tables (all zero: the fixed-point fallback).
  std::vector<int64_t> add_tab;
  for (const sq::AddParams& a : adds)
    for (const std::vector<int64_t>* t : {&a.ta, &a.tb, &a.thr}) {
      const size_t len = t == &a.thr ? 257 : 256;
      for (size_t i = 0; i < len; ++i) add_tab.push_back(a.exact() ? (*t)[i] : 0);
    }
  sq::write_file_atomic(dir + "/add_tab.bin", bytes_of(add_tab));
  sq::write_file_atomic(dir + "/harness.c", R"(#include <stdio.h>
#include "sq_runtime.h"
typedef struct { int64_t acc; int32_t mult, shift; } rec;
int main(void) {
  rec r;
  unsigned char packed[4096];
  int8_t w[37];
  int bits, i;
  size_t at = 0, len;
  FILE* f = fopen("rq.bin", "rb");
  FILE* o = fopen("rq.out", "wb");
  while (fread(&r, sizeof r, 1, f) == 1) {
    sq_rq m;
    int32_t y;
    m.mult = r.mult;
    m.shift = r.shift;
    y = sq_requantize(r.acc, m);
    fwrite(&y, sizeof y, 1, o);
  }
  fclose(f);
  fclose(o);
  f = fopen("packed.bin", "rb");
  o = fopen("unpacked.out", "wb");
  len = fread(packed, 1, sizeof packed, f);
  for (bits = 0; bits <= 8; ++bits) {
    sq_unpack_row(packed + at, 37, bits, w);
    at += (size_t)(37 * bits + 7) / 8;
    for (i = 0; i < 37; ++i) {
      int32_t v = w[i];
      fwrite(&v, sizeof v, 1, o);
    }
  }
  fclose(f);
  fclose(o);
  {
    static uint8_t a[65536], b[65536], y[65536];
    static int64_t tab[769];
    FILE* ft = fopen("add_tab.bin", "rb");
    int32_t q[10];
    for (i = 0; i < 65536; ++i) {
      a[i] = (uint8_t)(i >> 8);
      b[i] = (uint8_t)i;
    }
    f = fopen("add.bin", "rb");
    o = fopen("add.out", "wb");
    while (fread(q, sizeof q, 1, f) == 1) {
      sq_add_params p;
      p.zp_a = q[0];
      p.zp_b = q[1];
      p.zp_out = q[2];
      p.lo = q[3];
      p.hi = q[4];
      p.m_a.mult = q[5];
      p.m_a.shift = q[6];
      p.m_b.mult = q[7];
      p.m_b.shift = q[8];
      if (fread(tab, sizeof tab, 1, ft) != 1) return 4;
      p.ta = q[9] ? tab : 0;
      p.tb = tab + 256;
      p.thr = tab + 512;
      sq_add_u8(&p, a, b, 65536, y);
      fwrite(y, 1, sizeof y, o);
    }
    fclose(f);
    fclose(o);
    fclose(ft);
  }
  return at == len ? 0 : 3;
}
)");
  std::string log;
  ASSERT_EQ(sh(fmt::format("cd '{}' && cc {} -o harness harness.c sq_runtime.c -lm && ./harness",
                           dir, kCFlags),
               &log),
            0)
      << log;
  const std::vector<int32_t> got = read_vec<int32_t>(dir + "/rq.out");
  ASSERT_EQ(got.size(), recs.size());
  int bad = 0;
  for (size_t i = 0; i < recs.size() && bad < 10; ++i) {
    const int32_t want = sq::requantize(recs[i].acc, sq::Requant{recs[i].mult, recs[i].shift});
    if (got[i] != want) {
      ++bad;
      ADD_FAILURE() << "requantize(" << recs[i].acc << ", " << recs[i].mult << ", " << recs[i].shift
                    << "): C " << got[i] << ", engine " << want;
    }
  }
  EXPECT_EQ(read_vec<int32_t>(dir + "/unpacked.out"), want_w);
  const std::vector<uint8_t> add_got = read_vec<uint8_t>(dir + "/add.out");
  ASSERT_EQ(add_got.size(), adds.size() * 65536);
  std::vector<uint8_t> a(65536), b(65536), want(65536);
  for (int i = 0; i < 65536; ++i) {
    a[i] = static_cast<uint8_t>(i >> 8);
    b[i] = static_cast<uint8_t>(i);
  }
  for (size_t k = 0; k < adds.size(); ++k) {
    sq::add_u8_ref(adds[k], a.data(), b.data(), 65536, want.data());
    EXPECT_EQ(0, std::memcmp(want.data(), add_got.data() + k * 65536, 65536)) << "add params " << k;
  }
}

TEST(ExportC, WritesTheFilesAndRejectsWhatItCannotRun) {
  const sq::QuantModel qm = sqtest::synthetic_qmodel("lenet5", {1, 28, 28}, 10, 2);
  const std::string dir = sqtest::temp_dir("export_c_files") + "/a/b";
  sq::export_c(qm, dir);
  for (const char* f :
       {"model.h", "model_data.c", "sq_runtime.h", "sq_runtime.c", "main_example.c", "Makefile"})
    EXPECT_TRUE(sq::file_exists(dir + "/" + f)) << f;
  // The runtime written is the repository's C file, byte for byte.
  EXPECT_EQ(sq::read_file(dir + "/sq_runtime.c"),
            sq::read_file(std::string(SQ_SOURCE_DIR) + "/src/engine/c_runtime/sq_runtime.c"));
  EXPECT_EQ(sq::read_file(dir + "/sq_runtime.h"),
            sq::read_file(std::string(SQ_SOURCE_DIR) + "/src/engine/c_runtime/sq_runtime.h"));
  const std::string data = sq::read_file(dir + "/model_data.c");
  EXPECT_EQ(data.find("malloc"), std::string::npos);
  EXPECT_NE(data.find("void sq_model_run(const float* image, float* logits)"), std::string::npos);

  // An unfolded batchnorm is named.
  sq::QuantModel bn = qm;
  bn.graph = sq::make_zoo_model("resnet8", {3, 12, 12}, 10, 1);
  bn.bits = sq::BitConfig::uniform(bn.graph, 8, 8);
  bn.weight_scales = sq::max_weight_scales(bn.graph, bn.bits);
  for (const auto& [node, bits] : sq::activation_quant_points(bn.graph, bn.bits))
    bn.acts[bn.graph.nodes[node].name] = sq::act_quant_from_range({-1.0, 1.0}, bits);
  EXPECT_NE(sqtest::error_of([&] { sq::export_c(bn, dir); }).find("batchnorm"), std::string::npos);
}

// --c-target cortex-m-dsp: the same files, the runtime behind one define that selects the DSP
// kernels (their equality with the portable ones runs under QEMU: mcu/kernel_test.sh).
TEST(ExportC, CortexMDspTargetIsTheRuntimeBehindOneDefine) {
  EXPECT_EQ(sq::parse_c_target("portable"), sq::CTarget::Portable);
  EXPECT_EQ(sq::parse_c_target("cortex-m-dsp"), sq::CTarget::CortexMDsp);
  const std::string e = sqtest::error_of([] { sq::parse_c_target("neon"); });
  EXPECT_NE(e.find("'neon'"), std::string::npos) << e;
  EXPECT_NE(e.find("cortex-m-dsp"), std::string::npos) << e;

  const sq::QuantModel qm = sqtest::synthetic_qmodel("lenet5", {1, 28, 28}, 10, 2);
  const std::string portable = sqtest::temp_dir("export_c_target") + "/portable";
  const std::string dsp = sqtest::temp_dir("export_c_target") + "/dsp";
  sq::export_c(qm, portable);
  sq::export_c(qm, dsp, sq::CTarget::CortexMDsp);
  const std::string src = sq::read_file(dsp + "/sq_runtime.c");
  const std::string base = sq::read_file(portable + "/sq_runtime.c");
  ASSERT_GT(src.size(), base.size());
  EXPECT_EQ(src.substr(src.size() - base.size()), base);  // the portable source, unchanged
  EXPECT_NE(src.substr(0, src.size() - base.size()).find("#define SQ_TARGET_CORTEX_M_DSP 1"),
            std::string::npos);
  for (const char* f : {"model.h", "model_data.c", "sq_runtime.h", "main_example.c", "Makefile"})
    EXPECT_EQ(sq::read_file(dsp + "/" + f), sq::read_file(portable + "/" + f)) << f;
}

}  // namespace
