// Bit configurations (parse, save, validate, average bits) and the symmetric weight quantizer.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "sigmaquant/bits.h"
#include "sigmaquant/error.h"
#include "sigmaquant/quant.h"
#include "test_util.h"

namespace {

using sq::BitConfig;
using sq::Graph;
using sq::LayerBits;

using sqtest::error_of;

// input [1,4,4] -> conv 1->2 3x3 pad 1 -> relu -> flatten -> fc 32->3
Graph two_layer() {
  Graph g("two", {1, 4, 4}, 3);
  int x = g.conv2d("conv", g.input(), 2, 3, 1, 1);
  x = g.relu("relu", x);
  x = g.flatten("flat", x);
  g.linear("fc", x, 3);
  g.infer_shapes();
  g.init_params(1);
  return g;
}

BitConfig parse(const std::string& text) {
  return sq::bits_from_json(nlohmann::json::parse(text), "b.json");
}

TEST(Bits, UniformCoversEveryWeightLayer) {
  Graph g = two_layer();
  BitConfig b = BitConfig::uniform(g, 4, 8);
  EXPECT_EQ(b.layers.size(), 2u);
  EXPECT_EQ(b.for_layer("fc").wbits, 4);
  EXPECT_EQ(b.for_layer("conv").abits, 8);
  EXPECT_EQ(b.for_layer("conv").granularity, sq::Granularity::PerChannel);
  EXPECT_NO_THROW(sq::validate_bits(b, g, "x"));
  EXPECT_DOUBLE_EQ(sq::average_weight_bits(b, g), 4.0);
}

TEST(Bits, AverageIsParameterWeightedAndCountsPrunedAsZero) {
  Graph g = two_layer();
  BitConfig b = BitConfig::uniform(g, 4, 8);
  b.layers["fc"].wbits = 2;
  // conv 18 weights x 4 bits, fc 96 weights x 2 bits
  EXPECT_DOUBLE_EQ(sq::average_weight_bits(b, g), (18.0 * 4 + 96.0 * 2) / 114.0);
  b.layers["conv"].channel_wbits = {0, 8};  // 9 weights pruned, 9 at 8 bits
  EXPECT_DOUBLE_EQ(sq::average_weight_bits(b, g), (9.0 * 8 + 96.0 * 2) / 114.0);
}

TEST(Bits, JsonRoundTripAndHandEditedForms) {
  Graph g = two_layer();
  BitConfig b = parse(R"({"format": "sigmaquant-bits", "version": 1,
      "default": {"wbits": 6, "abits": 8},
      "layers": {"conv": 3, "fc": {"abits": 4, "channel_wbits": [2, 0, 8]}}})");
  EXPECT_EQ(b.for_layer("conv").wbits, 3);  // shorthand
  EXPECT_EQ(b.for_layer("conv").abits, 8);  // from the default
  EXPECT_EQ(b.for_layer("fc").wbits, 8);    // max of the channels
  EXPECT_EQ(b.for_layer("fc").channel_bits(1), 0);
  EXPECT_NO_THROW(sq::validate_bits(b, g, "b.json"));

  std::string dir = sqtest::temp_dir("bits");
  sq::save_bits(dir + "/b.json", b, &g);
  BitConfig back = sq::load_bits(dir + "/b.json");
  EXPECT_EQ(back, b);
  // Graph order in the file, one layer per line.
  std::string text = sq::bits_to_json(b, &g).dump();
  EXPECT_LT(text.find("\"conv\""), text.find("\"fc\""));
  // Without a default the explicit form is complete.
  BitConfig u = BitConfig::uniform(g, 5, 7);
  sq::save_bits(dir + "/u.json", u, &g);
  EXPECT_EQ(sq::load_bits(dir + "/u.json"), u);
}

