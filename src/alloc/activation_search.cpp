// Searched activation widths for the layer-wise allocators (issue 13): an outer search over the
// widths of the activation points, an inner weight allocation at those widths (the allocator's
// own: an exact solve, or SigmaQuant's Phase 1), and the sum of both damages as the score.
// Every choice and why: docs/method.md, "Searched activation widths".
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "sigmaquant/alloc.h"
#include "sigmaquant/error.h"
#include "sigmaquant/infeasible.h"
#include "sigmaquant/search.h"
#include "sigmaquant/transform.h"

namespace sq {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::vector<int> sorted_widths(const std::vector<int>& in) {
  std::vector<int> v = in;
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  if (v.empty()) fail("activation widths: none given (expected e.g. 4,8)");
  for (int a : v)
    if (a < kMinActBits || a > kMaxActBits)
      fail("activation widths: {} is out of range (expected {}..{})", a, kMinActBits, kMaxActBits);
  return v;
}

}  // namespace

std::vector<ActivationPoint> activation_points(const Graph& g,
                                               const std::map<std::string, int>& pinned) {
  std::vector<ActivationPoint> out;
  std::map<int, size_t> index;  // node -> position in out
  for (int i : g.weight_layers()) {
    const Node& n = g.nodes[i];
    const int in = n.inputs.at(0);
    auto it = index.find(in);
    if (it == index.end()) {
      ActivationPoint p;
      p.node = in;
      p.name = g.nodes[in].name;
      const Shape& s = g.nodes[in].out_shape;
      if (s.empty())
        fail("activation points: node '{}' of model '{}' has no inferred shape", p.name, g.name);
      p.elements = 1;
      for (int64_t d : s) p.elements *= d;
      it = index.emplace(in, out.size()).first;
      out.push_back(p);
    }
    ActivationPoint& p = out[it->second];
    p.layers.push_back(n.name);
    p.fixed = p.fixed || pinned.count(n.name) > 0;
  }
  return out;
}

LayerActivationBits point_widths_to_layers(const std::vector<ActivationPoint>& points,
                                           const std::map<std::string, int>& widths, int other) {
  LayerActivationBits a;
  a.all = other;
  for (const ActivationPoint& p : points) {
    auto it = widths.find(p.name);
    if (it == widths.end()) continue;
    for (const std::string& l : p.layers) a.layers[l] = it->second;
  }
  return a;
}

