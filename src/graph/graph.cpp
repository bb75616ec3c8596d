#include "sigmaquant/graph.h"
#include "sigmaquant/random.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "sigmaquant/error.h"

namespace sq {
namespace {

struct OpInfo {
  Op op;
  const char* name;
};
constexpr OpInfo kOps[] = {
    {Op::Input, "input"},         {Op::Conv2d, "conv2d"},   {Op::Linear, "linear"},
    {Op::BatchNorm, "batchnorm"}, {Op::ReLU, "relu"},       {Op::ReLU6, "relu6"},
    {Op::Add, "add"},             {Op::MaxPool, "maxpool"}, {Op::AvgPool, "avgpool"},
    {Op::GlobalAvgPool, "global_avgpool"}, {Op::Flatten, "flatten"},
    {Op::Sigmoid, "sigmoid"},     {Op::HardSigmoid, "hardsigmoid"}, {Op::HardSwish, "hardswish"},
    {Op::SiLU, "silu"},           {Op::LeakyReLU, "leaky_relu"},
    {Op::Concat, "concat"},       {Op::Mul, "mul"},         {Op::ChannelShuffle, "channel_shuffle"},
    {Op::ChannelSlice, "channel_slice"},
};

// ceil_mode as PyTorch: rounded up, but the last window must start inside the input or the
// leading padding (pad_before).
int64_t pooled_ceil(int64_t in, int64_t k, int64_t s, int64_t pad_before, int64_t pad_after) {
  const int64_t padded = in + pad_before + pad_after;
  if (padded < k) return 0;
  int64_t out = (padded - k + s - 1) / s + 1;
  if ((out - 1) * s >= in + pad_before) --out;
  return out;
}

bool valid_window(const Window2d& w) {
  return w.kernel_h > 0 && w.kernel_w > 0 && w.stride_h > 0 && w.stride_w > 0 && w.pad_top >= 0 &&
         w.pad_left >= 0 && w.pad_bottom >= 0 && w.pad_right >= 0 && w.dilation_h > 0 &&
         w.dilation_w > 0;
}

// Graphs come from files too: sizes beyond these cannot be a real network, and the limits keep
// every shape, parameter-count and MAC product inside int64.
constexpr int64_t kMaxAttribute = int64_t{1} << 31;  // channels, window sizes, groups
constexpr int64_t kMaxElements = int64_t{1} << 31;   // of one activation or parameter tensor

// numel(s), or -1 when it exceeds kMaxElements (checked before each multiplication).
int64_t bounded_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0 || (d > 0 && n > kMaxElements / d)) return -1;
    n *= d;
  }
  return n;
}

}  // namespace

std::string window_str(const Window2d& w) {
  auto pair = [](int64_t a, int64_t b) {
    return a == b ? std::to_string(a) : fmt::format("({},{})", a, b);
  };
  std::string s = fmt::format("{}x{} s{} p", w.kernel_h, w.kernel_w, pair(w.stride_h, w.stride_w));
  if (w.pad_top == w.pad_bottom && w.pad_left == w.pad_right)
    s += pair(w.pad_top, w.pad_left);
  else
    s += fmt::format("[{},{},{},{}]", w.pad_top, w.pad_left, w.pad_bottom, w.pad_right);
  if (w.dilation_h != 1 || w.dilation_w != 1) s += " d" + pair(w.dilation_h, w.dilation_w);
  return s;
}

const char* op_name(Op op) {
  for (const auto& o : kOps)
    if (o.op == op) return o.name;
  return "?";
}

Op op_from_name(const std::string& name) {
  for (const auto& o : kOps)
    if (name == o.name) return o.op;
  std::string known;
  for (const auto& o : kOps) known += std::string(known.empty() ? "" : ", ") + o.name;
  fail("unknown operator '{}' (expected one of: {})", name, known);
}

