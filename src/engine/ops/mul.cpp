// x · gate (squeeze-excitation; inputs and output are points): (x − zp_x)·(g − zp_g) requantized
// to the output point, the gate broadcast per channel or element-wise; mul_u8_ref in reference
// plans, mul_u8_fast (the same bytes) in optimized ones.
#include <algorithm>

#include "op.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace sq::ops {

namespace {

void eval_mul_ref(const Run& r, const Step& st) {
  mul_u8_ref(st.mul, r.in(st), r.in2(st), st.n, r.out(st));
}

void eval_mul(const Run& r, const Step& st) {
  mul_u8_fast(st.mul, r.in(st), r.in2(st), st.n, r.out(st));
}

void eval_mul_avx512(const Run& r, const Step& st) {
  mul_u8_avx512(st.mul, r.in(st), r.in2(st), st.n, r.out(st));
}

const StepType kMulRef{Step::Kind::Mul, "mul(ref)", eval_mul_ref};
const StepType kMul{Step::Kind::Mul, "mul", eval_mul};
const StepType kMulAvx512{Step::Kind::Mul, "mul(avx512)", eval_mul_avx512};

#if defined(__x86_64__) || defined(__i386__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// n (<= 16 under mask m) products (a − zp_a)·g requantized: the product fits int32 (|·| <= 255²),
// (prod · M + 2^(shift−1)) >> shift in int64 lanes (even and odd halves), which fits int32 for
// shift >= 17 (mul_u8_avx512 checks), + zp, clamp.
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void mul16(
    const uint8_t* a, __m512i g, __mmask16 m, __m512i zpa, __m512i mult, __m512i add, __m128i shift,
    __m512i zpo, __m512i lo, __m512i hi, uint8_t* y) {
  const __m512i prod = _mm512_mullo_epi32(
      _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, a)), zpa), g);
  const __m512i even = _mm512_sra_epi64(_mm512_add_epi64(_mm512_mul_epi32(prod, mult), add), shift);
  const __m512i odd = _mm512_sra_epi64(
      _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(prod, 32), mult), add), shift);
  __m512i v = _mm512_mask_blend_epi32(__mmask16(0xAAAA), even, _mm512_slli_epi64(odd, 32));
  v = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(v, zpo), lo), hi);
  _mm_mask_storeu_epi8(y, m, _mm512_cvtepi32_epi8(v));
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) void mul_avx512(const MulParams& p,
                                                                     const uint8_t* a,
                                                                     const uint8_t* b, int64_t n,
                                                                     uint8_t* y) {
  const __m512i zpa = _mm512_set1_epi32(p.zp_a), mult = _mm512_set1_epi64(p.m.multiplier),
                add = _mm512_set1_epi64(int64_t{1} << (p.m.shift - 1)),
                zpo = _mm512_set1_epi32(p.zp_out), lo = _mm512_set1_epi32(p.lo),
                hi = _mm512_set1_epi32(p.hi), zpb = _mm512_set1_epi32(p.zp_b);
  const __m128i shift = _mm_cvtsi64_si128(p.m.shift);
  const auto mask = [](int64_t left) {
    return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
  };
  if (p.per == 1) {  // element-wise: the gate codes alongside
    for (int64_t k = 0; k < n; k += 16) {
      const __mmask16 m = mask(n - k);
      const __m512i g = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, b + k)), zpb);
      mul16(a + k, g, m, zpa, mult, add, shift, zpo, lo, hi, y + k);
    }
    return;
  }
  for (int64_t i0 = 0; i0 < n; i0 += p.per) {  // one gate a run of per elements
    const int64_t i1 = std::min(n, i0 + p.per);
    const __m512i g = _mm512_set1_epi32(int32_t{b[i0 / p.per]} - p.zp_b);
    for (int64_t k = i0; k < i1; k += 16)
      mul16(a + k, g, mask(i1 - k), zpa, mult, add, shift, zpo, lo, hi, y + k);
  }
}
#pragma GCC diagnostic pop
#endif

}  // namespace

void mul_u8_avx512(const MulParams& p, const uint8_t* a, const uint8_t* b, int64_t n, uint8_t* y) {
#if defined(__x86_64__) || defined(__i386__)
  // The int64 lanes hold (prod · M + 2^(shift−1)) >> shift only for 0 < shift < 63, and it fits
  // the int32 lanes for shift >= 17 (|prod · M| < 2^47); others, and CPUs without AVX-512: the
  // scalar form.
  if (cpu_has_avx512vnni() && p.m.shift >= 17 && p.m.shift < 63) return mul_avx512(p, a, b, n, y);
#endif
  mul_u8_fast(p, a, b, n, y);
}

void prepare_mul(Context& c, int node) {
  Context::Binary b = c.binary(node, "mul", true);
  Step& st = b.st;
  st.mul = make_mul_params(b.pa->scale, b.pa->zero_point, b.pb->scale, b.pb->zero_point, b.q->scale,
                           b.q->zero_point, b.lo, b.hi, st.n / c.numel(c.g.nodes[node].inputs[1]));
  const int64_t n = st.n;
  c.push_output(node, std::move(st),
                c.isa == Isa::Reference    ? kMulRef
                : c.isa == Isa::Avx512Vnni ? kMulAvx512
                                           : kMul,
                b.w, n);
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
