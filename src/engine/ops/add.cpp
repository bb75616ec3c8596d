// Residual add at the add's point: add_u8_ref's codes, which are the simulation's float32 add
// exactly (engine.h, AddParams). Optimized plans tabulate add_u8_ref's code for every pair of
// operand codes at prepare (64 KiB per add) and look each element up: one load per element, where
// the exact form needs two int64 lookups and a search over the thresholds. On CPUs with AVX-512
// VBMI the float form (op.h, AddFloat) replaces the lookups where it gives the table's codes on all
// 65,536 pairs: 16 elements per instruction, no 64 KiB table to keep in cache.
#include <algorithm>
#include <cstring>

#include "op.h"
#include "sigmaquant/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "lut_vbmi.h"
#define SQ_ADD_X86 1
#endif

namespace sq::ops {

namespace {

AddFloat float_of(const std::vector<uint8_t>& block) {
  AddFloat f;
  std::memcpy(&f, block.data(), sizeof f);
  return f;
}

void eval_add_float(const Run& r, const Step& st) {
  add_u8_float(float_of(r.consts[st.table]), r.in(st), r.in2(st), st.n, r.out(st) + st.out_offset);
}

void eval_add_ref(const Run& r, const Step& st) {
  add_u8_ref(st.add, r.in(st), r.in2(st), st.n, r.out(st));
}

void eval_add_lut(const Run& r, const Step& st) {
  // out_offset: a fused table step's (Context::fuse_add_tables) concat slice
  add_u8_table(r.consts[st.table].data(), r.in(st), r.in2(st), st.n, r.out(st) + st.out_offset);
}

const StepType kAddRef{Step::Kind::Add, "add(ref)", eval_add_ref};
const StepType kAddLut{Step::Kind::AddLut, "add", eval_add_lut};
// The float form is an AddLut step to back ends: the same codes, from other constants.
const StepType kAddFloat{Step::Kind::AddLut, "add(avx512)", eval_add_float};

#ifdef SQ_ADD_X86
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// 16 codes of the float formula: every operation with round-to-nearest-even given explicitly (the
// formula does not depend on MXCSR's rounding mode).
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi"))) inline __m128i add16_avx512(
    const uint8_t* a, const uint8_t* b, __m512 sa, __m512 sb, __m512 so, __m512i zpa, __m512i zpb,
    __m512i zpo, __m512i lo, __m512i hi) {
  constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  const __m512i ai = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a)));
  const __m512i bi = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b)));
  // (q − zp) is exact in float (|q − zp| < 2^24), as static_cast<float>(q − zp) is.
  const __m512 va = _mm512_mul_round_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(ai, zpa)), sa, kRound);
  const __m512 vb = _mm512_mul_round_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(bi, zpb)), sb, kRound);
  const __m512 r = _mm512_div_round_ps(_mm512_add_round_ps(va, vb, kRound), so, kRound);
  __m512i q = _mm512_add_epi32(_mm512_cvt_roundps_epi32(r, kRound), zpo);
  q = _mm512_min_epi32(_mm512_max_epi32(q, lo), hi);
  return _mm512_cvtepi32_epi8(q);
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi"))) void add_float_avx512(
    const AddFloat& f, const uint8_t* a, const uint8_t* b, int64_t n, uint8_t* y) {
  const __m512 sa = _mm512_set1_ps(f.s_a), sb = _mm512_set1_ps(f.s_b), so = _mm512_set1_ps(f.s_out);
  const __m512i zpa = _mm512_set1_epi32(f.zp_a), zpb = _mm512_set1_epi32(f.zp_b),
                zpo = _mm512_set1_epi32(f.zp_out), lo = _mm512_set1_epi32(f.lo),
                hi = _mm512_set1_epi32(f.hi);
  const __m512i t0 = _mm512_loadu_si512(f.post.data()), t1 = _mm512_loadu_si512(f.post.data() + 64),
                t2 = _mm512_loadu_si512(f.post.data() + 128),
                t3 = _mm512_loadu_si512(f.post.data() + 192);
  alignas(64) uint8_t ta[64], tb[64], ty[64];
  for (int64_t k = 0; k < n; k += 64) {
    const int64_t m = std::min<int64_t>(64, n - k);
    const uint8_t *pa = a + k, *pb = b + k;
    if (m < 64) {  // the last partial block through local copies
      std::memset(ta, 0, sizeof ta);
      std::memset(tb, 0, sizeof tb);
      std::memcpy(ta, pa, static_cast<size_t>(m));
      std::memcpy(tb, pb, static_cast<size_t>(m));
      pa = ta;
      pb = tb;
    }
    __m512i c = _mm512_castsi128_si512(add16_avx512(pa, pb, sa, sb, so, zpa, zpb, zpo, lo, hi));
    c = _mm512_inserti32x4(c, add16_avx512(pa + 16, pb + 16, sa, sb, so, zpa, zpb, zpo, lo, hi), 1);
    c = _mm512_inserti32x4(c, add16_avx512(pa + 32, pb + 32, sa, sb, so, zpa, zpb, zpo, lo, hi), 2);
    c = _mm512_inserti32x4(c, add16_avx512(pa + 48, pb + 48, sa, sb, so, zpa, zpb, zpo, lo, hi), 3);
    if (!f.post_identity) c = look64(c, t0, t1, t2, t3);  // a fused table step's codes
    if (m == 64) {
      _mm512_storeu_si512(y + k, c);
    } else {
      _mm512_store_si512(ty, c);
      std::memcpy(y + k, ty, static_cast<size_t>(m));
    }
  }
}
#pragma GCC diagnostic pop
#endif

}  // namespace

