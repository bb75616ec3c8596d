// The integer engine (torch-free): bit-packed weights and integer-only kernels over uint8
// activations. Arithmetic is the one of integerize.h / docs/quantization.md ("Integer arithmetic");
// layouts, kernels and dispatch are described in docs/engine.md.
//
//   sq::IntModel im = sq::integerize(qm);
//   const sq::IntLayer& L = im.layers[0];
//   sq::ConvShape s{3, 32, 32, 16, 3, 1, 1, 1};  // in C,H,W; out C; kernel, stride, pad, groups
//   (any window: sq::ConvShape{3, 32, 32, 16, sq::Window2d::of(1, 7, 1, 1, 0, 3), 1})
//   std::vector<uint8_t> y(s.out_size());
//   sq::conv2d_u8_ref(s, L, x.data(), y.data());        // the oracle: obviously correct, slow
//   sq::PreparedConv2d conv = sq::prepare_conv2d_u8(s, L);  // picks a kernel, packs (once)
//   conv.run(x.data(), y.data());                       // no allocation; AVX2/VNNI if present
//
// Tensors are one sample, channel-major (CHW) like the IR. Activations are unsigned affine
// integers (value = scale · (q − zero_point), q in [0, 2^bits − 1], bits <= 8) stored in uint8.
// Conv weights are [out][in/groups][kh][kw] and linear weights [out][in], as in the float graph.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sigmaquant/graph.h"
#include "sigmaquant/integerize.h"

namespace sq {

// ---------------------------------------------------------------------------------------------
// Bit packing (src/engine/pack.cpp)
//
// A packed buffer is a little-endian bit stream: element i occupies stream bits
// [i·bits, (i+1)·bits), and stream bit j is bit (j mod 8) of byte j / 8 (least significant bit
// first), so an element may straddle two bytes (bits 3, 5, 6, 7). Code words:
//   bits >= 2: the low `bits` bits of the two's complement value, range [−2^(bits−1), 2^(bits−1)−1]
//   bits == 1: a sign bit, 0 → +1 and 1 → −1 (the binary quantizer's {−1, +1}, quant.h)
//   bits == 0: nothing is stored; every element unpacks to 0 (a pruned channel)
// The unused high bits of the last byte are zero.

// Bytes needed for n elements at `bits`: ceil(n · bits / 8).
size_t packed_bytes(size_t n, int bits);
// Packs n values into out[0 .. packed_bytes(n, bits)). Throws sq::Error naming the index and the
// range if a value does not fit (or bits is not in 0..8).
void pack_bits(const int32_t* values, size_t n, int bits, uint8_t* out);
std::vector<uint8_t> pack_bits(const std::vector<int32_t>& values, int bits);
void unpack_bits(const uint8_t* packed, size_t n, int bits, int32_t* out);
std::vector<int32_t> unpack_bits(const std::vector<uint8_t>& packed, size_t n, int bits);

// A weight matrix [rows][cols] whose row r (an output channel) is packed at its own width
// row_bits[r]; each row starts on a byte boundary (offset[r]), so a row is unpacked on its own.
struct PackedRows {
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> row_bits;
  std::vector<uint64_t> offset;  // rows + 1 entries; offset[rows] = data.size()
  std::vector<uint8_t> data;
};
PackedRows pack_rows(const std::vector<int32_t>& w, int64_t rows, int64_t cols,
                     const std::vector<int>& row_bits);
std::vector<int32_t> unpack_rows(const PackedRows& p);

// ---------------------------------------------------------------------------------------------
// Shapes and op parameters

// The window is the IR's (graph.h): kernel (kh, kw), stride, padding per side, dilation.
struct ConvShape {
  int64_t in_c = 0, in_h = 0, in_w = 0;
  int64_t out_c = 0;
  Window2d window = Window2d::square(1, 1, 0);
  int64_t groups = 1;

  ConvShape() = default;
  // A k×k kernel, stride s, padding p on every side.
  ConvShape(int64_t in_c_, int64_t in_h_, int64_t in_w_, int64_t out_c_, int64_t kernel,
            int64_t stride, int64_t padding, int64_t groups_)
      : ConvShape(in_c_, in_h_, in_w_, out_c_, Window2d::square(kernel, stride, padding), groups_) {
  }
  ConvShape(int64_t in_c_, int64_t in_h_, int64_t in_w_, int64_t out_c_, const Window2d& w,
            int64_t groups_)
      : in_c(in_c_), in_h(in_h_), in_w(in_w_), out_c(out_c_), window(w), groups(groups_) {}

  int64_t out_h() const { return window.out_h(in_h); }
  int64_t out_w() const { return window.out_w(in_w); }
  int64_t in_size() const { return in_c * in_h * in_w; }
  int64_t out_size() const { return out_c * out_h() * out_w(); }
  int64_t taps() const { return (in_c / groups) * window.taps(); }  // per output
  int64_t weights() const { return out_c * taps(); }
};
// The conv shape of weight layer `node` of g (a linear is a 1×1 conv over a 1×1 image of its
// flattened input). Throws sq::Error if a conv does not read a C,H,W tensor.
ConvShape conv_shape_of(const Graph& g, int node);
// Throws sq::Error unless the shape is valid (positive sizes, strides and dilations, padding >= 0,
// channels divisible by groups, the dilated kernel fits the padded input) and, with a layer, the
// layer's tensors have the shape's sizes.
void check_conv(const ConvShape& s, const IntLayer* L = nullptr);

// A pooling window: the IR's Window2d without dilation (the IR refuses dilated pools).
struct PoolShape {
  int64_t c = 0, in_h = 0, in_w = 0;
  Window2d window = Window2d::square(1, 1, 0);
  // Max pooling only: the output size rounded up (PyTorch's ceil_mode; the last window must
  // start inside the input or the leading padding). Taps outside the input are skipped.
  bool ceil = false;

