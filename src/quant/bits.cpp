#include "sigmaquant/bits.h"

#include <fmt/format.h>

#include <algorithm>

#include "cost/json_fields.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"

namespace sq {

namespace {

constexpr const char* kFormatTag = "sigmaquant-bits";

int max_of(const std::vector<int>& v) {
  return v.empty() ? 0 : *std::max_element(v.begin(), v.end());
}

Granularity parse_granularity(const std::string& s) {
  return s == "per_tensor" ? Granularity::PerTensor : Granularity::PerChannel;
}

// One layer entry (or the default). `base` supplies the fields the entry leaves out.
LayerBits parse_entry(const nlohmann::json& e, const std::string& where, const std::string& path,
                      const std::optional<LayerBits>& base, bool is_default) {
  using namespace jsonf;
  LayerBits lb = base.value_or(LayerBits{});
  if (e.is_number_integer()) {  // shorthand: "conv1": 4
    if (!base)
      fail(
          "{}: field '{}' is a bare weight bitwidth, which needs a \"default\" entry to supply "
          "abits (write {{\"wbits\": N, \"abits\": N}} instead)",
          where, path);
    nlohmann::json o = {{"wbits", e}};
    lb.wbits =
        static_cast<int>(*opt_integer(o, "wbits", where, path, kMinWeightBits, kMaxWeightBits));
    lb.channel_wbits.clear();
    return lb;
  }
  if (!e.is_object())
    fail(
        "{}: field '{}' must be an object {{\"wbits\", \"abits\", \"granularity\", "
        "\"channel_wbits\"}} or an integer weight bitwidth (got {})",
        where, path, brief(e));
  if (is_default)
    check_keys(e, where, path, {"wbits", "abits", "granularity"});
  else
    check_keys(e, where, path, {"wbits", "abits", "granularity", "channel_wbits"});

  auto ch = opt_int_list(e, "channel_wbits", where, path, 0, kMaxWeightBits);
  // With channel_wbits, an explicit wbits may be 0 (fully pruned) and must equal their maximum.
  auto wb = opt_integer(e, "wbits", where, path, ch ? 0 : kMinWeightBits, kMaxWeightBits);
  auto ab = opt_integer(e, "abits", where, path, kMinActBits, kMaxActBits);
  auto gr = opt_string(e, "granularity", where, path, {"per_channel", "per_tensor"});
  if (!base && !wb && !ch)
    fail("{}: missing field '{}' (expected an integer in {}..{}; or give a \"default\" entry)",
         where, join(path, "wbits"), kMinWeightBits, kMaxWeightBits);
  if (!base && !ab)
    fail("{}: missing field '{}' (expected an integer in {}..{}; or give a \"default\" entry)",
         where, join(path, "abits"), kMinActBits, kMaxActBits);
  if (wb) lb.wbits = static_cast<int>(*wb);
  if (ab) lb.abits = static_cast<int>(*ab);
  if (gr) lb.granularity = parse_granularity(*gr);
  lb.channel_wbits.clear();
  if (ch) {
    if (ch->empty())
      fail("{}: field '{}' is empty (expected one bitwidth per output channel)", where,
           join(path, "channel_wbits"));
    if (wb && *wb != max_of(*ch))
      fail(
          "{}: field '{}' = {} disagrees with the largest entry of channel_wbits ({}); leave "
          "wbits out or make it equal",
          where, join(path, "wbits"), *wb, max_of(*ch));
    lb.channel_wbits = std::move(*ch);
    lb.wbits = max_of(lb.channel_wbits);
  }
  return lb;
}

// A layer entry on one line: {"wbits": 4, "abits": 8, "granularity": "per_channel"}.
std::string entry_text(const LayerBits& lb) {
  std::string s = fmt::format("{{\"wbits\": {}, \"abits\": {}, \"granularity\": \"{}\"", lb.wbits,
                              lb.abits, granularity_name(lb.granularity));
  if (!lb.channel_wbits.empty()) {
    s += ", \"channel_wbits\": [";
    for (size_t i = 0; i < lb.channel_wbits.size(); ++i)
      s += (i ? ", " : "") + std::to_string(lb.channel_wbits[i]);
    s += "]";
  }
  return s + "}";
}

nlohmann::ordered_json entry_json(const LayerBits& lb) {
  nlohmann::ordered_json j = {
      {"wbits", lb.wbits}, {"abits", lb.abits}, {"granularity", granularity_name(lb.granularity)}};
  if (!lb.channel_wbits.empty()) j["channel_wbits"] = lb.channel_wbits;
  return j;
}

// Layer names in graph order (those the graph knows), then any others alphabetically.
std::vector<std::string> ordered_names(const BitConfig& b, const Graph* g) {
  std::vector<std::string> names;
  if (g)
    for (const Node& n : g->nodes)
      if (b.layers.count(n.name)) names.push_back(n.name);
  for (const auto& [name, lb] : b.layers)
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  return names;
}

std::string weight_layer_list(const Graph& g) {
  std::vector<int> wl = g.weight_layers();
  std::string s;
  for (size_t i = 0; i < wl.size() && i < 5; ++i) s += (i ? ", " : "") + g.nodes[wl[i]].name;
  if (wl.size() > 5) s += fmt::format(", ... ({} in all)", wl.size());
  return s;
}

void check_ranges(const LayerBits& lb, const std::string& where, const std::string& path) {
  if (lb.channel_wbits.empty() && (lb.wbits < kMinWeightBits || lb.wbits > kMaxWeightBits))
    fail("{}: {}.wbits = {} is out of range (expected {}..{})", where, path, lb.wbits,
         kMinWeightBits, kMaxWeightBits);
  if (lb.abits < kMinActBits || lb.abits > kMaxActBits)
    fail("{}: {}.abits = {} is out of range (expected {}..{})", where, path, lb.abits, kMinActBits,
         kMaxActBits);
  for (size_t c = 0; c < lb.channel_wbits.size(); ++c)
    if (lb.channel_wbits[c] < 0 || lb.channel_wbits[c] > kMaxWeightBits)
      fail("{}: {}.channel_wbits[{}] = {} is out of range (expected 0 (pruned) or 1..{})", where,
           path, c, lb.channel_wbits[c], kMaxWeightBits);
  if (!lb.channel_wbits.empty() && lb.granularity == Granularity::PerTensor)
    fail(
        "{}: {} has channel_wbits with granularity \"per_tensor\" (per-channel bitwidths need "
        "per-channel scales: use \"per_channel\")",
        where, path);
}

}  // namespace

const char* granularity_name(Granularity g) {
  return g == Granularity::PerTensor ? "per_tensor" : "per_channel";
}

const LayerBits& BitConfig::for_layer(const std::string& name) const {
  auto it = layers.find(name);
  if (it != layers.end()) return it->second;
  if (default_bits) return *default_bits;
  fail("bit configuration: no entry for weight layer '{}' and no default", name);
}

BitConfig BitConfig::uniform(const Graph& g, int wbits, int abits) {
  BitConfig b;
  b.model = g.name;
  LayerBits lb;
  lb.wbits = wbits;
  lb.abits = abits;
  for (int i : g.weight_layers()) b.layers[g.nodes[i].name] = lb;
  return b;
}

nlohmann::ordered_json bits_to_json(const BitConfig& b, const Graph* g) {
  nlohmann::ordered_json j;
  j["format"] = kFormatTag;
  j["version"] = kBitsFormatVersion;
  if (!b.model.empty()) j["model"] = b.model;
  if (b.default_bits) j["default"] = entry_json(*b.default_bits);
  nlohmann::ordered_json layers = nlohmann::ordered_json::object();
  for (const auto& name : ordered_names(b, g)) layers[name] = entry_json(b.layers.at(name));
  j["layers"] = layers;
  return j;
}

BitConfig bits_from_json(const nlohmann::json& j, const std::string& where) {
  using namespace jsonf;
  require_object(j, where, "");
  check_keys(j, where, "", {"format", "version", "model", "default", "layers"});
  auto fmt_tag = opt_string(j, "format", where, "", {kFormatTag});
  if (!fmt_tag) fail("{}: missing field 'format' (expected \"{}\")", where, kFormatTag);
  auto ver = opt_integer(j, "version", where, "", 1, 1000000);
  if (!ver) fail("{}: missing field 'version' (expected {})", where, kBitsFormatVersion);
  if (*ver != kBitsFormatVersion)
    fail("{}: field 'version' is {} (this program reads version {})", where, *ver,
         kBitsFormatVersion);
  BitConfig b;
  b.model = opt_string(j, "model", where, "").value_or("");
  if (j.contains("default"))
    b.default_bits = parse_entry(j.at("default"), where, "default", std::nullopt, true);
  if (!j.contains("layers")) {
    if (!b.default_bits)
      fail("{}: missing field 'layers' (expected an object keyed by layer name, or a \"default\")",
           where);
    return b;
  }
  const auto& layers = j.at("layers");
  require_object(layers, where, "layers");
  for (auto it = layers.begin(); it != layers.end(); ++it)
    b.layers[it.key()] =
        parse_entry(it.value(), where, "layers." + it.key(), b.default_bits, false);
  return b;
}

BitConfig load_bits(const std::string& path) {
  return bits_from_json(jsonf::read_json_file(path), path);
}

void save_bits(const std::string& path, const BitConfig& b, const Graph* g) {
  // Hand-editable layout: one layer per line.
  std::string s = fmt::format("{{\n  \"format\": \"{}\",\n  \"version\": {},\n", kFormatTag,
                              kBitsFormatVersion);
  if (!b.model.empty()) s += fmt::format("  \"model\": {},\n", nlohmann::json(b.model).dump());
  if (b.default_bits) s += fmt::format("  \"default\": {},\n", entry_text(*b.default_bits));
  s += "  \"layers\": {";
  std::vector<std::string> names = ordered_names(b, g);
  for (size_t i = 0; i < names.size(); ++i)
    s += fmt::format("{}\n    {}: {}", i ? "," : "", nlohmann::json(names[i]).dump(),
                     entry_text(b.layers.at(names[i])));
  s += names.empty() ? "}\n}\n" : "\n  }\n}\n";
  write_file_atomic(path, s);
}

void validate_bits(const BitConfig& b, const Graph& g, const std::string& where) {
  if (b.default_bits) check_ranges(*b.default_bits, where, "default");
  for (const auto& [name, lb] : b.layers) {
    const std::string path = "layers." + name;
    int idx = -1;
    for (size_t i = 0; i < g.nodes.size() && idx < 0; ++i)
      if (g.nodes[i].name == name) idx = static_cast<int>(i);
    if (idx < 0)
      fail("{}: {}: model '{}' has no layer named '{}' (weight layers: {})", where, path, g.name,
           name, weight_layer_list(g));
    const Node& n = g.nodes[idx];
    if (!is_weight_layer(n))
      fail(
          "{}: {}: '{}' is a {} node, not a weight layer (expected conv2d or linear; weight "
          "layers: {})",
          where, path, name, op_name(n.op), weight_layer_list(g));
    check_ranges(lb, where, path);
    if (!lb.channel_wbits.empty() &&
        static_cast<int64_t>(lb.channel_wbits.size()) != n.out_channels)
      fail("{}: {}.channel_wbits has {} entries (expected {}, one per output channel of {} '{}')",
           where, path, lb.channel_wbits.size(), n.out_channels, op_name(n.op), name);
  }
  if (!b.default_bits) {
    std::vector<std::string> missing;
    for (int i : g.weight_layers())
      if (!b.layers.count(g.nodes[i].name)) missing.push_back(g.nodes[i].name);
    if (!missing.empty()) {
      std::string list;
      for (size_t i = 0; i < missing.size() && i < 5; ++i) list += (i ? ", " : "") + missing[i];
      if (missing.size() > 5) list += fmt::format(", ... ({} missing)", missing.size());
      fail(
          "{}: no entry for weight layer{} {} and no \"default\" (expected an entry for each of "
          "the {} weight layers of '{}', or a default)",
          where, missing.size() > 1 ? "s" : "", list, g.weight_layers().size(), g.name);
    }
  }
}

double average_weight_bits(const BitConfig& b, const Graph& g) {
  double bits = 0, weights = 0;
  for (int i : g.weight_layers()) {
    const Node& n = g.nodes[i];
    const LayerBits& lb = b.for_layer(n.name);
    const double per_channel = static_cast<double>(numel(g.expected_param_shapes(i).at("weight"))) /
                               static_cast<double>(n.out_channels);
    for (int64_t c = 0; c < n.out_channels; ++c) bits += per_channel * lb.channel_bits(c);
    weights += per_channel * static_cast<double>(n.out_channels);
  }
  return weights > 0 ? bits / weights : 0.0;
}

}  // namespace sq
