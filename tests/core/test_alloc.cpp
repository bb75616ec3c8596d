// Allocation core: exact 1-D k-means against brute force, adaptive k on clear clusters, SigmaQuant
// Phase 1 on synthetic sigma values (clusters recovered, larger sigma never fewer bits), budget
// fitting on ResNet-20 under the shift-add target with several budgets (every budget holds, and
// nothing is left that could be raised) and under every other cost model, Phase 1 against the
// exact optimum of its own damage proxy, sigma after BN folding, the damage override, the
// impossible-budget error and bad options, and the multiple-choice knapsack DP against brute force
// (exact on integer costs, within the rounding bound on a coarse grid).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <set>

#include "sigmaquant/alloc.h"
#include "sigmaquant/cost.h"
#include "sigmaquant/error.h"
#include "sigmaquant/zoo.h"
#include "test_util.h"

namespace {

using sq::Graph;
using sq::Phase1Options;
using sq::Phase1Result;

using sqtest::error_of;

// Uniform integer in [lo, hi] from the project's seeded generator (no std distributions).
int64_t uniform(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(hi - lo + 1));
}

// ---- k-means ----

TEST(AllocKMeans, ExactDpMatchesBruteForceOverAllLabelings) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 60; ++trial) {
    const int n = static_cast<int>(uniform(rng, 1, 7));
    std::vector<double> x(n);
    for (double& v : x) v = static_cast<double>(uniform(rng, -50, 50)) / 8.0;
    for (int k = 1; k <= std::min(n, 3); ++k) {
      // Every labeling into k non-empty clusters; SSE about each cluster's mean.
      double best = INFINITY;
      std::vector<int> lab(n, 0);
      while (true) {
        std::vector<double> s(k, 0), ss(k, 0);
        std::vector<int> c(k, 0);
        for (int i = 0; i < n; ++i) s[lab[i]] += x[i], ss[lab[i]] += x[i] * x[i], ++c[lab[i]];
        bool all = true;
        double sse = 0;
        for (int j = 0; j < k; ++j) {
          if (c[j] == 0)
            all = false;
          else
            sse += ss[j] - s[j] * s[j] / c[j];
        }
        if (all) best = std::min(best, sse);
        int i = 0;
        while (i < n && ++lab[i] == k) lab[i++] = 0;
        if (i == n) break;
      }
      const sq::KMeans1D km = sq::kmeans_1d(x, k);
      EXPECT_NEAR(km.sse, best, 1e-9) << "n=" << n << " k=" << k;
      // Labels are ordered: cluster 0 holds the smallest values.
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < n; ++j)
          if (x[i] < x[j]) {
            EXPECT_LE(km.labels[i], km.labels[j]);
          }
      EXPECT_TRUE(std::is_sorted(km.centers.begin(), km.centers.end()));
    }
  }
}

TEST(AllocKMeans, AdaptiveKRecoversClearClusters) {
  // Three tight groups of log-sigma, given out of order.
  const std::vector<double> x = {-4.6,  -2.30, -0.05, -4.5,  -2.25, 0.0,  -4.55,
                                 -2.35, 0.1,   -2.3,  -4.62, 0.05,  -2.28};
  std::vector<double> crit;
  const sq::KMeans1D km = sq::kmeans_1d_adaptive(x, 6, 0.5, &crit);
  ASSERT_EQ(km.k, 3);
  ASSERT_EQ(crit.size(), 6u);
  EXPECT_EQ(std::max_element(crit.begin(), crit.end()) - crit.begin(), 2);
  for (size_t i = 0; i < x.size(); ++i)
    EXPECT_EQ(km.labels[i], x[i] < -4 ? 0 : (x[i] < -1 ? 1 : 2)) << i;
  // Two groups, then one value: k = 2 and k = 1.
  EXPECT_EQ(sq::kmeans_1d_adaptive({1, 1.1, 0.9, 5, 5.1, 4.9}, 6).k, 2);
  EXPECT_EQ(sq::kmeans_1d_adaptive({3, 3, 3, 3}, 6).k, 1);
  // The cap: at most max_k clusters.
  EXPECT_EQ(sq::kmeans_1d_adaptive(x, 2).k, 2);
  EXPECT_NE(error_of([] { sq::kmeans_1d({1, 2}, 3); }), "");
}

