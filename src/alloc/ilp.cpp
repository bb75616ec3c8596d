// The exact assignment solver: one weight width per layer, every budget at once, as an integer
// program (a multiple-choice knapsack with one row per budget, as in HAWQ-V3).
//
// Why it is exact on the real cost model (src/cost/evaluator.cpp, checked line by line): with the
// activation bits fixed (every allocator fixes them), each layer's weight bytes, BOPs, cycles,
// latency and energy depend only on that layer's own weight bits (energy's activation traffic
// depends on activation bits only), the report's totals are these per-layer terms summed in graph
// order, and activation memory does not depend on weight bits at all. So the solver tabulates
// each layer's terms per candidate once (one evaluate() per candidate), and decides "fits" by
// summing the table in graph order: the same floating-point operations in the same order as
// evaluate(), hence bit-for-bit check_budgets' verdict. IEEE addition is monotone, so "every layer
// at its cheapest candidate for a metric" is an exact lower bound (the floors) and a candidate that
// is no better in objective and in every budget than another can be dropped without loss.
//
// Solving: GLPK's branch and cut (glp_intopt) on the scaled program when the library was built
// with it; its answer is re-checked with the exact sums (GLPK works with tolerances of ~1e-7),
// a violated row is tightened by the violation and the program re-solved; if GLPK finds nothing
// after tightening (or without GLPK), an exact depth-first branch and bound with per-budget
// feasibility pruning and a Lagrangian objective bound decides.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>

#include "sigmaquant/alloc.h"
#include "sigmaquant/error.h"
#include "sigmaquant/infeasible.h"

#ifdef SQ_HAVE_GLPK
#include <glpk.h>
#endif

