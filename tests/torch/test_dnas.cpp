// The differentiable search (src/torch/dnas.cpp): the regulariser's gradients against finite
// differences, the temperature schedule, the argmax, and lambda chosen to meet every budget.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <random>

#include "../../src/torch/dnas_internal.h"
#include "sigmaquant/dnas.h"
#include "sigmaquant/error.h"
#include "sigmaquant/quantize.h"
#include "sigmaquant/search.h"
#include "sigmaquant/train.h"
#include "sigmaquant/transform.h"
#include "sigmaquant/zoo.h"

namespace {

// Class k: a bright 2x2 blob at a position of its own on noise (8x8 images).
sq::Dataset blobs(int64_t n, uint64_t seed) {
  sq::Dataset d;
  d.name = "blobs";
  d.image_shape = {1, 8, 8};
  d.num_classes = 10;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> noise(0.f, 0.08f);
  d.images.resize(static_cast<size_t>(n * 64));
  d.labels.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int k = static_cast<int>(i % 10);
    d.labels[static_cast<size_t>(i)] = k;
    const int r0 = 1 + (k / 4) * 1, c0 = 1 + (k % 4) * 1;
    for (int y = 0; y < 8; ++y)
      for (int x = 0; x < 8; ++x) {
        float v = 0.2f + noise(rng);
        if (y >= r0 && y < r0 + 2 && x >= c0 && x < c0 + 2) v += 0.6f;
        d.images[static_cast<size_t>(i * 64 + y * 8 + x)] = std::clamp(v, 0.f, 1.f);
      }
  }
  return d;
}

struct Fixture {
  sq::Graph folded;
  sq::Dataset train = blobs(600, 1), val = blobs(200, 2);
  Fixture() {
    sq::Graph g = sq::make_zoo_model("lenet5", {1, 8, 8}, 10, 1);
    sq::TrainOptions o;
    o.epochs = 4;
    o.batch_size = 64;
    o.lr = 0.02;
    o.augment = false;
    o.progress = false;
    sq::train(g, train, nullptr, o);
    folded = sq::fold_batchnorm(g);
  }
};

Fixture& fixture() {
  static Fixture* f = new Fixture;
  return *f;
}

// Random architecture logits, in double so that finite differences are exact enough.
void randomize_alphas(sq::DnasHook& h, const sq::DnasSpace& s, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard ng;
  for (size_t l = 0; l < s.layers.size(); ++l) {
    torch::Tensor& a = h.alpha_w(static_cast<int>(l));
    a.set_data(torch::randn_like(a).to(torch::kDouble));
  }
  for (size_t q = 0; q < s.points.size(); ++q) {
    torch::Tensor& a = h.alpha_a(static_cast<int>(q));
    a.set_data(torch::randn_like(a).to(torch::kDouble));
  }
}

// Backpropagates r() and checks about `per` entries of every architecture logit tensor's gradient
// against central finite differences; returns how many were checked.
int check_gradients(sq::DnasHook& h, const sq::DnasSpace& s,
                    const std::function<torch::Tensor()>& r, int64_t per) {
  r().backward();
  const double eps = 1e-6;
  int checked = 0;
  auto check = [&](torch::Tensor& a) {
    torch::NoGradGuard ng;
    torch::Tensor flat = a.view({-1});
    for (int64_t i = 0; i < flat.numel(); i += std::max<int64_t>(1, flat.numel() / per)) {
      const double x = flat[i].item<double>();
      flat[i] = x + eps;
      const double up = r().item<double>();
      flat[i] = x - eps;
      const double down = r().item<double>();
      flat[i] = x;
      const double fd = (up - down) / (2 * eps);
      EXPECT_NEAR(a.grad().view({-1})[i].item<double>(), fd, 1e-6 * std::max(1.0, std::fabs(fd)));
      ++checked;
    }
  };
  for (size_t l = 0; l < s.layers.size(); ++l) check(h.alpha_w(static_cast<int>(l)));
  for (size_t q = 0; q < s.points.size(); ++q) check(h.alpha_a(static_cast<int>(q)));
  return checked;
}

