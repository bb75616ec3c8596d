// Exact multiple-choice knapsack by dynamic programming over a discretised cost axis, and a
// brute-force reference: one bitwidth per layer, minimise the sum of per-layer damages under ONE
// additive budget. (The allocators solve every budget at once with AssignmentSolver, ilp.cpp.)
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>

#include "sigmaquant/alloc.h"
#include "sigmaquant/error.h"

namespace sq {
namespace {

void check_tables(const std::vector<std::vector<KnapsackItem>>& layers, double budget) {
  if (!std::isfinite(budget) || budget < 0)
    fail("knapsack: budget {} must be a finite number >= 0", budget);
  for (size_t l = 0; l < layers.size(); ++l) {
    if (layers[l].empty()) fail("knapsack: layer {} has no candidate choices", l);
    if (layers[l].size() > 255)
      fail("knapsack: layer {} has {} choices (at most 255)", l, layers[l].size());
    for (const KnapsackItem& it : layers[l])
      if (!std::isfinite(it.cost) || it.cost < 0 || !std::isfinite(it.damage))
        fail("knapsack: layer {}, {} bits: cost {} and damage {} must be finite, cost >= 0", l,
             it.bits, it.cost, it.damage);
  }
}

double min_total_cost(const std::vector<std::vector<KnapsackItem>>& layers) {
  double s = 0;
  for (const auto& items : layers) {
    double m = items[0].cost;
    for (const KnapsackItem& it : items) m = std::min(m, it.cost);
    s += m;
  }
  return s;
}

void fill_totals(const std::vector<std::vector<KnapsackItem>>& layers, KnapsackResult& r) {
  r.bits.resize(layers.size());
  r.cost = r.damage = 0;
  for (size_t l = 0; l < layers.size(); ++l) {
    const KnapsackItem& it = layers[l][r.choice[l]];
    r.bits[l] = it.bits;
    r.cost += it.cost;
    r.damage += it.damage;
  }
}

bool is_integral(double v) { return v == std::floor(v) && v < 9.0e15; }

}  // namespace

KnapsackResult solve_knapsack(const std::vector<std::vector<KnapsackItem>>& layers, double budget,
                              double unit, int64_t max_cells) {
  check_tables(layers, budget);
  if (max_cells < 2) fail("knapsack: max_cells = {} must be at least 2", max_cells);
  const double least = min_total_cost(layers);
  if (least > budget)
    fail(
        "knapsack: the budget {} is below the smallest achievable cost {} (every layer at its "
        "cheapest choice)",
        budget, least);

  // The grid step: the gcd of integer costs keeps the DP exact; otherwise (or when that grid
  // would be too large) budget / (max_cells - 1), and the rounding bound of alloc.h applies.
  double u = unit;
  if (!(u > 0)) {
    bool integral = true;
    int64_t g = 0;
    for (const auto& items : layers)
      for (const KnapsackItem& it : items) {
        if (!is_integral(it.cost))
          integral = false;
        else
          g = std::gcd(g, static_cast<int64_t>(it.cost));
      }
    u = integral && g > 0 ? static_cast<double>(g) : 0.0;
    if (u == 0.0 || budget / u > static_cast<double>(max_cells - 1))
      u = budget > 0 ? budget / static_cast<double>(max_cells - 1) : 1.0;
  }
  if (budget / u > static_cast<double>(max_cells - 1))
    fail("knapsack: unit {} gives {} grid cells for budget {} (at most {})", u,
         std::floor(budget / u) + 1, budget, max_cells);
  const int64_t C = static_cast<int64_t>(std::floor(budget / u));

  // Costs rounded up to the grid, the budget down: a grid-feasible choice is really feasible.
  const size_t L = layers.size();
  std::vector<std::vector<int64_t>> w(L);
  for (size_t l = 0; l < L; ++l)
    for (const KnapsackItem& it : layers[l])
      w[l].push_back(static_cast<int64_t>(std::ceil(it.cost / u)));

  // dp[c]: least damage of the layers so far with grid cost <= c; pick[l][c]: the item chosen for
  // layer l at capacity c (ties keep the lower index, i.e. the order given).
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> dp(C + 1, 0.0), next(C + 1);
  std::vector<std::vector<uint8_t>> pick(L, std::vector<uint8_t>(C + 1, 0));
  for (size_t l = 0; l < L; ++l) {
    for (int64_t c = 0; c <= C; ++c) {
      double best = inf;
      uint8_t bi = 0;
      for (size_t j = 0; j < layers[l].size(); ++j) {
        if (w[l][j] > c) continue;
        const double v = dp[c - w[l][j]] + layers[l][j].damage;
        if (v < best) {
          best = v;
          bi = static_cast<uint8_t>(j);
        }
      }
      next[c] = best;
      pick[l][c] = bi;
    }
    dp.swap(next);
  }
  if (!(dp[C] < inf))
    fail(
        "knapsack: no choice fits the budget {} after rounding costs up to a grid step of {} "
        "(smallest real cost {}): use a finer unit",
        budget, u, least);

  KnapsackResult r;
  r.unit = u;
  r.choice.assign(L, 0);
  int64_t c = C;
  for (size_t l = L; l-- > 0;) {
    r.choice[l] = pick[l][c];
    c -= w[l][r.choice[l]];
  }
  fill_totals(layers, r);
  return r;
}

KnapsackResult solve_knapsack_brute_force(const std::vector<std::vector<KnapsackItem>>& layers,
                                          double budget) {
  check_tables(layers, budget);
  double combos = 1;
  for (const auto& items : layers) combos *= static_cast<double>(items.size());
  if (combos > 1e7) fail("knapsack brute force: {} combinations (at most 10^7)", combos);
  const size_t L = layers.size();
  std::vector<int> idx(L, 0);
  KnapsackResult best;
  bool found = false;
  double best_damage = std::numeric_limits<double>::infinity();
  while (true) {
    double cost = 0, damage = 0;
    for (size_t l = 0; l < L; ++l) {
      cost += layers[l][idx[l]].cost;
      damage += layers[l][idx[l]].damage;
    }
    if (cost <= budget && damage < best_damage) {
      best_damage = damage;
      best.choice = idx;
      found = true;
    }
    size_t l = 0;
    while (l < L && ++idx[l] == static_cast<int>(layers[l].size())) idx[l++] = 0;
    if (l == L) break;
  }
  if (!found)
    fail("knapsack brute force: the budget {} is below the smallest achievable cost {}", budget,
         min_total_cost(layers));
  fill_totals(layers, best);
  return best;
}

}  // namespace sq
