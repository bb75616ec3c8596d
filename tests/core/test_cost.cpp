// Cost models: hand-computed numbers on a two-layer graph under every model, the MPIC table,
// monotonicity in the bitwidths, CSD against brute force, per-channel and pruned channels, and
// target-file errors.
#include <dirent.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <random>

#include "sigmaquant/cost.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/zoo.h"
#include "test_util.h"

namespace {

using sq::BitConfig;
using sq::CostReport;
using sq::Graph;
using sq::Target;

using sqtest::error_of;

Target target(const std::string& body) {
  return sq::target_from_json(
      nlohmann::json::parse(R"({"format": "sigmaquant-target", "version": 1, )" + body + "}"),
      "t.json");
}

// input [1,4,4] (node 0) -> conv 1->2 3x3 pad 1 (1) -> relu (2) -> flatten (3) -> fc 32->3 (4).
// conv: 18 weights (9 per channel), 288 MACs (144 per channel), 16 output positions, no bias.
// fc:   96 weights (32 per channel), 96 MACs, bias of 3.
// Weights are binary fractions chosen for the CSD counts below.
Graph two_layer() {
  Graph g("two", {1, 4, 4}, 3);
  int x = g.conv2d("conv", g.input(), 2, 3, 1, 1);
  x = g.relu("relu", x);
  x = g.flatten("flat", x);
  g.linear("fc", x, 3);
  g.infer_shapes();
  g.init_params(1);
  // conv channel 0 at 4 bits (scale 0.125): q = 7 6 5 4 3 2 1 0 -7 -> CSD digits 2+2+2+1+2+1+1+0+2
  // = 13; channel 1: q = 7 -7 0 ... -> 4 digits.
  auto& cw = g.nodes[1].params.at("weight").data;
  const float c0[9] = {7, 6, 5, 4, 3, 2, 1, 0, -7};
  for (int i = 0; i < 9; ++i) cw[i] = c0[i] * 0.125f;
  for (int i = 0; i < 9; ++i) cw[9 + i] = i == 0 ? 0.5f : (i == 1 ? -0.5f : 0.0f);
  // fc at 2 bits (q in -1..1, scale = max|w|): channel 0 alternates 1, 0 -> 16 non-zero;
  // channel 1 all 1 -> 32; channel 2: one 1 and the rest 0.25 (rounds to 0) -> 1.
  auto& fw = g.nodes[4].params.at("weight").data;
  for (int i = 0; i < 32; ++i) {
    fw[i] = i % 2 == 0 ? 1.0f : 0.0f;
    fw[32 + i] = 1.0f;
    fw[64 + i] = i == 0 ? 1.0f : 0.25f;
  }
  return g;
}

// conv w4 a8, fc w2 a4.
BitConfig two_layer_bits(const Graph& g) {
  BitConfig b = BitConfig::uniform(g, 4, 8);
  b.layers["fc"].wbits = 2;
  b.layers["fc"].abits = 4;
  return b;
}

// Shared by every model: memory, MACs and BOPs of two_layer() under two_layer_bits().
void expect_memory_and_ops(const CostReport& r) {
  ASSERT_EQ(r.layers.size(), 2u);
  // conv: 18 x 4 bits = 9 B + 2 fp32 scales; fc: 96 x 2 bits = 24 B + 3 scales + 3 int32 biases.
  EXPECT_EQ(r.layers[0].weight_bits, 72);
  EXPECT_EQ(r.layers[0].weight_bytes, 9 + 8);
  EXPECT_EQ(r.layers[1].weight_bytes, 24 + 12 + 12);
  EXPECT_EQ(r.weight_bytes, 65);
  // Buffers: input 16 elems at 8 bits (conv's abits) = 16 B; conv/relu/flatten share one
  // 32-elem buffer read by fc at 4 bits = 16 B; logits 3 x 32 bits = 12 B. Peak while conv runs
  // (input + its output) = 32 B.
  EXPECT_EQ(r.activation_bytes, 32);
  EXPECT_EQ(r.activation_peak_at, "conv");
  EXPECT_EQ(r.macs, 288 + 96);
  EXPECT_EQ(r.layers[0].bops, 288 * 4 * 8);
  EXPECT_EQ(r.layers[1].bops, 96 * 2 * 4);
  EXPECT_EQ(r.bops, 9216 + 768);
}

TEST(CostSize, TwoLayerByHand) {
  Graph g = two_layer();
  for (const char* m : {"size", "bops"}) {
    CostReport r = sq::compute_cost(g, sq::builtin_target(m), two_layer_bits(g));
    expect_memory_and_ops(r);
    EXPECT_FALSE(r.has_timing);
    EXPECT_FALSE(r.has_energy);
    EXPECT_FALSE(r.has_area);
    EXPECT_EQ(r.cycles, 0);
  }
}

const char* kShiftAddParams = R"("model": "shiftadd", "params": {"variant": "%s", "datapaths": 2,
    "datapath_bits": 32, "clock_mhz": 100, "energy_pj_per_cycle": 1, "weight_memory_pj_per_bit": 0.5,
    "activation_memory_pj_per_bit": 0.25, "logic_area_um2": 100, "memory_area_um2_per_bit": 1})";