// ---- Phase 1 on synthetic sigma ----

// input {1,4,4} -> flatten -> linear 16->16 (one per sigma but the last) -> linear 16->10. Each
// layer's weights alternate +sigma, -sigma, so its population std is exactly sigma.
Graph synthetic(const std::vector<double>& sigmas) {
  Graph g("synthetic", {1, 4, 4}, 10);
  int x = g.flatten("flat", g.input());
  for (size_t i = 0; i < sigmas.size(); ++i)
    x = g.linear("fc" + std::to_string(i), x, i + 1 == sigmas.size() ? 10 : 16);
  g.infer_shapes();
  g.init_params(1);
  for (size_t i = 0; i < sigmas.size(); ++i) {
    auto& w = g.nodes[g.index_of("fc" + std::to_string(i))].params.at("weight").data;
    for (size_t k = 0; k < w.size(); ++k)
      w[k] = static_cast<float>(k % 2 == 0 ? sigmas[i] : -sigmas[i]);
  }
  return g;
}

const std::vector<double> kSyntheticSigmas = {0.1,  1.0,   0.01,  0.105, 1.1,  0.0105,
                                              0.95, 0.098, 0.011, 1.05,  0.102};

void expect_monotone(const Phase1Result& r) {
  for (const auto& a : r.layers)
    for (const auto& b : r.layers)
      if (!a.pinned && !b.pinned && a.sigma > b.sigma) {
        EXPECT_GE(a.bits, b.bits) << a.name << " (sigma " << a.sigma << ") vs " << b.name
                                  << " (sigma " << b.sigma << ")";
      }
}

TEST(AllocPhase1, SyntheticSigmaClustersAndMonotoneMapping) {
  const Graph g = synthetic(kSyntheticSigmas);
  const sq::Target t = sq::builtin_target("size");  // no budgets: the mapping alone
  const Phase1Result r = sq::sigmaquant_phase1(g, t);
  ASSERT_EQ(r.k, 3);
  ASSERT_EQ(r.layers.size(), kSyntheticSigmas.size());
  for (size_t i = 0; i < r.layers.size(); ++i) {
    EXPECT_NEAR(r.layers[i].sigma, kSyntheticSigmas[i], 1e-6);
    const double s = kSyntheticSigmas[i];
    EXPECT_EQ(r.layers[i].cluster, s < 0.05 ? 0 : (s < 0.5 ? 1 : 2)) << r.layers[i].name;
  }
  // Highest window of {2,3,4,5,6,8} with no budget: 5, 6, 8 bits by increasing sigma.
  EXPECT_EQ(r.cluster_bits, (std::vector<int>{5, 6, 8}));
  for (const auto& L : r.layers) EXPECT_EQ(L.bits, r.cluster_bits[L.cluster]) << L.name;
  EXPECT_EQ(r.lowered + r.raised, 0);
  expect_monotone(r);

  // The paper's grid {2,4,8}: three clusters take all three.
  Phase1Options o;
  o.candidate_bits = {2, 4, 8};
  const Phase1Result r248 = sq::sigmaquant_phase1(g, t, o);
  EXPECT_EQ(r248.cluster_bits, (std::vector<int>{2, 4, 8}));

  // Linear-sigma clustering cannot separate 0.01 from 0.1 as well, but the mapping stays monotone.
  o = Phase1Options();
  o.space = sq::SigmaSpace::Linear;
  expect_monotone(sq::sigmaquant_phase1(g, t, o));
}

TEST(AllocPhase1, SyntheticBudgetsKeepMonotoneAndFit) {
  const Graph g = synthetic(kSyntheticSigmas);
  const sq::Target t = sq::builtin_target("size");
  for (double avg_bits : {2.2, 3.0, 4.5, 6.0, 7.5}) {
    // A weight budget of avg_bits per weight plus the scales and biases (fp32 each per channel).
    double bytes = 0;
    for (int l : g.weight_layers()) {
      const auto& n = g.nodes[l];
      bytes += std::ceil(n.params.at("weight").data.size() * avg_bits / 8) + 8 * n.out_channels;
    }
    Phase1Options o;
    o.budgets = sq::Budgets();
    o.budgets->weight_bytes = bytes;
    const Phase1Result r = sq::sigmaquant_phase1(g, t, o);
    EXPECT_TRUE(sq::fits_budgets(r.cost, *o.budgets)) << avg_bits;
    expect_monotone(r);
  }
}

