// Optimized conv2d / linear (groups = 1): the raw activations staged as a zp_x-bordered HWC copy
// (direct mode: most layers) or as im2col rows (few-channel stems), then a 16-channel × 6-pixel
// micro-kernel per ISA, chosen once in prepare (engine.h lists them), and the requantizing
// epilogue. Every kernel computes Σ w·x in int32 over raw x (padding taps hold zp_x) without
// rounding or saturation; the bias absorbs −zp_x·Σw in int64, so acc equals the reference's bias +
// Σ w·(x − zp_x) exactly. int32 cannot overflow: prepare checks K·255·128 < 2^31.
#include <algorithm>
#include <climits>
#include <cstring>
#include <type_traits>

#include "sigmaquant/engine.h"
#include "sigmaquant/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define SQ_X86 1
#endif

namespace sq {

namespace {

constexpr int kOc = PreparedConv2d::kOcTile, kPix = PreparedConv2d::kPixTile;
using Kernel = PreparedConv2d::Kernel;

// 16 channels × 6 pixels = 12 accumulators + 2 weight vectors + 1 broadcast: the 16 ymm
// registers, and enough independent dpbusd chains (latency 5) for 2 a cycle. 16×4 ran
// ~latency-bound.
static_assert(kOc == 16 && kPix == 6, "the micro-kernels are written for a 16x6 tile");
static_assert(sizeof(Pair16Block::w) / sizeof(Pair16Block::w[0]) == kOc &&
                  sizeof(Quad8Block::w) / sizeof(Quad8Block::w[0]) == kOc,
              "a weight block holds one tile of output channels");
constexpr int64_t kTaps16 = 2, kTaps8 = 4;  // taps per block

// Every micro-kernel computes one tile, acc[p][o] = Σ_j Σ_e w[j][o][e] · x_p[j][e], where pixel
// p's tap group j (2 int16 or 4 uint8 taps) starts at src + pix[p] + grp[j]: consecutive im2col
// rows (pix[p] = p·kp, grp[j] = j·taps) or the padded HWC input (direct mode, see prepare).
void tile_portable(const void* wv, const void* srcv, const int64_t* pix, const int64_t* grp,
                   int64_t ng, int32_t* acc) {
  const int16_t* w = static_cast<const int16_t*>(wv);
  for (int p = 0; p < kPix; ++p) {
    const int16_t* c = static_cast<const int16_t*>(srcv) + pix[p];
    int32_t a[kOc] = {};
    for (int64_t j = 0; j < ng; ++j) {
      const int16_t* wj = w + j * 2 * kOc;
      const int32_t x0 = c[grp[j]], x1 = c[grp[j] + 1];
      for (int o = 0; o < kOc; ++o) a[o] += wj[2 * o] * x0 + wj[2 * o + 1] * x1;
    }
    std::copy(a, a + kOc, acc + p * kOc);
  }
}

#ifdef SQ_X86
// Broadcasts one group of activations (2 int16 or 4 uint8 = 32 bits) to every 32-bit lane. A
// function, not a lambda: lambdas do not inherit the target attribute.
__attribute__((target("avx2"))) inline __m256i broadcast32(const void* c) {
  int32_t v;
  std::memcpy(&v, c, sizeof v);
  return _mm256_set1_epi32(v);
}

// The three AVX2-class micro-kernels differ only in the element type and the multiply-accumulate
// step, STEP(acc, broadcast activations, weights) → acc. One macro writes them with 12 named
// accumulators and 6 named pixel pointers: GCC kept an __m256i a[6][2] array partly on the stack
// (a store per accumulator per tap group), which cost as much as the dpbusds.
#define SQ_PIX_STEP(P, STEP)                 \
  do {                                       \
    const __m256i b = broadcast32(x##P + g); \
    a##P##0 = STEP(a##P##0, b, w0);          \
    a##P##1 = STEP(a##P##1, b, w1);          \
  } while (0)
#define SQ_PIX_STORE(P)                                                          \
  do {                                                                           \
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + P * kOc), a##P##0);     \
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + P * kOc + 8), a##P##1); \
  } while (0)
#define SQ_TILE_KERNEL(NAME, TARGET, T, WT, STEP)                                                \
  __attribute__((target(TARGET))) void NAME(const void* wv, const void* src, const int64_t* pix, \
                                            const int64_t* grp, int64_t ng, int32_t* acc) {      \
    const WT* w = static_cast<const WT*>(wv);                                                    \
    const T* base = static_cast<const T*>(src);                                                  \
    const T *x0 = base + pix[0], *x1 = base + pix[1], *x2 = base + pix[2], *x3 = base + pix[3],  \
            *x4 = base + pix[4], *x5 = base + pix[5];                                            \
    const __m256i z = _mm256_setzero_si256();                                                    \
    __m256i a00 = z, a01 = z, a10 = z, a11 = z, a20 = z, a21 = z, a30 = z, a31 = z, a40 = z,     \
            a41 = z, a50 = z, a51 = z;                                                           \
    constexpr int64_t kStep = 64 / sizeof(WT); /* one 64-byte block per tap group */             \
    for (int64_t j = 0; j < ng; ++j) {                                                           \
      const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j * kStep));    \
      const __m256i w1 =                                                                         \
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j * kStep + kStep / 2));       \
      const int64_t g = grp[j];                                                                  \
      SQ_PIX_STEP(0, STEP);                                                                      \
      SQ_PIX_STEP(1, STEP);                                                                      \
      SQ_PIX_STEP(2, STEP);                                                                      \
      SQ_PIX_STEP(3, STEP);                                                                      \
      SQ_PIX_STEP(4, STEP);                                                                      \
      SQ_PIX_STEP(5, STEP);                                                                      \
    }                                                                                            \
    SQ_PIX_STORE(0);                                                                             \
    SQ_PIX_STORE(1);                                                                             \
    SQ_PIX_STORE(2);                                                                             \
    SQ_PIX_STORE(3);                                                                             \
    SQ_PIX_STORE(4);                                                                             \
    SQ_PIX_STORE(5);                                                                             \
  }
