#include "sigmaquant/transform.h"

#include <cmath>

#include "sigmaquant/error.h"

namespace sq {

std::vector<int> consumers(const Graph& g, int i) {
  std::vector<int> c;
  for (size_t k = 0; k < g.nodes.size(); ++k)
    for (int in : g.nodes[k].inputs)
      if (in == i) c.push_back(static_cast<int>(k));
  return c;
}

bool batchnorm_folds(const Graph& g, int node) {
  const Node& n = g.nodes[static_cast<size_t>(node)];
  return n.op == Op::BatchNorm && !n.inputs.empty() && is_weight_layer(g.nodes[n.inputs[0]]) &&
         consumers(g, n.inputs[0]).size() == 1;
}

Graph fold_batchnorm(const Graph& g) {
  Graph out = g;
  out.nodes.clear();
  std::vector<int> remap(g.nodes.size(), -1);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    if (batchnorm_folds(g, static_cast<int>(i))) {
      Node& layer = out.nodes[remap[n.inputs[0]]];
      const auto& gamma = n.params.at("weight").data;
      const auto& beta = n.params.at("bias").data;
      const auto& mean = n.params.at("running_mean").data;
      const auto& var = n.params.at("running_var").data;
      Tensor& w = layer.params.at("weight");
      const int64_t out_ch = w.shape[0], per = w.size() / out_ch;
      if (!layer.has_bias) {
        layer.has_bias = true;
        layer.params["bias"] = Tensor({out_ch}, 0.0f);
      }
      auto& b = layer.params.at("bias").data;
      for (int64_t o = 0; o < out_ch; ++o) {
        // In double: the folded model must equal the original within float rounding.
        double a = gamma[o] / std::sqrt(static_cast<double>(var[o]) + n.eps);
        for (int64_t k = 0; k < per; ++k) w.data[o * per + k] = static_cast<float>(a * w.data[o * per + k]);
        b[o] = static_cast<float>(a * (static_cast<double>(b[o]) - mean[o]) + beta[o]);
      }
      remap[i] = remap[n.inputs[0]];
      continue;
    }
    Node m = n;
    for (int& in : m.inputs) in = remap[in];
    out.nodes.push_back(std::move(m));
    remap[i] = static_cast<int>(out.nodes.size()) - 1;
  }
  out.infer_shapes();
  return out;
}

namespace {

// max |W| over the weights that read input channel c of layer n (conv: W[:, c] or the depthwise
// filter c; linear: column c), and the matching scaling.
double in_range(const Node& n, int64_t c) {
  const Tensor& w = n.params.at("weight");
  double r = 0;
  if (n.op == Op::Conv2d && n.groups > 1) {  // depthwise: filter c
    int64_t per = w.size() / w.shape[0];
    for (int64_t k = 0; k < per; ++k) r = std::max(r, std::fabs(double(w.data[c * per + k])));
    return r;
  }
  int64_t in = w.shape[1], per = w.size() / (w.shape[0] * in);
  for (int64_t o = 0; o < w.shape[0]; ++o)
    for (int64_t k = 0; k < per; ++k) r = std::max(r, std::fabs(double(w.data[(o * in + c) * per + k])));
  return r;
}
void scale_in(Node& n, int64_t c, double s) {
  Tensor& w = n.params.at("weight");
  if (n.op == Op::Conv2d && n.groups > 1) {
    int64_t per = w.size() / w.shape[0];
    for (int64_t k = 0; k < per; ++k) w.data[c * per + k] = static_cast<float>(w.data[c * per + k] * s);
    return;
  }
  int64_t in = w.shape[1], per = w.size() / (w.shape[0] * in);
  for (int64_t o = 0; o < w.shape[0]; ++o)
    for (int64_t k = 0; k < per; ++k) {
      float& v = w.data[(o * in + c) * per + k];
      v = static_cast<float>(v * s);
    }
}
double out_range(const Node& n, int64_t c) {
  const Tensor& w = n.params.at("weight");
  int64_t per = w.size() / w.shape[0];
  double r = 0;
  for (int64_t k = 0; k < per; ++k) r = std::max(r, std::fabs(double(w.data[c * per + k])));
  return r;
}
void scale_out(Node& n, int64_t c, double s) {
  Tensor& w = n.params.at("weight");
  int64_t per = w.size() / w.shape[0];
  for (int64_t k = 0; k < per; ++k) w.data[c * per + k] = static_cast<float>(w.data[c * per + k] * s);
  if (n.has_bias) n.params.at("bias").data[c] = static_cast<float>(n.params.at("bias").data[c] * s);
}

}  // namespace

int cross_layer_equalize(Graph& g, bool relu6_to_relu, int iterations) {
  struct Pair {
    int a, act, b;
  };
  std::vector<Pair> pairs;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (!is_weight_layer(g.nodes[i])) continue;
    auto c1 = consumers(g, static_cast<int>(i));
    if (c1.size() != 1) continue;
    int act = -1, next = c1[0];
    Op aop = g.nodes[next].op;
    if (aop == Op::ReLU || aop == Op::ReLU6) {
      if (aop == Op::ReLU6 && !relu6_to_relu) continue;
      auto c2 = consumers(g, next);
      if (c2.size() != 1) continue;
      act = next;
      next = c2[0];
    }
    const Node& b = g.nodes[next];
    if (!is_weight_layer(b)) continue;
    bool plain = b.op == Op::Linear || b.groups == 1;
    bool depthwise = b.op == Op::Conv2d && b.groups > 1 && b.groups == b.out_channels &&
                     b.params.at("weight").shape[1] == 1;
    if (!plain && !depthwise) continue;
    if (g.nodes[i].op == Op::Linear && b.op != Op::Linear) continue;
    pairs.push_back({static_cast<int>(i), act, next});
  }
  for (const Pair& p : pairs)
    if (p.act >= 0 && g.nodes[p.act].op == Op::ReLU6) g.nodes[p.act].op = Op::ReLU;
  for (int it = 0; it < iterations; ++it)
    for (const Pair& p : pairs) {
      Node& a = g.nodes[p.a];
      Node& b = g.nodes[p.b];
      for (int64_t c = 0; c < a.out_channels; ++c) {
        double r1 = out_range(a, c), r2 = in_range(b, c);
        if (r1 <= 0 || r2 <= 0) continue;
        double s = std::sqrt(r1 / r2);
        scale_out(a, c, 1.0 / s);
        scale_in(b, c, s);
      }
    }
  return static_cast<int>(pairs.size());
}

}  // namespace sq
