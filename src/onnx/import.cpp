// Import of float CNNs from ONNX — see include/sigmaquant/onnx.h and docs/formats.md,
// "ONNX export and import".
//
// The ONNX graph is walked in its (topological) node order. Every value is either a constant
// (an initializer or a Constant node's output) or the output of a SigmaQuant node; operators
// that do not change values (Identity, Dropout, Flatten/Reshape of a flat tensor) just alias.
// A constant added to the output of a Conv / Gemm / MatMul (read by nothing else) becomes its
// bias, so MatMul+Add imports as one linear layer.
//
// Shape arithmetic is folded: Shape of a computed tensor is a constant [N, C, H, W] whose batch
// entry is a symbol (kBatch), and Gather / Unsqueeze / Squeeze / Concat / Cast / Slice and
// Add / Sub / Mul / Div of constants are computed here, so the dynamic-batch flatten PyTorch
// writes for x.view(x.size(0), -1) (Shape -> Gather -> Unsqueeze -> Concat -> Reshape) is a
// flatten, and the channel ranges of x.chunk(2, dim=1) (Slice whose starts / ends come from
// Shape -> Gather -> Add -> Div -> Mul) are constants: Slice and Split of a computed tensor on
// the channels become channel_slice nodes.
//
// Before anything is built, every node is checked: unsupported operators and unsupported
// attributes are reported together, in one error naming every node.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <set>

#include <fmt/ranges.h>

#include "onnx_util.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"
#include "sigmaquant/onnx.h"

namespace sq {
namespace {

// Constants beyond this many elements cannot belong to a network SigmaQuant handles (and a
// corrupt file must not make us allocate gigabytes).
constexpr int64_t kMaxConstElements = int64_t{1} << 28;

const std::set<std::string> kSupported = {
    "Conv",    "Gemm",       "MatMul",  "Relu",    "Clip",
    "Add",     "MaxPool",    "AveragePool", "GlobalAveragePool", "Flatten",
    "Reshape", "BatchNormalization", "Identity", "Dropout", "Constant", "Sub", "Div",
    "Shape",   "Gather",     "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice",
    "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Mul", "ReduceMean", "Softmax", "Pad", "Transpose",
    "Split", "ConstantOfShape"};

// Operators that are supported only on constants (folded at import: shape arithmetic).
const std::set<std::string> kFoldOnly = {"Gather", "Unsqueeze", "Squeeze", "Concat", "Cast",
                                         "Slice", "ConstantOfShape"};

// The batch size in a folded shape: unknown at import (dynamic batch) and kept as a symbol.
constexpr int64_t kBatch = std::numeric_limits<int64_t>::min() / 2;

struct Const {
  Shape dims;
  std::vector<float> f;     // float tensors
  std::vector<int64_t> i;   // integer tensors (shapes)
  bool is_int = false;
  bool has_batch = false;   // some entry of i is kBatch (a folded Shape's batch size)
};

struct Value {
  int node = -1;                      // SigmaQuant node producing it, or
  std::shared_ptr<const Const> c;     // a constant
};

class Importer {
 public:
  Importer(const onnx::ModelProto& m, std::string where) : m_(m), where_(std::move(where)) {}

  const std::vector<std::string>& notes() const { return notes_; }

  Graph run() {
    if (!m_.has_graph()) fail("{}: no graph in the ONNX model", where_);
    const onnx::GraphProto& gp = m_.graph();
    opset_ = 0;
    for (const auto& o : m_.opset_import())
      if (o.domain().empty() || o.domain() == "ai.onnx") opset_ = o.version();
    if (opset_ == 0 && m_.opset_import_size() == 0) opset_ = 1;  // IR 2: no opset_import
    if (opset_ < 7) fail("{}: opset {} of the default domain is not supported (expected >= 7)", where_, opset_);
    check_supported(gp);
    for (const auto& t : gp.initializer()) consts_[t.name()] = std::make_shared<Const>(to_const(t, "initializer"));

    for (const auto& n : gp.node())
      for (const auto& in : n.input()) ++uses_[in];
    for (const auto& o : gp.output()) ++uses_[o.name()];

    // The data input: the first graph input that is not an initializer.
    const onnx::ValueInfoProto* input = nullptr;
    for (const auto& in : gp.input())
      if (!consts_.count(in.name())) {
        if (input) fail("{}: graph has several data inputs ('{}', '{}'); expected one image input", where_, input->name(), in.name());
        input = &in;
      }
    if (!input) fail("{}: graph has no data input", where_);
    g_.name = gp.name().empty() ? "onnx" : gp.name();
    g_.input_shape = input_shape(*input);
    g_.num_classes = 1;  // set from the output below
    values_[input->name()] = Value{g_.input(), nullptr};
    infer_node(0);

    for (int k = 0; k < gp.node_size(); ++k) node(gp.node(k), k);
    if (norm_stage_ == 1) g_.input_std.assign(g_.input_mean.size(), 1.0f);

    if (gp.output_size() != 1) fail("{}: graph has {} outputs, expected 1 (the logits)", where_, gp.output_size());
    const std::string& out = gp.output(0).name();
    auto it = values_.find(out);
    if (it == values_.end() || it->second.node < 0)
      fail("{}: graph output '{}' is not computed from the input", where_, out);
    if (it->second.node != g_.output())
      fail("{}: graph output '{}' is not the last operator's output (node '{}')", where_, out,
           g_.nodes[it->second.node].name);
    const Shape& os = g_.nodes.back().out_shape;
    if (os.size() != 1)
      fail("{}: graph output '{}' has per-sample shape {}, expected [classes] (flatten first)",
           where_, out, shape_str(os));
    g_.num_classes = os[0];
    g_.infer_shapes();
    g_.check_params(where_);
    // The constants were checked as they were read; scaling (Gemm's alpha, beta) and the sums of
    // bias constants can still overflow to Inf.
    for (const Node& nd : g_.nodes)
      for (const auto& [pname, t] : nd.params)
        for (size_t i = 0; i < t.data.size(); ++i)
          if (!std::isfinite(t.data[i]))
            fail("{}: parameter {}.{} is {} at element {} after import (expected finite numbers)",
                 where_, nd.name, pname, t.data[i], i);
    return std::move(g_);
  }

 private:
  // Every unsupported operator type, named with its nodes (the first three of each), and every
  // unsupported attribute, named with its node, in one error before anything is built.
  void check_supported(const onnx::GraphProto& gp) {
    std::vector<std::string> order;
    std::map<std::string, std::vector<std::string>> nodes;
    std::vector<std::string> attrs;
    // Values known at import time: initializers, Constant and Shape outputs, and what the
    // fold-only operators compute from them.
    std::set<std::string> known;
    for (const auto& t : gp.initializer()) known.insert(t.name());
    std::map<std::string, std::vector<const onnx::NodeProto*>> readers;
    for (const auto& n : gp.node())
      for (const auto& in : n.input()) readers[in].push_back(&n);
    for (int k = 0; k < gp.node_size(); ++k) {
      const auto& n = gp.node(k);
      cur_ = label(n, k);
      std::string op;
      bool all_known = true;
      for (const auto& in : n.input()) all_known &= in.empty() || known.count(in) > 0;
      // Slice / Split of a computed tensor: the ranges (every input after the data) are known.
      bool ranges_known = true;
      for (int i = 1; i < n.input_size(); ++i)
        ranges_known &= n.input(i).empty() || known.count(n.input(i)) > 0;
      if (!n.domain().empty() && n.domain() != "ai.onnx") op = fmt::format("{} (domain '{}')", n.op_type(), n.domain());
      else if (!kSupported.count(n.op_type())) op = n.op_type();
      else if ((n.op_type() == "Slice" || n.op_type() == "Split") && !ranges_known)
        op = n.op_type() + " of computed ranges";
      else if (kFoldOnly.count(n.op_type()) && !all_known && n.op_type() != "Concat" &&
               n.op_type() != "Slice")
        op = n.op_type() + " of computed tensors";
      else if (n.op_type() == "Pad" && !only_read_by(n, readers, {"AveragePool", "Conv"}))
        op = "Pad (other than before an AveragePool or a Conv)";
      else if (n.op_type() == "Softmax" && !last_output(n, gp))
        op = "Softmax (other than the graph's output)";
      // Add / Sub / Mul / Div of known integers: shape arithmetic too (`c // groups` of a
      // channel shuffle, the ranges of a chunk).
      if (n.op_type() == "Constant" || n.op_type() == "Shape" ||
          ((kFoldOnly.count(n.op_type()) || n.op_type() == "Add" || n.op_type() == "Sub" ||
            n.op_type() == "Mul" || n.op_type() == "Div" || n.op_type() == "Reshape" ||
            n.op_type() == "Transpose") &&
           all_known))
        for (const auto& o : n.output()) known.insert(o);
      if (op.empty()) {
        check_attrs(n, attrs, all_known);
        continue;
      }
      if (!nodes.count(op)) order.push_back(op);
      nodes[op].push_back(label(n, k));
    }
    if (order.empty() && attrs.empty()) return;
    std::string list;
    for (const auto& op : order) {
      const auto& v = nodes[op];
      std::string names;
      for (size_t i = 0; i < v.size() && i < 3; ++i) names += (i ? ", '" : "'") + v[i] + "'";
      if (v.size() > 3) names += fmt::format(", … {} more", v.size() - 3);
      list += (list.empty() ? "" : ", ") +
              (v.size() == 1 ? fmt::format("{} (node {})", op, names)
                             : fmt::format("{} ({} nodes: {})", op, v.size(), names));
    }
    std::string msg = where_ + ":";
    if (!order.empty())
      msg += fmt::format(
          " unsupported ONNX operator{}: {} (supported: Conv, Gemm, MatMul(+Add), Relu, "
          "Clip(0..6), Add, MaxPool, AveragePool, GlobalAveragePool, Flatten, Reshape (to 2-D), "
          "BatchNormalization, Identity, Dropout, Constant, Sub/Div as input normalization, "
          "Sigmoid, HardSigmoid, HardSwish, LeakyRelu, Mul (same shape or one value per "
          "channel), Concat along the channels, ReduceMean over H and W, zero Pad before "
          "AveragePool or Conv, Softmax as the output, Reshape -> Transpose -> Reshape as a "
          "channel shuffle, Slice / Split on the channels with constant ranges (step 1); Shape, "
          "Gather, Unsqueeze, Squeeze, Concat, Cast, Slice, Add, Sub, Mul, Div, Reshape, "
          "Transpose, ConstantOfShape on constants)",
          order.size() > 1 ? "s" : "", list);
    if (!attrs.empty())
      msg += fmt::format("{} unsupported attribute{}: {}", order.empty() ? "" : ";",
                         attrs.size() > 1 ? "s" : "", fmt::join(attrs, "; "));
    fail("{}", msg);
  }

