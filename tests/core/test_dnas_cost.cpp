// The differentiable search's torch-free parts: the search space, channel-wise costs by hand, the
// expected-cost table against the evaluator, and the repair step.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "quant_models.h"
#include "sigmaquant/bits.h"
#include "sigmaquant/cost.h"
#include "sigmaquant/dnas.h"
#include "sigmaquant/error.h"
#include "sigmaquant/zoo.h"

using sq::BitConfig;
using sq::Graph;

namespace {

// input [1,4,4] -> conv 1->4 3x3 pad 1 -> relu -> flatten -> fc 64->3.
// conv: 9 weights and 144 MACs per output channel, no bias; fc: 64 weights and MACs per output,
// bias of 3.
Graph two_layer() {
  Graph g("two", {1, 4, 4}, 3);
  int x = g.conv2d("conv", g.input(), 4, 3, 1, 1);
  x = g.relu("relu", x);
  x = g.flatten("flat", x);
  g.linear("fc", x, 3);
  g.infer_shapes();
  g.init_params(3);
  return g;
}

TEST(DnasCost, ChannelWiseTwoLayerByHand) {
  Graph g = two_layer();
  BitConfig b = BitConfig::uniform(g, 8, 8);
  b.layers["conv"].channel_wbits = {8, 4, 0, 2};  // channel 2 pruned
  b.layers["fc"].abits = 4;
  for (const char* model : {"size", "bops", "mpic"}) {
    SCOPED_TRACE(model);
    sq::CostReport r = sq::compute_cost(g, sq::builtin_target(model), b);
    ASSERT_EQ(r.layers.size(), 2u);
    // conv: 9 x (8 + 4 + 2) = 126 bits -> 16 B, 3 fp32 scales (the pruned channel keeps none).
    EXPECT_EQ(r.layers[0].weight_bits, 126);
    EXPECT_EQ(r.layers[0].weight_bytes, 16 + 12);
    EXPECT_EQ(r.layers[0].pruned_channels, 1);
    EXPECT_EQ(r.layers[0].macs, 3 * 144);
    EXPECT_EQ(r.layers[0].bops, 144 * 8 * (8 + 4 + 2));
    // fc: 192 weights x 8 bits = 192 B + 3 scales + 3 biases.
    EXPECT_EQ(r.layers[1].weight_bytes, 192 + 12 + 12);
    EXPECT_EQ(r.layers[1].bops, 192 * 8 * 4);
    if (std::string(model) == "mpic") {
      // MACs per cycle from the MPIC table (SPEC §6), rounded up to its rows and columns.
      sq::ThroughputTable t = sq::mpic_table();
      auto mpc = [&](int a, int w) {
        size_t ai = 0, wi = 0;
        while (t.a_bits[ai] < a) ++ai;
        while (t.w_bits[wi] < w) ++wi;
        return t.macs_per_cycle[ai][wi];
      };
      EXPECT_DOUBLE_EQ(r.layers[0].cycles, 144 / mpc(8, 8) + 144 / mpc(8, 4) + 144 / mpc(8, 2));
      EXPECT_DOUBLE_EQ(r.layers[1].cycles, 3 * 64 / mpc(4, 8));
    }
  }
}

TEST(DnasSpace, CandidatesPinsAndTheLastLayer) {
  Graph g = sq::make_zoo_model("lenet5", {1, 16, 16}, 10);
  auto w = g.weight_layers();
  sq::DnasSpace s = sq::make_dnas_space(g, {8, 0, 4, 2, 4}, {8, 2, 4}, {}, true);
  ASSERT_EQ(s.layers.size(), w.size());
  EXPECT_EQ(s.layers.front().wbits, (std::vector<int>{0, 2, 4, 8}));
  EXPECT_EQ(s.layers.back().wbits, (std::vector<int>{2, 4, 8}));  // the logits are never pruned
  EXPECT_EQ(s.points.front().abits, (std::vector<int>{2, 4, 8}));
  EXPECT_EQ(s.layers.front().choices(), s.layers.front().channels);

  sq::DnasSpace lw = sq::make_dnas_space(g, {0, 2, 4, 8}, {8}, {}, false);
  for (const auto& L : lw.layers) {
    EXPECT_EQ(L.wbits, (std::vector<int>{2, 4, 8})) << L.name;  // a whole layer is never pruned
    EXPECT_EQ(L.choices(), 1);
  }

  std::map<std::string, int> pinned{{g.nodes[w.front()].name, 8}};
  sq::DnasSpace p = sq::make_dnas_space(g, {0, 2, 4, 8}, {2, 4, 8}, pinned, true);
  EXPECT_EQ(p.layers.front().wbits, std::vector<int>{8});
  EXPECT_EQ(p.points[p.layers.front().point].abits, std::vector<int>{8});

  EXPECT_THROW(sq::make_dnas_space(g, {0}, {8}, {}, true), sq::Error);
  EXPECT_THROW(sq::make_dnas_space(g, {2, 9}, {8}, {}, true), sq::Error);
  EXPECT_THROW(sq::make_dnas_space(g, {2, 8}, {1}, {}, true), sq::Error);
  EXPECT_THROW(sq::make_dnas_space(g, {2, 8}, {8}, {{"nope", 8}}, true), sq::Error);
}

// The table's cost of a hard choice equals the evaluator's wherever the metric adds up over
// layers and channels: size, BOPs, and the cycle/energy models.
TEST(DnasCost, TableEqualsTheEvaluatorOnHardChoices) {
  Graph g = sq::make_zoo_model("resnet8", {1, 16, 16}, 10);
  g.init_params(5);
  struct Case {
    const char* target;
    sq::Budgets b;
  };
  std::vector<Case> cases(4);
  cases[0].target = "size";
  cases[0].b.weight_bytes = 20000;
  cases[1].target = "bops";
  cases[1].b.bops = 1e8;
  cases[2].target = "mpic";
  cases[2].b.latency_s = 1e-3;
  cases[3].target = "shiftadd";
  cases[3].b.energy_j = 1e-6;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.target);
    sq::CostEvaluator ce(g, sq::builtin_target(c.target));
    for (bool channelwise : {true, false}) {
      sq::DnasSpace s = sq::make_dnas_space(g, {0, 2, 4, 8}, {2, 4, 8}, {}, channelwise);
      sq::DnasCostTable t = sq::make_dnas_cost(s, g, ce, c.b);
      ASSERT_EQ(t.metrics.size(), 1u);
      std::mt19937 rng(7);
      for (int trial = 0; trial < 20; ++trial) {
        sq::DnasChoice ch = sq::widest_choice(s);
        for (size_t l = 0; l < s.layers.size(); ++l)
          for (int& x : ch.w[l]) x = static_cast<int>(rng() % s.layers[l].wbits.size());
        // one activation width for all points: no buffer is read by layers of two points at
        // different widths (the table's first-order case), so the table is exact
        int a = static_cast<int>(rng() % 3);
        for (int& x : ch.a) x = a;
        const double table = sq::table_cost(t, s, ch);
        const double measured = sq::measured_cost(t, ce.evaluate(sq::dnas_bits(s, g, ch)));
        if (std::string(c.target) == "size")
          EXPECT_NEAR(table, measured, 2.0 * s.layers.size() / 20000.0);  // byte rounding
        else
          EXPECT_NEAR(table, measured, 1e-9 * std::max(1.0, measured));
      }
    }
  }
}

