// The machine's own multiply-accumulate peak, measured (bench_peak.cpp): a loop of independent
// u8 × s8 (or int16) multiply instructions in inline assembly, so that a kernel's GOP/s can be
// reported as a fraction of what this core actually sustains rather than of a data-sheet figure.
#pragma once

namespace sqbench {

// The instruction sequences measured. MACs per instruction (ymm = 256 bits, zmm = 512 bits):
//   Maddubs      vpmaddubsw ymm            32 u8×s8 products (pairs summed into int16)
//   MaddubsExact vpmaddubsw + vpmaddwd(1) + vpaddd ymm: the AVX2 u8×s8 → int32 sequence,
//                32 products per three instructions (two of them on the multiplier)
//   Madd16       vpmaddwd ymm              16 int16×int16 products (pairs summed into int32)
//   DpbusdYmm    {vex} vpdpbusd ymm        32 u8×s8 products into int32 (AVX-VNNI)
//   DpbusdZmm    vpdpbusd zmm              64 u8×s8 products into int32 (AVX-512 VNNI)
enum class Peak { Maddubs, MaddubsExact, Madd16, DpbusdYmm, DpbusdZmm };

const char* peak_name(Peak p);
// Whether this CPU runs the sequence.
bool peak_available(Peak p);
// Multiply-accumulates per CPU second on one thread: the best of several timed runs of a few ms
// (measured once per process and cached). 0 when the CPU lacks the instruction.
double peak_macs_per_second(Peak p);
// The best u8 × s8 rate this CPU has (vpdpbusd zmm, else ymm, else vpmaddubsw): the denominator
// of every kernel's "% of peak".
double machine_peak_macs_per_second();
const char* machine_peak_name();

}  // namespace sqbench