  // The attribute checks of one node that need no values (the converters below make the same
  // calls); each problem is appended to `out` without the file name.
  // `folded`: every input is known at import, so the node is shape arithmetic (a Transpose of
  // a constant takes any perm).
  void check_attrs(const onnx::NodeProto& n, std::vector<std::string>& out, bool folded) {
    auto check = [&](const auto& f) {
      try {
        f();
      } catch (const Error& e) {
        std::string m = e.what();
        const std::string prefix = where_ + ": ";
        out.push_back(m.compare(0, prefix.size(), prefix) == 0 ? m.substr(prefix.size()) : m);
      }
    };
    const std::string& op = n.op_type();
    if (op == "Conv") {
      check([&] { allow(n, {"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"}); });
      check([&] { no_auto_pad(n); });
      check([&] { axis_pair(n, "dilations", 1, false); });
      check([&] { axis_pair(n, "kernel_shape", 1, false); });
      check([&] { axis_pair(n, "strides", 1, false); });
      check([&] { pads(n); });
      check([&] {
        if (attr_int(n, "group", 1) <= 0) bad_attr(n, "group", fmt::format("{} must be positive", attr_int(n, "group", 1)));
      });
    } else if (op == "MaxPool" || op == "AveragePool") {
      check([&] { pool_attrs(n); });
      check([&] { no_auto_pad(n); });
      check([&] { unit_dilations(n); });
      check([&] { axis_pair(n, "kernel_shape", 0, true); });
      check([&] { axis_pair(n, "strides", 1, false); });
      check([&] { pads(n); });
    } else if (op == "Gemm") {
      check([&] { allow(n, {"alpha", "beta", "transA", "transB"}); });
      check([&] { if (attr_int(n, "transA", 0) != 0) bad_attr(n, "transA", "1 is not supported"); });
    } else if (op == "Flatten") {
      check([&] { allow(n, {"axis"}); });
      check([&] { flatten_axis(n); });
    } else if (op == "Reshape") {
      check([&] { allow(n, {"allowzero"}); });
      check([&] { if (attr_int(n, "allowzero", 0) != 0) bad_attr(n, "allowzero", "1 is not supported"); });
    } else if (op == "BatchNormalization") {
      check([&] { allow(n, {"epsilon", "momentum", "training_mode", "spatial"}); });
      check([&] { if (attr_int(n, "training_mode", 0) != 0) bad_attr(n, "training_mode", "1 is not supported (export in eval mode)"); });
      check([&] { if (attr_int(n, "spatial", 1) != 1) bad_attr(n, "spatial", "0 is not supported"); });
    } else if (op == "HardSigmoid") {
      check([&] { allow(n, {"alpha", "beta"}); });
      check([&] { torch_hardsigmoid(n); });
    } else if (op == "LeakyRelu") {
      check([&] { allow(n, {"alpha"}); });
    } else if (op == "Relu" || op == "GlobalAveragePool" || op == "Identity" || op == "Add" ||
               op == "MatMul" || op == "Sub" || op == "Div" || op == "Sigmoid" ||
               op == "HardSwish" || op == "Mul") {
      check([&] { allow(n, {}); });
    } else if (op == "Dropout") {
      check([&] { allow(n, {"seed", "ratio", "is_test"}); });
    } else if (op == "Clip") {
      check([&] { allow(n, opset_ < 11 ? std::initializer_list<const char*>{"min", "max"}
                                       : std::initializer_list<const char*>{}); });
    } else if (op == "Shape") {
      check([&] { allow(n, {"start", "end"}); });
    } else if (op == "Gather" || op == "Concat") {
      check([&] { allow(n, {"axis"}); });
    } else if (op == "Unsqueeze" || op == "Squeeze") {
      check([&] { allow(n, {"axes"}); });
    } else if (op == "ReduceMean") {
      check([&] { allow(n, {"axes", "keepdims"}); });
      check([&] { spatial_axes(n); });
    } else if (op == "Softmax") {
      check([&] { allow(n, {"axis"}); });
    } else if (op == "Transpose") {
      check([&] { allow(n, {"perm"}); });
      if (!folded) check([&] { shuffle_perm(n); });
    } else if (op == "Pad") {
      check([&] { allow(n, {"mode", "pads", "value"}); });
      check([&] { constant_mode(n); });
    } else if (op == "Cast") {
      check([&] { allow(n, {"to", "saturate"}); });
    } else if (op == "Slice") {
      check([&] { allow(n, {"starts", "ends", "axes"}); });
    } else if (op == "Split") {
      check([&] { allow(n, {"axis", "split", "num_outputs"}); });
    }
  }

  // Whether every reader of n's output is an operator of type `op` (and there is one).
  static bool only_read_by(const onnx::NodeProto& n,
                           const std::map<std::string, std::vector<const onnx::NodeProto*>>& readers,
                           const std::set<std::string>& ops) {
    if (n.output_size() < 1) return false;
    auto it = readers.find(n.output(0));
    if (it == readers.end() || it->second.empty()) return false;
    for (const auto* r : it->second)
      if (!ops.count(r->op_type())) return false;
    return true;
  }
  // Whether n's output is the graph's (only) output.
  static bool last_output(const onnx::NodeProto& n, const onnx::GraphProto& gp) {
    return n.output_size() >= 1 && gp.output_size() == 1 && gp.output(0).name() == n.output(0);
  }
  // ReduceMean's axes: H and W of an N, C, H, W tensor ({2, 3} or {-2, -1}); attribute up to
  // opset 17 (SigmaQuant reads opsets up to 17).
  void spatial_axes(const onnx::NodeProto& n) {
    std::vector<int64_t> a = attr_ints(n, "axes");
    for (int64_t& x : a)
      if (x < 0) x += 4;
    std::sort(a.begin(), a.end());
    if (a != std::vector<int64_t>{2, 3})
      bad_attr(n, "axes", fmt::format("{} is not supported (only [2, 3]: the mean over H and W, a "
                                      "global average pooling)", ints_str(attr_ints(n, "axes"))));
    const int64_t keep = attr_int(n, "keepdims", 1);
    if (keep != 0 && keep != 1) bad_attr(n, "keepdims", fmt::format("{} (expected 0 or 1)", keep));
  }
  // Transpose only as a channel shuffle's swap of the group axes of [N, g, C/g, H, W].
  void shuffle_perm(const onnx::NodeProto& n) {
    if (attr_ints(n, "perm") != std::vector<int64_t>{0, 2, 1, 3, 4})
      bad_attr(n, "perm", fmt::format("{} is not supported (only [0, 2, 1, 3, 4]: a channel shuffle's "
                                      "swap of [N, groups, C/groups, H, W])",
                                      ints_str(attr_ints(n, "perm"))));
  }
  void constant_mode(const onnx::NodeProto& n) {
    if (const auto* x = attr(n, "mode")) {
      if (x->type() != onnx::AttributeProto::STRING) bad_attr(n, "mode", "expected a string");
      if (x->s() != "constant")
        bad_attr(n, "mode", fmt::format("'{}' is not supported (only constant zeros before an "
                                        "AveragePool)", x->s()));
    }
    if (attr_float(n, "value", 0.0f) != 0.0f)
      bad_attr(n, "value", fmt::format("{} is not supported (only 0)", attr_float(n, "value", 0.0f)));
  }

  // HardSigmoid as PyTorch's hardsigmoid: alpha 1/6, beta 0.5 (other slopes are not supported).
  void torch_hardsigmoid(const onnx::NodeProto& n) {
    const float a = attr_float(n, "alpha", 0.2f), b = attr_float(n, "beta", 0.5f);
    if (std::fabs(a - 1.0f / 6.0f) > 1e-6f)
      bad_attr(n, "alpha", fmt::format("{} is not supported (only 1/6, PyTorch's hardsigmoid)", a));
    if (b != 0.5f) bad_attr(n, "beta", fmt::format("{} is not supported (only 0.5)", b));
  }

  static std::string label(const onnx::NodeProto& n, int k) {
    return n.name().empty() ? fmt::format("#{}", k) : n.name();
  }

  Const to_const(const onnx::TensorProto& t, const char* what) {
    Const c;
    const std::string nm = t.name();
    if (t.data_location() == onnx::TensorProto::EXTERNAL || t.external_data_size() > 0)
      fail("{}: {} '{}' uses external data (not supported; save the model as one file)", where_, what, nm);
    int64_t n = 1;
    for (int64_t d : t.dims()) {
      if (d < 0) fail("{}: {} '{}' has a negative dimension {}", where_, what, nm, d);
      if (d > 0 && n > kMaxConstElements / d)
        fail("{}: {} '{}' is too large (more than {} elements)", where_, what, nm, kMaxConstElements);
      n *= d;
      c.dims.push_back(d);
    }
    const std::string& raw = t.raw_data();
    auto check_count = [&](int64_t have) {
      if (have != n)
        fail("{}: {} '{}' holds {} values, its shape {} needs {}", where_, what, nm, have,
             shape_str(c.dims), n);
    };
    switch (t.data_type()) {
      case onnx::TensorProto::FLOAT:
        if (t.has_raw_data()) {
          if (raw.size() % 4) fail("{}: {} '{}': raw data of {} bytes is not float32", where_, what, nm, raw.size());
          check_count(static_cast<int64_t>(raw.size() / 4));
          c.f.resize(static_cast<size_t>(n));
          if (n) std::memcpy(c.f.data(), raw.data(), raw.size());  // little-endian hosts only
        } else {
          check_count(t.float_data_size());
          c.f.assign(t.float_data().begin(), t.float_data().end());
        }
        break;
      case onnx::TensorProto::DOUBLE:
        if (t.has_raw_data()) {
          if (raw.size() % 8) fail("{}: {} '{}': raw data of {} bytes is not float64", where_, what, nm, raw.size());
          check_count(static_cast<int64_t>(raw.size() / 8));
          std::vector<double> d(static_cast<size_t>(n));
          if (n) std::memcpy(d.data(), raw.data(), raw.size());
          c.f.assign(d.begin(), d.end());
        } else {
          check_count(t.double_data_size());
          c.f.assign(t.double_data().begin(), t.double_data().end());
        }
        break;
      case onnx::TensorProto::INT64:
        c.is_int = true;
        if (t.has_raw_data()) {
          if (raw.size() % 8) fail("{}: {} '{}': raw data of {} bytes is not int64", where_, what, nm, raw.size());
          check_count(static_cast<int64_t>(raw.size() / 8));
          c.i.resize(static_cast<size_t>(n));
          if (n) std::memcpy(c.i.data(), raw.data(), raw.size());
        } else {
          check_count(t.int64_data_size());
          c.i.assign(t.int64_data().begin(), t.int64_data().end());
        }
        break;
      case onnx::TensorProto::INT32:
        c.is_int = true;
        if (t.has_raw_data()) {
          if (raw.size() % 4) fail("{}: {} '{}': raw data of {} bytes is not int32", where_, what, nm, raw.size());
          check_count(static_cast<int64_t>(raw.size() / 4));
          std::vector<int32_t> v(static_cast<size_t>(n));
          if (n) std::memcpy(v.data(), raw.data(), raw.size());
          c.i.assign(v.begin(), v.end());
        } else {
          check_count(t.int32_data_size());
          c.i.assign(t.int32_data().begin(), t.int32_data().end());
        }
        break;
      default:
        fail("{}: {} '{}' has data type {} (expected float, double, int32 or int64)", where_, what, nm,
             t.data_type());
    }
    if (c.is_int) {
      c.f.assign(c.i.begin(), c.i.end());
    }
    return c;
  }

