// Searches that need accuracy (torch-free parts), driven by a stand-in oracle whose accuracy and
// KL are closed-form functions of the bits: the Phase 2 budget invariant (every configuration the
// search trains, and every step it records, fits every budget), raises paid for by lowerings,
// stopping inside the band / at a fixed point / at the limit, minimising, resuming, and the
// baselines (adaptive's closed form, the Hessian knapsack against brute force, random,
// exhaustive enumeration), plus budgets from average bits and the weight statistics.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>

#include "sigmaquant/alloc.h"
#include "sigmaquant/cost.h"
#include "sigmaquant/error.h"
#include "sigmaquant/quant.h"
#include "sigmaquant/random.h"
#include "sigmaquant/search.h"
#include "sigmaquant/zoo.h"
#include "test_util.h"

namespace {

using sq::BitConfig;
using sq::Graph;

Graph model(const std::string& name) {
  Graph g = sq::make_zoo_model(name, {1, 28, 28}, 10);
  g.init_params(3);
  return g;
}

std::vector<std::string> names(const Graph& g) {
  std::vector<std::string> n;
  for (int i : g.weight_layers()) n.push_back(g.nodes[i].name);
  return n;
}

// Accuracy = base - Σ sens_l · 4^-b_l (more bits on a sensitive layer help more); KL likewise.
// It fails the test if it is ever asked to train a configuration that breaks a budget.
class StandIn : public sq::SearchOracle {
 public:
  StandIn(const Graph& g, const sq::CostEvaluator& ce, const sq::Budgets& b, uint64_t seed)
      : ce_(ce), b_(b) {
    std::mt19937_64 rng(seed);
    for (const std::string& n : names(g)) sens_[n] = 0.1 + 9.9 * sq::uniform01(rng);
  }
  double train_and_evaluate(const BitConfig& bits, double epochs, int) override {
    EXPECT_TRUE(sq::fits(ce_, b_, bits)) << "the search trained a configuration over budget";
    ++trained;
    epochs_ += epochs;
    return accuracy(bits);
  }
  double layer_kl(const std::string& layer, int bits) override {
    return sens_.at(layer) * std::pow(4.0, -bits);
  }
  double accuracy(const BitConfig& bits) const {
    double a = 0.95;
    for (const auto& [n, s] : sens_) a -= 0.05 * s * std::pow(4.0, -bits.for_layer(n).wbits);
    return a;
  }
  std::map<std::string, double> sens_;
  int trained = 0;

