// The machine's multiply-accumulate peak (peak.h): independent multiply instructions in inline
// assembly (the compiler can neither drop nor reorder them), 12 a loop iteration, so throughput,
// not latency, bounds the loop. The Google Benchmark entries print the same figures:
//   ./build/bin/sq_bench --benchmark_filter=Peak
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <ctime>

#include "peak.h"
#include "sigmaquant/engine.h"

namespace sqbench {

namespace {

#if defined(__x86_64__)
// One loop iteration = 12 instructions of the sequence (MaddubsExact: 6 triples = 18).
// Registers: sources ymm12..ymm14, results ymm0..ymm11; every vector register is clobbered.
#define SQ_CLOBBER                                                                         \
  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", \
      "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc"
#define SQ_X12(OP, R)                                                                             \
  OP " %%" R "12, %%" R "13, %%" R "0\n\t" OP " %%" R "12, %%" R "13, %%" R "1\n\t" OP " %%" R    \
     "12, %%" R "13, %%" R "2\n\t" OP " %%" R "12, %%" R "13, %%" R "3\n\t" OP " %%" R "12, %%" R \
     "13, %%" R "4\n\t" OP " %%" R "12, %%" R "13, %%" R "5\n\t" OP " %%" R "12, %%" R "13, %%" R \
     "6\n\t" OP " %%" R "12, %%" R "13, %%" R "7\n\t" OP " %%" R "12, %%" R "13, %%" R "8\n\t" OP \
     " %%" R "12, %%" R "13, %%" R "9\n\t" OP " %%" R "12, %%" R "13, %%" R "10\n\t" OP " %%" R   \
     "12, %%" R "13, %%" R "11\n\t"
#define SQ_TRIPLE(K, A)                     \
  "vpmaddubsw %%ymm12, %%ymm13, %%ymm" #K   \
  "\n\t"                                    \
  "vpmaddwd %%ymm14, %%ymm" #K ", %%ymm" #K \
  "\n\t"                                    \
  "vpaddd %%ymm" #K ", %%ymm" #A ", %%ymm" #A "\n\t"

void loop_maddubs(int64_t n) {
  __asm__ volatile(
      "vpxor %%xmm12, %%xmm12, %%xmm12\n\tvpxor %%xmm13, %%xmm13, %%xmm13\n\t"
      "1:\n\t" SQ_X12("vpmaddubsw", "ymm") "dec %0\n\tjnz 1b\n\tvzeroupper"
      : "+r"(n)
      :
      : SQ_CLOBBER);
}
void loop_maddubs_exact(int64_t n) {
  __asm__ volatile(
      "vpxor %%xmm12, %%xmm12, %%xmm12\n\tvpxor %%xmm13, %%xmm13, %%xmm13\n\t"
      "vpxor %%xmm14, %%xmm14, %%xmm14\n\t"
      "1:\n\t" SQ_TRIPLE(0, 6) SQ_TRIPLE(1, 7) SQ_TRIPLE(2, 8) SQ_TRIPLE(3, 9) SQ_TRIPLE(4, 10)
          SQ_TRIPLE(5, 11) "dec %0\n\tjnz 1b\n\tvzeroupper"
      : "+r"(n)
      :
      : SQ_CLOBBER);
}
void loop_madd16(int64_t n) {
  __asm__ volatile(
      "vpxor %%xmm12, %%xmm12, %%xmm12\n\tvpxor %%xmm13, %%xmm13, %%xmm13\n\t"
      "1:\n\t" SQ_X12("vpmaddwd", "ymm") "dec %0\n\tjnz 1b\n\tvzeroupper"
      : "+r"(n)
      :
      : SQ_CLOBBER);
}
// vpdpbusd accumulates into its destination: 12 independent chains hide its latency.
void loop_dpbusd_ymm(int64_t n) {
  __asm__ volatile(
      "vpxor %%xmm12, %%xmm12, %%xmm12\n\tvpxor %%xmm13, %%xmm13, %%xmm13\n\t"
      "1:\n\t" SQ_X12("%{vex%} vpdpbusd", "ymm") "dec %0\n\tjnz 1b\n\tvzeroupper"
      : "+r"(n)
      :
      : SQ_CLOBBER);
}
void loop_dpbusd_zmm(int64_t n) {
  __asm__ volatile(
      "vpxor %%xmm12, %%xmm12, %%xmm12\n\tvpxor %%xmm13, %%xmm13, %%xmm13\n\t"
      "1:\n\t" SQ_X12("vpdpbusd", "zmm") "dec %0\n\tjnz 1b\n\tvzeroupper"
      : "+r"(n)
      :
      : SQ_CLOBBER);
}
#undef SQ_TRIPLE
#undef SQ_X12
#undef SQ_CLOBBER
#endif

struct Info {
  const char* name;
  double macs_per_iter;  // per loop iteration
  void (*loop)(int64_t);
};

Info info(Peak p) {
#if defined(__x86_64__)
  switch (p) {
    case Peak::Maddubs:
      return {"vpmaddubsw ymm", 12 * 32, loop_maddubs};
    case Peak::MaddubsExact:
      return {"vpmaddubsw+vpmaddwd+vpaddd ymm", 6 * 32, loop_maddubs_exact};
    case Peak::Madd16:
      return {"vpmaddwd ymm", 12 * 16, loop_madd16};
    case Peak::DpbusdYmm:
      return {"vpdpbusd ymm (AVX-VNNI)", 12 * 32, loop_dpbusd_ymm};
    case Peak::DpbusdZmm:
      return {"vpdpbusd zmm (AVX-512 VNNI)", 12 * 64, loop_dpbusd_zmm};
  }
#endif
  (void)p;
  return {"none", 0, nullptr};
}

double measure(Peak p) {
  const Info in = info(p);
  if (!peak_available(p) || !in.loop) return 0;
  constexpr int64_t kIters = 200000;  // ~2.4M instructions: a few ms a run
  in.loop(kIters);                    // warm up (frequency, caches)
  // Thread CPU time, as Google Benchmark's rates: on a shared machine wall time counts the time
  // other processes held the core.
  auto cpu_seconds = [] {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
  };
  double best = 0;
  for (int rep = 0; rep < 7; ++rep) {
    const double t0 = cpu_seconds();
    in.loop(kIters);
    best = std::max(best, in.macs_per_iter * kIters / (cpu_seconds() - t0));
  }
  return best;
}

}  // namespace

const char* peak_name(Peak p) { return info(p).name; }

bool peak_available(Peak p) {
  switch (p) {
    case Peak::DpbusdYmm:
      return sq::cpu_has_avxvnni();
    case Peak::DpbusdZmm:
      return sq::cpu_has_avx512vnni();
    default:
      return sq::cpu_has_avx2();
  }
}

double peak_macs_per_second(Peak p) {
  static double cache[5] = {-1, -1, -1, -1, -1};
  double& c = cache[static_cast<int>(p)];
  if (c < 0) c = measure(p);
  return c;
}

namespace {
Peak machine_peak() {
  if (peak_available(Peak::DpbusdZmm)) return Peak::DpbusdZmm;
  if (peak_available(Peak::DpbusdYmm)) return Peak::DpbusdYmm;
  return Peak::Maddubs;
}
}  // namespace

double machine_peak_macs_per_second() { return peak_macs_per_second(machine_peak()); }
const char* machine_peak_name() { return peak_name(machine_peak()); }

namespace {

// Args: the Peak. GOP/s = 2 ops per MAC, as the kernel benchmarks count.
void BM_Peak(benchmark::State& state) {
  const auto p = static_cast<Peak>(state.range(0));
  if (!peak_available(p)) {
    state.SkipWithError("the CPU lacks this instruction");
    return;
  }
  const Info in = info(p);
  constexpr int64_t kIters = 20000;
  for (auto _ : state) in.loop(kIters);
  state.SetLabel(in.name);
  state.counters["GOP/s"] = benchmark::Counter(2 * in.macs_per_iter * kIters * 1e-9,
                                               benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Peak)->ArgName("peak")->DenseRange(0, 4);

}  // namespace

}  // namespace sqbench
