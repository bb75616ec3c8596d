// Runs LayerPrograms (sa_host.h) on the Verilated RTL (hw/sim/sa_sim_top.v around
// hw/rtl/sa_core.v): fills the memories through the load port, pulses start, clocks until done,
// reads the accumulators back. Cycle-exact: LayerResult::cycles is the core's own counter.
#pragma once

#include <memory>

#include "sa_host.h"

class VerilatedContext;
class Vsa_sim_top;

namespace sqhw {

class SaSim {
 public:
  // hw must equal the parameters the model was verilated with (checked: throws otherwise).
  explicit SaSim(const HwConfig& hw);
  ~SaSim();
  SaSim(const SaSim&) = delete;
  SaSim& operator=(const SaSim&) = delete;
  LayerResult run(const LayerProgram& p, const sq::IntLayer& L);
  static HwConfig verilated_config();  // the parameters of the compiled model

 private:
  void tick();
  void load(int sel, int pe, uint32_t addr, uint64_t data);
  HwConfig hw_;
  std::unique_ptr<VerilatedContext> ctx_;
  std::unique_ptr<Vsa_sim_top> top_;
};

}  // namespace sqhw