  Shape input_shape(const onnx::ValueInfoProto& in) {
    const auto& type = in.type();
    if (!type.has_tensor_type() || type.tensor_type().elem_type() != onnx::TensorProto::FLOAT)
      fail("{}: input '{}' must be a float32 tensor", where_, in.name());
    const auto& shp = type.tensor_type().shape();
    if (shp.dim_size() != 4)
      fail("{}: input '{}' has {} dimensions, expected 4 (N, C, H, W)", where_, in.name(), shp.dim_size());
    Shape s;
    for (int d = 1; d < 4; ++d) {
      if (!shp.dim(d).has_dim_value() || shp.dim(d).dim_value() <= 0)
        fail("{}: input '{}': dimension {} ({}) must be a fixed positive size (only the batch "
             "dimension may be dynamic)", where_, in.name(), d, "NCHW"[d]);
      s.push_back(shp.dim(d).dim_value());
    }
    return s;
  }

  // Fills the out_shape of node idx with Graph::infer_shapes()'s rules and checks, run on a
  // two- or three-node graph that feeds the node an input of its input's shape (so a graph of n
  // nodes costs O(n), not O(n^2)). The full graph is checked once more at the end.
  void infer_node(int idx) {
    Node& n = g_.nodes[idx];
    Graph t(g_.name, g_.input_shape, 1);
    Node in;
    in.name = "input";
    in.op = Op::Input;
    t.nodes.push_back(in);
    if (n.op != Op::Input) {
      const Shape& s = g_.nodes[n.inputs[0]].out_shape;
      if (n.op == Op::Add && g_.nodes[n.inputs[1]].out_shape != s)
        fail("{}: node '{}' (Add): adds {} and {}: shapes differ", where_, n.name, shape_str(s),
             shape_str(g_.nodes[n.inputs[1]].out_shape));
      int from = 0;
      if (s.size() == 3) {
        t.input_shape = s;
      } else if (s.size() == 1) {  // a flat input: [F, 1, 1] flattened
        t.input_shape = {s[0], 1, 1};
        Node f;
        f.name = n.name == "flat" ? "flat_" : "flat";
        f.op = Op::Flatten;
        f.inputs = {0};
        t.nodes.push_back(f);
        from = 1;
      } else {
        fail("{}: node '{}': input of shape {} is not supported", where_, n.name, shape_str(s));
      }
      Node m;  // n without its parameters (only the attributes matter)
      m.name = n.name;
      m.op = n.op;
      // Add and mul of the same shape: fed the input twice (mul's per-channel gate was checked
      // by the caller; its output has the feature map's shape).
      m.inputs = n.op == Op::Add || n.op == Op::Mul ? std::vector<int>{from, from}
                                                    : std::vector<int>{from};
      m.out_channels = n.out_channels;
      m.window = n.window;
      m.groups = n.groups;
      m.has_bias = n.has_bias;
      m.eps = n.eps;
      m.ceil_mode = n.ceil_mode;
      m.begin = n.begin;
      m.end = n.end;
      t.nodes.push_back(m);
    }
    try {
      t.infer_shapes();
    } catch (const Error& e) {
      // Only the final "output has the class count" check may fail here.
      for (const auto& x : t.nodes)
        if (x.out_shape.empty()) fail("{}: {}", where_, e.what());
    }
    n.out_shape = t.nodes.back().out_shape;
  }

  // ---- attribute access ----
  const onnx::AttributeProto* attr(const onnx::NodeProto& n, const std::string& a) {
    for (const auto& x : n.attribute())
      if (x.name() == a) return &x;
    return nullptr;
  }
  int64_t attr_int(const onnx::NodeProto& n, const std::string& a, int64_t def) {
    const auto* x = attr(n, a);
    if (!x) return def;
    if (x->type() != onnx::AttributeProto::INT) bad_attr(n, a, "expected an integer");
    return x->i();
  }
  float attr_float(const onnx::NodeProto& n, const std::string& a, float def) {
    const auto* x = attr(n, a);
    if (!x) return def;
    if (x->type() != onnx::AttributeProto::FLOAT) bad_attr(n, a, "expected a float");
    return x->f();
  }
  std::vector<int64_t> attr_ints(const onnx::NodeProto& n, const std::string& a) {
    const auto* x = attr(n, a);
    if (!x) return {};
    if (x->type() != onnx::AttributeProto::INTS) bad_attr(n, a, "expected a list of integers");
    return {x->ints().begin(), x->ints().end()};
  }
  [[noreturn]] void bad_attr(const onnx::NodeProto& n, const std::string& a, const std::string& why) {
    fail("{}: node '{}' ({}): attribute {}: {}", where_, cur_, n.op_type(), a, why);
  }
  // Only these attributes may appear (anything else is named as unsupported).
  void allow(const onnx::NodeProto& n, std::initializer_list<const char*> ok) {
    for (const auto& x : n.attribute()) {
      bool found = false;
      for (const char* o : ok) found |= x.name() == o;
      if (!found) bad_attr(n, x.name(), "not supported");
    }
  }
  void no_auto_pad(const onnx::NodeProto& n) {
    if (const auto* x = attr(n, "auto_pad")) {
      if (x->type() != onnx::AttributeProto::STRING) bad_attr(n, "auto_pad", "expected a string");
      if (x->s() != "NOTSET") bad_attr(n, "auto_pad", fmt::format("'{}' is not supported (use explicit pads)", x->s()));
    }
  }
  // A 2-D window attribute, [H, W], both positive: kernel_shape, strides, dilations.
  std::array<int64_t, 2> axis_pair(const onnx::NodeProto& n, const std::string& a, int64_t def,
                                   bool required) {
    auto v = attr_ints(n, a);
    if (v.empty()) {
      if (required) bad_attr(n, a, "missing");
      return {def, def};
    }
    if (v.size() != 2) bad_attr(n, a, fmt::format("has {} values, expected 2 (2-D)", v.size()));
    if (v[0] <= 0 || v[1] <= 0) bad_attr(n, a, fmt::format("{} must be positive", ints_str(v)));
    return {v[0], v[1]};
  }
  // pads [top, left, bottom, right] (ONNX's begins then ends of H, W), each >= 0.
  std::array<int64_t, 4> pads(const onnx::NodeProto& n) {
    auto v = attr_ints(n, "pads");
    if (v.empty()) return {0, 0, 0, 0};
    if (v.size() != 4) bad_attr(n, "pads", fmt::format("has {} values, expected 4", v.size()));
    if (*std::min_element(v.begin(), v.end()) < 0)
      bad_attr(n, "pads", fmt::format("{} must be non-negative", ints_str(v)));
    return {v[0], v[1], v[2], v[3]};
  }
  // The IR window of a Conv or pool: kernel, strides, pads, dilations.
  Window2d window_of(const onnx::NodeProto& n, std::array<int64_t, 2> kernel) {
    const auto st = axis_pair(n, "strides", 1, false), di = axis_pair(n, "dilations", 1, false);
    const auto p = pads(n);
    return {kernel[0], kernel[1], st[0], st[1], p[0], p[1], p[2], p[3], di[0], di[1]};
  }
  // Pools: the IR has no dilated pooling.
  void unit_dilations(const onnx::NodeProto& n) {
    for (int64_t d : attr_ints(n, "dilations"))
      if (d != 1)
        bad_attr(n, "dilations", fmt::format("{} is not supported for pooling (only 1)", d));
  }

  // NaN / Inf in a constant that becomes a parameter (or the input normalization) is refused
  // here, naming the ONNX tensor: it would evaluate to a NaN loss and be quantized into garbage.
  void require_finite(const onnx::NodeProto& n, int k, const Const& c, const char* role) {
    for (size_t i = 0; i < c.f.size(); ++i)
      if (!std::isfinite(c.f[i]))
        fail("{}: node '{}' ({}): {} '{}' holds {} at element {} (expected finite numbers)",
             where_, cur_, n.op_type(), role, n.input(k),
             std::isnan(c.f[i]) ? "NaN" : (c.f[i] > 0 ? "+Inf" : "-Inf"), i);
  }

  // ---- values ----
  std::string input_name(const onnx::NodeProto& n, int k) {
    if (k >= n.input_size() || n.input(k).empty())
      fail("{}: node '{}' ({}): input #{} is missing", where_, cur_, n.op_type(), k);
    return n.input(k);
  }
  const Value& value(const onnx::NodeProto& n, int k) {
    const std::string nm = input_name(n, k);
    auto it = values_.find(nm);
    if (it != values_.end()) return it->second;
    auto c = consts_.find(nm);
    if (c != consts_.end()) return values_[nm] = Value{-1, c->second};
    if (grouped_.count(nm) || swapped_.count(nm))
      fail("{}: node '{}' ({}): input '{}' is a [N, groups, C/groups, H, W] view of a channel "
           "shuffle (supported only as Reshape -> Transpose(perm 0, 2, 1, 3, 4) -> Reshape to "
           "[N, C, H, W])", where_, cur_, n.op_type(), nm);
    fail("{}: node '{}' ({}): input '{}' is not defined earlier", where_, cur_, n.op_type(), nm);
  }
  int tensor_in(const onnx::NodeProto& n, int k) {
    const Value& v = value(n, k);
    if (v.node < 0)
      fail("{}: node '{}' ({}): input '{}' is a constant, expected a computed tensor", where_, cur_,
           n.op_type(), n.input(k));
    return v.node;
  }
  // `shaped`: the caller handles a constant that holds the batch-size symbol (a folded Shape).
  std::shared_ptr<const Const> const_in(const onnx::NodeProto& n, int k, bool shaped = false) {
    const Value& v = value(n, k);
    if (!v.c)
      fail("{}: node '{}' ({}): input '{}' must be a constant (initializer or Constant)", where_,
           cur_, n.op_type(), n.input(k));
    if (v.c->has_batch && !shaped)
      fail("{}: node '{}' ({}): input '{}' depends on the batch size (from a Shape); only "
           "Reshape can use it", where_, cur_, n.op_type(), n.input(k));
    return v.c;
  }
  bool has_input(const onnx::NodeProto& n, int k) { return k < n.input_size() && !n.input(k).empty(); }
  void set_out(const onnx::NodeProto& n, Value v) {
    if (n.output_size() < 1 || n.output(0).empty())
      fail("{}: node '{}' ({}) has no output", where_, cur_, n.op_type());
    for (int k = 1; k < n.output_size(); ++k)
      if (!n.output(k).empty() && uses_[n.output(k)] > 0)
        fail("{}: node '{}' ({}): output #{} '{}' is used (only the first output is supported)",
             where_, cur_, n.op_type(), k, n.output(k));
    if (values_.count(n.output(0)) || consts_.count(n.output(0)))
      fail("{}: node '{}' ({}): output '{}' is defined twice", where_, cur_, n.op_type(), n.output(0));
    values_[n.output(0)] = std::move(v);
  }
  std::string node_name(const onnx::NodeProto& n, int k) {
    std::string base = n.name().empty() ? fmt::format("{}_{}", n.op_type(), k) : n.name();
    std::string s = base;
    for (int j = 1; names_.count(s) || s == "input"; ++j) s = fmt::format("{}_{}", base, j);
    names_.insert(s);
    return s;
  }
  int push_done(int idx) {
    infer_node(idx);
    return idx;
  }
  const Shape& shape(int node) const { return g_.nodes[node].out_shape; }
  void expect_shape(const onnx::NodeProto& n, const char* what, const Const& c, const Shape& want) {
    if (c.dims != want || c.is_int)
      fail("{}: node '{}' ({}): {} has shape {}{}, expected float {}", where_, cur_, n.op_type(), what,
           shape_str(c.dims), c.is_int ? " (integer)" : "", shape_str(want));
  }

