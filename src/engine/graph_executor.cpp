// GraphExecutor: any QuantModel graph on integer kernels, steps and a memory plan built once
// (engine.h describes which op runs how; docs/engine.md the memory plan).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <tuple>

#include "sigmaquant/engine.h"
#include "sigmaquant/error.h"
#include "sigmaquant/transform.h"

namespace sq {

namespace {

constexpr size_t kAlign = 64;
constexpr int kGapFrac = 8;  // ConvGap: activation bounds at 2^−8 accumulator units

bool commutes(Op op) {
  return op == Op::ReLU || op == Op::ReLU6 || op == Op::MaxPool || op == Op::Flatten;
}

// From `from`, through single-reader ReLU/ReLU6/max-pool/flatten nodes, to the next quantization
// point — the walk integerize() does for a weight layer's output.
struct Walk {
  int point = -1;         // -1: none reached
  std::vector<int> path;  // the nodes after `from`, up to the point (or the last one walked)
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

// The clamp of codes at point q with a fused activation (integerize's out_lo/out_hi).
std::pair<int32_t, int32_t> act_range(const ActQuant& q, bool relu, bool relu6) {
  int32_t lo = (relu || relu6) ? q.zero_point : 0, hi = q.qmax();
  if (relu6)
    hi = std::min<int32_t>(hi, static_cast<int32_t>(std::nearbyint(6.0 / q.scale)) + q.zero_point);
  return {lo, std::max(lo, hi)};
}

bool same_point(const ActQuant& a, const ActQuant& b) {
  return a.scale == b.scale && a.zero_point == b.zero_point && a.bits == b.bits;
}

size_t align_up(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

// The batchnorm that is the input's only reader, or -1.
int input_batchnorm(const Graph& g) {
  if (g.nodes.size() < 2 || g.nodes[0].op != Op::Input) return -1;
  const std::vector<int> cons = consumers(g, 0);
  return cons.size() == 1 && g.nodes[cons[0]].op == Op::BatchNorm ? cons[0] : -1;
}

}  // namespace

bool fold_input_batchnorm(Graph& g, IntModel& im) {
  bool folded = false;
  for (int k = input_batchnorm(g); k > 0; k = input_batchnorm(g)) {
    const Node& bn = g.nodes[k];
    if (g.input_shape.size() != 3)
      fail("engine: batchnorm '{}' reads the input of shape {} (expected C,H,W)", bn.name,
           shape_str(g.input_shape));
    const int64_t c = g.input_shape[0];
    const char* names[] = {"weight", "bias", "running_mean", "running_var"};
    for (const char* pn : names) {
      auto it = bn.params.find(pn);
      if (it == bn.params.end() || static_cast<int64_t>(it->second.data.size()) != c)
        fail(
            "engine: batchnorm '{}' right after the input has no '{}' of {} values (expected its "
            "parameters, to fold it into the input normalization)",
            bn.name, pn, c);
    }
    const auto& gamma = bn.params.at("weight").data;
    const auto& beta = bn.params.at("bias").data;
    const auto& mu = bn.params.at("running_mean").data;
    const auto& var = bn.params.at("running_var").data;
    // bn((x − m) / s) = a · ((x − m) / s − mu) + beta = (x − m2) / s2 with
    // a = gamma / √(var + eps), m2 = m + s · (mu − beta / a), s2 = s / a: a normalization again
    // when a > 0.
    std::vector<float> mean(static_cast<size_t>(c)), sd(static_cast<size_t>(c));
    for (int64_t ch = 0; ch < c; ++ch) {
      const double m = g.input_mean.empty() ? 0.0 : g.input_mean[ch];
      const double s = g.input_std.empty() || !(g.input_std[ch] > 0) ? 1.0 : g.input_std[ch];
      const double a = gamma[ch] / std::sqrt(static_cast<double>(var[ch]) + bn.eps);
      const double m2 = m + s * (mu[ch] - beta[ch] / a), s2 = s / a;
      if (!(a > 0) || !std::isfinite(a) || !std::isfinite(m2) || !(s2 > 0) ||
          !std::isfinite(static_cast<float>(s2)) || !std::isfinite(static_cast<float>(m2)))
        fail(
            "engine: batchnorm '{}' right after the input has scale gamma / sqrt(var + eps) = {} "
            "on channel {} (expected a finite positive scale: the engine folds a leading "
            "batchnorm into the input normalization (x - mean) / std)",
            bn.name, a, ch);
      mean[ch] = static_cast<float>(m2);
      sd[ch] = static_cast<float>(s2);
    }
    if (im.points.count(0))
      fail("engine: the input of '{}' is a quantization point and is read by batchnorm '{}'",
           g.name, bn.name);
    // Drop node k: its readers read the input, later indices shift down by one.
    auto remap = [k](int i) { return i == k ? 0 : (i > k ? i - 1 : i); };
    g.nodes.erase(g.nodes.begin() + k);
    for (Node& n : g.nodes)
      for (int& in : n.inputs) in = remap(in);
    g.input_mean = std::move(mean);
    g.input_std = std::move(sd);
    std::map<int, ActQuant> points;
    for (const auto& [node, q] : im.points) points[remap(node)] = q;
    im.points = std::move(points);
    for (IntLayer& L : im.layers) {
      L.node = remap(L.node);
      L.in_node = remap(L.in_node);
      if (L.out_node >= 0) L.out_node = remap(L.out_node);
    }
    folded = true;
  }
  return folded;
}

GraphExecutor GraphExecutor::prepare(const Graph& g0, const IntModel& im0, Isa isa,
                                     bool channel_groups) {
  if (input_batchnorm(g0) > 0) {
    Graph g = g0;
    IntModel im = im0;
    fold_input_batchnorm(g, im);
    return prepare(g, im, isa, channel_groups);
  }
  const Graph& g = g0;
  const IntModel& im = im0;
  if (g.nodes.empty() || g.nodes[0].op != Op::Input)
    fail("engine: graph '{}' has no input", g.name);
  // Up front, so that the message does not depend on where the walk meets it.
  for (const Node& n : g.nodes)
    if (n.op == Op::BatchNorm)
      fail(
          "engine: batchnorm '{}' (expected a BN-folded graph: a batchnorm must follow a conv or "
          "linear layer, which absorbs it, or be the input's only reader, which the input "
          "normalization absorbs)",
          n.name);
  if (g.input_shape.size() != 3)
    fail("engine: graph '{}' input shape {} (expected C,H,W)", g.name, shape_str(g.input_shape));
  for (const Node& n : g.nodes)
    if (n.out_shape.empty() && n.op != Op::Input)
      fail("engine: graph '{}' node '{}' has no shape (expected infer_shapes() first)", g.name,
           n.name);
  const auto& pts = im.points;
  for (const auto& [node, q] : pts) {
    if (node < 0 || node >= static_cast<int>(g.nodes.size()))
      fail("engine: quantization point at node {} (expected 0..{})", node, g.nodes.size() - 1);
    if (q.bits < 1 || q.bits > 8 || !(q.scale > 0) || q.zero_point < 0 || q.zero_point > q.qmax())
      fail(
          "engine: point '{}': {} bits, scale {}, zero point {} (expected 1..8 bits, a positive "
          "scale, 0 <= zero point <= 2^bits - 1)",
          g.nodes[node].name, q.bits, q.scale, q.zero_point);
  }
  auto point = [&](int node) -> const ActQuant& {
    auto it = pts.find(node);
    if (it == pts.end()) fail("engine: '{}' is not a quantization point", g.nodes[node].name);
    return it->second;
  };

  GraphExecutor ex;
  ex.layers_ = im.layers;
  std::map<int, int> layer_of;  // node -> index into layers_
  for (size_t li = 0; li < im.layers.size(); ++li) {
    const IntLayer& L = im.layers[li];
    if (L.node < 0 || L.node >= static_cast<int>(g.nodes.size()) ||
        g.nodes[L.node].name != L.name || !is_weight_layer(g.nodes[L.node]))
      fail("engine: layer '{}' is not weight layer {} of graph '{}'", L.name, L.node, g.name);
    if (L.in_node != g.nodes[L.node].inputs.at(0))
      fail("engine: layer '{}' reads node {} (expected its input {})", L.name, L.in_node,
           g.nodes[L.node].inputs[0]);
    const ActQuant& in = point(L.in_node);
    if (in.scale != L.in_scale || in.zero_point != L.in_zero_point)
      fail(
          "engine: layer '{}' reads '{}' at scale {} / zero point {} (expected the point's {} / "
          "{})",
          L.name, g.nodes[L.in_node].name, L.in_scale, L.in_zero_point, in.scale, in.zero_point);
    for (int b : L.channel_bits)
      if (b < 0 || b > 8)
        fail("engine: layer '{}' has a {}-bit channel (expected 0..8)", L.name, b);
    layer_of[L.node] = static_cast<int>(li);
  }
  for (int n : g.weight_layers())
    if (!layer_of.count(n)) fail("engine: weight layer '{}' has no integer layer", g.nodes[n].name);

  // Per node: the buffer that holds its codes and the point whose scale / zero point they use.
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
    b.first = b.last = static_cast<int>(ex.steps_.size());  // the step about to be pushed
    ex.buffers_.push_back(b);
    return static_cast<int>(ex.buffers_.size()) - 1;
  };
  auto push = [&](Step st) {
    const int idx = static_cast<int>(ex.steps_.size());
    for (int b : {st.in, st.in2})
      if (b >= 0) ex.buffers_[b].last = std::max(ex.buffers_[b].last, idx);
    ex.steps_.push_back(std::move(st));
  };
  auto input_val = [&](int node, int of) -> const Val& {
    const Val& v = val[node];
    if (v.buf < 0)
      fail("engine: '{}' reads '{}', which the engine does not hold as codes", g.nodes[of].name,
           g.nodes[node].name);
    return v;
  };
  // A Lut step: node's codes = table[input codes], held at point `q_node`.
  auto push_table = [&](int node, const Val& in, const std::array<uint8_t, 256>& t, int q_node) {
    Step st;
    st.kind = Step::Kind::Lut;
    st.name = g.nodes[node].name;
    st.in = in.buf;
    st.n = numel_of(node);
    st.table = static_cast<int>(ex.luts_.size());
    ex.luts_.push_back(t);
    st.out = new_buffer(st.n);
    push(st);
    val[node] = {st.out, q_node, true};
  };
  // Codes at point p → codes at point q through an optional activation, by a 256-entry table.
  auto lut_step = [&](int node, const Val& in, int q_node, bool relu, bool relu6) {
    const ActQuant& p = point(in.point);
    const ActQuant& q = point(q_node);
    const auto [lo, hi] = act_range(q, relu, relu6);
    const Requant m = quantize_multiplier(static_cast<double>(p.scale) / q.scale);
    std::array<uint8_t, 256> t{};
    for (int c = 0; c < 256; ++c) {
      int64_t v = c - p.zero_point;
      if (relu || relu6) v = std::max<int64_t>(v, 0);
      t[c] = static_cast<uint8_t>(
          std::clamp<int64_t>(int64_t{requantize(v, m)} + q.zero_point, lo, hi));
    }
    push_table(node, in, t, q_node);
  };
  // A table-driven activation (sigmoid, hardswish, ...): codes at the input's point → the
  // function in float, as the simulation computes it on the dequantized value → codes at the
  // node's own point. Input codes beyond the input point's qmax cannot occur; they map as qmax.
  auto activation_step = [&](int node, const Val& in) {
    const Node& a = g.nodes[node];
    if (!pts.count(node))
      fail("engine: activation '{}' ({}) is not a quantization point", a.name, op_name(a.op));
    const ActQuant& p = point(in.point);
    const ActQuant& q = point(node);
    std::array<uint8_t, 256> t{};
    for (int c = 0; c < 256; ++c) {
      const float x = static_cast<float>(std::min(c, p.qmax()) - p.zero_point) * p.scale;
      const float y = static_cast<float>(activation_value(a.op, a.alpha, x));
      const float r = std::nearbyint(y / q.scale) + static_cast<float>(q.zero_point);
      t[c] = static_cast<uint8_t>(std::clamp(r, 0.0f, static_cast<float>(q.qmax())));
    }
    push_table(node, in, t, node);
  };
  // A node that is a point but holds another point's codes is rescaled to its own.
  auto ensure_point = [&](int node) {
    if (!pts.count(node) || val[node].point == node) return;
    if (same_point(point(val[node].point), point(node))) {
      val[node].point = node;
      return;
    }
    lut_step(node, val[node], node, false, false);
  };
  // After a producer wrote codes at w.point into buffer `buf`: the walked nodes alias it (ReLU,
  // ReLU6, flatten: fused or free) or max-pool it.
  auto emit_path = [&](const Walk& w, int buf) {
    for (int node : w.path) {
      const Node& m = g.nodes[node];
      if (m.op == Op::MaxPool) {
        const Shape& in = g.nodes[m.inputs[0]].out_shape;
        Step st;
        st.kind = Step::Kind::MaxPool;
        st.name = m.name;
        st.in = buf;
        st.pool = PoolShape{in.at(0), in.at(1), in.at(2), m.window, m.ceil_mode};
        const Window2d& mw = m.window;
        if (std::max(mw.pad_top, mw.pad_bottom) >= mw.kernel_h ||
            std::max(mw.pad_left, mw.pad_right) >= mw.kernel_w)
          fail("engine: max-pool '{}' window {} pads as much as its kernel", m.name,
               window_str(mw));
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
        if (i != 0) fail("engine: graph '{}' has a second input '{}'", g.name, n.name);
        Walk w = walk_to_point(g, 0, pts);
        if (w.point < 0) fail("engine: the input of '{}' reaches no quantization point", g.name);
        for (int node : w.path)
          if (g.nodes[node].op != Op::Flatten)
            fail(
                "engine: the input reaches its quantization point through '{}' (expected only "
                "flatten)",
                g.nodes[node].name);
        ex.in_q_ = point(w.point);
        ex.input_size_ = numel_of(0);
        ex.input_plane_ = ex.input_size_ / g.input_shape[0];
        const int b = new_buffer(ex.input_size_);
        val[0] = {b, w.point, true};
        for (int node : w.path) val[node] = {b, w.point, true};
        const int64_t c = g.input_shape[0];
        ex.mean_.assign(static_cast<size_t>(c), 0.0f);
        ex.std_.assign(static_cast<size_t>(c), 1.0f);
        if (!g.input_mean.empty()) {
          if (static_cast<int64_t>(g.input_mean.size()) != c ||
              static_cast<int64_t>(g.input_std.size()) != c)
            fail("engine: graph '{}' has {} means and {} standard deviations (expected {})", g.name,
                 g.input_mean.size(), g.input_std.size(), c);
          for (int64_t k = 0; k < c; ++k) {
            ex.mean_[k] = g.input_mean[k];
            ex.std_[k] = g.input_std[k] > 0.0f ? g.input_std[k] : 1.0f;
          }
        }
        break;
      }
      case Op::Conv2d:
      case Op::Linear: {
        const int li = layer_of.at(i);
        const IntLayer& L = ex.layers_[li];
        const Val& in = input_val(L.in_node, i);
        if (in.point != L.in_node)
          fail("engine: layer '{}' reads codes of '{}' (expected its input point '{}')", L.name,
               g.nodes[in.point].name, g.nodes[L.in_node].name);
        Step st;
        st.name = n.name;
        st.layer = li;
        st.in = in.buf;
        st.conv = conv_shape_of(g, i);
        check_conv(st.conv, &L);
        if (i == g.output()) {
          if (L.out_node >= 0)
            fail("engine: the output layer '{}' writes point '{}' (expected float logits)", L.name,
                 g.nodes[L.out_node].name);
          st.kind = Step::Kind::ConvF32;
          ex.output_size_ = st.conv.out_size();
          push(st);
          val[i].done = true;
          break;
        }
        if (L.out_node >= 0) {
          Walk w = walk_to_point(g, i, pts);
          if (w.point != L.out_node)
            fail("engine: layer '{}' writes point {} (expected '{}', the next point downstream)",
                 L.name, L.out_node, w.point < 0 ? "none" : g.nodes[w.point].name);
          const ActQuant& q = point(L.out_node);
          const auto [lo, hi] = act_range(q, w.relu, w.relu6);
          if (L.out_scale != q.scale || L.out_zero_point != q.zero_point || L.out_lo != lo ||
              L.out_hi != hi)
            fail(
                "engine: layer '{}' writes '{}' at scale {}, zero point {}, range {}..{} "
                "(expected {}, {}, {}..{})",
                L.name, g.nodes[L.out_node].name, L.out_scale, L.out_zero_point, L.out_lo, L.out_hi,
                q.scale, q.zero_point, lo, hi);
          if (static_cast<int64_t>(L.requant.size()) != st.conv.out_c)
            fail("engine: layer '{}' has {} requantization constants (expected {})", L.name,
                 L.requant.size(), st.conv.out_c);
          if (isa != Isa::Reference && st.conv.groups == 1) {
            st.kind = Step::Kind::ConvFast;
            st.fast = static_cast<int>(ex.fast_.size());
            ex.fast_.push_back(
                prepare_conv2d_grouped(st.conv, L, isa, point(L.in_node).bits, channel_groups));
          } else {
            st.kind = Step::Kind::ConvRef;
          }
          st.out = new_buffer(st.conv.out_size());
          const int out = st.out;
          push(st);
          val[i] = {out, L.out_node, true};
          emit_path(w, out);
          break;
        }
        // A float output inside the graph: conv → ReLU/ReLU6 → (global) average pooling.
        int cur = i;
        bool relu = false, relu6 = false;
        for (;;) {
          auto cons = consumers(g, cur);
          if (cons.size() != 1)
            fail(
                "engine: layer '{}' has no quantization point downstream and '{}' has {} readers "
                "(expected conv → relu/relu6 → average pooling)",
                L.name, g.nodes[cur].name, cons.size());
          cur = cons[0];
          const Op op = g.nodes[cur].op;
          if (op == Op::GlobalAvgPool || op == Op::AvgPool) break;
          if (op != Op::ReLU && op != Op::ReLU6)
            fail(
                "engine: layer '{}' has no quantization point downstream and is read by '{}' "
                "(expected conv → relu/relu6 → average pooling)",
                L.name, g.nodes[cur].name);
          relu |= op == Op::ReLU;
          relu6 |= op == Op::ReLU6;
          val[cur].done = true;
        }
        const int gap = cur;
        const Node& pool = g.nodes[gap];
        Walk w = walk_to_point(g, gap, pts);
        if (w.point < 0)
          fail("engine: average pooling '{}' reaches no quantization point", pool.name);
        const ActQuant& q = point(w.point);
        // The window each output averages over: the whole plane (global) or kh·kw taps, the
        // padded ones counting as zeros (count_include_pad, as the float model).
        int64_t hw = st.conv.out_h() * st.conv.out_w();
        st.kind = Step::Kind::ConvGap;
        if (pool.op == Op::AvgPool) {
          st.kind = Step::Kind::ConvPool;
          st.pool = PoolShape{st.conv.out_c, st.conv.out_h(), st.conv.out_w(), pool.window};
          const Window2d& pw = pool.window;
          if (st.pool.out_h() <= 0 || st.pool.out_w() <= 0 ||
              2 * std::max(pw.pad_top, pw.pad_bottom) > pw.kernel_h ||
              2 * std::max(pw.pad_left, pw.pad_right) > pw.kernel_w)
            fail("engine: average pooling '{}': window {} over {}x{}", pool.name, window_str(pw),
                 st.pool.in_h, st.pool.in_w);
          hw = pw.taps();
        }
        st.relu = relu || relu6;
        for (int64_t c = 0; c < st.conv.out_c; ++c) {
          const float sw = L.weight_scales.at(c);
          const double unit = static_cast<double>(L.in_scale) * (sw > 0 ? sw : 1.0);
          st.gap_hi.push_back(relu6 ? static_cast<int64_t>(std::min(
                                          std::ldexp(6.0 / unit, kGapFrac), std::ldexp(1.0, 62)))
                                    : -1);
          st.gap_m.push_back(
              quantize_multiplier(unit / (std::ldexp(1.0, kGapFrac) * hw * q.scale)));
          // The part of the float bias the int32 bias does not hold (as channel_bias's offset).
          const double frac = c < static_cast<int64_t>(L.bias_float.size())
                                  ? L.bias_float[c] / unit - L.bias[c]
                                  : 0;
          st.gap_frac.push_back(std::fabs(frac) <= 0.5 ? std::llround(std::ldexp(frac, kGapFrac))
                                                       : 0);
        }
        std::tie(st.lo, st.hi) = act_range(q, w.relu, w.relu6);
        st.zp_out = q.zero_point;
        st.out = new_buffer(numel_of(gap));
        const int out = st.out;
        ex.acc_.resize(std::max(ex.acc_.size(), static_cast<size_t>(st.conv.out_size())));
        push(st);
        val[gap] = {out, w.point, true};
        emit_path(w, out);
        break;
      }
      case Op::Add: {
        const Val& a = input_val(n.inputs.at(0), i);
        const Val& b = input_val(n.inputs.at(1), i);
        Walk w = walk_to_point(g, i, pts);
        if (w.point < 0) fail("engine: add '{}' reaches no quantization point", n.name);
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
        if (isa != Isa::Reference) {
          st.kind = Step::Kind::AddLut;
          st.table = static_cast<int>(ex.add_terms_.size());
          for (const auto& [m, zp] :
               {std::pair{st.add.m_a, st.add.zp_a}, {st.add.m_b, st.add.zp_b}}) {
            std::array<int32_t, 256> t{};
            for (int c = 0; c < 256; ++c)
              t[c] = requantize((int64_t{c} - zp) * (int64_t{1} << AddParams::kShift), m);
            ex.add_terms_.push_back(t);
          }
        }
        st.out = new_buffer(st.n);
        const int out = st.out;
        push(st);
        val[i] = {out, w.point, true};
        emit_path(w, out);
        break;
      }
      case Op::AvgPool:
      case Op::GlobalAvgPool: {
        const Val& in = input_val(n.inputs.at(0), i);
        Walk w = walk_to_point(g, i, pts);
        if (w.point < 0) fail("engine: average pooling '{}' reaches no quantization point", n.name);
        const ActQuant &p = point(in.point), &q = point(w.point);
        const auto [lo, hi] = act_range(q, w.relu, w.relu6);
        const Shape& s = g.nodes[n.inputs[0]].out_shape;
        if (s.size() != 3)
          fail("engine: pooling '{}' reads rank {} (expected C,H,W)", n.name, s.size());
        Step st;
        st.name = n.name;
        st.in = in.buf;
        if (n.op == Op::AvgPool) {
          st.kind = Step::Kind::AvgPool;
          st.pool = PoolShape{s[0], s[1], s[2], n.window};
          st.avg = make_avgpool_params(p.scale, p.zero_point, q.scale, q.zero_point,
                                       n.window.taps(), lo, hi);
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
        // On the codes of the point read: clamp, or rescale to this node's own point.
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
      case Op::Sigmoid:
      case Op::HardSigmoid:
      case Op::HardSwish:
      case Op::SiLU:
      case Op::LeakyReLU:
        activation_step(i, input_val(n.inputs.at(0), i));
        break;
      case Op::Concat: {
        // Each input's codes → the concat's own point by a table (as the simulation: dequantize,
        // then quantize at the output point), into its channel slice of one output buffer.
        if (!pts.count(i)) fail("engine: concat '{}' is not a quantization point", n.name);
        const ActQuant& q = point(i);
        const int out = new_buffer(numel_of(i));
        int64_t offset = 0;
        for (int k : n.inputs) {
          const Val& in = input_val(k, i);
          const ActQuant& p = point(in.point);
          std::array<uint8_t, 256> t{};
          for (int c = 0; c < 256; ++c) {
            const float x = static_cast<float>(std::min(c, p.qmax()) - p.zero_point) * p.scale;
            const float r = std::nearbyint(x / q.scale) + static_cast<float>(q.zero_point);
            t[c] = static_cast<uint8_t>(std::clamp(r, 0.0f, static_cast<float>(q.qmax())));
          }
          Step st;
          st.kind = Step::Kind::Lut;
          st.name = n.name + "/" + g.nodes[k].name;
          st.in = in.buf;
          st.n = numel_of(k);
          st.table = static_cast<int>(ex.luts_.size());
          ex.luts_.push_back(t);
          st.out = out;
          st.out_offset = offset;
          offset += st.n;
          push(st);
        }
        val[i] = {out, i, true};
        break;
      }
      case Op::Mul: {
        const Val& a = input_val(n.inputs.at(0), i);
        const Val& b = input_val(n.inputs.at(1), i);
        if (!pts.count(i)) fail("engine: mul '{}' is not a quantization point", n.name);
        Walk w = walk_to_point(g, i, pts);
        const ActQuant &pa = point(a.point), &pb = point(b.point), &q = point(w.point);
        const auto [lo, hi] = act_range(q, w.relu, w.relu6);
        Step st;
        st.kind = Step::Kind::Mul;
        st.name = n.name;
        st.in = a.buf;
        st.in2 = b.buf;
        st.n = numel_of(i);
        st.mul = make_mul_params(pa.scale, pa.zero_point, pb.scale, pb.zero_point, q.scale,
                                 q.zero_point, lo, hi, st.n / numel_of(n.inputs[1]));
        st.out = new_buffer(st.n);
        const int out = st.out;
        push(st);
        val[i] = {out, w.point, true};
        emit_path(w, out);
        break;
      }
      case Op::ChannelShuffle: {
        const Val in = input_val(n.inputs.at(0), i);
        const Shape& s = n.out_shape;
        if (s.size() != 3 || n.groups <= 0 || s[0] % n.groups != 0)
          fail("engine: channel shuffle '{}': {} groups over {} (expected C,H,W, groups dividing C)",
               n.name, n.groups, shape_str(s));
        Step st;
        st.kind = Step::Kind::Shuffle;
        st.name = n.name;
        st.in = in.buf;
        st.pool = PoolShape{s[0], s[1], s[2], 1, 1, 0};
        st.shuffle_groups = n.groups;
        st.out = new_buffer(numel_of(i));
        const int out = st.out;
        push(st);
        val[i] = {out, in.point, true};  // the same codes, permuted
        ensure_point(i);
        break;
      }
      case Op::BatchNorm:  // refused above
        fail("engine: batchnorm '{}' (expected a BN-folded graph)", n.name);
    }
  }
  if (ex.output_size_ == 0)
    fail("engine: graph '{}' ends in '{}' (expected a weight layer writing the logits)", g.name,
         g.nodes.back().name);

  // The memory plan: greedy by size, first fit among the buffers alive at the same time.
  std::vector<int> order(ex.buffers_.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = static_cast<int>(k);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return ex.buffers_[a].bytes > ex.buffers_[b].bytes; });
  std::vector<int> placed;
  size_t total = 0;
  for (int id : order) {
    Buffer& b = ex.buffers_[id];
    std::vector<std::pair<size_t, size_t>> busy;  // [offset, end) of overlapping lifetimes
    for (int o : placed) {
      const Buffer& p = ex.buffers_[o];
      if (p.first <= b.last && b.first <= p.last)
        busy.push_back({p.offset, p.offset + static_cast<size_t>(p.bytes)});
    }
    std::sort(busy.begin(), busy.end());
    size_t off = 0;
    for (const auto& [s, e] : busy) {
      if (off + static_cast<size_t>(b.bytes) <= s) break;
      off = std::max(off, align_up(e));
    }
    b.offset = off;
    total = std::max(total, off + static_cast<size_t>(b.bytes));
    placed.push_back(id);
  }
  ex.arena_.assign(align_up(total), 0);
  return ex;
}

void GraphExecutor::run(const float* image, float* logits) {
  // The simulation's input quantizer (fake_quant.cpp), in float: normalize, divide, round half
  // to even, shift, clamp.
  const float s = std::max(std::fabs(in_q_.scale), 1e-12f);
  const float zp = static_cast<float>(in_q_.zero_point), qmax = static_cast<float>(in_q_.qmax());
  uint8_t* x = buf(0);
  for (size_t c = 0; c < mean_.size(); ++c) {
    const float m = mean_[c], sd = std_[c];
    for (int64_t p = 0; p < input_plane_; ++p) {
      const int64_t k = static_cast<int64_t>(c) * input_plane_ + p;
      const float v = std::nearbyint(((image[k] - m) / sd) / s) + zp;
      x[k] = static_cast<uint8_t>(std::min(std::max(v, 0.0f), qmax));
    }
  }
  logits_ = logits;
  execute();
}

void GraphExecutor::run_quantized(const uint8_t* x, float* logits) {
  std::memcpy(buf(0), x, static_cast<size_t>(input_size_));
  logits_ = logits;
  execute();
}

void GraphExecutor::execute() {
  for (Step& st : steps_) {
    const uint8_t* in = st.in >= 0 ? buf(st.in) : nullptr;
    uint8_t* out = st.out >= 0 ? buf(st.out) : nullptr;
    switch (st.kind) {
      case Step::Kind::ConvFast:
        fast_[st.fast].run(in, out);
        break;
      case Step::Kind::ConvRef:
        conv2d_u8_ref(st.conv, layers_[st.layer], in, out);
        break;
      case Step::Kind::ConvF32:
        conv2d_f32_ref(st.conv, layers_[st.layer], in, logits_);
        break;
      case Step::Kind::ConvGap:
      case Step::Kind::ConvPool: {
        conv2d_acc_ref(st.conv, layers_[st.layer], in, acc_.data());
        const int64_t hw = st.conv.out_h() * st.conv.out_w();
        for (int64_t c = 0; c < st.conv.out_c; ++c) {
          // The activation on the accumulators, in 2^−8 units, in place.
          int64_t* a = acc_.data() + c * hw;
          const int64_t cap = st.gap_hi[c];
          for (int64_t p = 0; p < hw; ++p) {
            int64_t v = a[p] * (int64_t{1} << kGapFrac) + st.gap_frac[c];
            if (st.relu) v = std::max<int64_t>(v, 0);
            if (cap >= 0) v = std::min(v, cap);
            a[p] = v;
          }
          auto emit = [&](int64_t sum) {
            const int64_t y = int64_t{requantize(sum, st.gap_m[c])} + st.zp_out;
            return static_cast<uint8_t>(std::clamp<int64_t>(y, st.lo, st.hi));
          };
          if (st.kind == Step::Kind::ConvGap) {
            int64_t sum = 0;
            for (int64_t p = 0; p < hw; ++p) sum += a[p];
            out[c] = emit(sum);
            continue;
          }
          // Average pooling windows (avgpool_u8_ref's loops): padded taps add 0, count in M.
          const PoolShape& ps = st.pool;
          const int64_t oh = ps.out_h(), ow = ps.out_w();
          for (int64_t oy = 0; oy < oh; ++oy)
            for (int64_t ox = 0; ox < ow; ++ox) {
              int64_t sum = 0;
              for (int64_t ky = 0; ky < ps.window.kernel_h; ++ky)
                for (int64_t kx = 0; kx < ps.window.kernel_w; ++kx) {
                  const int64_t iy = oy * ps.window.stride_h - ps.window.pad_top + ky,
                                ix = ox * ps.window.stride_w - ps.window.pad_left + kx;
                  if (iy < 0 || iy >= ps.in_h || ix < 0 || ix >= ps.in_w) continue;
                  sum += a[iy * ps.in_w + ix];
                }
              out[(c * oh + oy) * ow + ox] = emit(sum);
            }
        }
        break;
      }
      case Step::Kind::Add:
        add_u8_ref(st.add, in, buf(st.in2), st.n, out);
        break;
      case Step::Kind::AddLut: {
        const int32_t* ta = add_terms_[st.table].data();
        const int32_t* tb = add_terms_[st.table + 1].data();
        const uint8_t* b = buf(st.in2);
        const int64_t half = int64_t{1} << (AddParams::kShift - 1);
        for (int64_t k = 0; k < st.n; ++k) {
          const int64_t v =
              ((int64_t{ta[in[k]]} + tb[b[k]] + half) >> AddParams::kShift) + st.add.zp_out;
          out[k] = static_cast<uint8_t>(std::clamp<int64_t>(v, st.add.lo, st.add.hi));
        }
        break;
      }
      case Step::Kind::MaxPool:
        maxpool_u8_ref(st.pool, in, out);
        break;
      case Step::Kind::AvgPool:
        avgpool_u8_ref(st.pool, st.avg, in, out);
        break;
      case Step::Kind::Gap:
        global_avgpool_u8_ref(st.pool.c, st.pool.in_h * st.pool.in_w, st.avg, in, out);
        break;
      case Step::Kind::Lut: {
        const uint8_t* t = luts_[st.table].data();
        uint8_t* o = out + st.out_offset;  // a concat input's channel slice
        for (int64_t k = 0; k < st.n; ++k) o[k] = t[in[k]];
        break;
      }
      case Step::Kind::Mul:
        mul_u8_ref(st.mul, in, buf(st.in2), st.n, out);
        break;
      case Step::Kind::Shuffle:
        channel_shuffle_u8_ref(st.pool.c, st.shuffle_groups, st.pool.in_h * st.pool.in_w, in, out);
        break;
    }
  }
}

std::vector<std::string> GraphExecutor::describe() const {
  static const char* kinds[] = {"conv",     "conv(ref)", "conv(f32)",   "conv+gap",
                                "add(ref)", "add",       "maxpool",     "avgpool",
                                "gap",      "table",     "conv+avgpool", "mul",
                                "shuffle"};
  std::vector<std::string> lines;
  for (const Step& st : steps_) {
    std::string k = kinds[static_cast<int>(st.kind)];
    if (st.kind == Step::Kind::ConvFast) k += fmt::format(" [{}]", fast_[st.fast].kernel_names());
    if (st.out >= 0)
      lines.push_back(fmt::format("{} {}: {} B @ {}", k, st.name, buffers_[st.out].bytes,
                                  buffers_[st.out].offset));
    else
      lines.push_back(fmt::format("{} {}: logits", k, st.name));
  }
  return lines;
}

}  // namespace sq
