// Fake quantization (values and gradients by hand), BN folding and CLE equivalence, PTQ and QAT
// end to end on a tiny synthetic task.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "../core/quant_models.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/quantize.h"
#include "sigmaquant/search.h"
#include "sigmaquant/train.h"
#include "sigmaquant/transform.h"
#include "sigmaquant/zoo.h"
#include "test_util.h"
#include "torch/fake_quant.h"
#include "torch/graph_module.h"

namespace {

// input [1,1,3] -> flatten -> linear(3 -> 1)
sq::QuantModel one_linear(int wbits, float wscale, sq::ActQuant input_act) {
  sq::QuantModel qm;
  sq::Graph& g = qm.graph;
  g = sq::Graph("lin", {1, 1, 3}, 1);
  g.linear("fc", g.flatten("flat", g.input()), 1, false);
  g.infer_shapes();
  g.init_params(1);
  g.nodes[2].params["weight"].data = {0.3f, -0.7f, 1.6f};
  g.input_mean = {0.0f};
  g.input_std = {1.0f};
  qm.bits = sq::BitConfig::uniform(g, wbits, input_act.bits);
  qm.weight_scales["fc"] = {wscale};
  qm.acts["flat"] = input_act;
  return qm;
}

TEST(FakeQuant, WeightValuesAndLsqGradientsByHand) {
  sq::ActQuant a = sq::act_quant_from_range({0.0, 1.0}, 8);
  sq::QuantModel qm = one_linear(3, 0.5f, a);
  sq::QuantSim sim(qm, sq::WeightMode::LSQ, sq::ActMode::Fixed);
  torch::Tensor w = torch::tensor({0.3f, -0.7f, 1.6f}).reshape({1, 3}).requires_grad_(true);
  torch::Tensor out = sim.weight(2, w);
  // w / s = 0.6, -1.4, 3.2 -> clamp to +-3 -> round: 1, -1, 3 -> times 0.5
  auto o = out.detach().flatten();
  EXPECT_FLOAT_EQ(o[0].item<float>(), 0.5f);
  EXPECT_FLOAT_EQ(o[1].item<float>(), -0.5f);
  EXPECT_FLOAT_EQ(o[2].item<float>(), 1.5f);
  out.sum().backward();
  auto gw = w.grad().flatten();
  EXPECT_FLOAT_EQ(gw[0].item<float>(), 1.0f);  // STE inside the range
  EXPECT_FLOAT_EQ(gw[1].item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(gw[2].item<float>(), 0.0f);  // clipped
  // LSQ: d/ds = (round(v) - v) inside, +-qmax outside: 0.4 + 0.4 + 3, times g = 1/sqrt(3 * 3)
  torch::Tensor gs = sim.named_parameters()["w2"].grad();
  EXPECT_NEAR(gs.item<float>(), 3.8 / 3.0, 1e-5);
}

TEST(FakeQuant, ActivationValuesAndLsqGradientsByHand) {
  sq::ActQuant a;
  a.bits = 4;
  a.scale = 0.1f;
  a.zero_point = 2;
  a.lo = -0.2;
  a.hi = 1.3;
  sq::QuantModel qm = one_linear(8, 0.1f, a);
  sq::QuantSim sim(qm, sq::WeightMode::Fixed, sq::ActMode::LSQ);
  torch::Tensor x = torch::tensor({-0.2f, 0.26f, 1.0f, 3.0f}).requires_grad_(true);
  torch::Tensor y = sim.act(1, x);
  // x/s = -2, 2.6, 10, 30 -> round + zp = 0, 5, 12, 32 -> clamp 0..15 -> minus zp, times s
  const float want[] = {-0.2f, 0.3f, 1.0f, 1.3f};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[i].item<float>(), want[i], 1e-6) << i;
  y.sum().backward();
  const float gx[] = {1, 1, 1, 0};
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(x.grad()[i].item<float>(), gx[i]) << i;
  // d/ds: 0 + (3 - 2.6) + 0 + (15 - 2), times g = 1/sqrt(4 * 15)
  EXPECT_NEAR(sim.named_parameters()["a1"].grad().item<float>(), 13.4 / std::sqrt(60.0), 1e-5);
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i)
    m = std::max(m, std::fabs(double(a[i]) - b[i]) / std::max(1.0, std::fabs(double(a[i]))));
  return m;
}

