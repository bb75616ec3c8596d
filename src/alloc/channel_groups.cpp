// Channel groups for channel-wise allocation (include/sigmaquant/dnas.h, issue 13): the engine's
// micro-kernels compute tiles of 16 output channels, so a tile holding one wide channel runs at
// that channel's width and a pruned channel saves time only when a whole tile goes. Snapping the
// per-width channel counts of every layer to multiples of a group size makes the widths the
// allocator chose the widths the engine runs.
#include <algorithm>
#include <numeric>

#include "sigmaquant/dnas.h"

namespace sq {
namespace {

// The preference of channel k of layer l for a width above its current index p: the gain of its
// step up (at the top width, the loss of its step down); equal scores (none given) rank by index.
double rank_key(const std::vector<std::vector<std::vector<double>>>& wscore, size_t l, int64_t k,
                int p, int np) {
  if (wscore.empty()) return 0;
  const std::vector<double>& sc = wscore[l][static_cast<size_t>(k)];
  return p + 1 < np ? sc[p + 1] - sc[p] : sc[p] - sc[p - 1];
}

// The nearest of {0, G, 2G, ..., floor(C/G) G, C} to n, ties to the smaller.
int64_t snap_count(int64_t n, int64_t g, int64_t channels) {
  const int64_t full = (channels / g) * g;
  if (n >= full) return (n - full) * 2 <= channels - full ? full : channels;
  const int64_t lo = (n / g) * g;
  return (n - lo) * 2 <= g ? lo : lo + g;
}

}  // namespace

void snap_channel_groups(const DnasSpace& s,
                         const std::vector<std::vector<std::vector<double>>>& wscore, int group,
                         DnasChoice& c) {
  if (group <= 1) return;
  for (size_t l = 0; l < s.layers.size(); ++l) {
    const DnasSpace::Layer& L = s.layers[l];
    const int np = static_cast<int>(L.wbits.size());
    if (!L.channelwise || np < 2) continue;
    std::vector<int>& w = c.w[l];
    // Channels ranked widest first, then by preference for a wider width.
    std::vector<int64_t> order(static_cast<size_t>(L.channels));
    std::iota(order.begin(), order.end(), 0);
    std::vector<double> key(order.size());
    for (int64_t k = 0; k < L.channels; ++k) key[k] = rank_key(wscore, l, k, w[k], np);
    std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) {
      if (w[x] != w[y]) return w[x] > w[y];
      return key[x] > key[y];
    });
    // at_least[p]: channels at index >= p, snapped (nearest rounding is monotone, so these stay
    // non-increasing in p and define counts).
    std::vector<int64_t> at_least(static_cast<size_t>(np) + 1, 0);
    for (int p = 0; p < np; ++p) {
      int64_t n = 0;
      for (int x : w) n += x >= p;
      at_least[p] = p == 0 ? L.channels : snap_count(n, group, L.channels);
    }
    int64_t i = 0;
    for (int p = np - 1; p >= 0; --p)
      for (; i < at_least[p]; ++i) w[order[static_cast<size_t>(i)]] = p;
  }
}

bool is_group_snapped(const DnasSpace& s, const DnasChoice& c, int group) {
  if (group <= 1) return true;
  for (size_t l = 0; l < s.layers.size(); ++l) {
    const DnasSpace::Layer& L = s.layers[l];
    if (!L.channelwise) continue;
    std::vector<int64_t> count(L.wbits.size(), 0);
    for (int x : c.w[l]) ++count[static_cast<size_t>(x)];
    const int64_t rem = L.channels % group;
    int off = 0;  // widths whose count is not a multiple of the group
    for (int64_t n : count)
      if (n % group != 0) {
        if (n % group != rem) return false;
        ++off;
      }
    if (off > 1) return false;
  }
  return true;
}

bool fit_channel_groups(const DnasSpace& s, const Graph& g, const CostEvaluator& ce,
                        const Budgets& b, const DnasCostTable& t,
                        const std::vector<std::vector<std::vector<double>>>& wscore,
                        const std::vector<std::vector<double>>& ascore, int group, DnasChoice& c) {
  snap_channel_groups(s, wscore, group, c);
  return repair_choice(s, g, ce, b, t, wscore, ascore, c, group);
}

}  // namespace sq