static_assert(kPix == 6, "SQ_TILE_KERNEL names 6 pixels");

// int16 × int16 pairs summed into int32: exact for any 8-bit weight and uint8 activation.
#define SQ_STEP_MADD16(a, b, w) _mm256_add_epi32(a, _mm256_madd_epi16(w, b))
SQ_TILE_KERNEL(tile_avx2_madd16, "avx2", int16_t, int16_t, SQ_STEP_MADD16)

// u8 × s8 pairs into int16 (maddubs), then pairs of those into int32 (madd with ones). maddubs
// saturates at ±32767: exact only for max|w| <= 64 (checked in prepare).
#define SQ_STEP_MADDUBS(a, b, w) \
  _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_maddubs_epi16(b, w), _mm256_set1_epi16(1)))
SQ_TILE_KERNEL(tile_avx2_maddubs, "avx2", uint8_t, int8_t, SQ_STEP_MADDUBS)

// u8 × s8, 4 taps summed straight into int32 (AVX-VNNI vpdpbusd): exact for all 8-bit weights.
#define SQ_STEP_DPBUSD(a, b, w) _mm256_dpbusd_avx_epi32(a, b, w)
SQ_TILE_KERNEL(tile_avxvnni_dpbusd, "avx2,avxvnni", uint8_t, int8_t, SQ_STEP_DPBUSD)

#undef SQ_STEP_DPBUSD
#undef SQ_STEP_MADDUBS
#undef SQ_STEP_MADD16
#undef SQ_TILE_KERNEL
#undef SQ_PIX_STORE
#undef SQ_PIX_STEP
#endif

// sq::requantize (integerize.cpp) without its 128-bit product where 64 bits are exact: for
// |a| < 2^31 and multiplier < 2^31 the product is below 2^62 and adding 2^(shift−1) (shift <= 62)
// and the offset (|offset| <= 2^30) cannot overflow. Same rounding (half up), same arithmetic
// shift, same saturation.
inline int32_t requantize_fast(int64_t a, const Requant& r) {
  if (a > -(int64_t{1} << 31) && a < (int64_t{1} << 31) && r.shift >= 1 && r.shift <= 62) {
    const int64_t v = (a * r.multiplier + r.offset + (int64_t{1} << (r.shift - 1))) >> r.shift;
    return static_cast<int32_t>(std::clamp<int64_t>(v, INT32_MIN, INT32_MAX));
  }
  return requantize(a, r);
}

