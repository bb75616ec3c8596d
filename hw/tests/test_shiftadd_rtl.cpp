// The shift-add accelerator's RTL against the engine and the cost model (issue 19): layers of a
// mixed-precision ResNet-8 (random weights, BN folded, per-layer and per-channel bits including
// pruned and binary channels: tests/core/quant_models.h) run on the Verilated hw/rtl/sa_core.v,
// bit-serial and csd. Accumulators must equal conv2d_acc_ref bit for bit; the cycle count must
// equal the shiftadd cost model's (schedule round_robin) for every layer.
#include <gtest/gtest.h>

#include <cstdio>

#include "sa_host.h"
#include "sa_net.h"
#include "sa_sim.h"
#include "sigmaquant/engine.h"
#include "sigmaquant/integerize.h"

namespace {

void check_layers(bool csd) {
  const sqhw::HwConfig hw = sqhw::SaSim::verilated_config();
  const sqhw::Net n = sqhw::make_net(sqtest::synthetic_qmodel("resnet8", {1, 20, 20}, 10, 3), 3);
  const sq::BitConfig bits = sqhw::hardware_bits(n.qm, n.im);
  const sq::QuantizedWeightSet qw = sqhw::integer_weights(n.qm, n.im);
  const sq::CostReport model =
      sq::CostEvaluator(n.qm.graph, sqhw::shiftadd_target(hw, csd, true)).evaluate(bits, &qw);
  const sq::CostReport even =
      sq::CostEvaluator(n.qm.graph, sqhw::shiftadd_target(hw, csd, false)).evaluate(bits, &qw);
  sqhw::SaSim sim(hw);
  int mixed = 0, chained = 0;
  for (size_t l = 0; l < n.im.layers.size(); ++l) {
    const sq::IntLayer& L = n.im.layers[l];
    const sq::ConvShape s = sq::conv_shape_of(n.qm.graph, L.node);
    const int abits = n.im.points.at(L.in_node).bits;
    const sqhw::LayerProgram p = sqhw::compile_layer(hw, s, L, n.inputs[l].data(), abits, csd);
    const sqhw::LayerResult r = sim.run(p, L);
    std::vector<int64_t> ref(static_cast<size_t>(s.out_size()));
    sq::conv2d_acc_ref(s, L, n.inputs[l].data(), ref.data());
    int64_t wrong = 0;
    for (size_t i = 0; i < ref.size(); ++i) wrong += ref[i] != r.acc[i];
    EXPECT_EQ(wrong, 0) << L.name << ": accumulators differ from conv2d_acc_ref";
    ASSERT_EQ(model.layers[l].name, L.name);
    EXPECT_EQ(static_cast<double>(r.cycles), model.layers[l].cycles) << L.name;
    std::printf("%-22s %s w%d a%d %s rtl %9llu cycles, model %11.1f (even %11.1f, %+6.2f %%)\n",
                L.name.c_str(), csd ? "csd       " : "bit-serial", model.layers[l].wbits, abits,
                n.chained[l] ? "chained" : "random ", static_cast<unsigned long long>(r.cycles),
                model.layers[l].cycles, even.layers[l].cycles,
                100.0 * (even.layers[l].cycles - static_cast<double>(r.cycles)) /
                    static_cast<double>(r.cycles));
    mixed += model.layers[l].wbits != 8 || abits != 8;
    chained += n.chained[l];
  }
  // The net really is mixed precision and the chain really reached past the first layer.
  EXPECT_GE(mixed, 2);
  EXPECT_GE(chained, 3);
}

TEST(ShiftAddRtl, BitSerialLayersMatchEngineAndCostModel) { check_layers(false); }
TEST(ShiftAddRtl, CsdLayersMatchEngineAndCostModel) { check_layers(true); }

// targets/shiftadd_rtl.json (written by hw/synth/area.py from the RTL's figures) describes this
// circuit: the target loader accepts it, and its cycles are the simulated ones.
TEST(ShiftAddRtl, TargetFileDescribesTheCircuit) {
  const sq::Target t = sq::load_target(SQ_SOURCE_DIR "/targets/shiftadd_rtl.json");
  const sqhw::HwConfig hw = sqhw::SaSim::verilated_config();
  ASSERT_EQ(t.kind, sq::CostModelKind::ShiftAdd);
  EXPECT_EQ(t.shiftadd.schedule, sq::ShiftAddSchedule::RoundRobin);
  EXPECT_EQ(t.shiftadd.variant, sq::ShiftAddVariant::Csd);
  EXPECT_EQ(t.shiftadd.datapaths, hw.datapaths);
  EXPECT_EQ(t.shiftadd.datapath_bits, hw.datapath_bits);
  EXPECT_EQ(t.shiftadd.guard_bits, hw.guard_bits);
  EXPECT_TRUE(t.defines_area());
  const sqhw::Net n = sqhw::make_net(sqtest::synthetic_qmodel("resnet8", {1, 12, 12}, 10, 4), 4);
  const sq::QuantizedWeightSet qw = sqhw::integer_weights(n.qm, n.im);
  const sq::CostReport model =
      sq::CostEvaluator(n.qm.graph, t).evaluate(sqhw::hardware_bits(n.qm, n.im), &qw);
  sqhw::SaSim sim(hw);
  double cycles = 0;
  for (size_t l = 0; l < n.im.layers.size(); ++l) {
    const sq::IntLayer& L = n.im.layers[l];
    const sq::ConvShape s = sq::conv_shape_of(n.qm.graph, L.node);
    cycles += static_cast<double>(sim.run(sqhw::compile_layer(hw, s, L, n.inputs[l].data(),
                                                              n.im.points.at(L.in_node).bits, true),
                                          L)
                                      .cycles);
  }
  EXPECT_EQ(cycles, model.cycles);
}

// The csd datapath, weight by weight: every value of every width on a 1x1 layer, so each NAF
// digit pattern (and the sign-borrow between lanes) is exercised at every lane width.
TEST(ShiftAddRtl, EveryWeightValueEveryWidth) {
  const sqhw::HwConfig hw = sqhw::SaSim::verilated_config();
  sqhw::SaSim sim(hw);
  for (int b = 1; b <= hw.wmax; ++b)
    for (int a : {2, 5, 8}) {
      const int qmax = b == 1 ? 1 : (1 << (b - 1)) - 1;
      sq::IntLayer L;
      L.name = "w" + std::to_string(b) + "a" + std::to_string(a);
      std::vector<int> ws;
      for (int w = -qmax; w <= qmax; ++w)
        if (b > 1 || w != 0) ws.push_back(w);
      const int64_t C = static_cast<int64_t>(ws.size());
      sq::ConvShape s{2, 5, 7, C, 1, 1, 0, 1};
      L.channel_bits.assign(static_cast<size_t>(C), b);
      L.in_zero_point = 3 % (1 << a);
      for (int64_t c = 0; c < C; ++c) {
        L.weights.push_back(ws[static_cast<size_t>(c)]);
        L.weights.push_back(-ws[static_cast<size_t>(c)]);
        L.bias.push_back(static_cast<int32_t>(c * 37 - 500));
        L.weight_scales.push_back(1.0f);
        L.bias_float.push_back(0.0f);
      }
      L.requant.resize(static_cast<size_t>(C));
      std::vector<uint8_t> x(static_cast<size_t>(s.in_size()));
      for (size_t i = 0; i < x.size(); ++i)
        x[i] = static_cast<uint8_t>(i % 3 == 0 ? (1 << a) - 1 : (i * 7) % (1 << a));
      std::vector<int64_t> ref(static_cast<size_t>(s.out_size()));
      sq::conv2d_acc_ref(s, L, x.data(), ref.data());
      for (bool csd : {false, true}) {
        const sqhw::LayerResult r = sim.run(sqhw::compile_layer(hw, s, L, x.data(), a, csd), L);
        int64_t wrong = 0;
        for (size_t i = 0; i < ref.size(); ++i) wrong += ref[i] != r.acc[i];
        EXPECT_EQ(wrong, 0) << L.name << (csd ? " csd" : " bit-serial");
      }
    }
}

}  // namespace