Target shiftadd_target(const std::string& variant) {
  std::string p = kShiftAddParams;
  p.replace(p.find("%s"), 2, variant);
  return target(p);
}

TEST(CostShiftAdd, BitSerialTwoLayerByHand) {
  Graph g = two_layer();
  CostReport r = sq::compute_cost(g, shiftadd_target("bit_serial"), two_layer_bits(g));
  expect_memory_and_ops(r);
  // conv: sub-word a+w = 12 bits -> 32/12 = 2 lanes; 16 positions -> 8 groups;
  //       work = 18 weights x 4 bits x 8 = 576 datapath cycles, /2 datapaths = 288 cycles.
  // fc:   sub-word 6 -> 5 lanes, but 1 position -> 1 group; work = 96 x 2 = 192 -> 96 cycles.
  EXPECT_DOUBLE_EQ(r.layers[0].cycles, 288);
  EXPECT_DOUBLE_EQ(r.layers[1].cycles, 96);
  EXPECT_DOUBLE_EQ(r.cycles, 384);
  EXPECT_NEAR(r.latency_s, 384 / 100e6, 1e-15);
  // energy: conv 576 x 1 + 72 bits x 0.5 + (16 x 8 in + 32 x 4 out) x 0.25 = 676 pJ;
  //         fc   192 x 1 + 192 x 0.5 + (32 x 4 in + 3 x 32 out) x 0.25 = 344 pJ.
  EXPECT_NEAR(r.layers[0].energy_j, 676e-12, 1e-20);
  EXPECT_NEAR(r.layers[1].energy_j, 344e-12, 1e-20);
  EXPECT_NEAR(r.energy_j, 1020e-12, 1e-20);
  // area: 2 datapaths x 100 + 1 um^2/bit x 8 x (65 + 32) bytes = 976 um^2.
  EXPECT_NEAR(r.area_mm2, 976e-6, 1e-12);
}

TEST(CostShiftAdd, CsdCountsNonZeroDigitsOfTheActualWeights) {
  Graph g = two_layer();
  CostReport r = sq::compute_cost(g, shiftadd_target("csd"), two_layer_bits(g));
  expect_memory_and_ops(r);
  // conv: (13 + 4) digits x 8 groups = 136 work -> 68 cycles; fc: (16 + 32 + 1) x 1 = 49 -> 24.5.
  EXPECT_DOUBLE_EQ(r.layers[0].cycles, 68);
  EXPECT_DOUBLE_EQ(r.layers[1].cycles, 24.5);
  // energy: conv 136 + 36 + 64 = 236 pJ; fc 49 + 96 + 56 = 201 pJ.
  EXPECT_NEAR(r.energy_j, 437e-12, 1e-20);

  // Explicit integer weights replace the graph's: all-ones conv weights -> 18 digits x 8 = 144.
  sq::QuantizedWeightSet qw;
  qw["conv"] = sq::quantize_weights_symmetric(g.nodes[1].params.at("weight"), 4, true);
  std::fill(qw["conv"].values.begin(), qw["conv"].values.end(), 1);
  CostReport rq = sq::compute_cost(g, shiftadd_target("csd"), two_layer_bits(g), &qw);
  EXPECT_DOUBLE_EQ(rq.layers[0].cycles, 72);
  EXPECT_DOUBLE_EQ(rq.layers[1].cycles, 24.5);
  qw["conv"].channel_bits = {8, 8};  // disagrees with the configuration
  EXPECT_NE(error_of([&] {
              sq::compute_cost(g, shiftadd_target("csd"), two_layer_bits(g), &qw);
            }).find("channel 0 have 8 bits"),
            std::string::npos);
}