// ---- Phase 1 on ResNet-20, shift-add target ----

sq::Target shiftadd() {
  return sq::load_target(std::string(SQ_SOURCE_DIR) + "/targets/shiftadd.json");
}

// No free layer could go one candidate step up with every budget still holding (and, when the
// fitter is monotone, without breaking the sigma order), unless the tightest budget is already
// used beyond 1 - margin.
void expect_nothing_left_to_raise(const Graph& g, const sq::Target& t, const Phase1Options& o,
                                  const Phase1Result& r) {
  const sq::Budgets& b = r.budget_limits;
  double usage = 0;
  for (const auto& c : r.budgets) usage = std::max(usage, c.value / c.budget);
  if (usage >= 1 - o.raise_margin) return;
  sq::CostEvaluator ev(g, t);
  for (const auto& L : r.layers) {
    if (L.pinned) continue;
    auto it = std::upper_bound(o.candidate_bits.begin(), o.candidate_bits.end(), L.bits);
    if (it == o.candidate_bits.end()) continue;
    if (o.monotone) {
      bool ok = true;
      for (const auto& M : r.layers)
        if (!M.pinned && M.sigma > L.sigma && M.bits < *it) ok = false;
      if (!ok) continue;
    }
    sq::BitConfig up = r.bits;
    up.layers[L.name].wbits = *it;
    EXPECT_FALSE(sq::fits_budgets(ev.evaluate(up), b)) << L.name << " could still be raised";
  }
}

TEST(AllocPhase1, Resnet20EveryBudgetHoldsUnderShiftAdd) {
  const Graph g = sq::make_zoo_model("resnet20", {1, 28, 28}, 10);
  const sq::Target t = shiftadd();
  struct Case {
    double weight_kib, latency_ms, energy_uj;
  };
  // From tight (near the 2-bit floor) to loose; 0 = that budget absent.
  const std::vector<Case> cases = {{76, 0, 0},    {84, 0, 0},    {100, 6, 0}, {110, 0, 8},
                                   {128, 16, 14}, {256, 5.5, 0}, {300, 0, 0}, {96, 10, 12}};
  int checked = 0;
  for (const Case& c : cases)
    for (auto moves : {sq::FitMoves::Layer, sq::FitMoves::Group})
      for (const std::vector<int>& grid :
           {std::vector<int>{2, 3, 4, 5, 6, 8}, std::vector<int>{2, 4, 8}})
        for (auto start : {sq::Phase1Start::TopWindow, sq::Phase1Start::FittingWindow}) {
          Phase1Options o;
          o.start = start;
          o.candidate_bits = grid;
          o.moves = moves;
          o.budgets = sq::Budgets();
          o.budgets->weight_bytes = c.weight_kib * 1024;
          if (c.latency_ms > 0) o.budgets->latency_s = c.latency_ms * 1e-3;
          if (c.energy_uj > 0) o.budgets->energy_j = c.energy_uj * 1e-6;
          const Phase1Result r = sq::sigmaquant_phase1(g, t, o);
          // Independently re-costed: every budget holds.
          const sq::CostReport rep = sq::compute_cost(g, t, r.bits);
          for (const auto& v : sq::check_budgets(rep, *o.budgets))
            EXPECT_TRUE(v.fits) << v.metric << " " << v.value << " > " << v.budget << " (case "
                                << c.weight_kib << " KiB)";
          EXPECT_EQ(r.budgets.size(), sq::check_budgets(rep, *o.budgets).size());
          sq::validate_bits(r.bits, g, "phase1");
          for (const auto& L : r.layers) {
            EXPECT_TRUE(std::count(grid.begin(), grid.end(), L.bits)) << L.name << " " << L.bits;
            EXPECT_EQ(r.bits.layers.at(L.name).abits, 8);
          }
          expect_monotone(r);
          expect_nothing_left_to_raise(g, t, o, r);
          if (getenv("SQ_DEBUG_ALLOC")) {
            std::string u;
            for (const auto& v : r.budgets)
              u += " " + v.key + "=" + std::to_string(v.value / v.budget);
            printf(
                "case %g/%g/%g moves %d grid %zu start %d: k=%d down %d up %d avg %.2f damage "
                "%.4g%s\n",
                c.weight_kib, c.latency_ms, c.energy_uj, static_cast<int>(moves), grid.size(),
                static_cast<int>(start), r.k, r.lowered, r.raised,
                sq::average_weight_bits(r.bits, g), r.damage, u.c_str());
          }
          ++checked;
        }
  EXPECT_EQ(checked, 64);
}

