// Optimized conv2d / linear (groups = 1), the driver around the micro-kernel table
// (kernel_table.cpp): prepare picks a kernel, packs its weights and plans how the raw activations
// are staged — a zp_x-bordered HWC copy (direct mode: most layers; only the pixels read, for a
// 1×1 strided conv), a zp_x-bordered plane (one input channel: stems) or im2col rows — then run()
// calls the kernel tile by tile and requantizes in the epilogue. Every kernel computes Σ w·x in
// int32 over raw x (padding taps hold zp_x) without rounding or saturation; the bias absorbs
// −zp_x·Σw in int64, so acc equals the reference's bias + Σ w·(x − zp_x) exactly. int32 cannot
// overflow: prepare checks K·255·128 < 2^31.
#include <algorithm>
#include <climits>
#include <cstring>
#include <type_traits>

#include "kernels.h"
#include "sigmaquant/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace sq {

namespace {

using kernels::kEpiloguePix;
using kernels::kMr;

// sq::requantize (integerize.cpp) without its 128-bit product where 64 bits are exact: for
// |a| < 2^31 and multiplier < 2^31 the product is below 2^62 and adding 2^(shift−1) (shift <= 62)
// cannot overflow. Same rounding (half up), same arithmetic shift, same saturation.
inline int32_t requantize_fast(int64_t a, const Requant& r) {
  if (a > -(int64_t{1} << 31) && a < (int64_t{1} << 31) && r.shift >= 1 && r.shift <= 62) {
    const int64_t v = (a * r.multiplier + (int64_t{1} << (r.shift - 1))) >> r.shift;
    return static_cast<int32_t>(std::clamp<int64_t>(v, INT32_MIN, INT32_MAX));
  }
  return requantize(a, r);
}

#ifdef SQ_X86
// The epilogue of one tile for 4 channels at a time in int64 lanes, equal to the scalar one:
//   v = (a · multiplier + 2^(shift−1)) >> shift   (a = bias + dot, |a| < 2^31,
//                                              1 <= shift <= 62; round = 2^(shift−1))
//   y = clamp(v + zp_out, lo, hi)
// _mm256_mul_epi32 forms the exact 64-bit product of the low 32 bits (a fits, checked per group;
// a group with a larger |a| goes through requantize_fast). AVX2 has no 64-bit arithmetic shift:
// floor(x / 2^s) = ~(~x >>> s) for x < 0. Saturating v to int32 before adding zp_out (as
// requantize does) changes nothing once the result is clamped to [lo, hi] within 0..255.
__attribute__((target("avx2"))) void epilogue_avx2(const int32_t* acc, const int64_t* bias,
                                                   const int64_t* mult, const int64_t* shift,
                                                   const int64_t* round, const Requant* requant,
                                                   const int64_t* ch, int64_t noc, int64_t np,
                                                   int64_t pix, int32_t zp_out, int32_t lo,
                                                   int32_t hi, uint8_t* y) {
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
      const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(acc + p * kMr + g));
      const __m256i a = _mm256_add_epi64(b, _mm256_cvtepi32_epi64(d));
      const __m256i fits =
          _mm256_and_si256(_mm256_cmpgt_epi64(lim_hi, a), _mm256_cmpgt_epi64(a, lim_lo));
      if (_mm256_movemask_epi8(fits) != -1) {  // rare: |a| >= 2^31
        for (int64_t i = 0; i < ng; ++i) {
          const int64_t v =
              int64_t{requantize_fast(bias[g + i] + acc[p * kMr + g + i], requant[g + i])} + zp_out;
          y[ch[g + i] * pix + p] = static_cast<uint8_t>(std::clamp<int64_t>(v, lo, hi));
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
      for (int64_t i = 0; i < ng; ++i) y[ch[g + i] * pix + p] = static_cast<uint8_t>(out[i]);
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
                                                       const int32_t* shift, const int64_t* ch,
                                                       int64_t noc, int64_t np, int64_t pix,
                                                       int32_t zp_out, int32_t lo, int32_t hi,
                                                       uint8_t* y) {
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
    for (int p = 0; p < kEpiloguePix;
         ++p) {  // pixels past np hold padded rows: computed, not stored
      const __m256i a = _mm256_add_epi32(
          b, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + p * kMr + 8 * h)));
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
    const int64_t* cho = ch + 8 * h;
    if (np == kEpiloguePix) {
      for (int64_t i = 0; i < nc; ++i) {
        std::memcpy(y + cho[i] * pix, &out[0][i], 4);
        std::memcpy(y + cho[i] * pix + 4, &out[1][i], kEpiloguePix - 4);
      }
    } else {
      const auto n0 = static_cast<size_t>(std::min<int64_t>(np, 4));
      const auto n1 = static_cast<size_t>(std::max<int64_t>(np - 4, 0));
      for (int64_t i = 0; i < nc; ++i) {
        std::memcpy(y + cho[i] * pix, &out[0][i], n0);
        std::memcpy(y + cho[i] * pix + 4, &out[1][i], n1);
      }
    }
  }
}
#endif