  // ---- operators ----
  void node(const onnx::NodeProto& n, int k) {
    cur_ = label(n, k);
    n_index_ = k;
    const std::string& op = n.op_type();
    if (op == "Constant") {
      allow(n, {"value"});
      const auto* v = attr(n, "value");
      if (!v || v->type() != onnx::AttributeProto::TENSOR) bad_attr(n, "value", "expected a tensor (other Constant forms are not supported)");
      if (n.output_size() != 1) fail("{}: node '{}' (Constant) must have one output", where_, cur_);
      if (values_.count(n.output(0)) || consts_.count(n.output(0)))
        fail("{}: node '{}' (Constant): output '{}' is defined twice", where_, cur_, n.output(0));
      consts_[n.output(0)] = std::make_shared<Const>(to_const(v->t(), "Constant"));
    } else if (op == "Identity") {
      allow(n, {});
      set_out(n, value(n, 0));
    } else if (op == "Dropout") {
      allow(n, {"seed", "ratio", "is_test"});
      if (has_input(n, 2)) {
        auto t = const_in(n, 2);
        if ((!t->f.empty() && t->f[0] != 0.0f)) fail("{}: node '{}' (Dropout): training_mode is true (export the model in eval mode)", where_, cur_);
      }
      set_out(n, value(n, 0));
    } else if (op == "Conv") {
      conv(n, k);
    } else if (op == "Gemm") {
      gemm(n, k);
    } else if (op == "MatMul") {
      matmul(n, k);
    } else if (op == "Relu") {
      allow(n, {});
      int x = tensor_in(n, 0);
      set_out(n, Value{push_done(g_.relu(node_name(n, k), x)), nullptr});
    } else if (op == "Clip") {
      clip(n, k);
    } else if ((op == "Add" || op == "Mul") && all_const(n)) {
      arithmetic(n);
    } else if (op == "Add") {
      add(n, k);
    } else if (op == "MaxPool" || op == "AveragePool") {
      pool(n, k);
    } else if (op == "GlobalAveragePool") {
      allow(n, {});
      int x = tensor_in(n, 0);
      set_out(n, Value{push_done(g_.global_avgpool(node_name(n, k), x)), nullptr});
    } else if (op == "Flatten") {
      allow(n, {"axis"});
      flatten_axis(n);
      flatten(n, k, tensor_in(n, 0));
    } else if ((op == "Reshape" || op == "Transpose") && n.input_size() > 0 &&
               !grouped_.count(n.input(0)) && !swapped_.count(n.input(0)) && all_const(n)) {
      fold(n);
    } else if (op == "Reshape") {
      reshape(n, k);
    } else if (op == "BatchNormalization") {
      batchnorm(n, k);
    } else if ((op == "Sub" || op == "Div") && all_const(n)) {
      arithmetic(n);
    } else if (op == "Sub" || op == "Div") {
      normalization(n);
    } else if (op == "Sigmoid" || op == "HardSigmoid" || op == "HardSwish" || op == "LeakyRelu") {
      activation(n, k);
    } else if (op == "Mul") {
      swish(n);
    } else if (op == "Shape") {
      shape_of(n);
    } else if (op == "Concat" && !all_const(n)) {
      concat(n, k);
    } else if (op == "ReduceMean") {
      reduce_mean(n, k);
    } else if (op == "Softmax") {
      softmax(n);
    } else if (op == "Pad") {
      pad(n);
    } else if (op == "Transpose") {
      transpose(n);
    } else if (op == "Slice" && !all_const(n)) {
      channel_slice(n, k);
    } else if (op == "Split") {
      split(n, k);
    } else {
      fold(n);  // kFoldOnly: check_supported made sure every input is a constant
    }
  }

  void activation(const onnx::NodeProto& n, int k) {
    const std::string& op = n.op_type();
    double alpha = 0.01;
    Op o = Op::Sigmoid;
    if (op == "HardSigmoid") {
      allow(n, {"alpha", "beta"});
      torch_hardsigmoid(n);
      o = Op::HardSigmoid;
    } else if (op == "LeakyRelu") {
      allow(n, {"alpha"});
      alpha = attr_float(n, "alpha", 0.01f);
      if (!std::isfinite(alpha)) bad_attr(n, "alpha", "must be finite");
      o = Op::LeakyReLU;
    } else {
      allow(n, {});
      o = op == "HardSwish" ? Op::HardSwish : Op::Sigmoid;
    }
    int x = tensor_in(n, 0);
    set_out(n, Value{push_done(g_.activation(node_name(n, k), o, x, alpha)), nullptr});
  }

  // Mul(x, Sigmoid(x)) → silu, Mul(x, HardSigmoid(x)) → hardswish: the gate node (read only by
  // this Mul, which check_supported made sure of) becomes the product.
  void swish(const onnx::NodeProto& n) {
    allow(n, {});
    const int a = tensor_in(n, 0), b = tensor_in(n, 1);
    for (int k : {1, 0}) {
      const int gate = k == 1 ? b : a, x = k == 1 ? a : b;
      Node& s = g_.nodes[gate];
      // The gate read by this Mul only: it becomes the product.
      if ((s.op == Op::Sigmoid || s.op == Op::HardSigmoid) && s.inputs[0] == x &&
          uses_[n.input(k)] == 1) {
        s.op = s.op == Op::Sigmoid ? Op::SiLU : Op::HardSwish;
        set_out(n, Value{gate, nullptr});
        return;
      }
    }
    // Otherwise a product of two computed tensors: of the same shape, or a feature map and one
    // value per channel (squeeze-excitation's gate, [N, C, 1, 1] or [N, C]).
    const Shape &sa = shape(a), &sb = shape(b);
    const bool b_gate = sa.size() == 3 && (sb == Shape{sa[0], 1, 1} || sb == Shape{sa[0]});
    const bool a_gate = sb.size() == 3 && (sa == Shape{sb[0], 1, 1} || sa == Shape{sb[0]});
    if (sa != sb && !b_gate && !a_gate)
      fail("{}: node '{}' (Mul): multiplies {} by {} (supported: x * Sigmoid(x), x * "
           "HardSigmoid(x), and products of the same shape or of a feature map [N, C, H, W] and "
           "one value per channel [N, C, 1, 1] / [N, C])",
           where_, cur_, shape_str(sa), shape_str(sb));
    const int x = a_gate && !b_gate ? b : a, gate = x == a ? b : a;
    set_out(n, Value{push_done(g_.mul(node_name(n, n_index_), x, gate)), nullptr});
  }

  bool all_const(const onnx::NodeProto& n) {
    for (int k = 0; k < n.input_size(); ++k)
      if (!n.input(k).empty() && value(n, k).node >= 0) return false;
    return true;
  }

  // A channel range [b, e) of computed tensor x: a channel_slice node, or x itself when the
  // range is every channel.
  int slice_node(const onnx::NodeProto& n, int k, int x, int64_t b, int64_t e) {
    if (b == 0 && e == shape(x)[0]) return x;
    return push_done(g_.channel_slice(node_name(n, k), x, b, e));
  }
  // The axis of a Slice / Split of computed tensor x: only 1 (the channels of N, C, H, W or of
  // N, F).
  void channel_axis(const onnx::NodeProto& n, const char* what, int64_t a, int x) {
    const int64_t rank = static_cast<int64_t>(shape(x).size()) + 1;
    if (axis_in(n, what, a, rank) != 1)
      fail("{}: node '{}' ({}): {} {} is not supported (only 1: the channels)", where_, cur_,
           n.op_type(), what, a);
  }

  // A Slice's starts, ends, axes and steps: attributes before opset 10, constant inputs since.
  struct SliceArgs {
    std::vector<int64_t> starts, ends, axes, steps;
  };
  SliceArgs slice_args(const onnx::NodeProto& n) {
    allow(n, {"starts", "ends", "axes"});
    SliceArgs a;
    if (opset_ < 10) {
      a.starts = attr_ints(n, "starts");
      a.ends = attr_ints(n, "ends");
      a.axes = attr_ints(n, "axes");
    } else {
      a.starts = int_const(n, 1).i;
      a.ends = int_const(n, 2).i;
      if (has_input(n, 3)) a.axes = int_const(n, 3).i;
      if (has_input(n, 4)) a.steps = int_const(n, 4).i;
    }
    return a;
  }

  // Slice of a computed tensor: one range on the channels, step 1, with constant starts / ends
  // (ShuffleNetV2's x.chunk(2, dim=1)), clamped to [0, C] as ONNX does (negative values count
  // from the end; INT64_MAX is "to the end").
  void channel_slice(const onnx::NodeProto& n, int k) {
    const int x = tensor_in(n, 0);
    auto [st, en, ax, sp] = slice_args(n);
    if (st.size() != 1 || en.size() != 1 || ax.size() > 1 || sp.size() > 1)
      fail("{}: node '{}' (Slice): starts {}, ends {}, axes {} of a computed tensor: only one "
           "axis (the channels) is supported", where_, cur_, ints_str(st), ints_str(en),
           ints_str(ax));
    for (int64_t v : {st[0], en[0]})
      if (v == kBatch)
        fail("{}: node '{}' (Slice): a range depends on the batch size", where_, cur_);
    channel_axis(n, "axis", ax.empty() ? 0 : ax[0], x);
    const int64_t step = sp.empty() ? 1 : sp[0];
    if (step != 1)
      fail("{}: node '{}' (Slice): step {} is not supported (only 1)", where_, cur_, step);
    const int64_t c = shape(x)[0];
    auto clampi = [&](int64_t a) { return std::clamp(a < 0 ? a + c : a, int64_t{0}, c); };
    const int64_t b = clampi(st[0]), e = clampi(en[0]);
    if (b >= e)
      fail("{}: node '{}' (Slice): channels [{}, {}) of {} are empty (starts {}, ends {})", where_,
           cur_, b, e, c, st[0], en[0]);
    set_out(n, Value{slice_node(n, k, x, b, e), nullptr});
  }

