// Residual add at the add's point: add_u8_ref's codes, which are the simulation's float32 add
// exactly (engine.h, AddParams). Optimized plans tabulate add_u8_ref's code for every pair of
// operand codes at prepare (64 KiB per add) and look each element up: one load per element, where
// the exact form needs two int64 lookups and a search over the thresholds.
#include <algorithm>

#include "op.h"

namespace sq::ops {

namespace {

void eval_add_ref(const Run& r, const Step& st) {
  add_u8_ref(st.add, r.in(st), r.in2(st), st.n, r.out(st));
}

void eval_add_lut(const Run& r, const Step& st) {
  // out_offset: a fused table step's (Context::fuse_add_tables) concat slice
  add_u8_table(r.consts[st.table].data(), r.in(st), r.in2(st), st.n, r.out(st) + st.out_offset);
}

const StepType kAddRef{Step::Kind::Add, "add(ref)", eval_add_ref};
const StepType kAddLut{Step::Kind::AddLut, "add", eval_add_lut};

}  // namespace

std::vector<uint8_t> add_pair_table(const AddParams& p) {
  std::vector<uint8_t> t(65536);
  if (!p.exact()) {  // the fixed-point fallback: add_u8_ref itself, one row per code of a
    std::vector<uint8_t> a(256), b(256);
    for (int j = 0; j < 256; ++j) b[static_cast<size_t>(j)] = static_cast<uint8_t>(j);
    for (int i = 0; i < 256; ++i) {
      std::fill(a.begin(), a.end(), static_cast<uint8_t>(i));
      add_u8_ref(p, a.data(), b.data(), 256, t.data() + i * 256);
    }
    return t;
  }
  // The exact form: code_of_sum only grows with the sum, and the sum with b (fl((b − zp)·s) is
  // monotone in b for s > 0), so along a row the code starts at the first sum's and climbs the
  // thresholds.
  for (size_t i = 0; i < 256; ++i) {
    int32_t q = p.code_of_sum(p.ta[i] + p.tb[0]);
    for (size_t j = 0; j < 256; ++j) {
      const int64_t s = p.ta[i] + p.tb[j];
      while (q < p.hi && s >= p.thr[static_cast<size_t>(q + 1)]) ++q;
      t[i * 256 + j] = static_cast<uint8_t>(q);
    }
  }
  return t;
}

void add_u8_table(const uint8_t* t, const uint8_t* a, const uint8_t* b, int64_t n, uint8_t* y) {
  for (int64_t k = 0; k < n; ++k) y[k] = t[size_t{a[k]} << 8 | b[k]];
}

void prepare_add(Context& c, int node) {
  Context::Binary b = c.binary(node, "add", false);
  Step& st = b.st;
  st.add = make_add_params(b.pa->scale, b.pa->zero_point, b.pb->scale, b.pb->zero_point, b.q->scale,
                           b.q->zero_point, b.lo, b.hi);
  const StepType* type = &kAddRef;
  if (c.isa != Isa::Reference) {
    type = &kAddLut;
    st.table = c.add_consts(add_pair_table(st.add));
  }
  const int64_t n = st.n;
  c.push_output(node, std::move(st), *type, b.w, n);
}

}  // namespace sq::ops
