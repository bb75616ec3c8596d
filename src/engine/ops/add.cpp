// Residual add at the add's point (add_u8_ref's arithmetic: each operand rescaled to a 2^−16-LSB
// fixed point, one rounding). Optimized plans tabulate the two terms per operand code at prepare
// (2 × 256 int32), so an add is two lookups, a sum and a shift: the same integers.
#include <algorithm>

#include "op.h"

namespace sq::ops {

namespace {

void eval_add_ref(const Run& r, const Step& st) {
  add_u8_ref(st.add, r.in(st), r.in2(st), st.n, r.out(st));
}

void eval_add_lut(const Run& r, const Step& st) {
  const uint8_t *a = r.in(st), *b = r.in2(st);
  uint8_t* out = r.out(st);
  const int32_t* ta = r.add_terms[st.table].data();
  const int32_t* tb = r.add_terms[st.table + 1].data();
  const int64_t half = int64_t{1} << (AddParams::kShift - 1);
  for (int64_t k = 0; k < st.n; ++k) {
    const int64_t v = ((int64_t{ta[a[k]]} + tb[b[k]] + half) >> AddParams::kShift) + st.add.zp_out;
    out[k] = static_cast<uint8_t>(std::clamp<int64_t>(v, st.add.lo, st.add.hi));
  }
}

const StepType kAddRef{Step::Kind::Add, "add(ref)", eval_add_ref};
const StepType kAddLut{Step::Kind::AddLut, "add", eval_add_lut};

// requantize((q − zp) · 2^kShift, m) for every code q: add_u8_ref's term of one operand.
std::array<int32_t, 256> add_term(const Requant& m, int32_t zp) {
  std::array<int32_t, 256> t{};
  for (int q = 0; q < 256; ++q)
    t[q] = requantize((int64_t{q} - zp) * (int64_t{1} << AddParams::kShift), m);
  return t;
}

}  // namespace

void prepare_add(Context& c, int node) {
  Context::Binary b = c.binary(node, "add", false);
  Step& st = b.st;
  st.add = make_add_params(b.pa->scale, b.pa->zero_point, b.pb->scale, b.pb->zero_point, b.q->scale,
                           b.q->zero_point, b.lo, b.hi);
  const StepType* type = &kAddRef;
  if (c.isa != Isa::Reference) {
    type = &kAddLut;
    st.table = c.add_terms(add_term(st.add.m_a, st.add.zp_a), add_term(st.add.m_b, st.add.zp_b));
  }
  const int64_t n = st.n;
  c.push_output(node, std::move(st), *type, b.w, n);
}

}  // namespace sq::ops