// The fused activation quantizer's AVX2 loops give the scalar loops' bits, forward and backward,
// on every tail length and on the awkward values: exact ties (k + 1/2 steps, which round to
// even), the range's edges, far outside it, ±0, subnormals, infinities and NaN.
TEST(FakeQuant, VectorActivationQuantizerEqualsTheScalarOne) {
  if (!sq::act_fake_quant_has_vector()) GTEST_SKIP() << "this CPU lacks AVX2";
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  const float inf = std::numeric_limits<float>::infinity();
  int cases = 0;
  for (float s : {0.0371f, 0.5f, 1.0f, 3e-5f})
    for (float zp : {0.0f, 7.0f, 128.0f})
      for (float qmax : {3.0f, 15.0f, 255.0f})
        for (int64_t n : {0, 1, 7, 8, 9, 15, 16, 17, 61, 1000}) {
          std::vector<float> x(static_cast<size_t>(n)), g(x.size());
          for (size_t i = 0; i < x.size(); ++i) {
            const float k = std::round(nd(rng) * qmax / 2);
            switch (i % 9) {
              case 0:
                x[i] = (k + 0.5f) * s;
                break;  // a tie
              case 1:
                x[i] = (qmax - zp + 0.5f) * s;
                break;  // the top edge
              case 2:
                x[i] = (-zp - 0.5f) * s;
                break;  // the bottom edge
              case 3:
                x[i] = i % 2 ? -0.0f : 1e-39f;
                break;
              case 4:
                x[i] = i % 4 == 0 ? inf : i % 4 == 1 ? -inf : std::nanf("");
                break;
              default:
                x[i] = nd(rng) * s * qmax;
                break;
            }
            g[i] = nd(rng);
          }
          std::vector<float> y0(x.size()), y1(x.size()), gx0(x.size()), gx1(x.size()), t0(x.size()),
              t1(x.size());
          sq::act_fake_quant(x.data(), y0.data(), n, s, zp, qmax, false);
          sq::act_fake_quant(x.data(), y1.data(), n, s, zp, qmax, true);
          sq::act_fake_quant_grad(x.data(), g.data(), gx0.data(), t0.data(), n, s, zp, qmax, false);
          sq::act_fake_quant_grad(x.data(), g.data(), gx1.data(), t1.data(), n, s, zp, qmax, true);
          const size_t bytes = x.size() * sizeof(float);
          ASSERT_EQ(0, std::memcmp(y0.data(), y1.data(), bytes))
              << s << " " << zp << " " << qmax << " " << n;
          ASSERT_EQ(0, std::memcmp(gx0.data(), gx1.data(), bytes))
              << s << " " << zp << " " << qmax << " " << n;
          ASSERT_EQ(0, std::memcmp(t0.data(), t1.data(), bytes))
              << s << " " << zp << " " << qmax << " " << n;
          ++cases;
        }
  EXPECT_EQ(cases, 360);
  // The scalar loop is the formula: a tie rounds to even, the range clamps.
  const float x[3] = {2.5f, -9.0f, 300.0f};
  float y[3];
  sq::act_fake_quant(x, y, 3, 1.0f, 0.0f, 255.0f, true);
  EXPECT_EQ(y[0], 2.0f);
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_EQ(y[2], 255.0f);
}

