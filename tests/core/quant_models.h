// Torch-free quantized models for the engine tests: a zoo graph with random weights, BN folded,
// mixed per-layer and per-channel bits, activation ranges calibrated on a plain float forward
// pass — and that forward pass with fake quantization at the points (the simulation of
// src/torch/graph_module.cpp + fake_quant.cpp, written as plain loops).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "sigmaquant/integerize.h"
#include "sigmaquant/qmodel.h"
#include "sigmaquant/transform.h"
#include "sigmaquant/zoo.h"

namespace sqtest {

// resnet8 with initialised weights whose output channel c of every layer is scaled by 1 + c % 4,
// so that per-channel sigmas have structure for the channel-wise allocators.
inline sq::Graph resnet8_with_channel_spread() {
  sq::Graph g = sq::make_zoo_model("resnet8", {1, 16, 16}, 10);
  g.init_params(4);
  for (int i : g.weight_layers()) {
    sq::Tensor& w = g.nodes[i].params.at("weight");
    const int64_t out = g.nodes[i].out_channels, per = static_cast<int64_t>(w.size()) / out;
    for (int64_t c = 0; c < out; ++c)
      for (int64_t k = 0; k < per; ++k) w.data[static_cast<size_t>(c * per + k)] *= 1.0f + c % 4;
  }
  return g;
}

// Every node's output for one image (CHW floats in [0, 1], not normalized). With quantize, the
// weights are w_q · s and every activation point is fake-quantized as in QuantSim::act.
inline std::vector<std::vector<float>> simulate_nodes(const sq::QuantModel& qm, const float* image,
                                                      bool quantize) {
  const sq::Graph& g = qm.graph;
  std::vector<std::vector<float>> v(g.nodes.size());
  const std::map<int, int> pts = sq::activation_quant_points(g, qm.bits);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const sq::Node& n = g.nodes[i];
    const auto& in = n.inputs.empty() ? v[0] : v[n.inputs[0]];
    const sq::Shape& is = n.inputs.empty() ? g.input_shape : g.nodes[n.inputs[0]].out_shape;
    std::vector<float>& y = v[i];
    switch (n.op) {
      case sq::Op::Input: {
        const int64_t c = g.input_shape[0], plane = g.input_shape[1] * g.input_shape[2];
        y.resize(static_cast<size_t>(c * plane));
        for (int64_t ch = 0; ch < c; ++ch)
          for (int64_t p = 0; p < plane; ++p) {
            const float s = g.input_std[ch] > 0 ? g.input_std[ch] : 1.0f;
            y[ch * plane + p] = (image[ch * plane + p] - g.input_mean[ch]) / s;
          }
        break;
      }
      case sq::Op::Conv2d:
      case sq::Op::Linear: {
        std::vector<float> w = n.params.at("weight").data;
        if (quantize) {
          const std::vector<int32_t> q = sq::quantized_weights(qm, n.name);
          const auto& s = qm.weight_scales.at(n.name);
          const int64_t per = static_cast<int64_t>(w.size()) / n.out_channels;
          for (size_t k = 0; k < w.size(); ++k) {
            const int64_t c = static_cast<int64_t>(k) / per;
            w[k] = static_cast<float>(q[k]) * (s.size() == 1 ? s[0] : s[c]);
          }
        }
        std::vector<float> bq;  // quantized: the bias rounded to the accumulator unit
        if (quantize && n.has_bias) {
          const auto& s = qm.weight_scales.at(n.name);
          const float sx = qm.acts.at(g.nodes[n.inputs[0]].name).scale;
          const sq::LayerBits& lb = qm.bits.for_layer(n.name);
          for (int64_t c = 0; c < n.out_channels; ++c) {
            const float sw = lb.channel_bits(c) == 0 ? 0.0f : (s.size() == 1 ? s[0] : s[c]);
            const double unit = sq::accumulator_unit(sx, sw);
            bq.push_back(static_cast<float>(
                std::nearbyint(double(n.params.at("bias").data[c]) / unit) * unit));
          }
        }
        const float* b = !n.has_bias ? nullptr
                         : quantize  ? bq.data()
                                     : n.params.at("bias").data.data();
        if (n.op == sq::Op::Linear) {
          const int64_t f = static_cast<int64_t>(in.size());
          y.assign(static_cast<size_t>(n.out_channels), 0.0f);
          for (int64_t o = 0; o < n.out_channels; ++o) {
            double acc = b ? b[o] : 0.0;
            for (int64_t k = 0; k < f; ++k) acc += double(w[o * f + k]) * in[k];
            y[o] = static_cast<float>(acc);
          }
          break;
        }
        const int64_t ic = is[0], ih = is[1], iw = is[2], oc = n.out_channels;
        const int64_t oh = n.out_shape[1], ow = n.out_shape[2];
        const sq::Window2d& win = n.window;
        const int64_t kh = win.kernel_h, kw = win.kernel_w;
        const int64_t icg = ic / n.groups, ocg = oc / n.groups;
        y.assign(static_cast<size_t>(oc * oh * ow), 0.0f);
        for (int64_t o = 0; o < oc; ++o)
          for (int64_t oy = 0; oy < oh; ++oy)
            for (int64_t ox = 0; ox < ow; ++ox) {
              double acc = b ? b[o] : 0.0;
              for (int64_t i2 = 0; i2 < icg; ++i2)
                for (int64_t ky = 0; ky < kh; ++ky)
                  for (int64_t kx = 0; kx < kw; ++kx) {
                    const int64_t yy = oy * win.stride_h - win.pad_top + ky * win.dilation_h,
                                  xx = ox * win.stride_w - win.pad_left + kx * win.dilation_w;
                    if (yy < 0 || yy >= ih || xx < 0 || xx >= iw) continue;
                    acc += double(w[((o * icg + i2) * kh + ky) * kw + kx]) *
                           in[((o / ocg * icg + i2) * ih + yy) * iw + xx];
                  }
              y[(o * oh + oy) * ow + ox] = static_cast<float>(acc);
            }
        break;
      }
      case sq::Op::ReLU:
      case sq::Op::ReLU6:
        y = in;
        for (float& x : y) x = std::max(x, 0.0f);
        if (n.op == sq::Op::ReLU6)
          for (float& x : y) x = std::min(x, 6.0f);
        break;
      case sq::Op::Add:
        y = in;
        for (size_t k = 0; k < y.size(); ++k) y[k] += v[n.inputs[1]][k];
        break;
      case sq::Op::MaxPool:
      case sq::Op::AvgPool: {
        const int64_t c = is[0], ih = is[1], iw = is[2], oh = n.out_shape[1], ow = n.out_shape[2];
        y.assign(static_cast<size_t>(c * oh * ow), 0.0f);
        for (int64_t ch = 0; ch < c; ++ch)
          for (int64_t oy = 0; oy < oh; ++oy)
            for (int64_t ox = 0; ox < ow; ++ox) {
              float m = -INFINITY, sum = 0;
              const sq::Window2d& win = n.window;
              for (int64_t ky = 0; ky < win.kernel_h; ++ky)
                for (int64_t kx = 0; kx < win.kernel_w; ++kx) {
                  const int64_t yy = oy * win.stride_h - win.pad_top + ky,
                                xx = ox * win.stride_w - win.pad_left + kx;
                  if (yy < 0 || yy >= ih || xx < 0 || xx >= iw) continue;
                  m = std::max(m, in[(ch * ih + yy) * iw + xx]);
                  sum += in[(ch * ih + yy) * iw + xx];
                }
              y[(ch * oh + oy) * ow + ox] = n.op == sq::Op::MaxPool ? m : sum / float(win.taps());
            }
        break;
      }
      case sq::Op::GlobalAvgPool: {
        const int64_t c = is[0], hw = is[1] * is[2];
        y.assign(static_cast<size_t>(c), 0.0f);
        for (int64_t ch = 0; ch < c; ++ch) {
          double s = 0;
          for (int64_t p = 0; p < hw; ++p) s += in[ch * hw + p];
          y[ch] = static_cast<float>(s / hw);
        }
        break;
      }
      case sq::Op::Flatten:
        y = in;
        break;
      case sq::Op::Sigmoid:
      case sq::Op::HardSigmoid:
      case sq::Op::HardSwish:
      case sq::Op::SiLU:
      case sq::Op::LeakyReLU:
        y = in;
        for (float& x : y) x = static_cast<float>(sq::activation_value(n.op, n.alpha, x));
        break;
      case sq::Op::Concat:
        y.clear();
        for (int k : n.inputs) y.insert(y.end(), v[k].begin(), v[k].end());
        break;
      case sq::Op::ChannelShuffle: {
        const int64_t c = is[0], plane = is[1] * is[2], per = c / n.groups;
        y.resize(in.size());
        for (int64_t i = 0; i < n.groups; ++i)
          for (int64_t j = 0; j < per; ++j)
            std::copy_n(in.begin() + (i * per + j) * plane, plane,
                        y.begin() + (j * n.groups + i) * plane);
        break;
      }
      case sq::Op::ChannelSlice: {
        const int64_t plane = is.size() == 3 ? is[1] * is[2] : 1;
        y.assign(in.begin() + n.begin * plane, in.begin() + n.end * plane);
        break;
      }
      case sq::Op::Mul: {
        const std::vector<float>& gate = v[n.inputs[1]];
        const size_t per = in.size() / gate.size();
        y = in;
        for (size_t k = 0; k < y.size(); ++k) y[k] *= gate[k / per];
        break;
      }
      case sq::Op::BatchNorm: {  // LibTorch's CPU batch_norm in evaluation (float, FMA)
        const int64_t c = is[0], plane = static_cast<int64_t>(in.size()) / c;
        y.resize(in.size());
        for (int64_t ch = 0; ch < c; ++ch) {
          const float invstd =
              1.0f / std::sqrt(n.params.at("running_var").data[ch] + static_cast<float>(n.eps));
          const float alpha = invstd * n.params.at("weight").data[ch];
          const float beta =
              std::fma(-n.params.at("running_mean").data[ch], alpha, n.params.at("bias").data[ch]);
          for (int64_t p = 0; p < plane; ++p)
            y[ch * plane + p] = std::fma(in[ch * plane + p], alpha, beta);
        }
        break;
      }
    }
    if (quantize && pts.count(static_cast<int>(i))) {
      const sq::ActQuant& a = qm.acts.at(n.name);
      const float s = std::max(std::fabs(a.scale), 1e-12f);
      const float zp = static_cast<float>(a.zero_point), qmax = static_cast<float>(a.qmax());
      for (float& x : y) x = (std::min(std::max(std::nearbyint(x / s) + zp, 0.0f), qmax) - zp) * s;
    }
  }
  return v;
}

