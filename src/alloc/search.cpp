// SigmaQuant Phase 2 and the baseline allocators (torch-free parts). Choices and their reasons:
// docs/method.md, "Refinement (Phase 2)" and "Baselines".
#include "sigmaquant/search.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>
#include <set>

#include "sigmaquant/alloc.h"
#include "sigmaquant/error.h"
#include "sigmaquant/infeasible.h"
#include "sigmaquant/quant.h"
#include "sigmaquant/random.h"

namespace sq {
namespace {

std::vector<std::string> layer_names(const Graph& g) {
  std::vector<std::string> names;
  for (int i : g.weight_layers()) names.push_back(g.nodes[i].name);
  return names;
}

int wbits_of(const BitConfig& b, const std::string& layer) { return b.for_layer(layer).wbits; }

void set_wbits(BitConfig& b, const std::string& layer, int bits) {
  LayerBits lb = b.for_layer(layer);
  lb.wbits = bits;
  lb.channel_wbits.clear();
  b.layers[layer] = lb;
}

// The next candidate above / below `bits` (0 when none).
int step_up(const std::vector<int>& c, int bits) {
  for (int v : c)
    if (v > bits) return v;
  return 0;
}
int step_down(const std::vector<int>& c, int bits) {
  int best = 0;
  for (int v : c)
    if (v < bits) best = v;
  return best;
}

// Budget values of a report, in the order of check_budgets.
std::vector<double> usage(const CostReport& r, const Budgets& b) {
  std::vector<double> u;
  for (const BudgetCheck& c : check_budgets(r, b)) u.push_back(c.value / c.budget);
  return u;
}

// Σ over budgets of the normalised increase (positive part) from `a` to `b`.
double added_use(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += std::max(0.0, b[i] - a[i]);
  return s;
}
// Σ over budgets that are over (b > 1) of how much `to` reduces the overshoot of `from`.
double relieved(const std::vector<double>& from, const std::vector<double>& to) {
  double s = 0;
  for (size_t i = 0; i < from.size(); ++i)
    if (from[i] > 1) s += std::max(0.0, from[i] - std::max(to[i], 1.0));
  return s;
}

bool all_fit(const std::vector<double>& u) {
  for (double v : u)
    if (v > 1 + 1e-12) return false;
  return true;
}

std::string widths_text(const std::vector<int>& w) {
  std::string s;
  for (int x : w) s += (s.empty() ? "" : ",") + std::to_string(x);
  return "{" + s + "}";
}

bool seen(const std::vector<BitConfig>& visited, const BitConfig& b) {
  for (const BitConfig& v : visited)
    if (v.layers == b.layers) return true;
  return false;
}

// A unit Phase 2 moves: a weight layer's width or (searched activation widths) an activation
// point's width, which all the point's readers share.
struct Item {
  std::string name;
  bool act = false;
  std::vector<std::string> readers;  // act: the layers whose abits it sets
};

int width_of(const BitConfig& b, const Item& it) {
  return it.act ? b.for_layer(it.readers.front()).abits : wbits_of(b, it.name);
}
void set_width(BitConfig& b, const Item& it, int w) {
  if (!it.act) return set_wbits(b, it.name, w);
  for (const std::string& r : it.readers) {
    LayerBits lb = b.for_layer(r);
    lb.abits = w;
    b.layers[r] = lb;
  }
}

// What Phase 2 may move: the free layers over the candidate widths and, with two or more
// activation widths, the free activation points over those.
struct Space {
  std::vector<Item> items;
  std::vector<int> cand, acts;
  const std::vector<int>& widths(const Item& it) const { return it.act ? acts : cand; }
  const Item& find(const std::string& name, bool act) const {
    for (const Item& it : items)
      if (it.name == name && it.act == act) return it;
    fail("Phase 2: '{}' is not a movable {}", name, act ? "activation point" : "layer");
  }
};

Space phase2_space(const Graph& g, const CostEvaluator& ce, const Phase2Options& o) {
  Space s;
  s.cand = candidate_widths(o.candidate_bits, ce.target());
  for (const std::string& n : layer_names(g))
    if (!o.pinned.count(n)) s.items.push_back({n, false, {}});
  if (o.abits_set.size() > 1) {
    s.acts = o.abits_set;
    std::sort(s.acts.begin(), s.acts.end());
    s.acts.erase(std::unique(s.acts.begin(), s.acts.end()), s.acts.end());
    Graph shaped;
    const Graph* gs = &g;
    if (!g.nodes.empty() && g.nodes.front().out_shape.empty()) {
      shaped = g;
      shaped.infer_shapes();
      gs = &shaped;
    }
    for (const ActivationPoint& p : activation_points(*gs, o.pinned))
      if (!p.fixed) s.items.push_back({p.name, true, p.layers});
  }
  return s;
}

double item_kl(SearchOracle& oracle, const Item& it, int bits) {
  return it.act ? oracle.point_kl(it.name, bits) : oracle.layer_kl(it.name, bits);
}

BitChange change_of(const Item& it, int from, int to, const std::string& why) {
  BitChange c{it.name, from, to, why};
  c.activation = it.act;
  return c;
}

// The one-step lowering, among `items`, that adds the least loss per unit of overshoot relieved
// (u: the budgets' usage of c). to = 0 when no lowering relieves anything.
struct Lowering {
  Item item;
  int from = 0, to = 0;
  double loss = 0;
};
Lowering cheapest_lowering(const CostEvaluator& ce, const Budgets& b, const BitConfig& c,
                           const std::vector<double>& u, const std::vector<Item>& items,
                           const Space& space,
                           const std::function<double(const Item&, int)>& damage) {
  Lowering best;
  double best_score = std::numeric_limits<double>::infinity();
  for (const Item& it : items) {
    int from = width_of(c, it), to = step_down(space.widths(it), from);
    if (!to) continue;
    BitConfig l = c;
    set_width(l, it, to);
    double rel = relieved(u, usage(ce.evaluate(l), b));
    if (rel <= 0) continue;
    double loss = std::max(0.0, damage(it, to) - damage(it, from));
    if (loss / rel < best_score) best_score = loss / rel, best = {it, from, to, loss};
  }
  return best;
}

}  // namespace

double SearchOracle::point_kl(const std::string& point, int bits) {
  fail("this search oracle measures no activation sensitivity (point '{}' at {} bits)", point,
       bits);
}

// ---------------------------------------------------------------------------------------------
// Budgets

Budgets budgets_for_avg_bits(const Graph& g, const Target& t, double avg_bits, int abits) {
  if (!(avg_bits >= 1 && avg_bits <= 8))
    fail("average weight bits {} is out of range (expected 1..8)", avg_bits);
  // The memory of uniform floor(avg) bits, plus the fraction of the step to the next width: at an
  // integer the budget IS the uniform assignment's memory (no rounding to refuse it by).
  CostEvaluator ce(g, t);
  auto bytes = [&](int bits) {
    return static_cast<double>(ce.evaluate(BitConfig::uniform(g, bits, abits)).weight_bytes);
  };
  const int lo = static_cast<int>(std::floor(avg_bits));
  const double frac = avg_bits - lo;
  Budgets b = t.budgets;
  b.weight_bytes = frac == 0 ? bytes(lo) : bytes(lo) + frac * (bytes(lo + 1) - bytes(lo));
  return b;
}

bool fits(const CostEvaluator& ce, const Budgets& b, const BitConfig& bits) {
  return fits_budgets(ce.evaluate(bits), b);
}

BitConfig uniform_with_pins(const Graph& g, int wbits, int abits,
                            const std::map<std::string, int>& pinned) {
  BitConfig c = BitConfig::uniform(g, wbits, abits);
  for (const auto& [n, bits] : pinned) set_wbits(c, n, bits);
  return c;
}

int nearest_feasible_uniform(const Graph& g, const CostEvaluator& ce, const Budgets& b,
                             const std::vector<int>& candidates, int abits,
                             const std::map<std::string, int>& pinned) {
  const std::vector<int> cand = candidate_widths(candidates, ce.target());
  // Every width is tried (the widest that fits wins): under a model that is not monotone in the
  // weight bits (mcu) a wider uniform width can fit where a narrower one does not.
  std::string broken;
  for (auto it = cand.rbegin(); it != cand.rend(); ++it) {
    const std::vector<BudgetCheck> checks =
        check_budgets(ce.evaluate(uniform_with_pins(g, *it, abits, pinned)), b);
    bool ok = true;
    for (const BudgetCheck& c : checks)
      if (!c.fits) {
        if (ok)
          broken = fmt::format("{} bits: the {} budget, {}{}", *it, c.metric, budget_check_text(c),
                               broken.empty() ? "" : "; " + broken);
        ok = false;
      }
    if (ok) return *it;
  }
  // Why not: the budgets each width breaks, and whether a mixed assignment would fit.
  AssignmentSolver solver(g, ce, b, cand, abits, pinned);
  fail_infeasible("uniform: no uniform width in {} fits target '{}' ({}); {}", widths_text(cand),
                  ce.target().name, broken,
                  solver.feasible()
                      ? "a mixed assignment over these widths does fit (use another method)"
                      : solver.why_infeasible());
}

// ---------------------------------------------------------------------------------------------
// Phase 2

namespace {
const char* const kExploreWhy =
    "raise (explore): no swap pays by KL, the least unprofitable one; its QAT cycle decides";
bool is_explore_step(const Phase2Step& s) {
  return !s.changes.empty() && s.changes.front().why == kExploreWhy;
}
}  // namespace

std::vector<BitChange> phase2_moves(const Graph& g, const CostEvaluator& ce, const Budgets& b,
                                    const BitConfig& bits, SearchOracle& oracle,
                                    const Phase2Options& o, bool raise,
                                    const std::vector<BitConfig>& visited) {
  const Space space = phase2_space(g, ce, o);
  auto kl = [&](const Item& it, int w) { return item_kl(oracle, it, w); };
  BitConfig cur = bits;
  std::vector<double> use = usage(ce.evaluate(cur), b);
  std::vector<BitChange> changes;

  if (!raise) {  // minimise: the lowering with the least KL added per unit of budget freed
    double best = std::numeric_limits<double>::infinity();
    std::optional<BitChange> pick;
    for (const Item& it : space.items) {
      int from = width_of(cur, it), to = step_down(space.widths(it), from);
      if (!to) continue;
      BitConfig t = cur;
      set_width(t, it, to);
      if (seen(visited, t)) continue;
      double freed = added_use(usage(ce.evaluate(t), b), use);
      double loss = std::max(0.0, kl(it, to) - kl(it, from));
      double score = loss / std::max(freed, 1e-12);
      if (freed > 0 && score < best)
        best = score, pick = change_of(it, from, to, "minimise: least KL per cost freed");
    }
    if (pick) changes.push_back(*pick);
    return changes;
  }

  auto key = [](const Item& it) { return (it.act ? "a:" : "w:") + it.name; };
  std::set<std::string> raised;
  // The least unprofitable admissible swap (largest gain − paid), for exploration.
  std::vector<BitChange> explore_step;
  double explore_net = -std::numeric_limits<double>::infinity();
  for (int r = 0; r < o.max_raises; ++r) {
    // Candidate raises ranked by KL removed per unit of budget added.
    struct Raise {
      Item item;
      int from, to;
      double gain, score;
    };
    std::vector<Raise> ranked;
    for (const Item& it : space.items) {
      if (raised.count(key(it))) continue;
      int from = width_of(cur, it), to = step_up(space.widths(it), from);
      if (!to) continue;
      BitConfig t = cur;
      set_width(t, it, to);
      double gain = kl(it, from) - kl(it, to);
      if (gain <= 0) continue;
      double add = added_use(use, usage(ce.evaluate(t), b));
      ranked.push_back({it, from, to, gain, gain / std::max(add, 1e-9)});
    }
    std::sort(ranked.begin(), ranked.end(), [&](const Raise& x, const Raise& y) {
      return x.score > y.score || (x.score == y.score && key(x.item) < key(y.item));
    });
    bool made = false;
    for (const Raise& rz : ranked) {
      BitConfig t = cur;
      set_width(t, rz.item, rz.to);
      std::vector<BitChange> step = {
          change_of(rz.item, rz.from, rz.to, "raise: largest KL per cost")};
      double paid = 0;
      std::vector<double> u = usage(ce.evaluate(t), b);
      // Pay: lower the items that add the least KL per unit of overshoot relieved.
      std::vector<Item> payers;
      for (const Item& it : space.items)
        if (key(it) != key(rz.item) && !raised.count(key(it))) payers.push_back(it);
      while (!all_fit(u)) {
        Lowering low = cheapest_lowering(ce, b, t, u, payers, space, kl);
        if (!low.to) break;
        paid += low.loss;
        set_width(t, low.item, low.to);
        step.push_back(change_of(low.item, low.from, low.to, "pay: smallest KL per cost"));
        u = usage(ce.evaluate(t), b);
      }
      if (!all_fit(u) || seen(visited, t)) continue;
      if (paid >= rz.gain) {  // not worth it by KL; remembered as a candidate to explore
        if (r == 0 && rz.gain - paid > explore_net) {
          explore_net = rz.gain - paid;
          explore_step = step;
          explore_step[0].why = kExploreWhy;
        }
        continue;
      }
      cur = t;
      use = u;
      raised.insert(key(rz.item));
      changes.insert(changes.end(), step.begin(), step.end());
      made = true;
      break;
    }
    if (!made) break;
  }
  if (changes.empty() && o.explore) return explore_step;
  return changes;
}

namespace {

const char* const kSpendWhy = "spend leftover budget";

bool is_spend_step(const Phase2Step& s) {
  for (const BitChange& c : s.changes)
    if (c.why == kSpendWhy) return true;
  return false;
}

// Spends what the budgets leave: repeatedly the raise (of one movable layer to any wider
// candidate) with the largest KL reduction per unit of budget added (normalised, summed over the
// budgets; a raise that costs nothing under a plateau or a non-monotone model comes first) among
// those that keep every budget, until none is left. Measured accuracy per layer would cost a QAT
// cycle each; the oracle's KL is the sensitivity Phase 2 already uses.
std::vector<BitChange> spend_leftover(const CostEvaluator& ce, const Budgets& b, BitConfig& bits,
                                      SearchOracle& oracle, const Space& space) {
  std::vector<BitChange> changes;
  std::vector<double> use = usage(ce.evaluate(bits), b);
  while (true) {
    const Item* item = nullptr;
    int from = 0, to = 0;
    double best = 0;
    std::vector<double> best_use;
    for (const Item& it : space.items) {
      const int f = width_of(bits, it);
      const double kl_from = item_kl(oracle, it, f);
      for (int t : space.widths(it)) {
        if (t <= f) continue;
        const double gain = kl_from - item_kl(oracle, it, t);
        if (!(gain > 0)) continue;
        BitConfig trial = bits;
        set_width(trial, it, t);
        std::vector<double> u = usage(ce.evaluate(trial), b);
        if (!all_fit(u)) continue;
        const double score = gain / std::max(added_use(use, u), 1e-12);
        if (score > best) best = score, item = &it, from = f, to = t, best_use = std::move(u);
      }
    }
    if (!item) break;
    set_width(bits, *item, to);
    use = std::move(best_use);
    changes.push_back(change_of(*item, from, to, kSpendWhy));
  }
  return changes;
}

}  // namespace

Phase2Result sigmaquant_phase2(const Graph& g, const CostEvaluator& ce, const Budgets& b,
                               const BitConfig& start, SearchOracle& oracle, const Phase2Options& o,
                               std::vector<Phase2Step> done, const Phase2StepHook& on_step) {
  if (o.candidate_bits.empty()) fail("Phase 2: no candidate bitwidths");
  const Space space = phase2_space(g, ce, o);
  if (!(o.cycle_epochs >= 0)) fail("Phase 2: the QAT cycle must be 0 (PTQ only) or longer");
  if (!fits(ce, b, start)) fail("Phase 2: the starting assignment breaks a budget");
  auto now = [] { return std::chrono::steady_clock::now(); };

  auto record = [&](int it, const BitConfig& bits, std::vector<BitChange> changes) {
    auto t0 = now();
    Phase2Step s;
    s.iteration = it;
    s.bits = bits;
    s.changes = std::move(changes);
    s.accuracy = oracle.train_and_evaluate(bits, o.cycle_epochs, it);
    s.qat_epochs = o.cycle_epochs;
    s.cost = ce.evaluate(bits);
    s.budgets = check_budgets(s.cost, b);
    if (!fits_budgets(s.cost, b)) fail("Phase 2 internal error: step {} breaks a budget", it);
    s.avg_bits = average_weight_bits(bits, g);
    for (const std::string& n : layer_names(g)) s.kl[n] = oracle.layer_kl(n, wbits_of(bits, n));
    s.seconds = std::chrono::duration<double>(now() - t0).count();
    if (on_step) on_step(s);
    return s;
  };

  Phase2Result r;
  r.steps = std::move(done);
  if (r.steps.empty()) r.steps.push_back(record(0, start, {}));
  std::vector<BitConfig> visited;
  for (const Phase2Step& s : r.steps) visited.push_back(s.bits);
  // A resumed run whose log ends with the spending step has finished its search.
  bool spent = is_spend_step(r.steps.back());
  if (spent && r.steps.size() < 2)
    fail("Phase 2: the recorded steps hold only a spending step (expected the search before it)");

  auto in_band = [&](double acc) {
    return acc >= o.target_accuracy && (!o.minimize || acc <= o.target_accuracy + o.band);
  };
  while (true) {
    const Phase2Step& last = spent ? r.steps[r.steps.size() - 2] : r.steps.back();
    if (in_band(last.accuracy)) {
      r.stop_reason = "in band";
      break;
    }
    if (last.iteration >= o.max_iterations) {
      r.stop_reason = "iteration limit";
      break;
    }
    if (spent) {  // it stopped for the only other reason
      r.stop_reason = "fixed point";
      break;
    }
    bool raise = last.accuracy < o.target_accuracy;
    // Explore once in a row: after an exploration that did not beat every earlier step, only a
    // KL-profitable swap may follow.
    Phase2Options om = o;
    if (is_explore_step(last)) {
      double before = -1;
      for (size_t i = 0; i + 1 < r.steps.size(); ++i)
        before = std::max(before, r.steps[i].accuracy);
      if (last.accuracy <= before) om.explore = false;
    }
    std::vector<BitChange> ch = phase2_moves(g, ce, b, last.bits, oracle, om, raise, visited);
    if (ch.empty()) {
      r.stop_reason = "fixed point";
      break;
    }
    BitConfig next = last.bits;
    for (const BitChange& c : ch) set_width(next, space.find(c.layer, c.activation), c.to);
    visited.push_back(next);
    r.steps.push_back(record(last.iteration + 1, next, ch));
  }

  // The best step: target met at the lowest normalised cost, else the highest accuracy.
  auto total_use = [&](const Phase2Step& s) {
    double t = 0;
    for (const BudgetCheck& c : s.budgets) t += c.value / c.budget;
    return t;
  };
  auto best_of = [&](int n) {
    int best = 0;
    for (int i = 1; i < n; ++i) {
      const Phase2Step &s = r.steps[i], &cb = r.steps[best];
      bool s_ok = s.accuracy >= o.target_accuracy, b_ok = cb.accuracy >= o.target_accuracy;
      if (o.minimize && s_ok && b_ok) {
        if (total_use(s) < total_use(cb)) best = i;
      } else if (s.accuracy > cb.accuracy) {
        best = i;
      }
    }
    return best;
  };
  int best =
      best_of(spent ? static_cast<int>(r.steps.size()) - 1 : static_cast<int>(r.steps.size()));

  // Spend the budget left at the best step (not when minimising resources: there the leftover is
  // the point), one more QAT cycle, and keep it only if validation accuracy does not drop.
  if (!spent && !o.minimize) {
    BitConfig more = r.steps[best].bits;
    std::vector<BitChange> ch = spend_leftover(ce, b, more, oracle, space);
    if (!ch.empty() && !seen(visited, more)) {
      r.steps.push_back(record(r.steps.back().iteration + 1, more, ch));
      spent = true;
    }
  }
  if (spent && r.steps.back().accuracy >= r.steps[best].accuracy)
    best = static_cast<int>(r.steps.size()) - 1;

  r.best_step = best;
  r.bits = r.steps[best].bits;
  r.accuracy = r.steps[best].accuracy;
  for (const Phase2Step& s : r.steps) r.qat_epochs += s.qat_epochs;
  return r;
}

// ---------------------------------------------------------------------------------------------
// Baselines

namespace {

BitConfig with_bits(const Graph& g, const LayerActivationBits& abits,
                    const std::map<std::string, int>& wbits) {
  BitConfig c = BitConfig::uniform(g, 8, abits.all);
  for (const auto& [n, a] : abits.layers) c.layers.at(n).abits = a;
  for (const auto& [n, bits] : wbits) set_wbits(c, n, bits);
  return c;
}
BitConfig with_bits(const Graph& g, int abits, const std::map<std::string, int>& wbits) {
  return with_bits(g, LayerActivationBits{abits, {}}, wbits);
}

int nearest_candidate(const std::vector<int>& cand, double x) {
  int best = cand.front();
  for (int v : cand)
    if (std::abs(v - x) < std::abs(best - x)) best = v;
  return best;
}

}  // namespace

BitConfig adaptive_allocation(const Graph& g, const CostEvaluator& ce, const Budgets& b,
                              const std::map<std::string, double>& p,
                              const std::map<std::string, double>& t,
                              const std::vector<int>& candidates, int abits,
                              const std::map<std::string, int>& pinned) {
  if (candidates.empty()) fail("adaptive: no candidate bitwidths");
  const std::vector<int> cand = candidate_widths(candidates, ce.target());
  std::map<std::string, double> base, gain;  // log_4(p / (t s)); p / t
  for (int i : g.weight_layers()) {
    const std::string& n = g.nodes[i].name;
    if (pinned.count(n)) continue;
    auto pi = p.find(n), ti = t.find(n);
    if (pi == p.end() || ti == t.end()) fail("adaptive: no measurement for layer '{}'", n);
    double s = static_cast<double>(g.nodes[i].params.at("weight").size());
    gain[n] = std::max(pi->second, 1e-30) / std::max(ti->second, 1e-30);
    base[n] = std::log(gain[n] / s) / std::log(4.0);
  }
  auto proposal = [&](double c) {
    std::map<std::string, int> w;
    for (const auto& [n, v] : base) w[n] = nearest_candidate(cand, c + v);
    return w;
  };
  auto config = [&](const std::map<std::string, int>& w) {
    std::map<std::string, int> all(pinned.begin(), pinned.end());
    all.insert(w.begin(), w.end());
    return with_bits(g, abits, all);
  };
  // The closed form's family: as the offset c grows, layer l moves up at c = midpoint - v_l
  // between consecutive candidates. Every member is tried (not a bisection, which assumes cost
  // grows with c: false under mcu); the largest c that fits every budget wins.
  std::vector<double> offsets = {-1e9};
  for (const auto& [n, v] : base)
    for (size_t j = 1; j < cand.size(); ++j)
      offsets.push_back(0.5 * (cand[j - 1] + cand[j]) - v + 1e-9);
  std::sort(offsets.begin(), offsets.end());
  const AssignmentSolver solver(g, ce, b, cand, abits, pinned);  // exact verdicts, fast
  // The closed form lands on a coarse grid and can leave part of a budget unused (resnet20 at 2.5
  // average bits over {2,4,8}: 2.37-2.49 bits). What is left is spent greedily: each step raises,
  // to its next candidate, the layer that removes the most of Zhou's objective sum p/t * 4^-b per
  // weight bit added, among the raises that keep every budget; until none does.
  std::map<std::string, double> weights;
  for (int i : g.weight_layers())
    weights[g.nodes[i].name] = static_cast<double>(g.nodes[i].params.at("weight").size());
  auto fill = [&](std::map<std::string, int> w) {
    for (;;) {
      std::optional<std::map<std::string, int>> best;
      double best_ratio = 0;
      for (const auto& [n, bits] : w) {
        auto up = std::upper_bound(cand.begin(), cand.end(), bits);
        if (up == cand.end()) continue;
        const double ratio = gain.at(n) * (std::pow(4.0, -bits) - std::pow(4.0, -*up)) /
                             (weights.at(n) * (*up - bits));
        if (ratio <= best_ratio) continue;
        std::map<std::string, int> trial = w;
        trial[n] = *up;
        if (!solver.fits(config(trial))) continue;
        best_ratio = ratio;
        best = std::move(trial);
      }
      if (!best) return w;
      w = std::move(*best);
    }
  };
  std::optional<std::map<std::string, int>> closest;  // least normalised overflow, if none fits
  double least = std::numeric_limits<double>::infinity();
  for (auto it = offsets.rbegin(); it != offsets.rend(); ++it) {
    std::map<std::string, int> w = proposal(*it);
    double over = 0;
    for (const BudgetCheck& c : solver.check(config(w))) over += c.excess_pct;
    if (over == 0) return config(fill(w));
    if (over < least) least = over, closest = w;
  }
  // No member fits (a non-monotone model, or budgets that pull apart): repair to feasibility, the
  // assignment nearest to the closest member, ties broken by Zhou's objective sum p/t * 4^-b.
  solver.require_feasible("adaptive");
  std::optional<BitConfig> r = solver.nearest(
      *closest, [&](const std::string& n, int bits) { return gain.at(n) * std::pow(4.0, -bits); });
  if (!r) solver.require_feasible("adaptive");
  if (!r) fail("adaptive: internal error: the exact solver found no assignment");
  std::map<std::string, int> w;
  for (const auto& [n, v] : gain) w[n] = r->for_layer(n).wbits;
  return config(fill(w));
}

double weight_quantization_error(const Node& layer, int bits) {
  const Tensor& w = layer.params.at("weight");
  Tensor dq = dequantize(quantize_weights_symmetric(w, bits, true));
  double err = 0;
  for (int64_t k = 0; k < w.size(); ++k)
    err += double(dq.data[k] - w.data[k]) * (dq.data[k] - w.data[k]);
  return err;
}

BitConfig hessian_allocation(const Graph& g, const CostEvaluator& ce, const Budgets& b,
                             const std::map<std::string, double>& traces,
                             const std::vector<int>& candidates, int abits,
                             const std::map<std::string, int>& pinned) {
  if (candidates.empty()) fail("hessian: no candidate bitwidths");
  AssignmentSolver solver(g, ce, b, candidates, abits, pinned);
  const std::vector<int>& cand = solver.candidates();
  std::map<std::string, std::map<int, double>> damage;  // trace / n x ||Q_b(W) - W||^2
  for (int i : g.weight_layers()) {
    const Node& n = g.nodes[i];
    if (pinned.count(n.name)) continue;
    auto tr = traces.find(n.name);
    if (tr == traces.end()) fail("hessian: no trace for layer '{}'", n.name);
    double avg_trace = tr->second / static_cast<double>(n.params.at("weight").size());
    for (int bits : cand) damage[n.name][bits] = avg_trace * weight_quantization_error(n, bits);
  }
  // The integer program of HAWQ-V3: minimise the damage subject to every budget at once.
  solver.require_feasible("hessian");
  std::optional<BitConfig> r =
      solver.solve([&](const std::string& n, int bits) { return damage.at(n).at(bits); });
  if (!r) solver.require_feasible("hessian");
  if (!r) fail("hessian: internal error: the exact solver found no assignment");
  return *r;
}

BitConfig random_allocation(const Graph& g, const CostEvaluator& ce, const Budgets& b,
                            const std::vector<int>& candidates, int abits, uint64_t seed,
                            const std::map<std::string, int>& pinned) {
  return random_allocation(g, ce, b, candidates, LayerActivationBits{abits, {}}, seed, pinned);
}

BitConfig random_allocation(const Graph& g, const CostEvaluator& ce, const Budgets& b,
                            const std::vector<int>& candidates, const LayerActivationBits& abits,
                            uint64_t seed, const std::map<std::string, int>& pinned) {
  if (candidates.empty()) fail("random: no candidate bitwidths");
  const std::vector<int> cand = candidate_widths(candidates, ce.target());
  std::mt19937_64 rng(seed);
  std::vector<std::string> movable;
  std::map<std::string, int> w(pinned.begin(), pinned.end()), drawn;
  for (const std::string& n : layer_names(g))
    if (!pinned.count(n)) {
      movable.push_back(n);
      w[n] = drawn[n] = cand[uniform_index(rng, cand.size())];
    }
  BitConfig c = with_bits(g, abits, w);
  const AssignmentSolver solver(g, ce, b, cand, abits, pinned);  // exact verdicts, fast
  if (movable.empty()) {
    if (!solver.fits(c)) solver.require_feasible("random");
    return c;
  }
  auto pick = [&] { return movable[uniform_index(rng, movable.size())]; };
  // Random layers lowered until every budget holds; if the bottom is reached over budget (a
  // non-monotone model), the feasible assignment nearest to the draw (ties: random).
  while (!solver.fits(c)) {
    bool any = false;
    for (const std::string& n : movable) any = any || step_down(cand, wbits_of(c, n));
    if (!any) {
      solver.require_feasible("random");
      std::map<std::string, std::vector<double>> noise;
      for (const std::string& n : movable)
        for (size_t j = 0; j < cand.size(); ++j) noise[n].push_back(uniform01(rng));
      std::optional<BitConfig> r = solver.nearest(drawn, [&](const std::string& n, int bits) {
        return noise.at(n)[std::find(cand.begin(), cand.end(), bits) - cand.begin()];
      });
      if (!r) fail("random: internal error: the exact solver found no assignment");
      c = *r;
      break;
    }
    std::string n = pick();
    if (int to = step_down(cand, wbits_of(c, n))) set_wbits(c, n, to);
  }
  for (int tries = 0; tries < 20 * static_cast<int>(movable.size()); ++tries) {
    std::string n = pick();
    int to = step_up(cand, wbits_of(c, n));
    if (!to) continue;
    BitConfig t = c;
    set_wbits(t, n, to);
    if (solver.fits(t)) c = t;
  }
  return c;
}

std::vector<BitConfig> feasible_assignments(const Graph& g, const CostEvaluator& ce,
                                            const Budgets& b, const std::vector<int>& candidates,
                                            int abits, int64_t limit,
                                            const std::map<std::string, int>& pinned) {
  const std::vector<int> cand = candidate_widths(candidates, ce.target());
  std::vector<std::string> names;
  for (const std::string& n : layer_names(g))
    if (!pinned.count(n)) names.push_back(n);
  double combos = std::pow(static_cast<double>(cand.size()), static_cast<double>(names.size()));
  if (combos > static_cast<double>(limit))
    fail(
        "exhaustive search: {} layers x {} candidates = {:.3g} assignments (limit {}): use a "
        "smaller network or fewer candidates",
        names.size(), cand.size(), combos, limit);
  std::vector<BitConfig> out;
  std::vector<size_t> idx(names.size(), 0);
  while (true) {
    std::map<std::string, int> w(pinned.begin(), pinned.end());
    for (size_t i = 0; i < names.size(); ++i) w[names[i]] = cand[idx[i]];
    BitConfig c = with_bits(g, abits, w);
    if (fits(ce, b, c)) out.push_back(c);
    size_t k = 0;
    while (k < idx.size() && ++idx[k] == cand.size()) idx[k++] = 0;
    if (k == idx.size()) break;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Weight statistics

double weight_kl(const Node& layer, int bits, int bins) {
  const Tensor& w = layer.params.at("weight");
  Tensor dq = dequantize(quantize_weights_symmetric(w, bits, true));
  float m = 0;
  for (float v : w.data) m = std::max(m, std::abs(v));
  if (m == 0) return 0;
  std::vector<double> p(bins, 1.0), q(bins, 1.0);  // Laplace smoothing
  auto bin = [&](float v) {
    int k = static_cast<int>((v + m) / (2 * m) * bins);
    return std::clamp(k, 0, bins - 1);
  };
  for (int64_t i = 0; i < w.size(); ++i) {
    p[bin(w.data[i])] += 1;
    q[bin(dq.data[i])] += 1;
  }
  double sp = std::accumulate(p.begin(), p.end(), 0.0),
         sq_ = std::accumulate(q.begin(), q.end(), 0.0);
  double kl = 0;
  for (int k = 0; k < bins; ++k) kl += p[k] / sp * std::log((p[k] / sp) / (q[k] / sq_));
  return kl;
}

std::vector<float> mse_weight_scales(const Node& layer, int bits, bool per_channel) {
  const Tensor& w = layer.params.at("weight");
  int64_t rows = per_channel ? w.shape[0] : 1, cols = w.size() / rows;
  std::vector<float> scales(rows, 1.0f);
  double qmax = bits >= 2 ? std::ldexp(1.0, bits - 1) - 1 : 1;
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = w.data.data() + r * cols;
    double m = 0, mean_abs = 0;
    for (int64_t k = 0; k < cols; ++k)
      m = std::max(m, double(std::abs(x[k]))), mean_abs += std::abs(x[k]);
    if (m == 0) continue;
    if (bits == 1) {  // binary: the scale that minimises the MSE of sign(w) * s is mean |w|
      scales[r] = static_cast<float>(mean_abs / cols);
      continue;
    }
    double best = std::numeric_limits<double>::infinity(), best_s = m / qmax;
    for (int step = 0; step <= 40; ++step) {
      double s = (1.0 - 0.02 * step) * m / qmax;
      double e = 0;
      for (int64_t k = 0; k < cols; ++k) {
        double q = std::clamp(std::nearbyint(x[k] / s), -qmax, qmax) * s;
        e += (q - x[k]) * (q - x[k]);
      }
      if (e < best) best = e, best_s = s;
    }
    scales[r] = static_cast<float>(best_s);
  }
  return scales;
}

}  // namespace sq