TEST(CostMpic, TwoLayerByHand) {
  Graph g = two_layer();
  CostReport r = sq::compute_cost(
      g, sq::load_target(std::string(SQ_SOURCE_DIR) + "/targets/mpic.json"), two_layer_bits(g));
  expect_memory_and_ops(r);
  // conv a8 w4: 2.3 MACs/cycle; fc a4 w2: 3.9 MACs/cycle.
  EXPECT_DOUBLE_EQ(r.layers[0].cycles, 288 / 2.3);
  EXPECT_DOUBLE_EQ(r.layers[1].cycles, 96 / 3.9);
  EXPECT_NEAR(r.energy_j, (288 / 2.3 + 96 / 3.9) / 250e6 * 5.3825e-3, 1e-18);
  EXPECT_FALSE(r.has_area);
}

// A single conv layer whose MAC count makes the table easy to read back.
Graph one_conv() {
  Graph g("one", {8, 4, 4}, 8);
  int x = g.conv2d("conv", g.input(), 8, 1, 1, 0);  // 8 x 8 x 16 = 1024 MACs
  x = g.global_avgpool("gap", x);
  g.flatten("flat", x);
  g.infer_shapes();
  return g;
}

TEST(CostMpic, TableReproducedExactlyAndRoundedUp) {
  Graph g = one_conv();
  Target t = sq::builtin_target("mpic");
  const double table[3][3] = {{6.5, 4.0, 2.2}, {3.9, 3.5, 2.1}, {2.5, 2.3, 2.1}};
  const int widths[3] = {2, 4, 8};
  sq::CostEvaluator ev(g, t);
  for (int ai = 0; ai < 3; ++ai)
    for (int wi = 0; wi < 3; ++wi) {
      CostReport r = ev.evaluate(BitConfig::uniform(g, widths[wi], widths[ai]));
      EXPECT_EQ(r.macs, 1024);
      EXPECT_DOUBLE_EQ(r.macs / r.cycles, table[ai][wi]) << "a" << widths[ai] << " w" << widths[wi];
      EXPECT_DOUBLE_EQ(r.energy_j, r.cycles / 250e6 * 5.3825e-3);
      EXPECT_DOUBLE_EQ(r.latency_s, r.cycles / 250e6);
    }
  // Other widths round up to the next supported row / column (and storage width).
  auto mpc = [&](int w, int a) {
    CostReport r = ev.evaluate(BitConfig::uniform(g, w, a));
    return r.macs / r.cycles;
  };
  EXPECT_DOUBLE_EQ(mpc(1, 2), 6.5);
  EXPECT_DOUBLE_EQ(mpc(3, 3), 3.5);
  EXPECT_DOUBLE_EQ(mpc(5, 7), 2.1);
  EXPECT_DOUBLE_EQ(mpc(3, 8), 2.3);
  EXPECT_EQ(ev.evaluate(BitConfig::uniform(g, 3, 8)).layers[0].weight_bits, 64 * 4);
  EXPECT_NE(error_of([&] { ev.evaluate(BitConfig::uniform(g, 4, 16)); }).find("abits = 16"),
            std::string::npos);
}

TEST(CostMpic, PrunedChannelsAreFreeAndChannelsCostTheirOwnWidth) {
  Graph g = one_conv();
  sq::CostEvaluator ev(g, sq::builtin_target("mpic"));
  BitConfig b = BitConfig::uniform(g, 8, 8);
  b.layers["conv"].channel_wbits = {0, 0, 0, 0, 2, 2, 8, 8};
  CostReport r = ev.evaluate(b);
  // 8 channels x 128 MACs: 2 at w2 (2.5 MACs/cycle), 2 at w8 (2.1), 4 pruned.
  EXPECT_EQ(r.macs, 4 * 128);
  EXPECT_DOUBLE_EQ(r.cycles, 2 * 128 / 2.5 + 2 * 128 / 2.1);
  EXPECT_EQ(r.layers[0].pruned_channels, 4);
  EXPECT_EQ(r.layers[0].weight_bits, 2 * 8 * 2 + 2 * 8 * 8);
  EXPECT_EQ(r.layers[0].scale_bytes, 4 * 4);  // pruned channels keep no scale
  b.layers["conv"].channel_wbits = std::vector<int>(8, 0);
  EXPECT_EQ(ev.evaluate(b).cycles, 0);
  EXPECT_EQ(ev.evaluate(b).energy_j, 0);
}