inline std::vector<float> simulate(const sq::QuantModel& qm, const float* image) {
  return simulate_nodes(qm, image, true).back();
}

inline std::vector<float> random_images(int64_t n, int64_t numel, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n * numel));
  for (float& f : x) f = u(rng);
  return x;
}

// Non-square windows (issue 15): an Inception-like block whose branches are 1×7 → 7×1, 1×1 →
// 1×3 / 3×1, a dilated 3×3 and a 3×1 average pool (padding (1, 0)) → 1×1, concatenated; then a
// conv of stride (2, 1), a 2×2 conv padded only at the bottom and right (TF's SAME), a 3×2
// max-pool of stride 2 with padding [1, 0, 1, 1] and a depthwise 1×5; BN after every conv.
inline sq::Graph rect_graph(const sq::Shape& in, int64_t classes, uint64_t seed) {
  using W = sq::Window2d;
  sq::Graph g("rect", in, classes);
  auto cbr = [&g](const std::string& nm, int x, int64_t out, const W& w, int64_t groups = 1) {
    return g.relu(nm + ".relu", g.batchnorm(nm + ".bn", g.conv2d(nm + ".conv", x, out, w, groups)));
  };
  int x = cbr("stem", g.input(), 12, W::square(3, 1, 1));
  int a = cbr("b7a", x, 8, W::of(1, 7, 1, 1, 0, 3));
  a = cbr("b7b", a, 8, W::of(7, 1, 1, 1, 3, 0));
  int b = cbr("b3", x, 8, W::square(1, 1, 0));
  const int b1 = cbr("b3a", b, 6, W::of(1, 3, 1, 1, 0, 1));
  const int b2 = cbr("b3b", b, 6, W::of(3, 1, 1, 1, 1, 0));
  const int c = cbr("dil", x, 8, W::of(3, 3, 1, 1, 2, 2, 2, 2));
  const int p =
      cbr("poolproj", g.avgpool("pool", x, W::of(3, 1, 1, 1, 1, 0)), 4, W::square(1, 1, 0));
  x = g.concat("cat", {a, b1, b2, c, p});
  x = cbr("s21", x, 16, W::of(3, 3, 2, 1, 1, 1));
  x = cbr("same", x, 16, W{2, 2, 1, 1, 0, 0, 1, 1, 1, 1});
  x = g.maxpool("mp", x, W{3, 2, 2, 2, 1, 0, 1, 1, 1, 1});
  x = cbr("dw15", x, 16, W::of(1, 5, 1, 1, 0, 2), 16);
  x = g.global_avgpool("gap", x);
  g.linear("fc", g.flatten("flat", x), classes);
  g.infer_shapes();
  g.init_params(seed);
  return g;
}

