#include "graph_module.h"

#include <limits>

#include "sigmaquant/error.h"
#include "sync_batchnorm.h"

namespace sq {

torch::Tensor to_torch(const Tensor& t) {
  return torch::from_blob(const_cast<float*>(t.data.data()), t.shape, torch::kFloat32).clone();
}

Tensor from_torch(const torch::Tensor& t) {
  torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  Tensor out(Shape(c.sizes().begin(), c.sizes().end()));
  std::memcpy(out.data.data(), c.data_ptr<float>(), out.data.size() * sizeof(float));
  return out;
}

GraphModule::GraphModule(const Graph& g)
    : graph_(g), params_(g.nodes.size()), last_use_(g.nodes.size(), -1) {
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (int in : g.nodes[i].inputs) last_use_[in] = static_cast<int>(i);
  graph_.check_params("model '" + g.name + "'");
  for (size_t i = 0; i < graph_.nodes.size(); ++i) {
    Node& n = graph_.nodes[i];
    for (auto& [pname, t] : n.params) {
      std::string tname = "n" + std::to_string(i) + "_" + pname;
      bool buffer = pname == "running_mean" || pname == "running_var";
      torch::Tensor tt = to_torch(t);
      params_[i][pname] = buffer ? register_buffer(tname, tt) : register_parameter(tname, tt);
    }
    n.params.clear();  // the torch tensors are the only copy while the module lives
  }
}

void GraphModule::set_quant(std::shared_ptr<QuantHook> q) {
  quant_ = q ? register_module("quant", q) : nullptr;
}

namespace {
// x padded by the window's four sides with `value` (torch's pad order: left, right, top, bottom).
torch::Tensor pad_window(const torch::Tensor& x, const Window2d& w, double value) {
  return torch::constant_pad_nd(x, {w.pad_left, w.pad_right, w.pad_top, w.pad_bottom}, value);
}
}  // namespace

torch::Tensor GraphModule::forward(const torch::Tensor& x) {
  std::vector<torch::Tensor> v(graph_.nodes.size());
  run_nodes(x, v, 0, graph_.nodes.size());
  return v.back();
}

void GraphModule::run_nodes(const torch::Tensor& x, std::vector<torch::Tensor>& v, size_t from,
                            size_t to) {
  if (v.size() != graph_.nodes.size() || from > to || to > graph_.nodes.size())
    fail("GraphModule::run_nodes: nodes [{}, {}) of {} with {} values", from, to,
         graph_.nodes.size(), v.size());
  for (size_t i = from; i < to; ++i) {
    const Node& n = graph_.nodes[i];
    auto& p = params_[i];
    const torch::Tensor& in = n.inputs.empty() ? x : v[n.inputs[0]];
    torch::Tensor w, b;
    if (is_weight_layer(n)) {
      const bool q = quant_ && quant_->quantizes_weight(static_cast<int>(i));
      w = q ? quant_->weight(i, p.at("weight")) : p.at("weight");
      if (n.has_bias) b = q ? quant_->bias(i, n.inputs[0], p.at("bias")) : p.at("bias");
    }
    switch (n.op) {
      case Op::Input:
        v[i] = x;
        break;
      case Op::Conv2d: {
        // LibTorch pads symmetrically per axis; other padding is an explicit zero pad first.
        const Window2d& win = n.window;
        const bool sym = win.pad_top == win.pad_bottom && win.pad_left == win.pad_right;
        const torch::Tensor xin = sym ? in : pad_window(in, win, 0.0);
        v[i] = torch::conv2d(xin, w, b,
                             {win.stride_h, win.stride_w},
                             {sym ? win.pad_top : 0, sym ? win.pad_left : 0},
                             {win.dilation_h, win.dilation_w}, n.groups);
        break;
      }
      case Op::Linear:
        v[i] = torch::linear(in, w, b);
        break;
      case Op::BatchNorm:
        if (sync_bn_ && is_training()) {
          v[i] = sync_batch_norm(in, p.at("weight"), p.at("bias"), p.at("running_mean"),
                                 p.at("running_var"), 0.1, n.eps, *sync_bn_, sync_bn_contributes_,
                                 n.name);
          break;
        }
        v[i] = torch::batch_norm(in, p.at("weight"), p.at("bias"), p.at("running_mean"),
                                 p.at("running_var"), is_training(), 0.1, n.eps, false);
        break;
      case Op::ReLU:
        v[i] = torch::relu(in);
        break;
      case Op::ReLU6:
        v[i] = torch::clamp(in, 0.0, 6.0);
        break;
      case Op::Add:
        v[i] = in + v[n.inputs[1]];
        break;
      case Op::MaxPool: {
        // Unequal padding: an explicit −∞ pad (ignored by max, as padding is). With ceil_mode the
        // last window may then start in the explicit padding, which torch would not allow; the
        // IR's output size is kept by cropping to it.
        const Window2d& win = n.window;
        const bool sym = win.pad_top == win.pad_bottom && win.pad_left == win.pad_right;
        if (sym) {
          v[i] = torch::max_pool2d(in, {win.kernel_h, win.kernel_w}, {win.stride_h, win.stride_w},
                                   {win.pad_top, win.pad_left}, 1, n.ceil_mode);
        } else {
          v[i] = torch::max_pool2d(pad_window(in, win, -std::numeric_limits<double>::infinity()),
                                   {win.kernel_h, win.kernel_w}, {win.stride_h, win.stride_w}, 0, 1,
                                   n.ceil_mode)
                     .narrow(2, 0, n.out_shape[1])
                     .narrow(3, 0, n.out_shape[2]);
        }
        break;
      }
      case Op::AvgPool: {
        // count_include_pad = true: padded zeros count in the mean (the engine does the same), so
        // unequal padding is an explicit zero pad and the same divisor kh·kw.
        const Window2d& win = n.window;
        const bool sym = win.pad_top == win.pad_bottom && win.pad_left == win.pad_right;
        v[i] = torch::avg_pool2d(sym ? in : pad_window(in, win, 0.0), {win.kernel_h, win.kernel_w},
                                 {win.stride_h, win.stride_w},
                                 {sym ? win.pad_top : 0, sym ? win.pad_left : 0});
        break;
      }
      case Op::GlobalAvgPool:
        v[i] = in.mean({2, 3}, /*keepdim=*/true);
        break;
      case Op::Flatten:
        v[i] = in.flatten(1);
        break;
      case Op::Sigmoid:
        v[i] = torch::sigmoid(in);
        break;
      case Op::HardSigmoid:
        v[i] = torch::hardsigmoid(in);
        break;
      case Op::HardSwish:
        v[i] = torch::hardswish(in);
        break;
      case Op::SiLU:
        v[i] = torch::silu(in);
        break;
      case Op::LeakyReLU:
        v[i] = torch::leaky_relu(in, n.alpha);
        break;
      case Op::Concat: {
        std::vector<torch::Tensor> parts;
        for (int k : n.inputs) parts.push_back(v[k]);
        v[i] = torch::cat(parts, 1);
        break;
      }
      case Op::ChannelShuffle: {
        const int64_t c = in.size(1), h = in.size(2), w = in.size(3);
        v[i] = in.reshape({in.size(0), n.groups, c / n.groups, h, w})
                   .transpose(1, 2)
                   .reshape({in.size(0), c, h, w});
        break;
      }
      case Op::ChannelSlice:
        v[i] = in.narrow(1, n.begin, n.end - n.begin);
        break;
      case Op::Mul: {
        // A per-channel gate [N, C] or [N, C, 1, 1] broadcasts over H, W.
        const torch::Tensor& gate = v[n.inputs[1]];
        v[i] = in * (gate.dim() < in.dim() ? gate.reshape({gate.size(0), gate.size(1), 1, 1}) : gate);
        break;
      }
    }
    if (observer) observer(static_cast<int>(i), v[i]);
    if (quant_ && quant_->quantizes_act(static_cast<int>(i)))
      v[i] = quant_->act(static_cast<int>(i), v[i]);
    // Drop results no later node reads (lowers peak memory in inference; autograd keeps what
    // the backward pass needs on its own).
    for (int in : n.inputs)
      if (last_use_[in] == static_cast<int>(i)) v[in] = torch::Tensor();
  }
}

void GraphModule::export_to(Graph& g) const {
  for (size_t i = 0; i < params_.size(); ++i)
    for (const auto& [pname, t] : params_[i]) g.nodes.at(i).params[pname] = from_torch(t);
  g.input_mean = graph_.input_mean;
  g.input_std = graph_.input_std;
}

void GraphModule::import_from(const Graph& g) {
  torch::NoGradGuard ng;
  g.check_params("model '" + g.name + "'");
  for (size_t i = 0; i < params_.size(); ++i)
    for (auto& [pname, t] : params_[i]) {
      const Tensor& src = g.nodes.at(i).params.at(pname);
      if (Shape(t.sizes().begin(), t.sizes().end()) != src.shape)
        fail("model '{}': {}.{} has shape {}, expected {}", g.name, g.nodes[i].name, pname,
             shape_str(src.shape), shape_str(Shape(t.sizes().begin(), t.sizes().end())));
      t.copy_(to_torch(src).to(t.device()));
    }
  graph_.input_mean = g.input_mean;
  graph_.input_std = g.input_std;
}

}  // namespace sq
