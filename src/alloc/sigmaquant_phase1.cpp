// SigmaQuant Phase 1: sigma per layer -> adaptive 1-D k-means -> clusters mapped to bitwidths in
// sigma order -> fitted to every budget through the cost model. Each choice and why:
// docs/method.md, "Allocation (Phase 1)".
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>

#include "sigmaquant/alloc.h"
#include "sigmaquant/error.h"
#include "sigmaquant/table.h"
#include "sigmaquant/transform.h"

namespace sq {
namespace {

void check_options(const Graph& g, const Phase1Options& o) {
  const auto& c = o.candidate_bits;
  if (c.empty()) fail("phase 1: candidate bitwidths: none given (expected e.g. 2,3,4,5,6,8)");
  for (size_t i = 0; i < c.size(); ++i) {
    if (c[i] < kMinWeightBits || c[i] > kMaxWeightBits)
      fail("phase 1: candidate bitwidth {} is out of range (expected {}..{})", c[i], kMinWeightBits,
           kMaxWeightBits);
    if (i > 0 && c[i] <= c[i - 1])
      fail("phase 1: candidate bitwidths must be ascending and unique (got {} after {})", c[i],
           c[i - 1]);
  }
  if (o.abits < kMinActBits || o.abits > kMaxActBits)
    fail("phase 1: activation bits {} are out of range (expected {}..{})", o.abits, kMinActBits,
         kMaxActBits);
  for (const auto& [name, a] : o.layer_abits)
    if (a < kMinActBits || a > kMaxActBits)
      fail("phase 1: activation bits {} of layer '{}' are out of range (expected {}..{})", a, name,
           kMinActBits, kMaxActBits);
  for (const auto& [name, bits] : o.pinned) {
    int idx = -1;
    for (size_t i = 0; i < g.nodes.size(); ++i)
      if (g.nodes[i].name == name) idx = static_cast<int>(i);
    if (idx < 0) fail("phase 1: pinned layer '{}' is not in model '{}'", name, g.name);
    if (!is_weight_layer(g.nodes[idx]))
      fail("phase 1: pinned layer '{}' is a {}, not a weight layer (conv2d or linear)", name,
           op_name(g.nodes[idx].op));
    if (bits < kMinWeightBits || bits > kMaxWeightBits)
      fail("phase 1: pinned layer '{}': {} bits is out of range (expected {}..{})", name, bits,
           kMinWeightBits, kMaxWeightBits);
  }
  if (o.clusters < 0) fail("phase 1: clusters = {} (expected 0 = adaptive, or >= 1)", o.clusters);
  if (!(o.raise_margin >= 0 && o.raise_margin < 1))
    fail("phase 1: raise margin {} is out of range (expected 0 <= margin < 1)", o.raise_margin);
}

// A value in a budget's unit, human-readable.
std::string show(const std::string& unit, double v) {
  if (unit == "B")
    return v < 1024 ? fmt::format("{:.0f} B", v) : fmt::format("{:.2f} KiB", v / 1024);
  if (unit == "s") return fmt::format("{:.3f} ms", v * 1e3);
  if (unit == "J") return fmt::format("{:.3f} uJ", v * 1e6);
  if (unit == "ops") return fmt::format("{:.4f} GBOPs", v / 1e9);
  return fmt::format("{:g} {}", v, unit);
}

// Normalised overflow: sum over budgets of max(0, value - limit) / limit. A move's gain is the
// drop of this quantity, which counts a saving only up to the excess it removes and charges a move
// that pushes another budget over.
double overflow(const std::vector<BudgetCheck>& checks) {
  double s = 0;
  for (const BudgetCheck& c : checks)
    if (!c.fits) s += c.budget > 0 ? c.excess / c.budget : std::numeric_limits<double>::max();
  return s;
}

bool all_fit(const std::vector<BudgetCheck>& checks) {
  for (const BudgetCheck& c : checks)
    if (!c.fits) return false;
  return true;
}

// Largest used fraction over the budgets (0 with no budgets).
double max_usage(const std::vector<BudgetCheck>& checks) {
  double u = 0;
  for (const BudgetCheck& c : checks)
    u = std::max(u, c.budget > 0 ? c.value / c.budget : (c.value > 0 ? 2.0 : 0.0));
  return u;
}

}  // namespace

double sigma_damage(double sigma, int64_t weights, int bits) {
  return static_cast<double>(weights) * sigma * sigma * std::ldexp(1.0, -2 * bits);
}

Phase1Result sigmaquant_phase1(const Graph& g, const Target& t, const Phase1Options& o) {
  check_options(g, o);
  const std::vector<int> cand = candidate_widths(o.candidate_bits, t);
  const int m = static_cast<int>(cand.size());
  const Budgets budgets = o.budgets ? *o.budgets : t.budgets;

  // 1. sigma of each weight layer, after BN folding (the weights that are deployed).
  g.check_params(fmt::format("phase 1: model '{}'", g.name));  // folding needs every parameter
  const Graph folded = o.fold_bn ? fold_batchnorm(g) : Graph();
  const Graph& sg = o.fold_bn ? folded : g;
  const std::vector<int> wl = g.weight_layers();
  const int n = static_cast<int>(wl.size());
  if (n == 0) fail("phase 1: model '{}' has no weight layers", g.name);

  Phase1Result r;
  r.budget_limits = budgets;
  r.layers.resize(n);
  std::vector<int> free_layers;  // indices into r.layers of the non-pinned layers
  for (int i = 0; i < n; ++i) {
    Phase1Layer& L = r.layers[i];
    const Node& node = g.nodes[wl[i]];
    L.name = node.name;
    auto w = node.params.find("weight");
    if (w == node.params.end() || w->second.data.empty())
      fail(
          "phase 1: layer '{}' of model '{}' has no weights (expected a trained or initialised "
          "model)",
          L.name, g.name);
    L.weights = static_cast<int64_t>(w->second.data.size());
    L.sigma = weight_std(sg.node(L.name));
    if (!std::isfinite(L.sigma))
      fail("phase 1: layer '{}' of model '{}' has non-finite weights (sigma = {})", L.name, g.name,
           L.sigma);
    auto p = o.pinned.find(L.name);
    L.pinned = p != o.pinned.end();
    if (L.pinned)
      L.bits = L.initial_bits = p->second;
    else
      free_layers.push_back(i);
  }
  auto damage_of = [&](int i, int bits) {
    return o.damage ? o.damage(r.layers[i].name, bits)
                    : sigma_damage(r.layers[i].sigma, r.layers[i].weights, bits);
  };

  CostEvaluator ev(g, t);
  BitConfig cfg;
  cfg.model = g.name;
  for (const Phase1Layer& L : r.layers) {
    LayerBits lb;
    lb.wbits = L.pinned ? L.bits : cand[0];
    auto a = o.layer_abits.find(L.name);
    lb.abits = a != o.layer_abits.end() ? a->second : o.abits;
    lb.granularity = o.granularity;
    cfg.layers[L.name] = lb;
  }
  std::vector<int> bits(n);  // current weight bits per layer
  for (int i = 0; i < n; ++i) bits[i] = cfg.layers[r.layers[i].name].wbits;
  // Feasibility, decided exactly over every assignment of the candidates (each budget's floor
  // is every layer at its cheapest candidate for it, which under mcu can be 8 bits; budgets that
  // can each be met alone but not together are refused too, by the exact solver).
  const AssignmentSolver solver(g, ev, budgets, cand, LayerActivationBits{o.abits, o.layer_abits},
                                o.pinned, o.granularity);
  solver.require_feasible("phase 1");
  r.candidates = cand;
  // The fitter's budget verdicts: check_budgets(ev.evaluate(cfg)) bit for bit, from the solver's
  // per-layer tables (far cheaper than a full evaluation per trial move).
  auto checks_for = [&](const std::vector<int>& b) {
    for (int i = 0; i < n; ++i) cfg.layers[r.layers[i].name].wbits = b[i];
    return solver.check(cfg);
  };

  // Free layers by ascending sigma (ties in graph order). The monotone constraint compares sigmas
  // strictly: layers of equal sigma may hold different bits.
  std::vector<int> by_sigma = free_layers;
  std::stable_sort(by_sigma.begin(), by_sigma.end(),
                   [&](int a, int b) { return r.layers[a].sigma < r.layers[b].sigma; });
  auto index_of_bits = [&](int b) {
    return static_cast<int>(std::lower_bound(cand.begin(), cand.end(), b) - cand.begin());
  };

  if (!free_layers.empty()) {
    // 2. cluster the free layers' sigma (log by default: sigma is a scale).
    // Values are snapped to 1e-6 (of log sigma, or of sigma relative to the largest) so that
    // float rounding (equal-by-construction layers differing in the 9th digit) does not create
    // clusters of its own.
    double smax = 0;
    for (int i : free_layers) smax = std::max(smax, r.layers[i].sigma);
    std::vector<double> x;
    for (int i : free_layers) {
      const double s = r.layers[i].sigma;
      x.push_back(o.space == SigmaSpace::Log ? std::round(std::log(std::max(s, 1e-30)) * 1e6) / 1e6
                                             : (smax > 0 ? std::round(s / smax * 1e6) / 1e6 : 0.0));
    }
    KMeans1D km;
    if (o.clusters > 0) {
      std::vector<double> sorted = x;
      std::sort(sorted.begin(), sorted.end());
      const int distinct =
          static_cast<int>(std::unique(sorted.begin(), sorted.end()) - sorted.begin());
      km = kmeans_1d(x, std::min({o.clusters, m, distinct}));
    } else {
      km = kmeans_1d_adaptive(x, m, o.min_silhouette, &r.criterion);
    }
    r.k = km.k;
    for (double c : km.centers)
      r.centers.push_back(o.space == SigmaSpace::Log ? std::exp(c) : c * smax);
    for (size_t j = 0; j < free_layers.size(); ++j) r.layers[free_layers[j]].cluster = km.labels[j];

    // 3. clusters -> k consecutive candidates in sigma order. Top: the highest window, and the
    // fitter lowers from there by damage per saving. Fitting: the highest window that fits every
    // budget (else the lowest), so the fitter mostly raises.
    auto apply_window = [&](int w) {
      for (int i : free_layers) bits[i] = cand[w + r.layers[i].cluster];
    };
    int window = m - km.k;
    if (o.start == Phase1Start::FittingWindow) {
      window = 0;
      for (int w = m - km.k; w >= 0; --w) {
        apply_window(w);
        if (all_fit(checks_for(bits))) {
          window = w;
          break;
        }
      }
    }
    apply_window(window);
    for (int c = 0; c < km.k; ++c) r.cluster_bits.push_back(cand[window + c]);
    for (int i : free_layers) r.layers[i].initial_bits = bits[i];

    // 4a. while over a budget: the one-step move that removes the most normalised overflow per
    // unit of added damage. Moves down (single layers and/or groups sharing a bitwidth); moves up
    // too, which help only where the cost model is not monotone in the weight bits (mcu). Every
    // applied move leads to a state not visited before, so the loop ends.
    std::vector<BudgetCheck> cur = checks_for(bits);
    std::set<std::vector<int>> visited = {bits};
    const int max_moves = 8 * n * m + 64;  // far above what a monotone model needs (n x m)
    while (!all_fit(cur)) {
      if (r.lowered >= max_moves) break;  // wandering: the exact solver below takes over
      const double before = overflow(cur);
      struct Move {
        std::vector<int> layers;
        int dir;  // -1 down, +1 up
      };
      std::vector<Move> moves;
      auto monotone_ok = [&](int i, int nb) {
        if (!o.monotone) return true;
        for (int j : free_layers) {
          if (r.layers[j].sigma < r.layers[i].sigma && bits[j] > nb) return false;
          if (r.layers[j].sigma > r.layers[i].sigma && bits[j] < nb) return false;
        }
        return true;
      };
      for (int dir : {-1, +1}) {
        if (o.moves != FitMoves::Group || dir > 0)
          for (int i : free_layers) {
            const int ci = index_of_bits(bits[i]) + dir;
            if (ci >= 0 && ci < m && monotone_ok(i, cand[ci])) moves.push_back({{i}, dir});
          }
      }
      if (o.moves != FitMoves::Layer) {
        std::vector<int> levels;
        for (int i : free_layers)
          if (index_of_bits(bits[i]) > 0) levels.push_back(bits[i]);
        std::sort(levels.begin(), levels.end());
        levels.erase(std::unique(levels.begin(), levels.end()), levels.end());
        for (int b : levels) {
          std::vector<int> grp;
          for (int i : free_layers)
            if (bits[i] == b) grp.push_back(i);
          if (grp.size() > 1 || o.moves == FitMoves::Group) moves.push_back({grp, -1});
        }
      }
      int best = -1, fallback = -1;
      double best_score = -1, best_gain = 0, least_dd = std::numeric_limits<double>::infinity();
      std::vector<BudgetCheck> best_checks, fallback_checks;
      std::vector<int> best_bits, fallback_bits;
      for (size_t k = 0; k < moves.size(); ++k) {
        std::vector<int> nb = bits;
        double dd = 0;
        for (int i : moves[k].layers) {
          nb[i] = cand[index_of_bits(bits[i]) + moves[k].dir];
          dd += damage_of(i, nb[i]) - damage_of(i, bits[i]);
        }
        if (visited.count(nb)) continue;
        std::vector<BudgetCheck> after = checks_for(nb);
        const double gain = before - overflow(after);
        if (gain > 0) {
          const double score = gain / std::max(dd, 1e-300);
          if (score > best_score || (score == best_score && gain > best_gain)) {
            best = static_cast<int>(k);
            best_score = score;
            best_gain = gain;
            best_checks = std::move(after);
            best_bits = std::move(nb);
          }
        } else if (moves[k].dir < 0 && dd < least_dd) {
          // No move reduces the overflow (storage widths that round two bitwidths to one, or a
          // non-monotone model): the least damaging step down, so bits keep going down.
          least_dd = dd;
          fallback = static_cast<int>(k);
          fallback_checks = std::move(after);
          fallback_bits = std::move(nb);
        }
      }
      if (best < 0 && fallback < 0) break;  // stuck: the exact solver below takes over
      bits = best >= 0 ? std::move(best_bits) : std::move(fallback_bits);
      cur = best >= 0 ? std::move(best_checks) : std::move(fallback_checks);
      visited.insert(bits);
      ++r.lowered;
    }
    if (!all_fit(cur)) {
      // The greedy fitter got stuck or wandered (a model not monotone in the weight bits, or
      // budgets pulling apart under the sigma-order constraint); a feasible assignment exists
      // (checked above). The exact solver gives the one nearest to the sigma mapping, in
      // candidate steps, ties broken by the damage proxy.
      std::map<std::string, int> proposal;
      for (int i : free_layers) proposal[r.layers[i].name] = r.layers[i].initial_bits;
      std::optional<BitConfig> fit = solver.nearest(
          proposal, [&](const std::string& name, int b) {
            for (int i : free_layers)
              if (r.layers[i].name == name) return damage_of(i, b);
            return 0.0;
          });
      if (!fit) fail("phase 1: internal error: the exact solver found no assignment");
      for (int i : free_layers) bits[i] = fit->layers.at(r.layers[i].name).wbits;
      cur = checks_for(bits);
      r.exact_fit = true;
    }

    // 4b. raise while comfortably under every budget, one layer one candidate step at a time,
    // only if every budget still holds: by default the raise that removes the most damage per
    // unit of added (normalised) cost; RaiseOrder::Sigma: the highest-sigma layer that fits.
    // With no budgets there is nothing to fit.
    if (!budgets.empty()) {
      while (max_usage(cur) < 1.0 - o.raise_margin) {
        int best = -1;
        double best_score = -1;
        std::vector<BudgetCheck> best_checks;
        for (auto it = by_sigma.rbegin(); it != by_sigma.rend(); ++it) {
          const int i = *it;
          const int ci = index_of_bits(bits[i]);
          if (ci + 1 >= m) continue;
          const int nb = cand[ci + 1];
          if (o.monotone) {
            bool ok = true;
            for (int j : free_layers)
              if (r.layers[j].sigma > r.layers[i].sigma && bits[j] < nb) ok = false;
            if (!ok) continue;
          }
          std::vector<int> trial = bits;
          trial[i] = nb;
          std::vector<BudgetCheck> after = checks_for(trial);
          if (!all_fit(after)) continue;
          double added = 0;  // cost added, as fractions of each budget
          for (size_t b = 0; b < after.size(); ++b)
            if (after[b].budget > 0)
              added += std::max(0.0, after[b].value - cur[b].value) / after[b].budget;
          const double removed = damage_of(i, bits[i]) - damage_of(i, nb);
          if (o.raise == RaiseOrder::DamagePerCost && !(removed > 0)) continue;  // buys nothing
          const double score = removed / std::max(added, 1e-300);
          if (score > best_score) {  // strict: ties keep the higher sigma
            best = i;
            best_score = score;
            best_checks = std::move(after);
          }
          if (o.raise == RaiseOrder::Sigma) break;  // the highest-sigma raise that fits
        }
        if (best < 0) break;
        bits[best] = cand[index_of_bits(bits[best]) + 1];
        cur = std::move(best_checks);
        ++r.raised;
      }
    }
  }

  // Results at the final assignment.
  for (int i = 0; i < n; ++i) cfg.layers[r.layers[i].name].wbits = bits[i];
  r.bits = cfg;
  r.cost = ev.evaluate(cfg);
  r.budgets = check_budgets(r.cost, budgets);
  if (!all_fit(r.budgets)) fail("phase 1: internal error: the result breaks a budget");
  for (int i = 0; i < n; ++i) {
    Phase1Layer& L = r.layers[i];
    L.bits = bits[i];
    L.damage = damage_of(i, bits[i]);
    r.damage += L.damage;
    for (const LayerCost& lc : r.cost.layers)
      if (lc.name == L.name) L.cost = lc;
  }
  return r;
}

std::string phase1_table(const Phase1Result& r) {
  const bool timing = r.cost.has_timing, energy = r.cost.has_energy;
  std::vector<std::string> head = {"layer", "sigma", "cluster", "bits", "weights", "weight mem"};
  std::vector<Align> al = {Align::Left,  Align::Right, Align::Right,
                           Align::Right, Align::Right, Align::Right};
  if (timing) head.push_back("cycles"), al.push_back(Align::Right);
  if (energy) head.push_back("energy"), al.push_back(Align::Right);
  Table tab(head, al);
  for (const Phase1Layer& L : r.layers) {
    std::string bits = L.pinned                   ? fmt::format("{} (pinned)", L.bits)
                       : L.bits == L.initial_bits ? fmt::format("{}", L.bits)
                                                  : fmt::format("{} -> {}", L.initial_bits, L.bits);
    std::vector<std::string> row = {L.name,
                                    fmt::format("{:.4g}", L.sigma),
                                    L.cluster < 0 ? "-" : fmt::format("{}", L.cluster),
                                    bits,
                                    thousands(L.weights),
                                    show("B", static_cast<double>(L.cost.weight_bytes))};
    if (timing) row.push_back(thousands(static_cast<long long>(std::llround(L.cost.cycles))));
    if (energy) row.push_back(show("J", L.cost.energy_j));
    tab.add(row);
  }
  std::string out = tab.str();
  out += fmt::format("\nclusters {} (centres", r.k);
  for (size_t c = 0; c < r.centers.size(); ++c)
    out += fmt::format(" {:.4g}->{}b", r.centers[c], r.cluster_bits[c]);
  out += fmt::format("); budget fitting: {} step(s) while over budget{}, {} raise(s) after\n",
                     r.lowered,
                     r.exact_fit ? " (greedy stuck: the exact solver gave the feasible assignment "
                                   "nearest the sigma mapping)"
                                 : "",
                     r.raised);
  if (!r.budgets.empty()) {
    Table bt({"budget", "value", "limit", "verdict"},
             {Align::Left, Align::Right, Align::Right, Align::Left});
    for (const BudgetCheck& c : r.budgets)
      bt.add({c.metric, show(c.unit, c.value), show(c.unit, c.budget),
              c.fits ? fmt::format("fits ({:.1f} % used)", 100.0 * c.value / c.budget)
                     : fmt::format("EXCEEDS by {}", show(c.unit, c.excess))});
    out += "\n" + bt.str();
  }
  return out;
}

nlohmann::ordered_json phase1_to_json(const Phase1Result& r) {
  nlohmann::ordered_json layers = nlohmann::ordered_json::array();
  for (const Phase1Layer& L : r.layers) {
    nlohmann::ordered_json j = {{"name", L.name},
                                {"sigma", L.sigma},
                                {"cluster", L.cluster},
                                {"initial_bits", L.initial_bits},
                                {"bits", L.bits},
                                {"pinned", L.pinned},
                                {"weights", L.weights},
                                {"damage", L.damage},
                                {"weight_bytes", L.cost.weight_bytes}};
    if (r.cost.has_timing) j["cycles"] = L.cost.cycles;
    if (r.cost.has_energy) j["energy_j"] = L.cost.energy_j;
    layers.push_back(j);
  }
  return {{"k", r.k},
          {"centers", r.centers},
          {"cluster_bits", r.cluster_bits},
          {"silhouette", r.criterion},
          {"lowered", r.lowered},
          {"raised", r.raised},
          {"exact_fit", r.exact_fit},
          {"candidates", r.candidates},
          {"damage", r.damage},
          {"layers", layers},
          {"cost", cost_to_json(r.cost)["total"]},
          {"budgets", budgets_to_json(r.budgets)}};
}

}  // namespace sq