TEST(DnasCost, RepairMeetsTheBudgetOrSaysItCannot) {
  Graph g = sq::make_zoo_model("lenet5", {1, 16, 16}, 10);
  g.init_params(2);
  sq::CostEvaluator ce(g, sq::builtin_target("mpic"));
  sq::DnasSpace s = sq::make_dnas_space(g, {0, 2, 4, 8}, {2, 4, 8}, {}, true);
  const double full = ce.evaluate(sq::dnas_bits(s, g, sq::widest_choice(s))).latency_s;
  sq::Budgets b;
  b.latency_s = 0.3 * full;
  sq::DnasCostTable t = sq::make_dnas_cost(s, g, ce, b);
  sq::DnasChoice c = sq::widest_choice(s);
  ASSERT_TRUE(sq::repair_choice(s, g, ce, b, t, {}, {}, c));
  const sq::CostReport r = ce.evaluate(sq::dnas_bits(s, g, c));
  EXPECT_TRUE(sq::fits_budgets(r, b));
  EXPECT_GT(r.latency_s, 0.15 * full) << "repair lowered far more than the budget needs";

  // Below what the narrowest choice costs: refused.
  sq::DnasChoice lowest = sq::widest_choice(s);
  for (auto& v : lowest.w) std::fill(v.begin(), v.end(), 0);
  for (int& a : lowest.a) a = 0;
  b.latency_s = 0.5 * ce.evaluate(sq::dnas_bits(s, g, lowest)).latency_s;
  sq::DnasChoice c2 = sq::widest_choice(s);
  EXPECT_FALSE(sq::repair_choice(s, g, ce, b, sq::make_dnas_cost(s, g, ce, b), {}, {}, c2));
}