namespace sq {

namespace {

enum class Metric { Weight, Activation, Latency, Energy, Bops };

Metric metric_of(const std::string& key) {
  if (key == "weight_kib") return Metric::Weight;
  if (key == "activation_kib") return Metric::Activation;
  if (key == "latency_ms") return Metric::Latency;
  if (key == "energy_uj") return Metric::Energy;
  if (key == "gbops") return Metric::Bops;
  fail("assignment solver: unknown budget '{}'", key);
}

double layer_term(const LayerCost& lc, Metric m) {
  switch (m) {
    case Metric::Weight:
      return static_cast<double>(lc.weight_bytes);
    case Metric::Latency:
      return lc.latency_s;
    case Metric::Energy:
      return lc.energy_j;
    case Metric::Bops:
      return static_cast<double>(lc.bops);
    case Metric::Activation:
      break;
  }
  return 0;
}

std::string widths_text(const std::vector<int>& w) {
  std::string s;
  for (int x : w) s += (s.empty() ? "" : ",") + std::to_string(x);
  return "{" + s + "}";
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

struct AssignmentSolver::Impl {
  const Graph* g = nullptr;
  const CostEvaluator* ce = nullptr;
  Budgets budgets;
  std::string target;
  std::vector<int> cand;
  std::vector<int> abits;  // per layer (graph order): its input activation's bits
  Granularity granularity = Granularity::PerChannel;
  std::map<std::string, int> pinned;
  std::vector<std::string> layers;      // every weight layer, graph order
  std::vector<std::string> free_names;  // the free ones
  std::vector<int> free;                // their indices into layers
  std::vector<BudgetCheck> rows;        // check_budgets order: metric, key, unit, budget
  std::vector<Metric> metric;           // per row
  // term[l][j][k]: layer l's term of row k at candidate j (pinned layers: the same for every j).
  std::vector<std::vector<std::vector<double>>> term;
  std::vector<double> constant;  // per row: the activation memory (independent of weight bits)
  std::vector<BudgetCheck> floors;
  std::vector<std::vector<int>> floor_choice;  // per row: each layer's cheapest candidate for it
  mutable std::optional<bool> feasible;

  // Row k's value for a choice (per layer, a candidate index; pinned entries unused), summed in
  // graph order exactly as CostEvaluator::evaluate sums its totals.
  double total(size_t k, const std::vector<int>& choice) const {
    if (metric[k] == Metric::Activation) return constant[k];
    double s = 0;
    for (size_t l = 0; l < layers.size(); ++l) s += term[l][choice[l]][k];
    return s;
  }
  bool fits(const std::vector<int>& choice) const {
    for (size_t k = 0; k < rows.size(); ++k)
      if (!(total(k, choice) <= rows[k].budget)) return false;
    return true;
  }
  BitConfig config(const std::vector<int>& choice) const {
    BitConfig c = BitConfig::uniform(*g, cand.front(), abits.front());
    for (size_t l = 0; l < layers.size(); ++l) {
      LayerBits& lb = c.layers[layers[l]];
      auto p = pinned.find(layers[l]);
      lb.wbits = p != pinned.end() ? p->second : cand[choice[l]];
      lb.abits = abits[l];
      lb.granularity = granularity;
      lb.channel_wbits.clear();
    }
    return c;
  }
  // gap: relative optimality gap at which the search may stop (0: proven optimal).
  std::optional<std::vector<int>> solve(const std::vector<std::vector<double>>& obj,
                                        SolverBackend backend, double gap, SolveInfo& info) const;
  std::optional<BitConfig> solve_config(const LayerObjective& objective, SolverBackend backend,
                                        double gap, SolveInfo* info) const;
};

// ---------------------------------------------------------------------------------------------
// Construction: the per-layer tables

AssignmentSolver::AssignmentSolver(const Graph& g, const CostEvaluator& ce, const Budgets& b,
                                   const std::vector<int>& candidates, int abits,
                                   const std::map<std::string, int>& pinned,
                                   Granularity granularity)
    : AssignmentSolver(g, ce, b, candidates, LayerActivationBits{abits, {}}, pinned,
                       granularity) {}

AssignmentSolver::AssignmentSolver(const Graph& g, const CostEvaluator& ce, const Budgets& b,
                                   const std::vector<int>& candidates,
                                   const LayerActivationBits& abits,
                                   const std::map<std::string, int>& pinned,
                                   Granularity granularity) {
  auto im = std::make_shared<Impl>();
  Impl& I = *im;
  I.g = &g;
  I.ce = &ce;
  I.budgets = b;
  I.target = ce.target().name;
  I.cand = candidate_widths(candidates, ce.target());
  I.granularity = granularity;
  I.pinned = pinned;
  for (int i : g.weight_layers()) I.layers.push_back(g.nodes[i].name);
  for (const auto& [n, a] : abits.layers)
    if (std::find(I.layers.begin(), I.layers.end(), n) == I.layers.end())
      fail("assignment solver: activation bits given for '{}', which is not a weight layer of "
           "model '{}'", n, g.name);
  for (const std::string& n : I.layers) {
    auto it = abits.layers.find(n);
    I.abits.push_back(it != abits.layers.end() ? it->second : abits.all);
    if (I.abits.back() < kMinActBits || I.abits.back() > kMaxActBits)
      fail("assignment solver: activation bits {} of layer '{}' are out of range (expected {}..{})",
           I.abits.back(), n, kMinActBits, kMaxActBits);
  }
  if (I.layers.empty()) I.abits.push_back(abits.all);
  for (const auto& [n, bits] : pinned)
    if (std::find(I.layers.begin(), I.layers.end(), n) == I.layers.end())
      fail("assignment solver: pinned layer '{}' is not a weight layer of model '{}'", n, g.name);
  for (size_t l = 0; l < I.layers.size(); ++l)
    if (!pinned.count(I.layers[l])) {
      I.free.push_back(static_cast<int>(l));
      I.free_names.push_back(I.layers[l]);
    }

  const size_t L = I.layers.size(), m = I.cand.size();
  I.term.assign(L, std::vector<std::vector<double>>(m));
  std::vector<int> all_j(L, 0);
  for (size_t j = 0; j < m; ++j) {
    std::fill(all_j.begin(), all_j.end(), static_cast<int>(j));
    const CostReport r = ce.evaluate(I.config(all_j));
    if (r.layers.size() != L) fail("assignment solver: internal error: layer count");
    if (j == 0) {
      I.rows = check_budgets(r, b);  // throws on a budget the model does not define
      for (const BudgetCheck& c : I.rows) {
        I.metric.push_back(metric_of(c.key));
        I.constant.push_back(I.metric.back() == Metric::Activation
                                 ? static_cast<double>(r.activation_bytes)
                                 : 0.0);
      }
    }
    for (size_t l = 0; l < L; ++l)
      for (Metric mt : I.metric) I.term[l][j].push_back(layer_term(r.layers[l], mt));
  }

  // Floors: per row, every layer at its cheapest candidate for that row (a real assignment, so
  // its exact total is the least value reachable).
  for (size_t k = 0; k < I.rows.size(); ++k) {
    std::vector<int> ch(L, 0);
    for (size_t l = 0; l < L; ++l)
      for (size_t j = 1; j < m; ++j)
        if (I.term[l][j][k] < I.term[l][ch[l]][k]) ch[l] = static_cast<int>(j);
    BudgetCheck f = I.rows[k];
    f.value = I.total(k, ch);
    f.fits = f.value <= f.budget;
    f.excess = f.fits ? 0 : f.value - f.budget;
    f.excess_pct = f.fits || f.budget == 0 ? 0 : 100 * f.excess / f.budget;
    I.floors.push_back(f);
    I.floor_choice.push_back(ch);
  }
  impl_ = std::move(im);
}

const std::vector<int>& AssignmentSolver::candidates() const { return impl_->cand; }
const std::vector<std::string>& AssignmentSolver::free_layers() const {
  return impl_->free_names;
}
const std::vector<BudgetCheck>& AssignmentSolver::floors() const { return impl_->floors; }

BitConfig AssignmentSolver::config(const std::map<std::string, int>& wbits) const {
  const Impl& I = *impl_;
  BitConfig c = I.config(std::vector<int>(I.layers.size(), 0));
  for (const auto& [n, bits] : wbits)
    if (!I.pinned.count(n) && c.layers.count(n)) c.layers[n].wbits = bits;
  return c;
}

// ---------------------------------------------------------------------------------------------
// The reduced problem both solvers work on

namespace {

// Free layers only, candidates that cannot be part of a feasible assignment or are dominated
// removed, costs shifted by each layer's minimum and scaled per row. Sums here are approximate
// (not in graph order): they serve scaling and pruning with a slack far above rounding error
// (1e-9 of the budget, against ~1e-16 x layers), and every answer is re-checked exactly.
struct Reduced {
  std::vector<int> layer;                 // index into Impl::layers
  std::vector<std::vector<int>> opt;      // per reduced layer: candidate indices kept
  std::vector<std::vector<double>> o;     // objective, shifted (min 0) and scaled
  std::vector<std::vector<std::vector<double>>> c;  // [l][option][row] scaled cost above the min
  std::vector<size_t> row;                // Impl rows that vary with the weight bits
  std::vector<double> capacity, slack;    // per reduced row, scaled: what is left, the tolerance
  std::vector<double> denom;              // per reduced row: the scale (metric units)
  bool empty_option = false;              // some layer has no option left: infeasible
};

Reduced reduce(const AssignmentSolver::Impl& I, const std::vector<std::vector<double>>& obj) {
  Reduced R;
  const size_t m = I.cand.size();
  for (size_t k = 0; k < I.rows.size(); ++k) {
    if (I.metric[k] == Metric::Activation) continue;  // a constant: decided by the floors
    bool varies = false;
    for (int l : I.free)
      for (size_t j = 1; j < m; ++j) varies = varies || I.term[l][j][k] != I.term[l][0][k];
    if (!varies) continue;  // the floor decides it
    const double cap = I.rows[k].budget - I.floors[k].value;  // >= 0: the floors fit
    const double tol = 1e-9 * (std::fabs(I.rows[k].budget) + std::fabs(I.floors[k].value)) + 1e-300;
    R.row.push_back(k);
    R.denom.push_back(std::max(cap, tol));
    R.capacity.push_back(cap / R.denom.back());
    R.slack.push_back(tol / R.denom.back());
  }
  const size_t K = R.row.size();
  double scale = 0;
  for (size_t f = 0; f < I.free.size(); ++f) {
    const int l = I.free[f];
    std::vector<double> lo(K);
    for (size_t q = 0; q < K; ++q) {
      lo[q] = I.term[l][0][R.row[q]];
      for (size_t j = 1; j < m; ++j) lo[q] = std::min(lo[q], I.term[l][j][R.row[q]]);
    }
    std::vector<int> keep;
    for (size_t j = 0; j < m; ++j) {
      bool ok = true;  // alone above the floor by more than the capacity: never feasible
      for (size_t q = 0; q < K; ++q)
        ok = ok && (I.term[l][j][R.row[q]] - lo[q]) / R.denom[q] <= R.capacity[q] + R.slack[q];
      if (ok) keep.push_back(static_cast<int>(j));
    }
    // Dominance: an option no better in objective and in every row than another kept one (exact
    // comparisons: replacing it can only lower every graph-order sum).
    std::vector<int> kept;
    for (int j : keep) {
      bool dominated = false;
      for (int jj : keep) {
        if (jj == j) continue;
        bool no_worse = obj[f][jj] <= obj[f][j], better = obj[f][jj] < obj[f][j];
        for (size_t k : R.row) {
          no_worse = no_worse && I.term[l][jj][k] <= I.term[l][j][k];
          better = better || I.term[l][jj][k] < I.term[l][j][k];
        }
        dominated = dominated || (no_worse && (better || jj < j));
      }
      if (!dominated) kept.push_back(j);
    }
    if (kept.empty()) R.empty_option = true;
    double omin = std::numeric_limits<double>::infinity(), omax = -omin;
    for (int j : kept) omin = std::min(omin, obj[f][j]), omax = std::max(omax, obj[f][j]);
    if (!kept.empty()) scale = std::max(scale, omax - omin);
    std::vector<double> ov;
    std::vector<std::vector<double>> cv;
    for (int j : kept) {
      ov.push_back(obj[f][j] - omin);
      std::vector<double> row(K);
      for (size_t q = 0; q < K; ++q) row[q] = (I.term[l][j][R.row[q]] - lo[q]) / R.denom[q];
      cv.push_back(row);
    }
    R.layer.push_back(l);
    R.opt.push_back(kept);
    R.o.push_back(ov);
    R.c.push_back(cv);
  }
  if (scale > 0)
    for (auto& ov : R.o)
      for (double& v : ov) v /= scale;
  return R;
}

// Improves a feasible choice one layer at a time (any strictly better option that keeps every
// budget exactly), until no such move is left: cleans up GLPK's tolerance-level near-ties.
void polish(const AssignmentSolver::Impl& I, const std::vector<std::vector<double>>& obj,
            std::vector<int>& choice) {
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t f = 0; f < I.free.size(); ++f) {
      const int l = I.free[f];
      for (size_t j = 0; j < I.cand.size(); ++j) {
        if (!(obj[f][j] < obj[f][choice[l]])) continue;
        const int before = choice[l];
        choice[l] = static_cast<int>(j);
        if (I.fits(choice)) {
          changed = true;
        } else {
          choice[l] = before;
        }
      }
    }
  }
}

// ---- exact branch and bound ----

struct BranchAndBound {
  BranchAndBound(const AssignmentSolver::Impl& impl, const Reduced& reduced)
      : I(impl), R(reduced) {}
  const AssignmentSolver::Impl& I;
  const Reduced& R;
  bool feasibility_only = false;
  double gap = 0;  // relative: prune nodes that cannot beat the incumbent by more than this
  int64_t node_limit = 4000000;
  int64_t nodes = 0;
  bool exhausted = false;  // node limit reached: the search is not complete

