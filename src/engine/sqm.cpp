// .sqm model files. Layout (all integers little-endian; docs/formats.md, ".sqm"):
//   0   u8[8]   magic 89 'S' 'Q' 'M' 0D 0A 1A 0A
//   8   u32     format version (kSqmVersion)
//   12  u32     section count N (1..kMaxSections)
//   16  N × 32  section table: char name[12] (NUL-padded), u32 CRC-32 of the section,
//               u64 offset (from the start of the file), u64 size
//   ..  bytes   the sections: "header" (u32 JSON length, then the JSON deflated by zlib),
//               "weights" (every layer's rows bit-packed, engine.h's pack_rows layout),
//               "scales" (f32 per output channel, layer by layer), "bias" (f32 likewise: the
//               int32 bias and the requantization derive from it, channel_bias)
//   end u32     CRC-32 (zlib) of every byte before it
#include "sigmaquant/sqm.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "../util/binio.h"
#include "sigmaquant/engine.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/graph_io.h"
#include "sigmaquant/qmodel.h"

namespace sq {
namespace {

constexpr uint8_t kMagic[8] = {0x89, 'S', 'Q', 'M', 0x0D, 0x0A, 0x1A, 0x0A};
constexpr size_t kPreamble = 16, kEntry = 32, kNameLen = 12;
constexpr uint32_t kMaxSections = 64;
constexpr uint32_t kMaxHeaderBytes = 64u << 20;  // inflated JSON
constexpr int kMaxHeaderDepth = 256;
constexpr int64_t kMaxTensor = int64_t{1} << 28;  // elements of any activation tensor
// Weights of all layers (0-bit ones take no bytes): 2^30, so VGG's 133 M load (the packed bytes are
// checked against the file's weights section, so a header cannot make the loader allocate more
// than the file holds).
constexpr int64_t kMaxWeights = int64_t{1} << 30;
static_assert(sizeof(float) == 4, "f32 scales");

using binio::crc32_of;
using binio::get_at;
using binio::put;

int64_t rows_of(const Graph& g, const IntLayer& L) { return g.nodes[L.node].out_channels; }

// Typed JSON access with errors naming the file, the field and what was expected.
const nlohmann::json& at(const nlohmann::json& j, const char* key, const std::string& w) {
  if (!j.is_object() || !j.contains(key)) fail("{}: missing field '{}'", w, key);
  return j[key];
}
int64_t int_at(const nlohmann::json& j, const char* key, const std::string& w, int64_t lo,
               int64_t hi) {
  const auto& v = at(j, key, w);
  if (!v.is_number_integer()) fail("{}: field '{}' must be an integer", w, key);
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi) fail("{}: field '{}' is {} (expected {}..{})", w, key, x, lo, hi);
  return x;
}
double num_at(const nlohmann::json& j, const char* key, const std::string& w) {
  const auto& v = at(j, key, w);
  if (!v.is_number()) fail("{}: field '{}' must be a number", w, key);
  const double x = v.get<double>();
  if (!std::isfinite(x)) fail("{}: field '{}' is not finite", w, key);
  return x;
}
int node_at(const Graph& g, const nlohmann::json& j, const char* key, const std::string& w) {
  const auto& v = at(j, key, w);
  if (!v.is_string()) fail("{}: field '{}' must be a node name", w, key);
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (g.nodes[i].name == v.get<std::string>()) return static_cast<int>(i);
  fail("{}: field '{}' names '{}', which is not a node of the graph", w, key, v.get<std::string>());
}

// Every conv/pool window in version 1's form (kSqmVersionSquare).
bool all_square(const Graph& g) {
  for (const Node& n : g.nodes)
    if ((n.op == Op::Conv2d || n.op == Op::MaxPool || n.op == Op::AvgPool) && !n.window.is_square())
      return false;
  return true;
}

}  // namespace