#ifdef SQ_X86
// The epilogue of one tile for 4 channels at a time in int64 lanes, equal to the scalar one:
//   v = (a · multiplier + offset + 2^(shift−1)) >> shift   (a = bias + dot, |a| < 2^31,
//                                                       1 <= shift <= 62; round = the last two)
//   y = clamp(v + zp_out, lo, hi)
// _mm256_mul_epi32 forms the exact 64-bit product of the low 32 bits (a fits, checked per group;
// a group with a larger |a| goes through requantize_fast). AVX2 has no 64-bit arithmetic shift:
// floor(x / 2^s) = ~(~x >>> s) for x < 0. Saturating v to int32 before adding zp_out (as
// requantize does) changes nothing once the result is clamped to [lo, hi] within 0..255.
__attribute__((target("avx2"))) void epilogue_avx2(const int32_t* acc, const int64_t* bias,
                                                   const int64_t* mult, const int64_t* shift,
                                                   const int64_t* round, const Requant* requant,
                                                   int64_t noc, int64_t np, int64_t pix,
                                                   int32_t zp_out, int32_t lo, int32_t hi,
                                                   uint8_t* y) {
  const __m256i zero = _mm256_setzero_si256();
  const __m256i lim_hi = _mm256_set1_epi64x(int64_t{1} << 31),
                lim_lo = _mm256_set1_epi64x(-(int64_t{1} << 31));
  const __m256i zp = _mm256_set1_epi64x(zp_out), vlo = _mm256_set1_epi64x(lo),
                vhi = _mm256_set1_epi64x(hi);
  alignas(32) int64_t out[4];
  for (int64_t g = 0; g < noc; g += 4) {
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias + g));
    const __m256i m = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mult + g));
    const __m256i sh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(shift + g));
    const __m256i rd = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(round + g));
    const int64_t ng = std::min<int64_t>(4, noc - g);
    for (int64_t p = 0; p < np; ++p) {
      const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(acc + p * kOc + g));
      const __m256i a = _mm256_add_epi64(b, _mm256_cvtepi32_epi64(d));
      const __m256i fits =
          _mm256_and_si256(_mm256_cmpgt_epi64(lim_hi, a), _mm256_cmpgt_epi64(a, lim_lo));
      if (_mm256_movemask_epi8(fits) != -1) {  // rare: |a| >= 2^31
        for (int64_t i = 0; i < ng; ++i) {
          const int64_t v =
              int64_t{requantize_fast(bias[g + i] + acc[p * kOc + g + i], requant[g + i])} + zp_out;
          y[(g + i) * pix + p] = static_cast<uint8_t>(std::clamp<int64_t>(v, lo, hi));
        }
        continue;
      }
      const __m256i prod = _mm256_add_epi64(_mm256_mul_epi32(a, m), rd);
      const __m256i sign = _mm256_cmpgt_epi64(zero, prod);
      __m256i v = _mm256_xor_si256(_mm256_srlv_epi64(_mm256_xor_si256(prod, sign), sh), sign);
      v = _mm256_add_epi64(v, zp);
      v = _mm256_blendv_epi8(v, vlo, _mm256_cmpgt_epi64(vlo, v));
      v = _mm256_blendv_epi8(v, vhi, _mm256_cmpgt_epi64(v, vhi));
      _mm256_store_si256(reinterpret_cast<__m256i*>(out), v);
      for (int64_t i = 0; i < ng; ++i) y[(g + i) * pix + p] = static_cast<uint8_t>(out[i]);
    }
  }
}

// The epilogue of the tiles whose channels all have 32 <= shift <= 62 (every output scale below
// half the accumulator's unit: real conv layers) and |bias'| + K·255·128 < 2^31, 8 channels a
// vector in int32 lanes, equal to the scalar one:
//   a = bias' + dot                    int32, cannot overflow (the bound, checked in prepare)
//   t = (a · multiplier + round) >> 32 the exact int64 products of the even and the odd lanes
//                                      (_mm256_mul_epi32), their high halves
//   v = t >> (shift − 32)              floor(floor(x / 2^32) / 2^(s−32)) = floor(x / 2^s)
//   y = clamp(v + zp_out, lo, hi)
// |a · multiplier + round| < 2^62 + 2^61 + 2^30, so t fits int32 and v + zp_out cannot overflow
// (requantize's int32 saturation never acts). Each y is 0..255, so one channel's 6 pixels are
// OR-ed into two 32-bit lanes and stored with a 4- and a 2-byte write, not 6 byte stores.
__attribute__((target("avx2"))) void epilogue_avx2_q32(const int32_t* acc, const int32_t* bias,
                                                       const int64_t* mult, const int64_t* round,
                                                       const int32_t* shift, int64_t noc,
                                                       int64_t np, int64_t pix, int32_t zp_out,
                                                       int32_t lo, int32_t hi, uint8_t* y) {
  const __m256i zp = _mm256_set1_epi32(zp_out), vlo = _mm256_set1_epi32(lo),
                vhi = _mm256_set1_epi32(hi);
  alignas(32) uint32_t out[2][8];
  for (int64_t h = 0; h * 8 < noc; ++h) {  // channels 8h .. 8h+7 of the tile
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias + 8 * h));
    const __m256i sh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(shift + 8 * h));
    const __m256i me = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mult + 8 * h));
    const __m256i mo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mult + 8 * h + 4));
    const __m256i re = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(round + 8 * h));
    const __m256i ro = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(round + 8 * h + 4));
    __m256i packed[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};  // pixels 0-3, 4-5
    for (int p = 0; p < kPix; ++p) {  // pixels past np hold padded rows: computed, not stored
      const __m256i a = _mm256_add_epi32(
          b, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + p * kOc + 8 * h)));
      const __m256i pe = _mm256_add_epi64(_mm256_mul_epi32(a, me), re);
      const __m256i po = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(a, 32), mo), ro);
      const __m256i t = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
      __m256i v = _mm256_add_epi32(_mm256_srav_epi32(t, sh), zp);
      v = _mm256_min_epi32(_mm256_max_epi32(v, vlo), vhi);
      packed[p / 4] =
          _mm256_or_si256(packed[p / 4], _mm256_sll_epi32(v, _mm_cvtsi32_si128(8 * (p % 4))));
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(out[0]), packed[0]);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out[1]), packed[1]);
    const int64_t nc = std::min<int64_t>(8, noc - 8 * h);
    uint8_t* yo = y + 8 * h * pix;
    if (np == kPix) {
      for (int64_t i = 0; i < nc; ++i) {
        std::memcpy(yo + i * pix, &out[0][i], 4);
        std::memcpy(yo + i * pix + 4, &out[1][i], kPix - 4);
      }
    } else {
      const auto n0 = static_cast<size_t>(std::min<int64_t>(np, 4));
      const auto n1 = static_cast<size_t>(std::max<int64_t>(np - 4, 0));
      for (int64_t i = 0; i < nc; ++i) {
        std::memcpy(yo + i * pix, &out[0][i], n0);
        std::memcpy(yo + i * pix + 4, &out[1][i], n1);
      }
    }
  }
}
#endif

