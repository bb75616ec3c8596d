// The AVX-512 VNNI tier (EVEX vpdpbusd on zmm: Ice Lake / Sapphire Rapids, Zen 4 and later): one
// 64-byte Quad8Block is one zmm of weights (16 channels × 4 taps), so a tile is 16 channels ×
// 12 pixels with one zmm accumulator a pixel: per tap group one weight load, 12 broadcasts and
// 12 vpdpbusd (12 independent chains cover its latency of 5 at one or two a cycle). u8 × s8, 4 taps
// straight into int32: exact for all 8-bit weights. Compiled everywhere with the target
// attribute, run only where cpu_has_avx512vnni() (cpuid and the OS's zmm state) says so.
#include "kernels.h"

namespace sq::kernels {

namespace {

constexpr int kNr = 12;

#ifdef SQ_X86
#define SQ_ZMM_STEP(P)                                          \
  do {                                                          \
    int32_t v;                                                  \
    std::memcpy(&v, x##P + g, sizeof v);                        \
    a##P = _mm512_dpbusd_epi32(a##P, _mm512_set1_epi32(v), wv); \
  } while (0)
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void tile_avx512vnni_dpbusd(
    const void* wp, const void* src, const int64_t* pix, const int64_t* grp, int64_t ng, int64_t,
    int32_t* acc) {
  const int8_t* w = static_cast<const int8_t*>(wp);
  const uint8_t* base = static_cast<const uint8_t*>(src);
  const uint8_t *x0 = base + pix[0], *x1 = base + pix[1], *x2 = base + pix[2], *x3 = base + pix[3],
                *x4 = base + pix[4], *x5 = base + pix[5], *x6 = base + pix[6], *x7 = base + pix[7],
                *x8 = base + pix[8], *x9 = base + pix[9], *x10 = base + pix[10],
                *x11 = base + pix[11];
  const __m512i z = _mm512_setzero_si512();
  __m512i a0 = z, a1 = z, a2 = z, a3 = z, a4 = z, a5 = z, a6 = z, a7 = z, a8 = z, a9 = z, a10 = z,
          a11 = z;
  for (int64_t j = 0; j < ng; ++j) {
    const __m512i wv = _mm512_loadu_si512(w + j * 64);
    const int64_t g = grp[j];
    SQ_ZMM_STEP(0);
    SQ_ZMM_STEP(1);
    SQ_ZMM_STEP(2);
    SQ_ZMM_STEP(3);
    SQ_ZMM_STEP(4);
    SQ_ZMM_STEP(5);
    SQ_ZMM_STEP(6);
    SQ_ZMM_STEP(7);
    SQ_ZMM_STEP(8);
    SQ_ZMM_STEP(9);
    SQ_ZMM_STEP(10);
    SQ_ZMM_STEP(11);
  }
  const __m512i out[kNr] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11};
  for (int p = 0; p < kNr; ++p) _mm512_storeu_si512(acc + p * kMr, out[p]);
}
#undef SQ_ZMM_STEP

const ConvMicroKernel kDpbusdZmm = {"avx512vnni_dpbusd",
                                    Isa::Avx512Vnni,
                                    cpu_has_avx512vnni,
                                    kMr,
                                    kNr,
                                    4,
                                    WeightLayout::Quad8,
                                    always,
                                    no_flush,
                                    1,
                                    tile_avx512vnni_dpbusd};
#endif

}  // namespace

KernelList avx512vnni_kernels() {
#ifdef SQ_X86
  return {&kDpbusdZmm};
#else
  return {};
#endif
}

}  // namespace sq::kernels