bool is_lut_activation(Op op) {
  return op == Op::Sigmoid || op == Op::HardSigmoid || op == Op::HardSwish || op == Op::SiLU ||
         op == Op::LeakyReLU;
}

double activation_value(Op op, double alpha, double x) {
  const double sig = 1.0 / (1.0 + std::exp(-x));
  const double hsig = std::clamp(x / 6.0 + 0.5, 0.0, 1.0);
  switch (op) {
    case Op::Sigmoid: return sig;
    case Op::HardSigmoid: return hsig;
    case Op::HardSwish: return x * hsig;
    case Op::SiLU: return x * sig;
    case Op::LeakyReLU: return x >= 0 ? x : alpha * x;
    default: fail("activation_value: {} is not a table-driven activation", op_name(op));
  }
}

bool is_weight_layer(const Node& n) { return n.op == Op::Conv2d || n.op == Op::Linear; }

double weight_std(const Node& n) {
  auto it = n.params.find("weight");
  if (it == n.params.end() || it->second.data.empty()) return 0.0;
  const auto& w = it->second.data;
  double mean = 0;
  for (float v : w) mean += v;
  mean /= static_cast<double>(w.size());
  double var = 0;
  for (float v : w) var += (v - mean) * (v - mean);
  return std::sqrt(var / static_cast<double>(w.size()));
}

Graph::Graph(std::string name_, Shape input_shape_, int64_t num_classes_)
    : name(std::move(name_)), input_shape(std::move(input_shape_)), num_classes(num_classes_) {}

int Graph::push(Node n) {
  for (int in : n.inputs)
    if (in < 0 || in >= static_cast<int>(nodes.size()))
      fail("graph '{}': node '{}' refers to input #{} which does not exist yet", name, n.name, in);
  for (const auto& m : nodes)
    if (m.name == n.name) fail("graph '{}': duplicate node name '{}'", name, n.name);
  nodes.push_back(std::move(n));
  return static_cast<int>(nodes.size()) - 1;
}

int Graph::input() {
  if (!nodes.empty()) return 0;
  Node n;
  n.name = "input";
  n.op = Op::Input;
  return push(std::move(n));
}

int Graph::conv2d(const std::string& nm, int in, int64_t out_channels, int64_t kernel,
                  int64_t stride, int64_t padding, int64_t groups, bool bias) {
  return conv2d(nm, in, out_channels, Window2d::square(kernel, stride, padding), groups, bias);
}

int Graph::conv2d(const std::string& nm, int in, int64_t out_channels, const Window2d& window,
                  int64_t groups, bool bias) {
  Node n;
  n.name = nm;
  n.op = Op::Conv2d;
  n.inputs = {in};
  n.out_channels = out_channels;
  n.window = window;
  n.groups = groups;
  n.has_bias = bias;
  return push(std::move(n));
}

int Graph::linear(const std::string& nm, int in, int64_t out_features, bool bias) {
  Node n;
  n.name = nm;
  n.op = Op::Linear;
  n.inputs = {in};
  n.out_channels = out_features;
  n.has_bias = bias;
  return push(std::move(n));
}

int Graph::batchnorm(const std::string& nm, int in, double eps) {
  Node n;
  n.name = nm;
  n.op = Op::BatchNorm;
  n.inputs = {in};
  n.eps = eps;
  return push(std::move(n));
}

namespace {
Node simple(const std::string& nm, Op op, std::vector<int> inputs) {
  Node n;
  n.name = nm;
  n.op = op;
  n.inputs = std::move(inputs);
  return n;
}
Node pool(const std::string& nm, Op op, int in, const Window2d& w) {
  Node n = simple(nm, op, {in});
  n.window = w;
  return n;
}
}  // namespace