using TileFn = void (*)(const void*, const void*, const int64_t*, const int64_t*, int64_t,
                        int32_t*);

TileFn tile_fn(Kernel k) {
  switch (k) {
#ifdef SQ_X86
    case Kernel::Avx2Madd16:
      return tile_avx2_madd16;
    case Kernel::Avx2Maddubs:
      return tile_avx2_maddubs;
    case Kernel::AvxVnniDpbusd:
      return tile_avxvnni_dpbusd;
#endif
    default:
      return tile_portable;
  }
}

bool uses_int8_layout(Kernel k) { return k == Kernel::Avx2Maddubs || k == Kernel::AvxVnniDpbusd; }

// im2col: row p of col (kp entries) holds the receptive field of output pixel p in weight order
// (i, ky, kx); padding taps hold zp (the real value 0). Entries k..kp−1 stay 0 (zero weights).
// kK is the kernel size when known at compile time (the common 1 and 3: the inner copies unroll),
// else 0 and s.kernel is used.
template <int kK, typename T>
void im2col(const ConvShape& s, const uint8_t* x, T zp, int64_t kp, int64_t pix, T* col) {
  const int64_t ow = s.out_w(), k = kK ? kK : s.kernel;
  for (int64_t p = 0; p < pix; ++p) {
    const int64_t oy = p / ow, ox = p % ow;
    const int64_t ix0 = ox * s.stride - s.padding;
    const bool x_inside = ix0 >= 0 && ix0 + k <= s.in_w;
    T* r = col + p * kp;
    for (int64_t i = 0; i < s.in_c; ++i) {
      const uint8_t* xc = x + i * s.in_h * s.in_w;
      for (int64_t ky = 0; ky < k; ++ky, r += k) {
        const int64_t iy = oy * s.stride - s.padding + ky;
        if (iy < 0 || iy >= s.in_h) {
          for (int64_t kx = 0; kx < k; ++kx) r[kx] = zp;
        } else if (x_inside) {  // interior: no bounds checks
          const uint8_t* xr = xc + iy * s.in_w + ix0;
          for (int64_t kx = 0; kx < k; ++kx) r[kx] = static_cast<T>(xr[kx]);
        } else {
          const uint8_t* xr = xc + iy * s.in_w;
          for (int64_t kx = 0; kx < k; ++kx) {
            const int64_t ix = ix0 + kx;
            r[kx] = (ix < 0 || ix >= s.in_w) ? zp : static_cast<T>(xr[ix]);
          }
        }
      }
    }
  }
}

template <typename T>
void im2col_any(const ConvShape& s, const uint8_t* x, T zp, int64_t kp, int64_t pix, T* col) {
  switch (s.kernel) {
    case 1:
      return im2col<1>(s, x, zp, kp, pix, col);
    case 3:
      return im2col<3>(s, x, zp, kp, pix, col);
    default:
      return im2col<0>(s, x, zp, kp, pix, col);
  }
}

#ifdef SQ_X86
// 16 channels × 8 pixels of CHW bytes (channel c's 8 bytes at x + c·cstride) → 8 pixels × 16
// channels (pixel q's at dst + q·cp): a byte transpose in four rounds of SSE2 unpacks, 16 loads
// and 8 stores for 128 bytes.
inline void transpose_16x8_u8(const uint8_t* x, int64_t cstride, uint8_t* dst, int64_t cp) {
  __m128i r[16], t[8], u[8], v[8];
  for (int c = 0; c < 16; ++c)
    r[c] = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + c * cstride));
  for (int i = 0; i < 8; ++i) t[i] = _mm_unpacklo_epi8(r[2 * i], r[2 * i + 1]);  // 8 px × 2 ch
  for (int i = 0; i < 4; ++i) {  // channels 4i..4i+3: pixels 0-3, pixels 4-7
    u[2 * i] = _mm_unpacklo_epi16(t[2 * i], t[2 * i + 1]);
    u[2 * i + 1] = _mm_unpackhi_epi16(t[2 * i], t[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {  // channels 8i..8i+7: pixels 0-1, 2-3, 4-5, 6-7
    v[4 * i] = _mm_unpacklo_epi32(u[4 * i], u[4 * i + 2]);
    v[4 * i + 1] = _mm_unpackhi_epi32(u[4 * i], u[4 * i + 2]);
    v[4 * i + 2] = _mm_unpacklo_epi32(u[4 * i + 1], u[4 * i + 3]);
    v[4 * i + 3] = _mm_unpackhi_epi32(u[4 * i + 1], u[4 * i + 3]);
  }
  for (int k = 0; k < 4; ++k) {  // pixels 2k, 2k+1: channels 0-7 then 8-15
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * k * cp),
                     _mm_unpacklo_epi64(v[k], v[4 + k]));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (2 * k + 1) * cp),
                     _mm_unpackhi_epi64(v[k], v[4 + k]));
  }
}
#endif

