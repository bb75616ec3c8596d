// Feasibility as a property: on every zoo model and every shipped target (mcu's non-monotone
// costs and mpic/custom's rounded widths included), random budgets between the cheapest reachable
// and the all-8-bit costs; every allocator that needs no training (Phase 1, uniform, hessian with
// synthetic traces, adaptive with synthetic p/t, random) must return an assignment that fits
// whenever one exists among its candidates, and refuse (sq::Error) only when none does. Ground
// truth: exhaustive enumeration through CostEvaluator on the small networks (lenet5, mlp), where
// it also checks the exact solver's verdicts and the Hessian optimum; the exact solver on the
// large ones. Plus the solver's own contracts (floors, error text, GLPK against branch and bound).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
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

std::vector<std::string> layer_names(const Graph& g) {
  std::vector<std::string> n;
  for (int i : g.weight_layers()) n.push_back(g.nodes[i].name);
  return n;
}

std::vector<std::string> target_files() {
  std::vector<std::string> f;
  for (const auto& e : std::filesystem::directory_iterator(std::string(SQ_SOURCE_DIR) + "/targets"))
    if (e.path().extension() == ".json") f.push_back(e.path().string());
  std::sort(f.begin(), f.end());
  return f;
}

// The budget metrics a target defines, in Budgets order: weight, latency, energy, BOPs.
struct Metrics {
  double v[4] = {0, 0, 0, 0};
};
Metrics metrics_of(const sq::CostReport& r) {
  Metrics m;
  m.v[0] = static_cast<double>(r.weight_bytes);
  m.v[1] = r.latency_s;
  m.v[2] = r.energy_j;
  m.v[3] = static_cast<double>(r.bops);
  return m;
}
void set_budget(sq::Budgets& b, int k, double v) {
  (k == 0 ? b.weight_bytes : k == 1 ? b.latency_s : k == 2 ? b.energy_j : b.bops) = v;
}
bool within(const Metrics& m, const sq::Budgets& b) {  // check_budgets' verdict, by hand
  const std::optional<double>* lim[4] = {&b.weight_bytes, &b.latency_s, &b.energy_j, &b.bops};
  for (int k = 0; k < 4; ++k)
    if (*lim[k] && !(m.v[k] <= **lim[k])) return false;
  return true;
}

// Hessian-style damage of a layer at `bits`, as hessian_allocation computes it.
double hessian_damage(const sq::Node& n, double trace, int bits) {
  const sq::Tensor& w = n.params.at("weight");
  sq::Tensor q = sq::dequantize(sq::quantize_weights_symmetric(w, bits, true));
  double e = 0;
  for (int64_t k = 0; k < w.size(); ++k) e += double(q.data[k] - w.data[k]) * (q.data[k] - w.data[k]);
  return trace / static_cast<double>(w.size()) * e;
}

struct Tally {
  int cases = 0, feasible = 0, violations = 0, refusals = 0, wrong_errors = 0;
  double seconds = 0;
};