// Phase 2's output KL, computed for every layer in one pass (the FP32 prefix reused), equals the
// definition: the FP32 network with only that layer's weights quantized (per-channel MSE scales),
// mean KL(softmax FP32 || softmax quantized) over the KL images — here one forward per layer.
// 600 images: two evaluation batches (512 + 88).
TEST(QatOracle, OutputKlOfEveryLayerEqualsOneForwardPerLayer) {
  sq::Graph g = sq::make_zoo_model("resnet8", {3, 12, 12}, 10, 7);
  g.input_mean.assign(3, 0.5f);
  g.input_std.assign(3, 0.25f);
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  for (auto& n : g.nodes)
    if (n.op == sq::Op::BatchNorm)
      for (float& x : n.params["running_mean"].data) x = nd(rng);
  sq::Dataset d;
  d.name = "random";
  d.image_shape = {3, 12, 12};
  d.num_classes = 10;
  d.images = sqtest::random_images(600, 3 * 12 * 12, 9);
  for (int i = 0; i < 600; ++i) d.labels.push_back(i % 10);
  sq::OracleOptions o;
  o.kl_samples = 600;
  o.val_samples = 50;
  o.progress = false;
  sq::QatOracle oracle(g, d, d, o);
  const sq::Graph folded = sq::fold_batchnorm(g);
  auto softmax = [](const std::vector<float>& z) {
    std::vector<double> p(z.size());
    for (size_t r = 0; r < z.size() / 10; ++r) {
      double m = *std::max_element(z.begin() + r * 10, z.begin() + r * 10 + 10), s = 0;
      for (size_t c = 0; c < 10; ++c) s += p[r * 10 + c] = std::exp(z[r * 10 + c] - m);
      for (size_t c = 0; c < 10; ++c) p[r * 10 + c] /= s;
    }
    return p;
  };
  const std::vector<double> ref = softmax(sq::predict(folded, d));
  int checked = 0;
  for (int bits : {2, 4}) {
    for (int li : folded.weight_layers()) {
      sq::Graph q = folded;
      sq::Node& n = q.nodes[li];
      sq::Tensor& w = n.params.at("weight");
      const std::vector<float> sc = sq::mse_weight_scales(n, bits, true);
      const int64_t rows = w.shape[0], cols = w.size() / rows;
      const double qmax = std::ldexp(1.0, bits - 1) - 1;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t k = 0; k < cols && sc[r] != 0; ++k) {
          float& v = w.data[r * cols + k];
          v = static_cast<float>(std::clamp(std::nearbyint(double(v) / sc[r]), -qmax, qmax) *
                                 sc[r]);
        }
      const std::vector<double> p = softmax(sq::predict(q, d));
      double kl = 0;
      for (size_t i = 0; i < p.size(); ++i)
        if (ref[i] > 0) kl += ref[i] * std::log(ref[i] / std::max(p[i], 1e-12));
      kl /= 600;
      const double got = oracle.layer_kl(n.name, bits);
      EXPECT_NEAR(got, kl, 1e-9 * kl + 1e-15) << n.name << " at " << bits << " bits";
      EXPECT_GT(kl, 0) << n.name;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 2 * static_cast<int>(folded.weight_layers().size()));
  EXPECT_THROW(oracle.layer_kl("no-such-layer", 2), sq::Error);
}

TEST(Transform, FoldedModelEqualsTheOriginal) {
  sq::configure_runtime(1);
  sq::Graph g = sq::make_zoo_model("resnet8", {1, 12, 12}, 10, 2);
  std::mt19937_64 rng(3);
  for (auto& n : g.nodes)
    if (n.op == sq::Op::BatchNorm)
      for (auto& [p, t] : n.params)
        for (float& v : t.data)
          v = p == "running_var" ? 0.5f + (rng() % 100) / 50.0f : ((rng() % 200) - 100) / 100.0f;
  g.input_mean = {0.1f};
  g.input_std = {0.3f};
  sq::Dataset d = sqtest::synthetic_dataset(64, 1);
  auto before = sq::predict(g, d);
  auto after = sq::predict(sq::fold_batchnorm(g), d);
  EXPECT_LT(max_rel_diff(before, after), 1e-5);
}