TEST(Dnas, RegulariserGradientsMatchFiniteDifferences) {
  Fixture& f = fixture();
  sq::CostEvaluator ce(f.folded, sq::builtin_target("mpic"));
  sq::DnasSpace s = sq::make_dnas_space(f.folded, {0, 2, 4, 8}, {2, 4, 8}, {}, true);
  sq::Budgets b;
  b.latency_s = 1e-4;
  sq::DnasCostTable t = sq::make_dnas_cost(s, f.folded, ce, b);
  sq::QuantModel qm8 = sq::requantize_model(f.folded, nullptr,
                                            sq::BitConfig::uniform(f.folded, 8, 8), f.train, 64, 1);
  sq::DnasHook h(s, qm8, 0.5);
  h.set_tau(2.0);
  randomize_alphas(h, s, 3);
  const int checked = check_gradients(
      h, s, [&] { return h.regulariser(t); }, 7);
  EXPECT_GT(checked, 30);

  // At a (nearly) one-hot theta the regulariser is the table's cost of that choice.
  sq::DnasChoice c = sq::widest_choice(s);
  std::mt19937 rng(5);
  {
    torch::NoGradGuard ng;
    for (size_t l = 0; l < s.layers.size(); ++l) {
      torch::Tensor& a = h.alpha_w(static_cast<int>(l));
      a.fill_(-1e3);
      for (int64_t k = 0; k < a.size(1); ++k) {
        c.w[l][k] = static_cast<int>(rng() % s.layers[l].wbits.size());
        a[c.w[l][k]][k] = 0;
      }
    }
    for (size_t q = 0; q < s.points.size(); ++q) {
      torch::Tensor& a = h.alpha_a(static_cast<int>(q));
      a.fill_(-1e3);
      c.a[q] = static_cast<int>(rng() % s.points[q].abits.size());
      a[c.a[q]] = 0;
    }
  }
  EXPECT_NEAR(h.regulariser(t).item<double>(), sq::table_cost(t, s, c), 1e-9);
  sq::DnasChoice back = h.argmax();
  EXPECT_EQ(back.w, c.w);
  EXPECT_EQ(back.a, c.a);
}

// The Excess penalty: per metric, the part of the expected cost above its budget. Its terms are
// the summed table's (per layer, fixed and per_channel are the sums over the metrics); with one
// tight budget and one loose one it is the tight metric's expected cost minus one; below every
// budget it is zero with zero gradients; its gradients match finite differences.
TEST(Dnas, ExcessRegulariserCountsOnlyWhatExceedsABudget) {
  Fixture& f = fixture();
  sq::CostEvaluator ce(f.folded, sq::builtin_target("mpic"));
  sq::DnasSpace s = sq::make_dnas_space(f.folded, {0, 2, 4, 8}, {2, 4, 8}, {}, true);
  const sq::CostReport ref = ce.evaluate(sq::dnas_bits(s, f.folded, sq::widest_choice(s)));
  sq::Budgets two;  // weight memory at 40 % of the widest choice's, latency at 10x its
  two.weight_bytes = 0.4 * static_cast<double>(ref.weight_bytes);
  two.latency_s = 10 * ref.latency_s;
  sq::Budgets weight_only;
  weight_only.weight_bytes = two.weight_bytes;
  sq::DnasCostTable t = sq::make_dnas_cost(s, f.folded, ce, two);
  sq::DnasCostTable tw = sq::make_dnas_cost(s, f.folded, ce, weight_only);
  ASSERT_EQ(t.metrics.size(), 2u);
  ASSERT_EQ(t.metric_reference.size(), 2u);
  EXPECT_NEAR(t.metric_reference[0] + t.metric_reference[1], t.reference, 1e-12);
  for (size_t l = 0; l < s.layers.size(); ++l) {
    const size_t na = s.points[s.layers[l].point].abits.size(), np = s.layers[l].wbits.size();
    const sq::DnasCostTable::Layer& T = t.layers[l];
    for (size_t a = 0; a < na; ++a) {
      EXPECT_NEAR(T.metric_fixed[a] + T.metric_fixed[na + a], T.fixed[a], 1e-12);
      for (size_t p = 0; p < np; ++p)
        EXPECT_NEAR(T.metric_per_channel[a * np + p] + T.metric_per_channel[(na + a) * np + p],
                    T.per_channel[a * np + p], 1e-12);
    }
  }
  sq::QuantModel qm8 = sq::requantize_model(f.folded, nullptr,
                                            sq::BitConfig::uniform(f.folded, 8, 8), f.train, 64, 1);
  sq::DnasHook h(s, qm8, 0.5);
  h.set_tau(2.0);
  randomize_alphas(h, s, 4);
  const double ew = h.regulariser(tw, sq::DnasPenalty::Cost).item<double>();
  ASSERT_GT(ew, 1.0);  // random theta keeps more than 40 % of the widest weights
  const auto excess = [&] { return h.regulariser(t, sq::DnasPenalty::Excess); };
  EXPECT_NEAR(excess().item<double>(), ew - 1.0, 1e-9);
  const int checked = check_gradients(h, s, excess, 5);
  EXPECT_GT(checked, 10);
  // Loose budgets everywhere: nothing to pay, nothing pushed.
  sq::Budgets loose;
  loose.weight_bytes = 10 * static_cast<double>(ref.weight_bytes);
  loose.latency_s = 10 * ref.latency_s;
  sq::DnasCostTable tl = sq::make_dnas_cost(s, f.folded, ce, loose);
  for (size_t l = 0; l < s.layers.size(); ++l)
    h.alpha_w(static_cast<int>(l)).mutable_grad().zero_();
  torch::Tensor z = h.regulariser(tl, sq::DnasPenalty::Excess);
  EXPECT_EQ(z.item<double>(), 0.0);
  z.backward();
  for (size_t l = 0; l < s.layers.size(); ++l)
    EXPECT_EQ(h.alpha_w(static_cast<int>(l)).grad().abs().max().item<double>(), 0.0);
  EXPECT_EQ(sq::parse_dnas_penalty("excess", "x"), sq::DnasPenalty::Excess);
  EXPECT_STREQ(sq::dnas_penalty_name(sq::DnasPenalty::Cost), "cost");
  EXPECT_THROW(sq::parse_dnas_penalty("hinge", "--dnas-penalty"), sq::Error);
}