TEST(FeasibilityProperty, EveryAllocatorMeetsEveryFeasibleBudgetAndRefusesOnlyInfeasibleOnes) {
  const std::vector<int> requested = {2, 3, 4, 5, 6, 8};
  // 20 budgets per model x target on the small networks (enumeration gives the ground truth) and
  // resnet8, 8 on the two largest (the exact solver decides there): a few seconds in all.
  std::mt19937_64 rng(20261129);
  std::map<std::string, Tally> tally;  // per allocator
  int cases = 0, feasible_cases = 0, solver_mismatch = 0, hessian_not_optimal = 0,
      adaptive_unused = 0;
  int exact_fits = 0;  // Phase 1 results where the greedy fitter got stuck
  for (const std::string model : {"lenet5", "mlp", "resnet8", "resnet20", "mobilenetv2"}) {
    const auto model_t0 = std::chrono::steady_clock::now();
    // 16x16 inputs: the same layers (and the same allocation problem) as 28x28, fewer MLP weights.
    const Graph g = sq::make_zoo_model(model, {1, 16, 16}, 10);
    const std::vector<std::string> names = layer_names(g);
    const bool small = model == std::string("lenet5") || model == std::string("mlp");
    const int per_pair =
        model == std::string("resnet20") || model == std::string("mobilenetv2") ? 8 : 20;
    std::map<std::string, double> traces, p, t;
    for (size_t l = 0; l < names.size(); ++l) {
      traces[names[l]] = 0.5 + sq::uniform01(rng) * 20;
      p[names[l]] = std::exp(4 * sq::uniform01(rng));
      t[names[l]] = std::exp(4 * sq::uniform01(rng));
    }
    for (const std::string& file : target_files()) {
      const sq::Target target = sq::load_target(file);
      const sq::CostEvaluator ce(g, target);
      const std::vector<int> cand = sq::candidate_widths(requested, target);
      const bool timing = target.defines_timing(), energy = target.defines_energy();
      const bool has[4] = {true, timing, energy, true};

      // Range of each metric: from the least reachable (the solver's floor, checked against the
      // enumeration below) to the largest uniform assignment (all-8-bit, or more under mcu).
      sq::Budgets loose;
      loose.weight_bytes = loose.bops = 1e300;
      if (timing) loose.latency_s = 1e300;
      if (energy) loose.energy_j = 1e300;
      const sq::AssignmentSolver probe(g, ce, loose, cand, 8);
      Metrics lo, hi;
      {
        int k = 0;
        for (const sq::BudgetCheck& f : probe.floors()) {
          while (!has[k]) ++k;
          lo.v[k++] = f.value;
        }
      }
      std::vector<Metrics> uniforms;
      for (int b : cand) {
        uniforms.push_back(metrics_of(ce.evaluate(BitConfig::uniform(g, b, 8))));
        for (int k = 0; k < 4; ++k) hi.v[k] = std::max(hi.v[k], uniforms.back().v[k]);
      }

      // Small networks: every assignment, through the evaluator (the ground truth), with its
      // Hessian damage.
      std::vector<Metrics> every;
      std::vector<double> every_damage;
      std::vector<std::vector<double>> damage_table(names.size());
      if (small) {
        for (size_t l = 0; l < names.size(); ++l)
          for (int b : cand)
            damage_table[l].push_back(hessian_damage(g.node(names[l]), traces[names[l]], b));
        std::vector<size_t> idx(names.size(), 0);
        Metrics floor_check;
        for (int k = 0; k < 4; ++k) floor_check.v[k] = INFINITY;
        while (true) {
          BitConfig c = BitConfig::uniform(g, 8, 8);
          double d = 0;
          for (size_t l = 0; l < names.size(); ++l) {
            c.layers[names[l]].wbits = cand[idx[l]];
            d += damage_table[l][idx[l]];
          }
          every.push_back(metrics_of(ce.evaluate(c)));
          every_damage.push_back(d);
          for (int k = 0; k < 4; ++k) floor_check.v[k] = std::min(floor_check.v[k], every.back().v[k]);
          size_t k = 0;
          while (k < idx.size() && ++idx[k] == cand.size()) idx[k++] = 0;
          if (k == idx.size()) break;
        }
        for (int k = 0; k < 4; ++k) {
          if (has[k]) {
            EXPECT_EQ(lo.v[k], floor_check.v[k]) << model << " " << file << " metric " << k;
          }
        }
      }

      for (int i = 0; i < per_pair; ++i) {
        sq::Budgets b;
        int present = 0;
        while (present == 0)
          for (int k = 0; k < 4; ++k)
            if (has[k] && sq::uniform01(rng) < 0.6) {
              // Squared: tight budgets (near the floors, where they conflict) more often.
              const double x = sq::uniform01(rng);
              double v = lo.v[k] + x * x * (hi.v[k] - lo.v[k]);
              // Boundary cases: exactly a uniform assignment's value, exactly the floor, or just
              // below it (out of reach).
              const double u = sq::uniform01(rng);
              if (u < 0.15) v = uniforms[sq::uniform_index(rng, uniforms.size())].v[k];
              else if (u < 0.2) v = lo.v[k];
              else if (u < 0.23) v = lo.v[k] * (1 - 0.05 * sq::uniform01(rng));
              set_budget(b, k, v);
              ++present;
            }
        ++cases;
        bool truth;
        std::optional<double> best_damage;
        if (small) {
          truth = false;
          for (size_t a = 0; a < every.size(); ++a)
            if (within(every[a], b)) {
              truth = true;
              if (!best_damage || every_damage[a] < *best_damage) best_damage = every_damage[a];
            }
          if (sq::AssignmentSolver(g, ce, b, cand, 8).feasible() != truth) ++solver_mismatch;
        } else {
          truth = sq::AssignmentSolver(g, ce, b, cand, 8).feasible();
        }
        feasible_cases += truth;
        bool uniform_truth = false;
        for (const Metrics& m : uniforms) uniform_truth = uniform_truth || within(m, b);

        auto check = [&](const std::string& who, bool can, const std::function<BitConfig()>& run) {
          Tally& ty = tally[who];
          ++ty.cases;
          ty.feasible += can;
          const auto t0 = std::chrono::steady_clock::now();
          struct Clock {
            Tally& ty;
            std::chrono::steady_clock::time_point t0;
            ~Clock() {
              ty.seconds +=
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            }
          } clock{ty, t0};
          try {
            const BitConfig r = run();
            if (!sq::fits(ce, b, r)) {
              ++ty.violations;
              ADD_FAILURE() << who << " broke a budget: " << model << " " << file << " case " << i;
            }
            for (const std::string& n : names) {
              const int w = r.for_layer(n).wbits;
              EXPECT_TRUE(std::count(cand.begin(), cand.end(), w)) << who << " " << n << " " << w;
            }
            return std::optional<BitConfig>(r);
          } catch (const sq::Error& e) {
            if (can) {
              ++ty.refusals;
              ADD_FAILURE() << who << " refused a feasible budget: " << model << " " << file
                            << " case " << i << ": " << e.what();
            } else if (std::string(e.what()).find("no ") == std::string::npos) {
              ++ty.wrong_errors;
              ADD_FAILURE() << who << ": the refusal does not say why: " << e.what();
            }
            return std::optional<BitConfig>();
          }
        };
        check("phase1", truth, [&] {
          sq::Phase1Options o;
          o.budgets = b;
          const sq::Phase1Result r = sq::sigmaquant_phase1(g, target, o);
          exact_fits += r.exact_fit;
          return r.bits;
        });
        check("uniform", uniform_truth, [&] {
          return BitConfig::uniform(g, sq::nearest_feasible_uniform(g, ce, b, requested, 8), 8);
        });
        auto h = check("hessian", truth,
                       [&] { return sq::hessian_allocation(g, ce, b, traces, requested, 8); });
        if (h && best_damage) {
          double d = 0;
          for (size_t l = 0; l < names.size(); ++l) {
            const int w = h->for_layer(names[l]).wbits;
            d += damage_table[l][std::find(cand.begin(), cand.end(), w) - cand.begin()];
          }
          if (!(d <= *best_damage * (1 + 1e-9) + 1e-300)) {
            ++hessian_not_optimal;
            ADD_FAILURE() << "hessian not optimal: " << model << " " << file << " case " << i << ": "
                          << d << " against " << *best_damage;
          }
        }
        auto a = check("adaptive", truth,
                       [&] { return sq::adaptive_allocation(g, ce, b, p, t, requested, 8); });
        // No budget left that one more raise could use: every layer at its widest candidate, or
        // one step wider breaks a budget.
        if (a)
          for (const std::string& n : names) {
            const int w = a->for_layer(n).wbits;
            const auto up = std::upper_bound(cand.begin(), cand.end(), w);
            if (up == cand.end()) continue;
            BitConfig raised = *a;
            sq::LayerBits lb = a->for_layer(n);
            lb.wbits = *up;
            raised.layers[n] = lb;
            if (sq::fits(ce, b, raised)) {
              ++adaptive_unused;
              ADD_FAILURE() << "adaptive left budget for " << n << " at " << *up
                            << " bits: " << model << " " << file << " case " << i;
              break;
            }
          }
        check("random", truth, [&] {
          return sq::random_allocation(g, ce, b, requested, 8, static_cast<uint64_t>(i + 1));
        });
      }
    }
    if (getenv("SQ_DEBUG_ALLOC")) {
      printf("%s: %.2f s", model.c_str(),
             std::chrono::duration<double>(std::chrono::steady_clock::now() - model_t0).count());
      for (const auto& [who, ty] : tally) printf(" %s %.2f", who.c_str(), ty.seconds);
      printf("\n");
    }
  }
  std::string summary =
      "cases " + std::to_string(cases) + ", feasible " + std::to_string(feasible_cases) +
      "; solver mismatches " + std::to_string(solver_mismatch) + ", hessian not optimal " +
      std::to_string(hessian_not_optimal) + ", adaptive with budget left " +
      std::to_string(adaptive_unused) + "; phase 1 exact fits " + std::to_string(exact_fits);
  for (const auto& [who, ty] : tally)
    summary += "\n  " + who + ": " + std::to_string(ty.cases) + " cases (" +
               std::to_string(ty.feasible) + " feasible), " + std::to_string(ty.violations) +
               " violations, " + std::to_string(ty.refusals) + " refusals of feasible budgets, " + std::to_string(ty.seconds) + " s";
  if (getenv("SQ_DEBUG_ALLOC")) printf("%s\n", summary.c_str());
  EXPECT_EQ(solver_mismatch, 0) << summary;
  EXPECT_EQ(hessian_not_optimal, 0) << summary;
  EXPECT_EQ(adaptive_unused, 0) << summary;
  for (const auto& [who, ty] : tally) {
    EXPECT_EQ(ty.violations, 0) << who << "\n" << summary;
    EXPECT_EQ(ty.refusals, 0) << who << "\n" << summary;
    EXPECT_EQ(ty.wrong_errors, 0) << who << "\n" << summary;
  }
  // The draw must exercise both sides.
  EXPECT_GT(feasible_cases, cases / 4) << summary;
  EXPECT_LT(feasible_cases, cases) << summary;
}

