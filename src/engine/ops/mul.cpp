// x · gate (squeeze-excitation; inputs and output are points): mul_u8_ref, (x − zp_x)·(g − zp_g)
// requantized to the output point, the gate broadcast per channel or element-wise.
#include "op.h"

namespace sq::ops {

namespace {

void eval_mul(const Run& r, const Step& st) {
  mul_u8_ref(st.mul, r.in(st), r.in2(st), st.n, r.out(st));
}

const StepType kMul{Step::Kind::Mul, "mul", eval_mul};

}  // namespace

void prepare_mul(Context& c, int node) {
  Context::Binary b = c.binary(node, "mul", true);
  Step& st = b.st;
  st.mul = make_mul_params(b.pa->scale, b.pa->zero_point, b.pb->scale, b.pb->zero_point, b.q->scale,
                           b.q->zero_point, b.lo, b.hi, st.n / c.numel(c.g.nodes[node].inputs[1]));
  const int64_t n = st.n;
  c.push_output(node, std::move(st), kMul, b.w, n);
}

}  // namespace sq::ops
