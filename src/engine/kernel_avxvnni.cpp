// The AVX-VNNI tier (VEX-encoded vpdpbusd on ymm: Alder Lake and later, Zen 5): u8 × s8, 4 taps
// summed straight into int32 with no intermediate rounding, exact for all 8-bit weights.
#include "kernels.h"

namespace sq::kernels {

namespace {

#ifdef SQ_X86
#define SQ_STEP_DPBUSD(a, b, w) _mm256_dpbusd_avx_epi32(a, b, w)
SQ_TILE_KERNEL(tile_avxvnni_dpbusd, "avx2,avxvnni", uint8_t, int8_t, SQ_STEP_DPBUSD)
#undef SQ_STEP_DPBUSD

const ConvMicroKernel kDpbusd = {"avxvnni_dpbusd",
                                 Isa::AvxVnni,
                                 cpu_has_avxvnni,
                                 kMr,
                                 6,
                                 4,
                                 WeightLayout::Quad8,
                                 always,
                                 no_flush,
                                 1,
                                 tile_avxvnni_dpbusd};
#endif

}  // namespace

KernelList avxvnni_kernels() {
#ifdef SQ_X86
  return {&kDpbusd};
#else
  return {};
#endif
}

}  // namespace sq::kernels