  // Split of a computed tensor on the channels into consecutive ranges: the `split` sizes (an
  // input from opset 13 on, an attribute before) or equal parts, one channel_slice per used
  // output.
  void split(const onnx::NodeProto& n, int k) {
    allow(n, {"axis", "split", "num_outputs"});
    const int x = tensor_in(n, 0);
    channel_axis(n, "axis", attr_int(n, "axis", 0), x);
    const int64_t c = shape(x)[0], outs = n.output_size();
    std::vector<int64_t> sizes;
    if (opset_ >= 13) {
      if (attr(n, "split"))
        bad_attr(n, "split", fmt::format("is an input from opset 13 on (this model is opset {})", opset_));
      if (has_input(n, 1)) sizes = int_const(n, 1).i;
    } else {
      sizes = attr_ints(n, "split");
    }
    if (sizes.empty()) {
      if (outs < 1 || c % outs != 0)
        fail("{}: node '{}' (Split): {} channels do not split into {} equal parts", where_, cur_,
             c, outs);
      sizes.assign(static_cast<size_t>(outs), c / outs);
    }
    int64_t total = 0;
    for (int64_t v : sizes) total += v > 0 && v <= c ? v : c + 1;
    if (static_cast<int64_t>(sizes.size()) != outs || total != c)
      fail("{}: node '{}' (Split): split {} for {} outputs of {} channels (expected {} positive "
           "sizes that sum to {})", where_, cur_, ints_str(sizes), outs, c, outs, c);
    int64_t b = 0;
    for (int j = 0; j < n.output_size(); ++j) {
      const std::string& o = n.output(j);
      const int64_t e = b + sizes[static_cast<size_t>(j)];
      if (!o.empty() && uses_[o] > 0) {
        if (values_.count(o) || consts_.count(o))
          fail("{}: node '{}' (Split): output '{}' is defined twice", where_, cur_, o);
        values_[o] = Value{slice_node(n, k, x, b, e), nullptr};
      }
      b = e;
    }
  }

  // Concat of computed tensors along the channels (axis 1 of N, C, H, W or of N, F).
  void concat(const onnx::NodeProto& n, int k) {
    allow(n, {"axis"});
    std::vector<int> ins;
    for (int i = 0; i < n.input_size(); ++i) ins.push_back(tensor_in(n, i));
    const int64_t rank = static_cast<int64_t>(shape(ins[0]).size()) + 1;
    const int64_t axis = axis_in(n, "axis", attr_int(n, "axis", 0), rank);
    if (axis != 1)
      bad_attr(n, "axis", fmt::format("{} is not supported (only 1: the channels)", attr_int(n, "axis", 0)));
    if (ins.size() == 1) {
      set_out(n, Value{ins[0], nullptr});
      return;
    }
    for (size_t i = 1; i < ins.size(); ++i) {
      const Shape &s0 = shape(ins[0]), &si = shape(ins[i]);
      if (si.size() != s0.size() || !std::equal(si.begin() + 1, si.end(), s0.begin() + 1))
        fail("{}: node '{}' (Concat): input '{}' has per-sample shape {}, '{}' has {} (only the "
             "channels may differ)", where_, cur_, n.input(0), shape_str(s0), n.input(static_cast<int>(i)),
             shape_str(si));
    }
    const int idx = g_.concat(node_name(n, k), ins);
    Node& c = g_.nodes[idx];
    c.out_shape = shape(ins[0]);
    for (size_t i = 1; i < ins.size(); ++i) c.out_shape[0] += shape(ins[i])[0];
    set_out(n, Value{idx, nullptr});
  }

  // ReduceMean over H, W: a global average pooling ([N, C, 1, 1]), flattened for keepdims 0.
  void reduce_mean(const onnx::NodeProto& n, int k) {
    allow(n, {"axes", "keepdims"});
    spatial_axes(n);
    const int x = tensor_in(n, 0);
    if (shape(x).size() != 3)
      fail("{}: node '{}' (ReduceMean): input has per-sample shape {}, expected [C, H, W]", where_,
           cur_, shape_str(shape(x)));
    const std::string name = node_name(n, k);
    int idx = push_done(g_.global_avgpool(name, x));
    if (attr_int(n, "keepdims", 1) == 0) {
      std::string f = name + "_flat";
      for (int j = 1; names_.count(f) || f == "input"; ++j) f = fmt::format("{}_flat_{}", name, j);
      names_.insert(f);
      idx = push_done(g_.flatten(f, idx));
    }
    set_out(n, Value{idx, nullptr});
  }

  // Softmax over the classes as the graph's output (check_supported made sure): dropped, the
  // graph ends in the logits. The class ranking, hence top-1 accuracy, is the same; the
  // SigmaQuant model outputs logits where the ONNX model output probabilities.
  void softmax(const onnx::NodeProto& n) {
    allow(n, {"axis"});
    const int x = tensor_in(n, 0);
    if (shape(x).size() != 1)
      fail("{}: node '{}' (Softmax): input has per-sample shape {}, expected the logits [N, classes]",
           where_, cur_, shape_str(shape(x)));
    const int64_t axis = axis_in(n, "axis", attr_int(n, "axis", opset_ < 13 ? 1 : -1), 2);
    if (axis != 1)
      bad_attr(n, "axis", fmt::format("{} is not supported (only the classes, 1 or -1)", attr_int(n, "axis", -1)));
    notes_.push_back(fmt::format("Softmax '{}' at the output dropped: the model outputs the logits "
                                 "(the same class ranking, so the same top-1 accuracy)", cur_));
    set_out(n, Value{x, nullptr});
  }

  // Transpose(perm 0, 2, 1, 3, 4) of a channel shuffle's grouped view (check_supported checked
  // the perm).
  void transpose(const onnx::NodeProto& n) {
    allow(n, {"perm"});
    shuffle_perm(n);
    auto it = grouped_.find(input_name(n, 0));
    if (it == grouped_.end())
      fail("{}: node '{}' (Transpose): supported only on a Reshape to [N, groups, C/groups, H, W] "
           "(a channel shuffle: Reshape -> Transpose -> Reshape)", where_, cur_);
    if (n.output_size() < 1 || n.output(0).empty())
      fail("{}: node '{}' (Transpose) has no output", where_, cur_);
    swapped_[n.output(0)] = it->second;
  }

  // Pad with zeros of H and W only, read only by AveragePool or Conv (check_supported made
  // sure): the reader takes the padding, added to its own (an AveragePool's count_include_pad:
  // the padded zeros count, as they do here; a Conv pads with zeros too, so nn.ZeroPad2d or a
  // TensorFlow-style asymmetric "same" padding before a Conv is the Conv's own padding).
  void pad(const onnx::NodeProto& n) {
    allow(n, {"mode", "pads", "value"});
    constant_mode(n);
    const int x = tensor_in(n, 0);
    std::vector<int64_t> p;
    if (opset_ < 11) {
      p = attr_ints(n, "pads");
    } else {
      p = int_const(n, 1).i;
      if (has_input(n, 2)) {
        auto v = const_in(n, 2);
        if (v->f.size() != 1 || v->f[0] != 0.0f)
          fail("{}: node '{}' (Pad): constant_value is not 0 (only zero padding before an "
               "AveragePool or a Conv is supported)", where_, cur_);
      }
      if (has_input(n, 3)) fail("{}: node '{}' (Pad): the axes input is not supported", where_, cur_);
    }
    // [N, C, H, W] begins then ends: only H, W, none negative.
    if (p.size() != 8 || p[0] || p[1] || p[4] || p[5] || *std::min_element(p.begin(), p.end()) < 0)
      fail(
          "{}: node '{}' (Pad): pads {} are not supported (only zero padding of H and W, none "
          "negative)",
          where_, cur_, ints_str(p));
    if (shape(x).size() != 3)
      fail("{}: node '{}' (Pad): input has per-sample shape {}, expected [C, H, W]", where_, cur_,
           shape_str(shape(x)));
    pads_[n.output(0)] = {x, {p[2], p[3], p[6], p[7]}};
  }

  // ---- shape arithmetic, folded ----
  void set_const(const onnx::NodeProto& n, Const c) {
    c.is_int = true;
    c.has_batch = std::find(c.i.begin(), c.i.end(), kBatch) != c.i.end();
    c.f.assign(c.i.begin(), c.i.end());
    set_out(n, Value{-1, std::make_shared<Const>(std::move(c))});
  }
  std::string ints_str(const std::vector<int64_t>& v) {
    std::string s;
    for (int64_t x : v) s += (s.empty() ? "" : ", ") + (x == kBatch ? std::string("N") : std::to_string(x));
    return "[" + s + "]";
  }
  // An axis in [-rank, rank) as a non-negative index.
  int64_t axis_in(const onnx::NodeProto& n, const char* what, int64_t a, int64_t rank) {
    if (a < -rank || a >= rank)
      fail("{}: node '{}' ({}): {} {} is out of range for rank {}", where_, cur_, n.op_type(), what,
           a, rank);
    return a < 0 ? a + rank : a;
  }
  const Const& int_const(const onnx::NodeProto& n, int k) {
    auto c = const_in(n, k, true);
    if (!c->is_int)
      fail("{}: node '{}' ({}): input '{}' is a float tensor; only integer shape arithmetic is "
           "folded", where_, cur_, n.op_type(), n.input(k));
    held_.push_back(c);
    return *c;
  }
  // Axes from the `axes` attribute (before opset 13) or the second input (from 13 on).
  std::vector<int64_t> axes_of(const onnx::NodeProto& n) {
    if (opset_ < 13) return attr_ints(n, "axes");
    if (attr(n, "axes")) bad_attr(n, "axes", fmt::format("is an input from opset 13 on (this model is opset {})", opset_));
    return has_input(n, 1) ? int_const(n, 1).i : std::vector<int64_t>{};
  }

  // Shape of a computed tensor: [N, per-sample dims...] with the batch as the symbol kBatch.
  void shape_of(const onnx::NodeProto& n) {
    allow(n, {"start", "end"});
    const Value& v = value(n, 0);
    std::vector<int64_t> full;
    if (v.node >= 0) {
      full.push_back(kBatch);
      for (int64_t d : shape(v.node)) full.push_back(d);
    } else {
      full = v.c->dims;
    }
    const int64_t r = static_cast<int64_t>(full.size());
    auto clampi = [&](int64_t a) { return std::clamp(a < 0 ? a + r : a, int64_t{0}, r); };
    const int64_t b = clampi(attr_int(n, "start", 0)), e = clampi(attr_int(n, "end", r));
    Const c;
    for (int64_t i = b; i < e; ++i) c.i.push_back(full[i]);
    c.dims = {static_cast<int64_t>(c.i.size())};
    set_const(n, std::move(c));
  }

  // Calls f with every index of a tensor of shape `dims`, in row-major order.
  template <typename F>
  static void for_each_index(const Shape& dims, F&& f) {
    for (int64_t d : dims)
      if (d == 0) return;
    std::vector<int64_t> at(dims.size(), 0);
    while (true) {
      f(at);
      int64_t a = static_cast<int64_t>(dims.size()) - 1;
      for (; a >= 0 && ++at[a] == dims[a]; --a) at[a] = 0;
      if (a < 0) return;
    }
  }