// Direct mode: x (CHW) into the interior of the zp_x-bordered HWC scratch (pixel-major, cp
// entries a pixel); the border and the padded channels were filled at prepare and stay as they are.
// in_c·H·W writes in place of im2col's k²·in_c·out_h·out_w. uint8 rows of at least 8 pixels go
// through the 16×8 transpose, 16 channels at a time (the last block of a row overlaps the one
// before, rewriting the same bytes); the rest, and the int16 layout, element by element. The
// shape is copied into locals: stores through T* = uint8_t* may alias it, and GCC reloaded it.
template <typename T>
void to_hwc(const ConvShape& s, const uint8_t* x, int64_t cp, T* buf) {
  const int64_t h = s.in_h, w = s.in_w, c = s.in_c, pad = s.padding, wp = w + 2 * pad,
                plane = h * w;
  int64_t c_vec = 0;  // channels [0, c_vec) by transposes
#ifdef SQ_X86
  if constexpr (std::is_same_v<T, uint8_t>) c_vec = w >= 8 ? c / 16 * 16 : 0;
#endif
  for (int64_t iy = 0; iy < h; ++iy) {
    T* row = buf + ((iy + pad) * wp + pad) * cp;
    const uint8_t* xr = x + iy * w;
#ifdef SQ_X86
    if constexpr (std::is_same_v<T, uint8_t>) {
      for (int64_t c0 = 0; c0 < c_vec; c0 += 16)
        for (int64_t ix = 0;; ix += 8) {
          const int64_t at = std::min(ix, w - 8);
          transpose_16x8_u8(xr + c0 * plane + at, plane, row + at * cp + c0, cp);
          if (at == w - 8) break;
        }
    }
#endif
    for (int64_t i = c_vec; i < c; ++i) {
      const uint8_t* xc = xr + i * plane;
      for (int64_t ix = 0; ix < w; ++ix) row[ix * cp + i] = static_cast<T>(xc[ix]);
    }
  }
}

template <typename T>
void stage_input(const ConvShape& s, const uint8_t* x, T zp, bool direct, int64_t cp, int64_t kp,
                 int64_t pix, T* scratch) {
  if (direct) {
    to_hwc(s, x, cp, scratch);
  } else {
    im2col_any(s, x, zp, kp, pix, scratch);
  }
}

}  // namespace

bool cpu_has_avx2() {
#ifdef SQ_X86
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return has;
#else
  return false;
#endif
}

bool cpu_has_avxvnni() {
#ifdef SQ_X86
  // AVX-VNNI is CPUID leaf 7, sub-leaf 1, EAX bit 4 (clang 14 has no "avxvnni" for
  // __builtin_cpu_supports). The AVX2 check covers the OS saving the YMM state.
  static const bool has = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return cpu_has_avx2() && __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) && ((eax >> 4) & 1u);
  }();
  return has;
#else
  return false;
#endif
}

Isa best_isa() {
  return cpu_has_avxvnni() ? Isa::AvxVnni : cpu_has_avx2() ? Isa::Avx2 : Isa::Portable;
}

namespace {

const char* name_of(Kernel k) {
  switch (k) {
    case Kernel::Avx2Madd16:
      return "avx2_madd16";
    case Kernel::Avx2Maddubs:
      return "avx2_maddubs";
    case Kernel::AvxVnniDpbusd:
      return "avxvnni_dpbusd";
    default:
      return "portable";
  }
}

// maddubs sums two u8 × s8 products in int16: 2·255·64 = 32640 fits, 2·255·65 does not.
constexpr int32_t kMaddubsMaxWeight = 64;

}  // namespace

const char* PreparedConv2d::kernel_name() const { return name_of(kernel_); }

