// Searched activation widths (issue 13): activation points, the exact solver at per-layer
// activation widths, the outer search around it (local and grouped), SigmaQuant's Phase 1 with
// activation clusters. Ground truth: CostEvaluator and brute force over every activation state of
// lenet5 (5 points x 3 widths) with the exact solver inside.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "sigmaquant/alloc.h"
#include "sigmaquant/cost.h"
#include "sigmaquant/error.h"
#include "sigmaquant/search.h"
#include "sigmaquant/zoo.h"
#include "test_util.h"

namespace {

using sq::BitConfig;
using sq::Graph;

sq::Target mpic() { return sq::load_target(std::string(SQ_SOURCE_DIR) + "/targets/mpic.json"); }

// Weight damage: n 4^-b (larger layers matter more), a stand-in for any allocator's.
double wdamage(const Graph& g, const std::string& n, int b) {
  return static_cast<double>(g.node(n).params.at("weight").size()) * std::pow(4.0, -b);
}

// Every activation state of the free points, scored like the search does.
struct Brute {
  double best = std::numeric_limits<double>::infinity();
  std::map<std::string, int> widths;
};
Brute brute_force(const Graph& g, const sq::CostEvaluator& ce, const sq::Budgets& b,
                  const std::vector<int>& cand, const std::vector<int>& acts,
                  const sq::PointObjective& adamage) {
  const auto points = sq::activation_points(g);
  Brute out;
  std::vector<int> st(points.size(), 0);
  for (;;) {
    std::map<std::string, int> w;
    double ad = 0;
    for (size_t q = 0; q < points.size(); ++q) {
      w[points[q].name] = acts[st[q]];
      ad += adamage(points[q].name, acts[st[q]]);
    }
    const sq::AssignmentSolver s(g, ce, b, cand, sq::point_widths_to_layers(points, w, 8));
    auto obj = [&](const std::string& n, int bits) { return wdamage(g, n, bits); };
    if (auto r = s.solve(obj)) {
      double d = ad;
      for (const std::string& n : s.free_layers()) d += obj(n, r->for_layer(n).wbits);
      if (d < out.best) out.best = d, out.widths = w;
    }
    size_t k = 0;
    while (k < st.size() && ++st[k] == static_cast<int>(acts.size())) st[k++] = 0;
    if (k == st.size()) break;
  }
  return out;
}

TEST(ActivationSearch, PointsAreTheTensorsWeightLayersRead) {
  Graph g = sq::make_zoo_model("resnet8", {1, 16, 16}, 10);
  g.infer_shapes();
  const auto points = sq::activation_points(g, {{"fc", 8}});
  size_t readers = 0;
  bool shared = false;
  for (const sq::ActivationPoint& p : points) {
    readers += p.layers.size();
    shared = shared || p.layers.size() > 1;  // a block's conv1 and its 1x1 shortcut
    int64_t n = 1;
    for (int64_t d : g.node(p.name).out_shape) n *= d;
    EXPECT_EQ(p.elements, n) << p.name;
    const bool pinned_reader = std::find(p.layers.begin(), p.layers.end(), "fc") != p.layers.end();
    EXPECT_EQ(p.fixed, pinned_reader) << p.name;
  }
  EXPECT_EQ(readers, g.weight_layers().size());
  EXPECT_TRUE(shared);
  EXPECT_EQ(points.front().name, g.nodes[0].name);  // the stem reads the input
}

TEST(ActivationSearch, SolverAtPerLayerActivationWidthsAgreesWithTheEvaluator) {
  const Graph g = sq::make_zoo_model("resnet8", {1, 16, 16}, 10);
  const sq::Target t = mpic();
  const sq::CostEvaluator ce(g, t);
  std::mt19937_64 rng(7);
  const std::vector<int> acts = {2, 4, 8}, cand = {2, 4, 8};
  const BitConfig all8 = BitConfig::uniform(g, 8, 8);
  const sq::CostReport r8 = ce.evaluate(all8);
  for (int trial = 0; trial < 20; ++trial) {
    sq::LayerActivationBits la;
    la.all = 8;
    for (int i : g.weight_layers()) la.layers[g.nodes[i].name] = acts[rng() % 3];
    sq::Budgets b;
    b.latency_s = r8.latency_s * (0.3 + 0.5 * (rng() % 100) / 100.0);
    b.weight_bytes = static_cast<double>(r8.weight_bytes) * 0.6;
    const sq::AssignmentSolver s(g, ce, b, cand, la);
    for (int k = 0; k < 10; ++k) {
      std::map<std::string, int> w;
      for (const std::string& n : s.free_layers()) w[n] = cand[rng() % 3];
      const BitConfig c = s.config(w);
      for (const auto& [n, a] : la.layers) ASSERT_EQ(c.for_layer(n).abits, a);
      const auto exact = sq::check_budgets(ce.evaluate(c), b);
      const auto fast = s.check(c);
      ASSERT_EQ(exact.size(), fast.size());
      for (size_t j = 0; j < exact.size(); ++j) {
        EXPECT_EQ(exact[j].value, fast[j].value);
        EXPECT_EQ(exact[j].fits, fast[j].fits);
      }
    }
    auto r = s.solve([&](const std::string& n, int bits) { return wdamage(g, n, bits); });
    EXPECT_EQ(r.has_value(), s.feasible());
    if (r) {
      EXPECT_TRUE(sq::fits(ce, b, *r));
      for (const auto& [n, a] : la.layers) EXPECT_EQ(r->for_layer(n).abits, a);
    }
  }
  sq::LayerActivationBits bad;
  bad.layers["nope"] = 4;
  EXPECT_THROW(sq::AssignmentSolver(g, ce, {}, cand, bad), sq::Error);
  bad.layers.clear();
  bad.all = 1;
  EXPECT_THROW(sq::AssignmentSolver(g, ce, {}, cand, bad), sq::Error);
}

TEST(ActivationSearch, WeightBudgetAloneKeepsTheWidestActivations) {
  Graph g = sq::make_zoo_model("lenet5", {1, 28, 28}, 10);
  g.infer_shapes();
  const sq::Target t = mpic();
  const sq::CostEvaluator ce(g, t);
  sq::Budgets b;
  b.weight_bytes = ce.evaluate(BitConfig::uniform(g, 4, 8)).weight_bytes;
  auto obj = [&](const std::string& n, int bits) { return wdamage(g, n, bits); };
  auto adamage = [](const std::string&, int a) { return 10.0 * std::pow(4.0, -a); };
  const sq::ActivationSearchResult r =
      sq::joint_exact_allocation(g, ce, b, {2, 4, 8}, {}, {2, 4, 8}, obj, adamage);
  for (const auto& [p, a] : r.point_bits) EXPECT_EQ(a, 8) << p;  // lowering them buys nothing
  EXPECT_TRUE(sq::fits(ce, b, r.bits));
  const auto w = sq::solve_assignment(g, ce, b, {2, 4, 8}, obj, 8);
  ASSERT_TRUE(w);
  for (int i : g.weight_layers())
    EXPECT_EQ(r.bits.for_layer(g.nodes[i].name).wbits, w->for_layer(g.nodes[i].name).wbits);
}

TEST(ActivationSearch, LatencyBudgetBuysLowActivationsAndTheSearchIsALocalOptimum) {
  Graph g = sq::make_zoo_model("lenet5", {1, 28, 28}, 10);
  g.infer_shapes();
  const sq::Target t = mpic();
  const sq::CostEvaluator ce(g, t);
  const std::vector<int> acts = {2, 4, 8}, cand = {2, 4, 8};
  // Faster than any weight assignment allows with 8-bit activations.
  const double t_w2a8 = ce.evaluate(BitConfig::uniform(g, 2, 8)).latency_s;
  const double t_w8a4 = ce.evaluate(BitConfig::uniform(g, 8, 4)).latency_s;
  sq::Budgets b;
  b.latency_s = std::min(t_w2a8, t_w8a4) * 0.9;
  ASSERT_FALSE(sq::AssignmentSolver(g, ce, b, cand, 8).feasible());
  const auto points = sq::activation_points(g);
  std::map<std::string, double> size;
  for (const auto& p : points) size[p.name] = static_cast<double>(p.elements);
  auto adamage = [&](const std::string& q, int a) { return size.at(q) * std::pow(4.0, -a); };
  auto obj = [&](const std::string& n, int bits) { return wdamage(g, n, bits); };
  const sq::ActivationSearchResult r =
      sq::joint_exact_allocation(g, ce, b, cand, {}, acts, obj, adamage);
  EXPECT_TRUE(sq::fits(ce, b, r.bits));
  bool some_low = false;
  for (const auto& [p, a] : r.point_bits) some_low = some_low || a < 8;
  EXPECT_TRUE(some_low);
  for (int i : g.weight_layers()) {
    const std::string& n = g.nodes[i].name;
    EXPECT_EQ(r.bits.for_layer(n).abits, r.point_bits.at(g.nodes[g.nodes[i].inputs[0]].name));
  }
  // The reported damages are the assignment's.
  double wd = 0, ad = 0;
  for (int i : g.weight_layers())
    wd += obj(g.nodes[i].name, r.bits.for_layer(g.nodes[i].name).wbits);
  for (const auto& [p, a] : r.point_bits) ad += adamage(p, a);
  EXPECT_NEAR(r.weight_damage, wd, 1e-9 * wd);
  EXPECT_NEAR(r.activation_damage, ad, 1e-9 * ad);
  // No worse than the best state over every activation width (3^5 states, each solved exactly)
  // by more than the local search can miss; and no single-point move improves it.
  const Brute bf = brute_force(g, ce, b, cand, acts, adamage);
  ASSERT_TRUE(std::isfinite(bf.best));
  const double score = r.weight_damage + r.activation_damage;
  EXPECT_GE(score, bf.best * (1 - 1e-12));
  for (const auto& p : points)
    for (int a : acts) {
      std::map<std::string, int> w = r.point_bits;
      if (w[p.name] == a) continue;
      w[p.name] = a;
      const sq::AssignmentSolver s(g, ce, b, cand, sq::point_widths_to_layers(points, w, 8));
      auto best = s.solve(obj);
      if (!best) continue;
      double d = 0;
      for (const auto& [q, x] : w) d += adamage(q, x);
      for (const std::string& n : s.free_layers()) d += obj(n, best->for_layer(n).wbits);
      EXPECT_GE(d, score * (1 - 1e-12)) << p.name << " at " << a;
    }
  std::printf("local search %.6g, brute force %.6g (%d states scored)\n", score, bf.best,
              r.evaluations);
}

TEST(ActivationSearch, GroupedSearchIsExactOverMonotoneMaps) {
  Graph g = sq::make_zoo_model("lenet5", {1, 28, 28}, 10);
  g.infer_shapes();
  const sq::Target t = mpic();
  const sq::CostEvaluator ce(g, t);
  const std::vector<int> acts = {2, 4, 8}, cand = {2, 4, 8};
  sq::Budgets b;
  b.latency_s = ce.evaluate(BitConfig::uniform(g, 4, 4)).latency_s;
  const auto points = sq::activation_points(g);
  sq::ActivationSearchOptions o;
  o.abits = acts;
  // Two groups: the first two points (group 0, smaller statistic), the rest (group 1).
  for (size_t q = 0; q < points.size(); ++q) o.groups.push_back(q < 2 ? 0 : 1);
  auto obj = [&](const std::string& n, int bits) { return wdamage(g, n, bits); };
  auto adamage = [&](const std::string& q, int a) {
    return 300.0 * (q == points[0].name ? 3 : 1) * std::pow(4.0, -a);
  };
  auto allocate = [&](const sq::LayerActivationBits& la) -> std::optional<sq::WeightAllocation> {
    const sq::AssignmentSolver s(g, ce, b, cand, la);
    auto r = s.solve(obj);
    if (!r) return std::nullopt;
    sq::WeightAllocation w{*r, 0};
    for (const std::string& n : s.free_layers()) w.damage += obj(n, r->for_layer(n).wbits);
    return w;
  };
  const auto r = sq::search_activation_widths(g, ce, b, cand, {}, points, o, allocate, adamage);
  EXPECT_EQ(r.evaluations, 6);  // non-decreasing maps of 2 groups onto 3 widths
  double best = std::numeric_limits<double>::infinity();
  for (int a0 : acts)
    for (int a1 : acts) {
      if (a1 < a0) continue;
      std::map<std::string, int> w;
      for (size_t q = 0; q < points.size(); ++q) w[points[q].name] = q < 2 ? a0 : a1;
      auto wa = allocate(sq::point_widths_to_layers(points, w, 8));
      if (!wa) continue;
      double d = wa->damage;
      for (const auto& [q, x] : w) d += adamage(q, x);
      best = std::min(best, d);
    }
  EXPECT_DOUBLE_EQ(r.weight_damage + r.activation_damage, best);
  EXPECT_LE(r.point_bits.at(points[0].name), r.point_bits.at(points[4].name));
  EXPECT_TRUE(sq::fits(ce, b, r.bits));
}

TEST(ActivationSearch, RefusesExactlyWhenTheNarrowestActivationsCannotFit) {
  Graph g = sq::make_zoo_model("lenet5", {1, 28, 28}, 10);
  g.infer_shapes();
  const sq::Target t = mpic();
  const sq::CostEvaluator ce(g, t);
  const double floor = ce.evaluate(BitConfig::uniform(g, 2, 2)).latency_s;
  auto obj = [&](const std::string& n, int bits) { return wdamage(g, n, bits); };
  auto adamage = [](const std::string&, int a) { return std::pow(4.0, -a); };
  sq::Budgets b;
  b.latency_s = floor * 0.99;
  try {
    sq::joint_exact_allocation(g, ce, b, {2, 4, 8}, {}, {2, 4, 8}, obj, adamage);
    FAIL() << "expected a refusal";
  } catch (const sq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("latency"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("at 2 bits"), std::string::npos) << e.what();
  }
  b.latency_s = floor;  // exactly reachable: everything at 2 bits
  const auto r = sq::joint_exact_allocation(g, ce, b, {2, 4, 8}, {}, {2, 4, 8}, obj, adamage);
  EXPECT_TRUE(sq::fits(ce, b, r.bits));
  EXPECT_THROW(sq::joint_exact_allocation(g, ce, b, {2, 4, 8}, {}, {}, obj, adamage), sq::Error);
  EXPECT_THROW(sq::joint_exact_allocation(g, ce, b, {2, 4, 8}, {}, {1, 8}, obj, adamage),
               sq::Error);
}

TEST(ActivationSearch, SigmaQuantPhase1ClustersActivationsBySigma) {
  Graph g = sq::make_zoo_model("lenet5", {1, 28, 28}, 10);
  g.infer_shapes();
  const sq::Target t = mpic();
  const sq::CostEvaluator ce(g, t);
  const auto points = sq::activation_points(g);
  std::map<std::string, double> sigma;
  for (size_t q = 0; q < points.size(); ++q) sigma[points[q].name] = q % 2 ? 0.1 : 3.0;
  sq::Phase1Options o;
  o.candidate_bits = {2, 4, 8};
  sq::Budgets b;
  b.latency_s = ce.evaluate(BitConfig::uniform(g, 4, 4)).latency_s;
  o.budgets = b;
  sq::ActivationSearchResult info;
  const sq::Phase1Result r =
      sq::sigmaquant_phase1_with_activations(g, t, o, {2, 4, 8}, sigma, &info);
  EXPECT_TRUE(sq::fits(ce, b, r.bits));
  for (const auto& pa : points)
    for (const auto& pb : points)
      if (sigma[pa.name] > sigma[pb.name]) {
        EXPECT_GE(info.point_bits.at(pa.name), info.point_bits.at(pb.name));
      }
  for (const auto& p : points)
    for (const std::string& l : p.layers)
      EXPECT_EQ(r.bits.for_layer(l).abits, info.point_bits.at(p.name));
  // A weight budget alone: every activation stays at the widest width.
  sq::Budgets w;
  w.weight_bytes = ce.evaluate(BitConfig::uniform(g, 4, 8)).weight_bytes;
  o.budgets = w;
  const sq::Phase1Result rw = sq::sigmaquant_phase1_with_activations(g, t, o, {2, 4, 8}, sigma);
  for (int i : g.weight_layers()) EXPECT_EQ(rw.bits.for_layer(g.nodes[i].name).abits, 8);
  sigma.erase(points[1].name);
  EXPECT_THROW(sq::sigmaquant_phase1_with_activations(g, t, o, {2, 4, 8}, sigma), sq::Error);
}

}  // namespace
