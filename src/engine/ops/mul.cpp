// x · gate (squeeze-excitation; inputs and output are points): (x − zp_x)·(g − zp_g) requantized
// to the output point, the gate broadcast per channel or element-wise; mul_u8_ref in reference
// plans, mul_u8_fast (the same bytes) in optimized ones.
#include <algorithm>

#include "op.h"

namespace sq::ops {

namespace {

void eval_mul_ref(const Run& r, const Step& st) {
  mul_u8_ref(st.mul, r.in(st), r.in2(st), st.n, r.out(st));
}

void eval_mul(const Run& r, const Step& st) {
  mul_u8_fast(st.mul, r.in(st), r.in2(st), st.n, r.out(st));
}

const StepType kMulRef{Step::Kind::Mul, "mul(ref)", eval_mul_ref};
const StepType kMul{Step::Kind::Mul, "mul", eval_mul};

}  // namespace

void prepare_mul(Context& c, int node) {
  Context::Binary b = c.binary(node, "mul", true);
  Step& st = b.st;
  st.mul = make_mul_params(b.pa->scale, b.pa->zero_point, b.pb->scale, b.pb->zero_point, b.q->scale,
                           b.q->zero_point, b.lo, b.hi, st.n / c.numel(c.g.nodes[node].inputs[1]));
  const int64_t n = st.n;
  c.push_output(node, std::move(st), c.isa == Isa::Reference ? kMulRef : kMul, b.w, n);
}

// mul_u8_ref's bytes: the gate code is read once per run of `per` elements (no division per
// element), the requantization by Requantizer (int64 where exact: |prod| <= 255² < 2^31).
void mul_u8_fast(const MulParams& p, const uint8_t* a, const uint8_t* b, int64_t n, uint8_t* y) {
  const Requantizer out(p.m, p.zp_out, p.lo, p.hi);
  const int32_t zp_a = p.zp_a;
  for (int64_t i0 = 0; i0 < n; i0 += p.per) {
    const int64_t i1 = std::min(n, i0 + p.per);
    const int64_t g = int64_t{b[i0 / p.per]} - p.zp_b;
    for (int64_t i = i0; i < i1; ++i) y[i] = out((int64_t{a[i]} - zp_a) * g);
  }
}

}  // namespace sq::ops
