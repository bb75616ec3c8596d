// .sqg graph files. Layout (all integers little-endian; see docs/formats.md):
//   0  char[8]  magic "SQGRAPH\0"
//   8  u32      format version (kGraphFormatVersion)
//   12 u32      reserved, 0
//   16 u64      header length H
//   24 char[H]  header: UTF-8 JSON {graph, tensors[], blobs[], meta}
//   .. bytes    payload: tensors (float32) and blobs, at the offsets the header gives
//   end u32     CRC-32 (zlib) of every byte before it
#include "../util/binio.h"
#include "sigmaquant/graph_io.h"

#include <zlib.h>

#include <cmath>
#include <cstring>
#include <set>

#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"

namespace sq {
namespace {

constexpr char kMagic[8] = {'S', 'Q', 'G', 'R', 'A', 'P', 'H', '\0'};
constexpr size_t kPreamble = 24;
constexpr int kMaxHeaderDepth = 256;
static_assert(sizeof(float) == 4, "float32 payload");

using binio::crc32_of;
using binio::get_at;
using binio::put;

// Typed access to a JSON field with an error naming where it is and what was expected.
const nlohmann::json& field(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.is_object() || !j.contains(key)) fail("{}: missing field '{}'", where, key);
  return j.at(key);
}
int64_t int_field(const nlohmann::json& j, const char* key, const std::string& where) {
  const auto& v = field(j, key, where);
  if (!v.is_number_integer()) fail("{}: field '{}' must be an integer", where, key);
  return v.get<int64_t>();
}
std::string str_field(const nlohmann::json& j, const char* key, const std::string& where) {
  const auto& v = field(j, key, where);
  if (!v.is_string()) fail("{}: field '{}' must be a string", where, key);
  return v.get<std::string>();
}
Shape shape_field(const nlohmann::json& j, const char* key, const std::string& where) {
  const auto& v = field(j, key, where);
  if (!v.is_array()) fail("{}: field '{}' must be an array of integers", where, key);
  Shape s;
  for (const auto& d : v) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0)
      fail("{}: field '{}' must be an array of non-negative integers", where, key);
    s.push_back(d.get<int64_t>());
  }
  return s;
}
std::vector<float> floats_field(const nlohmann::json& j, const char* key, const std::string& where) {
  std::vector<float> out;
  if (!j.contains(key)) return out;
  const auto& v = j.at(key);
  if (!v.is_array()) fail("{}: field '{}' must be an array of numbers", where, key);
  for (const auto& x : v) {
    if (!x.is_number()) fail("{}: field '{}' must be an array of numbers", where, key);
    out.push_back(x.get<float>());
    if (!std::isfinite(out.back()))
      fail("{}: field '{}' holds {} at index {} (expected finite numbers)", where, key,
           x.dump(), out.size() - 1);
  }
  return out;
}

// A window attribute: one integer (the same along H and W, and on every side for padding) or an
// array of 2 ([H, W]; padding: [top and bottom, left and right]) or, for padding only, 4 values
// ([top, left, bottom, right], ONNX's pads order). Files before non-square windows hold integers.
std::vector<int64_t> window_field(const nlohmann::json& j, const char* key, size_t max_values,
                                  const std::string& where) {
  const auto& v = j.at(key);
  const char* expected = max_values == 4 ? "an integer or an array of 2 or 4 integers"
                                         : "an integer or an array of 2 integers";
  if (v.is_number_integer()) return {v.get<int64_t>()};
  if (!v.is_array() || (v.size() != 2 && v.size() != max_values))
    fail("{}: field '{}' must be {}", where, key, expected);
  std::vector<int64_t> out;
  for (const auto& x : v) {
    if (!x.is_number_integer()) fail("{}: field '{}' must be {}", where, key, expected);
    out.push_back(x.get<int64_t>());
  }
  return out;
}

void read_window(const nlohmann::json& jn, Window2d& w, const std::string& where) {
  if (jn.contains("kernel")) {
    const auto v = window_field(jn, "kernel", 2, where);
    w.kernel_h = v[0];
    w.kernel_w = v.back();
  }
  if (jn.contains("stride")) {
    const auto v = window_field(jn, "stride", 2, where);
    w.stride_h = v[0];
    w.stride_w = v.back();
  }
  if (jn.contains("padding")) {
    const auto v = window_field(jn, "padding", 4, where);
    w.pad_top = v[0];
    w.pad_left = v.size() == 1 ? v[0] : v[1];
    w.pad_bottom = v.size() == 4 ? v[2] : w.pad_top;
    w.pad_right = v.size() == 4 ? v[3] : w.pad_left;
  }
  if (jn.contains("dilation")) {
    const auto v = window_field(jn, "dilation", 2, where);
    w.dilation_h = v[0];
    w.dilation_w = v.back();
  }
}