// ShuffleNetV2-like channel slices: a stem, a stride-2 unit (two branches concatenated), stride-1
// units whose input is sliced into [0, split) (straight into the concat) and [split, C) (through
// 1×1 → depthwise 3×3 → 1×1), each followed by a channel shuffle — one unit split evenly, one
// unevenly; then a slice of a slice read by a conv, a slice at 0 concatenated with it, and a
// slice of the flattened features read by the linear layer. BN after every conv.
inline sq::Graph shufflev2_graph(const sq::Shape& in, int64_t classes, uint64_t seed) {
  sq::Graph g("shufflev2", in, classes);
  auto cb = [&g](const std::string& nm, int x, int64_t out, int64_t k, int64_t stride,
                 int64_t groups, bool relu) {
    const int y = g.batchnorm(nm + ".bn", g.conv2d(nm + ".conv", x, out, k, stride, k / 2, groups));
    return relu ? g.relu(nm + ".relu", y) : y;
  };
  int x = cb("stem", g.input(), 12, 3, 2, 1, true);
  const int b1 = cb("u1.b1.pw", cb("u1.b1.dw", x, 12, 3, 2, 12, false), 12, 1, 1, 1, true);
  int b2 = cb("u1.b2.pw1", x, 12, 1, 1, 1, true);
  b2 = cb("u1.b2.pw2", cb("u1.b2.dw", b2, 12, 3, 2, 12, false), 12, 1, 1, 1, true);
  x = g.channel_shuffle("u1.shuffle", g.concat("u1.cat", {b1, b2}), 2);
  auto unit = [&](const std::string& nm, int x, int64_t c, int64_t split) {
    const int lo = g.channel_slice(nm + ".lo", x, 0, split);
    const int hi = g.channel_slice(nm + ".hi", x, split, c);
    int b = cb(nm + ".pw1", hi, c - split, 1, 1, 1, true);
    b = cb(nm + ".pw2", cb(nm + ".dw", b, c - split, 3, 1, c - split, false), c - split, 1, 1, 1,
           true);
    return g.channel_shuffle(nm + ".shuffle", g.concat(nm + ".cat", {lo, b}), 2);
  };
  x = unit("u2", x, 24, 12);
  x = unit("u3", x, 24, 10);
  const int mid = g.channel_slice("u4.mid", g.channel_slice("u4.tail", x, 4, 24), 6, 14);
  x = g.concat("u4.cat", {g.channel_slice("u4.first", x, 0, 4), cb("u4.pw", mid, 12, 1, 1, 1, true)});
  x = g.flatten("flat", g.global_avgpool("gap", cb("head", x, 20, 1, 1, 1, true)));
  g.linear("fc", g.channel_slice("fslice", x, 3, 20), classes);
  g.infer_shapes();
  g.init_params(seed);
  return g;
}