 private:
  const sq::CostEvaluator& ce_;
  sq::Budgets b_;
  double epochs_ = 0;
};

struct Problem {
  Graph g = model("resnet20");
  sq::Target t = sq::resolve_target("shiftadd");
  sq::Budgets b;
  std::unique_ptr<sq::CostEvaluator> ce;
  explicit Problem(double avg_bits, const std::string& model_name = "resnet20") {
    g = model(model_name);
    b = sq::budgets_for_avg_bits(g, t, avg_bits, 8);
    b.latency_s = sq::CostEvaluator(g, t).evaluate(BitConfig::uniform(g, 4, 8)).latency_s;
    ce = std::make_unique<sq::CostEvaluator>(g, t);
  }
};

TEST(SearchBudgets, AverageBitsBudgetIsExactAtIntegerWidths) {
  Graph g = model("resnet20");
  sq::Target t = sq::resolve_target("shiftadd");
  sq::CostEvaluator ce(g, t);
  for (int bits = 2; bits <= 7; ++bits) {
    sq::Budgets b = sq::budgets_for_avg_bits(g, t, bits, 8);
    EXPECT_TRUE(sq::fits(ce, b, BitConfig::uniform(g, bits, 8))) << bits;
    EXPECT_FALSE(sq::fits(ce, b, BitConfig::uniform(g, bits + 1, 8))) << bits;
    EXPECT_EQ(sq::nearest_feasible_uniform(g, ce, b, {2, 3, 4, 5, 6, 7, 8}, 8), bits);
  }
  sq::Budgets half = sq::budgets_for_avg_bits(g, t, 2.5, 8);
  EXPECT_EQ(sq::nearest_feasible_uniform(g, ce, half, {2, 3, 4, 5, 6, 7, 8}, 8), 2);
  EXPECT_NE(sqtest::error_of([&] { sq::budgets_for_avg_bits(g, t, 9, 8); }).find("out of range"),
            std::string::npos);
  sq::Budgets tiny;
  tiny.weight_bytes = 10;
  std::string e = sqtest::error_of([&] { sq::nearest_feasible_uniform(g, ce, tiny, {2, 4}, 8); });
  EXPECT_NE(e.find("weight memory"), std::string::npos) << e;
}

TEST(SearchPhase2, EveryStepFitsEveryBudgetAndAccuracyImproves) {
  for (double avg : {2.5, 3.0, 4.0}) {
    for (uint64_t seed : {1, 2, 3}) {
      Problem s(avg);
      StandIn oracle(s.g, *s.ce, s.b, seed);
      sq::Phase1Options o1;
      o1.budgets = s.b;
      BitConfig start = sq::sigmaquant_phase1(s.g, s.t, o1).bits;
      sq::Phase2Options o;
      o.target_accuracy = 0.99;  // out of reach: the search runs to its limit or a fixed point
      o.max_iterations = 8;
      int calls = 0;
      sq::Phase2Result r = sq::sigmaquant_phase2(s.g, *s.ce, s.b, start, oracle, o, {},
                                                 [&](const sq::Phase2Step&) { ++calls; });
      ASSERT_FALSE(r.steps.empty());
      EXPECT_EQ(calls, static_cast<int>(r.steps.size()));
      for (const sq::Phase2Step& st : r.steps) {
        EXPECT_TRUE(sq::fits(*s.ce, s.b, st.bits)) << "step " << st.iteration;
        for (const sq::BudgetCheck& c : st.budgets) EXPECT_TRUE(c.fits) << c.metric;
        for (const sq::BitChange& c : st.changes) EXPECT_NE(c.from, c.to);
      }
      EXPECT_GT(r.steps.size(), 1u) << "Phase 1 left nothing to refine?";
      EXPECT_GE(r.accuracy, oracle.accuracy(start));
      EXPECT_GT(r.accuracy, r.steps.front().accuracy) << avg << " " << seed;
      EXPECT_TRUE(r.stop_reason == "iteration limit" || r.stop_reason == "fixed point");
      EXPECT_DOUBLE_EQ(r.qat_epochs, o.cycle_epochs * static_cast<double>(r.steps.size()));
    }
  }
}

TEST(SearchPhase2, RaiseIsPaidForByTheLeastSensitiveLayers) {
  Problem s(3.0);
  StandIn oracle(s.g, *s.ce, s.b, 5);
  BitConfig start = BitConfig::uniform(s.g, 3, 8);
  ASSERT_TRUE(sq::fits(*s.ce, s.b, start));
  sq::Phase2Options o;
  o.max_raises = 1;
  auto moves = sq::phase2_moves(s.g, *s.ce, s.b, start, oracle, o, true, {start});
  ASSERT_FALSE(moves.empty());
  EXPECT_EQ(moves[0].to, 4);  // one candidate step up
  BitConfig next = start;
  for (const auto& m : moves) next.layers[m.layer].wbits = m.to;
  EXPECT_TRUE(sq::fits(*s.ce, s.b, next));
  // Net: the stand-in accuracy goes up (the payment costs less KL than the raise removes).
  EXPECT_GT(oracle.accuracy(next), oracle.accuracy(start));
  for (size_t i = 1; i < moves.size(); ++i) EXPECT_LT(moves[i].to, moves[i].from);
}

// KL alike for every layer: one layer's raise never pays for the lowering it needs.
class FlatKl : public StandIn {
 public:
  using StandIn::StandIn;
  double layer_kl(const std::string&, int bits) override { return std::pow(4.0, -bits); }
};

// Searched activation widths: the stand-in's accuracy and KL depend on each point's width as on
// each layer's; under an mpic latency budget Phase 2 moves activation widths too, every step fits,
// every reader of a point holds the point's width, and the default oracle refuses point_kl.
class ActStandIn : public StandIn {
 public:
  ActStandIn(const Graph& g, const sq::CostEvaluator& ce, const sq::Budgets& b)
      : StandIn(g, ce, b, 5) {
    Graph s = g;
    s.infer_shapes();
    points_ = sq::activation_points(s);
    std::mt19937_64 rng(9);
    for (const auto& p : points_) psens_[p.name] = 5 + 45 * sq::uniform01(rng);
  }
  double train_and_evaluate(const BitConfig& bits, double epochs, int it) override {
    double a = StandIn::train_and_evaluate(bits, epochs, it);
    for (const auto& p : points_) {
      const int w = bits.for_layer(p.layers[0]).abits;
      for (const std::string& l : p.layers) EXPECT_EQ(bits.for_layer(l).abits, w) << l;
      a -= 0.05 * psens_.at(p.name) * std::pow(4.0, -w);
    }
    return a;
  }
  double point_kl(const std::string& point, int bits) override {
    ++point_calls;
    return psens_.at(point) * std::pow(4.0, -bits);
  }
  std::vector<sq::ActivationPoint> points_;
  std::map<std::string, double> psens_;
  int point_calls = 0;
};

TEST(SearchPhase2, MovesActivationWidthsWhenTheyAreSearched) {
  Graph g = model("lenet5");
  const sq::Target t = sq::load_target(std::string(SQ_SOURCE_DIR) + "/targets/mpic.json");
  const sq::CostEvaluator ce(g, t);
  sq::Budgets b = sq::budgets_for_avg_bits(g, t, 4, 8);
  b.latency_s = ce.evaluate(BitConfig::uniform(g, 4, 4)).latency_s;
  ActStandIn oracle(g, ce, b);
  const BitConfig start = BitConfig::uniform(g, 4, 4);
  ASSERT_TRUE(sq::fits(ce, b, start));
  sq::Phase2Options o;
  o.target_accuracy = 0.999;  // out of reach: the search runs to its limit or a fixed point
  o.max_iterations = 6;
  o.candidate_bits = {2, 4, 8};
  o.abits_set = {2, 4, 8};
  sq::Phase2Result r = sq::sigmaquant_phase2(g, ce, b, start, oracle, o);
  bool moved_act = false;
  for (const sq::Phase2Step& st : r.steps) {
    EXPECT_TRUE(sq::fits(ce, b, st.bits));
    for (const sq::BitChange& c : st.changes) moved_act = moved_act || c.activation;
  }
  EXPECT_TRUE(moved_act);
  EXPECT_GT(oracle.point_calls, 0);
  EXPECT_GE(r.accuracy, r.steps.front().accuracy);
  // Without the set, activation widths never move and point_kl is never asked.
  ActStandIn fixed(g, ce, b);
  o.abits_set.clear();
  sq::Phase2Result rf = sq::sigmaquant_phase2(g, ce, b, start, fixed, o);
  for (const sq::Phase2Step& st : rf.steps)
    for (int i : g.weight_layers()) EXPECT_EQ(st.bits.for_layer(g.nodes[i].name).abits, 4);
  EXPECT_EQ(fixed.point_calls, 0);
  StandIn plain(g, ce, b, 1);
  EXPECT_THROW(plain.point_kl("input", 4), sq::Error);
}

TEST(SearchPhase2, ExploresWhenNoSwapPaysByKl) {
  Problem s(3.0);
  FlatKl oracle(s.g, *s.ce, s.b, 4);
  BitConfig start = BitConfig::uniform(s.g, 3, 8);
  sq::Phase2Options o;
  o.explore = false;
  EXPECT_TRUE(sq::phase2_moves(s.g, *s.ce, s.b, start, oracle, o, true, {start}).empty());
  o.explore = true;
  auto moves = sq::phase2_moves(s.g, *s.ce, s.b, start, oracle, o, true, {start});
  ASSERT_FALSE(moves.empty());
  EXPECT_NE(moves[0].why.find("explore"), std::string::npos) << moves[0].why;
  EXPECT_GT(moves[0].to, moves[0].from);
  BitConfig next = start;
  for (const auto& m : moves) next.layers[m.layer].wbits = m.to;
  EXPECT_TRUE(sq::fits(*s.ce, s.b, next));
  // A whole search: explorations happen, but never two in a row after one that did not beat
  // every earlier step; the result is the best step.
  o.target_accuracy = 0.99;
  o.max_iterations = 8;
  sq::Phase2Result r = sq::sigmaquant_phase2(s.g, *s.ce, s.b, start, oracle, o, {}, nullptr);
  ASSERT_GT(r.steps.size(), 1u) << "uniform 3 bits was left as it was";
  auto explored = [](const sq::Phase2Step& st) {
    return !st.changes.empty() && st.changes[0].why.find("explore") != std::string::npos;
  };
  double best_before = r.steps[0].accuracy;
  for (size_t i = 1; i < r.steps.size(); ++i) {
    if (explored(r.steps[i]) && explored(r.steps[i - 1])) {
      double before = 0;
      for (size_t k = 0; k + 1 < i; ++k) before = std::max(before, r.steps[k].accuracy);
      EXPECT_GT(r.steps[i - 1].accuracy, before) << "step " << i;
    }
    best_before = std::max(best_before, r.steps[i].accuracy);
  }
  EXPECT_DOUBLE_EQ(r.accuracy, best_before);
  for (const sq::Phase2Step& st : r.steps) EXPECT_TRUE(sq::fits(*s.ce, s.b, st.bits));
}

TEST(SearchPhase2, StopsInBandAndMinimises) {
  Problem s(4.0);
  StandIn oracle(s.g, *s.ce, s.b, 9);
  BitConfig start = BitConfig::uniform(s.g, 4, 8);
  double a0 = oracle.accuracy(start);
  sq::Phase2Options o;
  o.target_accuracy = a0 - 0.001;  // met at once
  auto r = sq::sigmaquant_phase2(s.g, *s.ce, s.b, start, oracle, o);
  EXPECT_EQ(r.stop_reason, "in band");
  EXPECT_EQ(r.steps.size(), 1u);

  // Far above the band with --minimize: it lowers bits, cost goes down, and stops in band or at
  // the limit; the best step meets the target at the lowest cost.
  StandIn o2(s.g, *s.ce, s.b, 9);
  sq::Phase2Options m;
  m.target_accuracy = a0 - 0.02;
  m.band = 0.001;
  m.minimize = true;
  m.max_iterations = 10;
  auto rm = sq::sigmaquant_phase2(s.g, *s.ce, s.b, start, o2, m);
  ASSERT_GT(rm.steps.size(), 1u);
  EXPECT_LT(rm.steps.back().avg_bits, rm.steps.front().avg_bits);
  EXPECT_GE(rm.accuracy, m.target_accuracy);
  EXPECT_LE(s.ce->evaluate(rm.bits).weight_bytes, s.ce->evaluate(start).weight_bytes);
}

TEST(SearchPhase2, ResumingFromRecordedStepsGivesTheSameResult) {
  Problem s(3.0);
  sq::Phase1Options o1;
  o1.budgets = s.b;
  BitConfig start = sq::sigmaquant_phase1(s.g, s.t, o1).bits;
  sq::Phase2Options o;
  o.target_accuracy = 0.99;
  o.max_iterations = 6;
  StandIn a(s.g, *s.ce, s.b, 4);
  auto full = sq::sigmaquant_phase2(s.g, *s.ce, s.b, start, a, o);
  ASSERT_GE(full.steps.size(), 4u);
  std::vector<sq::Phase2Step> done(full.steps.begin(), full.steps.begin() + 3);
  StandIn b(s.g, *s.ce, s.b, 4);
  auto resumed = sq::sigmaquant_phase2(s.g, *s.ce, s.b, start, b, o, done);
  ASSERT_EQ(resumed.steps.size(), full.steps.size());
  for (size_t i = 0; i < full.steps.size(); ++i)
    EXPECT_EQ(resumed.steps[i].bits, full.steps[i].bits);
  EXPECT_EQ(resumed.bits, full.bits);
  EXPECT_EQ(b.trained, a.trained - 3);  // the recorded steps are not trained again
}

TEST(SearchPhase2, RejectsAStartOverBudget) {
  Problem s(2.5);
  StandIn oracle(s.g, *s.ce, s.b, 1);
  std::string e = sqtest::error_of(
      [&] { sq::sigmaquant_phase2(s.g, *s.ce, s.b, BitConfig::uniform(s.g, 8, 8), oracle, {}); });
  EXPECT_NE(e.find("breaks a budget"), std::string::npos) << e;
}

// ---- baselines ----

TEST(SearchBaselines, AdaptiveGivesLargerLayersFewerBitsAndSpendsTheBudget) {
  Problem s(4.0, "lenet5");
  // Weight memory alone: under latency and energy budgets a layer's bits also cost its MACs.
  const std::optional<double> weight = s.b.weight_bytes;
  s.b = sq::Budgets{};
  s.b.weight_bytes = weight;
  std::map<std::string, double> p, t;
  for (const std::string& n : names(s.g)) p[n] = 1, t[n] = 1;
  const std::vector<int> cand = {1, 2, 3, 4, 5, 6, 7, 8};
  BitConfig b = sq::adaptive_allocation(s.g, *s.ce, s.b, p, t, cand, 8);
  EXPECT_TRUE(sq::fits(*s.ce, s.b, b));
  // With equal p and t, bits fall with the layer's size (the closed form: -log4(size) + c; the
  // greedy fill of what it leaves raises the cheapest noise reduction per bit first).
  for (int i : s.g.weight_layers())
    for (int j : s.g.weight_layers()) {
      const int64_t si = s.g.nodes[i].params.at("weight").size();
      const int64_t sj = s.g.nodes[j].params.at("weight").size();
      if (si < sj) {
        EXPECT_GE(b.for_layer(s.g.nodes[i].name).wbits, b.for_layer(s.g.nodes[j].name).wbits)
            << s.g.nodes[i].name << " " << s.g.nodes[j].name;
      }
    }
  // Nothing left that one more bit on any layer could use.
  for (const std::string& n : names(s.g)) {
    sq::LayerBits lb = b.for_layer(n);
    if (lb.wbits == 8) continue;
    BitConfig raised = b;
    ++lb.wbits;
    raised.layers[n] = lb;
    EXPECT_FALSE(sq::fits(*s.ce, s.b, raised)) << n;
  }
  // A more noise-sensitive layer (larger p) gets more bits: the largest, which has the fewest.
  std::string largest;
  int64_t most = 0;
  for (int i : s.g.weight_layers())
    if (s.g.nodes[i].params.at("weight").size() > most)
      most = s.g.nodes[i].params.at("weight").size(), largest = s.g.nodes[i].name;
  ASSERT_LT(b.for_layer(largest).wbits, 8);
  p[largest] = 4096;
  BitConfig b2 = sq::adaptive_allocation(s.g, *s.ce, s.b, p, t, cand, 8);
  EXPECT_GT(b2.for_layer(largest).wbits, b.for_layer(largest).wbits);
  EXPECT_TRUE(sq::fits(*s.ce, s.b, b2));
}

TEST(SearchBaselines, HessianKnapsackIsTheExactOptimumOverFeasibleAssignments) {
  Problem s(3.0, "lenet5");
  s.b.latency_s.reset();
  std::map<std::string, double> tr;
  double v = 1;
  for (const std::string& n : names(s.g)) tr[n] = (v *= 3.7);
  std::vector<int> cand = {2, 4, 8};
  BitConfig h = sq::hessian_allocation(s.g, *s.ce, s.b, tr, cand, 8);
  ASSERT_TRUE(sq::fits(*s.ce, s.b, h));
  auto damage = [&](const BitConfig& c) {
    double d = 0;
    for (int i : s.g.weight_layers()) {
      const sq::Node& n = s.g.nodes[i];
      const sq::Tensor& w = n.params.at("weight");
      sq::Tensor q =
          sq::dequantize(sq::quantize_weights_symmetric(w, c.for_layer(n.name).wbits, true));
      double e = 0;
      for (int64_t k = 0; k < w.size(); ++k)
        e += double(q.data[k] - w.data[k]) * (q.data[k] - w.data[k]);
      d += tr[n.name] / static_cast<double>(w.size()) * e;
    }
    return d;
  };
  auto all = sq::feasible_assignments(s.g, *s.ce, s.b, cand, 8);
  ASSERT_FALSE(all.empty());
  double best = INFINITY;
  for (const BitConfig& c : all) best = std::min(best, damage(c));
  EXPECT_NEAR(damage(h), best, 1e-9 * best);
}

TEST(SearchBaselines, HessianRepairsALatencyBudgetTheKnapsackIgnores) {
  // resnet20 at a 4-bit memory budget and uniform 4-bit latency: the memory-optimal knapsack
  // answer gives more bits to early, MAC-heavy layers and breaks the latency budget; the repair
  // must bring it back under every budget (this once failed with "no assignment fits").
  Problem s(4.0);
  std::map<std::string, double> tr;
  for (const std::string& n : names(s.g)) tr[n] = 1.0;
  sq::Budgets memory_only = s.b;
  memory_only.latency_s.reset();
  memory_only.energy_j.reset();
  BitConfig free = sq::hessian_allocation(s.g, *s.ce, memory_only, tr, {2, 3, 4, 5, 6, 8}, 8);
  BitConfig h = sq::hessian_allocation(s.g, *s.ce, s.b, tr, {2, 3, 4, 5, 6, 8}, 8);
  EXPECT_TRUE(sq::fits(*s.ce, s.b, h));
  if (!sq::fits(*s.ce, s.b, free)) {
    EXPECT_LT(s.ce->evaluate(h).latency_s, s.ce->evaluate(free).latency_s);
  }
}

TEST(SearchBaselines, RandomFitsAndIsReproducible) {
  Problem s(2.5);
  std::vector<int> cand = {2, 3, 4, 5, 6, 8};
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    BitConfig a = sq::random_allocation(s.g, *s.ce, s.b, cand, 8, seed);
    EXPECT_TRUE(sq::fits(*s.ce, s.b, a));
    EXPECT_EQ(a, sq::random_allocation(s.g, *s.ce, s.b, cand, 8, seed));
  }
  EXPECT_FALSE(sq::random_allocation(s.g, *s.ce, s.b, cand, 8, 1) ==
               sq::random_allocation(s.g, *s.ce, s.b, cand, 8, 2));
}