TEST(AllocPhase1, EveryCostModelKeepsItsBudgets) {
  const Graph g = sq::make_zoo_model("resnet20", {1, 28, 28}, 10);
  for (const std::string name : {"size", "bops", "shiftadd-csd", "mpic", "mcu"}) {
    const sq::Target t = sq::builtin_target(name);
    const sq::CostEvaluator ev(g, t);
    const sq::CostReport u4 = ev.evaluate(sq::BitConfig::uniform(g, 4, 8));
    Phase1Options o;
    o.budgets = sq::Budgets();
    o.budgets->weight_bytes = 0.9 * static_cast<double>(u4.weight_bytes);  // below uniform 4 bits
    if (name == "bops") o.budgets->bops = 0.8 * static_cast<double>(u4.bops);
    if (u4.has_timing) o.budgets->latency_s = 0.95 * u4.latency_s;
    const Phase1Result r = sq::sigmaquant_phase1(g, t, o);
    for (const auto& v : sq::check_budgets(ev.evaluate(r.bits), *o.budgets))
      EXPECT_TRUE(v.fits) << name << ": " << v.metric << " " << v.value << " > " << v.budget;
    expect_monotone(r);
  }
}

// Under a weight-memory budget alone the cost is additive per layer, so the exact optimum of the
// same damage proxy is a multiple-choice knapsack: Phase 1 (greedy, monotone in sigma) can never
// beat it, and should come close.
TEST(AllocPhase1, Resnet20GreedyIsNearTheExactProxyOptimum) {
  const Graph g = sq::make_zoo_model("resnet20", {1, 28, 28}, 10);
  const sq::Target t = shiftadd();
  const std::vector<int> grid = {2, 3, 4, 5, 6, 8};
  sq::CostEvaluator ev(g, t);
  std::vector<sq::CostReport> at;  // uniform assignments, one per candidate
  for (int b : grid) at.push_back(ev.evaluate(sq::BitConfig::uniform(g, b, 8)));
  int64_t sum = 0;
  for (const auto& l : at[0].layers) sum += l.weight_bytes;
  ASSERT_EQ(sum, at[0].weight_bytes);  // additive: each layer's buffer is byte-aligned
  // SQ_DEBUG_ALLOC=1 runs (and prints) the comparison of docs/method.md: both raise orders, with
  // and without the monotone constraint, at more budgets.
  const bool full = getenv("SQ_DEBUG_ALLOC") != nullptr;
  std::vector<double> budgets_kib = {76.0, 128.0, 200.0};
  if (full) budgets_kib = {76.0, 84.0, 100.0, 128.0, 160.0, 200.0};
  std::vector<sq::RaiseOrder> orders = {sq::RaiseOrder::DamagePerCost};
  if (full) orders.push_back(sq::RaiseOrder::Sigma);
  std::vector<bool> monotones = {true};
  if (full) monotones.push_back(false);
  for (double kib : budgets_kib)
    for (auto raise : orders)
      for (bool monotone : monotones) {
        Phase1Options o;
        o.raise = raise;
        o.monotone = monotone;
        o.budgets = sq::Budgets();
        o.budgets->weight_bytes = kib * 1024;
        const Phase1Result r = sq::sigmaquant_phase1(g, t, o);
        std::vector<std::vector<sq::KnapsackItem>> tables(r.layers.size());
        for (size_t l = 0; l < r.layers.size(); ++l)
          for (size_t j = 0; j < grid.size(); ++j)
            tables[l].push_back(
                {grid[j], static_cast<double>(at[j].layers[l].weight_bytes),
                 sq::sigma_damage(r.layers[l].sigma, r.layers[l].weights, grid[j])});
        const sq::KnapsackResult opt = sq::solve_knapsack(tables, kib * 1024);
        EXPECT_GE(opt.unit, 1);  // the gcd of integer byte counts: exact
        EXPECT_GE(r.damage, opt.damage * (1 - 1e-12)) << kib;
        if (raise == sq::RaiseOrder::DamagePerCost) {
          EXPECT_LE(r.damage, opt.damage * 1.15)
              << kib << " KiB: phase 1 " << r.damage << ", optimum " << opt.damage;
        }
        if (getenv("SQ_DEBUG_ALLOC"))
          printf(
              "%g KiB raise %d monotone %d: phase 1 damage %.4g (avg %.3f bits), exact optimum "
              "%.4g "
              "(ratio %.3f)\n",
              kib, static_cast<int>(raise), monotone, r.damage, sq::average_weight_bits(r.bits, g),
              opt.damage, r.damage / opt.damage);
      }
}