// ---- the solver's own contracts ----

sq::Target target(const std::string& name) {
  return sq::load_target(std::string(SQ_SOURCE_DIR) + "/targets/" + name + ".json");
}

TEST(FeasibilitySolver, FloorsAreExactUnderNonMonotoneCostsAndReasonsNameTheBudget) {
  const Graph g = sq::make_zoo_model("lenet5", {1, 28, 28}, 10);
  const sq::Target mcu = target("mcu");
  const sq::CostEvaluator ce(g, mcu);
  const std::vector<int> cand = {2, 4, 8};
  const sq::CostReport u2 = ce.evaluate(BitConfig::uniform(g, 2, 8));
  const sq::CostReport u8 = ce.evaluate(BitConfig::uniform(g, 8, 8));
  ASSERT_LT(u8.latency_s, u2.latency_s);  // mcu: 8-bit weights skip the unpack step

  sq::Budgets b;
  b.weight_bytes = static_cast<double>(u2.weight_bytes);
  b.latency_s = u8.latency_s;
  const sq::AssignmentSolver s(g, ce, b, cand, 8);
  ASSERT_EQ(s.floors().size(), 2u);
  EXPECT_EQ(s.floors()[0].value, static_cast<double>(u2.weight_bytes));  // all at 2 bits
  EXPECT_EQ(s.floors()[1].value, u8.latency_s);                          // all at 8 bits
  EXPECT_TRUE(s.floors()[0].fits && s.floors()[1].fits);
  // Each alone can be met; together they cannot (every layer would need 2 and 8 bits).
  EXPECT_FALSE(s.feasible());
  const std::string why = s.why_infeasible();
  EXPECT_NE(why.find("no assignment over {2,4,8} (activations at 8 bits) fits target 'mcu'"),
            std::string::npos)
      << why;
  EXPECT_NE(why.find("each budget can be met alone"), std::string::npos) << why;
  EXPECT_NE(why.find("together"), std::string::npos) << why;
  EXPECT_NE(sqtest::error_of([&] { s.require_feasible("me"); }).find("me: no assignment"),
            std::string::npos);
  EXPECT_FALSE(s.solve({}).has_value());

  // Below the latency floor: that budget is named, with what it needs.
  sq::Budgets tight;
  tight.latency_s = 0.9 * u8.latency_s;
  const sq::AssignmentSolver t(g, ce, tight, cand, 8);
  EXPECT_FALSE(t.feasible());
  EXPECT_NE(t.why_infeasible().find("the latency budget (latency_ms) cannot be met: it needs at "
                                    "least"),
            std::string::npos)
      << t.why_infeasible();

  // Between the floors of a non-monotone model: feasible, and the solver's answer fits.
  sq::Budgets mid;
  mid.latency_s = 0.5 * (u2.latency_s + u8.latency_s);
  mid.weight_bytes = 0.5 * static_cast<double>(u2.weight_bytes + u8.weight_bytes);
  const sq::AssignmentSolver m(g, ce, mid, cand, 8);
  ASSERT_TRUE(m.feasible());
  sq::SolveInfo info;
  std::optional<BitConfig> r = m.solve([](const std::string&, int bits) { return -bits; }, &info);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(sq::fits(ce, mid, *r));
  EXPECT_TRUE(info.optimal) << info.method;
  EXPECT_EQ(m.why_infeasible(), "");
  // The one-shot form gives the same.
  EXPECT_EQ(*sq::solve_assignment(g, ce, mid, cand,
                                  [](const std::string&, int bits) { return -bits; }, 8),
            *r);
}

