// The portable tier: the int16 layout in plain loops, for any CPU (the table's fallback).
#include <algorithm>

#include "kernels.h"

namespace sq::kernels {

namespace {

constexpr int kNr = 6;

void tile_portable(const void* wv, const void* srcv, const int64_t* pix, const int64_t* grp,
                   int64_t ng, int64_t, int32_t* acc) {
  const int16_t* w = static_cast<const int16_t*>(wv);
  for (int p = 0; p < kNr; ++p) {
    const int16_t* c = static_cast<const int16_t*>(srcv) + pix[p];
    int32_t a[kMr] = {};
    for (int64_t j = 0; j < ng; ++j) {
      const int16_t* wj = w + j * 2 * kMr;
      const int32_t x0 = c[grp[j]], x1 = c[grp[j] + 1];
      for (int o = 0; o < kMr; ++o) a[o] += wj[2 * o] * x0 + wj[2 * o + 1] * x1;
    }
    std::copy(a, a + kMr, acc + p * kMr);
  }
}

bool any_cpu() { return true; }

// int16 × int16 products summed in int32: exact for any 8-bit weight and uint8 activation.
const ConvMicroKernel kPortable = {
    "portable",           Isa::Portable, any_cpu,  kMr, kNr,          2,
    WeightLayout::Pair16, always,        no_flush, 1,   tile_portable};

}  // namespace

KernelList portable_kernels() { return {&kPortable}; }

}  // namespace sq::kernels
