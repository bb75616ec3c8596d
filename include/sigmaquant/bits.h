// Per-layer precision as data: which bitwidth each weight layer (conv2d / linear) gets.
//
// A BitConfig maps weight-layer names to a LayerBits descriptor {weight bits, bits of the layer's
// INPUT activation, weight-scale granularity, optional per-output-channel weight bits}. A
// mixed-precision network is then just the graph plus one of these. Bit assignments are stored as
// small JSON files, readable and editable by hand (schema in docs/cost-models.md):
//
//   {
//     "format": "sigmaquant-bits", "version": 1,
//     "default": {"wbits": 8, "abits": 8, "granularity": "per_channel"},
//     "layers": {
//       "stem.conv": {"wbits": 8, "abits": 8},
//       "stage1.block1.conv1": 4,                       // shorthand: wbits only
//       "fc": {"abits": 8, "channel_wbits": [4, 4, 0, 2, 8, 4, 4, 4, 4, 4]}
//     }
//   }
//
//   sq::BitConfig b = sq::BitConfig::uniform(graph, 4, 8);
//   b.layers["fc"].wbits = 8;
//   sq::validate_bits(b, graph, "my.json");   // throws sq::Error naming the layer and the field
//   double avg = sq::average_weight_bits(b, graph);
//
// Ranges: layer weight bits 1..8 (1 = binary sign weights), per-channel weight bits 0..8 (0 = the
// output channel is pruned), activation bits 2..16.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "sigmaquant/graph.h"

namespace sq {

constexpr int kMinWeightBits = 1;
constexpr int kMaxWeightBits = 8;
constexpr int kMinActBits = 2;
constexpr int kMaxActBits = 16;
constexpr int kBitsFormatVersion = 1;

enum class Granularity { PerChannel, PerTensor };
const char* granularity_name(Granularity g);  // "per_channel" / "per_tensor"

struct LayerBits {
  int wbits = 8;  // weight bits of every output channel (when channel_wbits is empty)
  int abits = 8;  // bits of the layer's input activation
  Granularity granularity = Granularity::PerChannel;  // weight scales per output channel or one
  // Optional: one entry per output channel, 0 = pruned, else 1..8. When set, it overrides wbits
  // (which then holds the maximum, for display) and requires per_channel granularity.
  std::vector<int> channel_wbits;

  int channel_bits(int64_t c) const { return channel_wbits.empty() ? wbits : channel_wbits[c]; }
  bool operator==(const LayerBits& o) const {
    return wbits == o.wbits && abits == o.abits && granularity == o.granularity &&
           channel_wbits == o.channel_wbits;
  }
};

struct BitConfig {
  std::string model;                      // informational: the graph it was made for
  std::optional<LayerBits> default_bits;  // used for weight layers without an entry
  std::map<std::string, LayerBits> layers;

  // The entry for a layer, or the default; throws sq::Error if neither exists.
  const LayerBits& for_layer(const std::string& name) const;
  // Every weight layer of g set explicitly to wbits/abits, per-channel scales.
  static BitConfig uniform(const Graph& g, int wbits, int abits);
  bool operator==(const BitConfig& o) const {
    return model == o.model && default_bits == o.default_bits && layers == o.layers;
  }
};

// JSON form. `where` names the source in errors (a file path). to_json writes layers in graph
// order when a graph is given (alphabetically otherwise).
nlohmann::ordered_json bits_to_json(const BitConfig& b, const Graph* g = nullptr);
BitConfig bits_from_json(const nlohmann::json& j, const std::string& where);
BitConfig load_bits(const std::string& path);
void save_bits(const std::string& path, const BitConfig& b, const Graph* g = nullptr);  // atomic

// Checks b against g; throws sq::Error naming `where`, the layer and the field: unknown layer,
// non-weight layer, bits out of range, missing layer (with no default), channel_wbits of the wrong
// length or with per_tensor granularity.
void validate_bits(const BitConfig& b, const Graph& g, const std::string& where);

// Parameter-weighted mean weight bits over the weight layers (weights only, biases excluded):
// sum over layers and channels of (weights in channel x bits) / total weights. Pruned channels
// count as 0 bits.
double average_weight_bits(const BitConfig& b, const Graph& g);

}  // namespace sq
