// C export: plans the integer network as steps over uint8 buffers in one static arena and writes
// it as C99 source around the portable runtime src/engine/c_runtime/sq_runtime.{c,h} (export_c.h;
// layout and build: docs/engine.md, "C export").
//
// The plan is GraphExecutor::prepare's (graph_executor.cpp), step for step, so that the C program
// computes the same integers: every quantization point is held as uint8 codes at its scale and
// zero point; conv/linear write the next point downstream with the activation fused into the
// clamp; add, avgpool and global avgpool write the next point downstream; ReLU/ReLU6 that are not
// fused, and max-pool/flatten nodes that are points of their own, go through a 256-entry table;
// conv → ReLU/ReLU6 → global avgpool with no point in between sums 2^−8-unit accumulators.
#include "sigmaquant/export_c.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <climits>
#include <cmath>
#include <map>

#include "sigmaquant/engine.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/integerize.h"
#include "sigmaquant/transform.h"

namespace sq {
namespace detail {
extern const char* const kCRuntimeSource;
extern const char* const kCRuntimeHeader;
}  // namespace detail

namespace {

constexpr int kGapFrac = 8;
constexpr int64_t kMaxTaps =
    65793;  // sq_runtime.h SQ_MAX_TAPS: 255 · 128 · taps < 2^31  // ConvGap: activation bounds at
            // 2^−8 accumulator units (as the engine)

struct Step {
  enum class Kind { Input, ConvU8, ConvF32, ConvGap, Add, MaxPool, AvgPool, Gap, Lut };
  Kind kind = Kind::Input;
  std::string name;                 // the node it computes
  int layer = -1;                   // conv kinds: index into im.layers
  int in = -1, in2 = -1, out = -1;  // buffers (out = -1: the logits)
  int64_t n = 0;                    // Add, Lut: elements
  ConvShape conv;
  PoolShape pool;
  AddParams add;
  AvgPoolParams avg;
  std::array<uint8_t, 256> table{};  // Lut
  ActQuant q;                        // Input: the point
  bool relu = false;                 // ConvGap (see GraphExecutor)
  std::vector<int64_t> gap_hi;
  std::vector<Requant> gap_m;
  int32_t zp_out = 0, lo = 0, hi = 255;
};

struct Buffer {
  int64_t bytes = 0, offset = 0;
  int first = 0, last = 0;  // the step that writes it, the last that reads it
};

struct Plan {
  std::vector<Step> steps;
  std::vector<Buffer> bufs;
  int64_t arena = 0, row = 0, pix = 0, input_size = 0, input_plane = 0, output_size = 0;
};

bool commutes(Op op) {
  return op == Op::ReLU || op == Op::ReLU6 || op == Op::MaxPool || op == Op::Flatten;
}

struct Walk {
  int point = -1;  // -1: none reached
  std::vector<int> path;
  bool relu = false, relu6 = false;
};

Walk walk_to_point(const Graph& g, int from, const std::map<int, ActQuant>& pts) {
  Walk w;
  int cur = from;
  while (!pts.count(cur)) {
    auto cons = consumers(g, cur);
    if (cons.size() != 1 || !commutes(g.nodes[cons[0]].op)) break;
    cur = cons[0];
    w.relu |= g.nodes[cur].op == Op::ReLU;
    w.relu6 |= g.nodes[cur].op == Op::ReLU6;
    w.path.push_back(cur);
  }
  if (pts.count(cur)) w.point = cur;
  return w;
}

std::pair<int32_t, int32_t> act_range(const ActQuant& q, bool relu, bool relu6) {
  int32_t lo = (relu || relu6) ? q.zero_point : 0, hi = q.qmax();
  if (relu6)
    hi = std::min<int32_t>(hi, static_cast<int32_t>(std::nearbyint(6.0 / q.scale)) + q.zero_point);
  return {lo, std::max(lo, hi)};
}

bool same_point(const ActQuant& a, const ActQuant& b) {
  return a.scale == b.scale && a.zero_point == b.zero_point && a.bits == b.bits;
}

Plan make_plan(const Graph& g, const IntModel& im) {
  const auto& pts = im.points;
  if (g.nodes.empty() || g.nodes[0].op != Op::Input)
    fail("export c: graph '{}' has no input", g.name);
  if (g.input_shape.size() != 3)
    fail("export c: graph '{}' input shape {} (expected C,H,W)", g.name, shape_str(g.input_shape));
  const size_t channels = static_cast<size_t>(g.input_shape[0]);
  if (!g.input_mean.empty() && (g.input_mean.size() != channels || g.input_std.size() != channels))
    fail("export c: graph '{}' has {} means and {} standard deviations (expected {})", g.name,
         g.input_mean.size(), g.input_std.size(), channels);
  for (const Node& n : g.nodes)
    if (n.op == Op::BatchNorm)
      fail("export c: batchnorm '{}' (expected a BN-folded graph)", n.name);
  for (const auto& [node, q] : pts)
    if (node < 0 || node >= static_cast<int>(g.nodes.size()) || q.bits < 1 || q.bits > 8 ||
        !(q.scale > 0) || !std::isfinite(q.scale) || q.zero_point < 0 || q.zero_point > q.qmax())
      fail(
          "export c: quantization point {}: {} bits, scale {}, zero point {} (expected 1..8 bits, "
          "a positive scale, 0 <= zero point <= 2^bits - 1)",
          node, q.bits, q.scale, q.zero_point);
  auto point = [&](int node) -> const ActQuant& {
    auto it = pts.find(node);
    if (it == pts.end()) fail("export c: '{}' is not a quantization point", g.nodes[node].name);
    return it->second;
  };
  std::map<int, int> layer_of;
  for (size_t li = 0; li < im.layers.size(); ++li) {
    const IntLayer& L = im.layers[li];
    if (L.node < 0 || L.node >= static_cast<int>(g.nodes.size()) ||
        g.nodes[L.node].name != L.name || !is_weight_layer(g.nodes[L.node]) ||
        L.in_node != g.nodes[L.node].inputs.at(0))
      fail("export c: layer '{}' is not weight layer {} of graph '{}'", L.name, L.node, g.name);
    for (int b : L.channel_bits)
      if (b < 0 || b > 8)
        fail("export c: layer '{}' has a {}-bit channel (expected 0..8)", L.name, b);
    layer_of[L.node] = static_cast<int>(li);
  }
  for (int n : g.weight_layers())
    if (!layer_of.count(n))
      fail("export c: weight layer '{}' has no integer layer", g.nodes[n].name);

  Plan plan;
  struct Val {
    int buf = -1, point = -1;
    bool done = false;
  };
  std::vector<Val> val(g.nodes.size());
  auto numel_of = [&](int node) {
    int64_t n = 1;
    for (int64_t d : node == 0 ? g.input_shape : g.nodes[node].out_shape) n *= d;
    return n;
  };
  auto new_buffer = [&](int64_t bytes) {
    Buffer b;
    b.bytes = bytes;
    b.first = b.last = static_cast<int>(plan.steps.size());
    plan.bufs.push_back(b);
    return static_cast<int>(plan.bufs.size()) - 1;
  };
  auto push = [&](Step st) {
    const int idx = static_cast<int>(plan.steps.size());
    for (int b : {st.in, st.in2})
      if (b >= 0) plan.bufs[b].last = std::max(plan.bufs[b].last, idx);
    plan.steps.push_back(std::move(st));
  };
  auto input_val = [&](int node, int of) -> Val {
    if (val[node].buf < 0)
      fail("export c: '{}' reads '{}', which is not held as codes", g.nodes[of].name,
           g.nodes[node].name);
    return val[node];
  };
  auto conv_row = [&](const ConvShape& c, const std::string& name) {
    const int64_t taps = c.in_c / c.groups * c.kernel * c.kernel;
    if (taps > kMaxTaps)
      fail(
          "export c: layer '{}' sums {} taps per output (expected at most {}, so that the C "
          "runtime's int32 dot products cannot overflow)",
          name, taps, kMaxTaps);
    plan.row = std::max(plan.row, taps);
    plan.pix = std::max(plan.pix, c.out_h() * c.out_w());
  };
  auto lut_step = [&](int node, const Val& in, int q_node, bool relu, bool relu6) {
    const ActQuant& p = point(in.point);
    const ActQuant& q = point(q_node);
    const auto [lo, hi] = act_range(q, relu, relu6);
    const Requant m = quantize_multiplier(static_cast<double>(p.scale) / q.scale);
    Step st;
    st.kind = Step::Kind::Lut;
    for (int c = 0; c < 256; ++c) {
      int64_t v = c - p.zero_point;
      if (relu || relu6) v = std::max<int64_t>(v, 0);
      st.table[c] = static_cast<uint8_t>(
          std::clamp<int64_t>(int64_t{requantize(v, m)} + q.zero_point, lo, hi));
    }
    st.name = g.nodes[node].name;
    st.in = in.buf;
    st.n = numel_of(node);
    st.out = new_buffer(st.n);
    push(st);
    val[node] = {st.out, q_node, true};
  };
  auto ensure_point = [&](int node) {
    if (!pts.count(node) || val[node].point == node) return;
    if (same_point(point(val[node].point), point(node))) {
      val[node].point = node;
      return;
    }
    lut_step(node, val[node], node, false, false);
  };
  auto emit_path = [&](const Walk& w, int buf) {
    for (int node : w.path) {
      const Node& m = g.nodes[node];
      if (m.op == Op::MaxPool) {
        const Shape& in = g.nodes[m.inputs[0]].out_shape;
        Step st;
        st.kind = Step::Kind::MaxPool;
        st.name = m.name;
        st.in = buf;
        st.pool = PoolShape{in.at(0), in.at(1), in.at(2), m.kernel, m.stride, m.padding};
        if (m.padding >= m.kernel)
          fail("export c: max-pool '{}' pads {} >= kernel {}", m.name, m.padding, m.kernel);
        st.out = new_buffer(numel_of(node));
        buf = st.out;
        push(st);
      }
      val[node] = {buf, w.point, true};
    }
  };

  for (int i = 0; i < static_cast<int>(g.nodes.size()); ++i) {
    const Node& n = g.nodes[i];
    if (val[i].done) continue;
    switch (n.op) {
      case Op::Input: {
        if (i != 0) fail("export c: graph '{}' has a second input '{}'", g.name, n.name);
        Walk w = walk_to_point(g, 0, pts);
        if (w.point < 0) fail("export c: the input of '{}' reaches no quantization point", g.name);
        for (int node : w.path)
          if (g.nodes[node].op != Op::Flatten)
            fail(
                "export c: the input reaches its quantization point through '{}' (expected only "
                "flatten)",
                g.nodes[node].name);
        Step st;
        st.kind = Step::Kind::Input;
        st.name = n.name;
        st.q = point(w.point);
        plan.input_size = numel_of(0);
        plan.input_plane = plan.input_size / g.input_shape[0];
        st.out = new_buffer(plan.input_size);
        const int b = st.out;
        push(st);
        val[0] = {b, w.point, true};
        for (int node : w.path) val[node] = {b, w.point, true};
        break;
      }
      case Op::Conv2d:
      case Op::Linear: {
        const int li = layer_of.at(i);
        const IntLayer& L = im.layers[li];
        const Val in = input_val(L.in_node, i);
        if (in.point != L.in_node)
          fail("export c: layer '{}' reads codes of '{}' (expected its input point '{}')", L.name,
               g.nodes[in.point].name, g.nodes[L.in_node].name);
        const ActQuant& inq = point(L.in_node);
        if (inq.scale != L.in_scale || inq.zero_point != L.in_zero_point)
          fail("export c: layer '{}' reads '{}' at another scale / zero point than the point's",
               L.name, g.nodes[L.in_node].name);
        Step st;
        st.name = n.name;
        st.layer = li;
        st.in = in.buf;
        st.conv = conv_shape_of(g, i);
        check_conv(st.conv, &L);
        conv_row(st.conv, n.name);
        if (i == g.output()) {
          if (L.out_node >= 0)
            fail("export c: the output layer '{}' writes point '{}' (expected float logits)",
                 L.name, g.nodes[L.out_node].name);
          st.kind = Step::Kind::ConvF32;
          plan.output_size = st.conv.out_size();
          push(st);
          val[i].done = true;
          break;
        }
        if (L.out_node >= 0) {
          Walk w = walk_to_point(g, i, pts);
          if (w.point != L.out_node)
            fail("export c: layer '{}' writes point {} (expected the next point downstream)",
                 L.name, L.out_node);
          st.kind = Step::Kind::ConvU8;
          st.out = new_buffer(st.conv.out_size());
          const int out = st.out;
          push(st);
          val[i] = {out, L.out_node, true};
          emit_path(w, out);
          break;
        }
        // A float output inside the graph: conv → ReLU/ReLU6 → global average pooling.
        int cur = i;
        bool relu = false, relu6 = false;
        for (;;) {
          auto cons = consumers(g, cur);
          if (cons.size() != 1)
            fail(
                "export c: layer '{}' has no quantization point downstream and '{}' has {} "
                "readers (expected conv → relu/relu6 → global average pooling)",
                L.name, g.nodes[cur].name, cons.size());
          cur = cons[0];
          const Op op = g.nodes[cur].op;
          if (op == Op::GlobalAvgPool) break;
          if (op != Op::ReLU && op != Op::ReLU6)
            fail(
                "export c: layer '{}' has no quantization point downstream and is read by '{}' "
                "(expected conv → relu/relu6 → global average pooling)",
                L.name, g.nodes[cur].name);
          relu |= op == Op::ReLU;
          relu6 |= op == Op::ReLU6;
          val[cur].done = true;
        }
        const int gap = cur;
        Walk w = walk_to_point(g, gap, pts);
        if (w.point < 0)
          fail("export c: global average pooling '{}' reaches no quantization point",
               g.nodes[gap].name);
        const ActQuant& q = point(w.point);
        const int64_t hw = st.conv.out_h() * st.conv.out_w();
        st.kind = Step::Kind::ConvGap;
        st.relu = relu || relu6;
        for (int64_t c = 0; c < st.conv.out_c; ++c) {
          const float sw = L.weight_scales.at(c);
          const double unit = static_cast<double>(L.in_scale) * (sw > 0 ? sw : 1.0);
          st.gap_hi.push_back(relu6 ? static_cast<int64_t>(std::min(
                                          std::ldexp(6.0 / unit, kGapFrac), std::ldexp(1.0, 62)))
                                    : -1);
          st.gap_m.push_back(
              quantize_multiplier(unit / (std::ldexp(1.0, kGapFrac) * hw * q.scale)));
        }
        std::tie(st.lo, st.hi) = act_range(q, w.relu, w.relu6);
        st.zp_out = q.zero_point;
        st.out = new_buffer(st.conv.out_c);
        const int out = st.out;
        push(st);
        val[gap] = {out, w.point, true};
        emit_path(w, out);
        break;
      }
      case Op::Add: {
        const Val a = input_val(n.inputs.at(0), i);
        const Val b = input_val(n.inputs.at(1), i);
        Walk w = walk_to_point(g, i, pts);
        if (w.point < 0) fail("export c: add '{}' reaches no quantization point", n.name);
        const ActQuant &pa = point(a.point), &pb = point(b.point), &q = point(w.point);
        const auto [lo, hi] = act_range(q, w.relu, w.relu6);
        Step st;
        st.kind = Step::Kind::Add;
        st.name = n.name;
        st.in = a.buf;
        st.in2 = b.buf;
        st.n = numel_of(i);
        st.add = make_add_params(pa.scale, pa.zero_point, pb.scale, pb.zero_point, q.scale,
                                 q.zero_point, lo, hi);
        st.out = new_buffer(st.n);
        const int out = st.out;
        push(st);
        val[i] = {out, w.point, true};
        emit_path(w, out);
        break;
      }
      case Op::AvgPool:
      case Op::GlobalAvgPool: {
        const Val in = input_val(n.inputs.at(0), i);
        Walk w = walk_to_point(g, i, pts);
        if (w.point < 0)
          fail("export c: average pooling '{}' reaches no quantization point", n.name);
        const ActQuant &p = point(in.point), &q = point(w.point);
        const auto [lo, hi] = act_range(q, w.relu, w.relu6);
        const Shape& s = g.nodes[n.inputs[0]].out_shape;
        if (s.size() != 3)
          fail("export c: pooling '{}' reads rank {} (expected C,H,W)", n.name, s.size());
        Step st;
        st.name = n.name;
        st.in = in.buf;
        if (n.op == Op::AvgPool) {
          st.kind = Step::Kind::AvgPool;
          st.pool = PoolShape{s[0], s[1], s[2], n.kernel, n.stride, n.padding};
          st.avg = make_avgpool_params(p.scale, p.zero_point, q.scale, q.zero_point,
                                       n.kernel * n.kernel, lo, hi);
        } else {
          st.kind = Step::Kind::Gap;
          st.pool = PoolShape{s[0], s[1], s[2], 1, 1, 0};
          st.avg = make_avgpool_params(p.scale, p.zero_point, q.scale, q.zero_point, s[1] * s[2],
                                       lo, hi);
        }
        st.out = new_buffer(numel_of(i));
        const int out = st.out;
        push(st);
        val[i] = {out, w.point, true};
        emit_path(w, out);
        break;
      }
      case Op::ReLU:
      case Op::ReLU6: {
        const Val in = input_val(n.inputs.at(0), i);
        lut_step(i, in, pts.count(i) ? i : in.point, n.op == Op::ReLU, n.op == Op::ReLU6);
        break;
      }
      case Op::MaxPool: {
        const Val in = input_val(n.inputs.at(0), i);
        Walk w;
        w.point = in.point;
        w.path = {i};
        emit_path(w, in.buf);
        ensure_point(i);
        break;
      }
      case Op::Flatten: {
        val[i] = input_val(n.inputs.at(0), i);
        val[i].done = true;
        ensure_point(i);
        break;
      }
      case Op::BatchNorm:
        fail("export c: batchnorm '{}' (expected a BN-folded graph)", n.name);
    }
  }
  if (plan.output_size == 0)
    fail("export c: graph '{}' ends in '{}' (expected a weight layer writing the logits)", g.name,
         g.nodes.back().name);

  // Memory: greedy by size, first fit among the buffers alive at the same time (no alignment:
  // the C kernels read bytes).
  std::vector<int> order(plan.bufs.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = static_cast<int>(k);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return plan.bufs[a].bytes > plan.bufs[b].bytes; });
  std::vector<int> placed;
  for (int id : order) {
    Buffer& b = plan.bufs[id];
    std::vector<std::pair<int64_t, int64_t>> busy;
    for (int o : placed) {
      const Buffer& p = plan.bufs[o];
      if (p.first <= b.last && b.first <= p.last) busy.push_back({p.offset, p.offset + p.bytes});
    }
    std::sort(busy.begin(), busy.end());
    int64_t off = 0;
    for (const auto& [s, e] : busy) {
      if (off + b.bytes <= s) break;
      off = std::max(off, e);
    }
    b.offset = off;
    plan.arena = std::max(plan.arena, off + b.bytes);
    placed.push_back(id);
  }
  return plan;
}

// ---- writing C ----

std::string c_float(float v) {
  if (!std::isfinite(v)) fail("export c: a constant is {} (expected a finite number)", v);
  std::string s = fmt::format("{:.9g}", v);  // 9 significant digits: the float round-trips
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s + "f";
}

std::string c_int(int64_t v) {
  return v == INT32_MIN ? std::string("(-2147483647 - 1)") : std::to_string(v);
}

template <typename T, typename F>
std::string c_array(const std::string& type, const std::string& name, const std::vector<T>& v,
                    F fmt_one, size_t per_line = 16) {
  std::string s =
      fmt::format("static const {} {}[{}] = {{", type, name, std::max<size_t>(v.size(), 1));
  if (v.empty()) s += "0";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i % per_line == 0) s += "\n  ";
    s += fmt_one(v[i]);
    s += i + 1 < v.size() ? (i % per_line == per_line - 1 ? "," : ", ") : "";
  }
  return s + "\n};\n";
}

