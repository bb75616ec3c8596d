// The graph executor's ops (TensorFlow Lite Micro's kernel registrations): one file per op family
// under src/engine/ops/, each with
//   - its prepare, `void prepare_<name>(Context&, int node)`: graph node(s) → step(s) with their
//     constants and output buffers, through the Context below (the generic walk's state);
//   - the evals of its steps, one StepType each (how the step runs, how describe() names it).
// registry.cpp maps graph ops to prepares, one line per op (SQ_ENGINE_OPS). Adding an op is a new
// file here plus its line there (plus a Step::Kind in engine.h and an emitter in export_c.cpp
// when it runs a new kind of step). Internal to the engine: nothing here is public API.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "sigmaquant/engine.h"

namespace sq::ops {

using Step = GraphExecutor::Step;

// What a step's eval reads at run time: views of the executor's arena and tables, built on the
// stack by GraphExecutor::execute (no allocation).
struct Run {
  uint8_t* arena;
  const GraphExecutor::Buffer* buffers;
  const IntLayer* layers;                     // Step::layer
  GroupedConv2d* fast;                        // Step::fast
  const std::array<uint8_t, 256>* luts;       // Step::table (Lut)
  const std::vector<uint8_t>* consts;         // Step::table (AddLut, depthwise by channels)
  int64_t* acc;                               // ConvGap / ConvPool scratch
  float* logits;

  uint8_t* buf(int id) const { return id >= 0 ? arena + buffers[id].offset : nullptr; }
  const uint8_t* in(const Step& st) const { return buf(st.in); }
  const uint8_t* in2(const Step& st) const { return buf(st.in2); }
  uint8_t* out(const Step& st) const { return buf(st.out); }
};

// A kind of step: its public kind (what back ends such as export_c read), the first word of its
// describe() line, and its eval. Each op file defines the types of the steps it emits.
struct StepType {
  Step::Kind kind;
  const char* label;
  void (*eval)(const Run&, const Step&);
};

// From a node, through single-reader ReLU/ReLU6/max-pool/flatten nodes, to the next quantization
// point — the walk integerize() does for a weight layer's output.
struct Walk {
  int point = -1;         // -1: none reached
  std::vector<int> path;  // the nodes after `from`, up to the point (or the last one walked)
  bool relu = false, relu6 = false;
};

// The clamp of codes at point q with a fused activation (integerize's out_lo/out_hi).
std::pair<int32_t, int32_t> act_range(const ActQuant& q, bool relu, bool relu6);

// The prepare walk's state, which every op's prepare reads and extends: the graph and its
// quantization points, per node the buffer holding its codes and the point they are at, and the
// executor being built (steps, buffers and lifetimes, tables, prepared convolutions).
class Context {
 public:
  struct Val {
    int buf = -1, point = -1;
    bool done = false;  // computed (or fused into another node's step): the walk skips it
  };
  // What a two-input op (add, mul) starts from: its step with both operands' buffers and its
  // element count, the operands' points, the walk to its output point and the clamp there.
  struct Binary {
    Step st;
    const ActQuant *pa, *pb, *q;
    int32_t lo, hi;
    Walk w;
  };

  Context(const Graph& g, const IntModel& im, Isa isa, bool channel_groups, GraphExecutor& ex,
          std::map<int, int> layer_of);

  const Graph& g;
  const Isa isa;  // the plan's tier, Auto resolved (best_isa()): never Auto
  const bool channel_groups;

  // Quantization points.
  bool is_point(int node) const { return pts_.count(node) > 0; }
  const ActQuant& point(int node) const;  // throws unless node is a point
  int64_t numel(int node) const;          // elements of node's output (node 0: the input's)
  Walk walk(int from) const;

  // Per node: where its codes are.
  Val& val(int node) { return val_[node]; }
  const Val& input(int node, int reader) const;  // throws unless node's codes are held
  // An add's or mul's operands, walk and clamp (`what` names the op in errors); `must_be_point`:
  // the op itself must be a quantization point (mul).
  Binary binary(int node, const char* what, bool must_be_point);

  // Building the plan. A new buffer's lifetime starts at the step about to be pushed; push
  // extends its inputs' lifetimes to it. `detail` is appended to the type's label in describe().
  int new_buffer(int64_t bytes);
  // Bytes [offset, offset + bytes) of buffer `buf`, read in place (Buffer::view_of).
  int new_view(int buf, int64_t offset, int64_t bytes);
  void push(Step st, const StepType& type, std::string detail = {});
  // The common tail of an op: st writes a new buffer of `bytes`, node's codes are there at
  // w.point, and the nodes walked after it follow (emit_path).
  void push_output(int node, Step st, const StepType& type, const Walk& w, int64_t bytes,
                   std::string detail = {});
  // After a producer wrote codes at w.point into buffer `buf`: the walked nodes alias it (ReLU,
  // ReLU6, flatten: fused or free) or max-pool it.
  void emit_path(const Walk& w, int buf);
  // A node that is a point but holds another point's codes is rescaled to its own.
  void ensure_point(int node);

