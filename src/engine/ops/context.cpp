// The prepare walk's shared state (op.h): points, per-node values, buffers and their lifetimes.
#include <algorithm>
#include <cmath>
#include <tuple>

#include "op.h"
#include "sigmaquant/error.h"
#include "sigmaquant/transform.h"

namespace sq::ops {

namespace {

bool commutes(Op op) {
  return op == Op::ReLU || op == Op::ReLU6 || op == Op::MaxPool || op == Op::Flatten;
}

bool same_point(const ActQuant& a, const ActQuant& b) {
  return a.scale == b.scale && a.zero_point == b.zero_point && a.bits == b.bits;
}

}  // namespace

std::pair<int32_t, int32_t> act_range(const ActQuant& q, bool relu, bool relu6) {
  int32_t lo = (relu || relu6) ? q.zero_point : 0, hi = q.qmax();
  if (relu6)
    hi = std::min<int32_t>(hi, static_cast<int32_t>(std::nearbyint(6.0 / q.scale)) + q.zero_point);
  return {lo, std::max(lo, hi)};
}

Context::Context(const Graph& graph, const IntModel& im, Isa isa_, bool groups, GraphExecutor& ex,
                 std::map<int, int> layer_of)
    : g(graph),
      isa(isa_ == Isa::Auto ? best_isa() : isa_),
      channel_groups(groups),
      ex_(ex),
      pts_(im.points),
      layer_of_(std::move(layer_of)),
      val_(graph.nodes.size()) {}

const ActQuant& Context::point(int node) const {
  auto it = pts_.find(node);
  if (it == pts_.end()) fail("engine: '{}' is not a quantization point", g.nodes[node].name);
  return it->second;
}

int64_t Context::numel(int node) const {
  int64_t n = 1;
  for (int64_t d : node == 0 ? g.input_shape : g.nodes[node].out_shape) n *= d;
  return n;
}

Walk Context::walk(int from) const {
  Walk w;
  int cur = from;
  while (!pts_.count(cur)) {
    auto cons = consumers(g, cur);
    if (cons.size() != 1 || !commutes(g.nodes[cons[0]].op)) break;
    cur = cons[0];
    w.relu |= g.nodes[cur].op == Op::ReLU;
    w.relu6 |= g.nodes[cur].op == Op::ReLU6;
    w.path.push_back(cur);
  }
  if (pts_.count(cur)) w.point = cur;
  return w;
}

const Context::Val& Context::input(int node, int reader) const {
  const Val& v = val_[node];
  if (v.buf < 0)
    fail("engine: '{}' reads '{}', which the engine does not hold as codes", g.nodes[reader].name,
         g.nodes[node].name);
  return v;
}

Context::Binary Context::binary(int node, const char* what, bool must_be_point) {
  const Node& n = g.nodes[node];
  const Val& a = input(n.inputs.at(0), node);
  const Val& b = input(n.inputs.at(1), node);
  if (must_be_point && !is_point(node))
    fail("engine: {} '{}' is not a quantization point", what, n.name);
  Binary r{};
  r.w = walk(node);
  if (r.w.point < 0) fail("engine: {} '{}' reaches no quantization point", what, n.name);
  r.pa = &point(a.point);
  r.pb = &point(b.point);
  r.q = &point(r.w.point);
  std::tie(r.lo, r.hi) = act_range(*r.q, r.w.relu, r.w.relu6);
  r.st.name = n.name;
  r.st.in = a.buf;
  r.st.in2 = b.buf;
  r.st.n = numel(node);
  return r;
}

int Context::new_buffer(int64_t bytes) {
  GraphExecutor::Buffer b;
  b.bytes = bytes;
  b.first = b.last = static_cast<int>(ex_.steps_.size());  // the step about to be pushed
  ex_.buffers_.push_back(b);
  return static_cast<int>(ex_.buffers_.size()) - 1;
}

int Context::new_view(int buf, int64_t offset, int64_t bytes) {
  const GraphExecutor::Buffer& parent = ex_.buffers_.at(buf);
  if (offset < 0 || bytes <= 0 || offset + bytes > parent.bytes)
    fail("engine: a view of bytes [{}, {}) of a {}-byte buffer", offset, offset + bytes,
         parent.bytes);
  GraphExecutor::Buffer b;
  b.bytes = bytes;
  b.first = b.last = static_cast<int>(ex_.steps_.size());
  b.view_of = parent.view_of >= 0 ? parent.view_of : buf;  // a view of a view: of its buffer
  b.view_offset = parent.view_offset + offset;
  ex_.buffers_.push_back(b);
  return static_cast<int>(ex_.buffers_.size()) - 1;
}

void Context::push(Step st, const StepType& type, std::string detail) {
  const int idx = static_cast<int>(ex_.steps_.size());
  for (int b : {st.in, st.in2})
    if (b >= 0) {
      ex_.buffers_[b].last = std::max(ex_.buffers_[b].last, idx);
      const int owner = ex_.buffers_[b].view_of;  // a view's reader keeps its buffer alive
      if (owner >= 0) ex_.buffers_[owner].last = std::max(ex_.buffers_[owner].last, idx);
    }
  st.kind = type.kind;
  ex_.steps_.push_back(std::move(st));
  ex_.step_types_.push_back(&type);
  ex_.step_labels_.push_back(type.label + detail);
}

void Context::push_output(int node, Step st, const StepType& type, const Walk& w, int64_t bytes,
                          std::string detail) {
  st.out = new_buffer(bytes);
  const int out = st.out;
  push(std::move(st), type, std::move(detail));
  val_[node] = {out, w.point, true};
  emit_path(w, out);
}

void Context::emit_path(const Walk& w, int buf) {
  for (int node : w.path) {
    if (g.nodes[node].op == Op::MaxPool) buf = push_maxpool(*this, node, buf);
    val_[node] = {buf, w.point, true};
  }
}

void Context::ensure_point(int node) {
  if (!is_point(node) || val_[node].point == node) return;
  if (same_point(point(val_[node].point), point(node))) {
    val_[node].point = node;
    return;
  }
  push_requant_table(*this, node, val_[node], node, false, false);
}

const IntLayer& Context::layer(int index) const { return ex_.layers_->at(index); }

int Context::add_fast(GroupedConv2d conv) {
  ex_.fast_.push_back(std::move(conv));
  return static_cast<int>(ex_.fast_.size()) - 1;
}

int Context::add_table(const std::array<uint8_t, 256>& t) {
  ex_.luts_->push_back(t);
  return static_cast<int>(ex_.luts_->size()) - 1;
}

int Context::add_consts(std::vector<uint8_t> t) {
  ex_.consts_->push_back(std::move(t));
  return static_cast<int>(ex_.consts_->size()) - 1;
}

void Context::fuse_add_tables() {
  std::vector<Step>& steps = ex_.steps_;
  std::vector<GraphExecutor::Buffer>& bufs = ex_.buffers_;
  const auto reads = [&](const Step& st, int buf) {  // st reads buf, directly or through a view
    for (int b : {st.in, st.in2})
      if (b >= 0 && (b == buf || bufs[static_cast<size_t>(b)].view_of == buf)) return true;
    return false;
  };
  for (size_t k = 0; k < steps.size(); ++k) {
    if (steps[k].kind != Step::Kind::AddLut || steps[k].out_offset != 0) continue;
    const int x = steps[k].out;
    GraphExecutor::Buffer& xb = bufs[static_cast<size_t>(x)];
    const size_t t = static_cast<size_t>(xb.last);  // the add's last reader
    if (xb.view_of >= 0 || t <= k || t >= steps.size() || steps[t].kind != Step::Kind::Lut ||
        steps[t].in != x)
      continue;
    const bool viewed = std::any_of(bufs.begin(), bufs.end(),
                                    [&](const GraphExecutor::Buffer& b) { return b.view_of == x; });
    // The table must be the add's only reader, and moving its write back to step k must not
    // change what the steps between see: none of them reads its output buffer, and any that
    // writes it fills another slice (a concat's other inputs).
    const Step& lut = steps[t];
    bool movable = !viewed;
    for (size_t j = k + 1; j < t && movable; ++j)
      movable = !reads(steps[j], x) && !reads(steps[j], lut.out) &&
                (steps[j].out != lut.out ||
                 (steps[j].kind == Step::Kind::Lut && steps[j].out_offset != lut.out_offset));
    if (!movable) continue;
    const std::array<uint8_t, 256>& table = (*ex_.luts_)[static_cast<size_t>(lut.table)];
    fuse_table_into_add(ex_.step_types_[k], (*ex_.consts_)[static_cast<size_t>(steps[k].table)],
                        table);
    xb.bytes = 0;  // the add's own codes are never written
    xb.last = static_cast<int>(k);
    GraphExecutor::Buffer& yb = bufs[static_cast<size_t>(lut.out)];
    yb.first = std::min(yb.first, static_cast<int>(k));
    Step& add = steps[k];
    add.out = lut.out;
    add.out_offset = lut.out_offset;
    add.name = lut.name;  // the step now holds the table's node's codes
    ex_.step_labels_[k] += "+table";
    const auto at = static_cast<std::ptrdiff_t>(t);
    steps.erase(steps.begin() + at);
    ex_.step_types_.erase(ex_.step_types_.begin() + at);
    ex_.step_labels_.erase(ex_.step_labels_.begin() + at);
    for (GraphExecutor::Buffer& b : bufs) {
      if (b.first > static_cast<int>(t)) --b.first;
      if (b.last >= static_cast<int>(t)) --b.last;  // the table's reads were the add's
    }
  }
}

void Context::reserve_acc(int64_t n) {
  ex_.acc_.resize(std::max(ex_.acc_.size(), static_cast<size_t>(n)));
}

void Context::set_logits(int64_t n) { ex_.output_size_ = n; }

void Context::set_input(const ActQuant& q, std::vector<float> mean, std::vector<float> std) {
  ex_.in_q_ = q;
  ex_.input_size_ = numel(0);
  ex_.input_plane_ = ex_.input_size_ / g.input_shape[0];
  ex_.mean_ = std::move(mean);
  ex_.std_ = std::move(std);
}

}  // namespace sq::ops
