// The graph IR — the one description of "what the network is".
//
// A Graph is a list of nodes in topological order: nodes[0] is the input, the last node is the
// output (the logits). Shapes are per sample (no batch dimension): {C, H, W} for feature maps,
// {F} after flatten/linear. Parameters live in the nodes as sq::Tensor (float32, row-major) under
// fixed names: conv/linear "weight" (+ "bias"), batchnorm "weight", "bias", "running_mean",
// "running_var".
//
//   sq::Graph g("tiny", {1, 28, 28}, 10);
//   int x = g.conv2d("conv1", g.input(), 8, 3, 1, 1);   // 3×3, stride 1, padding 1
//   x = g.conv2d("conv2", x, 8, sq::Window2d::of(1, 7, 1, 1, 0, 3));  // 1×7, padding (0, 3)
//   x = g.relu("relu1", x);
//   x = g.global_avgpool("gap", x);
//   x = g.flatten("flat", x);
//   g.linear("fc", x, 10);
//   g.infer_shapes();          // validates and fills out_shape of every node
//   g.init_params(/*seed=*/1);  // He-normal init
//   int64_t macs = g.total_macs();
//
// The layers that receive a bitwidth are the weight layers (conv2d and linear).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "sigmaquant/tensor.h"

namespace sq {

enum class Op {
  Input,
  Conv2d,
  Linear,
  BatchNorm,
  ReLU,
  ReLU6,
  Add,
  MaxPool,
  AvgPool,
  GlobalAvgPool,
  Flatten,
  // Element-wise activations that do not commute with quantization: their input and output are
  // quantization points (qmodel.h) and the integer engine maps codes to codes by a 256-entry
  // table, as TFLite Micro does for int8 (activation_value() is the function).
  Sigmoid,      // 1 / (1 + e^-x)
  HardSigmoid,  // clamp(x / 6 + 1/2, 0, 1) (PyTorch's hardsigmoid)
  HardSwish,    // x · hardsigmoid(x)
  SiLU,         // x · sigmoid(x) (swish)
  LeakyReLU,    // x >= 0 ? x : alpha · x
  // Multi-input ops whose inputs and output are quantization points (qmodel.h).
  Concat,  // along the channels (dim 0 of the per-sample shape): Inception, DenseNet, SqueezeNet
  Mul,     // x · gate, gate of x's shape or one value per channel ({C, 1, 1} or {C}): squeeze-
           // excitation's rescale of a feature map by its sigmoid / hardsigmoid gate
  // ShuffleNet's channel shuffle (`groups`): the channels viewed as [groups][C / groups],
  // transposed; output channel j·groups + i is input channel i·(C / groups) + j. Its input is a
  // quantization point; the engine permutes codes.
  ChannelShuffle,
  // The contiguous channel range [begin, end) of a C×H×W (or flat) tensor, step 1: ShuffleNetV2's
  // x.chunk(2, dim=1) (ONNX Slice / Split on axis 1). Its output holds its input's values: the
  // engine reads the input's codes in place (no copy, no requantization).
  ChannelSlice,
};

const char* op_name(Op op);                 // "conv2d", "linear", ...
Op op_from_name(const std::string& name);   // throws sq::Error on an unknown name
// Sigmoid, HardSigmoid, HardSwish, SiLU, LeakyReLU: the table-driven activations above.
bool is_lut_activation(Op op);
// The function of a table-driven activation node at x (double precision).
double activation_value(Op op, double alpha, double x);

// The sliding window of a conv2d or a pooling node over H and W. Output pixel (oy, ox) reads input
// row oy·stride_h − pad_top + ky·dilation_h for ky < kernel_h, and column
// ox·stride_w − pad_left + kx·dilation_w for kx < kernel_w; rows/columns outside the input are the
// padding. Padding may differ per side (ONNX's pads [top, left, bottom, right]); the output size
// per axis is floor((in + pad_before + pad_after − dilation·(kernel − 1) − 1) / stride) + 1.
// Window2d::square(k, s, p) is the k×k, stride s, padding p form every zoo model uses.
struct Window2d {
  int64_t kernel_h = 0, kernel_w = 0;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t dilation_h = 1, dilation_w = 1;

  static Window2d square(int64_t kernel, int64_t stride, int64_t padding) {
    return {kernel, kernel, stride, stride, padding, padding, padding, padding, 1, 1};
  }
  // Per-axis form: kernel (kh, kw), stride (sh, sw), padding (ph, pw) on both sides of each axis,
  // dilation (dh, dw).
  static Window2d of(int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                     int64_t dh = 1, int64_t dw = 1) {
    return {kh, kw, sh, sw, ph, pw, ph, pw, dh, dw};
  }
  // k×k, equal strides, the same padding on all four sides, no dilation (the form .sqg files and
  // the C runtime held before non-square windows).
  bool is_square() const {
    return kernel_h == kernel_w && stride_h == stride_w && pad_top == pad_left &&
           pad_top == pad_bottom && pad_top == pad_right && dilation_h == 1 && dilation_w == 1;
  }
  int64_t taps() const { return kernel_h * kernel_w; }
  // Rows (columns) one window spans in the padded input: dilation·(kernel − 1) + 1.
  int64_t extent_h() const { return dilation_h * (kernel_h - 1) + 1; }
  int64_t extent_w() const { return dilation_w * (kernel_w - 1) + 1; }
  // The output size (floor); 0 when the window does not fit the padded input.
  int64_t out_h(int64_t in_h) const {
    return out_len(in_h + pad_top + pad_bottom, extent_h(), stride_h);
  }
  int64_t out_w(int64_t in_w) const {
    return out_len(in_w + pad_left + pad_right, extent_w(), stride_w);
  }
  bool operator==(const Window2d& o) const {
    return kernel_h == o.kernel_h && kernel_w == o.kernel_w && stride_h == o.stride_h &&
           stride_w == o.stride_w && pad_top == o.pad_top && pad_left == o.pad_left &&
           pad_bottom == o.pad_bottom && pad_right == o.pad_right && dilation_h == o.dilation_h &&
           dilation_w == o.dilation_w;
  }
  bool operator!=(const Window2d& o) const { return !(*this == o); }