TEST(Bits, FileErrorsNameFieldAndExpectation) {
  auto err = [](const std::string& text) { return error_of([&] { parse(text); }); };
  EXPECT_NE(err(R"({"version": 1, "layers": {}})").find("missing field 'format'"),
            std::string::npos);
  EXPECT_NE(err(R"({"format": "sigmaquant-bits", "version": 2, "layers": {}})").find("version"),
            std::string::npos);
  EXPECT_NE(err(R"({"format": "sigmaquant-bits", "version": 1, "layers": {"conv": {"wbits": 9,
            "abits": 8}}})")
                .find("'layers.conv.wbits' must be an integer in 1..8"),
            std::string::npos);
  EXPECT_NE(err(R"({"format": "sigmaquant-bits", "version": 1, "layers": {"conv": {"wbits": 4,
            "abits": 1}}})")
                .find("'layers.conv.abits' must be an integer in 2..16"),
            std::string::npos);
  EXPECT_NE(err(R"({"format": "sigmaquant-bits", "version": 1, "layers": {"conv": {"wbits": 4}}})")
                .find("missing field 'layers.conv.abits'"),
            std::string::npos);
  EXPECT_NE(err(R"({"format": "sigmaquant-bits", "version": 1, "layers": {"conv": 4}})")
                .find("needs a \"default\""),
            std::string::npos);
  EXPECT_NE(err(R"({"format": "sigmaquant-bits", "version": 1, "layers": {"conv": {"wbits": 4,
            "abits": 8, "bits": 3}}})")
                .find("unknown field 'layers.conv.bits'"),
            std::string::npos);
  EXPECT_NE(err(R"({"format": "sigmaquant-bits", "version": 1, "layers": {"conv": {"abits": 8,
            "granularity": "per_row", "wbits": 4}}})")
                .find("\"per_channel\", \"per_tensor\""),
            std::string::npos);
  EXPECT_NE(err(R"({"format": "sigmaquant-bits", "version": 1, "layers": {"conv": {"abits": 8,
            "wbits": 4, "channel_wbits": [4, 9]}}})")
                .find("channel_wbits[1]' must be an integer in 0..8"),
            std::string::npos);
  EXPECT_NE(err(R"({"format": "sigmaquant-bits", "version": 1, "layers": {"conv": {"abits": 8,
            "wbits": 4, "channel_wbits": [2, 8]}}})")
                .find("disagrees"),
            std::string::npos);
  std::string dir = sqtest::temp_dir("bits_err");
  std::string p = sqtest::write_temp(dir, "bad.json", "{ nope");
  EXPECT_NE(error_of([&] { sq::load_bits(p); }).find("bad.json: not valid JSON"),
            std::string::npos);
  EXPECT_NE(error_of([&] { sq::load_bits(dir + "/missing.json"); }).find("missing.json"),
            std::string::npos);
}

TEST(Bits, ValidationAgainstTheGraph) {
  Graph g = two_layer();
  auto err = [&](const BitConfig& b) {
    return error_of([&] { sq::validate_bits(b, g, "b.json"); });
  };
  BitConfig b = BitConfig::uniform(g, 4, 8);

  BitConfig unknown = b;
  unknown.layers["conv9"] = LayerBits{};
  std::string e = err(unknown);
  EXPECT_NE(e.find("b.json"), std::string::npos) << e;
  EXPECT_NE(e.find("no layer named 'conv9'"), std::string::npos) << e;
  EXPECT_NE(e.find("weight layers: conv, fc"), std::string::npos) << e;

  BitConfig nonweight = b;
  nonweight.layers["relu"] = LayerBits{};
  EXPECT_NE(err(nonweight).find("'relu' is a relu node, not a weight layer"), std::string::npos);

  BitConfig range = b;
  range.layers["fc"].wbits = 0;
  EXPECT_NE(err(range).find("layers.fc.wbits = 0 is out of range (expected 1..8)"),
            std::string::npos);
  range = b;
  range.layers["fc"].abits = 17;
  EXPECT_NE(err(range).find("layers.fc.abits = 17 is out of range (expected 2..16)"),
            std::string::npos);

  BitConfig missing = b;
  missing.layers.erase("fc");
  e = err(missing);
  EXPECT_NE(e.find("no entry for weight layer fc and no \"default\""), std::string::npos) << e;
  missing.default_bits = LayerBits{};
  EXPECT_EQ(err(missing), "");

  BitConfig len = b;
  len.layers["conv"].channel_wbits = {4, 4, 4};
  e = err(len);
  EXPECT_NE(e.find("layers.conv.channel_wbits has 3 entries (expected 2, one per output channel"),
            std::string::npos)
      << e;

  BitConfig pt = b;
  pt.layers["conv"].channel_wbits = {4, 0};
  EXPECT_EQ(err(pt), "");
  pt.layers["conv"].granularity = sq::Granularity::PerTensor;
  EXPECT_NE(err(pt).find("per_tensor"), std::string::npos);
}