TEST(DnasCost, BitsOfAChoice) {
  Graph g = two_layer();
  sq::DnasSpace s = sq::make_dnas_space(g, {0, 2, 4, 8}, {4, 8}, {}, true);
  sq::DnasChoice c = sq::widest_choice(s);
  c.w[0] = {3, 0, 1, 3};  // 8, pruned, 2, 8
  c.a[0] = 0;             // conv reads 4-bit input
  BitConfig b = sq::dnas_bits(s, g, c);
  EXPECT_EQ(b.layers.at("conv").channel_wbits, (std::vector<int>{8, 0, 2, 8}));
  EXPECT_EQ(b.layers.at("conv").abits, 4);
  EXPECT_TRUE(b.layers.at("fc").channel_wbits.empty());  // every channel at 8
  EXPECT_EQ(b.layers.at("fc").wbits, 8);
  sq::validate_bits(b, g, "test");
}

// A layer with every channel pruned states wbits 0 (its largest channel width), so the model
// file written from it reads back as the same assignment (a resnet20 dnas run wrote wbits 1 and
// could not be resumed).
TEST(DnasCost, AFullyPrunedLayerRoundTripsThroughItsFile) {
  Graph g = two_layer();
  sq::DnasSpace s = sq::make_dnas_space(g, {0, 2, 4, 8}, {4, 8}, {}, true);
  sq::DnasChoice c = sq::widest_choice(s);
  c.w[0] = {0, 0, 0, 0};
  BitConfig b = sq::dnas_bits(s, g, c);
  EXPECT_EQ(b.layers.at("conv").wbits, 0);
  sq::validate_bits(b, g, "test");
  const BitConfig back = sq::bits_from_json(sq::bits_to_json(b, &g), "round trip");
  EXPECT_EQ(back.layers.at("conv"), b.layers.at("conv"));
}

