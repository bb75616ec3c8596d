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
// The tile for NP <= 12 pixels (12: the full tile; fewer: the last tile of a layer whose pixel
// count is no multiple of 12, e.g. 49 at 7 × 7, 4 at 2 × 2), with named accumulators: the pixels
// past NP are neither loaded nor computed (a 2 × 2 map on 12-pixel tiles did 3× its work).
#define SQ_ZMM_STEP(P)                                            \
  do {                                                            \
    if constexpr (P < NP) {                                       \
      int32_t v;                                                  \
      std::memcpy(&v, x##P + g, sizeof v);                        \
      a##P = _mm512_dpbusd_epi32(a##P, _mm512_set1_epi32(v), wv); \
    }                                                             \
  } while (0)
template <int NP>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void tile_avx512vnni_dpbusd(
    const void* wp, const void* src, const int64_t* pix, const int64_t* grp, int64_t ng, int64_t,
    int32_t* acc) {
  static_assert(NP >= 1 && NP <= kNr);
  const int8_t* w = static_cast<const int8_t*>(wp);
  const uint8_t* base = static_cast<const uint8_t*>(src);
  // Pixel p's pointer (pixels past NP are never read).
#define SQ_ZMM_PIX(P) (base + pix[P < NP ? P : 0])
  const uint8_t *x0 = SQ_ZMM_PIX(0), *x1 = SQ_ZMM_PIX(1), *x2 = SQ_ZMM_PIX(2), *x3 = SQ_ZMM_PIX(3),
                *x4 = SQ_ZMM_PIX(4), *x5 = SQ_ZMM_PIX(5), *x6 = SQ_ZMM_PIX(6), *x7 = SQ_ZMM_PIX(7),
                *x8 = SQ_ZMM_PIX(8), *x9 = SQ_ZMM_PIX(9), *x10 = SQ_ZMM_PIX(10),
                *x11 = SQ_ZMM_PIX(11);
#undef SQ_ZMM_PIX
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
  // Stored one by one (an array of the 12 would realign the stack and take rbp from the loop).
#define SQ_ZMM_STORE(P) \
  if constexpr (P < NP) _mm512_storeu_si512(acc + P * kMr, a##P)
  SQ_ZMM_STORE(0);
  SQ_ZMM_STORE(1);
  SQ_ZMM_STORE(2);
  SQ_ZMM_STORE(3);
  SQ_ZMM_STORE(4);
  SQ_ZMM_STORE(5);
  SQ_ZMM_STORE(6);
  SQ_ZMM_STORE(7);
  SQ_ZMM_STORE(8);
  SQ_ZMM_STORE(9);
  SQ_ZMM_STORE(10);
  SQ_ZMM_STORE(11);
#undef SQ_ZMM_STORE
}
#undef SQ_ZMM_STEP
// The short tiles, by pixel count (index 0 unused).
constexpr ConvTileFn kTails[kNr] = {nullptr,
                                    tile_avx512vnni_dpbusd<1>,
                                    tile_avx512vnni_dpbusd<2>,
                                    tile_avx512vnni_dpbusd<3>,
                                    tile_avx512vnni_dpbusd<4>,
                                    tile_avx512vnni_dpbusd<5>,
                                    tile_avx512vnni_dpbusd<6>,
                                    tile_avx512vnni_dpbusd<7>,
                                    tile_avx512vnni_dpbusd<8>,
                                    tile_avx512vnni_dpbusd<9>,
                                    tile_avx512vnni_dpbusd<10>,
                                    tile_avx512vnni_dpbusd<11>};

// GCC 12's AVX-512 intrinsics start several results from _mm512_undefined_epi32() (an
// intentionally uninitialized __Y), which -Wuninitialized reports once they are inlined here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// EpilogueQ32 for the 16 × 12 tile, equal to epilogue_avx2_q32 (conv_fast.cpp) on twice the
// channels: per pixel one zmm of 16 channels — the exact 64-bit products of the even and the odd
// lanes (_mm512_mul_epi32), their high halves, the shift, the zero point, the clamp — packed to
// bytes (vpmovdb). The 12 × 16 bytes (pixel-major) are then transposed to channel-major in
// registers (per 4 pixels a dword permute and a byte shuffle, then 4 × 4 dword transposes), so
// each channel's np codes go out as one masked 16-byte store, not byte by byte.
__attribute__((target("avx512f,avx512bw,avx512vl"))) void epilogue_avx512_q32(
    const int32_t* acc, const EpilogueQ32& q, const int64_t* ch, int64_t noc, int64_t np,
    int64_t pix, uint8_t* y) {
  const __m512i b = _mm512_loadu_si512(q.bias), sh = _mm512_loadu_si512(q.shift);
  const __m512i me = _mm512_loadu_si512(q.mult), mo = _mm512_loadu_si512(q.mult + 8);
  const __m512i re = _mm512_loadu_si512(q.round), ro = _mm512_loadu_si512(q.round + 8);
  const __m512i zp = _mm512_set1_epi32(q.zp), lo = _mm512_set1_epi32(q.lo),
                hi = _mm512_set1_epi32(q.hi);
  __m128i codes[16];              // pixel p's 16 channels; pixels np..15 are zeros, never stored
  for (int p = 0; p < np; ++p) {  // the pixels past np (a short last tile) are not stored
    const __m512i a = _mm512_add_epi32(b, _mm512_loadu_si512(acc + p * kMr));
    const __m512i pe = _mm512_add_epi64(_mm512_mul_epi32(a, me), re);
    const __m512i po = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(a, 32), mo), ro);
    const __m512i t = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
    __m512i v = _mm512_add_epi32(_mm512_srav_epi32(t, sh), zp);
    v = _mm512_min_epi32(_mm512_max_epi32(v, lo), hi);
    codes[p] = _mm512_cvtepi32_epi8(v);
  }
  for (int64_t p = np; p < 16; ++p) codes[p] = _mm_setzero_si128();
  // z[k] = pixels 4k..4k+3 (one per 128-bit lane) → dword 4·c' + j = channel group c' (4
  // channels) of pixel 4k + j (vpermd), then within each lane a 4 × 4 byte transpose (vpshufb):
  // dword c = channel c's 4 pixels.
  const __m512i gather = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m512i tr =
      _mm512_broadcast_i32x4(_mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
  __m512i z[4];
  for (int k = 0; k < 4; ++k) {
    __m512i v = _mm512_zextsi128_si512(codes[4 * k]);
    v = _mm512_inserti32x4(v, codes[4 * k + 1], 1);
    v = _mm512_inserti32x4(v, codes[4 * k + 2], 2);
    v = _mm512_inserti32x4(v, codes[4 * k + 3], 3);
    z[k] = _mm512_shuffle_epi8(_mm512_permutexvar_epi32(gather, v), tr);
  }
  // Per 128-bit lane l, dwords 4l..4l+3 of z[0..3] (channels 4l..4l+3, pixels 0-3, 4-7, 8-11,
  // 12-15) transposed: r[i] lane l = channel 4l + i's 16 pixels.
  const __m512i a0 = _mm512_unpacklo_epi32(z[0], z[1]), a1 = _mm512_unpackhi_epi32(z[0], z[1]);
  const __m512i c0 = _mm512_unpacklo_epi32(z[2], z[3]), c1 = _mm512_unpackhi_epi32(z[2], z[3]);
  alignas(64) uint8_t rows[4][64];
  _mm512_store_si512(rows[0], _mm512_unpacklo_epi64(a0, c0));
  _mm512_store_si512(rows[1], _mm512_unpackhi_epi64(a0, c0));
  _mm512_store_si512(rows[2], _mm512_unpacklo_epi64(a1, c1));
  _mm512_store_si512(rows[3], _mm512_unpackhi_epi64(a1, c1));
  const __mmask16 m = static_cast<__mmask16>((1u << np) - 1);
  for (int64_t o = 0; o < noc; ++o)
    _mm_mask_storeu_epi8(
        y + ch[o] * pix, m,
        _mm_load_si128(reinterpret_cast<const __m128i*>(rows[o % 4] + 16 * (o / 4))));
}
#pragma GCC diagnostic pop

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
                                    tile_avx512vnni_dpbusd<kNr>,
                                    epilogue_avx512_q32,
                                    kTails};
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
