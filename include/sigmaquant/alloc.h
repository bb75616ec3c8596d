// Bit allocators (torch-free parts): the one candidate-width rule, the exact assignment solver
// that every allocator uses for feasibility, SigmaQuant Phase 1, and the single-budget knapsack.
//
// SigmaQuant Phase 1 turns an FP32 graph, a target (cost model + budgets) and a grid of candidate
// bitwidths into a bit assignment that satisfies every budget, with no training and no data:
//
//   sq::Target t = sq::load_target("targets/shiftadd.json");
//   sq::Phase1Options o;                       // bits {2,3,4,5,6,8}, a8, log-sigma, adaptive k
//   o.pinned["fc"] = 8;                        // optional: fixed layers
//   sq::Phase1Result r = sq::sigmaquant_phase1(graph, t, o);   // throws if no assignment fits
//   sq::save_bits("out.bits.json", r.bits, &graph);
//   std::cout << sq::phase1_table(r);
//
// Steps (every choice and its reason: docs/method.md, "Allocation (Phase 1)"):
//   0. the candidates are candidate_widths(candidate_bits, target); if no assignment over them
//      meets every budget (decided exactly, see below) Phase 1 throws, naming the budget(s);
//   1. sigma_l = population std of layer l's weights after folding batchnorm into them;
//   2. exact 1-D k-means (dynamic programming) on log(sigma) of the non-pinned layers for every
//      k = 1..min(#candidates, #distinct sigmas); k chosen by the mean silhouette;
//   3. clusters mapped in sigma order to the k highest candidate bitwidths (larger sigma -> more
//      bits; option: the highest window of k consecutive candidates that fits every budget);
//   4. budget fitting with the cost model: while over a budget, apply the one-step lowering (of a
//      layer, or of every layer sharing a bitwidth; or a raise, where the model is not monotone in
//      the weight bits) that removes the most normalised excess per unit of added damage; if that
//      greedy fitter gets stuck, the exact solver gives the feasible assignment nearest to the
//      sigma mapping instead (Phase1Result::exact_fit); then, while every budget is used below
//      (1 - raise_margin), apply the one-step raise that removes the most damage per unit of added
//      cost and keeps every budget (option: the highest-sigma layer that fits); by default no
//      greedy move lets a larger-sigma layer hold fewer bits than a smaller-sigma one.
//   Damage proxy (default): D_l(b) = n_l * sigma_l^2 * 4^-b, the quantization-noise energy of a
//   uniform quantizer whose range scales with sigma (6 dB per bit).
//
// The exact assignment solver: one width per layer from the candidates, minimise a per-(layer,
// width) objective subject to EVERY budget at once. With the activation bits fixed, every budget
// the cost model defines is a sum of per-layer terms that depend only on that layer's weight bits
// (activation memory is a constant), so this is a multiple-choice knapsack with several budget
// rows, solved as an integer program by GLPK (when built with it) and checked exactly against
// CostEvaluator's own arithmetic, with an exact branch and bound as the fallback:
//
//   sq::AssignmentSolver s(graph, evaluator, budgets, sq::candidate_widths({2, 4, 8}, target), 8);
//   if (!s.feasible()) throw sq::Error(s.why_infeasible());   // or s.require_feasible("me")
//   std::optional<sq::BitConfig> best = s.solve([&](const std::string& layer, int bits) {
//     return damage(layer, bits);                               // minimised, all budgets hold
//   });
//
// The knapsack solver: given per-layer tables of (bits, cost, damage) and one additive budget,
// minimise total damage subject to total cost <= budget, exactly on integer costs.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sigmaquant/bits.h"
#include "sigmaquant/cost.h"
#include "sigmaquant/graph.h"