// im2col: row p of col (kp entries) holds the receptive field of output pixel p in weight order
// (i, ky, kx); padding taps hold zp (the real value 0). Entries k..kp−1 stay 0 (zero weights).
// kK is the kernel size of a square, undilated window when known at compile time (the common 1
// and 3: the inner copies unroll), else 0 and the shape's window is used (any kernel, strides,
// padding per side, dilation).
template <int kK, typename T>
void im2col(const ConvShape& s, const uint8_t* x, T zp, int64_t kp, int64_t pix, T* col) {
  const Window2d& w = s.window;
  const int64_t ow = s.out_w();
  const int64_t kh = kK ? kK : w.kernel_h, kw = kK ? kK : w.kernel_w;
  const int64_t dh = kK ? 1 : w.dilation_h, dw = kK ? 1 : w.dilation_w;
  for (int64_t p = 0; p < pix; ++p) {
    const int64_t oy = p / ow, ox = p % ow;
    const int64_t iy0 = oy * w.stride_h - w.pad_top, ix0 = ox * w.stride_w - w.pad_left;
    const bool x_inside = ix0 >= 0 && ix0 + (kw - 1) * dw < s.in_w;
    T* r = col + p * kp;
    for (int64_t i = 0; i < s.in_c; ++i) {
      const uint8_t* xc = x + i * s.in_h * s.in_w;
      for (int64_t ky = 0; ky < kh; ++ky, r += kw) {
        const int64_t iy = iy0 + ky * dh;
        if (iy < 0 || iy >= s.in_h) {
          for (int64_t kx = 0; kx < kw; ++kx) r[kx] = zp;
        } else if (x_inside) {  // interior: no bounds checks
          const uint8_t* xr = xc + iy * s.in_w + ix0;
          for (int64_t kx = 0; kx < kw; ++kx) r[kx] = static_cast<T>(xr[kx * dw]);
        } else {
          const uint8_t* xr = xc + iy * s.in_w;
          for (int64_t kx = 0; kx < kw; ++kx) {
            const int64_t ix = ix0 + kx * dw;
            r[kx] = (ix < 0 || ix >= s.in_w) ? zp : static_cast<T>(xr[ix]);
          }
        }
      }
    }
  }
}

template <typename T>
void im2col_any(const ConvShape& s, const uint8_t* x, T zp, int64_t kp, int64_t pix, T* col) {
  const Window2d& w = s.window;
  const bool plain = w.kernel_h == w.kernel_w && w.dilation_h == 1 && w.dilation_w == 1;
  switch (plain ? w.kernel_h : 0) {
    case 1:
      return im2col<1>(s, x, zp, kp, pix, col);
    case 3:
      return im2col<3>(s, x, zp, kp, pix, col);
    default:
      return im2col<0>(s, x, zp, kp, pix, col);
  }
}

#ifdef SQ_X86
// 16 rows of 8 bytes (channel c's 8 pixels in the low half of r[c]) → 8 pixels × 16 channels
// (pixel q's at dst + off[q]): a byte transpose in three rounds of SSE2 unpacks and 8 stores.
inline void transpose_16x8_u8(const __m128i* r, uint8_t* dst, const int64_t* off) {
  __m128i t[8], u[8], v[8];
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
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + off[2 * k]),
                     _mm_unpacklo_epi64(v[k], v[4 + k]));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + off[2 * k + 1]),
                     _mm_unpackhi_epi64(v[k], v[4 + k]));
  }
}

// 16 channels × 8 consecutive pixels of CHW bytes (channel c's at x + c·cstride).
inline void load_16x8_u8(const uint8_t* x, int64_t cstride, __m128i* r) {
  for (int c = 0; c < 16; ++c)
    r[c] = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + c * cstride));
}

// The same for every other pixel: 16 bytes a channel, the even ones packed into the low half.
inline void load_16x8_u8_stride2(const uint8_t* x, int64_t cstride, __m128i* r) {
  const __m128i even = _mm_set1_epi16(0x00FF);
  for (int c = 0; c < 16; ++c) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + c * cstride));
    r[c] = _mm_packus_epi16(_mm_and_si128(v, even), _mm_setzero_si128());
  }
}
#endif

