// SigmaQuant Phase 1 per output channel (include/sigmaquant/dnas.h): sigma per channel, exact
// 1-D k-means, clusters to widths in sigma order, budget fitting at channel level with the
// channel-wise cost table of the differentiable search.
#include <algorithm>
#include <cmath>

#include "sigmaquant/alloc.h"
#include "sigmaquant/dnas.h"
#include "sigmaquant/error.h"
#include "sigmaquant/infeasible.h"

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

  // sigma per channel; damage n sigma^2 4^-b as the (negated) preference score
  const std::vector<std::vector<double>> sigma = channel_sigmas(s, g);
  const std::vector<std::vector<std::vector<double>>> score = channel_damage_scores(s, g);
  std::vector<double> x;
  for (size_t l = 0; l < s.layers.size(); ++l)
    if (s.layers[l].wbits.size() > 1)
      for (double sd : sigma[l]) x.push_back(std::log(std::max(sd, 1e-12)));
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
  if (!fit_channel_groups(s, g, ce, budgets, t, score, {}, group, c)) {
    // Why not: what the narrowest assignment (every channel at its lowest width) still breaks.
    const std::string broken = narrowest_choice_breaks(s, g, ce, budgets);
    fail_infeasible(
        "sigmaquant-channel: no assignment over the widths {{{}}} (activations at {} bits) fits "
        "target '{}'{}{}",
        fmt::join(cands, ","), abits, ce.target().name,
        broken.empty() ? "" : " even with every channel at its narrowest width: ", broken);
  }

  // Raises while every budget holds: most damage removed per unit of added (table) cost first.
  fill_choice(s, g, ce, budgets, t, score, c, group);
  res.bits = dnas_bits(s, g, c);
  return res;
}

}  // namespace sq