int Graph::relu(const std::string& nm, int in) { return push(simple(nm, Op::ReLU, {in})); }
int Graph::relu6(const std::string& nm, int in) { return push(simple(nm, Op::ReLU6, {in})); }
int Graph::add(const std::string& nm, int a, int b) { return push(simple(nm, Op::Add, {a, b})); }
int Graph::activation(const std::string& nm, Op op, int in, double alpha) {
  if (!is_lut_activation(op)) fail("graph '{}': '{}' is not an activation", name, op_name(op));
  Node n = simple(nm, op, {in});
  n.alpha = alpha;
  return push(n);
}
int Graph::concat(const std::string& nm, const std::vector<int>& ins) {
  return push(simple(nm, Op::Concat, ins));
}
int Graph::mul(const std::string& nm, int x, int gate) {
  return push(simple(nm, Op::Mul, {x, gate}));
}
int Graph::channel_shuffle(const std::string& nm, int in, int64_t groups) {
  Node n = simple(nm, Op::ChannelShuffle, {in});
  n.groups = groups;
  return push(n);
}
int Graph::channel_slice(const std::string& nm, int in, int64_t begin, int64_t end) {
  Node n = simple(nm, Op::ChannelSlice, {in});
  n.begin = begin;
  n.end = end;
  return push(n);
}
int Graph::maxpool(const std::string& nm, int in, int64_t k, int64_t s, int64_t p, bool ceil_mode) {
  return maxpool(nm, in, Window2d::square(k, s, p), ceil_mode);
}
int Graph::maxpool(const std::string& nm, int in, const Window2d& w, bool ceil_mode) {
  Node n = pool(nm, Op::MaxPool, in, w);
  n.ceil_mode = ceil_mode;
  return push(n);
}
int Graph::avgpool(const std::string& nm, int in, int64_t k, int64_t s, int64_t p) {
  return avgpool(nm, in, Window2d::square(k, s, p));
}
int Graph::avgpool(const std::string& nm, int in, const Window2d& w) {
  return push(pool(nm, Op::AvgPool, in, w));
}
int Graph::global_avgpool(const std::string& nm, int in) {
  return push(simple(nm, Op::GlobalAvgPool, {in}));
}
int Graph::flatten(const std::string& nm, int in) { return push(simple(nm, Op::Flatten, {in})); }