// DenseNet-like pre-activation: a conv stem, two dense layers (BN → ReLU → 1×1 conv → BN → ReLU →
// 3×3 conv, concatenated to their input; the second one's plus a 1×1 projection of its input), a
// transition (BN → ReLU → 1×1 conv → 2×2 average
// pooling) and the final BN → ReLU → global pooling → linear. The BNs after a concat or a pooling
// are standalone (no conv absorbs them); the others fold.
inline sq::Graph dense_graph(const sq::Shape& in, int64_t classes, uint64_t seed) {
  sq::Graph g("dense", in, classes);
  auto br = [&g](const std::string& nm, int x) {
    return g.relu(nm + ".relu", g.batchnorm(nm + ".bn", x));
  };
  int x = g.conv2d("stem", g.input(), 8, 3, 1, 1);
  for (int l = 1; l <= 2; ++l) {
    const std::string nm = "d" + std::to_string(l);
    int y = g.conv2d(nm + ".c1", br(nm + ".n1", x), 8, 1, 1, 0);
    y = g.conv2d(nm + ".c2", br(nm + ".n2", y), 4, 3, 1, 1);
    // The second layer's output is a residual add read by the concat alone (an add whose codes
    // are rescaled into the concat's channel slice).
    if (l == 2) y = g.add(nm + ".res", y, g.conv2d(nm + ".proj", x, 4, 1, 1, 0));
    x = g.concat(nm + ".cat", {x, y});
  }
  x = g.avgpool("t.pool", g.conv2d("t.conv", br("t.n", x), 8, 1, 1, 0), 2, 2);
  x = g.flatten("flat", g.global_avgpool("gap", br("n5", x)));
  g.linear("fc", x, classes);
  g.infer_shapes();
  g.init_params(seed);
  return g;
}

