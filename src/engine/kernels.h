// Internal to the engine: what the per-ISA micro-kernel files (kernel_<isa>.cpp) share. The table
// itself is kernel_table.cpp; the contract of a kernel is ConvMicroKernel's (engine.h).
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "sigmaquant/engine.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SQ_X86 1
#endif

namespace sq::kernels {

// Every kernel's output tile is 16 channels wide (the blocks of engine.h); the epilogue takes
// the pixels 6 at a time, so every nr is a multiple of 6.
constexpr int kMr = PreparedConv2d::kOcTile;
constexpr int kEpiloguePix = 6;

// The bounds a kernel's `supports` reads: the largest |pair sum| of a u8 × s8 instruction that
// adds two products (vpmaddubsw) into int16.
inline int64_t pair_max(int32_t w_max, int32_t x_max) { return 2 * int64_t{w_max} * x_max; }
inline bool always(int32_t, int32_t) { return true; }
inline int64_t no_flush(int32_t, int32_t) { return 0; }

// The kernel tier `isa` runs for weights |w| <= w_max at in_bits activations: its highest-ranked
// kernel that supports them (Auto: best_isa()). Throws for Reference, a tier this CPU lacks,
// activation bits outside 1..8, or no kernel supporting the bounds (conv_fast.cpp).
const ConvMicroKernel& choose_kernel(Isa isa, int32_t w_max, int in_bits);

// A layer restricted to some of its output channels (prepare_conv2d_u8's channel subsets,
// prepare_conv2d_group_tiles' parts): layer_without_channels copies L's points and names with
// no channel; append_channel adds output channel c's constants — its per-channel vectors where
// L has them for all `out_c` channels (bias and requant always) — the weights are the caller's.
inline IntLayer layer_without_channels(const IntLayer& L) {
  IntLayer sub;
  sub.name = L.name;
  sub.node = L.node;
  sub.in_node = L.in_node;
  sub.in_scale = L.in_scale;
  sub.in_zero_point = L.in_zero_point;
  sub.out_node = L.out_node;
  sub.out_scale = L.out_scale;
  sub.out_zero_point = L.out_zero_point;
  sub.out_lo = L.out_lo;
  sub.out_hi = L.out_hi;
  return sub;
}
inline void append_channel(IntLayer& sub, const IntLayer& L, int64_t c, int64_t out_c) {
  const auto i = static_cast<size_t>(c);
  if (static_cast<int64_t>(L.channel_bits.size()) == out_c)
    sub.channel_bits.push_back(L.channel_bits[i]);
  if (static_cast<int64_t>(L.weight_scales.size()) == out_c)
    sub.weight_scales.push_back(L.weight_scales[i]);
  if (static_cast<int64_t>(L.bias_float.size()) == out_c) sub.bias_float.push_back(L.bias_float[i]);
  sub.bias.push_back(L.bias[i]);
  sub.requant.push_back(L.requant[i]);
}

// CHW codes of shape s's input into the interior of a zp-bordered HWC buffer of cp entries a
// pixel (the conv kernels' direct staging, conv_fast.cpp; SSE2 transposes on x86): the border
// and channels past in_c are left as they are.
void to_hwc_u8(const ConvShape& s, const uint8_t* x, int64_t cp, uint8_t* buf);

#ifdef SQ_X86
// Broadcasts one group of activations (2 int16 or 4 uint8 = 32 bits) to every 32-bit lane. A
// function, not a lambda: lambdas do not inherit the target attribute.
__attribute__((target("avx2"))) inline __m256i broadcast32(const void* c) {
  int32_t v;
  std::memcpy(&v, c, sizeof v);
  return _mm256_set1_epi32(v);
}

// The ymm 16-channel × 6-pixel kernels differ only in the element type and the
// multiply-accumulate step, STEP(acc, broadcast activations, weights) → acc. One macro writes them
// with 12 named accumulators and 6 named pixel pointers: GCC kept an __m256i a[6][2] array partly
// on the stack (a store per accumulator per tap group), which cost as much as the dpbusds.
// 12 accumulators + 2 weight vectors + 1 broadcast = the 16 ymm registers, and 12 independent
// chains (vpdpbusd's latency is 5).
#define SQ_PIX_STEP(P, STEP)                 \
  do {                                       \
    const __m256i b = broadcast32(x##P + g); \
    a##P##0 = STEP(a##P##0, b, w0);          \
    a##P##1 = STEP(a##P##1, b, w1);          \
  } while (0)
#define SQ_PIX_STORE(P)                                                          \
  do {                                                                           \
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + P * kMr), a##P##0);     \
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + P * kMr + 8), a##P##1); \
  } while (0)
#define SQ_PIX_POINTERS(T)                                                                    \
  const T* base = static_cast<const T*>(src);                                                 \
  const T *x0 = base + pix[0], *x1 = base + pix[1], *x2 = base + pix[2], *x3 = base + pix[3], \
          *x4 = base + pix[4], *x5 = base + pix[5]
#define SQ_ZERO_ACC                                                                        \
  const __m256i z = _mm256_setzero_si256();                                                \
  __m256i a00 = z, a01 = z, a10 = z, a11 = z, a20 = z, a21 = z, a30 = z, a31 = z, a40 = z, \
          a41 = z, a50 = z, a51 = z
#define SQ_ALL_PIX(M, ARG) \
  M(0, ARG);               \
  M(1, ARG);               \
  M(2, ARG);               \
  M(3, ARG);               \
  M(4, ARG);               \
  M(5, ARG)
#define SQ_TILE_KERNEL(NAME, TARGET, T, WT, STEP)                                                \
  __attribute__((target(TARGET))) void NAME(const void* wv, const void* src, const int64_t* pix, \
                                            const int64_t* grp, int64_t ng, int64_t,             \
                                            int32_t* acc) {                                      \
    const WT* w = static_cast<const WT*>(wv);                                                    \
    SQ_PIX_POINTERS(T);                                                                          \
    SQ_ZERO_ACC;                                                                                 \
    constexpr int64_t kStep = 64 / sizeof(WT); /* one 64-byte block per tap group */             \
    for (int64_t j = 0; j < ng; ++j) {                                                           \
      const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j * kStep));    \
      const __m256i w1 =                                                                         \
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j * kStep + kStep / 2));       \
      const int64_t g = grp[j];                                                                  \
      SQ_ALL_PIX(SQ_PIX_STEP, STEP);                                                             \
    }                                                                                            \
    SQ_PIX_STORE(0);                                                                             \
    SQ_PIX_STORE(1);                                                                             \
    SQ_PIX_STORE(2);                                                                             \
    SQ_PIX_STORE(3);                                                                             \
    SQ_PIX_STORE(4);                                                                             \
    SQ_PIX_STORE(5);                                                                             \
  }
#endif

// Each ISA file's entries (kernel_table.cpp lists the files).
using KernelList = std::vector<const ConvMicroKernel*>;

}  // namespace sq::kernels