TEST(SearchBaselines, ExhaustiveEnumeratesExactlyTheFeasibleAssignments) {
  Problem s(4.0, "lenet5");
  std::vector<int> cand = {2, 4, 8};
  auto all = sq::feasible_assignments(s.g, *s.ce, s.b, cand, 8);
  size_t layers = names(s.g).size();
  size_t total = static_cast<size_t>(std::pow(3, layers)), fitting = 0;
  sq::Budgets none;
  auto every = sq::feasible_assignments(s.g, *s.ce, none, cand, 8);
  EXPECT_EQ(every.size(), total);
  for (const BitConfig& c : every) fitting += sq::fits(*s.ce, s.b, c);
  EXPECT_EQ(all.size(), fitting);
  EXPECT_LT(all.size(), total);
  std::string e = sqtest::error_of([&] { sq::feasible_assignments(s.g, *s.ce, s.b, cand, 8, 10); });
  EXPECT_NE(e.find("limit"), std::string::npos) << e;
}

// ---- regressions: budgets that were refused although an assignment fits ----

sq::Target target_file(const std::string& name) {
  return sq::load_target(std::string(SQ_SOURCE_DIR) + "/targets/" + name + ".json");
}

std::map<std::string, double> unit_traces(const Graph& g) {
  std::map<std::string, double> tr;
  double v = 1;
  for (const std::string& n : names(g)) tr[n] = (v *= 1.7);
  return tr;
}