// Direct mode: x (CHW) into the zp_x-bordered HWC scratch (pixel-major, cp entries a pixel); the
// border and the padded channels were filled at prepare and stay as they are. in_c·H·W writes
// in place of im2col's k²·in_c·out_h·out_w. With sub > 1 (a 1×1 unpadded conv of that stride)
// only the pixels the conv reads are copied, out_h × out_w of them and no border: a quarter of
// the input at stride 2. uint8 rows of at least 8 (read) pixels go through the 16×8 transpose,
// 16 channels at a time (the last block of a row overlaps the one before, rewriting the same
// bytes); shorter rows (late feature maps: 4×4, 7×7) take the transpose over the whole plane
// of at least 8 pixels, each pixel stored at its own row's place; the rest, and the int16 layout,
// element by element. The shape is copied into locals: stores through T* = uint8_t* may alias
// it, and GCC reloaded it.
template <typename T>
void to_hwc(const ConvShape& s, const uint8_t* x, int64_t cp, int64_t sub, T* buf) {
  const int64_t pad_top = sub > 1 ? 0 : s.window.pad_top,
                pad_left = sub > 1 ? 0 : s.window.pad_left, c = s.in_c, plane = s.in_h * s.in_w,
                in_w = s.in_w;
  const int64_t h = sub > 1 ? s.out_h() : s.in_h, w = sub > 1 ? s.out_w() : s.in_w,
                wp = sub > 1 ? w : w + pad_left + s.window.pad_right;
  int64_t c_vec = 0;  // channels [0, c_vec) by transposes
#ifdef SQ_X86
  // Stride 2 reads 16 bytes from pixel 2·at: within the row when 2·w <= in_w.
  const bool vec_ok = w >= 8 && (sub == 1 || (sub == 2 && 2 * w <= in_w));
  if constexpr (std::is_same_v<T, uint8_t>) {
    c_vec = vec_ok ? c / 16 * 16 : 0;
    if (!vec_ok && sub == 1 && plane >= 8 && c >= 16) {  // short rows: plane-wide transposes
      c_vec = c / 16 * 16;
      __m128i r[16];
      int64_t off[8];
      for (int64_t p0 = 0;; p0 += 8) {
        const int64_t at = std::min(p0, plane - 8);
        for (int q = 0; q < 8; ++q) {
          const int64_t p = at + q;
          off[q] = ((p / w + pad_top) * wp + p % w + pad_left) * cp;
        }
        for (int64_t c0 = 0; c0 < c_vec; c0 += 16) {
          load_16x8_u8(x + c0 * plane + at, plane, r);
          transpose_16x8_u8(r, buf + c0, off);
        }
        if (at == plane - 8) break;
      }
      for (int64_t i = c_vec; i < c; ++i)
        for (int64_t iy = 0; iy < h; ++iy) {
          T* row = buf + ((iy + pad_top) * wp + pad_left) * cp;
          const uint8_t* xc = x + i * plane + iy * in_w;
          for (int64_t ix = 0; ix < w; ++ix) row[ix * cp + i] = static_cast<T>(xc[ix]);
        }
      return;
    }
  }
  int64_t seq[8];  // consecutive pixels of a row
  for (int q = 0; q < 8; ++q) seq[q] = q * cp;
#endif
  for (int64_t iy = 0; iy < h; ++iy) {
    T* row = buf + ((iy + pad_top) * wp + pad_left) * cp;
    const uint8_t* xr = x + iy * sub * in_w;
#ifdef SQ_X86
    if constexpr (std::is_same_v<T, uint8_t>) {
      __m128i r[16];
      for (int64_t c0 = 0; c0 < c_vec; c0 += 16)
        for (int64_t ix = 0;; ix += 8) {
          const int64_t at = std::min(ix, w - 8);
          if (sub == 1) {
            load_16x8_u8(xr + c0 * plane + at, plane, r);
          } else {
            load_16x8_u8_stride2(xr + c0 * plane + 2 * at, plane, r);
          }
          transpose_16x8_u8(r, row + at * cp + c0, seq);
          if (at == w - 8) break;
        }
    }
#endif
    for (int64_t i = c_vec; i < c; ++i) {
      const uint8_t* xc = xr + i * plane;
      for (int64_t ix = 0; ix < w; ++ix) row[ix * cp + i] = static_cast<T>(xc[ix * sub]);
    }
  }
}

}  // namespace

namespace kernels {
void to_hwc_u8(const ConvShape& s, const uint8_t* x, int64_t cp, uint8_t* buf) {
  to_hwc(s, x, cp, 1, buf);
}
}  // namespace kernels

namespace {

// Plane mode (one input channel): x into the interior of the zp_x-bordered plane.
template <typename T>
void to_plane(const ConvShape& s, const uint8_t* x, T* buf) {
  const Window2d& win = s.window;
  const int64_t h = s.in_h, w = s.in_w, wp = w + win.pad_left + win.pad_right;
  for (int64_t iy = 0; iy < h; ++iy) {
    T* row = buf + (iy + win.pad_top) * wp + win.pad_left;
    const uint8_t* xr = x + iy * w;
    if constexpr (std::is_same_v<T, uint8_t>) {
      std::memcpy(row, xr, static_cast<size_t>(w));
    } else {
      for (int64_t ix = 0; ix < w; ++ix) row[ix] = static_cast<T>(xr[ix]);
    }
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

bool cpu_has_avx512vnni() {
#ifdef SQ_X86
  // CPUID leaf 7 sub-leaf 0: EBX bits 16 (AVX512F), 30 (BW), 31 (VL), ECX bit 11 (VNNI); and the
  // OS must save the opmask and zmm state: XCR0 bits 1, 2 (SSE, AVX) and 5, 6, 7 (opmask,
  // ZMM_Hi256, Hi16_ZMM), readable by xgetbv once CPUID.1:ECX bit 27 (OSXSAVE) is set.
  static const bool has = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!cpu_has_avx2() || !__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !((ecx >> 27) & 1u))
      return false;
    unsigned xlo = 0, xhi = 0;
    __asm__("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    if ((xlo & 0xE6u) != 0xE6u) return false;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    return ((ebx >> 16) & 1u) && ((ebx >> 30) & 1u) && ((ebx >> 31) & 1u) && ((ecx >> 11) & 1u);
  }();
  return has;
#else
  return false;
#endif
}

bool cpu_has_avx512vbmi() {
#ifdef SQ_X86
  // CPUID leaf 7 sub-leaf 0, ECX bit 1 (AVX512_VBMI), on top of the F/BW/VL and zmm-state checks.
  static const bool has = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return cpu_has_avx512vnni() && __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) &&
           ((ecx >> 1) & 1u);
  }();
  return has;
#else
  return false;
#endif
}