void save_sqm(const std::string& path, const Graph& g0, const IntModel& im0,
              const nlohmann::json& meta) {
  // A batchnorm reading the input is stored folded into the input normalization (the file holds
  // no float parameters to run it with), exactly as GraphExecutor::prepare folds it.
  Graph folded_g;
  IntModel folded_im;
  const bool fold = g0.nodes.size() > 1 && g0.nodes[0].op == Op::Input &&
                    std::any_of(g0.nodes.begin(), g0.nodes.end(), [](const Node& n) {
                      return n.op == Op::BatchNorm && n.inputs.size() == 1 && n.inputs[0] == 0;
                    });
  if (fold) {
    folded_g = g0;
    folded_im = im0;
    try {
      fold_input_batchnorm(folded_g, folded_im);
    } catch (const Error& e) {
      fail("{}: {}", path, e.what());
    }
  }
  const Graph& g = fold ? folded_g : g0;
  const IntModel& im = fold ? folded_im : im0;
  const auto wl = g.weight_layers();
  if (wl.size() != im.layers.size())
    fail("{}: the integer model has {} layers (expected {}, one per weight layer)", path,
         im.layers.size(), wl.size());
  nlohmann::json points = nlohmann::json::array();
  for (const auto& [node, q] : im.points) {
    if (node < 0 || node >= static_cast<int>(g.nodes.size()))
      fail("{}: quantization point at node {} (expected 0..{})", path, node, g.nodes.size() - 1);
    if (q.bits < 1 || q.bits > 8 || !(q.scale > 0) || !std::isfinite(q.scale) ||
        q.zero_point < 0 || q.zero_point > q.qmax())
      fail(
          "{}: quantization point '{}': {} bits, scale {}, zero point {} (expected 1..8 bits, a "
          "finite scale > 0, 0 <= zero point <= 2^bits - 1)",
          path, g.nodes[node].name, q.bits, q.scale, q.zero_point);
    points.push_back({{"node", g.nodes[node].name},
                      {"bits", q.bits},
                      {"scale", q.scale},
                      {"zero_point", q.zero_point}});
  }
  std::string weights, scales, bias;
  nlohmann::json layers = nlohmann::json::array();
  for (size_t li = 0; li < im.layers.size(); ++li) {
    const IntLayer& L = im.layers[li];
    if (L.node != wl[li] || g.nodes[L.node].name != L.name)
      fail("{}: layer {} is '{}' (expected weight layer '{}')", path, li, L.name,
           g.nodes[wl[li]].name);
    const int64_t rows = rows_of(g, L);
    if (rows <= 0 || static_cast<int64_t>(L.weights.size()) % rows ||
        static_cast<int64_t>(L.channel_bits.size()) != rows ||
        static_cast<int64_t>(L.weight_scales.size()) != rows ||
        static_cast<int64_t>(L.bias.size()) != rows ||
        static_cast<int64_t>(L.bias_float.size()) != rows)
      fail(
          "{}: layer '{}' has {} weights, {} channel bits, {} scales, {} biases, {} float biases "
          "for {} channels (expected integerize()'s tensors)",
          path, L.name, L.weights.size(), L.channel_bits.size(), L.weight_scales.size(),
          L.bias.size(), L.bias_float.size(), rows);
    for (int key : {L.in_node, L.out_node})
      if (key >= 0 && !im.points.count(key))
        fail("{}: layer '{}' uses node {}, which is not a quantization point", path, L.name, key);
    if (L.in_node < 0) fail("{}: layer '{}' reads no quantization point", path, L.name);
    // What load_sqm refuses is refused here, before a file is written that cannot be run.
    for (int64_t c = 0; c < rows; ++c) {
      if (!std::isfinite(L.weight_scales[c]) || L.weight_scales[c] < 0)
        fail("{}: layer '{}': channel {} has weight scale {} (expected a finite number >= 0)",
             path, L.name, c, L.weight_scales[c]);
      if (!std::isfinite(L.bias_float[c]))
        fail("{}: layer '{}': channel {} has bias {} (expected a finite number)", path, L.name, c,
             L.bias_float[c]);
    }
    const int64_t cols = static_cast<int64_t>(L.weights.size()) / rows;
    const PackedRows p = pack_rows(L.weights, rows, cols, L.channel_bits);
    nlohmann::json jl = {{"name", L.name},
                         {"in", g.nodes[L.in_node].name},
                         {"out", L.out_node >= 0 ? nlohmann::json(g.nodes[L.out_node].name)
                                                 : nlohmann::json(nullptr)},
                         {"lo", L.out_lo},
                         {"hi", L.out_hi},
                         {"weights_offset", weights.size()},
                         {"weights_bytes", p.data.size()}};
    bool uniform = true;
    for (int b : L.channel_bits) uniform &= b == L.channel_bits[0];
    jl["bits"] = uniform ? nlohmann::json(L.channel_bits[0]) : nlohmann::json(L.channel_bits);
    layers.push_back(jl);
    weights.append(reinterpret_cast<const char*>(p.data.data()), p.data.size());
    for (int64_t c = 0; c < rows; ++c) {
      put<float>(scales, L.weight_scales[c]);
      put<float>(bias, L.bias_float[c]);
    }
  }
  // Standalone batchnorms (DenseNet's after a concat): the engine builds their tables from these.
  nlohmann::json bns = nlohmann::json::array();
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (!standalone_batchnorm(g, static_cast<int>(i))) continue;
    nlohmann::json jb = {{"node", g.nodes[i].name}};
    for (const auto& [key, shape] : g.expected_param_shapes(static_cast<int>(i))) {
      auto it = g.nodes[i].params.find(key);
      if (it == g.nodes[i].params.end() || it->second.shape != shape ||
          it->second.size() != numel(shape))
        fail("{}: batchnorm '{}' has no '{}' of shape {}", path, g.nodes[i].name, key,
             shape_str(shape));
      for (float v : it->second.data)
        if (!std::isfinite(v))
          fail("{}: batchnorm '{}': '{}' holds {} (expected finite values)", path, g.nodes[i].name,
               key, v);
      jb[key] = it->second.data;
    }
    bns.push_back(std::move(jb));
  }
  nlohmann::json header = {
      {"graph", graph_to_json(g)}, {"points", points}, {"layers", layers}, {"meta", meta}};
  if (!bns.empty()) header["batchnorms"] = std::move(bns);
  const std::string text = header.dump();
  uLongf zlen = compressBound(static_cast<uLong>(text.size()));
  std::string z(zlen, '\0');
  if (compress2(reinterpret_cast<Bytef*>(z.data()), &zlen,
                reinterpret_cast<const Bytef*>(text.data()), static_cast<uLong>(text.size()),
                Z_BEST_COMPRESSION) != Z_OK)
    fail("{}: cannot compress the header", path);
  z.resize(zlen);
  std::string head;
  put<uint32_t>(head, static_cast<uint32_t>(text.size()));
  head += z;

  const std::pair<const char*, const std::string*> sections[] = {
      {"header", &head}, {"weights", &weights}, {"scales", &scales}, {"bias", &bias}};
  const uint32_t n = 4;
  std::string out(reinterpret_cast<const char*>(kMagic), sizeof(kMagic));
  put<uint32_t>(out, all_square(g) ? kSqmVersionSquare : kSqmVersion);
  put<uint32_t>(out, n);
  uint64_t off = kPreamble + n * kEntry;
  for (const auto& [name, data] : sections) {
    char nm[kNameLen] = {};
    std::strncpy(nm, name, kNameLen - 1);
    out.append(nm, kNameLen);
    put<uint32_t>(out, crc32_of(data->data(), data->size()));
    put<uint64_t>(out, off);
    put<uint64_t>(out, data->size());
    off += data->size();
  }
  for (const auto& [name, data] : sections) out += *data;
  put<uint32_t>(out, crc32_of(out.data(), out.size()));
  write_file_atomic(path, out);
}

