// Host side of the shift-add accelerator (hw/rtl): what a driver writes into the accelerator's
// memories to run one conv/linear layer, and the cost model the RTL is checked against. Torch-
// free and Verilator-free; sa_sim.h runs a LayerProgram on the Verilated RTL.
//
//   sqhw::HwConfig hw;                                     // the verilated parameters
//   sqhw::LayerProgram p = sqhw::compile_layer(hw, shape, layer, x, abits, /*csd=*/true);
//   sqhw::LayerResult r = sim.run(p);                      // sa_sim.h
//   r.acc == conv2d_acc_ref(...) for p.active channels; r.cycles == the cost model's cycles
#pragma once

#include <cstdint>
#include <vector>

#include "sigmaquant/cost.h"
#include "sigmaquant/engine.h"
#include "sigmaquant/qmodel.h"

namespace sqhw {

// The RTL's parameters (sa_core.v), named like the target file's fields where they are the same.
struct HwConfig {
  int datapaths = 8;       // NDP
  int datapath_bits = 32;  // DPW
  int guard_bits = 0;      // GUARD
  int wmax = 8, wmin = 1;  // supported weight widths (WMAX, WMIN)
  int amax = 8, amin = 2;  // supported activation widths (AMAX, AMIN)
  int lanes_max() const { return datapath_bits / (amin + wmin + guard_bits); }
};

// One output channel in a datapath's descriptor list.
struct Descriptor {
  int channel = 0;
  int wbits = 0;
  int32_t init = 0;  // accumulator start value: bias − zp_x · Σ_k w
  int ebase = 0;     // first entry of its weights in the datapath's weight list
  int ecount = 0;    // entries: every weight (bit-serial), the non-zero ones (csd)
};
struct WeightEntry {
  int k = 0;  // index into the reduction (in_c · k · k), the im2col row
  int w = 0;  // the integer weight
};

struct LayerProgram {
  bool csd = false;
  int abits = 8;            // width of the input codes (the input point's bits)
  int64_t npos = 0, K = 0;  // output positions (H_out · W_out, 1 for linear), reduction length
  int64_t out_c = 0;
  std::vector<std::vector<Descriptor>> desc;      // per datapath
  std::vector<std::vector<WeightEntry>> entries;  // per datapath
  std::vector<uint8_t> im2col;                    // [K][npos], padding = zp_x
  std::vector<int> active;                        // non-pruned channels (the ones computed)
};

struct LayerResult {
  std::vector<int64_t> acc;  // [out_c][npos]; pruned channels: their bias (not computed)
  uint64_t cycles = 0;       // from start until the last datapath is done
  uint64_t activity = 0;     // bit flips summed over the datapaths (SQ_ACTIVITY builds)
};

// Builds the memories' contents for one layer (groups = 1): the im2col matrix of x (codes at
// abits bits), per-channel accumulator start values, and the non-pruned channels dealt to the
// datapaths in turn (the j-th non-pruned channel to datapath j mod datapaths). Throws sq::Error
// when the layer does not fit the configuration (a width beyond wmax/amax, groups != 1, a code
// wider than abits, or a lane group that the datapath cannot hold).
LayerProgram compile_layer(const HwConfig& hw, const sq::ConvShape& s, const sq::IntLayer& L,
                           const uint8_t* x, int abits, bool csd);

// The cost model's target for this configuration: shiftadd, subword "product", the given
// variant and schedule ("round_robin" is the RTL's, "even" the ideal balance), default energy
// and area constants.
sq::Target shiftadd_target(const HwConfig& hw, bool csd, bool round_robin);

// The bit assignment the hardware runs: qm.bits with every layer's abits set to the bits of the
// point it actually reads (a tensor is quantized once, at the widest of its readers' abits).
sq::BitConfig hardware_bits(const sq::QuantModel& qm, const sq::IntModel& im);
// The integer weights of every layer, for the data-aware (csd) cost model.
sq::QuantizedWeightSet integer_weights(const sq::QuantModel& qm, const sq::IntModel& im);

}  // namespace sqhw