// The shortest form: an integer where H and W (and every side) agree, so that a graph of square
// windows is written exactly as before non-square windows existed.
void write_window(nlohmann::json& jn, const Window2d& w) {
  auto pair = [](int64_t h, int64_t v) {
    return h == v ? nlohmann::json(h) : nlohmann::json::array({h, v});
  };
  jn["kernel"] = pair(w.kernel_h, w.kernel_w);
  jn["stride"] = pair(w.stride_h, w.stride_w);
  if (w.pad_top == w.pad_bottom && w.pad_left == w.pad_right)
    jn["padding"] = pair(w.pad_top, w.pad_left);
  else
    jn["padding"] = {w.pad_top, w.pad_left, w.pad_bottom, w.pad_right};
  if (w.dilation_h != 1 || w.dilation_w != 1) jn["dilation"] = pair(w.dilation_h, w.dilation_w);
}

std::string nonfinite_name(float v) {
  return std::isnan(v) ? "NaN" : (v > 0 ? "+Inf" : "-Inf");
}

}  // namespace

nlohmann::json graph_to_json(const Graph& g) {
  nlohmann::json nodes = nlohmann::json::array();
  for (const Node& n : g.nodes) {
    nlohmann::json jn = {{"name", n.name}, {"op", op_name(n.op)}};
    nlohmann::json ins = nlohmann::json::array();
    for (int i : n.inputs) ins.push_back(g.nodes[i].name);
    jn["inputs"] = ins;
    switch (n.op) {
      case Op::Conv2d:
        jn["out_channels"] = n.out_channels;
        write_window(jn, n.window);
        jn["groups"] = n.groups;
        jn["bias"] = n.has_bias;
        break;
      case Op::Linear:
        jn["out_features"] = n.out_channels;
        jn["bias"] = n.has_bias;
        break;
      case Op::BatchNorm:
        jn["eps"] = n.eps;
        break;
      case Op::LeakyReLU:
        jn["alpha"] = n.alpha;
        break;
      case Op::ChannelShuffle:
        jn["groups"] = n.groups;
        break;
      case Op::ChannelSlice:
        jn["begin"] = n.begin;
        jn["end"] = n.end;
        break;
      case Op::MaxPool:
      case Op::AvgPool:
        write_window(jn, n.window);
        if (n.ceil_mode) jn["ceil_mode"] = true;  // absent: false (files before it existed)
        break;
      default:
        break;
    }
    nodes.push_back(jn);
  }
  return {{"name", g.name},           {"input_shape", g.input_shape},
          {"num_classes", g.num_classes}, {"input_mean", g.input_mean},
          {"input_std", g.input_std}, {"nodes", nodes}};
}