  std::vector<int> order;                     // reduced layers, branching order
  std::vector<std::vector<double>> suffix;    // [depth][row] least remaining cost
  std::vector<double> lambda;                 // Lagrange multipliers per reduced row
  std::vector<double> suffix_lag;             // [depth] sum of min (o + lambda . c)
  std::vector<std::vector<int>> option_order;  // per reduced layer, options to try in order
  std::vector<int> current;                   // per reduced layer, option index
  std::vector<double> used;                   // per reduced row, partial scaled cost
  std::vector<int> best_choice;               // full choice (Impl layers)
  double best = std::numeric_limits<double>::infinity();
  std::vector<int> base_choice;               // template: pinned entries

  double lag_value(const std::vector<double>& lam) const {
    double v = 0;
    for (size_t r = 0; r < R.layer.size(); ++r) {
      double mn = std::numeric_limits<double>::infinity();
      for (size_t p = 0; p < R.opt[r].size(); ++p) {
        double x = R.o[r][p];
        for (size_t k = 0; k < R.row.size(); ++k) x += lam[k] * R.c[r][p][k];
        mn = std::min(mn, x);
      }
      v += mn;
    }
    for (size_t k = 0; k < lam.size(); ++k) v -= lam[k] * R.capacity[k];
    return v;
  }

