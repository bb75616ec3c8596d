// Integer engine kernels: GOP/s (2 ops per multiply-accumulate) of the reference conv2d against
// the optimized kernels, on resnet20's three 3x3 convolution shapes, per weight bits.
//   ./build/bin/sq_bench --benchmark_filter=Conv2d
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "sigmaquant/engine.h"

namespace {

// resnet20 (CIFAR / Fashion-MNIST 32x32): the stage convolutions, stride 1, padding 1.
const sq::ConvShape kStages[] = {
    {16, 32, 32, 16, 3, 1, 1, 1},
    {32, 16, 16, 32, 3, 1, 1, 1},
    {64, 8, 8, 64, 3, 1, 1, 1},
};

struct Problem {
  sq::ConvShape s;
  sq::IntLayer L;
  std::vector<uint8_t> x, y;
};

Problem make_problem(int stage, int wbits) {
  Problem p;
  p.s = kStages[stage];
  std::mt19937_64 rng(42);
  const int32_t lo = -(1 << (wbits - 1)), hi = (1 << (wbits - 1)) - 1;
  p.L.name = "bench";
  p.L.out_node = 1;
  p.L.weights.resize(p.s.weights());
  for (auto& w : p.L.weights)
    w = lo + static_cast<int32_t>(rng() % static_cast<uint64_t>(hi - lo + 1));
  p.L.in_zero_point = 0;  // post-ReLU activations
  p.L.bias.assign(p.s.out_c, 100);
  p.L.requant.assign(p.s.out_c, sq::quantize_multiplier(1.0 / 4096));
  p.L.out_lo = 0;
  p.L.out_hi = 255;
  p.x.resize(p.s.in_size());
  for (auto& v : p.x) v = static_cast<uint8_t>(rng() % 256);
  p.y.resize(p.s.out_size());
  return p;
}

void report(benchmark::State& state, const sq::ConvShape& s) {
  const double ops = 2.0 * static_cast<double>(s.weights() * s.out_h() * s.out_w());
  state.counters["GOP/s"] =
      benchmark::Counter(ops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Args: stage (0..2), weight bits.
void BM_Conv2dRef(benchmark::State& state) {
  Problem p = make_problem(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
  for (auto _ : state) {
    sq::conv2d_u8_ref(p.s, p.L, p.x.data(), p.y.data());
    benchmark::DoNotOptimize(p.y.data());
  }
  report(state, p.s);
}

template <sq::Isa kIsa>
void BM_Conv2dFast(benchmark::State& state) {
  if ((kIsa == sq::Isa::Avx2 && !sq::cpu_has_avx2()) ||
      (kIsa == sq::Isa::AvxVnni && !sq::cpu_has_avxvnni())) {
    state.SkipWithError("the CPU lacks this ISA");
    return;
  }
  Problem p = make_problem(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
  sq::PreparedConv2d conv = sq::prepare_conv2d_u8(p.s, p.L, kIsa);
  state.SetLabel(conv.kernel_name());
  for (auto _ : state) {
    conv.run(p.x.data(), p.y.data());
    benchmark::DoNotOptimize(p.y.data());
  }
  report(state, p.s);
}

void Args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"stage", "wbits"});
  for (int stage = 0; stage < 3; ++stage)
    for (int wbits : {2, 4, 8}) b->Args({stage, wbits});
}

BENCHMARK(BM_Conv2dRef)->Apply(Args);
BENCHMARK_TEMPLATE(BM_Conv2dFast, sq::Isa::Portable)->Apply(Args);
BENCHMARK_TEMPLATE(BM_Conv2dFast, sq::Isa::Avx2)->Apply(Args);
BENCHMARK_TEMPLATE(BM_Conv2dFast, sq::Isa::AvxVnni)->Apply(Args);

}  // namespace