std::string ident(const std::string& name, int index) {
  std::string s = fmt::format("L{}_", index);
  for (char ch : name) s += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
  return s;
}

std::string rq_init(const Requant& r) { return fmt::format("{{{}, {}}}", r.multiplier, r.shift); }

std::string buf_ref(const Plan& p, int b) { return fmt::format("sq_arena + {}", p.bufs[b].offset); }

struct Written {
  std::string model_h, model_data_c;
  int64_t packed_bytes = 0;
};

Written write_model(const QuantModel& qm, const IntModel& im, const Plan& p) {
  const Graph& g = qm.graph;
  Written w;
  std::string d;
  d += fmt::format(
      "/* Generated by `sigmaquant export --format c` from model '{}': the packed weights and\n"
      " * constants of every layer, and sq_model_run() as a sequence of sq_runtime.c kernel "
      "calls.\n"
      " * Do not edit; docs/engine.md (\"C export\") describes the layout. */\n"
      "#include \"model.h\"\n#include \"sq_runtime.h\"\n\n",
      g.name);
  d += fmt::format(
      "/* Activations: one static arena; each tensor's offset was planned at export time (tensors\n"
      " * that are not alive at the same time share bytes). */\n"
      "static uint8_t sq_arena[{}];\n"
      "/* The conv kernels' scratch: one output channel's unpacked weights and dot products. */\n"
      "static int8_t sq_row[{}];\nstatic int32_t sq_dot[{}];\n"
      "static const sq_work sq_ws = {{sq_row, sq_dot}};\n\n",
      std::max<int64_t>(p.arena, 1), std::max<int64_t>(p.row, 1), std::max<int64_t>(p.pix, 1));
  const bool norm = !g.input_mean.empty();
  if (norm) {
    d += "/* Input normalization the model was trained with: x' = (x - mean[c]) / std[c]. */\n";
    d += c_array("float", "sq_input_mean", g.input_mean, c_float, 6);
    d += c_array("float", "sq_input_std", g.input_std, c_float, 6);
    d += "\n";
  }
  std::string body;
  int k = 0;
  for (const Step& s : p.steps) {
    ++k;
    const std::string pn = fmt::format("sq_step{}", k);
    const bool conv = s.kind == Step::Kind::ConvU8 || s.kind == Step::Kind::ConvF32 ||
                      s.kind == Step::Kind::ConvGap;
    std::string id;
    if (conv) {
      // The layer's constants.
      const IntLayer& L = im.layers[s.layer];
      id = ident(L.name, s.layer);
      const int64_t rows = s.conv.out_c, cols = s.conv.weights() / rows;
      PackedRows pr = pack_rows(L.weights, rows, cols, L.channel_bits);
      w.packed_bytes += static_cast<int64_t>(pr.data.size());
      std::map<int, int> hist;
      for (int b : L.channel_bits) ++hist[b];
      std::string bits_desc;
      for (auto [b, n] : hist)
        bits_desc += fmt::format("{}{}x{}b", bits_desc.empty() ? "" : " ", n, b);
      d +=
          fmt::format("/* {} '{}' reads '{}'; {} channels of {} weights ({}): {} packed bytes */\n",
                      g.nodes[L.node].op == Op::Linear ? "linear" : "conv2d", L.name,
                      g.nodes[L.in_node].name, rows, cols, bits_desc, pr.data.size());
      d += c_array(
          "uint8_t", id + "_w", pr.data, [](uint8_t v) { return std::to_string(v); }, 20);
      std::vector<uint32_t> off(pr.offset.begin(), pr.offset.end() - 1);
      d += c_array(
          "uint32_t", id + "_w_off", off, [](uint32_t v) { return std::to_string(v); }, 12);
      d += c_array(
          "uint8_t", id + "_w_bits", pr.row_bits, [](uint8_t v) { return std::to_string(v); }, 20);
      d += c_array(
          "int32_t", id + "_bias", L.bias, [](int32_t v) { return c_int(v); }, 8);
      const bool u8 = s.kind == Step::Kind::ConvU8, f32 = s.kind == Step::Kind::ConvF32;
      if (f32) d += c_array("float", id + "_w_scale", L.weight_scales, c_float, 6);
      if (u8) d += c_array("sq_rq", id + "_rq", L.requant, rq_init, 4);
      const ConvShape& c = s.conv;
      d += fmt::format(
          "static const sq_conv_layer {} = {{\n  {}, {}, {}, {}, {}, {}, /* in c h w, out c h w "
          "*/\n"
          "  {}, {}, {}, {}, /* kernel stride padding groups */\n  {}, /* input zero point */\n"
          "  {}_w, {}_w_off, {}_w_bits, {}_bias, {},\n  {}, {}, {}, /* out zero point, clamp */\n"
          "  {}, {}}};\n",
          id, c.in_c, c.in_h, c.in_w, c.out_c, c.out_h(), c.out_w(), c.kernel, c.stride, c.padding,
          c.groups, L.in_zero_point, id, id, id, id, u8 ? id + "_rq" : "0",
          u8 ? L.out_zero_point : 0, u8 ? L.out_lo : 0, u8 ? L.out_hi : 0, c_float(L.in_scale),
          f32 ? id + "_w_scale" : "0");
      if (s.kind == Step::Kind::ConvGap) {
        const bool cap = !s.gap_hi.empty() && s.gap_hi[0] >= 0;
        if (cap)
          d += c_array(
              "int64_t", id + "_gap_cap", s.gap_hi,
              [](int64_t v) { return fmt::format("INT64_C({})", v); }, 4);
        d += c_array("sq_rq", id + "_gap_m", s.gap_m, rq_init, 4);
        d += fmt::format(
            "static const sq_conv_gap_params {}_gap = {{{}, {}, {}_gap_m, {}, {}, {}}};\n", id,
            s.relu ? 1 : 0, cap ? id + "_gap_cap" : "0", id, s.zp_out, s.lo, s.hi);
      }
      d += "\n";
    }
    body += fmt::format("  /* {} */\n", s.name);
    switch (s.kind) {
      case Step::Kind::Input:
        body += fmt::format("  sq_quantize_input(image, {}, {}, {}, {}, {}, {}, 0, {}, {});\n",
                            p.input_size / p.input_plane, p.input_plane,
                            norm ? "sq_input_mean" : "0", norm ? "sq_input_std" : "0",
                            c_float(s.q.scale), s.q.zero_point, s.q.qmax(), buf_ref(p, s.out));
        break;
      case Step::Kind::ConvU8:
        body += fmt::format("  sq_conv_u8(&{}, {}, {}, &sq_ws);\n", id, buf_ref(p, s.in),
                            buf_ref(p, s.out));
        break;
      case Step::Kind::ConvF32:
        body += fmt::format("  sq_conv_f32(&{}, {}, logits, &sq_ws);\n", id, buf_ref(p, s.in));
        break;
      case Step::Kind::ConvGap:
        body += fmt::format("  sq_conv_gap_u8(&{}, &{}_gap, {}, {}, &sq_ws);\n", id, id,
                            buf_ref(p, s.in), buf_ref(p, s.out));
        break;
      case Step::Kind::Add:
        d += fmt::format("static const sq_add_params {} = {{{}, {}, {}, {}, {}, {}, {}}};\n", pn,
                         s.add.zp_a, s.add.zp_b, s.add.zp_out, s.add.lo, s.add.hi,
                         rq_init(s.add.m_a), rq_init(s.add.m_b));
        body += fmt::format("  sq_add_u8(&{}, {}, {}, {}, {});\n", pn, buf_ref(p, s.in),
                            buf_ref(p, s.in2), s.n, buf_ref(p, s.out));
        break;
      case Step::Kind::MaxPool:
      case Step::Kind::AvgPool: {
        const PoolShape& q = s.pool;
        d += fmt::format(
            "static const sq_pool_shape {}_shape = {{{}, {}, {}, {}, {}, {}, {}, {}}};\n", pn, q.c,
            q.in_h, q.in_w, q.out_h(), q.out_w(), q.kernel, q.stride, q.padding);
        if (s.kind == Step::Kind::MaxPool) {
          body += fmt::format("  sq_maxpool_u8(&{}_shape, {}, {});\n", pn, buf_ref(p, s.in),
                              buf_ref(p, s.out));
          break;
        }
        const AvgPoolParams& r = s.avg;
        d += fmt::format("static const sq_avgpool_params {} = {{{}, {}, {}, {}, {}}};\n", pn,
                         r.zp_in, r.zp_out, r.lo, r.hi, rq_init(r.m));
        body += fmt::format("  sq_avgpool_u8(&{}_shape, &{}, {}, {});\n", pn, pn, buf_ref(p, s.in),
                            buf_ref(p, s.out));
        break;
      }
      case Step::Kind::Gap: {
        const AvgPoolParams& r = s.avg;
        d += fmt::format("static const sq_avgpool_params {} = {{{}, {}, {}, {}, {}}};\n", pn,
                         r.zp_in, r.zp_out, r.lo, r.hi, rq_init(r.m));
        body += fmt::format("  sq_global_avgpool_u8({}, {}, &{}, {}, {});\n", s.pool.c,
                            s.pool.in_h * s.pool.in_w, pn, buf_ref(p, s.in), buf_ref(p, s.out));
        break;
      }
      case Step::Kind::Lut:
        d += c_array(
            "uint8_t", pn + "_table", std::vector<uint8_t>(s.table.begin(), s.table.end()),
            [](uint8_t v) { return std::to_string(v); }, 20);
        body += fmt::format("  sq_lut_u8({}_table, {}, {}, {});\n", pn, buf_ref(p, s.in), s.n,
                            buf_ref(p, s.out));
        break;
    }
  }
  d += "\nvoid sq_model_run(const float* image, float* logits) {\n" + body + "}\n";
  w.model_data_c = std::move(d);

  const Shape& in = g.input_shape;
  w.model_h = fmt::format(
      "/* Generated by `sigmaquant export --format c` from model '{}'. */\n"
      "#ifndef SQ_MODEL_H\n#define SQ_MODEL_H\n\n"
      "#define SQ_MODEL_NAME \"{}\"\n"
      "#define SQ_MODEL_INPUT_C {}\n#define SQ_MODEL_INPUT_H {}\n#define SQ_MODEL_INPUT_W {}\n"
      "#define SQ_MODEL_INPUT_SIZE {} /* floats per image */\n"
      "#define SQ_MODEL_OUTPUT_SIZE {} /* logits */\n"
      "#define SQ_MODEL_ARENA_BYTES {} /* static activation memory */\n"
      "#define SQ_MODEL_WEIGHT_BYTES {} /* packed weights */\n\n"
      "#ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n"
      "/* Runs one image: `image` is one sample, channel-major (C, H, W), exactly as stored in "
      "the\n"
      " * dataset (not normalized: the model normalizes and quantizes it). Writes\n"
      " * SQ_MODEL_OUTPUT_SIZE logits. Integer-only after the input quantization; not reentrant\n"
      " * (one static arena). */\n"
      "void sq_model_run(const float* image, float* logits);\n\n"
      "#ifdef __cplusplus\n}}\n#endif\n\n#endif /* SQ_MODEL_H */\n",
      g.name, g.name, in[0], in[1], in[2], p.input_size, p.output_size, p.arena, w.packed_bytes);
  return w;
}