Graph graph_from_json(const nlohmann::json& j, const std::string& where) {
  Graph g(str_field(j, "name", where), shape_field(j, "input_shape", where),
          int_field(j, "num_classes", where));
  g.input_mean = floats_field(j, "input_mean", where);
  g.input_std = floats_field(j, "input_std", where);
  const auto& nodes = field(j, "nodes", where);
  if (!nodes.is_array() || nodes.empty()) fail("{}: 'nodes' must be a non-empty array", where);
  for (size_t i = 0; i < nodes.size(); ++i) {
    const auto& jn = nodes[i];
    std::string w = fmt::format("{}: nodes[{}]", where, i);
    Node n;
    n.name = str_field(jn, "name", w);
    w = fmt::format("{}: node '{}'", where, n.name);
    try {
      n.op = op_from_name(str_field(jn, "op", w));
    } catch (const Error& e) {
      fail("{}: {}", w, e.what());
    }
    const auto& ins = field(jn, "inputs", w);
    if (!ins.is_array()) fail("{}: 'inputs' must be an array of node names", w);
    for (const auto& in : ins) {
      if (!in.is_string()) fail("{}: 'inputs' must be an array of node names", w);
      int found = -1;
      for (size_t k = 0; k < g.nodes.size(); ++k)
        if (g.nodes[k].name == in.get<std::string>()) found = static_cast<int>(k);
      if (found < 0)
        fail("{}: input '{}' is not an earlier node", w, in.get<std::string>());
      n.inputs.push_back(found);
    }
    auto opt_int = [&](const char* key, int64_t& dst) {
      if (jn.contains(key)) dst = int_field(jn, key, w);
    };
    opt_int("out_channels", n.out_channels);
    opt_int("out_features", n.out_channels);
    read_window(jn, n.window, w);
    opt_int("groups", n.groups);
    if (n.op == Op::ChannelSlice) {  // required: no default range
      n.begin = int_field(jn, "begin", w);
      n.end = int_field(jn, "end", w);
    }
    if (jn.contains("bias")) {
      if (!jn["bias"].is_boolean()) fail("{}: field 'bias' must be true or false", w);
      n.has_bias = jn["bias"].get<bool>();
    }
    if (jn.contains("ceil_mode")) {
      if (!jn["ceil_mode"].is_boolean()) fail("{}: field 'ceil_mode' must be true or false", w);
      n.ceil_mode = jn["ceil_mode"].get<bool>();
    }
    if (jn.contains("eps")) {
      if (!jn["eps"].is_number() || !std::isfinite(jn["eps"].get<double>()) ||
          jn["eps"].get<double>() < 0)
        fail("{}: field 'eps' must be a finite number >= 0", w);
      n.eps = jn["eps"].get<double>();
    }
    if (jn.contains("alpha")) {
      if (!jn["alpha"].is_number() || !std::isfinite(jn["alpha"].get<double>()))
        fail("{}: field 'alpha' must be a finite number", w);
      n.alpha = jn["alpha"].get<double>();
    }
    if ((i == 0) != (n.op == Op::Input))
      fail("{}: the first node, and only it, must have op 'input'", w);
    for (const Node& m : g.nodes)
      if (m.name == n.name) fail("{}: duplicate node name", w);
    g.nodes.push_back(std::move(n));
  }
  try {
    g.infer_shapes();
  } catch (const Error& e) {
    fail("{}: {}", where, e.what());
  }
  size_t c = g.input_shape[0];
  if ((!g.input_mean.empty() && g.input_mean.size() != c) ||
      (!g.input_std.empty() && g.input_std.size() != c) ||
      g.input_mean.size() != g.input_std.size())
    fail("{}: input_mean and input_std must both hold {} values (one per input channel)", where, c);
  for (float s : g.input_std)
    if (!(s > 0)) fail("{}: input_std values must be positive", where);
  return g;
}

void save_graph_file(const std::string& path, const GraphFile& file) {
  write_file_atomic(path, graph_file_bytes(file, path));
}

std::string graph_file_bytes(const GraphFile& file, const std::string& path) {
  const Graph& g = file.graph;
  g.check_params(path);
  nlohmann::json tensors = nlohmann::json::array(), blobs = nlohmann::json::array();
  std::string payload;
  for (const Node& n : g.nodes)
    for (const auto& [pname, t] : n.params) {
      tensors.push_back({{"node", n.name}, {"param", pname}, {"dtype", "float32"},
                         {"shape", t.shape}, {"offset", payload.size()},
                         {"nbytes", t.data.size() * sizeof(float)}});
      payload.append(reinterpret_cast<const char*>(t.data.data()), t.data.size() * sizeof(float));
    }
  for (const auto& [bname, bytes] : file.blobs) {
    blobs.push_back({{"name", bname}, {"offset", payload.size()}, {"nbytes", bytes.size()}});
    payload += bytes;
  }
  nlohmann::json header = {{"graph", graph_to_json(g)}, {"tensors", tensors}, {"blobs", blobs},
                           {"meta", file.meta}};
  const std::string h = header.dump();
  std::string out(kMagic, sizeof(kMagic));
  put<uint32_t>(out, kGraphFormatVersion);
  put<uint32_t>(out, 0);
  put<uint64_t>(out, h.size());
  out += h;
  out += payload;
  put<uint32_t>(out, crc32_of(out.data(), out.size()));
  return out;
}

GraphFile load_graph_file(const std::string& path) {
  return parse_graph_file(read_file(path), path);
}