TEST(CostMcu, TwoLayerByHand) {
  Graph g = two_layer();
  CostReport r = sq::compute_cost(g, sq::builtin_target("mcu"), two_layer_bits(g));
  // conv a8 w4: 1.0 + 0.5 unpack = 1.5 cycles/MAC -> 432; fc a4 w2: 1.5 -> 144.
  EXPECT_DOUBLE_EQ(r.cycles, 576);
  EXPECT_NEAR(r.energy_j, 576 / 80e6 * 24e-3, 1e-15);
  // 64-bit scales (int32 multiplier + shift); activations stored as bytes: fc input 32 B.
  EXPECT_EQ(r.layers[0].weight_bytes, 9 + 16);
  EXPECT_EQ(r.activation_bytes, 16 + 32);
  BitConfig b = two_layer_bits(g);
  b.layers["conv"].wbits = 3;  // unaligned: 1.0 + 1.0
  b.layers["fc"].wbits = 8;    // no unpack
  b.layers["fc"].abits = 12;   // int16 path: 1.5
  r = sq::compute_cost(g, sq::builtin_target("mcu"), b);
  EXPECT_DOUBLE_EQ(r.layers[0].cycles, 288 * 2.0);
  EXPECT_DOUBLE_EQ(r.layers[1].cycles, 96 * 1.5);
}

// Non-square and dilated windows (issue 15): costs come from the real kernel area and the output
// positions. input [1,4,8] -> conv 1->2 1x7 padding (0, 3) -> 4x8: 14 weights (7 per channel),
// 448 MACs; a dilated 3x3 (padding 2) costs exactly what an undilated 3x3 (padding 1) of the same
// output does.
TEST(CostModels, NonSquareAndDilatedWindowsByHand) {
  auto graph = [](const sq::Window2d& w) {
    Graph g("rect", {1, 4, 8}, 3);
    g.linear("fc", g.flatten("flat", g.relu("relu", g.conv2d("conv", g.input(), 2, w))), 3);
    g.infer_shapes();
    g.init_params(1);
    return g;
  };
  const Graph g = graph(sq::Window2d::of(1, 7, 1, 1, 0, 3));
  const BitConfig b = two_layer_bits(g);
  CostReport r = sq::compute_cost(g, sq::builtin_target("mcu"), b);
  EXPECT_EQ(r.layers[0].macs, 448);
  EXPECT_EQ(r.layers[0].weight_bits, 14 * 4);
  EXPECT_EQ(r.layers[0].bops, 448 * 4 * 8);
  EXPECT_DOUBLE_EQ(r.layers[0].cycles, 448 * 1.5);  // a8 w4: 1.0 + 0.5 unpack
  // Bit-serial shift-add: sub-word 12 bits -> 2 lanes; 32 positions -> 16 groups;
  // 14 weights x 4 bits x 16 = 896 datapath cycles over 2 datapaths.
  r = sq::compute_cost(g, shiftadd_target("bit_serial"), b);
  EXPECT_DOUBLE_EQ(r.layers[0].cycles, 448);
  for (const char* m : {"size", "bops", "shiftadd", "mpic", "mcu"}) {
    const Graph dil = graph(sq::Window2d::of(3, 3, 1, 1, 2, 2, 2, 2));
    const Graph plain = graph(sq::Window2d::square(3, 1, 1));
    const CostReport a = sq::compute_cost(dil, sq::builtin_target(m), two_layer_bits(dil));
    const CostReport c = sq::compute_cost(plain, sq::builtin_target(m), two_layer_bits(plain));
    EXPECT_EQ(a.macs, c.macs) << m;
    EXPECT_EQ(a.weight_bytes, c.weight_bytes) << m;
    EXPECT_DOUBLE_EQ(a.cycles, c.cycles) << m;
    EXPECT_DOUBLE_EQ(a.energy_j, c.energy_j) << m;
  }
}