void Graph::infer_shapes() {
  if (nodes.empty() || nodes[0].op != Op::Input)
    fail("graph '{}': the first node must be the input", name);
  if (input_shape.size() != 3 || input_shape[0] <= 0 || input_shape[1] <= 0 || input_shape[2] <= 0)
    fail("graph '{}': input shape {} must be {{C, H, W}} with positive sizes", name,
         shape_str(input_shape));
  if (bounded_numel(input_shape) < 0)
    fail("graph '{}': input shape {} is too large (at most {} elements)", name,
         shape_str(input_shape), kMaxElements);
  for (size_t i = 0; i < nodes.size(); ++i) {
    Node& n = nodes[i];
    auto bad = [&](const std::string& why) {
      fail("graph '{}': node '{}' ({}): {}", name, n.name, op_name(n.op), why);
    };
    size_t want_inputs = n.op == Op::Input ? 0 : (n.op == Op::Add || n.op == Op::Mul) ? 2 : 1;
    if (n.op == Op::Concat) {
      if (n.inputs.size() < 2) bad(fmt::format("has {} inputs, expected 2 or more", n.inputs.size()));
    } else if (n.inputs.size() != want_inputs) {
      bad(fmt::format("has {} inputs, expected {}", n.inputs.size(), want_inputs));
    }
    for (int in : n.inputs)
      if (in < 0 || static_cast<size_t>(in) >= i)
        bad(fmt::format("input #{} is not an earlier node", in));
    if (i > 0 && n.op == Op::Input) bad("only the first node may be the input");
    const Window2d& win = n.window;
    const std::pair<const char*, int64_t> attributes[] = {
        {"out_channels", n.out_channels}, {"kernel_h", win.kernel_h},
        {"kernel_w", win.kernel_w},       {"stride_h", win.stride_h},
        {"stride_w", win.stride_w},       {"pad_top", win.pad_top},
        {"pad_left", win.pad_left},       {"pad_bottom", win.pad_bottom},
        {"pad_right", win.pad_right},     {"dilation_h", win.dilation_h},
        {"dilation_w", win.dilation_w},   {"groups", n.groups}};
    for (const auto& [attr, value] : attributes)
      if (value > kMaxAttribute)
        bad(fmt::format("{} {} is too large (at most {})", attr, value, kMaxAttribute));
    const Shape in = n.inputs.empty() ? input_shape : nodes[n.inputs[0]].out_shape;
    auto need_chw = [&] {
      if (in.size() != 3) bad(fmt::format("needs a C x H x W input, got {}", shape_str(in)));
    };
    switch (n.op) {
      case Op::Input:
        n.out_shape = input_shape;
        break;
      case Op::Conv2d: {
        need_chw();
        if (n.out_channels <= 0 || n.groups <= 0 || !valid_window(win))
          bad(
              fmt::format("window {}, out_channels {}, groups {}: expected positive sizes, "
                          "strides and dilations, and padding >= 0",
                          window_str(win), n.out_channels, n.groups));
        if (in[0] % n.groups != 0 || n.out_channels % n.groups != 0)
          bad(fmt::format("groups={} must divide in_channels={} and out_channels={}", n.groups,
                          in[0], n.out_channels));
        const int64_t h = win.out_h(in[1]), w = win.out_w(in[2]);
        if (h <= 0 || w <= 0)
          bad(fmt::format("window {} is larger than the padded input {}", window_str(win),
                          shape_str(in)));
        n.out_shape = {n.out_channels, h, w};
        break;
      }
      case Op::Linear:
        if (in.size() != 1) bad(fmt::format("needs a flat input, got {}", shape_str(in)));
        if (n.out_channels <= 0) bad("out_features must be positive");
        n.out_shape = {n.out_channels};
        break;
      case Op::BatchNorm:
        if (in.empty()) bad("needs a non-scalar input");
        n.out_shape = in;
        break;
      case Op::ReLU:
      case Op::ReLU6:
        n.out_shape = in;
        break;
      case Op::Add:
        if (nodes[n.inputs[1]].out_shape != in)
          bad(fmt::format("adds {} and {}: shapes differ", shape_str(in),
                          shape_str(nodes[n.inputs[1]].out_shape)));
        n.out_shape = in;
        break;
      case Op::MaxPool:
      case Op::AvgPool: {
        need_chw();
        if (!valid_window(win) || 2 * std::max(win.pad_top, win.pad_bottom) > win.kernel_h ||
            2 * std::max(win.pad_left, win.pad_right) > win.kernel_w)
          bad(
              fmt::format("window {}: kernel and stride must be positive, each padding at most "
                          "half the kernel along its axis",
                          window_str(win)));
        if (win.dilation_h != 1 || win.dilation_w != 1)
          bad(fmt::format("window {}: dilated pooling is not supported", window_str(win)));
        if (n.ceil_mode && n.op != Op::MaxPool) bad("ceil_mode is supported for max pooling only");
        int64_t h = win.out_h(in[1]), w = win.out_w(in[2]);
        if (n.ceil_mode) {
          h = pooled_ceil(in[1], win.kernel_h, win.stride_h, win.pad_top, win.pad_bottom);
          w = pooled_ceil(in[2], win.kernel_w, win.stride_w, win.pad_left, win.pad_right);
        }
        if (h <= 0 || w <= 0)
          bad(fmt::format("window {} is larger than the input {}", window_str(win), shape_str(in)));
        n.out_shape = {in[0], h, w};
        break;
      }
      case Op::GlobalAvgPool:
        need_chw();
        n.out_shape = {in[0], 1, 1};
        break;
      case Op::Flatten:
        n.out_shape = {numel(in)};
        break;
      case Op::Sigmoid:
      case Op::HardSigmoid:
      case Op::HardSwish:
      case Op::SiLU:
      case Op::LeakyReLU:
        if (!std::isfinite(n.alpha)) bad(fmt::format("alpha {} must be finite", n.alpha));
        n.out_shape = in;
        break;
      case Op::Concat: {
        if (in.size() != 3 && in.size() != 1)
          bad(fmt::format("needs C x H x W or flat inputs, got {}", shape_str(in)));
        Shape out = in;
        for (size_t k = 1; k < n.inputs.size(); ++k) {
          const Shape& s = nodes[n.inputs[k]].out_shape;
          if (s.size() != in.size() || !std::equal(s.begin() + 1, s.end(), in.begin() + 1))
            bad(fmt::format("concatenates {} and {}: only the channels may differ", shape_str(in),
                            shape_str(s)));
          out[0] += s[0];
        }
        n.out_shape = out;
        break;
      }
      case Op::ChannelShuffle:
        need_chw();
        if (n.groups <= 0 || in[0] % n.groups != 0)
          bad(fmt::format("groups={} must be positive and divide the {} channels", n.groups, in[0]));
        n.out_shape = in;
        break;
      case Op::ChannelSlice: {
        if (in.size() != 3 && in.size() != 1)
          bad(fmt::format("needs a C x H x W or flat input, got {}", shape_str(in)));
        if (n.begin < 0 || n.begin >= in[0])
          bad(fmt::format("begin={} must be in [0, {}) (the input's {} channels)", n.begin, in[0],
                          in[0]));
        if (n.end <= n.begin || n.end > in[0])
          bad(fmt::format("end={} must be in ({}, {}] (after begin={}, at most the input's {} "
                          "channels)",
                          n.end, n.begin, in[0], n.begin, in[0]));
        Shape out = in;
        out[0] = n.end - n.begin;
        n.out_shape = out;
        break;
      }
      case Op::Mul: {
        const Shape& gs = nodes[n.inputs[1]].out_shape;
        const bool per_channel = !in.empty() && (gs == Shape{in[0], 1, 1} || gs == Shape{in[0]});
        if (gs != in && !per_channel)
          bad(fmt::format("multiplies {} by {} (expected a gate of the same shape, or [{}, 1, 1] "
                          "/ [{}]: one value per channel)",
                          shape_str(in), shape_str(gs), in.empty() ? 0 : in[0],
                          in.empty() ? 0 : in[0]));
        n.out_shape = in;
        break;
      }
    }
    if (bounded_numel(n.out_shape) < 0)
      bad(fmt::format("output shape {} is too large (at most {} elements)", shape_str(n.out_shape),
                      kMaxElements));
    for (const auto& [pname, shape] : expected_param_shapes(static_cast<int>(i)))
      if (bounded_numel(shape) < 0)
        bad(fmt::format("parameter '{}' of shape {} is too large (at most {} elements)", pname,
                        shape_str(shape), kMaxElements));
  }
  const Shape& out = nodes.back().out_shape;
  if (out.size() != 1 || out[0] != num_classes)
    fail("graph '{}': output node '{}' has shape {}, expected [{}] (the number of classes)", name,
         nodes.back().name, shape_str(out), num_classes);
}