TEST(Transform, EqualizedModelComputesTheSame) {
  sq::configure_runtime(1);
  sq::Graph g = sq::make_zoo_model("mobilenetv2", {1, 12, 12}, 10, 2);
  for (auto& n : g.nodes)
    if (n.op == sq::Op::ReLU6) n.op = sq::Op::ReLU;  // CLE is exact through ReLU
  g.input_mean = {0.1f};
  g.input_std = {0.3f};
  sq::Graph f = sq::fold_batchnorm(g);
  sq::Dataset d = sqtest::synthetic_dataset(32, 1);
  auto before = sq::predict(f, d);
  EXPECT_GT(sq::cross_layer_equalize(f, false), 5);
  EXPECT_LT(max_rel_diff(before, sq::predict(f, d)), 1e-4);
}

class QuantE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    sq::configure_runtime(1);
    train_ = new sq::Dataset(sqtest::synthetic_dataset(400, 1));
    test_ = new sq::Dataset(sqtest::synthetic_dataset(200, 2));
    model_ = new sq::Graph(sq::make_zoo_model("resnet8", train_->image_shape, 10, 1));
    sq::TrainOptions o;
    o.epochs = 4;
    o.batch_size = 32;
    o.lr = 0.05;
    o.augment = false;
    o.progress = false;
    sq::train(*model_, *train_, nullptr, o);
  }
  static sq::Dataset *train_, *test_;
  static sq::Graph* model_;
};
sq::Dataset* QuantE2E::train_;
sq::Dataset* QuantE2E::test_;
sq::Graph* QuantE2E::model_;

TEST_F(QuantE2E, PtqAtEightBitsKeepsTheAccuracy) {
  double fp = sq::evaluate(*model_, *test_).accuracy;
  ASSERT_GT(fp, 0.9);
  for (sq::Calib c : {sq::Calib::MinMax, sq::Calib::Percentile, sq::Calib::MSE, sq::Calib::KL}) {
    sq::PtqOptions o;
    o.calib = c;
    o.calib_samples = 128;
    sq::QuantModel qm = sq::ptq(*model_, sq::BitConfig::uniform(*model_, 8, 8), *train_, o);
    double acc = sq::evaluate_quant(qm, *test_).accuracy;
    // KL-entropy clips this small network's activations too hard (measured, docs/quantization.md:
    // also 1.97 points below FP32 on resnet20); it must still run and beat chance clearly.
    EXPECT_GE(acc, c == sq::Calib::KL ? 0.3 : fp - 0.03) << sq::calib_name(c);
  }
  sq::PtqOptions all;
  all.calib = sq::Calib::MSE;
  all.cle = all.bias_correction = true;
  sq::QuantModel qm = sq::ptq(*model_, sq::BitConfig::uniform(*model_, 8, 8), *train_, all);
  EXPECT_GE(sq::evaluate_quant(qm, *test_).accuracy, fp - 0.03);
  EXPECT_EQ(qm.meta["ptq"]["bias_correction"], true);
}

TEST_F(QuantE2E, QatRecoversLowBitsAndResumesExactly) {
  std::string dir = sqtest::temp_dir("qat");
  sq::PtqOptions po;
  po.calib = sq::Calib::MSE;
  po.calib_samples = 128;
  const sq::QuantModel init = sq::ptq(*model_, sq::BitConfig::uniform(*model_, 2, 8), *train_, po);
  double ptq_acc = sq::evaluate_quant(init, *test_).accuracy;
  sq::TrainOptions o;
  o.epochs = 2;
  o.batch_size = 32;
  o.lr = 0.01;
  o.augment = false;
  o.progress = false;
  sq::QuantModel full = init;
  sq::qat(full, *train_, nullptr, o);
  double qat_acc = sq::evaluate_quant(full, *test_).accuracy;
  EXPECT_GE(qat_acc, ptq_acc);
  EXPECT_GT(qat_acc, 0.5);

  sq::TrainOptions ck = o;
  ck.checkpoint = dir + "/qat.ckpt";
  ck.stop_after_epoch = 1;
  sq::QuantModel part = init;
  sq::qat(part, *train_, nullptr, ck);
  ck.stop_after_epoch = 0;
  ck.resume = true;
  sq::QuantModel resumed = init;
  sq::qat(resumed, *train_, nullptr, ck);
  EXPECT_EQ(resumed.weight_scales, full.weight_scales);
  for (const auto& n : full.graph.nodes) EXPECT_EQ(resumed.graph.node(n.name).params, n.params);
  for (const auto& [name, a] : full.acts) EXPECT_EQ(resumed.acts.at(name).scale, a.scale) << name;
}