// fill_choice spends what a fitting choice leaves: afterwards every budget holds and no single
// step up (one channel; one layer-wise layer) fits any more; with channel groups the choice stays
// snapped; a choice with nothing left to spend is unchanged.
TEST(DnasCost, FillSpendsWhatTheChoiceLeavesAndNoSingleRaiseFits) {
  Graph g = sqtest::resnet8_with_channel_spread();
  sq::CostEvaluator ce(g, sq::builtin_target("size"));
  const double full = static_cast<double>(ce.evaluate(BitConfig::uniform(g, 8, 8)).weight_bytes);
  sq::Budgets b;
  b.weight_bytes = 0.5 * full;
  auto fits = [&](const sq::DnasSpace& s, const sq::DnasChoice& c) {
    return sq::fits_budgets(ce.evaluate(sq::dnas_bits(s, g, c)), b);
  };
  for (bool channelwise : {true, false}) {
    SCOPED_TRACE(channelwise ? "channel-wise" : "layer-wise");
    const std::vector<int> widths =
        channelwise ? std::vector<int>{0, 2, 4, 8} : std::vector<int>{2, 4, 8};
    sq::DnasSpace s = sq::make_dnas_space(g, widths, {8}, {}, channelwise);
    sq::DnasCostTable t = sq::make_dnas_cost(s, g, ce, b);
    const auto score = sq::channel_damage_scores(s, g);
    sq::DnasChoice c = sq::widest_choice(s);
    for (auto& v : c.w) std::fill(v.begin(), v.end(), 0);
    ASSERT_TRUE(fits(s, c));
    sq::fill_choice(s, g, ce, b, t, score, c);
    EXPECT_TRUE(fits(s, c));
    EXPECT_GT(static_cast<double>(ce.evaluate(sq::dnas_bits(s, g, c)).weight_bytes), 0.45 * full);
    for (size_t l = 0; l < s.layers.size(); ++l)
      for (size_t k = 0; k < c.w[l].size(); ++k) {
        if (c.w[l][k] + 1 >= static_cast<int>(s.layers[l].wbits.size())) continue;
        ++c.w[l][k];
        EXPECT_FALSE(fits(s, c)) << "layer " << l << " choice " << k << " could still be raised";
        --c.w[l][k];
      }
    // Nothing left: unchanged.
    const sq::DnasChoice before = c;
    sq::fill_choice(s, g, ce, b, t, score, c);
    EXPECT_EQ(c.w, before.w);
  }
  // Channel groups of 16: snapped before, snapped after.
  sq::DnasSpace s = sq::make_dnas_space(g, {0, 2, 4, 8}, {8}, {}, true);
  sq::DnasChoice c = sq::widest_choice(s);
  for (auto& v : c.w) std::fill(v.begin(), v.end(), 0);
  sq::fill_choice(s, g, ce, b, sq::make_dnas_cost(s, g, ce, b), sq::channel_damage_scores(s, g), c,
                  16);
  EXPECT_TRUE(fits(s, c));
  EXPECT_TRUE(sq::is_group_snapped(s, c, 16));
  EXPECT_GT(static_cast<double>(ce.evaluate(sq::dnas_bits(s, g, c)).weight_bytes), 0.4 * full);
}

// With activations: under MPIC's latency and a weight budget, from the narrowest choice, the fill
// ends where no single weight or activation step up fits.
TEST(DnasCost, FillRaisesActivationsWithWhatTheWeightsLeave) {
  Graph g = sq::make_zoo_model("lenet5", {1, 16, 16}, 10);
  g.init_params(2);
  sq::CostEvaluator ce(g, sq::builtin_target("mpic"));
  sq::DnasSpace s = sq::make_dnas_space(g, {0, 2, 4, 8}, {2, 4, 8}, {}, true);
  const sq::CostReport full = ce.evaluate(sq::dnas_bits(s, g, sq::widest_choice(s)));
  sq::Budgets b;
  b.latency_s = 0.45 * full.latency_s;
  b.weight_bytes = 0.6 * static_cast<double>(full.weight_bytes);
  sq::DnasCostTable t = sq::make_dnas_cost(s, g, ce, b);
  sq::DnasChoice c = sq::widest_choice(s);
  for (auto& v : c.w) std::fill(v.begin(), v.end(), 0);
  for (int& a : c.a) a = 0;
  auto fits = [&] { return sq::fits_budgets(ce.evaluate(sq::dnas_bits(s, g, c)), b); };
  ASSERT_TRUE(fits());
  sq::fill_choice(s, g, ce, b, t, sq::channel_damage_scores(s, g), c, 1, true);
  EXPECT_TRUE(fits());
  int raised = 0;
  for (size_t q = 0; q < c.a.size(); ++q) {
    raised += c.a[q] > 0;
    if (c.a[q] + 1 >= static_cast<int>(s.points[q].abits.size())) continue;
    ++c.a[q];
    EXPECT_FALSE(fits()) << "point " << q << " could still be raised";
    --c.a[q];
  }
  EXPECT_GT(raised, 0);
  for (size_t l = 0; l < s.layers.size(); ++l)
    for (size_t k = 0; k < c.w[l].size(); ++k) {
      if (c.w[l][k] + 1 >= static_cast<int>(s.layers[l].wbits.size())) continue;
      ++c.w[l][k];
      EXPECT_FALSE(fits()) << "layer " << l << " channel " << k << " could still be raised";
      --c.w[l][k];
    }
}