  PoolShape() = default;
  // A k×k window, stride s, padding p on every side.
  PoolShape(int64_t c_, int64_t in_h_, int64_t in_w_, int64_t kernel, int64_t stride,
            int64_t padding)
      : PoolShape(c_, in_h_, in_w_, Window2d::square(kernel, stride, padding)) {}
  PoolShape(int64_t c_, int64_t in_h_, int64_t in_w_, const Window2d& w, bool ceil_ = false)
      : c(c_), in_h(in_h_), in_w(in_w_), window(w), ceil(ceil_) {}

  int64_t out_h() const {
    return out_size(in_h, window.kernel_h, window.stride_h, window.pad_top, window.pad_bottom);
  }
  int64_t out_w() const {
    return out_size(in_w, window.kernel_w, window.stride_w, window.pad_left, window.pad_right);
  }
  int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t before, int64_t after) const {
    const int64_t padded = in + before + after;
    if (padded < k || s <= 0) return 0;
    int64_t o = (padded - k) / s + 1;
    if (ceil) {
      o = (padded - k + s - 1) / s + 1;
      if ((o - 1) * s >= in + before) --o;
    }
    return o;
  }
};

// Residual add of two operands, computed exactly as the simulation computes it in float32 (so the
// engine, the C export and the simulation give the same codes, ties included):
//   y = fl(fl((a − zp_a)·s_a) + fl((b − zp_b)·s_b))
//   out = clamp(nearbyint(fl(y / s_out)) + zp_out, lo, hi)
// in integers: every fl((q − zp)·s) is an integer multiple of one power of two 2^e, so the sum is
// exact in int64 (ta[a] + tb[b], units of 2^e); the output code only grows with that sum, so it is
// lo plus the number of thresholds thr[k] (k = lo+1 … hi: the least sum whose simulated code is at
// least k, found at make_add_params by bisection on the float formula) the sum reaches.
// Fallback (ta empty), when the two scales are so far apart (about 2^28) that the sum does not fit
// in int64: each operand rescaled to a 2^−16-LSB fixed point, rounded half up once —
//   t = requantize((a − zp_a) · 2^kShift, M_a) + requantize((b − zp_b) · 2^kShift, M_b)
//   out = clamp(((t + 2^(kShift−1)) >> kShift) + zp_out, lo, hi)
// with M_a = s_a / s_out, M_b = s_b / s_out (within one code of the exact form).
struct AddParams {
  static constexpr int kShift = 16;
  int32_t zp_a = 0, zp_b = 0, zp_out = 0, lo = 0, hi = 255;
  float s_a = 1, s_b = 1, s_out = 1;  // the scales the float formula above uses
  Requant m_a, m_b;
  std::vector<int64_t> ta, tb;  // 256 each (per code), or empty: the fixed-point fallback
  std::vector<int64_t> thr;     // 257: thr[k] for k = lo+1 … hi (others unused)
  bool exact() const { return !ta.empty(); }
  // The exact form's output code for an operand sum S = ta[a] + tb[b]: binary lifting over the
  // thresholds (8 steps).
  int32_t code_of_sum(int64_t s) const {
    int32_t q = lo;
    for (int32_t step = 128; step > 0; step >>= 1)
      if (q + step <= hi && s >= thr[static_cast<size_t>(q + step)]) q += step;
    return q;
  }
};
// lo/hi: the output range (0, qmax) or the fused ReLU/ReLU6 clamp.
AddParams make_add_params(float s_a, int32_t zp_a, float s_b, int32_t zp_b, float s_out,
                          int32_t zp_out, int32_t lo, int32_t hi);

// Element-wise product of two zero-point-centred operands, requantized to the output point
// (squeeze-excitation's x · gate):
//   y = clamp(requantize((a − zp_a) · (b − zp_b), M) + zp_out, lo, hi),   M = s_a · s_b / s_out
// b is broadcast: element k of a meets element k / per of b (per = 1: same shape; per = H·W: one
// gate value per channel).
struct MulParams {
  int32_t zp_a = 0, zp_b = 0, zp_out = 0, lo = 0, hi = 255;
  int64_t per = 1;
  Requant m;
};
MulParams make_mul_params(float s_a, int32_t zp_a, float s_b, int32_t zp_b, float s_out,
                          int32_t zp_out, int32_t lo, int32_t hi, int64_t per);

// Average pooling (count_include_pad = true: the padding counts as real zeros, i.e. zp_in) and
// global average pooling, with a rescale to the output point folded in:
//   y = clamp(requantize(Σ_window (x − zp_in), M) + zp_out, lo, hi),  M = s_in / (s_out · window)
// requantize rounds half up, so the mean is rounded half up (towards +∞), never truncated.
struct AvgPoolParams {
  int32_t zp_in = 0, zp_out = 0, lo = 0, hi = 255;
  Requant m;
};
AvgPoolParams make_avgpool_params(float s_in, int32_t zp_in, float s_out, int32_t zp_out,
                                  int64_t window, int32_t lo, int32_t hi);

// ---------------------------------------------------------------------------------------------
// Reference kernels (src/engine/ref_kernels.cpp): the test oracle. One sample, int64 accumulators,
// written for clarity. Conv/linear read x at L.in_zero_point (padding is that zero point, i.e. the
// real value 0) and write y = L.output(c, acc) (requantized, zero point, fused clamp); the _f32
// variants are for a layer with a float output (L.out_node < 0, the logits):
// y = (acc − bias[c]) · s_x · s_w[c] + bias_float[c] (the float bias exactly; y = acc · s_x ·
// s_w[c] when the layer has no bias_float).