Isa best_isa() {
  return cpu_has_avx512vnni() ? Isa::Avx512Vnni
         : cpu_has_avxvnni()  ? Isa::AvxVnni
         : cpu_has_avx2()     ? Isa::Avx2
                              : Isa::Portable;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Auto:
      return "auto";
    case Isa::Portable:
      return "portable";
    case Isa::Avx2:
      return "avx2";
    case Isa::AvxVnni:
      return "avxvnni";
    case Isa::Avx512Vnni:
      return "avx512vnni";
    case Isa::Reference:
      return "reference";
  }
  return "?";
}

Isa parse_isa(const std::string& name) {
  for (Isa isa :
       {Isa::Auto, Isa::Portable, Isa::Avx2, Isa::AvxVnni, Isa::Avx512Vnni, Isa::Reference})
    if (name == isa_name(isa)) return isa;
  fail("engine tier '{}' (expected auto, portable, avx2, avxvnni, avx512vnni or reference)", name);
}

namespace {

// The largest |weight| of a layer (and checks every weight has 8 bits).
int32_t max_abs_weight(const IntLayer& L) {
  int32_t wmax = 0;
  for (int32_t w : L.weights) {
    if (w < -128 || w > 127)
      fail("prepare_conv2d_u8: layer '{}' has weight {} (expected 8 bits)", L.name, w);
    wmax = std::max(wmax, w < 0 ? -w : w);
  }
  return wmax;
}

int32_t x_max_of(int in_bits) {
  if (in_bits < 1 || in_bits > 8)
    fail("prepare_conv2d_u8: {} activation bits (expected 1..8)", in_bits);
  return (1 << in_bits) - 1;
}

}  // namespace

namespace {

bool cpu_has(Isa isa) {
  switch (isa) {
    case Isa::Portable:
      return true;
    case Isa::Avx2:
      return cpu_has_avx2();
    case Isa::AvxVnni:
      return cpu_has_avxvnni();
    case Isa::Avx512Vnni:
      return cpu_has_avx512vnni();
    default:
      return false;
  }
}

}  // namespace

// The kernel a tier runs for these bounds: its highest-ranked one that supports them.
const ConvMicroKernel& kernels::choose_kernel(Isa isa, int32_t w_max, int in_bits) {
  if (isa == Isa::Reference)
    fail(
        "prepare_conv2d_u8: Isa::Reference is for executors (expected Auto, Portable, Avx2, "
        "AvxVnni or Avx512Vnni)");
  if (isa == Isa::Auto) isa = best_isa();
  if (!cpu_has(isa)) fail("prepare_conv2d_u8: this CPU has no {}", isa_name(isa));
  const int32_t x_max = x_max_of(in_bits);
  const ConvMicroKernel* best = nullptr;
  for (const ConvMicroKernel* k : conv_kernels())
    if (k->isa == isa && k->cpu_has() && k->supports(w_max, x_max) &&
        (!best || k->rank > best->rank))
      best = k;
  if (!best)
    fail("prepare_conv2d_u8: no {} kernel supports weights up to {} and activations up to {}",
         isa_name(isa), w_max, x_max);
  return *best;
}

// The dispatch: an ISA tier and the layer's bounds name the kernel; the kernel form does the rest.
PreparedConv2d prepare_conv2d_u8(const ConvShape& s, const IntLayer& L, Isa isa, int in_bits) {
  return prepare_conv2d_u8(s, L, kernels::choose_kernel(isa, max_abs_weight(L), in_bits), in_bits);
}

PreparedConv2d prepare_conv2d_u8(const ConvShape& s, const IntLayer& L, const ConvMicroKernel& k,
                                 int in_bits) {
  if (L.out_node < 0)
    fail("prepare_conv2d_u8: layer '{}' has a float output (expected a quantized one)", L.name);
  PreparedConv2d c = PreparedConv2d::prepare_core(s, L, k, in_bits);
  c.plan_epilogue(L);
  return c;
}

PreparedConv2d prepare_conv2d_acc(const ConvShape& s, const IntLayer& L, Isa isa, int in_bits) {
  PreparedConv2d c = PreparedConv2d::prepare_core(
      s, L, kernels::choose_kernel(isa, max_abs_weight(L), in_bits), in_bits);
  c.acc_only_ = true;
  return c;
}

