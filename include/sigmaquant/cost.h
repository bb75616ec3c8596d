// Hardware cost models and target files.
//
// One interface: (graph, bit assignment, optionally the quantized integer weights) -> per layer and
// in total: weight bytes (packed bits + scales + biases), peak activation bytes, MACs, BOPs, and,
// where the model defines them, cycles, latency, energy and area. A Target (a small JSON file under
// targets/, schema in docs/cost-models.md) names the model, its parameters and the budgets.
//
//   sq::Target t = sq::load_target("targets/mpic.json");
//   sq::CostEvaluator ev(graph, t);                 // prepare once (liveness, per-layer counts)
//   sq::CostReport r = ev.evaluate(bits);           // cheap: O(layers + channels)
//   for (const auto& v : sq::check_budgets(r, t.budgets)) if (!v.fits) ...
//
// Models (formulas and where each constant comes from: docs/cost-models.md):
//   size      memory only (weight bytes, peak activation bytes); MACs and BOPs are reported
//   bops      the same numbers; BOPs = sum of MACs x w_bits x a_bits is the figure of merit
//   shiftadd  sequential shift-add multiplier with Soft-SIMD sub-word packing; variant
//             "bit_serial" (one cycle per weight bit) or "csd" (one cycle per non-zero canonical
//             signed digit of the actual quantized weight: zero-skipping)
//   mpic      the MPIC RISC-V core: MACs/cycle table by (a_bits, w_bits) from SPEC §6
//   mcu       a Cortex-M class int8-SIMD microcontroller; sub-8-bit weights pay an unpack step
//   custom    a cycles-per-MAC (or MACs-per-cycle) table in the target file
// Every model accepts per-channel weight bits; 0-bit (pruned) channels cost nothing (no MACs, no
// weights, no scale; their bias is kept, since a pruned channel still outputs its bias).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "sigmaquant/bits.h"
#include "sigmaquant/graph.h"
#include "sigmaquant/quant.h"

namespace sq {

// ---- canonical signed digits ----

// Number of non-zero digits of v's canonical signed digit (CSD, non-adjacent form) representation,
// the minimum over all radix-2 representations with digits in {-1, 0, 1}. csd_digits(0) = 0,
// csd_digits(7) = 2 (8 - 1), csd_digits(-v) = csd_digits(v).
int csd_digits(int64_t v);

// ---- target files ----

enum class CostModelKind { Size, Bops, ShiftAdd, Mpic, Mcu, Custom };
const char* cost_model_name(
    CostModelKind k);  // "size", "bops", "shiftadd", "mpic", "mcu", "custom"

enum class ShiftAddVariant { BitSerial, Csd };
// Width of one packed sub-word: the full product (a_bits + w_bits + guard, no lane can overflow)
// or the activation only (a_bits + guard, the accumulator lives elsewhere).
enum class SubwordRule { Product, Activation };
// How output channels are spread over the parallel datapaths. Even: the layer's work divided by
// the number of datapaths (an ideal balance, a lower bound). RoundRobin: the hardware of hw/ (the
// shift-add RTL): the layer's non-pruned channels are dealt to the datapaths in turn, the layer
// takes as long as its busiest datapath, and a lane group without a non-zero weight (csd) still
// takes one cycle to write its accumulators (docs/cost-models.md, docs/hardware.md).
enum class ShiftAddSchedule { Even, RoundRobin };

struct StorageParams {
  int scale_bits = 32;  // per weight scale (fp32 by default; an int32 multiplier + shift = 64)
  int bias_bits = 32;   // per output-channel bias (int32 accumulator domain)
  // Widths the hardware stores; a bitwidth is rounded up to the next one listed. Empty = exact
  // (weights packed at 1..8 bits, activations at their own width).
  std::vector<int> weight_widths, activation_widths;
  int output_bits = 32;  // the graph output (logits) is kept as int32 accumulators
};

struct ShiftAddParams {
  ShiftAddVariant variant = ShiftAddVariant::BitSerial;
  int datapaths = 8;  // parallel shift-add units, each on its own output channels
  int datapath_bits = 32;
  SubwordRule subword = SubwordRule::Product;
  int guard_bits = 0;
  ShiftAddSchedule schedule = ShiftAddSchedule::Even;
};

struct McuParams {
  double cycles_per_mac = 1.0;                   // int8 x int8 (a_bits <= 8) through the SIMD MAC
  double cycles_per_mac_a16 = 1.5;               // activations of 9..16 bits (int16 path)
  double unpack_cycles_per_mac = 0.5;            // w_bits 1, 2, 4 (fields aligned in a byte)
  double unpack_cycles_per_mac_unaligned = 1.0;  // w_bits 3, 5, 6, 7 (fields cross bytes)
};

// MACs per cycle by (a_bits, w_bits); a bitwidth is rounded up to the next row/column listed.
struct ThroughputTable {
  std::vector<int> a_bits, w_bits;                  // ascending
  std::vector<std::vector<double>> macs_per_cycle;  // [a row][w column], all > 0
};

struct EnergyParams {
  double clock_hz = 0;                  // 0: the model has no timing
  double power_w = 0;                   // energy = power x latency (mpic, mcu; custom optionally)
  double energy_per_cycle_j = 0;        // energy = cycles x this (shiftadd; custom optionally)
  double energy_per_mac_j = 0;          // energy = MACs x this (custom optionally)
  double weight_mem_j_per_bit = 0;      // each packed weight bit read once per inference
  double activation_mem_j_per_bit = 0;  // each layer's input read and output written once
  double logic_area_um2 = 0;  // area = logic + memory bits x memory_area (when set); shiftadd:
                              // logic area of one datapath (x datapaths)
  double memory_area_um2_per_bit = 0;
  bool has_area = false;
};

// Budgets in base units (bytes, seconds, joules, operations). Absent = no limit.
struct Budgets {
  std::optional<double> weight_bytes, activation_bytes, latency_s, energy_j, bops;
  bool empty() const {
    return !weight_bytes && !activation_bytes && !latency_s && !energy_j && !bops;
  }
};

struct Target {
  std::string name, description;
  std::string source;  // the file it came from, or "builtin:<model>"
  CostModelKind kind = CostModelKind::Size;
  StorageParams storage;
  ShiftAddParams shiftadd;
  McuParams mcu;
  ThroughputTable table;  // mpic (fixed, SPEC §6) and custom
  EnergyParams energy;
  Budgets budgets;