void conv2d_u8_ref(const ConvShape& s, const IntLayer& L, const uint8_t* x, uint8_t* y);
void conv2d_f32_ref(const ConvShape& s, const IntLayer& L, const uint8_t* x, float* y);
// The raw accumulators acc[c][pixel] = bias[c] + Σ w · (x − zp_x), [out_c][out_h·out_w].
void conv2d_acc_ref(const ConvShape& s, const IntLayer& L, const uint8_t* x, int64_t* acc);
void linear_u8_ref(int64_t in_features, int64_t out_features, const IntLayer& L, const uint8_t* x,
                   uint8_t* y);
void linear_f32_ref(int64_t in_features, int64_t out_features, const IntLayer& L, const uint8_t* x,
                    float* y);
void add_u8_ref(const AddParams& p, const uint8_t* a, const uint8_t* b, int64_t n, uint8_t* y);
// n elements of a; b holds n / p.per.
void mul_u8_ref(const MulParams& p, const uint8_t* a, const uint8_t* b, int64_t n, uint8_t* y);
// Channel shuffle of c planes of `plane` codes: output channel j·groups + i is input channel
// i·(c / groups) + j.
void channel_shuffle_u8_ref(int64_t c, int64_t groups, int64_t plane, const uint8_t* x, uint8_t* y);
// Max pooling: padded positions are ignored (−∞), as in PyTorch; quantization commutes with max.
void maxpool_u8_ref(const PoolShape& s, const uint8_t* x, uint8_t* y);
void avgpool_u8_ref(const PoolShape& s, const AvgPoolParams& p, const uint8_t* x, uint8_t* y);
// [c][h·w] → [c]
void global_avgpool_u8_ref(int64_t c, int64_t hw, const AvgPoolParams& p, const uint8_t* x,
                           uint8_t* y);
// ReLU is clamp(x, zp, 255) and ReLU6 clamp(x, zp, min(qmax, round(6/s) + zp)), in place.
void clamp_u8_ref(uint8_t* x, int64_t n, int32_t lo, int32_t hi);

// ---------------------------------------------------------------------------------------------
// Optimized conv2d / linear, groups = 1 (src/engine/conv_fast.cpp: prepare, staging, epilogues;
// the micro-kernels in src/engine/kernel_<isa>.cpp, listed in src/engine/kernel_table.cpp).
// Prepare picks a micro-kernel from the table, packs the weights into its layout, folds the input
// zero point into the bias and allocates the scratch (a zp_x-bordered HWC copy of the input, a
// zp_x-bordered plane for one-channel inputs, or im2col rows); run() allocates nothing and equals
// conv2d_u8_ref exactly: int32 dot products of raw uint8 x and the integer weights, plus
// bias − zp_x·Σw in int64, then the same requantization.
// A PreparedConv2d owns its scratch: one run at a time per object.

// Reference: for the executors only (GraphExecutor): every step on the reference kernels, the
// oracle the optimized plan is tested against. prepare_conv2d_u8 rejects it. The other values
// name a tier of the kernel table (a kernel's `isa`); Auto is best_isa().
enum class Isa { Auto, Portable, Avx2, AvxVnni, Avx512Vnni, Reference };

// The kernels' packed weights: per tile of 16 output channels, one block per group of consecutive
// taps, channel-major, so that a 32-bit broadcast of one pixel's tap group meets w[o][group] in
// 32-bit lane o. A block is two 256-bit vectors (channels 0-7, 8-15) or one 512-bit vector.
struct Pair16Block {
  int16_t w[16][2];  // int16 layout (avx2_madd16, portable): 2 taps
};
struct Quad8Block {
  int8_t w[16][4];  // int8 layout (maddubs, dpbusd kernels): 4 taps
};
static_assert(sizeof(Pair16Block) == 64 && sizeof(Quad8Block) == 64,
              "a block is two 256-bit vectors");
enum class WeightLayout { Pair16, Quad8 };

// The executor's input quantizer (GraphExecutor::run) on n floats of one channel, as the
// simulation: q = clamp(nearbyint(((x − mean) / std) / scale) + zero_point, 0, qmax), in float.
// vector: 8 at a time where the CPU has AVX2 (the same IEEE operations: the same codes).
void quantize_input_u8(const float* x, int64_t n, float mean, float std, float scale,
                       int32_t zero_point, int32_t qmax, uint8_t* q, bool vector = true);
bool cpu_has_avx2();
bool cpu_has_avxvnni();         // VEX-encoded vpdpbusd (ymm)
bool cpu_has_avx512vnni();      // AVX-512 F, BW, VL and VNNI, with the OS saving the zmm state
bool cpu_has_avx512vbmi();      // and VBMI (vpermi2b: the engine's 256-entry table lookups)
Isa best_isa();                 // what Auto resolves to on this CPU
const char* isa_name(Isa isa);  // "portable", "avx2", "avxvnni", "avx512vnni", ...
Isa parse_isa(const std::string& name);  // isa_name's inverse; throws naming the choices

// One micro-kernel computes one tile, acc[p][o] = Σ_j Σ_e w[j][o][e] · x_p[j][e] for mr = 16
// output channels o and nr pixels p, where pixel p's tap group j (kr taps) starts at
// src + pix[p] + grp[j] (elements of the layout's type) and w holds ng blocks. `flush`: the tap
// groups an int16-accumulating kernel may sum before widening to int32 (others ignore it).
// acc is [nr][16] int32.
using ConvTileFn = void (*)(const void* w, const void* src, const int64_t* pix, const int64_t* grp,
                            int64_t ng, int64_t flush, int32_t* acc);