TEST(Dnas, TemperatureSchedule) {
  sq::DnasOptions o;
  EXPECT_DOUBLE_EQ(sq::dnas_temperature(o, 0), 5.0);
  EXPECT_NEAR(sq::dnas_temperature(o, 1), 5.0 * std::exp(-0.045), 1e-12);
  EXPECT_NEAR(sq::dnas_temperature(o, 20), 5.0 * std::exp(-0.9), 1e-12);
  o.tau0 = 2;
  o.tau_decay = 0.1;
  EXPECT_NEAR(sq::dnas_temperature(o, 3), 2.0 * std::exp(-0.3), 1e-12);
  // tau_end: geometric from tau0 to tau_end over the epochs, within an epoch too.
  o.tau0 = 5;
  o.tau_end = 0.5;
  o.epochs = 2;
  EXPECT_DOUBLE_EQ(sq::dnas_temperature(o, 0), 5.0);
  EXPECT_NEAR(sq::dnas_temperature(o, 0, 0.5), 5.0 * std::pow(0.1, 0.25), 1e-12);
  EXPECT_NEAR(sq::dnas_temperature(o, 1), 5.0 * std::sqrt(0.1), 1e-12);
  EXPECT_NEAR(sq::dnas_temperature(o, 1, 1.0), 0.5, 1e-12);
}

TEST(Dnas, MixtureAtOneHotThetaIsThatQuantizer) {
  Fixture& f = fixture();
  sq::DnasSpace s = sq::make_dnas_space(f.folded, {0, 2, 4, 8}, {8}, {}, true);
  sq::QuantModel qm8 = sq::requantize_model(f.folded, nullptr, sq::BitConfig::uniform(f.folded, 8, 8),
                                            f.train, 64, 1);
  sq::DnasHook h(s, qm8, 0.5);
  const sq::DnasSpace::Layer& L = s.layers[0];
  torch::Tensor w = torch::randn({L.channels, 1, 5, 5});
  {
    torch::NoGradGuard ng;
    torch::Tensor& a = h.alpha_w(0);
    a.fill_(-1e4);
    a[0][0] = 0;  // channel 0 pruned
    for (int64_t k = 1; k < L.channels; ++k) a[1][k] = 0;  // the rest at 2 bits
  }
  torch::Tensor q = h.weight(L.node, w);
  EXPECT_EQ(q[0].abs().max().item<float>(), 0.0f);
  for (int64_t k = 1; k < L.channels; ++k) {
    // 2 bits: values in {-s, 0, s}, s = max|w_k|
    const float m = w[k].abs().max().item<float>();
    torch::Tensor v = q[k] / m;
    EXPECT_TRUE(torch::allclose(v, v.round(), 1e-4, 1e-4));
    EXPECT_LE(v.abs().max().item<float>(), 1.0f + 1e-5f);
  }
}