TEST(FeasibilitySolver, CandidateWidthRuleKeepsRoundedWidthsAndDropsUnrunnableOnes) {
  const sq::Target mpic = target("mpic");
  EXPECT_EQ(sq::candidate_widths({8, 2, 3, 3, 4}, mpic), (std::vector<int>{2, 3, 4, 8}));
  sq::Target small = mpic;
  small.storage.weight_widths = {2, 4};
  EXPECT_EQ(sq::candidate_widths({2, 3, 4, 5, 6, 8}, small), (std::vector<int>{2, 3, 4}));
  small.storage.weight_widths = {1};
  std::string e = sqtest::error_of([&] { sq::candidate_widths({2, 4}, small); });
  EXPECT_NE(e.find("storage.weight_widths"), std::string::npos) << e;
  sq::Target cus = target("custom");
  cus.storage.weight_widths.clear();
  cus.table.w_bits = {2, 4};
  cus.table.macs_per_cycle = {{64, 64}, {32, 32}, {8, 8}};
  EXPECT_EQ(sq::candidate_widths({2, 3, 4, 8}, cus), (std::vector<int>{2, 3, 4}));
  EXPECT_NE(sqtest::error_of([&] { sq::candidate_widths({2, 9}, mpic); }).find("out of range"),
            std::string::npos);
  EXPECT_NE(sqtest::error_of([&] { sq::candidate_widths({}, mpic); }), "");
  // Idempotent.
  EXPECT_EQ(sq::candidate_widths(sq::candidate_widths({2, 3, 8}, mpic), mpic),
            (std::vector<int>{2, 3, 8}));
}