  // Root multipliers by a short subgradient ascent (any lambda >= 0 gives a valid bound).
  void fit_lambda() {
    const size_t K = R.row.size();
    lambda.assign(K, 0.0);
    if (feasibility_only || K == 0) return;
    std::vector<double> lam(K, 0.0), g(K);
    double best_v = lag_value(lam), step = 1.0;
    for (int it = 0; it < 200; ++it) {
      for (size_t k = 0; k < K; ++k) g[k] = -R.capacity[k];
      for (size_t r = 0; r < R.layer.size(); ++r) {
        double mn = std::numeric_limits<double>::infinity();
        size_t arg = 0;
        for (size_t p = 0; p < R.opt[r].size(); ++p) {
          double x = R.o[r][p];
          for (size_t k = 0; k < K; ++k) x += lam[k] * R.c[r][p][k];
          if (x < mn) mn = x, arg = p;
        }
        for (size_t k = 0; k < K; ++k) g[k] += R.c[r][arg][k];
      }
      double norm = 0;
      for (double v : g) norm += v * v;
      if (norm == 0) break;
      for (size_t k = 0; k < K; ++k) lam[k] = std::max(0.0, lam[k] + step * g[k] / std::sqrt(norm));
      const double v = lag_value(lam);
      if (v > best_v) {
        best_v = v;
        lambda = lam;
      } else {
        step *= 0.85;
      }
    }
  }

