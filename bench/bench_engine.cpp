// Integer engine kernels: GOP/s (2 ops per multiply-accumulate) of the reference conv2d and of
// every kernel of the micro-kernel table (sq::conv_kernels()) on resnet20's convolution shapes
// (Fashion-MNIST, 1×28×28: the model `sigmaquant bench` runs), per (weight bits, activation
// bits), and as a percentage of this machine's measured u8 × s8 peak (bench_peak.cpp):
//   ./build/bin/sq_bench --benchmark_filter=Conv2d
//   Conv2d/<kernel>/shape:S/w:W/a:A   one kernel of the table (skipped where the CPU lacks its
//                                     ISA or the kernel is not exact for the bits)
//   Conv2dAuto/shape:S/w:W/a:A        what prepare_conv2d_u8 picks (Isa::Auto), its name the label
//   Conv2dRef/...                     the reference kernel
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <utility>
#include <vector>

#include "peak.h"
#include "sigmaquant/engine.h"

namespace {

// resnet20 on 1×28×28, every distinct conv shape (the fc layer has a float output: reference).
const sq::ConvShape kShapes[] = {
    {1, 28, 28, 16, 3, 1, 1, 1},   // 0 stem (one channel: the plane stage)
    {16, 28, 28, 16, 3, 1, 1, 1},  // 1 stage 1, 6 convs
    {16, 28, 28, 32, 3, 2, 1, 1},  // 2 stage 2's first conv, stride 2
    {32, 14, 14, 32, 3, 1, 1, 1},  // 3 stage 2, 5 convs
    {16, 28, 28, 32, 1, 2, 0, 1},  // 4 stage 2's shortcut, 1×1 stride 2
    {32, 14, 14, 64, 3, 2, 1, 1},  // 5 stage 3's first conv, stride 2
    {64, 7, 7, 64, 3, 1, 1, 1},    // 6 stage 3, 5 convs (rows of 7: short of the 8-pixel copies)
    {32, 14, 14, 64, 1, 2, 0, 1},  // 7 stage 3's shortcut, 1×1 stride 2
};
constexpr int kNumShapes = sizeof(kShapes) / sizeof(kShapes[0]);

struct Problem {
  sq::ConvShape s;
  sq::IntLayer L;
  std::vector<uint8_t> x, y;
  int32_t w_max = 0, x_max = 0;
};

Problem make_problem(int shape, int wbits, int abits) {
  Problem p;
  p.s = kShapes[shape];
  std::mt19937_64 rng(42);
  // The quantizer's symmetric range: |w| <= 2^(bits−1) − 1 (8 bits: −127..127 plus the −128 a
  // signed code can hold, which is what forces avx2_madd16 at w8a8).
  const int32_t lo = -(1 << (wbits - 1)), hi = (1 << (wbits - 1)) - 1;
  p.L.name = "bench";
  p.L.out_node = 1;
  p.L.weights.resize(p.s.weights());
  for (auto& w : p.L.weights)
    w = lo + static_cast<int32_t>(rng() % static_cast<uint64_t>(hi - lo + 1));
  for (int32_t w : p.L.weights) p.w_max = std::max(p.w_max, w < 0 ? -w : w);
  p.x_max = (1 << abits) - 1;
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
  const double macs = static_cast<double>(s.weights() * s.out_h() * s.out_w());
  state.counters["GOP/s"] =
      benchmark::Counter(2 * macs * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  // MACs per second over the measured peak, in percent.
  const double peak = sqbench::machine_peak_macs_per_second();
  if (peak > 0)
    state.counters["%peak"] =
        benchmark::Counter(100 * macs / peak, benchmark::Counter::kIsIterationInvariantRate);
}

template <typename Run>
void time_it(benchmark::State& state, Problem& p, Run run) {
  for (auto _ : state) {
    run();
    benchmark::DoNotOptimize(p.y.data());
  }
  report(state, p.s);
}

Problem problem_of(const benchmark::State& state) {
  return make_problem(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)),
                      static_cast<int>(state.range(2)));
}

void BM_Conv2dRef(benchmark::State& state) {
  Problem p = problem_of(state);
  time_it(state, p, [&] { sq::conv2d_u8_ref(p.s, p.L, p.x.data(), p.y.data()); });
}

void BM_Conv2dAuto(benchmark::State& state) {
  Problem p = problem_of(state);
  sq::PreparedConv2d conv =
      sq::prepare_conv2d_u8(p.s, p.L, sq::Isa::Auto, static_cast<int>(state.range(2)));
  state.SetLabel(conv.kernel_name());
  time_it(state, p, [&] { conv.run(p.x.data(), p.y.data()); });
}

void run_kernel(benchmark::State& state, const sq::ConvMicroKernel& k) {
  if (!k.cpu_has()) {
    state.SkipWithError((std::string("the CPU lacks ") + sq::isa_name(k.isa)).c_str());
    return;
  }
  Problem p = problem_of(state);
  if (!k.supports(p.w_max, p.x_max)) {
    state.SkipWithError("not exact for these bits");
    return;
  }
  sq::PreparedConv2d conv = sq::prepare_conv2d_u8(p.s, p.L, k, static_cast<int>(state.range(2)));
  time_it(state, p, [&] { conv.run(p.x.data(), p.y.data()); });
}

void Args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"shape", "w", "a"});
  for (int shape = 0; shape < kNumShapes; ++shape)
    for (auto [wbits, abits] : {std::pair{2, 2}, {2, 8}, {4, 4}, {4, 8}, {8, 8}})
      b->Args({shape, wbits, abits});
}

BENCHMARK(BM_Conv2dRef)->Apply(Args);
BENCHMARK(BM_Conv2dAuto)->Apply(Args);

// One entry per kernel of the table: a new kernel is benchmarked without touching this file.
const bool kRegistered = [] {
  for (const sq::ConvMicroKernel* k : sq::conv_kernels())
    benchmark::RegisterBenchmark((std::string("Conv2d/") + k->name).c_str(),
                                 [k](benchmark::State& st) { run_kernel(st, *k); })
        ->Apply(Args);
  return true;
}();

}  // namespace
