// Channel groups for channel-wise allocation (snap_channel_groups, fit_channel_groups; issue 13):
// counts per width are multiples of the group, budgets hold afterwards, group 1 is the identity,
// the average width moves within the stated bound, and the preference decides which channels move.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "quant_models.h"
#include "sigmaquant/cost.h"
#include "sigmaquant/dnas.h"
#include "sigmaquant/error.h"
#include "sigmaquant/zoo.h"

using sq::BitConfig;
using sq::Graph;

namespace {

// Written here rather than with is_group_snapped, so that the test does not trust the code it
// checks: per width counts, all multiples of g but at most one, which is congruent to C mod g.
::testing::AssertionResult counts_snapped(const std::string& layer, const std::vector<int>& widths,
                                          int g) {
  std::map<int, int64_t> count;
  for (int w : widths) ++count[w];
  const int64_t c = static_cast<int64_t>(widths.size());
  int off = 0;
  for (const auto& [w, n] : count)
    if (n % g != 0) {
      ++off;
      if (n % g != c % g)
        return ::testing::AssertionFailure()
               << layer << ": " << n << " channels at " << w << " bits";
    }
  if (off > 1)
    return ::testing::AssertionFailure() << layer << ": " << off << " widths off the group";
  return ::testing::AssertionSuccess();
}

std::vector<std::vector<std::vector<double>>> random_scores(const sq::DnasSpace& s,
                                                            std::mt19937& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<std::vector<std::vector<double>>> sc(s.layers.size());
  for (size_t l = 0; l < s.layers.size(); ++l)
    for (int64_t k = 0; k < s.layers[l].choices(); ++k) {
      std::vector<double> v;
      for (size_t p = 0; p < s.layers[l].wbits.size(); ++p) v.push_back(u(rng));
      sc[l].push_back(v);
    }
  return sc;
}

sq::DnasChoice random_choice(const sq::DnasSpace& s, std::mt19937& rng) {
  sq::DnasChoice c = sq::widest_choice(s);
  for (size_t l = 0; l < s.layers.size(); ++l)
    for (int& x : c.w[l]) x = static_cast<int>(rng() % s.layers[l].wbits.size());
  return c;
}

double mean_width(const sq::DnasSpace::Layer& L, const std::vector<int>& w) {
  double sum = 0;
  for (int p : w) sum += L.wbits[p];
  return sum / static_cast<double>(w.size());
}

// lenet5 at 16x16: conv 6 channels (< 16), conv 16, fc 120 (7 x 16 + 8), fc 84 (5 x 16 + 4), fc 10
// (the last: < 16, never pruned); resnet8: 16, 32 and 64 channels. The first layer pinned.
TEST(ChannelSnap, CountsAreMultiplesOfTheGroupAndTheBoundHolds) {
  for (const char* net : {"lenet5", "resnet8"}) {
    Graph g = sq::make_zoo_model(net, {1, 16, 16}, 10);
    const std::vector<int> wl = g.weight_layers();
    const std::map<std::string, int> pinned{{g.nodes[wl.front()].name, 8}};
    sq::DnasSpace s = sq::make_dnas_space(g, {0, 2, 4, 8}, {8}, pinned, true);
    ASSERT_FALSE(s.layers.front().channelwise);
    std::mt19937 rng(3);
    for (int group : {2, 4, 8, 16, 64}) {
      for (int trial = 0; trial < 10; ++trial) {
        SCOPED_TRACE(fmt::format("{} group {} trial {}", net, group, trial));
        const auto sc = random_scores(s, rng);
        const sq::DnasChoice before = random_choice(s, rng);
        sq::DnasChoice c = before;
        sq::snap_channel_groups(s, sc, group, c);
        EXPECT_TRUE(sq::is_group_snapped(s, c, group));
        EXPECT_EQ(c.w.front(), before.w.front());  // pinned: untouched
        for (size_t l = 0; l < s.layers.size(); ++l) {
          const sq::DnasSpace::Layer& L = s.layers[l];
          if (!L.channelwise) continue;
          std::vector<int> widths;
          for (int p : c.w[l]) widths.push_back(L.wbits[p]);
          EXPECT_TRUE(counts_snapped(L.name, widths, group));
          if (L.channels < group) {  // a layer smaller than the group: one width
            for (int x : c.w[l]) EXPECT_EQ(x, c.w[l][0]) << L.name;
          }
          // (w_max - w_min) x min(G, C) / (2 C)
          const double bound = (L.wbits.back() - L.wbits.front()) *
                               static_cast<double>(std::min<int64_t>(group, L.channels)) /
                               (2.0 * static_cast<double>(L.channels));
          EXPECT_LE(std::fabs(mean_width(L, c.w[l]) - mean_width(L, before.w[l])), bound + 1e-12)
              << L.name;
        }
        EXPECT_EQ(s.layers.back().wbits.front(), 2);  // the last layer still cannot prune
        // Snapping a snapped choice changes nothing.
        sq::DnasChoice again = c;
        sq::snap_channel_groups(s, sc, group, again);
        EXPECT_EQ(again.w, c.w);
      }
    }
  }
}

TEST(ChannelSnap, GroupOneChangesNothing) {
  Graph g = sq::make_zoo_model("resnet8", {1, 16, 16}, 10);
  g.init_params(2);
  sq::CostEvaluator ce(g, sq::builtin_target("bops"));
  sq::DnasSpace s = sq::make_dnas_space(g, {0, 2, 4, 8}, {8}, {}, true);
  sq::Budgets b;
  b.bops = ce.evaluate(BitConfig::uniform(g, 8, 8)).bops;  // the widest fits
  sq::DnasCostTable t = sq::make_dnas_cost(s, g, ce, b);
  std::mt19937 rng(5);
  const auto sc = random_scores(s, rng);
  const sq::DnasChoice before = random_choice(s, rng);
  sq::DnasChoice c = before;
  sq::snap_channel_groups(s, sc, 1, c);
  EXPECT_EQ(c.w, before.w);
  ASSERT_TRUE(sq::fit_channel_groups(s, g, ce, b, t, sc, {}, 1, c));
  EXPECT_EQ(c.w, before.w);
  EXPECT_TRUE(sq::is_group_snapped(s, before, 1));
}

// The preference decides which channels move: 20 channels at 8 bits, 12 at 2, group 16 -> the
// four 8-bit channels of least preference for 8 bits (smallest loss of their step down) go to 2.
TEST(ChannelSnap, ThePreferenceChoosesTheChannels) {
  Graph g("one", {4, 4, 4}, 3);
  int x = g.conv2d("conv", g.input(), 32, 3, 1, 1);
  x = g.flatten("flat", g.relu("relu", x));
  g.linear("fc", x, 3);
  g.infer_shapes();
  sq::DnasSpace s = sq::make_dnas_space(g, {0, 2, 4, 8}, {8}, {}, true);
  sq::DnasChoice c = sq::widest_choice(s);
  std::vector<std::vector<std::vector<double>>> sc(2);
  for (int k = 0; k < 32; ++k) {
    c.w[0][k] = k < 20 ? 3 : 1;
    // loss of 8 -> 4 grows with k for the 8-bit ones; channels 0..3 lose least
    sc[0].push_back({0.0, 0.1, 0.2, 0.2 + 0.01 * (k + 1)});
  }
  for (int k = 0; k < 3; ++k) sc[1].push_back({0.0, 0.0, 0.0});
  sq::snap_channel_groups(s, sc, 16, c);
  for (int k = 0; k < 32; ++k) EXPECT_EQ(c.w[0][k], k >= 4 && k < 20 ? 3 : 1) << k;
  EXPECT_EQ(c.w[1], (std::vector<int>{2, 2, 2}));  // fc: 3 channels, one width already
}

// Snapped, then repaired: every budget holds (by the evaluator) and the choice is still snapped,
// on several cost models with budgets well below the widest choice.
TEST(ChannelSnap, FitKeepsBudgetsAndGroups) {
  Graph g = sq::make_zoo_model("resnet8", {1, 16, 16}, 10);
  g.init_params(4);
  const std::vector<int> wl = g.weight_layers();
  const std::map<std::string, int> pinned{{g.nodes[wl.front()].name, 8}};
  for (const char* target : {"size", "bops", "mpic"}) {
    SCOPED_TRACE(target);
    sq::CostEvaluator ce(g, sq::builtin_target(target));
    sq::DnasSpace s = sq::make_dnas_space(g, {0, 2, 4, 8}, {8}, pinned, true);
    const sq::CostReport full = ce.evaluate(sq::dnas_bits(s, g, sq::widest_choice(s)));
    sq::Budgets b;
    if (std::string(target) == "size")
      b.weight_bytes = 0.35 * static_cast<double>(full.weight_bytes);
    if (std::string(target) == "bops") b.bops = 0.3 * full.bops;
    if (std::string(target) == "mpic") b.latency_s = 0.4 * full.latency_s;
    sq::DnasCostTable t = sq::make_dnas_cost(s, g, ce, b);
    std::mt19937 rng(11);
    for (int trial = 0; trial < 3; ++trial) {
      const auto sc = random_scores(s, rng);
      sq::DnasChoice c = random_choice(s, rng);
      ASSERT_TRUE(sq::fit_channel_groups(s, g, ce, b, t, sc, {}, 16, c));
      EXPECT_TRUE(sq::fits_budgets(ce.evaluate(sq::dnas_bits(s, g, c)), b));
      EXPECT_TRUE(sq::is_group_snapped(s, c, 16));
    }
  }
}

// SigmaQuant per channel with groups of 16 (resnet8: 16, 32, 64 channels; the last layer 10):
// every budget holds, the result is snapped, and it still mixes widths within some layer.
TEST(ChannelSnap, SigmaQuantChannelWithGroups) {
  Graph g = sqtest::resnet8_with_channel_spread();
  sq::CostEvaluator ce(g, sq::builtin_target("size"));
  const double full = static_cast<double>(ce.evaluate(BitConfig::uniform(g, 8, 8)).weight_bytes);
  // The first and last layers pinned in one case (a pinned layer holds one choice, not one per
  // channel: the raises once read past it).
  const std::vector<int> wl = g.weight_layers();
  const std::map<std::string, int> first_last{{g.nodes[wl.front()].name, 8},
                                              {g.nodes[wl.back()].name, 8}};
  for (auto [frac, pins] :
       {std::pair{0.7, std::map<std::string, int>{}}, std::pair{0.4, first_last},
        std::pair{0.4, std::map<std::string, int>{}}}) {
    SCOPED_TRACE(fmt::format("{} pinned {}", frac, pins.size()));
    sq::Budgets b;
    b.weight_bytes = frac * full;
    sq::ChannelPhase1Result r = sq::sigmaquant_channel_phase1(g, ce, b, {2, 4, 8}, 8, pins, 16);
    if (!pins.empty()) {
      sq::ChannelPhase1Result free = sq::sigmaquant_channel_phase1(g, ce, b, {2, 4, 8}, 8, pins, 1);
      EXPECT_TRUE(sq::fits_budgets(ce.evaluate(free.bits), b));
      for (const auto& [name, w] : pins) {
        EXPECT_EQ(r.bits.layers.at(name).wbits, w);
        EXPECT_TRUE(r.bits.layers.at(name).channel_wbits.empty());
      }
    }
    sq::validate_bits(r.bits, g, "channel phase 1");
    const sq::CostReport rep = ce.evaluate(r.bits);
    EXPECT_TRUE(sq::fits_budgets(rep, b));
    bool mixed = false;
    for (int i : g.weight_layers()) {
      const sq::Node& n = g.nodes[i];
      const sq::LayerBits& lb = r.bits.layers.at(n.name);
      mixed |= !lb.channel_wbits.empty();
      EXPECT_TRUE(counts_snapped(
          n.name,
          lb.channel_wbits.empty() ? std::vector<int>(n.out_channels, lb.wbits) : lb.channel_wbits,
          16));
    }
    EXPECT_TRUE(mixed);
    // Raises whole groups until none fits: what is left is less than the dearest group raise
    // (16 channels of the widest layer, 64 x 9 weights, from 4 to 8 bits) plus byte rounding.
    EXPECT_GT(static_cast<double>(rep.weight_bytes), frac * full - 16 * 64 * 9 * 4 / 8.0 - 64)
        << "the budget is left unused";
  }
}

}  // namespace