TEST(CostCustom, TableFromTheTargetFile) {
  Graph g = two_layer();
  Target t = target(R"("model": "custom", "params": {"clock_mhz": 100, "a_bits": [4, 8],
      "w_bits": [2, 4, 8], "cycles_per_mac": [[0.25, 0.5, 1], [0.5, 1, 2]],
      "energy_pj_per_mac": 2}, "budgets": {"latency_ms": 0.001, "energy_uj": 1})");
  CostReport r = sq::compute_cost(g, t, two_layer_bits(g));
  expect_memory_and_ops(r);
  EXPECT_DOUBLE_EQ(r.layers[0].cycles, 288 * 1.0);  // a8 w4
  EXPECT_DOUBLE_EQ(r.layers[1].cycles, 96 * 0.25);  // a4 w2
  EXPECT_NEAR(r.latency_s, 312 / 100e6, 1e-15);
  EXPECT_NEAR(r.energy_j, 384 * 2e-12, 1e-20);
  auto checks = sq::check_budgets(r, t.budgets);
  ASSERT_EQ(checks.size(), 2u);
  EXPECT_EQ(checks[0].key, "latency_ms");
  EXPECT_FALSE(checks[0].fits);  // 3.12 us > 1 us
  EXPECT_NEAR(checks[0].excess, 2.12e-6, 1e-15);
  EXPECT_NEAR(checks[0].excess_pct, 212, 1e-9);
  EXPECT_TRUE(checks[1].fits);
  EXPECT_FALSE(sq::fits_budgets(r, t.budgets));
}

TEST(CostModels, EveryModelAcceptsPrunedChannels) {
  Graph g = two_layer();
  BitConfig b = two_layer_bits(g);
  b.layers["conv"].channel_wbits = {0, 4};
  b.layers["fc"].channel_wbits = {2, 0, 2};
  for (const char* m : {"size", "bops", "shiftadd", "shiftadd-csd", "mpic", "mcu"}) {
    CostReport r = sq::compute_cost(g, sq::builtin_target(m), b);
    EXPECT_EQ(r.macs, 144 + 64) << m;
    EXPECT_EQ(r.bops, 144 * 4 * 8 + 64 * 2 * 4) << m;
    EXPECT_EQ(r.layers[0].weight_bits, 9 * 4) << m;
    CostReport full = sq::compute_cost(g, sq::builtin_target(m), two_layer_bits(g));
    EXPECT_LE(r.cycles, full.cycles) << m;
    EXPECT_LE(r.energy_j, full.energy_j) << m;
  }
}

// ---- monotonicity: fewer bits never cost more (size, BOPs, shift-add) ----

TEST(CostModels, FewerBitsNeverCostMore) {
  Graph g = sq::make_zoo_model("resnet8", {1, 16, 16}, 10);
  std::vector<std::string> names;
  for (int i : g.weight_layers()) names.push_back(g.nodes[i].name);
  std::mt19937_64 rng(7);
  auto pick = [&](int lo, int hi) { return lo + static_cast<int>(rng() % (hi - lo + 1)); };
  for (const char* m : {"size", "bops", "shiftadd"}) {
    sq::CostEvaluator ev(g, sq::builtin_target(m));
    for (int trial = 0; trial < 60; ++trial) {
      BitConfig b = BitConfig::uniform(g, 8, 8);
      for (auto& [name, lb] : b.layers) {
        lb.wbits = pick(1, 8);
        lb.abits = pick(2, 16);
        if (trial % 3 == 0) {  // per-channel widths, some pruned
          lb.channel_wbits.resize(g.node(name).out_channels);
          for (int& c : lb.channel_wbits) c = pick(0, 8);
        }
      }
      CostReport before = ev.evaluate(b);
      BitConfig fewer = b;
      sq::LayerBits& lb = fewer.layers[names[rng() % names.size()]];
      if (trial % 2 == 0 && lb.abits > 2) {
        lb.abits -= pick(1, lb.abits - 2);
      } else if (!lb.channel_wbits.empty()) {
        int& c = lb.channel_wbits[rng() % lb.channel_wbits.size()];
        c = c > 0 ? c - 1 : 0;
      } else if (lb.wbits > 1) {
        lb.wbits -= 1;
      }
      CostReport after = ev.evaluate(fewer);
      EXPECT_LE(after.weight_bytes, before.weight_bytes) << m;
      EXPECT_LE(after.activation_bytes, before.activation_bytes) << m;
      EXPECT_LE(after.bops, before.bops) << m;
      EXPECT_LE(after.cycles, before.cycles) << m;
      EXPECT_LE(after.latency_s, before.latency_s) << m;
      EXPECT_LE(after.energy_j, before.energy_j * (1 + 1e-12)) << m;
      EXPECT_LE(after.area_mm2, before.area_mm2 * (1 + 1e-12)) << m;
    }
  }
}

