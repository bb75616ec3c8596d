// Verilator driver of the shift-add accelerator (sa_sim.h).
#include "sa_sim.h"

#include <verilated.h>

#include "Vsa_sim_top.h"
#include "sigmaquant/error.h"

// The verilated parameters (hw/CMakeLists.txt passes the same values to Verilator and here).
#ifndef SQHW_NDP
#error "SQHW_NDP etc. must be defined by the build"
#endif

namespace sqhw {
namespace {
constexpr int kCW = 8, kDW = 6, kEW = 13, kKW = 12, kPW = 12;
constexpr int64_t kAdepth = 131072, kOdepth = 16384;
constexpr uint64_t kMaxCycles = uint64_t{1} << 32;
}  // namespace

HwConfig SaSim::verilated_config() {
  HwConfig h;
  h.datapaths = SQHW_NDP;
  h.datapath_bits = SQHW_DPW;
  h.guard_bits = SQHW_GUARD;
  h.wmax = SQHW_WMAX;
  h.amax = SQHW_AMAX;
  return h;
}

SaSim::SaSim(const HwConfig& hw) : hw_(hw), ctx_(std::make_unique<VerilatedContext>()) {
  const HwConfig v = verilated_config();
  if (hw.datapaths != v.datapaths || hw.datapath_bits != v.datapath_bits ||
      hw.guard_bits != v.guard_bits || hw.wmax != v.wmax || hw.amax != v.amax ||
      hw.wmin != v.wmin || hw.amin != v.amin)
    sq::fail("hw: the simulator was verilated with datapaths {}, datapath_bits {}, guard_bits {}",
             v.datapaths, v.datapath_bits, v.guard_bits);
  top_ = std::make_unique<Vsa_sim_top>(ctx_.get());
  top_->clk = 0;
  top_->rst = 1;
  top_->start = 0;
  top_->ld_we = 0;
  tick();
  tick();
  top_->rst = 0;
}

SaSim::~SaSim() { top_->final(); }

void SaSim::tick() {
  top_->clk = 0;
  top_->eval();
  top_->clk = 1;
  top_->eval();
}

void SaSim::load(int sel, int pe, uint32_t addr, uint64_t data) {
  top_->ld_we = 1;
  top_->ld_sel = static_cast<uint8_t>(sel);
  top_->ld_pe = static_cast<uint8_t>(pe);
  top_->ld_addr = addr;
  top_->ld_data = data;
  tick();
  top_->ld_we = 0;
}

LayerResult SaSim::run(const LayerProgram& p, const sq::IntLayer& L) {
  if (static_cast<int64_t>(p.im2col.size()) > kAdepth || p.out_c * p.npos > kOdepth ||
      p.K >= (int64_t{1} << kKW) || p.npos >= (int64_t{1} << kPW) || p.out_c > (1 << kCW))
    sq::fail("hw: layer '{}' ({} x {} im2col, {} outputs) exceeds the simulated memories", L.name,
             p.K, p.npos, p.out_c * p.npos);
  for (int dp = 0; dp < hw_.datapaths; ++dp) {
    const auto& D = p.desc[static_cast<size_t>(dp)];
    const auto& E = p.entries[static_cast<size_t>(dp)];
    if (D.size() >= (size_t{1} << kDW) || E.size() >= (size_t{1} << kEW))
      sq::fail("hw: layer '{}': datapath {} gets {} channels, {} weights (memory: {}, {})", L.name,
               dp, D.size(), E.size(), (1 << kDW) - 1, (1 << kEW) - 1);
    for (size_t i = 0; i < D.size(); ++i) {
      const Descriptor& d = D[i];
      const uint64_t word = (uint64_t(d.channel) << (4 + 2 * kEW + 1)) |
                            (uint64_t(d.wbits) << (2 * kEW + 1)) |
                            (uint64_t(d.ebase) << (kEW + 1)) | uint64_t(d.ecount);
      load(0, dp, static_cast<uint32_t>(i), word);
      load(1, dp, static_cast<uint32_t>(i), static_cast<uint32_t>(d.init));
    }
    for (size_t i = 0; i < E.size(); ++i) {
      const uint64_t w = static_cast<uint64_t>(E[i].w) & ((uint64_t{1} << hw_.wmax) - 1);
      load(2, dp, static_cast<uint32_t>(i), (uint64_t(E[i].k) << hw_.wmax) | w);
    }
    load(4, dp, 0, D.size());
  }
  for (size_t i = 0; i < p.im2col.size(); ++i) load(3, 0, static_cast<uint32_t>(i), p.im2col[i]);

  top_->mode_csd = p.csd ? 1 : 0;
  top_->abits = static_cast<uint8_t>(p.abits);
  top_->npos = static_cast<uint16_t>(p.npos);
  top_->start = 1;
  tick();
  top_->start = 0;
  uint64_t guard = 0;
  while (!top_->done) {
    tick();
    if (++guard > kMaxCycles) sq::fail("hw: layer '{}' did not finish", L.name);
  }
  LayerResult r;
  r.cycles = top_->cycles;
  r.activity = top_->activity;
  r.acc.assign(static_cast<size_t>(p.out_c * p.npos), 0);
  for (int64_t c = 0; c < p.out_c; ++c)
    for (int64_t pos = 0; pos < p.npos; ++pos) r.acc[c * p.npos + pos] = L.bias[c];
  for (int c : p.active)
    for (int64_t pos = 0; pos < p.npos; ++pos) {
      top_->rd_addr = static_cast<uint32_t>(c * p.npos + pos);
      top_->eval();
      r.acc[c * p.npos + pos] = static_cast<int32_t>(top_->rd_data);
    }
  return r;
}

}  // namespace sqhw