namespace sq {

// ---- the candidate-width rule (one for every allocator) ----

// The weight widths an allocator chooses from on target `t`: the requested widths, sorted and
// unique, without those the target cannot run at all (above its largest storage width
// `storage.weight_widths`, or above the last weight column `w_bits` of an mpic/custom throughput
// table). Widths the target rounds up (3 on a {2,4,8} target) are KEPT, not mapped: they cost what
// the rounded-up width costs in memory and time, but BOPs count the configured bits, so a BOPs
// budget may need them, and dropping or mapping them could turn a feasible budget into a refusal;
// the exact solver and every allocator handle such cost plateaus. Throws sq::Error on a width outside
// 1..8, on an empty request, and when no requested width is left (naming the target and field).
// Every allocator (Phase 1 and 2, uniform, adaptive, hessian, random, exhaustive) applies it to
// the widths it is given; it is idempotent.
std::vector<int> candidate_widths(const std::vector<int>& requested, const Target& t);

// ---- exact assignment solver ----

// Objective of the solver: a value per (layer name, weight bits), smaller is better, finite.
using LayerObjective = std::function<double(const std::string& layer, int bits)>;

struct SolveInfo {
  std::string method;  // "floor" (refused by a per-budget bound), "glpk", "branch-and-bound",
                       // "none" (every layer pinned)
  bool optimal = false;  // proven: optimal (with an answer) or infeasible (without); false only
                         // at the branch and bound's node limit or a requested gap
  int64_t nodes = 0;     // GLPK solves + branch-and-bound nodes
  double seconds = 0;
};

// Which solver decides: GLPK's branch and cut when the library was built with it, else (or when
// asked: tests compare the two) the built-in exact branch and bound.
enum class SolverBackend { Auto, BranchAndBound };

// The integer program over one graph, evaluator, budget set, candidate set (candidate_widths is
// applied), activation bits, pinned layers and weight-scale granularity. Construction costs one
// CostEvaluator::evaluate per candidate; the evaluator (and its graph) must outlive the solver.
// Budget values are computed exactly as CostEvaluator does (per-layer terms summed in graph order),
// so "fits" here is bit-for-bit the verdict of check_budgets on the returned BitConfig. Copies
// share the tables and the cached feasibility verdict: use one solver per thread.
// The activation widths an assignment is solved under: each weight layer's input at `layers[name]`
// where given, else at `all`. (With activation widths fixed, every budget stays a sum of per-layer
// terms of the weight bits alone: the solver's tables are built at these widths.)
struct LayerActivationBits {
  int all = 8;
  std::map<std::string, int> layers;
};

class AssignmentSolver {
 public:
  AssignmentSolver(const Graph& g, const CostEvaluator& ce, const Budgets& b,
                   const std::vector<int>& candidates, int abits,
                   const std::map<std::string, int>& pinned = {},
                   Granularity granularity = Granularity::PerChannel);
  // Per-layer activation widths (searched activation bits: joint_allocation in search.h).
  AssignmentSolver(const Graph& g, const CostEvaluator& ce, const Budgets& b,
                   const std::vector<int>& candidates, const LayerActivationBits& abits,
                   const std::map<std::string, int>& pinned = {},
                   Granularity granularity = Granularity::PerChannel);

  const std::vector<int>& candidates() const;
  const std::vector<std::string>& free_layers() const;  // not pinned, graph order
  // Per budget (check_budgets order), the least value any assignment reaches: every layer at its
  // cheapest candidate for that budget's metric (the minimum over the layer's candidates, so
  // exact under non-monotone models such as mcu). value = that bound, fits = bound <= budget.
  const std::vector<BudgetCheck>& floors() const;
  // Whether any assignment over the candidates meets every budget at once (exact; cached).
  bool feasible() const;
  // Minimises the sum of objective(layer, bits) over the free layers subject to every budget;
  // nullopt when no assignment fits. Pinned layers keep their bits.
  std::optional<BitConfig> solve(const LayerObjective& objective, SolveInfo* info = nullptr) const;
  // The feasible assignment nearest to `proposal` (free layer -> bits; missing layers count as
  // the smallest candidate): minimises the sum of squared distances in candidate steps, ties
  // broken by `tie_break` (smaller is better), to within 0.1 % (a repair needs feasibility and
  // closeness, not a proof). nullopt when no assignment fits.
  std::optional<BitConfig> nearest(const std::map<std::string, int>& proposal,
                                   const LayerObjective& tie_break = {},
                                   SolveInfo* info = nullptr) const;
  // "no assignment over {2,4,8} (activations at 8 bits) fits target 'mpic': the weight memory
  // budget (weight_kib) cannot be met: it needs at least 72.27 KiB against 64 KiB, over by ..."
  // or, when each budget alone can be met, that they cannot be met together. Empty if feasible.
  std::string why_infeasible() const;
  // Throws sq::Error "<who>: <why_infeasible()>" unless feasible().
  void require_feasible(const std::string& who) const;
  // The budget verdicts of an assignment, bit-for-bit check_budgets(ce.evaluate(bits), budgets),
  // from the tables in O(layers x budgets) when every free layer holds a candidate width and the
  // activation bits and granularity are the solver's (else through the evaluator).
  std::vector<BudgetCheck> check(const BitConfig& bits) const;
  bool fits(const BitConfig& bits) const;
  // The BitConfig of the given free-layer widths (others: pinned bits; missing: smallest
  // candidate), with the solver's activation bits (per layer) and granularity.
  BitConfig config(const std::map<std::string, int>& wbits) const;
  void set_backend(SolverBackend b) { backend_ = b; }

