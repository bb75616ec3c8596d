// Residual add at the add's point: add_u8_ref's codes, which are the simulation's float32 add
// exactly (engine.h, AddParams). Optimized plans tabulate the fixed-point fallback's two terms per
// operand code at prepare (2 × 256 int32): two lookups, a sum and a shift give a code within one
// of the exact one, which the exact operand sum and the thresholds then correct.
#include <algorithm>

#include "op.h"

namespace sq::ops {

namespace {

void eval_add_ref(const Run& r, const Step& st) {
  add_u8_ref(st.add, r.in(st), r.in2(st), st.n, r.out(st));
}

void eval_add_lut(const Run& r, const Step& st) {
  add_u8_fast(st.add, r.add_terms[st.table].data(), r.add_terms[st.table + 1].data(), r.in(st),
              r.in2(st), st.n, r.out(st));
}

const StepType kAddRef{Step::Kind::Add, "add(ref)", eval_add_ref};
const StepType kAddLut{Step::Kind::AddLut, "add", eval_add_lut};

}  // namespace

std::array<int32_t, 256> add_term(const Requant& m, int32_t zp) {
  std::array<int32_t, 256> t{};
  for (int q = 0; q < 256; ++q)
    t[static_cast<size_t>(q)] =
        requantize((int64_t{q} - zp) * (int64_t{1} << AddParams::kShift), m);
  return t;
}

void add_u8_fast(const AddParams& p, const int32_t* ta, const int32_t* tb, const uint8_t* a,
                 const uint8_t* b, int64_t n, uint8_t* y) {
  const int64_t half = int64_t{1} << (AddParams::kShift - 1);
  const int64_t lo = p.lo, hi = p.hi;
  const int64_t* ea = p.exact() ? p.ta.data() : nullptr;
  const int64_t *eb = p.tb.data(), *thr = p.thr.data();
  for (int64_t k = 0; k < n; ++k) {
    const int64_t v = ((int64_t{ta[a[k]]} + tb[b[k]] + half) >> AddParams::kShift) + p.zp_out;
    int64_t q = std::clamp<int64_t>(v, lo, hi);
    if (ea) {  // the fixed-point code is within one of the exact one
      const int64_t sum = ea[a[k]] + eb[b[k]];
      while (q < hi && sum >= thr[q + 1]) ++q;
      while (q > lo && sum < thr[q]) --q;
    }
    y[k] = static_cast<uint8_t>(q);
  }
}

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