// Budget mode: every lambda tried gives an assignment that fits every budget, the bracket moves
// the right way, and a strong lambda lowers the cost of the argmax against a weak one.
TEST(Dnas, LambdaIsChosenToMeetEveryBudget) {
  Fixture& f = fixture();
  sq::CostEvaluator ce(f.folded, sq::builtin_target("mpic"));
  sq::DnasSpace s = sq::make_dnas_space(f.folded, {0, 2, 4, 8}, {2, 4, 8}, {}, true);
  const double full = ce.evaluate(sq::dnas_bits(s, f.folded, sq::widest_choice(s))).latency_s;
  sq::Budgets b;
  b.latency_s = 0.45 * full;
  b.weight_bytes = 0.6 * static_cast<double>(
      ce.evaluate(sq::dnas_bits(s, f.folded, sq::widest_choice(s))).weight_bytes);
  sq::DnasCostTable t = sq::make_dnas_cost(s, f.folded, ce, b);
  ASSERT_EQ(t.metrics.size(), 2u);
  sq::DnasOptions o;
  o.epochs = 2;
  o.bisect_steps = 1;
  o.batch_size = 64;
  o.alpha_lr = 1.0;  // few alpha steps on 600 images: large ones
  o.alpha_fraction = 0.5;
  o.calib_samples = 64;
  sq::DnasOutcome out = sq::dnas_search(f.folded, f.train, f.val, s, t, ce, b, o);
  ASSERT_GE(out.trials.size(), 2u);
  EXPECT_TRUE(sq::fits_budgets(ce.evaluate(out.bits), b));
  double best = -1;
  for (const sq::DnasTrial& tr : out.trials) {
    EXPECT_TRUE(sq::fits_budgets(ce.evaluate(tr.bits), b)) << "lambda " << tr.lambda;
    best = std::max(best, tr.val_accuracy);
    // The fill only raises: never fewer bits than the (repaired) argmax.
    EXPECT_GE(tr.avg_bits, tr.argmax_avg_bits - 1e-9) << "lambda " << tr.lambda;
  }
  // The kept trial: choose_dnas_trial's, within two standard errors of the best accuracy.
  const size_t kept = sq::choose_dnas_trial(out.trials, f.val.size());
  EXPECT_DOUBLE_EQ(out.lambda, out.trials[kept].lambda);
  EXPECT_DOUBLE_EQ(out.val_accuracy, out.trials[kept].val_accuracy);
  EXPECT_GE(out.val_accuracy,
            best - 2 * std::sqrt(best * (1 - best) / static_cast<double>(f.val.size())));
  EXPECT_DOUBLE_EQ(out.trials[0].lambda, 1.0);
  // The bracket: after a fitting lambda the next is smaller, after a failing one larger.
  for (size_t k = 1; k < out.trials.size() && k < 3; ++k)
    if (out.trials[k - 1].fits)
      EXPECT_LT(out.trials[k].lambda, out.trials[k - 1].lambda);
    else
      EXPECT_GT(out.trials[k].lambda, out.trials[k - 1].lambda);
  EXPECT_DOUBLE_EQ(out.epochs, 2.0 * static_cast<double>(out.trials.size()));

  // The Excess penalty in budget mode: the same bracket and bisection; every trial's assignment
  // (repaired where its argmax did not fit) meets every budget.
  {
    sq::DnasOptions ox = o;
    ox.penalty = sq::DnasPenalty::Excess;
    sq::DnasOutcome ex = sq::dnas_search(f.folded, f.train, f.val, s, t, ce, b, ox);
    ASSERT_GE(ex.trials.size(), 2u);
    EXPECT_TRUE(sq::fits_budgets(ce.evaluate(ex.bits), b));
    for (const sq::DnasTrial& tr : ex.trials)
      EXPECT_TRUE(sq::fits_budgets(ce.evaluate(tr.bits), b)) << "excess, lambda " << tr.lambda;
  }

  // A fixed lambda: strong against weak.
  o.bisect_steps = 0;
  o.lambda = 1e-4;
  sq::DnasOutcome weak = sq::dnas_search(f.folded, f.train, f.val, s, t, ce, b, o);
  o.lambda = 100;
  sq::DnasOutcome strong = sq::dnas_search(f.folded, f.train, f.val, s, t, ce, b, o);
  ASSERT_EQ(weak.trials.size(), 1u);
  ASSERT_EQ(strong.trials.size(), 1u);
  EXPECT_TRUE(strong.trials[0].fits);
  // (cost: of the repaired argmax when it did not fit, so compare the averages of weight bits)
  EXPECT_LT(strong.trials[0].avg_bits, weak.trials[0].avg_bits);

  // select_epochs: the argmax is scored after that much QAT (counted in the epochs), the same
  // assignment as without.
  o.select_epochs = 0.25;
  sq::DnasOutcome tuned = sq::dnas_search(f.folded, f.train, f.val, s, t, ce, b, o);
  ASSERT_EQ(tuned.trials.size(), 1u);
  EXPECT_EQ(sq::bits_to_json(tuned.bits), sq::bits_to_json(strong.bits));
  EXPECT_NEAR(tuned.epochs, 2.25, 0.05);
  EXPECT_GT(tuned.val_accuracy, 0.0);
}