  bool defines_timing() const { return energy.clock_hz > 0; }
  bool defines_energy() const;
  bool defines_area() const { return energy.has_area; }
};

// The MPIC throughput table of SPEC §6 (a 2/4/8 rows, w 2/4/8 columns).
ThroughputTable mpic_table();
// Reads and validates a target file; errors name the file, the field and what was expected.
Target load_target(const std::string& path);
Target target_from_json(const nlohmann::json& j, const std::string& where);
nlohmann::ordered_json target_to_json(const Target& t);
// A model's default target with no budgets ("size", "bops", "shiftadd", "shiftadd-csd", "mpic",
// "mcu"); throws on other names. `custom` has no defaults (it needs a table).
Target builtin_target(const std::string& name);
// A path to a target file, or a builtin name.
Target resolve_target(const std::string& spec);

// ---- costs ----

struct LayerCost {
  std::string name;
  int node = -1;
  int wbits = 0, abits = 0;  // as configured (wbits: the maximum over channels)
  double mean_wbits = 0;     // weight-weighted mean over channels (pruned = 0)
  int64_t channels = 0, pruned_channels = 0;
  int64_t weights = 0;       // weights of the layer (dense, biases excluded)
  int64_t weight_bits = 0;   // packed weight bits (after rounding to the storage widths)
  int64_t weight_bytes = 0;  // ceil(weight_bits / 8) + scale bytes + bias bytes
  int64_t scale_bytes = 0, bias_bytes = 0;
  int64_t macs = 0;  // MACs actually performed (pruned channels skip theirs)
  int64_t bops = 0;  // sum over channels of MACs x w_bits x a_bits
  double cycles = 0, latency_s = 0, energy_j = 0;  // 0 where the model does not define them
};

struct CostReport {
  std::string target, model;  // target name and cost model name
  std::vector<LayerCost> layers;
  int64_t weight_bytes = 0, activation_bytes = 0, macs = 0, bops = 0;
  std::string activation_peak_at;  // the node executing when activation memory peaks
  double cycles = 0, latency_s = 0, energy_j = 0, area_mm2 = 0;
  bool has_timing = false, has_energy = false, has_area = false;
};

// Integer weights per layer name, e.g. from QAT; layers absent here are quantized from the
// graph's float weights with quantize_weights_symmetric.
using QuantizedWeightSet = std::map<std::string, QuantizedTensor>;

// Prepares everything that does not depend on the bit assignment (per-layer counts, activation
// buffers and their lifetimes, and for the csd variant the non-zero digit counts of the graph's
// own weights at every bitwidth), so that evaluate() is cheap enough for allocators to call
// thousands of times. Keeps a reference to the graph: it must outlive the evaluator.
class CostEvaluator {
 public:
  CostEvaluator(const Graph& g, Target t);
  // Throws sq::Error if the bits do not fit the graph (see validate_bits) or the model does not
  // support a bitwidth (e.g. mpic with 16-bit activations).
  CostReport evaluate(const BitConfig& bits, const QuantizedWeightSet* qweights = nullptr) const;
  const Target& target() const { return target_; }