 private:
  static int64_t out_len(int64_t padded, int64_t extent, int64_t stride) {
    return padded < extent || stride <= 0 ? 0 : (padded - extent) / stride + 1;
  }
};
// "3x3 s1 p1", "1x7 s(2,1) p(0,3)", "3x3 s1 p[0,1,1,0] d2" — for messages.
std::string window_str(const Window2d& w);

struct Node {
  std::string name;
  Op op = Op::Input;
  std::vector<int> inputs;  // indices of earlier nodes (concat: two or more; add, mul: two)

  // Attributes. conv2d: out_channels, window, groups, has_bias.
  // channel_shuffle: groups. channel_slice: begin, end.
  // linear: out_channels (= out features), has_bias. pools: window (no dilation).
  // batchnorm: eps.
  int64_t out_channels = 0;
  Window2d window;
  int64_t groups = 1;
  bool has_bias = false;
  double eps = 1e-5;
  double alpha = 0.01;  // leaky_relu: the slope for x < 0
  // maxpool: output size rounded up (PyTorch's / ONNX's ceil_mode): the last window may start
  // inside the input and reach past it (and past the padding); its missing taps are ignored.
  bool ceil_mode = false;
  // channel_slice: output channel c is input channel begin + c, for c < end − begin
  // (0 <= begin < end <= the input's channels).
  int64_t begin = 0, end = 0;

  std::map<std::string, Tensor> params;
  Shape out_shape;  // filled by Graph::infer_shapes()
};

// Per-layer counts, for tables and cost models.
struct LayerStats {
  int64_t params = 0;  // trainable parameters (batchnorm: weight + bias)
  int64_t macs = 0;    // multiply-accumulates per sample
};

class Graph {
 public:
  Graph() = default;
  Graph(std::string name, Shape input_shape, int64_t num_classes);

  std::string name;
  Shape input_shape;  // {C, H, W}
  int64_t num_classes = 0;
  // Input normalization the model was trained with: x' = (x - mean[c]) / std[c], x in [0, 1].
  std::vector<float> input_mean, input_std;
  std::vector<Node> nodes;

  // ---- builders: each returns the new node's index ----
  int input();  // adds the input node (once; returns 0 afterwards)
  // A k×k conv, stride s, padding p on every side.
  int conv2d(const std::string& name, int in, int64_t out_channels, int64_t kernel, int64_t stride,
             int64_t padding, int64_t groups = 1, bool bias = false);
  // Any window: non-square kernels (Inception's 1×7), per-axis strides and padding, dilation.
  int conv2d(const std::string& name, int in, int64_t out_channels, const Window2d& window,
             int64_t groups = 1, bool bias = false);
  int linear(const std::string& name, int in, int64_t out_features, bool bias = true);
  int batchnorm(const std::string& name, int in, double eps = 1e-5);
  int relu(const std::string& name, int in);
  int relu6(const std::string& name, int in);
  int add(const std::string& name, int a, int b);
  int maxpool(const std::string& name, int in, int64_t kernel, int64_t stride, int64_t padding = 0,
              bool ceil_mode = false);
  int avgpool(const std::string& name, int in, int64_t kernel, int64_t stride, int64_t padding = 0);
  // Pools over any window without dilation (refused by infer_shapes).
  int maxpool(const std::string& name, int in, const Window2d& window, bool ceil_mode = false);
  int avgpool(const std::string& name, int in, const Window2d& window);
  int global_avgpool(const std::string& name, int in);
  int flatten(const std::string& name, int in);
  // One of the table-driven activations (is_lut_activation); alpha only for LeakyReLU.
  int activation(const std::string& name, Op op, int in, double alpha = 0.01);
  // Channel concatenation of two or more C×H×W tensors of equal H, W (or of flat tensors).
  int concat(const std::string& name, const std::vector<int>& ins);
  // x · gate: gate has x's shape, or {C, 1, 1} / {C} with C = x's channels (broadcast per channel).
  int mul(const std::string& name, int x, int gate);
  int channel_shuffle(const std::string& name, int in, int64_t groups);
  // Channels [begin, end) of a C×H×W or flat tensor.
  int channel_slice(const std::string& name, int in, int64_t begin, int64_t end);

  // Validates the structure and fills every node's out_shape. Throws sq::Error naming the node.
  void infer_shapes();
  // The parameter shapes a node must have, given its attributes and its input's shape.
  std::map<std::string, Shape> expected_param_shapes(int node) const;
  // Allocates missing parameters and initialises all of them (He-normal conv/linear, BN =
  // identity).
  void init_params(uint64_t seed);
  // Throws sq::Error unless every node holds exactly its expected parameters with their shapes.
  void check_params(const std::string& where) const;

  LayerStats layer_stats(int node) const;
  int64_t total_params() const;
  int64_t total_macs() const;

  int index_of(const std::string& node_name) const;  // throws sq::Error if absent
  const Node& node(const std::string& node_name) const { return nodes[index_of(node_name)]; }
  std::vector<int> weight_layers() const;  // conv2d and linear nodes, in order
  int output() const { return static_cast<int>(nodes.size()) - 1; }

 private:
  int push(Node n);
};

bool is_weight_layer(const Node& n);
// Population standard deviation of a node's "weight" tensor (0 if it has none).
double weight_std(const Node& n);

}  // namespace sq