const char* kMainExample = R"(/* Demo: classifies raw float32 images with the exported model.
 *
 *   ./sq_demo images.f32 [logits.f32]
 *
 * images.f32 holds N images back to back, each SQ_MODEL_INPUT_SIZE native-endian float32 values
 * in (C, H, W) order, as stored in the dataset (not normalized). Prints "index class" per image;
 * with a second argument, also writes the N x SQ_MODEL_OUTPUT_SIZE float32 logits there. */
#include <stdio.h>

#include "model.h"

static float image[SQ_MODEL_INPUT_SIZE];
static float logits[SQ_MODEL_OUTPUT_SIZE];

int main(int argc, char** argv) {
  FILE* in;
  FILE* out = NULL;
  long n = 0;
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s images.f32 [logits.f32]\n", argv[0]);
    return 2;
  }
  in = fopen(argv[1], "rb");
  if (!in) {
    fprintf(stderr, "%s: cannot open\n", argv[1]);
    return 1;
  }
  if (argc == 3 && !(out = fopen(argv[2], "wb"))) {
    fprintf(stderr, "%s: cannot open for writing\n", argv[2]);
    fclose(in);
    return 1;
  }
  while (fread(image, sizeof(float), SQ_MODEL_INPUT_SIZE, in) == SQ_MODEL_INPUT_SIZE) {
    int c, best = 0;
    sq_model_run(image, logits);
    for (c = 1; c < SQ_MODEL_OUTPUT_SIZE; ++c)
      if (logits[c] > logits[best]) best = c;
    printf("%ld %d\n", n++, best);
    if (out && fwrite(logits, sizeof(float), SQ_MODEL_OUTPUT_SIZE, out) != SQ_MODEL_OUTPUT_SIZE) {
      fprintf(stderr, "%s: write failed\n", argv[2]);
      return 1;
    }
  }
  fclose(in);
  if (out && fclose(out) != 0) {
    fprintf(stderr, "%s: write failed\n", argv[2]);
    return 1;
  }
  fprintf(stderr, "%ld images\n", n);
  return 0;
}
)";