// A kernel's own int32 epilogue (ConvMicroKernel::epilogue): the tile's nr pixels at once,
// for the tiles conv_fast.cpp's int32 epilogue may take (every channel 32 <= shift <= 62 and
// |bias'| + K·255·128 < 2^31), with the same arithmetic:
//   y = clamp(((bias + acc) · multiplier + 2^(shift−1)) >> shift + zp, lo, hi).
// acc[p][16] for pixels p < np <= nr; channel o < noc writes its np codes to y + ch[o]·pix.
// Per channel bias and (shift − 32); per 16 channels the multipliers and rounding terms as int64,
// the 8 even channels then the 8 odd ones.
struct EpilogueQ32 {
  const int32_t* bias;
  const int32_t* shift;
  const int64_t* mult;
  const int64_t* round;
  int32_t zp, lo, hi;
};
using ConvEpilogueFn = void (*)(const int32_t* acc, const EpilogueQ32& q, const int64_t* ch,
                                int64_t noc, int64_t np, int64_t pix, uint8_t* y);

// An entry of the micro-kernel table (XNNPACK's gemm configs, ruy's paths): what a kernel needs
// and computes. Prepare considers the kernels of the requested tier that this CPU runs and that
// support the layer (`supports`: exact for these weights and activations), and takes the one of
// highest `rank` (set from sq_bench's figures on the resnet20 shapes).
struct ConvMicroKernel {
  const char* name;   // "<isa>_<instruction>[_variant]", e.g. "avx2_maddubs"
  Isa isa;            // its tier
  bool (*cpu_has)();  // whether this CPU runs it
  int mr, nr, kr;     // tile: 16 output channels × nr pixels; kr taps a group (the block's)
  WeightLayout layout;
  // Exact (and within the kernel's preconditions) for weights |w| <= w_max and activation codes
  // 0..x_max.
  bool (*supports)(int32_t w_max, int32_t x_max);
  // int16-accumulating kernels: the tap groups between widenings for these bounds (else 0).
  int64_t (*flush)(int32_t w_max, int32_t x_max);
  int rank;
  ConvTileFn tile;
  // Its own int32 epilogue, or nullptr: conv_fast.cpp's (AVX2, 6 pixels at a time, or scalar).
  ConvEpilogueFn epilogue = nullptr;
  // Its short tiles, or nullptr: tail[np] computes pixels 0..np-1 of a tile alone (1 <= np < nr;
  // acc rows past np are left as they are), for a layer's last tile when its pixels are no
  // multiple of nr. Without them the last tile computes all nr pixels (the padding repeats
  // pixel 0's taps).
  const ConvTileFn* tail = nullptr;
};
// The table, every kernel compiled in (whether or not this CPU runs it), in tier order.
const std::vector<const ConvMicroKernel*>& conv_kernels();
// By name; throws sq::Error listing the names if there is none.
const ConvMicroKernel& conv_kernel(const std::string& name);

class PreparedConv2d {
 public:
  static constexpr int kOcTile = 16;      // every kernel's mr
  static constexpr int kMaxPixTile = 12;  // the largest nr in the table
  // The longest reduction (in_c·k·k) whose int32 dot products cannot overflow (|w·x| <= 128·255,
  // with margin): prepare refuses longer ones.
  static constexpr int64_t kMaxTaps = 2147483647 / (255 * 128);

  const ConvShape& shape() const { return s_; }
  const char* kernel_name() const { return kernel_->name; }
  const ConvMicroKernel& kernel() const { return *kernel_; }
  // An estimate of one run's input staging in µops, for the channel groups' cost model
  // (conv_groups.cpp): elements written × 1/2 by the uint8 transposes, × 3 element by element
  // (int16 layout, rows under 8 pixels, channels past the last 16), × 1/8 for the plane's row
  // copies, × 1 for im2col (factors set from resnet20's layers, sq_bench LayerPaired).
  double staging_uops() const;
  void run(const uint8_t* x, uint8_t* y);
  // The accumulators instead of codes: acc[c·pix + p] = bias[c] + Σ w · (x − zp_x),
  // conv2d_acc_ref's integers, per output channel c (its plane of the layer: out_ch) and output
  // pixel p. Layers whose output is no quantization point (conv → ReLU → average pooling, the float
  // logits) are prepared for this alone (prepare_conv2d_acc); run() on them throws.
  void run_acc(const uint8_t* x, int64_t* acc);
  // Bytes of the packed weights (shared by copies) and of the scratch each copy owns.
  size_t weight_bytes() const;
  size_t scratch_bytes() const;