TEST(CostShiftAdd, CsdNeverCostsMoreThanBitSerial) {
  Graph g = sq::make_zoo_model("resnet8", {1, 16, 16}, 10);
  sq::CostEvaluator serial(g, sq::builtin_target("shiftadd"));
  sq::CostEvaluator csd(g, sq::builtin_target("shiftadd-csd"));
  for (int w = 1; w <= 8; ++w)
    for (auto gran : {sq::Granularity::PerChannel, sq::Granularity::PerTensor}) {
      BitConfig b = BitConfig::uniform(g, w, 8);
      for (auto& [n, lb] : b.layers) lb.granularity = gran;
      const double c = csd.evaluate(b).cycles, s = serial.evaluate(b).cycles;
      EXPECT_LE(c, s) << w;
      if (w == 1) {
        EXPECT_DOUBLE_EQ(c, s);  // +-1 weights: one digit each
      }
      if (w >= 4) {
        EXPECT_LT(c, 0.75 * s) << w;  // zero-skipping pays at wider weights
      }
    }
}

// ---- canonical signed digits ----

TEST(Csd, MatchesBruteForceMinimumForAllEightBitValues) {
  // Minimum number of non-zero digits over every 10-digit string in {-1, 0, 1}.
  const int L = 10, span = 1 << L;
  std::vector<int> best(2 * span + 1, 1 << 20);
  std::vector<int> digits(L, -1);
  for (;;) {
    int v = 0, nz = 0;
    for (int i = L - 1; i >= 0; --i) {
      v = 2 * v + digits[i];
      nz += digits[i] != 0;
    }
    best[v + span] = std::min(best[v + span], nz);
    int i = 0;
    while (i < L && digits[i] == 1) digits[i++] = -1;
    if (i == L) break;
    ++digits[i];
  }
  for (int v = -128; v <= 255; ++v) EXPECT_EQ(sq::csd_digits(v), best[v + span]) << v;
  EXPECT_EQ(sq::csd_digits(0), 0);
  EXPECT_EQ(sq::csd_digits(7), 2);
  EXPECT_EQ(sq::csd_digits(0x5555555555555555LL), 32);
  EXPECT_EQ(sq::csd_digits(INT64_MIN), 1);
  EXPECT_EQ(sq::csd_digits(INT64_MAX), 2);  // 2^63 - 1
}

// ---- target files ----

TEST(Targets, ShippedTargetsLoad) {
  const std::string dir = std::string(SQ_SOURCE_DIR) + "/targets";
  DIR* d = opendir(dir.c_str());
  ASSERT_NE(d, nullptr);
  std::vector<std::string> files;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n.size() > 5 && n.substr(n.size() - 5) == ".json") files.push_back(n);
  }
  closedir(d);
  for (const char* want : {"size.json", "bops.json", "shiftadd.json", "shiftadd-csd.json",
                           "mpic.json", "mcu.json", "custom.json"})
    EXPECT_NE(std::find(files.begin(), files.end(), want), files.end()) << want;
  Graph g = two_layer();
  for (const auto& f : files) {
    Target t;
    ASSERT_NO_THROW(t = sq::load_target(dir + "/" + f)) << f;
    const nlohmann::json file = nlohmann::json::parse(sq::read_file(dir + "/" + f));
    EXPECT_EQ(t.name, file.value("name", std::string(sq::cost_model_name(t.kind)))) << f;
    EXPECT_EQ(sq::cost_model_name(t.kind), file.at("model").get<std::string>()) << f;
    EXPECT_FALSE(t.budgets.empty()) << f;
    // A target round-trips through its JSON form.
    Target back = sq::target_from_json(nlohmann::json::parse(sq::target_to_json(t).dump()), f);
    CostReport a = sq::compute_cost(g, t, two_layer_bits(g));
    CostReport b = sq::compute_cost(g, back, two_layer_bits(g));
    EXPECT_DOUBLE_EQ(a.energy_j, b.energy_j) << f;
    EXPECT_DOUBLE_EQ(a.cycles, b.cycles) << f;
    EXPECT_EQ(a.weight_bytes, b.weight_bytes) << f;
    // One verdict per budget of the file, in check_budgets' order, each against the report's
    // own figure and the file's limit in base units.
    const std::vector<sq::BudgetCheck> checks = sq::check_budgets(a, t.budgets);
    const nlohmann::json& limits = file.at("budgets");
    struct Want {
      const char* key;
      double value, unit;
    };
    const Want order[] = {{"weight_kib", static_cast<double>(a.weight_bytes), 1024},
                          {"activation_kib", static_cast<double>(a.activation_bytes), 1024},
                          {"latency_ms", a.latency_s, 1e-3},
                          {"energy_uj", a.energy_j, 1e-6},
                          {"gbops", static_cast<double>(a.bops), 1e9}};
    size_t k = 0;
    for (const Want& w : order) {
      if (!limits.contains(w.key)) continue;
      ASSERT_LT(k, checks.size()) << f << ": no verdict for " << w.key;
      const sq::BudgetCheck& c = checks[k++];
      EXPECT_EQ(c.key, w.key) << f;
      EXPECT_DOUBLE_EQ(c.value, w.value) << f << " " << w.key;
      EXPECT_DOUBLE_EQ(c.budget, limits.at(w.key).get<double>() * w.unit) << f << " " << w.key;
      EXPECT_EQ(c.fits, c.value <= c.budget) << f << " " << w.key;
      EXPECT_DOUBLE_EQ(c.excess, c.fits ? 0.0 : c.value - c.budget) << f << " " << w.key;
      EXPECT_GT(c.value, 0) << f << " " << w.key;
    }
    EXPECT_EQ(k, checks.size()) << f << ": a verdict for a budget the file does not set";
    EXPECT_EQ(sq::fits_budgets(a, t.budgets),
              std::all_of(checks.begin(), checks.end(), [](const auto& c) { return c.fits; }))
        << f;
  }
  // The shipped files restate the builtin defaults.
  for (const char* n : {"shiftadd", "shiftadd-csd", "mpic", "mcu"}) {
    CostReport file =
        sq::compute_cost(g, sq::load_target(dir + "/" + n + ".json"), two_layer_bits(g));
    CostReport builtin = sq::compute_cost(g, sq::builtin_target(n), two_layer_bits(g));
    EXPECT_DOUBLE_EQ(file.energy_j, builtin.energy_j) << n;
    EXPECT_DOUBLE_EQ(file.cycles, builtin.cycles) << n;
    EXPECT_DOUBLE_EQ(file.area_mm2, builtin.area_mm2) << n;
  }
}

