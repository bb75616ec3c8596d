// The AVX2 tier (ymm, 16 channels × 6 pixels): three ways to multiply u8 activations by s8
// weights, each exact on its own range (`supports`):
//   avx2_madd16       int16 × int16 pairs → int32 (vpmaddwd): any 8-bit weight
//   avx2_maddubs      u8 × s8 pairs → int16 (vpmaddubsw), then pairs of those → int32 (vpmaddwd
//                     with ones): while a pair sum fits int16, 2·max|w|·max x <= 32767
//   avx2_maddubs_i16  the same pairs summed in int16 (vpaddw) over `flush` tap groups before one
//                     widening: low bits (docs/engine.md, "Low bits"). Two multiplier µops per
//                     32 products become one (plus 1/flush of one).
#include <algorithm>

#include "kernels.h"

namespace sq::kernels {

namespace {

#ifdef SQ_X86
#define SQ_STEP_MADD16(a, b, w) _mm256_add_epi32(a, _mm256_madd_epi16(w, b))
SQ_TILE_KERNEL(tile_avx2_madd16, "avx2", int16_t, int16_t, SQ_STEP_MADD16)

// maddubs saturates at ±32767: exact only while the pair sums fit (checked by `supports`).
#define SQ_STEP_MADDUBS(a, b, w) \
  _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_maddubs_epi16(b, w), _mm256_set1_epi16(1)))
SQ_TILE_KERNEL(tile_avx2_maddubs, "avx2", uint8_t, int8_t, SQ_STEP_MADDUBS)

// int16 lanes 2o and 2o+1 of a maddubs hold channel o's two pair sums of a tap group; each lane
// adds one pair sum a group, so after `flush` groups |lane| <= flush · pair_max <= 32767 (the
// choice of flush) and vpaddw never wraps. Then vpmaddwd with ones adds the two lanes of each
// channel into int32, which the tile accumulates in acc.
#define SQ_STEP_I16(a, b, w) _mm256_add_epi16(a, _mm256_maddubs_epi16(b, w))
// One block of at most `flush` tap groups: the 12 int16 accumulators stored as they are (each
// 256-bit vector at the place of the int32 one it becomes). Not inlined: merged into the loop
// over blocks, GCC kept half the accumulators on the stack (a load and a store per accumulator
// per group, slower than avx2_maddubs); on its own it compiles as the other kernels do.
__attribute__((noinline)) SQ_TILE_KERNEL(tile_i16_block, "avx2", uint8_t, int8_t, SQ_STEP_I16)

    __attribute__((target("avx2"))) void tile_avx2_maddubs_i16(const void* wv, const void* src,
                                                               const int64_t* pix,
                                                               const int64_t* grp, int64_t ng,
                                                               int64_t flush, int32_t* acc) {
  const int8_t* w = static_cast<const int8_t*>(wv);
  alignas(32) int32_t part[6 * kMr];
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t j0 = 0; j0 < ng; j0 += flush) {
    const int64_t n = std::min(flush, ng - j0);
    tile_i16_block(w + j0 * 64, src, pix, grp + j0, n, 0, part);
    for (int i = 0; i < 6 * kMr; i += 8) {
      const __m256i wide =
          _mm256_madd_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(part + i)), ones);
      __m256i* a = reinterpret_cast<__m256i*>(acc + i);
      _mm256_storeu_si256(a, j0 == 0 ? wide : _mm256_add_epi32(_mm256_loadu_si256(a), wide));
    }
  }
  if (ng == 0)
    for (int i = 0; i < 6 * kMr; i += 8)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + i), _mm256_setzero_si256());
}
#undef SQ_STEP_I16
#undef SQ_STEP_MADDUBS
#undef SQ_STEP_MADD16
#endif

bool maddubs_supports(int32_t w_max, int32_t x_max) { return pair_max(w_max, x_max) <= 32767; }

// Tap groups per widening: the most that keep every int16 lane within ±32767.
int64_t i16_flush(int32_t w_max, int32_t x_max) {
  const int64_t pm = pair_max(w_max, x_max);
  return pm == 0 ? int64_t{1} << 40 : 32767 / pm;
}
// Below 4 groups a widening the int16 sums save too little (sq_bench: no faster than
// avx2_maddubs at flush 2); at 1 it is avx2_maddubs with extra stores.
constexpr int64_t kMinFlush = 4;
bool i16_supports(int32_t w_max, int32_t x_max) { return i16_flush(w_max, x_max) >= kMinFlush; }

#ifdef SQ_X86
const ConvMicroKernel kMadd16 = {
    "avx2_madd16", Isa::Avx2, cpu_has_avx2,    kMr, 6, 2, WeightLayout::Pair16, always,
    no_flush,      1,         tile_avx2_madd16};
const ConvMicroKernel kMaddubs = {
    "avx2_maddubs", Isa::Avx2, cpu_has_avx2,     kMr, 6, 4, WeightLayout::Quad8, maddubs_supports,
    no_flush,       2,         tile_avx2_maddubs};
const ConvMicroKernel kMaddubsI16 = {"avx2_maddubs_i16",
                                     Isa::Avx2,
                                     cpu_has_avx2,
                                     kMr,
                                     6,
                                     4,
                                     WeightLayout::Quad8,
                                     i16_supports,
                                     i16_flush,
                                     3,
                                     tile_avx2_maddubs_i16};
#endif

}  // namespace

KernelList avx2_kernels() {
#ifdef SQ_X86
  return {&kMadd16, &kMaddubs, &kMaddubsI16};
#else
  return {};
#endif
}

}  // namespace sq::kernels