// ---- symmetric weight quantizer ----

TEST(WeightQuant, PerChannelRoundToNearestInSymmetricRange) {
  sq::Tensor w({2, 4});
  // Binary fractions, so the ties below are exact: half rounds to even like torch.round.
  w.data = {0.875f, -0.4375f, 0.0625f, 0.0f,    // channel 0: max 0.875 -> scale 0.125 at 4 bits
            -1.75f, 0.625f,   0.375f,  0.25f};  // channel 1: max 1.75 -> scale 0.25
  sq::QuantizedTensor q = sq::quantize_weights_symmetric(w, 4, true);
  ASSERT_EQ(q.scales.size(), 2u);
  EXPECT_EQ(q.scales[0], 0.125f);
  EXPECT_EQ(q.scales[1], 0.25f);
  // -3.5 -> -4, 0.5 -> 0, 2.5 -> 2, 1.5 -> 2
  EXPECT_EQ(q.values, (std::vector<int32_t>{7, -4, 0, 0, -7, 2, 2, 1}));
  for (int b = 2; b <= 8; ++b) {
    sq::QuantizedTensor qb = sq::quantize_weights_symmetric(w, b, true);
    const int qmax = (1 << (b - 1)) - 1;
    sq::Tensor back = sq::dequantize(qb);
    for (size_t i = 0; i < w.data.size(); ++i) {
      EXPECT_LE(std::abs(qb.values[i]), qmax);
      EXPECT_LE(std::fabs(back.data[i] - w.data[i]),
                qb.scale_of(static_cast<int64_t>(i / 4)) / 2 + 1e-6);
    }
  }
}

TEST(WeightQuant, OneBitZeroBitAndPerTensor) {
  sq::Tensor w({2, 2});
  w.data = {0.5f, -1.5f, 0.0f, -0.2f};
  sq::QuantizedTensor q1 = sq::quantize_weights_symmetric(w, 1, true);
  EXPECT_EQ(q1.values, (std::vector<int32_t>{1, -1, 1, -1}));
  EXPECT_FLOAT_EQ(q1.scales[0], 1.0f);  // mean |w| of channel 0
  EXPECT_FLOAT_EQ(q1.scales[1], 0.1f);
  sq::QuantizedTensor q0 = sq::quantize_weights_symmetric(w, std::vector<int>{0, 8}, true);
  EXPECT_EQ(q0.values[0], 0);
  EXPECT_EQ(q0.values[1], 0);
  EXPECT_EQ(q0.scales[0], 0.0f);
  EXPECT_EQ(q0.values[3], -127);
  sq::QuantizedTensor qt = sq::quantize_weights_symmetric(w, 8, false);
  ASSERT_EQ(qt.scales.size(), 1u);
  EXPECT_FLOAT_EQ(qt.scales[0], 1.5f / 127);
  EXPECT_EQ(qt.values[1], -127);
  EXPECT_NE(error_of([&] {
              sq::quantize_weights_symmetric(w, std::vector<int>{4, 2}, false);
            }),
            "");
  EXPECT_NE(error_of([&] { sq::quantize_weights_symmetric(w, 9, true); }).find("1..8"),
            std::string::npos);
  sq::Tensor z({1, 3}, 0.0f);
  EXPECT_EQ(sq::quantize_weights_symmetric(z, 4, true).scales[0], 1.0f);  // never divides by 0
}

}  // namespace