// Channel groups: each lambda's argmax is snapped (every layer's count per width a multiple of
// the group, but one width holding the remainder) before it is checked, and the repair keeps it
// snapped, so every trial fits and is snapped; lenet5 at 8x8 has layers of 6, 16, 120, 84, 10
// channels (6 < 8; 120 and 84 with remainders).
TEST(Dnas, ChannelGroupsSnapEveryArgmax) {
  Fixture& f = fixture();
  sq::CostEvaluator ce(f.folded, sq::builtin_target("size"));
  sq::DnasSpace s = sq::make_dnas_space(f.folded, {0, 2, 4, 8}, {8}, {}, true);
  sq::Budgets b;
  b.weight_bytes = 0.4 * static_cast<double>(
      ce.evaluate(sq::dnas_bits(s, f.folded, sq::widest_choice(s))).weight_bytes);
  sq::DnasCostTable t = sq::make_dnas_cost(s, f.folded, ce, b);
  sq::DnasOptions o;
  o.epochs = 1;
  o.bisect_steps = 0;
  o.lambda = 1;
  o.batch_size = 64;
  o.alpha_lr = 1.0;
  o.alpha_fraction = 0.5;
  o.calib_samples = 64;
  o.channel_group = 8;
  sq::DnasOutcome out = sq::dnas_search(f.folded, f.train, f.val, s, t, ce, b, o);
  ASSERT_EQ(out.trials.size(), 1u);
  EXPECT_TRUE(sq::fits_budgets(ce.evaluate(out.bits), b));
  for (const sq::DnasSpace::Layer& L : s.layers) {
    const sq::LayerBits& lb = out.bits.layers.at(L.name);
    std::map<int, int64_t> count;
    if (lb.channel_wbits.empty())
      count[lb.wbits] = L.channels;
    else
      for (int w : lb.channel_wbits) ++count[w];
    int off = 0;
    for (const auto& [w, n] : count)
      if (n % 8 != 0) {
        ++off;
        EXPECT_EQ(n % 8, L.channels % 8) << L.name << " at " << w << " bits";
      }
    EXPECT_LE(off, 1) << L.name;
  }
}

TEST(Dnas, BadOptionsAreRefused) {
  Fixture& f = fixture();
  sq::CostEvaluator ce(f.folded, sq::builtin_target("size"));
  sq::DnasSpace s = sq::make_dnas_space(f.folded, {0, 2, 4, 8}, {8}, {}, true);
  sq::Budgets b;
  b.weight_bytes = 1e9;
  sq::DnasCostTable t = sq::make_dnas_cost(s, f.folded, ce, b);
  sq::DnasOptions o;
  o.epochs = 0;
  EXPECT_THROW(sq::dnas_search(f.folded, f.train, f.val, s, t, ce, b, o), sq::Error);
  o.epochs = 1;
  o.alpha_optimizer = "rmsprop";
  EXPECT_THROW(sq::dnas_search(f.folded, f.train, f.val, s, t, ce, b, o), sq::Error);
  o.alpha_optimizer = "adam";
  o.lambda = -1;
  EXPECT_THROW(sq::dnas_search(f.folded, f.train, f.val, s, t, ce, b, o), sq::Error);
  o.lambda = 0;
  o.tau_end = -0.5;
  EXPECT_THROW(sq::dnas_search(f.folded, f.train, f.val, s, t, ce, b, o), sq::Error);
}

}  // namespace
