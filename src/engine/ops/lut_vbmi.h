// The engine's 256-entry table lookup on 64 codes at once (AVX-512 VBMI): what lut.cpp's tables
// and add.cpp's fused-table add both apply. Internal to the engine; include where the caller's
// function carries the same target attribute.
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

namespace sq::ops {

// t[0..127] in t0:t1, t[128..255] in t2:t3; vpermi2b reads an index's low 7 bits, the high bit
// picks the half. (A function, not a lambda: lambdas do not inherit the target attribute.)
__attribute__((target("avx512f,avx512bw,avx512vbmi"))) inline __m512i look64(__m512i c, __m512i t0,
                                                                             __m512i t1, __m512i t2,
                                                                             __m512i t3) {
  return _mm512_mask_blend_epi8(_mm512_movepi8_mask(c), _mm512_permutex2var_epi8(t0, c, t1),
                                _mm512_permutex2var_epi8(t2, c, t3));
}

}  // namespace sq::ops
#endif