 private:
  friend PreparedConv2d prepare_conv2d_u8(const ConvShape&, const IntLayer&, const ConvMicroKernel&,
                                          int);
  friend PreparedConv2d prepare_conv2d_u8(const ConvShape&, const IntLayer&, const ConvMicroKernel&,
                                          int, const std::vector<int64_t>&);
  friend PreparedConv2d prepare_conv2d_acc(const ConvShape&, const IntLayer&, Isa, int);
  enum class Stage { Hwc, Plane, Im2col };
  // prepare_conv2d_u8 and prepare_conv2d_acc: everything but the epilogue.
  static PreparedConv2d prepare_core(const ConvShape& s, const IntLayer& L,
                                     const ConvMicroKernel& k, int in_bits);
  // Stages x and runs every tile; after each, epi(tile index, first channel, channels, first
  // pixel) reads acc_.
  template <typename Epi>
  void run_tiles(const uint8_t* x, Epi&& epi);
  bool acc_only_ = false;  // prepared by prepare_conv2d_acc: no epilogue
  // prepare_conv2d_u8's steps, in order.
  void plan_staging();
  void pack_weights(const IntLayer& L);
  void plan_epilogue(const IntLayer& L);
  template <typename T>
  void stage_input(const uint8_t* x, T* scratch) const;
  ConvShape s_;
  const ConvMicroKernel* kernel_ = nullptr;
  int64_t k_ = 0, kp_ = 0;  // reduction length (in_c·k·k), and as the kernels run it (padded)
  int64_t oc_pad_ = 0, pix_ = 0, pix_pad_ = 0, flush_ = 0;
  int32_t zp_x_ = 0;
  // The packed weights, shared read-only by copies (one of the two layouts; the other empty):
  std::shared_ptr<const std::vector<Pair16Block>> w16_;  // [oc_pad/16][kp/2] blocks
  std::shared_ptr<const std::vector<Quad8Block>> w8_;    // [oc_pad/16][kp/4] blocks
  std::vector<int64_t> bias_;     // bias − zp_x · Σ_k w, per output channel
  std::vector<Requant> requant_;
  int32_t zp_out_ = 0, lo_ = 0, hi_ = 255;
  std::vector<int16_t> col16_;  // staged input (one of the two, matching the weight layout)
  std::vector<uint8_t> col8_;
  std::vector<int32_t> acc_;  // [nr][kOcTile] dot products of one tile
  // The vectorized epilogue's constants, per channel padded to oc_pad: bias (= bias_), multiplier,
  // right shift and its rounding term 2^(shift−1), as int64 lanes; per tile whether every channel
  // has 1 <= shift <= 62 (else that tile takes the scalar epilogue).
  std::vector<int64_t> ep_bias_, ep_mult_, ep_shift_, ep_round_;
  std::vector<uint8_t> ep_vector_ok_;
  // How the input is staged (docs/engine.md, "Run"): Hwc (direct: a zp_x-bordered HWC copy,
  // taps (ky, kx, i), channels padded to cp; with `sub_` = stride for a 1×1 unpadded conv, only
  // the pixels it reads), Plane (one input channel: the zp_x-bordered plane, a tap group = kr
  // consecutive kx of one row, the taps past k against zero weights), Im2col.
  Stage stage_ = Stage::Im2col;
  int64_t cp_ = 0, sub_ = 1;
  std::vector<int64_t> pix_off_, grp_off_;  // [pix_pad], [kp / kr], in scratch elements
  // The int32 epilogue (tiles whose channels all have 32 <= shift <= 62 and |bias'| + K·255·128
  // < 2^31): bias as int32, (shift − 32), and per 8 channels (per 16 for a kernel's own
  // epilogue, EpilogueQ32) the multipliers and rounding terms as int64 lanes, even channels then
  // odd ones.
  std::vector<int32_t> q_bias_, q_shift_;
  std::vector<int64_t> q_mult_, q_round_;
  std::vector<uint8_t> q_ok_;
  // Per prepared output channel, the channel (plane) of y it writes: the identity for a whole
  // layer, the subset's channels for one channel group of a layer (prepare_conv2d_grouped).
  std::vector<int64_t> out_ch_;
};
// `in_bits`: the activations' width (codes 0..2^in_bits − 1, the input zero point among them);
// run() requires its input within that range (the executor's codes are). Kernels that sum in
// int16 are exact only under that bound.
// Throws sq::Error if groups != 1, the layer has a float output, a weight exceeds 8 bits, the
// input zero point exceeds the range, or the reduction is so long that int32 dot products could
// overflow (in_c·k·k > 2^31 / (255·128)). Naming an ISA the CPU lacks throws too; Auto picks the
// best one (best_isa()).
PreparedConv2d prepare_conv2d_u8(const ConvShape& s, const IntLayer& L, Isa isa = Isa::Auto,
                                 int in_bits = 8);
// For run_acc alone: the layer may have a float output (no requantization); groups = 1, weights
// of at most 8 bits, the Isa form's kernel choice and checks otherwise.
PreparedConv2d prepare_conv2d_acc(const ConvShape& s, const IntLayer& L, Isa isa, int in_bits);
// Linear = a 1×1 convolution over a 1×1 image.
PreparedConv2d prepare_linear_u8(int64_t in_features, int64_t out_features, const IntLayer& L,
                                 Isa isa = Isa::Auto, int in_bits = 8);
// One kernel of the table instead of the tier's choice, for tests and benchmarks: every kernel the
// CPU runs can be checked, not only the one the dispatch would pick. Throws as the Isa form does,
// and if the CPU lacks the kernel's ISA or the kernel does not support the layer's weights at
// in_bits (`supports`).
PreparedConv2d prepare_conv2d_u8(const ConvShape& s, const IntLayer& L, const ConvMicroKernel& k,
                                 int in_bits = 8);
// A subset of the layer's output channels on one kernel: computes channels[o] of L (o = 0 ..
// channels.size() − 1) and writes it to channel channels[o] of y (y + channels[o]·out_h·out_w),
// leaving y's other channels as they are. Throws as above, and unless channels holds 1..out_c
// distinct channels of the layer.
PreparedConv2d prepare_conv2d_u8(const ConvShape& s, const IntLayer& L, const ConvMicroKernel& k,
                                 int in_bits, const std::vector<int64_t>& channels);