PreparedConv2d PreparedConv2d::prepare_core(const ConvShape& s, const IntLayer& L,
                                            const ConvMicroKernel& k, int in_bits) {
  check_conv(s, &L);
  if (s.groups != 1)
    fail("prepare_conv2d_u8: layer '{}' has {} groups (expected 1; use conv2d_u8_ref)", L.name,
         s.groups);
  if (!k.cpu_has())
    fail("prepare_conv2d_u8: kernel {} needs {}, which this CPU lacks", k.name, isa_name(k.isa));
  const int32_t x_max = x_max_of(in_bits), w_max = max_abs_weight(L);
  PreparedConv2d c;
  c.s_ = s;
  c.k_ = s.taps();
  if (c.k_ > PreparedConv2d::kMaxTaps)
    fail("prepare_conv2d_u8: layer '{}' reduces over {} taps (at most {} keep int32 exact)", L.name,
         c.k_, PreparedConv2d::kMaxTaps);
  if (!k.supports(w_max, x_max))
    fail(
        "prepare_conv2d_u8: kernel {} is not exact for layer '{}' (weights up to {}, activations "
        "up to {})",
        k.name, L.name, w_max, x_max);
  c.zp_x_ = L.in_zero_point;
  if (c.zp_x_ < 0 || c.zp_x_ > x_max)
    fail("prepare_conv2d_u8: layer '{}' input zero point {} (expected 0..{})", L.name, c.zp_x_,
         x_max);
  c.kernel_ = &k;
  c.flush_ = k.flush(w_max, x_max);
  c.oc_pad_ = (s.out_c + kMr - 1) / kMr * kMr;
  c.pix_ = s.out_h() * s.out_w();
  c.pix_pad_ = (c.pix_ + k.nr - 1) / k.nr * k.nr;
  c.plan_staging();
  c.pack_weights(L);
  c.acc_.assign(static_cast<size_t>(kMr * k.nr), 0);
  c.out_ch_.resize(static_cast<size_t>(s.out_c));
  for (int64_t oc = 0; oc < s.out_c; ++oc) c.out_ch_[oc] = oc;
  return c;
}

// A subset of the channels: the layer restricted to them (rows, biases, requantization), prepared
// as a layer of channels.size() outputs whose channel o is written to plane channels[o] of y.
PreparedConv2d prepare_conv2d_u8(const ConvShape& s, const IntLayer& L, const ConvMicroKernel& k,
                                 int in_bits, const std::vector<int64_t>& channels) {
  check_conv(s, &L);
  if (channels.empty())
    fail("prepare_conv2d_u8: layer '{}': an empty channel subset (expected 1..{} channels)",
         L.name, s.out_c);
  std::vector<uint8_t> seen(static_cast<size_t>(s.out_c), 0);
  for (int64_t c : channels) {
    if (c < 0 || c >= s.out_c || seen[c])
      fail("prepare_conv2d_u8: layer '{}': channel subset holds {} (expected distinct channels "
           "0..{})",
           L.name, c, s.out_c - 1);
    seen[c] = 1;
  }
  const int64_t row = static_cast<int64_t>(L.weights.size()) / s.out_c;
  IntLayer sub = kernels::layer_without_channels(L);
  for (int64_t c : channels) {
    sub.weights.insert(sub.weights.end(), L.weights.begin() + c * row,
                       L.weights.begin() + (c + 1) * row);
    // Per-channel vectors as the layer has them (check_conv checked bias and requant).
    kernels::append_channel(sub, L, c, s.out_c);
  }
  ConvShape ss = s;
  ss.out_c = static_cast<int64_t>(channels.size());
  PreparedConv2d c = prepare_conv2d_u8(ss, sub, k, in_bits);
  c.out_ch_ = channels;
  return c;
}