// SigmaQuant per channel: every budget holds, larger-sigma channels of a layer never get fewer
// bits than the k-means mapping would give smaller ones at the start, and the budget is used
// (raises until nothing more fits).
TEST(SigmaQuantChannel, FitsUsesTheBudgetAndFollowsSigma) {
  Graph g = sqtest::resnet8_with_channel_spread();
  sq::CostEvaluator ce(g, sq::builtin_target("size"));
  const double full = static_cast<double>(ce.evaluate(BitConfig::uniform(g, 8, 8)).weight_bytes);
  for (double frac : {0.7, 0.4}) {
    SCOPED_TRACE(frac);
    sq::Budgets b;
    b.weight_bytes = frac * full;
    sq::ChannelPhase1Result r = sq::sigmaquant_channel_phase1(g, ce, b, {2, 4, 8}, 8, {});
    sq::validate_bits(r.bits, g, "channel phase 1");
    const sq::CostReport rep = ce.evaluate(r.bits);
    EXPECT_TRUE(sq::fits_budgets(rep, b));
    // Raises one channel at a time: what is left is less than the dearest channel raise.
    EXPECT_GT(static_cast<double>(rep.weight_bytes), frac * full - 64 * 9 * 4 / 8.0 - 8)
        << "the budget is left unused";
    EXPECT_GE(r.k, 1);
    int64_t channels = 0;
    for (int i : g.weight_layers()) channels += g.nodes[i].out_channels;
    EXPECT_EQ(r.channels, channels);  // every channel clustered (nothing pinned)
    // Mixed within layers: some layer holds channels of different widths.
    bool mixed = false;
    for (const auto& [name, lb] : r.bits.layers) mixed |= !lb.channel_wbits.empty();
    EXPECT_TRUE(mixed);
  }
  sq::Budgets impossible;
  impossible.weight_bytes = 0.05 * full;
  EXPECT_THROW(sq::sigmaquant_channel_phase1(g, ce, impossible, {2, 4, 8}, 8, {}), sq::Error);
}