TEST(Targets, ErrorsNameFileFieldAndExpectation) {
  auto err = [](const std::string& body) { return error_of([&] { target(body); }); };
  auto has = [](const std::string& e, const std::string& s) {
    return e.find(s) != std::string::npos && e.find("t.json") == 0;
  };
  EXPECT_TRUE(has(err(R"("name": "x")"), "missing field 'model' (expected one of: size, bops"));
  EXPECT_TRUE(has(err(R"("model": "gpu")"), "field 'model' must be one of"));
  EXPECT_TRUE(
      has(err(R"("model": "size", "budget": {})"), "unknown field 'budget' (expected one of"));
  EXPECT_TRUE(has(err(R"("model": "size", "budgets": {"weight_kb": 3})"),
                  "unknown field 'budgets.weight_kb' (expected one of: weight_kib"));
  EXPECT_TRUE(has(err(R"("model": "size", "budgets": {"weight_kib": -3})"),
                  "field 'budgets.weight_kib' must be a number > 0 (got -3)"));
  EXPECT_TRUE(has(err(R"("model": "size", "budgets": {"latency_ms": 3})"), "defines no latency"));
  EXPECT_TRUE(has(err(R"("model": "bops", "budgets": {"energy_uj": 3})"), "defines no energy"));
  EXPECT_TRUE(has(err(R"("model": "size", "params": {"clock_mhz": 3})"),
                  "unknown field 'params.clock_mhz' (expected one of: no fields here)"));
  EXPECT_TRUE(has(err(R"("model": "shiftadd", "params": {"variant": "fast"})"),
                  "field 'params.variant' must be one of \"bit_serial\", \"csd\" (got \"fast\")"));
  EXPECT_TRUE(has(err(R"("model": "shiftadd", "params": {"clock_mhz": "fast"})"),
                  "field 'params.clock_mhz' must be a number > 0 (got \"fast\")"));
  EXPECT_TRUE(has(err(R"("model": "shiftadd", "params": {"datapath_bits": 4})"),
                  "'params.datapath_bits' must be an integer in 8..4096"));
  EXPECT_TRUE(
      has(err(R"("model": "mpic", "params": {"table": []})"), "unknown field 'params.table'"));
  EXPECT_TRUE(has(err(R"("model": "mcu", "params": {"cycles_per_mac": 0})"),
                  "'params.cycles_per_mac' must be a number > 0"));
  EXPECT_TRUE(has(err(R"("model": "custom")"), "missing field 'params'"));
  const std::string tbl =
      R"("model": "custom", "params": {"clock_mhz": 1, "a_bits": [8], "w_bits": [4, 8], )";
  EXPECT_TRUE(
      has(err(tbl + R"("cycles_per_mac": [[1, 2]], "macs_per_cycle": [[1, 2]]})"), "exactly one"));
  EXPECT_TRUE(has(err(tbl + R"("cycles_per_mac": [[1]]})"),
                  "field 'params.cycles_per_mac' row 0 is not an array of 2 numbers"));
  EXPECT_TRUE(
      has(err(tbl + R"("cycles_per_mac": [[1, 2], [3, 4]]})"), "has 2 rows (expected 1 rows"));
  EXPECT_TRUE(
      has(err(tbl + R"("cycles_per_mac": [[1, 0]]})"), "[0][1] = 0 is not a positive number"));
  EXPECT_TRUE(
      has(err(tbl + R"("cycles_per_mac": [[1, 2]], "energy_pj_per_mac": 1, "power_mw": 2})"),
          "more than one"));
  EXPECT_TRUE(has(err(R"("model": "custom", "params": {"clock_mhz": 1, "a_bits": [8, 4],
      "w_bits": [8], "cycles_per_mac": [[1], [1]]})"),
                  "'params.a_bits' must be strictly ascending"));
  EXPECT_TRUE(has(err(R"("model": "size", "storage": {"weight_widths": [2, 9]})"),
                  "'storage.weight_widths[1]' must be an integer in 1..8"));
  EXPECT_TRUE(
      has(err(R"("model": "mpic", "storage": {"activation_widths": [8, 16]})"), "beyond 8 bits"));
  EXPECT_NE(error_of([] {
              sq::target_from_json(nlohmann::json::parse(R"({"model": "size"})"), "t.json");
            }).find("t.json: missing field 'format'"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              sq::target_from_json(
                  nlohmann::json::parse(
                      R"({"format": "sigmaquant-target", "version": 2, "model": "size"})"),
                  "t.json");
            }).find("field 'version' is 2"),
            std::string::npos);
  std::string dir = sqtest::temp_dir("targets");
  std::string bad = sqtest::write_temp(dir, "bad.json", "{\"format\": ");
  EXPECT_NE(error_of([&] { sq::load_target(bad); }).find("bad.json: not valid JSON"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              sq::resolve_target("no/such/target.json");
            }).find("no such file, and not a builtin target"),
            std::string::npos);
}