// A conv/linear layer (groups = 1) run as channel groups (src/engine/conv_groups.cpp): with
// per-channel weight bits, one wide channel no longer puts the whole layer on the kernel its
// widest weights need. Prepare sorts the output channels by their largest |w|, cuts them into
// groups where a cheaper kernel pays (cost: tiles × the kernel's multiplier µops per MAC, plus
// one input staging per group; docs/engine.md "Channel groups"), and prepares one PreparedConv2d
// per group writing its channels' planes of y in place (no permutation, no gather). A channel
// whose weights are all zero (a pruned, 0-bit channel) is not computed: its accumulator is its
// bias, so its plane is the constant L.output(c, bias[c]), written by memset on every run (the
// arena reuses the bytes between runs). run() equals conv2d_u8_ref exactly and allocates nothing.
class GroupedConv2d {
 public:
  const ConvShape& shape() const { return s_; }
  const std::vector<PreparedConv2d>& groups() const { return groups_; }
  // Per group, its channels of the layer.
  const std::vector<std::vector<int64_t>>& group_channels() const { return group_ch_; }
  // The pruned channels and their constant output codes.
  const std::vector<int64_t>& constant_channels() const { return const_ch_; }
  const std::vector<uint8_t>& constant_values() const { return const_val_; }
  // "avx2_maddubs_i16" for one group of every channel; else "avx2_madd16 x24 + avx2_maddubs_i16
  // x40 + pruned x8".
  std::string kernel_names() const;
  void run(const uint8_t* x, uint8_t* y);
  // Every channel's accumulators (PreparedConv2d::run_acc), for a conv prepared by
  // prepare_conv2d_grouped_acc (one group of every channel).
  void run_acc(const uint8_t* x, int64_t* acc);
  size_t weight_bytes() const;   // the groups' packed weights (shared by copies)
  size_t scratch_bytes() const;  // the groups' scratch (each copy its own)

 private:
  friend GroupedConv2d prepare_conv2d_grouped(const ConvShape&, const IntLayer&, Isa, int, bool);
  friend GroupedConv2d prepare_conv2d_grouped_acc(const ConvShape&, const IntLayer&, Isa, int);
  friend GroupedConv2d prepare_conv2d_group_tiles(const ConvShape&, const IntLayer&, Isa, int);
  ConvShape s_;
  // prepare_conv2d_group_tiles: per part, where its input channels and output channels start in
  // x and y (elements); empty: every part reads all of x and places its own channels.
  std::vector<int64_t> in_off_, out_off_;
  int64_t slice_groups_ = 0;  // the conv's groups per part (describe())
  std::vector<PreparedConv2d> groups_;
  std::vector<std::vector<int64_t>> group_ch_;
  std::vector<int64_t> const_ch_;
  std::vector<uint8_t> const_val_;
};
// Throws as prepare_conv2d_u8's Isa form does. split = false: one group of every channel on the
// kernel the widest needs, pruned channels computed too (the plan before channel groups; for
// measurements).
GroupedConv2d prepare_conv2d_grouped(const ConvShape& s, const IntLayer& L, Isa isa = Isa::Auto,
                                     int in_bits = 8, bool split = true);
// A grouped conv (groups > 1, not depthwise) on the packed kernels: every ⌊16 / ocg⌋ consecutive
// groups (at least one) form one dense conv over their contiguous input channels, with
// block-diagonal weights (zeros across groups: the same integers), writing their contiguous output
// channels — a 16-channel tile where a group alone would fill a quarter of one. MACs computed:
// ⌊16 / ocg⌋ × the conv's (4× at 4 outputs a group, 2× at 8, none from 16).
GroupedConv2d prepare_conv2d_group_tiles(const ConvShape& s, const IntLayer& L, Isa isa,
                                         int in_bits);
// For run_acc: prepare_conv2d_acc's conv as one group (the layer may have a float output).
GroupedConv2d prepare_conv2d_grouped_acc(const ConvShape& s, const IntLayer& L, Isa isa,
                                         int in_bits);
// ---------------------------------------------------------------------------------------------
// The graph executor (src/engine/graph_executor.cpp; one file per op under src/engine/ops/, mapped
// from graph ops by ops/registry.cpp): any graph a QuantModel supports (the zoo's
// lenet5, resnet8/20, mobilenetv2, mlp): conv (grouped, depthwise), linear, residual add, max /
// average / global average pooling, ReLU/ReLU6, flatten. Every tensor the float simulation
// quantizes (IntModel::points) is held as uint8 codes at that point's scale and zero point; the
// ops between points run on the codes of the point they read:
//   conv/linear      → the next point downstream, activation fused into the clamp (integerize.h)
//   add              add_u8_ref at the add's own point: the simulation's float32 add exactly
//                    (integer operand sums against per-code thresholds, AddParams)
//   relu/relu6/maxpool/flatten that are not fused: on the codes (clamp, max, nothing); a node that
//                    is itself a point but holds another point's codes is rescaled by a 256-entry
//                    table built once (requantize(q − zp_in, s_in/s_out) + zp_out, clamped)
//   sigmoid, hardsigmoid, hardswish, silu, leaky_relu (input and output are points, qmodel.h):
//                    a 256-entry table per node, built once: code c → the function of the
//                    dequantized value, in float as the simulation computes it, quantized at
//                    the node's point (TFLite Micro's int8 LUT activations)
//   concat           (inputs and output are points) one Lut step per input: its codes → the
//                    output point's, written at the input's channel offset of the output buffer
//   mul              (inputs and output are points) mul_u8_ref: (x − zp_x) · (g − zp_g)
//                    requantized to the output point, the gate broadcast per channel
//   channel_shuffle  (its input is a point) a permutation of the channel planes' codes
//   channel_slice    no step: a view of its input's buffer at channel begin (the codes of
//                    channels [begin, end) are contiguous in C×H×W), at the input's point;
//                    rescaled by a table only if the slice is itself a point
//   avgpool / gap    integer window sum, fixed-point rescale to the next point downstream
//   conv → relu/relu6 → gap or avgpool (no point in between, MobileNetV2's head; a non-global
//                    average pooling with its kernel, stride and padding): int64 accumulators,
//                    the activation applied to them at 2^−8 accumulator units, summed over the
//                    window (padded taps add 0 and count), requantized
//   input → batchnorm (the input's only reader): folded into the input normalization
//                    (fold_input_batchnorm) when every channel's gamma / √(var + eps) is positive
//   batchnorm        one that no conv absorbs (qmodel.h standalone_batchnorm: DenseNet's BN
//                    after a concat): per channel a 256-entry table, the simulation's batchnorm
//                    in float through the ReLU/ReLU6 after it to the next point
//   the last layer   float logits: (acc − bias) · s_x · s_w[c] + the float bias
// Prepare walks the graph, each node's op (the registry) building its steps and preparing the
// optimized groups = 1 convolutions, and plans memory once:
// every intermediate tensor gets an offset in one arena, tensors whose lifetimes do not overlap
// share bytes (greedy by size, 64-byte aligned). run() allocates nothing; one run at a time per
// object (one executor per thread).
//
//   sq::GraphExecutor ex = sq::GraphExecutor::prepare(qm.graph, sq::integerize(qm));
//   std::vector<float> logits(ex.output_size());
//   ex.run(data.image(i), logits.data());  // normalizes and quantizes like the simulation

