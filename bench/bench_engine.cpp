// Integer engine kernels: GOP/s (2 ops per multiply-accumulate) of the reference conv2d against
// the optimized kernels, on resnet20's convolution shapes, per (weight bits, activation bits).
//   ./build/bin/sq_bench --benchmark_filter=Conv2d
// The optimized kernels' work does not depend on the values (weights widen to 8 or 16 bits in
// prepare, activations are uint8 codes); the bit pairs show that and pick maddubs over madd16.
#include <benchmark/benchmark.h>

#include <random>
#include <utility>
#include <vector>

#include "sigmaquant/engine.h"

namespace {

const sq::ConvShape kStages[] = {
    // resnet20 on CIFAR (32x32): the stage convolutions, 3x3, stride 1, padding 1.
    {16, 32, 32, 16, 3, 1, 1, 1},
    {32, 16, 16, 32, 3, 1, 1, 1},
    {64, 8, 8, 64, 3, 1, 1, 1},
    // resnet20 on Fashion-MNIST (1x28x28): the stem (1 channel: im2col), stage 2's 1x1 stride-2
    // shortcut, stage 3's 3x3 on 7x7 (rows too short for the 8-pixel transposes).
    {1, 28, 28, 16, 3, 1, 1, 1},
    {16, 28, 28, 32, 1, 2, 0, 1},
    {64, 7, 7, 64, 3, 1, 1, 1},
};

struct Problem {
  sq::ConvShape s;
  sq::IntLayer L;
  std::vector<uint8_t> x, y;
};

Problem make_problem(int stage, int wbits, int abits) {
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
  for (auto& v : p.x) v = static_cast<uint8_t>(rng() % (1u << abits));
  p.y.resize(p.s.out_size());
  return p;
}

void report(benchmark::State& state, const sq::ConvShape& s) {
  const double ops = 2.0 * static_cast<double>(s.weights() * s.out_h() * s.out_w());
  state.counters["GOP/s"] =
      benchmark::Counter(ops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Args: stage (index into kStages), weight bits, activation bits.
void BM_Conv2dRef(benchmark::State& state) {
  Problem p = make_problem(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)),
                           static_cast<int>(state.range(2)));
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
  Problem p = make_problem(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)),
                           static_cast<int>(state.range(2)));
  sq::PreparedConv2d conv = sq::prepare_conv2d_u8(p.s, p.L, kIsa);
  state.SetLabel(conv.kernel_name());
  for (auto _ : state) {
    conv.run(p.x.data(), p.y.data());
    benchmark::DoNotOptimize(p.y.data());
  }
  report(state, p.s);
}

void Args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"stage", "wbits", "abits"});
  for (int stage = 0; stage < 6; ++stage)
    for (auto [wbits, abits] : {std::pair{2, 8}, {4, 4}, {4, 8}, {8, 8}})
      b->Args({stage, wbits, abits});
}

BENCHMARK(BM_Conv2dRef)->Apply(Args);
BENCHMARK_TEMPLATE(BM_Conv2dFast, sq::Isa::Portable)->Apply(Args);
BENCHMARK_TEMPLATE(BM_Conv2dFast, sq::Isa::Avx2)->Apply(Args);
BENCHMARK_TEMPLATE(BM_Conv2dFast, sq::Isa::AvxVnni)->Apply(Args);

}  // namespace