GraphFile parse_graph_file(const std::string& s, const std::string& path) {
  if (s.size() < kPreamble + 4) fail("{}: truncated ({} bytes): not a SigmaQuant graph file", path,
                                     s.size());
  if (std::memcmp(s.data(), kMagic, sizeof(kMagic)) != 0)
    fail("{}: bad magic: not a SigmaQuant graph file (.sqg)", path);
  uint32_t version = get_at<uint32_t>(s, 8);
  if (version != kGraphFormatVersion)
    fail("{}: format version {} is not supported (expected {})", path, version,
         kGraphFormatVersion);
  uint32_t stored_crc = get_at<uint32_t>(s, s.size() - 4);
  if (crc32_of(s.data(), s.size() - 4) != stored_crc)
    fail("{}: checksum mismatch: the file is corrupt or truncated", path);
  uint64_t hlen = get_at<uint64_t>(s, 16);
  if (hlen > s.size() - kPreamble - 4) fail("{}: header length {} exceeds the file", path, hlen);
  // Strict: a key twice in the header is refused rather than resolved to its last value.
  const nlohmann::json header = parse_json_strict(s.substr(kPreamble, hlen), path + ": header",
                                                  kMaxHeaderDepth);
  const size_t payload_off = kPreamble + hlen;
  const size_t payload_size = s.size() - 4 - payload_off;
  auto check_range = [&](const nlohmann::json& e, const std::string& w, size_t& off, size_t& nb) {
    int64_t o = int_field(e, "offset", w), n = int_field(e, "nbytes", w);
    if (o < 0 || n < 0 || static_cast<uint64_t>(o) + static_cast<uint64_t>(n) > payload_size)
      fail("{}: bytes [{}, {}) lie outside the payload ({} bytes)", w, o,
           static_cast<uint64_t>(o) + static_cast<uint64_t>(n), payload_size);
    off = static_cast<size_t>(o);
    nb = static_cast<size_t>(n);
  };

  GraphFile f;
  f.graph = graph_from_json(field(header, "graph", path), path);
  Graph& g = f.graph;
  const auto& tensors = field(header, "tensors", path);
  if (!tensors.is_array()) fail("{}: 'tensors' must be an array", path);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& e = tensors[i];
    std::string w = fmt::format("{}: tensors[{}]", path, i);
    std::string node = str_field(e, "node", w), pname = str_field(e, "param", w);
    w = fmt::format("{}: tensor {}.{}", path, node, pname);
    int idx = -1;
    for (size_t k = 0; k < g.nodes.size(); ++k)
      if (g.nodes[k].name == node) idx = static_cast<int>(k);
    if (idx < 0) fail("{}: no node named '{}' in the graph", w, node);
    auto want = g.expected_param_shapes(idx);
    if (!want.count(pname))
      fail("{}: node '{}' ({}) has no parameter '{}'", w, node, op_name(g.nodes[idx].op), pname);
    std::string dtype = str_field(e, "dtype", w);
    if (dtype != "float32") fail("{}: dtype '{}' is not supported (expected float32)", w, dtype);
    Shape shape = shape_field(e, "shape", w);
    if (shape != want[pname])
      fail("{}: shape {} does not match the graph (expected {})", w, shape_str(shape),
           shape_str(want[pname]));
    size_t off, nb;
    check_range(e, w, off, nb);
    if (nb != static_cast<size_t>(numel(shape)) * sizeof(float))
      fail("{}: {} bytes for shape {} (expected {})", w, nb, shape_str(shape),
           numel(shape) * sizeof(float));
    if (g.nodes[idx].params.count(pname)) fail("{}: stored twice", w);
    Tensor t(shape);
    std::memcpy(t.data.data(), s.data() + payload_off + off, nb);
    // NaN or Inf would evaluate to a NaN loss and be quantized into garbage downstream.
    for (size_t k = 0; k < t.data.size(); ++k)
      if (!std::isfinite(t.data[k]))
        fail("{}: holds {} at element {} of shape {} (expected finite numbers)", w,
             nonfinite_name(t.data[k]), k, shape_str(shape));
    g.nodes[idx].params[pname] = std::move(t);
  }
  g.check_params(path);
  if (header.contains("blobs")) {
    const auto& blobs = header["blobs"];
    if (!blobs.is_array()) fail("{}: 'blobs' must be an array", path);
    for (size_t i = 0; i < blobs.size(); ++i) {
      std::string w = fmt::format("{}: blobs[{}]", path, i);
      size_t off, nb;
      check_range(blobs[i], w, off, nb);
      f.blobs[str_field(blobs[i], "name", w)] = s.substr(payload_off + off, nb);
    }
  }
  if (header.contains("meta")) f.meta = header["meta"];
  return f;
}

}  // namespace sq