 private:
  // A weight layer, with everything that does not depend on the bits.
  struct Layer {
    int node = -1;
    std::string name;
    int64_t channels = 0;
    int64_t weights_per_channel = 0;
    int64_t macs_per_channel = 0;
    int64_t positions = 1;  // output positions each weight is applied at (conv: H x W; linear: 1)
    bool bias = false;      // a bias in the deployed layer: its own, or a folded batchnorm's
    int64_t in_elems = 0, out_elems = 0;
    int in_buffer = -1, out_buffer = -1;
    const Tensor* weight = nullptr;
    // csd variant: non-zero CSD digits per output channel of the graph's own weights quantized at
    // b bits: digits[(g * 9 + b) * channels + c], g = 0 per-channel scales, 1 per-tensor.
    std::vector<double> digits;
  };

  // One activation buffer: a node's output plus the nodes that work in place on it (batchnorm,
  // ReLU/ReLU6 whose input has no other consumer) or view it (flatten).
  struct Buffer {
    int64_t elems = 0;
    int first = 0, last = 0;            // execution steps (node indices) it is alive
    std::vector<int> direct_layers;     // weight layers that read it
    std::vector<int> consumer_buffers;  // buffers of the non-weight nodes that read it
    bool is_output = false;
  };
  const Graph& g_;
  Target target_;
  std::vector<Layer> layers_;
  std::vector<Buffer> buffers_;
  std::vector<std::vector<int>> live_;  // per step (node), the buffers alive
  std::vector<int> node_layer_;         // node index -> index in layers_ (-1: not a weight layer)
  std::vector<double> macs_per_cycle_;  // mpic/custom: [a_bits 0..16][w_bits 0..8], 0 = none

  double layer_digit_sum(const Layer& L, const LayerBits& lb, int64_t c,
                         const QuantizedTensor* q) const;
};

// One-shot convenience: prepare and evaluate.
CostReport compute_cost(const Graph& g, const Target& t, const BitConfig& bits,
                        const QuantizedWeightSet* qweights = nullptr);

// ---- budgets ----

struct BudgetCheck {
  std::string metric;  // "weight memory", "activation memory", "latency", "energy", "BOPs"
  std::string key;     // the target-file field: weight_kib, activation_kib, latency_ms, ...
  double value = 0, budget = 0;  // base units (bytes, s, J, ops)
  bool fits = true;
  double excess = 0;      // value - budget when over (base units), else 0
  double excess_pct = 0;  // 100 x excess / budget
  std::string unit;       // "B", "s", "J", "ops"
};
// One entry per budget present. Throws if a budget needs a quantity the model does not define
// (e.g. a latency budget under the size model).
std::vector<BudgetCheck> check_budgets(const CostReport& r, const Budgets& b);
bool fits_budgets(const CostReport& r, const Budgets& b);

nlohmann::ordered_json cost_to_json(const CostReport& r);
nlohmann::ordered_json budgets_to_json(const std::vector<BudgetCheck>& checks);

// Budget numbers for people (src/cost/budgets.cpp): significant digits, never a 300-digit
// fixed-point figure. A quantity in base units with a scaled unit and 4 significant digits:
// "512 B", "11.02 KiB", "65 us", "1.5 mJ", "0.1235 GBOPs", "1e-300 s" (unit "B", "s", "J", "ops").
std::string budget_value_text(double v, const std::string& unit);
// A percentage: 3 significant digits below 0.1 % ("0.0012 %"), one decimal up to 10^6 %,
// exponent form beyond ("1.23e+305 %").
std::string budget_percent_text(double pct);
// value against budget, with as many digits as it takes to tell them apart, and the overshoot:
// "0.06500012 ms against 0.065 ms, over by 120 ps (+0.00018 %)"; a budget that fits:
// "0.05 ms against 0.065 ms, 76.9 % used".
std::string budget_check_text(const BudgetCheck& c);

}  // namespace sq