// The dispatch: an ISA and the layer's weights name the kernel; the Kernel form does the rest.
PreparedConv2d prepare_conv2d_u8(const ConvShape& s, const IntLayer& L, Isa isa) {
  if (isa == Isa::Reference)
    fail(
        "prepare_conv2d_u8: Isa::Reference is for executors (expected Auto, Portable, Avx2 or "
        "AvxVnni)");
  if (isa == Isa::Auto) isa = best_isa();
  if (isa == Isa::Avx2 && !cpu_has_avx2()) fail("prepare_conv2d_u8: this CPU has no AVX2");
  if (isa == Isa::AvxVnni && !cpu_has_avxvnni())
    fail("prepare_conv2d_u8: this CPU has no AVX-VNNI");
  int64_t wmax = 0;  // weights beyond 8 bits are rejected by the Kernel form
  for (int32_t w : L.weights) wmax = std::max<int64_t>(wmax, w < 0 ? -int64_t{w} : w);
  const Kernel kernel = isa == Isa::AvxVnni ? Kernel::AvxVnniDpbusd
                        : isa == Isa::Avx2
                            ? (wmax <= kMaddubsMaxWeight ? Kernel::Avx2Maddubs : Kernel::Avx2Madd16)
                            : Kernel::Portable;
  return prepare_conv2d_u8(s, L, kernel);
}