std::map<std::string, Shape> Graph::expected_param_shapes(int idx) const {
  const Node& n = nodes.at(idx);
  std::map<std::string, Shape> s;
  const Shape in = n.inputs.empty() ? input_shape : nodes[n.inputs[0]].out_shape;
  switch (n.op) {
    case Op::Conv2d:
      s["weight"] = {n.out_channels, in.at(0) / n.groups, n.window.kernel_h, n.window.kernel_w};
      if (n.has_bias) s["bias"] = {n.out_channels};
      break;
    case Op::Linear:
      s["weight"] = {n.out_channels, in.at(0)};
      if (n.has_bias) s["bias"] = {n.out_channels};
      break;
    case Op::BatchNorm:
      for (const char* p : {"weight", "bias", "running_mean", "running_var"}) s[p] = {in.at(0)};
      break;
    default:
      break;
  }
  return s;
}

void Graph::init_params(uint64_t seed) {
  for (size_t i = 0; i < nodes.size(); ++i) {
    Node& n = nodes[i];
    Normal normal(seed * 1000003ULL + i);
    n.params.clear();
    for (auto& [pname, shape] : expected_param_shapes(static_cast<int>(i))) {
      Tensor t(shape, 0.0f);
      if (pname == "weight" && n.op == Op::BatchNorm) {
        t = Tensor(shape, 1.0f);
      } else if (pname == "running_var") {
        t = Tensor(shape, 1.0f);
      } else if (pname == "weight" && n.op == Op::Conv2d) {
        // He-normal: keeps activation variance through ReLU layers.
        double fan_in = static_cast<double>(shape[1] * shape[2] * shape[3]);
        double sd = std::sqrt(2.0 / fan_in);
        for (float& v : t.data) v = static_cast<float>(sd * normal());
      } else if (pname == "weight" && n.op == Op::Linear) {
        // PyTorch's default for Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        double bound = 1.0 / std::sqrt(static_cast<double>(shape[1]));
        for (float& v : t.data) v = static_cast<float>(bound * (2.0 * normal.uniform() - 1.0));
      }
      n.params[pname] = std::move(t);
    }
  }
}