ActivationSearchResult search_activation_widths(
    const Graph& g, const CostEvaluator& ce, const Budgets& b, const std::vector<int>& candidates,
    const std::map<std::string, int>& pinned, const std::vector<ActivationPoint>& points,
    const ActivationSearchOptions& o, const WeightAllocator& allocate,
    const PointObjective& damage) {
  const std::vector<int> widths = sorted_widths(o.abits);
  const int m = static_cast<int>(widths.size());
  if (!o.groups.empty() && o.groups.size() != points.size())
    fail("activation search: {} groups for {} points", o.groups.size(), points.size());
  std::vector<size_t> free;  // points the search moves
  for (size_t q = 0; q < points.size(); ++q)
    if (!points[q].fixed) free.push_back(q);

  ActivationSearchResult res;
  // State: a width index per point (fixed points: the widest).
  std::map<std::vector<int>, std::pair<double, std::optional<WeightAllocation>>> seen;
  auto widths_of = [&](const std::vector<int>& st) {
    std::map<std::string, int> w;
    for (size_t q = 0; q < points.size(); ++q) w[points[q].name] = widths[st[q]];
    return w;
  };
  auto layers_of = [&](const std::vector<int>& st) {
    return point_widths_to_layers(points, widths_of(st), widths.back());
  };
  auto act_damage = [&](const std::vector<int>& st) {
    double d = 0;
    for (size_t q : free) {
      const double v = damage(points[q].name, widths[st[q]]);
      if (!std::isfinite(v) || v < 0)
        fail("activation search: damage of point '{}' at {} bits is {} (expected finite, >= 0)",
             points[q].name, widths[st[q]], v);
      d += v;
    }
    return d;
  };
  // The score of a state: weight damage + activation damage; +inf when no weights fit.
  auto score = [&](const std::vector<int>& st) -> double {
    auto it = seen.find(st);
    if (it != seen.end()) return it->second.first;
    ++res.evaluations;
    const AssignmentSolver solver(g, ce, b, candidates, layers_of(st), pinned);
    std::optional<WeightAllocation> w;
    if (solver.feasible()) w = allocate(layers_of(st));
    const double s = w ? w->damage + act_damage(st) : kInf;
    seen[st] = {s, w};
    return s;
  };
  // Normalised excess of each budget's floor (0: every budget can be met alone).
  auto floor_excess = [&](const std::vector<int>& st) {
    const AssignmentSolver solver(g, ce, b, candidates, layers_of(st), pinned);
    double e = 0;
    for (const BudgetCheck& f : solver.floors()) e += f.fits ? 0.0 : f.excess_pct;
    return e;
  };
  auto refuse = [&] {
    std::vector<int> low(points.size(), 0);
    for (size_t q = 0; q < points.size(); ++q)
      if (points[q].fixed) low[q] = m - 1;
    AssignmentSolver(g, ce, b, candidates, layers_of(low), pinned)
        .require_feasible(fmt::format("activation widths {{{}}}, every free point at {} bits",
                                      fmt::join(widths, ","), widths.front()));
    fail_infeasible("activation search: no activation widths over {{{}}} let the weights fit",
                    fmt::join(widths, ","));
  };

  std::vector<int> best(points.size(), m - 1);
  double best_score = kInf;
  if (!o.groups.empty()) {
    // Every monotone map of the groups (ascending statistic) to widths.
    int k = 0;
    for (size_t q : free) k = std::max(k, o.groups[q] + 1);
    std::vector<int> map(static_cast<size_t>(k), 0);
    for (;;) {
      std::vector<int> st(points.size(), m - 1);
      for (size_t q : free) st[q] = map[static_cast<size_t>(o.groups[q])];
      const double s = score(st);
      int sum = 0, best_sum = 0;
      for (size_t q : free) sum += st[q], best_sum += best[q];
      if (s < best_score || (s == best_score && std::isfinite(s) && sum > best_sum)) {
        best_score = s;
        best = st;
      }
      // Next non-decreasing sequence over 0..m-1.
      int j = k - 1;
      while (j >= 0 && map[static_cast<size_t>(j)] == m - 1) --j;
      if (j < 0) break;
      const int v = map[static_cast<size_t>(j)] + 1;
      for (int t = j; t < k; ++t) map[static_cast<size_t>(t)] = v;
    }
    if (!std::isfinite(best_score)) refuse();
  } else {
    // From the widest everywhere: while no weights fit, lower the one point whose step down
    // leaves the least budget excess (ties: the least added damage); then best-improvement
    // moves of one point to any width until none lowers the score.
    std::vector<int> st(points.size(), m - 1);
    while (!std::isfinite(score(st))) {
      std::optional<std::vector<int>> pick;
      double pick_ex = kInf, pick_d = kInf;
      for (size_t q : free) {
        if (st[q] == 0) continue;
        std::vector<int> t = st;
        --t[q];
        const double ex = floor_excess(t);
        const double d = act_damage(t);
        const double s = score(t);
        // A state whose weights fit beats any that does not; then the least excess and damage.
        const double key = std::isfinite(s) ? -1.0 : ex;
        if (key < pick_ex || (key == pick_ex && d < pick_d)) {
          pick_ex = key;
          pick_d = d;
          pick = t;
        }
      }
      if (!pick) refuse();
      st = *pick;
    }
    best = st;
    best_score = score(st);
    const int rounds = o.max_rounds > 0 ? o.max_rounds
                                        : 4 * static_cast<int>(free.size()) * std::max(1, m);
    for (int r = 0; r < rounds; ++r) {
      std::optional<std::vector<int>> move;
      double move_score = best_score;
      for (size_t q : free)
        for (int j = 0; j < m; ++j) {
          if (j == best[q]) continue;
          std::vector<int> t = best;
          t[q] = j;
          const double s = score(t);
          if (s < move_score - 1e-12 * std::fabs(move_score)) {
            move_score = s;
            move = t;
          }
        }
      if (!move) break;
      best = *move;
      best_score = move_score;
    }
  }
  const auto& w = seen.at(best).second;
  if (!w) fail("activation search: internal error: the best state has no weight assignment");
  res.bits = w->bits;
  const LayerActivationBits la = layers_of(best);
  for (auto& [name, lb] : res.bits.layers) {
    auto it = la.layers.find(name);
    lb.abits = it != la.layers.end() ? it->second : la.all;
  }
  res.point_bits = widths_of(best);
  res.weight_damage = w->damage;
  res.activation_damage = act_damage(best);
  return res;
}