// A zoo model with random weights and biases, BN folded, mixed precision: first and last layer
// at 8 bits, the others at random weight bits 2..8 and activation bits 4..8, every third one with
// per-channel bits that include pruned (0) and binary (1) channels; activation ranges are the
// min/max of a float forward pass over a few random images.
inline sq::QuantModel synthetic_qmodel(const std::string& zoo, const sq::Shape& in, int64_t classes,
                                       uint64_t seed) {
  sq::QuantModel qm;
  // "rect": rect_graph, the non-square windows the zoo does not have; "shufflev2":
  // shufflev2_graph, channel slices; "dense": dense_graph, standalone batchnorms.
  sq::Graph g = zoo == "rect"        ? rect_graph(in, classes, seed)
                : zoo == "shufflev2" ? shufflev2_graph(in, classes, seed)
                : zoo == "dense"     ? dense_graph(in, classes, seed)
                                     : sq::make_zoo_model(zoo, in, classes, seed);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  for (auto& n : g.nodes)
    if (n.op == sq::Op::BatchNorm) {
      for (float& x : n.params["bias"].data) x = nd(rng);
      for (float& x : n.params["running_mean"].data) x = nd(rng);
      if (zoo != "dense") continue;  // standalone BNs: gammas of both signs, variances around 1
      std::uniform_real_distribution<float> u(0.5f, 1.5f);
      for (float& x : n.params["weight"].data) x = u(rng) * (rng() % 5 ? 1.0f : -1.0f);
      for (float& x : n.params["running_var"].data) x = u(rng) * u(rng);
    }
  qm.graph = sq::fold_batchnorm(g);
  qm.graph.input_mean.assign(static_cast<size_t>(in[0]), 0.3f);
  qm.graph.input_std.assign(static_cast<size_t>(in[0]), 0.35f);
  const auto layers = qm.graph.weight_layers();
  for (size_t k = 0; k < layers.size(); ++k) {
    const sq::Node& n = qm.graph.nodes[layers[k]];
    sq::LayerBits lb;
    lb.wbits = 2 + static_cast<int>(rng() % 7);
    lb.abits = 4 + static_cast<int>(rng() % 5);
    if (k % 3 == 1) {
      for (int64_t c = 0; c < n.out_channels; ++c)
        lb.channel_wbits.push_back(c == 0 ? 0 : c == 1 ? 1 : 2 + static_cast<int>(rng() % 7));
      lb.wbits = *std::max_element(lb.channel_wbits.begin(), lb.channel_wbits.end());
    }
    qm.bits.layers[n.name] = lb;
  }
  sq::pin_first_last(qm.bits, qm.graph, 8);
  qm.weight_scales = sq::max_weight_scales(qm.graph, qm.bits);
  const std::map<int, int> pts = sq::activation_quant_points(qm.graph, qm.bits);
  std::map<int, std::pair<float, float>> range;
  const int64_t numel = in[0] * in[1] * in[2];
  const std::vector<float> imgs = random_images(4, numel, seed + 1);
  for (int s = 0; s < 4; ++s) {
    auto v = simulate_nodes(qm, imgs.data() + s * numel, false);
    for (const auto& [node, bits] : pts) {
      auto [lo, hi] = std::minmax_element(v[node].begin(), v[node].end());
      auto& r = range.try_emplace(node, 0.0f, 0.0f).first->second;
      r.first = std::min(r.first, *lo);
      r.second = std::max(r.second, *hi);
    }
  }
  for (const auto& [node, bits] : pts)
    qm.acts[qm.graph.nodes[node].name] =
        sq::act_quant_from_range({range[node].first, range[node].second}, bits);
  return qm;
}

// Gives every weight layer (the first and the last too) per-channel weight bits drawn from
// `widths` (0 = pruned) with the weight scales to match; the activation bits and points stay as
// calibrated. Channel 0 of every layer gets the widest width and channel 1 the narrowest, so each
// layer mixes widths whatever the draw.
inline void set_channel_bits(sq::QuantModel& qm, const std::vector<int>& widths, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const auto [lo, hi] = std::minmax_element(widths.begin(), widths.end());
  for (int l : qm.graph.weight_layers()) {
    const sq::Node& n = qm.graph.nodes[l];
    sq::LayerBits lb = qm.bits.for_layer(n.name);
    lb.channel_wbits.clear();
    for (int64_t c = 0; c < n.out_channels; ++c)
      lb.channel_wbits.push_back(c == 0   ? *hi
                                 : c == 1 ? *lo
                                          : widths[rng() % widths.size()]);
    lb.wbits = *hi;
    qm.bits.layers[n.name] = lb;
  }
  qm.weight_scales = sq::max_weight_scales(qm.graph, qm.bits);
}

}  // namespace sqtest