void Graph::check_params(const std::string& where) const {
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = nodes[i];
    auto want = expected_param_shapes(static_cast<int>(i));
    for (const auto& [pname, t] : n.params) {
      auto it = want.find(pname);
      if (it == want.end())
        fail("{}: node '{}' ({}) has an unexpected parameter '{}'", where, n.name, op_name(n.op),
             pname);
      if (t.shape != it->second)
        fail("{}: {}.{} has shape {}, expected {}", where, n.name, pname, shape_str(t.shape),
             shape_str(it->second));
      if (t.size() != numel(t.shape))
        fail("{}: {}.{} holds {} values for shape {}", where, n.name, pname, t.size(),
             shape_str(t.shape));
    }
    for (const auto& [pname, shape] : want)
      if (!n.params.count(pname))
        fail("{}: {}.{} is missing (expected shape {})", where, n.name, pname, shape_str(shape));
  }
}

LayerStats Graph::layer_stats(int idx) const {
  const Node& n = nodes.at(idx);
  LayerStats st;
  for (auto& [pname, shape] : expected_param_shapes(idx))
    if (pname != "running_mean" && pname != "running_var") st.params += numel(shape);
  const Shape in = n.inputs.empty() ? input_shape : nodes[n.inputs[0]].out_shape;
  if (n.op == Op::Conv2d)
    st.macs =
        n.out_shape[0] * n.out_shape[1] * n.out_shape[2] * (in[0] / n.groups) * n.window.taps();
  else if (n.op == Op::Linear)
    st.macs = in[0] * n.out_channels;
  return st;
}

int64_t Graph::total_params() const {
  int64_t s = 0;
  for (size_t i = 0; i < nodes.size(); ++i) s += layer_stats(static_cast<int>(i)).params;
  return s;
}

int64_t Graph::total_macs() const {
  int64_t s = 0;
  for (size_t i = 0; i < nodes.size(); ++i) s += layer_stats(static_cast<int>(i)).macs;
  return s;
}

int Graph::index_of(const std::string& node_name) const {
  for (size_t i = 0; i < nodes.size(); ++i)
    if (nodes[i].name == node_name) return static_cast<int>(i);
  fail("graph '{}' has no node named '{}'", name, node_name);
}

std::vector<int> Graph::weight_layers() const {
  std::vector<int> w;
  for (size_t i = 0; i < nodes.size(); ++i)
    if (is_weight_layer(nodes[i])) w.push_back(static_cast<int>(i));
  return w;
}

}  // namespace sq