// How the input is staged (engine.h's Stage): which mode, the reduction as the kernel runs it
// (kp_), where pixel p's tap group j starts (pix_off_[p] + grp_off_[j]) and the scratch, filled
// with what run() does not rewrite (borders and padded channels: zp_x; im2col's padded taps: 0).
void PreparedConv2d::plan_staging() {
  const ConvShape& s = s_;
  const Window2d& win = s.window;
  const int64_t kr = kernel_->kr, kk = win.taps(), ow = s.out_w();
  const bool int8 = kernel_->layout == WeightLayout::Quad8;
  const int64_t kp_im2col = (k_ + kr - 1) / kr * kr;
  // Plane: a tap group is kr consecutive kx of one kernel row (gpr groups a row); the taps of a
  // row must be consecutive pixels, so not with a dilation along W.
  const int64_t gpr = (win.kernel_w + kr - 1) / kr, kp_plane = win.kernel_h * gpr * kr;
  const bool pointwise_strided = win.kernel_h == 1 && win.kernel_w == 1 && win.pad_top == 0 &&
                                 win.pad_left == 0 && win.pad_bottom == 0 && win.pad_right == 0 &&
                                 win.stride_h == win.stride_w && win.stride_h > 1;
  cp_ = (s.in_c + kr - 1) / kr * kr;
  sub_ = pointwise_strided ? win.stride_h : 1;
  // Direct (HWC) when padding each pixel's channels to the tap group costs at most a quarter more
  // taps than im2col's padding of K: every layer but the few-channel first ones. The int16 layout
  // has no vectorized HWC copy: there direct also needs the copy to write no more than im2col.
  const int64_t copy = (pointwise_strided ? pix_ : s.in_h * s.in_w) * cp_;
  if (s.in_c == 1 && win.dilation_w == 1 && kp_plane * 4 <= kp_im2col * 5) {
    stage_ = Stage::Plane;
    kp_ = kp_plane;
  } else if (kk * cp_ * 4 <= kp_im2col * 5 && (int8 || copy <= pix_ * kp_im2col)) {
    stage_ = Stage::Hwc;
    kp_ = kk * cp_;
  } else {
    stage_ = Stage::Im2col;
    kp_ = kp_im2col;
  }
  const int64_t ng = kp_ / kr;
  grp_off_.resize(static_cast<size_t>(ng));
  pix_off_.assign(static_cast<size_t>(pix_pad_), 0);  // pixels past pix_ read pixel 0's taps
  size_t n = 0;
  uint8_t fill = static_cast<uint8_t>(zp_x_);
  // The bordered input (Hwc, Plane): pad_top rows above, pad_left columns left, and so on; tap
  // (ky, kx) of output pixel (oy, ox) is bordered pixel (oy·sh + ky·dh, ox·sw + kx·dw).
  const int64_t wp = s.in_w + win.pad_left + win.pad_right,
                hp = s.in_h + win.pad_top + win.pad_bottom;
  if (stage_ == Stage::Hwc && sub_ > 1) {  // only the pixels read, densely
    for (int64_t j = 0; j < ng; ++j) grp_off_[j] = j * kr;
    for (int64_t p = 0; p < pix_; ++p) pix_off_[p] = p * cp_;
    n = static_cast<size_t>(pix_ * cp_);
  } else if (stage_ == Stage::Hwc) {
    for (int64_t j = 0; j < ng; ++j) {
      const int64_t tap = j * kr / cp_, ky = tap / win.kernel_w, kx = tap % win.kernel_w;
      grp_off_[j] = (ky * win.dilation_h * wp + kx * win.dilation_w) * cp_ + j * kr % cp_;
    }
    for (int64_t p = 0; p < pix_; ++p)
      pix_off_[p] = ((p / ow) * win.stride_h * wp + (p % ow) * win.stride_w) * cp_;
    n = static_cast<size_t>(hp * wp * cp_);
  } else if (stage_ == Stage::Plane) {
    // A group reads up to kr − 1 elements past its row's window: into the next row, or for the
    // last pixel past the plane (the slack), against zero weights either way.
    for (int64_t j = 0; j < ng; ++j) grp_off_[j] = (j / gpr) * win.dilation_h * wp + (j % gpr) * kr;
    for (int64_t p = 0; p < pix_; ++p)
      pix_off_[p] = (p / ow) * win.stride_h * wp + (p % ow) * win.stride_w;
    n = static_cast<size_t>(hp * wp + kr);
  } else {
    for (int64_t j = 0; j < ng; ++j) grp_off_[j] = j * kr;
    for (int64_t p = 0; p < pix_pad_; ++p) pix_off_[p] = p * kp_;
    n = static_cast<size_t>(pix_pad_ * kp_);
    fill = 0;  // rows past pix_ and taps past k_: computed against zero weights or discarded
  }
  if (int8) {
    col8_.assign(n, fill);
  } else {
    col16_.assign(n, static_cast<int16_t>(fill));
  }
}

// The weights in the kernel's blocks, in the staging's tap order, and the folded bias.
void PreparedConv2d::pack_weights(const IntLayer& L) {
  const ConvShape& s = s_;
  const int64_t kr = kernel_->kr, kw = s.window.kernel_w, kk = s.window.taps(), ng = kp_ / kr;
  const int64_t gpr = (kw + kr - 1) / kr;
  const bool int8 = kernel_->layout == WeightLayout::Quad8;
  const size_t blocks = static_cast<size_t>(oc_pad_ / kMr * ng);
  std::vector<Quad8Block> w8(int8 ? blocks : 0);
  std::vector<Pair16Block> w16(int8 ? 0 : blocks);
  bias_.resize(static_cast<size_t>(s.out_c));
  for (int64_t oc = 0; oc < s.out_c; ++oc) {
    int64_t sum = 0;
    for (int64_t k = 0; k < k_; ++k) {
      const int32_t w = L.weights[oc * k_ + k];
      sum += w;
      // The tap's place in the kernel's reduction: im2col keeps the weights' order (i, ky, kx);
      // HWC orders (ky, kx, i) with i padded to cp; the plane (ky, kx) with kx padded to gpr·kr.
      const int64_t i = k / kk, kyx = k % kk;
      const int64_t kd = stage_ == Stage::Hwc     ? kyx * cp_ + i
                         : stage_ == Stage::Plane ? kyx / kw * gpr * kr + kyx % kw
                                                  : k;
      // Block (tile t, tap group j), channel o within the tile, tap e within the group.
      const int64_t t = oc / kMr, o = oc % kMr, j = kd / kr, e = kd % kr;
      const size_t b = static_cast<size_t>(t * ng + j);
      if (int8) {
        w8[b].w[o][e] = static_cast<int8_t>(w);
      } else {
        w16[b].w[o][e] = static_cast<int16_t>(w);
      }
    }
    bias_[oc] = int64_t{L.bias[oc]} - int64_t{zp_x_} * sum;
  }
  // Read-only from here on: copies of this conv (of a GraphExecutor) share the blocks.
  w8_ = std::make_shared<const std::vector<Quad8Block>>(std::move(w8));
  w16_ = std::make_shared<const std::vector<Pair16Block>>(std::move(w16));
}

