// SigmaQuant Phase 1 per output channel (include/sigmaquant/dnas.h): sigma per channel, exact
// 1-D k-means, clusters to widths in sigma order, budget fitting at channel level with the
// channel-wise cost table of the differentiable search.
#include <algorithm>
#include <cmath>

#include "sigmaquant/alloc.h"
#include "sigmaquant/dnas.h"
#include "sigmaquant/error.h"

namespace sq {

ChannelPhase1Result sigmaquant_channel_phase1(const Graph& g, const CostEvaluator& ce,
                                              const Budgets& budgets,
                                              const std::vector<int>& candidates, int abits,
                                              const std::map<std::string, int>& pinned, int group) {
  // 0 among the candidates: channels may be pruned (the lowest-sigma cluster when k-means finds
  // as many clusters as widths, else by the fitting's damage order, n·σ² for a pruned channel).
  std::vector<int> nonzero;
  for (int b : candidates)
    if (b != 0) nonzero.push_back(b);
  std::vector<int> cands = candidate_widths(nonzero, ce.target());
  if (nonzero.size() < candidates.size()) cands.insert(cands.begin(), 0);
  DnasSpace s = make_dnas_space(g, cands, {abits}, pinned, true);
  DnasCostTable t = make_dnas_cost(s, g, ce, budgets);

  // sigma and weight count per channel; damage n sigma^2 4^-b as the (negated) preference score
  std::vector<std::vector<double>> sigma(s.layers.size());
  std::vector<std::vector<std::vector<double>>> score(s.layers.size());
  std::vector<double> x;
  for (size_t l = 0; l < s.layers.size(); ++l) {
    const DnasSpace::Layer& L = s.layers[l];
    const Tensor& w = g.nodes[L.node].params.at("weight");
    const int64_t per = static_cast<int64_t>(w.size()) / L.channels;
    for (int64_t c = 0; c < L.channels; ++c) {
      double m = 0, m2 = 0;
      for (int64_t i = 0; i < per; ++i) {
        const double v = w.data[static_cast<size_t>(c * per + i)];
        m += v;
        m2 += v * v;
      }
      m /= static_cast<double>(per);
      const double sd = std::sqrt(std::max(0.0, m2 / static_cast<double>(per) - m * m));
      sigma[l].push_back(sd);
      std::vector<double> sc;
      for (int b : L.wbits)
        sc.push_back(-static_cast<double>(per) * sd * sd * std::pow(4.0, -b));
      score[l].push_back(sc);
      if (L.wbits.size() > 1) x.push_back(std::log(std::max(sd, 1e-12)));
    }
  }
  ChannelPhase1Result res;
  res.channels = static_cast<int64_t>(x.size());
  DnasChoice c = widest_choice(s);
  if (!x.empty()) {
    const int max_k = static_cast<int>(cands.size());
    KMeans1D km = kmeans_1d_adaptive(x, max_k);
    res.k = km.k;
    for (double v : km.centers) res.centers.push_back(std::exp(v));
    // cluster j (ascending sigma) -> the (k - j)-th highest candidate
    size_t i = 0;
    for (size_t l = 0; l < s.layers.size(); ++l) {
      const DnasSpace::Layer& L = s.layers[l];
      if (L.wbits.size() <= 1) continue;
      const int top = static_cast<int>(L.wbits.size()) - 1;
      for (int64_t ch = 0; ch < L.channels; ++ch)
        c.w[l][ch] = std::max(0, top - (km.k - 1 - km.labels[i++]));
    }
    for (int j = 0; j < km.k; ++j)
      res.cluster_bits.push_back(cands[std::max<int>(0, static_cast<int>(cands.size()) - km.k + j)]);
  }
  // Snapped to channel groups (a no-op for group 1) in the damage order, then lowered to fit.
  if (!fit_channel_groups(s, g, ce, budgets, t, score, {}, group, c))
    fail("sigmaquant-channel: no assignment over the widths {{{}}} fits the budgets",
         fmt::join(cands, ","));

  // Raises while every budget holds: most damage removed per unit of added (table) cost first.
  // A raise is one channel, or with channel groups the `group` channels of one width of a layer
  // with the most damage removed (every channel of that width when fewer: the remainder), so the
  // choice stays snapped. Within a pass a raise moves only channels at its own width, so the
  // raises listed at the start of the pass stay valid while earlier ones are applied.
  const bool grouped = group > 1;
  for (bool changed = true; changed;) {
    changed = false;
    struct Raise {
      double gain;
      size_t l;
      std::vector<int64_t> ch;
    };
    std::vector<Raise> rs;
    for (size_t l = 0; l < s.layers.size(); ++l) {
      const DnasSpace::Layer& L = s.layers[l];
      const DnasCostTable::Layer& T = t.layers[l];
      const int np = static_cast<int>(L.wbits.size());
      // one activation width: the table's row 0
      auto dcost = [&](int p) {
        return std::max(
            T.per_channel[static_cast<size_t>(p) + 1] - T.per_channel[static_cast<size_t>(p)],
            1e-15);
      };
      auto dgain = [&](int64_t ch, int p) { return score[l][ch][p + 1] - score[l][ch][p]; };
      // A pinned layer has one width and one choice (not one per channel): nothing to raise.
      if (!L.channelwise) continue;
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
                     [](const Raise& a, const Raise& b) { return a.gain > b.gain; });
    for (const Raise& r : rs) {
      for (int64_t ch : r.ch) ++c.w[r.l][ch];
      if (fits_budgets(ce.evaluate(dnas_bits(s, g, c)), budgets)) {
        changed = true;
      } else {
        for (int64_t ch : r.ch) --c.w[r.l][ch];
      }
    }
  }
  res.bits = dnas_bits(s, g, c);
  return res;
}

}  // namespace sq