// A batchnorm that is the input's only reader, folded into the graph's input normalization:
// bn((x − mean) / std) = (x − mean') / std' with a = gamma / √(var + eps), mean' = mean + std ·
// (running_mean − beta / a), std' = std / a (in double, stored as float); the batchnorm node is
// removed (its readers read the input; later node indices shift down by one in g and in im), and
// its quantization point becomes the input's. Repeats while the input's only reader is a
// batchnorm. Returns whether anything was folded. Throws sq::Error naming the node when a
// channel's a is not a finite positive number (no normalization with std > 0 equals it).
// GraphExecutor::prepare, save_sqm and export_c apply it, so all three run the same integers.
bool fold_input_batchnorm(Graph& g, IntModel& im);

namespace ops {  // src/engine/ops/op.h: the executor's ops, internal to the engine
class Context;
struct StepType;
}  // namespace ops

class GraphExecutor {
 public:
  // Throws sq::Error naming the node or layer the executor cannot run, or an inconsistency
  // between the graph and the integer model.
  // channel_groups = false prepares every conv as one group (prepare_conv2d_grouped's split =
  // false): the plan before issue 13, kept for measurements.
  static GraphExecutor prepare(const Graph& g, const IntModel& im, Isa isa = Isa::Auto,
                               bool channel_groups = true);
  int64_t input_size() const { return input_size_; }    // floats per sample (C·H·W)
  int64_t output_size() const { return output_size_; }  // logits per sample
  size_t arena_bytes() const { return arena_.size(); }
  // Copies (`GraphExecutor b = a;`) share what prepare built read-only — the integer layers, the
  // packed weights, the tables: shared_bytes() — and each owns its arena and scratch:
  // private_bytes(). A copy per thread runs in parallel (ParallelExecutor) at that cost.
  size_t shared_bytes() const;
  size_t private_bytes() const;
  // One sample, CHW floats as stored in the Dataset (not normalized): the executor applies the
  // graph's input_mean/input_std and quantizes at the input's point exactly as the simulation:
  // q = clamp(nearbyint(((x − mean) / std) / s) + zp, 0, qmax), in float.
  void run(const float* image, float* logits);
  // The same from an already-quantized input (codes at input_point()'s scale and zero point).
  void run_quantized(const uint8_t* x, float* logits);
  struct Step;
  // run() that calls trace with the input's codes (step = nullptr), then after every step that
  // writes codes (not the logits) with the step and its whole output buffer (a concat's buffer
  // after each input's step: the last call for a buffer holds it complete): the codes at every
  // quantization point, to find where another runtime of the same model (the ONNX QDQ export, a
  // port) first departs from this one.
  using Trace = std::function<void(const Step* step, const uint8_t* codes, int64_t bytes)>;
  void run_traced(const float* image, float* logits, const Trace& trace);
  // run_traced collected: the input's codes (step −1, node and plan "input"), then per writing
  // step its index, node, describe() line and output codes (the CLI's `run --trace` and the
  // Python module's Engine.trace write these).
  struct TraceEntry {
    int64_t step;
    std::string node, plan;
    std::vector<uint8_t> codes;
  };
  std::vector<TraceEntry> trace(const float* image, float* logits);
  // Where the time goes: runs the n images one at a time (CHW floats, as run()), timing every
  // step with steady_clock. Seconds per image: per step, in plan order, its index, describe()'s
  // label (the kernel or table form chosen) and node — the input's quantization (run()'s float
  // loop) first, as step −1 —, the same summed per label (most time first), and their total. The
  // clock reads add tens of nanoseconds per step: compare shares, not the total with an untimed
  // run.
  struct StepTime {
    int64_t step;
    std::string label, node;
    double seconds;
  };
  struct Profile {
    std::vector<StepTime> steps;
    std::vector<std::pair<std::string, double>> by_label;
    double seconds = 0;
  };
  Profile profile(const float* images, int64_t n);
  const ActQuant& input_point() const { return in_q_; }
  // One line per step ("conv stage1.block1.a.conv [avx2_maddubs] 1024 B @ 0"), for `info`/tests.
  std::vector<std::string> describe() const;