TEST(FeasibilitySolver, GlpkAndBranchAndBoundAgree) {
  if (!sq::assignment_solver_has_glpk()) GTEST_SKIP() << "built without GLPK";
  std::mt19937_64 rng(7);
  int compared = 0;
  for (const std::string model : {"lenet5", "resnet8"})
    for (const std::string tname : {"mcu", "mpic", "shiftadd"}) {
      const Graph g = sq::make_zoo_model(model, {1, 28, 28}, 10);
      const sq::Target tg = target(tname);
      const sq::CostEvaluator ce(g, tg);
      std::map<std::string, double> w;
      for (const std::string& n : layer_names(g)) w[n] = 0.1 + sq::uniform01(rng);
      const sq::CostReport u2 = ce.evaluate(BitConfig::uniform(g, 2, 8));
      const sq::CostReport u8 = ce.evaluate(BitConfig::uniform(g, 8, 8));
      for (int i = 0; i < 6; ++i) {
        sq::Budgets b;
        const double a = sq::uniform01(rng), c = sq::uniform01(rng);
        b.weight_bytes = u2.weight_bytes + a * static_cast<double>(u8.weight_bytes - u2.weight_bytes);
        b.latency_s = std::min(u2.latency_s, u8.latency_s) + c * std::fabs(u8.latency_s - u2.latency_s);
        auto obj = [&](const std::string& n, int bits) { return w.at(n) * std::pow(4.0, -bits); };
        sq::AssignmentSolver glpk(g, ce, b, {2, 3, 4, 5, 6, 8}, 8);
        sq::AssignmentSolver bb(g, ce, b, {2, 3, 4, 5, 6, 8}, 8);
        bb.set_backend(sq::SolverBackend::BranchAndBound);
        sq::SolveInfo gi, bi;
        auto x = glpk.solve(obj, &gi), y = bb.solve(obj, &bi);
        ASSERT_EQ(x.has_value(), y.has_value()) << model << " " << tname << " " << i;
        EXPECT_EQ(bi.method, "branch-and-bound");
        if (!x) continue;
        EXPECT_TRUE(bi.optimal) << bi.nodes << " nodes";
        auto value = [&](const BitConfig& c) {
          double v = 0;
          for (const auto& [n, s] : w) v += obj(n, c.for_layer(n).wbits);
          return v;
        };
        EXPECT_TRUE(sq::fits(ce, b, *x) && sq::fits(ce, b, *y));
        EXPECT_NEAR(value(*x), value(*y), 1e-9 * value(*y)) << model << " " << tname << " " << i;
        ++compared;
      }
    }
  EXPECT_GT(compared, 10);
}

}  // namespace