  void prepare() {
    const size_t n = R.layer.size(), K = R.row.size();
    order.resize(n);
    std::iota(order.begin(), order.end(), 0);
    // Branch first on the layers where the choice matters most (objective and cost spread).
    auto spread = [&](int r) {
      double s = 0;
      for (size_t p = 0; p < R.opt[r].size(); ++p) {
        s = std::max(s, R.o[r][p]);
        for (size_t k = 0; k < K; ++k) s = std::max(s, R.c[r][p][k]);
      }
      return s;
    };
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return spread(a) > spread(b); });
    fit_lambda();
    suffix.assign(n + 1, std::vector<double>(K, 0.0));
    suffix_lag.assign(n + 1, 0.0);
    for (size_t d = n; d-- > 0;) {
      const int r = order[d];
      double mlag = std::numeric_limits<double>::infinity();
      for (size_t k = 0; k < K; ++k) {
        double mn = std::numeric_limits<double>::infinity();
        for (size_t p = 0; p < R.opt[r].size(); ++p) mn = std::min(mn, R.c[r][p][k]);
        suffix[d][k] = suffix[d + 1][k] + mn;
      }
      for (size_t p = 0; p < R.opt[r].size(); ++p) {
        double x = R.o[r][p];
        for (size_t k = 0; k < K; ++k) x += lambda[k] * R.c[r][p][k];
        mlag = std::min(mlag, x);
      }
      suffix_lag[d] = suffix_lag[d + 1] + mlag;
    }
    option_order.resize(n);
    for (size_t r = 0; r < n; ++r) {
      std::vector<int>& oo = option_order[r];
      oo.resize(R.opt[r].size());
      std::iota(oo.begin(), oo.end(), 0);
      auto key = [&](int p) {
        double c = 0;
        for (size_t k = 0; k < K; ++k) c += R.c[r][p][k];
        return feasibility_only ? c : R.o[r][p] + 1e-9 * c;
      };
      std::stable_sort(oo.begin(), oo.end(), [&](int a, int b) { return key(a) < key(b); });
    }
    current.assign(n, 0);
    used.assign(K, 0.0);
  }

  bool done() const { return exhausted || (feasibility_only && !best_choice.empty()); }

  void dfs(size_t d, double partial) {
    if (done()) return;
    if (++nodes > node_limit) {
      exhausted = true;
      return;
    }
    const size_t n = R.layer.size(), K = R.row.size();
    if (d == n) {
      std::vector<int> choice = base_choice;
      for (size_t r = 0; r < n; ++r) choice[R.layer[r]] = R.opt[r][current[r]];
      if (!I.fits(choice)) return;  // the exact verdict
      if (partial < best) {
        best = partial;
        best_choice = choice;
      }
      return;
    }
    const int r = order[d];
    for (int p : option_order[r]) {
      const double o = partial + R.o[r][p];
      bool ok = true;
      for (size_t k = 0; k < K && ok; ++k)
        ok = used[k] + R.c[r][p][k] + suffix[d + 1][k] <= R.capacity[k] + R.slack[k];
      if (!ok) continue;
      if (!feasibility_only) {
        double bound = o + suffix_lag[d + 1];
        for (size_t k = 0; k < K; ++k)
          bound -= lambda[k] * (R.capacity[k] - used[k] - R.c[r][p][k]);
        if (bound >= best - std::max(gap * std::fabs(best), 1e-12 * std::max(1.0, std::fabs(best))))
          continue;
      }
      for (size_t k = 0; k < K; ++k) used[k] += R.c[r][p][k];
      current[r] = p;
      dfs(d + 1, o);
      for (size_t k = 0; k < K; ++k) used[k] -= R.c[r][p][k];
      if (done()) return;
    }
  }
};

#ifdef SQ_HAVE_GLPK