TEST(AllocPhase1, Resnet20TargetBudgetsTableAndJson) {
  const Graph g = sq::make_zoo_model("resnet20", {1, 28, 28}, 10);
  const sq::Target t = shiftadd();  // its own budgets: 128 KiB, 64 KiB act, 16 ms, 14 uJ
  Phase1Options o;
  o.pinned = {{"stem.conv", 8}, {"fc", 8}};
  const Phase1Result r = sq::sigmaquant_phase1(g, t, o);
  EXPECT_TRUE(sq::fits_budgets(r.cost, t.budgets));
  EXPECT_EQ(r.bits.layers.at("stem.conv").wbits, 8);
  EXPECT_EQ(r.bits.layers.at("fc").wbits, 8);
  EXPECT_EQ(r.layers.front().cluster, -1);
  EXPECT_GE(r.k, 1);
  EXPECT_LE(r.k, 6);
  const std::string table = sq::phase1_table(r);
  EXPECT_NE(table.find("stage3.block3.b.conv"), std::string::npos);
  EXPECT_NE(table.find("(pinned)"), std::string::npos);
  EXPECT_NE(table.find("weight memory"), std::string::npos);
  const auto j = sq::phase1_to_json(r);
  EXPECT_EQ(j["layers"].size(), 22u);
  EXPECT_EQ(j["budgets"].size(), 4u);
  // Deterministic: the same inputs give the same assignment.
  EXPECT_EQ(sq::sigmaquant_phase1(g, t, o).bits, r.bits);
}

TEST(AllocPhase1, SigmaIsTakenAfterFoldingBatchNorm) {
  Graph g = sq::make_zoo_model("resnet20", {1, 28, 28}, 10);
  // BN with running variance 4 (gamma 1) halves the folded stem weights.
  for (float& v : g.nodes[g.index_of("stem.bn")].params.at("running_var").data) v = 4.0f;
  const double raw = sq::weight_std(g.node("stem.conv"));
  const Phase1Result folded = sq::sigmaquant_phase1(g, sq::builtin_target("size"));
  EXPECT_NEAR(folded.layers[0].sigma, raw / 2, raw * 1e-4);
  Phase1Options o;
  o.fold_bn = false;
  EXPECT_NEAR(sq::sigmaquant_phase1(g, sq::builtin_target("size"), o).layers[0].sigma, raw,
              raw * 1e-6);
}

