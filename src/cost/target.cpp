// Target files: the cost model, its parameters, storage rules and budgets. Schema and the origin
// of every default: docs/cost-models.md.
#include <algorithm>
#include <cmath>
#include <limits>

#include "cost/json_fields.h"
#include "sigmaquant/cost.h"
#include "sigmaquant/error.h"
#include "sigmaquant/fileutil.h"

namespace sq {

namespace {

constexpr const char* kTargetTag = "sigmaquant-target";
constexpr int kTargetVersion = 1;
constexpr double kInf = std::numeric_limits<double>::infinity();

// Unit conversions between the file (human units) and Target (base units).
constexpr double kMHz = 1e6, kmW = 1e-3, kpJ = 1e-12, kKiB = 1024.0, kms = 1e-3, kuJ = 1e-6,
                 kG = 1e9;

const std::vector<std::pair<CostModelKind, const char*>> kModelNames = {
    {CostModelKind::Size, "size"},         {CostModelKind::Bops, "bops"},
    {CostModelKind::ShiftAdd, "shiftadd"}, {CostModelKind::Mpic, "mpic"},
    {CostModelKind::Mcu, "mcu"},           {CostModelKind::Custom, "custom"},
};

std::vector<std::string> model_names() {
  std::vector<std::string> v;
  for (auto& [k, n] : kModelNames) v.push_back(n);
  return v;
}

CostModelKind model_from_name(const std::string& s) {
  for (auto& [k, n] : kModelNames)
    if (s == n) return k;
  fail("unknown cost model '{}'", s);
}

// Defaults of each model (docs/cost-models.md says where each number comes from).
Target defaults_for(CostModelKind kind) {
  Target t;
  t.kind = kind;
  t.name = cost_model_name(kind);
  EnergyParams& e = t.energy;
  switch (kind) {
    case CostModelKind::Size:
    case CostModelKind::Bops:
      break;
    case CostModelKind::ShiftAdd:
      // Horowitz, "Computing's energy problem", ISSCC 2014 (45 nm, 0.9 V): 32-bit integer add
      // 0.1 pJ; x2 for the shifter, pipeline registers and sequencing -> 0.2 pJ per datapath
      // cycle. 8 KB SRAM, 64-bit read: 10 pJ -> 0.16 pJ/bit. 6T SRAM cell 0.346 um^2 at 45 nm,
      // x1.5 for periphery -> 0.5 um^2/bit. Datapath logic ~1500 um^2 (32-bit adder 137 um^2 in
      // the same table, plus barrel shifter, registers and control). Clock: modeled.
      e.clock_hz = 500 * kMHz;
      e.energy_per_cycle_j = 0.2 * kpJ;
      e.weight_mem_j_per_bit = 0.16 * kpJ;
      e.activation_mem_j_per_bit = 0.16 * kpJ;
      e.logic_area_um2 = 1500;
      e.memory_area_um2_per_bit = 0.5;
      e.has_area = true;
      break;
    case CostModelKind::Mpic:
      // SPEC §6 (from the channel-wise MPIC seed): 250 MHz, 5.3825 mW; 2/4/8-bit storage.
      t.table = mpic_table();
      e.clock_hz = 250 * kMHz;
      e.power_w = 5.3825 * kmW;
      t.storage.weight_widths = {2, 4, 8};
      t.storage.activation_widths = {2, 4, 8};
      break;
    case CostModelKind::Mcu:
      // A Cortex-M4F class part at 80 MHz drawing ~100 uA/MHz at 3 V (STM32L4-class datasheet
      // run-mode figure) -> 24 mW. Activations stored as int8 / int16; per-channel requantization
      // as an int32 multiplier + int32 shift (CMSIS-NN) -> 64 bits per scale.
      e.clock_hz = 80 * kMHz;
      e.power_w = 24 * kmW;
      t.storage.activation_widths = {8, 16};
      t.storage.scale_bits = 64;
      break;
    case CostModelKind::Custom:
      break;
  }
  return t;
}

std::vector<int> checked_widths(const nlohmann::json& obj, const std::string& key,
                                const std::string& where, const std::string& path, int hi) {
  auto v = jsonf::opt_int_list(obj, key, where, path, 1, hi);
  if (!v) return {};
  if (v->empty())
    fail("{}: field '{}' is empty (expected ascending bitwidths)", where, jsonf::join(path, key));
  for (size_t i = 1; i < v->size(); ++i)
    if ((*v)[i] <= (*v)[i - 1])
      fail("{}: field '{}' must be strictly ascending (got {} after {})", where,
           jsonf::join(path, key), (*v)[i], (*v)[i - 1]);
  return *v;
}

void parse_storage(const nlohmann::json& j, const std::string& where, StorageParams& s) {
  using namespace jsonf;
  const std::string p = "storage";
  require_object(j, where, p);
  check_keys(j, where, p,
             {"scale_bits", "bias_bits", "weight_widths", "activation_widths", "output_bits"});
  s.scale_bits =
      static_cast<int>(opt_integer(j, "scale_bits", where, p, 0, 128).value_or(s.scale_bits));
  s.bias_bits =
      static_cast<int>(opt_integer(j, "bias_bits", where, p, 0, 64).value_or(s.bias_bits));
  s.output_bits =
      static_cast<int>(opt_integer(j, "output_bits", where, p, 1, 64).value_or(s.output_bits));
  if (j.contains("weight_widths"))
    s.weight_widths = checked_widths(j, "weight_widths", where, p, kMaxWeightBits);
  if (j.contains("activation_widths"))
    s.activation_widths = checked_widths(j, "activation_widths", where, p, 32);
}

// A rows x cols table of positive numbers.
std::vector<std::vector<double>> parse_grid(const nlohmann::json& j, const std::string& key,
                                            const std::string& where, const std::string& path,
                                            size_t rows, size_t cols) {
  const std::string f = jsonf::join(path, key);
  const auto& v = j.at(key);
  auto bad = [&](const std::string& what) {
    fail(
        "{}: field '{}' {} (expected {} rows, one per a_bits entry, of {} positive numbers, one "
        "per w_bits entry)",
        where, f, what, rows, cols);
  };
  if (!v.is_array()) bad("is not an array");
  if (v.size() != rows) bad(fmt::format("has {} rows", v.size()));
  std::vector<std::vector<double>> out(rows);
  for (size_t r = 0; r < rows; ++r) {
    if (!v[r].is_array() || v[r].size() != cols)
      bad(fmt::format("row {} is not an array of {} numbers (got {})", r, cols,
                      jsonf::brief(v[r])));
    for (size_t c = 0; c < cols; ++c) {
      const auto& x = v[r][c];
      if (!x.is_number() || !(x.get<double>() > 0) || !std::isfinite(x.get<double>()))
        bad(fmt::format("[{}][{}] = {} is not a positive number", r, c, jsonf::brief(x)));
      out[r].push_back(x.get<double>());
    }
  }
  return out;
}

void parse_params(const nlohmann::json& j, const std::string& where, Target& t) {
  using namespace jsonf;
  const std::string p = "params";
  require_object(j, where, p);
  EnergyParams& e = t.energy;
  auto clock = [&](bool required) {
    auto v = opt_number(j, "clock_mhz", where, p, 0, kInf, true);
    if (required && !v) fail("{}: missing field 'params.clock_mhz' (expected a number > 0)", where);
    if (v) e.clock_hz = *v * kMHz;
  };
  auto pj = [&](const char* key, double& dst) {
    if (auto v = opt_number(j, key, where, p, 0, kInf)) dst = *v * kpJ;
  };
  auto area = [&]() {
    auto logic = opt_number(j, "logic_area_um2", where, p, 0, kInf);
    auto mem = opt_number(j, "memory_area_um2_per_bit", where, p, 0, kInf);
    if (logic) e.logic_area_um2 = *logic;
    if (mem) e.memory_area_um2_per_bit = *mem;
    e.has_area = e.has_area || logic || mem;
  };
  switch (t.kind) {
    case CostModelKind::Size:
    case CostModelKind::Bops:
      check_keys(j, where, p, {});
      break;
    case CostModelKind::ShiftAdd: {
      check_keys(j, where, p,
                 {"variant", "datapaths", "datapath_bits", "subword", "guard_bits", "schedule",
                  "clock_mhz", "energy_pj_per_cycle", "weight_memory_pj_per_bit",
                  "activation_memory_pj_per_bit", "logic_area_um2", "memory_area_um2_per_bit"});
      ShiftAddParams& s = t.shiftadd;
      if (auto v = opt_string(j, "variant", where, p, {"bit_serial", "csd"}))
        s.variant = *v == "csd" ? ShiftAddVariant::Csd : ShiftAddVariant::BitSerial;
      s.datapaths =
          static_cast<int>(opt_integer(j, "datapaths", where, p, 1, 1 << 20).value_or(s.datapaths));
      s.datapath_bits = static_cast<int>(
          opt_integer(j, "datapath_bits", where, p, 8, 4096).value_or(s.datapath_bits));
      if (auto v = opt_string(j, "subword", where, p, {"product", "activation"}))
        s.subword = *v == "activation" ? SubwordRule::Activation : SubwordRule::Product;
      s.guard_bits =
          static_cast<int>(opt_integer(j, "guard_bits", where, p, 0, 32).value_or(s.guard_bits));
      if (auto v = opt_string(j, "schedule", where, p, {"even", "round_robin"}))
        s.schedule = *v == "round_robin" ? ShiftAddSchedule::RoundRobin : ShiftAddSchedule::Even;
      clock(false);
      pj("energy_pj_per_cycle", e.energy_per_cycle_j);
      pj("weight_memory_pj_per_bit", e.weight_mem_j_per_bit);
      pj("activation_memory_pj_per_bit", e.activation_mem_j_per_bit);
      area();
      break;
    }
    case CostModelKind::Mpic:
      // The throughput table is SPEC §6's and fixed; only clock and power may be restated.
      check_keys(j, where, p, {"clock_mhz", "power_mw"});
      clock(false);
      if (auto v = opt_number(j, "power_mw", where, p, 0, kInf, true)) e.power_w = *v * kmW;
      break;
    case CostModelKind::Mcu: {
      check_keys(j, where, p,
                 {"clock_mhz", "power_mw", "cycles_per_mac", "cycles_per_mac_a16",
                  "unpack_cycles_per_mac", "unpack_cycles_per_mac_unaligned"});
      clock(false);
      if (auto v = opt_number(j, "power_mw", where, p, 0, kInf, true)) e.power_w = *v * kmW;
      McuParams& m = t.mcu;
      m.cycles_per_mac =
          opt_number(j, "cycles_per_mac", where, p, 0, kInf, true).value_or(m.cycles_per_mac);
      m.cycles_per_mac_a16 = opt_number(j, "cycles_per_mac_a16", where, p, 0, kInf, true)
                                 .value_or(m.cycles_per_mac_a16);
      m.unpack_cycles_per_mac = opt_number(j, "unpack_cycles_per_mac", where, p, 0, kInf)
                                    .value_or(m.unpack_cycles_per_mac);
      m.unpack_cycles_per_mac_unaligned =
          opt_number(j, "unpack_cycles_per_mac_unaligned", where, p, 0, kInf)
              .value_or(m.unpack_cycles_per_mac_unaligned);
      break;
    }
    case CostModelKind::Custom: {
      check_keys(
          j, where, p,
          {"clock_mhz", "a_bits", "w_bits", "cycles_per_mac", "macs_per_cycle",
           "energy_pj_per_cycle", "energy_pj_per_mac", "power_mw", "weight_memory_pj_per_bit",
           "activation_memory_pj_per_bit", "logic_area_um2", "memory_area_um2_per_bit"});
      clock(true);
      t.table.a_bits = checked_widths(j, "a_bits", where, p, kMaxActBits);
      t.table.w_bits = checked_widths(j, "w_bits", where, p, kMaxWeightBits);
      if (t.table.a_bits.empty())
        fail(
            "{}: missing field 'params.a_bits' (expected ascending activation bitwidths, the "
            "table's rows)",
            where);
      if (t.table.w_bits.empty())
        fail(
            "{}: missing field 'params.w_bits' (expected ascending weight bitwidths, the "
            "table's columns)",
            where);
      const bool cpm = j.contains("cycles_per_mac"), mpc = j.contains("macs_per_cycle");
      if (cpm == mpc)
        fail(
            "{}: params needs exactly one of 'cycles_per_mac' and 'macs_per_cycle' (a table with "
            "one row per a_bits and one column per w_bits)",
            where);
      auto grid = parse_grid(j, cpm ? "cycles_per_mac" : "macs_per_cycle", where, p,
                             t.table.a_bits.size(), t.table.w_bits.size());
      if (cpm)
        for (auto& row : grid)
          for (double& x : row) x = 1.0 / x;
      t.table.macs_per_cycle = grid;
      int n_energy = 0;
      for (const char* k : {"energy_pj_per_cycle", "energy_pj_per_mac", "power_mw"})
        n_energy += j.contains(k) ? 1 : 0;
      if (n_energy > 1)
        fail(
            "{}: params gives more than one of 'energy_pj_per_cycle', 'energy_pj_per_mac', "
            "'power_mw' (expected one way to compute energy)",
            where);
      pj("energy_pj_per_cycle", e.energy_per_cycle_j);
      pj("energy_pj_per_mac", e.energy_per_mac_j);
      if (auto v = opt_number(j, "power_mw", where, p, 0, kInf)) e.power_w = *v * kmW;
      pj("weight_memory_pj_per_bit", e.weight_mem_j_per_bit);
      pj("activation_memory_pj_per_bit", e.activation_mem_j_per_bit);
      area();
      break;
    }
  }
}

void parse_budgets(const nlohmann::json& j, const std::string& where, Target& t) {
  using namespace jsonf;
  const std::string p = "budgets";
  require_object(j, where, p);
  check_keys(j, where, p, {"weight_kib", "activation_kib", "latency_ms", "energy_uj", "gbops"});
  Budgets& b = t.budgets;
  auto get = [&](const char* key, double unit) -> std::optional<double> {
    auto v = opt_number(j, key, where, p, 0, kInf, true);
    if (!v) return std::nullopt;
    return *v * unit;
  };
  b.weight_bytes = get("weight_kib", kKiB);
  b.activation_bytes = get("activation_kib", kKiB);
  b.latency_s = get("latency_ms", kms);
  b.energy_j = get("energy_uj", kuJ);
  b.bops = get("gbops", kG);
  if (b.latency_s && !t.defines_timing())
    fail(
        "{}: field 'budgets.latency_ms': the {} model defines no latency (expected a model with "
        "a clock: shiftadd, mpic, mcu or custom)",
        where, cost_model_name(t.kind));
  if (b.energy_j && !t.defines_energy())
    fail(
        "{}: field 'budgets.energy_uj': this {} target defines no energy (expected a model with "
        "energy parameters: shiftadd, mpic, mcu, or custom with an energy field)",
        where, cost_model_name(t.kind));
}

}  // namespace

const char* cost_model_name(CostModelKind k) {
  for (auto& [kind, n] : kModelNames)
    if (kind == k) return n;
  return "?";
}

bool Target::defines_energy() const {
  const EnergyParams& e = energy;
  if (kind == CostModelKind::Size || kind == CostModelKind::Bops) return false;
  return e.power_w > 0 || e.energy_per_cycle_j > 0 || e.energy_per_mac_j > 0 ||
         e.weight_mem_j_per_bit > 0 || e.activation_mem_j_per_bit > 0;
}

ThroughputTable mpic_table() {
  // SPEC §6, exactly: MACs per cycle, rows a_bits 2/4/8, columns w_bits 2/4/8.
  return {{2, 4, 8}, {2, 4, 8}, {{6.5, 4.0, 2.2}, {3.9, 3.5, 2.1}, {2.5, 2.3, 2.1}}};
}

Target target_from_json(const nlohmann::json& j, const std::string& where) {
  using namespace jsonf;
  require_object(j, where, "");
  check_keys(j, where, "",
             {"format", "version", "name", "description", "model", "params", "storage", "budgets"});
  auto tag = opt_string(j, "format", where, "", {kTargetTag});
  if (!tag) fail("{}: missing field 'format' (expected \"{}\")", where, kTargetTag);
  auto ver = opt_integer(j, "version", where, "", 1, 1000000);
  if (!ver) fail("{}: missing field 'version' (expected {})", where, kTargetVersion);
  if (*ver != kTargetVersion)
    fail("{}: field 'version' is {} (this program reads version {})", where, *ver, kTargetVersion);
  auto model = opt_string(j, "model", where, "", model_names());
  if (!model) {
    std::string list;
    for (auto& n : model_names()) list += (list.empty() ? "" : ", ") + n;
    fail("{}: missing field 'model' (expected one of: {})", where, list);
  }
  Target t = defaults_for(model_from_name(*model));
  t.source = where;
  if (auto n = opt_string(j, "name", where, "")) t.name = *n;
  if (auto d = opt_string(j, "description", where, "")) t.description = *d;
  if (t.kind == CostModelKind::Custom && !j.contains("params"))
    fail(
        "{}: missing field 'params' (a custom target needs clock_mhz, a_bits, w_bits and a "
        "cycles_per_mac or macs_per_cycle table)",
        where);
  if (j.contains("params")) parse_params(j.at("params"), where, t);
  if (j.contains("storage")) parse_storage(j.at("storage"), where, t.storage);
  if (t.kind == CostModelKind::Mpic && !t.storage.activation_widths.empty() &&
      t.storage.activation_widths.back() > 8)
    fail(
        "{}: field 'storage.activation_widths' goes beyond 8 bits, which the mpic table does "
        "not cover (expected widths within 1..8)",
        where);
  if (j.contains("budgets")) parse_budgets(j.at("budgets"), where, t);
  return t;
}

Target load_target(const std::string& path) {
  return target_from_json(jsonf::read_json_file(path), path);
}

Target builtin_target(const std::string& name) {
  if (name == "shiftadd-csd") {
    Target t = defaults_for(CostModelKind::ShiftAdd);
    t.shiftadd.variant = ShiftAddVariant::Csd;
    t.name = name;
    t.source = "builtin:" + name;
    return t;
  }
  for (auto& [k, n] : kModelNames)
    if (name == n && k != CostModelKind::Custom) {
      Target t = defaults_for(k);
      t.source = "builtin:" + name;
      return t;
    }
  fail("unknown builtin target '{}' (expected size, bops, shiftadd, shiftadd-csd, mpic or mcu)",
       name);
}

Target resolve_target(const std::string& spec) {
  if (file_exists(spec)) return load_target(spec);
  for (const char* n : {"size", "bops", "shiftadd", "shiftadd-csd", "mpic", "mcu"})
    if (spec == n) return builtin_target(spec);
  fail(
      "--target '{}': no such file, and not a builtin target (expected a target file such as "
      "targets/mpic.json, or one of: size, bops, shiftadd, shiftadd-csd, mpic, mcu)",
      spec);
}

nlohmann::ordered_json target_to_json(const Target& t) {
  nlohmann::ordered_json j;
  j["format"] = kTargetTag;
  j["version"] = kTargetVersion;
  j["name"] = t.name;
  if (!t.description.empty()) j["description"] = t.description;
  j["model"] = cost_model_name(t.kind);
  nlohmann::ordered_json p = nlohmann::ordered_json::object();
  const EnergyParams& e = t.energy;
  if (t.kind == CostModelKind::ShiftAdd) {
    p["variant"] = t.shiftadd.variant == ShiftAddVariant::Csd ? "csd" : "bit_serial";
    p["datapaths"] = t.shiftadd.datapaths;
    p["datapath_bits"] = t.shiftadd.datapath_bits;
    p["subword"] = t.shiftadd.subword == SubwordRule::Product ? "product" : "activation";
    p["guard_bits"] = t.shiftadd.guard_bits;
    if (t.shiftadd.schedule == ShiftAddSchedule::RoundRobin) p["schedule"] = "round_robin";
  }
  if (t.kind == CostModelKind::Custom) {
    p["a_bits"] = t.table.a_bits;
    p["w_bits"] = t.table.w_bits;
    p["macs_per_cycle"] = t.table.macs_per_cycle;
  }
  if (t.kind == CostModelKind::Mcu) {
    p["cycles_per_mac"] = t.mcu.cycles_per_mac;
    p["cycles_per_mac_a16"] = t.mcu.cycles_per_mac_a16;
    p["unpack_cycles_per_mac"] = t.mcu.unpack_cycles_per_mac;
    p["unpack_cycles_per_mac_unaligned"] = t.mcu.unpack_cycles_per_mac_unaligned;
  }
  if (e.clock_hz > 0) p["clock_mhz"] = e.clock_hz / kMHz;
  if (e.power_w > 0) p["power_mw"] = e.power_w / kmW;
  if (e.energy_per_cycle_j > 0) p["energy_pj_per_cycle"] = e.energy_per_cycle_j / kpJ;
  if (e.energy_per_mac_j > 0) p["energy_pj_per_mac"] = e.energy_per_mac_j / kpJ;
  if (e.weight_mem_j_per_bit > 0) p["weight_memory_pj_per_bit"] = e.weight_mem_j_per_bit / kpJ;
  if (e.activation_mem_j_per_bit > 0)
    p["activation_memory_pj_per_bit"] = e.activation_mem_j_per_bit / kpJ;
  if (e.has_area) {
    p["logic_area_um2"] = e.logic_area_um2;
    p["memory_area_um2_per_bit"] = e.memory_area_um2_per_bit;
  }
  j["params"] = p;
  nlohmann::ordered_json s = {{"scale_bits", t.storage.scale_bits},
                              {"bias_bits", t.storage.bias_bits},
                              {"output_bits", t.storage.output_bits}};
  if (!t.storage.weight_widths.empty()) s["weight_widths"] = t.storage.weight_widths;
  if (!t.storage.activation_widths.empty()) s["activation_widths"] = t.storage.activation_widths;
  j["storage"] = s;
  nlohmann::ordered_json b = nlohmann::ordered_json::object();
  if (t.budgets.weight_bytes) b["weight_kib"] = *t.budgets.weight_bytes / kKiB;
  if (t.budgets.activation_bytes) b["activation_kib"] = *t.budgets.activation_bytes / kKiB;
  if (t.budgets.latency_s) b["latency_ms"] = *t.budgets.latency_s / kms;
  if (t.budgets.energy_j) b["energy_uj"] = *t.budgets.energy_j / kuJ;
  if (t.budgets.bops) b["gbops"] = *t.budgets.bops / kG;
  j["budgets"] = b;
  return j;
}

}  // namespace sq