const char* kMakefile =
    "# Builds the demo of an exported SigmaQuant model: `make`, then ./sq_demo images.f32\n"
    "CC ?= cc\n"
    "CFLAGS ?= -std=c99 -O2 -Wall -Wextra -pedantic\n"
    "\n"
    "sq_demo: main_example.c model_data.c sq_runtime.c model.h sq_runtime.h\n"
    "\t$(CC) $(CFLAGS) -o $@ main_example.c model_data.c sq_runtime.c -lm\n"
    "\n"
    "clean:\n"
    "\trm -f sq_demo\n"
    "\n"
    ".PHONY: clean\n";

}  // namespace

void export_c(const QuantModel& qm, const std::string& out_dir) {
  const IntModel im = integerize(qm);
  const Plan plan = make_plan(qm.graph, im);
  const Written w = write_model(qm, im, plan);
  make_dirs(out_dir);
  const std::string dir = out_dir.empty() || out_dir.back() == '/' ? out_dir : out_dir + "/";
  write_file_atomic(dir + "model.h", w.model_h);
  write_file_atomic(dir + "model_data.c", w.model_data_c);
  write_file_atomic(dir + "sq_runtime.h", detail::kCRuntimeHeader);
  write_file_atomic(dir + "sq_runtime.c", detail::kCRuntimeSource);
  write_file_atomic(dir + "main_example.c", kMainExample);
  write_file_atomic(dir + "Makefile", kMakefile);
}

}  // namespace sq