TEST(SearchRegressions, HessianOnMpicHonoursTheTargetWidths) {
  // mpic stores {2,4,8} and its throughput table has columns 2/4/8: 3 costs what 4 costs, 5 and
  // 6 what 8 costs. The old knapsack filled the (absent or loose) weight budget with 8s and 6s and
  // its greedy repair of the latency budget found no lowering that relieved anything (8 -> 6 and
  // 6 -> 5 cost the same): it refused budgets where uniform 2, 3 and 4 bits all fit.
  Graph g = model("resnet20");
  const sq::Target t = target_file("mpic");
  sq::CostEvaluator ce(g, t);
  const sq::CostReport u4 = ce.evaluate(BitConfig::uniform(g, 4, 8));
  const auto tr = unit_traces(g);
  sq::Budgets latency;
  latency.latency_s = 1.02 * u4.latency_s;
  sq::Budgets all = latency;
  all.weight_bytes = 1.5 * static_cast<double>(u4.weight_bytes);
  all.energy_j = 1.02 * u4.energy_j;
  for (const sq::Budgets& b : {latency, all}) {
    for (int u : {2, 3, 4}) ASSERT_TRUE(sq::fits(ce, b, BitConfig::uniform(g, u, 8))) << u;
    EXPECT_TRUE(sq::fits(ce, b, sq::hessian_allocation(g, ce, b, tr, {2, 3, 4, 5, 6, 8}, 8)));
    EXPECT_TRUE(sq::fits(ce, b, sq::hessian_allocation(g, ce, b, tr, {2, 4, 8}, 8)));
    // With a pinned layer too.
    BitConfig pinned = sq::hessian_allocation(g, ce, b, tr, {2, 3, 4, 5, 6, 8}, 8, {{"fc", 8}});
    EXPECT_TRUE(sq::fits(ce, b, pinned));
    EXPECT_EQ(pinned.for_layer("fc").wbits, 8);
  }
}