TEST(AllocPhase1, DamageOverrideSteersTheFitter) {
  // Equal sigmas: with a damage that makes fc1 very sensitive, the fitter lowers the others.
  const Graph g = synthetic({0.1, 0.1, 0.1});
  Phase1Options o;
  o.monotone = false;
  o.damage = [](const std::string& name, int bits) {
    return (name == "fc1" ? 1000.0 : 1.0) * std::ldexp(1.0, -2 * bits);
  };
  o.budgets = sq::Budgets();
  // fc0, fc1: 256 weights + 16 scales + 16 biases (fp32) each; fc2: 160 + 10 + 10.
  o.budgets->weight_bytes = (256 * 8 + 256 * 2) / 8 + 2 * 128 + 80 + 160 * 2 / 8;
  const Phase1Result r = sq::sigmaquant_phase1(g, sq::builtin_target("size"), o);
  EXPECT_TRUE(sq::fits_budgets(r.cost, *o.budgets));
  if (getenv("SQ_DEBUG_ALLOC")) printf("%s\n", sq::phase1_table(r).c_str());
  EXPECT_EQ(r.bits.layers.at("fc1").wbits, 8);
  EXPECT_EQ(r.bits.layers.at("fc0").wbits, 2);
  EXPECT_EQ(r.bits.layers.at("fc2").wbits, 2);
}