  void fold(const onnx::NodeProto& n) {
    const std::string& op = n.op_type();
    Const r;
    if (op == "Gather") {
      allow(n, {"axis"});
      const Const& d = int_const(n, 0);
      const Const& idx = int_const(n, 1);
      if (d.dims.size() != 1)
        fail("{}: node '{}' (Gather): data has shape {}; only 1-D shapes are folded", where_, cur_,
             shape_str(d.dims));
      axis_in(n, "axis", attr_int(n, "axis", 0), 1);
      const int64_t len = static_cast<int64_t>(d.i.size());
      for (int64_t x : idx.i) r.i.push_back(d.i[axis_in(n, "index", x, len)]);
      r.dims = idx.dims;
    } else if (op == "Unsqueeze" || op == "Squeeze") {
      allow(n, {"axes"});
      const Const& d = int_const(n, 0);
      std::vector<int64_t> axes = axes_of(n);
      r.i = d.i;
      if (op == "Unsqueeze") {
        const int64_t rank = static_cast<int64_t>(d.dims.size() + axes.size());
        std::vector<bool> one(static_cast<size_t>(rank), false);
        for (int64_t a : axes) one[axis_in(n, "axis", a, rank)] = true;
        size_t k = 0;
        for (int64_t i = 0; i < rank; ++i) r.dims.push_back(one[i] ? 1 : d.dims[k++]);
      } else {
        const int64_t rank = static_cast<int64_t>(d.dims.size());
        std::vector<bool> drop(static_cast<size_t>(rank), false);
        for (int64_t a : axes) drop[axis_in(n, "axis", a, rank)] = true;
        for (int64_t i = 0; i < rank; ++i) {
          if (axes.empty() ? d.dims[i] == 1 : drop[i]) {
            if (d.dims[i] != 1)
              fail("{}: node '{}' (Squeeze): axis {} has size {}, expected 1", where_, cur_, i, d.dims[i]);
            continue;
          }
          r.dims.push_back(d.dims[i]);
        }
      }
    } else if (op == "Concat") {
      allow(n, {"axis"});
      int64_t total = 0;
      for (int k = 0; k < n.input_size(); ++k) {
        const Const& d = int_const(n, k);
        if (d.dims.size() != 1)
          fail("{}: node '{}' (Concat): input '{}' has shape {}; only 1-D shapes are folded",
               where_, cur_, n.input(k), shape_str(d.dims));
        r.i.insert(r.i.end(), d.i.begin(), d.i.end());
        total += d.dims[0];
      }
      axis_in(n, "axis", attr_int(n, "axis", 0), 1);
      r.dims = {total};
    } else if (op == "Cast") {
      allow(n, {"to", "saturate"});
      const int64_t to = attr_int(n, "to", 0);
      if (to != onnx::TensorProto::INT64 && to != onnx::TensorProto::INT32)
        bad_attr(n, "to", fmt::format("{} is not supported (shape arithmetic folds to int32 / int64)", to));
      const Const& d = int_const(n, 0);
      r.i = d.i;
      r.dims = d.dims;
    } else if (op == "Slice") {  // any axes and steps (torch's pad chain reverses [k, 2] pairs)
      const Const& d = int_const(n, 0);
      auto [st, en, ax, sp] = slice_args(n);
      const int64_t rank = static_cast<int64_t>(d.dims.size());
      if (en.size() != st.size() || (!ax.empty() && ax.size() != st.size()) ||
          (!sp.empty() && sp.size() != st.size()))
        fail("{}: node '{}' (Slice): {} starts, {} ends, {} axes and {} steps (expected as many "
             "of each)", where_, cur_, st.size(), en.size(), ax.size(), sp.size());
      std::vector<int64_t> first(static_cast<size_t>(rank), 0), step(static_cast<size_t>(rank), 1);
      r.dims = d.dims;
      std::vector<bool> seen(static_cast<size_t>(rank), false);
      for (size_t j = 0; j < st.size(); ++j) {
        const int64_t a = axis_in(n, "axis", ax.empty() ? static_cast<int64_t>(j) : ax[j], rank);
        if (seen[a]) fail("{}: node '{}' (Slice): axis {} is given twice", where_, cur_, a);
        seen[a] = true;
        const int64_t dim = d.dims[a], stp = sp.empty() ? 1 : sp[j];
        if (stp == 0) fail("{}: node '{}' (Slice): step 0", where_, cur_);
        // ONNX's clamping: negative indices count from the end; a forward range lies in
        // [0, dim], a backward one in [-1, dim - 1].
        auto norm = [&](int64_t v) { return v < 0 ? (v < -dim ? -1 : v + dim) : v; };
        int64_t b = norm(st[j]), e = norm(en[j]);
        if (stp > 0) {
          b = std::clamp<int64_t>(b, 0, dim), e = std::clamp<int64_t>(e, 0, dim);
          r.dims[a] = e > b ? (e - b + stp - 1) / stp : 0;
        } else {
          b = std::clamp<int64_t>(b, -1, dim - 1), e = std::clamp<int64_t>(e, -1, dim - 1);
          r.dims[a] = b > e ? (b - e - stp - 1) / -stp : 0;
        }
        first[a] = b, step[a] = stp;
      }
      for_each_index(r.dims, [&](const std::vector<int64_t>& at) {
        int64_t off = 0;
        for (int64_t a = 0; a < rank; ++a) off = off * d.dims[a] + first[a] + at[a] * step[a];
        r.i.push_back(d.i[off]);
      });
    } else if (op == "Transpose") {
      allow(n, {"perm"});
      const Const& d = int_const(n, 0);
      const int64_t rank = static_cast<int64_t>(d.dims.size());
      std::vector<int64_t> perm = attr_ints(n, "perm");
      if (perm.empty())
        for (int64_t a = rank - 1; a >= 0; --a) perm.push_back(a);
      std::vector<bool> seen(static_cast<size_t>(rank), false);
      if (static_cast<int64_t>(perm.size()) != rank)
        bad_attr(n, "perm", fmt::format("{} does not permute the {} axes of {}", ints_str(perm),
                                        rank, shape_str(d.dims)));
      for (int64_t& a : perm) {
        a = axis_in(n, "perm entry", a, rank);
        if (seen[a]) bad_attr(n, "perm", fmt::format("{} repeats axis {}", ints_str(perm), a));
        seen[a] = true;
      }
      for (int64_t a : perm) r.dims.push_back(d.dims[a]);
      std::vector<int64_t> src(static_cast<size_t>(rank));
      for_each_index(r.dims, [&](const std::vector<int64_t>& at) {
        for (int64_t a = 0; a < rank; ++a) src[perm[a]] = at[a];
        int64_t off = 0;
        for (int64_t a = 0; a < rank; ++a) off = off * d.dims[a] + src[a];
        r.i.push_back(d.i[off]);
      });
    } else if (op == "Reshape") {  // of a constant: ONNX's 0 (copy) and -1 (inferred)
      allow(n, {"allowzero"});
      if (attr_int(n, "allowzero", 0) != 0) bad_attr(n, "allowzero", "1 is not supported");
      const Const& d = int_const(n, 0);
      const Const& t = int_const(n, 1);
      int64_t known = 1, infer = -1;
      for (size_t a = 0; a < t.i.size(); ++a) {
        int64_t v = t.i[a];
        if (v == 0 && a < d.dims.size()) v = d.dims[a];
        if (v == -1 && infer < 0) {
          infer = static_cast<int64_t>(a);
        } else if (v < 0) {
          fail("{}: node '{}' (Reshape): target {} of a constant of shape {} (expected sizes, one "
               "-1 at most)", where_, cur_, ints_str(t.i), shape_str(d.dims));
        } else {
          known *= v;
        }
        r.dims.push_back(v);
      }
      const int64_t total = static_cast<int64_t>(d.i.size());
      if (infer >= 0 && known > 0 && total % known == 0) r.dims[infer] = total / known;
      if (numel(r.dims) != total)
        fail("{}: node '{}' (Reshape): target {} does not hold the {} values of a constant of "
             "shape {}", where_, cur_, ints_str(t.i), total, shape_str(d.dims));
      r.i = d.i;
    } else if (op == "ConstantOfShape") {
      allow(n, {"value"});
      const Const& sh = int_const(n, 0);
      if (sh.dims.size() != 1)
        fail("{}: node '{}' (ConstantOfShape): shape input has shape {} (expected 1-D)", where_,
             cur_, shape_str(sh.dims));
      int64_t count = 1;
      for (int64_t v : sh.i) {
        if (v < 0 || (v > 0 && count > kMaxConstElements / v))
          fail("{}: node '{}' (ConstantOfShape): shape {} (expected sizes >= 0, at most {} "
               "elements)", where_, cur_, ints_str(sh.i), kMaxConstElements);
        count *= v;
      }
      Const val;
      val.is_int = false;
      val.f = {0.0f};
      if (const auto* v = attr(n, "value")) {
        if (v->type() != onnx::AttributeProto::TENSOR) bad_attr(n, "value", "expected a tensor");
        val = to_const(v->t(), "ConstantOfShape value");
        if ((val.is_int ? val.i.size() : val.f.size()) != 1)
          bad_attr(n, "value", "expected one element");
      }
      r.dims = sh.i;
      if (!val.is_int) {  // a float constant: a value, not shape arithmetic
        r.f.assign(static_cast<size_t>(count), val.f[0]);
        set_out(n, Value{-1, std::make_shared<Const>(std::move(r))});
        return;
      }
      r.i.assign(static_cast<size_t>(count), val.i[0]);
    }
    set_const(n, std::move(r));
  }

  // Add / Sub / Mul / Div of integer constants (shape arithmetic), element-wise with a scalar
  // broadcast; Div truncates as ONNX's integer Div.
  void arithmetic(const onnx::NodeProto& n) {
    allow(n, {});
    const Const& a = int_const(n, 0);
    const Const& b = int_const(n, 1);
    const std::string& op = n.op_type();
    if (a.i.size() != b.i.size() && a.i.size() != 1 && b.i.size() != 1)
      fail("{}: node '{}' ({}): shapes {} and {} do not broadcast (only equal sizes or a scalar are "
           "folded)", where_, cur_, n.op_type(), shape_str(a.dims), shape_str(b.dims));
    Const r;
    r.dims = a.i.size() >= b.i.size() ? a.dims : b.dims;
    const size_t len = std::max(a.i.size(), b.i.size());
    for (size_t k = 0; k < len; ++k) {
      const int64_t x = a.i[a.i.size() == 1 ? 0 : k], y = b.i[b.i.size() == 1 ? 0 : k];
      if (x == kBatch || y == kBatch)
        fail("{}: node '{}' ({}): arithmetic on the batch size is not supported", where_, cur_,
             n.op_type());
      if (op == "Div" && y == 0) fail("{}: node '{}' (Div): division by zero", where_, cur_);
      int64_t v = 0;
      bool overflow = op == "Div" && x == std::numeric_limits<int64_t>::min() && y == -1;
      if (op == "Add") overflow = __builtin_add_overflow(x, y, &v);
      else if (op == "Sub") overflow = __builtin_sub_overflow(x, y, &v);
      else if (op == "Mul") overflow = __builtin_mul_overflow(x, y, &v);
      else if (!overflow) v = x / y;
      if (overflow) fail("{}: node '{}' ({}): {} and {} overflow int64", where_, cur_, op, x, y);
      r.i.push_back(v);
    }
    set_const(n, std::move(r));
  }

