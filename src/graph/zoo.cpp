#include "sigmaquant/zoo.h"

#include <algorithm>
#include <functional>
#include <map>

#include "sigmaquant/error.h"

namespace sq {
namespace {

// conv -> batchnorm (-> relu / relu6), the basic unit of the CNNs below.
int conv_bn(Graph& g, const std::string& p, int x, int64_t ch, int64_t k, int64_t s,
            int64_t groups, Op act) {
  x = g.conv2d(p + ".conv", x, ch, k, s, k / 2, groups, false);
  x = g.batchnorm(p + ".bn", x);
  if (act == Op::ReLU) x = g.relu(p + ".relu", x);
  if (act == Op::ReLU6) x = g.relu6(p + ".relu6", x);
  return x;
}

Graph lenet5(const Shape& in, int64_t classes) {
  Graph g("lenet5", in, classes);
  // Classic LeNet-5 expects 32x32: pad smaller inputs (28x28 -> padding 2).
  int64_t pad = std::max<int64_t>(0, (32 - std::min(in[1], in[2]) + 1) / 2);
  int x = g.conv2d("conv1", g.input(), 6, 5, 1, pad, 1, true);
  x = g.relu("relu1", x);
  x = g.maxpool("pool1", x, 2, 2);
  x = g.conv2d("conv2", x, 16, 5, 1, 0, 1, true);
  x = g.relu("relu2", x);
  x = g.maxpool("pool2", x, 2, 2);
  x = g.flatten("flatten", x);
  x = g.linear("fc1", x, 120);
  x = g.relu("relu3", x);
  x = g.linear("fc2", x, 84);
  x = g.relu("relu4", x);
  g.linear("fc3", x, classes);
  return g;
}

// ResNet basic block: conv3x3-bn-relu-conv3x3-bn + shortcut, relu. When the shape changes, the
// shortcut is a 1x1 strided conv (+ batchnorm when `bn_shortcut`, as in ResNet-20 option B;
// a plain biased 1x1 conv as in MLPerf Tiny's ResNet-8).
int basic_block(Graph& g, const std::string& p, int x, int64_t in_ch, int64_t ch, int64_t stride,
                bool bn_shortcut) {
  int y = conv_bn(g, p + ".a", x, ch, 3, stride, 1, Op::ReLU);
  y = conv_bn(g, p + ".b", y, ch, 3, 1, 1, Op::Input /* no activation */);
  int sc = x;
  if (stride != 1 || in_ch != ch) {
    sc = g.conv2d(p + ".shortcut.conv", x, ch, 1, stride, 0, 1, !bn_shortcut);
    if (bn_shortcut) sc = g.batchnorm(p + ".shortcut.bn", sc);
  }
  int s = g.add(p + ".add", y, sc);
  return g.relu(p + ".relu", s);
}

Graph resnet(const std::string& name, const Shape& in, int64_t classes, int blocks_per_stage,
             bool bn_shortcut) {
  Graph g(name, in, classes);
  int x = conv_bn(g, "stem", g.input(), 16, 3, 1, 1, Op::ReLU);
  int64_t in_ch = 16;
  const int64_t widths[3] = {16, 32, 64};
  for (int s = 0; s < 3; ++s)
    for (int b = 0; b < blocks_per_stage; ++b) {
      int64_t stride = (s > 0 && b == 0) ? 2 : 1;
      x = basic_block(g, fmt::format("stage{}.block{}", s + 1, b + 1), x, in_ch, widths[s],
                      stride, bn_shortcut);
      in_ch = widths[s];
    }
  x = g.global_avgpool("gap", x);
  x = g.flatten("flatten", x);
  g.linear("fc", x, classes);
  return g;
}

// MobileNetV2-style: stem, inverted residual blocks (expand 1x1, depthwise 3x3, project 1x1),
// a 1x1 head conv, global average pooling, classifier. Sized for 28..32 pixel inputs.
Graph mobilenetv2(const Shape& in, int64_t classes) {
  Graph g("mobilenetv2", in, classes);
  int x = conv_bn(g, "stem", g.input(), 16, 3, 1, 1, Op::ReLU6);
  int64_t in_ch = 16;
  struct Stage {
    int64_t t, c, n, s;
  };
  const Stage stages[] = {{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 2, 2}, {6, 64, 2, 2}};
  int bi = 0;
  for (const Stage& st : stages)
    for (int64_t i = 0; i < st.n; ++i) {
      std::string p = fmt::format("block{}", ++bi);
      int64_t stride = i == 0 ? st.s : 1;
      int64_t hidden = in_ch * st.t;
      int y = x;
      if (st.t != 1) y = conv_bn(g, p + ".expand", y, hidden, 1, 1, 1, Op::ReLU6);
      y = conv_bn(g, p + ".dw", y, hidden, 3, stride, hidden, Op::ReLU6);
      y = conv_bn(g, p + ".project", y, st.c, 1, 1, 1, Op::Input /* linear bottleneck */);
      if (stride == 1 && in_ch == st.c) y = g.add(p + ".add", y, x);
      x = y;
      in_ch = st.c;
    }
  x = conv_bn(g, "head", x, 128, 1, 1, 1, Op::ReLU6);
  x = g.global_avgpool("gap", x);
  x = g.flatten("flatten", x);
  g.linear("fc", x, classes);
  return g;
}

// SqueezeNet's fire module: a 1x1 squeeze, then 1x1 and 3x3 expands concatenated.
int fire(Graph& g, const std::string& p, int x, int64_t squeeze, int64_t expand) {
  int s = g.relu(p + ".squeeze.relu", g.conv2d(p + ".squeeze", x, squeeze, 1, 1, 0, 1, true));
  int e1 = g.relu(p + ".expand1.relu", g.conv2d(p + ".expand1", s, expand, 1, 1, 0, 1, true));
  int e3 = g.relu(p + ".expand3.relu", g.conv2d(p + ".expand3", s, expand, 3, 1, 1, 1, true));
  return g.concat(p + ".concat", {e1, e3});
}

// Squeeze-excitation as in MobileNetV3: global pooling, 1x1 reduce, ReLU, 1x1 expand,
// hardsigmoid, the feature map scaled per channel.
int squeeze_excite(Graph& g, const std::string& p, int x, int64_t ch, int64_t reduced) {
  int s = g.global_avgpool(p + ".gap", x);
  s = g.relu(p + ".relu", g.conv2d(p + ".reduce", s, reduced, 1, 1, 0, 1, true));
  s = g.activation(p + ".gate", Op::HardSigmoid, g.conv2d(p + ".expand", s, ch, 1, 1, 0, 1, true));
  return g.mul(p + ".scale", x, s);
}

// A small SqueezeNet with squeeze-excitation (what "bring your own network" users hit: channel
// concat and SE): stem, fire + SE, pooling, fire + SE, 1x1 head, global pooling, classifier.
// Sized for 28..32 pixel inputs.
Graph squeezese(const Shape& in, int64_t classes) {
  Graph g("squeezese", in, classes);
  int x = conv_bn(g, "stem", g.input(), 16, 3, 1, 1, Op::ReLU);
  x = g.maxpool("pool1", x, 2, 2);
  x = squeeze_excite(g, "se1", fire(g, "fire1", x, 8, 16), 32, 8);
  x = g.maxpool("pool2", x, 2, 2);
  x = squeeze_excite(g, "se2", fire(g, "fire2", x, 16, 32), 64, 16);
  x = conv_bn(g, "head", x, 64, 1, 1, 1, Op::ReLU);
  x = g.global_avgpool("gap", x);
  g.linear("fc", g.flatten("flatten", x), classes);
  return g;
}

Graph mlp(const Shape& in, int64_t classes) {
  Graph g("mlp", in, classes);
  int x = g.flatten("flatten", g.input());
  x = g.relu("relu1", g.linear("fc1", x, 256));
  x = g.relu("relu2", g.linear("fc2", x, 128));
  g.linear("fc3", x, classes);
  return g;
}

using Builder = std::function<Graph(const Shape&, int64_t)>;
const std::map<std::string, Builder>& builders() {
  static const std::map<std::string, Builder> b = {
      {"lenet5", lenet5},
      {"resnet8", [](const Shape& s, int64_t c) { return resnet("resnet8", s, c, 1, false); }},
      {"resnet20", [](const Shape& s, int64_t c) { return resnet("resnet20", s, c, 3, true); }},
      {"mobilenetv2", mobilenetv2},
      {"mlp", mlp},
      {"squeezese", squeezese},
  };
  return b;
}

}  // namespace

std::vector<std::string> zoo_names() {
  std::vector<std::string> n;
  for (const auto& [k, v] : builders()) n.push_back(k);
  return n;
}

bool is_zoo_name(const std::string& name) { return builders().count(name) > 0; }

Graph make_zoo_model(const std::string& name, const Shape& input_shape, int64_t num_classes,
                     uint64_t seed) {
  auto it = builders().find(name);
  if (it == builders().end()) {
    std::string known;
    for (const auto& n : zoo_names()) known += (known.empty() ? "" : ", ") + n;
    fail("unknown model '{}' (expected a model file or one of: {})", name, known);
  }
  if (input_shape.size() != 3) fail("model '{}': input shape must be {{C, H, W}}", name);
  Graph g = it->second(input_shape, num_classes);
  try {
    g.infer_shapes();
  } catch (const Error& e) {
    fail("model '{}' does not fit input {}: {}", name, shape_str(input_shape), e.what());
  }
  g.init_params(seed);
  return g;
}

}  // namespace sq