void add_u8_float(const AddFloat& f, const uint8_t* a, const uint8_t* b, int64_t n, uint8_t* y) {
#ifdef SQ_ADD_X86
  if (cpu_has_avx512vbmi()) {
    add_float_avx512(f, a, b, n, y);
    return;
  }
#endif
  fail("add: the float form needs AVX-512 VBMI, which this CPU lacks");
}

std::optional<AddFloat> add_float_form(const AddParams& p, const std::vector<uint8_t>& pairs) {
  if (!cpu_has_avx512vbmi() || !p.exact() || pairs.size() != 65536) return std::nullopt;
  AddFloat f;
  f.s_a = p.s_a;
  f.s_b = p.s_b;
  f.s_out = p.s_out;
  f.zp_a = p.zp_a;
  f.zp_b = p.zp_b;
  f.zp_out = p.zp_out;
  f.lo = p.lo;
  f.hi = p.hi;
  for (int v = 0; v < 256; ++v) f.post[static_cast<size_t>(v)] = static_cast<uint8_t>(v);
  // Every pair, through the very code that will run: the form is used only if it is the table.
  std::vector<uint8_t> a(65536), b(65536), got(65536);
  for (size_t i = 0; i < 65536; ++i) {
    a[i] = static_cast<uint8_t>(i >> 8);
    b[i] = static_cast<uint8_t>(i);
  }
  add_u8_float(f, a.data(), b.data(), 65536, got.data());
  if (got != pairs) return std::nullopt;
  return f;
}

void fuse_table_into_add(const StepType* add, std::vector<uint8_t>& consts,
                         const std::array<uint8_t, 256>& table) {
  if (add == &kAddFloat) {
    AddFloat f = float_of(consts);
    for (uint8_t& v : f.post) v = table[v];
    f.post_identity = false;
    std::memcpy(consts.data(), &f, sizeof f);
    return;
  }
  if (add != &kAddLut) fail("add: fusing a table into a {} step", add->label);
  for (uint8_t& v : consts) v = table[v];
}

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
    std::vector<uint8_t> pairs = add_pair_table(st.add);
    std::optional<AddFloat> f;
    if (c.isa == Isa::Avx512Vnni) f = add_float_form(st.add, pairs);
    if (f) {
      std::vector<uint8_t> block(sizeof(AddFloat));
      std::memcpy(block.data(), &*f, sizeof(AddFloat));
      type = &kAddFloat;
      st.table = c.add_consts(std::move(block));
    } else {
      type = &kAddLut;
      st.table = c.add_consts(std::move(pairs));
    }
    // The run reads consts only: the exact form's 6 KiB of int64 tables would be copied with
    // every executor (ParallelExecutor's per thread) for nothing.
    st.add.ta = {};
    st.add.tb = {};
    st.add.thr = {};
  }
  const int64_t n = st.n;
  c.push_output(node, std::move(st), *type, b.w, n);
}

}  // namespace sq::ops