TEST(SearchRegressions, McuNonMonotoneBudgetIsMetByEveryAllocator) {
  // On mcu 8-bit weights skip the unpack step: a latency budget below uniform 2 bits can only be
  // met with wide MAC-heavy layers, and the weight budget forces the weight-heavy ones narrow.
  // Phase 1 and the baselines used to refuse it ("even with every layer at 2 bits").
  Graph g = model("lenet5");
  const sq::Target t = target_file("mcu");
  sq::CostEvaluator ce(g, t);
  const sq::CostReport u2 = ce.evaluate(BitConfig::uniform(g, 2, 8));
  const sq::CostReport u8 = ce.evaluate(BitConfig::uniform(g, 8, 8));
  ASSERT_LT(u8.latency_s, u2.latency_s);
  sq::Budgets b;
  b.latency_s = u8.latency_s + 0.2 * (u2.latency_s - u8.latency_s);
  b.weight_bytes = u2.weight_bytes + 0.35 * static_cast<double>(u8.weight_bytes - u2.weight_bytes);
  const std::vector<int> cand = {2, 3, 4, 5, 6, 8};
  ASSERT_FALSE(sq::fits(ce, b, BitConfig::uniform(g, 2, 8)));
  ASSERT_FALSE(sq::fits(ce, b, BitConfig::uniform(g, 8, 8)));
  ASSERT_FALSE(sq::feasible_assignments(g, ce, b, cand, 8).empty()) << "exhaustive: none fits";

  sq::Phase1Options o;
  o.budgets = b;
  const sq::Phase1Result r = sq::sigmaquant_phase1(g, t, o);
  EXPECT_TRUE(sq::fits(ce, b, r.bits));
  if (getenv("SQ_DEBUG_ALLOC")) printf("%s", sq::phase1_table(r).c_str());
  EXPECT_TRUE(sq::fits(ce, b, sq::hessian_allocation(g, ce, b, unit_traces(g), cand, 8)));
  std::map<std::string, double> p, tt;
  for (const std::string& n : names(g)) p[n] = 1, tt[n] = 1;
  EXPECT_TRUE(sq::fits(ce, b, sq::adaptive_allocation(g, ce, b, p, tt, cand, 8)));
  for (uint64_t seed = 1; seed <= 4; ++seed)
    EXPECT_TRUE(sq::fits(ce, b, sq::random_allocation(g, ce, b, cand, 8, seed))) << seed;
  // No uniform width fits: the refusal says a mixed assignment would.
  std::string e = sqtest::error_of([&] { sq::nearest_feasible_uniform(g, ce, b, cand, 8); });
  EXPECT_NE(e.find("a mixed assignment over these widths does fit"), std::string::npos) << e;

  // Truly out of reach: the bound is the per-layer minimum (8 bits under mcu), not "every layer
  // at 2 bits", and the message names it.
  sq::Budgets tight;
  tight.latency_s = 0.99 * u8.latency_s;
  e = sqtest::error_of([&] { sq::hessian_allocation(g, ce, tight, unit_traces(g), cand, 8); });
  EXPECT_NE(e.find("hessian: no assignment over {2,3,4,5,6,8}"), std::string::npos) << e;
  EXPECT_NE(e.find("latency budget (latency_ms) cannot be met"), std::string::npos) << e;
  EXPECT_EQ(e.find("every layer at 2 bits"), std::string::npos) << e;
}

