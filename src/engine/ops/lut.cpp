// 256-entry tables, code → code, built at prepare (TFLite Micro's int8 LUT activations): ReLU /
// ReLU6 that are not fused and rescales of a point holding another point's codes
// (clamp(requantize(max(q − zp_in, 0), s_in/s_out) + zp_out, lo, hi)), and the activations that
// do not commute with quantization (sigmoid, hardsigmoid, hardswish, silu, leaky_relu: the
// function of the dequantized value in float, as the simulation, quantized at the node's point).
#include <algorithm>
#include <cmath>

#include "lut_vbmi.h"
#include "op.h"
#include "sigmaquant/error.h"

namespace sq::ops {

void lut_u8(const uint8_t* t, const uint8_t* x, int64_t n, uint8_t* y) {
  for (int64_t k = 0; k < n; ++k) y[k] = t[x[k]];
}

#if defined(__x86_64__) || defined(__i386__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f,avx512bw,avx512vbmi"))) void lut_u8_vbmi(const uint8_t* t,
                                                                        const uint8_t* x, int64_t n,
                                                                        uint8_t* y) {
  const __m512i t0 = _mm512_loadu_si512(t), t1 = _mm512_loadu_si512(t + 64),
                t2 = _mm512_loadu_si512(t + 128), t3 = _mm512_loadu_si512(t + 192);
  int64_t k = 0;
  for (; k + 64 <= n; k += 64)
    _mm512_storeu_si512(y + k, look64(_mm512_loadu_si512(x + k), t0, t1, t2, t3));
  if (k < n) {  // the tail by masked load and store (masked-off bytes are not touched)
    const __mmask64 m = (__mmask64{1} << (n - k)) - 1;
    _mm512_mask_storeu_epi8(y + k, m, look64(_mm512_maskz_loadu_epi8(m, x + k), t0, t1, t2, t3));
  }
}
#pragma GCC diagnostic pop
#else
void lut_u8_vbmi(const uint8_t* t, const uint8_t* x, int64_t n, uint8_t* y) { lut_u8(t, x, n, y); }
#endif

namespace {

template <LutFn kLook>
void eval_lut(const Run& r, const Step& st) {
  // out_offset: a concat input's channel slice
  kLook(r.luts[st.table].data(), r.in(st), st.n, r.out(st) + st.out_offset);
}

const StepType kLut{Step::Kind::Lut, "table", eval_lut<lut_u8>};
const StepType kLutVbmi{Step::Kind::Lut, "table(avx512)", eval_lut<lut_u8_vbmi>};

}  // namespace

bool use_vbmi_tables(const Context& c) { return c.isa == Isa::Avx512Vnni && cpu_has_avx512vbmi(); }

std::array<uint8_t, 256> float_table(const ActQuant& p, const ActQuant& q, const Node* act) {
  std::array<uint8_t, 256> t{};
  for (int code = 0; code < 256; ++code) {
    const float x = static_cast<float>(std::min(code, p.qmax()) - p.zero_point) * p.scale;
    const float y = act ? static_cast<float>(activation_value(act->op, act->alpha, x)) : x;
    const float r = std::nearbyint(y / q.scale) + static_cast<float>(q.zero_point);
    t[code] = static_cast<uint8_t>(std::clamp(r, 0.0f, static_cast<float>(q.qmax())));
  }
  return t;
}

void push_lut(Context& c, Step st, const std::array<uint8_t, 256>& t) {
  st.table = c.add_table(t);
  c.push(std::move(st), use_vbmi_tables(c) ? kLutVbmi : kLut);
}

void push_table(Context& c, int node, const Context::Val& in, const std::array<uint8_t, 256>& t,
                int q_node) {
  Step st;
  st.name = c.g.nodes[node].name;
  st.in = in.buf;
  st.n = c.numel(node);
  st.out = c.new_buffer(st.n);
  const int out = st.out;
  push_lut(c, std::move(st), t);
  c.val(node) = {out, q_node, true};
}

void push_requant_table(Context& c, int node, const Context::Val& in, int q_node, bool relu,
                        bool relu6) {
  const ActQuant& p = c.point(in.point);
  const ActQuant& q = c.point(q_node);
  const auto [lo, hi] = act_range(q, relu, relu6);
  const Requant m = quantize_multiplier(static_cast<double>(p.scale) / q.scale);
  std::array<uint8_t, 256> t{};
  for (int code = 0; code < 256; ++code) {
    int64_t v = code - p.zero_point;
    if (relu || relu6) v = std::max<int64_t>(v, 0);
    t[code] =
        static_cast<uint8_t>(std::clamp<int64_t>(int64_t{requantize(v, m)} + q.zero_point, lo, hi));
  }
  push_table(c, node, in, t, q_node);
}

// ReLU / ReLU6 not fused into a producer: on the codes of the point read, a clamp, or a rescale
// to this node's own point.
void prepare_relu(Context& c, int node) {
  const Node& n = c.g.nodes[node];
  const Context::Val in = c.input(n.inputs.at(0), node);
  push_requant_table(c, node, in, c.is_point(node) ? node : in.point, n.op == Op::ReLU,
                     n.op == Op::ReLU6);
}

// Codes at the input's point → the function in float on the dequantized value → codes at the
// node's own point.
void prepare_lut_activation(Context& c, int node) {
  const Node& a = c.g.nodes[node];
  const Context::Val& in = c.input(a.inputs.at(0), node);
  if (!c.is_point(node))
    fail("engine: activation '{}' ({}) is not a quantization point", a.name, op_name(a.op));
  push_table(c, node, in, float_table(c.point(in.point), c.point(node), &a), node);
}

}  // namespace sq::ops
