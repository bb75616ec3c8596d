// Optimized conv2d / linear (groups = 1): im2col into rows of raw activations, then a
// 16-channel × 4-pixel micro-kernel per ISA, chosen once in prepare (engine.h lists them).
// Every kernel computes Σ w·x in int32 over raw x (padding taps hold zp_x) without rounding or
// saturation; the bias absorbs −zp_x·Σw in int64, so acc equals the reference's
// bias + Σ w·(x − zp_x) exactly. int32 cannot overflow: prepare checks K·255·128 < 2^31.
#include <algorithm>
#include <climits>
#include <cstring>

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

static_assert(kOc == 16 && kPix == 4, "the micro-kernels are written for a 16x4 tile");
static_assert(sizeof(Pair16Block::w) / sizeof(Pair16Block::w[0]) == kOc &&
                  sizeof(Quad8Block::w) / sizeof(Quad8Block::w[0]) == kOc,
              "a weight block holds one tile of output channels");
constexpr int64_t kTaps16 = 2, kTaps8 = 4;  // taps per block

// acc[p][o] = Σ_j Σ_e w[j][o][e] · col[p][2j+e] for the kPix rows of col starting at `col`.
void tile_portable(const void* wv, const void* colv, int64_t kp, int32_t* acc) {
  const int16_t* w = static_cast<const int16_t*>(wv);
  const int16_t* col = static_cast<const int16_t*>(colv);
  for (int p = 0; p < kPix; ++p) {
    const int16_t* c = col + p * kp;
    int32_t a[kOc] = {};
    for (int64_t j = 0; j < kp / 2; ++j) {
      const int16_t* wj = w + j * 2 * kOc;
      const int32_t x0 = c[2 * j], x1 = c[2 * j + 1];
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

__attribute__((target("avx2"))) inline void store_tile(int32_t* acc, const __m256i (&a)[kPix][2]) {
  __m256i* out = reinterpret_cast<__m256i*>(acc);  // [pixel][16 channels] = 2 vectors a pixel
  for (int p = 0; p < kPix; ++p) {
    _mm256_storeu_si256(out + 2 * p, a[p][0]);
    _mm256_storeu_si256(out + 2 * p + 1, a[p][1]);
  }
}

// int16 × int16 pairs summed into int32: exact for any 8-bit weight and uint8 activation.
__attribute__((target("avx2"))) void tile_avx2_madd16(const void* wv, const void* colv, int64_t kp,
                                                      int32_t* acc) {
  const int16_t* w = static_cast<const int16_t*>(wv);
  const int16_t* col = static_cast<const int16_t*>(colv);
  __m256i a[kPix][2];
  for (auto& r : a) r[0] = r[1] = _mm256_setzero_si256();
  for (int64_t j = 0; j < kp / 2; ++j) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j * 32));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j * 32 + 16));
    for (int p = 0; p < kPix; ++p) {  // unrolled by the compiler (constant trip count)
      const __m256i b = broadcast32(col + p * kp + 2 * j);
      a[p][0] = _mm256_add_epi32(a[p][0], _mm256_madd_epi16(w0, b));
      a[p][1] = _mm256_add_epi32(a[p][1], _mm256_madd_epi16(w1, b));
    }
  }
  store_tile(acc, a);
}

// u8 × s8 pairs into int16 (maddubs), then pairs of those into int32 (madd with ones). maddubs
// saturates at ±32767: exact only for max|w| <= 64 (checked in prepare).
__attribute__((target("avx2"))) void tile_avx2_maddubs(const void* wv, const void* colv, int64_t kp,
                                                       int32_t* acc) {
  const int8_t* w = static_cast<const int8_t*>(wv);
  const uint8_t* col = static_cast<const uint8_t*>(colv);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i a[kPix][2];
  for (auto& r : a) r[0] = r[1] = _mm256_setzero_si256();
  for (int64_t j = 0; j < kp / 4; ++j) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j * 64));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j * 64 + 32));
    for (int p = 0; p < kPix; ++p) {
      const __m256i b = broadcast32(col + p * kp + 4 * j);
      a[p][0] = _mm256_add_epi32(a[p][0], _mm256_madd_epi16(_mm256_maddubs_epi16(b, w0), ones));
      a[p][1] = _mm256_add_epi32(a[p][1], _mm256_madd_epi16(_mm256_maddubs_epi16(b, w1), ones));
    }
  }
  store_tile(acc, a);
}