TEST(AllocPhase1, ImpossibleBudgetNamesTheBudgetAndTheExcess) {
  const Graph g = sq::make_zoo_model("resnet20", {1, 28, 28}, 10);
  Phase1Options o;
  o.budgets = sq::Budgets();
  o.budgets->weight_bytes = 16 * 1024;  // 270,608 weights at 2 bits alone are 66 KiB
  o.budgets->latency_s = 1.0;           // fits: must not be named
  const std::string e = error_of([&] { sq::sigmaquant_phase1(g, shiftadd(), o); });
  // The one refusal text of every allocator (AssignmentSolver::why_infeasible).
  EXPECT_NE(e.find("phase 1: no assignment over {2,3,4,5,6,8} (activations at 8 bits) fits"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("weight memory budget (weight_kib) cannot be met: it needs at least"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("against 16 KiB, over by"), std::string::npos) << e;
  EXPECT_NE(e.find("cheapest candidate"), std::string::npos) << e;
  EXPECT_NE(e.find("'shiftadd'"), std::string::npos) << e;
  EXPECT_EQ(e.find("latency"), std::string::npos) << e;
}

TEST(AllocPhase1, BadOptionsAreNamed) {
  const Graph g = synthetic({0.1, 1.0});
  const sq::Target t = sq::builtin_target("size");
  auto run = [&](const std::function<void(Phase1Options&)>& edit) {
    Phase1Options o;
    edit(o);
    return error_of([&] { sq::sigmaquant_phase1(g, t, o); });
  };
  EXPECT_NE(run([](Phase1Options& o) {
              o.candidate_bits = {4, 2};
            }).find("ascending"),
            std::string::npos);
  EXPECT_NE(run([](Phase1Options& o) {
              o.candidate_bits = {2, 9};
            }).find("out of range"),
            std::string::npos);
  EXPECT_NE(run([](Phase1Options& o) { o.pinned["nope"] = 8; }).find("'nope' is not in model"),
            std::string::npos);
  EXPECT_NE(run([](Phase1Options& o) { o.pinned["flat"] = 8; }).find("not a weight layer"),
            std::string::npos);
  EXPECT_NE(run([](Phase1Options& o) { o.abits = 1; }).find("activation bits"), std::string::npos);
  // A model without parameters.
  Graph bare("bare", {1, 4, 4}, 10);
  bare.linear("fc", bare.flatten("flat", bare.input()), 10);
  bare.infer_shapes();
  EXPECT_NE(error_of([&] { sq::sigmaquant_phase1(bare, t); }).find("phase 1: model 'bare': fc."),
            std::string::npos);
}

// ---- knapsack ----

using Tables = std::vector<std::vector<sq::KnapsackItem>>;

Tables random_tables(std::mt19937_64& rng, bool integral) {
  Tables t(uniform(rng, 1, 6));
  for (auto& items : t) {
    items.resize(uniform(rng, 1, 5));
    for (size_t j = 0; j < items.size(); ++j) {
      items[j].bits = static_cast<int>(j + 2);
      items[j].cost = integral ? static_cast<double>(uniform(rng, 0, 30))
                               : static_cast<double>(uniform(rng, 0, 30000)) / 997.0;
      items[j].damage = static_cast<double>(uniform(rng, 0, 200));
    }
  }
  return t;
}

double min_cost(const Tables& t) {
  double s = 0;
  for (const auto& items : t) {
    double m = INFINITY;
    for (const auto& it : items) m = std::min(m, it.cost);
    s += m;
  }
  return s;
}

TEST(AllocKnapsack, DpEqualsBruteForceOnRandomIntegerInstances) {
  std::mt19937_64 rng(2026);
  for (int trial = 0; trial < 400; ++trial) {
    const Tables t = random_tables(rng, true);
    const double lo = min_cost(t);
    const double budget = lo + static_cast<double>(uniform(rng, 0, 60));
    const sq::KnapsackResult bf = sq::solve_knapsack_brute_force(t, budget);
    const sq::KnapsackResult dp = sq::solve_knapsack(t, budget);
    EXPECT_EQ(dp.damage, bf.damage) << "trial " << trial;
    EXPECT_LE(dp.cost, budget);
    double c = 0, d = 0;
    for (size_t l = 0; l < t.size(); ++l) {
      c += t[l][dp.choice[l]].cost;
      d += t[l][dp.choice[l]].damage;
      EXPECT_EQ(dp.bits[l], t[l][dp.choice[l]].bits);
    }
    EXPECT_EQ(c, dp.cost);
    EXPECT_EQ(d, dp.damage);
  }
}

TEST(AllocKnapsack, CoarseGridIsFeasibleAndWithinTheRoundingBound) {
  std::mt19937_64 rng(99);
  int solved = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const Tables t = random_tables(rng, false);
    const double budget = min_cost(t) + static_cast<double>(uniform(rng, 0, 40000)) / 997.0;
    const double unit = 0.25;
    sq::KnapsackResult dp;
    try {
      dp = sq::solve_knapsack(t, budget, unit);
    } catch (const sq::Error&) {
      // Only when rounding up to the grid leaves nothing: the exact minimum is then within
      // (layers + 1) x unit of the budget.
      EXPECT_GT(min_cost(t), budget - (t.size() + 1) * unit) << trial;
      continue;
    }
    ++solved;
    EXPECT_EQ(dp.unit, unit);
    EXPECT_LE(dp.cost, budget + 1e-9);
    EXPECT_GE(dp.damage, sq::solve_knapsack_brute_force(t, budget).damage);
    const double shrunk = budget - t.size() * unit;
    if (shrunk >= min_cost(t)) {
      EXPECT_LE(dp.damage, sq::solve_knapsack_brute_force(t, shrunk).damage) << trial;
    }
  }
  EXPECT_GE(solved, 250);
}

TEST(AllocKnapsack, DefaultGridIsTheGcdOfIntegerCostsOrFitsMaxCells) {
  const Tables t = {{{2, 300, 9}, {4, 600, 2}, {8, 1200, 0}}, {{2, 900, 5}, {4, 1800, 1}}};
  const sq::KnapsackResult r = sq::solve_knapsack(t, 2400);
  EXPECT_EQ(r.unit, 300);
  EXPECT_EQ(r.bits, (std::vector<int>{4, 4}));
  EXPECT_EQ(r.damage, 3);
  // A budget too large for max_cells cells at the gcd: the step grows, the result still fits.
  const sq::KnapsackResult c = sq::solve_knapsack(t, 2400, 0, 5);
  EXPECT_EQ(c.unit, 600);
  EXPECT_LE(c.cost, 2400);
}

TEST(AllocKnapsack, ImpossibleBudgetAndBadTablesAreErrors) {
  const Tables t = {{{2, 10, 5}, {4, 20, 1}}, {{2, 7, 3}}};
  EXPECT_NE(error_of([&] { sq::solve_knapsack(t, 16); }).find("smallest achievable cost 17"),
            std::string::npos);
  EXPECT_NE(error_of([&] { sq::solve_knapsack_brute_force(t, 16); }), "");
  EXPECT_EQ(sq::solve_knapsack(t, 17).bits, (std::vector<int>{2, 2}));
  EXPECT_EQ(sq::solve_knapsack(t, 27).bits, (std::vector<int>{4, 2}));
  EXPECT_NE(error_of([] { sq::solve_knapsack({{}}, 5); }).find("no candidate"), std::string::npos);
  EXPECT_NE(error_of([&] { sq::solve_knapsack(t, -1); }).find("budget"), std::string::npos);
}

}  // namespace