  // The executor's layers and tables.
  int layer_index(int node) const { return layer_of_.at(node); }
  const IntLayer& layer(int index) const;
  int add_fast(GroupedConv2d conv);                  // → Step::fast
  int add_table(const std::array<uint8_t, 256>& t);  // → Step::table (Lut)
  int add_consts(std::vector<uint8_t> t);            // → Step::table (AddLut, ...)
  // After the walk (optimized plans): an add whose codes only one table step reads (resnet's
  // add → ReLU to another point, an add rescaled into a concat's slice) absorbs that table into
  // its pair table and writes where the table wrote; the table step goes (one lookup per element
  // instead of two passes).
  void fuse_add_tables();
  void reserve_acc(int64_t n);  // ConvGap scratch
  void set_logits(int64_t n);   // the output layer's size
  void set_input(const ActQuant& q, std::vector<float> mean, std::vector<float> std);

 private:
  GraphExecutor& ex_;
  const std::map<int, ActQuant>& pts_;
  std::map<int, int> layer_of_;  // weight node → index into the executor's layers
  std::vector<Val> val_;
};

// The registry (registry.cpp): the prepare of graph op `op`, or nullptr if no file implements it.
using PrepareFn = void (*)(Context&, int node);
PrepareFn find_prepare(Op op);

// Steps other ops emit (defined in the op's file).
// lut.cpp: the table taking code c at point p to f(dequantized c) quantized at q, in float as
// the simulation computes it; f is the activation of node `act` (sigmoid, ...), or the identity
// for nullptr (a concat's rescale). Codes beyond p's qmax cannot occur; they map as qmax.
std::array<uint8_t, 256> float_table(const ActQuant& p, const ActQuant& q, const Node* act);
// lut.cpp: a Lut step st (name, in, n, out and out_offset set) with table t.
void push_lut(Context& c, Step st, const std::array<uint8_t, 256>& t);
// lut.cpp: a Lut step, node's codes = t[input codes], held at point q_node.
void push_table(Context& c, int node, const Context::Val& in, const std::array<uint8_t, 256>& t,
                int q_node);
// lut.cpp: codes at in.point → codes at q_node through an optional ReLU/ReLU6, by a table.
void push_requant_table(Context& c, int node, const Context::Val& in, int q_node, bool relu,
                        bool relu6);
// pool.cpp: the max-pool node over buffer `in_buf`; returns its output buffer.
// clamp(requantize(acc, r) + zp, lo, hi) for ops that requantize one value at a time (grouped
// convs' epilogue, mul): requantize's (acc · m + 2^(s−1)) >> s in int64 where that is exact
// (|acc| < 2^31 and 0 < s < 63: |acc · m| < 2^62), else requantize itself.
struct Requantizer {
  Requant r;
  int64_t add = 0, zp = 0, lo = 0, hi = 255;
  bool fast = false;
  Requantizer() = default;
  Requantizer(const Requant& rq, int64_t zp_out, int64_t lo_out, int64_t hi_out)
      : r(rq), zp(zp_out), lo(lo_out), hi(hi_out) {
    fast = r.shift > 0 && r.shift < 63;
    add = fast ? int64_t{1} << (r.shift - 1) : 0;
  }
  uint8_t operator()(int64_t acc) const {
    const int64_t v = (fast && acc > -(int64_t{1} << 31) && acc < (int64_t{1} << 31)
                           ? (acc * r.multiplier + add) >> r.shift
                           : int64_t{requantize(acc, r)}) +
                      zp;
    return static_cast<uint8_t>(v < lo ? lo : v > hi ? hi : v);
  }
};

int push_maxpool(Context& c, int node, int in_buf);
// maxpool_u8_ref's codes, without its per-tap bounds checks (optimized plans).
void maxpool_u8_fast(const PoolShape& s, const uint8_t* x, uint8_t* y);
// Output pixel (oy, ox)'s patch of group g of a conv, x − zp per tap in the weights' order
// (channel, ky, kx), 0 for padded taps: what conv_grouped.cpp's patches and conv_pool.cpp's
// accumulators dot the weight rows with. Inlined into each caller's target (AVX2 or not).
__attribute__((always_inline)) inline void gather_patch(const ConvShape& s, const uint8_t* x,
                                                        int32_t zp, int64_t g, int64_t oy,
                                                        int64_t ox, int32_t* col) {
  const Window2d& w = s.window;
  const int64_t icg = s.in_c / s.groups, kh = w.kernel_h, kw = w.kernel_w;
  const int64_t in_h = s.in_h, in_w = s.in_w;
  for (int64_t i = 0; i < icg; ++i) {
    const uint8_t* xi = x + (g * icg + i) * in_h * in_w;
    for (int64_t ky = 0; ky < kh; ++ky) {
      const int64_t iy = oy * w.stride_h - w.pad_top + ky * w.dilation_h;
      int32_t* c = col + (i * kh + ky) * kw;
      for (int64_t kx = 0; kx < kw; ++kx) {
        const int64_t ix = ox * w.stride_w - w.pad_left + kx * w.dilation_w;
        c[kx] = iy >= 0 && iy < in_h && ix >= 0 && ix < in_w
                    ? static_cast<int32_t>(xi[iy * in_w + ix]) - zp
                    : 0;
      }
    }
  }
}

// conv_grouped.cpp: grouped / depthwise convs (groups > 1) of optimized plans: conv2d_u8_ref's
// bytes a row of int32 lanes at a time (or, depthwise on short rows, a run of channels at a
// time). The step type for st.conv in c's plan, or nullptr (reference plans, groups = 1, a window
// of 66,310 taps or more: int32 could overflow; a window wider than 64 columns with more than
// 4,096 taps); the depthwise-by-channels step gets its packed constants as st.table (consts) and
// its scratch buffer as st.in2.
const StepType* grouped_conv_step(Context& c, Step& st);
bool grouped_conv_fits(const ConvShape& s);
// The same computation for tests and benchmarks (isa: Auto, Portable or an x86 tier: AVX2 code),
// by output rows, by per-pixel patches, by channels (depthwise only: other shapes take rows), or
// (Auto) the one the plan picks for the shape.
enum class GroupedMethod { Auto, Rows, Patches, Channels };
void grouped_conv_u8_fast(const ConvShape& s, const IntLayer& L, const uint8_t* x, uint8_t* y,
                          Isa isa, GroupedMethod m = GroupedMethod::Auto);
// add.cpp: add_u8_ref's output code for every pair of operand codes, t[a·256 + b] (65,536 bytes),
// and the add of optimized plans, one lookup per element: y[k] = t[a[k]·256 + b[k]].
std::vector<uint8_t> add_pair_table(const AddParams& p);
void add_u8_table(const uint8_t* t, const uint8_t* a, const uint8_t* b, int64_t n, uint8_t* y);
// The add's float form, on CPUs with AVX-512 VBMI: the simulation's own float32 formula 64
// elements at a time, y = post[clamp(nearbyint(fl(fl(fl((a − zp_a)·s_a) + fl((b − zp_b)·s_b)) /
// s_out)) + zp_out, lo, hi)], post the identity or a fused table step's 256 codes (lut_vbmi.h's
// lookup, in registers). Used only where it equals the pair table on all 65,536 operand pairs
// (add_float_form checks them all at prepare), so it is add_u8_ref exactly.
struct AddFloat {
  float s_a = 1, s_b = 1, s_out = 1;
  int32_t zp_a = 0, zp_b = 0, zp_out = 0, lo = 0, hi = 255;
  bool post_identity = true;
  std::array<uint8_t, 256> post{};
};
// lut.cpp: y[k] = t[x[k]] for a 256-entry table; the VBMI form 64 codes per two vpermi2b (call
// it only where cpu_has_avx512vbmi()). use_vbmi_tables: whether c's plan takes it (the
// AVX-512 VNNI tier on a CPU with VBMI).
using LutFn = void (*)(const uint8_t* t, const uint8_t* x, int64_t n, uint8_t* y);
void lut_u8(const uint8_t* t, const uint8_t* x, int64_t n, uint8_t* y);
void lut_u8_vbmi(const uint8_t* t, const uint8_t* x, int64_t n, uint8_t* y);
bool use_vbmi_tables(const Context& c);
// p's float form if this CPU has it and it gives `pairs` (add_pair_table(p)) on every pair.
std::optional<AddFloat> add_float_form(const AddParams& p, const std::vector<uint8_t>& pairs);
void add_u8_float(const AddFloat& f, const uint8_t* a, const uint8_t* b, int64_t n, uint8_t* y);
// Context::fuse_add_tables: the add step (its type and consts block) now writes table[its code].
void fuse_table_into_add(const StepType* add, std::vector<uint8_t>& consts,
                         const std::array<uint8_t, 256>& table);
// mul.cpp: mul_u8_ref's bytes without a division or a 128-bit product per element.
void mul_u8_fast(const MulParams& p, const uint8_t* a, const uint8_t* b, int64_t n, uint8_t* y);
// The same bytes 16 at a time on AVX-512 (AVX-512 plans), where the multiplier's shift is 17..62;
// mul_u8_fast otherwise.
void mul_u8_avx512(const MulParams& p, const uint8_t* a, const uint8_t* b, int64_t n, uint8_t* y);
// conv_pool.cpp: conv/linear layer `node` (step st, its shape and input filled in) whose output
// is no point but goes through ReLU/ReLU6 into an average pooling: one fused step.
void push_conv_pool(Context& c, int node, Step st);

}  // namespace sq::ops