ActivationSearchResult joint_exact_allocation(const Graph& g, const CostEvaluator& ce,
                                              const Budgets& b, const std::vector<int>& candidates,
                                              const std::map<std::string, int>& pinned,
                                              const std::vector<int>& abits,
                                              const LayerObjective& weight_damage,
                                              const PointObjective& point_damage) {
  ActivationSearchOptions o;
  o.abits = abits;
  auto allocate = [&](const LayerActivationBits& la) -> std::optional<WeightAllocation> {
    const AssignmentSolver solver(g, ce, b, candidates, la, pinned);
    std::optional<BitConfig> r = solver.solve(weight_damage);
    if (!r) return std::nullopt;
    WeightAllocation w;
    w.bits = *r;
    for (const std::string& n : solver.free_layers()) w.damage += weight_damage(n, r->for_layer(n).wbits);
    return w;
  };
  return search_activation_widths(g, ce, b, candidates, pinned, activation_points(g, pinned), o,
                                  allocate, point_damage);
}

Phase1Result sigmaquant_phase1_with_activations(const Graph& g, const Target& t,
                                                const Phase1Options& o,
                                                const std::vector<int>& abits,
                                                const std::map<std::string, double>& point_sigma,
                                                ActivationSearchResult* info) {
  const std::vector<int> widths = sorted_widths(abits);
  Graph folded = o.fold_bn ? fold_batchnorm(g) : g;
  folded.infer_shapes();
  const std::vector<ActivationPoint> points = activation_points(folded, o.pinned);
  // Groups: exact 1-D k-means on log sigma of the free points, k by silhouette up to the number
  // of widths (as Phase 1 clusters the weights).
  std::vector<size_t> free;
  std::vector<double> x;
  for (size_t q = 0; q < points.size(); ++q) {
    if (points[q].fixed) continue;
    auto it = point_sigma.find(points[q].name);
    if (it == point_sigma.end() || !std::isfinite(it->second) || it->second < 0)
      fail("phase 1: no activation sigma for point '{}' of model '{}'", points[q].name, g.name);
    free.push_back(q);
    x.push_back(std::round(std::log(std::max(it->second, 1e-30)) * 1e6) / 1e6);
  }
  ActivationSearchOptions so;
  so.abits = widths;
  so.groups.assign(points.size(), 0);
  if (!free.empty()) {
    const KMeans1D km = kmeans_1d_adaptive(x, static_cast<int>(widths.size()), o.min_silhouette);
    for (size_t j = 0; j < free.size(); ++j) so.groups[free[j]] = km.labels[j];
  }
  // Damage proxy of a point: n sigma^2 4^-a, the weights' proxy, with each kind's sigma taken
  // relative to its kind's RMS sigma (kappa = weight RMS^2 / activation RMS^2): an element of a
  // typical activation counts as much as an element of a typical weight at equal bits.
  double wn = 0, ws = 0, an = 0, as = 0;
  for (int i : folded.weight_layers()) {
    const Node& n = folded.nodes[i];
    if (o.pinned.count(n.name)) continue;
    const double s = weight_std(n), c = static_cast<double>(n.params.at("weight").size());
    wn += c;
    ws += c * s * s;
  }
  for (size_t q : free) {
    const double s = point_sigma.at(points[q].name), c = static_cast<double>(points[q].elements);
    an += c;
    as += c * s * s;
  }
  const double kappa = (wn > 0 && as > 0 && ws > 0) ? (ws / wn) / (as / an) : 1.0;
  auto damage = [&](const std::string& point, int a) {
    for (const ActivationPoint& p : points)
      if (p.name == point) {
        const double s = point_sigma.at(point);
        return kappa * static_cast<double>(p.elements) * s * s * std::pow(4.0, -a);
      }
    fail("phase 1: unknown activation point '{}'", point);
  };
  std::map<std::map<std::string, int>, Phase1Result> runs;
  auto allocate = [&](const LayerActivationBits& la) -> std::optional<WeightAllocation> {
    Phase1Options o2 = o;
    o2.abits = la.all;
    o2.layer_abits = la.layers;
    Phase1Result r = sigmaquant_phase1(g, t, o2);
    WeightAllocation w{r.bits, r.damage};
    runs[la.layers] = std::move(r);
    return w;
  };
  const CostEvaluator ce(g, t);
  const Budgets budgets = o.budgets ? *o.budgets : t.budgets;
  ActivationSearchResult s =
      search_activation_widths(g, ce, budgets, candidate_widths(o.candidate_bits, t), o.pinned,
                               points, so, allocate, damage);
  const LayerActivationBits la = point_widths_to_layers(points, s.point_bits, widths.back());
  Phase1Result r = runs.at(la.layers);
  if (info) *info = s;
  return r;
}

}  // namespace sq