// GLPK's branch and cut on the reduced program; `tighten` lowers each row's right-hand side.
// Returns a full choice, or nullopt when GLPK finds no integer solution.
std::optional<std::vector<int>> glpk_solve(const AssignmentSolver::Impl& I, const Reduced& R,
                                           const std::vector<double>& tighten, double gap,
                                           bool& optimal) {
  struct Prob {
    glp_prob* p = glp_create_prob();
    ~Prob() { glp_delete_prob(p); }
  } prob;
  glp_prob* P = prob.p;
  glp_term_out(GLP_OFF);
  glp_set_obj_dir(P, GLP_MIN);
  const int n = static_cast<int>(R.layer.size()), K = static_cast<int>(R.row.size());
  std::vector<int> first(n + 1, 1);  // first column of each reduced layer (1-based)
  int cols = 0;
  for (int r = 0; r < n; ++r) {
    first[r] = cols + 1;
    cols += static_cast<int>(R.opt[r].size());
  }
  if (cols == 0) return std::nullopt;
  glp_add_cols(P, cols);
  for (int r = 0; r < n; ++r)
    for (size_t p = 0; p < R.opt[r].size(); ++p) {
      const int c = first[r] + static_cast<int>(p);
      glp_set_col_kind(P, c, GLP_BV);
      glp_set_obj_coef(P, c, R.o[r][p]);
    }
  glp_add_rows(P, n + K);
  std::vector<int> ia(1), ja(1);
  std::vector<double> ar(1);
  for (int r = 0; r < n; ++r) {  // one width per layer
    glp_set_row_bnds(P, r + 1, GLP_FX, 1.0, 1.0);
    for (size_t p = 0; p < R.opt[r].size(); ++p) {
      ia.push_back(r + 1);
      ja.push_back(first[r] + static_cast<int>(p));
      ar.push_back(1.0);
    }
  }
  for (int k = 0; k < K; ++k) {  // one row per budget, scaled
    glp_set_row_bnds(P, n + k + 1, GLP_UP, 0.0, R.capacity[k] - tighten[k]);
    for (int r = 0; r < n; ++r)
      for (size_t p = 0; p < R.opt[r].size(); ++p)
        if (R.c[r][p][k] != 0) {
          ia.push_back(n + k + 1);
          ja.push_back(first[r] + static_cast<int>(p));
          ar.push_back(R.c[r][p][k]);
        }
  }
  glp_load_matrix(P, static_cast<int>(ia.size()) - 1, ia.data(), ja.data(), ar.data());
  glp_iocp parm;
  glp_init_iocp(&parm);
  parm.msg_lev = GLP_MSG_OFF;
  parm.presolve = GLP_ON;
  parm.mir_cuts = GLP_ON;
  parm.cov_cuts = GLP_ON;
  parm.clq_cuts = GLP_ON;
  parm.tol_obj = 1e-9;
  parm.mip_gap = gap;
  parm.tm_lim = 60000;
  const int ret = glp_intopt(P, &parm);
  const int status = glp_mip_status(P);
  const bool stopped = ret == 0 || ret == GLP_ETMLIM || ret == GLP_EMIPGAP;
  if (!(stopped && (status == GLP_OPT || status == GLP_FEAS)))
    return std::nullopt;
  optimal = ret == 0 && status == GLP_OPT;
  std::vector<int> choice(I.layers.size(), 0);
  for (int r = 0; r < n; ++r) {
    int arg = 0;
    double best = -1;
    for (size_t p = 0; p < R.opt[r].size(); ++p) {
      const double v = glp_mip_col_val(P, first[r] + static_cast<int>(p));
      if (v > best) best = v, arg = static_cast<int>(p);
    }
    choice[R.layer[r]] = R.opt[r][arg];
  }
  return choice;
}

#endif

}  // namespace

