// The micro-kernel table: every kernel compiled in, one kernel_<isa>.cpp per ISA. Adding an ISA
// is that file (its tile functions and ConvMicroKernel entries, returned by <isa>_kernels()) and
// its name on the SQ_KERNEL_FILES line below; prepare, the tests (tests/core/test_kernels.cpp)
// and the benchmarks (bench/bench_engine.cpp) iterate over conv_kernels().
#include <string>

#include "kernels.h"
#include "sigmaquant/error.h"

namespace sq {

namespace kernels {
#define SQ_KERNEL_FILES(X) X(portable) X(avx2) X(avxvnni) X(avx512vnni)
#define SQ_DECLARE(isa) KernelList isa##_kernels();
SQ_KERNEL_FILES(SQ_DECLARE)
#undef SQ_DECLARE
}  // namespace kernels

const std::vector<const ConvMicroKernel*>& conv_kernels() {
  static const std::vector<const ConvMicroKernel*> table = [] {
    std::vector<const ConvMicroKernel*> all;
#define SQ_APPEND(isa) \
  for (const ConvMicroKernel* k : kernels::isa##_kernels()) all.push_back(k);
    SQ_KERNEL_FILES(SQ_APPEND)
#undef SQ_APPEND
    for (const ConvMicroKernel* k : all)
      if (k->mr != PreparedConv2d::kOcTile || k->nr % kernels::kEpiloguePix != 0 ||
          k->nr > PreparedConv2d::kMaxPixTile ||
          k->kr != (k->layout == WeightLayout::Quad8 ? 4 : 2))
        fail(
            "kernel table: '{}' has tile {}x{}x{} (expected 16 channels, a multiple of 6 "
            "pixels up to {}, and the layout's taps a group)",
            k->name, k->mr, k->nr, k->kr, PreparedConv2d::kMaxPixTile);
    return all;
  }();
  return table;
}
#undef SQ_KERNEL_FILES

const ConvMicroKernel& conv_kernel(const std::string& name) {
  std::string names;
  for (const ConvMicroKernel* k : conv_kernels()) {
    if (name == k->name) return *k;
    names += names.empty() ? k->name : std::string(", ") + k->name;
  }
  fail("conv kernel '{}' is not in the table (expected one of {})", name, names);
}

}  // namespace sq