  // Sub(input, mean) then Div(., std) by per-channel constants right at the input: the model's
  // own input normalization, which becomes the graph's input_mean / input_std.
  void normalization(const onnx::NodeProto& n) {
    allow(n, {});
    const bool sub = n.op_type() == "Sub";
    const Value x = value(n, 0);
    const int64_t c = g_.input_shape[0];
    std::shared_ptr<const Const> k = has_input(n, 1) ? value(n, 1).c : nullptr;
    bool ok = x.node == 0 && k && !k->is_int && uses_[n.input(0)] == 1 &&
              (sub ? norm_stage_ == 0 : norm_stage_ <= 1) &&
              // a scalar is broadcast to the channels (of a plausible image: at most 2^16)
              ((k->f.size() == 1 && c <= 65536) || static_cast<int64_t>(k->f.size()) == c) &&
              (k->dims.empty() || k->dims == Shape{1} || k->dims == Shape{c, 1, 1} ||
               k->dims == Shape{1, c, 1, 1});
    if (!ok)
      fail("{}: node '{}' ({}): supported only as the input normalization: Sub(input, mean) then "
           "Div(., std) by per-channel constants ([1, C, 1, 1]) at the start of the graph",
           where_, cur_, n.op_type());
    require_finite(n, 1, *k, sub ? "mean" : "std");
    std::vector<float> v(static_cast<size_t>(c));
    for (int64_t i = 0; i < c; ++i) v[i] = k->f.size() == 1 ? k->f[0] : k->f[i];
    if (sub) {
      g_.input_mean = v;
      norm_stage_ = 1;
    } else {
      for (float s : v)
        if (!(s > 0) || !std::isfinite(s))
          fail("{}: node '{}' (Div): input std {} must be positive", where_, cur_, s);
      if (g_.input_mean.empty()) g_.input_mean.assign(static_cast<size_t>(c), 0.0f);
      g_.input_std = v;
      norm_stage_ = 2;
    }
    set_out(n, Value{0, nullptr});
  }

  void flatten_axis(const onnx::NodeProto& n) {
    int64_t axis = attr_int(n, "axis", 1);
    if (axis != 1) bad_attr(n, "axis", fmt::format("{} is not supported (only 1: [N, rest])", axis));
  }

  void flatten(const onnx::NodeProto& n, int k, int x) {
    if (shape(x).size() == 1) set_out(n, Value{x, nullptr});  // already [N, F]
    else set_out(n, Value{push_done(g_.flatten(node_name(n, k), x)), nullptr});
  }

  void reshape(const onnx::NodeProto& n, int k) {
    allow(n, {"allowzero"});
    if (attr_int(n, "allowzero", 0) != 0) bad_attr(n, "allowzero", "1 is not supported");
    auto s = const_in(n, 1, true);
    if (!s->is_int) fail("{}: node '{}' (Reshape): shape input must be int64", where_, cur_);
    auto batch = [&](int64_t b) { return b == 0 || b == -1 || b > 0 || b == kBatch; };
    if (auto sw = swapped_.find(input_name(n, 0)); sw != swapped_.end()) {
      // The channel shuffle's last step: [N, C/g, g, H, W] viewed as [N, C, H, W] again.
      const auto [x, groups] = sw->second;
      const Shape& xs = shape(x);
      const auto& t = s->i;
      if (t.size() != 4 || !batch(t[0]) || !(t[1] == xs[0] || t[1] == -1) ||
          !(t[2] == xs[1] || (t[2] == -1 && t[1] != -1)) || !(t[3] == xs[2] || (t[3] == -1 && t[1] != -1 && t[2] != -1)))
        fail("{}: node '{}' (Reshape): target {} after a channel shuffle's Transpose (expected "
             "[N, {}, {}, {}])", where_, cur_, ints_str(t), xs[0], xs[1], xs[2]);
      set_out(n, Value{push_done(g_.channel_shuffle(node_name(n, k), x, groups)), nullptr});
      return;
    }
    int x = tensor_in(n, 0);
    if (s->i.size() == 5 && shape(x).size() == 3) {
      // A channel shuffle's first step: [N, C, H, W] viewed as [N, g, C/g, H, W].
      const Shape& xs = shape(x);
      const auto& t = s->i;
      const int64_t g = t[1];
      if (!batch(t[0]) || g <= 0 || xs[0] % g != 0 || !(t[2] == xs[0] / g || t[2] == -1) ||
          t[3] != xs[1] || t[4] != xs[2])
        fail("{}: node '{}' (Reshape): target {} of a tensor [N, {}, {}, {}] is not supported (5-D "
             "only as a channel shuffle's [N, groups, C/groups, H, W])",
             where_, cur_, ints_str(t), xs[0], xs[1], xs[2]);
      if (n.output_size() < 1 || n.output(0).empty())
        fail("{}: node '{}' (Reshape) has no output", where_, cur_);
      grouped_[n.output(0)] = {x, g};
      return;
    }
    const int64_t per = numel(shape(x));
    // [N, F] → [N, F, 1, 1]: a squeeze-excitation gate computed by Linear layers, for the Mul
    // that scales a feature map by it (the IR's mul takes a flat per-channel gate as it is).
    const bool batch_ok = !s->i.empty() && (s->i[0] == 0 || s->i[0] == -1 || s->i[0] > 0 || s->i[0] == kBatch);
    if (shape(x).size() == 1 && s->i.size() == 4 && batch_ok && (s->i[1] == per || s->i[1] == -1) &&
        s->i[2] == 1 && s->i[3] == 1) {
      set_out(n, Value{x, nullptr});
      return;
    }
    // Only [N, F] targets: (0 | -1 | N | the batch symbol of a folded Shape) for the batch,
    // (F | -1) for the features.
    bool ok = s->i.size() == 2 && (s->i[0] == 0 || s->i[0] == -1 || s->i[0] > 0 || s->i[0] == kBatch) &&
              (s->i[1] == per || (s->i[1] == -1 && s->i[0] != -1));
    if (!ok)
      fail("{}: node '{}' (Reshape): target shape {} is not supported (only a flatten to "
           "[N, {}])", where_, cur_, ints_str(s->i), per);
    flatten(n, k, x);
  }

  // Adds `b` onto the bias of weight layer `layer`.
  void add_bias(int layer, const std::vector<float>& b) {
    Node& L = g_.nodes[layer];
    if (!L.has_bias) {
      L.has_bias = true;
      L.params["bias"] = Tensor({L.out_channels}, 0.0f);
    }
    auto& d = L.params["bias"].data;
    for (size_t c = 0; c < d.size(); ++c) d[c] += b.size() == 1 ? b[0] : b[c];
  }

  void conv(const onnx::NodeProto& n, int k) {
    allow(n, {"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"});
    no_auto_pad(n);
    const auto pp = pads_.find(input_name(n, 0));
    int x = pp != pads_.end() ? pp->second.first : tensor_in(n, 0);
    auto w = const_in(n, 1);
    if (w->dims.size() != 4 || w->is_int)
      fail("{}: node '{}' (Conv): weight has shape {}, expected float [out, in/groups, kh, kw]",
           where_, cur_, shape_str(w->dims));
    const auto kern = axis_pair(n, "kernel_shape", 0, false);
    if (kern[0] != 0 && (kern[0] != w->dims[2] || kern[1] != w->dims[3]))
      bad_attr(n, "kernel_shape",
               fmt::format("[{}, {}] differs from the weight's {}x{}", kern[0], kern[1], w->dims[2],
                           w->dims[3]));
    Window2d win = window_of(n, {w->dims[2], w->dims[3]});
    if (pp != pads_.end()) {  // a zero Pad before the Conv: both paddings are zeros, so they add
      const auto& p = pp->second.second;
      win.pad_top += p[0], win.pad_left += p[1], win.pad_bottom += p[2], win.pad_right += p[3];
    }
    int64_t groups = attr_int(n, "group", 1);
    if (groups <= 0) bad_attr(n, "group", fmt::format("{} must be positive", groups));
    if (shape(x).size() != 3)
      fail("{}: node '{}' (Conv): input has per-sample shape {}, expected [C, H, W]", where_, cur_, shape_str(shape(x)));
    if (groups > shape(x)[0] || shape(x)[0] % groups != 0 || shape(x)[0] / groups != w->dims[1])
      fail("{}: node '{}' (Conv): weight {} with group {} does not match {} input channels", where_, cur_,
           shape_str(w->dims), groups, shape(x)[0]);
    require_finite(n, 1, *w, "weight");
    bool bias = has_input(n, 2);
    int idx = g_.conv2d(node_name(n, k), x, w->dims[0], win, groups, bias);
    g_.nodes[idx].params["weight"] = Tensor(w->dims);
    g_.nodes[idx].params["weight"].data = w->f;
    if (bias) {
      auto b = const_in(n, 2);
      expect_shape(n, "bias", *b, {w->dims[0]});
      require_finite(n, 2, *b, "bias");
      g_.nodes[idx].params["bias"] = Tensor({w->dims[0]});
      g_.nodes[idx].params["bias"].data = b->f;
    }
    set_out(n, Value{push_done(idx), nullptr});
  }

  int flat_input(const onnx::NodeProto& n, int k) {
    int x = tensor_in(n, k);
    if (shape(x).size() != 1)
      fail("{}: node '{}' ({}): input has per-sample shape {}, expected a flat [N, F] tensor "
           "(Flatten first)", where_, cur_, n.op_type(), shape_str(shape(x)));
    return x;
  }

  // A linear layer from a weight stored [in, out] (transposed) or [out, in].
  int linear(const onnx::NodeProto& n, int k, int x, const Const& w, bool transposed, float alpha) {
    if (w.dims.size() != 2 || w.is_int)
      fail("{}: node '{}' ({}): weight has shape {}, expected a float matrix", where_, cur_, n.op_type(), shape_str(w.dims));
    const int64_t in = transposed ? w.dims[0] : w.dims[1], out = transposed ? w.dims[1] : w.dims[0];
    if (in != shape(x)[0])
      fail("{}: node '{}' ({}): weight {} does not match {} input features", where_, cur_,
           n.op_type(), shape_str(w.dims), shape(x)[0]);
    int idx = g_.linear(node_name(n, k), x, out, false);
    Tensor t({out, in});
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i)
        t.data[o * in + i] = alpha * (transposed ? w.f[i * out + o] : w.f[o * in + i]);
    g_.nodes[idx].params["weight"] = std::move(t);
    return idx;
  }

  void gemm(const onnx::NodeProto& n, int k) {
    allow(n, {"alpha", "beta", "transA", "transB"});
    if (attr_int(n, "transA", 0) != 0) bad_attr(n, "transA", "1 is not supported");
    int64_t transB = attr_int(n, "transB", 0);
    float alpha = attr_float(n, "alpha", 1.0f), beta = attr_float(n, "beta", 1.0f);
    int x = flat_input(n, 0);
    auto w = const_in(n, 1);
    require_finite(n, 1, *w, "weight");
    int idx = linear(n, k, x, *w, transB == 0, alpha);
    if (has_input(n, 2)) {
      auto c = const_in(n, 2);
      const int64_t out = g_.nodes[idx].out_channels;
      if (c->is_int || !(c->f.size() == 1 || (static_cast<int64_t>(c->f.size()) == out &&
                                              (c->dims == Shape{out} || c->dims == Shape{1, out}))))
        fail("{}: node '{}' (Gemm): C has shape {}, expected [{}] or [1, {}]", where_, cur_,
             shape_str(c->dims), out, out);
      require_finite(n, 2, *c, "C (bias)");
      std::vector<float> b = c->f;
      for (float& v : b) v *= beta;
      add_bias(idx, b);
    }
    set_out(n, Value{push_done(idx), nullptr});
  }