TEST(QuantCli, PtqAndQatOnATinySubset) {
  if (!sq::file_exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  std::string dir = sqtest::temp_dir("qcli");
  auto r = sqtest::run_cli("train -m lenet5 --epochs 1 --batch-size 16 --limit-train 512 "
                           "--limit-test 128 --threads 1 --quiet -o " + dir + "/m.sqg");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = sqtest::run_cli("ptq -m " + dir + "/m.sqg --wbits 8 --abits 8 --calib percentile "
                      "--calib-samples 64 --limit-test 128 --threads 1 --json -o " + dir + "/q.sqg");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("\"fp32_accuracy\""), std::string::npos);
  r = sqtest::run_cli("qat -m " + dir + "/q.sqg --epochs 1 --limit-train 256 --limit-test 128 "
                      "--threads 1 --quiet -o " + dir + "/qat.sqg");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(sq::file_exists(dir + "/qat.sqg"));
  r = sqtest::run_cli("ptq -m " + dir + "/m.sqg --wbits 9 --limit-test 8");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--wbits 9 is out of range"), std::string::npos) << r.output;
  r = sqtest::run_cli("ptq -m " + dir + "/m.sqg --wbits 4 --calib entropy --limit-test 8");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--calib 'entropy'"), std::string::npos) << r.output;
}

// The LibTorch executor on non-square windows (issue 15: 1x7 / 7x1, 1x3 / 3x1, dilation, stride
// (2, 1), conv and max-pool padding unequal per side, which LibTorch takes as an explicit pad)
// against the plain-loop float forward of tests/core/quant_models.h, and with fake quantization
// against its simulation.
TEST(GraphModuleWindows, FloatAndFakeQuantEqualThePlainLoops) {
  const sq::QuantModel qm = sqtest::synthetic_qmodel("rect", {3, 16, 16}, 10, 5);
  sq::Dataset d;
  d.image_shape = {3, 16, 16};
  d.num_classes = 10;
  d.images = sqtest::random_images(8, 3 * 16 * 16, 9);
  d.labels.assign(8, 0);
  const std::vector<float> f = sq::predict(qm.graph, d, 8), q = sq::predict_quant(qm, d, 8);
  double worst_f = 0, worst_q = 0, range = 0;
  int agree = 0;
  for (int i = 0; i < 8; ++i) {
    const float* img = d.images.data() + i * 3 * 16 * 16;
    const std::vector<float> want_f = sqtest::simulate_nodes(qm, img, false).back();
    const std::vector<float> want_q = sqtest::simulate(qm, img);
    for (int k = 0; k < 10; ++k) {
      worst_f = std::max(worst_f, double(std::fabs(f[i * 10 + k] - want_f[k])));
      worst_q = std::max(worst_q, double(std::fabs(q[i * 10 + k] - want_q[k])));
      range = std::max(range, double(std::fabs(want_f[k])));
    }
    agree += std::max_element(q.begin() + i * 10, q.begin() + i * 10 + 10) - (q.begin() + i * 10) ==
             std::max_element(want_q.begin(), want_q.end()) - want_q.begin();
  }
  EXPECT_LT(worst_f, 1e-4 * std::max(1.0, range));
  EXPECT_LT(worst_q, 0.02 * std::max(1.0, range));  // a code flipped at a rounding tie, at most
  EXPECT_GE(agree, 7);
  std::printf("rect: float |torch - loops| = %.3g, fake-quant %.3g (|logit| up to %.3g), top-1 %d/8\n",
              worst_f, worst_q, range, agree);
}

}  // namespace