TEST(SearchRegressions, AverageBitsAdmitTheUniformAssignmentOnEveryModelAndTarget) {
  // --avg-bits 3 was refused by 0.33 bytes of rounding when the budget was interpolated between
  // uniform 2 and uniform 8 bits.
  for (const std::string m : {"lenet5", "mlp", "resnet8", "resnet20", "mobilenetv2"}) {
    Graph g = model(m);
    for (const std::string tn : {"size", "shiftadd", "mpic", "mcu", "custom", "bops"}) {
      sq::Target t = target_file(tn);
      t.budgets = sq::Budgets();  // the weight budget alone
      sq::CostEvaluator ce(g, t);
      for (int bits = 2; bits <= 8; ++bits) {
        const sq::Budgets b = sq::budgets_for_avg_bits(g, t, bits, 8);
        EXPECT_EQ(*b.weight_bytes,
                  static_cast<double>(ce.evaluate(BitConfig::uniform(g, bits, 8)).weight_bytes));
        EXPECT_TRUE(sq::fits(ce, b, BitConfig::uniform(g, bits, 8)))
            << m << " " << tn << " " << bits;
        EXPECT_GE(sq::nearest_feasible_uniform(g, ce, b, {2, 3, 4, 5, 6, 7, 8}, 8), bits);
      }
      const sq::Budgets b3 = sq::budgets_for_avg_bits(g, t, 3, 8);
      sq::Phase1Options o;
      o.budgets = b3;
      EXPECT_TRUE(sq::fits(ce, b3, sq::sigmaquant_phase1(g, t, o).bits)) << m << " " << tn;
      // Between integers: linear between the two neighbouring uniform widths.
      const sq::Budgets half = sq::budgets_for_avg_bits(g, t, 3.5, 8);
      const double w3 = *b3.weight_bytes, w4 = *sq::budgets_for_avg_bits(g, t, 4, 8).weight_bytes;
      EXPECT_DOUBLE_EQ(*half.weight_bytes, w3 + 0.5 * (w4 - w3));
    }
  }
}