// The requantization constants of the two vector epilogues, and which tiles may take them.
void PreparedConv2d::plan_epilogue(const IntLayer& L) {
  const ConvShape& s = s_;
  requant_ = L.requant;
  zp_out_ = L.out_zero_point;
  lo_ = L.out_lo;
  hi_ = L.out_hi;
  if (lo_ < 0 || hi_ > 255 || lo_ > hi_)
    fail("prepare_conv2d_u8: layer '{}' output range {}..{} (expected within 0..255)", L.name, lo_,
         hi_);
  const bool vector = kernel_->isa != Isa::Portable;  // every other tier has AVX2
  // The int64-lane epilogue; padded channels compute 0 and are discarded.
  const auto npad = static_cast<size_t>(oc_pad_);
  ep_bias_.assign(npad, 0);
  ep_mult_.assign(npad, 0);
  ep_shift_.assign(npad, 1);
  ep_round_.assign(npad, 1);
  ep_vector_ok_.assign(npad / kMr, vector);
  for (int64_t oc = 0; oc < s.out_c; ++oc) {
    const Requant& r = requant_[oc];
    ep_bias_[oc] = bias_[oc];
    if (r.multiplier == 0) continue;  // M = 0: (a·0 + 1) >> 1 = 0, as requantize gives
    if (r.shift < 1 || r.shift > 62) ep_vector_ok_[oc / kMr] = 0;
    ep_mult_[oc] = r.multiplier;
    ep_shift_[oc] = std::clamp(r.shift, 1, 62);
    ep_round_[oc] = int64_t{1} << (ep_shift_[oc] - 1);
  }
  // The int32 epilogue (epilogue_avx2_q32).
  q_bias_.assign(npad, 0);
  q_shift_.assign(npad, 0);
  q_mult_.assign(npad, 0);
  q_round_.assign(npad, 0);
  q_ok_.assign(npad / kMr, vector);
  const int64_t dot_max = k_ * 255 * 128;
  const int64_t lanes = kernel_->epilogue ? 16 : 8;  // EpilogueQ32's or epilogue_avx2_q32's
  for (int64_t oc = 0; oc < s.out_c; ++oc) {
    const Requant& r = requant_[oc];
    const size_t slot =
        static_cast<size_t>(oc / lanes * lanes + (oc % 2) * (lanes / 2) + (oc % lanes) / 2);
    const bool zero = r.multiplier == 0;  // requantize gives 0 for any a
    if ((!zero && (r.shift < 32 || r.shift > 62)) ||
        (bias_[oc] < 0 ? -bias_[oc] : bias_[oc]) + dot_max >= (int64_t{1} << 31)) {
      q_ok_[oc / kMr] = 0;
      continue;
    }
    q_bias_[oc] = static_cast<int32_t>(bias_[oc]);
    if (zero) continue;
    q_shift_[oc] = r.shift - 32;
    q_mult_[slot] = r.multiplier;
    q_round_[slot] = int64_t{1} << (r.shift - 1);
  }
}

PreparedConv2d prepare_linear_u8(int64_t in_features, int64_t out_features, const IntLayer& L,
                                 Isa isa, int in_bits) {
  return prepare_conv2d_u8(ConvShape{in_features, 1, 1, out_features, 1, 1, 0, 1}, L, isa, in_bits);
}

double PreparedConv2d::staging_uops() const {
  const ConvShape& s = s_;
  switch (stage_) {
    case Stage::Plane:
      return static_cast<double>(s.in_h * s.in_w) / 8;
    case Stage::Im2col:
      return static_cast<double>(pix_ * kp_);
    case Stage::Hwc:
      break;
  }
  // to_hwc's split: channels [0, c_vec) by transposes where rows have >= 8 (read) pixels, or
  // (stride 1) the plane has.
  const int64_t h = sub_ > 1 ? s.out_h() : s.in_h, w = sub_ > 1 ? s.out_w() : s.in_w;
  const bool vec =
      kernel_->layout == WeightLayout::Quad8 &&
      ((w >= 8 && (sub_ == 1 || (sub_ == 2 && 2 * w <= s.in_w))) || (sub_ == 1 && h * w >= 8));
  const int64_t c_vec = vec ? s.in_c / 16 * 16 : 0;
  return static_cast<double>(h * w) * (0.5 * static_cast<double>(c_vec) +
                                       3.0 * static_cast<double>(s.in_c - c_vec));
}

template <typename T>
void PreparedConv2d::stage_input(const uint8_t* x, T* scratch) const {
  switch (stage_) {
    case Stage::Hwc:
      return to_hwc(s_, x, cp_, sub_, scratch);
    case Stage::Plane:
      return to_plane(s_, x, scratch);
    case Stage::Im2col:
      return im2col_any(s_, x, static_cast<T>(zp_x_), kp_, pix_, scratch);
  }
}