PreparedConv2d prepare_conv2d_u8(const ConvShape& s, const IntLayer& L, Kernel kernel) {
  check_conv(s, &L);
  if (s.groups != 1)
    fail("prepare_conv2d_u8: layer '{}' has {} groups (expected 1; use conv2d_u8_ref)", L.name,
         s.groups);
  if (L.out_node < 0)
    fail("prepare_conv2d_u8: layer '{}' has a float output (expected a quantized one)", L.name);
  if (kernel != Kernel::Portable && kernel != Kernel::Avx2Madd16 && kernel != Kernel::Avx2Maddubs &&
      kernel != Kernel::AvxVnniDpbusd)
    fail("prepare_conv2d_u8: unknown kernel {} (expected a PreparedConv2d::Kernel)",
         static_cast<int>(kernel));
  if (kernel != Kernel::Portable && !cpu_has_avx2())
    fail("prepare_conv2d_u8: kernel {} needs AVX2, which this CPU lacks", name_of(kernel));
  if (kernel == Kernel::AvxVnniDpbusd && !cpu_has_avxvnni())
    fail("prepare_conv2d_u8: kernel {} needs AVX-VNNI, which this CPU lacks", name_of(kernel));
  PreparedConv2d c;
  c.s_ = s;
  c.k_ = s.in_c * s.kernel * s.kernel;
  if (c.k_ > INT32_MAX / (255 * 128))
    fail("prepare_conv2d_u8: layer '{}' reduces over {} taps (at most {} keep int32 exact)", L.name,
         c.k_, INT32_MAX / (255 * 128));
  int32_t wmax = 0;
  for (int32_t w : L.weights) {
    if (w < -128 || w > 127)
      fail("prepare_conv2d_u8: layer '{}' has weight {} (expected 8 bits)", L.name, w);
    wmax = std::max(wmax, w < 0 ? -w : w);
  }
  if (kernel == Kernel::Avx2Maddubs && wmax > kMaddubsMaxWeight)
    fail(
        "prepare_conv2d_u8: layer '{}' has a weight of magnitude {} (avx2_maddubs is exact only "
        "up to {})",
        L.name, wmax, kMaddubsMaxWeight);
  c.kernel_ = kernel;
  const bool int8 = uses_int8_layout(c.kernel_);
  const int64_t taps = int8 ? kTaps8 : kTaps16, kk = s.kernel * s.kernel;
  // Direct (im2col-free) when padding each pixel's channels to the tap group costs at most a
  // quarter more taps than im2col's padding of K: every layer but the few-channel first ones.
  // The int16 layout has no vectorized HWC copy: there direct also needs the copy to write no
  // more than im2col would (not so for a 1×1 stride-2 conv: 4× the pixels; sq_bench, madd16).
  c.cp_ = (s.in_c + taps - 1) / taps * taps;
  const int64_t kp_im2col = (c.k_ + taps - 1) / taps * taps;
  c.direct_ = kk * c.cp_ * 4 <= kp_im2col * 5 &&
              (int8 || s.in_h * s.in_w * c.cp_ <= s.out_h() * s.out_w() * kp_im2col);
  c.kp_ = c.direct_ ? kk * c.cp_ : kp_im2col;
  c.oc_pad_ = (s.out_c + kOc - 1) / kOc * kOc;
  c.pix_ = s.out_h() * s.out_w();
  c.pix_pad_ = (c.pix_ + kPix - 1) / kPix * kPix;
  c.zp_x_ = L.in_zero_point;
  if (c.zp_x_ < 0 || c.zp_x_ > 255)
    fail("prepare_conv2d_u8: layer '{}' input zero point {} (expected 0..255)", L.name, c.zp_x_);
  const size_t blocks = static_cast<size_t>(c.oc_pad_ / kOc * (c.kp_ / taps));
  if (int8) {
    c.w8_.assign(blocks, Quad8Block{});
  } else {
    c.w16_.assign(blocks, Pair16Block{});
  }
  c.bias_.resize(static_cast<size_t>(s.out_c));
  for (int64_t oc = 0; oc < s.out_c; ++oc) {
    int64_t sum = 0;
    for (int64_t k = 0; k < c.k_; ++k) {
      const int32_t w = L.weights[oc * c.k_ + k];
      sum += w;
      // The tap's place in the kernels' reduction: im2col keeps the weights' order (i, ky, kx);
      // direct mode orders (ky, kx, i) with i padded to cp, as the HWC scratch holds it.
      const int64_t i = k / kk, kyx = k % kk, kd = c.direct_ ? kyx * c.cp_ + i : k;
      // Block (tile t, tap group j), channel o within the tile, tap e within the group.
      const int64_t t = oc / kOc, o = oc % kOc, j = kd / taps, e = kd % taps;
      const size_t b = static_cast<size_t>(t * (c.kp_ / taps) + j);
      if (int8) {
        c.w8_[b].w[o][e] = static_cast<int8_t>(w);
      } else {
        c.w16_[b].w[o][e] = static_cast<int16_t>(w);
      }
    }
    c.bias_[oc] = int64_t{L.bias[oc]} - int64_t{c.zp_x_} * sum;
  }
  c.requant_ = L.requant;
  // The vectorized epilogue's int64 lanes; padded channels compute 0 and are discarded.
  c.ep_bias_.assign(static_cast<size_t>(c.oc_pad_), 0);
  c.ep_mult_.assign(static_cast<size_t>(c.oc_pad_), 0);
  c.ep_shift_.assign(static_cast<size_t>(c.oc_pad_), 1);
  c.ep_round_.assign(static_cast<size_t>(c.oc_pad_), 1);
  c.ep_vector_ok_.assign(static_cast<size_t>(c.oc_pad_ / kOc), 1);
  for (int64_t oc = 0; oc < s.out_c; ++oc) {
    const Requant& r = c.requant_[oc];
    c.ep_bias_[oc] = c.bias_[oc];
    if (r.multiplier == 0) continue;  // M = 0: (a·0 + 1) >> 1 = 0, as requantize gives
    if (r.shift < 1 || r.shift > 62) c.ep_vector_ok_[oc / kOc] = 0;
    c.ep_mult_[oc] = r.multiplier;
    c.ep_shift_[oc] = std::clamp(r.shift, 1, 62);
    c.ep_round_[oc] = (int64_t{1} << (c.ep_shift_[oc] - 1)) + r.offset;
  }
  c.zp_out_ = L.out_zero_point;
  c.lo_ = L.out_lo;
  c.hi_ = L.out_hi;
  if (c.lo_ < 0 || c.hi_ > 255 || c.lo_ > c.hi_)
    fail("prepare_conv2d_u8: layer '{}' output range {}..{} (expected within 0..255)", L.name,
         c.lo_, c.hi_);
  // The int32 epilogue's constants (epilogue_avx2_q32), and which tiles may take it.
  c.q_bias_.assign(static_cast<size_t>(c.oc_pad_), 0);
  c.q_shift_.assign(static_cast<size_t>(c.oc_pad_), 0);
  c.q_mult_.assign(static_cast<size_t>(c.oc_pad_), 0);
  c.q_round_.assign(static_cast<size_t>(c.oc_pad_), 0);
  c.q_ok_.assign(static_cast<size_t>(c.oc_pad_ / kOc), c.kernel_ != Kernel::Portable);
  const int64_t dot_max = c.k_ * 255 * 128;
  for (int64_t oc = 0; oc < s.out_c; ++oc) {
    const Requant& r = c.requant_[oc];
    const size_t slot = static_cast<size_t>(oc / 8 * 8 + (oc % 2) * 4 + (oc % 8) / 2);
    const bool zero = r.multiplier == 0 && r.offset == 0;  // requantize gives 0 for any a
    if ((!zero && (r.shift < 32 || r.shift > 62)) ||
        (c.bias_[oc] < 0 ? -c.bias_[oc] : c.bias_[oc]) + dot_max >= (int64_t{1} << 31)) {
      c.q_ok_[oc / kOc] = 0;
      continue;
    }
    c.q_bias_[oc] = static_cast<int32_t>(c.bias_[oc]);
    if (zero) continue;
    c.q_shift_[oc] = r.shift - 32;
    c.q_mult_[slot] = r.multiplier;
    c.q_round_[slot] = (int64_t{1} << (r.shift - 1)) + r.offset;
  }
  // Where the kernels find each pixel's tap groups (see engine.h).
  const int64_t ng = c.kp_ / taps;
  c.grp_off_.resize(static_cast<size_t>(ng));
  c.pix_off_.assign(static_cast<size_t>(c.pix_pad_), 0);
  if (c.direct_) {
    // The scratch is the input with a border of `padding` pixels holding zp_x, HWC, cp entries a
    // pixel (the padded channels hold zp_x too, against zero weights); run() writes the interior.
    const int64_t wp = s.in_w + 2 * s.padding, hp = s.in_h + 2 * s.padding, ow = s.out_w();
    for (int64_t j = 0; j < ng; ++j) {
      const int64_t tap = j * taps / c.cp_, ky = tap / s.kernel, kx = tap % s.kernel;
      c.grp_off_[j] = (ky * wp + kx) * c.cp_ + j * taps % c.cp_;
    }
    // Pixels past pix_ read pixel 0's taps; their outputs are discarded.
    for (int64_t p = 0; p < c.pix_; ++p)
      c.pix_off_[p] = ((p / ow) * s.stride * wp + (p % ow) * s.stride) * c.cp_;
    const auto n = static_cast<size_t>(hp * wp * c.cp_);
    if (int8) {
      c.col8_.assign(n, static_cast<uint8_t>(c.zp_x_));
    } else {
      c.col16_.assign(n, static_cast<int16_t>(c.zp_x_));
    }
  } else {
    for (int64_t j = 0; j < ng; ++j) c.grp_off_[j] = j * taps;
    for (int64_t p = 0; p < c.pix_pad_; ++p) c.pix_off_[p] = p * c.kp_;
    // Rows past pix_ and taps past k_ stay zero: computed against zero weights or discarded.
    if (int8) {
      c.col8_.assign(static_cast<size_t>(c.pix_pad_ * c.kp_), 0);
    } else {
      c.col16_.assign(static_cast<size_t>(c.pix_pad_ * c.kp_), 0);
    }
  }
  c.acc_.assign(static_cast<size_t>(kOc * kPix), 0);
  return c;
}