std::optional<std::vector<int>> AssignmentSolver::Impl::solve(
    const std::vector<std::vector<double>>& obj, SolverBackend backend, double gap,
    SolveInfo& info) const {
  for (const BudgetCheck& f : floors)
    if (!f.fits) {
      info.method = "floor";
      info.optimal = true;
      return std::nullopt;
    }
  const std::vector<int> base(layers.size(), 0);
  if (free.empty()) {
    info.method = "none";
    info.optimal = true;
    if (fits(base)) return base;
    return std::nullopt;
  }
  const Reduced R = reduce(*this, obj);
  if (R.empty_option) {
    info.method = "floor";
    info.optimal = true;
    return std::nullopt;
  }
  bool zero = true;
  for (const auto& ov : R.o)
    for (double v : ov) zero = zero && v == 0;

#ifdef SQ_HAVE_GLPK
  if (backend == SolverBackend::Auto) {
    std::vector<double> tighten(R.row.size(), 0.0);
    for (int attempt = 0; attempt < 6; ++attempt) {
      bool optimal = false;
      std::optional<std::vector<int>> c = glpk_solve(*this, R, tighten, gap, optimal);
      ++info.nodes;
      if (!c) {
        // No integer point: GLPK's tolerances only ever admit slightly infeasible points, so on
        // the untightened program this is a proof; after tightening, branch and bound decides.
        if (attempt == 0) {
          info.method = "glpk";
          info.optimal = true;
          return std::nullopt;
        }
        break;
      }
      if (fits(*c)) {
        if (!zero) polish(*this, obj, *c);
        info.method = "glpk";
        info.optimal = (optimal && gap == 0) || zero;
        return c;
      }
      // Over a budget by GLPK's tolerance: tighten that row by the exact overshoot and re-solve.
      for (size_t q = 0; q < R.row.size(); ++q) {
        const size_t k = R.row[q];
        const double over = total(k, *c) - rows[k].budget;
        if (over > 0) tighten[q] += over / R.denom[q] + 1e-9;
      }
    }
  }
#else
  (void)backend;
#endif

  BranchAndBound bb(*this, R);
  bb.feasibility_only = zero;
  bb.gap = gap;
  bb.base_choice = base;
  bb.prepare();
  bb.dfs(0, 0.0);
  info.method = "branch-and-bound";
  info.nodes += bb.nodes;
  info.optimal = !bb.exhausted && (gap == 0 || bb.best_choice.empty());
  if (bb.best_choice.empty()) return std::nullopt;
  std::vector<int> c = bb.best_choice;
  if (!zero) polish(*this, obj, c);
  return c;
}

// ---------------------------------------------------------------------------------------------
// Public entry points

std::optional<BitConfig> AssignmentSolver::Impl::solve_config(const LayerObjective& objective,
                                                             SolverBackend backend, double gap,
                                                             SolveInfo* info) const {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::vector<double>> obj(free.size(), std::vector<double>(cand.size(), 0.0));
  if (objective)
    for (size_t f = 0; f < free.size(); ++f)
      for (size_t j = 0; j < cand.size(); ++j) {
        const double v = objective(free_names[f], cand[j]);
        if (!std::isfinite(v))
          fail("assignment solver: objective of layer '{}' at {} bits is {} (expected a finite "
               "number)",
               free_names[f], cand[j], v);
        obj[f][j] = v;
      }
  SolveInfo local;
  std::optional<std::vector<int>> c = solve(obj, backend, gap, local);
  local.seconds = seconds_since(t0);
  if (c)
    feasible = true;
  else if (local.optimal)  // a proof of infeasibility, not a node limit
    feasible = false;
  if (info) *info = local;
  if (!c) return std::nullopt;
  return config(*c);
}

std::optional<BitConfig> AssignmentSolver::solve(const LayerObjective& objective,
                                                 SolveInfo* info) const {
  return impl_->solve_config(objective, backend_, 0.0, info);
}

std::optional<BitConfig> AssignmentSolver::nearest(const std::map<std::string, int>& proposal,
                                                   const LayerObjective& tie_break,
                                                   SolveInfo* info) const {
  const Impl& I = *impl_;
  const size_t m = I.cand.size();
  std::map<std::string, int> at;  // proposed candidate index (the nearest candidate width)
  for (const std::string& n : I.free_names) {
    auto it = proposal.find(n);
    const int b = it == proposal.end() ? I.cand.front() : it->second;
    int best = 0;
    for (size_t j = 1; j < m; ++j)
      if (std::abs(I.cand[j] - b) < std::abs(I.cand[best] - b)) best = static_cast<int>(j);
    at[n] = best;
  }
  // Ties: below half a step in total, so they never outweigh one candidate step of distance.
  std::map<std::string, std::vector<double>> tie;
  double spread = 0;
  if (tie_break)
    for (const std::string& n : I.free_names) {
      std::vector<double>& t = tie[n];
      for (int b : I.cand) t.push_back(tie_break(n, b));
      const auto range = std::minmax_element(t.begin(), t.end());
      const double lo = *range.first, hi = *range.second;
      for (double& v : t) v -= lo;
      spread += hi - lo;
    }
  auto index_of = [&](int bits) {
    return static_cast<int>(std::find(I.cand.begin(), I.cand.end(), bits) - I.cand.begin());
  };
  // A repair needs feasibility and closeness, not a proof: stop within 0.1 % of the least
  // distance (exact in the integer distance whenever it is below 500 squared steps).
  return I.solve_config(
      [&](const std::string& n, int bits) {
        const double d = index_of(bits) - at.at(n);
        double v = d * d;
        if (spread > 0) v += 0.5 * tie.at(n)[index_of(bits)] / spread;
        return v;
      },
      backend_, 1e-3, info);
}

