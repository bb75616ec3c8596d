// The differentiable search's space, its expected-cost table and the repair step (torch-free).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>
#include <tuple>

#include "sigmaquant/dnas.h"
#include "sigmaquant/error.h"
#include "sigmaquant/qmodel.h"

namespace sq {
namespace {

std::vector<int> sorted_unique(std::vector<int> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

// Every layer at its choice's widths (channel-wise layers as channel_wbits).
BitConfig bits_of(const DnasSpace& s, const Graph& g, const DnasChoice& c) {
  BitConfig b = BitConfig::uniform(g, 8, 8);
  for (size_t l = 0; l < s.layers.size(); ++l) {
    const DnasSpace::Layer& L = s.layers[l];
    LayerBits& lb = b.layers[L.name];
    lb.abits = s.points[L.point].abits[c.a[L.point]];
    lb.granularity = Granularity::PerChannel;
    const std::vector<int>& ch = c.w[l];
    bool same = std::all_of(ch.begin(), ch.end(), [&](int x) { return x == ch[0]; });
    if (!L.channelwise || (same && L.wbits[ch[0]] > 0)) {
      lb.wbits = L.wbits[ch[0]];
      lb.channel_wbits.clear();
    } else {
      lb.channel_wbits.resize(static_cast<size_t>(L.channels));
      int mx = 0;
      for (int64_t k = 0; k < L.channels; ++k) {
        lb.channel_wbits[k] = L.wbits[ch[k]];
        mx = std::max(mx, lb.channel_wbits[k]);
      }
      lb.wbits = mx;  // the largest channel width, as a .sqg states it (0: every channel pruned)
    }
  }
  return b;
}

// The budgets that normalise the metrics: the real ones, or (none given) the reference value of
// energy, else weight memory.
Budgets norm_budgets(const Budgets& b, const CostReport& ref) {
  if (!b.empty()) return b;
  Budgets n;
  if (ref.has_energy && ref.energy_j > 0)
    n.energy_j = ref.energy_j;
  else
    n.weight_bytes = static_cast<double>(std::max<int64_t>(1, ref.weight_bytes));
  return n;
}

}  // namespace

DnasSpace make_dnas_space(const Graph& g, const std::vector<int>& wbits_in,
                          const std::vector<int>& abits_in,
                          const std::map<std::string, int>& pinned, bool channelwise) {
  const std::vector<int> wbits = sorted_unique(wbits_in);
  const std::vector<int> abits = sorted_unique(abits_in);
  if (wbits.empty() || wbits.back() < kMinWeightBits)
    fail("dnas: candidate weight widths {{{}}} need at least one non-zero width",
         fmt::join(wbits_in, ","));
  for (int b : wbits)
    if (b < 0 || b > kMaxWeightBits)
      fail("dnas: candidate weight width {} is out of range (expected 0..{})", b, kMaxWeightBits);
  if (abits.empty()) fail("dnas: no candidate activation widths (expected e.g. 2,4,8)");
  for (int a : abits)
    if (a < kMinActBits || a > kMaxActBits)
      fail("dnas: candidate activation width {} is out of range (expected {}..{})", a, kMinActBits,
           kMaxActBits);
  for (const auto& [name, b] : pinned) {
    int idx = -1;
    for (size_t i = 0; i < g.nodes.size(); ++i)
      if (g.nodes[i].name == name) idx = static_cast<int>(i);
    if (idx < 0 || !is_weight_layer(g.nodes[idx]))
      fail("dnas: pinned layer '{}' is not a weight layer of '{}'", name, g.name);
  }

  DnasSpace s;
  const std::vector<int> wl = g.weight_layers();
  std::map<int, int> point_of;  // node -> index in s.points
  for (size_t k = 0; k < wl.size(); ++k) {
    const Node& n = g.nodes[wl[k]];
    DnasSpace::Layer L;
    L.name = n.name;
    L.node = wl[k];
    L.channels = n.out_channels;
    L.channelwise = channelwise;
    auto pin = pinned.find(n.name);
    if (pin != pinned.end()) {
      L.wbits = {pin->second};
      L.channelwise = false;
    } else {
      for (int b : wbits)
        if (b > 0 || (channelwise && k + 1 < wl.size())) L.wbits.push_back(b);
    }
    const int in = n.inputs[0];
    auto it = point_of.find(in);
    if (it == point_of.end()) {
      DnasSpace::Point P;
      P.node = in;
      P.name = g.nodes[in].name;
      P.abits = abits;
      it = point_of.emplace(in, static_cast<int>(s.points.size())).first;
      s.points.push_back(P);
    }
    L.point = it->second;
    s.points[L.point].layers.push_back(static_cast<int>(s.layers.size()));
    if (pin != pinned.end()) s.points[L.point].abits = {pin->second};
    s.layers.push_back(L);
  }
  return s;
}

DnasChoice widest_choice(const DnasSpace& s) {
  DnasChoice c;
  for (const DnasSpace::Layer& L : s.layers)
    c.w.emplace_back(static_cast<size_t>(L.choices()), static_cast<int>(L.wbits.size()) - 1);
  for (const DnasSpace::Point& P : s.points) c.a.push_back(static_cast<int>(P.abits.size()) - 1);
  return c;
}

BitConfig dnas_bits(const DnasSpace& s, const Graph& g, const DnasChoice& c) {
  BitConfig b = bits_of(s, g, c);
  b.model = g.name;
  return b;
}

DnasCostTable make_dnas_cost(const DnasSpace& s, const Graph& g, const CostEvaluator& ce,
                             const Budgets& budgets) {
  DnasCostTable t;
  const DnasChoice ref_choice = widest_choice(s);
  const CostReport ref = ce.evaluate(bits_of(s, g, ref_choice));
  const Budgets nb = norm_budgets(budgets, ref);
  for (const BudgetCheck& c : check_budgets(ref, nb)) {
    if (!(c.budget > 0))
      fail("dnas: budget {} must be positive to weigh the cost (got {})", c.key, c.budget);
    t.metrics.push_back(c.key);
    t.divisor.push_back(c.budget);
  }
  const size_t nm = t.metrics.size();
  t.metric_reference = metric_costs(t, ref);
  t.reference = std::accumulate(t.metric_reference.begin(), t.metric_reference.end(), 0.0);
  const BitConfig ref_bits = bits_of(s, g, ref_choice);
  // Probes: every reader of a point at activation width a (so the buffer's own width, which is
  // the widest among its readers, moves with them), and optionally one layer at weight width p
  // (0: pruned; -1: its widest).
  auto probe = [&](const DnasSpace::Point& P, size_t a, int layer, int wbits) {
    BitConfig b = ref_bits;
    for (int r : P.layers) b.layers[s.layers[r].name].abits = P.abits[a];
    if (layer >= 0 && wbits >= 0) {
      LayerBits& lb = b.layers[s.layers[layer].name];
      lb.granularity = Granularity::PerChannel;
      if (wbits > 0) {
        lb.wbits = wbits;
        lb.channel_wbits.clear();
      } else {
        lb.channel_wbits.assign(static_cast<size_t>(s.layers[layer].channels), 0);
        lb.wbits = 0;
      }
    }
    return metric_costs(t, ce.evaluate(b));
  };
  t.layers.resize(s.layers.size());
  for (const DnasSpace::Point& P : s.points) {
    for (size_t a = 0; a < P.abits.size(); ++a) {
      const size_t na = P.abits.size();
      const std::vector<double> at_a = probe(P, a, -1, -1);  // every reader at a, widest weights
      for (size_t r = 0; r < P.layers.size(); ++r) {
        const int l = P.layers[r];
        const DnasSpace::Layer& L = s.layers[l];
        DnasCostTable::Layer& T = t.layers[l];
        const size_t np = L.wbits.size();
        T.fixed.resize(na);
        T.per_channel.resize(na * np);
        T.metric_fixed.resize(nm * na);
        T.metric_per_channel.resize(nm * na * np);
        const std::vector<double> pruned = probe(P, a, l, 0);
        std::vector<std::vector<double>> at_p(np);
        for (size_t p = 0; p < np; ++p)
          if (L.wbits[p] > 0) at_p[p] = probe(P, a, l, L.wbits[p]);
        // The point's own term (its buffer and its readers' activation-dependent costs) goes to
        // its first reader; each reader adds the step from its widest weights to none. A
        // layer-wise layer has no pruned state; fixed + channels x per_channel is what counts.
        for (size_t k = 0; k < nm; ++k) {
          T.metric_fixed[k * na + a] =
              (r == 0 ? at_a[k] - t.metric_reference[k] : 0.0) + (pruned[k] - at_a[k]);
          for (size_t p = 0; p < np; ++p)
            T.metric_per_channel[(k * na + a) * np + p] =
                L.wbits[p] == 0 ? 0.0 : (at_p[p][k] - pruned[k]) / static_cast<double>(L.channels);
        }
        // The summed table: the metrics' terms added up.
        T.fixed[a] = 0;
        for (size_t k = 0; k < nm; ++k) T.fixed[a] += T.metric_fixed[k * na + a];
        for (size_t p = 0; p < np; ++p) {
          T.per_channel[a * np + p] = 0;
          for (size_t k = 0; k < nm; ++k)
            T.per_channel[a * np + p] += T.metric_per_channel[(k * na + a) * np + p];
        }
      }
    }
  }
  return t;
}

std::vector<double> metric_costs(const DnasCostTable& t, const CostReport& r) {
  Budgets b;
  b.weight_bytes = b.activation_bytes = b.latency_s = b.energy_j = b.bops =
      std::numeric_limits<double>::max();
  if (!r.has_timing) b.latency_s.reset();
  if (!r.has_energy) b.energy_j.reset();
  std::vector<double> v(t.metrics.size(), 0.0);
  for (const BudgetCheck& c : check_budgets(r, b))
    for (size_t k = 0; k < t.metrics.size(); ++k)
      if (c.key == t.metrics[k]) v[k] = c.value / t.divisor[k];
  return v;
}

double measured_cost(const DnasCostTable& t, const CostReport& r) {
  const std::vector<double> v = metric_costs(t, r);
  return std::accumulate(v.begin(), v.end(), 0.0);
}

const char* dnas_penalty_name(DnasPenalty p) { return p == DnasPenalty::Cost ? "cost" : "excess"; }

DnasPenalty parse_dnas_penalty(const std::string& s, const std::string& where) {
  if (s == "cost") return DnasPenalty::Cost;
  if (s == "excess") return DnasPenalty::Excess;
  fail("{} '{}': expected cost or excess", where, s);
}

namespace {

// Layer l's table cost with its point at activation index a and its weights as in c.
double layer_cost(const DnasCostTable& t, const DnasSpace& s, const DnasChoice& c, size_t l,
                  size_t a) {
  const DnasSpace::Layer& L = s.layers[l];
  const DnasCostTable::Layer& T = t.layers[l];
  const size_t np = L.wbits.size();
  const double reps = L.channelwise ? 1.0 : static_cast<double>(L.channels);
  double sum = T.fixed[a];
  for (int p : c.w[l]) sum += reps * T.per_channel[a * np + static_cast<size_t>(p)];
  return sum;
}

}  // namespace

double table_cost(const DnasCostTable& t, const DnasSpace& s, const DnasChoice& c) {
  double sum = t.reference;
  for (size_t l = 0; l < s.layers.size(); ++l)
    sum += layer_cost(t, s, c, l, static_cast<size_t>(c.a[s.layers[l].point]));
  return sum;
}

bool repair_choice(const DnasSpace& s, const Graph& g, const CostEvaluator& ce, const Budgets& b,
                   const DnasCostTable& t,
                   const std::vector<std::vector<std::vector<double>>>& wscore,
                   const std::vector<std::vector<double>>& ascore, DnasChoice& c, int group) {
  auto fits_now = [&] { return fits_budgets(ce.evaluate(bits_of(s, g, c)), b); };
  if (fits_now()) return true;
  // Each round applies the best-scored twentieth of the possible one-step-down moves (at least
  // one), then asks the evaluator; the table and the scores decide the order.
  for (;;) {
    struct Move {
      double score;
      int kind, i, j;  // kind 0: weight (layer i, channel j); 1: activation (point i);
                       // 2: a group of channels of layer i (gmoves[j])
      int to;          // the width index moved to
    };
    // A step down goes to the next narrower width that saves cost: widths the target stores or
    // runs alike (3 and 4 bits on a {2,4,8} target) cost the same, and a move between them would
    // save nothing, so it skips them rather than stopping there.
    auto down = [](const std::vector<double>& cost, size_t row, int p) {
      int q = p - 1;
      while (q > 0 &&
             !(cost[row + static_cast<size_t>(p)] - cost[row + static_cast<size_t>(q)] > 0))
        --q;
      return q;
    };
    // The cost saved by each one-step-down move, from the table's terms of that move alone.
    std::vector<Move> moves;
    std::vector<std::vector<int64_t>> gmoves;
    for (size_t l = 0; l < s.layers.size(); ++l) {
      const DnasSpace::Layer& L = s.layers[l];
      const std::vector<double>& per = t.layers[l].per_channel;
      const size_t row = static_cast<size_t>(c.a[L.point]) * L.wbits.size();
      const double reps = L.channelwise ? 1.0 : static_cast<double>(L.channels);
      if (group > 1 && L.channelwise) {
        // Group moves: per width p > 0, its `group` channels of least lost preference (all of
        // them when fewer: the remainder), so every width's count stays a multiple of the group
        // but the remainder's.
        auto loss = [&](int64_t k, int p) {
          return wscore.empty() ? 1.0 : std::max(1e-9, wscore[l][k][p] - wscore[l][k][p - 1]);
        };
        for (int p = 1; p < static_cast<int>(L.wbits.size()); ++p) {
          std::vector<int64_t> at;
          for (int64_t k = 0; k < L.channels; ++k)
            if (c.w[l][k] == p) at.push_back(k);
          if (at.empty()) continue;
          const int q = down(per, row, p);
          const double saved = per[row + p] - per[row + q];
          if (!(saved > 0)) continue;
          std::stable_sort(at.begin(), at.end(),
                           [&](int64_t x, int64_t y) { return loss(x, p) < loss(y, p); });
          at.resize(std::min<size_t>(at.size(), static_cast<size_t>(group)));
          double lost = 0;
          for (int64_t k : at) lost += loss(k, p);
          moves.push_back({saved * static_cast<double>(at.size()) / std::max(lost, 1e-9), 2,
                           static_cast<int>(l), static_cast<int>(gmoves.size()), q});
          gmoves.push_back(std::move(at));
        }
        continue;
      }
      for (int64_t k = 0; k < L.choices(); ++k) {
        int p = c.w[l][k];
        if (p == 0) continue;
        const int q = down(per, row, p);
        double saved = reps * (per[row + p] - per[row + q]);
        if (!(saved > 0)) continue;
        double lost = wscore.empty() ? 1.0 : std::max(1e-9, wscore[l][k][p] - wscore[l][k][q]);
        moves.push_back(
            {saved / std::max(lost, 1e-9), 0, static_cast<int>(l), static_cast<int>(k), q});
      }
    }
    for (size_t q = 0; q < s.points.size(); ++q) {
      int a = c.a[q];
      if (a == 0) continue;
      auto saved_to = [&](int to) {
        double saved = 0;
        for (int l : s.points[q].layers)
          saved += layer_cost(t, s, c, static_cast<size_t>(l), static_cast<size_t>(a)) -
                   layer_cost(t, s, c, static_cast<size_t>(l), static_cast<size_t>(to));
        return saved;
      };
      int to = a - 1;
      while (to > 0 && !(saved_to(to) > 0)) --to;
      const double saved = saved_to(to);
      if (!(saved > 0)) continue;
      double lost = ascore.empty() ? 1.0 : std::max(1e-9, ascore[q][a] - ascore[q][to]);
      moves.push_back({saved / lost, 1, static_cast<int>(q), 0, to});
    }
    if (moves.empty()) return false;
    std::sort(moves.begin(), moves.end(), [](const Move& x, const Move& y) {
      if (x.score != y.score) return x.score > y.score;
      if (x.kind != y.kind) return x.kind < y.kind;
      return std::tie(x.i, x.j) < std::tie(y.i, y.j);
    });
    const size_t take = std::max<size_t>(1, moves.size() / 20);
    for (size_t m = 0; m < take; ++m) {
      const Move& mv = moves[m];
      if (mv.kind == 0)
        c.w[mv.i][mv.j] = mv.to;
      else if (mv.kind == 2)
        for (int64_t k : gmoves[static_cast<size_t>(mv.j)]) c.w[mv.i][k] = mv.to;
      else
        c.a[mv.i] = mv.to;
    }
    if (fits_now()) return true;
  }
}

std::string narrowest_choice_breaks(const DnasSpace& s, const Graph& g, const CostEvaluator& ce,
                                    const Budgets& b) {
  DnasChoice low = widest_choice(s);
  for (std::vector<int>& w : low.w) std::fill(w.begin(), w.end(), 0);
  for (int& a : low.a) a = 0;
  std::string broken;
  for (const BudgetCheck& x : check_budgets(ce.evaluate(bits_of(s, g, low)), b))
    if (!x.fits)
      broken += fmt::format("{}the {} budget ({}) needs at least {}", broken.empty() ? "" : "; ",
                            x.metric, x.key, budget_check_text(x));
  return broken;
}

size_t choose_dnas_trial(const std::vector<DnasTrial>& trials, int64_t val_images) {
  if (trials.empty()) fail("dnas: no trial to choose from");
  double best = 0;
  for (const DnasTrial& t : trials) best = std::max(best, t.val_accuracy);
  const double n = static_cast<double>(std::max<int64_t>(val_images, 1));
  const double margin = 2.0 * std::sqrt(best * (1.0 - best) / n);
  size_t pick = trials.size();
  for (size_t k = 0; k < trials.size(); ++k) {
    const DnasTrial& t = trials[k];
    if (t.val_accuracy < best - margin) continue;
    if (pick == trials.size() || t.cost > trials[pick].cost ||
        (t.cost == trials[pick].cost && t.val_accuracy > trials[pick].val_accuracy))
      pick = k;
  }
  return pick;
}

std::vector<std::vector<double>> channel_sigmas(const DnasSpace& s, const Graph& g) {
  std::vector<std::vector<double>> sigma(s.layers.size());
  for (size_t l = 0; l < s.layers.size(); ++l) {
    const DnasSpace::Layer& L = s.layers[l];
    const Tensor& w = g.nodes[L.node].params.at("weight");
    const int64_t per = static_cast<int64_t>(w.size()) / L.channels;
    for (int64_t ch = 0; ch < L.channels; ++ch) {
      double m = 0, m2 = 0;
      for (int64_t i = 0; i < per; ++i) {
        const double v = w.data[static_cast<size_t>(ch * per + i)];
        m += v;
        m2 += v * v;
      }
      m /= static_cast<double>(per);
      sigma[l].push_back(std::sqrt(std::max(0.0, m2 / static_cast<double>(per) - m * m)));
    }
  }
  return sigma;
}

std::vector<std::vector<std::vector<double>>> channel_damage_scores(const DnasSpace& s,
                                                                    const Graph& g) {
  const std::vector<std::vector<double>> sigma = channel_sigmas(s, g);
  std::vector<std::vector<std::vector<double>>> score(s.layers.size());
  for (size_t l = 0; l < s.layers.size(); ++l) {
    const DnasSpace::Layer& L = s.layers[l];
    const double per = static_cast<double>(g.nodes[L.node].params.at("weight").size()) / L.channels;
    for (double sd : sigma[l]) {
      std::vector<double> sc;
      for (int b : L.wbits) sc.push_back(-per * sd * sd * std::pow(4.0, -b));
      score[l].push_back(std::move(sc));
    }
  }
  return score;
}

void fill_choice(const DnasSpace& s, const Graph& g, const CostEvaluator& ce, const Budgets& b,
                 const DnasCostTable& t,
                 const std::vector<std::vector<std::vector<double>>>& wscore, DnasChoice& c,
                 int group, bool activations) {
  // Within a pass a raise moves only channels at its own width (or its own layer), so the raises
  // listed at the start of the pass stay valid while earlier ones are applied.
  const bool grouped = group > 1;
  for (bool changed = true; changed;) {
    changed = false;
    struct Raise {
      double gain;
      size_t l;
      std::vector<int64_t> ch;  // the choices raised (a layer-wise layer: its one choice, 0)
    };
    std::vector<Raise> rs;
    for (size_t l = 0; l < s.layers.size(); ++l) {
      const DnasSpace::Layer& L = s.layers[l];
      const int np = static_cast<int>(L.wbits.size());
      const std::vector<double>& per = t.layers[l].per_channel;
      const size_t row = static_cast<size_t>(c.a[L.point]) * L.wbits.size();
      auto dcost = [&](int p) {
        return std::max(per[row + static_cast<size_t>(p) + 1] - per[row + static_cast<size_t>(p)],
                        1e-15);
      };
      auto dgain = [&](int64_t ch, int p) { return wscore[l][ch][p + 1] - wscore[l][ch][p]; };
      if (!L.channelwise) {  // one choice for the layer (a pinned layer has one width)
        const int p = c.w[l][0];
        if (p + 1 >= np) continue;
        double gain = 0;
        for (int64_t ch = 0; ch < L.channels; ++ch) gain += dgain(ch, p);
        rs.push_back({gain / (static_cast<double>(L.channels) * dcost(p)), l, {0}});
        continue;
      }
      if (!grouped) {
        for (int64_t ch = 0; ch < L.channels; ++ch) {
          const int p = c.w[l][ch];
          if (p + 1 < np) rs.push_back({dgain(ch, p) / dcost(p), l, {ch}});
        }
        continue;
      }
      for (int p = 0; p + 1 < np; ++p) {
        std::vector<int64_t> at;
        for (int64_t ch = 0; ch < L.channels; ++ch)
          if (c.w[l][ch] == p) at.push_back(ch);
        if (at.empty()) continue;
        std::stable_sort(at.begin(), at.end(),
                         [&](int64_t x, int64_t y) { return dgain(x, p) > dgain(y, p); });
        at.resize(std::min<size_t>(at.size(), static_cast<size_t>(group)));
        double gain = 0;
        for (int64_t ch : at) gain += dgain(ch, p);
        rs.push_back({gain / (static_cast<double>(at.size()) * dcost(p)), l, std::move(at)});
      }
    }
    std::stable_sort(rs.begin(), rs.end(),
                     [](const Raise& x, const Raise& y) { return x.gain > y.gain; });
    for (const Raise& r : rs) {
      for (int64_t ch : r.ch) ++c.w[r.l][ch];
      if (fits_budgets(ce.evaluate(bits_of(s, g, c)), b)) {
        changed = true;
      } else {
        for (int64_t ch : r.ch) --c.w[r.l][ch];
      }
    }
  }
  if (!activations) return;
  // Then the activation widths, with what the weights left (raising one never frees a budget, so
  // no weight raise fits afterwards either): the quantization noise removed, n·(4^-a - 4^-a'),
  // n the tensor's elements at unit variance, per unit of the readers' added table cost.
  for (bool changed = true; changed;) {
    changed = false;
    std::vector<std::pair<double, size_t>> rs;
    for (size_t q = 0; q < s.points.size(); ++q) {
      const DnasSpace::Point& P = s.points[q];
      const int a = c.a[q];
      if (a + 1 >= static_cast<int>(P.abits.size())) continue;
      double added = 0;
      for (int l : P.layers)
        added += layer_cost(t, s, c, static_cast<size_t>(l), static_cast<size_t>(a + 1)) -
                 layer_cost(t, s, c, static_cast<size_t>(l), static_cast<size_t>(a));
      const double n = static_cast<double>(
          numel(P.node >= 0 ? g.nodes[static_cast<size_t>(P.node)].out_shape : g.input_shape));
      const double removed = n * (std::pow(4.0, -P.abits[a]) - std::pow(4.0, -P.abits[a + 1]));
      rs.push_back({removed / std::max(added, 1e-15), q});
    }
    std::stable_sort(rs.begin(), rs.end(),
                     [](const auto& x, const auto& y) { return x.first > y.first; });
    for (const auto& [gain, q] : rs) {
      ++c.a[q];
      if (fits_budgets(ce.evaluate(bits_of(s, g, c)), b))
        changed = true;
      else
        --c.a[q];
    }
  }
}

}  // namespace sq