  // The plan, read-only, for back ends that emit the same computation elsewhere (the C export,
  // export_c.cpp): steps in order over buffers of one arena. Buffer 0 is the input's codes (at
  // input_point(), after input_mean()/input_std()); every other buffer is written by exactly one
  // step, or is a view into another (Buffer::view_of; its offset is already the arena's). With Isa::Reference, convs are ConvRef and adds Add (no packed kernels, no add tables).
  struct Step {
    // ConvPool: ConvGap's head with a (non-global) average pooling window instead (pool).
    enum class Kind {
      ConvFast,
      ConvRef,
      ConvF32,
      ConvGap,
      Add,
      AddLut,
      MaxPool,
      AvgPool,
      Gap,
      Lut,
      ConvPool,
      Mul,
      Shuffle,
      // The output layer as conv → ReLU/ReLU6 → global average pooling (→ flatten) with float
      // logits (SqueezeNet's classifier): per channel, the mean over the plane of
      // act((acc − bias) · s_x · s_w + b) in double, written to the logits.
      ConvGapF32,
      // A standalone batchnorm: per channel ch, table + ch maps its plane of n / channels codes.
      ChannelLut
    } kind;
    std::string name;                 // the node it computes
    int layer = -1;                   // index into layers_ (conv kinds)
    int fast = -1;                    // index into fast_ (ConvFast)
    int in = -1, in2 = -1, out = -1;  // buffer ids (out = -1: the logits)
    int64_t n = 0;                    // elements (Add, Lut, Mul)
    // Where the step writes inside its output buffer, in elements: a concat's inputs are Lut
    // steps that each rescale one input into its channel slice of the concat's buffer.
    int64_t out_offset = 0;
    MulParams mul;
    int64_t shuffle_groups = 0;  // Shuffle: over pool.c channels of pool.in_h · pool.in_w codes
    int64_t channels = 0;        // ChannelLut
    ConvShape conv;
    PoolShape pool;
    AddParams add;  // Add; AddLut: its scales and points only (its tables are consts)
    AvgPoolParams avg;
    int table = -1;  // index into luts_ (Lut) or consts_ (AddLut, depthwise by channels)
    // ConvGap / ConvPool: per channel, the activation bound in 2^−8 accumulator units (−1:
    // none), and the rescale of the window sum to the output point (M = unit / (2^8 · window ·
    // s_out), window = the plane or kernel²).
    bool relu = false;
    bool relu6 = false;  // ConvGapF32: the activation is ReLU6 (relu: ReLU)
    std::vector<int64_t> gap_hi;
    std::vector<Requant> gap_m;
    int32_t zp_out = 0, lo = 0, hi = 255;
  };
  struct Buffer {
    int64_t bytes = 0;
    int first = 0, last = 0;  // steps that write it first and read it last
    size_t offset = 0;        // in the arena (64-byte aligned, but a view's)
    // A view (a channel slice's codes, read in place): bytes [view_offset, view_offset + bytes)
    // of buffer view_of, which is no view; no step writes it, and its readers keep view_of
    // alive. -1: a buffer of its own.
    int view_of = -1;
    int64_t view_offset = 0;
  };
  const std::vector<Step>& steps() const { return steps_; }
  const std::vector<Buffer>& buffers() const { return buffers_; }
  // Step::layer indexes these. In an optimized plan a layer that only packed kernels run
  // (ConvFast steps) has its int32 weights released (empty): its packed blocks hold them.
  const std::vector<IntLayer>& layers() const { return *layers_; }
  const std::array<uint8_t, 256>& table(int i) const { return luts_->at(i); }  // Step::table (Lut)
  const std::vector<float>& input_mean() const { return mean_; }  // per input channel (0 if none)
  const std::vector<float>& input_std() const { return std_; }    // per input channel (> 0)

 private:
  friend class ops::Context;  // the ops' prepares build the plan through it
  uint8_t* buf(int id) { return arena_.data() + buffers_[id].offset; }
  void quantize_image(const float* image);  // run()'s first part: buffer 0's codes
  void execute(float* logits);  // every step's eval, in order

  // Written by prepare only, then read-only: a copy of the executor shares them (and the packed
  // weights inside fast_'s convs); what a copy owns is its arena and scratch.
  std::shared_ptr<std::vector<IntLayer>> layers_ = std::make_shared<std::vector<IntLayer>>();
  std::vector<GroupedConv2d> fast_;  // packed weights shared, per-copy scratch
  std::shared_ptr<std::vector<std::array<uint8_t, 256>>> luts_ =
      std::make_shared<std::vector<std::array<uint8_t, 256>>>();
  // Per-step constant blocks built at prepare: AddLut's pair table (add_u8_ref's code for every
  // pair of operand codes, 65,536 bytes, a·256 + b), the depthwise-by-channels step's packed
  // weights and epilogue constants.
  std::shared_ptr<std::vector<std::vector<uint8_t>>> consts_ =
      std::make_shared<std::vector<std::vector<uint8_t>>>();
  std::vector<Step> steps_;
  std::vector<const ops::StepType*> step_types_;  // per step: its eval (an op's static entry)
  std::vector<std::string> step_labels_;          // per step: describe()'s first words
  std::vector<Buffer> buffers_;
  std::vector<uint8_t> arena_;
  std::vector<int64_t> acc_;  // ConvGap scratch: one channel's accumulators
  ActQuant in_q_;
  std::vector<float> mean_, std_;  // per input channel (std 0 → 1, as normalized_image)
  int64_t input_size_ = 0, output_size_ = 0, input_plane_ = 0;
  const Trace* trace_ = nullptr;  // during run_traced only
  double* step_seconds_ = nullptr;  // during profile only: per step, the seconds summed
};

// A batch of images on several threads: one copy of the executor per thread (sharing its weights
// and tables), each running a contiguous share of the batch one image at a time; the calling
// thread runs the first share. run() is not reentrant (one call at a time per ParallelExecutor).
class ParallelExecutor {
 public:
  // Throws sq::Error unless threads >= 1.
  ParallelExecutor(const GraphExecutor& ex, int threads);
  int threads() const { return static_cast<int>(ex_.size()); }
  int64_t input_size() const { return ex_[0].input_size(); }
  int64_t output_size() const { return ex_[0].output_size(); }
  // n images (input_size() floats each, as GraphExecutor::run takes them) → logits
  // [n][output_size()].
  void run(const float* images, int64_t n, float* logits);
  // Images/s over n images run in batches of `batch` (a last partial batch is not run), after
  // one warm-up batch: what `sigmaquant bench` reports for the engine.
  double throughput(const float* images, int64_t n, int64_t batch);

 private:
  std::vector<GraphExecutor> ex_;
};

}  // namespace sq