size_t PreparedConv2d::weight_bytes() const {
  return (w8_ ? w8_->size() * sizeof(Quad8Block) : 0) +
         (w16_ ? w16_->size() * sizeof(Pair16Block) : 0);
}

size_t PreparedConv2d::scratch_bytes() const {
  return col8_.size() + col16_.size() * sizeof(int16_t) + acc_.size() * sizeof(int32_t);
}

template <typename Epi>
void PreparedConv2d::run_tiles(const uint8_t* x, Epi&& epi) {
  const bool int8 = kernel_->layout == WeightLayout::Quad8;
  const int64_t ng = kp_ / kernel_->kr, nr = kernel_->nr;
  const void* src;
  const void* wbase;
  size_t wtile_bytes;
  if (int8) {
    stage_input(x, col8_.data());
    src = col8_.data();
    wbase = w8_->data();
    wtile_bytes = static_cast<size_t>(ng) * sizeof(Quad8Block);
  } else {
    stage_input(x, col16_.data());
    src = col16_.data();
    wbase = w16_->data();
    wtile_bytes = static_cast<size_t>(ng) * sizeof(Pair16Block);
  }
  const ConvTileFn tile = kernel_->tile;
  for (int64_t t = 0; t < oc_pad_ / kMr; ++t) {
    const void* w = static_cast<const uint8_t*>(wbase) + t * wtile_bytes;
    const int64_t oc0 = t * kMr, noc = std::min<int64_t>(kMr, s_.out_c - oc0);
    for (int64_t p0 = 0; p0 < pix_pad_; p0 += nr) {
      const int64_t np = std::min<int64_t>(nr, pix_ - p0);
      (np < nr && kernel_->tail ? kernel_->tail[np] : tile)(
          w, src, pix_off_.data() + p0, grp_off_.data(), ng, flush_, acc_.data());
      epi(t, oc0, noc, p0);
    }
  }
}

void PreparedConv2d::run_acc(const uint8_t* x, int64_t* acc) {
  const int64_t nr = kernel_->nr;
  run_tiles(x, [&](int64_t, int64_t oc0, int64_t noc, int64_t p0) {
    const int64_t np = std::min<int64_t>(nr, pix_ - p0);
    for (int64_t o = 0; o < noc; ++o) {
      const int64_t b = bias_[oc0 + o];
      int64_t* a = acc + out_ch_[oc0 + o] * pix_ + p0;
      for (int64_t p = 0; p < np; ++p) a[p] = b + acc_[p * kMr + o];
    }
  });
}

void PreparedConv2d::run(const uint8_t* x, uint8_t* y) {
  if (acc_only_)
    fail("PreparedConv2d::run: prepared for its accumulators alone (prepare_conv2d_acc)");
  const int64_t nr = kernel_->nr;
  run_tiles(x, [&](int64_t t, int64_t oc0, int64_t noc, int64_t p0) {
    if (kernel_->epilogue && q_ok_[t]) {  // the kernel's own, the whole tile at once
      const EpilogueQ32 q{q_bias_.data() + oc0,
                          q_shift_.data() + oc0,
                          q_mult_.data() + oc0,
                          q_round_.data() + oc0,
                          zp_out_,
                          lo_,
                          hi_};
      kernel_->epilogue(acc_.data(), q, out_ch_.data() + oc0, noc, std::min<int64_t>(nr, pix_ - p0),
                        pix_, y + p0);
      return;
    }
    // The epilogue, 6 pixels at a time.
    for (int64_t q = 0; q < nr && p0 + q < pix_; q += kEpiloguePix) {
      const int32_t* acc = acc_.data() + q * kMr;
      const int64_t np = std::min<int64_t>(kEpiloguePix, pix_ - p0 - q);
      // Channel oc0 + o goes to plane out_ch_[oc0 + o] of y (the identity for a whole layer).
      uint8_t* yt = y + p0 + q;
      const int64_t* ch = out_ch_.data() + oc0;
#ifdef SQ_X86
      if (q_ok_[t]) {
        epilogue_avx2_q32(acc, q_bias_.data() + oc0, q_mult_.data() + oc0, q_round_.data() + oc0,
                          q_shift_.data() + oc0, ch, noc, np, pix_, zp_out_, lo_, hi_, yt);
        continue;
      }
      if (ep_vector_ok_[t]) {
        epilogue_avx2(acc, ep_bias_.data() + oc0, ep_mult_.data() + oc0, ep_shift_.data() + oc0,
                      ep_round_.data() + oc0, requant_.data() + oc0, ch, noc, np, pix_, zp_out_,
                      lo_, hi_, yt);
        continue;
      }
#endif
      for (int64_t o = 0; o < noc; ++o) {
        const int64_t oc = oc0 + o;
        const Requant r = requant_[oc];
        uint8_t* yo = yt + ch[o] * pix_;
        for (int64_t p = 0; p < np; ++p) {
          // IntLayer::output: requantize, add the zero point, clamp.
          const int64_t v = int64_t{requantize_fast(bias_[oc] + acc[p * kMr + o], r)} + zp_out_;
          yo[p] = static_cast<uint8_t>(std::clamp<int64_t>(v, lo_, hi_));
        }
      }
    }
  });
}

}  // namespace sq