SqmModel load_sqm(const std::string& path) { return parse_sqm(read_file(path), path); }

SqmModel parse_sqm(const std::string& s, const std::string& path) {
  if (s.size() < kPreamble + 4)
    fail("{}: truncated: {} bytes (expected at least {} for a .sqm file)", path, s.size(),
         kPreamble + 4);
  if (std::memcmp(s.data(), kMagic, sizeof(kMagic)) != 0)
    fail("{}: bad magic: not a SigmaQuant model file (.sqm)", path);
  const uint32_t version = get_at<uint32_t>(s, 8);
  if (version != kSqmVersion && version != kSqmVersionSquare)
    fail("{}: format version {} is not supported (expected {} or {})", path, version,
         kSqmVersionSquare, kSqmVersion);
  const uint32_t n = get_at<uint32_t>(s, 12);
  if (n < 1 || n > kMaxSections) fail("{}: {} sections (expected 1..{})", path, n, kMaxSections);
  if (s.size() < kPreamble + n * kEntry + 4)
    fail("{}: truncated: {} bytes (expected at least {} for {} sections)", path, s.size(),
         kPreamble + n * kEntry + 4, n);
  if (crc32_of(s.data(), s.size() - 4) != get_at<uint32_t>(s, s.size() - 4))
    fail(
        "{}: checksum mismatch: the file is corrupt or truncated (expected the CRC-32 in its "
        "last 4 bytes)",
        path);
  const uint64_t end = s.size() - 4;
  std::map<std::string, std::string> sec;
  for (uint32_t k = 0; k < n; ++k) {
    const size_t e = kPreamble + k * kEntry;
    std::string name(s.data() + e, kNameLen);
    name.resize(std::strlen(name.c_str()));
    const uint32_t crc = get_at<uint32_t>(s, e + kNameLen);
    const uint64_t off = get_at<uint64_t>(s, e + kNameLen + 4),
                   size = get_at<uint64_t>(s, e + kNameLen + 12);
    if (off < kPreamble + n * kEntry || off > end || size > end - off)
      fail("{}: section '{}' at [{}, +{}) lies outside the data ({}..{})", path, name, off, size,
           kPreamble + n * kEntry, end);
    if (crc32_of(s.data() + off, size) != crc)
      fail("{}: section '{}' checksum mismatch (corrupt)", path, name);
    if (!sec.emplace(name, s.substr(off, size)).second)
      fail("{}: section '{}' appears twice", path, name);
  }
  for (const char* need : {"header", "weights", "scales", "bias"})
    if (!sec.count(need))
      fail("{}: no '{}' section (expected header, weights, scales, bias)", path, need);

  // The header: u32 inflated length, deflated JSON.
  const std::string& hz = sec["header"];
  if (hz.size() < 4)
    fail("{}: section 'header' holds {} bytes (expected at least 4)", path, hz.size());
  const uint32_t hlen = get_at<uint32_t>(hz, 0);
  if (hlen > kMaxHeaderBytes)
    fail("{}: header of {} bytes (expected at most {})", path, hlen, kMaxHeaderBytes);
  std::string text(hlen, '\0');
  uLongf got = hlen;
  if (uncompress(reinterpret_cast<Bytef*>(text.data()), &got,
                 reinterpret_cast<const Bytef*>(hz.data() + 4),
                 static_cast<uLong>(hz.size() - 4)) != Z_OK ||
      got != hlen)
    fail("{}: header does not inflate to the {} bytes it declares (corrupt)", path, hlen);
  const nlohmann::json h = parse_json_strict(text, path + ": header", kMaxHeaderDepth);
  if (!h.is_object()) fail("{}: header is not a JSON object", path);

  SqmModel m;
  m.graph = graph_from_json(at(h, "graph", path), path + ": header.graph");
  if (version == kSqmVersionSquare && !all_square(m.graph))
    fail("{}: format version 1 holds a non-square or dilated window (expected version 2)", path);
  const Graph& g = m.graph;
  for (const Node& nd : g.nodes) {
    int64_t numel = 1;
    for (int64_t d : nd.op == Op::Input ? g.input_shape : nd.out_shape)
      numel = std::min(numel * std::max<int64_t>(d, 1), kMaxTensor + 1);
    if (numel > kMaxTensor)
      fail("{}: node '{}' holds more than {} elements (expected a model the engine can run)", path,
           nd.name, kMaxTensor);
  }
  if (h.contains("meta")) m.meta = h["meta"];

  const auto& jp = at(h, "points", path);
  if (!jp.is_array()) fail("{}: header.points must be an array", path);
  for (size_t k = 0; k < jp.size(); ++k) {
    const std::string w = fmt::format("{}: header.points[{}]", path, k);
    const int node = node_at(g, jp[k], "node", w);
    ActQuant q;
    q.bits = static_cast<int>(int_at(jp[k], "bits", w, 1, 8));
    q.scale = static_cast<float>(num_at(jp[k], "scale", w));
    if (!(q.scale > 0) || !std::isfinite(q.scale))
      fail("{}: scale {} (expected a positive float)", w, q.scale);
    q.zero_point = static_cast<int32_t>(int_at(jp[k], "zero_point", w, 0, q.qmax()));
    // The calibrated float range is informational (the engine runs on scale and zero point):
    // not stored since it cost ~30 % of the header; older files may hold it.
    q.lo = jp[k].contains("lo") ? num_at(jp[k], "lo", w) : q.scale * (0.0 - q.zero_point);
    q.hi = jp[k].contains("hi") ? num_at(jp[k], "hi", w) : q.scale * (double(q.qmax()) - q.zero_point);
    if (!m.model.points.emplace(node, q).second)
      fail("{}: node '{}' has a second quantization point", w, g.nodes[node].name);
  }

  // Standalone batchnorms' parameters, one entry each.
  std::vector<bool> bn_seen(g.nodes.size(), false);
  if (h.contains("batchnorms")) {
    const auto& jb = h["batchnorms"];
    if (!jb.is_array()) fail("{}: header.batchnorms must be an array", path);
    for (size_t k = 0; k < jb.size(); ++k) {
      const std::string w = fmt::format("{}: header.batchnorms[{}]", path, k);
      const int node = node_at(g, jb[k], "node", w);
      if (!standalone_batchnorm(g, node) || bn_seen[static_cast<size_t>(node)])
        fail("{}: '{}' (expected a batchnorm that no layer absorbs, listed once)", w,
             g.nodes[node].name);
      bn_seen[static_cast<size_t>(node)] = true;
      Node& nd = m.graph.nodes[static_cast<size_t>(node)];
      for (const auto& [key, shape] : g.expected_param_shapes(node)) {
        const auto& v = at(jb[k], key.c_str(), w);
        const int64_t c = numel(shape);
        if (!v.is_array() || static_cast<int64_t>(v.size()) != c)
          fail("{}: field '{}' must be an array of {} numbers (one per channel)", w, key, c);
        Tensor t(shape, 0.0f);
        for (int64_t i = 0; i < c; ++i) {
          if (!v[static_cast<size_t>(i)].is_number() ||
              !std::isfinite(v[static_cast<size_t>(i)].get<double>()))
            fail("{}: field '{}'[{}] is not a finite number", w, key, i);
          t.data[static_cast<size_t>(i)] = v[static_cast<size_t>(i)].get<float>();
        }
        nd.params[key] = std::move(t);
      }
    }
  }
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (standalone_batchnorm(g, static_cast<int>(i)) && !bn_seen[i])
      fail("{}: batchnorm '{}' has no entry in header.batchnorms (expected its parameters)", path,
           g.nodes[i].name);

  const auto& jl = at(h, "layers", path);
  const auto wl = g.weight_layers();
  if (!jl.is_array() || jl.size() != wl.size())
    fail("{}: header.layers holds {} entries (expected {}, one per weight layer of the graph)",
         path, jl.is_array() ? jl.size() : 0, wl.size());
  const std::string& weights = sec["weights"];
  const std::string& scales = sec["scales"];
  const std::string& bias = sec["bias"];
  size_t channel = 0;  // into scales / bias
  int64_t channels_total = 0, weights_total = 0;
  for (int node : wl) {
    channels_total += g.nodes[node].out_channels;
    weights_total += std::min(numel(g.expected_param_shapes(node).at("weight")), kMaxWeights + 1);
    if (weights_total > kMaxWeights)
      fail("{}: the graph has more than {} weights (expected a model the engine can hold)", path,
           kMaxWeights);
  }
  if (scales.size() != static_cast<size_t>(channels_total) * 4 ||
      bias.size() != static_cast<size_t>(channels_total) * 4)
    fail(
        "{}: sections 'scales' and 'bias' hold {} and {} bytes (expected {} each: 4 per output "
        "channel)",
        path, scales.size(), bias.size(), channels_total * 4);
  for (size_t li = 0; li < wl.size(); ++li) {
    const std::string w = fmt::format("{}: header.layers[{}]", path, li);
    const Node& nd = g.nodes[wl[li]];
    IntLayer L;
    L.name = at(jl[li], "name", w).is_string() ? jl[li]["name"].get<std::string>() : "";
    if (L.name != nd.name)
      fail("{}: name '{}' (expected '{}', the graph's weight layer {})", w, L.name, nd.name, li);
    L.node = wl[li];
    const int64_t rows = nd.out_channels;
    const int64_t cols = rows > 0 ? numel(g.expected_param_shapes(wl[li]).at("weight")) / rows : 0;
    if (rows <= 0 || cols <= 0) fail("{}: layer '{}' has no weights", w, nd.name);
    const auto& jb = at(jl[li], "bits", w);
    if (jb.is_number_integer()) {
      L.channel_bits.assign(static_cast<size_t>(rows),
                            static_cast<int>(int_at(jl[li], "bits", w, 0, 8)));
    } else if (jb.is_array() && static_cast<int64_t>(jb.size()) == rows) {
      for (const auto& b : jb) {
        if (!b.is_number_integer() || b.get<int64_t>() < 0 || b.get<int64_t>() > 8)
          fail("{}: field 'bits' holds {} (expected integers 0..8)", w, b.dump());
        L.channel_bits.push_back(static_cast<int>(b.get<int64_t>()));
      }
    } else {
      fail("{}: field 'bits' must be 0..8 or an array of {} such values (one per channel)", w,
           rows);
    }
    L.in_node = node_at(g, jl[li], "in", w);
    if (L.in_node != nd.inputs.at(0))
      fail("{}: reads '{}' (expected its input '{}')", w, g.nodes[L.in_node].name,
           g.nodes[nd.inputs[0]].name);
    auto point = [&](int node) -> const ActQuant& {
      auto it = m.model.points.find(node);
      if (it == m.model.points.end())
        fail("{}: '{}' is not a quantization point in header.points", w, g.nodes[node].name);
      return it->second;
    };
    const ActQuant& in = point(L.in_node);
    L.in_scale = in.scale;
    L.in_zero_point = in.zero_point;
    if (!at(jl[li], "out", w).is_null()) {
      L.out_node = node_at(g, jl[li], "out", w);
      const ActQuant& out = point(L.out_node);
      L.out_scale = out.scale;
      L.out_zero_point = out.zero_point;
      L.out_lo = static_cast<int32_t>(int_at(jl[li], "lo", w, 0, out.qmax()));
      L.out_hi = static_cast<int32_t>(int_at(jl[li], "hi", w, L.out_lo, out.qmax()));
    }
    // The packed rows: each at its channel's width, byte-aligned.
    const int64_t off =
        int_at(jl[li], "weights_offset", w, 0, static_cast<int64_t>(weights.size()));
    const int64_t nb =
        int_at(jl[li], "weights_bytes", w, 0, static_cast<int64_t>(weights.size()) - off);
    PackedRows p;
    p.rows = rows;
    p.cols = cols;
    p.offset.push_back(0);
    for (int64_t r = 0; r < rows; ++r) {
      p.row_bits.push_back(static_cast<uint8_t>(L.channel_bits[r]));
      p.offset.push_back(p.offset.back() +
                         packed_bytes(static_cast<size_t>(cols), L.channel_bits[r]));
    }
    if (p.offset.back() != static_cast<uint64_t>(nb))
      fail("{}: {} bytes of packed weights (expected {} for {}x{} weights at the channels' bits)",
           w, nb, p.offset.back(), rows, cols);
    p.data.assign(weights.begin() + off, weights.begin() + off + nb);
    L.weights = unpack_rows(p);
    for (int64_t c = 0; c < rows; ++c, ++channel) {
      const float sw = get_at<float>(scales, channel * 4);
      if (!std::isfinite(sw) || sw < 0)
        fail("{}: channel {} has weight scale {} (expected finite, >= 0)", w, c, sw);
      L.weight_scales.push_back(sw);
      const float b = get_at<float>(bias, channel * 4);
      if (!std::isfinite(b)) fail("{}: channel {} has bias {} (expected finite)", w, c, b);
      // As integerize(): the int32 bias and the requantization (empty for a float output).
      const ChannelBias cb =
          channel_bias(b, accumulator_unit(L.in_scale, sw), L.out_node >= 0 ? L.out_scale : 0.0f);
      L.bias.push_back(cb.bias);
      L.bias_float.push_back(cb.bias_float);
      L.requant.push_back(cb.requant);
    }
    m.model.layers.push_back(std::move(L));
  }
  return m;
}

}  // namespace sq