std::vector<BudgetCheck> AssignmentSolver::check(const BitConfig& bits) const {
  const Impl& I = *impl_;
  std::vector<int> choice(I.layers.size(), 0);
  for (size_t l = 0; l < I.layers.size(); ++l) {
    const LayerBits& lb = bits.for_layer(I.layers[l]);
    auto p = I.pinned.find(I.layers[l]);
    auto c = std::find(I.cand.begin(), I.cand.end(), lb.wbits);
    const bool ok = lb.abits == I.abits[l] && lb.granularity == I.granularity &&
                    lb.channel_wbits.empty() &&
                    (p != I.pinned.end() ? lb.wbits == p->second : c != I.cand.end());
    if (!ok) return check_budgets(I.ce->evaluate(bits), I.budgets);
    if (p == I.pinned.end()) choice[l] = static_cast<int>(c - I.cand.begin());
  }
  std::vector<BudgetCheck> out = I.rows;  // as check_budgets fills them
  for (size_t k = 0; k < out.size(); ++k) {
    BudgetCheck& c = out[k];
    c.value = I.total(k, choice);
    c.fits = c.value <= c.budget;
    c.excess = c.fits ? 0 : c.value - c.budget;
    c.excess_pct = c.fits ? 0 : 100.0 * c.excess / c.budget;
  }
  return out;
}

bool AssignmentSolver::fits(const BitConfig& bits) const {
  for (const BudgetCheck& c : check(bits))
    if (!c.fits) return false;
  return true;
}

bool AssignmentSolver::feasible() const {
  const Impl& I = *impl_;
  if (I.feasible) return *I.feasible;
  for (const BudgetCheck& f : I.floors)
    if (!f.fits) return *(I.feasible = false);
  // Cheap witnesses first: each row's floor assignment and every uniform assignment.
  std::vector<std::vector<int>> witnesses = I.floor_choice;
  for (size_t j = 0; j < I.cand.size(); ++j)
    witnesses.emplace_back(I.layers.size(), static_cast<int>(j));
  for (const std::vector<int>& w : witnesses)
    if (I.fits(w)) return *(I.feasible = true);
  SolveInfo info;
  std::vector<std::vector<double>> zero(I.free.size(), std::vector<double>(I.cand.size(), 0.0));
  std::optional<std::vector<int>> c = I.solve(zero, backend_, 0.0, info);
  if (c || info.optimal) I.feasible = c.has_value();
  return c.has_value();  // undecided after the node limit: treated as infeasible
}

std::string AssignmentSolver::why_infeasible() const {
  if (feasible()) return "";
  const Impl& I = *impl_;
  const bool one_width = std::all_of(I.abits.begin(), I.abits.end(),
                                    [&](int a) { return a == I.abits.front(); });
  const std::string acts = one_width ? fmt::format("activations at {} bits", I.abits.front())
                                     : std::string("activation widths as given");
  std::string head = fmt::format("no assignment over {} ({}{}) fits target '{}'",
                                 widths_text(I.cand), acts,
                                 I.pinned.empty() ? "" : ", pinned layers as given", I.target);
  std::string over, alone;
  for (const BudgetCheck& f : I.floors) {
    if (!f.fits)
      over += fmt::format("{}the {} budget ({}) cannot be met: it needs at least {}",
                          over.empty() ? "" : "; ", f.metric, f.key, budget_check_text(f));
    else
      alone += fmt::format("{}{} needs at least {} of {}", alone.empty() ? "" : ", ", f.metric,
                           budget_value_text(f.value, f.unit), budget_value_text(f.budget, f.unit));
  }
  if (!over.empty())
    return head + " even with every layer at its cheapest candidate for each budget: " + over;
  return head + ": each budget can be met alone (" + alone +
         "), but no assignment meets all of them together (proved by the exact solver)";
}

void AssignmentSolver::require_feasible(const std::string& who) const {
  if (!feasible()) fail_infeasible("{}: {}", who, why_infeasible());
}

std::optional<BitConfig> solve_assignment(const Graph& g, const CostEvaluator& ce,
                                          const Budgets& b, const std::vector<int>& candidates,
                                          const LayerObjective& objective, int abits,
                                          const std::map<std::string, int>& pinned,
                                          SolveInfo* info) {
  return AssignmentSolver(g, ce, b, candidates, abits, pinned).solve(objective, info);
}

bool assignment_solver_has_glpk() {
#ifdef SQ_HAVE_GLPK
  return true;
#else
  return false;
#endif
}

}  // namespace sq