// A stand-in whose accuracy can be made to drop on the spending step.
class SpendOracle : public StandIn {
 public:
  using StandIn::StandIn;
  double train_and_evaluate(const BitConfig& bits, double epochs, int it) override {
    last_iteration = it;
    return StandIn::train_and_evaluate(bits, epochs, it) - (it >= penalise_from ? 0.5 : 0.0);
  }
  int penalise_from = 1 << 30;
  int last_iteration = -1;
};

TEST(SearchPhase2, SpendsLeftoverBudgetAndNeverReturnsAWorseState) {
  Problem s(4.0);
  BitConfig start = BitConfig::uniform(s.g, 3, 8);  // well under the 4-bit budgets
  ASSERT_TRUE(sq::fits(*s.ce, s.b, start));
  SpendOracle oracle(s.g, *s.ce, s.b, 11);
  sq::Phase2Options o;
  o.target_accuracy = oracle.accuracy(start) - 0.01;  // met at once: in band
  sq::Phase2Result r = sq::sigmaquant_phase2(s.g, *s.ce, s.b, start, oracle, o);
  EXPECT_EQ(r.stop_reason, "in band");
  ASSERT_EQ(r.steps.size(), 2u);
  const sq::Phase2Step& spend = r.steps[1];
  ASSERT_FALSE(spend.changes.empty());
  for (const sq::BitChange& c : spend.changes) {
    EXPECT_EQ(c.why, "spend leftover budget");
    EXPECT_GT(c.to, c.from);
  }
  EXPECT_TRUE(sq::fits(*s.ce, s.b, spend.bits));
  EXPECT_EQ(r.best_step, 1);
  EXPECT_GT(r.accuracy, r.steps[0].accuracy);
  // Nothing left to spend: no single raise of a layer still fits every budget.
  for (const std::string& n : names(s.g))
    for (int to : {4, 5, 6, 8}) {
      if (to <= spend.bits.for_layer(n).wbits) continue;
      BitConfig up = spend.bits;
      up.layers[n].wbits = to;
      EXPECT_FALSE(sq::fits(*s.ce, s.b, up)) << n << " -> " << to;
    }
  EXPECT_DOUBLE_EQ(r.qat_epochs, 2 * o.cycle_epochs);

  // The spending cycle measures worse: it is recorded, but the best state is kept.
  SpendOracle worse(s.g, *s.ce, s.b, 11);
  worse.penalise_from = 1;
  sq::Phase2Result w = sq::sigmaquant_phase2(s.g, *s.ce, s.b, start, worse, o);
  ASSERT_EQ(w.steps.size(), 2u);
  EXPECT_EQ(w.best_step, 0);
  EXPECT_EQ(w.bits, start);

  // Resuming after the spending step trains nothing more and gives the same result.
  SpendOracle again(s.g, *s.ce, s.b, 11);
  sq::Phase2Result resumed = sq::sigmaquant_phase2(s.g, *s.ce, s.b, start, again, o, r.steps);
  EXPECT_EQ(again.trained, 0);
  EXPECT_EQ(resumed.bits, r.bits);
  EXPECT_EQ(resumed.stop_reason, "in band");

  // Minimising resources: the leftover is the point, nothing is spent.
  SpendOracle m(s.g, *s.ce, s.b, 11);
  sq::Phase2Options om = o;
  om.minimize = true;
  om.band = 1.0;
  sq::Phase2Result rm = sq::sigmaquant_phase2(s.g, *s.ce, s.b, start, m, om);
  for (const sq::Phase2Step& st : rm.steps)
    for (const sq::BitChange& c : st.changes) EXPECT_NE(c.why, "spend leftover budget");
}