// Width 0 among the candidates: a budget below every layer at 2 bits is met by pruning; within
// a layer the pruned channels are those of smallest sigma (equal cost per channel: the damage
// n·σ² orders them), the last layer keeps every channel, and the unpruned fit is unchanged
// where the budget does not need pruning.
TEST(SigmaQuantChannel, ZeroWidthPrunesTheSmallestSigmaWhereTheBudgetNeedsIt) {
  Graph g = sqtest::resnet8_with_channel_spread();
  sq::CostEvaluator ce(g, sq::builtin_target("size"));
  const double full = static_cast<double>(ce.evaluate(BitConfig::uniform(g, 8, 8)).weight_bytes);
  sq::Budgets tight;
  tight.weight_bytes = 0.2 * full;  // 2 bits everywhere is 0.25
  EXPECT_THROW(sq::sigmaquant_channel_phase1(g, ce, tight, {2, 4, 8}, 8, {}), sq::Error);
  sq::ChannelPhase1Result r = sq::sigmaquant_channel_phase1(g, ce, tight, {0, 2, 4, 8}, 8, {});
  sq::validate_bits(r.bits, g, "pruned phase 1");
  EXPECT_TRUE(sq::fits_budgets(ce.evaluate(r.bits), tight));
  const std::vector<int> wl = g.weight_layers();
  int pruned = 0;
  for (int li : wl) {
    const sq::Node& n = g.nodes[li];
    const auto& lb = r.bits.layers.at(n.name);
    if (lb.channel_wbits.empty()) continue;
    const sq::Tensor& w = n.params.at("weight");
    const int64_t per = static_cast<int64_t>(w.size()) / n.out_channels;
    auto sigma = [&](int64_t c) {
      double m = 0, m2 = 0;
      for (int64_t i = 0; i < per; ++i) {
        const double v = w.data[static_cast<size_t>(c * per + i)];
        m += v;
        m2 += v * v;
      }
      m /= static_cast<double>(per);
      return std::sqrt(std::max(0.0, m2 / static_cast<double>(per) - m * m));
    };
    double max_pruned = -1, min_kept = 1e30;
    for (int64_t c = 0; c < n.out_channels; ++c) {
      if (lb.channel_wbits[c] == 0) {
        ++pruned;
        max_pruned = std::max(max_pruned, sigma(c));
      } else {
        min_kept = std::min(min_kept, sigma(c));
      }
    }
    if (li == wl.back()) {
      EXPECT_LT(max_pruned, 0) << "the last layer lost a channel";
    }
    if (max_pruned >= 0) {
      EXPECT_LE(max_pruned, min_kept + 1e-12) << n.name;
    }
  }
  EXPECT_GT(pruned, 0);
  // A budget that 2..8 bits meet: pruning is not needed, and nothing is pruned.
  sq::Budgets loose;
  loose.weight_bytes = 0.7 * full;
  sq::ChannelPhase1Result lr = sq::sigmaquant_channel_phase1(g, ce, loose, {0, 2, 4, 8}, 8, {});
  for (const auto& [name, lb] : lr.bits.layers)
    for (int b : lb.channel_wbits) EXPECT_NE(b, 0) << name;
}

}  // namespace

// The budget mode keeps, among the trials within two binomial standard errors of the best
// validation accuracy, the one that uses the most of the budgets.
TEST(DnasChoose, NoiseLevelAccuracyDoesNotBuyUnusedBudget) {
  auto trial = [](double acc, double cost) {
    sq::DnasTrial t;
    t.val_accuracy = acc;
    t.cost = cost;
    return t;
  };
  // Every argmax near chance (resnet8 at 2 bits before fine-tuning): 2,000 images, the best
  // 0.110 has a margin of 2·√(0.11·0.89/2000) = 0.014: the one using the most budget is kept.
  EXPECT_EQ(
      sq::choose_dnas_trial({trial(0.110, 0.63), trial(0.100, 0.99), trial(0.104, 0.80)}, 2000),
      1u);
  // A clear accuracy lead wins over budget use.
  EXPECT_EQ(sq::choose_dnas_trial({trial(0.90, 0.70), trial(0.82, 0.99)}, 2000), 0u);
  // With few validation images the margin widens: 0.90 against 0.82 on 40 images is noise
  // (margin 2·√(0.9·0.1/40) = 0.095).
  EXPECT_EQ(sq::choose_dnas_trial({trial(0.90, 0.70), trial(0.82, 0.99)}, 40), 1u);
  // At equal cost the more accurate; one trial is itself.
  EXPECT_EQ(sq::choose_dnas_trial({trial(0.50, 0.9), trial(0.51, 0.9)}, 2000), 1u);
  EXPECT_EQ(sq::choose_dnas_trial({trial(0.3, 0.5)}, 10), 0u);
  EXPECT_THROW(sq::choose_dnas_trial({}, 10), sq::Error);
}