PreparedConv2d prepare_linear_u8(int64_t in_features, int64_t out_features, const IntLayer& L,
                                 Isa isa) {
  return prepare_conv2d_u8(ConvShape{in_features, 1, 1, out_features, 1, 1, 0, 1}, L, isa);
}

void PreparedConv2d::run(const uint8_t* x, uint8_t* y) {
  const bool int8 = uses_int8_layout(kernel_);
  const int64_t ng = kp_ / (int8 ? kTaps8 : kTaps16);  // tap groups
  const void* src;
  const void* wbase;
  size_t wtile_bytes;
  if (int8) {
    stage_input<uint8_t>(s_, x, static_cast<uint8_t>(zp_x_), direct_, cp_, kp_, pix_, col8_.data());
    src = col8_.data();
    wbase = w8_.data();
    wtile_bytes = static_cast<size_t>(ng) * sizeof(Quad8Block);
  } else {
    stage_input<int16_t>(s_, x, static_cast<int16_t>(zp_x_), direct_, cp_, kp_, pix_,
                         col16_.data());
    src = col16_.data();
    wbase = w16_.data();
    wtile_bytes = static_cast<size_t>(ng) * sizeof(Pair16Block);
  }
  const TileFn tile = tile_fn(kernel_);
  for (int64_t t = 0; t < oc_pad_ / kOc; ++t) {
    const void* w = static_cast<const uint8_t*>(wbase) + t * wtile_bytes;
    const int64_t oc0 = t * kOc, noc = std::min<int64_t>(kOc, s_.out_c - oc0);
    for (int64_t p0 = 0; p0 < pix_pad_; p0 += kPix) {
      tile(w, src, pix_off_.data() + p0, grp_off_.data(), ng, acc_.data());
      const int64_t np = std::min<int64_t>(kPix, pix_ - p0);
#ifdef SQ_X86
      if (q_ok_[t]) {
        epilogue_avx2_q32(acc_.data(), q_bias_.data() + oc0, q_mult_.data() + oc0,
                          q_round_.data() + oc0, q_shift_.data() + oc0, noc, np, pix_, zp_out_, lo_,
                          hi_, y + oc0 * pix_ + p0);
        continue;
      }
      if (kernel_ != Kernel::Portable && ep_vector_ok_[t]) {
        epilogue_avx2(acc_.data(), ep_bias_.data() + oc0, ep_mult_.data() + oc0,
                      ep_shift_.data() + oc0, ep_round_.data() + oc0, requant_.data() + oc0, noc,
                      np, pix_, zp_out_, lo_, hi_, y + oc0 * pix_ + p0);
        continue;
      }
#endif
      for (int64_t o = 0; o < noc; ++o) {
        const int64_t oc = oc0 + o;
        const Requant r = requant_[oc];
        uint8_t* yo = y + oc * pix_ + p0;
        for (int64_t p = 0; p < np; ++p) {
          // IntLayer::output: requantize, add the zero point, clamp.
          const int64_t v = int64_t{requantize_fast(bias_[oc] + acc_[p * kOc + o], r)} + zp_out_;
          yo[p] = static_cast<uint8_t>(std::clamp<int64_t>(v, lo_, hi_));
        }
      }
    }
  }
}

}  // namespace sq