  struct Impl;

 private:
  std::shared_ptr<const Impl> impl_;
  SolverBackend backend_ = SolverBackend::Auto;
};

// One-shot form of AssignmentSolver(...).solve(objective).
std::optional<BitConfig> solve_assignment(const Graph& g, const CostEvaluator& ce,
                                          const Budgets& b, const std::vector<int>& candidates,
                                          const LayerObjective& objective, int abits,
                                          const std::map<std::string, int>& pinned = {},
                                          SolveInfo* info = nullptr);

// Whether the exact solver was built with GLPK (else: branch and bound alone).
bool assignment_solver_has_glpk();

// ---- 1-D k-means ----

struct KMeans1D {
  int k = 0;
  std::vector<int> labels;      // per input point, 0..k-1, cluster 0 holds the smallest values
  std::vector<double> centers;  // ascending
  double sse = 0;               // within-cluster sum of squared distances
};

// Exact (globally optimal) k-means of 1-D points by dynamic programming over the sorted points,
// O(k n^2). Deterministic: no initialisation, ties broken towards the earlier split. Requires
// 1 <= k <= number of points.
KMeans1D kmeans_1d(const std::vector<double>& x, int k);

// Mean silhouette of a clustering (Rousseeuw 1987): per point s = (b - a) / max(a, b), a = mean
// distance to its own cluster, b = smallest mean distance to another cluster; s = 0 for a point
// alone in its cluster and for points with a = b = 0. In [-1, 1]; 0 when k = 1 (undefined there).
double kmeans_silhouette(const KMeans1D& km, const std::vector<double>& x);

// Chooses k in 2..max_k (capped at the number of distinct values) maximising the mean silhouette;
// k = 1 when fewer than two distinct values exist or the best silhouette is below min_silhouette
// (no clear structure). `criterion`, when given, receives the silhouette for k = 1..capped max_k
// (entry 0, k = 1, is 0).
KMeans1D kmeans_1d_adaptive(const std::vector<double>& x, int max_k, double min_silhouette = 0.5,
                            std::vector<double>* criterion = nullptr);

// ---- SigmaQuant Phase 1 ----

enum class SigmaSpace { Log, Linear };  // cluster on log(sigma) (default) or sigma itself

// Which lowering moves the budget fitter considers (single-layer raises are always candidates
// while over budget; they help only under a model that is not monotone in the weight bits).
enum class FitMoves {
  Layer,  // one layer down one candidate step (finest; default)
  Group,  // every non-pinned layer sharing a bitwidth down one step (keeps the cluster structure)
  Both,
};

// Where budget fitting starts from: the clusters mapped to the k highest candidates (then lowered
// by damage per saving), or to the highest window of k consecutive candidates that fits.
enum class Phase1Start { TopWindow, FittingWindow };

// Which raise the fitter applies while under budget: the one removing the most damage per unit
// of added cost (default), or the highest-sigma layer whose raise fits (the paper's wording).
enum class RaiseOrder { DamagePerCost, Sigma };

struct Phase1Options {
  std::vector<int> candidate_bits = {2, 3, 4, 5, 6, 8};  // ascending, unique, 1..8; then
                                                         // candidate_widths(., target)
  int abits = 8;                                         // activation bits of every layer
  std::map<std::string, int> layer_abits;  // per-layer input activation bits (else abits)
  std::map<std::string, int> pinned;                     // layer name -> weight bits, never moved
  Granularity granularity = Granularity::PerChannel;
  bool fold_bn = true;  // sigma of the BN-folded weights (what is deployed)
  SigmaSpace space = SigmaSpace::Log;
  int clusters = 0;  // 0: chosen by silhouette up to #candidates; else fixed (capped likewise)
  double min_silhouette = 0.5;  // adaptive k: below this best silhouette, one cluster
  FitMoves moves = FitMoves::Layer;
  Phase1Start start = Phase1Start::TopWindow;
  RaiseOrder raise = RaiseOrder::DamagePerCost;
  bool monotone = true;        // moves never give a larger-sigma layer fewer bits than a smaller
  double raise_margin = 0.01;  // raise while every budget is used below (1 - margin)
  std::optional<Budgets> budgets;  // overrides the target's budgets when set
  // Optional damage override: damage(layer name, bits). Default: the sigma proxy below.
  std::function<double(const std::string&, int)> damage;
};

// The default damage proxy: n * sigma^2 * 4^-bits.
double sigma_damage(double sigma, int64_t weights, int bits);

struct Phase1Layer {
  std::string name;
  int64_t weights = 0;
  double sigma = 0;
  int cluster = -1;      // k-means cluster (0 = smallest sigma); -1 for pinned layers
  int initial_bits = 0;  // from the cluster mapping, before budget fitting
  int bits = 0;          // final
  bool pinned = false;
  double damage = 0;  // damage proxy at the final bits
  LayerCost cost;     // the cost model's figures at the final assignment
};

struct Phase1Result {
  BitConfig bits;
  std::vector<Phase1Layer> layers;   // graph order
  int k = 0;                         // clusters used
  std::vector<double> centers;       // cluster centres in sigma units, ascending
  std::vector<int> cluster_bits;     // initial bitwidth of each cluster
  std::vector<double> criterion;     // silhouette for k = 1.. (empty when k was fixed)
  CostReport cost;                   // at the final assignment
  std::vector<BudgetCheck> budgets;  // every one fits
  Budgets budget_limits;             // the budgets applied
  int lowered = 0, raised = 0;       // fitter moves: while over budget (mostly down), raises
  bool exact_fit = false;  // the greedy fitter got stuck (non-monotone model, budgets that pull
                           // apart): the exact solver gave the assignment nearest the mapping
  std::vector<int> candidates;       // the widths used: candidate_widths(candidate_bits, target)
  double damage = 0;                 // total damage proxy
};

// Runs Phase 1. Every budget holds on return. Throws sq::Error on bad options (naming the
// option), on a model without weights, and exactly when no assignment over the candidates meets
// every budget (AssignmentSolver::why_infeasible: the budget, the least reachable value and the
// excess, or that the budgets cannot be met together).
Phase1Result sigmaquant_phase1(const Graph& g, const Target& t, const Phase1Options& o = {});

// Per-layer table (sigma, cluster, bits, weight bytes, and the model's cycles/energy when defined)
// plus the budget verdicts.
std::string phase1_table(const Phase1Result& r);
nlohmann::ordered_json phase1_to_json(const Phase1Result& r);

// ---- exact single-budget multiple-choice knapsack (dynamic programming) ----
// One additive budget only; the allocators use AssignmentSolver (every budget at once). Kept as a
// second exact method on its own terms (tests measure Phase 1 against it).

struct KnapsackItem {
  int bits = 0;
  double cost = 0;    // additive cost of this layer at these bits (bytes, BOPs, ...), >= 0
  double damage = 0;  // e.g. Hessian trace x ||Q(W) - W||^2
};

struct KnapsackResult {
  std::vector<int> choice;      // per layer, the index into its item list
  std::vector<int> bits;        // per layer, the chosen item's bits
  double cost = 0, damage = 0;  // totals in the original (not discretised) units
  double unit = 1;              // the grid step the costs were discretised to
};

// Minimises total damage subject to total cost <= budget, choosing exactly one item per layer, by
// dynamic programming over a cost grid of step `unit`. Costs are rounded UP to the grid (so the
// result always fits the real budget) and the budget down. Exact when every cost is an integer
// multiple of the step (the default for integer costs: the step is the gcd of the costs, capped
// so the grid has at most max_cells cells). Otherwise the step is budget / (max_cells - 1) and the
// result is at least as good as the true optimum under budget - layers x step (each layer loses
// less than one step to rounding). unit > 0 forces the step. Throws sq::Error if no choice fits
// (naming the smallest achievable cost) or a table is empty.
KnapsackResult solve_knapsack(const std::vector<std::vector<KnapsackItem>>& layers, double budget,
                              double unit = 0, int64_t max_cells = int64_t(1) << 20);
// Reference: enumerates every combination (for tests; throws above 10^7 combinations).
KnapsackResult solve_knapsack_brute_force(const std::vector<std::vector<KnapsackItem>>& layers,
                                          double budget);

}  // namespace sq