  void matmul(const onnx::NodeProto& n, int k) {
    allow(n, {});
    int x = flat_input(n, 0);
    auto w = const_in(n, 1);
    require_finite(n, 1, *w, "weight");
    set_out(n, Value{push_done(linear(n, k, x, *w, true, 1.0f)), nullptr});
  }

  void clip(const onnx::NodeProto& n, int k) {
    float lo = -std::numeric_limits<float>::infinity(), hi = std::numeric_limits<float>::infinity();
    if (opset_ < 11) {
      allow(n, {"min", "max"});
      lo = attr_float(n, "min", lo);
      hi = attr_float(n, "max", hi);
    } else {
      allow(n, {});
      auto scalar = [&](int i, float def) {
        if (!has_input(n, i)) return def;
        auto c = const_in(n, i);
        if (c->f.size() != 1) fail("{}: node '{}' (Clip): input #{} must be a scalar", where_, cur_, i);
        return c->f[0];
      };
      lo = scalar(1, lo);
      hi = scalar(2, hi);
    }
    int x = tensor_in(n, 0);
    int idx;
    if (lo == 0.0f && hi == 6.0f) idx = g_.relu6(node_name(n, k), x);
    else if (lo == 0.0f && std::isinf(hi) && hi > 0) idx = g_.relu(node_name(n, k), x);
    else fail("{}: node '{}' (Clip): range [{}, {}] is not supported (only [0, 6] as ReLU6)", where_, cur_, lo, hi);
    set_out(n, Value{push_done(idx), nullptr});
  }

  void add(const onnx::NodeProto& n, int k) {
    allow(n, {});
    const Value a = value(n, 0), b = value(n, 1);
    if (a.node >= 0 && b.node >= 0) {
      set_out(n, Value{push_done(g_.add(node_name(n, k), a.node, b.node)), nullptr});
      return;
    }
    if (a.node < 0 && b.node < 0)
      fail("{}: node '{}' (Add): both inputs are constants (fold them before export)", where_, cur_);
    const Value& t = a.node >= 0 ? a : b;
    const Const& c = a.node >= 0 ? *b.c : *a.c;
    const std::string& tname = a.node >= 0 ? n.input(0) : n.input(1);
    // A per-channel constant onto a weight layer's own output: its bias.
    Node& L = g_.nodes[t.node];
    bool layer = is_weight_layer(L) && uses_[tname] == 1;
    const int64_t ch = L.out_channels;
    bool bias_shape = !c.is_int &&
        (c.dims == Shape{ch} || c.dims == Shape{1, ch} || c.dims == Shape{ch, 1, 1} ||
         c.dims == Shape{1, ch, 1, 1} || c.f.size() == 1);
    // [ch] broadcasts over the last axis: that is a conv's width, not its channels.
    if (L.op == Op::Conv2d && c.dims == Shape{ch} && ch != 1) bias_shape = false;
    if (L.op == Op::Linear && (c.dims == Shape{ch, 1, 1} || c.dims == Shape{1, ch, 1, 1})) bias_shape = false;
    if (!layer || !bias_shape)
      fail("{}: node '{}' (Add): adding constant of shape {} is supported only as the bias of "
           "the Conv/Gemm/MatMul right before it", where_, cur_, shape_str(c.dims));
    require_finite(n, a.node >= 0 ? 1 : 0, c, "bias constant");
    add_bias(t.node, c.f);
    set_out(n, Value{t.node, nullptr});
  }

  // A pool's attribute names and modes (ceil_mode, storage_order, count_include_pad).
  void pool_attrs(const onnx::NodeProto& n) {
    const bool maxp = n.op_type() == "MaxPool";
    if (maxp) allow(n, {"kernel_shape", "strides", "pads", "dilations", "auto_pad", "ceil_mode", "storage_order"});
    else allow(n, {"kernel_shape", "strides", "pads", "auto_pad", "ceil_mode", "count_include_pad"});
    const int64_t ceil = attr_int(n, "ceil_mode", 0);
    if (ceil != 0 && ceil != 1) bad_attr(n, "ceil_mode", fmt::format("{} (expected 0 or 1)", ceil));
    if (attr_int(n, "storage_order", 0) != 0) bad_attr(n, "storage_order", "1 is not supported");
    auto p = attr_ints(n, "pads");
    const bool padded = std::any_of(p.begin(), p.end(), [](int64_t v) { return v != 0; });
    if (!maxp && padded && attr_int(n, "count_include_pad", 0) == 0)
      bad_attr(n, "count_include_pad", "0 with padding is not supported (SigmaQuant counts padded zeros)");
  }

  void pool(const onnx::NodeProto& n, int k) {
    const bool maxp = n.op_type() == "MaxPool";
    pool_attrs(n);
    no_auto_pad(n);
    unit_dilations(n);
    Window2d win = window_of(n, axis_pair(n, "kernel_shape", 0, true));
    int x = -1;
    if (auto pp = pads_.find(input_name(n, 0)); pp != pads_.end()) {
      if (maxp)  // check_supported lets a Pad reach only AveragePool
        fail("{}: node '{}' (MaxPool) reads a Pad", where_, cur_);
      if (win.pad_top || win.pad_left || win.pad_bottom || win.pad_right)
        fail("{}: node '{}' (AveragePool): reads a Pad and pads {} itself (not supported)", where_,
             cur_, window_str(win));
      x = pp->second.first;
      const auto& p = pp->second.second;
      win.pad_top = p[0], win.pad_left = p[1], win.pad_bottom = p[2], win.pad_right = p[3];
    } else {
      x = tensor_in(n, 0);
      // A 1 × 1 window at stride 1 without padding copies its input (torch's AdaptiveAvgPool2d
      // to the size it is given: VGG's 7 × 7 at 224², AlexNet's 6 × 6): an alias, as Identity.
      if (win.kernel_h == 1 && win.kernel_w == 1 && win.stride_h == 1 && win.stride_w == 1 &&
          win.pad_top == 0 && win.pad_left == 0 && win.pad_bottom == 0 && win.pad_right == 0) {
        set_out(n, value(n, 0));
        return;
      }
    }
    bool ceil = attr_int(n, "ceil_mode", 0) == 1;
    if (ceil && !maxp && shape(x).size() == 3) {
      // An average pooling's ceil_mode is taken only where it adds no window (the extra window
      // would average over fewer taps than the kernel's, which the IR does not express).
      // PyTorch's and ONNX Runtime's ceil_mode: rounded up, the last window starting inside the
      // input or the leading padding.
      auto up = [](int64_t in, int64_t k, int64_t s, int64_t before, int64_t after) {
        int64_t o = (in + before + after - k + s - 1) / s + 1;
        if ((o - 1) * s >= in + before) --o;
        return o;
      };
      const int64_t fh = win.out_h(shape(x)[1]), fw = win.out_w(shape(x)[2]);
      const int64_t ch = up(shape(x)[1], win.kernel_h, win.stride_h, win.pad_top, win.pad_bottom),
                    cw = up(shape(x)[2], win.kernel_w, win.stride_w, win.pad_left, win.pad_right);
      if (fh > 0 && fw > 0 && (fh != ch || fw != cw))
        bad_attr(n, "ceil_mode",
                 fmt::format("1 is supported for AveragePool only where it gives "
                             "the same output size as 0 (here {}x{} instead of "
                             "{}x{} over an input of {})",
                             ch, cw, fh, fw, shape_str(shape(x))));
      ceil = false;
    }
    int idx =
        maxp ? g_.maxpool(node_name(n, k), x, win, ceil) : g_.avgpool(node_name(n, k), x, win);
    set_out(n, Value{push_done(idx), nullptr});
  }

  void batchnorm(const onnx::NodeProto& n, int k) {
    allow(n, {"epsilon", "momentum", "training_mode", "spatial"});
    if (attr_int(n, "training_mode", 0) != 0) bad_attr(n, "training_mode", "1 is not supported (export in eval mode)");
    if (attr_int(n, "spatial", 1) != 1) bad_attr(n, "spatial", "0 is not supported");
    float eps = attr_float(n, "epsilon", 1e-5f);
    int x = tensor_in(n, 0);
    const int64_t ch = shape(x).empty() ? 0 : shape(x)[0];
    int idx = g_.batchnorm(node_name(n, k), x, eps);
    const char* names[] = {"weight", "bias", "running_mean", "running_var"};
    const char* onnx_names[] = {"scale", "B", "mean", "var"};
    for (int i = 0; i < 4; ++i) {
      auto c = const_in(n, i + 1);
      expect_shape(n, onnx_names[i], *c, {ch});
      require_finite(n, i + 1, *c, onnx_names[i]);
      g_.nodes[idx].params[names[i]] = Tensor({ch});
      g_.nodes[idx].params[names[i]].data = c->f;
    }
    set_out(n, Value{push_done(idx), nullptr});
  }

  const onnx::ModelProto& m_;
  std::string where_;
  int64_t opset_ = 0;
  int norm_stage_ = 0;  // 0: no input normalization seen, 1: Sub seen, 2: Div seen
  int n_index_ = 0;     // the index of the node being converted
  std::vector<std::string> notes_;
  // A channel shuffle under way: the 5-D view's name (grouped_) and the transposed view's
  // (swapped_) -> (input node, groups).
  std::map<std::string, std::pair<int, int64_t>> grouped_, swapped_;
  // Pad output -> (input node, padding [top, left, bottom, right])
  std::map<std::string, std::pair<int, std::array<int64_t, 4>>> pads_;
  std::string cur_;
  Graph g_;
  std::map<std::string, std::shared_ptr<const Const>> consts_;
  std::map<std::string, Value> values_;
  std::map<std::string, int> uses_;
  std::set<std::string> names_;
  std::vector<std::shared_ptr<const Const>> held_;  // keeps int_const()'s references alive
};

}  // namespace

Graph import_onnx_bytes(const std::string& bytes, const std::string& where,
                        std::vector<std::string>* notes) {
  onnx::ModelProto m;
  if (bytes.empty()) fail("{}: empty file (expected an ONNX model)", where);
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
    fail("{}: file too large for protobuf (over 2 GiB)", where);
  if (!m.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    fail("{}: not a valid ONNX model (protobuf parse failed: truncated or not ONNX)", where);
  Importer im(m, where);
  Graph g = im.run();
  if (notes) *notes = im.notes();
  return g;
}

Graph import_onnx(const std::string& path, std::vector<std::string>* notes) {
  return import_onnx_bytes(read_file(path), path, notes);
}

}  // namespace sq