// u8 × s8, 4 taps summed straight into int32 (AVX-VNNI vpdpbusd): exact for all 8-bit weights.
__attribute__((target("avx2,avxvnni"))) void tile_avxvnni_dpbusd(const void* wv, const void* colv,
                                                                 int64_t kp, int32_t* acc) {
  const int8_t* w = static_cast<const int8_t*>(wv);
  const uint8_t* col = static_cast<const uint8_t*>(colv);
  __m256i a[kPix][2];
  for (auto& r : a) r[0] = r[1] = _mm256_setzero_si256();
  for (int64_t j = 0; j < kp / 4; ++j) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j * 64));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j * 64 + 32));
    for (int p = 0; p < kPix; ++p) {
      const __m256i b = broadcast32(col + p * kp + 4 * j);
      a[p][0] = _mm256_dpbusd_avx_epi32(a[p][0], b, w0);
      a[p][1] = _mm256_dpbusd_avx_epi32(a[p][1], b, w1);
    }
  }
  store_tile(acc, a);
}
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
#endif

using TileFn = void (*)(const void*, const void*, int64_t, int32_t*);

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

const char* PreparedConv2d::kernel_name() const {
  switch (kernel_) {
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

PreparedConv2d prepare_conv2d_u8(const ConvShape& s, const IntLayer& L, Isa isa) {
  check_conv(s, &L);
  if (s.groups != 1)
    fail("prepare_conv2d_u8: layer '{}' has {} groups (expected 1; use conv2d_u8_ref)", L.name,
         s.groups);
  if (L.out_node < 0)
    fail("prepare_conv2d_u8: layer '{}' has a float output (expected a quantized one)", L.name);
  if (isa == Isa::Reference)
    fail("prepare_conv2d_u8: Isa::Reference is for executors (expected Auto, Portable, Avx2 or "
         "AvxVnni)");
  if (isa == Isa::Auto) isa = best_isa();
  if (isa == Isa::Avx2 && !cpu_has_avx2()) fail("prepare_conv2d_u8: this CPU has no AVX2");
  if (isa == Isa::AvxVnni && !cpu_has_avxvnni())
    fail("prepare_conv2d_u8: this CPU has no AVX-VNNI");
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
  c.kernel_ = isa == Isa::AvxVnni ? Kernel::AvxVnniDpbusd
              : isa == Isa::Avx2  ? (wmax <= 64 ? Kernel::Avx2Maddubs : Kernel::Avx2Madd16)
                                  : Kernel::Portable;
  const bool int8 = uses_int8_layout(c.kernel_);
  const int64_t taps = int8 ? kTaps8 : kTaps16;
  c.kp_ = (c.k_ + taps - 1) / taps * taps;
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
      // Block (tile t, tap group j), channel o within the tile, tap e within the group.
      const int64_t t = oc / kOc, o = oc % kOc, j = k / taps, e = k % taps;
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
  // Rows past pix_ and taps past k_ stay zero: computed against zero weights or discarded.
  if (int8) {
    c.col8_.assign(static_cast<size_t>(c.pix_pad_ * c.kp_), 0);
  } else {
    c.col16_.assign(static_cast<size_t>(c.pix_pad_ * c.kp_), 0);
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
  const void* col;
  const void* wbase;
  size_t wtile_bytes, col_row_bytes;
  if (int8) {
    im2col_any<uint8_t>(s_, x, static_cast<uint8_t>(zp_x_), kp_, pix_, col8_.data());
    col = col8_.data();
    wbase = w8_.data();
    wtile_bytes = static_cast<size_t>(kp_ / kTaps8) * sizeof(Quad8Block);
    col_row_bytes = static_cast<size_t>(kp_);
  } else {
    im2col_any<int16_t>(s_, x, static_cast<int16_t>(zp_x_), kp_, pix_, col16_.data());
    col = col16_.data();
    wbase = w16_.data();
    wtile_bytes = static_cast<size_t>(kp_ / kTaps16) * sizeof(Pair16Block);
    col_row_bytes = static_cast<size_t>(kp_) * sizeof(int16_t);
  }
  const TileFn tile = tile_fn(kernel_);
  for (int64_t t = 0; t < oc_pad_ / kOc; ++t) {
    const void* w = static_cast<const uint8_t*>(wbase) + t * wtile_bytes;
    const int64_t oc0 = t * kOc, noc = std::min<int64_t>(kOc, s_.out_c - oc0);
    for (int64_t p0 = 0; p0 < pix_pad_; p0 += kPix) {
      tile(w, static_cast<const uint8_t*>(col) + p0 * col_row_bytes, kp_, acc_.data());
      const int64_t np = std::min<int64_t>(kPix, pix_ - p0);
#ifdef SQ_X86
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