TEST(CostModels, BadBitsAreRejectedWithTheValidationMessage) {
  Graph g = two_layer();
  sq::CostEvaluator ev(g, sq::builtin_target("size"));
  BitConfig b = two_layer_bits(g);
  b.layers["conv"].channel_wbits = {4, 4, 4};
  EXPECT_NE(error_of([&] { ev.evaluate(b); }).find("expected 2, one per output channel"),
            std::string::npos);
  b = two_layer_bits(g);
  b.layers["gap"] = sq::LayerBits{};
  EXPECT_NE(error_of([&] { ev.evaluate(b); }).find("no layer named 'gap'"), std::string::npos);
  b = two_layer_bits(g);
  b.layers.erase("fc");
  EXPECT_NE(error_of([&] { ev.evaluate(b); }).find("no entry for weight layer fc"),
            std::string::npos);
}

TEST(CostModels, ActivationBitsFollowTheConsumingLayerThroughResiduals) {
  // x -> conv a (reads x) ; x + conv a -> add -> relu -> fc. The add's inputs are stored at the
  // width of what reads the add's output (fc's abits), the network input at conv's abits.
  Graph g("res", {2, 2, 2}, 4);
  int x = g.input();
  int a = g.conv2d("a", x, 2, 1, 1, 0);
  int s = g.add("add", a, x);
  s = g.relu("relu", s);
  s = g.flatten("flat", s);
  g.linear("fc", s, 4);
  g.infer_shapes();
  BitConfig b = BitConfig::uniform(g, 8, 8);
  b.layers["a"].abits = 4;
  b.layers["fc"].abits = 16;
  CostReport r = sq::compute_cost(g, sq::builtin_target("size"), b);
  // Buffers: input 8 elems at 4 bits = 4 B (live until the add); a's output 8 elems at 16 bits
  // = 16 B; add/relu/flat 8 elems at 16 bits = 16 B; logits 4 x 32 bits = 16 B.
  // Step add: input + a + add = 36 B (the peak).
  EXPECT_EQ(r.activation_bytes, 36);
  EXPECT_EQ(r.activation_peak_at, "add");
}

}  // namespace