// ---- weight statistics ----

TEST(SearchWeights, MseScalesBeatMaxScalesAndKlFallsWithBits) {
  Graph g = model("resnet20");
  const sq::Node& n = g.nodes[g.weight_layers()[3]];
  const sq::Tensor& w = n.params.at("weight");
  for (int bits : {2, 3, 4}) {
    std::vector<float> s = sq::mse_weight_scales(n, bits);
    sq::QuantizedTensor mx = sq::quantize_weights_symmetric(w, bits, true);
    int64_t rows = w.shape[0], cols = w.size() / rows;
    double qmax = std::ldexp(1.0, bits - 1) - 1, e_mse = 0, e_max = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < cols; ++k) {
        double x = w.data[r * cols + k];
        double q = std::clamp(std::nearbyint(x / s[r]), -qmax, qmax) * s[r];
        e_mse += (q - x) * (q - x);
        double m = mx.values[r * cols + k] * mx.scale_of(r);
        e_max += (m - x) * (m - x);
      }
    EXPECT_LE(e_mse, e_max * (1 + 1e-9)) << bits;
    if (bits == 2) {
      EXPECT_LT(e_mse, 0.9 * e_max);
    }
  }
  double prev = INFINITY;
  for (int bits : {2, 3, 4, 6, 8}) {
    double kl = sq::weight_kl(n, bits);
    EXPECT_GE(kl, 0);
    EXPECT_LT(kl, prev) << bits;
    prev = kl;
  }
}

}  // namespace
